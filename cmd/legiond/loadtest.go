package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/api/tlsconf"
	"github.com/legionelladossier/legiond/loadtest"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	"github.com/legionelladossier/legiond/storage/postgres"
)

const loadtestUsage = `usage: legiond loadtest --kafka-brokers HOST:PORT,... --scenario NAME [flags]

Drives a running deployment with the simulated Clip'R fleet (real encrypted
LoRaWAN uplinks on lorawan.uplink) and measures produced and applied
frames/s, consumer lag, end-to-end latency (frame produced → event on
twin.events and on the API stream), alarm latency, the nodes' CPU and
memory, and errors by kind. Writes report.json, report.md and PNG plots to
--out, with a sizing table and ThingsBoard-comparable per-core figures.

Scenarios: steady, morning-flush-storm, gateway-backlog, alarm-storm, ramp.

The fleet is provisioned first (new devices every run: the seed defaults to
the clock): straight into the registry with --database-url (or
--node-data-dir of a development node), else through the API's
AdminService with --api and a platform-admin --token.

Examples (a node started with 'legiond run --data-dir D'):
  legiond loadtest --kafka-brokers B --node-data-dir D --metrics 127.0.0.1:9464 --scenario steady --rate 5000 --sensors 5000
  legiond loadtest ... --scenario gateway-backlog --sensors 10000 --backlog 6h
  legiond loadtest ... --scenario ramp --sensors 10000 --ramp-start 5000

Exit status 1 when frames were lost, the run did not drain, or it failed.

flags:`

// runLoadtest is `legiond loadtest`.
func runLoadtest(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var kf kafkaFlags
	kf.register(fs, "Kafka bootstrap brokers, comma-separated (required)")
	kafkaGroup := fs.String("kafka-group", loadtest.DefaultKafkaGroup, "the nodes' consumer group (lag from committed offsets)")
	scenario := fs.String("scenario", string(loadtest.Steady), "steady, morning-flush-storm, gateway-backlog, alarm-storm or ramp")
	sensors := fs.Int("sensors", loadtest.DefaultSensors, "number of sensors")
	gateways := fs.Int("gateways", 0, "number of gateways (default max(3, sensors/250))")
	copies := fs.Int("copies", 0, "most gateways hearing one uplink (default: fleet's, up to 3; 1 for gateway-backlog)")
	perSite := fs.Int("sensors-per-site", loadtest.DefaultSensorsPerSite, "sensors per building (site)")
	interval := fs.Duration("interval", loadtest.DefaultReportInterval, "report interval of the sensors")
	duration := fs.Duration("duration", 0, "wall-clock production time (default 30s; ramp: longest ramp, 5m)")
	warmup := fs.Duration("warmup", 0, "production before the measured phase, excluded from latency (default 10s; backlog 0; negative: none)")
	speed := fs.Float64("speed", loadtest.DefaultSpeed, "time acceleration: simulated seconds per second")
	rate := fs.Float64("rate", 0, "pace at exactly this many records/s instead of --speed")
	backlog := fs.Duration("backlog", loadtest.DefaultBacklog, "gateway-backlog: simulated time buffered")
	stormAt := fs.Duration("storm-at", 0, "storms: wall time into the run (default duration/3)")
	stormWindow := fs.Duration("storm-window", loadtest.DefaultStormWindow, "morning-flush-storm: simulated time the flushes spread over")
	stormShare := fs.Float64("storm-share", loadtest.DefaultStormShare, "morning-flush-storm: share of tap points flushed")
	stormSites := fs.Int("alarm-sites", 1, "alarm-storm: buildings whose hot water fails")
	rampStart := fs.Float64("ramp-start", loadtest.DefaultRampStart, "ramp: first step, records/s")
	rampFactor := fs.Float64("ramp-factor", loadtest.DefaultRampFactor, "ramp: growth per step")
	rampStep := fs.Duration("ramp-step", loadtest.DefaultRampStep, "ramp: step length")
	rampP99 := fs.Duration("ramp-max-p99", loadtest.DefaultRampMaxP99, "ramp: p99 latency limit of a sustainable step")
	drainTimeout := fs.Duration("drain-timeout", loadtest.DefaultDrainTimeout, "longest wait for the nodes to catch up after production")
	headroom := fs.Float64("headroom", loadtest.DefaultHeadroom, "sizing: share of the measured capacity to plan with")
	seed := fs.Int64("seed", 0, "fleet seed (default: from the clock, so each run has new devices)")
	writers := fs.Int("writers", loadtest.DefaultWriters, "concurrent Kafka writers")
	noTap := fs.Bool("no-events-tap", false, "do not read twin.events (no loss check, no Kafka latency)")
	apiURL := fs.String("api", "", "API base URL for the latency streams, e.g. https://127.0.0.1:8443 (default: none)")
	ca := fs.String("ca", "", "CA certificate (PEM) of the API (default: the dev CA of $"+envDataDir+" or .dev when present)")
	token := fs.String("token", "", "platform-admin access token for the API (default $"+envToken+")")
	probeSites := fs.Int("probe-sites", 1, "buildings followed on StreamEvents (0: the token's whole scope, every event)")
	metrics := fs.String("metrics", "", "the nodes' metrics endpoints, comma-separated (host:port or URL)")
	pids := fs.String("pids", "", "node process ids on this machine, comma-separated (CPU and RSS from /proc)")
	out := fs.String("out", "", "output folder (default loadtest-out/<scenario>-<time>)")
	provision := fs.String("provision", "auto", "auto, db, api or none")
	dbURL := fs.String("database-url", "", "registry as the application role, to provision the fleet")
	keyFile := fs.String("master-key-file", "", "master key file for --database-url (default $LEGIOND_MASTER_KEY)")
	nodeDir := fs.String("node-data-dir", "", "data folder of a development node (legiond run without --database-url): use its registry")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	quiet := fs.Bool("quiet", false, "no progress line")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(s.err, loadtestUsage)
			fs.SetOutput(s.err)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(s.err, "legiond loadtest: %v\n", err)
		return exitUsage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(s.err, "legiond loadtest: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, "unexpected argument %q", fs.Arg(0))
	}
	client, err := kf.client()
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if len(client.Brokers) == 0 {
		return fail(exitUsage, "--kafka-brokers is required")
	}
	sc, err := loadtest.ParseScenario(*scenario)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	log, err := newLogger(s.err, *logLevel)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	cfg := loadtest.Config{
		Scenario: sc, Sensors: *sensors, Gateways: *gateways, CopiesPerUplink: *copies, SensorsPerSite: *perSite,
		ReportInterval: *interval, Duration: *duration, Warmup: *warmup, Speed: *speed, Rate: *rate, Backlog: *backlog,
		StormAt: *stormAt, StormWindow: *stormWindow, StormShare: *stormShare, AlarmStormSites: *stormSites,
		RampStart: *rampStart, RampFactor: *rampFactor, RampStep: *rampStep, RampMaxP99: *rampP99,
		DrainTimeout: *drainTimeout, Headroom: *headroom, Seed: *seed, Writers: *writers, NoEventsTap: *noTap,
		Logger: log,
	}
	cfg.Kafka.Brokers, cfg.Kafka.Group = client.Brokers, *kafkaGroup
	if cfg.Kafka.Transport, err = client.Transport(); err != nil {
		return fail(exitUsage, "%v", err)
	}
	if cfg.Kafka.Dialer, err = client.Dialer(); err != nil {
		return fail(exitUsage, "%v", err)
	}
	for _, m := range splitList(*metrics) {
		if !strings.Contains(m, "://") {
			m = "http://" + m
		}
		if !strings.Contains(strings.TrimPrefix(strings.TrimPrefix(m, "http://"), "https://"), "/") {
			m += "/metrics"
		}
		cfg.MetricsURLs = append(cfg.MetricsURLs, m)
	}
	for _, p := range splitList(*pids) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return fail(exitUsage, "--pids: %q is not a process id", p)
		}
		cfg.PIDs = append(cfg.PIDs, n)
	}
	if *token == "" {
		*token = os.Getenv(envToken)
	}
	var httpClient *http.Client
	if *apiURL != "" {
		if *token == "" {
			return fail(exitUsage, "--api needs a platform-admin --token (or $%s): legiond token issue --role platform_admin", envToken)
		}
		if *ca == "" {
			if f := filepath.Join(defaultDataDir(), "tls", tlsconf.CAFileName); fileExists(f) {
				*ca = f
			}
		}
		tlsCfg, err := tlsconf.ClientConfig(*ca)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		httpClient = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true,
			MaxIdleConnsPerHost: 16}}
		defer httpClient.CloseIdleConnections()
		cfg.API = &loadtest.APIConfig{BaseURL: *apiURL, HTTPClient: httpClient, Token: *token, ProbeSites: *probeSites}
		if *probeSites == 0 {
			cfg.API.ProbeSites = -1 // the whole scope
		}
	}

	// Provisioning.
	if *nodeDir != "" && *dbURL == "" {
		b, err := os.ReadFile(filepath.Join(*nodeDir, "registry", "database-url"))
		if err != nil {
			return fail(exitUsage, "--node-data-dir: %v", err)
		}
		*dbURL = strings.TrimSpace(string(b))
		if *keyFile == "" {
			*keyFile = filepath.Join(*nodeDir, "registry", postgres.DevMasterKeyFile)
		}
	}
	mode := *provision
	if mode == "auto" {
		switch {
		case *dbURL != "":
			mode = "db"
		case cfg.API != nil:
			mode = "api"
		default:
			mode = "none"
		}
	}
	switch mode {
	case "db":
		if *dbURL == "" {
			return fail(exitUsage, "--provision db needs --database-url or --node-data-dir")
		}
		mk, err := postgres.LoadMasterKey(*keyFile, os.Getenv)
		if err != nil {
			return fail(exitUsage, "master key: %v", err)
		}
		ring, err := postgres.NewKeyRing(mk)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		st, err := postgres.Open(ctx, postgres.Config{DSN: *dbURL, KeyRing: ring})
		if err != nil {
			return fail(exitFailure, "registry: %v", err)
		}
		defer st.Close()
		cfg.Provisioner = registryProvisioner{st: st}
	case "api":
		if cfg.API == nil {
			return fail(exitUsage, "--provision api needs --api and --token")
		}
		cfg.Provisioner = &loadtest.APIProvisioner{
			Client: apiv1connect.NewAdminServiceClient(httpClient, strings.TrimRight(*apiURL, "/")), Token: *token}
	case "none":
		fmt.Fprintln(s.err, "legiond loadtest: not provisioning: the fleet's devices must exist already (same --seed as before), or its frames are dead-lettered")
	default:
		return fail(exitUsage, "--provision must be auto, db, api or none")
	}
	if err := cfg.Validate(); err != nil {
		return fail(exitUsage, "%v", err)
	}
	if !*quiet {
		cfg.Progress, cfg.ProgressTTY = s.err, isTerminal(s.err)
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join("loadtest-out", fmt.Sprintf("%s-%s", sc, time.Now().UTC().Format("20060102T150405Z")))
	}

	res, runErr := loadtest.Run(ctx, cfg)
	if res == nil {
		return fail(exitFailure, "%v", runErr)
	}
	res.Command = "legiond loadtest " + redactArgs(args)
	paths, err := loadtest.WriteReport(dir, res)
	if err != nil {
		fmt.Fprintf(s.err, "legiond loadtest: report: %v\n", err)
	}
	printSummary(s.out, res, dir, paths)
	switch {
	case runErr != nil:
		return fail(exitFailure, "%v", runErr)
	case err != nil:
		return exitFailure
	case res.Loss.Lost > 0 || !res.Drain.Drained:
		return fail(exitFailure, "%d frames lost, drained=%v", res.Loss.Lost, res.Drain.Drained)
	}
	return exitOK
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// redactArgs joins args for the report, hiding secrets.
func redactArgs(args []string) string {
	out := make([]string, 0, len(args))
	hide := false
	for _, a := range args {
		switch {
		case hide:
			out, hide = append(out, "REDACTED"), false
			continue
		case a == "--token" || a == "-token":
			hide = true
		case strings.HasPrefix(a, "--token=") || strings.HasPrefix(a, "-token="):
			a = "--token=REDACTED"
		case strings.HasPrefix(a, "--database-url=") || strings.HasPrefix(a, "-database-url="):
			a = "--database-url=REDACTED"
		case a == "--database-url" || a == "-database-url":
			hide = true
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

// printSummary prints the key figures.
func printSummary(w io.Writer, res *loadtest.Result, dir string, paths []string) {
	fmt.Fprintf(w, "scenario %s: %d records (%d frames) produced at %.0f/s; handled %.0f/s (peak %.0f/s); lost %d of %d; drained %v in %.2f s (%.2f s from the first record)\n",
		res.Scenario, res.Production.Records, res.Production.Frames, res.Production.RecordsPerS, res.Applied.RecordsPerS,
		res.Applied.PeakRecordsPerS, res.Loss.Lost, res.Loss.Expected, res.Drain.Drained, res.Drain.Seconds, res.Drain.TotalSeconds)
	l := res.Latency.Kafka
	fmt.Fprintf(w, "latency twin.events: p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f ms (%d frames)\n", l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.Count)
	if a := res.Latency.API; a != nil {
		fmt.Fprintf(w, "latency API stream:  p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f ms (%d frames)\n", a.P50Ms, a.P90Ms, a.P99Ms, a.P999Ms, a.MaxMs, a.Count)
	}
	if res.Alarms.Raised > 0 {
		al := res.Latency.AlarmKafka
		fmt.Fprintf(w, "alarms: %d raised; latency p50 %.1f p99 %.1f max %.1f ms\n", res.Alarms.Raised, al.P50Ms, al.P99Ms, al.MaxMs)
	}
	fmt.Fprintf(w, "node: %.2f cores avg, %.2f max, %.0f MiB max (%s); lag max %.0f\n", res.Resources.NodeCPUCoresAvg,
		res.Resources.NodeCPUCoresMax, res.Resources.NodeRSSMaxMiB, res.Resources.Source, res.Lag.Max)
	if r := res.Ramp; r != nil {
		fmt.Fprintf(w, "ramp: saturation %.0f records/s, peak applied %.0f records/s (%s)\n", r.SaturationPerS, r.PeakAppliedPerS, r.StopReason)
	}
	if sz := res.Sizing; sz.Basis != "none" {
		fmt.Fprintf(w, "sizing: %.0f records/s per node → 250,000 sensors every 15 min need %d node(s)\n", sz.CapacityPerS, sz.TargetNodes)
	}
	for _, g := range res.Goals {
		if g.Status != "not-measured" {
			fmt.Fprintf(w, "goal %s: %s (%s)\n", g.Goal, g.Status, g.Measured)
		}
	}
	if len(res.Errors) > 0 {
		fmt.Fprintf(w, "errors: %v\n", res.Errors)
	}
	fmt.Fprintf(w, "report: %s (%d files)\n", filepath.Join(dir, loadtest.ReportMarkdown), len(paths))
}

// registryProvisioner registers the fleet straight into the PostgreSQL
// registry under the platform scope (the way `legiond simulate` does),
// in buildings of Plan.SensorsPerSite. It is the fast path for large
// fleets: the API's per-client rate limit makes one call per tap point
// slow. The node's registry cache follows through LISTEN/NOTIFY.
type registryProvisioner struct{ st *postgres.Store }

func (p registryProvisioner) Provision(ctx context.Context, plan *loadtest.Plan) (loadtest.Provisioned, error) {
	var out loadtest.Provisioned
	scope := postgres.PlatformScope("cli:loadtest")
	taps := make([]string, len(plan.Sensors))
	var customer uuid.UUID
	err := p.st.InTx(ctx, scope, func(tx *postgres.Tx) error {
		pa, err := tx.Partners().Create(ctx, postgres.NewPartner{Name: plan.Name + " partner"})
		if err != nil {
			return err
		}
		c, err := tx.Customers().Create(ctx, postgres.NewCustomer{PartnerID: &pa.ID, Name: plan.Name + " customer"})
		if err != nil {
			return err
		}
		customer = c.ID
		for s := range plan.Sites() {
			site, err := tx.Sites().Create(ctx, postgres.NewSite{CustomerID: c.ID, Name: fmt.Sprintf("%s building %d", plan.Name, s),
				City: "Utrecht", Country: "NL"})
			if err != nil {
				return err
			}
			out.SiteIDs = append(out.SiteIDs, site.ID.String())
			for i := s * plan.SensorsPerSite; i < min((s+1)*plan.SensorsPerSite, len(plan.Sensors)); i++ {
				sn := &plan.Sensors[i]
				tp, err := tx.TapPoints().Create(ctx, postgres.NewTapPoint{SiteID: site.ID, Name: "tap " + strconv.Itoa(i) + " " + sn.DevEUI.String(),
					Kind: postgres.TapKind(sn.TapKind)})
				if err != nil {
					return err
				}
				taps[i] = tp.ID.String()
			}
		}
		for i, g := range plan.Gateways {
			if _, err := tx.Gateways().Create(ctx, postgres.NewGateway{GatewayEUI: postgres.EUI64(g.EUI), CustomerID: &c.ID,
				Name: fmt.Sprintf("%s gateway %d", plan.Name, i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	out.CustomerID = customer.String()
	const chunk = 50_000 // under the import's 100,000-row limit
	for from := 0; from < len(plan.Sensors); from += chunk {
		to := min(from+chunk, len(plan.Sensors))
		rep, err := p.st.ImportDevices(ctx, scope, strings.NewReader(string(plan.DeviceCSV(from, to, taps))), postgres.ImportOptions{})
		if err != nil {
			return out, fmt.Errorf("import devices: %w (%v)", err, rep.Errors)
		}
	}
	return out, nil
}
