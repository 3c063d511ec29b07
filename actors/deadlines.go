package actors

import (
	"container/heap"
	"context"
	"time"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// deadlines is the index of the time-rule deadlines of passivated twins:
// a min-heap owned by one goroutine (run). When a deadline comes, the twin
// is woken (activated from the store); its own timer then ticks it. Active
// twins keep their own timers and are not in the index.
type deadlines struct {
	s     *System
	in    chan dlSet
	fired chan struct{}
	h     dlHeap
	at    map[key]time.Time // current deadline per twin; heap entries not matching it are stale
}

type dlSet struct {
	key key
	at  time.Time
}

type dlEntry struct {
	key key
	at  time.Time
}

type dlHeap []dlEntry

func (h dlHeap) Len() int           { return len(h) }
func (h dlHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dlHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dlHeap) Push(x any)        { *h = append(*h, x.(dlEntry)) }
func (h *dlHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newDeadlines(s *System) *deadlines {
	return &deadlines{s: s, in: make(chan dlSet, 1024), fired: make(chan struct{}, 1), at: make(map[key]time.Time)}
}

// set records the next deadline of a twin that is passivating (or not
// active at start). It blocks while the index's queue is full.
func (d *deadlines) set(ctx context.Context, k key, at time.Time) error {
	select {
	case d.in <- dlSet{k, at}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *deadlines) run(ctx context.Context) {
	clock := d.s.cfg.Clock
	var timer Timer
	var armedAt time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// Arm the timer for the earliest live entry.
		for len(d.h) > 0 {
			top := d.h[0]
			if cur, ok := d.at[top.key]; !ok || !cur.Equal(top.at) {
				heap.Pop(&d.h) // stale: replaced or fired
				continue
			}
			break
		}
		if len(d.h) > 0 {
			now := clock.Now()
			if at := d.fireAt(d.h[0].at, now); armedAt.IsZero() || at.Before(armedAt) {
				armedAt = at
				wait := max(armedAt.Sub(now), 0)
				if timer == nil {
					timer = clock.AfterFunc(wait, func() {
						select {
						case d.fired <- struct{}{}:
						default:
						}
					})
				} else {
					timer.Reset(wait)
				}
				if h := d.s.cfg.Hooks.DeadlinesArmed; h != nil {
					h(armedAt)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case r := <-d.in:
			if cur, ok := d.at[r.key]; ok && cur.Equal(r.at) {
				continue
			}
			d.at[r.key] = r.at
			heap.Push(&d.h, dlEntry(r))
		case <-d.fired:
			armedAt = time.Time{}
			// Wake only twins whose deadline is due by the tick clock too;
			// the rest wait for the re-check fireAt arms.
			now := clock.Now()
			if tick := d.s.cfg.TickClock(); tick.Before(now) {
				now = tick
			}
			woken := 0
			for len(d.h) > 0 && !d.h[0].at.After(now) {
				e := heap.Pop(&d.h).(dlEntry)
				if cur, ok := d.at[e.key]; !ok || !cur.Equal(e.at) {
					continue
				}
				delete(d.at, e.key)
				d.wake(e.key)
				woken++
			}
			if h := d.s.cfg.Hooks.DeadlinesFired; h != nil {
				h(woken)
			}
		}
	}
}

// fireAt is when the timer should fire for the earliest deadline at: at
// itself while it is in the future by the timer clock, at once when it is
// due by the tick clock too, else after TickRetry (a backlog is being
// replayed and the tick clock lags), so that the index does not spin.
func (d *deadlines) fireAt(at, now time.Time) time.Time {
	switch {
	case at.After(now):
		return at
	case !at.After(d.s.cfg.TickClock()):
		return now
	}
	return now.Add(d.s.cfg.TickRetry)
}

// wake activates a twin through its shard. A sensor no longer in the
// registry is not woken.
func (d *deadlines) wake(k key) {
	if !d.s.owns(k) {
		return
	}
	if k.kind == pebblestore.KindSensor {
		if _, ok := d.s.cfg.Directory.Device(postgresEUI(k.eui)); !ok {
			return
		}
	}
	d.s.route(k, &wakeMsg{key: k})
}
