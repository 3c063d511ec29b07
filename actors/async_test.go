package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/devicetwin"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// asyncSink is an AsyncEventSink that holds the sensor's PublishAsync
// calls until the test acknowledges them, in any order, and acknowledges
// the other twins' calls at once.
type asyncSink struct {
	sensor string // DevEUI whose calls are held

	mu      sync.Mutex
	calls   []*heldCall
	acked   map[uint32]bool // frame counters whose events are durable
	arrived chan struct{}
}

type heldCall struct {
	fcnt   uint32
	events []*twinv1.TwinEvent
	done   func(error)
	acked  bool
}

func (s *asyncSink) Publish(context.Context, ...*twinv1.TwinEvent) error {
	return errors.New("asyncSink: the synchronous Publish must not be used")
}

func (s *asyncSink) PublishAsync(_ context.Context, events []*twinv1.TwinEvent, done func(error)) {
	c := &heldCall{done: done}
	for _, e := range events {
		c.events = append(c.events, proto.Clone(e).(*twinv1.TwinEvent)) // the twin reuses them
		c.fcnt = max(c.fcnt, e.GetFCnt())
	}
	if events[0].GetDeviceEui() != s.sensor {
		done(nil)
		return
	}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	s.arrived <- struct{}{}
}

// ack makes call i durable and reports it.
func (s *asyncSink) ack(i int) {
	s.mu.Lock()
	c := s.calls[i]
	c.acked = true
	s.acked[c.fcnt] = true
	s.mu.Unlock()
	c.done(nil)
}

// durablePrefix is the highest frame counter f such that the events of
// every frame up to f are durable.
func (s *asyncSink) durablePrefix() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f uint32
	for s.acked[f+1] {
		f++
	}
	return f
}

// checkStore checks every unit the twins persist: the sensor state it
// writes must not hold a frame whose events were not durable when the
// unit was submitted.
type checkStore struct {
	StateStore
	sink *asyncSink
	eui  pebblestore.EUI

	mu         sync.Mutex
	violations []string
	units      int
}

func (c *checkStore) Submit(ctx context.Context, writes []pebblestore.Write, done func(error)) error {
	prefix := c.sink.durablePrefix()
	return c.StateStore.Submit(ctx, writes, func(err error) {
		if err == nil {
			if rec, lerr := c.LoadTwin(ctx, testCustomer.String(), pebblestore.KindSensor, c.eui); lerr == nil {
				st, uerr := devicetwin.UnmarshalSensorSnapshot(rec.Snapshot)
				last, _ := st.LastFCnt()
				c.mu.Lock()
				c.units++
				if uerr != nil || last > prefix {
					c.violations = append(c.violations, fmt.Sprintf("state up to frame %d persisted while only frames up to %d had durable events (%v)", last, prefix, uerr))
				}
				c.mu.Unlock()
			}
		}
		done(err)
	})
}

// TestAsyncPublishOutOfOrderAcks: with an AsyncEventSink the twin hands
// over each op's events at once, and the acknowledgements may come back
// in any order. The twin must persist a state only once the events of
// every frame it holds are durable, and complete the frames in input
// order, whatever order the acknowledgements arrive in.
func TestAsyncPublishOutOfOrderAcks(t *testing.T) {
	for _, order := range [][]int{
		{1, 0, 3, 2, 5, 4, 7, 6}, // pairs swapped: prefixes become durable two by two
		{7, 6, 5, 4, 3, 2, 1, 0}, // reversed: nothing may persist before the first
		{0, 2, 4, 6, 1, 3, 5, 7},
	} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			d := newTestDevice(3, 0x26011003)
			sink := &asyncSink{sensor: d.eui().String(), acked: map[uint32]bool{}, arrived: make(chan struct{}, 64)}
			var cs *checkStore
			h := newHarness(t, []*testDevice{d}, func(c *Config) {
				c.Events, c.AsyncPublish = sink, true
				cs = &checkStore{StateStore: c.Store, sink: sink, eui: pebblestore.EUI(d.eui())}
				c.Store = cs
			})

			var (
				mu    sync.Mutex
				dones []int
			)
			var frames []*lorawanv1.UplinkFrame
			finished := make(chan error, len(order))
			for i := range order {
				f := d.uplink(t, uint32(i+1), t0.Add(time.Duration(i)*15*time.Minute), gw1)
				frames = append(frames, f)
				h.sys.HandleUplink(context.Background(), f, func(err error) {
					mu.Lock()
					dones = append(dones, i)
					mu.Unlock()
					finished <- err
				})
			}
			// Every frame is applied and handed over without waiting for
			// the earlier ones' acknowledgements.
			for i := range order {
				select {
				case <-sink.arrived:
				case <-time.After(20 * time.Second):
					t.Fatalf("only %d of %d publishes handed over before any acknowledgement", i, len(order))
				}
			}
			for _, i := range order {
				sink.ack(i)
				time.Sleep(5 * time.Millisecond) // let the twin persist what it may
				mu.Lock()
				for _, k := range dones {
					if !sink.calls[k].acked {
						t.Errorf("frame %d done before its events were durable", k)
					}
				}
				mu.Unlock()
			}
			for range order {
				select {
				case err := <-finished:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("timed out waiting for done")
				}
			}
			mu.Lock()
			for k, i := range dones {
				if k != i {
					t.Fatalf("frames completed in order %v, want input order", dones)
				}
			}
			mu.Unlock()
			cs.mu.Lock()
			if len(cs.violations) > 0 || cs.units == 0 {
				t.Fatalf("%d units; %v", cs.units, cs.violations)
			}
			cs.mu.Unlock()
			st, _ := h.stored(t, d)
			sameState(t, "after out-of-order acknowledgements", st, d.reference(t, frames...))
		})
	}
}
