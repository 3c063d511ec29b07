package loadtest

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestSensorsPerNode(t *testing.T) {
	tests := []struct {
		name     string
		capacity float64
		headroom float64
		interval time.Duration
		copies   float64
		want     int64
	}{
		{"issue example", 50_000, 0.5, 15 * time.Minute, 1, 22_500_000},
		{"two copies halve it", 50_000, 0.5, 15 * time.Minute, 2, 11_250_000},
		{"copies below one count as one", 1_000, 1, time.Minute, 0.5, 60_000},
		{"no capacity", 0, 0.5, 15 * time.Minute, 1, 0},
		{"5 min", 10_000, 0.5, 5 * time.Minute, 2.5, 600_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SensorsPerNode(tt.capacity, tt.headroom, tt.interval, tt.copies); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNodesFor(t *testing.T) {
	tests := []struct {
		sensors int
		perNode int64
		want    int
	}{{250_000, 100_000, 3}, {250_000, 250_000, 1}, {1, 1_000_000, 1}, {250_000, 0, 0}}
	for _, tt := range tests {
		if got := NodesFor(tt.sensors, tt.perNode); got != tt.want {
			t.Errorf("NodesFor(%d, %d) = %d, want %d", tt.sensors, tt.perNode, got, tt.want)
		}
	}
}

func TestBacklogDrainSeconds(t *testing.T) {
	// 10,000 sensors at 15 min: live 11.1 records/s; 6 h = 24 reports each.
	got := BacklogDrainSeconds(10_000, 10_000, 15*time.Minute, 6*time.Hour, 1)
	want := 240_000 / (10_000 - 10_000.0/900)
	if math.Abs(got-want) > 1e-6 {
		t.Fatalf("got %v, want %v", got, want)
	}
	if !math.IsInf(BacklogDrainSeconds(10, 10_000, 15*time.Minute, 6*time.Hour, 1), 1) {
		t.Fatal("a node without spare capacity never drains")
	}
}

func TestNewSizingAndComparison(t *testing.T) {
	s := newSizing("ramp saturation", 40_000, false, 0.5, 2)
	if s.TargetNodes != 1 || len(s.Rows) != 5 || s.Rows[2].SensorsPerNode != 9_000_000 {
		t.Fatalf("sizing %+v", s)
	}
	if none := newSizing("x", 0, false, 0.5, 2); none.Basis != "none" || len(none.Rows) != 0 {
		t.Fatalf("no capacity: %+v", none)
	}
	tests := []struct {
		sensors int
		rate    float64
		shape   string
	}{
		{5_000, 5_050, "ThingsBoard 5,000 devices at 5,000 msg/s"},
		{100_000, 3_000, "ThingsBoard 100,000 devices at 30,000 data points/s"},
		{5_000, 9_000, "other (per-core figures still comparable)"},
	}
	for _, tt := range tests {
		c := newComparison(tt.sensors, tt.rate, 1.25, 2, 10)
		if c.Shape != tt.shape {
			t.Errorf("%d at %v: shape %q, want %q", tt.sensors, tt.rate, c.Shape, tt.shape)
		}
		if c.RecordsPerBoxCore != round1(tt.rate/2) || c.RecordsPerUsedCPU != round1(tt.rate/1.25) {
			t.Errorf("per core %+v", c)
		}
	}
}

func TestJudgeStep(t *testing.T) {
	pts := func(prod, handled float64, lags ...float64) []Point {
		var out []Point
		for _, l := range lags {
			out = append(out, Point{ProducedPerS: prod, HandledPerS: handled, Lag: l})
		}
		return out
	}
	ok := Latency{Count: 100, P99Ms: 20}
	tests := []struct {
		name     string
		target   float64
		produced float64
		pts      []Point
		lat      Latency
		want     bool
		reason   string
	}{
		{"keeps up", 10_000, 10_000, pts(10_000, 10_000, 50, 80, 40, 60), ok, true, ""},
		{"harness-bound", 10_000, 8_000, pts(8_000, 8_000, 0, 0, 0, 0), ok, false, "harness-bound"},
		{"p99 over the limit", 10_000, 10_000, pts(10_000, 10_000, 0, 0, 0, 0), Latency{Count: 10, P99Ms: 1500}, false, "p99"},
		{"lag grows", 10_000, 10_000, pts(10_000, 9_500, 1_000, 5_000, 12_000, 20_000), ok, false, "lag grew"},
		{"applied falls short", 10_000, 10_000, pts(10_000, 7_000, 0, 0, 0, 0), ok, false, "applied"},
		{"too few samples", 10_000, 10_000, pts(10_000, 10_000, 0), ok, false, "too few"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := judgeStep(tt.target, tt.produced, tt.pts, 0, tt.lat, time.Second, true, 1)
			if s.Sustainable != tt.want || (tt.reason != "" && !strings.Contains(s.Reason, tt.reason)) {
				t.Fatalf("got %+v, want sustainable=%v reason~%q", s, tt.want, tt.reason)
			}
		})
	}
}
