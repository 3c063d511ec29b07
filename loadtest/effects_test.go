package loadtest

import (
	"testing"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	"github.com/legionelladossier/legiond/loadtest/fleet"
)

// runEffects feeds a fleet through effects, calling storm once simulated
// time passes at, and returns every record.
func runEffects(t *testing.T, cfg fleet.Config, until, at time.Time, storm func(*effects, time.Time)) (*fleet.Fleet, []record, *effects) {
	t.Helper()
	fl, err := fleet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	infos := fl.Sensors()
	idx := map[lorawan.EUI64]int32{}
	for i, s := range infos {
		idx[s.DevEUI] = int32(i)
	}
	fx := newEffects(infos, idx)
	var out []record
	emit := func(r record) { out = append(out, r) }
	fl.Step(at, func(u fleet.Uplink) { fx.apply(u, emit) })
	storm(fx, at)
	fl.Step(until, func(u fleet.Uplink) { fx.apply(u, emit) })
	fx.due(until, emit)
	if err := fl.Err(); err != nil {
		t.Fatal(err)
	}
	return fl, out, fx
}

// decode checks a record the way a network server would: MIC with the
// record's frame counter, then the Clip'R payload.
func decode(t *testing.T, info fleet.SensorInfo, r record) clipr.Message {
	t.Helper()
	k, err := lorawan.NewSessionKeys(info.NwkSKey, info.AppSKey)
	if err != nil {
		t.Fatal(err)
	}
	f, err := lorawan.ParseDataFrame(r.up.PHYPayload)
	if err != nil {
		t.Fatal(err)
	}
	if uint16(r.fcnt) != f.FCnt16 {
		t.Fatalf("record fcnt %d, wire %d", r.fcnt, f.FCnt16)
	}
	if err := k.VerifyUplinkMIC(&f, r.fcnt); err != nil {
		t.Fatalf("MIC of %s fcnt %d: %v", info.DevEUI, r.fcnt, err)
	}
	m, err := clipr.Decode(f.FPort, k.DecryptFRMPayload(nil, &f, r.fcnt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFlushStormInjectsAndRenumbers(t *testing.T) {
	start := fleet.DefaultStart()
	cfg := fleet.Config{Sensors: 40, Gateways: 3, Seed: 7, Start: start, InitialFCnt: firstFCnt}
	at := start.Add(time.Hour)
	fl, recs, fx := runEffects(t, cfg, start.Add(3*time.Hour), at, func(fx *effects, at time.Time) {
		if n, err := fx.flushStorm(at, 10*time.Minute, 1, 1); err != nil || n == 0 {
			t.Fatalf("storm: %d, %v", n, err)
		}
	})
	infos := fl.Sensors()
	if fx.injected == 0 || fx.failures != 0 {
		t.Fatalf("injected %d, failures %d", fx.injected, fx.failures)
	}
	last := map[int32]uint32{}
	flushes := 0
	for _, r := range recs {
		m := decode(t, infos[r.sensor], r)
		// Copies of one transmission share its counter; otherwise it
		// strictly increases.
		if prev, ok := last[r.sensor]; ok && r.fcnt < prev {
			t.Fatalf("sensor %d: fcnt %d after %d", r.sensor, r.fcnt, prev)
		}
		last[r.sensor] = r.fcnt
		if w, ok := m.(clipr.WaterEvent); ok && !r.up.ReceivedAt.Before(at) && w.DurationS == 120 {
			flushes++
		}
	}
	if int64(flushes) != fx.injected {
		t.Fatalf("decoded %d injected flushes, effects say %d", flushes, fx.injected)
	}
}

func TestHotLineFailureCapsTemperatures(t *testing.T) {
	start := fleet.DefaultStart()
	cfg := fleet.Config{Sensors: 60, Gateways: 2, Seed: 3, Start: start, InitialFCnt: firstFCnt}
	at := start.Add(time.Hour)
	capC := 38.0
	fl, recs, fx := runEffects(t, cfg, start.Add(4*time.Hour), at, func(fx *effects, at time.Time) {
		if n, err := fx.hotLineFailure(at, capC, func(i int) bool { return i < 30 }); err != nil || n == 0 {
			t.Fatalf("failure: %d, %v", n, err)
		}
	})
	infos := fl.Sensors()
	capT := clipr.TempFromCelsius(capC)
	hotAbove := 0
	for _, r := range recs {
		m, ok := decode(t, infos[r.sensor], r).(clipr.Measurement)
		if !ok || r.up.ReceivedAt.Before(at) {
			continue
		}
		for _, s := range m.Samples {
			affected := r.sensor < 30 && infos[r.sensor].TapKind.IsHot()
			if affected && s.Pipe != clipr.NoTemp && s.Pipe > capT {
				t.Fatalf("sensor %d (%s): pipe %v above the cap", r.sensor, infos[r.sensor].TapKind, s.Pipe)
			}
			if !affected && infos[r.sensor].TapKind.IsHot() && s.Pipe > capT {
				hotAbove++
			}
		}
	}
	if fx.rewritten == 0 || hotAbove == 0 {
		t.Fatalf("rewritten %d, unaffected hot samples above the cap %d: the test proves nothing", fx.rewritten, hotAbove)
	}
}
