package devicetwin

import (
	"strconv"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// verdict is what the session makes of a frame counter.
type verdict uint8

const (
	vNew    verdict = iota // newer than every accepted counter
	vLate                  // older, never applied, received with the newer ones
	vDup                   // already applied; another copy (gateway, Kafka)
	vStale                 // older than the bitmap reaches, received with the newer ones
	vReplay                // already applied, received later than a copy can be
	vRewind                // lower than the newest, received after it
	vGap                   // more than MaxFCntGap ahead
)

// classify places a full counter received at rx relative to the session.
// Receive time tells copies from replays: every copy of a frame (several
// gateways, a Kafka redelivery) carries a receive time within the duplicate
// window of the first, while a replay over the air is received later.
//
// A frame received before the current session or counter epoch began is
// a redelivery from an older one: it is stale, whatever its counter.
func (s *SensorState) classify(f uint32, rx ms) verdict {
	if rx < s.staleBefore {
		return vStale
	}
	if !s.hasFCnt {
		return vNew
	}
	recent := rx <= s.lastUplink+s.set.dupWindow
	switch {
	case f > s.lastFCnt:
		if f-s.lastFCnt > s.set.maxGap {
			return vGap
		}
		return vNew
	case f == s.lastFCnt:
		if recent {
			return vDup
		}
		return vReplay
	}
	back := s.lastFCnt - f
	if back < seenWindow {
		switch {
		case s.seen&(1<<back) != 0 && recent:
			return vDup
		case s.seen&(1<<back) != 0:
			return vReplay
		case recent:
			return vLate
		}
		return vRewind
	}
	if recent {
		return vStale
	}
	return vRewind
}

func (s *SensorState) applyUplink(u *Uplink, dst []Event) []Event {
	rx := toMS(u.Rx.ReceivedAt)
	if u.DevEUI != s.dev {
		return s.reject(RejectWrongDevice, u.FCnt, rx, "frame for "+u.DevEUI.String(), dst)
	}
	v := s.classify(u.FCnt, rx)
	if rx <= s.lastRejAt {
		// Received no later than a frame this twin rejected: it may be a
		// redelivery of a rejected frame, which must stay rejected even
		// though the session moved since (a rewind would now look late, a
		// gap would now fit, a new session would take it). The price: an
		// honest frame overtaken by a rejected one within the same seconds
		// is dropped too, which only happens while frames are rejected.
		return dst
	}
	switch v {
	case vDup:
		if u.FCnt == s.lastFCnt {
			s.rx.merge(u.Rx)
			s.lastCopy = max(s.lastCopy, rx)
		}
		return dst
	case vStale:
		return dst
	case vGap:
		return s.reject(RejectGapTooLarge, u.FCnt, rx, "counter "+strconv.FormatUint(uint64(u.FCnt), 10)+" after "+strconv.FormatUint(uint64(s.lastFCnt), 10), dst)
	case vReplay:
		return s.reject(RejectReplay, u.FCnt, rx, "counter "+strconv.FormatUint(uint64(u.FCnt), 10)+" already applied", dst)
	case vRewind:
		if s.resetAllowed(u, rx) {
			return s.accept(u, rx, false, true, dst)
		}
		return s.reject(RejectRewind, u.FCnt, rx, "counter "+strconv.FormatUint(uint64(u.FCnt), 10)+" after "+strconv.FormatUint(uint64(s.lastFCnt), 10), dst)
	case vLate:
		return s.accept(u, rx, true, false, dst)
	}
	return s.accept(u, rx, false, false, dst)
}

// resetAllowed applies the ResetOnReboot policy (see CounterResetPolicy).
func (s *SensorState) resetAllowed(u *Uplink, rx ms) bool {
	if s.cfg.ResetPolicy != ResetOnReboot || u.FCnt > s.set.resetMaxFCnt || rx <= s.lastUplink {
		return false
	}
	if s.resetAt != 0 && rx-s.resetAt < s.set.resetMinInterval {
		return false
	}
	switch m := u.Msg.(type) {
	case clipr.Status:
		return m.Rebooted
	case *clipr.Status:
		return m != nil && m.Rebooted
	}
	return false
}

// reject records a rejected frame. A redelivery of the newest rejected
// frame (received no later than it, or another copy of it) is not counted
// again and emits nothing, so rejections are idempotent too.
func (s *SensorState) reject(r RejectReason, fcnt uint32, rx ms, detail string, dst []Event) []Event {
	if s.lastRejAt != 0 && (rx <= s.lastRejAt || (fcnt == s.lastRejFCnt && rx <= s.lastRejAt+s.set.dupWindow)) {
		// Another copy: not counted, but remembered, so that it stays
		// rejected when it comes again after the session moved.
		s.lastRejAt = max(s.lastRejAt, rx)
		return dst
	}
	s.lastRejAt, s.lastRejFCnt = rx, fcnt
	s.rejections++
	e := emitter{dst: dst, id: EventID{Dev: s.dev, Src: srcReject, N: s.rejections}, fcnt: fcnt}
	ev := e.add(KindRejection, rx)
	ev.Rejection = Rejection{Reason: r, FCnt: fcnt, Detail: detail, Counted: r.counted()}
	if !r.counted() {
		return e.dst
	}
	if s.rejWindowAt == 0 || rx-s.rejWindowAt > s.set.securityWindow {
		s.rejWindowAt, s.rejInWindow = rx, 0
	}
	if s.rejInWindow < ^uint16(0) {
		s.rejInWindow++
	}
	if s.rejInWindow >= s.set.securityThreshold {
		c := s.ctx(Security, rx, strconv.Itoa(int(s.rejInWindow))+" rejected frames, last: "+r.String())
		c.raise(&s.alarms[Security], Critical, true, int32(s.rejInWindow), int32(s.set.securityThreshold), &e)
	}
	return e.dst
}

// accept applies a frame the session accepted: new, late (older than the
// newest, never applied) or the first of a new counter epoch.
func (s *SensorState) accept(u *Uplink, rx ms, late, reset bool, dst []Event) []Event {
	if reset {
		s.epoch++
		s.hasFCnt, s.seen, s.resetAt = false, 0, rx
		s.staleBefore = max(s.staleBefore, rx)
	}
	s.lastCopy = max(s.lastCopy, rx)
	e := emitter{dst: dst, id: EventID{Dev: s.dev, Src: srcFrame, Epoch: s.epoch, N: uint64(u.FCnt)}, fcnt: u.FCnt}
	if late {
		s.seen |= 1 << (s.lastFCnt - u.FCnt)
	} else {
		switch sh := u.FCnt - s.lastFCnt; {
		case !s.hasFCnt || sh >= seenWindow:
			s.seen = 1
		default:
			s.seen = s.seen<<sh | 1
		}
		s.hasFCnt, s.lastFCnt = true, u.FCnt
		s.rx = rxSummary{}
		s.rx.merge(u.Rx)
		if s.commissioned == 0 {
			s.commissioned = rx
		}
		// A silence that ended with this frame is still a silence for
		// the logbook: raise SENSOR_OFFLINE at its deadline, then clear.
		if rx > s.now {
			s.now = rx
		}
		if d, ok := s.offlineDeadline(); ok && d < rx {
			silent := d - max(s.lastUplink, s.commissioned)
			c := s.ctx(SensorOffline, d, offlineNote(silent))
			c.raise(&s.alarms[SensorOffline], Major, true, int32(silent/60000), int32(silent/60000), &e)
		}
		s.lastUplink = max(s.lastUplink, rx)
		c := s.ctx(SensorOffline, rx, "uplink received")
		c.clear(&s.alarms[SensorOffline], &e)
	}

	switch m := u.Msg.(type) {
	case clipr.Measurement:
		s.measurement(&m, rx, late, &e)
	case *clipr.Measurement:
		s.measurement(m, rx, late, &e)
	case clipr.WaterEvent:
		s.waterEvent(&m, rx, &e)
	case *clipr.WaterEvent:
		s.waterEvent(m, rx, &e)
	case clipr.Status:
		s.status(&m, rx, late, reset, &e)
	case *clipr.Status:
		s.status(m, rx, late, reset, &e)
	case nil:
		if u.FPort != 0 {
			r := RejectUnknownPort
			if u.FPort <= clipr.PortStatus {
				r = RejectDecode
			}
			detail := "fport " + strconv.Itoa(int(u.FPort))
			if u.DecodeErr != nil {
				detail = u.DecodeErr.Error()
			}
			ev := e.add(KindRejection, rx)
			ev.Rejection = Rejection{Reason: r, FCnt: u.FCnt, Detail: detail}
		}
	}
	if !late {
		s.flushCheck(s.now, &e)
	}
	return e.dst
}
