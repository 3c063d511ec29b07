// Package pebblestore keeps the durable twin state of one node in Pebble:
// device-twin snapshots with their fencing versions, a short recent-event
// window per device for the API, and the Kafka offsets the stored states
// reflect. It also takes consistent views (for Raft snapshots) and
// checkpoints (for backups).
//
// It stores what devicetwin produces as opaque bytes and must not interpret
// them: no domain rules, no devicetwin, actors, streams or api imports. It
// does not replicate (Raft log and stable stores on Pebble are a sibling
// concern) and does not encrypt: encryption at rest is a vfs.FS wrapper
// passed in Config.FS, which this package uses for every file it touches.
//
// # Keyspace
//
// Every key is built and parsed by one function in keys.go. Multi-byte
// integers are big-endian so that byte order is numeric order.
//
//	key                                                      value
//	-------------------------------------------------------  ------------------------------------------
//	t/<tenant>/twin/sensor/<eui:8>                           twin record: fmt(1)=1 | version u64 |
//	t/<tenant>/twin/gateway/<eui:8>                            epoch u64 | applied seq u64 | snapshot
//	t/<tenant>/recent/<eui:8>/<time:8>/<event id>            event record: fmt(1)=1 | payload
//	sys/offsets/<topic>/<partition:4>                        next offset to consume, i64
//	sys/meta/schema                                          schema version u32 (SchemaVersion = 1)
//
// <tenant> is the customer id, 1..64 bytes of [0-9a-z._-] (the canonical
// UUID form): it cannot contain '/', so no tenant's prefix "t/<tenant>/" is
// a prefix of another's. <eui:8> is the raw EUI-64. <time:8> is the event
// time in Unix nanoseconds with the sign bit flipped, so keys sort by event
// time (and by id within one instant). <event id> is the deterministic id,
// last so that it needs no escaping; re-writing an event after a Kafka
// replay overwrites it with the same bytes.
//
// Everything a tenant owns sits under "t/<tenant>/", and every tenant-facing
// read (LoadTwin, RecentEvents) builds its key or bounds from the tenant it
// is given: guessing another tenant's EUI yields ErrNotFound or nothing, and
// a tenant string that could reach outside its prefix is ErrInvalid. Only
// ForEachTwin, Prune and Checkpoint cross tenants; they serve replication,
// retention and backup, never an API caller.
//
// # Writes: group commit
//
// All writes go through one committer goroutine. Callers hand it atomic
// units (Commit waits, Submit calls back, TrySubmit refuses when full); it
// gathers every unit queued at that moment, up to GroupCommitMaxBatch
// writes, into one Pebble batch, applies it with one WAL fsync and then
// acknowledges every unit. An fsync costs ~0.25–1 ms here regardless of
// how many writes it covers, so one fsync per write would cap a node at a
// few thousand writes/s; shared among the units that queued up during the
// previous fsync it costs microseconds per write, and the group size follows
// the load by itself. The queue is bounded (QueueSize units): Submit blocks,
// which pushes back on the Kafka consumer, and TrySubmit returns
// ErrOverloaded. No logging on this path; see Metrics.
//
// A unit is atomic: all of its writes are stored, or none. Put a frame's
// twin state, its events and the consumed offset in one unit, and a reader
// (or a restart) can never see the offset without the states it covers.
//
// # Durability
//
// With the default (NoSync false) a unit is acknowledged (Commit returns
// nil, done(nil) runs) only after its batch is in the write-ahead log and
// the WAL has been fsynced. Pebble replays the WAL on Open, so a process
// crash, SIGKILL or power loss loses no acknowledged unit, and a unit that
// was not acknowledged is either wholly present or wholly absent: WAL
// records are checksummed and a torn tail is dropped on replay. Units are
// acknowledged in queue order, and the recovered store is always a prefix
// of the committed sequence. TestCrashConsistency checks exactly this on a
// simulated crash (vfs.NewCrashableMem + CrashClone), keeping random parts
// of the unsynced data.
//
// Acknowledged state is visible to readers immediately; it can also be
// visible a moment before it is acknowledged (Pebble publishes a batch to
// the memtable before its fsync returns). Nothing downstream may act on
// such state before the acknowledgement: the Kafka offset commit, in
// particular, waits for done.
//
// NoSync acknowledges after the memtable apply: a crash can lose recent
// acknowledged units (never half a unit). It is for benchmarks and dev
// stores only. Prune writes without sync on purpose: a lost prune is redone.
//
// # Fencing
//
// Every twin record carries a Version, counting its accepted writes. A twin
// write names the version its state was derived from (TwinUpdate.
// ExpectedVersion, 0 for a new twin); the committer, the only writer,
// compares it with the stored version and, if they differ, rejects the
// whole unit with ErrStaleVersion. During a cluster topology change a grain
// can briefly be active on two members; both load version v, the first to
// commit makes it v+1 and the other's write is refused, so the stale twin
// must reload (LoadTwin) or passivate instead of overwriting newer state.
// The committer caches current versions (bounded, VersionCacheSize) to skip
// a Pebble read per write; a miss reads the stored value.
//
// Anything that writes twin keys must do so through the committer (Raft
// snapshot restore included), or the version cache would go stale.
package pebblestore
