// Package clipr encodes and decodes the Clip'R sensor payload, version 1
// (DESIGN §3): FPort 1 measurements, FPort 2 water events and FPort 3 status.
//
// It is pure: no I/O, no clock. Every malformed input yields one of the
// package's sentinel errors, never a panic; a fuzz test holds it to that.
package clipr
