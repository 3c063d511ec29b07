// Package devicetwin is the pure domain core of Legiond: sensor and gateway
// twin state machines, Legionella rule profiles and the alarm lifecycle.
//
// Everything here is a function of its inputs: Apply(state, input) returns
// the new state and the events. It must not do I/O, start goroutines, read a
// clock or keep globals; time arrives inside inputs (receive time, ticks).
// An import test enforces this.
package devicetwin
