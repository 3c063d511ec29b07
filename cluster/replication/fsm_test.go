package replication

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

func newTestFSM(t *testing.T, s StateStore) *fsm {
	t.Helper()
	f, err := newFSM(context.Background(), s, testLogger(), 1000, func(error) {}, newAssignBox())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func cmdLog(t *testing.T, index uint64, batches ...Batch) *raft.Log {
	t.Helper()
	data, err := EncodeCommand(batches...)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func responses(t *testing.T, r any) []Response {
	t.Helper()
	res, ok := r.(*applyResult)
	if !ok || res.err != nil {
		t.Fatalf("apply result %#v", r)
	}
	return res.responses
}

func statuses(rs []Response) []Status {
	var out []Status
	for _, r := range rs {
		out = append(out, r.Status)
	}
	return out
}

var uplink = func(p int32, next int64) Offset { return Offset{Topic: "lorawan.uplink", Partition: p, Next: next} }

func TestFSMApplyFencing(t *testing.T) {
	ctx := context.Background()
	s := memStateStore(t)
	f := newTestFSM(t, s)
	out := f.ApplyBatch([]*raft.Log{
		cmdLog(t, 1,
			Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "x1")}, Offsets: []Offset{uplink(0, 10)}},
			Batch{Twins: []TwinUpdate{update(tenantA, 2, 0, "y1")}},
		),
		{Index: 2, Term: 1, Type: raft.LogConfiguration}, // not a command: no response
		cmdLog(t, 3,
			// A second activation derived from version 0 of X: stale.
			Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "x1 again")}},
			// X at 1 → 2 and Y 1 → 2 with a lower offset (ignored).
			Batch{Twins: []TwinUpdate{update(tenantA, 1, 1, "x2"), update(tenantA, 2, 1, "y2")}, Offsets: []Offset{uplink(0, 5)}},
			// Stale X (at 2 now) with a fresh Z and an offset: all refused.
			Batch{Twins: []TwinUpdate{update(tenantA, 3, 0, "z1"), update(tenantA, 1, 1, "x2'")}, Offsets: []Offset{uplink(0, 99)}},
			// Same EUI under another tenant: its own version space.
			Batch{Twins: []TwinUpdate{update(tenantB, 1, 0, "b1")}, Offsets: []Offset{uplink(1, 3)}},
		),
	})
	if got := statuses(responses(t, out[0])); !equalStatus(got, StatusApplied, StatusApplied) {
		t.Fatalf("log 1: %v", got)
	}
	if out[1] != nil {
		t.Fatalf("configuration log response %#v", out[1])
	}
	rs := responses(t, out[2])
	if got := statuses(rs); !equalStatus(got, StatusStale, StatusApplied, StatusStale, StatusApplied) {
		t.Fatalf("log 3: %v", got)
	}
	if st := rs[0].Stale; len(st) != 1 || st[0].EUI != eui(1) || st[0].Expected != 0 || st[0].Current != 1 || rs[0].Index != 3 {
		t.Fatalf("stale report %+v", rs[0])
	}
	if st := rs[2].Stale; len(st) != 1 || st[0].EUI != eui(1) || st[0].Current != 2 {
		t.Fatalf("stale report %+v: want only X, current 2", rs[2])
	}
	for i, want := range []struct {
		tenant string
		n      int
		v      uint64
		snap   string
	}{{tenantA, 1, 2, "x2"}, {tenantA, 2, 2, "y2"}, {tenantB, 1, 1, "b1"}} {
		rec, err := s.LoadTwin(ctx, want.tenant, pebblestore.KindSensor, eui(want.n))
		if err != nil || rec.Version != want.v || string(rec.Snapshot) != want.snap {
			t.Fatalf("twin %d: %+v, %v; want v%d %q", i, rec, err, want.v, want.snap)
		}
	}
	if _, err := s.LoadTwin(ctx, tenantA, pebblestore.KindSensor, eui(3)); !errors.Is(err, pebblestore.ErrNotFound) {
		t.Fatalf("Z of a refused batch was stored: %v", err)
	}
	offs, _ := s.Offsets(ctx)
	if offs[pebblestore.TopicPartition{Topic: "lorawan.uplink", Partition: 0}] != 10 || offs[pebblestore.TopicPartition{Topic: "lorawan.uplink", Partition: 1}] != 3 {
		t.Fatalf("offsets %v: want 10 (never backwards, refused 99) and 3", offs)
	}
	if f.applied != 3 {
		t.Fatalf("applied %d, want 3", f.applied)
	}
}

func equalStatus(got []Status, want ...Status) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestFSMBadCommands(t *testing.T) {
	s := memStateStore(t)
	f := newTestFSM(t, s)
	bad := Batch{Twins: []TwinUpdate{update("NOT-A-TENANT", 1, 0, "")}}
	good := Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "ok")}}
	out := f.ApplyBatch([]*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("garbage")},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: encodeCommand([][]byte{appendBatch(nil, &bad), appendBatch(nil, &good)})},
	})
	if res := out[0].(*applyResult); !errors.Is(res.err, ErrInvalid) {
		t.Fatalf("garbage command: %+v", res)
	}
	rs := responses(t, out[1])
	if !equalStatus(statuses(rs), StatusInvalid, StatusApplied) || rs[0].Reason == "" {
		t.Fatalf("invalid batch beside a good one: %+v", rs)
	}
	if f.applied != 2 {
		t.Fatalf("applied %d: bad commands must still advance the index", f.applied)
	}
}

func TestFSMReplayAfterRestart(t *testing.T) {
	s := memStateStore(t)
	f := newTestFSM(t, s)
	logs := []*raft.Log{
		cmdLog(t, 1, Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "v1")}}),
		cmdLog(t, 2, Batch{Twins: []TwinUpdate{update(tenantA, 1, 1, "v2")}}),
		cmdLog(t, 3, Batch{Twins: []TwinUpdate{update(tenantA, 1, 2, "v3")}}),
	}
	f.ApplyBatch(logs)
	before := dumpStore(t, s)

	// A restart: the FSM reads its index from the store, and raft replays
	// the log from its last snapshot (here: from the start).
	r := newTestFSM(t, s)
	if r.applied != 3 || r.needRestore {
		t.Fatalf("reopened fsm: applied %d, needRestore %v", r.applied, r.needRestore)
	}
	out := r.ApplyBatch(append(logs, cmdLog(t, 4, Batch{Twins: []TwinUpdate{update(tenantA, 1, 3, "v4")}})))
	for i := range 3 {
		if res := out[i].(*applyResult); !errors.Is(res.err, ErrOutcomeUnknown) {
			t.Fatalf("replayed log %d: %+v", i+1, res)
		}
	}
	if got := statuses(responses(t, out[3])); !equalStatus(got, StatusApplied) {
		t.Fatalf("log 4: %v", got)
	}
	if r.m.replayedLogs.Load() != 3 {
		t.Fatalf("replayed %d", r.m.replayedLogs.Load())
	}
	after := dumpStore(t, s)
	if len(before.Twins) != 1 || len(after.Twins) != 1 || !bytes.Contains([]byte(after.Twins[0]), []byte(`v4 e1 s4 "v4"`)) {
		t.Fatalf("after replay: %v (before %v)", after.Twins, before.Twins)
	}
}

type bufSink struct {
	bytes.Buffer
	canceled, closed bool
}

func (b *bufSink) ID() string    { return "test" }
func (b *bufSink) Cancel() error { b.canceled = true; return nil }
func (b *bufSink) Close() error  { b.closed = true; return nil }

func persist(t *testing.T, f *fsm, afterSnapshot func()) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	if afterSnapshot != nil {
		afterSnapshot()
	}
	var sink bufSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v, closed %v", err, sink.closed)
	}
	return sink.Bytes()
}

func TestFSMSnapshotRestore(t *testing.T) {
	src := memStateStore(t)
	f := newTestFSM(t, src)
	var batches []Batch
	for i := range 300 {
		batches = append(batches, Batch{
			Twins:   []TwinUpdate{update(tenantA, i, 0, "state"), {Tenant: tenantB, Kind: pebblestore.KindGateway, EUI: eui(i), Snapshot: bytes.Repeat([]byte{byte(i)}, i)}},
			Offsets: []Offset{uplink(int32(i%7), int64(i))},
		})
	}
	f.ApplyBatch([]*raft.Log{cmdLog(t, 5, batches...)})
	want := dumpStore(t, src)

	// Writes applied between Snapshot and Persist are not in the snapshot:
	// Persist streams the point-in-time view.
	data := persist(t, f, func() {
		f.ApplyBatch([]*raft.Log{cmdLog(t, 6, Batch{Twins: []TwinUpdate{update(tenantA, 1000, 0, "later"), update(tenantA, 1, 1, "later")}})})
	})

	dst := memStateStore(t)
	// The destination has older, conflicting state: Restore replaces it.
	g := newTestFSM(t, dst)
	g.ApplyBatch([]*raft.Log{cmdLog(t, 1, Batch{Twins: []TwinUpdate{update(tenantA, 5000, 0, "gone")}, Offsets: []Offset{uplink(9, 1)}})})
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := dumpStore(t, dst); !got.equal(want) {
		t.Fatalf("restored state differs: %d twins %d offsets, want %d, %d", len(got.Twins), len(got.Offsets), len(want.Twins), len(want.Offsets))
	}
	if g.applied != 5 || g.m.restores.Load() != 1 {
		t.Fatalf("after restore: applied %d, restores %d", g.applied, g.m.restores.Load())
	}
	// The restored FSM fences with the restored versions.
	out := g.ApplyBatch([]*raft.Log{cmdLog(t, 6, Batch{Twins: []TwinUpdate{update(tenantA, 1000, 0, "later"), update(tenantA, 1, 1, "later")}})})
	if got := statuses(responses(t, out[0])); !equalStatus(got, StatusApplied) {
		t.Fatalf("apply after restore: %v", got)
	}
	if got, want := dumpStore(t, dst), dumpStore(t, src); !got.equal(want) {
		t.Fatal("source and restored member diverged after the same log")
	}

	// Restoring a snapshot the store is already beyond is skipped.
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if g.m.restoresSkipped.Load() != 1 || g.applied != 6 {
		t.Fatalf("second restore: skipped %d, applied %d", g.m.restoresSkipped.Load(), g.applied)
	}
}

func TestFSMRestoreCorrupt(t *testing.T) {
	src := memStateStore(t)
	f := newTestFSM(t, src)
	f.ApplyBatch([]*raft.Log{cmdLog(t, 3,
		Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "a"), update(tenantA, 2, 0, "b")}, Offsets: []Offset{uplink(0, 4)}})})
	good := persist(t, f, nil)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	tests := []struct {
		name        string
		data        []byte
		want        error
		needRestore bool // the store was touched: only a good restore may follow
	}{
		{"empty", nil, ErrCorrupt, false},
		{"bad magic", flip(0), ErrCorrupt, false},
		{"future version", func() []byte { b := bytes.Clone(good); b[6] = 3; return b }(), ErrUnsupported, false},
		{"truncated", good[:len(good)-3], ErrCorrupt, true},
		{"flipped snapshot byte", flip(len(good) - 30), ErrCorrupt, true},
		{"flipped checksum", flip(len(good) - 1), ErrCorrupt, true},
		{"trailing byte", append(bytes.Clone(good), 0), ErrCorrupt, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := memStateStore(t)
			g := newTestFSM(t, dst)
			err := g.Restore(io.NopCloser(bytes.NewReader(tt.data)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Restore = %v, want %v", err, tt.want)
			}
			if g.needRestore != tt.needRestore {
				t.Fatalf("needRestore = %v, want %v", g.needRestore, tt.needRestore)
			}
			if tt.needRestore {
				out := g.ApplyBatch([]*raft.Log{cmdLog(t, 4, Batch{Offsets: []Offset{uplink(0, 5)}})})
				if res := out[0].(*applyResult); !errors.Is(res.err, ErrState) {
					t.Fatalf("apply after a failed restore: %+v", res)
				}
				if _, err := g.Snapshot(); !errors.Is(err, ErrState) {
					t.Fatalf("snapshot after a failed restore: %v", err)
				}
				// A reopened FSM sees the incomplete store too: either
				// partial state without meta, or nothing at all (index 0,
				// so raft's snapshot is restored again on start).
				if r := newTestFSM(t, dst); !r.needRestore && (r.applied != 0 || len(dumpStore(t, dst).Twins) != 0) {
					t.Fatalf("reopened fsm: applied %d, needRestore false, state %v", r.applied, dumpStore(t, dst))
				}
			}
			if err := g.Restore(io.NopCloser(bytes.NewReader(good))); err != nil {
				t.Fatalf("good restore after a bad one: %v", err)
			}
			if got, want := dumpStore(t, dst), dumpStore(t, src); !got.equal(want) {
				t.Fatal("state after the good restore differs")
			}
		})
	}
}

// failingStore fails every replica commit.
type failingStore struct{ StateStore }

func (failingStore) CommitReplica(context.Context, []byte, ...pebblestore.ReplicaWrite) error {
	return errors.New("disk on fire")
}

func TestFSMStoreFailureStops(t *testing.T) {
	fatal := make(chan error, 1)
	f, err := newFSM(context.Background(), failingStore{memStateStore(t)}, testLogger(), 10, func(err error) { fatal <- err }, newAssignBox())
	if err != nil {
		t.Fatal(err)
	}
	out := f.ApplyBatch([]*raft.Log{cmdLog(t, 1, Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "x")}})})
	if res := out[0].(*applyResult); !errors.Is(res.err, ErrState) {
		t.Fatalf("apply on a failing store: %+v", res)
	}
	if err := <-fatal; err == nil {
		t.Fatal("onFatal not called")
	}
	out = f.ApplyBatch([]*raft.Log{cmdLog(t, 2, Batch{Offsets: []Offset{uplink(0, 1)}})})
	if res := out[0].(*applyResult); !errors.Is(res.err, ErrState) {
		t.Fatalf("apply after a failure: %+v", res)
	}
	if f.applied != 0 {
		t.Fatalf("applied %d after failures", f.applied)
	}
}

func FuzzSnapshotStream(f *testing.F) {
	s, err := pebblestore.Open(pebblestore.Config{Dir: "/state", FS: vfs.NewMem(), CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	fm, err := newFSM(context.Background(), s, testLogger(), 10, nil, newAssignBox())
	if err != nil {
		f.Fatal(err)
	}
	data, _ := EncodeCommand(Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "a")}, Offsets: []Offset{uplink(0, 4)}})
	fm.ApplyBatch([]*raft.Log{{Index: 2, Term: 1, Type: raft.LogCommand, Data: data}})
	snap, err := fm.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		f.Fatal(err)
	}
	snap.Release()
	f.Add(sink.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newSnapshotReader(bytes.NewReader(b))
		if _, _, _, err := r.header(); err != nil {
			return
		}
		// Records are validated by the store; here only the decoder runs.
		_ = r.records(func(pebblestore.ReplicaWrite) error { return nil })
	})
}
