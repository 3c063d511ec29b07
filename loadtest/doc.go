// Package loadtest drives a running Legiond deployment with the simulated
// Clip'R fleet (package loadtest/fleet) and measures throughput, lag,
// end-to-end latency and resource use for capacity planning. The command is
// `legiond loadtest`; Run and WriteReport are its engine.
//
// # What it owns
//
//   - Scenarios (Config.Scenario): steady traffic paced by time
//     acceleration or an exact record rate; a Monday-morning flush storm
//     (extra FPort 2 flush reports of most tap points within minutes); a
//     gateway's 6-hour backlog produced at once; a building whose hot water
//     fails (alarm storm); a ramp that steps the rate up until the lag grows,
//     p99 passes a limit or the producer cannot keep up.
//   - Frame effects: storms rewrite the affected sensors' frames with their
//     real session keys (capped temperatures, inserted flush reports) and
//     renumber their frame counters, so the node sees what real devices
//     would send.
//   - The producer: lorawan.uplink records keyed by DevAddr, UplinkFrame
//     with produced_at, acks=all, one in-flight request per partition that
//     carries whatever gathered meanwhile.
//   - Measurement: a ledger of every transmission (first copy's produced
//     time, which observers saw an event of it), an events tap on
//     twin.events (partition readers, no consumer group, protowire
//     parsing), the API's StreamEvents and StreamAlarms with resume, HDR
//     histograms (p50/p90/p99/p99.9/max), the nodes' Prometheus metrics
//     (handled records, consumer lag, errors by kind, process CPU and
//     memory), /proc for given pids, a live progress line.
//   - The report: report.json (Result), report.md with PNG plots
//     (gonum/plot), the sizing table (sensors per node = capacity ×
//     headroom × interval ÷ records per uplink, assumptions stated), the
//     issue's goals and ThingsBoard-comparable per-core figures.
//
// # Loss
//
// Every FPort 1 (measurement) and FPort 3 (status) frame yields at least
// one event with its frame counter, so a delivered frame of those ports
// whose (DevEUI, FCnt) never appears on twin.events is lost. FPort 2 frames
// and gateway copies are counted but need not yield events. Frame counters
// of a run start at 1; events with f_cnt 0 are deadline ticks.
//
// # Provisioning
//
// Every run registers its own fleet (the seed defaults to the clock), so
// frame counters never collide with a previous run's twins. Provisioner is
// a port: APIProvisioner uses AdminService (only the API, but one call per
// tap point meets the per-client rate limit), the command plugs in a
// registry adapter for large fleets.
//
// # What it must not do
//
// It depends only on the wire formats (proto, devicetwin/lorawan,
// devicetwin/clipr) and the fleet, never on Legiond's internals
// (cmd/legiond/layout_test.go), so that it measures the system from the
// outside, against embedded or real Kafka and any number of nodes. It sends
// traffic only to the addresses it is given.
package loadtest
