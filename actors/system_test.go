package actors

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/devicetwin"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// TestApplyPublishPersistThenDone: when done(nil) runs, the frame's
// events are published and the twin's new state is durable.
func TestApplyPublishPersistThenDone(t *testing.T) {
	d := newTestDevice(1, 0x26011001)
	h := newHarness(t, []*testDevice{d}, nil)
	f := d.uplink(t, 1, t0, gw1)

	type seen struct {
		err     error
		events  int
		version uint64
	}
	ch := make(chan seen, 1)
	h.sys.HandleUplink(context.Background(), f, func(err error) {
		s := seen{err: err, events: len(h.sink.ids())}
		if rec, lerr := h.store.LoadTwin(context.Background(), testCustomer.String(), pebblestore.KindSensor, pebblestore.EUI(d.eui())); lerr == nil {
			s.version = rec.Version
		}
		ch <- s
	})
	var got seen
	select {
	case got = <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("no done")
	}
	if got.err != nil || got.events == 0 || got.version != 1 {
		t.Fatalf("at done: err %v, %d events published, stored version %d; want nil, >0, 1", got.err, got.events, got.version)
	}
	st, _ := h.stored(t, d)
	sameState(t, "after one frame", st, d.reference(t, f))

	// Every published event carries the tenancy and a deterministic id,
	// and is kept in the recent window.
	ref := d.reference(t)
	evs := ref.ApplyFrame(&devicetwin.Frame{DevEUI: d.eui(), PHYPayload: f.PhyPayload, Rx: devicetwin.Rx{GatewayEUI: gw1, RSSI: -80, SNR: 7.5, ReceivedAt: t0}}, mustKeys(t, d), nil)
	ids := h.sink.ids()
	for _, e := range evs {
		if ids[e.ID.String()] != 1 {
			t.Errorf("event %s published %d times, want once", e.ID, ids[e.ID.String()])
		}
	}
	for _, e := range h.sink.snapshot() {
		if e.GetCustomerId() != testCustomer.String() || e.GetPartnerId() != testPartner.String() || e.GetSiteId() != testSite.String() || e.GetTapPointId() == "" {
			t.Fatalf("event without tenancy: %v", e)
		}
	}
	recent, err := h.store.RecentEvents(context.Background(), testCustomer.String(), pebblestore.EUI(d.eui()), t0.Add(-time.Hour), t0.Add(time.Hour), 100)
	if err != nil || len(recent) != len(evs) {
		t.Fatalf("recent window: %d events, err %v; want %d", len(recent), err, len(evs))
	}
}

// TestPipelining: a twin applies later frames while earlier ones are still
// being published; all become durable in order.
func TestPipelining(t *testing.T) {
	d := newTestDevice(2, 0x26011002)
	applied := make(chan struct{}, 64)
	h := newHarness(t, []*testDevice{d}, func(c *Config) {
		c.Hooks.BeforeApply = func(kind pebblestore.Kind, _ devicetwin.EUI64, in any) {
			if _, ok := in.(*frameMsg); ok {
				applied <- struct{}{}
			}
		}
	})
	gate := make(chan struct{})
	h.sink.mu.Lock()
	h.sink.gate = gate
	h.sink.mu.Unlock()

	var frames []*lorawanv1.UplinkFrame
	var chs []<-chan error
	for i := range 8 {
		f := d.uplink(t, uint32(i+1), t0.Add(time.Duration(i)*15*time.Minute), gw1)
		frames = append(frames, f)
		chs = append(chs, h.send(f))
	}
	// While the first Publish is held, the twin applies all eight frames.
	for i := range frames {
		select {
		case <-applied:
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of 8 frames applied while the first publish is in flight: the twin does not pipeline", i)
		}
	}
	for i, ch := range chs {
		select {
		case err := <-ch:
			t.Fatalf("frame %d done (%v) before its events were published", i, err)
		default:
		}
	}
	close(gate)
	for i, ch := range chs {
		if err := wait(t, ch); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	st, _ := h.stored(t, d)
	sameState(t, "after 8 pipelined frames", st, d.reference(t, frames...))
}

// TestFailuresReloadAndReapply: a failed publish or persist makes the twin
// reload its durable state and re-apply what was not durable, so no frame
// is lost or applied twice; a failure that persists ends in ErrRetry.
func TestFailuresReloadAndReapply(t *testing.T) {
	tests := []struct {
		name        string
		publishFail func(int) bool
		persistFail func(int) bool
		// outage: every attempt fails until the test ends the outage.
		outage bool
	}{
		{name: "first publish fails", publishFail: func(c int) bool { return c == 1 }},
		{name: "second persist fails", persistFail: func(c int) bool { return c == 2 }},
		{name: "publish outage", outage: true},
		{name: "persist outage", outage: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDevice(10+i, 0x26012000+uint32(i))
			st, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir(), NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			var down atomic.Bool
			down.Store(tt.outage)
			outage := func(int) bool { return down.Load() }
			if tt.outage && strings.HasPrefix(tt.name, "publish") {
				tt.publishFail = outage
			} else if tt.outage {
				tt.persistFail = outage
			}
			flaky := &flakyStore{Store: st, fail: tt.persistFail}
			h := newHarness(t, []*testDevice{d}, func(c *Config) { c.Store = flaky })
			h.store = st
			h.sink.fail = tt.publishFail
			var frames []*lorawanv1.UplinkFrame
			var chs []<-chan error
			for j := range 4 {
				f := d.uplink(t, uint32(j+1), t0.Add(time.Duration(j)*15*time.Minute), gw1)
				frames = append(frames, f)
				chs = append(chs, h.send(f))
			}
			if tt.outage {
				// The twin backs off and holds every frame (in order)
				// instead of handing the first back while applying the
				// next ones; nothing completes during the outage.
				waitUntil(t, func() bool { h.clock.Advance(retryMaxDelay); return h.sys.Stats().RecoveryWaits >= 3 })
				for j, ch := range chs {
					select {
					case err := <-ch:
						t.Fatalf("frame %d completed during the outage: %v", j, err)
					default:
					}
				}
				down.Store(false)
				h.clock.Advance(retryMaxDelay) // the pending retry
			}
			for j, ch := range chs {
				if err := wait(t, ch); err != nil {
					t.Fatalf("frame %d: %v", j, err)
				}
			}
			got, _ := h.stored(t, d)
			sameState(t, tt.name, got, d.reference(t, frames...))
			ref := d.reference(t)
			keys := mustKeys(t, d)
			ids := h.sink.ids()
			for _, f := range frames {
				for _, e := range ref.ApplyFrame(&devicetwin.Frame{DevEUI: d.eui(), PHYPayload: f.PhyPayload, Rx: rxOf(f)}, keys, nil) {
					if ids[e.ID.String()] == 0 {
						t.Fatalf("event %s lost", e.ID)
					}
				}
			}
		})
	}
}

// TestOutageGiveUpOnClose: a twin waiting out an outage gives every held
// input back (ErrRetry) when the system closes.
func TestOutageGiveUpOnClose(t *testing.T) {
	d := newTestDevice(30, 0x26014001)
	h := newHarness(t, []*testDevice{d}, nil)
	h.sink.fail = func(int) bool { return true }
	var chs []<-chan error
	for j := range 3 {
		chs = append(chs, h.send(d.uplink(t, uint32(j+1), t0.Add(time.Duration(j)*15*time.Minute), gw1)))
	}
	waitUntil(t, func() bool { h.clock.Advance(retryMaxDelay); return h.sys.Stats().RecoveryWaits >= 1 })
	closed := make(chan error, 1)
	go func() { closed <- h.sys.Close(context.Background()) }()
	waitUntil(t, func() bool { return h.sys.closing.Load() })
	h.clock.Advance(retryMaxDelay) // the pending retry finds the system closing
	for j, ch := range chs {
		if err := wait(t, ch); !errors.Is(err, ErrRetry) {
			t.Fatalf("frame %d: %v, want ErrRetry", j, err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestPanicRestartsOnlyThatTwin: a panic while applying one frame restarts
// that twin alone from its durable state; the frame is rejected as
// twin_panic, every other frame is applied exactly once.
func TestPanicRestartsOnlyThatTwin(t *testing.T) {
	a, b := newTestDevice(20, 0x26013001), newTestDevice(21, 0x26013002)
	var boom atomic.Bool
	h := newHarness(t, []*testDevice{a, b}, func(c *Config) {
		c.Hooks.BeforeApply = func(kind pebblestore.Kind, eui devicetwin.EUI64, in any) {
			if _, ok := in.(*frameMsg); ok && eui == a.eui() && boom.Load() {
				boom.Store(false)
				panic("injected")
			}
		}
	})
	fa1, fb1 := a.uplink(t, 1, t0, gw1), b.uplink(t, 1, t0, gw1)
	mustApply(t, h, fa1, fb1)
	boom.Store(true)
	fa2 := a.uplink(t, 2, t0.Add(15*time.Minute), gw1)
	err := wait(t, h.send(fa2))
	if RejectReason(err) != ReasonTwinPanic {
		t.Fatalf("panicking frame: %v, want twin_panic", err)
	}
	fa3, fb2 := a.uplink(t, 3, t0.Add(30*time.Minute), gw1), b.uplink(t, 2, t0.Add(15*time.Minute), gw1)
	mustApply(t, h, fa3, fb2)
	if got := h.sys.Stats().Restarts; got != 1 {
		t.Fatalf("%d restarts, want 1", got)
	}
	sa, _ := h.stored(t, a)
	sameState(t, "panicking twin", sa, a.reference(t, fa1, fa3))
	sb, _ := h.stored(t, b)
	sameState(t, "other twin", sb, b.reference(t, fb1, fb2))
}

// TestPassivationAndReactivation: an idle twin stops; its next frame
// activates it again from the store.
func TestPassivationAndReactivation(t *testing.T) {
	d := newTestDevice(30, 0x26014001)
	passivated, pch := hookCh()
	h := newHarness(t, []*testDevice{d}, func(c *Config) { c.IdleTimeout = time.Minute; c.Hooks.Passivated = passivated })
	f1 := d.uplink(t, 1, t0, gw1)
	mustApply(t, h, f1)
	h.clock.Advance(2 * time.Minute)
	waitKey(t, pch, "sensor/"+d.eui().String())
	f2 := d.uplink(t, 2, t0.Add(15*time.Minute), gw1)
	mustApply(t, h, f2)
	if s := h.sys.Stats(); s.Activations < 3 || s.Passivations < 1 { // sensor twice, gateway once
		t.Fatalf("stats %+v: want the sensor activated twice and passivated once", s)
	}
	st, v := h.stored(t, d)
	sameState(t, "after reactivation", st, d.reference(t, f1, f2))
	if v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
}

// TestDeadlineTickForPassivatedTwin: a passivated twin is woken by the
// deadline index at its next deadline and ticks (SENSOR_OFFLINE).
func TestDeadlineTickForPassivatedTwin(t *testing.T) {
	d := newTestDevice(40, 0x26015001)
	passivated, pch := hookCh()
	activated, ach := hookCh()
	h := newHarness(t, []*testDevice{d}, func(c *Config) {
		c.IdleTimeout = time.Minute
		c.Hooks.Passivated, c.Hooks.Activated = passivated, activated
	})
	mustApply(t, h, d.uplink(t, 1, t0, devicetwin.EUI64{}))
	waitKey(t, ach, "sensor/"+d.eui().String())
	h.clock.Advance(2 * time.Minute)
	waitKey(t, pch, "sensor/"+d.eui().String())
	// 15 min interval × 2.5: offline 37.5 min after the frame.
	h.clock.Advance(40 * time.Minute)
	waitKey(t, ach, "sensor/"+d.eui().String())
	h.sink.waitFor(t, "SENSOR_OFFLINE", func(evs []*twinv1.TwinEvent) bool {
		for _, e := range evs {
			if a := e.GetAlarm(); a != nil && a.GetType() == twinv1.AlarmType_ALARM_TYPE_SENSOR_OFFLINE {
				return true
			}
		}
		return false
	})
	if h.sys.Stats().Ticks == 0 {
		t.Fatal("no tick counted")
	}
}

// TestRejections: bad input is rejected with its reason and counted; the
// twin goes on.
func TestRejections(t *testing.T) {
	d := newTestDevice(50, 0x26016001)
	h := newHarness(t, []*testDevice{d}, nil)
	good := d.uplink(t, 5, t0, gw1)
	mustApply(t, h, good)

	badMIC := d.uplink(t, 6, t0.Add(time.Minute), gw1)
	badMIC.PhyPayload = append([]byte(nil), badMIC.PhyPayload...)
	badMIC.PhyPayload[len(badMIC.PhyPayload)-1] ^= 0xff
	replay := d.uplink(t, 5, t0.Add(2*time.Hour), gw1)
	unknown := newTestDevice(51, 0x26016002).uplink(t, 1, t0, gw1)
	join := &lorawanv1.UplinkFrame{PhyPayload: make([]byte, 23), ReceivedAt: timestamppb.New(t0)}
	noTime := d.uplink(t, 7, t0, gw1)
	noTime.ReceivedAt = nil

	tests := []struct {
		name   string
		f      *lorawanv1.UplinkFrame
		reason string
	}{
		{"bad MIC", badMIC, "bad_mic"},
		{"replayed counter", replay, "replay"},
		{"unknown DevAddr", unknown, ReasonUnknownDevAddr},
		{"join request", join, ReasonUnsupported},
		{"garbage", &lorawanv1.UplinkFrame{PhyPayload: []byte{0x40, 1, 2}, ReceivedAt: timestamppb.New(t0)}, ReasonMalformed},
		{"no receive time", noTime, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wait(t, h.send(tt.f))
			if !errors.Is(err, ErrRejected) || RejectReason(err) != tt.reason {
				t.Fatalf("got %v, want a rejection %q", err, tt.reason)
			}
			if !strings.HasPrefix(err.Error(), tt.reason) || ReasonFromDetail(err.Error()) != tt.reason {
				t.Fatalf("error text %q does not start with its reason", err)
			}
		})
	}
	after := d.uplink(t, 8, t0.Add(3*time.Hour), gw1)
	mustApply(t, h, after)
	if got := h.sys.Stats().Rejected; got != uint64(len(tests)) {
		t.Fatalf("%d rejections counted, want %d", got, len(tests))
	}
}

// TestMultiCandidateRouting: devices sharing a DevAddr are told apart by
// MIC; the wrong one does not count the frame against itself.
func TestMultiCandidateRouting(t *testing.T) {
	a, b := newTestDevice(60, 0x26017001), newTestDevice(61, 0x26017001)
	h := newHarness(t, []*testDevice{a, b}, nil)
	fb := b.uplink(t, 1, t0, gw1)
	mustApply(t, h, fb)
	sb, _ := h.stored(t, b)
	sameState(t, "second candidate", sb, b.reference(t, fb))
	if _, err := h.store.LoadTwin(context.Background(), testCustomer.String(), pebblestore.KindSensor, pebblestore.EUI(a.eui())); !errors.Is(err, pebblestore.ErrNotFound) {
		t.Fatalf("first candidate was written (%v): a foreign frame changed it", err)
	}
	fa := a.uplink(t, 1, t0, gw1)
	mustApply(t, h, fa)
	sa, _ := h.stored(t, a)
	sameState(t, "first candidate", sa, a.reference(t, fa))
	// A twin that rejected something recently (a replay received later)
	// still passes on a frame that is not its own.
	if err := wait(t, h.send(a.uplink(t, 1, t0.Add(2*time.Hour), gw1))); RejectReason(err) != "replay" {
		t.Fatalf("replay on the first candidate: %v", err)
	}
	fb2 := b.uplink(t, 2, t0.Add(time.Hour), gw1)
	mustApply(t, h, fb2)
	sb, _ = h.stored(t, b)
	sameState(t, "second candidate after the first one's rejection", sb, b.reference(t, fb, fb2))
	// A frame valid for neither is the last candidate's BAD_MIC.
	bad := a.uplink(t, 2, t0.Add(3*time.Hour), gw1)
	bad.PhyPayload = append([]byte(nil), bad.PhyPayload...)
	bad.PhyPayload[len(bad.PhyPayload)-2] ^= 1
	if err := wait(t, h.send(bad)); RejectReason(err) != "bad_mic" {
		t.Fatalf("frame for neither: %v, want bad_mic", err)
	}
}

// TestGatewayTwins: each uplink copy reaches its gateway's twin (link
// statistics) and stats records produce gateway status events.
func TestGatewayTwins(t *testing.T) {
	d := newTestDevice(70, 0x26018001)
	h := newHarness(t, []*testDevice{d}, nil)
	gw2 := devicetwin.EUI64{0xaa, 0x55, 0, 0, 0, 0, 0, 2}
	f := d.uplink(t, 1, t0, gw1)
	copy2 := d.uplink(t, 1, t0.Add(20*time.Millisecond), gw2)
	mustApply(t, h, f, copy2)
	for _, gw := range []devicetwin.EUI64{gw1, gw2} {
		rec, err := h.store.LoadTwin(context.Background(), DefaultGatewayTenant, pebblestore.KindGateway, pebblestore.EUI(gw))
		if err != nil {
			t.Fatalf("gateway %s: %v", gw, err)
		}
		g, err := devicetwin.UnmarshalGatewaySnapshot(rec.Snapshot)
		if err != nil || g.TotalUplinks() != 1 {
			t.Fatalf("gateway %s: %d uplinks (%v), want 1", gw, g.TotalUplinks(), err)
		}
	}
	ch := make(chan error, 1)
	h.sys.HandleGatewayStats(context.Background(), &lorawanv1.GatewayStats{GatewayEui: gw1[:], Time: timestamppb.New(t0.Add(time.Minute)), RxPacketsReceived: 3}, func(err error) { ch <- err })
	if err := wait(t, ch); err != nil {
		t.Fatal(err)
	}
	h.sink.waitFor(t, "gateway status", func(evs []*twinv1.TwinEvent) bool {
		for _, e := range evs {
			if e.GetGatewayStatus() != nil && e.GetDeviceEui() == gw1.String() {
				return true
			}
		}
		return false
	})
}

// TestCloseRetriesNewInput: after Close starts, inputs are handed back
// for a retry and Close returns once nothing is in flight.
func TestCloseRetriesNewInput(t *testing.T) {
	d := newTestDevice(80, 0x26019001)
	h := newHarness(t, []*testDevice{d}, nil)
	mustApply(t, h, d.uplink(t, 1, t0, gw1))
	if err := h.sys.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, h.send(d.uplink(t, 2, t0.Add(time.Minute), gw1))); !errors.Is(err, ErrRetry) || !errors.Is(err, ErrClosed) {
		t.Fatalf("input after Close: %v, want ErrRetry and ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	st := &flakyStore{}
	ok := Config{Store: st, Events: newFakeSink(), Directory: newFakeDirectory()}
	tests := []struct {
		name  string
		tweak func(*Config)
	}{
		{"no store", func(c *Config) { c.Store = nil }},
		{"no events", func(c *Config) { c.Events = nil }},
		{"no directory", func(c *Config) { c.Directory = nil }},
		{"too many shards", func(c *Config) { c.Shards = 5000 }},
		{"short idle", func(c *Config) { c.IdleTimeout = time.Millisecond }},
		{"bad tenant", func(c *Config) { c.GatewayTenant = "A/B" }},
		{"negative delay", func(c *Config) { c.PublishMaxDelay = -1 }},
	}
	c := ok
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if c.Shards != DefaultShards || c.IdleTimeout != DefaultIdleTimeout || c.GatewayTenant != DefaultGatewayTenant {
		t.Fatalf("defaults not applied: %+v", c)
	}
	for _, tt := range tests {
		c := ok
		tt.tweak(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", tt.name, err)
		}
	}
}

func mustKeys(tb testing.TB, d *testDevice) *lorawanKeys {
	tb.Helper()
	k, err := newKeys(d)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func rxOf(f *lorawanv1.UplinkFrame) devicetwin.Rx {
	return devicetwin.Rx{GatewayEUI: euiOf(f.GetGatewayEui()), RSSI: int16(f.GetRssi()), SNR: f.GetSnr(), ReceivedAt: f.GetReceivedAt().AsTime()}
}

// TestDeadlineScanAtStart: a node that starts with stored twins learns
// their deadlines from the store and wakes them when due, although no
// input ever reaches them.
func TestDeadlineScanAtStart(t *testing.T) {
	d := newTestDevice(90, 0x2601a001)
	h := newHarness(t, []*testDevice{d}, nil)
	mustApply(t, h, d.uplink(t, 1, t0, devicetwin.EUI64{}))
	if err := h.sys.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	activated, ach := hookCh()
	scanned := make(chan int, 1)
	sink := newFakeSink()
	clock := &fakeClock{now: t0}
	sys, err := NewSystem(Config{Store: h.store, Events: sink, Directory: h.dir, Clock: clock, Shards: 2,
		Hooks: Hooks{Activated: activated, DeadlinesScanned: func(n int) { scanned <- n }}})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close(context.Background())
	select {
	case n := <-scanned:
		if n != 1 {
			t.Fatalf("scan indexed %d deadlines, want 1", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no deadline scan")
	}
	clock.Advance(40 * time.Minute)
	waitKey(t, ach, "sensor/"+d.eui().String())
	sink.waitFor(t, "SENSOR_OFFLINE", func(evs []*twinv1.TwinEvent) bool {
		for _, e := range evs {
			if a := e.GetAlarm(); a != nil && a.GetType() == twinv1.AlarmType_ALARM_TYPE_SENSOR_OFFLINE {
				return true
			}
		}
		return false
	})
}

// TestNotServedHere: in a cluster, an input for a twin whose partition this
// member does not serve goes back for redelivery (to the member that
// does) instead of activating the twin here.
func TestNotServedHere(t *testing.T) {
	d := newTestDevice(31, 0x26015001)
	var served atomic.Bool
	h := newHarness(t, []*testDevice{d}, func(c *Config) {
		c.Owns = func(pebblestore.Kind, pebblestore.EUI) bool { return served.Load() }
	})
	if err := wait(t, h.send(d.uplink(t, 1, t0, gw1))); !errors.Is(err, ErrRetry) {
		t.Fatalf("frame for a twin served elsewhere: %v, want ErrRetry", err)
	}
	if st := h.sys.Stats(); st.Activations != 0 {
		t.Fatalf("%d activations, want none", st.Activations)
	}
	served.Store(true)
	mustApply(t, h, d.uplink(t, 1, t0, gw1))
}
