package loadtest

import (
	"math"
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	h := NewHistogram()
	// 1..1000 ms, one each.
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	s := h.Summary()
	tests := []struct {
		name      string
		got, want float64
	}{
		{"p50", s.P50Ms, 500},
		{"p90", s.P90Ms, 900},
		{"p99", s.P99Ms, 990},
		{"p99.9", s.P999Ms, 999},
		{"max", s.MaxMs, 1000},
		{"mean", s.MeanMs, 500.5},
	}
	for _, tt := range tests {
		// HDR with 3 significant digits: within 0.1 %.
		if math.Abs(tt.got-tt.want) > tt.want*0.001+0.001 {
			t.Errorf("%s = %v, want %v ± 0.1 %%", tt.name, tt.got, tt.want)
		}
	}
	if s.Count != 1000 {
		t.Errorf("count %d", s.Count)
	}
}

func TestHistogramIntervalsAndClipping(t *testing.T) {
	h := NewHistogram()
	h.Record(5 * time.Millisecond)
	if iv := h.TakeInterval(); iv.Count != 1 || iv.MaxMs < 4.99 || iv.MaxMs > 5.01 {
		t.Fatalf("first interval %+v", iv)
	}
	if iv := h.TakeInterval(); iv.Count != 0 {
		t.Fatalf("empty interval %+v", iv)
	}
	h.Record(-time.Second) // clock skew between hosts: counted at the floor
	h.Record(2 * time.Hour)
	if h.Clipped() != 2 {
		t.Fatalf("clipped %d, want 2", h.Clipped())
	}
	if w := h.TakeWindow(); w.Count != 3 {
		t.Fatalf("window %+v, want the 3 values since creation", w)
	}
	if s := h.Summary(); s.Count != 3 || s.MaxMs < 3_599_000 {
		t.Fatalf("summary %+v", s)
	}
}
