package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/legionelladossier/legiond/cluster/replication"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// Partitions is the port RunMember drives: the node adapts its Kafka
// consumer and twins to it. Calls come from one goroutine, never
// concurrently.
type Partitions interface {
	// Assign starts serving partition index partition of every input
	// topic. starts holds, per topic, the stored next offset of that
	// partition (a topic without a stored offset is absent: start where
	// the node's policy says). An error means it is not served; it is
	// retried on the next tick.
	Assign(ctx context.Context, partition int, starts map[string]int64) error
	// Revoke stops serving partition: when it returns nil, no frame of
	// it is processed or committed any more. An error means it may still
	// be served; it is retried on the next tick.
	Revoke(ctx context.Context, partition int) error
}

// MemberView is the port RunMember reads the replicated assignment, the
// lease and the stored offsets through. A node combines its
// *replication.Group (the first three) and its replicated
// *pebblestore.Store (Offsets).
type MemberView interface {
	// Assignment returns the assignment this member has applied.
	Assignment() replication.Assignment
	// AssignmentChanged returns a channel closed at the next change.
	AssignmentChanged() <-chan struct{}
	// LeaderContact returns how long ago this member last heard from the
	// leader (0 on the leader).
	LeaderContact() time.Duration
	// Offsets returns every stored offset of the replicated state.
	Offsets(ctx context.Context) (map[pebblestore.TopicPartition]int64, error)
}

// Member defaults, applied to zero MemberConfig fields.
const (
	DefaultLease         = 1500 * time.Millisecond
	DefaultMemberTick    = 50 * time.Millisecond
	DefaultRevokeTimeout = 5 * time.Second
)

// MemberConfig configures RunMember. Zero fields take the documented
// defaults.
type MemberConfig struct {
	// NodeID is this member's id, as in the assignment (required).
	NodeID string
	// View reads the assignment, leader contact and offsets (required).
	View MemberView
	// Target is what serves the partitions (required).
	Target Partitions
	// Topics are the input topics (at least one): Assign's starts carries
	// each topic's stored offset of the partition when there is one.
	Topics []string
	// Lease: without leader contact for this long the member stops
	// serving everything, because the leader may already have given its
	// partitions away. Default 1.5 s. The coordinator's FailAfter must
	// exceed Lease + Interval + the time a Revoke takes.
	Lease time.Duration
	// Interval is how often the lease and failed calls are re-checked
	// (assignment changes are acted on at once). Default 50 ms.
	Interval time.Duration
	// RevokeTimeout bounds the revocation of everything when ctx ends.
	// Default 5 s.
	RevokeTimeout time.Duration
	// Logger receives changes of the served set (info) and failed calls
	// (warn, at most one line per 5 s). Default: discard.
	Logger *slog.Logger
	// OnChange, if set, is called with the partitions served (ascending)
	// after every change of that set (metrics, tests). It runs on
	// RunMember's goroutine and must not block.
	OnChange func(owned []int)
}

// Validate reports a configuration RunMember would refuse.
func (c MemberConfig) Validate() error {
	bad := func(what string) error { return fmt.Errorf("member config: %s: %w", what, ErrInvalid) }
	switch {
	case c.NodeID == "":
		return bad("NodeID is required")
	case c.View == nil:
		return bad("View is required")
	case c.Target == nil:
		return bad("Target is required")
	case len(c.Topics) == 0:
		return bad("Topics is required")
	case c.Lease < 0 || c.Interval < 0 || c.RevokeTimeout < 0:
		return bad("negative duration")
	}
	for _, t := range c.Topics {
		if t == "" {
			return bad("empty topic")
		}
	}
	return nil
}

func (c MemberConfig) withDefaults() MemberConfig {
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Interval == 0 {
		c.Interval = DefaultMemberTick
	}
	if c.RevokeTimeout == 0 {
		c.RevokeTimeout = DefaultRevokeTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// RunMember keeps the partitions this member serves (through Target) equal
// to the ones the applied assignment gives NodeID while the member's leader
// contact is younger than Lease, and empty otherwise. It acts on every
// assignment change at once and re-checks every Interval. Revocations run
// before assignments; an Assign reads the stored offsets after the
// assignment that grants it was applied, so every offset committed before
// the grant is included. A failed call is retried on the next tick.
//
// When ctx ends it revokes everything it serves (bounded by RevokeTimeout)
// and returns nil, or an error naming what it could not revoke.
func RunMember(ctx context.Context, cfg MemberConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	m := &member{cfg: cfg, log: cfg.Logger.With("member", cfg.NodeID), served: map[int]bool{}, leased: true}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		changed := cfg.View.AssignmentChanged()
		m.reconcile(ctx)
		select {
		case <-ctx.Done():
			return m.stop()
		case <-changed:
		case <-tick.C:
		}
	}
}

// member is RunMember's state, owned by its goroutine.
type member struct {
	cfg        MemberConfig
	log        *slog.Logger
	served     map[int]bool
	leased     bool
	lastWarn   time.Time
	suppressed int
}

// wanted returns the partitions this member should serve now.
func (m *member) wanted() (map[int]bool, bool) {
	want := map[int]bool{}
	if m.cfg.View.LeaderContact() >= m.cfg.Lease {
		return want, false
	}
	for _, p := range m.cfg.View.Assignment().Owned(m.cfg.NodeID) {
		want[p] = true
	}
	return want, true
}

// reconcile moves the served set towards the wanted one: revocations
// first, then assignments with offsets read after the assignment.
func (m *member) reconcile(ctx context.Context) {
	want, leased := m.wanted()
	if leased != m.leased {
		if leased {
			m.log.Info("leader contact regained")
		} else {
			m.log.Warn("no leader contact within the lease: serving nothing", "lease", m.cfg.Lease, "served", len(m.served))
		}
		m.leased = leased
	}
	changed := false
	for _, p := range sortedKeys(m.served) {
		if want[p] {
			continue
		}
		if err := m.cfg.Target.Revoke(ctx, p); err != nil {
			m.warn("revoking partition failed", "partition", p, "err", err)
			continue
		}
		delete(m.served, p)
		changed = true
		m.log.Info("partition revoked", "partition", p)
	}
	var offsets map[pebblestore.TopicPartition]int64
	for _, p := range sortedKeys(want) {
		if m.served[p] || ctx.Err() != nil {
			continue
		}
		if offsets == nil {
			var err error
			if offsets, err = m.cfg.View.Offsets(ctx); err != nil {
				m.warn("reading stored offsets failed", "err", err)
				break
			}
		}
		starts := make(map[string]int64, len(m.cfg.Topics))
		for _, t := range m.cfg.Topics {
			if off, ok := offsets[pebblestore.TopicPartition{Topic: t, Partition: int32(p)}]; ok {
				starts[t] = off
			}
		}
		if err := m.cfg.Target.Assign(ctx, p, starts); err != nil {
			m.warn("assigning partition failed", "partition", p, "err", err)
			continue
		}
		m.served[p] = true
		changed = true
		m.log.Info("partition assigned", "partition", p, "starts", starts)
	}
	if changed && m.cfg.OnChange != nil {
		m.cfg.OnChange(sortedKeys(m.served))
	}
}

// stop revokes everything served, with a fresh context: the caller's has
// ended.
func (m *member) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.RevokeTimeout)
	defer cancel()
	var errs []error
	before := len(m.served)
	for _, p := range sortedKeys(m.served) {
		if err := m.cfg.Target.Revoke(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("revoke partition %d: %w", p, err))
			continue
		}
		delete(m.served, p)
	}
	if before > 0 && m.cfg.OnChange != nil {
		m.cfg.OnChange(sortedKeys(m.served))
	}
	return errors.Join(errs...)
}

func (m *member) warn(msg string, args ...any) {
	now := time.Now()
	if !m.lastWarn.IsZero() && now.Sub(m.lastWarn) < warnEvery {
		m.suppressed++
		return
	}
	if m.suppressed > 0 {
		args = append(args, "suppressed", m.suppressed)
	}
	m.log.Warn(msg, args...)
	m.lastWarn, m.suppressed = now, 0
}

func sortedKeys(set map[int]bool) []int {
	return slices.Sorted(maps.Keys(set))
}
