package loadtest

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/legionelladossier/legiond/loadtest/fleet"
)

// Scenario names a load shape (see Scenarios).
type Scenario string

// The named scenarios.
const (
	// Steady: the fleet reports at its interval, time-accelerated by Speed
	// (or paced at exactly Rate records/s), for Duration.
	Steady Scenario = "steady"
	// MorningFlushStorm: steady traffic, then at StormAt most tap points
	// are flushed within StormWindow of simulated time (Monday morning:
	// the caretaker's round), each flush reported by an extra FPort 2
	// uplink on top of the regular measurements.
	MorningFlushStorm Scenario = "morning-flush-storm"
	// GatewayBacklog: a gateway comes back with Backlog of buffered
	// frames of every sensor, produced at once as fast as possible; the
	// run measures the drain time and checks that nothing was lost.
	GatewayBacklog Scenario = "gateway-backlog"
	// AlarmStorm: steady traffic, then at StormAt the hot water of
	// AlarmStormSites buildings fails: every hot line there reads at most
	// AlarmStormPipeC, so outlets and returns raise HOT_WATER_TOO_COLD and
	// hot-tap flushes fail. Measures alarm latency.
	AlarmStorm Scenario = "alarm-storm"
	// Ramp: the production rate starts at RampStart records/s and grows by
	// RampFactor every RampStep until the consumer lag grows steadily, the
	// p99 latency exceeds RampMaxP99 or the producer cannot keep up; the
	// last sustainable rate is the saturation point.
	Ramp Scenario = "ramp"
)

// Scenarios returns every scenario name, in a stable order.
func Scenarios() []Scenario {
	return []Scenario{Steady, MorningFlushStorm, GatewayBacklog, AlarmStorm, Ramp}
}

// ParseScenario checks a scenario name.
func ParseScenario(s string) (Scenario, error) {
	if slices.Contains(Scenarios(), Scenario(s)) {
		return Scenario(s), nil
	}
	return "", fmt.Errorf("%w: %q (one of %v)", ErrUnknownScenario, s, Scenarios())
}

// Defaults of Config.
const (
	DefaultSensors         = 10_000
	DefaultSensorsPerSite  = 250
	DefaultReportInterval  = 15 * time.Minute
	DefaultDuration        = 30 * time.Second
	DefaultWarmup          = 10 * time.Second
	DefaultSpeed           = 60.0
	DefaultBacklog         = 6 * time.Hour
	DefaultStormWindow     = 10 * time.Minute
	DefaultStormShare      = 0.8
	DefaultAlarmStormPipeC = 38.0
	DefaultRampStart       = 2_000.0
	DefaultRampFactor      = 1.5
	DefaultRampStep        = 15 * time.Second
	DefaultRampMaxP99      = time.Second
	DefaultRampMaxDuration = 5 * time.Minute
	DefaultDrainTimeout    = 2 * time.Minute
	DefaultSampleEvery     = time.Second
	DefaultHeadroom        = 0.5
	DefaultWriters         = 4
	DefaultProvisionSettle = 3 * time.Second
	DefaultBatchSize       = 1000
	DefaultKafkaGroup      = "legiond"
	DefaultUplinkTopic     = "lorawan.uplink"
	DefaultEventsTopic     = "twin.events"
	DefaultDLQTopic        = "lorawan.uplink.dlq"
)

// KafkaConfig says how the harness reaches Kafka. Transport and Dialer
// carry TLS and SASL when the cluster needs them (nil: plaintext).
type KafkaConfig struct {
	Brokers   []string
	Transport *kafka.Transport
	Dialer    *kafka.Dialer
	// Group is the nodes' consumer group, for the lag computed from
	// committed offsets. Default "legiond".
	Group string
	// Topics. Defaults lorawan.uplink, twin.events, lorawan.uplink.dlq.
	UplinkTopic, EventsTopic, DLQTopic string
}

// APIConfig reaches the Connect API for the end-to-end latency streams.
type APIConfig struct {
	// BaseURL, e.g. https://127.0.0.1:8443. Required.
	BaseURL string
	// HTTPClient carries the TLS settings (the deployment's CA). Required.
	HTTPClient *http.Client
	// Token is a bearer token whose scope covers the fleet (a platform
	// administrator's). Required.
	Token string
	// ProbeSites limits TelemetryService.StreamEvents to the first
	// ProbeSites buildings of the fleet (each a stream of its own), the
	// way a portal follows a few sites; the events tap still checks every
	// frame. Negative streams the token's whole scope on one stream (every
	// event of the fleet crosses the API: a heavy extra load at high
	// rates), as does a fleet the harness did not provision. Default 1.
	ProbeSites int
	// NoAlarms skips AlarmService.StreamAlarms.
	NoAlarms bool
}

// Config parameterises one load-test run. Zero fields take the documented
// defaults (some depend on the scenario); Validate reports what is wrong.
type Config struct {
	Scenario Scenario

	// Fleet shape.
	Sensors  int // default 10,000
	Gateways int // default max(3, Sensors/250), at most fleet.MaxGateways
	// CopiesPerUplink caps the gateways that hear one uplink (each copy is
	// one lorawan.uplink record). Default: the fleet's (up to 3); 1 for
	// gateway-backlog, whose backlog is one gateway's.
	CopiesPerUplink int
	ReportInterval  time.Duration // default 15 min
	// SensorsPerSite groups sensors into buildings (sites). Default 250.
	SensorsPerSite int
	// Seed of the fleet. 0: derived from the start time, so that every run
	// has devices (and frame counters) of its own.
	Seed int64

	// Production.
	// Duration is the wall-clock production time after the warm-up
	// (steady, storms; the longest a ramp may run). Default 30 s; ramp: 5 min.
	Duration time.Duration
	// Warmup is production before the measured phase, at the scenario's
	// pace: every sensor's first frame activates a new twin (registry
	// lookup, state creation), which a running deployment has done long
	// ago. Frames produced during it count for loss but not for latency.
	// Default 10 s (0 for gateway-backlog, whose drain includes the
	// activations); negative disables it.
	Warmup time.Duration
	// Speed is the time acceleration (simulated seconds per wall second).
	// Default 60. Ignored when Rate is set, and by gateway-backlog.
	Speed float64
	// Rate paces production at exactly this many records/s instead of by
	// Speed (the simulated clock then runs as fast as needed). 0: Speed.
	Rate float64
	// Backlog is the simulated time a reconnecting gateway had buffered
	// (gateway-backlog). Default 6 h.
	Backlog time.Duration
	// StormAt is when a storm starts, as wall time into the run, but not
	// before simulated time passed the first report interval (every
	// sensor booted). Default Duration/3.
	StormAt time.Duration
	// StormWindow is the simulated time over which the flush storm's taps
	// are flushed. Default 10 min.
	StormWindow time.Duration
	// StormShare is the share of tap points flushed in the storm. Default 0.8.
	StormShare float64
	// AlarmStormSites is how many buildings lose their hot water. Default 1.
	AlarmStormSites int
	// AlarmStormPipeC caps the hot lines' pipe temperature. Default 38 °C.
	AlarmStormPipeC float64

	// Ramp.
	RampStart  float64       // records/s of the first step; default 2,000
	RampFactor float64       // growth per step; default 1.5
	RampStep   time.Duration // default 15 s
	RampMaxP99 time.Duration // latency limit; default 1 s

	// Measurement.
	DrainTimeout time.Duration // after production; default 2 min
	SampleEvery  time.Duration // timeline resolution; default 1 s
	Headroom     float64       // sizing: share of saturation to plan with; default 0.5
	// NoEventsTap skips reading twin.events: no loss check and no Kafka
	// latency, only metrics (for clusters the harness may not read).
	NoEventsTap bool

	// Writers is the number of concurrent Kafka writers. Default 4.
	Writers int
	// BatchSize is the records per write. Default 1000.
	BatchSize int

	Kafka KafkaConfig
	// API is optional: without it latency is measured on twin.events only.
	API *APIConfig
	// MetricsURLs are the nodes' Prometheus endpoints (…/metrics).
	MetricsURLs []string
	// PIDs are node processes on this machine to sample CPU and RSS of.
	PIDs []int
	// Provisioner registers the fleet before the run. Nil: the devices
	// must exist already.
	Provisioner Provisioner
	// ProvisionSettle is the pause between provisioning and the first
	// frame, for the nodes' registry caches to catch up. Default 3 s.
	ProvisionSettle time.Duration

	// Progress receives the live progress line (nil: none). ProgressTTY
	// rewrites one line in place instead of printing one per sample.
	Progress    io.Writer
	ProgressTTY bool
	Logger      *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Scenario == "" {
		c.Scenario = Steady
	}
	if c.Sensors == 0 {
		c.Sensors = DefaultSensors
	}
	if c.Gateways == 0 {
		c.Gateways = min(max(3, c.Sensors/250), fleet.MaxGateways)
	}
	if c.CopiesPerUplink == 0 && c.Scenario == GatewayBacklog {
		c.CopiesPerUplink = 1
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = DefaultReportInterval
	}
	if c.SensorsPerSite == 0 {
		c.SensorsPerSite = DefaultSensorsPerSite
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
		if c.Scenario == Ramp {
			c.Duration = DefaultRampMaxDuration
		}
	}
	if c.Warmup == 0 && c.Scenario != GatewayBacklog {
		c.Warmup = DefaultWarmup
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Speed == 0 {
		c.Speed = DefaultSpeed
	}
	if c.Backlog == 0 {
		c.Backlog = DefaultBacklog
	}
	if c.StormAt == 0 {
		c.StormAt = c.Duration / 3
	}
	if c.StormWindow == 0 {
		c.StormWindow = DefaultStormWindow
	}
	if c.StormShare == 0 {
		c.StormShare = DefaultStormShare
	}
	if c.AlarmStormSites == 0 {
		c.AlarmStormSites = 1
	}
	if c.AlarmStormPipeC == 0 {
		c.AlarmStormPipeC = DefaultAlarmStormPipeC
	}
	if c.RampStart == 0 {
		c.RampStart = DefaultRampStart
	}
	if c.RampFactor == 0 {
		c.RampFactor = DefaultRampFactor
	}
	if c.RampStep == 0 {
		c.RampStep = DefaultRampStep
	}
	if c.RampMaxP99 == 0 {
		c.RampMaxP99 = DefaultRampMaxP99
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.SampleEvery == 0 {
		c.SampleEvery = DefaultSampleEvery
	}
	if c.Headroom == 0 {
		c.Headroom = DefaultHeadroom
	}
	if c.ProvisionSettle == 0 {
		c.ProvisionSettle = DefaultProvisionSettle
	}
	if c.Writers == 0 {
		c.Writers = DefaultWriters
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	k := &c.Kafka
	if k.Group == "" {
		k.Group = DefaultKafkaGroup
	}
	if k.UplinkTopic == "" {
		k.UplinkTopic = DefaultUplinkTopic
	}
	if k.EventsTopic == "" {
		k.EventsTopic = DefaultEventsTopic
	}
	if k.DLQTopic == "" {
		k.DLQTopic = DefaultDLQTopic
	}
	if c.API != nil && c.API.ProbeSites == 0 {
		a := *c.API
		a.ProbeSites = 1
		c.API = &a
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first problem with c (after defaults), wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if _, err := ParseScenario(string(c.Scenario)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch {
	case c.Sensors < 1 || c.Sensors > fleet.MaxSensors:
		return bad("sensors %d not in 1..%d", c.Sensors, fleet.MaxSensors)
	case c.Gateways < 1 || c.Gateways > fleet.MaxGateways:
		return bad("gateways %d not in 1..%d", c.Gateways, fleet.MaxGateways)
	case c.CopiesPerUplink < 0 || c.CopiesPerUplink > c.Gateways:
		return bad("copies per uplink %d not in 0..%d (gateways)", c.CopiesPerUplink, c.Gateways)
	case c.ReportInterval < time.Minute || c.ReportInterval > 12*time.Hour || c.ReportInterval%time.Second != 0:
		return bad("report interval %v not whole seconds in 1m..12h", c.ReportInterval)
	case c.SensorsPerSite < 1:
		return bad("sensors per site %d < 1", c.SensorsPerSite)
	case c.Duration < time.Second:
		return bad("duration %v < 1s", c.Duration)
	case !finite(c.Speed) || c.Speed <= 0 || c.Speed > 1e7:
		return bad("speed %v not in (0, 1e7]", c.Speed)
	case !finite(c.Rate) || c.Rate < 0 || c.Rate > 1e7:
		return bad("rate %v not in [0, 1e7]", c.Rate)
	case c.Scenario == GatewayBacklog && (c.Backlog < c.ReportInterval || c.Backlog > 7*24*time.Hour):
		return bad("backlog %v not in report interval..168h", c.Backlog)
	case c.StormAt < 0 || c.StormAt >= c.Duration:
		return bad("storm start %v not within the duration %v", c.StormAt, c.Duration)
	case c.StormWindow < time.Minute:
		return bad("storm window %v < 1m", c.StormWindow)
	case !finite(c.StormShare) || c.StormShare <= 0 || c.StormShare > 1:
		return bad("storm share %v not in (0, 1]", c.StormShare)
	case c.AlarmStormSites < 1:
		return bad("alarm storm sites %d < 1", c.AlarmStormSites)
	case !finite(c.AlarmStormPipeC) || c.AlarmStormPipeC < -20 || c.AlarmStormPipeC > 50:
		return bad("alarm storm pipe temperature %v not in -20..50 °C", c.AlarmStormPipeC)
	case !finite(c.RampStart) || c.RampStart < 1:
		return bad("ramp start %v < 1 record/s", c.RampStart)
	case !finite(c.RampFactor) || c.RampFactor <= 1 || c.RampFactor > 10:
		return bad("ramp factor %v not in (1, 10]", c.RampFactor)
	case c.RampStep < 2*c.SampleEvery:
		return bad("ramp step %v shorter than two samples (%v)", c.RampStep, 2*c.SampleEvery)
	case c.RampMaxP99 <= 0:
		return bad("ramp p99 limit %v <= 0", c.RampMaxP99)
	case c.DrainTimeout < time.Second:
		return bad("drain timeout %v < 1s", c.DrainTimeout)
	case c.SampleEvery < 10*time.Millisecond:
		return bad("sample interval %v < 10ms", c.SampleEvery)
	case !finite(c.Headroom) || c.Headroom <= 0 || c.Headroom > 1:
		return bad("headroom %v not in (0, 1]", c.Headroom)
	case c.Writers < 1 || c.Writers > 64:
		return bad("writers %d not in 1..64", c.Writers)
	case c.BatchSize < 1 || c.BatchSize > 100_000:
		return bad("batch size %d not in 1..100000", c.BatchSize)
	case len(c.Kafka.Brokers) == 0:
		return bad("no Kafka brokers")
	case c.NoEventsTap && c.API == nil && len(c.MetricsURLs) == 0:
		return bad("nothing to measure: no events tap, no API and no metrics endpoint")
	}
	if a := c.API; a != nil {
		switch {
		case a.BaseURL == "":
			return bad("API base URL is required")
		case a.HTTPClient == nil:
			return bad("API HTTP client is required")
		case a.Token == "":
			return bad("API token is required")
		}
	}
	for _, p := range c.PIDs {
		if p < 1 {
			return bad("pid %d", p)
		}
	}
	return nil
}

// fleetConfig is the simulator configuration of a run. start is the
// simulated start.
func (c Config) fleetConfig(seed int64, start time.Time) fleet.Config {
	fc := fleet.Config{
		Sensors: c.Sensors, Gateways: c.Gateways, Seed: seed, Start: start,
		ReportInterval: c.ReportInterval, MaxGatewaysPerUplink: c.CopiesPerUplink,
		// Frame counters start at 1: events with f_cnt 0 are deadline
		// ticks, never frames.
		InitialFCnt: firstFCnt,
	}
	// The sample spacing must divide the report interval into 1..11
	// whole-second samples: the Clip'R default of 3 min where it fits,
	// else as many samples as fit.
	fc.SampleInterval = fleet.DefaultSampleInterval
	if c.ReportInterval%fc.SampleInterval != 0 || c.ReportInterval/fc.SampleInterval > 11 {
		fc.SampleInterval = c.ReportInterval
		for n := time.Duration(11); n >= 1; n-- {
			if iv := c.ReportInterval / n; iv*n == c.ReportInterval && iv%time.Second == 0 {
				fc.SampleInterval = iv
				break
			}
		}
	}
	return fc
}
