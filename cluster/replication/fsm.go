package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// fsm is the Raft state machine: the replicated twin records and offsets in
// the StateStore. hashicorp/raft calls ApplyBatch, Snapshot and Restore from
// one goroutine, never concurrently, so that goroutine owns every field
// above the atomics; FSMSnapshot.Persist runs concurrently with ApplyBatch
// and reads only its own pebblestore View.
type fsm struct {
	store   StateStore
	log     *slog.Logger
	onFatal func(error)
	fatal   sync.Once

	applied, appliedTerm uint64 // last log applied to the store (its meta)
	// needRestore: the store has state but no meta (a reset did not
	// complete); only a Restore may touch it.
	needRestore bool
	broken      error // a store write failed: stop applying
	versions    map[twinID]uint64
	versionCap  int
	offsets     map[pebblestore.TopicPartition]int64
	pending     map[twinID]uint64
	pendingOff  map[pebblestore.TopicPartition]int64
	writes      []pebblestore.ReplicaWrite
	// assign is the applied partition assignment; nextAssign the one an
	// ApplyBatch in progress accepted. box publishes it.
	assign     Assignment
	nextAssign *Assignment
	box        *assignBox

	m fsmMetrics
}

type fsmMetrics struct {
	applied                             atomic.Uint64 // mirror of fsm.applied
	batchesApplied, batchesStale        atomic.Uint64
	batchesInvalid, commandsInvalid     atomic.Uint64
	twinWrites, replayedLogs            atomic.Uint64
	restores, restoresSkipped, failures atomic.Uint64
}

// applyResult is what ApplyBatch returns for one command log: what the
// leader's ApplyFuture.Response() yields.
type applyResult struct {
	responses []Response
	err       error
}

// Meta stored with every replica write: the log position the store reflects
// and the partition assignment at that position.
//
//	fmt u8 (=2) | applied index u64 | applied term u64 | assignment
//
// Format 1 (no assignment) is still read.
const (
	metaV1      = 1
	metaVersion = 2
)

func encodeMeta(index, term uint64, a Assignment) []byte {
	b := make([]byte, 0, 32)
	b = append(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, index)
	b = binary.BigEndian.AppendUint64(b, term)
	return appendAssignment(b, a)
}

func decodeMeta(b []byte) (index, term uint64, a Assignment, err error) {
	if len(b) < 17 || (b[0] != metaVersion && b[0] != metaV1) || (b[0] == metaV1 && len(b) != 17) {
		return 0, 0, a, fmt.Errorf("replica meta %x: %w", b, ErrUnsupported)
	}
	index, term = binary.BigEndian.Uint64(b[1:9]), binary.BigEndian.Uint64(b[9:17])
	if b[0] == metaVersion {
		r := reader{b: b[17:]}
		a = readAssignment(&r)
		if r.err != nil || len(r.b) != 0 {
			return 0, 0, Assignment{}, fmt.Errorf("replica meta assignment: %w", errCorrupt)
		}
	}
	return index, term, a, nil
}

var errStop = errors.New("stop")

func newFSM(ctx context.Context, store StateStore, log *slog.Logger, versionCap int, onFatal func(error), box *assignBox) (*fsm, error) {
	f := &fsm{
		box:        box,
		store:      store,
		log:        log,
		onFatal:    onFatal,
		versions:   make(map[twinID]uint64),
		versionCap: versionCap,
		pending:    make(map[twinID]uint64),
		pendingOff: make(map[pebblestore.TopicPartition]int64),
	}
	meta, err := store.ReplicaMeta(ctx)
	switch {
	case errors.Is(err, pebblestore.ErrNotFound):
		empty, err := storeEmpty(ctx, store)
		if err != nil {
			return nil, fmt.Errorf("open fsm: %w", err)
		}
		f.needRestore = !empty
	case err != nil:
		return nil, fmt.Errorf("open fsm: %w", err)
	default:
		if f.applied, f.appliedTerm, f.assign, err = decodeMeta(meta); err != nil {
			return nil, fmt.Errorf("open fsm: %w", err)
		}
		f.box.set(f.assign)
	}
	if f.offsets, err = store.Offsets(ctx); err != nil {
		return nil, fmt.Errorf("open fsm: %w", err)
	}
	f.m.applied.Store(f.applied)
	return f, nil
}

func storeEmpty(ctx context.Context, store StateStore) (bool, error) {
	empty := true
	err := store.ForEachTwin(ctx, func(pebblestore.TwinEntry) error { empty = false; return errStop })
	if err != nil && !errors.Is(err, errStop) {
		return false, err
	}
	offs, err := store.Offsets(ctx)
	if err != nil {
		return false, err
	}
	return empty && len(offs) == 0, nil
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: it decides every batch of every
// command log (fencing against the replicated versions, the batch's own
// earlier writes included), then stores all accepted writes and the new
// applied index as one atomic, fsynced unit.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if err := f.usable(); err != nil {
		for i := range out {
			out[i] = &applyResult{err: err}
		}
		return out
	}
	ctx := context.Background()
	f.writes = f.writes[:0]
	last, lastTerm := f.applied, f.appliedTerm
	for i, l := range logs {
		if l.Index <= f.applied {
			// Already in the store: raft replays the log after the last
			// snapshot on restart, and the store is ahead of it.
			f.m.replayedLogs.Add(1)
			out[i] = &applyResult{err: fmt.Errorf("log %d replayed: %w", l.Index, ErrOutcomeUnknown)}
			continue
		}
		last, lastTerm = l.Index, l.Term
		if l.Type != raft.LogCommand {
			continue // configuration changes: raft's business
		}
		res, err := f.decide(ctx, l)
		if err != nil {
			return f.fail(out, err)
		}
		out[i] = res
	}
	if last == f.applied {
		return out
	}
	assign := f.assign
	if f.nextAssign != nil {
		assign = *f.nextAssign
	}
	if err := f.store.CommitReplica(ctx, encodeMeta(last, lastTerm, assign), f.writes...); err != nil {
		return f.fail(out, err)
	}
	f.applied, f.appliedTerm = last, lastTerm
	if f.nextAssign != nil {
		f.assign, f.nextAssign = assign, nil
		f.box.set(assign)
	}
	f.m.applied.Store(last)
	f.m.twinWrites.Add(uint64(len(f.pending)))
	f.publish()
	return out
}

// decide computes the responses of one command log and queues its writes.
func (f *fsm) decide(ctx context.Context, l *raft.Log) (*applyResult, error) {
	if isAssignCommand(l.Data) {
		return f.decideAssign(l), nil
	}
	batches, err := DecodeCommand(l.Data)
	if err != nil {
		f.m.commandsInvalid.Add(1)
		return &applyResult{err: err}, nil //nolint:nilerr // a malformed command is answered in its result, not fatal to the FSM
	}
	rs := make([]Response, len(batches))
	for j := range batches {
		b := &batches[j]
		r := &rs[j]
		r.Index = l.Index
		if err := b.Validate(); err != nil {
			f.m.batchesInvalid.Add(1)
			r.Status, r.Reason = StatusInvalid, err.Error()
			continue
		}
		for k := range b.Twins {
			u := &b.Twins[k]
			cur, err := f.version(ctx, twinID{u.Tenant, u.Kind, u.EUI})
			if err != nil {
				return nil, err
			}
			if cur != u.ExpectedVersion {
				r.Stale = append(r.Stale, StaleTwin{Tenant: u.Tenant, Kind: u.Kind, EUI: u.EUI, Expected: u.ExpectedVersion, Current: cur})
			}
		}
		if len(r.Stale) > 0 {
			f.m.batchesStale.Add(1)
			r.Status = StatusStale
			continue
		}
		for k := range b.Twins {
			u := &b.Twins[k]
			f.pending[twinID{u.Tenant, u.Kind, u.EUI}] = u.ExpectedVersion + 1
			f.writes = append(f.writes, pebblestore.ReplicaTwin(u.Tenant, u.Kind, u.EUI, pebblestore.TwinRecord{
				Version: u.ExpectedVersion + 1, Epoch: u.Epoch, AppliedSeq: u.AppliedSeq,
				Snapshot: u.Snapshot, // aliases l.Data: CommitReplica copies before returning
			}))
		}
		for _, o := range b.Offsets {
			// Offsets never move backwards: batches proposed concurrently
			// may commit in any order.
			tp := pebblestore.TopicPartition{Topic: o.Topic, Partition: o.Partition}
			cur, ok := f.pendingOff[tp]
			if !ok {
				cur, ok = f.offsets[tp]
			}
			if ok && o.Next <= cur {
				continue
			}
			f.pendingOff[tp] = o.Next
			f.writes = append(f.writes, pebblestore.ReplicaOffset(tp, o.Next))
		}
		f.m.batchesApplied.Add(1)
		r.Status = StatusApplied
	}
	return &applyResult{responses: rs}, nil
}

// decideAssign accepts an assignment change computed from the current
// epoch (compare-and-set) and refuses a stale one.
func (f *fsm) decideAssign(l *raft.Log) *applyResult {
	expected, owners, err := decodeAssignCommand(l.Data)
	if err != nil {
		f.m.commandsInvalid.Add(1)
		return &applyResult{err: err}
	}
	cur := f.assign
	if f.nextAssign != nil {
		cur = *f.nextAssign
	}
	if expected != cur.Epoch {
		return &applyResult{responses: []Response{{Status: StatusStale, Index: l.Index}}}
	}
	f.nextAssign = &Assignment{Epoch: cur.Epoch + 1, Owners: owners}
	return &applyResult{responses: []Response{{Status: StatusApplied, Index: l.Index}}}
}

// version returns the replicated version of a twin: this ApplyBatch's own
// write, else the cache, else the store (0 for a twin without state).
func (f *fsm) version(ctx context.Context, id twinID) (uint64, error) {
	if v, ok := f.pending[id]; ok {
		return v, nil
	}
	if v, ok := f.versions[id]; ok {
		return v, nil
	}
	rec, err := f.store.LoadTwin(ctx, id.tenant, id.kind, id.eui)
	switch {
	case errors.Is(err, pebblestore.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	f.cacheVersion(id, rec.Version)
	return rec.Version, nil
}

func (f *fsm) cacheVersion(id twinID, v uint64) {
	if len(f.versions) >= f.versionCap {
		for k := range f.versions { // evict an arbitrary tenth: a miss costs one read
			delete(f.versions, k)
			if len(f.versions) < f.versionCap*9/10 {
				break
			}
		}
	}
	f.versions[id] = v
}

// publish moves the committed pending state into the caches.
func (f *fsm) publish() {
	for id, v := range f.pending {
		f.cacheVersion(id, v)
	}
	for tp, off := range f.pendingOff {
		f.offsets[tp] = off
	}
	clear(f.pending)
	clear(f.pendingOff)
	clear(f.writes) // drop references to log data
	f.writes = f.writes[:0]
}

func (f *fsm) usable() error {
	switch {
	case f.broken != nil:
		return fmt.Errorf("%w: %w", ErrState, f.broken)
	case f.needRestore:
		return fmt.Errorf("store holds an incomplete restore: %w", ErrState)
	}
	return nil
}

// fail stops the state machine after a store failure: the member's state
// can no longer follow the log, so it must leave the group rather than
// serve or vote on diverging state (onFatal shuts the group down; a restart
// replays the log from the last applied index).
func (f *fsm) fail(out []any, err error) []any {
	f.broken = err
	f.nextAssign = nil
	clear(f.pending)
	clear(f.pendingOff)
	f.writes = f.writes[:0]
	f.m.failures.Add(1)
	f.fatal.Do(func() {
		f.log.Error("replicated state store failed; leaving the raft group", "err", err)
		if f.onFatal != nil {
			go f.onFatal(err)
		}
	})
	for i := range out {
		out[i] = &applyResult{err: fmt.Errorf("%w: %w", ErrState, err)}
	}
	return out
}

// Snapshot implements raft.FSM: a point-in-time view of the store, which
// reflects exactly the logs applied so far (ApplyBatch returns only after
// its unit is durable and visible).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.usable(); err != nil {
		return nil, err
	}
	v, err := f.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return &fsmSnapshot{view: v, applied: f.applied, term: f.appliedTerm, assign: f.assign.Clone()}, nil
}

// Restore implements raft.FSM: it replaces the replicated state with the
// snapshot's, unless the store already reflects the snapshot's log position
// or a later one (a restart: raft restores its latest snapshot on start, and
// the durable store is at least that far), which makes restarts cheap.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	sr := newSnapshotReader(rc)
	applied, term, assign, err := sr.header()
	if err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	if !f.needRestore && f.broken == nil && f.applied >= applied {
		f.m.restoresSkipped.Add(1)
		f.log.Info("raft snapshot restore skipped: the store is at or beyond it",
			"snapshot_index", applied, "store_index", f.applied)
		return nil
	}
	ctx := context.Background()
	err = f.store.ResetReplica(ctx, encodeMeta(applied, term, assign), func(put func(pebblestore.ReplicaWrite) error) error {
		return sr.records(put)
	})
	if err != nil {
		f.needRestore = true
		return fmt.Errorf("fsm restore: %w", err)
	}
	offs, err := f.store.Offsets(ctx)
	if err != nil {
		f.broken = err
		return fmt.Errorf("fsm restore: %w", err)
	}
	f.offsets = offs
	clear(f.versions)
	f.needRestore = false
	f.applied, f.appliedTerm = applied, term
	f.assign = assign
	f.box.set(assign)
	f.m.applied.Store(applied)
	f.m.restores.Add(1)
	f.log.Info("raft snapshot restored", "index", applied, "twins", sr.twins, "offsets", sr.offs)
	return nil
}

// fsmSnapshot streams a pebblestore View. Persist runs concurrently with
// ApplyBatch; the view isolates it.
type fsmSnapshot struct {
	view          *pebblestore.View
	applied, term uint64
	assign        Assignment
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(context.Background(), sink, s.view, s.applied, s.term, s.assign); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { _ = s.view.Close() }
