package encfs

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// testKey returns a fixed master key that differs per seed.
func testKey(seed byte) []byte { return bytes.Repeat([]byte{seed}, MasterKeySize) }

// openFS opens an FS on base at dir, failing the test on error, and closes
// it at the end of the test.
func openFS(t testing.TB, base vfs.FS, dir string, master []byte) *FS {
	t.Helper()
	f, err := Open(Config{Dir: dir, MasterKey: master, Base: base})
	if err != nil {
		t.Fatalf("encfs.Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// writeFile creates name through fs with content.
func writeFile(t testing.TB, fs vfs.FS, name string, content []byte) {
	t.Helper()
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := f.Write(bytes.Clone(content)); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("sync %s: %v", name, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
}

// readFile reads name through fs.
func readFile(t testing.TB, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

// rawHeader reads the physical header of name from base.
func rawHeader(t testing.TB, base vfs.FS, name string) header {
	t.Helper()
	f, err := base.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [HeaderSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(b[:])
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// snapshotDir returns every regular file under dir on disk with its bytes.
func snapshotDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// memFiles returns every regular file under dir in a vfs.FS (unwrapped
// bytes) with its content.
func memFiles(t testing.TB, base vfs.FS, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var walk func(d string)
	walk = func(d string) {
		names, err := base.List(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			p := base.PathJoin(d, n)
			fi, err := base.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.IsDir() {
				walk(p)
				continue
			}
			f, err := base.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(f)
			_ = f.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[p] = b
		}
	}
	walk(dir)
	return out
}
