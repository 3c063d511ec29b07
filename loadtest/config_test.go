package loadtest

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/loadtest/fleet"
)

func validConfig() Config {
	return Config{Kafka: KafkaConfig{Brokers: []string{"127.0.0.1:9092"}}}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"defaults", func(*Config) {}, true},
		{"every scenario", func(c *Config) { c.Scenario = AlarmStorm }, true},
		{"unknown scenario", func(c *Config) { c.Scenario = "tuesday" }, false},
		{"no brokers", func(c *Config) { c.Kafka.Brokers = nil }, false},
		{"negative sensors", func(c *Config) { c.Sensors = -1 }, false},
		{"too many copies", func(c *Config) { c.Gateways, c.CopiesPerUplink = 2, 3 }, false},
		{"interval too short", func(c *Config) { c.ReportInterval = time.Second }, false},
		{"interval not whole seconds", func(c *Config) { c.ReportInterval = 90*time.Second + time.Millisecond }, false},
		{"storm after the end", func(c *Config) { c.Duration, c.StormAt = 10*time.Second, 20*time.Second }, false},
		{"ramp factor 1", func(c *Config) { c.RampFactor = 1 }, false},
		{"headroom above 1", func(c *Config) { c.Headroom = 1.5 }, false},
		{"nothing to measure", func(c *Config) { c.NoEventsTap = true }, false},
		{"metrics only", func(c *Config) { c.NoEventsTap, c.MetricsURLs = true, []string{"http://x/metrics"} }, true},
		{"API without token", func(c *Config) { c.API = &APIConfig{BaseURL: "https://x", HTTPClient: http.DefaultClient} }, false},
		{"API", func(c *Config) { c.API = &APIConfig{BaseURL: "https://x", HTTPClient: http.DefaultClient, Token: "t"} }, true},
		{"bad pid", func(c *Config) { c.PIDs = []int{0} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestScenarioDefaults(t *testing.T) {
	c := validConfig()
	c.Scenario = GatewayBacklog
	if d := c.WithDefaults(); d.CopiesPerUplink != 1 || d.Backlog != 6*time.Hour {
		t.Fatalf("backlog defaults %+v", d)
	}
	c.Scenario = Ramp
	if d := c.WithDefaults(); d.Duration != DefaultRampMaxDuration {
		t.Fatalf("ramp duration %v", d.Duration)
	}
	if _, err := ParseScenario("ramp"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseScenario("nope"); !errors.Is(err, ErrUnknownScenario) {
		t.Fatalf("got %v", err)
	}
}

// TestFleetConfigIntervals: every accepted report interval yields a fleet
// the simulator accepts (1..11 whole-second samples).
func TestFleetConfigIntervals(t *testing.T) {
	for _, iv := range []time.Duration{time.Minute, 5 * time.Minute, 7 * time.Minute, 15 * time.Minute, 37 * time.Minute, time.Hour, 12 * time.Hour} {
		c := validConfig()
		c.ReportInterval, c.Sensors = iv, 3
		if err := c.Validate(); err != nil {
			t.Fatalf("%v: %v", iv, err)
		}
		fc := c.WithDefaults().fleetConfig(1, fleet.DefaultStart())
		if _, err := fleet.New(fc); err != nil {
			t.Errorf("interval %v: sample interval %v: %v", iv, fc.SampleInterval, err)
		}
	}
}
