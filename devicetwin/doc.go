// Package devicetwin is the pure domain core of Legiond: sensor and gateway
// twin state machines, Legionella rule profiles and the alarm lifecycle.
//
// Everything here is a function of its inputs: ApplySensor(state, input)
// returns the new state and the events (ApplyGateway for gateways). It must
// not do I/O, start goroutines, read a clock or keep globals; time arrives
// inside inputs (receive time, ticks). purity_test.go enforces this on every
// non-test file under devicetwin/.
//
// What it owns:
//
//   - Sessions: full frame-counter handling (ApplyFrame for raw LoRaWAN
//     frames, Uplink for decoded ones), duplicates from several gateways or
//     Kafka redelivery applied once, late frames logged once, replays and
//     rewinds rejected and counted toward SECURITY, an explicit
//     CounterResetPolicy for devices that restart their counter.
//   - Rules (docs/rules.md): sustained-window temperature alarms with
//     hysteresis, hotspot, flushes and disinfections (reported and
//     inferred) with compliance per national Profile and per-site/tap
//     Overrides, FLUSH_OVERDUE, device health, GATEWAY_OFFLINE.
//   - Alarms: one occurrence per (device, type), ACTIVE_UNACK → ACTIVE_ACK →
//     CLEARED_ACK or ACTIVE_UNACK → CLEARED_UNACK → CLEARED_ACK, every
//     transition an event.
//   - Determinism: event ids derive from the input (DevEUI, counter epoch,
//     FCnt, index; tick time; operator time), and applying an input twice
//     changes nothing and emits nothing.
//   - Snapshots: MarshalSnapshot / UnmarshalSensorSnapshot in the versioned
//     legiond.twin.v1 protobuf schema.
//
// What it must not do: persist, publish, schedule (NextDeadline tells the
// actor layer when to tick), know tenants beyond the ids it is configured
// with, or hold session keys (ApplyFrame borrows them per call).
//
// The sub-package script is the JSON Lines language of `legiond twin
// replay` and of the scenario tests under testdata/scenarios.
package devicetwin
