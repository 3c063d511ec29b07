// Package loadtest drives a running Legiond deployment with the simulated
// Clip'R fleet (package loadtest/fleet) and measures throughput, lag,
// end-to-end latency and resource use for capacity planning.
//
// It must depend only on the wire formats (proto, devicetwin/lorawan,
// devicetwin/clipr), never on Legiond's internals.
package loadtest
