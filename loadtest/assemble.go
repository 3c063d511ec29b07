package loadtest

import (
	"fmt"
	"math"
	"sort"
	"time"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// assemble fills res from everything the run measured.
func (r *runner) assemble(res *Result, prodStart, prodEnd time.Time, drain Drain, final []nodeSample, dlq int64) {
	cfg := r.cfg
	fc := r.fl.Config()
	res.Env = mergeEnv(env(cfg), res.Env)
	res.Params = Params{
		Sensors: cfg.Sensors, Gateways: cfg.Gateways, Sites: r.plan.Sites(), CopiesPerUplinkMax: fc.MaxGatewaysPerUplink,
		ReportIntervalS: cfg.ReportInterval.Seconds(), SamplesPerUplink: int(fc.ReportInterval / fc.SampleInterval),
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), Headroom: cfg.Headroom, API: cfg.API != nil, EventsTap: !cfg.NoEventsTap,
	}
	switch {
	case cfg.Scenario == GatewayBacklog:
		res.Params.BacklogS = cfg.Backlog.Seconds()
		res.Params.DurationS = 0
	case cfg.Scenario == Ramp:
	case cfg.Rate > 0:
		res.Params.RateTarget = cfg.Rate
	default:
		res.Params.Speed = cfg.Speed
	}
	if cfg.API != nil {
		res.Params.APIProbeSites = cfg.API.ProbeSites
		if len(r.prov.SiteIDs) == 0 {
			res.Params.APIProbeSites = 0
		}
	}

	// Production.
	records := r.prod.records.Load()
	frames := r.led.transmissions.Load()
	span := prodEnd.Sub(prodStart).Seconds()
	if f, l := r.prod.firstAt.Load(), r.prod.lastAckAt.Load(); f > 0 && l > f {
		span = time.Duration(l - f).Seconds()
	}
	copies := r.copiesPerFrame()
	simTo := time.Unix(0, r.simCursor.Load()).UTC()
	res.Production = Production{
		Records: records, Failed: r.prod.failed.Load(), Frames: frames, ExpectedFrames: r.led.expectedDelivered.Load(),
		Seconds: round3(span), RecordsPerS: round1(safeDiv(float64(records), span)), FramesPerS: round1(safeDiv(float64(frames), span)),
		CopiesPerFrame: round3(copies), SimulatedS: round1(simTo.Sub(r.simStart).Seconds()),
		SimFrom: r.simStart.Format(time.RFC3339), SimTo: simTo.Format(time.RFC3339),
	}

	// Applied.
	active := drain.TotalSeconds
	if active <= 0 {
		active = span
	}
	a := Applied{
		FramesSeen: r.led.seen[srcKafka].Load(), Events: r.led.eventsTotal[srcKafka].Load(),
		UnknownEvents: r.led.unknownEvents[srcKafka].Load(), TickEvents: r.led.tickEvents[srcKafka].Load(),
	}
	a.FramesPerS = round1(safeDiv(float64(a.FramesSeen), active))
	if len(cfg.MetricsURLs) > 0 {
		a.RecordsHandled = math.Max(0, sumValue(final, mHandled)-sumValue(r.base, mHandled))
		a.RecordsPerS = round1(safeDiv(a.RecordsHandled, active))
	} else {
		a.RecordsPerS = round1(a.FramesPerS * copies)
	}
	a.PeakRecordsPerS = round1(peakWindow(r.timeline, 5, len(cfg.MetricsURLs) > 0, copies))
	res.Applied = a

	// Loss.
	res.Loss = Loss{Checked: !cfg.NoEventsTap, DeadLettered: dlq}
	if !cfg.NoEventsTap {
		res.Loss.Expected = r.led.expectedDelivered.Load()
		res.Loss.Seen = r.led.seenExpected[srcKafka].Load()
		res.Loss.Lost, res.Loss.Examples = r.led.missing(srcKafka, r.devEUIs, nil, 20)
	}
	if r.api != nil && r.api.connected.Load() > 0 {
		res.Loss.APIChecked = true
		res.Loss.APIExpected = r.led.expectedFor(r.probe)
		res.Loss.APILost, _ = r.led.missing(srcAPI, r.devEUIs, r.probe, 0)
	}
	res.Drain = drain

	// Latency and alarms.
	res.Latency.Kafka = r.kafkaLat.Summary()
	res.Latency.AlarmKafka = r.alarmKafka.Summary()
	if r.api != nil {
		l, al := r.apiLat.Summary(), r.alarmAPI.Summary()
		res.Latency.API, res.Latency.AlarmAPI = &l, &al
	}
	r.counts.mu.Lock()
	res.Alarms = Alarms{FromFrames: r.counts.fromFrames[srcKafka], ByType: map[string]int64{}}
	for t, n := range r.counts.raised[srcKafka] {
		res.Alarms.Raised += n
		res.Alarms.ByType[twinv1.AlarmType(t).String()] += n
	}
	for _, n := range r.counts.raised[srcAPIAlarms] {
		res.Alarms.APIRaised += n
	}
	r.counts.mu.Unlock()
	res.Alarms.APIConnected = r.api != nil && r.api.connected.Load() > 0

	// Lag.
	res.Lag = LagResult{Source: r.lagSource, Max: r.maxLag, Final: float64(r.lastLag.Load())}

	// Resources.
	res.Resources = r.resources(res)

	// Errors.
	for k, v := range r.errs.snapshot() {
		res.Errors[k] = v
	}
	for i := range final {
		for k, v := range final[i].errors {
			b := 0.0
			if i < len(r.base) {
				b = r.base[i].errors[k]
			}
			if d := int64(v - b); d > 0 {
				res.Errors["node_"+k] += d
			}
		}
	}
	if res.Loss.DeadLettered > 0 {
		res.Errors["dead_lettered_records"] = res.Loss.DeadLettered
	}

	// Storm.
	if r.storm != nil {
		r.storm.Injected, r.storm.SkippedNotBoot = r.fx.injected, r.fx.skipped
		r.storm.Rewritten, r.storm.RewriteFailures = r.fx.rewritten, r.fx.failures
		for _, p := range r.timeline {
			r.storm.PeakRecordsPerS = math.Max(r.storm.PeakRecordsPerS, p.ProducedPerS)
		}
		res.Storm = r.storm
	}
	if r.fx.failures > 0 {
		res.Errors["rewrite"] = r.fx.failures
	}

	// Sizing and comparison.
	basis, capacity, lower := "none", 0.0, false
	switch {
	case res.Ramp != nil && res.Ramp.SaturationPerS > 0:
		basis, capacity = "ramp saturation (last sustainable step)", res.Ramp.SaturationPerS
	case cfg.Scenario == GatewayBacklog && res.Drain.Drained && res.Drain.TotalSeconds > 0:
		basis, capacity = "backlog drain rate (the node drained as fast as it could)",
			safeDiv(float64(records), res.Drain.TotalSeconds)
	case a.PeakRecordsPerS > 0:
		basis, capacity, lower = "peak applied rate of this run (lower bound: not a saturation run)", a.PeakRecordsPerS, true
	}
	res.Sizing = newSizing(basis, capacity, lower, cfg.Headroom, copies)
	res.Assumptions = sizingAssumptions(res.Sizing, res.Params.SamplesPerUplink)
	cores := res.Resources.NodeCPUCoresAvg
	rate := a.RecordsPerS
	if res.Params.RateTarget > 0 && cfg.Scenario != Ramp {
		rate = math.Min(rate, res.Production.RecordsPerS)
	}
	if res.Ramp != nil && res.Ramp.SaturationPerS > 0 {
		rate = res.Ramp.SaturationPerS
	}
	// A record is one gateway's copy of a transmission: its data points
	// count once per transmission, not per copy.
	res.Comparison = newComparison(cfg.Sensors, rate, cores, res.Env.CPUs, float64(2*res.Params.SamplesPerUplink)/max(copies, 1))
	res.Goals = goals(cfg, res)
	r.smu.Lock()
	res.Timeline = append([]Point(nil), r.timeline...)
	r.smu.Unlock()
	res.Notes = append(res.Notes, r.notes...)
	if res.Env.NodeInHarness {
		res.Notes = append(res.Notes, "The node ran inside the harness's process: its CPU and memory include the harness's.")
	}
	if clipped := r.kafkaLat.Clipped() + r.apiLat.Clipped(); clipped > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d latencies were outside 1 µs..1 h and were clipped.", clipped))
	}
}

// resources summarises CPU and memory from /proc (given pids) or the
// nodes' process metrics.
func (r *runner) resources(res *Result) Resources {
	var out Resources
	var nodeCPUAvg float64
	pids := make([]int, 0, len(r.procs))
	for pid := range r.procs {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	for _, pid := range pids {
		t := r.procs[pid]
		avg := 0.0
		if d := t.last.at.Sub(t.first.at).Seconds(); d > 0 {
			avg = (t.last.cpu - t.first.cpu).Seconds() / d
		}
		pr := ProcResult{PID: pid, Role: t.role, CPUAvg: round3(avg), CPUMax: round3(t.cpuMax), RSSMaxMiB: round1(float64(t.rssMax) / (1 << 20))}
		res.Processes = append(res.Processes, pr)
		if t.role == "node" {
			nodeCPUAvg += avg
			out.NodeRSSMaxMiB += pr.RSSMaxMiB
			out.Source = "proc"
		}
		if t.role == "harness" || t.harnessIs {
			out.HarnessCPUAvg, out.HarnessRSSMaxMiB = pr.CPUAvg, pr.RSSMaxMiB
		}
	}
	if out.Source == "" && len(r.cfg.MetricsURLs) > 0 && len(r.timeline) > 0 {
		out.Source = "metrics"
		first, last := r.base, r.lastNodes
		d := r.timeline[len(r.timeline)-1].T
		nodeCPUAvg = safeDiv(sumValue(last, mCPU)-sumValue(first, mCPU), d)
		for _, p := range r.timeline {
			out.NodeRSSMaxMiB = math.Max(out.NodeRSSMaxMiB, p.NodeRSSMiB)
		}
	}
	if out.Source == "" {
		out.Source = "none"
	}
	out.NodeCPUCoresAvg = round3(nodeCPUAvg)
	for _, p := range r.timeline {
		out.NodeCPUCoresMax = math.Max(out.NodeCPUCoresMax, p.NodeCPU)
		if out.Source == "proc" {
			out.NodeRSSMaxMiB = math.Max(out.NodeRSSMaxMiB, p.NodeRSSMiB)
		}
	}
	return out
}

func mergeEnv(e, prev Env) Env {
	e.NodeInHarness = prev.NodeInHarness
	return e
}

func safeDiv(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// peakWindow is the best mean applied rate over n consecutive points.
func peakWindow(pts []Point, n int, metrics bool, copies float64) float64 {
	val := func(p Point) float64 {
		if metrics {
			return p.HandledPerS
		}
		return p.FramesSeenPerS * copies
	}
	best := 0.0
	if len(pts) < n {
		for _, p := range pts {
			best = math.Max(best, val(p))
		}
		return best
	}
	sum := 0.0
	for i, p := range pts {
		sum += val(p)
		if i >= n {
			sum -= val(pts[i-n])
		}
		if i >= n-1 {
			best = math.Max(best, sum/float64(n))
		}
	}
	return best
}

// goals checks the goals that this run's shape measures.
func goals(cfg Config, res *Result) []GoalCheck {
	const notMeasured = "not-measured"
	status := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	sat := GoalCheck{Goal: "saturation ≥ 50,000 frames/s on one node (2 cores)", Status: notMeasured, Measured: "run the ramp scenario"}
	switch {
	case res.Ramp != nil:
		sat.Measured = fmt.Sprintf("%.0f records/s sustained (peak %.0f applied); stop: %s", res.Ramp.SaturationPerS, res.Ramp.PeakAppliedPerS, res.Ramp.StopReason)
		sat.Status = status(res.Ramp.SaturationPerS >= 50_000)
	case cfg.Scenario == GatewayBacklog && res.Drain.Drained:
		sat.Measured = fmt.Sprintf("%.0f records/s while draining the backlog", res.Sizing.CapacityPerS)
		sat.Status = status(res.Sizing.CapacityPerS >= 50_000)
	}
	lat := GoalCheck{Goal: "p99 end-to-end ≤ 50 ms at 5,000 frames/s", Status: notMeasured,
		Measured: "run steady with --rate 5000"}
	if cfg.Scenario == Steady && math.Abs(res.Production.RecordsPerS-5_000) <= 500 {
		l, where := res.Latency.Kafka, "twin.events"
		if res.Latency.API != nil && res.Latency.API.Count > 0 {
			l, where = *res.Latency.API, "API stream"
		}
		lat.Measured = fmt.Sprintf("p99 %.1f ms on the %s at %.0f records/s (p50 %.1f, p99.9 %.1f, max %.1f ms)",
			l.P99Ms, where, res.Production.RecordsPerS, l.P50Ms, l.P999Ms, l.MaxMs)
		lat.Status = status(l.Count > 0 && l.P99Ms <= 50)
	}
	bl := GoalCheck{Goal: "6-hour backlog of 10,000 sensors drained within 60 s, no frame lost", Status: notMeasured,
		Measured: "run gateway-backlog with --sensors 10000"}
	if cfg.Scenario == GatewayBacklog && cfg.Sensors >= 10_000 && cfg.Backlog >= 6*time.Hour {
		bl.Measured = fmt.Sprintf("%d records (%d frames) drained in %.1f s from the first record, %d lost, %d dead-lettered",
			res.Production.Records, res.Production.Frames, res.Drain.TotalSeconds, res.Loss.Lost, res.Loss.DeadLettered)
		bl.Status = status(res.Drain.Drained && res.Drain.TotalSeconds <= 60 && res.Loss.Checked && res.Loss.Lost == 0)
	}
	return []GoalCheck{sat, lat, bl}
}
