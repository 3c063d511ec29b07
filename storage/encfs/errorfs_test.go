package encfs

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// injector fails the operations its predicate selects while armed.
type injector struct {
	mu    sync.Mutex
	match func(errorfs.Op) bool
	hits  int
}

func (in *injector) arm(match func(errorfs.Op) bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.match, in.hits = match, 0
}

func (in *injector) disarm() { in.arm(nil) }

func (in *injector) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.hits
}

func (in *injector) MaybeError(op errorfs.Op) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.match != nil && in.match(op) {
		in.hits++
		return errorfs.ErrInjected
	}
	return nil
}

func (in *injector) String() string { return "test injector" }

func kindOn(kind errorfs.OpKind, suffix string) func(errorfs.Op) bool {
	return func(op errorfs.Op) bool { return op.Kind == kind && strings.HasSuffix(op.Path, suffix) }
}

// fromNth matches the nth and later operations that match.
func fromNth(n int, match func(errorfs.Op) bool) func(errorfs.Op) bool {
	seen := 0
	return func(op errorfs.Op) bool {
		if !match(op) {
			return false
		}
		seen++
		return seen >= n
	}
}

// TestInjectedErrorsSurface fails each underlying operation the wrapper
// uses and checks that the error reaches the caller and leaves nothing
// half-done behind.
func TestInjectedErrorsSurface(t *testing.T) {
	tests := []struct {
		name  string
		match func(errorfs.Op) bool
		run   func(t *testing.T, efs *FS) error
		after func(t *testing.T, efs *FS)
	}{
		{
			name:  "create header write",
			match: kindOn(errorfs.OpFileWrite, "/new"),
			run: func(t *testing.T, efs *FS) error {
				_, err := efs.Create("/d/new", vfs.WriteCategoryUnspecified)
				return err
			},
			after: func(t *testing.T, efs *FS) {
				if _, err := efs.Stat("/d/new"); err == nil {
					t.Fatal("a file without header was left behind")
				}
			},
		},
		{
			name: "open header read",
			match: func(op errorfs.Op) bool {
				return op.Kind == errorfs.OpFileReadAt && op.Offset == 0 && strings.HasSuffix(op.Path, "/a")
			},
			run: func(t *testing.T, efs *FS) error {
				_, err := efs.Open("/d/a")
				return err
			},
		},
		{
			name:  "read",
			match: func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileReadAt && op.Offset > 0 },
			run: func(t *testing.T, efs *FS) error {
				f, err := efs.Open("/d/a")
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				_, err = f.ReadAt(make([]byte, 4), 2)
				return err
			},
		},
		{
			name:  "write at",
			match: kindOn(errorfs.OpFileWriteAt, "/b"),
			run: func(t *testing.T, efs *FS) error {
				f, err := efs.OpenReadWrite("/d/b", vfs.WriteCategoryUnspecified) // has a header: nothing written
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				_, err = f.WriteAt([]byte("x"), 0)
				return err
			},
		},
		{
			name:  "append",
			match: fromNth(2, kindOn(errorfs.OpFileWrite, "/w")), // the 1st write is the header
			run: func(t *testing.T, efs *FS) error {
				f, err := efs.Create("/d/w", vfs.WriteCategoryUnspecified)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				_, err = f.Write([]byte("x"))
				return err
			},
		},
		{
			name:  "sync",
			match: kindOn(errorfs.OpFileSync, "/a"),
			run: func(t *testing.T, efs *FS) error {
				f, err := efs.OpenReadWrite("/d/a", vfs.WriteCategoryUnspecified)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				return f.Sync()
			},
		},
		{
			name:  "reuse for write",
			match: kindOn(errorfs.OpReuseForWrite, "/a"),
			run: func(t *testing.T, efs *FS) error {
				_, err := efs.ReuseForWrite("/d/a", "/d/c", vfs.WriteCategoryUnspecified)
				return err
			},
		},
		{
			name:  "rotate: keystore temp file",
			match: kindOn(errorfs.OpCreate, keyStoreTemp),
			run:   func(t *testing.T, efs *FS) error { _, err := efs.Rotate(); return err },
			after: func(t *testing.T, efs *FS) {
				if efs.PrimaryKeyID() != 1 {
					t.Fatalf("primary moved to %d although the keystore was not written", efs.PrimaryKeyID())
				}
			},
		},
		{
			name:  "rotate: keystore rename",
			match: kindOn(errorfs.OpRename, keyStoreTemp),
			run:   func(t *testing.T, efs *FS) error { _, err := efs.Rotate(); return err },
			after: func(t *testing.T, efs *FS) {
				if efs.PrimaryKeyID() != 1 {
					t.Fatalf("primary moved to %d although the keystore was not installed", efs.PrimaryKeyID())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewMem()
			inj := &injector{}
			base := errorfs.Wrap(mem, inj)
			efs := openFS(t, base, "/d", testKey(1))
			writeFile(t, efs, "/d/a", []byte("payload a"))
			writeFile(t, efs, "/d/b", []byte("payload b"))
			inj.arm(tt.match)
			err := tt.run(t, efs)
			if !errors.Is(err, errorfs.ErrInjected) {
				t.Fatalf("err = %v, want the injected error", err)
			}
			if inj.count() == 0 {
				t.Fatal("nothing was injected")
			}
			inj.disarm()
			if tt.after != nil {
				tt.after(t, efs)
			}
			// Everything still reads, and rotation still works.
			for p, want := range map[string]string{"/d/a": "payload a", "/d/b": "payload b"} {
				if _, err := efs.Stat(p); err != nil {
					continue // renamed away by the case
				}
				if got := readFile(t, efs, p); string(got) != want {
					t.Fatalf("%s reads %q", p, got)
				}
			}
			if _, err := efs.Rotate(); err != nil {
				t.Fatalf("rotate after the fault: %v", err)
			}
		})
	}
}

// TestPebbleSurfacesInjectedErrors injects read errors under encfs while
// Pebble reads sstables, the MANIFEST at open and WALs at recovery: each
// fault must come back as an error (no panic), and once the fault is gone
// everything must read back intact (no silent corruption).
func TestPebbleSurfacesInjectedErrors(t *testing.T) {
	const n = 2000
	tests := []struct {
		name  string
		match func(errorfs.Op) bool
		// use runs Pebble with the fault armed and returns what it reported.
		use func(t *testing.T, fs vfs.FS) error
	}{
		{
			name: "sstable header at open",
			match: func(op errorfs.Op) bool {
				return op.Kind == errorfs.OpFileReadAt && op.Offset == 0 && strings.HasSuffix(op.Path, ".sst")
			},
			use: getAll,
		},
		{
			name: "sstable blocks",
			match: func(op errorfs.Op) bool {
				return op.Kind == errorfs.OpFileReadAt && op.Offset > 0 && strings.HasSuffix(op.Path, ".sst")
			},
			use: getAll,
		},
		{
			name: "manifest at open",
			match: func(op errorfs.Op) bool {
				return (op.Kind == errorfs.OpFileReadAt || op.Kind == errorfs.OpFileRead) && strings.Contains(op.Path, "MANIFEST")
			},
			use: func(t *testing.T, fs vfs.FS) error {
				db, err := pebble.Open("/d/db", pebbleOptions(fs))
				if err == nil {
					_ = db.Close()
				}
				return err
			},
		},
		{
			name: "wal at recovery",
			match: func(op errorfs.Op) bool {
				return (op.Kind == errorfs.OpFileReadAt || op.Kind == errorfs.OpFileRead) && strings.HasSuffix(op.Path, ".log")
			},
			use: func(t *testing.T, fs vfs.FS) error {
				db, err := pebble.Open("/d/db", pebbleOptions(fs))
				if err == nil {
					_ = db.Close()
				}
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewMem()
			inj := &injector{}
			efs := openFS(t, errorfs.Wrap(mem, inj), "/d", testKey(1))
			db, err := pebble.Open("/d/db", pebbleOptions(efs))
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if err := db.Set(markerKey(i), markerValue(i), pebble.NoSync); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			// Some writes only in the WAL, for the recovery case.
			for i := n; i < n+10; i++ {
				if err := db.Set(markerKey(i), markerValue(i), pebble.Sync); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			inj.arm(tt.match)
			err = tt.use(t, efs)
			if err == nil {
				t.Fatalf("Pebble reported no error (%d faults injected)", inj.count())
			}
			if inj.count() == 0 {
				t.Fatal("nothing was injected")
			}
			t.Logf("Pebble reported: %v", err)
			inj.disarm()
			checkStore(t, efs, "/d/db", n+10)
		})
	}
}

// TestPebbleWALWriteFaultIsFailStop: Pebble does not carry on after a
// failed WAL write or sync (it panics with "fatal commit error", by design,
// since a failed fsync may have dropped data). Through encfs the fault must
// reach Pebble that way, and a restart must find every write synced before
// it.
func TestPebbleWALWriteFaultIsFailStop(t *testing.T) {
	mem := vfs.NewMem()
	inj := &injector{}
	efs := openFS(t, errorfs.Wrap(mem, inj), "/d", testKey(1))
	db, err := pebble.Open("/d/db", pebbleOptions(efs))
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		if err := db.Set(markerKey(i), markerValue(i), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	inj.arm(func(op errorfs.Op) bool {
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileSync, errorfs.OpFileSyncData:
			return strings.HasSuffix(op.Path, ".log")
		}
		return false
	})
	panicked := func() (p any) {
		defer func() { p = recover() }()
		err = db.Set(markerKey(n), markerValue(n), pebble.Sync)
		return nil
	}()
	if panicked == nil && err == nil {
		t.Fatal("a write whose WAL write failed was acknowledged")
	}
	t.Logf("Pebble: panic %v, error %v", panicked, err)
	if s := fmt.Sprint(panicked, err); !strings.Contains(s, "injected") {
		t.Fatalf("the fault did not reach Pebble as the injected error: %s", s)
	}
	inj.disarm()
	_ = db.Close() // reports the sticky error
	checkStore(t, efs, "/d/db", n)
}

// getAll opens the store and reads every key: the first read error is
// returned, and any value that is returned must be right.
func getAll(t *testing.T, fs vfs.FS) error {
	db, err := pebble.Open("/d/db", pebbleOptions(fs))
	if err != nil {
		return err
	}
	defer db.Close()
	var first error
	for i := range 2000 {
		v, closer, err := db.Get(markerKey(i))
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if !bytes.Equal(v, markerValue(i)) {
			t.Fatalf("key %d: silently wrong value %q", i, v)
		}
		_ = closer.Close()
	}
	return first
}
