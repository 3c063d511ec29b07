package placement

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

var testTopics = []string{"lorawan.uplink", "lorawan.gateway.stats"}

func TestMemberConfigValidate(t *testing.T) {
	v, tg := newFakeView(), newRecorder().target("a")
	good := MemberConfig{NodeID: "a", View: v, Target: tg, Topics: testTopics}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*MemberConfig){
		"no id":       func(c *MemberConfig) { c.NodeID = "" },
		"no view":     func(c *MemberConfig) { c.View = nil },
		"no target":   func(c *MemberConfig) { c.Target = nil },
		"no topics":   func(c *MemberConfig) { c.Topics = nil },
		"empty topic": func(c *MemberConfig) { c.Topics = []string{""} },
		"negative":    func(c *MemberConfig) { c.Lease = -time.Second },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
		if err := RunMember(context.Background(), c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: RunMember: %v", name, err)
		}
	}
}

// runMember starts RunMember; the returned stop cancels it and returns its
// error.
func runMember(t *testing.T, cfg MemberConfig) (stop func() error, changes <-chan []int) {
	t.Helper()
	ch := make(chan []int, 64)
	cfg.OnChange = func(owned []int) {
		select {
		case ch <- owned:
		default:
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunMember(ctx, cfg) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("RunMember did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, ch
}

func TestMemberFollowsAssignment(t *testing.T) {
	v, r := newFakeView(), newRecorder()
	v.offsets[pebblestore.TopicPartition{Topic: "lorawan.uplink", Partition: 1}] = 42
	v.offsets[pebblestore.TopicPartition{Topic: "lorawan.gateway.stats", Partition: 3}] = 7
	v.offsets[pebblestore.TopicPartition{Topic: "other", Partition: 1}] = 9
	stop, _ := runMember(t, MemberConfig{NodeID: "a", View: v, Target: r.target("a"), Topics: testTopics, Interval: 10 * time.Millisecond})

	served := func(want ...int) func() (bool, string) {
		return func() (bool, string) {
			got := r.servedBy("a")
			return slices.Equal(got, want), ""
		}
	}
	v.setAssignment("b", "a", "b", "a")
	waitFor(t, 2*time.Second, "partitions 1 and 3", served(1, 3))
	r.mu.Lock()
	if s := r.starts["a"][1]; len(s) != 1 || s["lorawan.uplink"] != 42 {
		t.Errorf("starts of 1: %v", s)
	}
	if s := r.starts["a"][3]; len(s) != 1 || s["lorawan.gateway.stats"] != 7 {
		t.Errorf("starts of 3: %v", s)
	}
	r.mu.Unlock()

	// A move revokes before it assigns; offsets are read fresh.
	v.set(func(v *fakeView) { v.offsets[pebblestore.TopicPartition{Topic: "lorawan.uplink", Partition: 2}] = 100 })
	before := len(r.callList())
	v.setAssignment("b", "b", "a", "b")
	waitFor(t, 2*time.Second, "partition 2 only", served(2))
	calls := r.callList()[before:]
	if !slices.Equal(calls, []string{"a revoke 1", "a revoke 3", "a assign 2"}) {
		t.Fatalf("calls %q", calls)
	}
	r.mu.Lock()
	if s := r.starts["a"][2]; s["lorawan.uplink"] != 100 {
		t.Errorf("starts of 2: %v", s)
	}
	r.mu.Unlock()

	// Failed calls and a failed offset read are retried.
	r.failCalls("a", 2)
	v.setAssignment("a", "b", "", "a")
	waitFor(t, 2*time.Second, "retries", served(0, 3))
	var reads int
	v.set(func(v *fakeView) { v.offsetsErr, reads = errors.New("store closed"), v.offsetReads })
	v.setAssignment("a", "a", "a", "a")
	waitFor(t, 2*time.Second, "retried offset reads", func() (bool, string) {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.offsetReads >= reads+3, ""
	})
	if got := r.servedBy("a"); !slices.Equal(got, []int{0, 3}) {
		t.Fatalf("assigned without offsets: %v", got)
	}
	v.set(func(v *fakeView) { v.offsetsErr = nil })
	waitFor(t, 2*time.Second, "all four", served(0, 1, 2, 3))

	// Stopping revokes everything.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := r.servedBy("a"); len(got) != 0 {
		t.Fatalf("still served after stop: %v", got)
	}
	if o := r.overlapList(); len(o) != 0 {
		t.Fatalf("overlaps: %q", o)
	}
}

// (d) A member without leader contact for Lease revokes everything within
// Lease + Interval, and serves again once contact returns.
func TestMemberLeaseExpiry(t *testing.T) {
	const lease, interval = 300 * time.Millisecond, 20 * time.Millisecond
	v, r := newFakeView(), newRecorder()
	_, changes := runMember(t, MemberConfig{NodeID: "a", View: v, Target: r.target("a"), Topics: testTopics, Lease: lease, Interval: interval})
	v.setAssignment("a", "a", "b", "a")
	waitFor(t, 2*time.Second, "three partitions", func() (bool, string) { return len(r.servedBy("a")) == 3, "" })
	drain(changes)

	lost := time.Now()
	v.set(func(v *fakeView) { v.lastContact = lost })
	var revokedAt time.Time
	for owned := range changes {
		if len(owned) == 0 {
			revokedAt = time.Now()
			break
		}
	}
	took := revokedAt.Sub(lost)
	t.Logf("lease %s, interval %s: everything revoked %s after the last leader contact", lease, interval, took.Round(time.Millisecond))
	if took < lease {
		t.Fatalf("revoked after %s, before the lease of %s ended", took, lease)
	}
	if took > lease+interval+50*time.Millisecond {
		t.Fatalf("revoked after %s, want ≤ lease + interval (+50 ms scheduling)", took)
	}
	// No assignment change brings them back while the lease is gone.
	v.setAssignment("a", "a", "a", "a")
	time.Sleep(3 * interval) // a negative check: nothing may happen
	if got := r.servedBy("a"); len(got) != 0 {
		t.Fatalf("served %v without a lease", got)
	}
	v.set(func(v *fakeView) { v.lastContact = time.Time{} })
	waitFor(t, 2*time.Second, "service after contact returns", func() (bool, string) { return len(r.servedBy("a")) == 4, "" })
}

func drain(ch <-chan []int) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
