package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/streams/watermark"
)

// completion kinds: what finished for a record.
type completionKind uint8

const (
	handlerDone completionKind = iota + 1 // the Handler called done
	dlqDone                               // a dead-letter write returned
	retryDue                              // RetryBackoff passed after ErrRetry
	dlqRetryDue                           // RetryBackoff passed after a failed dead-letter write
)

type completion struct {
	kind   completionKind
	offset int64
	err    error
}

// pending is a record in the window that is not complete.
type pending struct {
	rec    Record
	msg    any // *lorawanv1.UplinkFrame, GatewayStats or GatewayUplinkSeen; nil when dead-lettered at decode
	reason Reason
	detail string
	// busy is true while a handler call, dead-letter write or retry timer
	// is outstanding for the record.
	busy bool
}

// topicKind says which decoder and Handler method a partition's records
// go through.
type topicKind uint8

const (
	kindUplink       topicKind = iota + 1 // lorawan.uplink → HandleUplink
	kindGatewayStats                      // lorawan.gateway.stats → HandleGatewayStats
	kindGatewaySeen                       // lorawan.gateway.seen → SeenHandler.HandleGatewaySeen
)

// sessionEnv is what a session needs from the consumer that owns it: the
// group Consumer and the AssignedConsumer each build one.
type sessionEnv struct {
	brokers []string
	dialer  *kafka.Dialer
	handler Handler
	seen    SeenHandler // nil unless the Handler implements it
	dlq     DeadLetterer
	metrics *Metrics
	logger  *slog.Logger

	window, maxValueBytes, fetchMaxBytes, queueCapacity int
	drainTimeout, retryBackoff, fetchMaxWait            time.Duration
}

// session owns one assigned partition for one generation (group Consumer)
// or one assignment (AssignedConsumer): its reader, its
// watermark tracker and its window. Only run's goroutine touches tracker,
// inflight and the counters below; other goroutines talk to it through
// completions.
type session struct {
	env       *sessionEnv
	topic     string
	partition int
	start     int64
	kind      topicKind

	tracker  *watermark.Tracker
	inflight map[int64]*pending
	busy     int  // records with busy set
	draining bool // revoked: fetch nothing, start nothing new
	dlqWarn  bool // a dead-letter failure was logged already

	// hctx is handed to the Handler and dead-letter writes; it outlives
	// the generation by the drain time.
	hctx    context.Context
	hcancel context.CancelFunc

	completions chan completion
	closed      chan struct{} // closed when run stops reading completions

	// Published for the committer and gauges.
	committable  atomic.Int64 // -1 unknown
	firstFetched atomic.Int64 // -1 none
	lag, window  int64        // last values added to Metrics.Lag/InFlight
	hwm          int64
}

func newSession(env *sessionEnv, runCtx context.Context, topic string, kind topicKind, partition int, start int64) *session {
	hctx, hcancel := context.WithCancel(context.WithoutCancel(runCtx))
	s := &session{
		env: env, topic: topic, partition: partition, start: start,
		kind:        kind,
		tracker:     watermark.New(env.window, start),
		inflight:    make(map[int64]*pending),
		hctx:        hctx,
		hcancel:     hcancel,
		completions: make(chan completion, env.window),
		closed:      make(chan struct{}),
		hwm:         -1,
	}
	s.committable.Store(max(start, -1))
	s.firstFetched.Store(-1)
	return s
}

// deliver hands a completion to run; false when the session is over.
// Each window record has at most one outstanding handler call, write or
// timer, so the buffer (one slot per window record) never blocks.
func (s *session) deliver(cm completion) bool {
	select {
	case <-s.closed:
		return false
	default:
	}
	select {
	case s.completions <- cm:
		return true
	case <-s.closed:
		return false
	}
}

// run consumes the partition until gctx ends, then drains and returns.
func (s *session) run(gctx context.Context) {
	env := s.env
	defer s.hcancel()
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        env.brokers,
		Dialer:         env.dialer,
		Topic:          s.topic,
		Partition:      s.partition,
		QueueCapacity:  env.queueCapacity,
		MinBytes:       1,
		MaxBytes:       env.fetchMaxBytes,
		MaxWait:        env.fetchMaxWait,
		ReadBackoffMin: min(50*time.Millisecond, env.retryBackoff),
		ReadBackoffMax: max(time.Second, env.retryBackoff),
		IsolationLevel: kafka.ReadCommitted,
		ErrorLogger:    kafkaLogger(env.logger, slog.LevelDebug),
	})
	// The assignment is a committed offset or the group's FirstOffset /
	// LastOffset marker; SetOffset fails only on a closed reader.
	_ = reader.SetOffset(s.start)
	fetched := make(chan kafka.Message)
	fetchStopped := make(chan struct{})
	go s.fetch(gctx, reader, fetched, fetchStopped)

loop:
	for {
		var in <-chan kafka.Message
		if !s.tracker.Full() {
			in = fetched
		}
		select {
		case <-gctx.Done():
			break loop
		case m := <-in:
			s.onFetch(m)
		case cm := <-s.completions:
			s.onCompletion(cm)
		}
		s.publish()
	}

	// Revoked: stop fetching, give outstanding work DrainTimeout to
	// finish, publish the final watermark for the last commit.
	s.draining = true
	_ = reader.Close()
	<-fetchStopped
	if s.busy > 0 {
		deadline := time.NewTimer(env.drainTimeout)
	drain:
		for s.busy > 0 {
			select {
			case cm := <-s.completions:
				s.onCompletion(cm)
			case <-deadline.C:
				break drain
			}
		}
		deadline.Stop()
	}
	close(s.closed)
	s.publish()
	s.env.metrics.Lag.Add(-s.lag)
	s.env.metrics.InFlight.Add(-s.window)
	s.env.logger.Debug("kafka partition revoked", "topic", s.topic, "partition", s.partition,
		"committable", s.committable.Load(), "abandoned", s.tracker.Pending())
}

// fetch feeds fetched records to run, one at a time: while run's window is
// full it does not receive, so fetch blocks and the reader's bounded queue
// fills and stops fetching.
func (s *session) fetch(ctx context.Context, r *kafka.Reader, out chan<- kafka.Message, stopped chan<- struct{}) {
	defer close(stopped)
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.env.metrics.FetchErrors.Add(1)
			t := time.NewTimer(s.env.retryBackoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// publish exposes the watermark to the committer and updates the gauges.
func (s *session) publish() {
	off, ok := s.tracker.Committable()
	if ok {
		s.committable.Store(off)
	}
	var lag int64
	if ok && s.hwm > off {
		lag = s.hwm - off
	}
	if lag != s.lag {
		s.env.metrics.Lag.Add(lag - s.lag)
		s.lag = lag
	}
	if w := int64(s.tracker.Len()); w != s.window {
		s.env.metrics.InFlight.Add(w - s.window)
		s.window = w
	}
}

func (s *session) onFetch(m kafka.Message) {
	if err := s.tracker.Fetch(m.Offset); err != nil {
		s.env.metrics.Skipped.Add(1)
		return
	}
	if s.firstFetched.Load() < 0 {
		s.firstFetched.Store(m.Offset)
	}
	if m.HighWaterMark > s.hwm {
		s.hwm = m.HighWaterMark
	}
	p := &pending{rec: Record{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Key: m.Key, Value: m.Value, Time: m.Time,
	}}
	if p.rec.Topic == "" {
		p.rec.Topic = s.topic
	}
	if len(m.Headers) > 0 {
		p.rec.Headers = make([]Header, len(m.Headers))
		for i, h := range m.Headers {
			p.rec.Headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	s.inflight[m.Offset] = p

	var rej *rejection
	switch s.kind {
	case kindUplink:
		s.env.metrics.UplinksIn.Add(1)
		p.msg, rej = decodeUplink(&p.rec, s.env.maxValueBytes)
	case kindGatewayStats:
		s.env.metrics.GatewayStatsIn.Add(1)
		p.msg, rej = decodeGatewayStats(&p.rec, s.env.maxValueBytes)
	case kindGatewaySeen:
		s.env.metrics.GatewaySeenIn.Add(1)
		p.msg, rej = decodeGatewaySeen(&p.rec, s.env.maxValueBytes)
	}
	if rej != nil {
		p.reason, p.detail = rej.reason, rej.detail
		s.deadLetter(p)
		return
	}
	s.dispatch(p)
}

// dispatch hands p to the Handler with a done callback that reports back
// to run exactly once.
func (s *session) dispatch(p *pending) {
	s.setBusy(p, true)
	var called atomic.Bool
	off := p.rec.Offset
	done := func(err error) {
		if called.Swap(true) {
			s.env.metrics.DuplicateDone.Add(1)
			return
		}
		if !s.deliver(completion{kind: handlerDone, offset: off, err: err}) {
			s.env.metrics.StaleDone.Add(1)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			done(fmt.Errorf("handler panic: %v", r))
		}
	}()
	switch msg := p.msg.(type) {
	case *lorawanv1.UplinkFrame:
		s.env.handler.HandleUplink(s.hctx, p.rec, msg, done)
	case *lorawanv1.GatewayStats:
		s.env.handler.HandleGatewayStats(s.hctx, p.rec, msg, done)
	case *lorawanv1.GatewayUplinkSeen:
		s.env.seen.HandleGatewaySeen(s.hctx, p.rec, msg, done)
	}
}

// deadLetter writes p to the dead-letter topic in the background.
func (s *session) deadLetter(p *pending) {
	s.setBusy(p, true)
	rec, reason, detail := p.rec, p.reason, p.detail
	go func() {
		err := s.env.dlq.DeadLetter(s.hctx, rec, reason, detail)
		s.deliver(completion{kind: dlqDone, offset: rec.Offset, err: err})
	}()
}

// later delivers a completion of kind after RetryBackoff.
func (s *session) later(p *pending, kind completionKind) {
	s.setBusy(p, true)
	off := p.rec.Offset
	time.AfterFunc(s.env.retryBackoff, func() { s.deliver(completion{kind: kind, offset: off}) })
}

func (s *session) setBusy(p *pending, busy bool) {
	if p.busy == busy {
		return
	}
	p.busy = busy
	if busy {
		s.busy++
	} else {
		s.busy--
	}
}

func (s *session) onCompletion(cm completion) {
	p := s.inflight[cm.offset]
	if p == nil || !p.busy {
		return // cannot happen: one outstanding action per record
	}
	s.setBusy(p, false)
	switch cm.kind {
	case handlerDone:
		switch {
		case cm.err == nil:
			s.env.metrics.Handled.Add(1)
			s.complete(p)
		case errors.Is(cm.err, ErrRetry) || errors.Is(cm.err, context.Canceled) ||
			errors.Is(cm.err, context.DeadlineExceeded):
			if !s.draining {
				s.env.metrics.Retried.Add(1)
				s.later(p, retryDue)
			}
		default:
			if !s.draining {
				p.reason, p.detail = ReasonHandler, cm.err.Error()
				s.deadLetter(p)
			}
		}
	case dlqDone:
		if cm.err == nil {
			s.env.metrics.addDeadLettered(p.reason)
			s.complete(p)
			return
		}
		s.env.metrics.DLQErrors.Add(1)
		if !s.dlqWarn {
			s.dlqWarn = true
			s.env.logger.Warn("kafka dead-letter write failed; retrying", "topic", s.topic,
				"partition", s.partition, "offset", p.rec.Offset, "err", cm.err)
		}
		if !s.draining {
			s.later(p, dlqRetryDue)
		}
	case retryDue:
		if !s.draining {
			s.dispatch(p)
		}
	case dlqRetryDue:
		if !s.draining {
			s.deadLetter(p)
		}
	}
}

func (s *session) complete(p *pending) {
	delete(s.inflight, p.rec.Offset)
	if _, err := s.tracker.Complete(p.rec.Offset); err != nil {
		// Cannot happen: inflight and tracker hold the same offsets.
		s.env.logger.Error("kafka watermark out of step", "topic", s.topic, "partition", s.partition, "err", err)
	}
}
