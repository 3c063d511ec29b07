// Package lorawan is Legiond's LoRaWAN 1.0.x (1.0.2, 1.0.3, 1.0.4) frame
// codec and crypto: PHYPayload parsing and building for data and join frames,
// the AES-CMAC message integrity code (RFC 4493), FRMPayload encryption,
// join-accept encryption, session-key derivation and the reconstruction of
// 32-bit frame counters from the 16 bits on the wire.
//
// # What it owns
//
//   - The byte layout of LoRaWAN frames and the identifiers in them (EUI64,
//     DevAddr, NetID, JoinNonce, DevNonce, AES128Key) with their text forms.
//     Identifiers are stored in display order (big-endian, as printed on
//     labels and in consoles) and reversed to little-endian on the wire.
//   - The cryptography of LoRaWAN 1.0.x: MICs, FRMPayload encryption, join
//     accept encryption and key derivation. SessionKeys precomputes the AES
//     key schedules and CMAC subkeys of one session so that the hot path
//     (parse + verify MIC + decrypt) allocates nothing.
//   - The exact rule for turning a 16-bit wire counter into the 32-bit session
//     counter (FullFCnt), so that every consumer agrees on retransmissions,
//     roll-over and replays.
//
// # What it must not do
//
// It is part of the pure core (see devicetwin): no I/O, no goroutines, no
// clock reads, no logging and no globals other than constant tables and
// sentinel errors. It keeps no session state: the last frame counter, used
// DevNonces and keys belong to the device twin, which passes them in.
// FOpts and FPort-0 payloads are returned raw; interpreting MAC commands is
// the twin's business. LoRaWAN 1.1 (split network keys, encrypted FOpts,
// OptNeg join accepts) is not supported and is not silently half-decoded:
// such frames fail their MIC check.
//
// # Errors
//
// Every error returned by a decoder or verifier satisfies errors.Is for one
// of the exported Err* sentinels, wrapped with context. Malformed input never
// panics; this is proven by fuzz tests.
package lorawan
