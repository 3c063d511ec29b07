package clipr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Version is the only payload version this codec understands.
const Version = 1

// FPorts of the three Clip'R messages.
const (
	PortMeasurement uint8 = 1
	PortWaterEvent  uint8 = 2
	PortStatus      uint8 = 3
)

// MaxSamples is the most samples one measurement carries (6+4·11 = 50 bytes
// fits a SF12 frame).
const MaxSamples = 11

// Sentinel errors. Every decode error wraps exactly one of them.
var (
	ErrUnknownPort    = errors.New("clipr: unknown fport")
	ErrBadVersion     = errors.New("clipr: unsupported payload version")
	ErrBadLength      = errors.New("clipr: bad payload length")
	ErrBadSampleCount = errors.New("clipr: sample count out of range")
	ErrBadEventKind   = errors.New("clipr: unknown water event kind")
)

// Temp is a temperature in hundredths of a degree Celsius. NoTemp marks a
// missing value (0x8000 on the wire).
type Temp int16

// NoTemp is the wire's "no value".
const NoTemp Temp = math.MinInt16

// Valid reports whether t carries a value.
func (t Temp) Valid() bool { return t != NoTemp }

// Celsius returns t in °C; callers check Valid first.
func (t Temp) Celsius() float64 { return float64(t) / 100 }

// TempFromCelsius rounds c to the nearest hundredth, saturating at the int16
// range (never producing NoTemp by accident).
func TempFromCelsius(c float64) Temp {
	v := math.Round(c * 100)
	switch {
	case math.IsNaN(v):
		return NoTemp
	case v > math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16 + 1
	}
	return Temp(v)
}

// Sample is one pipe/ambient pair.
type Sample struct {
	Pipe    Temp
	Ambient Temp
}

// Measurement is an FPort 1 message. Samples are oldest first; the newest is
// taken at transmission time and sample i at t_tx − (n−1−i)·IntervalS.
type Measurement struct {
	IntervalS uint16
	BatteryMV uint16
	Samples   []Sample
}

// WaterEventKind tells a flush from a thermal disinfection.
type WaterEventKind uint8

// Water event kinds on the wire.
const (
	EventFlush        WaterEventKind = 1
	EventDisinfection WaterEventKind = 2
)

// String returns "flush" or "disinfection".
func (k WaterEventKind) String() string {
	switch k {
	case EventFlush:
		return "flush"
	case EventDisinfection:
		return "disinfection"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// WaterEvent is an FPort 2 message. ExtremePipe is the maximum on hot lines
// and the minimum on cold lines.
type WaterEvent struct {
	Kind        WaterEventKind
	StartedSAgo uint16
	DurationS   uint16
	StartPipe   Temp
	ExtremePipe Temp
}

// Status is an FPort 3 message.
type Status struct {
	Detached   bool
	ProbeFault bool
	Rebooted   bool
	BatteryMV  uint16
	FwMajor    uint8
	FwMinor    uint8
	IntervalS  uint16
}

// Status flag bits.
const (
	flagDetached   = 1 << 0
	flagProbeFault = 1 << 1
	flagRebooted   = 1 << 2
)

// Message is one of Measurement, WaterEvent or Status.
type Message interface {
	// Port is the FPort the message travels on.
	Port() uint8
	// AppendBinary appends the wire encoding to b.
	AppendBinary(b []byte) ([]byte, error)
}

// Port implements Message.
func (Measurement) Port() uint8 { return PortMeasurement }

// Port implements Message.
func (WaterEvent) Port() uint8 { return PortWaterEvent }

// Port implements Message.
func (Status) Port() uint8 { return PortStatus }

const (
	measurementHeaderLen = 6
	sampleLen            = 4
	waterEventLen        = 10
	statusLen            = 8
)

// Decode decodes the payload b received on fport.
func Decode(fport uint8, b []byte) (Message, error) {
	switch fport {
	case PortMeasurement:
		return DecodeMeasurement(b)
	case PortWaterEvent:
		return DecodeWaterEvent(b)
	case PortStatus:
		return DecodeStatus(b)
	}
	return nil, fmt.Errorf("fport %d: %w", fport, ErrUnknownPort)
}

func checkVersion(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("empty payload: %w", ErrBadLength)
	}
	if b[0] != Version {
		return fmt.Errorf("version %d: %w", b[0], ErrBadVersion)
	}
	return nil
}

// DecodeMeasurement decodes an FPort 1 payload.
func DecodeMeasurement(b []byte) (Measurement, error) {
	if err := checkVersion(b); err != nil {
		return Measurement{}, err
	}
	if len(b) < measurementHeaderLen {
		return Measurement{}, fmt.Errorf("measurement of %d bytes: %w", len(b), ErrBadLength)
	}
	n := int(b[1])
	if n < 1 || n > MaxSamples {
		return Measurement{}, fmt.Errorf("%d samples: %w", n, ErrBadSampleCount)
	}
	if want := measurementHeaderLen + sampleLen*n; len(b) != want {
		return Measurement{}, fmt.Errorf("measurement of %d bytes, want %d: %w", len(b), want, ErrBadLength)
	}
	m := Measurement{
		IntervalS: binary.BigEndian.Uint16(b[2:]),
		BatteryMV: binary.BigEndian.Uint16(b[4:]),
		Samples:   make([]Sample, n),
	}
	for i := range m.Samples {
		o := measurementHeaderLen + sampleLen*i
		m.Samples[i] = Sample{Pipe: temp(b[o:]), Ambient: temp(b[o+2:])}
	}
	return m, nil
}

// DecodeWaterEvent decodes an FPort 2 payload.
func DecodeWaterEvent(b []byte) (WaterEvent, error) {
	if err := checkVersion(b); err != nil {
		return WaterEvent{}, err
	}
	if len(b) != waterEventLen {
		return WaterEvent{}, fmt.Errorf("water event of %d bytes, want %d: %w", len(b), waterEventLen, ErrBadLength)
	}
	k := WaterEventKind(b[1])
	if k != EventFlush && k != EventDisinfection {
		return WaterEvent{}, fmt.Errorf("water event kind %d: %w", b[1], ErrBadEventKind)
	}
	return WaterEvent{
		Kind:        k,
		StartedSAgo: binary.BigEndian.Uint16(b[2:]),
		DurationS:   binary.BigEndian.Uint16(b[4:]),
		StartPipe:   temp(b[6:]),
		ExtremePipe: temp(b[8:]),
	}, nil
}

// DecodeStatus decodes an FPort 3 payload. Unknown flag bits are ignored so
// that newer firmware with extra flags still reports.
func DecodeStatus(b []byte) (Status, error) {
	if err := checkVersion(b); err != nil {
		return Status{}, err
	}
	if len(b) != statusLen {
		return Status{}, fmt.Errorf("status of %d bytes, want %d: %w", len(b), statusLen, ErrBadLength)
	}
	f := b[1]
	return Status{
		Detached:   f&flagDetached != 0,
		ProbeFault: f&flagProbeFault != 0,
		Rebooted:   f&flagRebooted != 0,
		BatteryMV:  binary.BigEndian.Uint16(b[2:]),
		FwMajor:    b[4],
		FwMinor:    b[5],
		IntervalS:  binary.BigEndian.Uint16(b[6:]),
	}, nil
}

func temp(b []byte) Temp { return Temp(int16(binary.BigEndian.Uint16(b))) }

func appendTemp(b []byte, t Temp) []byte { return binary.BigEndian.AppendUint16(b, uint16(t)) }

// AppendBinary implements Message.
func (m Measurement) AppendBinary(b []byte) ([]byte, error) {
	n := len(m.Samples)
	if n < 1 || n > MaxSamples {
		return b, fmt.Errorf("%d samples: %w", n, ErrBadSampleCount)
	}
	b = append(b, Version, uint8(n))
	b = binary.BigEndian.AppendUint16(b, m.IntervalS)
	b = binary.BigEndian.AppendUint16(b, m.BatteryMV)
	for _, s := range m.Samples {
		b = appendTemp(appendTemp(b, s.Pipe), s.Ambient)
	}
	return b, nil
}

// AppendBinary implements Message.
func (e WaterEvent) AppendBinary(b []byte) ([]byte, error) {
	if e.Kind != EventFlush && e.Kind != EventDisinfection {
		return b, fmt.Errorf("water event kind %d: %w", e.Kind, ErrBadEventKind)
	}
	b = append(b, Version, uint8(e.Kind))
	b = binary.BigEndian.AppendUint16(b, e.StartedSAgo)
	b = binary.BigEndian.AppendUint16(b, e.DurationS)
	return appendTemp(appendTemp(b, e.StartPipe), e.ExtremePipe), nil
}

// AppendBinary implements Message.
func (s Status) AppendBinary(b []byte) ([]byte, error) {
	var f uint8
	if s.Detached {
		f |= flagDetached
	}
	if s.ProbeFault {
		f |= flagProbeFault
	}
	if s.Rebooted {
		f |= flagRebooted
	}
	b = append(b, Version, f)
	b = binary.BigEndian.AppendUint16(b, s.BatteryMV)
	b = append(b, s.FwMajor, s.FwMinor)
	return binary.BigEndian.AppendUint16(b, s.IntervalS), nil
}

// Encode returns the FPort and wire bytes of m.
func Encode(m Message) (uint8, []byte, error) {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return 0, nil, err
	}
	return m.Port(), b, nil
}
