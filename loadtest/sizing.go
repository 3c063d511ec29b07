package loadtest

import (
	"fmt"
	"math"
	"time"
)

// Sizing turns a measured per-node capacity into sensors per node.
type Sizing struct {
	// Basis is where the capacity comes from: "ramp saturation",
	// "backlog drain rate" (the node drained as fast as it could), "peak
	// applied rate (lower bound)" or "none".
	Basis          string      `json:"basis"`
	CapacityPerS   float64     `json:"capacity_records_per_s"`
	LowerBound     bool        `json:"lower_bound"`
	Headroom       float64     `json:"headroom"`
	CopiesPerFrame float64     `json:"copies_per_frame"`
	Rows           []SizingRow `json:"rows"`
	// Target: the question, 250,000 sensors every 15 min.
	TargetSensors   int     `json:"target_sensors"`
	TargetIntervalS float64 `json:"target_interval_s"`
	TargetNodes     int     `json:"target_nodes"`
	// BacklogDrainS: how long one node at capacity needs for a 6-hour
	// backlog of the target fleet while live traffic goes on.
	BacklogDrainS float64 `json:"target_backlog_6h_drain_s"`
}

// SizingRow is one report interval.
type SizingRow struct {
	IntervalS      float64 `json:"interval_s"`
	SensorsPerNode int64   `json:"sensors_per_node"`
	NodesFor250k   int     `json:"nodes_for_250k"`
}

// The planning question.
const (
	targetSensors  = 250_000
	targetInterval = 15 * time.Minute
)

// SensorsPerNode is capacity × headroom × interval ÷ copies: a node runs
// at headroom of its measured capacity, and every report costs copies
// records (one per gateway that hears it).
func SensorsPerNode(capacityPerS, headroom float64, interval time.Duration, copies float64) int64 {
	if capacityPerS <= 0 || headroom <= 0 || interval <= 0 {
		return 0
	}
	copies = max(copies, 1)
	return int64(math.Floor(capacityPerS * headroom * interval.Seconds() / copies))
}

// NodesFor returns the nodes needed for sensors (at least 1; 0 when the
// per-node figure is unknown).
func NodesFor(sensors int, perNode int64) int {
	if perNode <= 0 {
		return 0
	}
	return max(1, int((int64(sensors)+perNode-1)/perNode))
}

// BacklogDrainSeconds is how long a node with capacity spare after the
// live load of sensors (reporting every interval, copies records each)
// needs for backlog of buffered reports of all of them. +Inf when there is
// no spare capacity.
func BacklogDrainSeconds(capacityPerS float64, sensors int, interval, backlog time.Duration, copies float64) float64 {
	copies = max(copies, 1)
	live := float64(sensors) * copies / interval.Seconds()
	spare := capacityPerS - live
	if spare <= 0 || interval <= 0 {
		return math.Inf(1)
	}
	frames := float64(sensors) * math.Floor(backlog.Seconds()/interval.Seconds()) * copies
	return frames / spare
}

// newSizing builds the sizing table from a capacity.
func newSizing(basis string, capacity float64, lower bool, headroom, copies float64) Sizing {
	s := Sizing{Basis: basis, CapacityPerS: round1(capacity), LowerBound: lower, Headroom: headroom,
		CopiesPerFrame: round3(max(copies, 1)), TargetSensors: targetSensors, TargetIntervalS: targetInterval.Seconds()}
	if capacity <= 0 {
		s.Basis = "none"
		return s
	}
	for _, iv := range []time.Duration{5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour} {
		per := SensorsPerNode(capacity, headroom, iv, copies)
		s.Rows = append(s.Rows, SizingRow{IntervalS: iv.Seconds(), SensorsPerNode: per, NodesFor250k: NodesFor(targetSensors, per)})
	}
	s.TargetNodes = NodesFor(targetSensors, SensorsPerNode(capacity, headroom, targetInterval, copies))
	// The backlog is drained by one node's share of the fleet.
	share := targetSensors
	if s.TargetNodes > 0 {
		share = (targetSensors + s.TargetNodes - 1) / s.TargetNodes
	}
	d := BacklogDrainSeconds(capacity, share, targetInterval, 6*time.Hour, copies)
	if !math.IsInf(d, 0) {
		s.BacklogDrainS = round1(d)
	}
	return s
}

// sizingAssumptions states what the sizing table takes for granted.
func sizingAssumptions(s Sizing, samplesPerUplink int) []string {
	return []string{
		"One uplink per report interval per sensor (Clip'R FPort 1 measurement, " + fmt.Sprint(samplesPerUplink) +
			" samples); daily status frames and flush reports add about 1 % and are ignored.",
		fmt.Sprintf("Every uplink costs %.2f lorawan.uplink records (one per gateway that heard it, the mean of this run); "+
			"a denser gateway network raises it and lowers the sensors per node proportionally.", s.CopiesPerFrame),
		fmt.Sprintf("A node is planned at %.0f %% of its measured capacity, leaving the rest for storms "+
			"(Monday flush rounds, a gateway's backlog), rebalances and compaction.", s.Headroom*100),
		"Capacity scales linearly with nodes (Kafka partitions spread over the consumer group); this box measured one node, " +
			"with the embedded Kafka broker, PostgreSQL and the harness sharing its 2 cores.",
		"Capacity is measured with durability on: fsynced twin state (Pebble group commit), acks=all event publishing, " +
			"offsets committed only after both.",
	}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// Comparison puts the run next to ThingsBoard's published single-node
// figures, per core.
type Comparison struct {
	Published []PublishedRun `json:"published"`
	// Ours.
	RecordsPerS       float64 `json:"records_per_s"`
	DataPointsPerS    float64 `json:"data_points_per_s"`
	DataPointsPerRec  float64 `json:"data_points_per_record"`
	NodeCores         float64 `json:"node_cpu_cores_used"`
	BoxCores          int     `json:"box_cores"`
	RecordsPerBoxCore float64 `json:"records_per_s_per_box_core"`
	RecordsPerUsedCPU float64 `json:"records_per_s_per_used_core,omitempty"`
	Shape             string  `json:"shape"`
}

// PublishedRun is one ThingsBoard performance run as published.
type PublishedRun struct {
	Name    string  `json:"name"`
	Devices int     `json:"devices"`
	PerS    float64 `json:"per_s"`
	Unit    string  `json:"unit"`
	VCPU    int     `json:"vcpu"`
	PerCore float64 `json:"per_s_per_vcpu"`
}

// publishedThingsBoard are the single-node runs the issue cites.
func publishedThingsBoard() []PublishedRun {
	return []PublishedRun{
		{Name: "ThingsBoard single node, Kafka queue", Devices: 5_000, PerS: 5_000, Unit: "msg/s", VCPU: 2, PerCore: 2_500},
		{Name: "ThingsBoard single node", Devices: 100_000, PerS: 30_000, Unit: "data points/s", VCPU: 8, PerCore: 3_750},
	}
}

// newComparison computes our per-core figures; shape names the published
// run this one matches (same devices and rate within 10 %), if any.
func newComparison(sensors int, recordsPerS, nodeCores float64, boxCores int, dataPointsPerRecord float64) Comparison {
	c := Comparison{Published: publishedThingsBoard(), RecordsPerS: round1(recordsPerS), NodeCores: round3(nodeCores),
		BoxCores: boxCores, DataPointsPerRec: round3(dataPointsPerRecord)}
	c.DataPointsPerS = round1(recordsPerS * dataPointsPerRecord)
	if boxCores > 0 {
		c.RecordsPerBoxCore = round1(recordsPerS / float64(boxCores))
	}
	if nodeCores > 0.05 {
		c.RecordsPerUsedCPU = round1(recordsPerS / nodeCores)
	}
	near := func(a, b float64) bool { return b > 0 && math.Abs(a-b)/b <= 0.1 }
	switch {
	case sensors == 5_000 && near(recordsPerS, 5_000):
		c.Shape = "ThingsBoard 5,000 devices at 5,000 msg/s"
	case sensors == 100_000 && near(c.DataPointsPerS, 30_000):
		c.Shape = "ThingsBoard 100,000 devices at 30,000 data points/s"
	default:
		c.Shape = "other (per-core figures still comparable)"
	}
	return c
}
