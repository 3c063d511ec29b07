// Package streams moves records in and out of Kafka: the consumers of
// lorawan.uplink, lorawan.gateway.stats and lorawan.gateway.seen with
// per-partition offset watermarks and bounded in-flight work, the
// twin.events, gateway-seen and dead-letter producers, and the embedded
// development broker.
//
// It must not apply domain rules or keep twin state; it only routes frames to
// twins through a port and commits offsets once they are durable.
//
// # Input: which consumer
//
// Two consumers share one per-partition machinery (a session: reader,
// tracker, window, retries, dead letters, the Handler contract) and differ
// in who decides which partitions a node reads and where offsets live:
//
//   - Consumer, single-node mode: Kafka's group protocol assigns
//     partitions and offsets are committed to the group. A dead member is
//     noticed only after its session timeout (6 s at least), too slow for
//     cluster failover.
//   - AssignedConsumer, cluster mode: the caller (the Raft leader's
//     decision, replicated) assigns and revokes partition index p of every
//     input topic with start offsets, and offsets go to the caller's
//     Commit port, stored in the Raft state beside the twin snapshots they
//     cover, as Flink keeps Kafka offsets in its checkpoints. No Kafka
//     group is involved (AssignedConfig.GroupID only copies the offsets
//     there for lag monitoring).
//
// # Consumer
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
// # AssignedConsumer
//
// Assign(p, starts) starts one session per input topic for partition
// index p and returns at once; the first record reaches the Handler within
// a fetch round-trip. Revoke(p) stops fetching, drains (DrainTimeout at
// most; later done calls are ignored), passes the final offsets to Commit
// and returns; after that neither the Handler nor Commit hears of p from
// this consumer, so the new owner may start from the stored offsets.
// Commit receives only offsets whose records are all complete, every
// CommitInterval for the partitions that moved, never concurrently; a
// failed Commit is offered again. Delivery stays at least once: a member
// that dies without Revoke leaves its last stored offsets, and the new
// owner redelivers what came after.
//
// lorawan.gateway.seen is the repartition topic from device twins to
// gateway twins (Kafka Streams style): a device's twin, on the member that
// owns the uplink's partition, publishes GatewayUplinkSeen with
// SeenProducer.PublishSeen (durable on return), keyed by the gateway EUI
// in lowercase hex like lorawan.gateway.stats. With the same partition
// count and murmur2 partitioning, partition p of both topics holds the
// same gateways, so the member owning p gets the gateway's stats and its
// seen records. AssignedConsumer reads the seen topic only when its
// Handler implements SeenHandler; the group Consumer never reads it (a
// single node routes these locally).
//
// # Output: producers
//
// EventProducer.Publish writes TwinEvents to twin.events synchronously with
// acks=all: the twin calls done(nil) for an uplink only after Publish
// returned nil for its events, which orders "events durable" before
// "offset committed". EventProducer.PublishAsync is the pipelined form
// the node uses: one lane per partition writes whatever is queued in one
// produce request while the next gathers (one request in flight per
// partition, so one device's events stay in order), and calls done once a
// call's events are all durable. DLQProducer writes dead letters with the original
// key, value and headers plus reason and source headers. SeenProducer
// writes lorawan.gateway.seen like EventProducer (acks=all, synchronous,
// concurrent callers share batches). UplinkProducer is
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
