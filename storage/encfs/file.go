package encfs

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// writeChunk bounds the ciphertext buffer of one write: a larger write is
// encrypted and passed down in pieces.
const writeChunk = 128 << 10

var writeBufs = sync.Pool{New: func() any { b := make([]byte, writeChunk); return &b }}

var errNoHeader = errors.New("encfs: file has no header and was not opened for writing")

// file is an encrypted vfs.File. Logical offset o lives at physical offset
// HeaderSize+o of base.
//
// Read keeps its own position and reads with base.ReadAt, so reading never
// moves base's offset. Write appends with base.Write for files this package
// created or recycled (base's offset is HeaderSize+wpos after the header
// was written), and with base.WriteAt for files opened with OpenReadWrite.
type file struct {
	name string
	base vfs.File
	fs   *FS // for a header that appears after a read-only Open

	// c is nil while the file has no header (a read-only open of a file
	// that is empty, or whose header a crash kept from the disk): it then
	// reads as zeros of its logical size until a header appears.
	c atomic.Pointer[fileCipher]

	// positional makes Write use base.WriteAt.
	positional bool

	mu   sync.Mutex // guards rpos and wpos
	rpos int64
	wpos int64
}

var _ vfs.File = (*file)(nil)

// cipher returns the file's keystream, loading the header if a read-only
// open found none. nil, nil: the file still has no header.
func (f *file) cipher() (*fileCipher, error) {
	if c := f.c.Load(); c != nil {
		return c, nil
	}
	c, err := readHeader(f.base, f.name, f.fs.keys.Load())
	if err != nil || c == nil {
		return nil, err
	}
	f.c.Store(c)
	return c, nil
}

// ReadAt implements io.ReaderAt. It is safe for concurrent use.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("encfs: read %s at negative offset %d", f.name, off)
	}
	c, err := f.cipher()
	if err != nil {
		return 0, err
	}
	n, err := f.base.ReadAt(p, HeaderSize+off)
	if c == nil {
		// No header reached the disk, so no synced data did either: the
		// content is unknown and reads as zeros.
		clear(p[:n])
		return n, err
	}
	c.xorAt(p[:n], p[:n], off)
	return n, err
}

// Read implements io.Reader.
func (f *file) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.ReadAt(p, f.rpos)
	f.rpos += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// Write implements io.Writer: it appends at the file's write position.
func (f *file) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.write(p, f.wpos, f.positional)
	f.wpos += int64(n)
	return n, err
}

// WriteAt implements io.WriterAt. Like the underlying files, it is
// supported on files opened with OpenReadWrite. It does not change the
// position of Write.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("encfs: write %s at negative offset %d", f.name, off)
	}
	return f.write(p, off, true)
}

// write encrypts p for logical offset off and writes it through a pooled
// buffer (p itself is left untouched).
func (f *file) write(p []byte, off int64, positional bool) (int, error) {
	c := f.c.Load()
	if c == nil {
		return 0, errNoHeader
	}
	bufp := writeBufs.Get().(*[]byte)
	defer writeBufs.Put(bufp)
	buf := *bufp
	done := 0
	for done < len(p) {
		chunk := min(len(p)-done, len(buf))
		c.xorAt(buf[:chunk], p[done:done+chunk], off+int64(done))
		var n int
		var err error
		if positional {
			n, err = f.base.WriteAt(buf[:chunk], HeaderSize+off+int64(done))
		} else {
			n, err = f.base.Write(buf[:chunk])
		}
		done += n
		if err != nil {
			return done, err
		}
		if n < chunk {
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}

// Close implements io.Closer.
func (f *file) Close() error { return f.base.Close() }

// Stat reports the logical size.
func (f *file) Stat() (vfs.FileInfo, error) {
	fi, err := f.base.Stat()
	if err != nil {
		return nil, err
	}
	return logicalInfo(fi), nil
}

// Preallocate implements vfs.File at logical offsets.
func (f *file) Preallocate(offset, length int64) error {
	return f.base.Preallocate(HeaderSize+offset, length)
}

// Sync implements vfs.File.
func (f *file) Sync() error { return f.base.Sync() }

// SyncData implements vfs.File.
func (f *file) SyncData() error { return f.base.SyncData() }

// SyncTo implements vfs.File: the physical prefix it syncs includes the
// header.
func (f *file) SyncTo(length int64) (bool, error) { return f.base.SyncTo(HeaderSize + length) }

// Prefetch implements vfs.File at logical offsets.
func (f *file) Prefetch(offset, length int64) error {
	return f.base.Prefetch(HeaderSize+offset, length)
}

// Fd returns the underlying descriptor; see the package documentation for
// why that is safe with pebble v2.1.7.
func (f *file) Fd() uintptr { return f.base.Fd() }

// fileInfo overrides the size of an underlying FileInfo.
type fileInfo struct {
	vfs.FileInfo
	size int64
}

func (fi fileInfo) Size() int64 { return fi.size }

// logicalInfo turns a physical FileInfo into a logical one: a regular
// file's size loses the header.
func logicalInfo(fi vfs.FileInfo) vfs.FileInfo {
	if !fi.Mode().IsRegular() {
		return fi
	}
	return fileInfo{FileInfo: fi, size: max(0, fi.Size()-HeaderSize)}
}

// loadHeader reads and parses the header of an open base file. A file
// whose header a crash kept from the disk (see headerAbsent) has present
// false.
func loadHeader(base vfs.File, name string) (h header, present bool, err error) {
	var b [HeaderSize]byte
	n, err := base.ReadAt(b[:], 0)
	if n < HeaderSize && err != nil && !errors.Is(err, io.EOF) {
		return header{}, false, err
	}
	if headerAbsent(b[:n]) {
		return header{}, false, nil
	}
	if n < HeaderSize {
		return header{}, false, fmt.Errorf("encfs: %s: %w", name, ErrNotEncrypted)
	}
	h, err = parseHeader(b[:])
	if err != nil {
		return header{}, false, fmt.Errorf("encfs: %s: %w", name, err)
	}
	return h, true, nil
}

// readHeader returns the keystream of an open base file, nil if it has no
// header yet (see loadHeader).
func readHeader(base vfs.File, name string, ks *keySet) (*fileCipher, error) {
	h, ok, err := loadHeader(base, name)
	if err != nil || !ok {
		return nil, err
	}
	k := ks.byID[h.keyID]
	if k == nil {
		return nil, fmt.Errorf("encfs: %s is under data key %d: %w", name, h.keyID, ErrUnknownKey)
	}
	return &fileCipher{block: k.block, iv: h.iv}, nil
}
