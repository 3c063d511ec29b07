// Package actors wires the pure device-twin core (package devicetwin) into
// protoactor-go actors: one actor per sensor or gateway, activation that loads
// state through a storage port, passivation, supervision and deadline timers.
//
// It owns the actor lifecycle only. It must not decide domain rules (that is
// devicetwin's job), talk to Kafka directly (streams) or open stores itself:
// stores arrive through small interfaces declared here.
package actors
