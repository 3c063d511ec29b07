// Package devbroker runs an in-process Kafka broker for development and
// tests: franz-go's kfake, listening on loopback and speaking the real Kafka
// protocol, so the product's kafka-go clients talk to it exactly as they talk
// to a real cluster.
//
// With Config.Dir set the broker persists its logs, topics and committed
// group offsets under that folder (kfake's DataDir) and reloads them on the
// next Start; every produced batch is fsynced unless Config.NoSync is set.
// Without Dir everything lives in memory.
//
// It owns nothing but the broker's lifecycle. It must not be used in
// production (no replication, no authentication unless configured, loopback
// only) and nothing outside development wiring and tests should import it:
// it is the only package that pulls in franz-go.
package devbroker
