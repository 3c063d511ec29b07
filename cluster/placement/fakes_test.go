package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/cluster/replication"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

func testLogger() *slog.Logger {
	if os.Getenv("PLACEMENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitFor polls cond until it holds or timeout passes (a deadline, not a
// sleep: the condition is the synchronisation).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is the fake Partitions of every member of a test: it tracks who
// serves each partition and every overlap (two members serving one
// partition at once).
type recorder struct {
	mu       sync.Mutex
	serving  map[int]map[string]bool
	calls    []string
	overlaps []string
	crashed  map[string]bool
	// failNext makes the next n calls of a member fail.
	failNext map[string]int
	starts   map[string]map[int]map[string]int64 // member → partition → last starts
}

func newRecorder() *recorder {
	return &recorder{serving: map[int]map[string]bool{}, crashed: map[string]bool{}, failNext: map[string]int{}, starts: map[string]map[int]map[string]int64{}}
}

var errInjected = errors.New("injected failure")

// target is one member's Partitions.
type target struct {
	r  *recorder
	id string
}

func (r *recorder) target(id string) *target { return &target{r: r, id: id} }

func (tg *target) Assign(_ context.Context, p int, starts map[string]int64) error {
	r := tg.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.crashed[tg.id] {
		return errors.New("crashed")
	}
	if r.failNext[tg.id] > 0 {
		r.failNext[tg.id]--
		r.calls = append(r.calls, fmt.Sprintf("%s fail assign %d", tg.id, p))
		return errInjected
	}
	r.calls = append(r.calls, fmt.Sprintf("%s assign %d", tg.id, p))
	if r.serving[p] == nil {
		r.serving[p] = map[string]bool{}
	}
	if r.serving[p][tg.id] {
		r.overlaps = append(r.overlaps, fmt.Sprintf("%s assigned %d twice", tg.id, p))
	}
	for o := range r.serving[p] {
		if o != tg.id {
			r.overlaps = append(r.overlaps, fmt.Sprintf("%s assigned %d while %s serves it", tg.id, p, o))
		}
	}
	r.serving[p][tg.id] = true
	if r.starts[tg.id] == nil {
		r.starts[tg.id] = map[int]map[string]int64{}
	}
	r.starts[tg.id][p] = maps.Clone(starts)
	return nil
}

func (tg *target) Revoke(_ context.Context, p int) error {
	r := tg.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.crashed[tg.id] {
		return errors.New("crashed")
	}
	if r.failNext[tg.id] > 0 {
		r.failNext[tg.id]--
		r.calls = append(r.calls, fmt.Sprintf("%s fail revoke %d", tg.id, p))
		return errInjected
	}
	r.calls = append(r.calls, fmt.Sprintf("%s revoke %d", tg.id, p))
	if !r.serving[p][tg.id] {
		r.overlaps = append(r.overlaps, fmt.Sprintf("%s revoked %d it did not serve", tg.id, p))
	}
	delete(r.serving[p], tg.id)
	return nil
}

// crash makes a member serve nothing at once (its process died).
func (r *recorder) crash(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crashed[id] = true
	for _, s := range r.serving {
		delete(s, id)
	}
}

// servedBy returns the partitions member id serves.
func (r *recorder) servedBy(id string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []int
	for p, s := range r.serving {
		if s[id] {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

// owners returns, per partition, its single server ("" if none, "*" if
// several).
func (r *recorder) owners(partitions int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, partitions)
	for p := range partitions {
		for id := range r.serving[p] {
			if out[p] == "" {
				out[p] = id
			} else {
				out[p] = "*"
			}
		}
	}
	return out
}

func (r *recorder) overlapList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.overlaps)
}

func (r *recorder) callList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) failCalls(id string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext[id] = n
}

// fakeLeader is a LeaderView with a compare-and-set assignment.
type fakeLeader struct {
	mu        sync.Mutex
	leader    bool
	live      []string
	assign    replication.Assignment
	failWith  error // returned (once) instead of proposing
	proposals [][]string
	askedFail []time.Duration
}

func (f *fakeLeader) LiveMembers(failAfter time.Duration) ([]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.askedFail = append(f.askedFail, failAfter)
	if !f.leader {
		return nil, false
	}
	return slices.Clone(f.live), true
}

func (f *fakeLeader) Assignment() replication.Assignment {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.assign.Clone()
}

func (f *fakeLeader) ProposeAssignment(_ context.Context, expected uint64, owners []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proposals = append(f.proposals, slices.Clone(owners))
	if err := f.failWith; err != nil {
		f.failWith = nil
		return err
	}
	if expected != f.assign.Epoch {
		return replication.ErrStaleVersion
	}
	f.assign = replication.Assignment{Epoch: expected + 1, Owners: slices.Clone(owners)}
	return nil
}

func (f *fakeLeader) set(fn func(f *fakeLeader)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// fakeView is a MemberView whose leader contact the test controls.
type fakeView struct {
	mu          sync.Mutex
	assign      replication.Assignment
	changed     chan struct{}
	lastContact time.Time // zero: always in contact
	offsets     map[pebblestore.TopicPartition]int64
	offsetsErr  error
	offsetReads int
}

func newFakeView() *fakeView {
	return &fakeView{changed: make(chan struct{}), offsets: map[pebblestore.TopicPartition]int64{}}
}

func (v *fakeView) Assignment() replication.Assignment {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.assign.Clone()
}

func (v *fakeView) AssignmentChanged() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

func (v *fakeView) LeaderContact() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.lastContact.IsZero() {
		return 0
	}
	return time.Since(v.lastContact)
}

func (v *fakeView) Offsets(context.Context) (map[pebblestore.TopicPartition]int64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.offsetReads++
	if v.offsetsErr != nil {
		return nil, v.offsetsErr
	}
	return maps.Clone(v.offsets), nil
}

func (v *fakeView) setAssignment(owners ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.assign = replication.Assignment{Epoch: v.assign.Epoch + 1, Owners: owners}
	close(v.changed)
	v.changed = make(chan struct{})
}

func (v *fakeView) set(fn func(v *fakeView)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fn(v)
}
