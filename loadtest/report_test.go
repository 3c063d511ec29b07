package loadtest

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// syntheticResult is a ramp run's result with a plausible timeline.
func syntheticResult() *Result {
	res := &Result{Scenario: Ramp, Started: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), Seed: 42,
		Env:    Env{Host: "box", OS: "linux", Arch: "amd64", CPUs: 2, GoVersion: "go1.26", Nodes: 1},
		Params: Params{Sensors: 10_000, Gateways: 40, Sites: 40, ReportIntervalS: 900, SamplesPerUplink: 5, Headroom: 0.5, EventsTap: true},
		Errors: map[string]int64{"node_frames_rejected{replay}": 2},
	}
	for i := range 30 {
		target := 5_000 * float64(1+i/10)
		res.Timeline = append(res.Timeline, Point{T: float64(i + 1), Phase: "ramp", TargetPerS: target, ProducedPerS: target,
			HandledPerS: target * 0.99, FramesSeenPerS: target / 2.4, Lag: float64(i * 10), P50Ms: 3, P99Ms: 12 + float64(i),
			APIP99Ms: 15, NodeCPU: 1.2, NodeRSSMiB: 400, HarnessCPU: 0.3})
	}
	res.Latency.Kafka = Latency{Count: 100_000, P50Ms: 3, P90Ms: 8, P99Ms: 20, P999Ms: 40, MaxMs: 90}
	res.Ramp = &RampResult{Steps: []RampStep{{TargetPerS: 5_000, ProducedPerS: 5_000, AppliedPerS: 4_990, Sustainable: true},
		{TargetPerS: 7_500, ProducedPerS: 7_400, AppliedPerS: 5_100, Reason: "applied 5100 of 7400 records/s"}},
		SaturationPerS: 4_990, PeakAppliedPerS: 5_100, StopReason: "applied 5100 of 7400 records/s"}
	res.Sizing = newSizing("ramp saturation", 4_990, false, 0.5, 2.4)
	res.Assumptions = sizingAssumptions(res.Sizing, 5)
	res.Comparison = newComparison(10_000, 4_990, 1.2, 2, 10)
	res.Goals = goals(Config{Scenario: Ramp}, res)
	return res
}

func TestWriteReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	res := syntheticResult()
	paths, err := WriteReport(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ReportJSON, ReportMarkdown, PlotThroughput, PlotLag, PlotLatency, PlotResources} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v (written: %v)", f, err, paths)
		}
		if strings.HasSuffix(f, ".png") {
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s is not a PNG: %v", f, err)
			}
			if r := img.Bounds(); r.Dx() < 400 || r.Dy() < 200 {
				t.Fatalf("%s is %v", f, r)
			}
		}
	}
	var back Result
	b, _ := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err := json.Unmarshal(b, &back); err != nil || back.Ramp.SaturationPerS != 4_990 || len(back.Timeline) != 30 {
		t.Fatalf("json round trip: %v %+v", err, back.Ramp)
	}
	md, _ := os.ReadFile(filepath.Join(dir, ReportMarkdown))
	for _, want := range []string{"## Goals", "## Latency", "## Ramp", "## Sizing", "ThingsBoard", "![throughput](throughput.png)",
		"| 15 min | 935,625 | 1 |", "**missed**"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
}

func TestNumberFormats(t *testing.T) {
	tests := []struct{ in, want string }{
		{num(1234567), "1,234,567"}, {num(999), "999"}, {num(12.34), "12.3"}, {num(-5000), "-5,000"},
		{dur(900), "15 min"}, {dur(21600), "6 h"}, {dur(30), "30 s"},
	}
	for _, tt := range tests {
		if tt.in != tt.want {
			t.Errorf("got %q, want %q", tt.in, tt.want)
		}
	}
}
