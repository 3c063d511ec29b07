// Package watermark decides which Kafka offset of a partition may be
// committed: records are fetched in offset order, completed in any order,
// and the committable offset is the first offset whose record is not yet
// complete (or one past the last fetched record when all are complete).
// Committing it tells the group to resume there, so nothing before an
// incomplete record is ever skipped.
//
// A Tracker is bounded: it holds at most Limit records between the
// committable offset and the newest fetched one, and Fetch refuses more
// (ErrFull), which is how the consumer applies backpressure per partition.
//
// The package is pure: no goroutines, no locks, no clock, no I/O. A Tracker
// belongs to the one goroutine that owns its partition.
package watermark
