package pebblestore

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Replica mode: the write side of a store owned by a replicated state machine
// (cluster/replication's Raft FSM).
//
// A replicated state machine decides every twin version itself, identically
// on every member, and must be able to replace the whole replicated state
// with a snapshot from another member, exact versions included. Fenced writes
// (PutTwin) cannot do either: they derive a version from the stored one, and
// the committer's version cache would go stale under a replacement it did not
// make. So replica writes carry exact records and are not fenced by the
// committer (the state machine fenced them already), and a replacement runs
// while the committer is parked.
//
// The two kinds of write must not be mixed on one store: CommitReplica and
// ResetReplica return ErrNotReplica once a fenced twin or offset write has
// been committed since Open (the version cache may then hold entries that a
// replica write would silently contradict). Events (PutEvent) may still be
// written with Commit/Submit: they are local, not replicated, and a reset
// keeps them.
//
// Keyspace addition:
//
//	sys/replica/meta      opaque bytes owned by the state machine (its applied
//	                      Raft index); absent while a reset is incomplete
//
// Durability and atomicity are those of Commit: a CommitReplica unit is one
// atomic, fsynced unit in the committer's queue order, meta included. A
// ResetReplica is not atomic (a snapshot can exceed any sensible batch): it
// deletes the meta key first and writes it last, so a crash mid-reset leaves a
// store without meta, which the state machine must treat as "restore again".

// ErrNotReplica: a replica write on a store that has taken fenced twin or
// offset writes since Open.
var ErrNotReplica = errors.New("pebblestore: store is not in replica mode")

const (
	replicaMetaKey = "sys/replica/meta"

	// opReplica marks an unfenced, pre-encoded write: the committer sets
	// it like any other entry and skips fencing and the version cache.
	opReplica writeOp = 0x80

	// resetBatchBytes bounds one batch of a reset load.
	resetBatchBytes = 4 << 20
)

// ReplicaWrite is one mutation of a replicated apply or reset: an exact twin
// record or an offset. Build it with ReplicaTwin or ReplicaOffset; the zero
// value is invalid.
type ReplicaWrite struct {
	op     writeOp // opTwin or opOffset
	tenant string
	kind   Kind
	eui    EUI
	rec    TwinRecord
	tp     TopicPartition
	offset int64
}

// ReplicaTwin stores rec exactly as given (Version included) under the twin's
// key, replacing whatever is there. The Version must be at least 1.
func ReplicaTwin(tenant string, kind Kind, eui EUI, rec TwinRecord) ReplicaWrite {
	return ReplicaWrite{op: opTwin, tenant: tenant, kind: kind, eui: eui, rec: rec}
}

// ReplicaOffset stores the next offset to consume of tp, replacing the stored
// one (also when it is lower: ordering is the state machine's business).
func ReplicaOffset(tp TopicPartition, offset int64) ReplicaWrite {
	return ReplicaWrite{op: opOffset, tp: tp, offset: offset}
}

func (w ReplicaWrite) encode() (key, value []byte, err error) {
	switch w.op {
	case opTwin:
		key, err = TwinKey(w.tenant, w.kind, w.eui)
		if err == nil && w.rec.Version == 0 {
			err = fmt.Errorf("twin %s %s: version 0: %w", w.kind, w.eui, ErrInvalid)
		}
		if err != nil {
			return nil, nil, err
		}
		value = appendTwinValue(make([]byte, 0, twinHeaderLen+len(w.rec.Snapshot)),
			w.rec.Version, w.rec.Epoch, w.rec.AppliedSeq, w.rec.Snapshot)
		return key, value, nil
	case opOffset:
		key, err = OffsetKey(w.tp)
		if err == nil && w.offset < 0 {
			err = fmt.Errorf("offset %d: %w", w.offset, ErrInvalid)
		}
		if err != nil {
			return nil, nil, err
		}
		return key, encodeOffset(w.offset), nil
	default:
		return nil, nil, fmt.Errorf("zero ReplicaWrite: %w", ErrInvalid)
	}
}

// checkReplica refuses replica writes once fenced twin or offset writes were
// committed: the committer's version cache is only known to be empty before.
func (s *Store) checkReplica() error {
	if s.metrics.twinWrites.Load() != 0 || s.metrics.offsetWrites.Load() != 0 {
		return ErrNotReplica
	}
	return nil
}

// CommitReplica writes writes, and meta unless it is nil, as one atomic unit
// through the committer and waits until it is durable. Nothing is fenced.
// If ctx ends after the unit was queued, the outcome is unknown (as Commit).
func (s *Store) CommitReplica(ctx context.Context, meta []byte, writes ...ReplicaWrite) error {
	if err := s.checkReplica(); err != nil {
		return fmt.Errorf("commit replica: %w", err)
	}
	es := make([]entry, 0, len(writes)+1)
	for i, w := range writes {
		k, v, err := w.encode()
		if err != nil {
			s.metrics.invalid.Add(1)
			return fmt.Errorf("commit replica: write %d: %w", i, err)
		}
		es = append(es, entry{op: opReplica, key: k, value: v})
	}
	if meta != nil {
		es = append(es, entry{op: opReplica, key: []byte(replicaMetaKey), value: append([]byte{}, meta...)})
	}
	if len(es) == 0 {
		return nil
	}
	ch := make(chan error, 1)
	if err := s.enqueue(ctx, &unit{entries: es, done: func(err error) { ch <- err }}); err != nil {
		return fmt.Errorf("commit replica: %w", err)
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("commit replica: outcome unknown: %w", ctx.Err())
	}
}

// enqueue queues a built unit for the committer, waiting for room
// (backpressure) until ctx ends or the store closes.
func (s *Store) enqueue(ctx context.Context, u *unit) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	select {
	case s.queue <- u: // room: no need to watch ctx
		return nil
	default:
	}
	select {
	case s.queue <- u:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
}

// ReplicaMeta returns the bytes last written as meta by CommitReplica or
// ResetReplica, or ErrNotFound: a store that never took a replica write, or
// whose last reset did not complete.
func (s *Store) ReplicaMeta(ctx context.Context) ([]byte, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, closer, err := s.db.Get([]byte(replicaMetaKey))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("replica meta: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("replica meta: %w", err)
	}
	defer func() { _ = closer.Close() }()
	return append([]byte{}, v...), nil
}

// ResetReplica replaces the replicated state (every twin of every tenant and
// every offset) with what load puts, then stores meta (required, non-nil).
// Recent-window events are kept. While it runs the committer is parked:
// units submitted meanwhile wait and are committed after the reset, on top
// of the new state.
//
// The reset is durable when ResetReplica returns nil. It is not atomic: on an
// error or a crash the store holds part of the new state and no meta (see
// ReplicaMeta); reset again before using it.
func (s *Store) ResetReplica(ctx context.Context, meta []byte, load func(put func(ReplicaWrite) error) error) error {
	if meta == nil || load == nil {
		return fmt.Errorf("reset replica: nil meta or load: %w", ErrInvalid)
	}
	if err := s.checkReplica(); err != nil {
		return fmt.Errorf("reset replica: %w", err)
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()

	// Park the committer inside an empty unit's done callback: nothing else
	// writes through it until resume is closed, and Close waits for this
	// call (acquire) before stopping it.
	parked, resume := make(chan struct{}), make(chan struct{})
	park := &unit{done: func(error) { close(parked); <-resume }}
	select {
	case s.queue <- park:
	case <-ctx.Done():
		return fmt.Errorf("reset replica: %w", ctx.Err())
	}
	select {
	case <-parked:
	case <-ctx.Done():
		go func() { <-parked; close(resume) }()
		return fmt.Errorf("reset replica: %w", ctx.Err())
	}
	defer close(resume)
	if err := s.checkReplica(); err != nil { // a fenced unit may have committed before the park
		return fmt.Errorf("reset replica: %w", err)
	}
	if err := s.clearReplicated(ctx); err != nil {
		return fmt.Errorf("reset replica: %w", err)
	}
	b := s.db.NewBatch()
	defer func() { _ = b.Close() }()
	n := 0
	put := func(w ReplicaWrite) error {
		k, v, err := w.encode()
		if err != nil {
			return err
		}
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		_ = b.Set(k, v, nil)
		if b.Len() >= resetBatchBytes {
			// The final synced batch makes these durable too: the WAL is
			// replayed in order.
			if err := s.db.Apply(b, pebble.NoSync); err != nil {
				return err
			}
			_ = b.Close()
			b = s.db.NewBatch()
		}
		return nil
	}
	if err := load(put); err != nil {
		return fmt.Errorf("reset replica: load: %w", err)
	}
	_ = b.Set([]byte(replicaMetaKey), meta, nil)
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("reset replica: %w", err)
	}
	s.log.Info("replica state reset", "writes", n)
	return nil
}

// clearReplicated deletes the meta key, every tenant's twin range and every
// offset, durably, with one range deletion per tenant.
func (s *Store) clearReplicated(ctx context.Context) error {
	b := s.db.NewBatch()
	defer func() { _ = b.Close() }()
	_ = b.Delete([]byte(replicaMetaKey), nil)
	root := []byte(tenantRoot)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: root, UpperBound: prefixEnd(root)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; {
		key := it.Key()
		tenant, _, found := cutTenant(key)
		if !found {
			ok = it.SeekGE(prefixEnd(key))
			continue
		}
		lo, hi := twinRange(tenant)
		_ = b.DeleteRange(lo, hi, nil)
		ok = it.SeekGE(prefixEnd(appendTenantPrefix(nil, tenant)))
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	offs := []byte(offsetsRoot)
	_ = b.DeleteRange(offs, prefixEnd(offs), nil)
	return s.db.Apply(b, pebble.Sync)
}

// cutTenant returns the tenant of a key under "t/".
func cutTenant(key []byte) (tenant string, rest []byte, found bool) {
	k := key[len(tenantRoot):]
	for i, c := range k {
		if c == '/' {
			return string(k[:i]), k[i+1:], true
		}
	}
	return "", nil, false
}
