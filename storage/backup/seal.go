package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"filippo.io/age"
)

// An archive object is the age ciphertext followed by a 48-byte trailer:
//
//	"LGDBKEND" | ciphertext length (uint64, big-endian) | SHA-256 of the ciphertext
//
// age authenticates every 64 KiB chunk and the end of the stream, but a
// stream cut inside a chunk fails the same way as a modified one. The
// trailer tells the two apart (a cut object has no trailer) and lets a
// node check a stored archive without the private key (VerifyIntegrity).
// It is not a signature: whoever holds the public recipient can make a
// valid archive. To decrypt an archive by hand:
//
//	head -c -48 NAME.tar.age | age -d -i identity.txt | tar -x
const (
	trailerMagic = "LGDBKEND"
	trailerSize  = len(trailerMagic) + 8 + sha256.Size
)

// sealWriter hashes and counts what passes through and appends the
// trailer on Close (it does not close w).
type sealWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newSealWriter(w io.Writer) *sealWriter { return &sealWriter{w: w, h: sha256.New()} }

func (s *sealWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// Close writes the trailer.
func (s *sealWriter) Close() error {
	t := make([]byte, 0, trailerSize)
	t = append(t, trailerMagic...)
	t = binary.BigEndian.AppendUint64(t, uint64(s.n))
	t = s.h.Sum(t)
	_, err := s.w.Write(t)
	return err
}

// sum returns the ciphertext's SHA-256 in hex and its length.
func (s *sealWriter) sum() (string, int64) { return hex.EncodeToString(s.h.Sum(nil)), s.n }

// sealReader passes the ciphertext through and holds back the last
// trailerSize bytes, which check checks.
type sealReader struct {
	ctx  context.Context
	r    io.Reader
	h    hash.Hash
	n    int64
	pend []byte
	buf  []byte
	eof  bool
	err  error
}

func newSealReader(ctx context.Context, r io.Reader) *sealReader {
	return &sealReader{ctx: ctx, r: r, h: sha256.New(), buf: make([]byte, 64<<10)}
}

func (s *sealReader) Read(p []byte) (int, error) {
	for {
		if avail := len(s.pend) - trailerSize; avail > 0 {
			n := copy(p, s.pend[:avail])
			s.h.Write(p[:n])
			s.n += int64(n)
			s.pend = append(s.pend[:0], s.pend[n:]...)
			return n, nil
		}
		if s.err != nil {
			return 0, s.err
		}
		if s.eof {
			return 0, io.EOF
		}
		if err := s.ctx.Err(); err != nil {
			s.err = err
			return 0, err
		}
		m, err := s.r.Read(s.buf)
		s.pend = append(s.pend, s.buf[:m]...)
		switch {
		case errors.Is(err, io.EOF):
			s.eof = true
		case err != nil:
			s.err = err
		}
	}
}

// check drains what is left and checks the trailer: ErrTruncated when it
// is missing or claims more bytes than there were, ErrTampered when the
// length or checksum disagree. It returns the ciphertext's SHA-256 and
// length. A read error of the source is returned as is.
func (s *sealReader) check() (string, int64, error) {
	if _, err := io.Copy(io.Discard, s); err != nil {
		return "", s.n, err
	}
	sum := hex.EncodeToString(s.h.Sum(nil))
	t := s.pend
	if len(t) < trailerSize || !bytes.Equal(t[:len(trailerMagic)], []byte(trailerMagic)) {
		return sum, s.n, fmt.Errorf("%w: the end-of-archive trailer is missing after %d bytes (an interrupted upload or copy?)", ErrTruncated, s.n+int64(len(t)))
	}
	length := binary.BigEndian.Uint64(t[len(trailerMagic):])
	switch {
	case length > uint64(s.n):
		return sum, s.n, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, s.n, length)
	case length != uint64(s.n):
		return sum, s.n, fmt.Errorf("%w: archive is %d bytes, its trailer says %d", ErrTampered, s.n, length)
	case !bytes.Equal(t[len(trailerMagic)+8:], s.h.Sum(nil)):
		return sum, s.n, fmt.Errorf("%w: SHA-256 of the archive does not match its trailer", ErrTampered)
	}
	return sum, s.n, nil
}

// ageReadErr marks an error raised while decrypting (as opposed to one
// of the code that consumes the plaintext).
type ageReadErr struct{ err error }

func (e *ageReadErr) Error() string { return e.err.Error() }
func (e *ageReadErr) Unwrap() error { return e.err }

type ageReader struct{ r io.Reader }

func (a ageReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		err = &ageReadErr{err}
	}
	return n, err
}

// openSealed decrypts the archive read from src and hands the plaintext to
// fn, which must consume it to its end. Errors are classified in order of
// their root cause: a truncated or modified object (ErrTruncated,
// ErrTampered) first, then a key that does not fit (ErrWrongKey), then a
// failure of the authenticated decryption (ErrTampered), then fn's own
// error. It returns the ciphertext's SHA-256 and length.
func openSealed(ctx context.Context, src io.Reader, ids []age.Identity, fn func(plain io.Reader) error) (string, int64, error) {
	if len(ids) == 0 {
		return "", 0, fmt.Errorf("%w: no backup identity given", ErrInvalid)
	}
	sr := newSealReader(ctx, src)
	var err error
	plain, derr := age.Decrypt(sr, ids...)
	if derr == nil {
		err = fn(ageReader{plain})
		if err == nil {
			// The tar end may come before age's final chunk: read to EOF so
			// that the end of the stream is authenticated too.
			_, err = io.Copy(io.Discard, ageReader{plain})
		}
	}
	sum, n, cerr := sr.check()
	if cerr != nil {
		if (ctx.Err() != nil && errors.Is(cerr, ctx.Err())) || errors.Is(cerr, ErrTruncated) || errors.Is(cerr, ErrTampered) {
			return sum, n, cerr
		}
		return sum, n, fmt.Errorf("read archive: %w", cerr)
	}
	if derr != nil {
		var nomatch *age.NoIdentityMatchError
		if errors.As(derr, &nomatch) {
			return sum, n, fmt.Errorf("%w (archive is for %v)", ErrWrongKey, nomatch.StanzaTypes)
		}
		return sum, n, fmt.Errorf("%w: %w", ErrTampered, derr)
	}
	var ae *ageReadErr
	if errors.As(err, &ae) {
		if errors.Is(ae.err, io.ErrUnexpectedEOF) {
			return sum, n, fmt.Errorf("%w: %w", ErrTruncated, ae.err)
		}
		return sum, n, fmt.Errorf("%w: %w", ErrTampered, ae.err)
	}
	return sum, n, err
}
