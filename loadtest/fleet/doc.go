// Package fleet simulates a deterministic fleet of Clip'R pipe-thermometer
// sensors and LoRaWAN gateways, producing real, encrypted LoRaWAN 1.0.x
// uplinks (ABP sessions, correct MICs and frame counters) that carry real
// Clip'R payloads. The load-test harness, the development broker and
// end-to-end tests feed them to Legiond as gateways would.
//
// # What it owns
//
//   - The fleet's identities and keys (derived from the seed, for
//     provisioning the registry before a run: Sensors, Gateways).
//   - A simple physical model of each tap point: pipe temperature relaxing
//     exponentially toward ambient while idle and toward the supply
//     temperature while water flows; hot supply 60–65 °C, cold 10–15 °C,
//     ambient 18–24 °C with a daily swing.
//   - Behaviour profiles that make the platform's rules fire: daily use,
//     rarely used taps (no flush for more than 7 days), hot lines that cool
//     below 55/50 °C, cold lines that warm above 25 °C, low batteries,
//     detached clips and sensors that fall silent.
//   - A radio model: per (sensor, gateway) distance and shadowing give
//     RSSI/SNR, an ADR-like choice of spreading factor, EU868 channels and
//     time on air; each uplink is heard by 1–3 gateways a few ms apart.
//
// # What it must not do
//
// It runs in simulated time only: no clock reads, no sleeping, no
// goroutines, no I/O. Callers pace it (Next, Step). It must depend only on
// the wire formats (devicetwin/lorawan, devicetwin/clipr) and never on
// Legiond's internals, so that it tests the system from the outside.
//
// # Determinism
//
// A Config (including Seed) fully determines the output: two fleets built
// from the same Config produce byte-identical uplinks in the same order on
// the same GOARCH (floating-point fusion may differ between architectures).
// Each sensor draws from its own random stream, so its frames do not depend
// on how the caller slices time with Step.
//
// The keys are derived from the seed with a non-cryptographic generator:
// they are test keys, never to be used for real devices.
package fleet
