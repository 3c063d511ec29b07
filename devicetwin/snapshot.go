package devicetwin

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// Snapshot schema versions written by this package. Loaders accept every
// version up to these and migrate older ones (see migrateSensor); a newer
// version is ErrBadSnapshot, so an old binary never half-reads a new layout.
const (
	SensorSchemaVersion  = 1
	GatewaySchemaVersion = 1
)

// MarshalSnapshot encodes the state as a legiond.twin.v1.SensorSnapshot.
// Derived values (the merged profile) are not stored; empty alarm slots are
// left out, which keeps a typical sensor well under 512 bytes.
func (s *SensorState) MarshalSnapshot() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(s.snapshot())
}

func (s *SensorState) snapshot() *twinv1.SensorSnapshot {
	p := &twinv1.SensorSnapshot{
		SchemaVersion: SensorSchemaVersion,
		DevEui:        s.dev[:],
		Config:        sensorConfigToProto(&s.cfg),
		Epoch:         s.epoch, HasFcnt: s.hasFCnt, LastFcnt: s.lastFCnt, Seen: s.seen,
		SessionAtMs: int64(s.sessionAt), ResetAtMs: int64(s.resetAt), StaleBeforeMs: int64(s.staleBefore), LastCopyMs: int64(s.lastCopy), LastUplinkMs: int64(s.lastUplink),
		Rx:         rxToProto(&s.rx),
		Rejections: s.rejections, RejWindowAtMs: int64(s.rejWindowAt), RejInWindow: uint32(s.rejInWindow),
		LastRejAtMs: int64(s.lastRejAt), LastRejFcnt: s.lastRejFCnt,
		CommissionedMs: int64(s.commissioned), LastTickMs: int64(s.lastTick), NowMs: int64(s.now),
		BatteryMv: uint32(s.batteryMV), Detached: s.detached, ProbeFault: s.probeErr,
		FwMajor: uint32(s.fwMajor), FwMinor: uint32(s.fwMinor), DeviceIntervalS: uint32(s.devIntervalS),
		SampleIntervalS: uint32(s.sampleIntervalS), SamplesPerUplink: uint32(s.samplesPerUplink),
		LastSampleMs: int64(s.lastSampleAt), LastPipe: int32(s.lastPipe), LastAmbient: int32(s.lastAmbient),
		RangeOutSinceMs: int64(s.win[0].outSince), RangeInSinceMs: int64(s.win[0].inSince),
		HotspotOutSinceMs: int64(s.win[1].outSince), HotspotInSinceMs: int64(s.win[1].inSince),
		LastFlushMs: int64(s.lastFlush), LastDisinfectionMs: int64(s.lastDisinfection),
		ReportedFlushStartMs: int64(s.reportedStart), ReportedFlushEndMs: int64(s.reportedEnd),
	}
	if s.flush != (flushRun{}) {
		f := s.flush
		p.Flush = &twinv1.FlushRunSnapshot{StartMs: int64(f.start), LastMs: int64(f.last), ReachedMs: int64(f.reached),
			Base: int32(f.base), Extreme: int32(f.extreme), Dir: int32(f.dir)}
	}
	if s.dis != (disRun{}) {
		d := s.dis
		p.Disinfection = &twinv1.DisinfectionRunSnapshot{StartMs: int64(d.start), LastMs: int64(d.last), Min: int32(d.min), Max: int32(d.max)}
	}
	for t := AlarmType(1); t < numAlarmTypes; t++ {
		if a := alarmToProto(t, &s.alarms[t], s.opAt[t]); a != nil {
			p.Alarms = append(p.Alarms, a)
		}
	}
	return p
}

// UnmarshalSensorSnapshot decodes a snapshot written by MarshalSnapshot of
// this or an older schema version.
func UnmarshalSensorSnapshot(b []byte) (SensorState, error) {
	var p twinv1.SensorSnapshot
	if err := proto.Unmarshal(b, &p); err != nil {
		return SensorState{}, fmt.Errorf("sensor snapshot: %w: %w", ErrBadSnapshot, err)
	}
	if err := migrateSensor(&p); err != nil {
		return SensorState{}, err
	}
	var s SensorState
	if len(p.DevEui) != len(s.dev) {
		return SensorState{}, fmt.Errorf("sensor snapshot: DevEUI of %d bytes: %w", len(p.DevEui), ErrBadSnapshot)
	}
	copy(s.dev[:], p.DevEui)
	cfg, err := sensorConfigFromProto(p.Config)
	if err != nil {
		return SensorState{}, err
	}
	s.cfg = cfg
	s.resolve()
	s.epoch, s.hasFCnt, s.lastFCnt, s.seen = p.Epoch, p.HasFcnt, p.LastFcnt, p.Seen
	s.sessionAt, s.resetAt, s.staleBefore, s.lastUplink = ms(p.SessionAtMs), ms(p.ResetAtMs), ms(p.StaleBeforeMs), ms(p.LastUplinkMs)
	s.lastCopy = ms(p.LastCopyMs)
	if s.rx, err = rxFromProto(p.Rx); err != nil {
		return SensorState{}, err
	}
	s.rejections, s.rejWindowAt, s.rejInWindow = p.Rejections, ms(p.RejWindowAtMs), uint16(min(p.RejInWindow, 0xffff))
	s.lastRejAt, s.lastRejFCnt = ms(p.LastRejAtMs), p.LastRejFcnt
	s.commissioned, s.lastTick, s.now = ms(p.CommissionedMs), ms(p.LastTickMs), ms(p.NowMs)
	s.batteryMV, s.detached, s.probeErr = uint16(p.BatteryMv), p.Detached, p.ProbeFault
	s.fwMajor, s.fwMinor, s.devIntervalS = uint8(p.FwMajor), uint8(p.FwMinor), uint16(p.DeviceIntervalS)
	s.sampleIntervalS, s.samplesPerUplink = uint16(p.SampleIntervalS), uint8(p.SamplesPerUplink)
	s.lastSampleAt, s.lastPipe, s.lastAmbient = ms(p.LastSampleMs), clipr.Temp(p.LastPipe), clipr.Temp(p.LastAmbient)
	s.win[0] = window{ms(p.RangeOutSinceMs), ms(p.RangeInSinceMs)}
	s.win[1] = window{ms(p.HotspotOutSinceMs), ms(p.HotspotInSinceMs)}
	if f := p.Flush; f != nil {
		s.flush = flushRun{start: ms(f.StartMs), last: ms(f.LastMs), reached: ms(f.ReachedMs),
			base: clipr.Temp(f.Base), extreme: clipr.Temp(f.Extreme), dir: int8(f.Dir)}
	}
	if d := p.Disinfection; d != nil {
		s.dis = disRun{start: ms(d.StartMs), last: ms(d.LastMs), min: clipr.Temp(d.Min), max: clipr.Temp(d.Max)}
	}
	s.lastFlush, s.lastDisinfection = ms(p.LastFlushMs), ms(p.LastDisinfectionMs)
	s.reportedStart, s.reportedEnd = ms(p.ReportedFlushStartMs), ms(p.ReportedFlushEndMs)
	for _, a := range p.Alarms {
		t := AlarmType(a.Type)
		if t == AlarmUnspecified || t >= numAlarmTypes {
			return SensorState{}, fmt.Errorf("sensor snapshot: alarm type %d: %w", a.Type, ErrBadSnapshot)
		}
		s.alarms[t], s.opAt[t] = alarmFromProto(a)
	}
	return s, nil
}

// migrateSensor brings an older snapshot to the current schema. Version 0
// (written before the field existed) has the version 1 layout.
func migrateSensor(p *twinv1.SensorSnapshot) error {
	switch v := p.SchemaVersion; {
	case v > SensorSchemaVersion:
		return fmt.Errorf("sensor snapshot schema %d, this binary reads up to %d: %w", v, SensorSchemaVersion, ErrBadSnapshot)
	case v == 0:
		p.SchemaVersion = 1
	}
	// Future migrations go here, one version step at a time.
	return nil
}

func sensorConfigToProto(c *SensorConfig) *twinv1.SensorConfigSnapshot {
	return &twinv1.SensorConfigSnapshot{
		Revision: c.Revision, TenantId: c.TenantID, SiteId: c.SiteID, TapPointId: c.TapPointID,
		TapKind: twinv1.TapKind(c.TapKind), Profile: twinv1.RuleProfile(c.Profile),
		Site: overridesToProto(&c.Site), Tap: overridesToProto(&c.Tap),
		ExpectedIntervalMs: c.ExpectedInterval.Milliseconds(),
		ResetPolicy:        uint32(c.ResetPolicy), ResetMaxFcnt: c.ResetMaxFCnt, ResetMinIntervalMs: c.ResetMinInterval.Milliseconds(),
		SecurityThreshold: uint32(c.SecurityThreshold), SecurityWindowMs: c.SecurityWindow.Milliseconds(),
		DuplicateWindowMs: c.DuplicateWindow.Milliseconds(), MaxFcntGap: c.MaxFCntGap,
	}
}

func msDur(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

func sensorConfigFromProto(p *twinv1.SensorConfigSnapshot) (SensorConfig, error) {
	if p == nil {
		return SensorConfig{}, nil
	}
	c := SensorConfig{
		Revision: p.Revision, TenantID: p.TenantId, SiteID: p.SiteId, TapPointID: p.TapPointId,
		TapKind: TapKind(p.TapKind), Profile: ProfileID(p.Profile),
		Site: overridesFromProto(p.Site), Tap: overridesFromProto(p.Tap),
		ExpectedInterval: msDur(p.ExpectedIntervalMs),
		ResetPolicy:      CounterResetPolicy(p.ResetPolicy), ResetMaxFCnt: p.ResetMaxFcnt, ResetMinInterval: msDur(p.ResetMinIntervalMs),
		SecurityThreshold: uint16(min(p.SecurityThreshold, 0xffff)), SecurityWindow: msDur(p.SecurityWindowMs),
		DuplicateWindow: msDur(p.DuplicateWindowMs), MaxFCntGap: p.MaxFcntGap,
	}
	if err := c.Validate(); err != nil {
		return SensorConfig{}, fmt.Errorf("sensor snapshot: %w: %w", ErrBadSnapshot, err)
	}
	return c, nil
}

func optTemp(o Opt[clipr.Temp]) *int32 {
	if !o.Set {
		return nil
	}
	v := int32(o.V)
	return &v
}

func optDur(o Opt[time.Duration]) *int64 {
	if !o.Set {
		return nil
	}
	v := o.V.Milliseconds()
	return &v
}

func optU16(o Opt[uint16]) *uint32 {
	if !o.Set {
		return nil
	}
	v := uint32(o.V)
	return &v
}

func overridesToProto(o *Overrides) *twinv1.OverridesSnapshot {
	if *o == (Overrides{}) {
		return nil
	}
	p := &twinv1.OverridesSnapshot{
		HeaterOutletMin: optTemp(o.HeaterOutletMin), CirculationReturnMin: optTemp(o.CirculationReturnMin),
		HotFlushMin: optTemp(o.HotFlushMin), HotFlushWithinMs: optDur(o.HotFlushWithin), ColdMax: optTemp(o.ColdMax),
		FlushEveryMs: optDur(o.FlushEvery), FlushMinDurationMs: optDur(o.FlushMinDuration),
		DisinfectionSet: o.Disinfection.Set, DisinfectionDetect: optTemp(o.DisinfectionDetect),
		SustainedWindowMs: optDur(o.SustainedWindow), Hysteresis: optTemp(o.Hysteresis),
		HotspotDelta: optTemp(o.HotspotDelta), FlushDelta: optTemp(o.FlushDelta),
		BatteryLowMv: optU16(o.BatteryLowMV), BatteryMajorMv: optU16(o.BatteryMajorMV), BatteryHysteresisMv: optU16(o.BatteryHysteresisMV),
	}
	if o.OfflineFactor.Set {
		f := o.OfflineFactor.V
		p.OfflineFactor = &f
	}
	if o.Disinfection.Set {
		for _, h := range o.Disinfection.V[:min(max(o.NDisinfection, 0), maxHolds)] {
			p.Disinfection = append(p.Disinfection, &twinv1.TempHoldSnapshot{Temp: int32(h.Temp), HoldMs: h.Hold.Milliseconds()})
		}
	}
	return p
}

func tempOpt(v *int32) Opt[clipr.Temp] {
	if v == nil {
		return Opt[clipr.Temp]{}
	}
	return Some(clipr.Temp(*v))
}

func durOpt(v *int64) Opt[time.Duration] {
	if v == nil {
		return Opt[time.Duration]{}
	}
	return Some(msDur(*v))
}

func u16Opt(v *uint32) Opt[uint16] {
	if v == nil {
		return Opt[uint16]{}
	}
	return Some(uint16(min(*v, 0xffff)))
}

func overridesFromProto(p *twinv1.OverridesSnapshot) Overrides {
	if p == nil {
		return Overrides{}
	}
	o := Overrides{
		HeaterOutletMin: tempOpt(p.HeaterOutletMin), CirculationReturnMin: tempOpt(p.CirculationReturnMin),
		HotFlushMin: tempOpt(p.HotFlushMin), HotFlushWithin: durOpt(p.HotFlushWithinMs), ColdMax: tempOpt(p.ColdMax),
		FlushEvery: durOpt(p.FlushEveryMs), FlushMinDuration: durOpt(p.FlushMinDurationMs),
		DisinfectionDetect: tempOpt(p.DisinfectionDetect), SustainedWindow: durOpt(p.SustainedWindowMs),
		Hysteresis: tempOpt(p.Hysteresis), HotspotDelta: tempOpt(p.HotspotDelta), FlushDelta: tempOpt(p.FlushDelta),
		BatteryLowMV: u16Opt(p.BatteryLowMv), BatteryMajorMV: u16Opt(p.BatteryMajorMv), BatteryHysteresisMV: u16Opt(p.BatteryHysteresisMv),
	}
	if p.OfflineFactor != nil {
		o.OfflineFactor = Some(*p.OfflineFactor)
	}
	if p.DisinfectionSet {
		var hs [maxHolds]TempHold
		n := min(len(p.Disinfection), maxHolds)
		for i, h := range p.Disinfection[:n] {
			hs[i] = TempHold{Temp: clipr.Temp(h.Temp), Hold: msDur(h.HoldMs)}
		}
		o.Disinfection, o.NDisinfection = Some(hs), n
	}
	return o
}

func rxToProto(r *rxSummary) *twinv1.RxSnapshot {
	if *r == (rxSummary{}) {
		return nil
	}
	p := &twinv1.RxSnapshot{Rssi: int32(r.rssi), Snr: r.snr}
	if r.best != (EUI64{}) {
		p.BestGateway = r.best[:]
	}
	for i := range r.nGateways {
		p.Gateways = append(p.Gateways, r.gateways[i][:])
	}
	return p
}

func rxFromProto(p *twinv1.RxSnapshot) (rxSummary, error) {
	var r rxSummary
	if p == nil {
		return r, nil
	}
	if len(p.BestGateway) != 0 && len(p.BestGateway) != 8 || len(p.Gateways) > maxGateways {
		return r, fmt.Errorf("sensor snapshot: receive metadata: %w", ErrBadSnapshot)
	}
	copy(r.best[:], p.BestGateway)
	r.rssi, r.snr = int16(p.Rssi), p.Snr
	for i, g := range p.Gateways {
		if len(g) != 8 {
			return r, fmt.Errorf("sensor snapshot: gateway of %d bytes: %w", len(g), ErrBadSnapshot)
		}
		copy(r.gateways[i][:], g)
	}
	r.nGateways = uint8(len(p.Gateways))
	return r, nil
}

func alarmToProto(t AlarmType, a *Alarm, opAt ms) *twinv1.AlarmSnapshot {
	if *a == (Alarm{}) && opAt == 0 {
		return nil
	}
	return &twinv1.AlarmSnapshot{
		Type: twinv1.AlarmType(t), Status: twinv1.AlarmStatus(a.Status), Severity: twinv1.Severity(a.Severity), Seq: a.Seq,
		RaisedAtMs: int64(a.RaisedAt), ClearedAtMs: int64(a.ClearedAt), HasValue: a.HasValue, Value: a.Value, Threshold: a.Threshold,
		OpAtMs: int64(opAt),
	}
}

func alarmFromProto(p *twinv1.AlarmSnapshot) (Alarm, ms) {
	return Alarm{
		Status: AlarmStatus(p.Status), Severity: Severity(p.Severity), Seq: p.Seq,
		RaisedAt: ms(p.RaisedAtMs), ClearedAt: ms(p.ClearedAtMs), HasValue: p.HasValue, Value: p.Value, Threshold: p.Threshold,
	}, ms(p.OpAtMs)
}

// MarshalSnapshot encodes the state as a legiond.twin.v1.GatewaySnapshot.
func (g *GatewayState) MarshalSnapshot() ([]byte, error) {
	p := &twinv1.GatewaySnapshot{
		SchemaVersion: GatewaySchemaVersion, Eui: g.eui[:],
		Config: &twinv1.GatewayConfigSnapshot{Revision: g.cfg.Revision, TenantId: g.cfg.TenantID, SiteId: g.cfg.SiteID,
			StatsIntervalMs: g.cfg.StatsInterval.Milliseconds(), OfflineFactor: g.cfg.OfflineFactor},
		CommissionedMs: int64(g.commissioned), LastHeardMs: int64(g.lastHeard), LastStatsMs: int64(g.lastStats),
		LastTickMs: int64(g.lastTick), NowMs: int64(g.now),
		RxReceived: g.rxReceived, RxOk: g.rxOK, TxReceived: g.txReceived, TxEmitted: g.txEmitted,
		Latitude: g.lat, Longitude: g.lon, HasLocation: g.hasLoc,
		Uplinks: g.uplinks, RssiMin: int32(g.rssiMin), RssiMax: int32(g.rssiMax), RssiSum: g.rssiSum, SnrSum: g.snrSum,
		TotalUplinks: g.totalUplinks, RecentPos: uint32(g.recentPos), EvictedMaxMs: int64(g.evictedMax),
		Alarm: alarmToProto(GatewayOffline, &g.alarm, g.opAt),
	}
	for _, r := range g.recent {
		p.RecentKeys = append(p.RecentKeys, r.key)
		p.RecentAtMs = append(p.RecentAtMs, int64(r.at))
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(p)
}

// UnmarshalGatewaySnapshot decodes a snapshot written by
// GatewayState.MarshalSnapshot of this or an older schema version.
func UnmarshalGatewaySnapshot(b []byte) (GatewayState, error) {
	var p twinv1.GatewaySnapshot
	if err := proto.Unmarshal(b, &p); err != nil {
		return GatewayState{}, fmt.Errorf("gateway snapshot: %w: %w", ErrBadSnapshot, err)
	}
	if p.SchemaVersion > GatewaySchemaVersion {
		return GatewayState{}, fmt.Errorf("gateway snapshot schema %d, this binary reads up to %d: %w", p.SchemaVersion, GatewaySchemaVersion, ErrBadSnapshot)
	}
	var g GatewayState
	if len(p.Eui) != len(g.eui) || len(p.RecentKeys) != len(p.RecentAtMs) || len(p.RecentKeys) > recentUplinks || p.RecentPos >= recentUplinks {
		return GatewayState{}, fmt.Errorf("gateway snapshot: malformed: %w", ErrBadSnapshot)
	}
	copy(g.eui[:], p.Eui)
	if c := p.Config; c != nil {
		g.cfg = GatewayConfig{Revision: c.Revision, TenantID: c.TenantId, SiteID: c.SiteId,
			StatsInterval: msDur(c.StatsIntervalMs), OfflineFactor: c.OfflineFactor}
		if err := g.cfg.Validate(); err != nil {
			return GatewayState{}, fmt.Errorf("gateway snapshot: %w: %w", ErrBadSnapshot, err)
		}
	}
	g.commissioned, g.lastHeard, g.lastStats, g.lastTick, g.now = ms(p.CommissionedMs), ms(p.LastHeardMs), ms(p.LastStatsMs), ms(p.LastTickMs), ms(p.NowMs)
	g.rxReceived, g.rxOK, g.txReceived, g.txEmitted = p.RxReceived, p.RxOk, p.TxReceived, p.TxEmitted
	g.lat, g.lon, g.hasLoc = p.Latitude, p.Longitude, p.HasLocation
	g.uplinks, g.rssiMin, g.rssiMax, g.rssiSum, g.snrSum = p.Uplinks, int16(p.RssiMin), int16(p.RssiMax), p.RssiSum, p.SnrSum
	g.totalUplinks, g.recentPos, g.evictedMax = p.TotalUplinks, uint8(p.RecentPos), ms(p.EvictedMaxMs)
	for i, k := range p.RecentKeys {
		g.recent[i] = seenUplink{k, ms(p.RecentAtMs[i])}
	}
	if p.Alarm != nil {
		g.alarm, g.opAt = alarmFromProto(p.Alarm)
	}
	return g, nil
}
