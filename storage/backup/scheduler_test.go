package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
)

// fakeClock's timers fire when the test advances it. NewTimer announces
// each new timer on created, so the test can wait for the scheduler to
// go to sleep instead of sleeping itself.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	created chan time.Time // deadline of each new timer
}

type fakeTimer struct {
	c        chan time.Time
	deadline time.Time
	stopped  bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	t.stopped = true
	return true
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, created: make(chan time.Time, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	t := &fakeTimer{c: make(chan time.Time, 1), deadline: c.now.Add(d)}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.created <- t.deadline
	return t
}

// AdvanceTo moves the clock and fires the timers that are due.
func (c *fakeClock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.stopped && !tm.deadline.After(t) {
			tm.c <- t
			continue
		}
		kept = append(kept, tm)
	}
	c.timers = kept
}

type schedFixture struct {
	clk     *fakeClock
	dest    *LocalDir
	dumper  *fakeDumper
	reports chan RunReport
	sched   *Scheduler
	id      age.Identity
}

func newSchedFixture(t *testing.T, start time.Time, mod func(c *ScheduleConfig)) *schedFixture {
	t.Helper()
	f := &schedFixture{clk: newFakeClock(start), reports: make(chan RunReport, 16)}
	var err error
	if f.dest, err = NewLocalDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	id, rcpt := testKey(t)
	f.id = id
	f.dumper = &fakeDumper{data: []byte("PGDMP"), info: DumpInfo{Format: dumpFormat}}
	dataDir := t.TempDir()
	cfg := ScheduleConfig{
		Backup: Config{
			Database: f.dumper,
			Node: &NodeSource{Checkpointer: &fakeCheckpointer{files: map[string]string{"000001.sst": "sst"}},
				DataDir: dataDir, StoreDir: "storage/twins"},
			Recipients:  []age.Recipient{rcpt},
			Destination: f.dest,
			NodeID:      "n1",
		},
		Identities: []age.Identity{id},
		DailyAt:    2 * time.Hour,
		WeeklyOn:   time.Sunday,
		Clock:      f.clk,
		OnRun:      func(r RunReport) { f.reports <- r },
	}
	if mod != nil {
		mod(&cfg)
	}
	if f.sched, err = NewScheduler(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// nextTimer waits for the scheduler to arm its timer and returns its deadline.
func (f *schedFixture) nextTimer(t *testing.T) time.Time {
	t.Helper()
	select {
	case d := <-f.clk.created:
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("the scheduler armed no timer")
	}
	return time.Time{}
}

func (f *schedFixture) report(t *testing.T) RunReport {
	t.Helper()
	select {
	case r := <-f.reports:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no run report")
	}
	return RunReport{}
}

func TestSchedulerRunsDailyAndWeekly(t *testing.T) {
	// Friday 2025-02-28, 10:00 UTC; no backups yet.
	start := time.Date(2025, 2, 28, 10, 0, 0, 0, time.UTC)
	f := newSchedFixture(t, start, func(c *ScheduleConfig) { c.Retention = Retention{Daily: 2, Weekly: 1} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.sched.Run(ctx) }()

	// Catch-up: no full backup at all, so one is taken at once.
	r := f.report(t)
	if !r.OK() || r.Kind != KindFull || !r.Started.Equal(start) || r.Verified.Manifest == nil {
		t.Fatalf("catch-up run: %+v", r)
	}
	want := []struct {
		at   time.Time
		kind Kind
	}{
		{time.Date(2025, 3, 1, 2, 0, 0, 0, time.UTC), KindDatabase}, // Saturday
		{time.Date(2025, 3, 2, 2, 0, 0, 0, time.UTC), KindFull},     // Sunday
		{time.Date(2025, 3, 3, 2, 0, 0, 0, time.UTC), KindDatabase},
		{time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC), KindDatabase},
	}
	for i, w := range want {
		deadline := f.nextTimer(t)
		if !deadline.Equal(w.at) {
			t.Fatalf("run %d armed for %v, want %v", i, deadline, w.at)
		}
		if st := f.sched.Stats(); !st.NextRun.Equal(w.at) || st.NextKind != w.kind {
			t.Fatalf("stats before run %d: %+v", i, st)
		}
		f.clk.AdvanceTo(w.at)
		r := f.report(t)
		if !r.OK() || r.Kind != w.kind || r.Result.Name != ObjectName(w.kind, w.at, "n1") {
			t.Fatalf("run %d: %+v", i, r)
		}
	}
	// A failing dump is counted, the schedule goes on.
	f.dumper.err = errors.New("database down")
	deadline := f.nextTimer(t)
	f.clk.AdvanceTo(deadline)
	if r := f.report(t); r.OK() || r.Step != "backup" {
		t.Fatalf("failing run: %+v", r)
	}
	f.dumper.err = nil
	f.nextTimer(t)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := f.sched.Stats()
	if st.Runs != 6 || st.Successes != 5 || st.Failures != 1 || st.LastError == "" || st.LastName != ObjectName(KindDatabase, want[3].at, "n1") {
		t.Fatalf("stats: %+v", st)
	}
	// Retention {Daily 2, Weekly 1} per kind: db keeps Mar 3 and 4 (Mar 1
	// pruned); full keeps both (Feb 28 and Mar 2 are two days; week of Mar 2
	// is kept as weekly anyway).
	objs, _ := f.dest.List(context.Background(), "")
	got := label(objs)
	wantObjs := "db@2025-03-03T02:00 db@2025-03-04T02:00 full@2025-02-28T10:00 full@2025-03-02T02:00"
	if got != wantObjs {
		t.Fatalf("after retention:\n got  %s\n want %s", got, wantObjs)
	}
	if st.Deleted != 1 {
		t.Fatalf("deleted %d", st.Deleted)
	}
}

func TestSchedulerNoCatchUpWhenRecent(t *testing.T) {
	start := time.Date(2025, 3, 5, 10, 0, 0, 0, time.UTC) // Wednesday
	f := newSchedFixture(t, start, nil)
	// A full backup 3 days ago and a db backup this night: nothing is due.
	for _, o := range []Object{objAt(KindFull, "2025-03-02T02:00"), objAt(KindDatabase, "2025-03-05T02:00")} {
		if err := os.WriteFile(filepath.Join(f.dest.Dir(), o.Name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.sched.Run(ctx) }()
	if d := f.nextTimer(t); !d.Equal(time.Date(2025, 3, 6, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("armed for %v", d)
	}
	cancel()
	<-done
	if st := f.sched.Stats(); st.Runs != 0 {
		t.Fatalf("ran at start: %+v", st)
	}
}

func TestSchedulerDiscardsBadBackup(t *testing.T) {
	start := time.Date(2025, 3, 5, 10, 0, 0, 0, time.UTC)
	f := newSchedFixture(t, start, func(c *ScheduleConfig) {
		c.Backup.Destination = corruptingDest{c.Backup.Destination}
		c.SkipCatchUp = true
	})
	r := f.sched.RunOnce(context.Background(), KindDatabase)
	if r.OK() || r.Step != "verify" || !errors.Is(r.Err, ErrTampered) || !r.Discarded {
		t.Fatalf("run: %+v", r)
	}
	if objs, _ := f.dest.List(context.Background(), ""); len(objs) != 0 {
		t.Fatalf("bad archive kept: %+v", objs)
	}
	if st := f.sched.Stats(); st.Failures != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestSchedulerIntegrityOnlyWithoutIdentity(t *testing.T) {
	f := newSchedFixture(t, time.Date(2025, 3, 5, 10, 0, 0, 0, time.UTC), func(c *ScheduleConfig) { c.Identities = nil })
	r := f.sched.RunOnce(context.Background(), KindFull)
	if !r.OK() || r.Verified.Manifest != nil || r.Verified.SHA256 != r.Result.SHA256 {
		t.Fatalf("run: %+v", r)
	}
	// The archive is fine for whoever holds the identity.
	if _, err := Verify(context.Background(), f.dest, r.Result.Name, []age.Identity{f.id}); err != nil {
		t.Fatal(err)
	}
}

func TestSchedulerNext(t *testing.T) {
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	s, err := NewScheduler(ScheduleConfig{
		Backup:   Config{Database: &fakeDumper{}, Recipients: []age.Recipient{mustRecipient(t)}, Destination: &LocalDir{dir: t.TempDir()}},
		DailyAt:  2*time.Hour + 30*time.Minute,
		Location: ams,
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ now, want string }{
		{"2025-03-05T00:00:00Z", "2025-03-05T01:30:00Z"}, // 02:30 CET
		{"2025-03-05T01:30:00Z", "2025-03-06T01:30:00Z"}, // exactly at: the next day
		{"2025-03-29T12:00:00Z", "2025-03-30T01:30:00Z"}, // 02:30 does not exist on the DST day: Go normalises to 03:30 CEST
		{"2025-07-01T12:00:00Z", "2025-07-02T00:30:00Z"}, // 02:30 CEST
	}
	for _, tc := range cases {
		now, _ := time.Parse(time.RFC3339, tc.now)
		got, kind := s.Next(now)
		if got.UTC().Format(time.RFC3339) != tc.want || kind != KindDatabase {
			t.Errorf("Next(%s) = %s %s, want %s db", tc.now, got.UTC().Format(time.RFC3339), kind, tc.want)
		}
	}
}

func mustRecipient(t *testing.T) age.Recipient {
	_, r := testKey(t)
	return r
}

// corruptingDest flips a byte of every object it stores.
type corruptingDest struct{ Destination }

func (c corruptingDest) Put(ctx context.Context, name string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b[len(b)/2] ^= 1
	return c.Destination.Put(ctx, name, bytes.NewReader(b))
}
