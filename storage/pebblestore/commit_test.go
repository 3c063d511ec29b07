package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestGroupCommitConcurrent: many twin actors commit concurrently; every
// commit is acknowledged, groups are formed, and everything is there after a
// close and reopen.
func TestGroupCommitConcurrent(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"defaults", Config{}},
		{"linger 500µs", Config{GroupCommitMaxDelay: 500 * time.Microsecond}},
		{"groups capped at 7 writes", Config{GroupCommitMaxBatch: 7, QueueSize: 3}},
		{"no sync", Config{NoSync: true}},
		{"version cache of 8 twins", Config{VersionCacheSize: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testGroupCommitConcurrent(t, tt.cfg) })
	}
}

func testGroupCommitConcurrent(t *testing.T, cfg Config) {
	const actors, perActor = 64, 100
	dir := t.TempDir()
	cfg.Dir = dir
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, actors)
	for a := range actors {
		wg.Go(func() {
			for i := range perActor {
				err := s.Commit(ctx,
					PutTwin(tenantA, KindSensor, eui(a), TwinUpdate{ExpectedVersion: uint64(i), AppliedSeq: uint64(i), Snapshot: fmt.Appendf(nil, "a%d-%d", a, i)}),
					PutEvent(tenantA, EventRecord{EUI: eui(a), Time: time.Unix(int64(i), 0), ID: "e"}),
				)
				if err != nil {
					errs <- fmt.Errorf("actor %d write %d: %w", a, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	m := s.Metrics()
	if m.Units != actors*perActor || m.TwinWrites != actors*perActor || m.EventWrites != actors*perActor {
		t.Fatalf("metrics %+v", m)
	}
	if m.Groups == 0 || m.Groups > m.Units {
		t.Fatalf("groups %d for %d units", m.Groups, m.Units)
	}
	if cfg.GroupCommitMaxBatch > 0 && m.LargestGroup > uint64(cfg.GroupCommitMaxBatch) {
		t.Fatalf("a group of %d writes exceeds the cap of %d", m.LargestGroup, cfg.GroupCommitMaxBatch)
	}
	t.Logf("%d units in %d group commits (%.1f per fsync), %d version cache misses", m.Units, m.Groups, float64(m.Units)/float64(m.Groups), m.VersionCacheMisses)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Config{Dir: dir})
	for a := range actors {
		r, err := s.LoadTwin(ctx, tenantA, KindSensor, eui(a))
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != perActor || string(r.Snapshot) != fmt.Sprintf("a%d-%d", a, perActor-1) {
			t.Fatalf("actor %d after reopen: v%d %q", a, r.Version, r.Snapshot)
		}
		evs, _ := s.RecentEvents(ctx, tenantA, eui(a), time.Unix(0, 0), time.Unix(perActor, 0), 0)
		if len(evs) != perActor {
			t.Fatalf("actor %d: %d events", a, len(evs))
		}
	}
}

// blockCommitter submits a unit whose done blocks the committer until the
// returned release is called, so that tests can fill the queue without
// timing assumptions.
func blockCommitter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	err := s.Submit(context.Background(), []Write{PutOffset(TopicPartition{"block", 0}, 1)}, func(err error) {
		close(entered)
		<-gate
	})
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

func TestBackpressure(t *testing.T) {
	s := openStore(t, Config{QueueSize: 2})
	release := blockCommitter(t, s)
	defer release()
	var acked atomic.Int32
	done := func(err error) {
		if err == nil {
			acked.Add(1)
		}
	}
	w := []Write{PutOffset(uplink0, 1)}
	for range 2 { // fills the queue
		if err := s.TrySubmit(w, done); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TrySubmit(w, done); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("TrySubmit on a full queue: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Submit(ctx, w, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit with a cancelled ctx on a full queue: %v", err)
	}
	if err := s.Commit(ctx, w...); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with a cancelled ctx on a full queue: %v", err)
	}
	if m := s.Metrics(); m.Overloaded != 1 {
		t.Fatalf("Overloaded = %d", m.Overloaded)
	}
	// A blocked Submit proceeds once the committer drains.
	errc := make(chan error, 1)
	go func() { errc <- s.Commit(context.Background(), w...) }()
	release()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if acked.Load() != 2 {
		t.Fatalf("acked %d of the queued units", acked.Load())
	}
}

// TestCloseDrainsQueue: units queued before Close are committed and
// acknowledged; a Submit blocked on the full queue returns ErrClosed.
func TestCloseDrainsQueue(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, QueueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	release := blockCommitter(t, s)
	results := make(chan error, 8)
	for i := range 8 {
		w := []Write{PutTwin(tenantA, KindSensor, eui(i), TwinUpdate{Snapshot: []byte("queued")})}
		if err := s.TrySubmit(w, func(err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- s.Commit(context.Background(), PutOffset(uplink0, 1)) }()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Whether the extra Submit was already waiting or started after Close
	// began, it must fail with ErrClosed (and Close must not hang on it).
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Submit: %v", err)
	}
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range 8 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, Config{Dir: dir})
	for i := range 8 {
		if _, err := s.LoadTwin(context.Background(), tenantA, KindSensor, eui(i)); err != nil {
			t.Fatalf("queued unit %d lost on Close: %v", i, err)
		}
	}
	if offs, _ := s.Offsets(context.Background()); offs[uplink0] != 0 {
		t.Fatalf("refused unit was written: %v", offs)
	}
}

// TestCrashConsistency simulates power loss at a random moment while units
// stream in: the crashed filesystem keeps what was synced plus a random part
// of what was not. Units are [twin put, event put, offset put] in a fixed
// order, so the recovered store must be exactly a prefix of the unit
// sequence: every acknowledged unit is there (offset ≥ last ack before the
// crash; not promised with NoSync, which is run for the atomicity part), no
// unit is half there, and each twin's state is the one its last
// unit up to the recovered offset wrote.
func TestCrashConsistency(t *testing.T) {
	tests := []struct {
		name     string
		unsynced int // % of unsynced data the crash keeps
		seed     int64
		noSync   bool // acks promise nothing: check atomicity only
	}{
		{"synced only", 0, 1, false},
		{"half the unsynced data", 50, 2, false},
		{"half the unsynced data, other seed", 50, 3, false},
		{"all unsynced data", 100, 4, false},
		{"NoSync, half the unsynced data", 50, 5, true},
		{"NoSync, a tenth of the unsynced data", 10, 6, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const units, twins = 3000, 37
			rng := rand.New(rand.NewPCG(uint64(tt.seed), 0))
			crashAfter := units/4 + rng.Int64N(units/2) // acks before the crash
			fs := vfs.NewCrashableMem()
			s, err := Open(Config{Dir: "/db", FS: fs, QueueSize: 64, GroupCommitMaxBatch: 50, NoSync: tt.noSync})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var acked atomic.Int64 // highest unit index acknowledged (acks come in order)
			reached := make(chan struct{})
			failed := make(chan error, 1)
			versions := make([]uint64, twins)
			for i := int64(1); i <= units; i++ {
				tw := int(i % twins)
				ws := []Write{
					PutTwin(tenantA, KindSensor, eui(tw), TwinUpdate{ExpectedVersion: versions[tw], AppliedSeq: uint64(i), Snapshot: fmt.Appendf(nil, "unit %d", i)}),
					PutEvent(tenantA, EventRecord{EUI: eui(tw), Time: time.Unix(i, 0), ID: fmt.Sprint(i)}),
					PutOffset(uplink0, i),
				}
				versions[tw]++
				err := s.Submit(ctx, ws, func(err error) {
					if err != nil {
						select {
						case failed <- fmt.Errorf("unit %d: %w", i, err):
						default:
						}
						return
					}
					if prev := acked.Swap(i); prev != i-1 {
						panic(fmt.Sprintf("unit %d acked after %d", i, prev))
					}
					if i == crashAfter {
						close(reached)
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				if i == crashAfter+units/8 {
					break // keep units in flight at the crash
				}
			}
			select {
			case <-reached:
			case err := <-failed:
				t.Fatal(err)
			}
			ackedBefore := acked.Load()
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: tt.unsynced, RNG: rng})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			r := openStore(t, Config{Dir: "/db", FS: crashed})
			offs, err := r.Offsets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			recovered := offs[uplink0]
			t.Logf("acked %d before the crash, recovered through unit %d", ackedBefore, recovered)
			if !tt.noSync && recovered < ackedBefore {
				t.Fatalf("lost acknowledged units: recovered %d < acked %d", recovered, ackedBefore)
			}
			for tw := range twins {
				// Units i ≤ recovered with i%twins == tw wrote twin tw:
				// how many, and the last of them.
				var count uint64
				var last int64
				for i := int64(tw); i <= recovered; i += twins {
					if i >= 1 {
						count++
						last = i
					}
				}
				rec, err := r.LoadTwin(ctx, tenantA, KindSensor, eui(tw))
				if count == 0 {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("twin %d: %v, want not found", tw, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("twin %d: %v", tw, err)
				}
				if want := fmt.Sprintf("unit %d", last); string(rec.Snapshot) != want || rec.Version != count || rec.AppliedSeq != uint64(last) {
					t.Fatalf("twin %d: %q v%d seq %d, want %q v%d (offset %d)", tw, rec.Snapshot, rec.Version, rec.AppliedSeq, want, count, recovered)
				}
				evs, err := r.RecentEvents(ctx, tenantA, eui(tw), time.Unix(0, 0), time.Unix(units+1, 0), 0)
				if err != nil {
					t.Fatal(err)
				}
				if uint64(len(evs)) != count || len(evs) > 0 && evs[len(evs)-1].ID != fmt.Sprint(last) {
					t.Fatalf("twin %d: %d events, want %d ending at %d", tw, len(evs), count, last)
				}
			}
		})
	}
}
