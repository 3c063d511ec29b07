package fleet

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidConfig is wrapped by every Config.Validate error.
var ErrInvalidConfig = errors.New("fleet: invalid config")

// TapKind is the kind of tap point a sensor is clipped to (DESIGN §4).
type TapKind string

// Tap point kinds.
const (
	HotTap            TapKind = "HOT_TAP"
	ColdTap           TapKind = "COLD_TAP"
	MixedTap          TapKind = "MIXED_TAP"
	CirculationReturn TapKind = "CIRCULATION_RETURN"
	HeaterOutlet      TapKind = "HEATER_OUTLET"
	ColdMain          TapKind = "COLD_MAIN"
)

// IsHot reports whether the line carries hot water (the clip of a mixed
// tap sits on its hot inlet).
func (k TapKind) IsHot() bool {
	return k == HotTap || k == MixedTap || k == CirculationReturn || k == HeaterOutlet
}

// IsContinuous reports whether water flows all the time (monitored lines)
// rather than only when someone opens a tap.
func (k TapKind) IsContinuous() bool {
	return k == CirculationReturn || k == HeaterOutlet || k == ColdMain
}

// Behaviour is a sensor's scripted profile.
type Behaviour string

// Behaviour profiles.
const (
	// BehaviourNormal: taps are used a few times a day; hot lines get a
	// weekly thermal disinfection; monitored lines stay in range.
	BehaviourNormal Behaviour = "NORMAL"
	// BehaviourRarelyUsed: a tap nobody opens for 8–14 days (FLUSH_OVERDUE).
	BehaviourRarelyUsed Behaviour = "RARELY_USED"
	// BehaviourHotLineCooling: from day 1–3 the hot supply falls a few K a
	// day to 42–47 °C, crossing 55 °C and 50 °C (HOT_WATER_TOO_COLD).
	BehaviourHotLineCooling Behaviour = "HOT_LINE_COOLING"
	// BehaviourColdLineWarming: a cold line in a warm shaft (ambient
	// 26–29 °C) whose supply also warms: above 25 °C (COLD_WATER_TOO_WARM).
	BehaviourColdLineWarming Behaviour = "COLD_LINE_WARMING"
	// BehaviourLowBattery: battery starts near 2.95 V and falls below 2.9 V
	// and then 2.7 V within days (BATTERY_LOW minor, then major).
	BehaviourLowBattery Behaviour = "LOW_BATTERY"
	// BehaviourDetached: the clip falls off the pipe on day 1–5; a status
	// frame carries the flag and the pipe probe then reads air.
	BehaviourDetached Behaviour = "DETACHED"
	// BehaviourSilent: the sensor stops transmitting on day 1–4
	// (SENSOR_OFFLINE).
	BehaviourSilent Behaviour = "SILENT"
)

// TapMix weighs the tap kinds in the fleet. Weights are relative; the
// fleet gets round(N·w/Σw) sensors of each kind (largest remainder).
type TapMix struct {
	HotTap, ColdTap, MixedTap, CirculationReturn, HeaterOutlet, ColdMain float64
}

// BehaviourMix weighs the behaviour profiles. Weights are relative. A
// profile that needs a particular line (cooling: hot lines; warming: cold
// lines; rarely used: taps) only goes to eligible sensors; quota that
// cannot be placed falls back to Normal. Set only Normal for a well-behaved
// fleet.
type BehaviourMix struct {
	Normal, RarelyUsed, HotLineCooling, ColdLineWarming, LowBattery, Detached, Silent float64
}

// Config parameterises a fleet. The zero value of every field means "use
// the default" documented on it; New applies defaults and Validate.
type Config struct {
	// Sensors is the number of Clip'R sensors. Default 100.
	Sensors int
	// Gateways is the number of gateways. Default 3.
	Gateways int
	// Seed determines identities, keys, placement and behaviour. Any value
	// is valid (0 included): there is no default to fall back to.
	Seed int64
	// Start is the simulated time at which the first sensor may boot.
	// Default 2025-01-06T00:00:00Z (a Monday), so that runs are
	// reproducible; there is no "now" in a simulation.
	Start time.Time
	// ReportInterval is the measurement uplink period. Default 15 min.
	ReportInterval time.Duration
	// SampleInterval is the spacing of the samples inside a measurement;
	// ReportInterval must be a whole multiple, 1..11 samples (Clip'R
	// payload limit). Default 3 min (5 samples per uplink).
	SampleInterval time.Duration
	// StatusInterval is the period of the FPort 3 status frame after the
	// one sent at boot. Default 24 h.
	StatusInterval time.Duration
	// Taps weighs the tap kinds. Default (all zero): 30 % hot taps, 25 %
	// cold taps, 15 % mixed taps, 10 % circulation returns, 5 % heater
	// outlets, 15 % cold mains.
	Taps TapMix
	// Behaviours weighs the behaviour profiles. Default (all zero): 70 %
	// normal, 10 % rarely used, 5 % hot line cooling, 5 % cold line
	// warming, 4 % low battery, 3 % detached, 3 % silent.
	Behaviours BehaviourMix
	// MaxGatewaysPerUplink caps how many gateways hear one uplink.
	// Default min(3, Gateways).
	MaxGatewaysPerUplink int
	// FrameLoss is the probability that a transmitted frame reaches no
	// gateway (its FCnt is used up anyway, as on a real radio). Default 0.
	FrameLoss float64
	// InitialFCnt is every session's first uplink counter. Default 0; set
	// it near 65535 to exercise 16-bit roll-over downstream.
	InitialFCnt uint32
}

// Defaults of Config.
const (
	DefaultSensors        = 100
	DefaultGateways       = 3
	DefaultReportInterval = 15 * time.Minute
	DefaultSampleInterval = 3 * time.Minute
	DefaultStatusInterval = 24 * time.Hour
)

// DefaultStart is the default simulated start time.
func DefaultStart() time.Time { return time.Date(2025, time.January, 6, 0, 0, 0, 0, time.UTC) }

// DefaultTapMix returns the default tap-kind weights.
func DefaultTapMix() TapMix {
	return TapMix{HotTap: 30, ColdTap: 25, MixedTap: 15, CirculationReturn: 10, HeaterOutlet: 5, ColdMain: 15}
}

// DefaultBehaviourMix returns the default behaviour weights.
func DefaultBehaviourMix() BehaviourMix {
	return BehaviourMix{Normal: 70, RarelyUsed: 10, HotLineCooling: 5, ColdLineWarming: 5, LowBattery: 4, Detached: 3, Silent: 3}
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Sensors == 0 {
		c.Sensors = DefaultSensors
	}
	if c.Gateways == 0 {
		c.Gateways = DefaultGateways
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart()
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = DefaultReportInterval
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.Taps == (TapMix{}) {
		c.Taps = DefaultTapMix()
	}
	if c.Behaviours == (BehaviourMix{}) {
		c.Behaviours = DefaultBehaviourMix()
	}
	if c.MaxGatewaysPerUplink == 0 {
		c.MaxGatewaysPerUplink = min(3, c.Gateways)
	}
	return c
}

// Limits enforced by Validate.
const (
	MaxSensors  = 1 << 22 // DevAddr space and memory stay comfortable
	MaxGateways = 4096
	maxSamples  = 11 // clipr.MaxSamples
)

// Validate reports the first problem with c (after defaults), wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidConfig)
	}
	switch {
	case c.Sensors < 1 || c.Sensors > MaxSensors:
		return bad("Sensors %d not in 1..%d", c.Sensors, MaxSensors)
	case c.Gateways < 1 || c.Gateways > MaxGateways:
		return bad("Gateways %d not in 1..%d", c.Gateways, MaxGateways)
	case c.Start.IsZero():
		return bad("Start is zero")
	case c.SampleInterval < time.Second || c.SampleInterval%time.Second != 0:
		return bad("SampleInterval %v must be whole seconds, at least 1 s", c.SampleInterval)
	case c.ReportInterval%c.SampleInterval != 0:
		return bad("ReportInterval %v is not a multiple of SampleInterval %v", c.ReportInterval, c.SampleInterval)
	case c.ReportInterval/c.SampleInterval < 1 || c.ReportInterval/c.SampleInterval > maxSamples:
		return bad("ReportInterval/SampleInterval = %d samples, want 1..%d", c.ReportInterval/c.SampleInterval, maxSamples)
	case c.ReportInterval > math.MaxUint16*time.Second:
		return bad("ReportInterval %v exceeds the status frame's 16-bit seconds", c.ReportInterval)
	case c.ReportInterval < time.Minute:
		return bad("ReportInterval %v below 1 min breaks the EU868 duty cycle", c.ReportInterval)
	case c.StatusInterval < c.ReportInterval:
		return bad("StatusInterval %v shorter than ReportInterval %v", c.StatusInterval, c.ReportInterval)
	case c.MaxGatewaysPerUplink < 1 || c.MaxGatewaysPerUplink > c.Gateways:
		return bad("MaxGatewaysPerUplink %d not in 1..%d", c.MaxGatewaysPerUplink, c.Gateways)
	case !(c.FrameLoss >= 0 && c.FrameLoss < 1):
		return bad("FrameLoss %v not in [0, 1)", c.FrameLoss)
	}
	t := c.Taps
	if err := checkWeights("Taps", t.HotTap, t.ColdTap, t.MixedTap, t.CirculationReturn, t.HeaterOutlet, t.ColdMain); err != nil {
		return err
	}
	b := c.Behaviours
	return checkWeights("Behaviours", b.Normal, b.RarelyUsed, b.HotLineCooling, b.ColdLineWarming, b.LowBattery, b.Detached, b.Silent)
}

// checkWeights requires finite, non-negative weights with a positive sum.
func checkWeights(name string, ws ...float64) error {
	sum := 0.0
	for _, w := range ws {
		if !(w >= 0) || math.IsInf(w, 0) {
			return fmt.Errorf("%s weight %v: %w", name, w, ErrInvalidConfig)
		}
		sum += w
	}
	if !(sum > 0) || math.IsInf(sum, 0) {
		return fmt.Errorf("%s weights sum to %v: %w", name, sum, ErrInvalidConfig)
	}
	return nil
}
