package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Report file names in the output folder.
const (
	ReportJSON     = "report.json"
	ReportMarkdown = "report.md"
)

// WriteReport writes report.json, report.md and the PNG plots into dir
// (created if missing) and returns the paths written.
func WriteReport(dir string, res *Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReport, err)
	}
	var paths []string
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: json: %w", ErrReport, err)
	}
	jp := filepath.Join(dir, ReportJSON)
	if err := os.WriteFile(jp, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReport, err)
	}
	paths = append(paths, jp)
	plots, err := writePlots(dir, res)
	for _, p := range plots {
		paths = append(paths, filepath.Join(dir, p))
	}
	if err != nil {
		return paths, err
	}
	mp := filepath.Join(dir, ReportMarkdown)
	f, err := os.Create(mp)
	if err != nil {
		return paths, fmt.Errorf("%w: %w", ErrReport, err)
	}
	werr := WriteMarkdown(f, res, plots)
	if cerr := f.Close(); werr == nil && cerr != nil {
		werr = fmt.Errorf("%w: %w", ErrReport, cerr)
	}
	return append(paths, mp), werr
}

// WriteMarkdown renders the human report; plots are the PNG files (in the
// same folder) to embed.
func WriteMarkdown(w io.Writer, res *Result, plots []string) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	row := func(cells ...any) {
		b.WriteString("|")
		for _, c := range cells {
			fmt.Fprintf(&b, " %v |", c)
		}
		b.WriteString("\n")
	}
	pr := res.Params
	p("# Legiond load test: %s\n\n", res.Scenario)
	p("Started %s on `%s` (%s/%s, %d CPUs, %s), seed %d.\n\n", res.Started.Format("2006-01-02 15:04:05Z"), res.Env.Host,
		res.Env.OS, res.Env.Arch, res.Env.CPUs, res.Env.GoVersion, res.Seed)
	if res.Command != "" {
		p("```\n%s\n```\n\n", res.Command)
	}

	p("## Shape\n\n")
	row("sensors", "gateways", "buildings", "max copies per uplink", "report interval", "samples per uplink", "pacing")
	row("---", "---", "---", "---", "---", "---", "---")
	pacing := "as fast as possible"
	switch {
	case res.Scenario == GatewayBacklog:
		pacing = fmt.Sprintf("%s of backlog at once", dur(pr.BacklogS))
	case res.Scenario == Ramp:
		pacing = "rate steps"
	case pr.RateTarget > 0:
		pacing = fmt.Sprintf("%s records/s for %s", num(pr.RateTarget), dur(pr.DurationS))
	case pr.Speed > 0:
		pacing = fmt.Sprintf("%g× simulated time for %s", pr.Speed, dur(pr.DurationS))
	}
	if pr.WarmupS > 0 {
		pacing += fmt.Sprintf(", after a %s warm-up (not in the latency figures)", dur(pr.WarmupS))
	}
	row(num(float64(pr.Sensors)), pr.Gateways, pr.Sites, pr.CopiesPerUplinkMax, dur(pr.ReportIntervalS), pr.SamplesPerUplink, pacing)
	p("\nSimulated time %s → %s. Provisioning: ", res.Production.SimFrom, res.Production.SimTo)
	if res.Provision.Done {
		p("%d buildings registered in %.1f s.\n\n", res.Provision.Sites, res.Provision.Seconds)
	} else {
		p("none (devices existed).\n\n")
	}

	p("## Goals\n\n")
	row("goal", "status", "measured")
	row("---", "---", "---")
	for _, g := range res.Goals {
		row(g.Goal, "**"+g.Status+"**", g.Measured)
	}

	p("\n## Results\n\n")
	row("measure", "value")
	row("---", "---")
	pd := res.Production
	row("records produced (lorawan.uplink)", fmt.Sprintf("%s in %.1f s = %s/s (%d failed)", num(float64(pd.Records)), pd.Seconds, num(pd.RecordsPerS), pd.Failed))
	row("frames produced (distinct DevEUI, FCnt)", fmt.Sprintf("%s = %s/s, %.2f records each", num(float64(pd.Frames)), num(pd.FramesPerS), pd.CopiesPerFrame))
	a := res.Applied
	if res.Env.Nodes > 0 {
		row("records handled by the node(s)", fmt.Sprintf("%s = %s/s (peak 5 s %s/s)", num(a.RecordsHandled), num(a.RecordsPerS), num(a.PeakRecordsPerS)))
	}
	if pr.EventsTap {
		row("frames with events on twin.events", fmt.Sprintf("%s = %s/s (%s events read, %d from outside the run, %d tick events)",
			num(float64(a.FramesSeen)), num(a.FramesPerS), num(float64(a.Events)), a.UnknownEvents, a.TickEvents))
	}
	l := res.Loss
	if l.Checked {
		row("lost frames", fmt.Sprintf("**%d** of %s event-bearing frames (FPort 1, 3)", l.Lost, num(float64(l.Expected))))
	} else {
		row("lost frames", "not checked (no events tap)")
	}
	if l.APIChecked {
		row("lost on the API stream (probed buildings)", fmt.Sprintf("%d of %s", l.APILost, num(float64(l.APIExpected))))
	}
	row("dead-lettered records", l.DeadLettered)
	d := res.Drain
	row("drained", fmt.Sprintf("%v: %.2f s after production ended, %.2f s after the first record", d.Drained, d.Seconds, d.TotalSeconds))
	row("consumer lag (records)", fmt.Sprintf("max %s, final %s (%s)", num(res.Lag.Max), num(res.Lag.Final), res.Lag.Source))
	rs := res.Resources
	row("node CPU", fmt.Sprintf("%.2f cores average, %.2f max (%s)", rs.NodeCPUCoresAvg, rs.NodeCPUCoresMax, rs.Source))
	row("node resident memory", fmt.Sprintf("%.0f MiB max", rs.NodeRSSMaxMiB))
	row("harness CPU / memory", fmt.Sprintf("%.2f cores average, %.0f MiB max", rs.HarnessCPUAvg, rs.HarnessRSSMaxMiB))

	p("\n## Latency (frame produced → first event of the frame received)\n\n")
	row("path", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms")
	row("---", "---", "---", "---", "---", "---", "---")
	lrow := func(name string, l *Latency) {
		if l == nil {
			return
		}
		ms := func(v float64) string { return fmt.Sprintf("%.1f", v) }
		row(name, num(float64(l.Count)), ms(l.P50Ms), ms(l.P90Ms), ms(l.P99Ms), ms(l.P999Ms), ms(l.MaxMs))
	}
	lrow("twin.events (Kafka)", &res.Latency.Kafka)
	lrow("API StreamEvents (TLS 1.3, Connect)", res.Latency.API)
	lrow("alarms, twin.events", &res.Latency.AlarmKafka)
	lrow("alarms, API StreamAlarms", res.Latency.AlarmAPI)
	p("\nAlarms raised: %d (%d caused by frames of the run", res.Alarms.Raised, res.Alarms.FromFrames)
	if res.Alarms.APIConnected {
		p("; %d seen on StreamAlarms", res.Alarms.APIRaised)
	}
	p(").")
	if len(res.Alarms.ByType) > 0 {
		p(" By type: %s.", kv(res.Alarms.ByType))
	}
	p("\n\n")
	if len(res.Errors) > 0 {
		p("**Errors by kind:** %s.\n\n", kv(res.Errors))
	} else {
		p("**Errors:** none.\n\n")
	}

	if s := res.Storm; s != nil {
		p("## Storm\n\nStarted %.1f s into the run (simulated %s): %d sensors, %d flush reports injected (%d skipped, not yet booted), %d frames rewritten, peak production %s records/s.\n\n",
			s.AtS, s.SimulatedAt, s.Sensors, s.Injected, s.SkippedNotBoot, s.Rewritten, num(s.PeakRecordsPerS))
	}
	if rp := res.Ramp; rp != nil {
		p("## Ramp\n\n")
		row("step", "target/s", "produced/s", "applied/s", "p99 ms", "lag start", "lag end", "sustainable", "why not")
		row("---", "---", "---", "---", "---", "---", "---", "---", "---")
		for i, s := range rp.Steps {
			row(i+1, num(s.TargetPerS), num(s.ProducedPerS), num(s.AppliedPerS), s.P99Ms, num(s.LagStart), num(s.LagEnd), s.Sustainable, s.Reason)
		}
		p("\n**Saturation: %s records/s** (last sustainable step); peak applied %s records/s. Stopped: %s.\n\n",
			num(rp.SaturationPerS), num(rp.PeakAppliedPerS), rp.StopReason)
	}

	sz := res.Sizing
	p("## Sizing\n\n")
	if sz.Basis == "none" {
		p("No capacity figure in this run (run `ramp` or `gateway-backlog`).\n\n")
	} else {
		lower := ""
		if sz.LowerBound {
			lower = " — a lower bound, not a measured saturation"
		}
		p("Capacity per node: **%s records/s**, from the %s%s. Planned at %.0f %% headroom, %.2f records per uplink.\n\n",
			num(sz.CapacityPerS), sz.Basis, lower, sz.Headroom*100, sz.CopiesPerFrame)
		row("report interval", "sensors per node", "nodes for 250,000 sensors")
		row("---", "---", "---")
		for _, r := range sz.Rows {
			row(dur(r.IntervalS), num(float64(r.SensorsPerNode)), r.NodesFor250k)
		}
		p("\n250,000 Clip'R sensors every 15 minutes: **%d node(s)**", sz.TargetNodes)
		if sz.BacklogDrainS > 0 && !sz.LowerBound {
			p("; a 6-hour backlog of one node's share drains in about %s s at capacity while live traffic continues", num(sz.BacklogDrainS))
		}
		if sz.LowerBound {
			p(" at most (capacity is a lower bound)")
		}
		p(".\n\n")
	}
	p("Assumptions:\n\n")
	for _, s := range res.Assumptions {
		p("* %s\n", s)
	}

	c := res.Comparison
	p("\n## ThingsBoard-comparable figures\n\n")
	row("run", "devices", "rate", "cores", "per core")
	row("---", "---", "---", "---", "---")
	for _, r := range c.Published {
		row(r.Name+" (published)", num(float64(r.Devices)), num(r.PerS)+" "+r.Unit, fmt.Sprintf("%d vCPU", r.VCPU), num(r.PerCore)+" "+r.Unit)
	}
	row("Legiond, this run (per box core)", num(float64(pr.Sensors)), num(c.RecordsPerS)+" msg/s ("+num(c.DataPointsPerS)+" data points/s)",
		fmt.Sprintf("%d (box)", c.BoxCores), num(c.RecordsPerBoxCore)+" msg/s")
	if c.RecordsPerUsedCPU > 0 {
		row("Legiond, this run (per core used by the node)", num(float64(pr.Sensors)), num(c.RecordsPerS)+" msg/s",
			fmt.Sprintf("%.2f used", c.NodeCores), num(c.RecordsPerUsedCPU)+" msg/s")
	}
	p("\nShape: %s. A Legiond message is one LoRaWAN uplink record, one gateway's copy of a transmission (encrypted, MIC-checked, de-duplicated across gateways); data points count once per transmission, %.3g per record on average; "+
		"our figures include fsynced state and acks=all publishing, and share the box with Kafka, PostgreSQL and the harness.\n\n", c.Shape, c.DataPointsPerRec)

	if len(plots) > 0 {
		p("## Plots\n\n")
		for _, f := range plots {
			p("![%s](%s)\n\n", strings.TrimSuffix(f, ".png"), f)
		}
	}
	if len(res.Notes) > 0 {
		p("## Notes\n\n")
		for _, n := range res.Notes {
			p("* %s\n", n)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("%w: %w", ErrReport, err)
	}
	return nil
}

// num prints a number with thousands separators (one decimal below 100).
func num(v float64) string {
	if v != v {
		return "n/a"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var s string
	if v < 100 && v != float64(int64(v)) {
		s = fmt.Sprintf("%.1f", v)
	} else {
		digits := fmt.Sprintf("%.0f", v)
		var out []byte
		for i := range digits {
			if i > 0 && (len(digits)-i)%3 == 0 {
				out = append(out, ',')
			}
			out = append(out, digits[i])
		}
		s = string(out)
	}
	if neg {
		return "-" + s
	}
	return s
}

// dur prints seconds as 15 min, 6 h, 30 s.
func dur(s float64) string {
	switch {
	case s >= 3600 && int64(s)%3600 == 0:
		return fmt.Sprintf("%d h", int64(s)/3600)
	case s >= 60 && int64(s)%60 == 0:
		return fmt.Sprintf("%d min", int64(s)/60)
	default:
		return fmt.Sprintf("%g s", s)
	}
}

// kv prints a map sorted by key.
func kv(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
