package loadtest

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// sampler takes one timeline point every SampleEvery until ctx ends, then
// one last point.
func (r *runner) sampler(ctx context.Context) {
	cfg := r.cfg
	tick := time.NewTicker(cfg.SampleEvery)
	defer tick.Stop()
	prev := sampleState{at: cfg.Now(), records: r.prod.records.Load(), seen: r.led.seen[srcKafka].Load()}
	for {
		select {
		case <-ctx.Done():
			r.takePoint(context.Background(), &prev)
			if cfg.Progress != nil && cfg.ProgressTTY {
				fmt.Fprintln(cfg.Progress)
			}
			return
		case <-tick.C:
			prev = r.takePoint(ctx, &prev)
		}
	}
}

type sampleState struct {
	at      time.Time
	records int64
	seen    int64
	nodes   []nodeSample
}

func (r *runner) takePoint(ctx context.Context, prev *sampleState) sampleState {
	cfg := r.cfg
	now := cfg.Now()
	dt := now.Sub(prev.at).Seconds()
	if dt <= 0 {
		return *prev
	}
	cur := sampleState{at: now, records: r.prod.records.Load(), seen: r.led.seen[srcKafka].Load()}
	r.phaseMu.Lock()
	p := Point{T: round3(now.Sub(r.t0).Seconds()), Phase: r.phase, TargetPerS: r.target}
	r.phaseMu.Unlock()
	p.ProducedPerS = round1(float64(cur.records-prev.records) / dt)
	p.FramesSeenPerS = round1(float64(cur.seen-prev.seen) / dt)
	iv := r.kafkaLat.TakeInterval()
	p.P50Ms, p.P99Ms = iv.P50Ms, iv.P99Ms
	if r.api != nil {
		p.APIP99Ms = r.apiLat.TakeInterval().P99Ms
	}
	p.SimulatedMinute = round1(time.Unix(0, r.simCursor.Load()).Sub(r.simStart).Minutes())

	// Nodes' metrics.
	lag := math.NaN()
	if len(r.scr.urls) > 0 {
		prevNodes := prev.nodes
		if prevNodes == nil {
			prevNodes = r.lastNodesSnapshot()
		}
		nodes, err := r.scr.scrape(ctx, cfg.Now, prevNodes)
		if err != nil {
			r.errs.add("scrape", 1)
		}
		cur.nodes = nodes
		p.HandledPerS = round1(math.Max(0, sumValue(nodes, mHandled)-sumValue(prevNodes, mHandled)) / dt)
		lag = sumValue(nodes, mLag)
		r.lagSource = "node metric " + mLag
		if len(cfg.PIDs) == 0 {
			p.NodeCPU = round3(math.Max(0, sumValue(nodes, mCPU)-sumValue(prevNodes, mCPU)) / dt)
			p.NodeRSSMiB = round1(sumValue(nodes, mRSS) / (1 << 20))
		}
		r.smu.Lock()
		r.lastNodes = nodes
		r.smu.Unlock()
	} else {
		l, err := r.admin.lag(ctx, cfg.Kafka.UplinkTopic, r.uplinkPartitions)
		if err != nil {
			r.errs.add("lag", 1)
		} else {
			lag = float64(l)
			r.lagSource = "committed offsets of group " + cfg.Kafka.Group
		}
	}
	if !math.IsNaN(lag) {
		p.Lag = lag
		r.lastLag.Store(int64(lag))
		r.maxLag = math.Max(r.maxLag, lag)
	} else {
		p.Lag = -1
	}

	// Processes.
	for pid, t := range r.procs {
		s, err := readProc("/proc", pid, now)
		if err != nil || !s.exists {
			if !t.vanished {
				t.vanished = true
				r.errs.add("proc", 1)
			}
			continue
		}
		cpu := math.Max(0, (s.cpu-t.last.cpu).Seconds()/s.at.Sub(t.last.at).Seconds())
		t.last = s
		t.cpuMax = math.Max(t.cpuMax, cpu)
		t.rssMax = max(t.rssMax, s.rssB)
		if t.role == "node" {
			p.NodeCPU += round3(cpu)
			p.NodeRSSMiB += round1(float64(s.rssB) / (1 << 20))
		}
		if t.role == "harness" || t.harnessIs {
			p.HarnessCPU = round3(cpu)
		}
	}
	p.Errors = r.errs.total() + nodeErrorTotal(r.base, cur.nodes)
	p.AlarmsRaised = r.counts.total(srcKafka)

	r.smu.Lock()
	r.timeline = append(r.timeline, p)
	r.smu.Unlock()
	r.progress(p)
	return cur
}

func (r *runner) lastNodesSnapshot() []nodeSample {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.lastNodes
}

// nodeErrorTotal sums the growth of the nodes' error counters.
func nodeErrorTotal(base, cur []nodeSample) int64 {
	var n float64
	for i := range cur {
		for k, v := range cur[i].errors {
			b := 0.0
			if i < len(base) {
				b = base[i].errors[k]
			}
			n += math.Max(0, v-b)
		}
	}
	return int64(n)
}

// progress prints the live line.
func (r *runner) progress(p Point) {
	w := r.cfg.Progress
	if w == nil {
		return
	}
	var b strings.Builder
	if r.cfg.ProgressTTY {
		b.WriteString("\r\x1b[K")
	}
	fmt.Fprintf(&b, "[%s] %5.0fs", p.Phase, p.T)
	if p.TargetPerS > 0 {
		fmt.Fprintf(&b, " target %s/s", human(p.TargetPerS))
	}
	fmt.Fprintf(&b, " produced %s/s", human(p.ProducedPerS))
	if len(r.cfg.MetricsURLs) > 0 {
		fmt.Fprintf(&b, " handled %s/s", human(p.HandledPerS))
	}
	if !r.cfg.NoEventsTap {
		fmt.Fprintf(&b, " frames %s/s (%s/%s)", human(p.FramesSeenPerS), human(float64(r.led.seenExpected[srcKafka].Load())),
			human(float64(r.led.expectedDelivered.Load())))
	}
	if p.Lag >= 0 {
		fmt.Fprintf(&b, " lag %s", human(p.Lag))
	}
	fmt.Fprintf(&b, " p50 %.1fms p99 %.1fms", p.P50Ms, p.P99Ms)
	if r.api != nil {
		fmt.Fprintf(&b, " api p99 %.1fms", p.APIP99Ms)
	}
	if p.NodeCPU > 0 {
		fmt.Fprintf(&b, " node %.2f cores %.0f MiB", p.NodeCPU, p.NodeRSSMiB)
	}
	fmt.Fprintf(&b, " alarms %d errors %d", p.AlarmsRaised, p.Errors)
	if !r.cfg.ProgressTTY {
		b.WriteByte('\n')
	}
	_, _ = fmt.Fprint(w, b.String())
}

// human prints 12345.6 as 12.3k.
func human(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
