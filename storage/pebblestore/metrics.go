package pebblestore

import (
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds of the commit latency histogram:
// powers of two from 64 µs to ~1 s, plus an overflow bucket. Fixed buckets
// keep recording to one atomic add, and they map onto any metrics system.
var latencyBuckets = func() [15]time.Duration {
	var b [15]time.Duration
	for i := range b {
		b[i] = (64 * time.Microsecond) << i
	}
	return b
}()

// metrics are the store's counters. The committer is the only writer of most
// of them; they are atomics so that Metrics can read them from any goroutine.
type metrics struct {
	groups, units, writes, bytes atomic.Uint64
	twinWrites, eventWrites      atomic.Uint64
	offsetWrites                 atomic.Uint64
	staleRejects, overloaded     atomic.Uint64
	invalid, commitErrors        atomic.Uint64
	versionCacheMiss             atomic.Uint64
	commitNanos                  atomic.Uint64
	largestGroup                 atomic.Uint64
	latency                      [len(latencyBuckets) + 1]atomic.Uint64
	prunedDevices                atomic.Uint64
}

func (m *metrics) observeCommit(d time.Duration) {
	m.commitNanos.Add(uint64(d))
	i := 0
	for i < len(latencyBuckets) && d > latencyBuckets[i] {
		i++
	}
	m.latency[i].Add(1)
}

// Metrics is a point-in-time copy of the store's counters. Counters only
// grow; rates are the caller's business.
type Metrics struct {
	// Groups is the number of group commits (one Pebble batch and, with
	// sync on, one WAL fsync each).
	Groups uint64
	// Units is the number of accepted Submit/Commit units; Writes and Bytes
	// count their writes and encoded key+value bytes.
	Units, Writes, Bytes uint64
	// TwinWrites, EventWrites and OffsetWrites split Writes by kind.
	TwinWrites, EventWrites, OffsetWrites uint64
	// StaleRejects counts units rejected by fencing (ErrStaleVersion).
	StaleRejects uint64
	// Overloaded counts TrySubmit calls refused with ErrOverloaded.
	Overloaded uint64
	// Invalid counts submissions refused by validation (ErrInvalid).
	Invalid uint64
	// CommitErrors counts groups whose Pebble apply failed.
	CommitErrors uint64
	// VersionCacheMisses counts fenced writes that had to read the stored
	// version from Pebble.
	VersionCacheMisses uint64
	// LargestGroup is the most writes one group commit carried.
	LargestGroup uint64
	// CommitNanos is the summed duration of group commits (batch apply
	// including fsync); CommitNanos/Groups is the mean.
	CommitNanos uint64
	// CommitLatency counts group commits by duration: bucket i holds those
	// ≤ CommitLatencyBounds[i], the last bucket the rest.
	CommitLatency []uint64
	// PrunedDevices counts devices whose recent window was trimmed by
	// Prune, each with one range deletion.
	PrunedDevices uint64
}

// CommitLatencyBounds returns the upper bounds of Metrics.CommitLatency.
func CommitLatencyBounds() []time.Duration { return append([]time.Duration(nil), latencyBuckets[:]...) }

// Metrics returns a copy of the counters. It is safe to call at any time,
// also after Close.
func (s *Store) Metrics() Metrics {
	m := &s.metrics
	out := Metrics{
		Groups:             m.groups.Load(),
		Units:              m.units.Load(),
		Writes:             m.writes.Load(),
		Bytes:              m.bytes.Load(),
		TwinWrites:         m.twinWrites.Load(),
		EventWrites:        m.eventWrites.Load(),
		OffsetWrites:       m.offsetWrites.Load(),
		StaleRejects:       m.staleRejects.Load(),
		Overloaded:         m.overloaded.Load(),
		Invalid:            m.invalid.Load(),
		CommitErrors:       m.commitErrors.Load(),
		VersionCacheMisses: m.versionCacheMiss.Load(),
		CommitNanos:        m.commitNanos.Load(),
		LargestGroup:       m.largestGroup.Load(),
		CommitLatency:      make([]uint64, len(m.latency)),
		PrunedDevices:      m.prunedDevices.Load(),
	}
	for i := range m.latency {
		out.CommitLatency[i] = m.latency[i].Load()
	}
	return out
}
