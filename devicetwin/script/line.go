package script

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// ErrInvalidLine wraps every reason a line is rejected.
var ErrInvalidLine = errors.New("script: invalid line")

// Line is one parsed line: an input (with its time) or, in scenarios, an
// expectation about the events of the input before it.
type Line struct {
	At time.Time
	// Input is for the sensor twin; nil for gateway-only and expectation
	// lines.
	Input devicetwin.Input
	// Gateway names the gateway of an uplink copy, gatewayStats or a
	// GATEWAY_OFFLINE ack/clear (HasGateway).
	Gateway    devicetwin.EUI64
	HasGateway bool
	// GatewayInput is for the gateway twin named by Gateway.
	GatewayInput devicetwin.Input

	// Expectations (scenario mode only).
	Expect     map[string]any
	ExpectNot  map[string]any
	ExpectNone bool
}

// IsExpectation reports whether the line is an expectation, not an input.
func (l *Line) IsExpectation() bool { return l.Expect != nil || l.ExpectNot != nil || l.ExpectNone }

type operatorJSON struct {
	AlarmType string `json:"alarmType"`
	By        string `json:"by"`
	Note      string `json:"note"`
}

type gatewayStatsJSON struct {
	RxReceived uint32   `json:"rxReceived"`
	RxOK       uint32   `json:"rxOk"`
	TxReceived uint32   `json:"txReceived"`
	TxEmitted  uint32   `json:"txEmitted"`
	Latitude   *float64 `json:"latitude"`
	Longitude  *float64 `json:"longitude"`
}

type sessionResetJSON struct {
	By string `json:"by"`
}

type lineJSON struct {
	At      string   `json:"at"`
	FCnt    *uint32  `json:"fCnt"`
	Gateway string   `json:"gateway"`
	RSSI    *int16   `json:"rssi"`
	SNR     *float32 `json:"snr"`

	Measurement  *clipr.Measurement `json:"measurement"`
	WaterEvent   *clipr.WaterEvent  `json:"waterEvent"`
	Status       *clipr.Status      `json:"status"`
	Payload      *string            `json:"payload"`
	FPort        *uint8             `json:"fPort"`
	Tick         *bool              `json:"tick"`
	Ack          *operatorJSON      `json:"ack"`
	Clear        *operatorJSON      `json:"clear"`
	Config       *ConfigJSON        `json:"config"`
	SessionReset *sessionResetJSON  `json:"sessionReset"`
	GatewayStats *gatewayStatsJSON  `json:"gatewayStats"`

	Expect     map[string]any `json:"expect"`
	ExpectNot  map[string]any `json:"expectNot"`
	ExpectNone bool           `json:"expectNone"`
}

func invalid(format string, a ...any) error {
	return fmt.Errorf(format+": %w", append(a, ErrInvalidLine)...)
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return invalid("%v", err)
	}
	if d.More() {
		return invalid("trailing data after the object")
	}
	return nil
}

// ParseLine parses one input line. scenario allows expectation lines.
func ParseLine(b []byte, scenario bool) (Line, error) {
	var j lineJSON
	if err := decodeStrict(b, &j); err != nil {
		return Line{}, err
	}
	if j.Expect != nil || j.ExpectNot != nil || j.ExpectNone {
		if !scenario {
			return Line{}, invalid("expectations are only allowed in scenarios")
		}
		return Line{Expect: j.Expect, ExpectNot: j.ExpectNot, ExpectNone: j.ExpectNone}, nil
	}
	if j.At == "" {
		return Line{}, invalid(`missing "at"`)
	}
	at, err := time.Parse(time.RFC3339Nano, j.At)
	if err != nil {
		return Line{}, invalid("at %q is not RFC 3339", j.At)
	}
	l := Line{At: at}
	if j.Gateway != "" {
		if l.Gateway, err = devicetwin.ParseEUI(j.Gateway); err != nil {
			return Line{}, invalid("gateway: %v", err)
		}
		l.HasGateway = true
	}

	kinds := 0
	for _, set := range []bool{j.Measurement != nil, j.WaterEvent != nil, j.Status != nil, j.Payload != nil,
		j.Tick != nil, j.Ack != nil, j.Clear != nil, j.Config != nil, j.SessionReset != nil, j.GatewayStats != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return Line{}, invalid("want exactly one of measurement, waterEvent, status, payload, tick, ack, clear, config, sessionReset, gatewayStats; got %d", kinds)
	}
	uplink := j.Measurement != nil || j.WaterEvent != nil || j.Status != nil || j.Payload != nil
	if !uplink && (j.FCnt != nil || j.RSSI != nil || j.SNR != nil || j.FPort != nil) {
		return Line{}, invalid("fCnt, fPort, rssi and snr belong to uplink lines")
	}
	if uplink {
		u, err := parseUplink(&j, at)
		if err != nil {
			return Line{}, err
		}
		u.Rx.GatewayEUI = l.Gateway
		l.Input = u
		return l, nil
	}
	switch {
	case j.Tick != nil:
		if !*j.Tick {
			return Line{}, invalid(`"tick" must be true`)
		}
		l.Input = devicetwin.Tick{Now: at}
	case j.Ack != nil, j.Clear != nil:
		op, clear := j.Ack, false
		if op == nil {
			op, clear = j.Clear, true
		}
		t, err := devicetwin.ParseAlarmType(op.AlarmType)
		if err != nil {
			return Line{}, invalid("%v", err)
		}
		var in devicetwin.Input = devicetwin.AlarmAck{Type: t, By: op.By, At: at, Note: op.Note}
		if clear {
			in = devicetwin.AlarmClear{Type: t, By: op.By, At: at, Note: op.Note}
		}
		if t == devicetwin.GatewayOffline {
			if !l.HasGateway {
				return Line{}, invalid(`acknowledging GATEWAY_OFFLINE needs "gateway"`)
			}
			l.GatewayInput = in
		} else {
			l.Input = in
		}
	case j.Config != nil:
		cfg, err := j.Config.SensorConfig()
		if err != nil {
			return Line{}, err
		}
		if cfg.Revision == 0 {
			return Line{}, invalid(`config needs "revision" ≥ 1`)
		}
		l.Input = devicetwin.ConfigChange{At: at, Config: cfg}
	case j.SessionReset != nil:
		l.Input = devicetwin.SessionReset{At: at, By: j.SessionReset.By}
	case j.GatewayStats != nil:
		if !l.HasGateway {
			return Line{}, invalid(`gatewayStats needs "gateway"`)
		}
		g := j.GatewayStats
		st := devicetwin.GatewayStats{At: at, RxReceived: g.RxReceived, RxOK: g.RxOK, TxReceived: g.TxReceived, TxEmitted: g.TxEmitted}
		if g.Latitude != nil && g.Longitude != nil {
			st.Latitude, st.Longitude, st.HasLocation = *g.Latitude, *g.Longitude, true
		}
		l.GatewayInput = st
	}
	return l, nil
}

func parseUplink(j *lineJSON, at time.Time) (devicetwin.Uplink, error) {
	if j.FCnt == nil {
		return devicetwin.Uplink{}, invalid(`uplink line without "fCnt"`)
	}
	u := devicetwin.Uplink{FCnt: *j.FCnt, Rx: devicetwin.Rx{ReceivedAt: at}}
	if j.RSSI != nil {
		u.Rx.RSSI = *j.RSSI
	}
	if j.SNR != nil {
		u.Rx.SNR = *j.SNR
	}
	if j.FPort != nil && j.Payload == nil {
		return devicetwin.Uplink{}, invalid(`"fPort" goes with "payload"`)
	}
	var msg clipr.Message
	switch {
	case j.Measurement != nil:
		msg = *j.Measurement
	case j.WaterEvent != nil:
		msg = *j.WaterEvent
	case j.Status != nil:
		msg = *j.Status
	default:
		if j.FPort == nil {
			return devicetwin.Uplink{}, invalid(`"payload" needs "fPort"`)
		}
		b, err := hex.DecodeString(*j.Payload)
		if err != nil {
			return devicetwin.Uplink{}, invalid("payload is not hex")
		}
		u.FPort = *j.FPort
		u.Msg, u.DecodeErr = clipr.Decode(u.FPort, b)
		if u.DecodeErr != nil {
			u.Msg = nil
		}
		return u, nil
	}
	// The codec's own checks: what it cannot encode, no device sends.
	if _, err := msg.AppendBinary(nil); err != nil {
		return devicetwin.Uplink{}, invalid("%v", err)
	}
	u.FPort, u.Msg = msg.Port(), msg
	return u, nil
}

// ConfigJSON is a sensor configuration in the script language: the
// "config" input and the scenario header share it.
type ConfigJSON struct {
	Revision     uint64         `json:"revision"`
	TapKind      string         `json:"tapKind"`
	Profile      string         `json:"profile"`
	IntervalS    int64          `json:"intervalS"`
	ResetPolicy  string         `json:"resetPolicy"`
	TenantID     string         `json:"tenantId"`
	SiteID       string         `json:"siteId"`
	TapPointID   string         `json:"tapPointId"`
	SiteOverride *OverridesJSON `json:"siteOverrides"`
	TapOverride  *OverridesJSON `json:"tapOverrides"`
}

// SensorConfig converts and validates.
func (c *ConfigJSON) SensorConfig() (devicetwin.SensorConfig, error) {
	cfg := devicetwin.SensorConfig{Revision: c.Revision, TenantID: c.TenantID, SiteID: c.SiteID, TapPointID: c.TapPointID}
	var err error
	if cfg.TapKind, err = devicetwin.ParseTapKind(c.TapKind); err != nil {
		return cfg, invalid("%v", err)
	}
	if c.Profile != "" {
		if cfg.Profile, err = devicetwin.ParseProfile(c.Profile); err != nil {
			return cfg, invalid("%v", err)
		}
	}
	if c.ResetPolicy != "" {
		if cfg.ResetPolicy, err = devicetwin.ParseCounterResetPolicy(c.ResetPolicy); err != nil {
			return cfg, invalid("%v", err)
		}
	}
	if c.IntervalS < 0 || c.IntervalS > 7*24*3600 {
		return cfg, invalid("intervalS %d out of range", c.IntervalS)
	}
	cfg.ExpectedInterval = time.Duration(c.IntervalS) * time.Second
	if c.SiteOverride != nil {
		if cfg.Site, err = c.SiteOverride.Overrides(); err != nil {
			return cfg, err
		}
	}
	if c.TapOverride != nil {
		if cfg.Tap, err = c.TapOverride.Overrides(); err != nil {
			return cfg, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, invalid("%v", err)
	}
	return cfg, nil
}

// OverridesJSON names every overridable rule value with its unit; the
// names are the ones docs/rules.md documents.
type OverridesJSON struct {
	HeaterOutletMinC      *float64 `json:"heaterOutletMinC"`
	CirculationReturnMinC *float64 `json:"circulationReturnMinC"`
	HotFlushMinC          *float64 `json:"hotFlushMinC"`
	HotFlushWithinS       *float64 `json:"hotFlushWithinS"`
	ColdMaxC              *float64 `json:"coldMaxC"`
	FlushEveryH           *float64 `json:"flushEveryH"`
	FlushMinDurationS     *float64 `json:"flushMinDurationS"`
	Disinfection          []struct {
		C   float64 `json:"c"`
		Min float64 `json:"min"`
	} `json:"disinfection"`
	DisinfectionDetectC *float64 `json:"disinfectionDetectC"`
	SustainedWindowMin  *float64 `json:"sustainedWindowMin"`
	HysteresisK         *float64 `json:"hysteresisK"`
	HotspotDeltaK       *float64 `json:"hotspotDeltaK"`
	FlushDeltaK         *float64 `json:"flushDeltaK"`
	OfflineFactor       *float64 `json:"offlineFactor"`
	BatteryLowMv        *uint16  `json:"batteryLowMv"`
	BatteryMajorMv      *uint16  `json:"batteryMajorMv"`
	BatteryHysteresisMv *uint16  `json:"batteryHysteresisMv"`
}

func temp(c *float64) devicetwin.Opt[clipr.Temp] {
	if c == nil {
		return devicetwin.Opt[clipr.Temp]{}
	}
	return devicetwin.Some(clipr.TempFromCelsius(*c))
}

func dur(v *float64, unit time.Duration) devicetwin.Opt[time.Duration] {
	if v == nil {
		return devicetwin.Opt[time.Duration]{}
	}
	return devicetwin.Some(time.Duration(math.Round(*v * float64(unit))))
}

func opt[T any](v *T) devicetwin.Opt[T] {
	if v == nil {
		return devicetwin.Opt[T]{}
	}
	return devicetwin.Some(*v)
}

// Overrides converts to the core's type.
func (o *OverridesJSON) Overrides() (devicetwin.Overrides, error) {
	r := devicetwin.Overrides{
		HeaterOutletMin:      temp(o.HeaterOutletMinC),
		CirculationReturnMin: temp(o.CirculationReturnMinC),
		HotFlushMin:          temp(o.HotFlushMinC),
		HotFlushWithin:       dur(o.HotFlushWithinS, time.Second),
		ColdMax:              temp(o.ColdMaxC),
		FlushEvery:           dur(o.FlushEveryH, time.Hour),
		FlushMinDuration:     dur(o.FlushMinDurationS, time.Second),
		DisinfectionDetect:   temp(o.DisinfectionDetectC),
		SustainedWindow:      dur(o.SustainedWindowMin, time.Minute),
		Hysteresis:           temp(o.HysteresisK),
		HotspotDelta:         temp(o.HotspotDeltaK),
		FlushDelta:           temp(o.FlushDeltaK),
		OfflineFactor:        opt(o.OfflineFactor),
		BatteryLowMV:         opt(o.BatteryLowMv),
		BatteryMajorMV:       opt(o.BatteryMajorMv),
		BatteryHysteresisMV:  opt(o.BatteryHysteresisMv),
	}
	if o.Disinfection != nil {
		if len(o.Disinfection) > 4 {
			return r, invalid("at most 4 disinfection criteria")
		}
		var hs [4]devicetwin.TempHold
		for i, h := range o.Disinfection {
			hs[i] = devicetwin.TempHold{Temp: clipr.TempFromCelsius(h.C), Hold: time.Duration(math.Round(h.Min * float64(time.Minute)))}
		}
		r.Disinfection, r.NDisinfection = devicetwin.Some(hs), len(o.Disinfection)
	}
	return r, nil
}

// Header is the first line of a scenario and the replay tool's flags: the
// sensor's configuration and the replay's options.
type Header struct {
	Scenario string `json:"scenario"`
	// DevEUI of the replayed sensor (default 0000000000000001).
	DevEUI string `json:"devEui"`
	// Gateways also runs a gateway twin per gateway named in the input.
	Gateways bool `json:"gateways"`
	ConfigJSON
}

// ParseHeader parses a scenario header line.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if err := decodeStrict(b, &h); err != nil {
		return h, err
	}
	if h.Scenario == "" {
		return h, invalid(`a scenario starts with a header line with "scenario"`)
	}
	return h, nil
}
