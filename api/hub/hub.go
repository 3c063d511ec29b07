package hub

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// Metrics are the hub's counters (a point-in-time copy).
type Metrics struct {
	// Events counts records appended (decoded or not); Undecodable the
	// records that did not decode as TwinEvent.
	Events, Undecodable uint64
	// Delivered counts events pushed into subscriber queues.
	Delivered uint64
	// Subscribers is the number of open subscriptions; Subscribed counts
	// every subscription ever opened.
	Subscribers int64
	Subscribed  uint64
	// Slow counts subscribers disconnected because their queue was full.
	Slow uint64
	// ReplayedRing and ReplayedKafka count events scanned by resumes, from
	// the ring and from Kafka.
	ReplayedRing, ReplayedKafka uint64
	// TooOld counts resumes refused with ErrTokenTooOld.
	TooOld uint64
	// FetchErrors counts errors reading a partition (the reader retries).
	FetchErrors uint64
}

type counters struct {
	events, undecodable, delivered, subscribed, slow atomic.Uint64
	replayedRing, replayedKafka, tooOld, fetchErrors atomic.Uint64
	subscribers                                      atomic.Int64
}

// Hub consumes twin.events and fans events out to subscriptions. Create it
// with New, run it with Run; Subscribe may be called before Run is ready
// (it waits).
type Hub struct {
	cfg    Config
	dialer *kafka.Dialer
	client *kafka.Client
	m      counters

	// oldest returns the oldest offset Kafka holds for a partition
	// (firstOffset; tests replace it to simulate retention).
	oldest func(ctx context.Context, p int) (int64, error)

	ready chan struct{} // closed once parts is set
	parts []*partition  // written once before ready is closed
	done  chan struct{} // closed when Run returns
	once  sync.Once
}

// partition is one partition of the topic: its ring, its head and the
// subscriptions that receive its live events.
type partition struct {
	id int

	mu   sync.Mutex
	ring ring
	head int64 // next offset to append
	subs []*Subscription
}

// New validates cfg and returns a hub; Run starts it.
func New(cfg Config) (*Hub, error) {
	cfg.setDefaults()
	if err := cfg.Client.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dialer, err := cfg.Client.Dialer()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	tr, err := cfg.Client.Transport()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	h := &Hub{
		cfg:    cfg,
		dialer: dialer,
		client: &kafka.Client{Addr: kafka.TCP(cfg.Client.Brokers...), Transport: tr, Timeout: 10 * time.Second},
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	h.oldest = h.firstOffset
	return h, nil
}

// Ready is closed once the hub knows every partition's starting offset;
// from then on every event is delivered to matching subscriptions.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Metrics returns a copy of the counters.
func (h *Hub) Metrics() Metrics {
	return Metrics{
		Events: h.m.events.Load(), Undecodable: h.m.undecodable.Load(), Delivered: h.m.delivered.Load(),
		Subscribers: h.m.subscribers.Load(), Subscribed: h.m.subscribed.Load(), Slow: h.m.slow.Load(),
		ReplayedRing: h.m.replayedRing.Load(), ReplayedKafka: h.m.replayedKafka.Load(), TooOld: h.m.tooOld.Load(),
		FetchErrors: h.m.fetchErrors.Load(),
	}
}

// Run discovers the topic's partitions, starts one reader per partition at
// its end (or Config.StartOffsets), and delivers events until ctx ends.
// Then every open subscription ends with ErrClosed. Run may be called once;
// it returns nil on a clean stop.
func (h *Hub) Run(ctx context.Context) error {
	started := false
	h.once.Do(func() { started = true })
	if !started {
		return fmt.Errorf("%w: Run called twice", ErrClosed)
	}
	defer close(h.done)
	defer h.closeAll()
	starts, err := h.discover(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	parts := make([]*partition, len(starts))
	for i, off := range starts {
		parts[i] = &partition{id: i, ring: newRing(h.cfg.RingSize), head: off}
	}
	h.parts = parts
	close(h.ready)
	h.cfg.Logger.Info("stream hub consuming", "topic", h.cfg.Topic, "partitions", len(parts))

	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() { h.consume(ctx, p) })
	}
	wg.Wait()
	return nil
}

// discover waits until the topic exists and returns each partition's
// starting offset.
func (h *Hub) discover(ctx context.Context) ([]int64, error) {
	for {
		starts, err := h.startOffsets(ctx)
		if err == nil {
			return starts, nil
		}
		h.cfg.Logger.Warn("stream hub: topic not ready, retrying", "topic", h.cfg.Topic, "err", err)
		if !h.pause(ctx) {
			return nil, ctx.Err()
		}
	}
}

func (h *Hub) startOffsets(ctx context.Context) ([]int64, error) {
	md, err := h.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{h.cfg.Topic}})
	if err != nil {
		return nil, err
	}
	var n int
	for _, t := range md.Topics {
		if t.Name != h.cfg.Topic {
			continue
		}
		if t.Error != nil {
			return nil, t.Error
		}
		n = len(t.Partitions)
	}
	if n == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", h.cfg.Topic)
	}
	_, last, err := h.offsets(ctx, n)
	if err != nil {
		return nil, err
	}
	for p, off := range h.cfg.StartOffsets {
		if p < n {
			last[p] = min(off, last[p])
		}
	}
	return last, nil
}

// offsets lists the first and next-to-write offsets of n partitions.
func (h *Hub) offsets(ctx context.Context, n int) (first, last []int64, err error) {
	reqs := make([]kafka.OffsetRequest, 0, 2*n)
	for p := range n {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	resp, err := h.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{h.cfg.Topic: reqs}})
	if err != nil {
		return nil, nil, err
	}
	first, last = make([]int64, n), make([]int64, n)
	seen := 0
	for _, po := range resp.Topics[h.cfg.Topic] {
		if po.Error != nil {
			return nil, nil, po.Error
		}
		if po.Partition < 0 || po.Partition >= n {
			continue
		}
		first[po.Partition], last[po.Partition] = po.FirstOffset, po.LastOffset
		seen++
	}
	if seen < n {
		return nil, nil, fmt.Errorf("offsets of %d of %d partitions", seen, n)
	}
	return first, last, nil
}

// firstOffset returns the oldest offset Kafka still holds for partition p.
func (h *Hub) firstOffset(ctx context.Context, p int) (int64, error) {
	resp, err := h.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{h.cfg.Topic: {kafka.FirstOffsetOf(p)}}})
	if err != nil {
		return 0, err
	}
	for _, po := range resp.Topics[h.cfg.Topic] {
		if po.Partition == p {
			return po.FirstOffset, po.Error
		}
	}
	return 0, fmt.Errorf("no offset for partition %d", p)
}

// pause waits RetryBackoff or until ctx ends (false).
func (h *Hub) pause(ctx context.Context) bool {
	t := time.NewTimer(h.cfg.RetryBackoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (h *Hub) newReader(p int, maxWait time.Duration) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:         h.cfg.Client.Brokers,
		Dialer:          h.dialer,
		Topic:           h.cfg.Topic,
		Partition:       p,
		MinBytes:        1,
		MaxBytes:        8 << 20,
		MaxWait:         maxWait,
		QueueCapacity:   1024,
		ReadLagInterval: -1,
		ReadBackoffMin:  time.Millisecond,
		ReadBackoffMax:  h.cfg.RetryBackoff,
	})
}

// consume is partition p's goroutine: it reads, decodes and fans out.
func (h *Hub) consume(ctx context.Context, p *partition) {
	r := h.newReader(p.id, h.cfg.FetchMaxWait)
	defer func() { _ = r.Close() }()
	p.mu.Lock()
	start := p.head
	p.mu.Unlock()
	if err := r.SetOffset(start); err != nil {
		h.cfg.Logger.Error("stream hub: cannot seek", "partition", p.id, "offset", start, "err", err)
		return
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.m.fetchErrors.Add(1)
			h.cfg.Logger.Warn("stream hub: fetch failed", "partition", p.id, "err", err)
			if !h.pause(ctx) {
				return
			}
			continue
		}
		e := entry{off: m.Offset, at: h.cfg.Now()}
		if ev, ok := decode(m.Value); ok {
			e.ev, e.kind = ev, KindOf(ev)
		} else {
			h.m.undecodable.Add(1)
		}
		h.m.events.Add(1)
		h.append(p, e)
	}
}

// append adds e to p's ring and pushes it to every matching subscription,
// never blocking: a full queue disconnects its subscriber.
func (h *Hub) append(p *partition, e entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.off < p.head {
		return // a re-read after a reader reconnect
	}
	p.ring.push(e, h.cfg.RingSize)
	p.ring.evictOlder(e.at.Add(-h.cfg.RingMaxAge))
	p.head = e.off + 1
	if e.ev == nil {
		return
	}
	keep := p.subs[:0]
	for _, s := range p.subs {
		if s.closed.Load() {
			continue
		}
		keep = append(keep, s)
		if e.off < s.liveFrom[p.id] || !s.filter.match(e.ev, e.kind) {
			continue
		}
		s.pending[p.id].Add(1)
		select {
		case s.queue <- item{part: int32(p.id), off: e.off, ev: e.ev}:
			h.m.delivered.Add(1)
		default:
			s.pending[p.id].Add(-1)
			s.fail(ErrSlow)
			h.m.slow.Add(1)
			keep = keep[:len(keep)-1]
		}
	}
	clear(p.subs[len(keep):])
	p.subs = keep
}

// closeAll ends every subscription when Run stops.
func (h *Hub) closeAll() {
	for _, p := range h.parts {
		p.mu.Lock()
		for _, s := range p.subs {
			s.fail(ErrClosed)
		}
		p.subs = nil
		p.mu.Unlock()
	}
}

// Subscribe opens a subscription with filter f, resuming after token when
// it is not empty (else starting live). It waits until the hub is ready or
// ctx ends. The caller must call Next from one goroutine and Close when
// done.
func (h *Hub) Subscribe(ctx context.Context, f Filter, token string) (*Subscription, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var positions []int64
	if token != "" {
		var err error
		if positions, err = DecodeToken(token); err != nil {
			return nil, err
		}
	}
	select {
	case <-h.ready:
	case <-h.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-h.done:
		return nil, ErrClosed
	default:
	}
	n := len(h.parts)
	if len(positions) > n {
		return nil, fmt.Errorf("%w: it names %d partitions, the topic has %d", ErrBadToken, len(positions), n)
	}
	s := newSubscription(h, compile(f), n)
	for i, p := range h.parts {
		p.mu.Lock()
		from := p.head
		if positions != nil {
			from = 0 // a partition the token does not know yet: from its start
			if i < len(positions) {
				from = positions[i]
			}
		}
		s.pos[i] = from
		if from < p.head {
			s.replay = append(s.replay, span{part: i, to: p.head})
			s.liveFrom[i] = p.head
		} else {
			s.liveFrom[i] = from
		}
		p.subs = append(p.subs, s)
		p.mu.Unlock()
	}
	h.m.subscribed.Add(1)
	h.m.subscribers.Add(1)
	return s, nil
}

// unregister removes s from every partition.
func (h *Hub) unregister(s *Subscription) {
	for _, p := range h.parts {
		p.mu.Lock()
		if i := indexOf(p.subs, s); i >= 0 {
			p.subs = append(p.subs[:i], p.subs[i+1:]...)
		}
		p.mu.Unlock()
	}
}

func indexOf(subs []*Subscription, s *Subscription) int {
	for i, x := range subs {
		if x == s {
			return i
		}
	}
	return -1
}
