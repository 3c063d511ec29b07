package loadtest

import "time"

// Result is everything a run measured; report.json is its JSON form.
// Rates are per wall-clock second. "Records" are lorawan.uplink records
// (one per gateway copy: what a node consumes, decodes and de-duplicates);
// "frames" are distinct transmissions (DevEUI, FCnt).
type Result struct {
	Scenario Scenario  `json:"scenario"`
	Command  string    `json:"command,omitempty"`
	Started  time.Time `json:"started"`
	Seed     int64     `json:"seed"`
	Env      Env       `json:"environment"`
	Params   Params    `json:"parameters"`

	Provision  ProvisionResult `json:"provision"`
	Production Production      `json:"production"`
	Applied    Applied         `json:"applied"`
	Loss       Loss            `json:"loss"`
	Drain      Drain           `json:"drain"`
	Latency    Latencies       `json:"latency"`
	Alarms     Alarms          `json:"alarms"`
	Lag        LagResult       `json:"lag"`
	Resources  Resources       `json:"resources"`
	// Errors by kind: the harness's own (produce, events_tap, api_*,
	// scrape, rewrite) and the node's counters that grew during the run
	// (frames_rejected{reason}, kafka_dead_lettered{reason}, …).
	Errors map[string]int64 `json:"errors"`

	Storm *StormResult `json:"storm,omitempty"`
	Ramp  *RampResult  `json:"ramp,omitempty"`

	Sizing      Sizing       `json:"sizing"`
	Comparison  Comparison   `json:"thingsboard_comparison"`
	Goals       []GoalCheck  `json:"goals"`
	Assumptions []string     `json:"assumptions"`
	Timeline    []Point      `json:"timeline"`
	Notes       []string     `json:"notes,omitempty"`
	Processes   []ProcResult `json:"processes,omitempty"`
}

// Env describes where the run happened.
type Env struct {
	Host       string `json:"host"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPUs       int    `json:"cpus"`
	GoVersion  string `json:"go_version"`
	Nodes      int    `json:"nodes_scraped"`
	HarnessPID int    `json:"harness_pid"`
	// NodeInHarness: a node pid is the harness's own process (in-process
	// smoke runs): CPU and memory figures include the harness.
	NodeInHarness bool `json:"node_in_harness,omitempty"`
}

// Params are the effective parameters (defaults applied).
type Params struct {
	Sensors            int     `json:"sensors"`
	Gateways           int     `json:"gateways"`
	Sites              int     `json:"sites"`
	CopiesPerUplinkMax int     `json:"copies_per_uplink_max"`
	ReportIntervalS    float64 `json:"report_interval_s"`
	SamplesPerUplink   int     `json:"samples_per_uplink"`
	DurationS          float64 `json:"duration_s"`
	WarmupS            float64 `json:"warmup_s,omitempty"`
	Speed              float64 `json:"speed,omitempty"`
	RateTarget         float64 `json:"rate_target_records_per_s,omitempty"`
	BacklogS           float64 `json:"backlog_s,omitempty"`
	Headroom           float64 `json:"headroom"`
	API                bool    `json:"api"`
	APIProbeSites      int     `json:"api_probe_sites,omitempty"`
	EventsTap          bool    `json:"events_tap"`
}

// ProvisionResult says how the fleet got into the registry.
type ProvisionResult struct {
	Done     bool    `json:"done"`
	Seconds  float64 `json:"seconds"`
	Sites    int     `json:"sites"`
	Existing bool    `json:"existing,omitempty"` // no provisioner: devices must exist
}

// Production is what the harness wrote to lorawan.uplink.
type Production struct {
	Records        int64   `json:"records"`
	Failed         int64   `json:"failed_records"`
	Frames         int64   `json:"frames"`
	ExpectedFrames int64   `json:"event_bearing_frames"`
	Seconds        float64 `json:"seconds"`
	RecordsPerS    float64 `json:"records_per_s"`
	FramesPerS     float64 `json:"frames_per_s"`
	CopiesPerFrame float64 `json:"copies_per_frame"`
	SimulatedS     float64 `json:"simulated_s"`
	SimFrom        string  `json:"simulated_from"`
	SimTo          string  `json:"simulated_to"`
}

// Applied is what the node(s) and the events tap reported as done.
type Applied struct {
	// RecordsHandled: node metric legiond_kafka_handled_total, delta.
	RecordsHandled float64 `json:"records_handled"`
	// RecordsPerS: handled records over the active span (first produce to
	// last frame seen or drain end).
	RecordsPerS float64 `json:"records_per_s"`
	// PeakRecordsPerS: the best 5-sample window of the handled rate.
	PeakRecordsPerS float64 `json:"peak_records_per_s"`
	// FramesSeen: distinct frames of the run with an event on twin.events.
	FramesSeen int64   `json:"frames_seen"`
	FramesPerS float64 `json:"frames_per_s"`
	Events     int64   `json:"events_read"`
	// UnknownEvents: events of devices or frames outside this run.
	UnknownEvents int64 `json:"unknown_events"`
	TickEvents    int64 `json:"tick_events"`
}

// Loss compares produced event-bearing frames (FPort 1 measurements and
// FPort 3 status, which always yield events) with those seen.
type Loss struct {
	Checked  bool       `json:"checked"`
	Expected int64      `json:"expected"`
	Seen     int64      `json:"seen"`
	Lost     int64      `json:"lost"`
	Examples []FrameRef `json:"examples,omitempty"`
	// API: the same over the API stream, for the probed sensors.
	APIChecked  bool  `json:"api_checked"`
	APIExpected int64 `json:"api_expected"`
	APILost     int64 `json:"api_lost"`
	// DeadLettered: records added to lorawan.uplink.dlq during the run.
	DeadLettered int64 `json:"dead_lettered"`
}

// Drain is the catch-up after production.
type Drain struct {
	Drained bool `json:"drained"`
	// Seconds from the end of production until every produced frame was
	// seen (and the lag was 0).
	Seconds float64 `json:"seconds"`
	// TotalSeconds from the first record produced until then.
	TotalSeconds float64 `json:"total_seconds"`
}

// Latencies: produced (first copy) → first event of the frame received.
type Latencies struct {
	// Kafka: on the harness's reader of twin.events.
	Kafka Latency `json:"kafka_e2e"`
	// API: on TelemetryService.StreamEvents (TLS, HTTP/2, Connect).
	API *Latency `json:"api_e2e,omitempty"`
	// AlarmKafka, AlarmAPI: every alarm transition caused by a frame.
	AlarmKafka Latency  `json:"alarm_kafka"`
	AlarmAPI   *Latency `json:"alarm_api,omitempty"`
}

// Alarms counts alarms raised during the run, by type.
type Alarms struct {
	Raised       int64            `json:"raised"`
	FromFrames   int64            `json:"from_frames"`
	ByType       map[string]int64 `json:"by_type,omitempty"`
	APIRaised    int64            `json:"api_raised"`
	APIConnected bool             `json:"api_connected"`
}

// LagResult is the consumer lag in records.
type LagResult struct {
	Source string  `json:"source"` // node metric or committed offsets
	Max    float64 `json:"max"`
	Final  float64 `json:"final"`
}

// Resources are the nodes' and the harness's CPU and memory.
type Resources struct {
	NodeCPUCoresAvg  float64 `json:"node_cpu_cores_avg"`
	NodeCPUCoresMax  float64 `json:"node_cpu_cores_max"`
	NodeRSSMaxMiB    float64 `json:"node_rss_max_mib"`
	HarnessCPUAvg    float64 `json:"harness_cpu_cores_avg"`
	HarnessRSSMaxMiB float64 `json:"harness_rss_max_mib"`
	Source           string  `json:"source"` // proc, metrics or none
}

// ProcResult is one sampled process.
type ProcResult struct {
	PID       int     `json:"pid"`
	Role      string  `json:"role"`
	CPUAvg    float64 `json:"cpu_cores_avg"`
	CPUMax    float64 `json:"cpu_cores_max"`
	RSSMaxMiB float64 `json:"rss_max_mib"`
}

// StormResult describes the storm of a storm scenario.
type StormResult struct {
	AtS             float64 `json:"at_s"`
	SimulatedAt     string  `json:"simulated_at"`
	Sensors         int     `json:"sensors"`
	Injected        int64   `json:"injected_frames"`
	SkippedNotBoot  int64   `json:"skipped_not_booted"`
	Rewritten       int64   `json:"rewritten_frames"`
	RewriteFailures int64   `json:"rewrite_failures"`
	PeakRecordsPerS float64 `json:"peak_produced_records_per_s"`
}

// RampStep is one rate step of a ramp.
type RampStep struct {
	TargetPerS   float64 `json:"target_records_per_s"`
	ProducedPerS float64 `json:"produced_records_per_s"`
	AppliedPerS  float64 `json:"applied_records_per_s"`
	P99Ms        float64 `json:"p99_ms"`
	LagStart     float64 `json:"lag_start"`
	LagEnd       float64 `json:"lag_end"`
	Sustainable  bool    `json:"sustainable"`
	Reason       string  `json:"reason,omitempty"`
}

// RampResult is the saturation search.
type RampResult struct {
	Steps []RampStep `json:"steps"`
	// SaturationPerS: the applied rate of the last sustainable step.
	SaturationPerS float64 `json:"saturation_records_per_s"`
	// PeakAppliedPerS: the best applied rate seen (overloaded steps
	// included: the node then works as fast as it can).
	PeakAppliedPerS float64 `json:"peak_applied_records_per_s"`
	StopReason      string  `json:"stop_reason"`
}

// Point is one sample of the timeline.
type Point struct {
	T               float64 `json:"t_s"`
	Phase           string  `json:"phase,omitempty"`
	TargetPerS      float64 `json:"target_per_s,omitempty"`
	ProducedPerS    float64 `json:"produced_records_per_s"`
	HandledPerS     float64 `json:"handled_records_per_s"`
	FramesSeenPerS  float64 `json:"frames_seen_per_s"`
	Lag             float64 `json:"lag"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	APIP99Ms        float64 `json:"api_p99_ms,omitempty"`
	NodeCPU         float64 `json:"node_cpu_cores"`
	NodeRSSMiB      float64 `json:"node_rss_mib"`
	HarnessCPU      float64 `json:"harness_cpu_cores"`
	Errors          int64   `json:"errors"`
	AlarmsRaised    int64   `json:"alarms_raised"`
	SimulatedMinute float64 `json:"simulated_min"`
}

// GoalCheck is one of the goals, checked when the run has the
// goal's shape.
type GoalCheck struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	// Status: met, missed, or not-measured (the run has another shape).
	Status string `json:"status"`
}
