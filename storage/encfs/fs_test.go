package encfs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestStatReportsLogicalSize(t *testing.T) {
	for name, mk := range testBases(t) {
		t.Run(name, func(t *testing.T) {
			base, dir := mk()
			efs := openFS(t, base, dir, testKey(1))
			p := efs.PathJoin(dir, "f")
			writeFile(t, efs, p, []byte("hello world"))
			for _, st := range []func() (vfs.FileInfo, error){
				func() (vfs.FileInfo, error) { return efs.Stat(p) },
				func() (vfs.FileInfo, error) {
					f, err := efs.Open(p)
					if err != nil {
						return nil, err
					}
					defer f.Close()
					return f.Stat()
				},
			} {
				fi, err := st()
				if err != nil || fi.Size() != 11 {
					t.Fatalf("logical size = %v, %v; want 11", fi, err)
				}
			}
			raw, err := base.Stat(p)
			if err != nil || raw.Size() != 11+HeaderSize {
				t.Fatalf("physical size = %v, %v; want %d", raw, err, 11+HeaderSize)
			}
			fi, err := efs.Stat(dir)
			if err != nil || !fi.IsDir() {
				t.Fatalf("dir stat = %v, %v", fi, err)
			}
		})
	}
}

func TestContentIsEncrypted(t *testing.T) {
	base := vfs.NewMem()
	efs := openFS(t, base, "/d", testKey(1))
	plain := bytes.Repeat([]byte("LEGIONELLA-PLAINTEXT-MARKER "), 100)
	writeFile(t, efs, "/d/a", plain)
	writeFile(t, efs, "/d/b", plain)
	a, b := memFiles(t, base, "/d")["/d/a"], memFiles(t, base, "/d")["/d/b"]
	if bytes.Contains(a, []byte("MARKER")) || bytes.Contains(b, []byte("MARKER")) {
		t.Fatal("plaintext on disk")
	}
	if bytes.Equal(a[HeaderSize:], b[HeaderSize:]) {
		t.Fatal("two files with the same content have the same ciphertext: IV reused")
	}
	if got := readFile(t, efs, "/d/a"); !bytes.Equal(got, plain) {
		t.Fatal("round trip failed")
	}
}

func TestReuseForWriteGetsFreshIVAndPrimaryKey(t *testing.T) {
	for name, mk := range testBases(t) {
		t.Run(name, func(t *testing.T) {
			base, dir := mk()
			efs := openFS(t, base, dir, testKey(1))
			oldName, newName := efs.PathJoin(dir, "000001.log"), efs.PathJoin(dir, "000002.log")
			old := bytes.Repeat([]byte("old wal record "), 500)
			writeFile(t, efs, oldName, old)
			before := rawHeader(t, base, oldName)
			if _, err := efs.Rotate(); err != nil {
				t.Fatal(err)
			}
			f, err := efs.ReuseForWrite(oldName, newName, vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			fresh := []byte("new wal record")
			if _, err := f.Write(bytes.Clone(fresh)); err != nil {
				t.Fatal(err)
			}
			if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(old)) {
				t.Fatalf("recycled file keeps its length: %v, %v", fi, err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			after := rawHeader(t, base, newName)
			if after.iv == before.iv {
				t.Fatal("recycled file kept its IV: keystream reuse")
			}
			if before.keyID != 1 || after.keyID != 2 {
				t.Fatalf("key ids before/after = %d/%d, want 1/2", before.keyID, after.keyID)
			}
			got := readFile(t, efs, newName)
			if !bytes.Equal(got[:len(fresh)], fresh) {
				t.Fatalf("recycled file reads %q", got[:len(fresh)])
			}
			if bytes.Contains(got, []byte("old wal record")) {
				t.Fatal("old content still decrypts under the new IV")
			}
			if _, err := efs.Stat(oldName); err == nil {
				t.Fatal("old name still exists")
			}
		})
	}
}

func TestLinkAndRenameKeepReadability(t *testing.T) {
	for name, mk := range testBases(t) {
		t.Run(name, func(t *testing.T) {
			base, dir := mk()
			efs := openFS(t, base, dir, testKey(1))
			content := []byte("sstable bytes")
			a, b, c := efs.PathJoin(dir, "a.sst"), efs.PathJoin(dir, "b.sst"), efs.PathJoin(dir, "c.sst")
			writeFile(t, efs, a, content)
			if err := efs.Link(a, b); err != nil {
				t.Fatal(err)
			}
			if err := efs.Rename(a, c); err != nil {
				t.Fatal(err)
			}
			if _, err := efs.Rotate(); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{b, c} {
				if got := readFile(t, efs, p); !bytes.Equal(got, content) {
					t.Fatalf("%s reads %q", p, got)
				}
			}
			if err := vfs.Copy(efs, b, efs.PathJoin(dir, "copy.sst")); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, efs, efs.PathJoin(dir, "copy.sst")); !bytes.Equal(got, content) {
				t.Fatalf("copy reads %q", got)
			}
			if h := rawHeader(t, base, efs.PathJoin(dir, "copy.sst")); h.keyID != 2 {
				t.Fatalf("copy is under key %d, want the primary 2", h.keyID)
			}
		})
	}
}

// TestFilesWithoutHeader covers what a crash can leave of a file whose
// header never reached the disk: it opens, reads as zeros of its logical
// size, and gets a header when opened for writing. Anything else without
// the magic is plaintext.
func TestFilesWithoutHeader(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		size    int // logical
		err     error
	}{
		{"empty", nil, 0, nil},
		{"part of a header", []byte("LGDE"), 0, nil},
		{"more of a header", append([]byte("LGDENC"), 0, 1, 0), 0, nil},
		{"zeroed header, later blocks on disk", append(make([]byte, HeaderSize), "ciphertext"...), 10, nil},
		{"short zeros", make([]byte, 7), 0, nil},
		{"short plaintext", []byte("hi"), 0, ErrNotEncrypted},
		{"long plaintext", bytes.Repeat([]byte("plaintext sstable "), 10), 0, ErrNotEncrypted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := vfs.NewMem()
			efs := openFS(t, base, "/d", testKey(1))
			f, err := base.Create("/d/x", vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.Write(bytes.Clone(tt.content))
			_ = f.Close()
			r, err := efs.Open("/d/x")
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("Open = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			defer r.Close()
			if fi, err := efs.Stat("/d/x"); err != nil || fi.Size() != int64(tt.size) {
				t.Fatalf("Stat = %v, %v; want size %d", fi, err, tt.size)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, make([]byte, tt.size)) {
				t.Fatalf("content = %q, %v; want %d zeros", got, err, tt.size)
			}
			st, err := efs.Status()
			if err != nil || st.EmptyFiles != 1 {
				t.Fatalf("Status = %+v, %v; want 1 file without header", st, err)
			}
			// Opening for writing gives it a header; the earlier reader then
			// sees the data.
			w, err := efs.OpenReadWrite("/d/x", vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("data")); err != nil {
				t.Fatal(err)
			}
			_ = w.Close()
			p := make([]byte, 4)
			if n, err := r.ReadAt(p, 0); n != 4 || string(p) != "data" {
				t.Fatalf("after write: ReadAt = %d %q, %v", n, p, err)
			}
		})
	}
}

func TestOpenPassesDirectoriesThrough(t *testing.T) {
	efs := openFS(t, vfs.NewMem(), "/d", testKey(1))
	if err := efs.MkdirAll("/d/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := efs.Open("/d/sub")
	if err != nil {
		t.Fatalf("Open(dir) = %v", err)
	}
	_ = f.Close()
}

func TestRotation(t *testing.T) {
	base, dir := vfs.Default, t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cfg := Config{Dir: dir, MasterKey: testKey(1), Base: base, Now: func() time.Time { return now }}
	efs, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, efs, filepath.Join(dir, "before"), []byte("written under key 1"))
	now = now.Add(time.Hour)
	id, err := efs.Rotate()
	if err != nil || id != 2 || efs.PrimaryKeyID() != 2 {
		t.Fatalf("Rotate = %d, %v; primary %d", id, err, efs.PrimaryKeyID())
	}
	writeFile(t, efs, filepath.Join(dir, "after"), []byte("written under key 2"))
	if err := efs.Close(); err != nil {
		t.Fatal(err)
	}

	efs = openFS(t, base, dir, testKey(1))
	if efs.PrimaryKeyID() != 2 {
		t.Fatalf("primary after reopen = %d, want 2", efs.PrimaryKeyID())
	}
	for name, want := range map[string]string{"before": "written under key 1", "after": "written under key 2"} {
		if got := readFile(t, efs, filepath.Join(dir, name)); string(got) != want {
			t.Fatalf("%s reads %q", name, got)
		}
	}
	if h := rawHeader(t, base, filepath.Join(dir, "before")); h.keyID != 1 {
		t.Fatalf("old file key %d, want 1", h.keyID)
	}
	if h := rawHeader(t, base, filepath.Join(dir, "after")); h.keyID != 2 {
		t.Fatalf("new file key %d, want 2", h.keyID)
	}
	st, err := efs.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyInfo{
		{ID: 1, Created: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Files: 1, Bytes: 19},
		{ID: 2, Created: time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC), Primary: true, Files: 1, Bytes: 19},
	}
	if st.Primary != 2 || st.MasterKey != Fingerprint(testKey(1)) || len(st.Keys) != 2 {
		t.Fatalf("status %+v", st)
	}
	for i := range want {
		if g := st.Keys[i]; g.ID != want[i].ID || !g.Created.Equal(want[i].Created) || g.Primary != want[i].Primary || g.Files != want[i].Files || g.Bytes != want[i].Bytes {
			t.Fatalf("key %d: %+v, want %+v", i, g, want[i])
		}
	}
}

func TestRotationIsDurableBeforeUse(t *testing.T) {
	mem := vfs.NewCrashableMem()
	efs := openFS(t, mem, "/d", testKey(1))
	if _, err := efs.Rotate(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, efs, "/d/new", []byte("under key 2"))
	// Sync the directory so the new file's entry survives: only the
	// keystore's own durability is under test.
	d, _ := mem.OpenDir("/d")
	_ = d.Sync()
	_ = d.Close()
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	after := openFS(t, crashed, "/d", testKey(1))
	if got := readFile(t, after, "/d/new"); string(got) != "under key 2" {
		t.Fatalf("after crash: %q", got)
	}
}

func TestRewrapMasterKey(t *testing.T) {
	base := vfs.NewMem()
	efs := openFS(t, base, "/d", testKey(1))
	writeFile(t, efs, "/d/x", []byte("payload"))
	if err := efs.RewrapMasterKey(testKey(0)); !errors.Is(err, ErrInvalidMasterKey) {
		t.Fatalf("rewrap to zero key = %v", err)
	}
	if err := efs.RewrapMasterKey(testKey(2)); err != nil {
		t.Fatal(err)
	}
	if err := efs.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: "/d", MasterKey: testKey(1), Base: base}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("old master key: %v, want ErrWrongMasterKey", err)
	}
	efs = openFS(t, base, "/d", testKey(2))
	if got := readFile(t, efs, "/d/x"); string(got) != "payload" {
		t.Fatalf("after rewrap: %q", got)
	}
}

// TestOpenRefusesAndDestroysNothing: every refusal at Open leaves every
// byte under the data folder as it was.
func TestOpenRefusesAndDestroysNothing(t *testing.T) {
	// prepare builds a data folder with encrypted files and returns it.
	prepare := func(t *testing.T) string {
		dir := t.TempDir()
		efs, err := Open(Config{Dir: dir, MasterKey: testKey(1)})
		if err != nil {
			t.Fatal(err)
		}
		if err := efs.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, efs, filepath.Join(dir, "state", "000001.sst"), []byte("LEGIONELLA-PLAINTEXT-MARKER"))
		if _, err := efs.Rotate(); err != nil {
			t.Fatal(err)
		}
		writeFile(t, efs, filepath.Join(dir, "state", "MANIFEST-000002"), []byte("manifest"))
		if err := efs.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string) // before the snapshot
		cfg    func(dir string) Config
		hold   bool // keep another FS open on the folder
		want   error
	}{
		{"wrong master key", nil, func(d string) Config { return Config{Dir: d, MasterKey: testKey(9)} }, false, ErrWrongMasterKey},
		{"keystore lost", func(t *testing.T, d string) { rm(t, filepath.Join(d, KeyStoreFile)) },
			func(d string) Config { return Config{Dir: d, MasterKey: testKey(1)} }, false, ErrNoKeyStore},
		{"keystore missing for an operator tool", func(t *testing.T, d string) { rm(t, filepath.Join(d, KeyStoreFile)) },
			func(d string) Config { return Config{Dir: d, MasterKey: testKey(1), MustExist: true} }, false, ErrNoKeyStore},
		{"keystore damaged", func(t *testing.T, d string) { edit(t, filepath.Join(d, KeyStoreFile), `"primary": 2`, `"primary": 1`) },
			func(d string) Config { return Config{Dir: d, MasterKey: testKey(1)} }, false, ErrCorruptKeyStore},
		{"plaintext file in an encrypted store", func(t *testing.T, d string) { put(t, filepath.Join(d, "state", "000009.sst"), "plaintext sstable") },
			func(d string) Config { return Config{Dir: d, MasterKey: testKey(1)} }, false, ErrNotEncrypted},
		{"file under a key the keystore lacks", func(t *testing.T, d string) { foreignFile(t, filepath.Join(d, "state", "000010.sst")) },
			func(d string) Config { return Config{Dir: d, MasterKey: testKey(1)} }, false, ErrUnknownKey},
		{"damaged header", func(t *testing.T, d string) { flipByte(t, filepath.Join(d, "state", "000001.sst"), offIV) },
			func(d string) Config { return Config{Dir: d, MasterKey: testKey(1)} }, false, ErrCorruptHeader},
		{"in use", nil, func(d string) Config { return Config{Dir: d, MasterKey: testKey(1)} }, true, ErrLocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := prepare(t)
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			if tt.hold {
				openFS(t, vfs.Default, dir, testKey(1))
			}
			before := snapshotDir(t, dir)
			f, err := Open(tt.cfg(dir))
			if err == nil {
				_ = f.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
			t.Logf("error: %v", err)
			after := snapshotDir(t, dir)
			if len(after) != len(before) {
				t.Fatalf("files before %d, after %d", len(before), len(after))
			}
			for p, b := range before {
				if !bytes.Equal(after[p], b) {
					t.Fatalf("%s changed", p)
				}
			}
		})
	}
}

func TestOpenRefusesPlaintextStore(t *testing.T) {
	dir := t.TempDir()
	put(t, filepath.Join(dir, "state", "MANIFEST-000001"), "plaintext manifest")
	put(t, filepath.Join(dir, "state", "LOCK"), "")
	before := snapshotDir(t, dir)
	_, err := Open(Config{Dir: dir, MasterKey: testKey(1)})
	if !errors.Is(err, ErrNotEncrypted) || !strings.Contains(err.Error(), "MANIFEST-000001") {
		t.Fatalf("Open = %v, want ErrNotEncrypted naming the file", err)
	}
	after := snapshotDir(t, dir)
	if len(after) != len(before) {
		t.Fatalf("Open created files in a plaintext store: %d → %d", len(before), len(after))
	}
}

func rm(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func edit(t *testing.T, p, old, new string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s lacks %q", p, old)
	}
	put(t, p, strings.Replace(string(b), old, new, 1))
}

func flipByte(t *testing.T, p string, i int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[i] ^= 1
	put(t, p, string(b))
}

// foreignFile writes a file encrypted under key id 77.
func foreignFile(t *testing.T, p string) {
	t.Helper()
	h := header{keyID: 77}.marshal()
	put(t, p, string(h[:])+"ciphertext")
}
