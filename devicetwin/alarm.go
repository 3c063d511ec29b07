package devicetwin

import "time"

// Alarm is the current occurrence of one alarm type on a twin. At most one
// exists per (device, type): a repeat of an active alarm updates it (its
// severity) instead of opening another. Closed alarms (CLEARED_ACK) leave
// the state as StatusNone; Seq keeps counting occurrences.
type Alarm struct {
	Status   AlarmStatus
	Severity Severity
	Seq      uint32
	// RaisedAt is when the current occurrence was raised, ClearedAt when an
	// occurrence was last cleared (time-based rules do not raise again for
	// a deadline at or before it, so a manual clear sticks).
	RaisedAt, ClearedAt ms
	// Value and Threshold in the type's unit (see alarmUnit), when HasValue.
	HasValue         bool
	Value, Threshold int32
}

// RaisedTime returns RaisedAt as a time.
func (a Alarm) RaisedTime() time.Time { return a.RaisedAt.time() }

// alarmUnit returns the display unit and scale of an alarm type's values.
func alarmUnit(t AlarmType) (string, float64) {
	switch t {
	case HotWaterTooCold, ColdWaterTooWarm, Hotspot, FlushFailed, DisinfectionFailed:
		return "°C", 0.01
	case BatteryLow:
		return "mV", 1
	case Security:
		return "rejections", 1
	case FlushOverdue:
		return "h", 1
	case SensorOffline, GatewayOffline:
		return "min", 1
	}
	return "", 1
}

// alarmCtx is what a lifecycle step needs besides the alarm itself.
type alarmCtx struct {
	typ AlarmType
	at  ms
	by  string
	// note says why, for the logbook.
	note string
}

func (c *alarmCtx) emit(a *Alarm, from, to AlarmStatus, e *emitter) {
	ev := e.add(KindAlarm, c.at)
	unit, scale := alarmUnit(c.typ)
	by := c.by
	if by == "" {
		by = SystemActor
	}
	ev.Alarm = AlarmTransition{
		Type: c.typ, Severity: a.Severity, From: from, To: to, Seq: a.Seq,
		By: by, Note: c.note, HasValue: a.HasValue, Unit: unit, RaisedAt: a.RaisedAt.time(),
	}
	if a.HasValue {
		ev.Alarm.Value = float64(a.Value) * scale
		ev.Alarm.Threshold = float64(a.Threshold) * scale
	}
}

// raise opens an occurrence, re-activates a cleared-unacknowledged one, or
// updates the severity of an active one.
func (c alarmCtx) raise(a *Alarm, sev Severity, hasVal bool, val, thr int32, e *emitter) {
	switch a.Status {
	case ActiveUnack, ActiveAck:
		if a.Severity == sev {
			return
		}
		a.Severity = sev
		a.HasValue, a.Value, a.Threshold = hasVal, val, thr
		c.emit(a, a.Status, a.Status, e)
	case ClearedUnack:
		a.Status, a.Severity, a.RaisedAt = ActiveUnack, sev, c.at
		a.HasValue, a.Value, a.Threshold = hasVal, val, thr
		c.emit(a, ClearedUnack, ActiveUnack, e)
	default:
		a.Seq++
		a.Status, a.Severity, a.RaisedAt = ActiveUnack, sev, c.at
		a.HasValue, a.Value, a.Threshold = hasVal, val, thr
		c.emit(a, StatusNone, ActiveUnack, e)
	}
}

// clear ends an active occurrence because its condition is gone. The event
// time is never before the raise, so each alarm's transitions stay ordered
// even when a late frame proves the condition ended earlier.
func (c alarmCtx) clear(a *Alarm, e *emitter) {
	if !a.Status.Active() {
		return
	}
	c.at = max(c.at, a.RaisedAt)
	from := a.Status
	a.ClearedAt = max(a.ClearedAt, c.at)
	if from == ActiveUnack {
		a.Status = ClearedUnack
		c.emit(a, from, ClearedUnack, e)
		return
	}
	a.Status = StatusNone
	c.emit(a, from, ClearedAck, e)
	a.Severity, a.HasValue, a.Value, a.Threshold, a.RaisedAt = 0, false, 0, 0, 0
}

// ack acknowledges the occurrence; a cleared one is thereby closed.
func (c alarmCtx) ack(a *Alarm, e *emitter) bool {
	switch a.Status {
	case ActiveUnack:
		a.Status = ActiveAck
		c.emit(a, ActiveUnack, ActiveAck, e)
		return true
	case ClearedUnack:
		c.emit(a, ClearedUnack, ClearedAck, e)
		a.Status, a.Severity, a.HasValue, a.Value, a.Threshold, a.RaisedAt = StatusNone, 0, false, 0, 0, 0
		return true
	}
	return false
}

// manualClear acknowledges (if needed) and closes the occurrence.
func (c alarmCtx) manualClear(a *Alarm, e *emitter) bool {
	switch a.Status {
	case ActiveUnack:
		c.ack(a, e)
		c.clear(a, e)
		return true
	case ActiveAck:
		c.clear(a, e)
		return true
	case ClearedUnack:
		return c.ack(a, e)
	}
	return false
}
