package devicetwin

import (
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// maxGateways bounds the gateways remembered per frame.
const maxGateways = 4

// seenWindow is how many counters behind the newest one the twin remembers
// individually (a bitmap), so late frames are applied once and duplicates
// are recognised.
const seenWindow = 64

// SensorState is the complete state of one Clip'R sensor twin. It is a
// plain value without references: copying it yields an independent twin,
// == compares two twins, and ApplySensor can take and return it by value.
// Fields are unexported; accessors expose what other layers read, and
// MarshalSnapshot/UnmarshalSensorSnapshot persist it.
type SensorState struct {
	dev EUI64
	cfg SensorConfig
	// eff and set are derived from cfg (not persisted).
	eff Profile
	set settings

	// Session: the newest accepted counter, the bitmap of the seenWindow
	// counters below it (bit i = last−i applied), and the counter epoch
	// (incremented by accepted resets; it keeps event ids unique).
	epoch     uint32
	hasFCnt   bool
	lastFCnt  uint32
	seen      uint64
	sessionAt ms
	resetAt   ms
	// staleBefore: frames received before it belong to an older session
	// or counter epoch and are ignored.
	staleBefore ms
	// lastCopy is the newest receive time of any copy of an applied frame.
	lastCopy ms
	// lastUplink is the receive time of the newest accepted frame, rx the
	// merged metadata of its copies.
	lastUplink ms
	rx         rxSummary

	// Security: rejections ever (for ids), the current counting window, and
	// the newest rejected frame (to recognise redeliveries of it).
	rejections  uint64
	rejWindowAt ms
	rejInWindow uint16
	lastRejAt   ms
	lastRejFCnt uint32

	// Clocks: when the twin was first configured or heard (time-based rules
	// start there), the newest tick, and the newest time seen at all.
	commissioned ms
	lastTick     ms
	now          ms

	// Device health as last reported.
	batteryMV          uint16
	detached, probeErr bool
	fwMajor, fwMinor   uint8
	devIntervalS       uint16
	sampleIntervalS    uint16
	samplesPerUplink   uint8

	// Newest sample that went through the rules.
	lastSampleAt ms
	lastPipe     clipr.Temp
	lastAmbient  clipr.Temp

	// Sustained windows: [0] the line's range rule, [1] the hotspot rule.
	win [2]window
	// Runs of samples being inferred as a flush or a disinfection.
	flush flushRun
	dis   disRun
	// Water history.
	lastFlush        ms // end of the newest compliant flush
	lastDisinfection ms // end of the newest compliant disinfection
	reportedStart    ms // newest device-reported flush, to suppress
	reportedEnd      ms // an inferred duplicate of it

	alarms [numAlarmTypes]Alarm
	// opAt is the newest operator action (ack, clear) per alarm type.
	opAt [numAlarmTypes]ms
}

// rxSummary merges the copies of one frame.
type rxSummary struct {
	best      EUI64
	rssi      int16
	snr       float32
	gateways  [maxGateways]EUI64
	nGateways uint8
}

func (r *rxSummary) merge(x Rx) bool {
	changed := false
	if r.nGateways == 0 || x.RSSI > r.rssi || (x.RSSI == r.rssi && x.SNR > r.snr) {
		if r.best != x.GatewayEUI || r.rssi != x.RSSI || r.snr != x.SNR || r.nGateways == 0 {
			changed = true
		}
		r.best, r.rssi, r.snr = x.GatewayEUI, x.RSSI, x.SNR
	}
	if x.GatewayEUI == (EUI64{}) {
		return changed // unknown gateway: nothing to list
	}
	for i := range r.nGateways {
		if r.gateways[i] == x.GatewayEUI {
			return changed
		}
	}
	if int(r.nGateways) < maxGateways {
		r.gateways[r.nGateways] = x.GatewayEUI
		r.nGateways++
		changed = true
	}
	return changed
}

// window tracks a sustained-window rule: since when the value has been out
// of range (alarm not active) or back in range (alarm active).
type window struct{ outSince, inSince ms }

// flushRun is an inferred flush in progress: start and newest sample of the
// run, when the target was reached, the temperature before it, the extreme
// and the direction (+1 hot, −1 cold).
type flushRun struct {
	start, last, reached ms
	base, extreme        clipr.Temp
	dir                  int8
}

// disRun is an inferred thermal disinfection in progress.
type disRun struct {
	start, last ms
	min, max    clipr.Temp
}

// NewSensor returns the twin of a sensor that has never been heard. An
// invalid cfg is replaced by the zero configuration; validate it first.
func NewSensor(dev EUI64, cfg SensorConfig) SensorState {
	if cfg.Validate() != nil {
		cfg = SensorConfig{Revision: cfg.Revision}
	}
	s := SensorState{dev: dev, cfg: cfg}
	s.resolve()
	return s
}

func (s *SensorState) resolve() {
	s.eff = s.cfg.profile()
	s.set = s.cfg.settings()
}

// DevEUI returns the sensor's DevEUI.
func (s *SensorState) DevEUI() EUI64 { return s.dev }

// Config returns the configuration in force.
func (s *SensorState) Config() SensorConfig { return s.cfg }

// Profile returns the merged rule profile in force.
func (s *SensorState) Profile() Profile { return s.eff }

// Alarm returns the current occurrence of an alarm type (Status StatusNone
// when there is none).
func (s *SensorState) Alarm(t AlarmType) Alarm {
	if t >= numAlarmTypes {
		return Alarm{}
	}
	return s.alarms[t]
}

// LastFCnt returns the newest accepted full frame counter and whether any
// frame was accepted in the current session.
func (s *SensorState) LastFCnt() (uint32, bool) { return s.lastFCnt, s.hasFCnt }

// LastUplink returns the receive time of the newest accepted frame.
func (s *SensorState) LastUplink() time.Time { return s.lastUplink.time() }

// BatteryMV returns the last reported battery voltage (0: unknown).
func (s *SensorState) BatteryMV() uint16 { return s.batteryMV }

// ApplySensor applies one input to a sensor twin and returns the new state
// and the events, oldest first. It is a pure function: s is not modified.
// Applying an input that was already applied (the same frame again, a tick
// not newer than the last, a stale ack or configuration) returns the state
// unchanged and no events, except that another copy of the newest frame
// merges its gateway and RSSI into the receive metadata.
func ApplySensor(s SensorState, in Input) (SensorState, []Event) {
	ev := s.Apply(in, nil)
	return s, ev
}

// Apply is ApplySensor in place, appending the events to dst: the hot path
// for actors that own the state and reuse an event buffer.
func (s *SensorState) Apply(in Input, dst []Event) []Event {
	switch v := in.(type) {
	case Uplink:
		return s.applyUplink(&v, dst)
	case *Uplink:
		return s.applyUplink(v, dst)
	case Tick:
		return s.applyTick(toMS(v.Now), dst)
	case ConfigChange:
		return s.applyConfig(&v, dst)
	case AlarmAck:
		return s.applyOperator(v.Type, toMS(v.At), v.By, v.Note, false, dst)
	case AlarmClear:
		return s.applyOperator(v.Type, toMS(v.At), v.By, v.Note, true, dst)
	case SessionReset:
		return s.applySessionReset(toMS(v.At), dst)
	}
	return dst
}

// NextDeadline returns when the twin next needs a Tick: the earliest
// SENSOR_OFFLINE or FLUSH_OVERDUE deadline not yet acted on. Sustained
// windows are not in it: they advance on sample event time, and only a
// sample proves a line stayed out of range.
func (s *SensorState) NextDeadline() (time.Time, bool) {
	var next ms
	if d, ok := s.offlineDeadline(); ok {
		next = d
	}
	if d, ok := s.flushDeadline(); ok && (next == 0 || d < next) {
		next = d
	}
	return next.time(), next != 0
}

func (s *SensorState) offlineDeadline() (ms, bool) {
	if s.commissioned == 0 {
		return 0, false
	}
	a := &s.alarms[SensorOffline]
	if a.Status.Active() {
		return 0, false
	}
	d := max(s.lastUplink, s.commissioned) + ms(float64(s.expectedInterval())*s.eff.OfflineFactor)
	if d <= a.ClearedAt {
		return 0, false
	}
	return d, true
}

func (s *SensorState) flushDeadline() (ms, bool) {
	if s.commissioned == 0 || !s.cfg.TapKind.flushed() {
		return 0, false
	}
	a := &s.alarms[FlushOverdue]
	if a.Status.Active() {
		return 0, false
	}
	d := max(s.lastFlush, s.commissioned) + durMS(s.eff.FlushEvery)
	if d <= a.ClearedAt {
		return 0, false
	}
	return d, true
}

// expectedInterval is the uplink interval SENSOR_OFFLINE is based on.
func (s *SensorState) expectedInterval() ms {
	if s.cfg.ExpectedInterval > 0 {
		return durMS(s.cfg.ExpectedInterval)
	}
	if s.sampleIntervalS > 0 && s.samplesPerUplink > 0 {
		return ms(s.sampleIntervalS) * ms(s.samplesPerUplink) * 1000
	}
	return durMS(DefaultExpectedInterval)
}

func (s *SensorState) ctx(t AlarmType, at ms, note string) alarmCtx {
	return alarmCtx{typ: t, at: at, by: SystemActor, note: note}
}

// advance runs the time-based rules up to now (exclusive of anything the
// caller does at now itself). Alarms are raised at their deadline: that is
// when the condition began.
func (s *SensorState) advance(now ms, e *emitter) {
	if now > s.now {
		s.now = now
	}
	if d, ok := s.offlineDeadline(); ok && d <= now {
		silent := d - max(s.lastUplink, s.commissioned)
		c := s.ctx(SensorOffline, d, offlineNote(silent))
		c.raise(&s.alarms[SensorOffline], Major, true, int32(silent/60000), int32(silent/60000), e)
	}
	s.flushCheck(now, e)
}

// flushCheck raises FLUSH_OVERDUE at its deadline once now has passed it.
func (s *SensorState) flushCheck(now ms, e *emitter) {
	if d, ok := s.flushDeadline(); ok && d <= now {
		c := s.ctx(FlushOverdue, d, "no compliant flush within "+s.eff.FlushEvery.String())
		h := int32(s.eff.FlushEvery / time.Hour)
		c.raise(&s.alarms[FlushOverdue], Minor, true, h, h, e)
	}
}

func offlineNote(d ms) string {
	return "no uplink for " + (time.Duration(d) * time.Millisecond).String()
}

func (s *SensorState) applyTick(now ms, dst []Event) []Event {
	if now <= s.lastTick {
		return dst
	}
	s.lastTick = now
	e := emitter{dst: dst, id: EventID{Dev: s.dev, Src: srcTick, N: uint64(now)}}
	s.advance(now, &e)
	return e.dst
}

func (s *SensorState) applyConfig(c *ConfigChange, dst []Event) []Event {
	if c.Config.Revision <= s.cfg.Revision || c.Config.Validate() != nil {
		return dst
	}
	at := toMS(c.At)
	old := s.cfg.TapKind
	s.cfg = c.Config
	s.resolve()
	if s.commissioned == 0 && at != 0 {
		s.commissioned = at
	}
	e := emitter{dst: dst, id: EventID{Dev: s.dev, Src: srcConfig, N: c.Config.Revision}}
	if s.cfg.TapKind != old {
		// Rule state of the old kind means nothing for the new one.
		s.win = [2]window{}
		s.flush, s.dis = flushRun{}, disRun{}
		note := "tap kind changed to " + s.cfg.TapKind.String()
		for t := HotWaterTooCold; t <= DisinfectionFailed; t++ {
			if !s.applies(t) {
				c := s.ctx(t, max(at, s.now), note)
				c.clear(&s.alarms[t], &e)
			}
		}
	}
	return e.dst
}

// applies reports whether an alarm type can be raised for the tap kind.
func (s *SensorState) applies(t AlarmType) bool {
	k := s.cfg.TapKind
	switch t {
	case HotWaterTooCold:
		return k == HeaterOutlet || k == CirculationReturn
	case ColdWaterTooWarm:
		return k == ColdMain
	case Hotspot:
		return k.cold()
	case FlushOverdue, FlushFailed:
		return k.flushed()
	case DisinfectionFailed:
		return k.hot() || k == MixedTap
	}
	return true
}

func (s *SensorState) applyOperator(t AlarmType, at ms, by, note string, clear bool, dst []Event) []Event {
	if t == AlarmUnspecified || t >= numAlarmTypes || at <= s.opAt[t] {
		return dst
	}
	// Remember the action even when it finds nothing to do, so that a
	// redelivery of it can never act on a later occurrence; and never act
	// on an occurrence raised after the operator's action.
	s.opAt[t] = at
	a := &s.alarms[t]
	if a.RaisedAt > at {
		return dst
	}
	e := emitter{dst: dst, id: EventID{Dev: s.dev, Src: srcOperator, Epoch: uint32(t), N: uint64(at)}}
	c := alarmCtx{typ: t, at: at, by: by, note: note}
	if clear {
		if c.manualClear(a, &e) {
			s.restartRule(t)
		}
	} else {
		c.ack(a, &e)
	}
	return e.dst
}

// restartRule forgets the evidence behind a manually cleared alarm so that
// it is raised again only on fresh evidence.
func (s *SensorState) restartRule(t AlarmType) {
	switch t {
	case HotWaterTooCold, ColdWaterTooWarm:
		s.win[0] = window{}
	case Hotspot:
		s.win[1] = window{}
	case Security:
		s.rejWindowAt, s.rejInWindow = 0, 0
	}
}

func (s *SensorState) applySessionReset(at ms, dst []Event) []Event {
	if at <= s.sessionAt {
		return dst
	}
	s.sessionAt = at
	// Everything already received belongs to the old session, even when
	// the reset is processed with an earlier time than the newest frame.
	s.staleBefore = max(s.staleBefore, at, s.lastCopy+1)
	s.hasFCnt, s.lastFCnt, s.seen = false, 0, 0
	s.epoch++
	s.rx = rxSummary{}
	e := emitter{dst: dst, id: EventID{Dev: s.dev, Src: srcSession, N: uint64(at)}}
	s.statusEvent(at, false, true, &e)
	return e.dst
}

func (s *SensorState) statusEvent(at ms, rebooted, reset bool, e *emitter) {
	ev := e.add(KindDeviceStatus, at)
	ev.Status = DeviceStatus{
		BatteryMV: s.batteryMV, Detached: s.detached, ProbeFault: s.probeErr, Rebooted: rebooted,
		FwMajor: s.fwMajor, FwMinor: s.fwMinor, IntervalS: s.devIntervalS, CounterReset: reset,
		BestRSSI: s.rx.rssi, BestSNR: s.rx.snr, Gateways: s.rx.gateways, NGateways: s.rx.nGateways,
	}
}
