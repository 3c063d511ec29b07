package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func eui(i int) EUI {
	return EUI{0x70, 0xb3, 0xd5, 0x7e, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

var uplink0 = TopicPartition{Topic: "lorawan.uplink", Partition: 0}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Dir: "x"}, true},
		{"linger", Config{Dir: "x", GroupCommitMaxDelay: time.Millisecond}, true},
		{"negative linger", Config{Dir: "x", GroupCommitMaxDelay: -1}, false},
		{"no dir", Config{}, false},
		{"negative cache", Config{Dir: "x", CacheSize: -1}, false},
		{"huge memtable", Config{Dir: "x", MemTableSize: 4 << 30}, false},
		{"long delay", Config{Dir: "x", GroupCommitMaxDelay: 2 * time.Second}, false},
		{"negative batch", Config{Dir: "x", GroupCommitMaxBatch: -1}, false},
		{"negative queue", Config{Dir: "x", QueueSize: -1}, false},
		{"negative version cache", Config{Dir: "x", VersionCacheSize: -1}, false},
		{"negative retention", Config{Dir: "x", Retention: -time.Hour}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if _, err := Open(Config{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Open(Config{}) = %v", err)
	}
}

func TestTwinRoundTrip(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	big := bytes.Repeat([]byte{0xab}, 64<<10)
	tests := []struct {
		name string
		kind Kind
		eui  EUI
		up   TwinUpdate
	}{
		{"sensor", KindSensor, eui(1), TwinUpdate{Epoch: 7, AppliedSeq: 65536 + 3, Snapshot: []byte("state-1")}},
		{"gateway same eui", KindGateway, eui(1), TwinUpdate{Epoch: 1, AppliedSeq: 9, Snapshot: []byte("gw")}},
		{"empty snapshot", KindSensor, eui(2), TwinUpdate{}},
		{"64 KiB snapshot", KindSensor, eui(3), TwinUpdate{Snapshot: big}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Commit(ctx, PutTwin(tenantA, tt.kind, tt.eui, tt.up)); err != nil {
				t.Fatal(err)
			}
			got, err := s.LoadTwin(ctx, tenantA, tt.kind, tt.eui)
			if err != nil {
				t.Fatal(err)
			}
			want := TwinRecord{Snapshot: tt.up.Snapshot, Version: 1, Epoch: tt.up.Epoch, AppliedSeq: tt.up.AppliedSeq}
			if !bytes.Equal(got.Snapshot, want.Snapshot) || got.Version != 1 || got.Epoch != want.Epoch || got.AppliedSeq != want.AppliedSeq {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
	// The sensor and the gateway with the same EUI are distinct twins.
	g, _ := s.LoadTwin(ctx, tenantA, KindGateway, eui(1))
	if string(g.Snapshot) != "gw" {
		t.Fatalf("gateway twin = %q", g.Snapshot)
	}
}

func TestSubmitCopiesInput(t *testing.T) {
	s := openStore(t, Config{})
	snap := []byte("before")
	done := make(chan error, 1)
	if err := s.Submit(context.Background(), []Write{PutTwin(tenantA, KindSensor, eui(1), TwinUpdate{Snapshot: snap})},
		func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	copy(snap, "AFTER!") // the caller reuses its buffer at once
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, _ := s.LoadTwin(context.Background(), tenantA, KindSensor, eui(1))
	if string(got.Snapshot) != "before" {
		t.Fatalf("snapshot = %q", got.Snapshot)
	}
}

func TestLoadTwinNotFound(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	if err := s.Commit(ctx, PutTwin(tenantA, KindSensor, eui(1), TwinUpdate{Snapshot: []byte("x")})); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tenant string
		kind   Kind
		eui    EUI
		want   error
	}{
		{"other eui", tenantA, KindSensor, eui(2), ErrNotFound},
		{"other kind", tenantA, KindGateway, eui(1), ErrNotFound},
		{"other tenant", tenantB, KindSensor, eui(1), ErrNotFound},
		{"bad tenant", "", KindSensor, eui(1), ErrInvalid},
		{"bad kind", tenantA, Kind(9), eui(1), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.LoadTwin(ctx, tt.tenant, tt.kind, tt.eui); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestTenantIsolation: tenant B knows (guesses) the EUI of A's sensor and
// tries every read path; it gets NotFound or nothing, never A's data, and
// key-injection attempts through the tenant string are refused.
func TestTenantIsolation(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	err := s.Commit(ctx,
		PutTwin(tenantA, KindSensor, euiX, TwinUpdate{Snapshot: []byte("A's secret state")}),
		PutEvent(tenantA, EventRecord{EUI: euiX, Time: at, ID: "ev-1", Payload: []byte("A's reading")}),
	)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadTwin(ctx, tenantB, KindSensor, euiX); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B loading A's twin: err = %v, want ErrNotFound", err)
	}
	evs, err := s.RecentEvents(ctx, tenantB, euiX, at.Add(-time.Hour), at.Add(time.Hour), 0)
	if err != nil || len(evs) != 0 {
		t.Fatalf("B reading A's events: %v %v", evs, err)
	}
	// Injection: a "tenant" that tries to reach into A's key range.
	for _, evil := range []string{
		tenantA + "/twin/sensor",
		"../" + tenantA,
		tenantA[:8] + "/",
		"",
		"*",
		tenantA + "\x00",
	} {
		if _, err := s.LoadTwin(ctx, evil, KindSensor, euiX); !errors.Is(err, ErrInvalid) {
			t.Errorf("LoadTwin(%q) err = %v, want ErrInvalid", evil, err)
		}
		if _, err := s.RecentEvents(ctx, evil, euiX, at.Add(-time.Hour), at.Add(time.Hour), 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("RecentEvents(%q) err = %v, want ErrInvalid", evil, err)
		}
	}
	// A tenant whose id is a prefix of A's sees nothing of A either.
	if _, err := s.LoadTwin(ctx, tenantA[:8], KindSensor, euiX); !errors.Is(err, ErrNotFound) {
		t.Fatalf("prefix tenant: err = %v", err)
	}
	// And A still sees its own.
	if got, err := s.LoadTwin(ctx, tenantA, KindSensor, euiX); err != nil || string(got.Snapshot) != "A's secret state" {
		t.Fatalf("A: %q %v", got.Snapshot, err)
	}
}

func TestFencing(t *testing.T) {
	ctx := context.Background()
	put := func(ver uint64, snap string) Write {
		return PutTwin(tenantA, KindSensor, euiX, TwinUpdate{ExpectedVersion: ver, Snapshot: []byte(snap)})
	}
	tests := []struct {
		name        string
		steps       [][]Write // each a unit, committed in order
		wantErrs    []error
		wantVersion uint64
		wantSnap    string
		wantOffset  int64 // -1: none stored
	}{
		{
			name:     "create then advance",
			steps:    [][]Write{{put(0, "a")}, {put(1, "b")}, {put(2, "c")}},
			wantErrs: []error{nil, nil, nil}, wantVersion: 3, wantSnap: "c", wantOffset: -1,
		},
		{
			name:     "second create is stale",
			steps:    [][]Write{{put(0, "a")}, {put(0, "other activation")}},
			wantErrs: []error{nil, ErrStaleVersion}, wantVersion: 1, wantSnap: "a", wantOffset: -1,
		},
		{
			name:     "double activation: both derive from v1, the later loses",
			steps:    [][]Write{{put(0, "a")}, {put(1, "first")}, {put(1, "second")}},
			wantErrs: []error{nil, nil, ErrStaleVersion}, wantVersion: 2, wantSnap: "first", wantOffset: -1,
		},
		{
			name:     "version from the future is stale",
			steps:    [][]Write{{put(0, "a")}, {put(5, "b")}},
			wantErrs: []error{nil, ErrStaleVersion}, wantVersion: 1, wantSnap: "a", wantOffset: -1,
		},
		{
			name:     "two writes of one twin in a unit chain",
			steps:    [][]Write{{put(0, "a"), put(1, "b"), PutOffset(uplink0, 10)}},
			wantErrs: []error{nil}, wantVersion: 2, wantSnap: "b", wantOffset: 10,
		},
		{
			name: "a stale unit is rejected whole, offset included",
			steps: [][]Write{
				{put(0, "a"), PutOffset(uplink0, 5)},
				{PutTwin(tenantA, KindSensor, eui(99), TwinUpdate{Snapshot: []byte("new twin")}), put(0, "stale"), PutOffset(uplink0, 6)},
			},
			wantErrs: []error{nil, ErrStaleVersion}, wantVersion: 1, wantSnap: "a", wantOffset: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Config{})
			for i, unit := range tt.steps {
				if err := s.Commit(ctx, unit...); !errors.Is(err, tt.wantErrs[i]) || (err == nil) != (tt.wantErrs[i] == nil) {
					t.Fatalf("step %d: err = %v, want %v", i, err, tt.wantErrs[i])
				}
			}
			got, err := s.LoadTwin(ctx, tenantA, KindSensor, euiX)
			if err != nil || got.Version != tt.wantVersion || string(got.Snapshot) != tt.wantSnap {
				t.Fatalf("stored v%d %q (%v), want v%d %q", got.Version, got.Snapshot, err, tt.wantVersion, tt.wantSnap)
			}
			offs, _ := s.Offsets(ctx)
			if off, ok := offs[uplink0]; tt.wantOffset < 0 && ok || tt.wantOffset >= 0 && off != tt.wantOffset {
				t.Fatalf("offsets = %v, want %d", offs, tt.wantOffset)
			}
			if _, err := s.LoadTwin(ctx, tenantA, KindSensor, eui(99)); tt.name == "a stale unit is rejected whole, offset included" && !errors.Is(err, ErrNotFound) {
				t.Fatalf("twin of the rejected unit: %v", err)
			}
		})
	}
}

// TestFencingRace: many activations of one twin race with the same expected
// version, in one group or several; exactly one wins, also after the
// version cache is bypassed by a reopen.
func TestFencingRace(t *testing.T) {
	dir := t.TempDir()
	for round := range 2 {
		s, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		expected := uint64(round) // the single winner of round 0 made it v1
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for i := range 32 {
			wg.Go(func() {
				errs <- s.Commit(context.Background(), PutTwin(tenantA, KindSensor, euiX,
					TwinUpdate{ExpectedVersion: expected, Snapshot: fmt.Appendf(nil, "r%d-a%d", round, i)}))
			})
		}
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrStaleVersion):
				t.Fatal(err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d winners", round, won)
		}
		if m := s.Metrics(); m.StaleRejects != 31 {
			t.Fatalf("round %d: StaleRejects = %d", round, m.StaleRejects)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInvalidWrites(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	tests := []struct {
		name string
		ws   []Write
	}{
		{"empty unit", nil},
		{"zero write", []Write{{}}},
		{"bad tenant", []Write{PutTwin("A/B", KindSensor, euiX, TwinUpdate{})}},
		{"bad kind", []Write{PutTwin(tenantA, 0, euiX, TwinUpdate{})}},
		{"event without id", []Write{PutEvent(tenantA, EventRecord{EUI: euiX, Time: time.Now()})}},
		{"event zero time is fine but bad tenant", []Write{PutEvent("", EventRecord{EUI: euiX, ID: "x"})}},
		{"bad topic", []Write{PutOffset(TopicPartition{"", 0}, 1)}},
		{"negative offset", []Write{PutOffset(uplink0, -1)}},
		{"one bad write spoils the unit", []Write{PutOffset(uplink0, 1), PutOffset(uplink0, -1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Commit(ctx, tt.ws...); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if err := s.Submit(ctx, []Write{PutOffset(uplink0, 1)}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil done: %v", err)
	}
	if offs, _ := s.Offsets(ctx); len(offs) != 0 {
		t.Fatalf("invalid units wrote offsets %v", offs)
	}
}

func TestRecentEventsAndPrune(t *testing.T) {
	s := openStore(t, Config{Retention: 48 * time.Hour})
	ctx := context.Background()
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	var ws []Write
	// Device X of A: one event a day for 7 days, two at the same instant on day 3.
	for d := range 7 {
		ws = append(ws, PutEvent(tenantA, EventRecord{EUI: euiX, Time: t0.Add(time.Duration(d) * day), ID: fmt.Sprintf("x-%d", d), Payload: []byte{byte(d)}}))
	}
	ws = append(ws, PutEvent(tenantA, EventRecord{EUI: euiX, Time: t0.Add(3 * day), ID: "x-3b", Payload: []byte("tie")}))
	// Another device of A and the same EUI under B: must not leak in.
	ws = append(ws,
		PutEvent(tenantA, EventRecord{EUI: eui(2), Time: t0, ID: "y-0"}),
		PutEvent(tenantA, EventRecord{EUI: eui(2), Time: t0.Add(6 * day), ID: "y-6"}),
		PutEvent(tenantB, EventRecord{EUI: euiX, Time: t0.Add(day), ID: "b-1"}),
		PutTwin(tenantA, KindSensor, euiX, TwinUpdate{Snapshot: []byte("twin survives prune")}),
	)
	if err := s.Commit(ctx, ws...); err != nil {
		t.Fatal(err)
	}
	ids := func(tenant string, e EUI, from, to time.Time, limit int) []string {
		t.Helper()
		evs, err := s.RecentEvents(ctx, tenant, e, from, to, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ev := range evs {
			if ev.EUI != e {
				t.Fatalf("event of %v in %v's window", ev.EUI, e)
			}
			out = append(out, ev.ID)
		}
		return out
	}
	tests := []struct {
		name     string
		from, to time.Time
		limit    int
		want     []string
	}{
		{"all", t0, t0.Add(7 * day), 0, []string{"x-0", "x-1", "x-2", "x-3", "x-3b", "x-4", "x-5", "x-6"}},
		{"half-open: to excluded", t0, t0.Add(2 * day), 0, []string{"x-0", "x-1"}},
		{"from included", t0.Add(3 * day), t0.Add(3*day + 1), 0, []string{"x-3", "x-3b"}},
		{"limit", t0, t0.Add(7 * day), 3, []string{"x-0", "x-1", "x-2"}},
		{"empty range", t0.Add(day), t0.Add(day), 0, nil},
		{"inverted range", t0.Add(5 * day), t0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(tenantA, euiX, tt.from, tt.to, tt.limit); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	evs, _ := s.RecentEvents(ctx, tenantA, euiX, t0.Add(3*day), t0.Add(3*day+1), 0)
	if len(evs) != 2 || !evs[0].Time.Equal(t0.Add(3*day)) || string(evs[1].Payload) != "tie" {
		t.Fatalf("events = %+v", evs)
	}

	// Expire as of day 7 with 48 h retention: everything before day 5 goes,
	// in every tenant and device.
	if err := s.Expire(ctx, t0.Add(7*day)); err != nil {
		t.Fatal(err)
	}
	if got := ids(tenantA, euiX, t0, t0.Add(7*day), 0); fmt.Sprint(got) != "[x-5 x-6]" {
		t.Fatalf("after prune: %v", got)
	}
	if got := ids(tenantA, eui(2), t0, t0.Add(7*day), 0); fmt.Sprint(got) != "[y-6]" {
		t.Fatalf("after prune, device 2: %v", got)
	}
	if got := ids(tenantB, euiX, t0, t0.Add(7*day), 0); got != nil {
		t.Fatalf("after prune, tenant B: %v", got)
	}
	if _, err := s.LoadTwin(ctx, tenantA, KindSensor, euiX); err != nil {
		t.Fatalf("prune touched a twin: %v", err)
	}
	// A device with nothing old gets no range deletion: X (x-5, x-6) and
	// device 2 (y-6) are already trimmed.
	before := s.Metrics().PrunedDevices
	if err := s.Prune(ctx, t0.Add(5*day)); err != nil {
		t.Fatal(err)
	}
	if after := s.Metrics().PrunedDevices; after != before {
		t.Fatalf("second prune deleted on %d devices", after-before)
	}
}

func TestOffsets(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	stats := TopicPartition{"lorawan.gateway.stats", 3}
	err := s.Commit(ctx,
		PutTwin(tenantA, KindSensor, eui(1), TwinUpdate{Snapshot: []byte("s")}),
		PutOffset(uplink0, 100),
		PutOffset(stats, 7),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, PutOffset(uplink0, 101)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Offsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[TopicPartition]int64{uplink0: 101, stats: 7}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("offsets = %v, want %v", got, want)
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	for i := range 10 {
		if err := s.Commit(ctx, PutTwin(tenantA, KindSensor, eui(i), TwinUpdate{Snapshot: []byte("old")}), PutOffset(uplink0, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx, PutTwin(tenantB, KindGateway, eui(0), TwinUpdate{Snapshot: []byte("old")})); err != nil {
		t.Fatal(err)
	}
	v, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	// Writes after the view: an update, a new twin, events, a new offset.
	err = s.Commit(ctx,
		PutTwin(tenantA, KindSensor, eui(0), TwinUpdate{ExpectedVersion: 1, Snapshot: []byte("new")}),
		PutTwin(tenantA, KindSensor, eui(50), TwinUpdate{Snapshot: []byte("new")}),
		PutEvent(tenantA, EventRecord{EUI: eui(0), Time: time.Unix(1, 0), ID: "e"}),
		PutOffset(uplink0, 99),
	)
	if err != nil {
		t.Fatal(err)
	}
	var seen []TwinEntry
	if err := v.ForEachTwin(ctx, func(e TwinEntry) error { seen = append(seen, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 11 {
		t.Fatalf("view saw %d twins, want 11", len(seen))
	}
	for _, e := range seen {
		if string(e.Snapshot) != "old" || e.Version != 1 {
			t.Fatalf("view saw %+v", e)
		}
	}
	if seen[10].Tenant != tenantB || seen[10].Kind != KindGateway || seen[0].Tenant != tenantA || seen[0].EUI != eui(0) {
		t.Fatalf("order/identity: first %+v last %+v", seen[0], seen[10])
	}
	if offs, _ := v.Offsets(ctx); offs[uplink0] != 9 {
		t.Fatalf("view offsets %v", offs)
	}
	if r, _ := v.LoadTwin(ctx, tenantA, KindSensor, eui(0)); string(r.Snapshot) != "old" {
		t.Fatalf("view LoadTwin %q", r.Snapshot)
	}
	// The live store sees the new state; ForEachTwin on it too.
	n := 0
	stop := errors.New("stop")
	err = s.ForEachTwin(ctx, func(e TwinEntry) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("fn error not returned: %v after %d", err, n)
	}
	count := 0
	_ = s.ForEachTwin(ctx, func(TwinEntry) error { count++; return nil })
	if count != 12 {
		t.Fatalf("live ForEachTwin saw %d", count)
	}
}

func TestCheckpointOpensAsStore(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir + "/live"})
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i := range 100 {
		err := s.Commit(ctx,
			PutTwin(tenantA, KindSensor, eui(i), TwinUpdate{Snapshot: fmt.Appendf(nil, "state %d", i), AppliedSeq: uint64(i)}),
			PutEvent(tenantA, EventRecord{EUI: eui(i), Time: at, ID: "e", Payload: []byte("p")}),
			PutOffset(uplink0, int64(i+1)),
		)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Checkpoint(ctx, dir+"/ckpt"); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx, dir+"/ckpt"); err == nil {
		t.Fatal("checkpoint over an existing dir succeeded")
	}
	// Writes after the checkpoint are not in it.
	if err := s.Commit(ctx, PutOffset(uplink0, 1000)); err != nil {
		t.Fatal(err)
	}
	c := openStore(t, Config{Dir: dir + "/ckpt"})
	offs, err := c.Offsets(ctx)
	if err != nil || offs[uplink0] != 100 {
		t.Fatalf("checkpoint offsets %v %v", offs, err)
	}
	n := 0
	err = c.ForEachTwin(ctx, func(e TwinEntry) error {
		if want := fmt.Sprintf("state %d", n); string(e.Snapshot) != want || e.AppliedSeq != uint64(n) || e.EUI != eui(n) {
			return fmt.Errorf("twin %d = %+v", n, e)
		}
		n++
		return nil
	})
	if err != nil || n != 100 {
		t.Fatalf("checkpoint twins: %d, %v", n, err)
	}
	if evs, err := c.RecentEvents(ctx, tenantA, eui(42), at, at.Add(1), 0); err != nil || len(evs) != 1 {
		t.Fatalf("checkpoint events %v %v", evs, err)
	}
	// The checkpoint is a live store of its own: writable, fenced.
	if err := c.Commit(ctx, PutTwin(tenantA, KindSensor, eui(1), TwinUpdate{ExpectedVersion: 0})); !errors.Is(err, ErrStaleVersion) {
		t.Fatalf("checkpoint fencing: %v", err)
	}
}

func TestSchemaVersionChecked(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open(Config{Dir: "/db", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Set([]byte(schemaKey), []byte{0, 0, 0, 2}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: "/db", FS: fs}); !errors.Is(err, ErrSchema) {
		t.Fatalf("Open = %v, want ErrSchema", err)
	}
}

func TestCancelledContextNeverQueues(t *testing.T) {
	s := openStore(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Commit(ctx, PutOffset(uplink0, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit = %v", err)
	}
	if offs, _ := s.Offsets(context.Background()); len(offs) != 0 {
		t.Fatalf("a cancelled Commit was written: %v", offs)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	checks := map[string]error{
		"Commit":      s.Commit(ctx, PutOffset(uplink0, 1)),
		"TrySubmit":   s.TrySubmit([]Write{PutOffset(uplink0, 1)}, func(error) {}),
		"LoadTwin":    second(s.LoadTwin(ctx, tenantA, KindSensor, euiX)),
		"Recent":      second(s.RecentEvents(ctx, tenantA, euiX, time.Unix(0, 0), time.Unix(1, 0), 0)),
		"Offsets":     second(s.Offsets(ctx)),
		"Prune":       s.Prune(ctx, time.Unix(0, 0)),
		"Checkpoint":  s.Checkpoint(ctx, t.TempDir()+"/c"),
		"Snapshot":    second(s.Snapshot()),
		"ForEachTwin": s.ForEachTwin(ctx, func(TwinEntry) error { return nil }),
		"View":        v.ForEachTwin(ctx, func(TwinEntry) error { return nil }),
	}
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	if err := v.Close(); err != nil {
		t.Fatalf("view Close after store Close: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }
