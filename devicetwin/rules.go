package devicetwin

import (
	"slices"
	"strconv"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// maxInferredRun ends an inferred flush that never seems to stop (a tap in
// constant use): it is logged and a new one may start.
const maxInferredRun = ms(2 * time.Hour / time.Millisecond)

// defaultMinDisinfectionRun is the shortest sample run logged as an
// inferred disinfection when the profile has no criteria to take it from.
const defaultMinDisinfectionRun = ms(5 * time.Minute / time.Millisecond)

func fmtTemp(t clipr.Temp) string {
	if !t.Valid() {
		return "no value"
	}
	return strconv.FormatFloat(t.Celsius(), 'f', 2, 64) + " °C"
}

func fmtDur(d ms) string { return (time.Duration(d) * time.Millisecond).String() }

// measurement emits one reading per sample at its event time and runs the
// sample rules on samples newer than any seen before. A late frame's
// samples are logged but do not drive the rules, which need samples in time
// order.
func (s *SensorState) measurement(m *clipr.Measurement, rx ms, late bool, e *emitter) {
	n := len(m.Samples)
	e.dst = slices.Grow(e.dst, n+4)
	iv := ms(m.IntervalS) * 1000
	for i := range m.Samples {
		smp := m.Samples[i]
		t := rx - ms(n-1-i)*iv
		ev := e.add(KindReading, t)
		ev.Reading = Reading{Pipe: smp.Pipe, Ambient: smp.Ambient, Index: uint8(i)}
		if late || t <= s.lastSampleAt {
			continue
		}
		s.sample(t, smp, iv, e)
	}
	if late {
		return
	}
	s.sampleIntervalS, s.samplesPerUplink = m.IntervalS, uint8(min(n, 255))
	s.battery(m.BatteryMV, rx, e)
}

// sample runs the per-sample rules of the tap kind on one sample at t.
// While the clip is detached or the probe faulty the values are not the
// pipe's, so only readings are logged.
func (s *SensorState) sample(t ms, smp clipr.Sample, iv ms, e *emitter) {
	p, a := smp.Pipe, smp.Ambient
	defer func() { s.lastSampleAt, s.lastPipe, s.lastAmbient = t, p, a }()
	if !p.Valid() || s.detached || s.probeErr {
		p = clipr.NoTemp
		return
	}
	eff := &s.eff
	P := int32(p)
	switch k := s.cfg.TapKind; k {
	case HeaterOutlet, CirculationReturn:
		lim := eff.HeaterOutletMin
		if k == CirculationReturn {
			lim = eff.CirculationReturnMin
		}
		L := int32(lim)
		s.sustained(0, HotWaterTooCold, Major, P < L, P >= L+int32(eff.Hysteresis), t, P, L, "below", e)
	case ColdMain:
		L := int32(eff.ColdMax)
		s.sustained(0, ColdWaterTooWarm, Major, P > L, P <= L-int32(eff.Hysteresis), t, P, L, "above", e)
	}
	k := s.cfg.TapKind
	if k.cold() && a.Valid() {
		L := int32(a) + int32(eff.HotspotDelta)
		s.sustained(1, Hotspot, Warning, P > L, P <= L-int32(eff.Hysteresis), t, P, L, "above ambient+delta", e)
	}
	if k.flushed() {
		s.inferFlush(t, p, a, iv, e)
	}
	if k.hot() && eff.DisinfectionDetect > 0 {
		s.inferDisinfection(t, p, iv, e)
	}
}

// sustained runs a sustained-window rule: raise once the value has been
// out of range for the window, clear once it has been back in range (by
// the hysteresis) for the window. Both windows restart whenever a sample
// breaks them, so a flapping value neither raises nor clears.
func (s *SensorState) sustained(w int, t AlarmType, sev Severity, bad, good bool, at ms, val, thr int32, rel string, e *emitter) {
	win := &s.win[w]
	a := &s.alarms[t]
	W := durMS(s.eff.SustainedWindow)
	if !a.Status.Active() {
		win.inSince = 0
		if !bad {
			win.outSince = 0
			return
		}
		if win.outSince == 0 {
			win.outSince = at
		}
		if at-win.outSince >= W {
			c := s.ctx(t, at, "pipe "+fmtTemp(clipr.Temp(val))+" "+rel+" "+fmtTemp(clipr.Temp(thr))+" for "+fmtDur(at-win.outSince))
			c.raise(a, sev, true, val, thr, e)
			win.outSince = 0
		}
		return
	}
	win.outSince = 0
	if !good {
		win.inSince = 0
		return
	}
	if win.inSince == 0 {
		win.inSince = at
	}
	if at-win.inSince >= W {
		c := s.ctx(t, at, "back in range for "+fmtDur(at-win.inSince))
		c.clear(a, e)
		win.inSince = 0
	}
}

// reachedFlushTarget reports whether p meets the flush temperature of the
// tap kind (any temperature on a mixed tap).
func (s *SensorState) reachedFlushTarget(p clipr.Temp) bool {
	switch s.cfg.TapKind {
	case HotTap:
		return p >= s.eff.HotFlushMin
	case ColdTap:
		return p <= s.eff.ColdMax
	}
	return true
}

// inferFlush detects flushes from consecutive samples: a move of at least
// FlushDelta away from ambient toward the supply temperature starts one; it
// lasts while the pipe stays within Hysteresis of the run's extreme (water
// still flowing) and ends at the first sample that falls back.
func (s *SensorState) inferFlush(t ms, p, a clipr.Temp, iv ms, e *emitter) {
	r := &s.flush
	delta := int32(s.eff.FlushDelta)
	if r.start != 0 {
		d := int32(r.dir)
		moved := (int32(p) - int32(r.extreme)) * d
		if moved > -int32(s.eff.Hysteresis) && t-r.start < maxInferredRun {
			if moved > 0 {
				r.extreme = p
			}
			r.last = t
			if r.reached == 0 && s.reachedFlushTarget(p) {
				r.reached = t
			}
			return
		}
		s.endFlush(iv, e)
		return
	}
	if s.lastSampleAt == 0 || !s.lastPipe.Valid() || iv <= 0 || t-s.lastSampleAt > 2*iv {
		return
	}
	jump := int32(p) - int32(s.lastPipe)
	d := int32(s.cfg.TapKind.supplyDir())
	if d == 0 {
		switch {
		case jump > 0:
			d = 1
		case jump < 0:
			d = -1
		default:
			return
		}
	}
	if jump*d < delta || (a.Valid() && (int32(p)-int32(a))*d < delta) {
		return
	}
	*r = flushRun{start: t, last: t, base: s.lastPipe, extreme: p, dir: int8(d)}
	if s.reachedFlushTarget(p) {
		r.reached = t
	}
}

// endFlush logs the inferred flush in progress, unless the device reported
// the same flush itself.
func (s *SensorState) endFlush(iv ms, e *emitter) {
	r := s.flush
	s.flush = flushRun{}
	if s.reportedEnd != 0 && s.reportedStart <= r.last && s.reportedEnd >= r.start-iv {
		return
	}
	// The flow started after the previous sample and stopped before the
	// next: the span of the run plus one interval is the estimate.
	dur := r.last - r.start + iv
	reachIn := ms(-1)
	if r.reached != 0 {
		reachIn = r.reached - r.start
	}
	s.flushOutcome(true, r.start, dur, r.base, r.extreme, reachIn, r.last, e)
}

// flushCompliance judges a flush by the tap kind's rules.
func (s *SensorState) flushCompliance(dur ms, extreme clipr.Temp, reachIn ms) (assessed, ok bool, reason string, target clipr.Temp) {
	k := s.cfg.TapKind
	if !k.flushed() {
		return false, false, "flush rules do not apply to " + k.String(), 0
	}
	if need := durMS(s.eff.FlushMinDuration); dur < need {
		return true, false, "lasted " + fmtDur(dur) + ", needs " + fmtDur(need), 0
	}
	switch k {
	case HotTap:
		target = s.eff.HotFlushMin
		if !extreme.Valid() || extreme < target {
			return true, false, "reached " + fmtTemp(extreme) + ", needs " + fmtTemp(target), target
		}
		if w := durMS(s.eff.HotFlushWithin); w > 0 && reachIn > w {
			return true, false, "reached " + fmtTemp(target) + " after " + fmtDur(reachIn) + ", needs within " + fmtDur(w), target
		}
	case ColdTap:
		target = s.eff.ColdMax
		if !extreme.Valid() || extreme > target {
			return true, false, "coldest " + fmtTemp(extreme) + ", needs at most " + fmtTemp(target), target
		}
	}
	return true, true, "", target
}

// flushOutcome logs a flush and applies its consequences: a compliant one
// restarts the flush interval and clears FLUSH_OVERDUE and FLUSH_FAILED, a
// non-compliant one raises FLUSH_FAILED.
func (s *SensorState) flushOutcome(inferred bool, start, dur ms, startPipe, extreme clipr.Temp, reachIn, end ms, e *emitter) {
	assessed, ok, reason, target := s.flushCompliance(dur, extreme, reachIn)
	ev := e.add(KindWaterEvent, start)
	ev.Water = WaterEventOut{
		Kind: clipr.EventFlush, Inferred: inferred, Assessed: assessed, Compliant: ok, Reason: reason,
		Duration: time.Duration(dur) * time.Millisecond, StartPipe: startPipe, ExtremePipe: extreme,
	}
	if !assessed {
		return
	}
	if ok {
		s.lastFlush = max(s.lastFlush, end)
		c := s.ctx(FlushOverdue, end, "compliant flush")
		c.clear(&s.alarms[FlushOverdue], e)
		c.typ = FlushFailed
		c.clear(&s.alarms[FlushFailed], e)
		return
	}
	c := s.ctx(FlushFailed, end, reason)
	hasVal := target != 0 && extreme.Valid()
	c.raise(&s.alarms[FlushFailed], Minor, hasVal, int32(extreme), int32(target), e)
}

// inferDisinfection detects thermal disinfections on hot lines: a run of
// samples at or above DisinfectionDetect lasting at least the shortest
// hold time of the profile.
func (s *SensorState) inferDisinfection(t ms, p clipr.Temp, iv ms, e *emitter) {
	r := &s.dis
	if p >= s.eff.DisinfectionDetect {
		if r.start == 0 {
			*r = disRun{start: t, last: t, min: p, max: p}
			return
		}
		r.last, r.min, r.max = t, min(r.min, p), max(r.max, p)
		return
	}
	if r.start == 0 {
		return
	}
	run := *r
	*r = disRun{}
	dur := run.last - run.start + iv
	minRun := defaultMinDisinfectionRun
	for i, h := range s.eff.holds() {
		if i == 0 || durMS(h.Hold) < minRun {
			minRun = durMS(h.Hold)
		}
	}
	if dur < minRun {
		return
	}
	s.disinfectionOutcome(true, run.start, dur, run.min, run.max, run.min, run.last, e)
}

// disinfectionCompliance judges a disinfection that held at least held for
// dur against the profile's temperature/hold criteria.
func (s *SensorState) disinfectionCompliance(dur ms, held clipr.Temp) (assessed, ok bool, reason string) {
	holds := s.eff.holds()
	if len(holds) == 0 {
		return false, false, "profile " + s.eff.ID.String() + " has no thermal-disinfection criterion"
	}
	if held.Valid() {
		for _, h := range holds {
			if held >= h.Temp && dur >= durMS(h.Hold) {
				return true, true, ""
			}
		}
	}
	return true, false, "held " + fmtTemp(held) + " for " + fmtDur(dur) + ", below every criterion"
}

func (s *SensorState) disinfectionOutcome(inferred bool, start, dur ms, startPipe, extreme, held clipr.Temp, end ms, e *emitter) {
	assessed, ok, reason := s.disinfectionCompliance(dur, held)
	ev := e.add(KindWaterEvent, start)
	ev.Water = WaterEventOut{
		Kind: clipr.EventDisinfection, Inferred: inferred, Assessed: assessed, Compliant: ok, Reason: reason,
		Duration: time.Duration(dur) * time.Millisecond, StartPipe: startPipe, ExtremePipe: extreme,
	}
	if !assessed {
		return
	}
	if ok {
		s.lastDisinfection = max(s.lastDisinfection, end)
		c := s.ctx(DisinfectionFailed, end, "compliant disinfection")
		c.clear(&s.alarms[DisinfectionFailed], e)
		return
	}
	c := s.ctx(DisinfectionFailed, end, reason)
	c.raise(&s.alarms[DisinfectionFailed], Minor, held.Valid(), int32(held), int32(s.eff.holds()[0].Temp), e)
}

// waterEvent logs a device-reported flush or disinfection (FPort 2).
// ExtremePipe is the maximum on hot lines and the minimum on cold lines;
// a reported disinfection is judged on its maximum and duration, as the
// device reports nothing finer.
func (s *SensorState) waterEvent(w *clipr.WaterEvent, rx ms, e *emitter) {
	start := rx - ms(w.StartedSAgo)*1000
	dur := ms(w.DurationS) * 1000
	end := start + dur
	switch w.Kind {
	case clipr.EventFlush:
		if end > s.reportedEnd {
			s.reportedStart, s.reportedEnd = start, end
		}
		s.flushOutcome(false, start, dur, w.StartPipe, w.ExtremePipe, -1, end, e)
	case clipr.EventDisinfection:
		s.disinfectionOutcome(false, start, dur, w.StartPipe, w.ExtremePipe, w.ExtremePipe, end, e)
	}
}

// status applies a status frame (FPort 3): clip and probe alarms, battery,
// firmware, and a DeviceStatus event. A late status frame is only logged:
// newer frames already told the current state.
func (s *SensorState) status(st *clipr.Status, rx ms, late, reset bool, e *emitter) {
	if !late {
		s.detached, s.probeErr = st.Detached, st.ProbeFault
		s.fwMajor, s.fwMinor, s.devIntervalS = st.FwMajor, st.FwMinor, st.IntervalS
		s.flag(SensorDetached, st.Detached, rx, "clip detached from pipe", "clip attached", e)
		s.flag(ProbeFault, st.ProbeFault, rx, "probe fault reported", "probe fault gone", e)
		if st.Detached || st.ProbeFault {
			// Runs built on the probe's values end without being logged.
			s.flush, s.dis = flushRun{}, disRun{}
		}
		s.battery(st.BatteryMV, rx, e)
	}
	ev := e.add(KindDeviceStatus, rx)
	ev.Status = DeviceStatus{
		BatteryMV: st.BatteryMV, Detached: st.Detached, ProbeFault: st.ProbeFault, Rebooted: st.Rebooted,
		FwMajor: st.FwMajor, FwMinor: st.FwMinor, IntervalS: st.IntervalS, CounterReset: reset,
		BestRSSI: s.rx.rssi, BestSNR: s.rx.snr, Gateways: s.rx.gateways, NGateways: s.rx.nGateways,
	}
}

// flag raises or clears a MAJOR alarm that follows a device flag.
func (s *SensorState) flag(t AlarmType, on bool, at ms, raiseNote, clearNote string, e *emitter) {
	if on {
		c := s.ctx(t, at, raiseNote)
		c.raise(&s.alarms[t], Major, false, 0, 0, e)
		return
	}
	c := s.ctx(t, at, clearNote)
	c.clear(&s.alarms[t], e)
}

// battery runs BATTERY_LOW: MINOR below BatteryLowMV, MAJOR below
// BatteryMajorMV (back to MINOR only BatteryHysteresisMV above it), cleared
// at BatteryLowMV + BatteryHysteresisMV (a new battery).
func (s *SensorState) battery(mv uint16, at ms, e *emitter) {
	if mv == 0 {
		return
	}
	s.batteryMV = mv
	eff := &s.eff
	a := &s.alarms[BatteryLow]
	hyst := uint32(eff.BatteryHysteresisMV)
	switch {
	case mv < eff.BatteryLowMV || (a.Status.Active() && uint32(mv) < uint32(eff.BatteryLowMV)+hyst):
		sev := Minor
		if mv < eff.BatteryMajorMV || (a.Status.Active() && a.Severity == Major && uint32(mv) < uint32(eff.BatteryMajorMV)+hyst) {
			sev = Major
		}
		c := s.ctx(BatteryLow, at, "battery "+strconv.Itoa(int(mv))+" mV")
		c.raise(a, sev, true, int32(mv), int32(eff.BatteryLowMV), e)
	case uint32(mv) >= uint32(eff.BatteryLowMV)+hyst:
		c := s.ctx(BatteryLow, at, "battery "+strconv.Itoa(int(mv))+" mV")
		c.clear(a, e)
	}
}
