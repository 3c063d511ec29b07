package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// offsetStore is a fake of the twin store's offsets: what OnCommit wrote,
// and whether writing fails.
type offsetStore struct {
	mu      sync.Mutex
	down    bool
	calls   int // OnCommit calls, failed ones included
	failed  int
	offsets map[key]int64 // offset field unused in the key
	regress []string      // offered offsets lower than the stored ones
}

func (o *offsetStore) onCommit(_ context.Context, offs []Offset) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	if o.down {
		o.failed++
		return errors.New("fake store down")
	}
	if o.offsets == nil {
		o.offsets = map[key]int64{}
	}
	for _, off := range offs {
		k := key{off.Topic, off.Partition, 0}
		if prev, ok := o.offsets[k]; ok && off.Next <= prev {
			o.regress = append(o.regress, fmt.Sprintf("%s/%d: %d after %d", off.Topic, off.Partition, off.Next, prev))
		}
		o.offsets[k] = off.Next
	}
	return nil
}

func (o *offsetStore) get(topic string, p int) (int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	off, ok := o.offsets[key{topic, p, 0}]
	return off, ok
}

// TestConsumerOnCommitBeforeKafka: offsets reach OnCommit before Kafka,
// and a failing OnCommit holds the Kafka commit back until it succeeds.
func TestConsumerOnCommitBeforeKafka(t *testing.T) {
	_, cc := startBroker(t)
	const n = 800
	produceUplinks(t, cc, 0, n)
	ends := endOffsets(t, cc, TopicUplink)

	st := &offsetStore{down: true}
	cfg := testConsumerConfig(cc, "oncommit")
	cfg.OnCommit = st.onCommit
	h := newFakeHandler(t)
	c := runConsumer(t, cfg, h, &fakeDLQ{})

	// Store down: every record completes, commit rounds come and go, and
	// Kafka commits nothing.
	eventually(t, 20*time.Second, func() (bool, string) {
		h.mu.Lock()
		done := len(h.completed)
		h.mu.Unlock()
		st.mu.Lock()
		failed := st.failed
		st.mu.Unlock()
		return done == n && failed >= 5, fmt.Sprintf("%d of %d completed, %d failed OnCommit calls", done, n, failed)
	})
	for p, off := range committedOffsets(t, cc, "oncommit", TopicUplink) {
		if off >= 0 {
			t.Errorf("partition %d committed to Kafka at %d while OnCommit failed", p, off)
		}
	}
	if got := c.Metrics().CommitErrors.Load(); got < 5 {
		t.Errorf("CommitErrors %d, want ≥ 5 skipped rounds", got)
	}

	// Store back: the offsets are stored, then committed to Kafka.
	st.mu.Lock()
	st.down = false
	st.mu.Unlock()
	eventually(t, 20*time.Second, func() (bool, string) { return committedAtEnd(t, cc, "oncommit", TopicUplink) })
	for p, end := range ends {
		if end == 0 {
			continue
		}
		if got, ok := st.get(TopicUplink, p); !ok || got != end {
			t.Errorf("partition %d: stored offset %d (%v), want end %d", p, got, ok, end)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.regress) > 0 {
		t.Errorf("OnCommit offered offsets that went backwards: %v", st.regress)
	}
}

// TestConsumerStartOffsetRewinds: a partition whose stored offset is lower
// than Kafka's committed one (the state came from an older backup) is
// replayed from the stored offset; higher or missing stored offsets change
// nothing, and Kafka's commit never moves backwards.
func TestConsumerStartOffsetRewinds(t *testing.T) {
	_, cc := startBroker(t)
	const n = 800
	produceUplinks(t, cc, 0, n)
	ends := endOffsets(t, cc, TopicUplink)

	// First member consumes everything.
	c1 := runConsumer(t, testConsumerConfig(cc, "rewind"), newFakeHandler(t), &fakeDLQ{})
	eventually(t, 20*time.Second, func() (bool, string) { return committedAtEnd(t, cc, "rewind", TopicUplink) })
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	// The "restored store": partition 0 at half its end, partition 1 at
	// 0, partition 2 ahead of Kafka (ignored), partition 3 unknown.
	stored := map[int]int64{0: ends[0] / 2, 1: 0, 2: ends[2] + 10}
	var asked sync.Map
	st := &offsetStore{}
	cfg := testConsumerConfig(cc, "rewind")
	cfg.OnCommit = st.onCommit
	cfg.StartOffset = func(topic string, p int) (int64, bool) {
		asked.Store(fmt.Sprintf("%s/%d", topic, p), true)
		if topic != TopicUplink {
			return 0, false
		}
		off, ok := stored[p]
		return off, ok
	}
	h2 := newFakeHandler(t)
	c2 := runConsumer(t, cfg, h2, &fakeDLQ{})
	want := int(ends[0] - stored[0] + ends[1] - stored[1])
	eventually(t, 20*time.Second, func() (bool, string) {
		h2.mu.Lock()
		defer h2.mu.Unlock()
		return len(h2.completed) == want, fmt.Sprintf("replayed %d of %d", len(h2.completed), want)
	})
	for _, tp := range []string{TopicUplink + "/0", TopicUplink + "/3"} {
		if _, ok := asked.Load(tp); !ok {
			t.Errorf("StartOffset not asked for %s", tp)
		}
	}
	h2.mu.Lock()
	for p := range testPartitions {
		got := h2.order[p]
		switch p {
		case 0, 1:
			if len(got) == 0 || got[0] != stored[p] || int64(len(got)) != ends[p]-stored[p] {
				t.Errorf("partition %d: replayed %d records from %v, want %d from %d", p, len(got), first(got), ends[p]-stored[p], stored[p])
			}
		default:
			if len(got) != 0 {
				t.Errorf("partition %d: %d records delivered again, want none (Kafka's commit rules)", p, len(got))
			}
		}
	}
	h2.mu.Unlock()
	if got := c2.Metrics().Rewinds.Load(); got != 2 {
		t.Errorf("Rewinds %d, want 2", got)
	}
	// The replay's progress is stored up to the end.
	for _, p := range []int{0, 1} {
		eventually(t, 10*time.Second, func() (bool, string) {
			got, _ := st.get(TopicUplink, p)
			return got == ends[p], fmt.Sprintf("partition %d: stored %d, end %d", p, got, ends[p])
		})
	}
	// Kafka's committed offsets stay at the end throughout.
	for p, off := range committedOffsets(t, cc, "rewind", TopicUplink) {
		if off != ends[p] {
			t.Errorf("partition %d: Kafka commit %d, want %d (never backwards)", p, off, ends[p])
		}
	}
}

func first(offs []int64) any {
	if len(offs) == 0 {
		return "nothing"
	}
	return offs[0]
}
