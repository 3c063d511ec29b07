package encfs

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	valueMarker = "LEGIONELLA-PLAINTEXT-MARKER"
	keyMarker   = "LEGIONELLA-KEY-MARKER"
)

// quietLogger drops Pebble's log lines; a fatal one panics so that the
// test fails loudly instead of exiting the process.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

func pebbleOptions(fs vfs.FS) *pebble.Options {
	return &pebble.Options{FS: fs, Logger: quietLogger{}}
}

func markerKey(i int) []byte { return fmt.Appendf(nil, "tenant-7/%s/%06d", keyMarker, i) }

func markerValue(i int) []byte {
	return fmt.Appendf(nil, "%s reading %d pipe 61.5C tap point hot-%d", valueMarker, i, i%17)
}

// fillStore writes n marked keys into a Pebble store at dir, flushes and
// compacts them into sstables, then writes extra more that stay in the WAL.
func fillStore(t *testing.T, fs vfs.FS, dir string, n, extra int) {
	t.Helper()
	db, err := pebble.Open(dir, pebbleOptions(fs))
	if err != nil {
		t.Fatalf("pebble.Open(%s): %v", dir, err)
	}
	for i := range n {
		opt := pebble.NoSync
		if i%500 == 499 {
			opt = pebble.Sync
		}
		if err := db.Set(markerKey(i), markerValue(i), opt); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(context.Background(), []byte("t"), []byte("u"), false); err != nil {
		t.Fatal(err)
	}
	for i := n; i < n+extra; i++ {
		if err := db.Set(markerKey(i), markerValue(i), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkStore reads every key back.
func checkStore(t *testing.T, fs vfs.FS, dir string, n int) {
	t.Helper()
	db, err := pebble.Open(dir, pebbleOptions(fs))
	if err != nil {
		t.Fatalf("reopen %s: %v", dir, err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for it.First(); it.Valid(); it.Next() {
		if !bytes.Equal(it.Key(), markerKey(i)) || !bytes.Equal(it.Value(), markerValue(i)) {
			t.Fatalf("entry %d: %q = %q", i, it.Key(), it.Value())
		}
		i++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("read %d entries, want %d", i, n)
	}
}

// findMarkers returns the files under dir (on disk) whose raw bytes hold
// a marker, and counts the Pebble file kinds seen.
func findMarkers(t *testing.T, dir string) (hits []string, kinds map[string]int) {
	t.Helper()
	kinds = map[string]int{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range []string{valueMarker, keyMarker, "tenant-7"} {
			if bytes.Contains(b, []byte(m)) {
				hits = append(hits, fmt.Sprintf("%s (%q)", p, m))
			}
		}
		name := d.Name()
		switch {
		case strings.HasSuffix(name, ".sst"):
			kinds["sst"]++
		case strings.HasSuffix(name, ".log"):
			kinds["wal"]++
		case strings.HasPrefix(name, "MANIFEST-"):
			kinds["manifest"]++
		case strings.HasPrefix(name, "OPTIONS-"):
			kinds["options"]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits, kinds
}

// TestPebbleLeavesNoPlaintextOnDisk writes marked keys and values into two
// Pebble stores (as the twin store and a Raft store would) and a
// checkpoint, then finds none of the markers in any file under the data
// folder, and reads everything back. The same run on the plain filesystem
// proves the search finds plaintext when it is there.
func TestPebbleLeavesNoPlaintextOnDisk(t *testing.T) {
	const n, extra = 3000, 200
	tests := []struct {
		name      string
		encrypted bool
	}{
		{"encrypted", true},
		{"plain control", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := vfs.Default
			if tt.encrypted {
				fs = openFS(t, vfs.Default, dir, testKey(1))
			}
			for _, store := range []string{"state", "raft-log"} {
				fillStore(t, fs, filepath.Join(dir, store), n, extra)
			}
			// A checkpoint (the backup path) through the same FS.
			db, err := pebble.Open(filepath.Join(dir, "state"), pebbleOptions(fs))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Checkpoint(filepath.Join(dir, "checkpoint")); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			hits, kinds := findMarkers(t, dir)
			t.Logf("file kinds: %v", kinds)
			for _, k := range []string{"sst", "wal", "manifest", "options"} {
				if kinds[k] == 0 {
					t.Fatalf("no %s file was written; the test does not cover it", k)
				}
			}
			if tt.encrypted && len(hits) > 0 {
				t.Fatalf("plaintext found on disk:\n%s", strings.Join(hits, "\n"))
			}
			if !tt.encrypted && len(hits) == 0 {
				t.Fatal("control: plaintext store shows no marker; the search is broken")
			}
			for _, store := range []string{"state", "raft-log", "checkpoint"} {
				checkStore(t, fs, filepath.Join(dir, store), n+extra)
			}
		})
	}
}

// TestPebbleRecyclesWALs drives enough memtable flushes for Pebble to
// recycle WAL files through ReuseForWrite, then checks the data.
func TestPebbleRecyclesWALs(t *testing.T) {
	dir := t.TempDir()
	efs := openFS(t, vfs.Default, dir, testKey(1))
	var recycled atomic.Int32
	opts := pebbleOptions(efs)
	opts.MemTableSize = 256 << 10
	opts.EventListener = &pebble.EventListener{WALCreated: func(info pebble.WALCreateInfo) {
		if info.RecycledFileNum != 0 {
			recycled.Add(1)
		}
	}}
	db, err := pebble.Open(filepath.Join(dir, "db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	pad := bytes.Repeat([]byte{'x'}, 1000)
	for i := range n {
		wo := pebble.NoSync
		if i%100 == 99 {
			wo = pebble.Sync
		}
		if err := db.Set(markerKey(i), append(markerValue(i), pad...), wo); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			if _, err := efs.Rotate(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if recycled.Load() == 0 {
		t.Fatal("Pebble never recycled a WAL; ReuseForWrite is not covered")
	}
	t.Logf("recycled WALs: %d", recycled.Load())
	db, err = pebble.Open(filepath.Join(dir, "db"), pebbleOptions(efs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range n {
		v, closer, err := db.Get(markerKey(i))
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if !bytes.Equal(v, append(markerValue(i), pad...)) {
			t.Fatalf("key %d: wrong value", i)
		}
		_ = closer.Close()
	}
}

// crashPoint is a crash clone taken during a run, with what was
// acknowledged at that moment.
type crashPoint struct {
	fs      *vfs.MemFS
	durable int // ops [0, durable) were acknowledged as synced
	issued  int // ops [0, issued) had been applied
}

type crashOp struct {
	key   []byte
	value []byte // nil: delete
}

// TestPebbleCrashRecovery is a metamorphic-style crash test. It runs the
// same random workload (sets, deletes, synced and unsynced commits,
// flushes, key rotations) on Pebble over a crashable in-memory filesystem,
// plain and through encfs, takes crash clones at random moments (with a
// random share of unsynced data surviving), and reopens each clone: the
// store must open, hold every synced write, and equal the state after some
// prefix of the workload. The plain run is the control: a failure only in
// the encrypted run is ours.
func TestPebbleCrashRecovery(t *testing.T) {
	for seed := range uint64(8) {
		for _, encrypted := range []bool{false, true} {
			name := fmt.Sprintf("seed=%d/plain", seed)
			if encrypted {
				name = fmt.Sprintf("seed=%d/encrypted", seed)
			}
			t.Run(name, func(t *testing.T) { runCrashScenario(t, seed, encrypted) })
		}
	}
}

func runCrashScenario(t *testing.T, seed uint64, encrypted bool) {
	rng := rand.New(rand.NewPCG(seed, 7))
	mem := vfs.NewCrashableMem()
	master := testKey(5)
	var fs vfs.FS = mem
	var efs *FS
	if encrypted {
		var err error
		if efs, err = Open(Config{Dir: "/data", MasterKey: master, Base: mem}); err != nil {
			t.Fatal(err)
		}
		fs = efs
	} else {
		// What encfs.Open does for its folder: create it durably.
		if err := mem.MkdirAll("/data", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syncDir(mem, "/"); err != nil {
			t.Fatal(err)
		}
	}
	opts := pebbleOptions(fs)
	opts.MemTableSize = 256 << 10
	opts.L0CompactionThreshold = 2
	db, err := pebble.Open("/data/db", opts)
	if err != nil {
		t.Fatal(err)
	}

	const nOps = 6000
	ops := make([]crashOp, 0, nOps)
	crashAt := map[int]bool{}
	for len(crashAt) < 6 {
		crashAt[500+rng.IntN(nOps-500)] = true
	}
	var crashes []crashPoint
	durable := 0
	for i := range nOps {
		op := crashOp{key: fmt.Appendf(nil, "k%04d", rng.IntN(400))}
		if rng.IntN(100) < 85 {
			op.value = fmt.Appendf(nil, "%s op %d %s", valueMarker, i, bytes.Repeat([]byte{'v'}, rng.IntN(300)))
		}
		ops = append(ops, op)
		wo := pebble.NoSync
		if rng.IntN(8) == 0 {
			wo = pebble.Sync
		}
		if op.value != nil {
			err = db.Set(op.key, op.value, wo)
		} else {
			err = db.Delete(op.key, wo)
		}
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		if wo == pebble.Sync {
			durable = i + 1
		}
		switch {
		case rng.IntN(500) == 0:
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
		case encrypted && rng.IntN(700) == 0:
			if _, err := efs.Rotate(); err != nil {
				t.Fatal(err)
			}
		}
		if crashAt[i] {
			cfg := vfs.CrashCloneCfg{}
			if rng.IntN(2) == 0 {
				cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: 1 + rng.IntN(99), RNG: rand.New(rand.NewPCG(seed, uint64(i)))}
			}
			crashes = append(crashes, crashPoint{fs: mem.CrashClone(cfg), durable: durable, issued: i + 1})
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if efs != nil {
		_ = efs.Close()
	}

	for ci, c := range crashes {
		var cfs vfs.FS = c.fs
		if encrypted {
			cefs, err := Open(Config{Dir: "/data", MasterKey: master, Base: c.fs})
			if err != nil {
				t.Fatalf("crash %d: encfs.Open after crash: %v", ci, err)
			}
			cfs = cefs
			for p, b := range memFiles(t, c.fs, "/data") {
				if bytes.Contains(b, []byte(valueMarker)) {
					t.Fatalf("crash %d: plaintext in %s", ci, p)
				}
			}
		}
		db, err := pebble.Open("/data/db", pebbleOptions(cfs))
		if err != nil {
			t.Fatalf("crash %d: pebble.Open after crash: %v", ci, err)
		}
		got := map[string]string{}
		it, err := db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		for it.First(); it.Valid(); it.Next() {
			got[string(it.Key())] = string(it.Value())
		}
		if err := it.Close(); err != nil {
			t.Fatalf("crash %d: iterate: %v", ci, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if cefs, ok := cfs.(*FS); ok {
			_ = cefs.Close()
		}
		prefixes := matchingPrefixes(ops[:c.issued], got)
		ok := false
		for _, l := range prefixes {
			if l >= c.durable {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("crash %d (durable %d, issued %d): state matches prefixes %v only: a synced write was lost or the state is corrupt",
				ci, c.durable, c.issued, prefixes)
		}
	}
}

// matchingPrefixes returns every L such that applying ops[:L] to an empty
// store gives exactly got.
func matchingPrefixes(ops []crashOp, got map[string]string) []int {
	model := map[string]string{}
	mismatch := len(got) // keys where model and got differ
	differs := func(k string) bool {
		mv, mok := model[k]
		gv, gok := got[k]
		return mok != gok || mv != gv
	}
	var out []int
	if mismatch == 0 {
		out = append(out, 0)
	}
	for l, op := range ops {
		k := string(op.key)
		before := differs(k)
		if op.value == nil {
			delete(model, k)
		} else {
			model[k] = string(op.value)
		}
		if after := differs(k); after != before {
			if after {
				mismatch++
			} else {
				mismatch--
			}
		}
		if mismatch == 0 {
			out = append(out, l+1)
		}
	}
	return out
}

// TestMigratePlaintextStoreWithClone: an unencrypted store (which Open
// refuses in its folder) is migrated by copying it, closed, through the
// FS with vfs.Clone into the encrypted folder.
func TestMigratePlaintextStoreWithClone(t *testing.T) {
	const n = 500
	plainDir, dir := t.TempDir(), t.TempDir()
	fillStore(t, vfs.Default, plainDir, n, 10)
	efs := openFS(t, vfs.Default, dir, testKey(1))
	ok, err := vfs.Clone(vfs.Default, efs, plainDir, filepath.Join(dir, "state"), vfs.CloneSync)
	if err != nil || !ok {
		t.Fatalf("Clone = %v, %v", ok, err)
	}
	if hits, _ := findMarkers(t, dir); len(hits) > 0 {
		t.Fatalf("plaintext after migration:\n%s", strings.Join(hits, "\n"))
	}
	checkStore(t, efs, filepath.Join(dir, "state"), n+10)
}
