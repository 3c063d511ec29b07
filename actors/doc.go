// Package actors wires the pure device-twin core (package devicetwin) into
// protoactor-go actors: one actor per sensor or gateway, identified by its
// kind and EUI (so it can become a cluster grain), with activation from the
// durable store, passivation, one-for-one supervision, deadline timers and
// the commit protocol that makes every input's effects durable before the
// input is acknowledged.
//
// # Shape
//
// A System owns Config.Shards router actors. Each shard owns the directory
// of its active twins (spawning, forwarding, passivation handshake) and
// supervises them one-for-one: a panic in one twin restarts that twin
// only, the input that panicked is rejected as "twin_panic", and the new
// instance reloads its state from the store. Twins run on a small pool of
// long-lived goroutines (protoactor's default starts one per mailbox run).
//
// HandleUplink resolves the frame's DevAddr through the Directory port to
// candidate devices and hands it to the first candidate's twin; a twin
// whose session MIC does not verify passes the frame to the next candidate
// untouched. The sensor twin applies the frame with devicetwin.ApplyFrame
// and forwards GatewayUplinkSeen to the receiving gateway's twin; the
// frame completes when both are durable.
//
// # Commit protocol (docs/architecture.md has the full page)
//
// For every applied input: (1) its events are published: by a batcher
// that publishes the events of many twins in one EventSink.Publish call,
// or with Config.AsyncPublish handed straight to an AsyncEventSink
// (streams.EventProducer batches them per partition); acknowledgements may come back in any order, and
// an input counts as published only with its own; (2) once the
// head of a twin's ordered list of inputs is published, the twin submits
// one StateStore unit: the snapshot after that prefix, fenced by the
// version it derives from, plus the events for the recent window; (3) when
// the unit is durable the inputs complete (done(nil), or the rejection
// reason). Twins pipeline: they keep applying while earlier inputs are in
// flight. A failed publish or persist reloads the twin from the store and
// re-applies, in order, what was not durable; after MaxApplyAttempts the
// input goes back with ErrRetry.
//
// # Time
//
// Each active twin keeps one timer at the earlier of its next deadline
// (devicetwin NextDeadline: SENSOR_OFFLINE, FLUSH_OVERDUE, GATEWAY_OFFLINE)
// and the end of its idle period. A passivated twin's deadline moves to an
// in-memory index (a min-heap owned by one goroutine) that wakes the twin
// when it comes; at start the System scans the store once to fill it. The
// Clock port drives the timers and idle periods; Config.TickClock gives the
// time rules their "now" (the caller holds it at event time while it
// replays a backlog, see System.StreamTime) and a deadline ticks only when
// it is due by both. The core never reads a clock.
//
// # What it must not do
//
// Decide domain rules (devicetwin does), talk to Kafka (streams) or the
// registry (the Directory port is the registry cache), open stores itself,
// or log per input (it counts, in Prometheus metrics registered on the
// injected Registerer). It must not import streams or api.
package actors
