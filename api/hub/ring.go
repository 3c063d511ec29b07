package hub

import (
	"sort"
	"time"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// entry is one record of a partition as the hub keeps it. ev is nil for a
// record that did not decode: it keeps its offset so that positions stay
// exact, and matches no filter.
type entry struct {
	off  int64
	at   time.Time // arrival, for RingMaxAge
	ev   *twinv1.TwinEvent
	kind Kinds
}

// ring is a bounded FIFO of entries with increasing offsets. It is not
// safe for concurrent use: its partition's mutex guards it.
type ring struct {
	buf   []entry
	start int // index of the oldest entry
	n     int
}

func newRing(size int) ring {
	// Grow on demand: most partitions never fill a large ring.
	return ring{buf: make([]entry, 0, min(size, 1024))}
}

// at returns the i-th oldest entry.
func (r *ring) at(i int) *entry { return &r.buf[(r.start+i)%len(r.buf)] }

// push appends e, evicting the oldest entry when the ring holds size.
func (r *ring) push(e entry, size int) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = e
		r.n++
		return
	}
	if len(r.buf) < size {
		// Grow: unroll into a bigger slice, oldest first.
		nb := make([]entry, 0, min(size, max(2*len(r.buf), 1024)))
		for i := 0; i < r.n; i++ {
			nb = append(nb, *r.at(i))
		}
		nb = append(nb, e)
		r.buf, r.start, r.n = nb[:cap(nb)], 0, r.n+1
		clear(r.buf[r.n:])
		return
	}
	// Full: overwrite the oldest.
	r.buf[r.start] = e
	r.start = (r.start + 1) % len(r.buf)
}

// evictOlder drops entries that arrived before cutoff.
func (r *ring) evictOlder(cutoff time.Time) {
	for r.n > 0 && r.at(0).at.Before(cutoff) {
		*r.at(0) = entry{}
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
}

// first returns the offset of the oldest entry; ok is false when empty.
func (r *ring) first() (int64, bool) {
	if r.n == 0 {
		return 0, false
	}
	return r.at(0).off, true
}

// search returns the index of the first entry with offset ≥ off (n when
// none).
func (r *ring) search(off int64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).off >= off })
}

// copyRange appends to dst the entries with from ≤ offset < to, at most
// limit of them, oldest first.
func (r *ring) copyRange(dst []entry, from, to int64, limit int) []entry {
	for i := r.search(from); i < r.n && len(dst) < limit; i++ {
		e := r.at(i)
		if e.off >= to {
			break
		}
		dst = append(dst, *e)
	}
	return dst
}
