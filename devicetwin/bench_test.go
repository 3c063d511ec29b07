package devicetwin

import (
	"testing"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// typicalSensor is a hot tap that has been running for a week: session,
// receive metadata, history, one active and one closed alarm.
func typicalSensor(tb testing.TB) SensorState {
	tb.Helper()
	dev := EUI64{0, 4, 0xa3, 0x0b, 0, 0x1c, 5, 0x30}
	s := NewSensor(dev, SensorConfig{
		Revision: 3, TapKind: HotTap, Profile: ProfileNL, ExpectedInterval: 15 * time.Minute,
		TenantID: "8f14e45f-ceea-467f-a0e6-2a4f1c5b3f10", SiteID: "c9f0f895-fb98-4b91-9f1a-3d6f4b1e2a77", TapPointID: "45c48cce-2e2d-4fbd-8e57-7a1b9c3d5e21",
	})
	at := propBase
	fcnt := uint32(4000)
	for i := range 7 * 24 * 4 {
		at = at.Add(15 * time.Minute)
		fcnt++
		m := measurement(15, 2200, 2100)
		if i%96 == 40 {
			m.Samples[10].Pipe = 6100 // a daily flush
		}
		s.Apply(Uplink{DevEUI: dev, FCnt: fcnt, FPort: 1, Msg: m, Rx: Rx{GatewayEUI: propGateways[0], RSSI: -97, SNR: 4.5, ReceivedAt: at}}, nil)
		s.Apply(Uplink{DevEUI: dev, FCnt: fcnt, FPort: 1, Msg: m, Rx: Rx{GatewayEUI: propGateways[1], RSSI: -104, SNR: 1.5, ReceivedAt: at.Add(300 * time.Millisecond)}}, nil)
		if i%96 == 0 {
			s.Apply(Tick{Now: at.Add(time.Minute)}, nil)
		}
	}
	s.Apply(Uplink{DevEUI: dev, FCnt: fcnt + 1, FPort: 3, Msg: clipr.Status{BatteryMV: 2850, FwMajor: 1, FwMinor: 4, IntervalS: 900}, Rx: Rx{GatewayEUI: propGateways[0], RSSI: -97, ReceivedAt: at.Add(time.Minute)}}, nil)
	s.Apply(AlarmAck{Type: BatteryLow, By: "anna", At: at.Add(2 * time.Minute)}, nil)
	return s
}

// measurement is an 11-sample, 1-minute measurement at constant values.
func measurement(interval uint16, pipe, ambient clipr.Temp) clipr.Measurement {
	m := clipr.Measurement{IntervalS: 60, BatteryMV: 3000, Samples: make([]clipr.Sample, clipr.MaxSamples)}
	_ = interval
	for i := range m.Samples {
		m.Samples[i] = clipr.Sample{Pipe: pipe + clipr.Temp(i%3), Ambient: ambient}
	}
	return m
}

// BenchmarkApplyMeasurement is the hot path: one 11-sample measurement
// uplink through a typical twin (eleven readings out), in place with a
// reused event buffer, as the actor does it.
func BenchmarkApplyMeasurement(b *testing.B) {
	s := typicalSensor(b)
	base := s
	m := measurement(15, 2200, 2100)
	last, _ := s.LastFCnt()
	in := &Uplink{DevEUI: s.dev, FPort: 1, Msg: m, Rx: Rx{GatewayEUI: propGateways[0], RSSI: -97, SNR: 4.5}}
	t0 := s.LastUplink()
	buf := make([]Event, 0, 32)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%10000 == 0 {
			s = base // keep the session state typical
		}
		in.FCnt = last + 1 + uint32(i%10000)
		in.Rx.ReceivedAt = t0.Add(time.Duration(i%10000+1) * 15 * time.Minute)
		buf = s.Apply(in, buf[:0])
	}
	if len(buf) < clipr.MaxSamples {
		b.Fatalf("%d events", len(buf))
	}
}

// BenchmarkApplySensorPure is the value form ApplySensor (copies the state,
// allocates the event slice).
func BenchmarkApplySensorPure(b *testing.B) {
	s := typicalSensor(b)
	m := measurement(15, 2200, 2100)
	last, _ := s.LastFCnt()
	t0 := s.LastUplink()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		in := Uplink{DevEUI: s.dev, FCnt: last + 1, FPort: 1, Msg: m, Rx: Rx{GatewayEUI: propGateways[0], RSSI: -97, ReceivedAt: t0.Add(15 * time.Minute)}}
		_, ev := ApplySensor(s, in)
		if len(ev) < clipr.MaxSamples {
			b.Fatalf("%d events at %d", len(ev), i)
		}
	}
}

// BenchmarkApplyDuplicate is the cost of another gateway's copy.
func BenchmarkApplyDuplicate(b *testing.B) {
	s := typicalSensor(b)
	m := measurement(15, 2200, 2100)
	last, _ := s.LastFCnt()
	in := &Uplink{DevEUI: s.dev, FCnt: last, FPort: 1, Msg: m, Rx: Rx{GatewayEUI: propGateways[2], RSSI: -110, ReceivedAt: s.LastUplink()}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if ev := s.Apply(in, nil); len(ev) != 0 {
			b.Fatal("duplicate emitted events")
		}
	}
}

func BenchmarkSnapshotMarshal(b *testing.B) {
	s := typicalSensor(b)
	b.ReportAllocs()
	for range b.N {
		if _, err := s.MarshalSnapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSnapshotUnmarshal(b *testing.B) {
	s := typicalSensor(b)
	data, err := s.MarshalSnapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for range b.N {
		if _, err := UnmarshalSensorSnapshot(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSnapshotSizeTypical records the snapshot size of a typical sensor
// twin; the goal is at most 512 bytes.
func TestSnapshotSizeTypical(t *testing.T) {
	s := typicalSensor(t)
	data, err := s.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("typical sensor snapshot: %d bytes", len(data))
	if len(data) > 512 {
		t.Errorf("typical sensor snapshot is %d bytes, goal ≤ 512", len(data))
	}
	back, err := UnmarshalSensorSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if back != s {
		t.Error("round trip changed the state")
	}
}
