package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/devicetwin"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// heldClock is a TickClock the test moves by hand (a stream time that
// lags the timer clock while a backlog is replayed).
type heldClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *heldClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.at }
func (c *heldClock) set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = at
}

// countingClock counts the timer firings of a fakeClock.
type countingClock struct {
	*fakeClock
	fired atomic.Int64
}

func (c *countingClock) AfterFunc(d time.Duration, f func()) Timer {
	return c.fakeClock.AfterFunc(d, func() { c.fired.Add(1); f() })
}

func offlineAlarms(evs []*twinv1.TwinEvent) int {
	n := 0
	for _, e := range evs {
		if a := e.GetAlarm(); a != nil && a.GetType() == twinv1.AlarmType_ALARM_TYPE_SENSOR_OFFLINE {
			n++
		}
	}
	return n
}

// barrier hands the twin a redelivered frame and waits for it: the twin's
// mailbox is FIFO, so every timer message sent before was handled.
func barrier(t *testing.T, h *harness, d *testDevice, fcnt uint32) {
	t.Helper()
	if err := wait(t, h.send(d.uplink(t, fcnt, t0, devicetwin.EUI64{}))); err != nil && RejectReason(err) == "" {
		t.Fatalf("barrier frame: %v", err)
	}
}

// TestTickClockHoldsDeadline: a deadline due by the timer clock but not by
// the tick clock does not tick, the twin re-checks only every TickRetry
// (no busy loop), and once the tick clock passes the deadline the twin
// ticks exactly once, at the tick clock's time.
func TestTickClockHoldsDeadline(t *testing.T) {
	d := newTestDevice(140, 0x2601e001)
	tick := &heldClock{at: t0}
	clock := &countingClock{fakeClock: &fakeClock{now: t0}}
	h := newHarness(t, []*testDevice{d}, func(c *Config) {
		c.Clock, c.TickClock = clock, tick.Now
		c.IdleTimeout = 24 * time.Hour // stays active: its own timer ticks it
	})
	mustApply(t, h, d.uplink(t, 1, t0, devicetwin.EUI64{}))

	// 15 min interval × 2.5: offline at t0+37.5 min by the timer clock.
	clock.Advance(38 * time.Minute)
	before := clock.fired.Load()
	const period = time.Minute
	for range period / (100 * time.Millisecond) {
		clock.Advance(100 * time.Millisecond)
	}
	barrier(t, h, d, 1)
	if n := h.sys.Stats().Ticks; n != 0 {
		t.Fatalf("%d ticks while the tick clock is behind the deadline, want 0", n)
	}
	if n := offlineAlarms(h.sink.snapshot()); n != 0 {
		t.Fatalf("%d SENSOR_OFFLINE events while held back, want 0", n)
	}
	if n, most := clock.fired.Load()-before, int64(period/DefaultTickRetry)+2; n > most {
		t.Fatalf("%d timer firings in %v held back, want at most %d (busy loop)", n, period, most)
	}

	// The stream reaches the deadline: one tick, at the stream's time.
	at := t0.Add(38 * time.Minute)
	tick.set(at)
	for range 5 {
		clock.Advance(time.Second)
	}
	h.sink.waitFor(t, "SENSOR_OFFLINE", func(evs []*twinv1.TwinEvent) bool { return offlineAlarms(evs) > 0 })
	for range 5 {
		clock.Advance(time.Second)
	}
	barrier(t, h, d, 1)
	if n := h.sys.Stats().Ticks; n != 1 {
		t.Fatalf("%d ticks, want 1", n)
	}
	evs := h.sink.snapshot()
	if n := offlineAlarms(evs); n != 1 {
		t.Fatalf("%d SENSOR_OFFLINE events, want 1", n)
	}
	for _, e := range evs {
		if e.GetAlarm() != nil && e.GetEventTime().AsTime().After(at) {
			t.Fatalf("alarm at %v, after the tick clock's %v", e.GetEventTime().AsTime(), at)
		}
	}
}

// TestTickClockHoldsPassivatedDeadline: the index of passivated twins wakes
// a twin only when its deadline is due by the tick clock.
func TestTickClockHoldsPassivatedDeadline(t *testing.T) {
	d := newTestDevice(141, 0x2601e002)
	tick := &heldClock{at: t0}
	passivated, pch := hookCh()
	activated, ach := hookCh()
	fired, armed := make(chan int, 64), make(chan time.Time, 64)
	h := newHarness(t, []*testDevice{d}, func(c *Config) {
		c.TickClock = tick.Now
		c.IdleTimeout = time.Minute
		c.Hooks.Passivated, c.Hooks.Activated = passivated, activated
		c.Hooks.DeadlinesFired = func(n int) { fired <- n }
		c.Hooks.DeadlinesArmed = func(at time.Time) { armed <- at }
	})
	waitArmed := func(want time.Time) {
		t.Helper()
		select {
		case at := <-armed:
			if !at.Equal(want) {
				t.Fatalf("index armed at %v, want %v", at, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("deadline index did not arm")
		}
	}
	waitFired := func(want int) {
		t.Helper()
		select {
		case n := <-fired:
			if n != want {
				t.Fatalf("index woke %d twins, want %d", n, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("deadline index did not fire")
		}
	}
	name := "sensor/" + d.eui().String()
	mustApply(t, h, d.uplink(t, 1, t0, devicetwin.EUI64{}))
	waitKey(t, ach, name)
	h.clock.Advance(2 * time.Minute)
	waitKey(t, pch, name)
	// 15 min interval × 2.5: offline at t0+37.5 min.
	waitArmed(t0.Add(37*time.Minute + 30*time.Second))

	// Due by the timer clock, not by the tick clock: the index wakes
	// nobody and re-checks after TickRetry.
	h.clock.Advance(40 * time.Minute)
	waitFired(0)
	waitArmed(t0.Add(42*time.Minute + DefaultTickRetry))
	h.clock.Advance(DefaultTickRetry)
	waitFired(0)
	waitArmed(t0.Add(42*time.Minute + 2*DefaultTickRetry))

	tick.set(t0.Add(40 * time.Minute))
	h.clock.Advance(DefaultTickRetry)
	waitFired(1)
	waitKey(t, ach, name)
	h.sink.waitFor(t, "SENSOR_OFFLINE", func(evs []*twinv1.TwinEvent) bool { return offlineAlarms(evs) > 0 })
	barrier(t, h, d, 1)
	if n := h.sys.Stats().Ticks; n != 1 {
		t.Fatalf("%d ticks, want 1", n)
	}
}

// TestDeadlinesFireAt: the index fires at a future deadline, at once for
// one due by both clocks, and after TickRetry for one due by the timer
// clock only.
func TestDeadlinesFireAt(t *testing.T) {
	tick := t0
	d := &deadlines{s: &System{cfg: Config{TickClock: func() time.Time { return tick }, TickRetry: time.Second}}}
	now := t0.Add(time.Hour)
	for _, c := range []struct {
		at, want time.Time
	}{
		{now.Add(time.Minute), now.Add(time.Minute)},
		{t0, now},
		{t0.Add(time.Minute), now.Add(time.Second)},
	} {
		if got := d.fireAt(c.at, now); !got.Equal(c.want) {
			t.Errorf("fireAt(%v) = %v, want %v", c.at, got, c.want)
		}
	}
}
