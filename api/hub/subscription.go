package hub

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// Message is what Next yields: an event, or a heartbeat (Event nil). Both
// carry the token to resume right after them.
type Message struct {
	// Event is shared with other subscriptions: do not modify it.
	Event *twinv1.TwinEvent
	Token string
	// Time is the server's time when the message was produced.
	Time time.Time
}

// Heartbeat reports whether m is a heartbeat.
func (m Message) Heartbeat() bool { return m.Event == nil }

// item is one queued event.
type item struct {
	part int32
	off  int64
	ev   *twinv1.TwinEvent
}

// span is a partition range still to replay: from the subscription's
// position up to (excluding) to, where its live delivery starts.
type span struct {
	part int
	to   int64
}

// Subscription is one subscriber's view of the hub. Next and Close must be
// called from the goroutine that owns it (the stream handler).
type Subscription struct {
	h      *Hub
	filter compiled
	queue  chan item
	// pending[p] counts queued events of partition p: incremented by the
	// partition goroutine under its lock, decremented by Next.
	pending []atomic.Int64
	// liveFrom[p] is the first offset of partition p pushed live; written
	// at Subscribe and read by append, both under the partition's lock.
	liveFrom []int64

	closed    atomic.Bool // no more pushes: failed or closed
	failOnce  sync.Once
	failed    chan struct{}
	failErr   error // set before failed is closed
	closeOnce sync.Once

	// Owned by the goroutine calling Next.
	pos    []int64 // next offset to deliver, per partition
	replay []span
	buf    []entry
	kr     *kafka.Reader
	ticker *time.Ticker
	hello  bool
	sent   bool // a message went out since the last tick
}

func newSubscription(h *Hub, f compiled, n int) *Subscription {
	return &Subscription{
		h: h, filter: f,
		queue:    make(chan item, h.cfg.QueueSize),
		pending:  make([]atomic.Int64, n),
		liveFrom: make([]int64, n),
		failed:   make(chan struct{}),
		pos:      make([]int64, n),
		ticker:   time.NewTicker(h.cfg.Heartbeat),
	}
}

// fail ends the subscription with err (the first error wins).
func (s *Subscription) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		s.closed.Store(true)
		close(s.failed)
	})
}

// Done is closed when the subscription failed (ErrSlow, ErrClosed) or was
// closed: a stream handler blocked sending to a client that stopped
// reading can use it to cut that client off.
func (s *Subscription) Done() <-chan struct{} { return s.failed }

// More reports whether Next has a message ready without waiting (queued
// events or a replay in progress). The stream handler uses it to batch
// flushes. Call it from the goroutine that calls Next.
func (s *Subscription) More() bool { return len(s.queue) > 0 || len(s.replay) > 0 }

// Token returns the subscription's current resume token.
func (s *Subscription) Token() string { return EncodeToken(s.pos) }

// Close ends the subscription and releases it. It is idempotent.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.fail(ErrClosed)
		s.h.unregister(s)
		if s.kr != nil {
			_ = s.kr.Close()
			s.kr = nil
		}
		s.ticker.Stop()
		s.h.m.subscribers.Add(-1)
	})
}

// Next returns the next message: first a heartbeat at once (so the client
// holds a token), then the replay of what the resume token missed, then
// live events, with a heartbeat whenever a Heartbeat interval passed
// without a message. It returns ErrSlow when the subscriber fell behind by
// more than its queue, ErrTokenTooOld when the replay cannot be served,
// ErrClosed when the hub stopped, and ctx's error when ctx ends.
func (s *Subscription) Next(ctx context.Context) (Message, error) {
	if !s.hello {
		s.hello = true
		return s.heartbeat(), nil
	}
	for len(s.replay) > 0 {
		if err := ctx.Err(); err != nil {
			return Message{}, err
		}
		select {
		case <-s.failed:
			return Message{}, s.failErr
		case <-s.ticker.C:
			if !s.sent {
				return s.heartbeat(), nil
			}
			s.sent = false
		default:
		}
		m, ok, err := s.replayStep(ctx)
		if err != nil {
			return Message{}, err
		}
		if ok {
			s.sent = true
			return m, nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			return Message{}, ctx.Err()
		case it := <-s.queue:
			return s.deliver(it), nil
		case <-s.failed:
			// Everything queued before the failure is still in order and
			// without a gap: hand it out, then report the failure.
			select {
			case it := <-s.queue:
				return s.deliver(it), nil
			default:
				return Message{}, s.failErr
			}
		case <-s.h.done:
			return Message{}, ErrClosed
		case <-s.ticker.C:
			if s.sent {
				s.sent = false
				continue
			}
			return s.heartbeat(), nil
		}
	}
}

func (s *Subscription) deliver(it item) Message {
	s.pending[it.part].Add(-1)
	s.pos[it.part] = it.off + 1
	s.sent = true
	return Message{Event: it.ev, Token: EncodeToken(s.pos), Time: s.h.cfg.Now()}
}

// heartbeat advances the positions of caught-up partitions past events
// that did not match, and returns a heartbeat with the token.
func (s *Subscription) heartbeat() Message {
	replaying := make(map[int]bool, len(s.replay))
	for _, sp := range s.replay {
		replaying[sp.part] = true
	}
	for i, p := range s.h.parts {
		if replaying[i] {
			continue
		}
		p.mu.Lock()
		// Under the lock no event of p can be pushed; pending == 0 then
		// means every event pushed so far was handed out by Next, and
		// every other event below head did not match.
		if s.pending[i].Load() == 0 && p.head > s.pos[i] {
			s.pos[i] = p.head
		}
		p.mu.Unlock()
	}
	return Message{Token: EncodeToken(s.pos), Time: s.h.cfg.Now()}
}

// replayStep consumes one replayed event (ok when it matched and is
// returned) or refills the replay buffer.
func (s *Subscription) replayStep(ctx context.Context) (Message, bool, error) {
	sp := s.replay[0]
	i := sp.part
	if len(s.buf) > 0 {
		e := s.buf[0]
		s.buf = s.buf[1:]
		s.pos[i] = e.off + 1
		if e.ev != nil && s.filter.match(e.ev, e.kind) {
			return Message{Event: e.ev, Token: EncodeToken(s.pos), Time: s.h.cfg.Now()}, true, nil
		}
		return Message{}, false, nil
	}
	if s.pos[i] >= sp.to {
		s.endSpan()
		return Message{}, false, nil
	}
	if s.kr == nil {
		p := s.h.parts[i]
		p.mu.Lock()
		first, ok := p.ring.first()
		inRing := ok && s.pos[i] >= first
		if inRing {
			s.buf = p.ring.copyRange(s.buf[:0], s.pos[i], sp.to, s.h.cfg.ReplayChunk)
		}
		p.mu.Unlock()
		if inRing {
			s.h.m.replayedRing.Add(uint64(len(s.buf)))
			if len(s.buf) == 0 {
				s.pos[i] = sp.to // nothing left below the live start
			}
			return Message{}, false, nil
		}
		if err := s.openKafka(ctx, i); err != nil {
			return Message{}, false, err
		}
	}
	return s.kafkaStep(ctx, sp)
}

// endSpan finishes the replay of the first span: its live delivery starts
// exactly at its end.
func (s *Subscription) endSpan() {
	sp := s.replay[0]
	s.pos[sp.part] = max(s.pos[sp.part], sp.to)
	s.replay = s.replay[1:]
	s.buf = s.buf[:0]
	if s.kr != nil {
		_ = s.kr.Close()
		s.kr = nil
	}
}

// openKafka starts reading partition i from Kafka at the subscription's
// position, after checking that Kafka still holds it.
func (s *Subscription) openKafka(ctx context.Context, i int) error {
	first, err := s.h.oldest(ctx, i)
	if err != nil {
		return fmt.Errorf("replay partition %d: %w", i, err)
	}
	if s.pos[i] < first {
		s.h.m.tooOld.Add(1)
		return fmt.Errorf("%w (partition %d: token at %d, oldest retained %d)", ErrTokenTooOld, i, s.pos[i], first)
	}
	r := s.h.newReader(i, 50*time.Millisecond)
	if err := r.SetOffset(s.pos[i]); err != nil {
		_ = r.Close()
		return fmt.Errorf("replay partition %d: %w", i, err)
	}
	s.kr = r
	return nil
}

// kafkaStep reads one record of the replayed span from Kafka.
func (s *Subscription) kafkaStep(ctx context.Context, sp span) (Message, bool, error) {
	m, err := s.kr.FetchMessage(ctx)
	if err != nil {
		return Message{}, false, fmt.Errorf("replay partition %d: %w", sp.part, err)
	}
	s.h.m.replayedKafka.Add(1)
	if m.Offset >= sp.to {
		s.endSpan()
		return Message{}, false, nil
	}
	s.pos[sp.part] = m.Offset + 1
	ev, ok := decode(m.Value)
	if !ok || !s.filter.match(ev, KindOf(ev)) {
		return Message{}, false, nil
	}
	return Message{Event: ev, Token: EncodeToken(s.pos), Time: s.h.cfg.Now()}, true, nil
}

// decode parses a twin.events record; ok is false for one that is not a
// TwinEvent with an id (it is skipped, and counted by the consumer).
func decode(b []byte) (*twinv1.TwinEvent, bool) {
	ev := new(twinv1.TwinEvent)
	if err := proto.Unmarshal(b, ev); err != nil {
		return nil, false
	}
	return ev, ev.GetEventId() != ""
}
