package streams

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// TestPublishAsync queues events of many devices from concurrent callers
// (each device's calls in sequence, without waiting for the previous
// one's done) and reads them back: each exactly once, every done called
// once with nil, and each device's events in the order queued although
// many calls per device were in flight at once.
func TestPublishAsync(t *testing.T) {
	_, cc := startBroker(t)
	m := &Metrics{}
	p, err := NewEventProducer(ProducerConfig{Client: cc, BatchSize: 16}, m, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	const devices, perDevice, perCall = 24, 60, 3
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		dones int
		errs  []error
	)
	for d := range devices {
		wg.Go(func() {
			for s := 0; s < perDevice; s += perCall {
				evs := []*twinv1.TwinEvent{}
				for i := s; i < s+perCall; i++ {
					evs = append(evs, twinEvent(d, i))
				}
				p.PublishAsync(t.Context(), evs, func(err error) {
					mu.Lock()
					defer mu.Unlock()
					dones++
					if err != nil {
						errs = append(errs, err)
					}
				})
				clear(evs) // the producer must not keep them
			}
		})
	}
	wg.Wait()
	// Close writes what is queued before it returns.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if dones != devices*perDevice/perCall || len(errs) > 0 {
		t.Fatalf("%d dones (want %d), errors %v", dones, devices*perDevice/perCall, errs)
	}
	mu.Unlock()
	if got := m.EventsPublished.Load(); got != devices*perDevice {
		t.Fatalf("EventsPublished %d", got)
	}
	if m.EventRequests.Load() == 0 || m.EventRequests.Load() >= devices*perDevice/perCall {
		t.Fatalf("%d produce requests for %d calls: no batching", m.EventRequests.Load(), devices*perDevice/perCall)
	}

	msgs := readAll(t, cc, TopicTwinEvents)
	if len(msgs) != devices*perDevice {
		t.Fatalf("read %d events, want %d", len(msgs), devices*perDevice)
	}
	lastSeq := map[string]int{}
	for _, msg := range msgs {
		var e twinv1.TwinEvent
		if err := proto.Unmarshal(msg.Value, &e); err != nil {
			t.Fatal(err)
		}
		dev := e.GetDeviceEui()
		if string(msg.Key) != dev {
			t.Errorf("event %s keyed %q", e.GetEventId(), msg.Key)
		}
		if last, ok := lastSeq[dev]; (ok && int(e.GetFCnt()) != last+1) || (!ok && e.GetFCnt() != 0) {
			t.Fatalf("device %s: event %d after %d: reordered or lost", dev, e.GetFCnt(), last)
		}
		lastSeq[dev] = int(e.GetFCnt())
	}

	// After Close every call fails with ErrClosed, through done.
	ch := make(chan error, 1)
	p.PublishAsync(t.Context(), []*twinv1.TwinEvent{twinEvent(1, 100)}, func(err error) { ch <- err })
	select {
	case err := <-ch:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no done after close")
	}
}

// TestPublishAsyncInvalid: a call with an invalid event fails as a whole,
// through done, and writes nothing.
func TestPublishAsyncInvalid(t *testing.T) {
	_, cc := startBroker(t)
	p, err := NewEventProducer(ProducerConfig{Client: cc}, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	bad := twinEvent(1, 2)
	bad.DeviceEui = ""
	ch := make(chan error, 1)
	p.PublishAsync(context.Background(), []*twinv1.TwinEvent{twinEvent(1, 1), bad}, func(err error) { ch <- err })
	if err := <-ch; !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("invalid event: %v", err)
	}
}
