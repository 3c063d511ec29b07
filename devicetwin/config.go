package devicetwin

import (
	"fmt"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// Defaults of SensorConfig and GatewayConfig; docs/rules.md explains them.
const (
	// DefaultExpectedInterval is the uplink interval assumed for
	// SENSOR_OFFLINE when neither the configuration nor the device's
	// measurements tell it.
	DefaultExpectedInterval = 15 * time.Minute
	// DefaultDuplicateWindow is how much later than the first copy another
	// copy of the same frame may be received and still count as a duplicate
	// (several gateways, Kafka redelivery) rather than a replay.
	DefaultDuplicateWindow = 30 * time.Second
	// DefaultSecurityThreshold rejected frames within DefaultSecurityWindow
	// raise SECURITY.
	DefaultSecurityThreshold = 3
	// DefaultSecurityWindow is the window of DefaultSecurityThreshold.
	DefaultSecurityWindow = time.Hour
	// DefaultResetMaxFCnt is the highest counter ResetOnReboot accepts as a
	// restart from zero.
	DefaultResetMaxFCnt = 16
	// DefaultResetMinInterval is the least time between two accepted
	// counter resets under ResetOnReboot.
	DefaultResetMinInterval = time.Hour
	// DefaultGatewayStatsInterval is a gateway's stats interval when not
	// configured (DESIGN §4: 5 min).
	DefaultGatewayStatsInterval = 5 * time.Minute
)

// SensorConfig is everything the registry tells a sensor twin. Zero values
// take the documented defaults, so the zero SensorConfig (apart from
// TapKind) is a sensible NL sensor.
type SensorConfig struct {
	// Revision orders configuration changes: a ConfigChange whose Revision
	// is not greater than the twin's is ignored (stale or applied twice).
	Revision uint64
	// Owner and placement, carried into events by the actor layer.
	TenantID, SiteID, TapPointID string

	TapKind TapKind
	Profile ProfileID
	// Site and Tap override the profile, Tap on top of Site.
	Site, Tap Overrides
	// ExpectedInterval is the uplink interval; 0 derives it from the
	// device's measurements (samples × sample interval), else
	// DefaultExpectedInterval.
	ExpectedInterval time.Duration

	// ResetPolicy decides about rewound frame counters (see
	// CounterResetPolicy); ResetMaxFCnt and ResetMinInterval tune
	// ResetOnReboot (0: defaults).
	ResetPolicy      CounterResetPolicy
	ResetMaxFCnt     uint32
	ResetMinInterval time.Duration
	// SecurityThreshold rejected frames within SecurityWindow raise
	// SECURITY (0: defaults).
	SecurityThreshold uint16
	SecurityWindow    time.Duration
	// DuplicateWindow: see DefaultDuplicateWindow (0: default).
	DuplicateWindow time.Duration
	// MaxFCntGap is the largest accepted counter jump (0: LoRaWAN's 16384).
	MaxFCntGap uint32
}

// Validate checks ranges and that the merged profile makes sense.
func (c *SensorConfig) Validate() error {
	bad := func(f string, v any) error { return fmt.Errorf("sensor config: %s = %v: %w", f, v, ErrInvalidConfig) }
	switch {
	case c.TapKind >= numTapKinds:
		return bad("TapKind", c.TapKind)
	case c.Profile >= numProfiles:
		return bad("Profile", c.Profile)
	case c.ExpectedInterval < 0:
		return bad("ExpectedInterval", c.ExpectedInterval)
	case c.ResetPolicy >= numResetPolicies:
		return bad("ResetPolicy", c.ResetPolicy)
	case c.ResetMinInterval < 0:
		return bad("ResetMinInterval", c.ResetMinInterval)
	case c.SecurityWindow < 0:
		return bad("SecurityWindow", c.SecurityWindow)
	case c.DuplicateWindow < 0:
		return bad("DuplicateWindow", c.DuplicateWindow)
	}
	p := c.profile()
	return p.Validate()
}

// profile merges the national defaults with the site and tap overrides.
func (c *SensorConfig) profile() Profile {
	return DefaultProfile(c.Profile).With(c.Site).With(c.Tap)
}

// settings are the resolved (defaulted) session and security parameters.
type settings struct {
	resetMaxFCnt      uint32
	resetMinInterval  ms
	securityThreshold uint16
	securityWindow    ms
	dupWindow         ms
	maxGap            uint32
}

func (c *SensorConfig) settings() settings {
	st := settings{
		resetMaxFCnt:      c.ResetMaxFCnt,
		resetMinInterval:  durMS(c.ResetMinInterval),
		securityThreshold: c.SecurityThreshold,
		securityWindow:    durMS(c.SecurityWindow),
		dupWindow:         durMS(c.DuplicateWindow),
		maxGap:            c.MaxFCntGap,
	}
	if st.resetMaxFCnt == 0 {
		st.resetMaxFCnt = DefaultResetMaxFCnt
	}
	if st.resetMinInterval == 0 {
		st.resetMinInterval = durMS(DefaultResetMinInterval)
	}
	if st.securityThreshold == 0 {
		st.securityThreshold = DefaultSecurityThreshold
	}
	if st.securityWindow == 0 {
		st.securityWindow = durMS(DefaultSecurityWindow)
	}
	if st.dupWindow == 0 {
		st.dupWindow = durMS(DefaultDuplicateWindow)
	}
	if st.maxGap == 0 {
		st.maxGap = lorawan.MaxFCntGap
	}
	return st
}

// GatewayConfig is what the registry tells a gateway twin.
type GatewayConfig struct {
	// Revision orders configuration changes like SensorConfig.Revision.
	Revision         uint64
	TenantID, SiteID string
	// StatsInterval is how often the gateway reports stats (0: 5 min).
	StatsInterval time.Duration
	// OfflineFactor × StatsInterval without stats or uplinks raises
	// GATEWAY_OFFLINE (0: 2).
	OfflineFactor float64
}

// Validate checks ranges.
func (c *GatewayConfig) Validate() error {
	switch {
	case c.StatsInterval < 0:
		return fmt.Errorf("gateway config: StatsInterval = %v: %w", c.StatsInterval, ErrInvalidConfig)
	case c.OfflineFactor != 0 && !(c.OfflineFactor >= 1 && c.OfflineFactor <= 100):
		return fmt.Errorf("gateway config: OfflineFactor = %v: %w", c.OfflineFactor, ErrInvalidConfig)
	}
	return nil
}

func (c *GatewayConfig) offlineAfter() ms {
	iv := c.StatsInterval
	if iv == 0 {
		iv = DefaultGatewayStatsInterval
	}
	f := c.OfflineFactor
	if f == 0 {
		f = 2
	}
	return ms(float64(durMS(iv)) * f)
}
