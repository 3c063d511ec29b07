package fleet

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// never is a time that does not come.
const never = time.Duration(math.MaxInt64)

// Firmware version the simulated sensors report.
const (
	fwMajor = 1
	fwMinor = 4
)

// minTxGap is the least time between two transmissions of one sensor
// (radio turnaround plus a little duty-cycle courtesy). Measurements keep
// their exact slot, because their sample times hang off the transmission
// time; status and water-event frames yield.
const minTxGap = 8 * time.Second

// SensorInfo describes one simulated sensor: what the registry needs to
// provision it, and the scripted ground truth tests compare against.
type SensorInfo struct {
	Index     int
	DevEUI    lorawan.EUI64
	DevAddr   lorawan.DevAddr
	NwkSKey   lorawan.AES128Key
	AppSKey   lorawan.AES128Key
	TapKind   TapKind
	Behaviour Behaviour
	// BootAt is when the sensor powers up and sends its first status.
	BootAt time.Time
	// DetachAt (DETACHED) is when the clip falls off; zero otherwise.
	DetachAt time.Time
	// SilentAt (SILENT) is when the sensor stops transmitting; zero otherwise.
	SilentAt time.Time
	// DataRate is the spreading factor the sensor uses, e.g. "SF9BW125".
	DataRate string
	// X, Y are metres from the fleet's origin.
	X, Y float64
}

// flow is one period of water flowing past the clip: a tap being used or
// flushed, or a thermal disinfection.
type flow struct {
	start, end time.Duration
	kind       clipr.WaterEventKind
	supply     float64 // °C of the water while it flows
	report     bool    // the sensor detects and reports it (FPort 2)
	reportAt   time.Duration
	startPipe  float64
	extreme    float64 // max on hot lines, min on cold lines
}

// txKind is what a sensor transmits next.
type txKind uint8

const (
	txMeasurement txKind = iota // FPort 1
	txStatus                    // FPort 3, periodic (and at boot)
	txFlagStatus                // FPort 3, flags changed
	txWaterEvent                // FPort 2
)

// sensor is the simulated device: identity, session, radio links,
// behaviour script and the physical state of its pipe.
type sensor struct {
	info  SensorInfo
	keys  *lorawan.SessionKeys
	rng   *rand.Rand
	links []link // best first
	sf    int
	cfg   *Config

	// Script, as offsets from the fleet start.
	boot, detachAt, silentAt time.Duration
	midnight                 time.Duration // offset of the fleet start past UTC midnight

	// Transmission schedule.
	fcnt         uint32
	lastTx       time.Duration
	measAt       time.Duration
	statusAt     time.Duration
	flagStatusAt time.Duration
	booted       bool // the boot status went out

	// Physics.
	now          time.Duration
	pipe         float64 // °C at the clip
	ambientBase  float64
	ambientSwing float64
	supplyBase   float64
	driftStart   time.Duration
	driftRate    float64 // K/day, signed
	supplyLo     float64
	supplyHi     float64
	tauIdle      float64 // seconds
	tauFlow      float64 // seconds
	flowing      bool
	battStartMV  float64
	battRateMV   float64 // mV/day

	// Flows: flows[cur] is the current or next flow physically, flows[ev]
	// the next one whose water event is still to be sent.
	flows       []flow
	cur, ev     int
	daysDone    int           // flows generated for days [0, daysDone)
	rareNext    time.Duration // RARELY_USED: next flush
	disinfDay   int           // weekday offset of the weekly disinfection
	disinfecter bool

	// Samples: a ring of the newest recorded samples.
	nextSampleAt time.Duration
	ring         [maxSamples]clipr.Sample
	ringLen      int
	ringHead     int
}

// days converts a duration to fractional days.
func days(d time.Duration) float64 { return d.Hours() / 24 }

// uniform draws from [lo, hi).
func uniform(rng *rand.Rand, lo, hi float64) float64 { return lo + rng.Float64()*(hi-lo) }

// uniformDur draws from [lo, hi), rounded to milliseconds.
func uniformDur(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return (lo + time.Duration(rng.Int64N(int64(hi-lo)))).Round(time.Millisecond)
}

// setupPhysics draws the sensor's physical parameters and behaviour script.
func (s *sensor) setupPhysics() {
	rng, kind := s.rng, s.info.TapKind
	s.detachAt, s.silentAt, s.flagStatusAt = never, never, never
	s.ambientBase = uniform(rng, 18, 24)
	s.ambientSwing = uniform(rng, 0.5, 1.5)
	s.tauIdle = uniform(rng, 20, 60) * 60
	s.tauFlow = uniform(rng, 15, 40)
	s.driftStart = never
	switch kind {
	case HotTap, MixedTap, HeaterOutlet:
		s.supplyBase = uniform(rng, 60, 65)
	case CirculationReturn:
		s.supplyBase = uniform(rng, 60, 65) - uniform(rng, 1, 4)
	default:
		s.supplyBase = uniform(rng, 10, 15)
	}
	if kind.IsContinuous() {
		s.tauFlow = uniform(rng, 60, 180) // a big pipe with steady flow
	}
	s.supplyLo, s.supplyHi = s.supplyBase, s.supplyBase
	s.battStartMV, s.battRateMV = uniform(rng, 3000, 3600), 0.5
	s.disinfecter = kind == HotTap || kind == HeaterOutlet || kind == CirculationReturn
	s.disinfDay = rng.IntN(7)

	switch s.info.Behaviour {
	case BehaviourRarelyUsed:
		s.rareNext = s.boot + uniformDur(rng, 8*24*time.Hour, 14*24*time.Hour)
		s.disinfecter = false
	case BehaviourHotLineCooling:
		s.driftStart = s.boot + uniformDur(rng, 24*time.Hour, 3*24*time.Hour)
		s.driftRate = -uniform(rng, 2.5, 4.5)
		s.supplyLo = uniform(rng, 42, 47)
		s.disinfecter = false
	case BehaviourColdLineWarming:
		s.ambientBase = uniform(rng, 26, 29)
		s.driftStart = s.boot + uniformDur(rng, 12*time.Hour, 2*24*time.Hour)
		s.driftRate = uniform(rng, 2, 3.5)
		s.supplyHi = uniform(rng, 26, 28)
	case BehaviourLowBattery:
		s.battStartMV, s.battRateMV = uniform(rng, 2930, 2970), uniform(rng, 30, 45)
	case BehaviourDetached:
		s.detachAt = s.boot + uniformDur(rng, 24*time.Hour, 5*24*time.Hour)
		s.flagStatusAt = s.detachAt + uniformDur(rng, 5*time.Second, time.Minute)
	case BehaviourSilent:
		s.silentAt = s.boot + uniformDur(rng, 24*time.Hour, 4*24*time.Hour)
	}

	s.now = s.boot
	if kind.IsContinuous() {
		s.pipe = s.supplyAt(s.boot)
	} else {
		s.pipe = s.ambientAt(s.boot) + uniform(rng, -0.5, 0.5)
	}
	s.fcnt = s.cfg.InitialFCnt
	s.lastTx = -never
	s.statusAt = s.boot
	s.measAt = s.boot + s.cfg.ReportInterval
	s.nextSampleAt = s.boot + s.cfg.SampleInterval
}

// ambientAt is the air temperature around the pipe: a daily swing peaking
// mid-afternoon.
func (s *sensor) ambientAt(t time.Duration) float64 {
	hour := math.Mod((t + s.midnight).Hours(), 24)
	return s.ambientBase + s.ambientSwing*math.Sin(2*math.Pi*(hour-9)/24)
}

// supplyAt is the temperature of the water feeding the line, drifting
// (cooling hot lines, warming cold ones) after driftStart.
func (s *sensor) supplyAt(t time.Duration) float64 {
	v := s.supplyBase
	if t > s.driftStart {
		v += s.driftRate * days(t-s.driftStart)
	}
	return min(max(v, s.supplyLo), s.supplyHi)
}

// batteryAt is the battery voltage in mV.
func (s *sensor) batteryAt(t time.Duration) uint16 {
	mv := s.battStartMV - s.battRateMV*days(t-s.boot)
	return uint16(math.Round(max(mv, 2200)))
}

// dayStart is the offset of UTC midnight of simulated day d.
func (s *sensor) dayStart(d int) time.Duration {
	return time.Duration(d)*24*time.Hour - s.midnight
}

// ensureFlows generates the flow schedule day by day until it covers t.
func (s *sensor) ensureFlows(t time.Duration) {
	for s.dayStart(s.daysDone) <= t {
		s.generateDay(s.daysDone)
		s.daysDone++
	}
	// Drop flows that are both finished and reported, so the slice stays short.
	if done := min(s.cur, s.ev); done > 32 {
		s.flows = append(s.flows[:0], s.flows[done:]...)
		s.cur -= done
		s.ev -= done
	}
}

// generateDay appends day d's flows in time order, without overlaps.
func (s *sensor) generateDay(d int) {
	rng, kind := s.rng, s.info.TapKind
	day0 := s.dayStart(d)
	var fs []flow
	hot := kind.IsHot()
	if !kind.IsContinuous() {
		uses := 0
		switch s.info.Behaviour {
		case BehaviourRarelyUsed:
			if s.rareNext < day0+24*time.Hour && s.rareNext >= day0 {
				fs = append(fs, flow{start: s.rareNext, end: s.rareNext + uniformDur(rng, 2*time.Minute, 5*time.Minute), kind: clipr.EventFlush})
				s.rareNext += uniformDur(rng, 8*24*time.Hour, 14*24*time.Hour)
			}
		case BehaviourColdLineWarming:
			if rng.Float64() < 0.4 {
				uses = 1
			}
		default:
			uses = 2 + rng.IntN(5)
		}
		for range uses {
			var hour float64
			switch p := rng.Float64(); {
			case p < 0.4:
				hour = uniform(rng, 6, 9)
			case p < 0.6:
				hour = uniform(rng, 11, 14)
			default:
				hour = uniform(rng, 17, 22)
			}
			dur := math.Exp(math.Log(60) + 0.7*rng.NormFloat64())
			if rng.Float64() < 0.2 {
				dur = uniform(rng, 120, 240) // a deliberate flush
			}
			dur = min(max(dur, 15), 360)
			start := day0 + time.Duration(hour*float64(time.Hour)).Round(time.Millisecond)
			fs = append(fs, flow{start: start, end: start + time.Duration(dur*float64(time.Second)).Round(time.Millisecond), kind: clipr.EventFlush})
		}
	}
	if s.disinfecter && (d+s.disinfDay)%7 == 0 {
		start := day0 + time.Duration(uniform(rng, 2, 4)*float64(time.Hour)).Round(time.Millisecond)
		fs = append(fs, flow{start: start, end: start + uniformDur(rng, 6*time.Minute, 12*time.Minute), kind: clipr.EventDisinfection})
	}
	// Order, drop flows before boot, and push overlapping ones back.
	sortFlows(fs)
	prevEnd := s.boot + time.Minute
	if n := len(s.flows); n > 0 {
		prevEnd = max(prevEnd, s.flows[n-1].end+time.Minute)
	}
	for _, f := range fs {
		if f.start < prevEnd {
			if f.end < s.boot+time.Minute {
				continue
			}
			f.end += prevEnd - f.start
			f.start = prevEnd
		}
		switch {
		case f.kind == clipr.EventDisinfection:
			f.supply = uniform(rng, 70, 72)
		case hot:
			f.supply = s.supplyAt(f.start) + rng.NormFloat64()*0.3
		default:
			f.supply = s.supplyAt(f.start) + rng.NormFloat64()*0.2
		}
		f.reportAt = f.end + uniformDur(rng, 30*time.Second, 2*time.Minute)
		f.report = (!kind.IsContinuous() || f.kind == clipr.EventDisinfection) &&
			f.end < s.detachAt && f.reportAt < s.silentAt
		s.flows = append(s.flows, f)
		prevEnd = f.end + time.Minute
	}
}

// sortFlows orders a handful of flows by start (insertion sort: no
// reflection, no allocation).
func sortFlows(fs []flow) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].start < fs[j-1].start; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

// advanceTo runs the pipe physics up to t, recording samples on their grid
// and the start and extreme temperatures of flows.
func (s *sensor) advanceTo(t time.Duration) {
	s.ensureFlows(t + 24*time.Hour)
	for {
		s.boundaries()
		if s.now >= t {
			return
		}
		next := min(t, s.nextSampleAt)
		if s.cur < len(s.flows) {
			f := &s.flows[s.cur]
			if s.flowing {
				next = min(next, f.end)
			} else if f.start > s.now {
				next = min(next, f.start)
			}
		}
		s.evolve(next - s.now)
		s.now = next
	}
}

// boundaries handles flow ends, flow starts and samples due at s.now.
func (s *sensor) boundaries() {
	if s.flowing && s.flows[s.cur].end <= s.now {
		s.flowing = false
		s.cur++
		s.ensureFlows(s.now + 24*time.Hour)
	}
	if !s.flowing && s.cur < len(s.flows) && s.flows[s.cur].start <= s.now {
		s.flowing = true
		f := &s.flows[s.cur]
		f.startPipe, f.extreme = s.pipe, s.pipe
	}
	if s.nextSampleAt <= s.now {
		s.recordSample()
		s.nextSampleAt += s.cfg.SampleInterval
	}
}

// evolve relaxes the pipe temperature for dt toward its target: the water
// while it flows, the air while it stands.
func (s *sensor) evolve(dt time.Duration) {
	if dt <= 0 {
		return
	}
	var target, tau float64
	switch {
	case s.flowing:
		target, tau = s.flows[s.cur].supply, s.tauFlow
	case s.info.TapKind.IsContinuous():
		target, tau = s.supplyAt(s.now), s.tauFlow
	default:
		target, tau = s.ambientAt(s.now), s.tauIdle
	}
	s.pipe = target + (s.pipe-target)*math.Exp(-dt.Seconds()/tau)
	if s.flowing {
		f := &s.flows[s.cur]
		if s.info.TapKind.IsHot() {
			f.extreme = max(f.extreme, s.pipe)
		} else {
			f.extreme = min(f.extreme, s.pipe)
		}
	}
}

// recordSample stores what the probes read now. A detached clip's pipe
// probe hangs in the air.
func (s *sensor) recordSample() {
	amb := s.ambientAt(s.now)
	pipe := s.pipe + s.rng.NormFloat64()*0.05
	if s.now >= s.detachAt {
		pipe = amb + 0.4 + s.rng.NormFloat64()*0.1
	}
	smp := clipr.Sample{
		Pipe:    clipr.TempFromCelsius(pipe),
		Ambient: clipr.TempFromCelsius(amb + s.rng.NormFloat64()*0.1),
	}
	s.ring[s.ringHead] = smp
	s.ringHead = (s.ringHead + 1) % len(s.ring)
	s.ringLen = min(s.ringLen+1, len(s.ring))
}

// lastSamples returns the newest n samples, oldest first (NoTemp-filled
// when fewer were recorded).
func (s *sensor) lastSamples(n int) []clipr.Sample {
	out := make([]clipr.Sample, n)
	for i := range out {
		back := n - i // 1 = newest
		if back > s.ringLen {
			out[i] = clipr.Sample{Pipe: clipr.NoTemp, Ambient: clipr.NoTemp}
			continue
		}
		out[i] = s.ring[(s.ringHead-back+len(s.ring))%len(s.ring)]
	}
	return out
}

// nextTx returns when and what the sensor transmits next; ok is false once
// the sensor is silent for good.
func (s *sensor) nextTx() (at time.Duration, kind txKind, ok bool) {
	// Skip flows the sensor will never report, generating ahead as needed.
	for {
		s.ensureFlows(max(s.now, s.measAt) + 24*time.Hour)
		if s.ev >= len(s.flows) || s.flows[s.ev].report {
			break
		}
		s.ev++
	}
	at, kind = s.measAt, txMeasurement
	consider := func(t time.Duration, k txKind) {
		t = max(t, s.lastTx+minTxGap)
		if t > s.measAt-minTxGap && t < s.measAt+minTxGap {
			t = s.measAt + minTxGap
		}
		if t < at {
			at, kind = t, k
		}
	}
	consider(s.statusAt, txStatus)
	if s.flagStatusAt != never {
		consider(s.flagStatusAt, txFlagStatus)
	}
	if s.ev < len(s.flows) {
		consider(s.flows[s.ev].reportAt, txWaterEvent)
	}
	if at >= s.silentAt {
		return 0, 0, false
	}
	return at, kind, true
}

// message advances the physics to t and builds the Clip'R message of a
// transmission of the given kind, updating the schedule.
func (s *sensor) message(t time.Duration, kind txKind) clipr.Message {
	s.advanceTo(t)
	switch kind {
	case txMeasurement:
		s.measAt += s.cfg.ReportInterval
		n := int(s.cfg.ReportInterval / s.cfg.SampleInterval)
		return clipr.Measurement{
			IntervalS: uint16(s.cfg.SampleInterval / time.Second),
			BatteryMV: s.batteryAt(t),
			Samples:   s.lastSamples(n),
		}
	case txWaterEvent:
		f := s.flows[s.ev]
		s.ev++
		return clipr.WaterEvent{
			Kind:        f.kind,
			StartedSAgo: uint16(min((t-f.start)/time.Second, math.MaxUint16)),
			DurationS:   uint16(min((f.end-f.start)/time.Second, math.MaxUint16)),
			StartPipe:   clipr.TempFromCelsius(f.startPipe + s.rng.NormFloat64()*0.05),
			ExtremePipe: clipr.TempFromCelsius(f.extreme + s.rng.NormFloat64()*0.05),
		}
	default:
		if kind == txFlagStatus {
			s.flagStatusAt = never
		} else {
			s.statusAt += s.cfg.StatusInterval
		}
		st := clipr.Status{
			Detached:  t >= s.detachAt,
			Rebooted:  !s.booted,
			BatteryMV: s.batteryAt(t),
			FwMajor:   fwMajor,
			FwMinor:   fwMinor,
			IntervalS: uint16(s.cfg.ReportInterval / time.Second),
		}
		s.booted = true
		return st
	}
}
