package encfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"
)

// testBases are the filesystems the file-level tests run on.
func testBases(t *testing.T) map[string]func() (vfs.FS, string) {
	return map[string]func() (vfs.FS, string){
		"mem":  func() (vfs.FS, string) { return vfs.NewMem(), "/data" },
		"disk": func() (vfs.FS, string) { return vfs.Default, t.TempDir() },
	}
}

func drawBytes(t *rapid.T, label string, maxLen int) []byte {
	n := rapid.IntRange(0, maxLen).Draw(t, label+"Len")
	seed := rapid.Uint64().Draw(t, label+"Seed")
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestFileMatchesPlaintextModel is a property test: any sequence of Write,
// WriteAt (no holes), ReadAt, Read, Stat, Sync and reopen on an encrypted
// file behaves as the same sequence on a plaintext byte slice.
func TestFileMatchesPlaintextModel(t *testing.T) {
	for name, mk := range testBases(t) {
		t.Run(name, func(t *testing.T) {
			base, dir := mk()
			efs := openFS(t, base, dir, testKey(1))
			seq := 0
			rapid.Check(t, func(rt *rapid.T) {
				seq++
				path := efs.PathJoin(dir, fmt.Sprintf("f%06d", seq))
				var f vfs.File
				var err error
				if rapid.Bool().Draw(rt, "openReadWrite") {
					f, err = efs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
				} else {
					f, err = efs.Create(path, vfs.WriteCategoryUnspecified)
				}
				if err != nil {
					rt.Fatal(err)
				}
				defer func() { _ = f.Close() }()
				var model []byte
				var wpos, rpos int
				put := func(off int, p []byte) {
					if grow := off + len(p) - len(model); grow > 0 {
						model = append(model, make([]byte, grow)...)
					}
					copy(model[off:], p)
				}
				rt.Repeat(map[string]func(*rapid.T){
					"write": func(rt *rapid.T) {
						p := drawBytes(rt, "w", 300)
						if n, err := f.Write(bytes.Clone(p)); n != len(p) || err != nil {
							rt.Fatalf("Write = %d, %v", n, err)
						}
						put(wpos, p)
						wpos += len(p)
					},
					"bigWrite": func(rt *rapid.T) {
						p := drawBytes(rt, "big", 3*writeChunk)
						if n, err := f.Write(bytes.Clone(p)); n != len(p) || err != nil {
							rt.Fatalf("Write = %d, %v", n, err)
						}
						put(wpos, p)
						wpos += len(p)
					},
					"writeAt": func(rt *rapid.T) {
						off := rapid.IntRange(0, len(model)).Draw(rt, "off")
						p := drawBytes(rt, "wa", 300)
						if n, err := f.WriteAt(p, int64(off)); n != len(p) || err != nil {
							rt.Fatalf("WriteAt = %d, %v", n, err)
						}
						put(off, p)
					},
					"readAt": func(rt *rapid.T) {
						off := rapid.IntRange(0, len(model)+20).Draw(rt, "off")
						p := make([]byte, rapid.IntRange(0, 300).Draw(rt, "n"))
						n, err := f.ReadAt(p, int64(off))
						want := model[min(off, len(model)):min(off+len(p), len(model))]
						if n != len(want) || !bytes.Equal(p[:n], want) {
							rt.Fatalf("ReadAt(%d, %d) = %d bytes, want %d (or content differs)", len(p), off, n, len(want))
						}
						if n < len(p) && !errors.Is(err, io.EOF) {
							rt.Fatalf("short ReadAt without EOF: %v", err)
						}
						if n == len(p) && err != nil && !errors.Is(err, io.EOF) {
							rt.Fatalf("ReadAt: %v", err)
						}
					},
					"read": func(rt *rapid.T) {
						p := make([]byte, rapid.IntRange(1, 300).Draw(rt, "n"))
						n, err := f.Read(p)
						want := model[min(rpos, len(model)):min(rpos+len(p), len(model))]
						if n != len(want) || !bytes.Equal(p[:n], want) {
							rt.Fatalf("Read at %d = %d bytes, want %d (or content differs)", rpos, n, len(want))
						}
						if (n == 0) != errors.Is(err, io.EOF) {
							rt.Fatalf("Read = %d, %v", n, err)
						}
						rpos += n
					},
					"stat": func(rt *rapid.T) {
						fi, err := f.Stat()
						if err != nil || fi.Size() != int64(len(model)) {
							rt.Fatalf("File.Stat = %v, %v; want size %d", fi, err, len(model))
						}
						fi, err = efs.Stat(path)
						if err != nil || fi.Size() != int64(len(model)) {
							rt.Fatalf("FS.Stat = %v, %v; want size %d", fi, err, len(model))
						}
					},
					"sync": func(rt *rapid.T) {
						if err := f.Sync(); err != nil {
							rt.Fatal(err)
						}
						if _, err := f.SyncTo(int64(len(model))); err != nil {
							rt.Fatal(err)
						}
					},
					"reopenReadWrite": func(rt *rapid.T) {
						if err := f.Close(); err != nil {
							rt.Fatal(err)
						}
						if f, err = efs.OpenReadWrite(path, vfs.WriteCategoryUnspecified); err != nil {
							rt.Fatal(err)
						}
						wpos, rpos = 0, 0
					},
				})
				if err := f.Close(); err != nil {
					rt.Fatal(err)
				}
				f, err = efs.Open(path)
				if err != nil {
					rt.Fatal(err)
				}
				got, err := io.ReadAll(f)
				if err != nil || !bytes.Equal(got, model) {
					rt.Fatalf("reopened file: %d bytes, %v; want %d bytes", len(got), err, len(model))
				}
			})
		})
	}
}

// TestFdIsTheUnderlyingDescriptor: Pebble uses Fd only for hints (see
// doc.go), so the wrapper exposes the real descriptor on disk and none in
// memory, exactly as the base does.
func TestFdIsTheUnderlyingDescriptor(t *testing.T) {
	for name, mk := range testBases(t) {
		t.Run(name, func(t *testing.T) {
			base, dir := mk()
			efs := openFS(t, base, dir, testKey(1))
			p := efs.PathJoin(dir, "x")
			f, err := efs.Create(p, vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			bf, err := base.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer bf.Close()
			if (f.Fd() == vfs.InvalidFd) != (bf.Fd() == vfs.InvalidFd) {
				t.Fatalf("Fd = %d, base file Fd = %d", f.Fd(), bf.Fd())
			}
		})
	}
}

// TestConcurrentReadersWhileAppending mimics a checkpoint reading a WAL
// that is being written: readers only ever see what was written.
func TestConcurrentReadersWhileAppending(t *testing.T) {
	efs := openFS(t, vfs.NewMem(), "/d", testKey(1))
	w, err := efs.Create("/d/000001.log", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const total = 1 << 20
	content := make([]byte, total)
	for i := range content {
		content[i] = byte(i * 7)
	}
	r, err := efs.Open("/d/000001.log")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 4)
	var written atomic.Int64
	for g := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			p := make([]byte, 777)
			for written.Load() < total {
				hi := written.Load()
				if hi < int64(len(p)) {
					continue
				}
				off := rng.Int64N(hi - int64(len(p)) + 1)
				if n, err := r.ReadAt(p, off); n != len(p) || (err != nil && !errors.Is(err, io.EOF)) {
					done <- fmt.Errorf("ReadAt(%d) = %d, %w", off, n, err)
					return
				}
				if !bytes.Equal(p, content[off:off+int64(len(p))]) {
					done <- fmt.Errorf("ReadAt(%d): wrong bytes", off)
					return
				}
			}
			done <- nil
		}()
	}
	for off := 0; off < total; off += 4096 {
		if _, err := w.Write(bytes.Clone(content[off : off+4096])); err != nil {
			t.Fatal(err)
		}
		written.Store(int64(off + 4096))
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteDoesNotModifyCallerBuffer(t *testing.T) {
	efs := openFS(t, vfs.NewMem(), "/d", testKey(1))
	f, err := efs.Create("/d/x", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := []byte("some plaintext that must stay as it is")
	want := bytes.Clone(p)
	if _, err := f.Write(p); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(p, 3); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, want) {
		t.Fatal("Write changed the caller's buffer")
	}
}
