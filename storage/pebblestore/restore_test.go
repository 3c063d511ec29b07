package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func memStore(t *testing.T) *Store {
	t.Helper()
	return openStore(t, Config{Dir: "/db", FS: vfs.NewMem()})
}

// dumpReplicated returns the twins and offsets of s as comparable strings.
func dumpReplicated(t *testing.T, s *Store) (twins []string, offs map[TopicPartition]int64) {
	t.Helper()
	ctx := context.Background()
	if err := s.ForEachTwin(ctx, func(e TwinEntry) error {
		twins = append(twins, fmt.Sprintf("%s/%s/%s v%d e%d s%d %q", e.Tenant, e.Kind, e.EUI, e.Version, e.Epoch, e.AppliedSeq, e.Snapshot))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	offs, err := s.Offsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return twins, offs
}

func TestCommitReplicaExactRecords(t *testing.T) {
	ctx := context.Background()
	s := memStore(t)
	if _, err := s.ReplicaMeta(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReplicaMeta on a new store: %v, want ErrNotFound", err)
	}
	rec := TwinRecord{Version: 42, Epoch: 3, AppliedSeq: 1000, Snapshot: []byte("state")}
	if err := s.CommitReplica(ctx, []byte("meta-1"),
		ReplicaTwin(tenantA, KindSensor, euiX, rec),
		ReplicaTwin(tenantB, KindGateway, euiX, TwinRecord{Version: 1}),
		ReplicaOffset(uplink0, 77)); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadTwin(ctx, tenantA, KindSensor, euiX)
	if err != nil || got.Version != 42 || got.Epoch != 3 || got.AppliedSeq != 1000 || string(got.Snapshot) != "state" {
		t.Fatalf("LoadTwin = %+v, %v", got, err)
	}
	if offs, _ := s.Offsets(ctx); offs[uplink0] != 77 {
		t.Fatalf("Offsets = %v", offs)
	}
	if m, err := s.ReplicaMeta(ctx); err != nil || string(m) != "meta-1" {
		t.Fatalf("ReplicaMeta = %q, %v", m, err)
	}
	// Replica writes overwrite, lower versions included: the state machine
	// decides, not the store.
	if err := s.CommitReplica(ctx, nil, ReplicaTwin(tenantA, KindSensor, euiX, TwinRecord{Version: 7})); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LoadTwin(ctx, tenantA, KindSensor, euiX); got.Version != 7 {
		t.Fatalf("version after overwrite = %d", got.Version)
	}
	if m, _ := s.ReplicaMeta(ctx); string(m) != "meta-1" {
		t.Fatalf("nil meta changed the stored meta to %q", m)
	}
	// Events are still written with Commit, beside replica writes.
	if err := s.Commit(ctx, PutEvent(tenantA, EventRecord{EUI: euiX, Time: time.Unix(10, 0), ID: "e1"})); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitReplica(ctx, []byte("meta-2"), ReplicaOffset(uplink0, 78)); err != nil {
		t.Fatalf("replica write after an event write: %v", err)
	}
}

func TestReplicaWriteValidation(t *testing.T) {
	tests := []struct {
		name string
		w    ReplicaWrite
	}{
		{"zero write", ReplicaWrite{}},
		{"bad tenant", ReplicaTwin("Not/A/Tenant", KindSensor, euiX, TwinRecord{Version: 1})},
		{"zero kind", ReplicaTwin(tenantA, 0, euiX, TwinRecord{Version: 1})},
		{"version 0", ReplicaTwin(tenantA, KindSensor, euiX, TwinRecord{})},
		{"negative offset", ReplicaOffset(uplink0, -1)},
		{"bad topic", ReplicaOffset(TopicPartition{Topic: "a/b"}, 1)},
	}
	s := memStore(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CommitReplica(context.Background(), []byte("m"), tt.w)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CommitReplica = %v, want ErrInvalid", err)
			}
			err = s.ResetReplica(context.Background(), []byte("m"), func(put func(ReplicaWrite) error) error { return put(tt.w) })
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ResetReplica = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestReplicaRefusedAfterFencedWrites(t *testing.T) {
	tests := []struct {
		name string
		w    Write
	}{
		{"fenced twin write", PutTwin(tenantA, KindSensor, euiX, TwinUpdate{Snapshot: []byte("x")})},
		{"offset write", PutOffset(uplink0, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := memStore(t)
			if err := s.Commit(ctx, tt.w); err != nil {
				t.Fatal(err)
			}
			if err := s.CommitReplica(ctx, []byte("m"), ReplicaOffset(uplink0, 2)); !errors.Is(err, ErrNotReplica) {
				t.Fatalf("CommitReplica = %v, want ErrNotReplica", err)
			}
			err := s.ResetReplica(ctx, []byte("m"), func(func(ReplicaWrite) error) error { return nil })
			if !errors.Is(err, ErrNotReplica) {
				t.Fatalf("ResetReplica = %v, want ErrNotReplica", err)
			}
		})
	}
}

func TestResetReplicaReplacesState(t *testing.T) {
	ctx := context.Background()
	s := memStore(t)
	// Old state: twins of two tenants, offsets of two partitions, events.
	var old []ReplicaWrite
	for i := range 50 {
		old = append(old, ReplicaTwin(tenantA, KindSensor, eui(i), TwinRecord{Version: 9, Snapshot: []byte("old")}))
		old = append(old, ReplicaTwin(tenantB, KindGateway, eui(i), TwinRecord{Version: 9}))
	}
	uplink1 := TopicPartition{Topic: "lorawan.uplink", Partition: 1}
	old = append(old, ReplicaOffset(uplink0, 500), ReplicaOffset(uplink1, 600))
	if err := s.CommitReplica(ctx, []byte("old"), old...); err != nil {
		t.Fatal(err)
	}
	ev := EventRecord{EUI: eui(1), Time: time.Unix(100, 0), ID: "kept", Payload: []byte("p")}
	if err := s.Commit(ctx, PutEvent(tenantA, ev)); err != nil {
		t.Fatal(err)
	}

	// New state: enough twins to span several load batches, exact
	// versions lower and higher than before, one offset.
	big := bytes.Repeat([]byte{0x5a}, 4096)
	var want []ReplicaWrite
	for i := range 3000 {
		want = append(want, ReplicaTwin(tenantA, KindSensor, eui(i), TwinRecord{Version: uint64(1 + i%5), Epoch: 2, AppliedSeq: uint64(i), Snapshot: big}))
	}
	want = append(want, ReplicaOffset(uplink0, 450))
	if err := s.ResetReplica(ctx, []byte("new"), func(put func(ReplicaWrite) error) error {
		for _, w := range want {
			if err := put(w); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	ref := memStore(t)
	if err := ref.CommitReplica(ctx, nil, want...); err != nil {
		t.Fatal(err)
	}
	gotTwins, gotOffs := dumpReplicated(t, s)
	wantTwins, wantOffs := dumpReplicated(t, ref)
	if len(gotTwins) != len(wantTwins) {
		t.Fatalf("%d twins after reset, want %d", len(gotTwins), len(wantTwins))
	}
	for i := range gotTwins {
		if gotTwins[i] != wantTwins[i] {
			t.Fatalf("twin %d after reset: %s, want %s", i, gotTwins[i], wantTwins[i])
		}
	}
	if len(gotOffs) != 1 || gotOffs[uplink0] != 450 {
		t.Fatalf("offsets after reset = %v, want %v", gotOffs, wantOffs)
	}
	if m, err := s.ReplicaMeta(ctx); err != nil || string(m) != "new" {
		t.Fatalf("ReplicaMeta = %q, %v", m, err)
	}
	evs, err := s.RecentEvents(ctx, tenantA, eui(1), time.Unix(0, 0), time.Unix(1000, 0), 0)
	if err != nil || len(evs) != 1 || evs[0].ID != "kept" {
		t.Fatalf("events after reset = %+v, %v; want the local event kept", evs, err)
	}
}

func TestResetReplicaFailureLeavesNoMeta(t *testing.T) {
	ctx := context.Background()
	s := memStore(t)
	if err := s.CommitReplica(ctx, []byte("old"), ReplicaTwin(tenantA, KindSensor, euiX, TwinRecord{Version: 3})); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("snapshot stream broke")
	err := s.ResetReplica(ctx, []byte("new"), func(put func(ReplicaWrite) error) error {
		if err := put(ReplicaTwin(tenantA, KindSensor, eui(5), TwinRecord{Version: 1})); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("ResetReplica = %v, want the load error", err)
	}
	if _, err := s.ReplicaMeta(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReplicaMeta after a failed reset: %v, want ErrNotFound (incomplete)", err)
	}
	// The committer runs again.
	if err := s.CommitReplica(ctx, []byte("after"), ReplicaOffset(uplink0, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestResetReplicaParksCommitter(t *testing.T) {
	ctx := context.Background()
	s := memStore(t)
	inLoad, release := make(chan struct{}), make(chan struct{})
	resetDone := make(chan error, 1)
	go func() {
		resetDone <- s.ResetReplica(ctx, []byte("reset"), func(put func(ReplicaWrite) error) error {
			close(inLoad)
			<-release
			return put(ReplicaTwin(tenantA, KindSensor, euiX, TwinRecord{Version: 5, Snapshot: []byte("from reset")}))
		})
	}()
	<-inLoad
	committed := make(chan error, 1)
	go func() {
		committed <- s.CommitReplica(ctx, []byte("after"), ReplicaTwin(tenantA, KindSensor, euiX, TwinRecord{Version: 6, Snapshot: []byte("after reset")}))
	}()
	select {
	case err := <-committed:
		t.Fatalf("a unit committed while the committer was parked: %v", err)
	case <-time.After(50 * time.Millisecond): // proves absence: nothing to wait for
	}
	close(release)
	if err := <-resetDone; err != nil {
		t.Fatal(err)
	}
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
	got, _ := s.LoadTwin(ctx, tenantA, KindSensor, euiX)
	if got.Version != 6 || string(got.Snapshot) != "after reset" {
		t.Fatalf("twin = %+v, want the unit queued during the reset on top", got)
	}
	if m, _ := s.ReplicaMeta(ctx); string(m) != "after" {
		t.Fatalf("meta = %q", m)
	}
}

func TestResetReplicaCanceled(t *testing.T) {
	s := memStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	err := s.ResetReplica(ctx, []byte("m"), func(put func(ReplicaWrite) error) error {
		for i := range 5000 {
			if i == 10 {
				cancel()
			}
			if err := put(ReplicaTwin(tenantA, KindSensor, eui(i), TwinRecord{Version: 1})); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ResetReplica = %v, want context.Canceled", err)
	}
	if err := s.CommitReplica(context.Background(), []byte("m2"), ReplicaOffset(uplink0, 1)); err != nil {
		t.Fatal(err)
	}
}

// TestResetReplicaCrash: a completed reset survives power loss whatever
// part of the unsynced data the crash keeps.
func TestResetReplicaCrash(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewCrashableMem()
	s, err := Open(Config{Dir: "/db", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitReplica(ctx, []byte("old"), ReplicaTwin(tenantB, KindSensor, euiX, TwinRecord{Version: 2})); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{1}, 8192)
	if err := s.ResetReplica(ctx, []byte("new"), func(put func(ReplicaWrite) error) error {
		for i := range 1500 { // > one load batch
			if err := put(ReplicaTwin(tenantA, KindSensor, eui(i), TwinRecord{Version: 4, Snapshot: big})); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(7, 7))})
	_ = s.Close()
	r, err := Open(Config{Dir: "/db", FS: crashed})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	twins, _ := dumpReplicated(t, r)
	if len(twins) != 1500 {
		t.Fatalf("%d twins after the crash, want 1500", len(twins))
	}
	if m, err := r.ReplicaMeta(ctx); err != nil || string(m) != "new" {
		t.Fatalf("meta after crash = %q, %v", m, err)
	}
}
