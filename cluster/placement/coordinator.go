package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/legionelladossier/legiond/cluster/replication"
)

// LeaderView is the port the coordinator reads membership and the
// replicated assignment through, and proposes changes with. A
// *replication.Group satisfies it.
type LeaderView interface {
	// LiveMembers returns the members that have not failed the leader's
	// heartbeats for failAfter; ok is false on a member that is not the
	// leader.
	LiveMembers(failAfter time.Duration) (live []string, ok bool)
	// Assignment returns the assignment this member has applied.
	Assignment() replication.Assignment
	// ProposeAssignment replaces the assignment of epoch expected with
	// owners (compare-and-set; replication.ErrStaleVersion when the epoch
	// is no longer current).
	ProposeAssignment(ctx context.Context, expected uint64, owners []string) error
}

var _ LeaderView = (*replication.Group)(nil)

// Coordinator defaults, applied to zero CoordinatorConfig fields.
const (
	DefaultFailAfter       = 2 * time.Second
	DefaultCoordinatorTick = 100 * time.Millisecond
	warnEvery              = 5 * time.Second
	maxMovesLogged         = 64
)

// CoordinatorConfig configures RunCoordinator. Zero fields take the
// documented defaults.
type CoordinatorConfig struct {
	// Group is the member's Raft group (required).
	Group LeaderView
	// Partitions is the number of partitions of each input topic, 1 to
	// replication.MaxPartitions (required). Every member must use the
	// same number.
	Partitions int
	// FailAfter is how long a member must have failed the leader's
	// heartbeats before its partitions are given to others. Default 2 s.
	// It must exceed the members' MemberConfig.Lease (plus its Interval
	// and the time a Revoke takes) and the Raft LeaderLeaseTimeout: that
	// margin is what keeps a partition from being served twice (see the
	// package documentation).
	FailAfter time.Duration
	// Interval is how often the leader re-plans. Default 100 ms.
	Interval time.Duration
	// Logger receives accepted changes (info) and failed proposals (warn,
	// at most one line per 5 s). Default: discard.
	Logger *slog.Logger
}

// Validate reports a configuration RunCoordinator would refuse.
func (c CoordinatorConfig) Validate() error {
	switch {
	case c.Group == nil:
		return fmt.Errorf("coordinator config: Group is required: %w", ErrInvalid)
	case c.Partitions < 1 || c.Partitions > replication.MaxPartitions:
		return fmt.Errorf("coordinator config: %d partitions (want 1 to %d): %w", c.Partitions, replication.MaxPartitions, ErrInvalid)
	case c.FailAfter < 0 || c.Interval < 0:
		return fmt.Errorf("coordinator config: negative duration: %w", ErrInvalid)
	}
	return nil
}

func (c CoordinatorConfig) withDefaults() CoordinatorConfig {
	if c.FailAfter == 0 {
		c.FailAfter = DefaultFailAfter
	}
	if c.Interval == 0 {
		c.Interval = DefaultCoordinatorTick
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// RunCoordinator runs on every member until ctx ends (then it returns nil).
// Every Interval, on the member that is the Raft leader, it plans the
// next assignment from the applied one and the live members (Plan) and,
// if that differs, proposes it against the applied epoch; after a refusal
// (another change came first) it plans again on the next tick. A move
// between two live members goes through an unowned step (see Handoff);
// moves away from dead members are proposed at once.
func RunCoordinator(ctx context.Context, cfg CoordinatorConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	co := coordinator{cfg: cfg, log: cfg.Logger}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		co.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// coordinator is RunCoordinator's state, owned by its goroutine.
type coordinator struct {
	cfg        CoordinatorConfig
	log        *slog.Logger
	lastWarn   time.Time
	suppressed int
}

// step plans once and proposes if needed; it reports whether a change was
// accepted (tests).
func (co *coordinator) step(ctx context.Context) bool {
	live, ok := co.cfg.Group.LiveMembers(co.cfg.FailAfter)
	if !ok || ctx.Err() != nil {
		return false
	}
	cur := co.cfg.Group.Assignment()
	next := Plan(cur.Owners, co.cfg.Partitions, live)
	if slices.Equal(cur.Owners, next) {
		return false
	}
	proposal := Handoff(cur.Owners, next, live)
	err := co.cfg.Group.ProposeAssignment(ctx, cur.Epoch, proposal)
	switch {
	case err == nil:
		moved := Moves(cur.Owners, proposal)
		co.log.Info("partition assignment changed",
			"epoch", cur.Epoch+1, "live", live, "moved", len(moved),
			"moves", describeMoves(cur.Owners, proposal, moved),
			"handoff", !slices.Equal(proposal, next))
		return true
	case errors.Is(err, replication.ErrStaleVersion), ctx.Err() != nil:
		// Another change came first (recompute next tick), or we are
		// stopping.
		return false
	default:
		co.warn("proposing partition assignment failed", "epoch", cur.Epoch, "err", err)
		return false
	}
}

// warn logs at most one line per warnEvery, counting what it suppressed.
func (co *coordinator) warn(msg string, args ...any) {
	now := time.Now()
	if !co.lastWarn.IsZero() && now.Sub(co.lastWarn) < warnEvery {
		co.suppressed++
		return
	}
	if co.suppressed > 0 {
		args = append(args, "suppressed", co.suppressed)
	}
	co.log.Warn(msg, args...)
	co.lastWarn, co.suppressed = now, 0
}

// describeMoves renders moves as "p:from→to" ("-" for no owner), at most
// maxMovesLogged of them.
func describeMoves(cur, next []string, moved []int) []string {
	out := make([]string, 0, min(len(moved), maxMovesLogged+1))
	name := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for i, p := range moved {
		if i == maxMovesLogged {
			out = append(out, "…"+strconv.Itoa(len(moved)-i)+" more")
			break
		}
		out = append(out, strconv.Itoa(p)+":"+name(ownerAt(cur, p))+"→"+name(ownerAt(next, p)))
	}
	return out
}
