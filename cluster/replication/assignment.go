package replication

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Assignment is the replicated placement of the input partitions: partition
// index p of every input topic (lorawan.uplink, lorawan.gateway.stats,
// lorawan.gateway.seen) belongs to member Owners[p] ("" while unowned).
// Every member applies the same log, so every member sees the same
// assignment at the same log position; a member consumes a partition only
// while its own replicated state says it owns it, and starts from the
// offsets replicated beside the twin states.
//
// Epoch counts accepted changes. A change names the epoch it was computed
// from (compare-and-set), so two leaders in quick succession cannot
// overwrite each other's decision with a stale one.
type Assignment struct {
	Epoch  uint64
	Owners []string
}

// Owner returns the owner of partition p, "" if none.
func (a Assignment) Owner(p int) string {
	if p < 0 || p >= len(a.Owners) {
		return ""
	}
	return a.Owners[p]
}

// Owned returns the partitions member owns, ascending.
func (a Assignment) Owned(member string) []int {
	var ps []int
	for p, o := range a.Owners {
		if o == member && member != "" {
			ps = append(ps, p)
		}
	}
	return ps
}

// Clone returns a deep copy.
func (a Assignment) Clone() Assignment {
	return Assignment{Epoch: a.Epoch, Owners: slices.Clone(a.Owners)}
}

// Assignment command, version 1:
//
//	'L' 'A' | version u8 (=1) | expected epoch uvarint | partitions uvarint |
//	owner… (len u8 | member id)
const (
	assignMagic1  = 'A'
	assignVersion = 1
	// MaxPartitions bounds an assignment (and a decoder's allocation).
	MaxPartitions = 1 << 12
	maxMemberID   = 255
)

func appendOwners(dst []byte, owners []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(owners)))
	for _, o := range owners {
		dst = append(dst, byte(len(o)))
		dst = append(dst, o...)
	}
	return dst
}

func readOwners(r *reader) []string {
	n := r.count()
	if n > MaxPartitions {
		r.fail()
		return nil
	}
	owners := make([]string, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		owners = append(owners, string(r.bytes(int(r.byte()))))
	}
	return owners
}

func validOwners(owners []string) error {
	if len(owners) == 0 || len(owners) > MaxPartitions {
		return fmt.Errorf("assignment of %d partitions: %w", len(owners), ErrInvalid)
	}
	for p, o := range owners {
		if len(o) > maxMemberID {
			return fmt.Errorf("partition %d: member id of %d bytes: %w", p, len(o), ErrInvalid)
		}
	}
	return nil
}

func encodeAssignCommand(expected uint64, owners []string) []byte {
	dst := []byte{cmdMagic0, assignMagic1, assignVersion}
	dst = binary.AppendUvarint(dst, expected)
	return appendOwners(dst, owners)
}

func isAssignCommand(data []byte) bool {
	return len(data) >= cmdHeaderLen && data[0] == cmdMagic0 && data[1] == assignMagic1
}

func decodeAssignCommand(data []byte) (expected uint64, owners []string, err error) {
	if !isAssignCommand(data) {
		return 0, nil, fmt.Errorf("assignment header: %w", errCorrupt)
	}
	if data[2] != assignVersion {
		return 0, nil, fmt.Errorf("assignment version %d: %w", data[2], ErrUnsupported)
	}
	r := reader{b: data[cmdHeaderLen:]}
	expected = r.uvarint()
	owners = readOwners(&r)
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return 0, nil, fmt.Errorf("assignment: %w", r.err)
	}
	if err := validOwners(owners); err != nil {
		return 0, nil, err
	}
	return expected, owners, nil
}

// checkCommand decodes any command kind without applying it (forwarded
// entries are checked before they reach the log).
func checkCommand(data []byte) error {
	if isAssignCommand(data) {
		_, _, err := decodeAssignCommand(data)
		return err
	}
	_, err := DecodeCommand(data)
	return err
}

// appendAssignment encodes an assignment for the store's meta and for
// snapshots: epoch uvarint | owners.
func appendAssignment(dst []byte, a Assignment) []byte {
	dst = binary.AppendUvarint(dst, a.Epoch)
	return appendOwners(dst, a.Owners)
}

func readAssignment(r *reader) Assignment {
	a := Assignment{Epoch: r.uvarint()}
	a.Owners = readOwners(r)
	if len(a.Owners) == 0 {
		a.Owners = nil
	}
	return a
}

// ProposeAssignment replaces the assignment computed from epoch expected
// with owners. It returns ErrStaleVersion when the replicated epoch is no
// longer expected (another change came first: recompute and retry), and the
// errors of Propose otherwise.
func (g *Group) ProposeAssignment(ctx context.Context, expected uint64, owners []string) error {
	if err := validOwners(owners); err != nil {
		return err
	}
	if !g.isStarted() {
		return ErrShutdown
	}
	type result struct {
		rs  []Response
		err error
	}
	done := make(chan result, 1)
	go func() {
		rs, err := g.apply(encodeAssignCommand(expected, owners))
		done <- result{rs, err}
	}()
	select {
	case r := <-done:
		switch {
		case r.err != nil:
			return r.err
		case len(r.rs) != 1:
			return fmt.Errorf("assignment: %d responses: %w", len(r.rs), ErrOutcomeUnknown)
		case r.rs[0].Status == StatusStale:
			return fmt.Errorf("assignment epoch %d is no longer current: %w", expected, ErrStaleVersion)
		case r.rs[0].Status != StatusApplied:
			return fmt.Errorf("assignment %s: %s: %w", r.rs[0].Status, r.rs[0].Reason, ErrInvalid)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("assignment: %w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

// Assignment returns the assignment this member's state has applied.
func (g *Group) Assignment() Assignment { return g.assign.get() }

// AssignmentChanged returns a channel closed at the next change of the
// applied assignment (read Assignment after it fires, then ask again).
func (g *Group) AssignmentChanged() <-chan struct{} { return g.assign.wait() }

// assignBox publishes the FSM's applied assignment to other goroutines.
type assignBox struct {
	mu      sync.Mutex
	cur     Assignment
	changed chan struct{}
}

func newAssignBox() *assignBox { return &assignBox{changed: make(chan struct{})} }

func (b *assignBox) set(a Assignment) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur = a.Clone()
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *assignBox) get() Assignment {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur.Clone()
}

func (b *assignBox) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// peerHealth is what the leader learned from its heartbeats: since when
// each failing peer has failed.
type peerHealth struct {
	mu      sync.Mutex
	failing map[string]time.Time
}

func (g *Group) watchHeartbeats(obs chan raft.Observation) {
	defer g.wg.Done()
	for {
		select {
		case o := <-obs:
			g.health.mu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := g.health.failing[string(d.PeerID)]; !ok {
					// Failing since the last contact, not since this
					// observation: raft backs off between attempts.
					since := d.LastContact
					if since.IsZero() {
						since = time.Now()
					}
					g.health.failing[string(d.PeerID)] = since
				}
			case raft.ResumedHeartbeatObservation:
				delete(g.health.failing, string(d.PeerID))
			}
			g.health.mu.Unlock()
		case <-g.stop:
			return
		}
	}
}

// LiveMembers returns, on the leader, the voters of the configuration that
// have not failed heartbeats for failAfter or longer (the leader itself
// included), sorted; ok is false on a member that is not the leader (only
// the leader heartbeats, so only it knows).
//
// A leader forgets what it learned when it loses leadership: a new leader
// starts with every member live until its own heartbeats fail.
func (g *Group) LiveMembers(failAfter time.Duration) (live []string, ok bool) {
	if !g.IsLeader() {
		return nil, false
	}
	cf := g.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil, false
	}
	now := time.Now()
	g.health.mu.Lock()
	defer g.health.mu.Unlock()
	for _, srv := range cf.Configuration().Servers {
		id := string(srv.ID)
		if srv.Suffrage != raft.Voter {
			continue
		}
		if since, failing := g.health.failing[id]; failing && id != g.cfg.NodeID && now.Sub(since) >= failAfter {
			continue
		}
		live = append(live, id)
	}
	slices.Sort(live)
	return live, true
}

// LeaderContact returns how long ago this member last heard from a leader:
// 0 on the leader itself, and a very long time if never. A member that has
// not heard from a leader for longer than its lease must stop acting as the
// owner of its partitions: the leader may already have given them away.
func (g *Group) LeaderContact() time.Duration {
	if !g.isStarted() {
		return time.Duration(math.MaxInt64)
	}
	if g.raft.State() == raft.Leader {
		return 0
	}
	lc := g.raft.LastContact()
	if lc.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	return time.Since(lc)
}
