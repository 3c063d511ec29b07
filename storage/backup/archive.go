package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"
)

// member is a file to put into an archive: its listing and how to read it.
type member struct {
	File
	open func() (io.ReadCloser, error)
}

// fileMember hashes a file on disk and returns it as a member named name.
func fileMember(name, path string) (member, error) {
	f, err := os.Open(path)
	if err != nil {
		return member{}, err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return member{}, err
	}
	return member{
		File: File{Path: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))},
		open: func() (io.ReadCloser, error) { return os.Open(path) },
	}, nil
}

// bytesMember returns data as a member named name.
func bytesMember(name string, data []byte) member {
	sum := sha256.Sum256(data)
	return member{
		File: File{Path: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])},
		open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
	}
}

// writeArchive writes the tar stream: the manifest, then every member in
// order. A member whose content differs from its listing (it changed
// after it was hashed) fails the archive.
func writeArchive(w io.Writer, m *Manifest, members []member) error {
	m.Files = m.Files[:0]
	for _, mb := range members {
		m.Files = append(m.Files, mb.File)
	}
	mj, err := m.marshal()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	tw := tar.NewWriter(w)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o600, ModTime: m.CreatedAt.Truncate(time.Second), Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(manifestName, int64(len(mj)))); err != nil {
		return err
	}
	if _, err := tw.Write(mj); err != nil {
		return err
	}
	for _, mb := range members {
		if err := tw.WriteHeader(hdr(mb.Path, mb.Size)); err != nil {
			return err
		}
		rc, err := mb.open()
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(rc, mb.Size+1))
		_ = rc.Close()
		if err != nil {
			return fmt.Errorf("archive %s: %w", mb.Path, err)
		}
		if n != mb.Size || hex.EncodeToString(h.Sum(nil)) != mb.SHA256 {
			return fmt.Errorf("%w: %s changed while it was archived", ErrChecksum, mb.Path)
		}
	}
	return tw.Close()
}

// visitFunc receives each member after the manifest, with its content. It
// may read r partly or not at all: the rest is read (and checked) for it.
type visitFunc func(m *Manifest, f File, r io.Reader) error

// readArchive reads a tar stream written by writeArchive: it parses and
// validates the manifest, hands every member to visit and checks each
// member's size and SHA-256 and that every listed member is present once.
// The content a visitor sees is only known to be right once readArchive
// returns nil: a visitor writes to a staging place.
func readArchive(plain io.Reader, visit visitFunc) (*Manifest, error) {
	tr := tar.NewReader(plain)
	h, err := tr.Next()
	if err != nil {
		return nil, tarErr("manifest", err)
	}
	if h.Name != manifestName || h.Typeflag != tar.TypeReg || h.Size > maxManifest {
		return nil, fmt.Errorf("%w: the archive does not start with its manifest", ErrChecksum)
	}
	mj, err := io.ReadAll(tr)
	if err != nil {
		return nil, tarErr("manifest", err)
	}
	m := new(Manifest)
	if err := json.Unmarshal(mj, m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrChecksum, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	want := make(map[string]File, len(m.Files))
	for _, f := range m.Files {
		want[f.Path] = f
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, tarErr("member header", err)
		}
		f, ok := want[h.Name]
		switch {
		case !ok:
			return m, fmt.Errorf("%w: %q is not in the manifest (or appears twice)", ErrChecksum, h.Name)
		case h.Typeflag != tar.TypeReg:
			return m, fmt.Errorf("%w: %q is not a regular file", ErrChecksum, h.Name)
		case h.Size != f.Size:
			return m, fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrChecksum, h.Name, h.Size, f.Size)
		}
		delete(want, h.Name)
		hr := &hashingReader{r: tr, h: sha256.New()}
		if visit != nil {
			if err := visit(m, f, hr); err != nil {
				return m, err
			}
		}
		if _, err := io.Copy(io.Discard, hr); err != nil {
			return m, tarErr(h.Name, err)
		}
		if got := hex.EncodeToString(hr.h.Sum(nil)); hr.n != f.Size || got != f.SHA256 {
			return m, fmt.Errorf("%w: SHA-256 of %s is %s, the manifest says %s", ErrChecksum, h.Name, got, f.SHA256)
		}
	}
	for name := range want {
		return m, fmt.Errorf("%w: %s is listed but missing", ErrChecksum, name)
	}
	return m, nil
}

// tarErr keeps decryption errors (which openSealed classifies) and turns
// malformed tar data inside an authentic archive into ErrChecksum.
func tarErr(what string, err error) error {
	var ae *ageReadErr
	if errors.As(err, &ae) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrChecksum, what, err)
}

type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	return n, err
}
