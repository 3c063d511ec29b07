package devicetwin

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/snapshots golden files")

var testDev = EUI64{0, 4, 0xa3, 0x0b, 0, 0x1c, 5, 0x30}

func at(min int) time.Time { return propBase.Add(time.Duration(min) * time.Minute) }

func status(fcnt uint32, rx time.Time, gw int, rssi int16) Uplink {
	return Uplink{DevEUI: testDev, FCnt: fcnt, FPort: 3, Msg: clipr.Status{BatteryMV: 3100}, Rx: Rx{GatewayEUI: propGateways[gw], RSSI: rssi, ReceivedAt: rx}}
}

func TestClassify(t *testing.T) {
	s := NewSensor(testDev, SensorConfig{TapKind: HeaterOutlet})
	s.Apply(status(100, at(0), 0, -90), nil)
	s.Apply(status(98, at(0), 0, -90), nil) // late: 98 applied, 99 not
	last := toMS(at(0))
	for _, tc := range []struct {
		name string
		f    uint32
		rx   ms
		want verdict
	}{
		{"next", 101, last + 60000, vNew},
		{"jump within gap", 100 + 16384, last + 60000, vNew},
		{"jump beyond gap", 100 + 16385, last + 60000, vGap},
		{"copy of newest", 100, last + 1000, vDup},
		{"newest, much later", 100, last + 31000, vReplay},
		{"older applied, copy", 98, last, vDup},
		{"older applied, later", 98, last + 60000, vReplay},
		{"older never applied, with the newest", 99, last, vLate},
		{"older never applied, later", 99, last + 60000, vRewind},
		{"beyond the bitmap, with the newest", 10, last, vStale},
		{"beyond the bitmap, later", 10, last + 60000, vRewind},
	} {
		if got := s.classify(tc.f, tc.rx); got != tc.want {
			t.Errorf("%s: classify(%d) = %d, want %d", tc.name, tc.f, got, tc.want)
		}
	}
}

func TestApplySensorLeavesInputState(t *testing.T) {
	s := NewSensor(testDev, SensorConfig{TapKind: HeaterOutlet})
	before := s
	s2, ev := ApplySensor(s, status(1, at(0), 0, -90))
	if s != before {
		t.Fatal("ApplySensor modified its argument")
	}
	if s2 == s || len(ev) == 0 {
		t.Fatal("ApplySensor did nothing")
	}
}

func TestMultiGatewayMerge(t *testing.T) {
	s := NewSensor(testDev, SensorConfig{TapKind: ColdMain})
	if ev := s.Apply(status(7, at(0), 0, -110), nil); len(ev) == 0 {
		t.Fatal("first copy emitted nothing")
	}
	for i, c := range []Uplink{status(7, at(0).Add(200*time.Millisecond), 1, -85), status(7, at(0).Add(time.Second), 2, -100), status(7, at(0), 0, -110)} {
		if ev := s.Apply(c, nil); len(ev) != 0 {
			t.Fatalf("copy %d emitted %d events", i, len(ev))
		}
	}
	if s.rx.rssi != -85 || s.rx.best != propGateways[1] || s.rx.nGateways != 3 {
		t.Fatalf("merged rx = %+v", s.rx)
	}
	ev := s.Apply(status(8, at(10), 0, -95), nil)
	st := ev[len(ev)-1].Status
	if st.BestRSSI != -95 || st.NGateways != 1 {
		t.Fatalf("the next frame starts a new merge: %+v", st)
	}
}

func TestNextDeadline(t *testing.T) {
	s := NewSensor(testDev, SensorConfig{TapKind: HotTap, ExpectedInterval: 10 * time.Minute})
	if _, ok := s.NextDeadline(); ok {
		t.Fatal("deadline before the twin was heard")
	}
	s.Apply(status(1, at(0), 0, -90), nil)
	if d, ok := s.NextDeadline(); !ok || !d.Equal(at(25)) {
		t.Fatalf("deadline %v %v, want offline at %v", d, ok, at(25))
	}
	s.Apply(Tick{Now: at(25)}, nil)
	// Offline is raised; next is the flush deadline, 7 days after commissioning.
	if d, ok := s.NextDeadline(); !ok || !d.Equal(at(7*24*60)) {
		t.Fatalf("deadline %v %v, want flush at %v", d, ok, at(7*24*60))
	}
	g := NewGateway(propGateways[0], GatewayConfig{StatsInterval: time.Minute})
	g.Apply(GatewayStats{At: at(0)}, nil)
	if d, ok := g.NextDeadline(); !ok || !d.Equal(at(2)) {
		t.Fatalf("gateway deadline %v %v", d, ok)
	}
}

func TestProfileDefaults(t *testing.T) {
	for _, tc := range []struct {
		id                     ProfileID
		ret, hotFlush, coldMax clipr.Temp
		within, every          time.Duration
		holds                  int
	}{
		{ProfileNL, 6000, 6000, 2500, 0, 7 * 24 * time.Hour, 3},
		{ProfileUnspecified, 6000, 6000, 2500, 0, 7 * 24 * time.Hour, 3},
		{ProfileDE, 5500, 5500, 2500, 30 * time.Second, 72 * time.Hour, 1},
		{ProfileUK, 5000, 5000, 2000, 60 * time.Second, 7 * 24 * time.Hour, 0},
	} {
		p := DefaultProfile(tc.id)
		if p.HeaterOutletMin != 6000 || p.CirculationReturnMin != tc.ret || p.HotFlushMin != tc.hotFlush || p.ColdMax != tc.coldMax ||
			p.HotFlushWithin != tc.within || p.FlushEvery != tc.every || p.NDisinfection != tc.holds {
			t.Errorf("%s: %+v", tc.id, p)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", tc.id, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  SensorConfig
		ok   bool
	}{
		{"zero", SensorConfig{}, true},
		{"hot tap DE", SensorConfig{TapKind: HotTap, Profile: ProfileDE}, true},
		{"bad kind", SensorConfig{TapKind: 42}, false},
		{"bad profile", SensorConfig{Profile: 9}, false},
		{"negative interval", SensorConfig{ExpectedInterval: -time.Second}, false},
		{"bad policy", SensorConfig{ResetPolicy: 7}, false},
		{"bad override", SensorConfig{Tap: Overrides{FlushEvery: Some(time.Duration(0))}}, false},
		{"bad offline factor", SensorConfig{Site: Overrides{OfflineFactor: Some(0.5)}}, false},
		{"good override", SensorConfig{Site: Overrides{HotFlushMin: Some(clipr.Temp(5500))}}, true},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestSnapshotVersions(t *testing.T) {
	s := typicalSensor(t)
	p := s.snapshot()
	// Version 0 (before versioning) loads as version 1.
	p.SchemaVersion = 0
	b, _ := proto.Marshal(p)
	if back, err := UnmarshalSensorSnapshot(b); err != nil || back != s {
		t.Fatalf("version 0: %v", err)
	}
	p.SchemaVersion = SensorSchemaVersion + 1
	b, _ = proto.Marshal(p)
	if _, err := UnmarshalSensorSnapshot(b); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("newer version: %v", err)
	}
	if _, err := UnmarshalSensorSnapshot([]byte{0xff, 0xff}); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("garbage: %v", err)
	}
	b, _ = proto.Marshal(&twinv1.SensorSnapshot{SchemaVersion: 1, DevEui: []byte{1, 2}})
	if _, err := UnmarshalSensorSnapshot(b); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("short DevEUI: %v", err)
	}
	if _, err := UnmarshalGatewaySnapshot([]byte{0xff}); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("gateway garbage: %v", err)
	}
}

// TestSnapshotGolden loads snapshots written by earlier versions of this
// package (testdata/snapshots): old snapshots must keep loading, to the
// same state. Regenerate only when adding a new schema version, as a new
// file, with -update.
func TestSnapshotGolden(t *testing.T) {
	s := typicalSensor(t)
	path := filepath.Join("testdata", "snapshots", "sensor_v1.pb")
	if *updateGolden {
		b, err := s.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalSensorSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	// Compare what the snapshot pins down, not everything: rule changes
	// may legitimately change how typicalSensor ends up.
	last, has := back.LastFCnt()
	if back.DevEUI() != s.DevEUI() || !has || last != 4000+7*24*4+1 || back.Config() != s.Config() ||
		back.Alarm(BatteryLow).Status != ActiveAck || back.BatteryMV() != 2850 || !back.LastUplink().Equal(s.LastUplink()) {
		t.Fatalf("golden v1 snapshot loads to an unexpected state")
	}
}

func TestApplyFrame(t *testing.T) {
	nwk := lorawan.AES128Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	app := lorawan.AES128Key{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	keys, err := lorawan.NewSessionKeys(nwk, app)
	if err != nil {
		t.Fatal(err)
	}
	addr := lorawan.DevAddr{0x26, 0x01, 0x1b, 0xda}
	build := func(fcnt uint32, m clipr.Message) []byte {
		port, payload, err := clipr.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		phy, err := lorawan.BuildDataFrame(nwk, app, lorawan.DataFrameParams{
			MType: lorawan.MTypeUnconfirmedDataUp, DevAddr: addr, FCnt: fcnt, HasFPort: true, FPort: port, FRMPayload: payload,
		})
		if err != nil {
			t.Fatal(err)
		}
		return phy
	}
	meas := clipr.Measurement{IntervalS: 60, BatteryMV: 3000, Samples: []clipr.Sample{{Pipe: 6100, Ambient: 2000}, {Pipe: 6150, Ambient: 2000}}}
	frame := func(phy []byte, rx time.Time) *Frame {
		return &Frame{DevEUI: testDev, PHYPayload: phy, Rx: Rx{GatewayEUI: propGateways[0], RSSI: -90, ReceivedAt: rx}}
	}
	s := NewSensor(testDev, SensorConfig{TapKind: HeaterOutlet, ResetPolicy: ResetOnReboot, ExpectedInterval: time.Hour})

	// A counter past a 16-bit roll-over.
	s.Apply(status(0x1fff0, at(0), 0, -90), nil)
	ev := s.ApplyFrame(frame(build(0x20005, meas), at(10)), keys, nil)
	if len(ev) != 2 || ev[0].Kind != KindReading || ev[0].FCnt != 0x20005 || ev[1].Reading.Pipe != 6150 {
		t.Fatalf("roll-over frame: %+v", ev)
	}
	if ev := s.ApplyFrame(frame(build(0x20005, meas), at(10)), keys, nil); len(ev) != 0 {
		t.Fatalf("copy emitted %d events", len(ev))
	}
	// Tampered: BAD_MIC, counted.
	bad := build(0x20006, meas)
	bad[len(bad)-1] ^= 1
	ev = s.ApplyFrame(frame(bad, at(20)), keys, nil)
	if len(ev) != 1 || ev[0].Rejection.Reason != RejectBadMIC || !ev[0].Rejection.Counted {
		t.Fatalf("tampered: %+v", ev)
	}
	// Garbage: MALFORMED, not counted.
	ev = s.ApplyFrame(frame([]byte{0x40, 1, 2}, at(21)), keys, nil)
	if len(ev) != 1 || ev[0].Rejection.Reason != RejectMalformed || ev[0].Rejection.Counted {
		t.Fatalf("garbage: %+v", ev)
	}
	// An authentic old frame received later: REPLAY.
	ev = s.ApplyFrame(frame(build(0x20005, meas), at(30)), keys, nil)
	if len(ev) != 1 || ev[0].Rejection.Reason != RejectReplay {
		t.Fatalf("replay: %+v", ev)
	}
	// Reboot with the counter restarted: accepted under ResetOnReboot.
	ev = s.ApplyFrame(frame(build(1, clipr.Status{Rebooted: true, BatteryMV: 3000}), at(40)), keys, nil)
	if len(ev) == 0 || ev[len(ev)-1].Kind != KindDeviceStatus || !ev[len(ev)-1].Status.CounterReset {
		t.Fatalf("reset: %+v", ev)
	}
	if f, _ := s.LastFCnt(); f != 1 {
		t.Fatalf("last FCnt %d after reset", f)
	}
	ev = s.ApplyFrame(frame(build(2, meas), at(50)), keys, nil)
	if len(ev) != 2 || ev[0].ID.Epoch != 1 {
		t.Fatalf("after reset: %+v", ev)
	}
}

func BenchmarkApplyFrame(b *testing.B) {
	nwk := lorawan.AES128Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	app := lorawan.AES128Key{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	keys, _ := lorawan.NewSessionKeys(nwk, app)
	s := typicalSensor(b)
	base := s
	last, _ := s.LastFCnt()
	t0 := s.LastUplink()
	_, payload, _ := clipr.Encode(measurement(15, 2200, 2100))
	frames := make([][]byte, 1000)
	for i := range frames {
		frames[i], _ = lorawan.BuildDataFrame(nwk, app, lorawan.DataFrameParams{
			MType: lorawan.MTypeUnconfirmedDataUp, DevAddr: lorawan.DevAddr{0x26, 1, 2, 3}, FCnt: last + 1 + uint32(i), HasFPort: true, FPort: 1, FRMPayload: payload,
		})
	}
	f := &Frame{DevEUI: s.dev, Rx: Rx{GatewayEUI: propGateways[0], RSSI: -97}}
	buf := make([]Event, 0, 32)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(frames) == 0 {
			s = base
		}
		f.PHYPayload = frames[i%len(frames)]
		f.Rx.ReceivedAt = t0.Add(time.Duration(i%len(frames)+1) * 15 * time.Minute)
		buf = s.ApplyFrame(f, keys, buf[:0])
		if len(buf) < clipr.MaxSamples {
			b.Fatalf("%d events", len(buf))
		}
	}
}
