// Package raftstore is the durable Raft log and stable store of one Legiond
// member: it implements hashicorp/raft's raft.LogStore and raft.StableStore on
// its own Pebble instance, in its own directory, separate from the twin store
// (storage/pebblestore) so that log truncation and compaction never compete
// with twin writes for one memtable.
//
// # Durability
//
// Every write (StoreLog, StoreLogs, DeleteRange, Set, SetUint64) is applied
// with pebble.Sync: it returns only after the write-ahead log is fsynced. Raft
// acknowledges an AppendEntries RPC and counts a vote only after the store
// returns, so anything it has promised survives a process crash, SIGKILL or
// power loss. NoSync is deliberately not configurable. TestCrashSyncedSurvive
// checks this on a simulated power loss (vfs.NewCrashableMem + CrashClone).
//
// # Keyspace
//
//	key                       value
//	------------------------  ---------------------------------------------
//	l<index u64 big-endian>   log entry, see below
//	s<stable key bytes>       stable value, verbatim (CurrentTerm, LastVote…)
//
// Big-endian indexes make byte order numeric order, so FirstIndex and
// LastIndex are one iterator seek each, and DeleteRange (inclusive at both
// ends, as raft expects) is one range tombstone.
//
// A log entry is encoded compactly in binary (encodeLog):
//
//	fmt u8 (=1) | type u8 | term uvarint | appended_at varint (Unix ns, 0 = zero time)
//	| data length uvarint | data | extensions length uvarint | extensions
//
// The index is not repeated in the value: it is the key. Unknown format
// bytes, truncated values and trailing garbage are reported as ErrCorrupt,
// never a panic (FuzzDecodeLog).
//
// # Errors
//
// Stable-store lookups of a missing key return ErrKeyNotFound, whose text is
// exactly "not found": hashicorp/raft compares the error text, so this error
// is never wrapped. A missing log entry is raft.ErrLogNotFound.
//
// The package must not interpret log data (commands belong to
// cluster/replication) and must not be shared with the twin store.
// Encryption at rest is a vfs.FS wrapper passed in Config.FS.
package raftstore
