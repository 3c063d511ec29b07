package loadtest

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	"github.com/legionelladossier/legiond/loadtest/fleet"
)

// pacerTick is how often the pacer releases frames. Pacing against the
// wall clock is the point of a load generator; no test waits on it.
const pacerTick = 5 * time.Millisecond

// runner is one run in progress. The pacer (Run's goroutine) owns the
// fleet and the effects; the sampler goroutine owns the timeline until it
// stops; counters shared between them are atomics.
type runner struct {
	cfg   Config
	log   func(msg string, args ...any)
	start time.Time // the run's start (before provisioning)
	t0    time.Time // the timeline's origin: just before production
	seed  int64

	fl      *fleet.Fleet
	infos   []fleet.SensorInfo
	devEUIs []lorawan.EUI64
	plan    *Plan
	prov    Provisioned
	fx      *effects
	led     *ledger
	errs    *errorCounts
	prod    *producer
	admin   *kafkaAdmin
	scr     *scraper

	kafkaLat, apiLat, alarmKafka, alarmAPI *Histogram
	counts                                 *alarmCounts
	api                                    *apiStreams
	probe                                  func(sensor int) bool // sensors on the API event streams

	uplinkPartitions int
	simStart         time.Time
	simCursor        atomic.Int64 // unix ns of the last uplink released

	phaseMu sync.Mutex
	phase   string
	target  float64

	// Sampler state.
	smu       sync.Mutex
	timeline  []Point
	base      []nodeSample // first scrape (counters at the start)
	lastNodes []nodeSample
	procs     map[int]*procTrack
	lastLag   atomic.Int64 // -1 unknown
	lagSource string
	maxLag    float64

	storm *StormResult
	notes []string
	// measureFrom is the end of the warm-up (unix ns): latencies count
	// for frames produced from then on.
	measureFrom atomic.Int64
}

// procTrack follows one process's CPU and memory.
type procTrack struct {
	role      string
	first     procSample
	last      procSample
	cpuMax    float64
	rssMax    int64
	vanished  bool
	harnessIs bool
}

// Run executes one load test against a running deployment and returns its
// measurements. ctx bounds the whole run; cancelling it stops production
// and returns what was measured so far with the context error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	r := &runner{cfg: cfg, errs: newErrorCounts(), procs: map[int]*procTrack{}}
	r.log = func(msg string, args ...any) { cfg.Logger.Info(msg, args...) }
	r.lastLag.Store(-1)
	return r.run(ctx)
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	r.start = cfg.Now()
	r.seed = cfg.Seed
	if r.seed == 0 {
		r.seed = r.start.UnixNano() & (1<<62 - 1)
	}
	// Simulated time: a backlog is the last hours; live scenarios start now.
	r.simStart = r.start.UTC().Truncate(time.Second)
	if cfg.Scenario == GatewayBacklog {
		r.simStart = r.start.UTC().Add(-cfg.Backlog).Truncate(time.Minute)
	}
	r.simCursor.Store(r.simStart.UnixNano())
	var err error
	r.fl, err = fleet.New(cfg.fleetConfig(r.seed, r.simStart))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	r.infos = r.fl.Sensors()
	r.devEUIs = make([]lorawan.EUI64, len(r.infos))
	for i := range r.infos {
		r.devEUIs[i] = r.infos[i].DevEUI
	}
	r.led = newLedger(r.devEUIs)
	r.fx = newEffects(r.infos, r.led.index)
	r.plan = &Plan{Name: fmt.Sprintf("loadtest %s %d", cfg.Scenario, r.seed), Sensors: r.infos, Gateways: r.fl.Gateways(),
		SensorsPerSite: cfg.SensorsPerSite, ReportInterval: cfg.ReportInterval}
	res := &Result{Scenario: cfg.Scenario, Started: r.start.UTC(), Seed: r.seed, Errors: map[string]int64{}}

	// Provision.
	if cfg.Provisioner != nil {
		t0 := cfg.Now()
		r.log("provisioning the fleet", "sensors", len(r.infos), "sites", r.plan.Sites())
		r.prov, err = cfg.Provisioner.Provision(ctx, r.plan)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProvision, err)
		}
		res.Provision = ProvisionResult{Done: true, Seconds: round3(cfg.Now().Sub(t0).Seconds()), Sites: len(r.prov.SiteIDs)}
		// The nodes' registry caches follow the registry asynchronously
		// (LISTEN/NOTIFY); a frame that overtakes them is dead-lettered
		// as unknown_devaddr.
		settle := time.NewTimer(cfg.ProvisionSettle)
		select {
		case <-ctx.Done():
			settle.Stop()
			return nil, ctx.Err()
		case <-settle.C:
		}
	} else {
		res.Provision = ProvisionResult{Existing: true}
	}

	// Kafka positions before anything is produced.
	r.admin = newKafkaAdmin(cfg)
	if r.uplinkPartitions, err = r.admin.partitions(ctx, cfg.Kafka.UplinkTopic); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrProduce, cfg.Kafka.UplinkTopic, err)
	}
	var eventStarts []int64
	if !cfg.NoEventsTap {
		n, err := r.admin.partitions(ctx, cfg.Kafka.EventsTopic)
		if err == nil {
			eventStarts, err = r.admin.endOffsets(ctx, cfg.Kafka.EventsTopic, n)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrObserve, cfg.Kafka.EventsTopic, err)
		}
	}
	dlqStart, dlqParts := r.dlqTotal(ctx, -1)

	// Observers.
	obsCtx, stopObs := context.WithCancel(ctx)
	defer stopObs()
	r.kafkaLat, r.apiLat, r.alarmKafka, r.alarmAPI = NewHistogram(), NewHistogram(), NewHistogram(), NewHistogram()
	r.counts = newAlarmCounts()
	var tp *tap
	if !cfg.NoEventsTap {
		tp = startTap(obsCtx, cfg, eventStarts,
			&observer{src: srcKafka, led: r.led, now: cfg.Now, from: &r.measureFrom, latency: r.kafkaLat, alarms: r.alarmKafka, counts: r.counts}, r.errs)
	}
	if cfg.API != nil {
		var sites []string
		if cfg.API.ProbeSites > 0 && len(r.prov.SiteIDs) > 0 {
			n := min(cfg.API.ProbeSites, len(r.prov.SiteIDs))
			sites = r.prov.SiteIDs[:n]
			r.probe = func(i int) bool { return r.plan.Site(i) < n }
		} else {
			r.probe = func(int) bool { return true }
		}
		r.api = startAPI(obsCtx, cfg.API, sites,
			&observer{src: srcAPI, led: r.led, now: cfg.Now, from: &r.measureFrom, latency: r.apiLat, counts: r.counts},
			&observer{src: srcAPIAlarms, led: r.led, now: cfg.Now, from: &r.measureFrom, alarms: r.alarmAPI, counts: r.counts},
			r.errs, r.log)
		want := int64(max(1, len(sites)))
		if !cfg.API.NoAlarms {
			want++
		}
		r.waitFor(ctx, 15*time.Second, func() bool { return r.api.connected.Load() >= want })
		if r.api.connected.Load() < want {
			r.note("only %d of %d API streams connected before the run", r.api.connected.Load(), want)
		}
	}

	// Baselines, then the sampler.
	r.scr = newScraper(cfg.MetricsURLs)
	for attempt := 0; attempt < 5; attempt++ {
		if r.base, err = r.scr.scrape(ctx, cfg.Now, r.base); err == nil {
			break
		}
	}
	if err != nil {
		r.note("metrics endpoint unreadable at the start: %v", err)
	}
	r.lastNodes = r.base
	self := os.Getpid()
	for _, pid := range cfg.PIDs {
		r.procs[pid] = &procTrack{role: "node", harnessIs: pid == self}
	}
	if _, ok := r.procs[self]; !ok {
		r.procs[self] = &procTrack{role: "harness"}
	} else {
		res.Env.NodeInHarness = true
	}
	for pid, p := range r.procs {
		p.first, _ = readProc("/proc", pid, cfg.Now())
		p.last = p.first
	}
	r.prod = newProducer(cfg, r.led, r.errs, r.uplinkPartitions)
	prodCtx, stopProd := context.WithCancel(ctx)
	defer stopProd()
	r.prod.start(prodCtx, cfg.Writers)
	r.t0 = cfg.Now()
	samplerCtx, stopSampler := context.WithCancel(context.Background())
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		r.sampler(samplerCtx)
	}()

	// Production.
	prodStart := cfg.Now()
	var runErr error
	switch cfg.Scenario {
	case Steady, MorningFlushStorm, AlarmStorm:
		runErr = r.produceLive(ctx)
	case GatewayBacklog:
		runErr = r.produceBacklog(ctx)
	case Ramp:
		res.Ramp, runErr = r.produceRamp(ctx)
	}
	if err := r.prod.close(); err != nil && runErr == nil {
		runErr = err
	}
	prodEnd := cfg.Now()
	r.setPhase("drain", 0)
	if err := r.fl.Err(); err != nil && runErr == nil {
		runErr = fmt.Errorf("%w: %w", ErrFleet, err)
	}

	// Drain: every delivered event-bearing frame seen on twin.events (or,
	// without the tap, every record handled by the nodes).
	drain := Drain{}
	if runErr == nil {
		drain = r.drain(ctx, prodStart, prodEnd)
	}
	// Give the API streams a moment to deliver what the tap has seen.
	if r.api != nil && runErr == nil {
		want := r.led.expectedFor(r.probe)
		r.waitFor(ctx, 10*time.Second, func() bool { return r.led.seenExpected[srcAPI].Load() >= want })
	}
	stopSampler()
	<-samplerDone
	stopObs()
	if tp != nil {
		tp.close()
	}
	if r.api != nil {
		r.api.wait()
	}
	final, _ := r.scr.scrape(context.Background(), cfg.Now, r.lastNodes)
	dlqEnd, _ := r.dlqTotal(context.Background(), dlqParts)

	r.assemble(res, prodStart, prodEnd, drain, final, dlqEnd-dlqStart)
	if runErr != nil {
		return res, runErr
	}
	return res, ctx.Err()
}

// dlqTotal sums the end offsets of the dead-letter topic (partitions < 0:
// look them up). Unknown: 0.
func (r *runner) dlqTotal(ctx context.Context, partitions int) (int64, int) {
	if partitions < 0 {
		n, err := r.admin.partitions(ctx, r.cfg.Kafka.DLQTopic)
		if err != nil {
			return 0, 0
		}
		partitions = n
	}
	ends, err := r.admin.endOffsets(ctx, r.cfg.Kafka.DLQTopic, partitions)
	if err != nil {
		return 0, partitions
	}
	var t int64
	for _, e := range ends {
		t += e
	}
	return t, partitions
}

// startMeasuring ends the warm-up: latencies count from now on.
func (r *runner) startMeasuring() {
	r.measureFrom.Store(r.cfg.Now().UnixNano())
	r.kafkaLat.TakeWindow()
}

func (r *runner) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.notes = append(r.notes, msg)
	r.log(msg)
}

func (r *runner) setPhase(p string, target float64) {
	r.phaseMu.Lock()
	r.phase, r.target = p, target
	r.phaseMu.Unlock()
}

// waitFor polls cond every 20 ms until it holds, d passes or ctx ends.
func (r *runner) waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// batcher collects records and hands full batches to the producer.
type batcher struct {
	r     *runner
	ctx   context.Context
	batch []record
	err   error
	n     int64 // records emitted
}

func (b *batcher) emit(rec record) {
	b.batch = append(b.batch, rec)
	b.n++
	if len(b.batch) >= b.r.cfg.BatchSize {
		b.flush()
	}
}

func (b *batcher) flush() {
	if len(b.batch) == 0 || b.err != nil {
		b.batch = b.batch[:0]
		return
	}
	if err := b.r.prod.send(b.ctx, b.batch); err != nil {
		b.err = err
	}
	b.batch = make([]record, 0, b.r.cfg.BatchSize)
}

func (b *batcher) take(u fleet.Uplink) {
	b.r.simCursor.Store(u.ReceivedAt.UnixNano())
	b.r.fx.apply(u, b.emit)
}

// produceLive runs steady traffic (and the storms) for Duration: paced by
// simulated time at Speed, or at Rate records/s.
func (r *runner) produceLive(ctx context.Context) error {
	cfg := r.cfg
	b := &batcher{r: r, ctx: ctx, batch: make([]record, 0, cfg.BatchSize)}
	stormDone := cfg.Scenario == Steady
	warm := cfg.Warmup > 0
	if warm {
		r.setPhase("warm-up", cfg.Rate)
	} else {
		r.startMeasuring()
	}
	onTick := func(elapsed time.Duration, simNow time.Time) error {
		if warm && elapsed >= cfg.Warmup {
			warm = false
			r.startMeasuring()
			r.setPhase(string(cfg.Scenario), cfg.Rate)
		}
		// Not before every sensor booted (within the first report
		// interval): a sensor that has not transmitted has no session.
		if stormDone || warm || elapsed < cfg.Warmup+cfg.StormAt || simNow.Before(r.simStart.Add(cfg.ReportInterval)) {
			return nil
		}
		stormDone = true
		r.storm = &StormResult{AtS: round3(r.cfg.Now().Sub(r.t0).Seconds()), SimulatedAt: simNow.Format(time.RFC3339)}
		var n int
		var err error
		switch cfg.Scenario {
		case MorningFlushStorm:
			n, err = r.fx.flushStorm(simNow, cfg.StormWindow, cfg.StormShare, uint64(r.seed))
			r.setPhase("flush-storm", cfg.Rate)
		case AlarmStorm:
			n, err = r.fx.hotLineFailure(simNow, cfg.AlarmStormPipeC, func(i int) bool { return r.plan.Site(i) < cfg.AlarmStormSites })
			r.setPhase("alarm-storm", cfg.Rate)
		}
		r.storm.Sensors = n
		r.log("storm", "scenario", cfg.Scenario, "sensors", n, "simulated_at", simNow)
		return err
	}
	var err error
	if cfg.Rate > 0 {
		err = r.paceRate(ctx, b, cfg.Warmup+cfg.Duration, func(time.Duration) float64 { return cfg.Rate }, onTick)
	} else {
		err = r.paceSim(ctx, b, cfg.Warmup+cfg.Duration, cfg.Speed, onTick)
	}
	b.flush()
	if !stormDone {
		r.note("the storm did not start: simulated time never passed the first report interval (every sensor booted); raise --duration or --speed")
	}
	return cmpOr(err, b.err)
}

// paceSim releases the fleet's uplinks as simulated time advances at speed
// for d of wall time.
func (r *runner) paceSim(ctx context.Context, b *batcher, d time.Duration, speed float64, onTick func(time.Duration, time.Time) error) error {
	now := r.cfg.Now
	wall0 := now()
	sim0 := time.Unix(0, r.simCursor.Load()).UTC()
	tick := time.NewTicker(pacerTick)
	defer tick.Stop()
	for {
		elapsed := now().Sub(wall0)
		last := elapsed >= d
		if last {
			elapsed = d
		}
		simNow := sim0.Add(time.Duration(float64(elapsed) * speed))
		if onTick != nil {
			if err := onTick(elapsed, simNow); err != nil {
				return err
			}
		}
		r.fl.Step(simNow, b.take)
		r.fx.due(simNow, b.emit)
		r.simCursor.Store(simNow.UnixNano())
		b.flush()
		if b.err != nil || last {
			return b.err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// paceRate releases uplinks at rate(elapsed) records/s for d.
func (r *runner) paceRate(ctx context.Context, b *batcher, d time.Duration, rate func(time.Duration) float64, onTick func(time.Duration, time.Time) error) error {
	now := r.cfg.Now
	wall0 := now()
	prev := time.Duration(0)
	due, n0 := 0.0, b.n
	tick := time.NewTicker(pacerTick)
	defer tick.Stop()
	for {
		elapsed := now().Sub(wall0)
		last := elapsed >= d
		if last {
			elapsed = d
		}
		due += rate(elapsed) * (elapsed - prev).Seconds()
		prev = elapsed
		if onTick != nil {
			if err := onTick(elapsed, time.Unix(0, r.simCursor.Load()).UTC()); err != nil {
				return err
			}
		}
		for float64(b.n-n0) < due {
			u, ok := r.fl.Next()
			if !ok {
				return r.fl.Err()
			}
			b.take(u)
		}
		b.flush()
		if b.err != nil || last {
			return b.err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// produceBacklog generates Backlog of simulated time at once, then writes
// it as fast as Kafka takes it, as a gateway flushing its buffer would.
func (r *runner) produceBacklog(ctx context.Context) error {
	cfg := r.cfg
	r.setPhase("generate", 0)
	var all []record
	end := r.simStart.Add(cfg.Backlog)
	r.fl.Step(end, func(u fleet.Uplink) { r.fx.apply(u, func(rec record) { all = append(all, rec) }) })
	r.simCursor.Store(end.UnixNano())
	if err := r.fl.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrFleet, err)
	}
	r.log("backlog generated", "records", len(all), "simulated", cfg.Backlog)
	r.startMeasuring()
	r.setPhase("backlog", 0)
	for i := 0; i < len(all); i += cfg.BatchSize {
		j := min(i+cfg.BatchSize, len(all))
		if err := r.prod.send(ctx, all[i:j:j]); err != nil {
			return err
		}
	}
	return nil
}

// produceRamp steps the rate up until a step is not sustainable.
func (r *runner) produceRamp(ctx context.Context) (*RampResult, error) {
	cfg := r.cfg
	out := &RampResult{}
	b := &batcher{r: r, ctx: ctx, batch: make([]record, 0, cfg.BatchSize)}
	if cfg.Warmup > 0 {
		r.setPhase("warm-up", cfg.RampStart)
		err := r.paceRate(ctx, b, cfg.Warmup, func(time.Duration) float64 { return cfg.RampStart }, nil)
		b.flush()
		if err = cmpOr(err, b.err); err != nil {
			return out, err
		}
	}
	r.startMeasuring()
	wall0 := cfg.Now()
	rate := cfg.RampStart
	for k := 0; ; k++ {
		if cfg.Now().Sub(wall0)+cfg.RampStep > cfg.Duration {
			out.StopReason = fmt.Sprintf("reached the longest ramp (%v) without breaking a limit", cfg.Duration)
			break
		}
		r.setPhase(fmt.Sprintf("ramp %d", k+1), rate)
		t0 := cfg.Now().Sub(r.t0).Seconds()
		r.kafkaLat.TakeWindow()
		lag0 := float64(r.lastLag.Load())
		n0, w0 := r.prod.records.Load(), cfg.Now()
		err := r.paceRate(ctx, b, cfg.RampStep, func(time.Duration) float64 { return rate }, nil)
		b.flush()
		if err = cmpOr(err, b.err); err != nil {
			return out, err
		}
		// Acknowledged by Kafka, not merely queued: the broker may be
		// the first to fall behind.
		produced := float64(r.prod.records.Load()-n0) / cfg.Now().Sub(w0).Seconds()
		// Judge on the points taken so far: pausing production for the
		// sampler would let the lag drain between steps.
		t1 := cfg.Now().Sub(r.t0).Seconds()
		step := r.evalStep(rate, produced, t0, t1, lag0, r.kafkaLat.TakeWindow())
		out.Steps = append(out.Steps, step)
		r.log("ramp step", "target", rate, "produced", step.ProducedPerS, "applied", step.AppliedPerS,
			"p99_ms", step.P99Ms, "lag", step.LagEnd, "sustainable", step.Sustainable, "reason", step.Reason)
		if !step.Sustainable {
			out.StopReason = step.Reason
			break
		}
		out.SaturationPerS = step.AppliedPerS
		rate *= cfg.RampFactor
	}
	for _, s := range out.Steps {
		out.PeakAppliedPerS = max(out.PeakAppliedPerS, s.AppliedPerS)
	}
	return out, nil
}

// evalStep judges a ramp step from the timeline points in (t0, t1].
func (r *runner) evalStep(target, produced, t0, t1, lag0 float64, lat Latency) RampStep {
	r.smu.Lock()
	var pts []Point
	for _, p := range r.timeline {
		if p.T > t0 && p.T <= t1+0.01 {
			pts = append(pts, p)
		}
	}
	r.smu.Unlock()
	return judgeStep(target, produced, pts, lag0, lat, r.cfg.RampMaxP99, len(r.cfg.MetricsURLs) > 0, r.copiesPerFrame())
}

// judgeStep is the ramp's rule, pure for tests. produced is the step's
// record rate, pts its timeline points. The step is sustainable when the
// harness produced ≥ 90 % of the target, the nodes applied ≥ 90 % of what
// was produced over the step's second half, the lag did not grow by more
// than half a second of traffic over that half (and stays under one
// second of traffic), and p99 stayed within the limit.
func judgeStep(target, produced float64, pts []Point, lag0 float64, lat Latency, maxP99 time.Duration, haveMetrics bool, copies float64) RampStep {
	s := RampStep{TargetPerS: round1(target), ProducedPerS: round1(produced), P99Ms: lat.P99Ms, LagStart: lag0, Sustainable: true}
	if len(pts) < 2 {
		s.Sustainable, s.Reason = false, "too few samples in the step"
		return s
	}
	half := pts[len(pts)/2:]
	var applied, prodHalf float64
	for _, p := range half {
		if haveMetrics {
			applied += p.HandledPerS
		} else {
			applied += p.FramesSeenPerS * copies
		}
		prodHalf += p.ProducedPerS
	}
	applied /= float64(len(half))
	prodHalf /= float64(len(half))
	s.AppliedPerS = round1(applied)
	lagMid := pts[len(pts)/2-1].Lag
	s.LagEnd = pts[len(pts)-1].Lag
	switch {
	case s.ProducedPerS < 0.9*target:
		s.Sustainable, s.Reason = false, fmt.Sprintf("harness-bound: produced %.0f of %.0f records/s", s.ProducedPerS, target)
	case lat.Count > 0 && lat.P99Ms > float64(maxP99.Milliseconds()):
		s.Sustainable, s.Reason = false, fmt.Sprintf("p99 %.1f ms above %v", lat.P99Ms, maxP99)
	case s.LagEnd >= 0 && s.LagEnd-math.Max(lagMid, 0) > 0.5*target && s.LagEnd > target:
		s.Sustainable, s.Reason = false, fmt.Sprintf("lag grew from %.0f to %.0f records", lagMid, s.LagEnd)
	case applied < 0.9*prodHalf:
		s.Sustainable, s.Reason = false, fmt.Sprintf("applied %.0f of %.0f records/s", applied, prodHalf)
	}
	return s
}

// copiesPerFrame is the mean number of records per transmission so far.
func (r *runner) copiesPerFrame() float64 {
	f := r.led.transmissions.Load()
	if f == 0 {
		return 1
	}
	return float64(r.prod.records.Load()+r.prod.failed.Load()) / float64(f)
}

// drain waits until every delivered event-bearing frame was seen on
// twin.events (or the nodes handled every record), at most DrainTimeout.
func (r *runner) drain(ctx context.Context, prodStart, prodEnd time.Time) Drain {
	cfg := r.cfg
	var done func() bool
	if !cfg.NoEventsTap {
		done = func() bool { return r.led.seenExpected[srcKafka].Load() >= r.led.expectedDelivered.Load() }
	} else {
		produced := float64(r.prod.records.Load())
		done = func() bool {
			nodes, err := r.scr.scrape(ctx, cfg.Now, r.lastNodesSnapshot())
			return err == nil && sumValue(nodes, mHandled)-sumValue(r.base, mHandled) >= produced
		}
	}
	ok := r.waitFor(ctx, cfg.DrainTimeout, done)
	at := cfg.Now()
	if !cfg.NoEventsTap {
		if last := r.led.lastSeenExpected[srcKafka].Load(); last > 0 && ok {
			at = time.Unix(0, last)
		}
	}
	firstAt := prodStart
	if f := r.prod.firstAt.Load(); f > 0 {
		firstAt = time.Unix(0, f)
	}
	return Drain{Drained: ok, Seconds: round3(math.Max(0, at.Sub(prodEnd).Seconds())), TotalSeconds: round3(at.Sub(firstAt).Seconds())}
}

func sumValue(nodes []nodeSample, name string) float64 {
	var v float64
	for _, n := range nodes {
		v += n.values[name]
	}
	return v
}

// env describes the machine.
func env(cfg Config) Env {
	h, _ := os.Hostname()
	return Env{Host: h, OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Nodes: len(cfg.MetricsURLs), HarnessPID: os.Getpid()}
}
