package devicetwin

import (
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

var propBase = time.Date(2025, 1, 6, 8, 0, 0, 0, time.UTC)

var propGateways = []EUI64{{0, 0x80, 0, 0, 0xa0, 0, 0, 1}, {0, 0x80, 0, 0, 0xa0, 0, 0, 2}, {0, 0x80, 0, 0, 0xa0, 0, 0, 3}}

func drawTemp(t *rapid.T, label string) clipr.Temp {
	if rapid.IntRange(0, 30).Draw(t, label+"Missing") == 0 {
		return clipr.NoTemp
	}
	return clipr.Temp(rapid.IntRange(500, 7500).Draw(t, label))
}

func drawMessage(t *rapid.T) clipr.Message {
	switch rapid.IntRange(0, 5).Draw(t, "msg") {
	case 0:
		return clipr.WaterEvent{
			Kind:        clipr.WaterEventKind(rapid.IntRange(1, 2).Draw(t, "weKind")),
			StartedSAgo: uint16(rapid.IntRange(0, 3600).Draw(t, "ago")),
			DurationS:   uint16(rapid.IntRange(0, 3600).Draw(t, "dur")),
			StartPipe:   drawTemp(t, "start"), ExtremePipe: drawTemp(t, "extreme"),
		}
	case 1:
		return clipr.Status{
			Detached: rapid.IntRange(0, 4).Draw(t, "det") == 0, ProbeFault: rapid.IntRange(0, 6).Draw(t, "pf") == 0,
			Rebooted:  rapid.IntRange(0, 4).Draw(t, "reb") == 0,
			BatteryMV: uint16(rapid.IntRange(2500, 3300).Draw(t, "bat")),
		}
	}
	n := rapid.IntRange(1, clipr.MaxSamples).Draw(t, "n")
	m := clipr.Measurement{
		IntervalS: uint16(rapid.SampledFrom([]int{60, 300, 600}).Draw(t, "iv")),
		BatteryMV: uint16(rapid.IntRange(2500, 3300).Draw(t, "mbat")),
		Samples:   make([]clipr.Sample, n),
	}
	level := rapid.IntRange(500, 7500).Draw(t, "level")
	for i := range m.Samples {
		m.Samples[i] = clipr.Sample{Pipe: clipr.Temp(level + rapid.IntRange(-800, 800).Draw(t, "dp")), Ambient: 2000}
	}
	return m
}

// drawSensorInputs draws a plausible history: mostly increasing counters
// with gaps, rewinds and repeats, ticks, operator actions, configuration
// changes and session resets, on one clock that moves forward.
func drawSensorInputs(t *rapid.T, dev EUI64) []Input {
	n := rapid.IntRange(1, 60).Draw(t, "inputs")
	clock := propBase
	fcnt := uint32(rapid.IntRange(0, 100).Draw(t, "fcnt0"))
	rev := uint64(1)
	var out []Input
	for range n {
		clock = clock.Add(rapid.SampledFrom([]time.Duration{
			time.Second, 20 * time.Second, 5 * time.Minute, 10 * time.Minute, 31 * time.Minute, 2 * time.Hour, 30 * time.Hour, 8 * 24 * time.Hour,
		}).Draw(t, "step"))
		switch k := rapid.IntRange(0, 14).Draw(t, "kind"); {
		case k <= 7:
			switch d := rapid.IntRange(0, 12).Draw(t, "fstep"); {
			case d == 0 && fcnt > 5:
				fcnt -= uint32(rapid.IntRange(1, 5).Draw(t, "back"))
			case d == 1:
				fcnt = uint32(rapid.IntRange(0, 3).Draw(t, "reset"))
			case d == 2:
				fcnt += uint32(rapid.IntRange(60, 20000).Draw(t, "jump"))
			default:
				fcnt += uint32(rapid.IntRange(0, 3).Draw(t, "inc"))
			}
			m := drawMessage(t)
			out = append(out, Uplink{DevEUI: dev, FCnt: fcnt, FPort: m.Port(), Msg: m, Rx: Rx{
				GatewayEUI: rapid.SampledFrom(propGateways).Draw(t, "gw"),
				RSSI:       int16(rapid.IntRange(-120, -60).Draw(t, "rssi")),
				ReceivedAt: clock,
			}})
		case k <= 9:
			out = append(out, Tick{Now: clock})
		case k <= 11:
			a := AlarmAck{Type: AlarmType(rapid.IntRange(1, int(numAlarmTypes)-1).Draw(t, "alarm")), By: "op", At: clock, Note: "n"}
			if k == 11 {
				out = append(out, AlarmClear(a))
			} else {
				out = append(out, a)
			}
		case k <= 13:
			rev += uint64(rapid.IntRange(0, 1).Draw(t, "rev"))
			out = append(out, ConfigChange{At: clock, Config: SensorConfig{
				Revision:         rev,
				TapKind:          TapKind(rapid.IntRange(1, int(numTapKinds)-1).Draw(t, "tap")),
				Profile:          ProfileID(rapid.IntRange(0, int(numProfiles)-1).Draw(t, "profile")),
				ResetPolicy:      CounterResetPolicy(rapid.IntRange(0, 1).Draw(t, "policy")),
				ExpectedInterval: rapid.SampledFrom([]time.Duration{0, 10 * time.Minute, time.Hour}).Draw(t, "interval"),
			}})
		default:
			out = append(out, SessionReset{At: clock, By: "join"})
		}
	}
	return out
}

// deliver turns the history into what a twin may receive: copies of
// earlier inputs re-delivered later, and neighbours swapped. It returns the
// index into history of every delivered input.
func deliver(t *rapid.T, n int) []int {
	var idx []int
	for i := range n {
		idx = append(idx, i)
		for rapid.IntRange(0, 3).Draw(t, "dup") == 0 {
			idx = append(idx, rapid.IntRange(0, i).Draw(t, "dupOf"))
		}
	}
	for range rapid.IntRange(0, len(idx)/3).Draw(t, "swaps") {
		if len(idx) < 2 {
			break
		}
		j := rapid.IntRange(0, len(idx)-2).Draw(t, "swap")
		idx[j], idx[j+1] = idx[j+1], idx[j]
	}
	return idx
}

type applyFunc[S any] func(s *S, in Input) []Event

// checkDelivery applies the delivered inputs and checks the properties:
// re-applying an input (at once, or when it is delivered again later)
// emits nothing and leaves the state unchanged; event ids are unique.
func checkDelivery[S comparable](t *rapid.T, s S, history []Input, order []int, apply applyFunc[S]) (S, []Event) {
	var all []Event
	applied := map[int]bool{}
	ids := map[EventID]bool{}
	for _, i := range order {
		in := history[i]
		before := s
		ev := apply(&s, in)
		if applied[i] && (len(ev) != 0 || s != before) {
			for k, j := range order {
				t.Logf("delivery %d: input %d %+v", k, j, history[j])
			}
			t.Fatalf("input %d (%T) delivered again: %d events %+v, state changed %v", i, in, len(ev), ev, s != before)
		}
		applied[i] = true
		again := s
		if ev2 := apply(&again, in); len(ev2) != 0 || again != s {
			t.Fatalf("input %d (%T) applied twice in a row: %d events, state changed %v", i, in, len(ev2), again != s)
		}
		for _, e := range ev {
			if ids[e.ID] {
				t.Fatalf("duplicate event id %s (input %d, %T)", e.ID, i, in)
			}
			ids[e.ID] = true
		}
		all = append(all, ev...)
	}
	return s, all
}

func TestPropertySensorIdempotentDeterministic(t *testing.T) {
	dev := EUI64{0, 4, 0xa3, 0x0b, 0, 0x1c, 5, 0x30}
	rapid.Check(t, func(t *rapid.T) {
		cfg := SensorConfig{
			TapKind: TapKind(rapid.IntRange(1, int(numTapKinds)-1).Draw(t, "tap0")),
			Profile: ProfileID(rapid.IntRange(0, int(numProfiles)-1).Draw(t, "profile0")),
		}
		history := drawSensorInputs(t, dev)
		order := deliver(t, len(history))
		apply := func(s *SensorState, in Input) []Event { return s.Apply(in, nil) }
		s1, ev1 := checkDelivery(t, NewSensor(dev, cfg), history, order, apply)
		s2, ev2 := checkDelivery(t, NewSensor(dev, cfg), history, order, apply)
		if s1 != s2 || !reflect.DeepEqual(ev1, ev2) {
			t.Fatalf("same inputs, different outcome")
		}
		// The pure form agrees with the in-place form.
		s3 := NewSensor(dev, cfg)
		var ev3 []Event
		for _, i := range order {
			var ev []Event
			s3, ev = ApplySensor(s3, history[i])
			ev3 = append(ev3, ev...)
		}
		if s3 != s1 || !reflect.DeepEqual(ev3, ev1) {
			t.Fatalf("ApplySensor and Apply disagree")
		}
		// A snapshot round trip changes nothing either.
		b, err := s1.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalSensorSnapshot(b)
		if err != nil {
			t.Fatal(err)
		}
		if back != s1 {
			t.Fatalf("snapshot round trip changed the state")
		}
	})
}

func TestPropertyGatewayIdempotentDeterministic(t *testing.T) {
	gw := propGateways[0]
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 60).Draw(t, "inputs")
		clock := propBase
		var history []Input
		for range n {
			clock = clock.Add(rapid.SampledFrom([]time.Duration{time.Second, time.Minute, 6 * time.Minute, 11 * time.Minute, time.Hour}).Draw(t, "step"))
			switch rapid.IntRange(0, 4).Draw(t, "kind") {
			case 0:
				history = append(history, GatewayStats{At: clock, RxReceived: uint32(rapid.IntRange(0, 100).Draw(t, "rx"))})
			case 1:
				history = append(history, Tick{Now: clock})
			case 2:
				history = append(history, AlarmAck{Type: GatewayOffline, By: "noc", At: clock})
			case 3:
				history = append(history, AlarmClear{Type: GatewayOffline, By: "noc", At: clock})
			default:
				history = append(history, GatewayUplinkSeen{
					DevEUI: EUI64{7, 7, 7, 7, 7, 7, 7, byte(rapid.IntRange(0, 3).Draw(t, "dev"))},
					FCnt:   uint32(rapid.IntRange(0, 40).Draw(t, "fcnt")),
					Rx:     Rx{GatewayEUI: gw, RSSI: int16(rapid.IntRange(-120, -60).Draw(t, "rssi")), ReceivedAt: clock},
				})
			}
		}
		order := deliver(t, len(history))
		apply := func(g *GatewayState, in Input) []Event { return g.Apply(in, nil) }
		g1, ev1 := checkDelivery(t, NewGateway(gw, GatewayConfig{}), history, order, apply)
		g2, ev2 := checkDelivery(t, NewGateway(gw, GatewayConfig{}), history, order, apply)
		if g1 != g2 || !reflect.DeepEqual(ev1, ev2) {
			t.Fatalf("same inputs, different outcome")
		}
		b, err := g1.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalGatewaySnapshot(b)
		if err != nil {
			t.Fatal(err)
		}
		if back != g1 {
			t.Fatalf("snapshot round trip changed the state")
		}
	})
}
