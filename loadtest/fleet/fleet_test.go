package fleet

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"defaults", func(*Config) {}, true},
		{"negative sensors", func(c *Config) { c.Sensors = -1 }, false},
		{"too many gateways", func(c *Config) { c.Gateways = MaxGateways + 1 }, false},
		{"sample not dividing report", func(c *Config) { c.SampleInterval = 7 * time.Minute }, false},
		{"12 samples", func(c *Config) { c.SampleInterval = 75 * time.Second }, false},
		{"11 samples", func(c *Config) { c.ReportInterval = 11 * time.Minute; c.SampleInterval = time.Minute }, true},
		{"sub-second sample", func(c *Config) { c.SampleInterval = 1500 * time.Millisecond; c.ReportInterval = 3 * time.Minute }, false},
		{"report beyond u16 seconds", func(c *Config) { c.ReportInterval = 20 * time.Hour; c.SampleInterval = 2 * time.Hour }, false},
		{"status shorter than report", func(c *Config) { c.StatusInterval = time.Minute }, false},
		{"max gateways per uplink above gateways", func(c *Config) { c.MaxGatewaysPerUplink = 4 }, false},
		{"frame loss 1", func(c *Config) { c.FrameLoss = 1 }, false},
		{"frame loss NaN", func(c *Config) { c.FrameLoss = math.NaN() }, false},
		{"negative tap weight", func(c *Config) { c.Taps.HotTap = -1 }, false},
		{"infinite behaviour weight", func(c *Config) { c.Behaviours.Silent = math.Inf(1) }, false},
		{"only normal", func(c *Config) { c.Behaviours = BehaviourMix{Normal: 1} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{}.WithDefaults()
			tt.mutate(&c)
			err := c.Validate()
			if tt.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			if _, err := New(c); tt.ok != (err == nil) {
				t.Fatalf("New() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	d := Config{}.WithDefaults()
	if d.Sensors != DefaultSensors || d.Gateways != DefaultGateways || d.ReportInterval != 15*time.Minute ||
		d.SampleInterval != 3*time.Minute || d.MaxGatewaysPerUplink != 3 || !d.Start.Equal(DefaultStart()) {
		t.Errorf("defaults %+v", d)
	}
}

// collect runs a fleet until the given simulated duration.
func collect(t testing.TB, cfg Config, d time.Duration) (*Fleet, []Uplink) {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ups []Uplink
	f.Step(f.Config().Start.Add(d), func(u Uplink) { ups = append(ups, u) })
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
	return f, ups
}

func sameUplinks(a, b []Uplink) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !bytes.Equal(x.PHYPayload, y.PHYPayload) || !x.ReceivedAt.Equal(y.ReceivedAt) ||
			x.DevEUI != y.DevEUI || x.DevAddr != y.DevAddr || x.GatewayEUI != y.GatewayEUI ||
			x.RSSI != y.RSSI || x.SNR != y.SNR || x.FrequencyHz != y.FrequencyHz ||
			x.DataRate != y.DataRate || x.FCnt != y.FCnt || x.FPort != y.FPort {
			return false
		}
	}
	return true
}

func TestDeterminism(t *testing.T) {
	cfg := Config{Sensors: 40, Gateways: 4, Seed: 42}
	fa, a := collect(t, cfg, 36*time.Hour)
	fb, b := collect(t, cfg, 36*time.Hour)
	if len(a) == 0 || !sameUplinks(a, b) {
		t.Fatalf("same seed, different output (%d vs %d uplinks)", len(a), len(b))
	}
	sa, sb := fa.Sensors(), fb.Sensors()
	for i := range sa {
		if sa[i] != sb[i] {
			t.Fatalf("sensor %d differs: %+v vs %+v", i, sa[i], sb[i])
		}
	}

	// Slicing time differently, or pulling with Next, changes nothing.
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sliced []Uplink
	for h := 1; h <= 36; h++ {
		f.Step(f.Config().Start.Add(time.Duration(h)*time.Hour), func(u Uplink) { sliced = append(sliced, u) })
	}
	if !sameUplinks(a, sliced) {
		t.Fatal("hourly Step differs from one Step")
	}
	f, _ = New(cfg)
	var pulled []Uplink
	for len(pulled) < len(a) {
		u, ok := f.Next()
		if !ok {
			t.Fatal("Next ran dry")
		}
		pulled = append(pulled, u)
	}
	if !sameUplinks(a, pulled) {
		t.Fatal("Next differs from Step")
	}

	cfg.Seed = 43
	fc, c := collect(t, cfg, 36*time.Hour)
	if sameUplinks(a, c) {
		t.Fatal("different seeds, same output")
	}
	if fc.Sensors()[0].NwkSKey == sa[0].NwkSKey || fc.Sensors()[0].DevEUI == sa[0].DevEUI {
		t.Fatal("different seeds, same identities")
	}
}

// decoded is one transmission, de-duplicated over gateways.
type decoded struct {
	up  Uplink
	msg clipr.Message
	gws int
}

// TestTenDays runs a fleet for ten simulated days and checks every frame
// and the scripted behaviours.
func TestTenDays(t *testing.T) {
	if testing.Short() {
		t.Skip("ten simulated days")
	}
	const simDays = 10
	cfg := Config{Sensors: 60, Gateways: 5, Seed: 7}
	f, ups := collect(t, cfg, simDays*24*time.Hour)
	sensors := f.Sensors()
	byAddr := map[lorawan.DevAddr]SensorInfo{}
	keys := map[lorawan.EUI64]*lorawan.SessionKeys{}
	for _, s := range sensors {
		if _, dup := byAddr[s.DevAddr]; dup {
			t.Fatalf("duplicate DevAddr %s", s.DevAddr)
		}
		byAddr[s.DevAddr] = s
		k, err := lorawan.NewSessionKeys(s.NwkSKey, s.AppSKey)
		if err != nil {
			t.Fatal(err)
		}
		keys[s.DevEUI] = k
	}
	gwEUIs := map[lorawan.EUI64]bool{}
	for _, g := range f.Gateways() {
		gwEUIs[g.EUI] = true
	}

	type devState struct {
		last    uint32
		hasLast bool
		txs     []decoded
	}
	devs := map[lorawan.EUI64]*devState{}
	var prev time.Time
	var buf []byte
	for i, u := range ups {
		if u.ReceivedAt.Before(prev) {
			t.Fatalf("uplink %d received %v before %v", i, u.ReceivedAt, prev)
		}
		prev = u.ReceivedAt
		s, ok := byAddr[u.DevAddr]
		if !ok || s.DevEUI != u.DevEUI {
			t.Fatalf("uplink %d: unknown DevAddr %s / DevEUI %s", i, u.DevAddr, u.DevEUI)
		}
		if !gwEUIs[u.GatewayEUI] || u.RSSI < -120 || u.RSSI > -40 || u.SNR < -20 || u.SNR > 10 ||
			u.FrequencyHz < 863_000_000 || u.FrequencyHz > 870_000_000 || !strings.HasPrefix(u.DataRate, "SF") || u.DataRate != s.DataRate {
			t.Fatalf("uplink %d radio metadata %+v", i, u)
		}
		df, err := lorawan.ParseDataFrame(u.PHYPayload)
		if err != nil {
			t.Fatalf("uplink %d: %v", i, err)
		}
		d := devs[u.DevEUI]
		if d == nil {
			d = &devState{}
			devs[u.DevEUI] = d
		}
		fcnt, kind, err := lorawan.FullFCnt(d.last, d.hasLast, df.FCnt16)
		if err != nil || fcnt != u.FCnt {
			t.Fatalf("uplink %d: FullFCnt %d %s %v, truth %d", i, fcnt, kind, err, u.FCnt)
		}
		if err := keys[u.DevEUI].VerifyUplinkMIC(&df, fcnt); err != nil {
			t.Fatalf("uplink %d: %v", i, err)
		}
		if kind == lorawan.FCntRetransmission {
			// Another gateway's copy: same bytes, another gateway, close in time.
			last := &d.txs[len(d.txs)-1]
			if !bytes.Equal(last.up.PHYPayload, u.PHYPayload) || u.ReceivedAt.Sub(last.up.ReceivedAt) > 50*time.Millisecond {
				t.Fatalf("uplink %d: copy differs from its first reception", i)
			}
			last.gws++
			continue
		}
		if d.hasLast && fcnt <= d.last {
			t.Fatalf("uplink %d: FCnt %d not above %d", i, fcnt, d.last)
		}
		d.last, d.hasLast = fcnt, true
		if df.FPort != u.FPort {
			t.Fatalf("uplink %d: FPort %d, truth %d", i, df.FPort, u.FPort)
		}
		buf = keys[u.DevEUI].DecryptFRMPayload(buf[:0], &df, fcnt)
		msg, err := clipr.Decode(df.FPort, buf)
		if err != nil {
			t.Fatalf("uplink %d: clipr: %v", i, err)
		}
		d.txs = append(d.txs, decoded{up: u, msg: msg, gws: 1})
	}

	start := f.Config().Start
	var flushes, disinfections, lowBattMinor, lowBattMajor, detached, silent, cooled, warmed, rare int
	gwHist := map[int]int{}
	for _, s := range sensors {
		d := devs[s.DevEUI]
		if d == nil || len(d.txs) == 0 {
			t.Fatalf("sensor %d sent nothing", s.Index)
		}
		first := d.txs[0]
		if st, ok := first.msg.(clipr.Status); !ok || !st.Rebooted {
			t.Errorf("sensor %d: first frame %+v, want a rebooted status", s.Index, first.msg)
		}
		var statuses, waterEvents int
		var lastWater time.Time
		var minBatt uint16 = math.MaxUint16
		var sawDetached bool
		var lastDayMaxPipe, maxPipe float64 = -100, -100
		for _, tx := range d.txs {
			gwHist[tx.gws]++
			if tx.gws < 1 || tx.gws > 3 {
				t.Errorf("sensor %d: heard by %d gateways", s.Index, tx.gws)
			}
			switch m := tx.msg.(type) {
			case clipr.Status:
				statuses++
				sawDetached = sawDetached || m.Detached
				minBatt = min(minBatt, m.BatteryMV)
				if m.Detached && tx.up.ReceivedAt.Before(s.DetachAt) {
					t.Errorf("sensor %d: detached before its script", s.Index)
				}
			case clipr.WaterEvent:
				waterEvents++
				lastWater = tx.up.ReceivedAt
				if m.Kind == clipr.EventFlush {
					flushes++
				} else {
					disinfections++
				}
				if m.DurationS == 0 || m.StartedSAgo < m.DurationS {
					t.Errorf("sensor %d: water event %+v", s.Index, m)
				}
			case clipr.Measurement:
				if len(m.Samples) != 5 || m.IntervalS != 180 {
					t.Errorf("sensor %d: measurement shape %+v", s.Index, m)
				}
				minBatt = min(minBatt, m.BatteryMV)
				for _, smp := range m.Samples {
					if !smp.Pipe.Valid() || !smp.Ambient.Valid() {
						t.Errorf("sensor %d: missing sample", s.Index)
						continue
					}
					c := smp.Pipe.Celsius()
					if c < 5 || c > 75 {
						t.Errorf("sensor %d: pipe %.2f °C", s.Index, c)
					}
					maxPipe = max(maxPipe, c)
					if tx.up.ReceivedAt.After(start.Add((simDays - 1) * 24 * time.Hour)) {
						lastDayMaxPipe = max(lastDayMaxPipe, c)
					}
				}
			}
		}
		if statuses < simDays-1 && s.Behaviour != BehaviourSilent {
			t.Errorf("sensor %d: %d status frames in %d days", s.Index, statuses, simDays)
		}
		lastTx := d.txs[len(d.txs)-1].up.ReceivedAt
		switch s.Behaviour {
		case BehaviourLowBattery:
			if minBatt < 2900 {
				lowBattMinor++
			}
			if minBatt < 2700 {
				lowBattMajor++
			}
		case BehaviourDetached:
			if sawDetached {
				detached++
			}
		case BehaviourSilent:
			if lastTx.After(s.SilentAt) {
				t.Errorf("sensor %d: transmitted at %v after falling silent at %v", s.Index, lastTx, s.SilentAt)
			}
			if lastTx.Before(start.Add((simDays - 1) * 24 * time.Hour)) {
				silent++
			}
		case BehaviourHotLineCooling:
			if lastDayMaxPipe < 50 {
				cooled++
			}
		case BehaviourColdLineWarming:
			if maxPipe > 25 {
				warmed++
			}
		case BehaviourRarelyUsed:
			if lastWater.IsZero() || lastWater.Sub(s.BootAt) > 7*24*time.Hour {
				rare++
			}
		default:
			if lastTx.Before(start.Add((simDays*24 - 1) * time.Hour)) {
				t.Errorf("sensor %d (%s) stopped at %v", s.Index, s.Behaviour, lastTx)
			}
			if minBatt < 2900 {
				t.Errorf("sensor %d (%s): battery %d mV", s.Index, s.Behaviour, minBatt)
			}
			if sawDetached {
				t.Errorf("sensor %d (%s): detached", s.Index, s.Behaviour)
			}
		}
		if !s.TapKind.IsContinuous() && s.Behaviour == BehaviourNormal && waterEvents < simDays {
			t.Errorf("sensor %d: a daily-used %s reported %d water events in %d days", s.Index, s.TapKind, waterEvents, simDays)
		}
	}
	t.Logf("%d receptions, flushes %d, disinfections %d, low battery %d/%d, detached %d, silent %d, cooled %d, warmed %d, rarely used %d, gateways per uplink %v",
		len(ups), flushes, disinfections, lowBattMinor, lowBattMajor, detached, silent, cooled, warmed, rare, gwHist)
	for name, n := range map[string]int{"flush": flushes, "disinfection": disinfections, "low battery <2.9 V": lowBattMinor,
		"low battery <2.7 V": lowBattMajor, "detached": detached, "silent": silent, "hot line cooled below 50 °C": cooled,
		"cold line above 25 °C": warmed, "rarely used tap": rare} {
		if n == 0 {
			t.Errorf("no %s in ten days", name)
		}
	}
	if gwHist[1] == 0 || gwHist[2] == 0 {
		t.Errorf("gateway coverage too uniform: %v", gwHist)
	}
}

func TestCounterRollOverAndLoss(t *testing.T) {
	cfg := Config{Sensors: 5, Gateways: 1, Seed: 3, InitialFCnt: 0xfff0, FrameLoss: 0.3, Behaviours: BehaviourMix{Normal: 1}}
	f, ups := collect(t, cfg, 24*time.Hour)
	keys := map[lorawan.EUI64]*lorawan.SessionKeys{}
	for _, s := range f.Sensors() {
		keys[s.DevEUI], _ = lorawan.NewSessionKeys(s.NwkSKey, s.AppSKey)
	}
	last := map[lorawan.EUI64]uint32{}
	gaps, rolled := 0, 0
	for _, u := range ups {
		df, err := lorawan.ParseDataFrame(u.PHYPayload)
		if err != nil {
			t.Fatal(err)
		}
		l, has := last[u.DevEUI]
		fcnt, _, err := lorawan.FullFCnt(l, has, df.FCnt16)
		if err != nil || fcnt != u.FCnt {
			t.Fatalf("FullFCnt %d %v, truth %d", fcnt, err, u.FCnt)
		}
		if err := keys[u.DevEUI].VerifyUplinkMIC(&df, fcnt); err != nil {
			t.Fatal(err)
		}
		if has && fcnt > l+1 {
			gaps++
		}
		if fcnt > 0xffff && (!has || l <= 0xffff) {
			rolled++
		}
		last[u.DevEUI] = fcnt
	}
	if gaps == 0 || rolled != 5 {
		t.Errorf("gaps %d (want some lost frames), roll-overs %d (want 5)", gaps, rolled)
	}
}

func TestRadioModel(t *testing.T) {
	if got := airtime(31, 7); got < 71*time.Millisecond || got > 73*time.Millisecond {
		t.Errorf("airtime(31 B, SF7) = %v, want ≈ 71.9 ms", got)
	}
	if got := airtime(31, 12); got < 1800*time.Millisecond || got > 1820*time.Millisecond {
		t.Errorf("airtime(31 B, SF12) = %v, want ≈ 1.81 s", got)
	}
	if chooseSF(30) != 7 || chooseSF(-15) != 12 || chooseSF(0) != 8 {
		t.Errorf("chooseSF: %d %d %d", chooseSF(30), chooseSF(-15), chooseSF(0))
	}
	if q := quotas(60, []float64{70, 10, 5, 5, 4, 3, 3}); q[0]+q[1]+q[2]+q[3]+q[4]+q[5]+q[6] != 60 || q[6] == 0 {
		t.Errorf("quotas %v", q)
	}
}

func BenchmarkFleet(b *testing.B) {
	f, err := New(Config{Sensors: 1000, Gateways: 10, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	start := time.Now()
	for b.Loop() {
		if _, ok := f.Next(); !ok {
			b.Fatal(f.Err())
		}
		n++
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(n)/el, "receptions/s")
	b.ReportMetric(float64(f.txs)/el, "frames/s")
}
