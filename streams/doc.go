// Package streams moves records in and out of Kafka: the consumer group on
// lorawan.uplink and lorawan.gateway.stats with per-partition offset
// watermarks, bounded in-flight work, the twin.events and dead-letter
// producers, and the embedded development broker.
//
// It must not apply domain rules or keep twin state; it only routes frames to
// twins through a port and commits offsets once they are durable.
package streams
