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
)

// benchSnapshot is the size of a typical sensor snapshot (devicetwin keeps a
// sensor "well under 512 bytes").
const benchSnapshot = 384

// BenchmarkGroupCommit measures fenced twin-state writes per second through
// the group committer with fsync on, against a real directory. Each submitter
// is a twin actor that commits synchronously (Commit waits for durability),
// cycling over 100 twins of its own with correct expected versions.
// "writes/s" is twin-state writes per second; "writes/fsync" the mean group.
func BenchmarkGroupCommit(b *testing.B) {
	for _, tc := range []struct {
		name string
		subs int
		cfg  Config
	}{
		{"submitters=1", 1, Config{}},
		{"submitters=16", 16, Config{}},
		{"submitters=256", 256, Config{}},
		{"submitters=1024", 1024, Config{}},
		{"submitters=1024/nosync", 1024, Config{NoSync: true}},
		{"submitters=1/linger=1ms", 1, Config{GroupCommitMaxDelay: time.Millisecond}},
		{"submitters=16/linger=1ms", 16, Config{GroupCommitMaxDelay: time.Millisecond}},
		{"submitters=256/linger=1ms", 256, Config{GroupCommitMaxDelay: time.Millisecond}},
		{"submitters=1024/linger=1ms", 1024, Config{GroupCommitMaxDelay: time.Millisecond}},
	} {
		b.Run(tc.name, func(b *testing.B) { benchCommit(b, tc.subs, tc.cfg) })
	}
	b.Run("async", benchSubmitAsync)
}

func benchCommit(b *testing.B, subs int, cfg Config) {
	s := openStore(b, cfg)
	ctx := context.Background()
	snap := make([]byte, benchSnapshot)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for sub := range subs {
		wg.Go(func() {
			var versions [100]uint64
			for j := 0; next.Add(1) <= int64(b.N); j++ {
				tw := j % len(versions)
				err := s.Commit(ctx, PutTwin(tenantA, KindSensor, eui(sub*1000+tw),
					TwinUpdate{ExpectedVersion: versions[tw], AppliedSeq: uint64(j), Snapshot: snap}))
				if err != nil {
					failed.Store(err)
					return
				}
				versions[tw]++
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	reportCommit(b, s)
}

// benchSubmitAsync: one producer hands units to Submit and moves on, as an
// actor runtime would; completions are counted in done. This is the
// committer's own ceiling, limited by the queue (4,096) rather than by the
// number of waiting goroutines.
func benchSubmitAsync(b *testing.B) {
	s := openStore(b, Config{})
	ctx := context.Background()
	snap := make([]byte, benchSnapshot)
	const twins = 100_000
	versions := make([]uint64, twins)
	var wg sync.WaitGroup
	var failed atomic.Value
	done := func(err error) {
		if err != nil {
			failed.Store(err)
		}
		wg.Done()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tw := i % twins
		wg.Add(1)
		err := s.Submit(ctx, []Write{PutTwin(tenantA, KindSensor, eui(tw),
			TwinUpdate{ExpectedVersion: versions[tw], AppliedSeq: uint64(i), Snapshot: snap})}, done)
		if err != nil {
			b.Fatal(err)
		}
		versions[tw]++
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	reportCommit(b, s)
}

func reportCommit(b *testing.B, s *Store) {
	m := s.Metrics()
	b.ReportMetric(float64(m.TwinWrites)/b.Elapsed().Seconds(), "writes/s")
	if m.Groups > 0 {
		b.ReportMetric(float64(m.Writes)/float64(m.Groups), "writes/fsync")
		b.ReportMetric(float64(m.CommitNanos)/float64(m.Groups)/1e3, "µs/fsync")
	}
}

// BenchmarkLoadTwin reads random twins out of 100,000 stored ones after a
// flush and compaction (so reads go through sstables and the block cache,
// not the memtable), and reports the on-disk bytes per twin. "miss" loads
// twins that do not exist (a new device's first activation).
func BenchmarkLoadTwin(b *testing.B) {
	const twins = 100_000
	s := openStore(b, Config{})
	ctx := context.Background()
	// Half random, half zero bytes per twin: protobuf snapshots compress
	// somewhat, random bytes not at all, so this sits between the extremes.
	rng := rand.New(rand.NewPCG(1, 1))
	ws := make([]Write, 0, 1000)
	for i := range twins {
		snap := make([]byte, benchSnapshot)
		for j := range benchSnapshot / 2 {
			snap[j] = byte(rng.Uint32())
		}
		ws = append(ws, PutTwin(tenantA, KindSensor, eui(i), TwinUpdate{Snapshot: snap}))
		if len(ws) == cap(ws) {
			if err := s.Commit(ctx, ws...); err != nil {
				b.Fatal(err)
			}
			ws = ws[:0]
		}
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := s.db.Compact(ctx, []byte(tenantRoot), prefixEnd([]byte(tenantRoot)), false); err != nil {
		b.Fatal(err)
	}
	diskPerTwin := float64(s.db.Metrics().DiskSpaceUsage()) / twins
	b.Run("hit", func(b *testing.B) {
		before := s.db.Metrics().BlockCache
		b.ReportAllocs()
		for range b.N {
			if _, err := s.LoadTwin(ctx, tenantA, KindSensor, eui(rng.IntN(twins))); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(diskPerTwin, "disk-B/twin")
		if bc := s.db.Metrics().BlockCache; b.N >= 100_000 && bc.Hits-before.Hits < bc.Misses-before.Misses {
			b.Errorf("block cache mostly missed: %d hits, %d misses", bc.Hits-before.Hits, bc.Misses-before.Misses)
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := s.LoadTwin(ctx, tenantA, KindSensor, eui(twins+rng.IntN(twins))); !errors.Is(err, ErrNotFound) {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRecentEvents reads one device's last day (96 quarter-hourly
// readings) out of a week of events for 1,000 devices.
func BenchmarkRecentEvents(b *testing.B) {
	const devices, perDevice = 1000, 7 * 96
	s := openStore(b, Config{})
	ctx := context.Background()
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	payload := make([]byte, 64)
	ws := make([]Write, 0, 1000)
	for d := range devices {
		for i := range perDevice {
			ws = append(ws, PutEvent(tenantA, EventRecord{EUI: eui(d), Time: t0.Add(time.Duration(i) * 15 * time.Minute), ID: fmt.Sprint(i), Payload: payload}))
			if len(ws) == cap(ws) {
				if err := s.Commit(ctx, ws...); err != nil {
					b.Fatal(err)
				}
				ws = ws[:0]
			}
		}
	}
	if len(ws) > 0 {
		if err := s.Commit(ctx, ws...); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(2, 2))
	from := t0.Add(6 * 24 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		evs, err := s.RecentEvents(ctx, tenantA, eui(rng.IntN(devices)), from, from.Add(24*time.Hour), 0)
		if err != nil || len(evs) != 96 {
			b.Fatalf("%d events, %v", len(evs), err)
		}
	}
}
