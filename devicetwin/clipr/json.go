package clipr

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The JSON forms below are the operator-facing view used by `legiond frame
// decode` and `legiond twin replay`: camelCase keys, temperatures in °C with
// two decimals, null for "no value".

// MarshalJSON writes the temperature in °C with two decimals, or null.
func (t Temp) MarshalJSON() ([]byte, error) {
	if !t.Valid() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, t.Celsius(), 'f', 2, 64), nil
}

// UnmarshalJSON reads °C (rounded to hundredths) or null.
func (t *Temp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = NoTemp
		return nil
	}
	var c float64
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("temperature: %w", err)
	}
	*t = TempFromCelsius(c)
	return nil
}

type sampleJSON struct {
	PipeC    Temp `json:"pipeC"`
	AmbientC Temp `json:"ambientC"`
}

type measurementJSON struct {
	Kind      string       `json:"kind"`
	IntervalS uint16       `json:"intervalS"`
	BatteryMv uint16       `json:"batteryMv"`
	Samples   []sampleJSON `json:"samples"`
}

// MarshalJSON implements json.Marshaler.
func (m Measurement) MarshalJSON() ([]byte, error) {
	v := measurementJSON{Kind: "measurement", IntervalS: m.IntervalS, BatteryMv: m.BatteryMV, Samples: make([]sampleJSON, len(m.Samples))}
	for i, s := range m.Samples {
		v.Samples[i] = sampleJSON{PipeC: s.Pipe, AmbientC: s.Ambient}
	}
	return json.Marshal(v)
}

// UnmarshalJSON implements json.Unmarshaler; "kind" is optional.
func (m *Measurement) UnmarshalJSON(b []byte) error {
	var v measurementJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*m = Measurement{IntervalS: v.IntervalS, BatteryMV: v.BatteryMv, Samples: make([]Sample, len(v.Samples))}
	for i, s := range v.Samples {
		m.Samples[i] = Sample{Pipe: s.PipeC, Ambient: s.AmbientC}
	}
	return nil
}

type waterEventJSON struct {
	Kind         string `json:"kind"`
	Event        string `json:"event"`
	StartedSAgo  uint16 `json:"startedSAgo"`
	DurationS    uint16 `json:"durationS"`
	StartPipeC   Temp   `json:"startPipeC"`
	ExtremePipeC Temp   `json:"extremePipeC"`
}

// MarshalJSON implements json.Marshaler.
func (e WaterEvent) MarshalJSON() ([]byte, error) {
	return json.Marshal(waterEventJSON{
		Kind: "waterEvent", Event: e.Kind.String(), StartedSAgo: e.StartedSAgo,
		DurationS: e.DurationS, StartPipeC: e.StartPipe, ExtremePipeC: e.ExtremePipe,
	})
}

// UnmarshalJSON implements json.Unmarshaler; "event" must be "flush" or
// "disinfection".
func (e *WaterEvent) UnmarshalJSON(b []byte) error {
	v := waterEventJSON{StartPipeC: NoTemp, ExtremePipeC: NoTemp}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var k WaterEventKind
	switch v.Event {
	case "flush":
		k = EventFlush
	case "disinfection":
		k = EventDisinfection
	default:
		return fmt.Errorf("event %q: %w", v.Event, ErrBadEventKind)
	}
	*e = WaterEvent{Kind: k, StartedSAgo: v.StartedSAgo, DurationS: v.DurationS, StartPipe: v.StartPipeC, ExtremePipe: v.ExtremePipeC}
	return nil
}

type statusJSON struct {
	Kind       string `json:"kind"`
	Detached   bool   `json:"detached"`
	ProbeFault bool   `json:"probeFault"`
	Rebooted   bool   `json:"rebooted"`
	BatteryMv  uint16 `json:"batteryMv"`
	Firmware   string `json:"firmware"`
	IntervalS  uint16 `json:"intervalS"`
}

// MarshalJSON implements json.Marshaler.
func (s Status) MarshalJSON() ([]byte, error) {
	return json.Marshal(statusJSON{
		Kind: "status", Detached: s.Detached, ProbeFault: s.ProbeFault, Rebooted: s.Rebooted,
		BatteryMv: s.BatteryMV, Firmware: fmt.Sprintf("%d.%d", s.FwMajor, s.FwMinor), IntervalS: s.IntervalS,
	})
}

// UnmarshalJSON implements json.Unmarshaler; "firmware" ("major.minor") is
// optional.
func (s *Status) UnmarshalJSON(b []byte) error {
	var v statusJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Status{Detached: v.Detached, ProbeFault: v.ProbeFault, Rebooted: v.Rebooted, BatteryMV: v.BatteryMv, IntervalS: v.IntervalS}
	if v.Firmware != "" {
		major, minor, ok := strings.Cut(v.Firmware, ".")
		maj, err1 := strconv.ParseUint(major, 10, 8)
		mnr, err2 := strconv.ParseUint(minor, 10, 8)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("firmware %q: want major.minor", v.Firmware)
		}
		s.FwMajor, s.FwMinor = uint8(maj), uint8(mnr)
	}
	return nil
}
