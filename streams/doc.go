// Package streams moves records in and out of Kafka: the consumer group on
// lorawan.uplink and lorawan.gateway.stats with per-partition offset
// watermarks, bounded in-flight work, the twin.events and dead-letter
// producers, and the embedded development broker.
//
// It must not apply domain rules or keep twin state; it only routes frames to
// twins through a port and commits offsets once they are durable.
//
// # Input: Consumer
//
// A Consumer is one member of a consumer group (kafka-go). For every
// partition the group assigns it, a session runs with its own kafka-go
// Reader (FetchMessage, never ReadMessage), its own watermark.Tracker and a
// window of at most ConsumerConfig.MaxInFlightPerPartition records. Each
// record is validated and decoded (UplinkFrame or GatewayStats) and handed
// to the Handler port, which calls done once the record's effects are
// durable. Records complete in any order; the tracker yields the first
// offset whose record is not complete, and a committer commits that offset
// for every partition every CommitInterval, so a committed offset never
// passes an incomplete record. When the window is full the partition stops
// fetching (backpressure) while other partitions go on; the reader's queue
// is bounded too, so nothing grows without limit.
//
// Records that cannot be decoded (not protobuf, empty or oversized
// payload, bad key) and records the Handler rejects go to the DeadLetterer
// (lorawan.uplink.dlq via DLQProducer) with a reason header, are counted
// in Metrics, and then count as complete. A record is never skipped
// without being either handled or durably dead-lettered.
//
// Rebalances: the group membership is kafka-go's ConsumerGroup, the same
// machinery its group Reader uses, but with the assignment visible. When a
// generation ends (another member joins or leaves, or Close), each session
// stops fetching, waits up to DrainTimeout for records already handed out,
// and the final watermarks are committed through the ending generation
// before the member rejoins; then the session and its tracker are dropped,
// and late done calls are ignored. The new owner resumes from the committed
// offset, so records that were in flight are delivered again: delivery is
// at least once and the twins de-duplicate (frame counter, deterministic
// event ids). Commits carry the generation id, so a member that lost a
// partition cannot overwrite its new owner's offsets.
//
// Why not kafka-go's group Reader with CommitMessages: it hides the
// assignment (no hook to drop state or commit on revoke), interleaves all
// partitions in one stream (one slow partition would block the rest under
// backpressure), and commits through whichever generation is current,
// which lets a stale commit land on a partition that moved.
//
// # Output: producers
//
// EventProducer.Publish writes TwinEvents to twin.events synchronously with
// acks=all: the twin calls done(nil) for an uplink only after Publish
// returned nil for its events, which orders "events durable" before
// "offset committed". DLQProducer writes dead letters with the original
// key, value and headers plus reason and source headers. UplinkProducer is
// the gateway-bridge side for simulators and load tests. All producers
// partition by key with murmur2 (Java-client compatible).
//
// # Security and development
//
// ClientConfig carries TLS (minimum version 1.3 by default, 1.2 allowed,
// CA bundle, client certificate) and SASL (PLAIN, SCRAM-SHA-256/512) for
// real clusters. The sub-package devbroker runs franz-go's kfake on
// loopback, optionally persisted, for development and tests; it is the
// only place franz-go is used. The sub-package watermark holds the pure
// offset tracker.
package streams
