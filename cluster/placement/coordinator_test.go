package placement

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/cluster/replication"
)

func TestCoordinatorConfigValidate(t *testing.T) {
	ok := CoordinatorConfig{Group: &fakeLeader{}, Partitions: 4}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]CoordinatorConfig{
		"no group":       {Partitions: 4},
		"no partitions":  {Group: &fakeLeader{}},
		"too many":       {Group: &fakeLeader{}, Partitions: replication.MaxPartitions + 1},
		"negative delay": {Group: &fakeLeader{}, Partitions: 4, Interval: -1},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
		if err := RunCoordinator(context.Background(), c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: RunCoordinator: %v", name, err)
		}
	}
}

// The coordinator's steps, driven one at a time.
func TestCoordinatorStep(t *testing.T) {
	f := &fakeLeader{live: []string{"a", "b"}}
	co := coordinator{cfg: CoordinatorConfig{Group: f, Partitions: 4}.withDefaults(), log: testLogger()}
	ctx := t.Context()

	if co.step(ctx) || len(f.proposals) != 0 {
		t.Fatalf("a follower proposed %q", f.proposals)
	}
	if f.askedFail[0] != DefaultFailAfter {
		t.Fatalf("LiveMembers asked with %s", f.askedFail[0])
	}
	f.set(func(f *fakeLeader) { f.leader = true })
	if !co.step(ctx) || !slices.Equal(f.assign.Owners, []string{"a", "b", "a", "b"}) || f.assign.Epoch != 1 {
		t.Fatalf("first assignment %+v", f.assign)
	}
	if co.step(ctx) || len(f.proposals) != 1 {
		t.Fatalf("re-proposed an unchanged plan: %q", f.proposals)
	}

	// b dies: its partitions go to a at once.
	f.set(func(f *fakeLeader) { f.live = []string{"a"} })
	if !co.step(ctx) || !slices.Equal(f.assign.Owners, []string{"a", "a", "a", "a"}) {
		t.Fatalf("failover %+v", f.assign)
	}

	// b returns: the moves between live members go through "".
	f.set(func(f *fakeLeader) { f.live = []string{"a", "b"} })
	if !co.step(ctx) || !slices.Equal(f.assign.Owners, []string{"a", "a", "", ""}) {
		t.Fatalf("handoff step %+v", f.assign)
	}
	if !co.step(ctx) || !slices.Equal(f.assign.Owners, []string{"a", "a", "b", "b"}) {
		t.Fatalf("after handoff %+v", f.assign)
	}

	// A stale epoch (another change came first) is recomputed next time.
	f.set(func(f *fakeLeader) {
		f.live = []string{"a", "b", "c"}
		f.failWith = replication.ErrStaleVersion
	})
	if co.step(ctx) {
		t.Fatal("stale proposal reported as accepted")
	}
	f.set(func(f *fakeLeader) { f.failWith = replication.ErrNoLeader })
	if co.step(ctx) {
		t.Fatal("failed proposal reported as accepted")
	}
	if co.lastWarn.IsZero() {
		t.Fatal("failure not logged")
	}
	f.set(func(f *fakeLeader) { f.failWith = replication.ErrOutcomeUnknown })
	co.step(ctx)
	if co.suppressed != 1 {
		t.Fatalf("second warning within %s not suppressed (%d)", warnEvery, co.suppressed)
	}
	for co.step(ctx) {
	}
	// The most loaded on a tie (a) gives its highest partition.
	if got := f.assign.Owners; !slices.Equal(got, []string{"a", "c", "b", "b"}) {
		t.Fatalf("three members: %q", got)
	}
}

func TestRunCoordinator(t *testing.T) {
	f := &fakeLeader{leader: true, live: []string{"n1", "n2", "n3"}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- RunCoordinator(ctx, CoordinatorConfig{Group: f, Partitions: 9, Interval: 10 * time.Millisecond, Logger: testLogger()})
	}()
	waitFor(t, 2*time.Second, "the assignment", func() (bool, string) {
		a := f.Assignment()
		return len(a.Owned("n1")) == 3 && len(a.Owned("n2")) == 3 && len(a.Owned("n3")) == 3, ""
	})
	f.set(func(f *fakeLeader) { f.live = []string{"n1", "n3"} })
	waitFor(t, 2*time.Second, "failover", func() (bool, string) {
		a := f.Assignment()
		return len(a.Owned("n2")) == 0 && len(a.Owned("n1"))+len(a.Owned("n3")) == 9, ""
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunCoordinator did not return")
	}
}
