package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

type writeOp uint8

const (
	opTwin writeOp = iota + 1
	opEvent
	opOffset
)

// Write is one mutation of a Commit or Submit unit. Build it with PutTwin,
// PutEvent or PutOffset; the zero Write is invalid.
type Write struct {
	op     writeOp
	tenant string
	kind   Kind
	eui    EUI
	twin   TwinUpdate
	event  EventRecord
	tp     TopicPartition
	offset int64
}

// TwinUpdate is the new state of a twin and the version it was derived from.
type TwinUpdate struct {
	// ExpectedVersion is the Version of the TwinRecord this state was
	// computed from, or 0 if the twin had no stored state. The write is
	// rejected with ErrStaleVersion unless it is still the stored version;
	// when accepted the stored version becomes ExpectedVersion+1.
	ExpectedVersion uint64
	Epoch           uint64
	AppliedSeq      uint64
	Snapshot        []byte
}

// PutTwin stores a twin's state, fenced by u.ExpectedVersion.
func PutTwin(tenant string, kind Kind, eui EUI, u TwinUpdate) Write {
	return Write{op: opTwin, tenant: tenant, kind: kind, eui: eui, twin: u}
}

// PutEvent adds an event to its device's recent window. Events are keyed by
// (time, id), so writing the same event again after a replay is a no-op in
// effect.
func PutEvent(tenant string, ev EventRecord) Write {
	return Write{op: opEvent, tenant: tenant, event: ev}
}

// PutOffset records that the stored state reflects every record of tp below
// offset (Kafka's "next offset to read" convention). Put it in the same unit
// as the twin writes it covers: the unit is atomic.
func PutOffset(tp TopicPartition, offset int64) Write {
	return Write{op: opOffset, tp: tp, offset: offset}
}

// entry is an encoded Write: key and value are built on the submitting
// goroutine so that the single committer only checks versions and copies.
type entry struct {
	op       writeOp
	key      []byte
	value    []byte
	expected uint64 // opTwin only
}

// unit is one Submit call: atomic, acknowledged once through done.
type unit struct {
	entries []entry
	done    func(error)
}

func encodeWrites(ws []Write) ([]entry, error) {
	if len(ws) == 0 {
		return nil, fmt.Errorf("empty unit: %w", ErrInvalid)
	}
	es := make([]entry, len(ws))
	for i, w := range ws {
		var err error
		e := &es[i]
		e.op = w.op
		switch w.op {
		case opTwin:
			e.key, err = TwinKey(w.tenant, w.kind, w.eui)
			if err == nil {
				e.expected = w.twin.ExpectedVersion
				e.value = appendTwinValue(make([]byte, 0, twinHeaderLen+len(w.twin.Snapshot)),
					w.twin.ExpectedVersion+1, w.twin.Epoch, w.twin.AppliedSeq, w.twin.Snapshot)
			}
		case opEvent:
			e.key, err = EventKey(w.tenant, w.event.EUI, w.event.Time, w.event.ID)
			if err == nil {
				e.value = appendEventValue(make([]byte, 0, 1+len(w.event.Payload)), w.event.Payload)
			}
		case opOffset:
			e.key, err = OffsetKey(w.tp)
			if err == nil && w.offset < 0 {
				err = fmt.Errorf("offset %d: %w", w.offset, ErrInvalid)
			}
			e.value = encodeOffset(w.offset)
		default:
			err = fmt.Errorf("write %d: zero Write: %w", i, ErrInvalid)
		}
		if err != nil {
			return nil, err
		}
	}
	return es, nil
}

// Submit queues writes as one atomic unit and returns; done is called
// exactly once, from the committer goroutine, after the unit is durable (nil)
// or rejected (ErrStaleVersion, or a Pebble error for the whole group). done
// must be quick and must not block: it runs on the write path of every other
// twin. Submit copies everything it needs before returning, so the caller may
// reuse the writes' byte slices.
//
// Backpressure: when the queue is full Submit blocks until there is room,
// ctx ends, or the store closes. Blocking (rather than failing) is the
// default because the producer upstream is the Kafka consumer, which must
// slow down rather than drop; TrySubmit is the non-blocking variant.
//
// If Submit returns an error, done is never called.
func (s *Store) Submit(ctx context.Context, writes []Write, done func(error)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("submit: %w", err) // never queue for a caller who gave up
	}
	u, err := s.newUnit(writes, done)
	if err != nil {
		return err
	}
	if err := s.enqueue(ctx, u); err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	return nil
}

// TrySubmit is Submit without waiting: when the queue is full it returns
// ErrOverloaded (and counts it), and done is not called.
func (s *Store) TrySubmit(writes []Write, done func(error)) error {
	u, err := s.newUnit(writes, done)
	if err != nil {
		return err
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	select {
	case s.queue <- u:
		return nil
	default:
		s.metrics.overloaded.Add(1)
		return fmt.Errorf("submit: %w", ErrOverloaded)
	}
}

// Commit submits writes as one atomic unit and waits until it is durable.
// If ctx ends after the unit was queued, Commit returns the ctx error but the
// unit may still commit: the outcome is unknown, and a twin should reload its
// state (LoadTwin) before writing again.
func (s *Store) Commit(ctx context.Context, writes ...Write) error {
	ch := make(chan error, 1)
	if err := s.Submit(ctx, writes, func(err error) { ch <- err }); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("commit: outcome unknown: %w", ctx.Err())
	}
}

func (s *Store) newUnit(writes []Write, done func(error)) (*unit, error) {
	if done == nil {
		s.metrics.invalid.Add(1)
		return nil, fmt.Errorf("submit: nil done: %w", ErrInvalid)
	}
	es, err := encodeWrites(writes)
	if err != nil {
		s.metrics.invalid.Add(1)
		return nil, fmt.Errorf("submit: %w", err)
	}
	return &unit{entries: es, done: done}, nil
}

// committer owns the Pebble batch and the version cache. It is the only
// goroutine that writes twin, event or offset keys, which is what makes the
// version check-then-write race free.
type committer struct {
	s        *Store
	maxDelay time.Duration
	maxBatch int
	sync     *pebble.WriteOptions
	timer    *time.Timer

	// versions caches the stored version of recently written twins
	// (committed state only). Bounded by cacheCap.
	versions map[string]uint64
	cacheCap int
	// pending holds the versions written by the group being built, which
	// are not in Pebble yet; merged into versions after the apply.
	pending map[string]uint64
	undo    []undoEntry
	group   []*unit
	carry   *unit   // received but did not fit the last group: starts the next
	failed  []error // per unit of group: nil or the unit's rejection
}

type undoEntry struct {
	key  string
	prev uint64
	had  bool
}

func (c *committer) run() {
	defer close(c.s.stopped)
	for {
		if u := c.carry; u != nil {
			c.carry = nil
			c.gatherAndCommit(u, true)
			continue
		}
		select {
		case u := <-c.s.queue:
			c.gatherAndCommit(u, true)
		case <-c.s.quit:
			// Close has made sure no Submit is in flight: commit what is
			// queued, then stop.
			for {
				if u := c.carry; u != nil {
					c.carry = nil
					c.gatherAndCommit(u, false)
					continue
				}
				select {
				case u := <-c.s.queue:
					c.gatherAndCommit(u, false)
				default:
					return
				}
			}
		}
	}
}

// gatherAndCommit collects units after first until the queue is dry (and,
// if linger, maxDelay since first has passed) or the next unit would take
// the group past maxBatch writes (it is carried to the next group), then
// commits them as one batch and acknowledges them.
func (c *committer) gatherAndCommit(first *unit, linger bool) {
	c.group = append(c.group[:0], first)
	n := len(first.entries)
	var deadline time.Time
	if linger && c.maxDelay > 0 {
		deadline = time.Now().Add(c.maxDelay)
	}
	add := func(u *unit) bool {
		if n+len(u.entries) > c.maxBatch {
			c.carry = u
			return false
		}
		c.group = append(c.group, u)
		n += len(u.entries)
		return true
	}
gather:
	for n < c.maxBatch {
		select {
		case u := <-c.s.queue:
			if !add(u) {
				break gather
			}
			continue
		default:
		}
		if deadline.IsZero() {
			break
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		c.timer.Reset(wait)
		select {
		case u := <-c.s.queue:
			c.timer.Stop()
			if !add(u) {
				break gather
			}
		case <-c.timer.C:
			break gather
		case <-c.s.quit:
			c.timer.Stop()
			break gather
		}
	}
	c.commit()
}

func (c *committer) commit() {
	m := &c.s.metrics
	b := c.s.db.NewBatch()
	defer func() { _ = b.Close() }()
	c.failed = c.failed[:0]
	var units, writes, bytes, twins, events, offsets uint64
	for _, u := range c.group {
		if err := c.check(u); err != nil {
			c.failed = append(c.failed, err)
			continue
		}
		c.failed = append(c.failed, nil)
		for _, e := range u.entries {
			// Set copies key and value into the batch.
			_ = b.Set(e.key, e.value, nil)
			bytes += uint64(len(e.key) + len(e.value))
			switch e.op {
			case opTwin:
				twins++
			case opEvent:
				events++
			case opOffset:
				offsets++
			}
		}
		units++
		writes += uint64(len(u.entries))
	}
	var err error
	if !b.Empty() {
		start := time.Now()
		err = c.s.db.Apply(b, c.sync)
		if err != nil {
			m.commitErrors.Add(1)
			err = fmt.Errorf("commit group: %w", err)
			clear(c.pending) // nothing of the group is stored
		} else {
			m.observeCommit(time.Since(start))
			m.groups.Add(1)
			m.units.Add(units)
			m.writes.Add(writes)
			m.bytes.Add(bytes)
			m.twinWrites.Add(twins)
			m.eventWrites.Add(events)
			m.offsetWrites.Add(offsets)
			if writes > m.largestGroup.Load() { // the committer is the only writer
				m.largestGroup.Store(writes)
			}
			c.publishVersions()
		}
	}
	for i, u := range c.group {
		if f := c.failed[i]; f != nil {
			u.done(f)
		} else {
			u.done(err)
		}
		c.group[i] = nil
	}
}

// check fences the twin writes of u against the stored (or pending) version
// and, if all match, records the new versions in pending. A unit is rejected
// as a whole: writing half of a unit would break the atomicity of offsets
// with the states they reflect.
func (c *committer) check(u *unit) error {
	c.undo = c.undo[:0]
	for _, e := range u.entries {
		if e.op != opTwin {
			continue
		}
		cur, err := c.version(e.key)
		if err == nil && cur != e.expected {
			c.s.metrics.staleRejects.Add(1)
			err = fmt.Errorf("twin %x: derived from version %d, stored %d: %w", e.key, e.expected, cur, ErrStaleVersion)
		}
		if err != nil {
			for i := len(c.undo) - 1; i >= 0; i-- {
				if x := c.undo[i]; x.had {
					c.pending[x.key] = x.prev
				} else {
					delete(c.pending, x.key)
				}
			}
			return err
		}
		prev, had := c.pending[string(e.key)]
		k := string(e.key)
		c.undo = append(c.undo, undoEntry{key: k, prev: prev, had: had})
		c.pending[k] = e.expected + 1
	}
	return nil
}

// version returns the version a twin write must name: the group's own
// pending write, else the committed version (cached or read from Pebble);
// 0 for a twin without state.
func (c *committer) version(key []byte) (uint64, error) {
	if v, ok := c.pending[string(key)]; ok {
		return v, nil
	}
	if v, ok := c.versions[string(key)]; ok {
		return v, nil
	}
	c.s.metrics.versionCacheMiss.Add(1)
	val, closer, err := c.s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read twin version: %w", err)
	}
	defer func() { _ = closer.Close() }()
	return twinValueVersion(val)
}

// publishVersions moves the committed group's versions into the cache,
// evicting arbitrary entries when it is full (a miss only costs a Get).
func (c *committer) publishVersions() {
	if over := len(c.versions) + len(c.pending) - c.cacheCap; over > 0 {
		for k := range c.versions {
			delete(c.versions, k)
			if over--; over <= 0 {
				break
			}
		}
	}
	for k, v := range c.pending {
		c.versions[k] = v
	}
	clear(c.pending)
}

// TwinWrite returns the fields of a PutTwin write; ok is false for other
// kinds. It lets a replicated store (cluster/replication) route a unit's
// twin writes through consensus and keep the rest local.
func (w Write) TwinWrite() (tenant string, kind Kind, eui EUI, u TwinUpdate, ok bool) {
	if w.op != opTwin {
		return "", 0, EUI{}, TwinUpdate{}, false
	}
	return w.tenant, w.kind, w.eui, w.twin, true
}
