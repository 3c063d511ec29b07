package devicetwin

import (
	"fmt"
	"strconv"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// EventKind tells which payload of an Event is set.
type EventKind uint8

// Event kinds.
const (
	KindReading EventKind = iota + 1
	KindWaterEvent
	KindAlarm
	KindDeviceStatus
	KindGatewayStatus
	KindRejection
)

var kindNames = [...]string{"", "reading", "waterEvent", "alarm", "status", "gatewayStatus", "rejected"}

// String returns the replay tool's name of the kind ("reading", "alarm"…).
func (k EventKind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event id sources: what kind of input produced the event.
const (
	srcFrame    = 'f' // uplink: Epoch = counter epoch, N = full FCnt
	srcTick     = 't' // tick: N = now (Unix ms)
	srcConfig   = 'c' // config change: N = revision
	srcOperator = 'o' // ack or clear: N = At (Unix ms), Epoch = alarm type
	srcSession  = 's' // session reset: N = At (Unix ms)
	srcReject   = 'x' // rejection: N = the twin's rejection count
	srcGateway  = 'g' // gateway stats: N = At (Unix ms); uplink seen: Epoch 1
)

// EventID is the deterministic identity of an event: the device, what
// input caused it, and its index among that input's events. Replaying the
// same inputs yields the same ids, so consumers de-duplicate on them. It is
// a value (no allocation); String renders it.
type EventID struct {
	Dev   EUI64
	Src   byte
	Epoch uint32
	N     uint64
	Idx   uint16
}

// String renders the id as "<eui>-<src><epoch>.<n>.<idx>", e.g.
// "0004a30b001c0530-f0.42.3" for the fourth event of frame 42.
func (id EventID) String() string {
	b := make([]byte, 0, 48)
	b = append(b, id.Dev.String()...)
	b = append(b, '-', id.Src)
	b = strconv.AppendUint(b, uint64(id.Epoch), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, id.N, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(id.Idx), 10)
	return string(b)
}

// Event is one output of a twin. Kind says which payload is set; the
// others are zero. It is a flat value so that a measurement's readings cost
// one slice allocation, not one per reading.
type Event struct {
	ID   EventID
	At   time.Time
	Kind EventKind
	// FCnt is the full frame counter of the uplink that caused the event (0
	// for other inputs).
	FCnt uint32

	Reading   Reading
	Water     WaterEventOut
	Alarm     AlarmTransition
	Status    DeviceStatus
	Gateway   GatewayStatus
	Rejection Rejection
}

// FromFrame reports whether the event was caused by a frame (accepted or
// rejected), so that FCnt is meaningful.
func (e *Event) FromFrame() bool { return e.ID.Src == srcFrame || e.ID.Src == srcReject }

// Reading is one temperature sample; At is the sample's event time.
type Reading struct {
	Pipe, Ambient clipr.Temp
	// Index of the sample within its uplink, oldest first.
	Index uint8
}

// WaterEventOut is a flush or a thermal disinfection as the logbook
// records it. Event.At is when it started.
type WaterEventOut struct {
	Kind clipr.WaterEventKind
	// Inferred: derived from samples rather than reported by the device.
	Inferred bool
	// Assessed is false when no rule of the tap kind and profile applies
	// (e.g. a disinfection under UK); Compliant is then false.
	Assessed  bool
	Compliant bool
	// Reason explains a non-compliant or unassessed event.
	Reason      string
	Duration    time.Duration
	StartPipe   clipr.Temp
	ExtremePipe clipr.Temp
}

// AlarmTransition is one step of an alarm's lifecycle. From == To marks an
// update of an active alarm (its severity changed).
type AlarmTransition struct {
	Type     AlarmType
	Severity Severity
	From, To AlarmStatus
	// Seq numbers the occurrences of this alarm type on the device; with the
	// device and type it identifies the alarm across its transitions.
	Seq uint32
	// By is "system" for rule transitions, else the operator.
	By   string
	Note string
	// Value and Threshold in Unit, when HasValue.
	HasValue         bool
	Value, Threshold float64
	Unit             string
	RaisedAt         time.Time
}

// AlarmID is the stable id of the alarm across its transitions.
func (a *AlarmTransition) AlarmID(dev EUI64) string {
	return dev.String() + "-" + a.Type.String() + "-" + strconv.FormatUint(uint64(a.Seq), 10)
}

// SystemActor is AlarmTransition.By for rule-driven transitions.
const SystemActor = "system"

// DeviceStatus is a sensor's health after a status frame, a counter reset
// or a session reset.
type DeviceStatus struct {
	BatteryMV            uint16
	Detached, ProbeFault bool
	Rebooted             bool
	FwMajor, FwMinor     uint8
	IntervalS            uint16
	// CounterReset: the frame counter started a new epoch (accepted reset
	// under ResetOnReboot, or a SessionReset).
	CounterReset bool
	// Link quality of the frame: best RSSI/SNR over all gateways heard so far.
	BestRSSI  int16
	BestSNR   float32
	Gateways  [maxGateways]EUI64
	NGateways uint8
}

// GatewayStatus is a gateway's health and the link statistics since the
// previous stats record.
type GatewayStatus struct {
	Online                bool
	RxReceived, RxOK      uint32
	TxReceived, TxEmitted uint32
	// Uplinks heard in the period, and their RSSI/SNR statistics.
	Uplinks          uint32
	MinRSSI, MaxRSSI int16
	MeanRSSI         float64
	MeanSNR          float64
	LastSeen         time.Time
}

// RejectReason says why a frame was not applied.
type RejectReason uint8

// Rejection reasons. The ones marked "counted" count toward SECURITY.
const (
	RejectUnspecified RejectReason = iota
	// RejectReplay: a counter already applied, received later than a
	// duplicate can be (counted).
	RejectReplay
	// RejectRewind: a counter lower than the last, never applied, received
	// after the newer frame (counted).
	RejectRewind
	// RejectGapTooLarge: the counter jumped more than MaxFCntGap (counted).
	RejectGapTooLarge
	// RejectBadMIC: the MIC does not verify under the session (counted).
	RejectBadMIC
	// RejectMalformed: the PHYPayload does not parse.
	RejectMalformed
	// RejectDecode: the Clip'R payload does not decode (counter consumed).
	RejectDecode
	// RejectUnknownPort: an FPort the Clip'R codec does not know.
	RejectUnknownPort
	// RejectWrongDevice: the frame is for another DevEUI (a routing bug).
	RejectWrongDevice
	// RejectCounterExhausted: the 32-bit counter is used up (counted).
	RejectCounterExhausted
	numRejectReasons
)

var rejectNames = [numRejectReasons]string{"UNSPECIFIED", "REPLAY", "REWIND", "GAP_TOO_LARGE", "BAD_MIC", "MALFORMED", "DECODE_ERROR", "UNKNOWN_PORT", "WRONG_DEVICE", "COUNTER_EXHAUSTED"}

func (r RejectReason) String() string {
	if r < numRejectReasons {
		return rejectNames[r]
	}
	return fmt.Sprintf("RejectReason(%d)", uint8(r))
}

// counted reports whether the reason counts toward SECURITY.
func (r RejectReason) counted() bool {
	switch r {
	case RejectReplay, RejectRewind, RejectGapTooLarge, RejectBadMIC, RejectCounterExhausted:
		return true
	}
	return false
}

// Rejection is a frame that was not applied; the actor sends it to the
// dead-letter topic with Reason.
type Rejection struct {
	Reason RejectReason
	// FCnt is the full counter the frame claimed (an estimate when the
	// wire counter could not be placed).
	FCnt   uint32
	Detail string
	// Counted: it counts toward SECURITY.
	Counted bool
}

// emitter appends events with consecutive ids.
type emitter struct {
	dst  []Event
	id   EventID
	fcnt uint32
}

func (e *emitter) add(kind EventKind, at ms) *Event {
	e.dst = append(e.dst, Event{ID: e.id, At: at.time(), Kind: kind, FCnt: e.fcnt})
	e.id.Idx++
	return &e.dst[len(e.dst)-1]
}
