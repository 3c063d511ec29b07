package loadtest

import (
	"math"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: 1 µs to 1 h at 3 significant digits (HDR), so that
// p99.9 and max are exact to 0.1 % however skewed the distribution.
const (
	histMin    = 1             // µs
	histMax    = 3_600_000_000 // µs (1 h)
	histDigits = 3
)

// Latency is a percentile summary in milliseconds, as reports print it.
type Latency struct {
	Count  int64   `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p99_9_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Histogram is a concurrency-safe HDR latency histogram with a second,
// interval histogram that the sampler swaps out every sample, so that the
// timeline shows percentiles per interval next to the run's totals.
type Histogram struct {
	mu       sync.Mutex
	total    *hdr.Histogram
	interval *hdr.Histogram
	spare    *hdr.Histogram
	window   *hdr.Histogram // since the last TakeWindow (ramp steps)
	// clipped counts values outside the range (recorded at the bound).
	clipped int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{
		total:    hdr.New(histMin, histMax, histDigits),
		interval: hdr.New(histMin, histMax, histDigits),
		spare:    hdr.New(histMin, histMax, histDigits),
		window:   hdr.New(histMin, histMax, histDigits),
	}
}

// Record adds one latency. Values below 1 µs count as 1 µs and above 1 h
// as 1 h (and as clipped).
func (h *Histogram) Record(d time.Duration) {
	us := d.Microseconds()
	clipped := false
	if us < histMin {
		us, clipped = histMin, d < 0
	} else if us > histMax {
		us, clipped = histMax, true
	}
	h.mu.Lock()
	_ = h.total.RecordValue(us)
	_ = h.interval.RecordValue(us)
	_ = h.window.RecordValue(us)
	if clipped {
		h.clipped++
	}
	h.mu.Unlock()
}

// Summary summarises every value recorded so far.
func (h *Histogram) Summary() Latency {
	h.mu.Lock()
	defer h.mu.Unlock()
	return summarize(h.total)
}

// Clipped returns how many values fell outside the range.
func (h *Histogram) Clipped() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clipped
}

// TakeWindow summarises the values recorded since the previous call and
// starts a new window.
func (h *Histogram) TakeWindow() Latency {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := summarize(h.window)
	h.window.Reset()
	return s
}

// TakeInterval summarises the values recorded since the previous call and
// starts a new interval. One goroutine (the sampler) calls it.
func (h *Histogram) TakeInterval() Latency {
	h.mu.Lock()
	iv := h.interval
	h.interval, h.spare = h.spare, iv
	h.mu.Unlock()
	s := summarize(iv)
	iv.Reset()
	return s
}

func summarize(h *hdr.Histogram) Latency {
	n := h.TotalCount()
	if n == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return round3(float64(us) / 1000) }
	return Latency{
		Count:  n,
		MeanMs: round3(h.Mean() / 1000),
		P50Ms:  ms(h.ValueAtQuantile(50)),
		P90Ms:  ms(h.ValueAtQuantile(90)),
		P99Ms:  ms(h.ValueAtQuantile(99)),
		P999Ms: ms(h.ValueAtQuantile(99.9)),
		MaxMs:  ms(h.Max()),
	}
}

// round3 rounds to three decimals (µs resolution in ms), keeping JSON short.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
