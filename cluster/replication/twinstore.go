package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// TwinStore is the twin actors' state store on a cluster member
// (actors.StateStore): twin states go through the Raft group (fenced by
// version, stored on every member by the FSM), events to the member's own
// recent window (local, not replicated), and reads come from the local
// replica, which holds every twin of the cluster.
//
// A twin's version on this member's replica can trail the leader's by the
// replication delay; a twin activated here right after a move may therefore
// load a version that is already stale. Its first write is then refused
// (ErrStaleVersion) and the twin reloads and re-applies, which is the
// fencing the actors already do for a double activation.
type TwinStore struct {
	Group *Group
	Store *pebblestore.Store
	// SkipEvents drops the units' event writes: the member fills its
	// recent-event window another way (cmd's event view of twin.events).
	SkipEvents bool
}

// LoadTwin reads the local replica.
func (s TwinStore) LoadTwin(ctx context.Context, tenant string, kind pebblestore.Kind, eui pebblestore.EUI) (pebblestore.TwinRecord, error) {
	return s.Store.LoadTwin(ctx, tenant, kind, eui)
}

// ForEachTwin walks the local replica.
func (s TwinStore) ForEachTwin(ctx context.Context, fn func(pebblestore.TwinEntry) error) error {
	return s.Store.ForEachTwin(ctx, fn)
}

// Submit proposes the unit's twin writes as one batch and writes its
// events locally; done is called once both are durable or either failed.
func (s TwinStore) Submit(ctx context.Context, writes []pebblestore.Write, done func(error)) error {
	var b Batch
	var local []pebblestore.Write
	for _, w := range writes {
		tenant, kind, eui, u, ok := w.TwinWrite()
		if !ok {
			if !s.SkipEvents {
				local = append(local, w)
			}
			continue
		}
		b.Twins = append(b.Twins, TwinUpdate{Tenant: tenant, Kind: kind, EUI: eui,
			ExpectedVersion: u.ExpectedVersion, Epoch: u.Epoch, AppliedSeq: u.AppliedSeq,
			Snapshot: append([]byte(nil), u.Snapshot...)}) // the caller may reuse its bytes once Submit returns
	}
	if len(b.Twins) == 0 {
		if len(local) == 0 {
			done(nil)
			return nil
		}
		return s.Store.Submit(ctx, local, done)
	}
	if err := b.Validate(); err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		errs []error
		left = 1 // the proposal, plus the local unit if any
	)
	finish := func(err error) {
		mu.Lock()
		if err != nil {
			errs = append(errs, err)
		}
		left--
		last := left == 0
		mu.Unlock()
		if last {
			done(errors.Join(errs...))
		}
	}
	if len(local) > 0 {
		left++
		if err := s.Store.Submit(ctx, local, finish); err != nil {
			return err // done is not called: nothing was proposed yet
		}
	}
	go func() {
		_, err := s.Group.Propose(ctx, b)
		if err != nil {
			err = fmt.Errorf("replicate twin state: %w", err)
		}
		finish(err)
	}()
	return nil
}

// CommitOffsets replicates consumed offsets (the Kafka consumer's commit
// sink). Call it only for offsets whose records' twin states were committed
// already: then the replicated state always covers the replicated offsets.
func (s TwinStore) CommitOffsets(ctx context.Context, offsets []Offset) error {
	if len(offsets) == 0 {
		return nil
	}
	_, err := s.Group.Propose(ctx, Batch{Offsets: offsets})
	return err
}
