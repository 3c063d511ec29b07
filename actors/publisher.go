package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// pubItem is one op's events on their way to twin.events.
type pubItem struct {
	events []*twinv1.TwinEvent
	op     *op
	gen    uint64
	pid    *actor.PID
}

// publisher batches the events of many twins into few Publish calls. One
// goroutine (run) owns the batch; at most PublishMaxInFlight calls run at
// once, each in its own goroutine, and report back to the twins through
// their mailboxes. When no call is in flight a batch goes out at once
// (low latency when quiet); while calls are in flight it grows until
// PublishMaxEvents or PublishMaxDelay (large batches under load).
type publisher struct {
	s     *System
	async AsyncEventSink // when set, items bypass the batcher
	in    chan *pubItem
	sem   chan struct{}
	done  chan struct{} // a call finished
}

func newPublisher(s *System) *publisher {
	var async AsyncEventSink
	if s.cfg.AsyncPublish {
		async, _ = s.cfg.Events.(AsyncEventSink)
	}
	return &publisher{
		s:     s,
		async: async,
		in:    make(chan *pubItem, s.cfg.PublishQueue),
		sem:   make(chan struct{}, s.cfg.PublishMaxInFlight),
		done:  make(chan struct{}, s.cfg.PublishMaxInFlight),
	}
}

// submit queues an item; it blocks while the queue is full (backpressure
// on the submitting twin). After the System stopped, the item fails.
// With an AsyncEventSink the item goes straight to the sink, which
// answers the twin through its mailbox.
func (p *publisher) submit(it *pubItem) {
	if p.async != nil {
		s, n := p.s, len(it.events)
		p.async.PublishAsync(s.ctx, it.events, func(err error) {
			if err != nil {
				s.m.publishErrs.Inc()
			} else {
				s.m.events.Add(float64(n))
			}
			s.root.Send(it.pid, &publishedMsg{op: it.op, gen: it.gen, err: err})
		})
		return
	}
	select {
	case p.in <- it:
	case <-p.s.ctx.Done():
		p.s.root.Send(it.pid, &publishedMsg{op: it.op, gen: it.gen, err: ErrClosed})
	}
}

func (p *publisher) run(ctx context.Context) {
	if p.async != nil {
		return
	}
	var (
		batch    []*pubItem
		n        int
		inflight int
		due      bool
		timer    = time.NewTimer(time.Hour)
	)
	timer.Stop()
	for {
		in := p.in
		if n >= p.s.cfg.PublishMaxEvents {
			in = nil
		}
		var sem chan struct{}
		if len(batch) > 0 && (inflight == 0 || due || n >= p.s.cfg.PublishMaxEvents) {
			sem = p.sem
		}
		select {
		case it := <-in:
			if len(batch) == 0 {
				timer.Reset(p.s.cfg.PublishMaxDelay)
			}
			batch = append(batch, it)
			n += len(it.events)
		case <-timer.C:
			due = true
		case sem <- struct{}{}:
			inflight++
			p.s.wg.Add(1)
			go p.publish(ctx, batch, n)
			batch, n, due = nil, 0, false
			timer.Stop()
		case <-p.done:
			inflight--
		case <-ctx.Done():
			timer.Stop()
			for _, it := range batch {
				p.s.root.Send(it.pid, &publishedMsg{op: it.op, gen: it.gen, err: ErrClosed})
			}
			return
		}
	}
}

func (p *publisher) publish(ctx context.Context, batch []*pubItem, n int) {
	defer p.s.wg.Done()
	events := make([]*twinv1.TwinEvent, 0, n)
	for _, it := range batch {
		events = append(events, it.events...)
	}
	began := time.Now()
	err := p.s.cfg.Events.Publish(ctx, events...)
	p.s.m.callLatency.Observe(time.Since(began).Seconds())
	p.s.m.batchEvents.Observe(float64(n))
	p.s.m.publishCalls.Inc()
	if err != nil {
		p.s.m.publishErrs.Inc()
	} else {
		p.s.m.events.Add(float64(n))
	}
	for _, it := range batch {
		p.s.root.Send(it.pid, &publishedMsg{op: it.op, gen: it.gen, err: err})
	}
	<-p.sem
	p.done <- struct{}{}
}
