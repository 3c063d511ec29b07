package actors

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// t0 is the tests' "now" (a Monday, well after the devices were set up).
var t0 = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

var (
	testCustomer = uuid.MustParse("3f0c6f8e-9a51-4b7e-8a4f-2d3f5b1c0a11")
	testPartner  = uuid.MustParse("7d2e1c3b-4a5f-4e6d-9c8b-1a2b3c4d5e6f")
	testSite     = uuid.MustParse("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
	gw1          = devicetwin.EUI64{0xaa, 0x55, 0, 0, 0, 0, 0, 1}
)

// testDevice is a registered ABP sensor whose frames the tests build.
type testDevice struct {
	cand postgres.Candidate
	nwk  lorawan.AES128Key
	app  lorawan.AES128Key
}

func newTestDevice(i int, addr uint32) *testDevice {
	d := &testDevice{}
	for j := range 16 {
		d.nwk[j] = byte(i*31 + j + 1)
		d.app[j] = byte(i*17 + j + 101)
	}
	eui := postgres.EUI64{0x00, 0x04, 0xa3, 0x0b, 0, 0, byte(i >> 8), byte(i)}
	var da postgres.DevAddr
	da[0], da[1], da[2], da[3] = byte(addr>>24), byte(addr>>16), byte(addr>>8), byte(addr)
	d.cand = postgres.Candidate{
		DevEUI: eui, DevAddr: da, HasSession: true, Activation: postgres.ABP,
		CustomerID: testCustomer, PartnerID: testPartner, SiteID: testSite,
		TapPointID: uuid.NewSHA1(testSite, eui[:]), TapKind: postgres.TapHot, RuleProfile: postgres.ProfileNL,
		ExpectedInterval: 15 * time.Minute, NwkSKey: postgres.AES128Key(d.nwk), AppSKey: postgres.AES128Key(d.app),
	}
	return d
}

func (d *testDevice) eui() devicetwin.EUI64 { return devicetwin.EUI64(d.cand.DevEUI) }

// uplink builds measurement frame fcnt received at at by gw.
func (d *testDevice) uplink(tb testing.TB, fcnt uint32, at time.Time, gw devicetwin.EUI64) *lorawanv1.UplinkFrame {
	tb.Helper()
	m := clipr.Measurement{IntervalS: 180, BatteryMV: 3600}
	for i := range 5 {
		m.Samples = append(m.Samples, clipr.Sample{Pipe: clipr.TempFromCelsius(61 + float64(i)/10), Ambient: clipr.TempFromCelsius(21)})
	}
	port, payload, err := clipr.Encode(m)
	if err != nil {
		tb.Fatal(err)
	}
	phy, err := lorawan.BuildDataFrame(d.nwk, d.app, lorawan.DataFrameParams{
		MType: lorawan.MTypeUnconfirmedDataUp, DevAddr: lorawan.DevAddr(d.cand.DevAddr), FCnt: fcnt,
		HasFPort: true, FPort: port, FRMPayload: payload,
	})
	if err != nil {
		tb.Fatal(err)
	}
	f := &lorawanv1.UplinkFrame{PhyPayload: phy, Rssi: -80, Snr: 7.5, ReceivedAt: timestamppb.New(at)}
	if gw != (devicetwin.EUI64{}) {
		f.GatewayEui = gw[:]
	}
	return f
}

// reference applies frames to a fresh twin with the core alone: what the
// System must end up with.
func (d *testDevice) reference(tb testing.TB, frames ...*lorawanv1.UplinkFrame) devicetwin.SensorState {
	tb.Helper()
	cfg, err := SensorConfig(&d.cand)
	if err != nil {
		tb.Fatal(err)
	}
	s := devicetwin.NewSensor(d.eui(), cfg)
	keys, err := lorawan.NewSessionKeys(d.nwk, d.app)
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range frames {
		s.ApplyFrame(&devicetwin.Frame{DevEUI: d.eui(), PHYPayload: f.GetPhyPayload(), Rx: devicetwin.Rx{
			GatewayEUI: euiOf(f.GetGatewayEui()), RSSI: int16(f.GetRssi()), SNR: f.GetSnr(), ReceivedAt: f.GetReceivedAt().AsTime(),
		}}, keys, nil)
	}
	return s
}

// fakeDirectory is the registry cache.
type fakeDirectory struct {
	mu     sync.Mutex
	byAddr map[postgres.DevAddr][]postgres.Candidate
	byEUI  map[postgres.EUI64]postgres.Candidate
}

func newFakeDirectory(devs ...*testDevice) *fakeDirectory {
	d := &fakeDirectory{byAddr: map[postgres.DevAddr][]postgres.Candidate{}, byEUI: map[postgres.EUI64]postgres.Candidate{}}
	for _, dev := range devs {
		d.byAddr[dev.cand.DevAddr] = append(d.byAddr[dev.cand.DevAddr], dev.cand)
		d.byEUI[dev.cand.DevEUI] = dev.cand
	}
	return d
}

func (d *fakeDirectory) Lookup(a postgres.DevAddr) []postgres.Candidate {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byAddr[a]
}

func (d *fakeDirectory) Device(e postgres.EUI64) (postgres.Candidate, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.byEUI[e]
	return c, ok
}

// fakeSink records published events. fail, when set, decides per call
// whether Publish fails; gate, when set, holds every call until closed.
type fakeSink struct {
	mu      sync.Mutex
	calls   int
	events  []*twinv1.TwinEvent
	fail    func(call int) bool
	gate    chan struct{}
	changed chan struct{}
}

func newFakeSink() *fakeSink { return &fakeSink{changed: make(chan struct{}, 1)} }

func (s *fakeSink) Publish(ctx context.Context, events ...*twinv1.TwinEvent) error {
	s.mu.Lock()
	s.calls++
	call, fail, gate := s.calls, s.fail, s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fail != nil && fail(call) {
		return errors.New("fake sink: publish failed")
	}
	for _, e := range events {
		s.events = append(s.events, proto.Clone(e).(*twinv1.TwinEvent)) // a sink must not keep them
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

func (s *fakeSink) ids() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for _, e := range s.events {
		m[e.GetEventId()]++
	}
	return m
}

func (s *fakeSink) snapshot() []*twinv1.TwinEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*twinv1.TwinEvent(nil), s.events...)
}

// waitFor waits until cond holds on the published events.
func (s *fakeSink) waitFor(tb testing.TB, what string, cond func([]*twinv1.TwinEvent) bool) {
	tb.Helper()
	timeout := time.After(20 * time.Second)
	for {
		if cond(s.snapshot()) {
			return
		}
		select {
		case <-s.changed:
		case <-timeout:
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

// flakyStore fails the Submit calls fail selects (the unit is not written).
type flakyStore struct {
	*pebblestore.Store
	mu    sync.Mutex
	calls int
	fail  func(call int) bool
}

func (f *flakyStore) Submit(ctx context.Context, w []pebblestore.Write, done func(error)) error {
	f.mu.Lock()
	f.calls++
	fail := f.fail != nil && f.fail(f.calls)
	f.mu.Unlock()
	if fail {
		go done(errors.New("flaky store: commit failed"))
		return nil
	}
	return f.Store.Submit(ctx, w, done)
}

// fakeClock fires timers only when advanced.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c   *fakeClock
	at  time.Time
	f   func()
	off bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	if d <= 0 {
		c.Advance(0)
	}
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.off
	t.off = true
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	was := !t.off
	t.at, t.off = t.c.now.Add(d), false
	t.c.mu.Unlock()
	if d <= 0 {
		t.c.Advance(0)
	}
	return was
}

// Advance moves the clock and runs the timers that came due, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.off && !t.at.After(c.now) {
			t.off = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.f()
	}
}

// harness is a System on a real Pebble store with fake other ports.
type harness struct {
	sys   *System
	store *pebblestore.Store
	sink  *fakeSink
	dir   *fakeDirectory
	clock *fakeClock
	reg   *prometheus.Registry
}

func newHarness(tb testing.TB, devs []*testDevice, tweak func(*Config)) *harness {
	tb.Helper()
	st, err := pebblestore.Open(pebblestore.Config{Dir: tb.TempDir(), NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	h := &harness{store: st, sink: newFakeSink(), dir: newFakeDirectory(devs...), clock: &fakeClock{now: t0}, reg: prometheus.NewRegistry()}
	cfg := Config{Store: st, Events: h.sink, Directory: h.dir, Clock: h.clock, Registerer: h.reg, Shards: 2}
	if tweak != nil {
		tweak(&cfg)
	}
	h.sys, err = NewSystem(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = h.sys.Close(context.Background())
		_ = st.Close()
	})
	return h
}

// send hands a frame to the System; the channel gets its done error.
func (h *harness) send(f *lorawanv1.UplinkFrame) <-chan error {
	ch := make(chan error, 1)
	h.sys.HandleUplink(context.Background(), f, func(err error) { ch <- err })
	return ch
}

func wait(tb testing.TB, ch <-chan error) error {
	tb.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(20 * time.Second):
		tb.Fatal("timed out waiting for done")
		return nil
	}
}

func mustApply(tb testing.TB, h *harness, frames ...*lorawanv1.UplinkFrame) {
	tb.Helper()
	chs := make([]<-chan error, len(frames))
	for i, f := range frames {
		chs[i] = h.send(f)
	}
	for i, ch := range chs {
		if err := wait(tb, ch); err != nil {
			tb.Fatalf("frame %d: %v", i, err)
		}
	}
}

// stored loads a sensor's durable state.
func (h *harness) stored(tb testing.TB, d *testDevice) (devicetwin.SensorState, uint64) {
	tb.Helper()
	rec, err := h.store.LoadTwin(context.Background(), testCustomer.String(), pebblestore.KindSensor, pebblestore.EUI(d.eui()))
	if err != nil {
		tb.Fatalf("load %s: %v", d.eui(), err)
	}
	s, err := devicetwin.UnmarshalSensorSnapshot(rec.Snapshot)
	if err != nil {
		tb.Fatal(err)
	}
	return s, rec.Version
}

func sameState(tb testing.TB, what string, got, want devicetwin.SensorState) {
	tb.Helper()
	if got != want {
		g, _ := got.MarshalSnapshot()
		w, _ := want.MarshalSnapshot()
		tb.Fatalf("%s: state differs from the reference\n got %x\nwant %x", what, g, w)
	}
}

// hookCh returns a hook that reports twin keys on a channel.
func hookCh() (func(pebblestore.Kind, devicetwin.EUI64), chan string) {
	ch := make(chan string, 64)
	return func(k pebblestore.Kind, e devicetwin.EUI64) { ch <- fmt.Sprintf("%s/%s", k, e) }, ch
}

func waitKey(tb testing.TB, ch chan string, want string) {
	tb.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-timeout:
			tb.Fatalf("timed out waiting for %s", want)
		}
	}
}

type lorawanKeys = lorawan.SessionKeys

func newKeys(d *testDevice) (*lorawan.SessionKeys, error) {
	return lorawan.NewSessionKeys(d.nwk, d.app)
}

// waitUntil polls cond (a counter of the System) until it holds.
func waitUntil(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond) // polling a counter; no event to await
	}
}
