package watermark

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a Tracker returns wraps one of them.
var (
	// ErrFull reports that the window holds Limit records already; fetch
	// nothing more until Complete advances the committable offset.
	ErrFull = errors.New("watermark: window full")
	// ErrOutOfOrder reports a fetched offset that is not greater than
	// the previous one (or lies before the start offset).
	ErrOutOfOrder = errors.New("watermark: offset out of order")
	// ErrNotInFlight reports completing an offset that was never fetched
	// or already lies behind the committable offset.
	ErrNotInFlight = errors.New("watermark: offset not in flight")
	// ErrAlreadyComplete reports completing the same offset twice.
	ErrAlreadyComplete = errors.New("watermark: offset already complete")
	// ErrNegativeOffset reports a negative offset given to Fetch.
	ErrNegativeOffset = errors.New("watermark: negative offset")
)

// Tracker is the offset window of one partition. The zero value is not
// usable; call New.
type Tracker struct {
	// offs and done form a ring of the window's records in fetch order:
	// logical index i lives at (head+i) mod len(offs).
	offs []int64
	done []bool
	head int
	n    int

	pending int   // records fetched and not complete
	next    int64 // committable offset when the window is empty; -1 unknown
	last    int64 // newest fetched offset; -1 none yet
}

// New returns a Tracker whose window holds at most limit records (limit <
// 1 counts as 1). start is the offset the partition is read from, as
// assigned by the group; a negative start (Kafka's "first"/"last" markers)
// means unknown, and then nothing is committable until the first Fetch.
func New(limit int, start int64) *Tracker {
	if limit < 1 {
		limit = 1
	}
	t := &Tracker{offs: make([]int64, limit), done: make([]bool, limit)}
	t.Reset(start)
	return t
}

// Reset forgets every record and starts over at start (negative: unknown),
// keeping the limit.
func (t *Tracker) Reset(start int64) {
	t.head, t.n, t.pending, t.last = 0, 0, 0, -1
	if start < 0 {
		start = -1
	}
	t.next = start
}

// Limit returns the window size given to New.
func (t *Tracker) Limit() int { return len(t.offs) }

// Len returns how many records occupy the window: fetched and not yet
// behind the committable offset (complete or not).
func (t *Tracker) Len() int { return t.n }

// Pending returns how many fetched records are not complete.
func (t *Tracker) Pending() int { return t.pending }

// Full reports whether Fetch would return ErrFull.
func (t *Tracker) Full() bool { return t.n == len(t.offs) }

// Last returns the newest fetched offset, or -1 before the first Fetch.
func (t *Tracker) Last() int64 { return t.last }

// Committable returns the offset to commit: every record before it is
// complete. ok is false while it is unknown (no known start, nothing
// fetched).
func (t *Tracker) Committable() (offset int64, ok bool) {
	if t.n > 0 {
		return t.offs[t.head], true
	}
	return t.next, t.next >= 0
}

// Fetch records that the record at offset was handed out. Offsets must
// increase; gaps are allowed (compaction, transaction markers, retention).
func (t *Tracker) Fetch(offset int64) error {
	switch {
	case offset < 0:
		return fmt.Errorf("fetch %d: %w", offset, ErrNegativeOffset)
	case t.last >= 0 && offset <= t.last:
		return fmt.Errorf("fetch %d after %d: %w", offset, t.last, ErrOutOfOrder)
	case t.last < 0 && t.next >= 0 && offset < t.next:
		return fmt.Errorf("fetch %d before start %d: %w", offset, t.next, ErrOutOfOrder)
	case t.n == len(t.offs):
		return fmt.Errorf("fetch %d with %d in window: %w", offset, t.n, ErrFull)
	}
	i := t.slot(t.n)
	t.offs[i], t.done[i] = offset, false
	t.n++
	t.pending++
	t.last = offset
	return nil
}

// Complete records that the record at offset is done. advanced reports
// whether the committable offset moved.
func (t *Tracker) Complete(offset int64) (advanced bool, err error) {
	i, ok := t.find(offset)
	if !ok {
		return false, fmt.Errorf("complete %d: %w", offset, ErrNotInFlight)
	}
	s := t.slot(i)
	if t.done[s] {
		return false, fmt.Errorf("complete %d: %w", offset, ErrAlreadyComplete)
	}
	t.done[s] = true
	t.pending--
	if i != 0 {
		return false, nil
	}
	for t.n > 0 && t.done[t.head] {
		t.next = t.offs[t.head] + 1
		t.head++
		if t.head == len(t.offs) {
			t.head = 0
		}
		t.n--
	}
	return true, nil
}

// slot maps a logical window index to its ring position.
func (t *Tracker) slot(i int) int {
	s := t.head + i
	if s >= len(t.offs) {
		s -= len(t.offs)
	}
	return s
}

// find returns the logical index of offset in the window by binary search
// (offsets increase along the window).
func (t *Tracker) find(offset int64) (int, bool) {
	lo, hi := 0, t.n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if t.offs[t.slot(mid)] < offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < t.n && t.offs[t.slot(lo)] == offset {
		return lo, true
	}
	return 0, false
}
