// Package replication owns the Raft group (hashicorp/raft) that replicates
// device-twin snapshots and the Kafka offsets they reflect to every Legiond
// member: the state machine (FSM) over the node's twin store, the command
// and snapshot formats, the mutual-TLS transport, proposal batching and
// forwarding to the leader, and run-time membership changes.
//
// It must not interpret twin snapshots (opaque bytes from devicetwin), place
// actors, or talk to Kafka: the caller commits a Kafka offset only after
// Propose has returned StatusApplied for the batch that carries it.
//
// # Shape
//
//	Propose(batch) ─► bounded queue ─► batcher ─► one Raft entry per group of
//	   proposals (≤ MaxInflight in flight) ─► leader: raft.Apply
//	                                       └► follower: forward over mTLS ─► leader
//	Raft log + stable store: storage/raftstore (Pebble, synced) in DataDir/raft
//	Raft snapshots: hashicorp/raft's file store in DataDir/snapshots
//	FSM: StateStore (pebblestore in replica mode), written only by the FSM
//
// # Command format (Raft log entry), version 1
//
//	'L' 'R' | version u8 (=1) | batches uvarint | batch…
//	batch:  twins uvarint | twin… | offsets uvarint | offset…
//	twin:   kind u8 | tenant len u8 | tenant | eui [8] | expected version uvarint |
//	        epoch uvarint | applied seq uvarint | snapshot len uvarint | snapshot
//	offset: topic len uvarint | topic | partition u32 (big-endian) | next offset uvarint
//
// A member that meets another version refuses the entry (ErrUnsupported) in
// its response; a new version must be rolled out to every member before any
// member proposes it. DecodeCommand never panics (FuzzDecodeCommand).
//
// # Fencing and atomicity
//
// A batch (one Propose call) is atomic: its twin updates and offsets are
// all stored, on every member, or none is. The FSM checks every twin's
// ExpectedVersion against the replicated version, including updates earlier
// in the same Raft entry; if any differs the whole batch is refused
// (StatusStale, with every stale twin and its current version), because
// storing the offsets without one of the states they cover would lose that
// frame. Batches are independent of each other: one stale batch in a Raft
// entry does not refuse its neighbours. The decision is a pure function of
// the log and the replicated state, so every member decides the same, and
// nothing panics on bad input (StatusInvalid). Accepted twins get version
// ExpectedVersion+1. Offsets never move backwards: an offset at or below
// the stored one is ignored (batches proposed concurrently can commit in
// any order).
//
// Two activations of one twin (a brief double activation during a topology
// change) both load version v; the first batch to commit makes it v+1 and
// the other is refused with the current version: the stale activation must
// reload or passivate. After ErrOutcomeUnknown, re-proposing the same update
// is safe: if the first attempt committed, the retry is refused as stale and
// reports the version the twin now has.
//
// # State store, snapshots and restarts
//
// The FSM writes each ApplyBatch call's accepted records together with the
// applied Raft index ("meta") as one atomic, fsynced unit, so the store
// always reflects a prefix of the log. Raft replays the log after its last
// snapshot on restart; the FSM skips entries at or below the stored index.
// A Raft snapshot streams a point-in-time pebblestore View (Persist runs
// concurrently with Apply), in this format:
//
//	"LGSNAP" | version u8 (=1) | applied index u64 | applied term u64 |
//	records (1 = twin, 2 = offset) | 0 | twins u64 | offsets u64 | crc32c u32
//
// Restore replaces the replicated state (pebblestore.ResetReplica) unless
// the store is already at or beyond the snapshot's index (every restart:
// raft restores its latest snapshot on start). A member whose data
// directory was wiped receives the leader's snapshot and then the log.
//
// # Transport and security
//
// One TCP port per member carries Raft's RPCs (raft.NetworkTransport over a
// TLS StreamLayer) and forwarded proposals, told apart by ALPN. TLS 1.3 is
// required and so is a client certificate that chains to the cluster's CA
// (Config.TLSServer must come from tlsconf.RequireClientCerts): a member
// without one is refused at the handshake, before any byte of either
// protocol is read. Member identities are not checked beyond the CA: every
// certificate of the cluster CA is a member certificate.
//
// # Forwarding and failures
//
// A follower forwards whole entries to the leader (a length-prefixed
// request/response protocol, see forward.go). While it is certain that an
// entry was not appended (no leader, "not leader", connection refused),
// the entry is retried until ApplyTimeout; once the leader may have
// appended it, a failure is ErrOutcomeUnknown. A leader that loses
// leadership answers its in-flight entries with ErrOutcomeUnknown too.
package replication
