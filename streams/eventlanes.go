package streams

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// laneDepth is how many batches of records a lane holds before
// PublishAsync blocks (backpressure on the callers).
const laneDepth = 4

// lanes is the asynchronous side of EventProducer: one lane per partition
// of twin.events, each writing whatever is pending in one produce request
// while the next batch gathers (Nagle-style, no linger delay). A lane has
// at most one request in flight, so the records of one key (one
// partition) are written in the order they were queued, and a quiet lane
// sends a lone record at once.
//
// Why not kafka-go's own batching: its batches close on a timer
// (BatchTimeout) or when full, and a synchronous call waits for every
// partition of its records. Under load that is either small requests
// (each one an fsync on the broker) or waiting for the slowest partition
// and a whole call before the next gathers.
type lanes struct {
	w        *kafka.Writer // Balancer: the partition the lane chose
	client   *kafka.Client
	topic    string
	maxBatch int
	maxBytes int64
	metrics  *Metrics
	bal      kafka.Murmur2Balancer
	// sem bounds the lanes' requests in flight together (LaneRequests):
	// a lane waiting for a slot keeps gathering.
	sem chan struct{}

	ctx    context.Context // cancelled by close, after the lanes drained
	cancel context.CancelFunc

	mu      sync.Mutex // guards parts, pidx, closing
	parts   []*lane
	pidx    []int
	closing bool
	wg      sync.WaitGroup
}

// lane is one partition's queue.
type lane struct {
	ls        *lanes
	partition int

	mu      sync.Mutex
	space   *sync.Cond // signalled when pending shrank or closing
	msgs    []kafka.Message
	calls   []*asyncCall
	closing bool
	wake    chan struct{} // cap 1
}

// asyncCall is one PublishAsync call: done runs when its last record is
// written (or failed).
type asyncCall struct {
	left atomic.Int32
	mu   sync.Mutex
	err  error
	done func(error)
}

func (c *asyncCall) finish(err error) {
	if err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	if c.left.Add(-1) == 0 {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		c.done(err)
	}
}

// pinnedBalancer sends a record to the partition it names (the lane's).
type pinnedBalancer struct{}

func (pinnedBalancer) Balance(msg kafka.Message, partitions ...int) int {
	for _, p := range partitions {
		if p == msg.Partition {
			return p
		}
	}
	return partitions[msg.Partition%len(partitions)]
}

func newLanes(cfg ProducerConfig, transport *kafka.Transport, metrics *Metrics, logger interface{ Warn(string, ...any) }) *lanes {
	codec, _ := compression(cfg.Compression)
	w := &kafka.Writer{
		Addr:        kafka.TCP(cfg.Client.Brokers...),
		Topic:       cfg.Topic,
		Balancer:    pinnedBalancer{},
		MaxAttempts: cfg.MaxAttempts,
		// A lane hands over at most maxBatch records per call, so a call is
		// one kafka-go batch; it closes at once when full, else after this
		// token delay (the records of the call are all added before the
		// batch's timer can take it).
		BatchSize:    cfg.BatchSize,
		BatchBytes:   cfg.BatchBytes,
		BatchTimeout: time.Microsecond,
		WriteTimeout: cfg.WriteTimeout,
		ReadTimeout:  cfg.WriteTimeout,
		RequiredAcks: kafka.RequireAll,
		Compression:  codec,
		Transport:    transport,
		ErrorLogger: kafka.LoggerFunc(func(format string, args ...any) {
			logger.Warn("kafka event lanes: " + fmt.Sprintf(format, args...))
		}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &lanes{
		w: w, client: &kafka.Client{Addr: w.Addr, Transport: transport, Timeout: cfg.WriteTimeout},
		topic: cfg.Topic, maxBatch: cfg.BatchSize, maxBytes: cfg.BatchBytes, metrics: metrics,
		sem: make(chan struct{}, cfg.LaneRequests), ctx: ctx, cancel: cancel,
	}
}

// partitions returns the lanes, creating them on first use from the
// topic's metadata. A failed lookup is retried by the next call.
func (ls *lanes) partitions(ctx context.Context) ([]*lane, []int, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closing {
		return nil, nil, ErrClosed
	}
	if ls.parts != nil {
		return ls.parts, ls.pidx, nil
	}
	md, err := ls.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{ls.topic}})
	if err != nil {
		return nil, nil, fmt.Errorf("metadata of %s: %w", ls.topic, err)
	}
	n := 0
	for _, t := range md.Topics {
		if t.Name == ls.topic {
			if t.Error != nil {
				return nil, nil, fmt.Errorf("metadata of %s: %w", ls.topic, t.Error)
			}
			n = len(t.Partitions)
		}
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("metadata of %s: no partitions", ls.topic)
	}
	for i := range n {
		l := &lane{ls: ls, partition: i, wake: make(chan struct{}, 1)}
		l.space = sync.NewCond(&l.mu)
		ls.parts = append(ls.parts, l)
		ls.pidx = append(ls.pidx, i)
		ls.wg.Add(1)
		go l.run()
	}
	return ls.parts, ls.pidx, nil
}

// enqueue queues msgs (marshalled, keyed) for one call; done runs once.
func (ls *lanes) enqueue(ctx context.Context, msgs []kafka.Message, done func(error)) {
	parts, pidx, err := ls.partitions(ctx)
	if err != nil {
		done(fmt.Errorf("%w: %d twin events: %w", ErrPublish, len(msgs), err))
		return
	}
	c := &asyncCall{done: done}
	c.left.Store(int32(len(msgs)))
	for i := range msgs {
		m := msgs[i]
		m.Partition = ls.bal.Balance(m, pidx...)
		if err := parts[m.Partition].put(ctx, m, c); err != nil {
			// This record and the ones after it are not queued.
			for range len(msgs) - i {
				c.finish(fmt.Errorf("%w: twin event: %w", ErrPublish, err))
			}
			return
		}
	}
}

func (l *lane) put(ctx context.Context, m kafka.Message, c *asyncCall) error {
	l.mu.Lock()
	for len(l.msgs) >= laneDepth*l.ls.maxBatch && !l.closing {
		if ctx.Err() != nil {
			l.mu.Unlock()
			return ctx.Err()
		}
		l.space.Wait()
	}
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.msgs = append(l.msgs, m)
	l.calls = append(l.calls, c)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

// run writes the pending records, at most maxBatch records and about
// maxBytes per request, one request at a time, until closing and empty.
func (l *lane) run() {
	defer l.ls.wg.Done()
	var msgs []kafka.Message
	var calls []*asyncCall
	for {
		l.mu.Lock()
		for len(l.msgs) == 0 && !l.closing {
			l.mu.Unlock()
			<-l.wake
			l.mu.Lock()
		}
		if len(l.msgs) == 0 {
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		l.ls.sem <- struct{}{}
		l.mu.Lock()
		n, size := 0, int64(0)
		for n < len(l.msgs) && n < l.ls.maxBatch {
			s := approxSize(&l.msgs[n])
			if n > 0 && size+s > l.ls.maxBytes {
				break
			}
			size += s
			n++
		}
		msgs = append(msgs[:0], l.msgs[:n]...)
		calls = append(calls[:0], l.calls[:n]...)
		rest := copy(l.msgs, l.msgs[n:])
		clear(l.msgs[rest:])
		l.msgs = l.msgs[:rest]
		rest = copy(l.calls, l.calls[n:])
		clear(l.calls[rest:])
		l.calls = l.calls[:rest]
		l.space.Broadcast()
		l.mu.Unlock()

		began := time.Now()
		err := l.ls.w.WriteMessages(l.ls.ctx, msgs...)
		<-l.ls.sem
		m := l.ls.metrics
		m.EventRequests.Add(1)
		m.EventRequestNanos.Add(uint64(time.Since(began)))
		if err != nil {
			m.PublishErrors.Add(1)
			err = fmt.Errorf("%w: %d twin events to partition %d: %w", ErrPublish, len(msgs), l.partition, err)
		} else {
			m.EventsPublished.Add(uint64(len(msgs)))
		}
		for _, c := range calls {
			c.finish(err)
		}
		clear(msgs)
		clear(calls)
	}
}

// approxSize is a record's size in a batch (kafka-go's own accounting is
// not exported): key, value, headers and record overhead.
func approxSize(m *kafka.Message) int64 {
	n := 32 + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += 8 + len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// close writes what is queued, stops the lanes and closes the writer.
func (ls *lanes) close() error {
	ls.mu.Lock()
	ls.closing = true
	parts := ls.parts
	ls.mu.Unlock()
	for _, l := range parts {
		l.mu.Lock()
		l.closing = true
		l.space.Broadcast()
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	ls.wg.Wait()
	ls.cancel()
	if err := ls.w.Close(); err != nil {
		return fmt.Errorf("close event lanes: %w", err)
	}
	return nil
}

// PublishAsync queues events for twin.events and returns; done is called
// exactly once (possibly before PublishAsync returns, never while holding
// a lock of the producer) with nil once every event is durable (acks=all),
// or with the first failure, wrapping ErrInvalidRecord, ErrPublish or
// ErrClosed. The events are marshalled before it returns: the caller may
// reuse them at once.
//
// Events of one device (one key, one partition) are written in the order
// they were queued, across calls; one produce request per partition is in
// flight and the next gathers meanwhile. PublishAsync blocks while the
// partition's queue is full (ctx bounds that wait). A failed write may
// still have stored some events: ids are deterministic, consumers
// de-duplicate.
func (p *EventProducer) PublishAsync(ctx context.Context, events []*twinv1.TwinEvent, done func(error)) {
	if len(events) == 0 {
		done(nil)
		return
	}
	if p.w.closed.Load() {
		done(ErrClosed)
		return
	}
	msgs, err := p.messages(events)
	if err != nil {
		done(err)
		return
	}
	p.lanes.enqueue(ctx, msgs, done)
}
