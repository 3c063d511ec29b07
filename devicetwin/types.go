package devicetwin

import (
	"errors"
	"fmt"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// EUI64 is a DevEUI or gateway EUI; the LoRaWAN codec owns the type so that
// frames and twins agree on byte order.
type EUI64 = lorawan.EUI64

// Sentinel errors.
var (
	// ErrInvalidConfig: a configuration value outside its documented range.
	ErrInvalidConfig = errors.New("devicetwin: invalid configuration")
	// ErrUnknownName: a tap kind, profile, alarm type or other enum name
	// that this package does not know.
	ErrUnknownName = errors.New("devicetwin: unknown name")
	// ErrBadSnapshot: a snapshot that cannot be loaded (corrupt, or from a
	// newer schema than this binary understands).
	ErrBadSnapshot = errors.New("devicetwin: bad snapshot")
)

// ms is an instant as Unix milliseconds; 0 means "never". The twins keep
// times this way so that state compares with == (time.Time carries a
// location pointer and a monotonic reading) and snapshots stay small.
type ms int64

func toMS(t time.Time) ms {
	if t.IsZero() {
		return 0
	}
	return ms(t.UnixMilli())
}

func (m ms) time() time.Time {
	if m == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(m)).UTC()
}

func durMS(d time.Duration) ms { return ms(d / time.Millisecond) }

// TapKind is what a tap point measures; it decides which rules apply.
// Values match legiond.twin.v1.TapKind.
type TapKind uint8

// Tap kinds (DESIGN §4).
const (
	TapUnspecified TapKind = iota
	HotTap
	ColdTap
	MixedTap
	CirculationReturn
	HeaterOutlet
	ColdMain
	numTapKinds
)

var tapKindNames = [numTapKinds]string{"UNSPECIFIED", "HOT_TAP", "COLD_TAP", "MIXED_TAP", "CIRCULATION_RETURN", "HEATER_OUTLET", "COLD_MAIN"}

func (k TapKind) String() string {
	if k < numTapKinds {
		return tapKindNames[k]
	}
	return fmt.Sprintf("TapKind(%d)", uint8(k))
}

// ParseTapKind parses the upper-case name of a tap kind ("HOT_TAP").
func ParseTapKind(s string) (TapKind, error) {
	for i := HotTap; i < numTapKinds; i++ {
		if tapKindNames[i] == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("tap kind %q: %w", s, ErrUnknownName)
}

// flushed reports whether the tap kind is a draw-off point whose flushing
// is monitored (FLUSH_OVERDUE, FLUSH_FAILED, inferred flushes).
func (k TapKind) flushed() bool { return k == HotTap || k == ColdTap || k == MixedTap }

// hot reports whether the line carries heated water (disinfection rules).
func (k TapKind) hot() bool { return k == HotTap || k == CirculationReturn || k == HeaterOutlet }

// cold reports whether the line carries cold water (hotspot rule).
func (k TapKind) cold() bool { return k == ColdTap || k == ColdMain }

// supplyDir is the direction a flush moves the pipe temperature away from
// ambient: +1 toward hot supply, −1 toward cold supply, 0 either way.
func (k TapKind) supplyDir() int {
	switch k {
	case HotTap:
		return 1
	case ColdTap:
		return -1
	}
	return 0
}

// ProfileID selects the national rule profile. Values match
// legiond.twin.v1.RuleProfile.
type ProfileID uint8

// Rule profiles; NL is the default (DESIGN §4).
const (
	ProfileUnspecified ProfileID = iota
	ProfileNL
	ProfileDE
	ProfileUK
	numProfiles
)

var profileNames = [numProfiles]string{"UNSPECIFIED", "NL", "DE", "UK"}

func (p ProfileID) String() string {
	if p < numProfiles {
		return profileNames[p]
	}
	return fmt.Sprintf("ProfileID(%d)", uint8(p))
}

// ParseProfile parses "NL", "DE" or "UK".
func ParseProfile(s string) (ProfileID, error) {
	for i := ProfileNL; i < numProfiles; i++ {
		if profileNames[i] == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("profile %q: %w", s, ErrUnknownName)
}

// AlarmType names what is wrong. Values match legiond.twin.v1.AlarmType.
type AlarmType uint8

// Alarm types (DESIGN §4).
const (
	AlarmUnspecified AlarmType = iota
	HotWaterTooCold
	ColdWaterTooWarm
	Hotspot
	FlushOverdue
	FlushFailed
	DisinfectionFailed
	SensorOffline
	BatteryLow
	SensorDetached
	ProbeFault
	GatewayOffline
	Security
	numAlarmTypes
)

var alarmNames = [numAlarmTypes]string{
	"UNSPECIFIED", "HOT_WATER_TOO_COLD", "COLD_WATER_TOO_WARM", "HOTSPOT", "FLUSH_OVERDUE",
	"FLUSH_FAILED", "DISINFECTION_FAILED", "SENSOR_OFFLINE", "BATTERY_LOW", "SENSOR_DETACHED",
	"PROBE_FAULT", "GATEWAY_OFFLINE", "SECURITY",
}

func (a AlarmType) String() string {
	if a < numAlarmTypes {
		return alarmNames[a]
	}
	return fmt.Sprintf("AlarmType(%d)", uint8(a))
}

// ParseAlarmType parses an alarm type name ("FLUSH_OVERDUE").
func ParseAlarmType(s string) (AlarmType, error) {
	for i := HotWaterTooCold; i < numAlarmTypes; i++ {
		if alarmNames[i] == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("alarm type %q: %w", s, ErrUnknownName)
}

// Severity of an alarm. Values match legiond.twin.v1.Severity (lower is
// more severe).
type Severity uint8

// Severities.
const (
	SeverityUnspecified Severity = iota
	Critical
	Major
	Minor
	Warning
	numSeverities
)

var severityNames = [numSeverities]string{"UNSPECIFIED", "CRITICAL", "MAJOR", "MINOR", "WARNING"}

func (s Severity) String() string {
	if s < numSeverities {
		return severityNames[s]
	}
	return fmt.Sprintf("Severity(%d)", uint8(s))
}

// AlarmStatus is a step of the alarm lifecycle. Values match
// legiond.twin.v1.AlarmStatus; StatusNone is "no alarm" (a CLEARED_ACK
// alarm is closed and leaves the twin's state).
type AlarmStatus uint8

// Alarm statuses: ACTIVE_UNACK → ACTIVE_ACK → CLEARED_ACK or
// ACTIVE_UNACK → CLEARED_UNACK → CLEARED_ACK.
const (
	StatusNone AlarmStatus = iota
	ActiveUnack
	ActiveAck
	ClearedUnack
	ClearedAck
	numStatuses
)

var statusNames = [numStatuses]string{"NONE", "ACTIVE_UNACK", "ACTIVE_ACK", "CLEARED_UNACK", "CLEARED_ACK"}

func (s AlarmStatus) String() string {
	if s < numStatuses {
		return statusNames[s]
	}
	return fmt.Sprintf("AlarmStatus(%d)", uint8(s))
}

// Active reports whether the alarm condition is (still) considered present.
func (s AlarmStatus) Active() bool { return s == ActiveUnack || s == ActiveAck }

// CounterResetPolicy decides what a twin does with a frame counter that went
// backwards, which is what a LoRaWAN 1.0 ABP device does after a reboot
// unless it persists its counter.
type CounterResetPolicy uint8

const (
	// ResetReject (default) rejects every rewound counter as REWIND and
	// counts it toward SECURITY. A device that really restarted its counter
	// needs a new session: a SessionReset input (new OTAA join, or an
	// operator re-provisioning an ABP device).
	ResetReject CounterResetPolicy = iota
	// ResetOnReboot accepts a rewound counter as the start of a new counter
	// epoch when all of these hold: the counter is at most
	// SensorConfig.ResetMaxFCnt, the frame is a Clip'R status with the
	// rebooted flag, it was received after the last accepted frame, and the
	// previous accepted reset is at least ResetMinInterval old. Anything
	// else is rejected as with ResetReject. It trades replay protection for
	// unattended recovery: someone who recorded a reboot frame can replay
	// it once per ResetMinInterval, and each accepted reset is reported.
	ResetOnReboot
	numResetPolicies
)

var resetPolicyNames = [numResetPolicies]string{"REJECT", "ON_REBOOT"}

func (p CounterResetPolicy) String() string {
	if p < numResetPolicies {
		return resetPolicyNames[p]
	}
	return fmt.Sprintf("CounterResetPolicy(%d)", uint8(p))
}

// ParseCounterResetPolicy parses "REJECT" or "ON_REBOOT".
func ParseCounterResetPolicy(s string) (CounterResetPolicy, error) {
	for i := range numResetPolicies {
		if resetPolicyNames[i] == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("counter reset policy %q: %w", s, ErrUnknownName)
}

// ParseEUI parses 16 hex digits into an EUI64.
func ParseEUI(s string) (EUI64, error) { return lorawan.ParseEUI64(s) }
