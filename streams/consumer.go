package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
)

// Handler receives decoded input records. The twin actor system implements
// it; streams only routes.
//
// Both methods are called from the partition's own goroutine, in offset
// order, and must not block beyond handing the record over (to an actor
// mailbox, say). They must eventually call done exactly once:
//
//   - done(nil) when the record's effects are durable (state persisted and
//     replicated, events published): the record counts as complete;
//   - done(err) with an error wrapping ErrRetry, context.Canceled or
//     context.DeadlineExceeded when the record was not applied but may be
//     later: it is handed over again after ConsumerConfig.RetryBackoff;
//   - done(err) with any other error when the record is rejected for good
//     (a MIC failure, an unknown device): it goes to the dead-letter topic
//     with reason "handler" and the error text, and then counts as
//     complete.
//
// ctx is cancelled once the partition is revoked (rebalance, Revoke or shutdown)
// and its drain time is over; a done call after that is ignored and the
// record is redelivered to the partition's next owner. Records are
// delivered at least once: after a rebalance or crash the same record may
// arrive again and the Handler must recognise it (frame counter, event
// ids).
type Handler interface {
	HandleUplink(ctx context.Context, rec Record, f *lorawanv1.UplinkFrame, done func(error))
	HandleGatewayStats(ctx context.Context, rec Record, s *lorawanv1.GatewayStats, done func(error))
}

// DeadLetterer writes a rejected record to the dead-letter topic and
// returns once it is durable. DLQProducer implements it.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, rec Record, reason Reason, detail string) error
}

// Defaults applied by ConsumerConfig.Validate.
const (
	DefaultGroupID                 = "legiond"
	DefaultCommitInterval          = 200 * time.Millisecond
	DefaultMaxInFlightPerPartition = 1024
	DefaultMaxValueBytes           = 1024
	DefaultSessionTimeout          = 10 * time.Second
	DefaultHeartbeatInterval       = time.Second
	DefaultRebalanceTimeout        = 20 * time.Second
	DefaultDrainTimeout            = 5 * time.Second
	DefaultJoinGroupBackoff        = time.Second
	DefaultRetryBackoff            = 500 * time.Millisecond
	DefaultFetchMaxWait            = 250 * time.Millisecond
	DefaultFetchMaxBytes           = 1 << 20
	DefaultQueueCapacity           = 100
)

// ConsumerConfig configures a Consumer.
//
// Group timing. Kafka (and kfake) complete a rebalance only when every
// member has rejoined; a member notices a rebalance on its next heartbeat,
// then drains (DrainTimeout at most), commits and rejoins. A planned
// rebalance therefore takes about HeartbeatInterval plus the slowest
// drain. A member that dies without leaving is noticed only after
// SessionTimeout; its partitions stall that long. Brokers refuse session
// timeouts outside group.min/max.session.timeout.ms (6 s to 5 min by
// default, kfake included).
type ConsumerConfig struct {
	// Client says how to reach the cluster. Required.
	Client ClientConfig

	// GroupID is the consumer group. Default: DefaultGroupID ("legiond").
	GroupID string

	// UplinkTopic and GatewayStatsTopic are the input topics.
	// Defaults: TopicUplink, TopicGatewayStats.
	UplinkTopic       string
	GatewayStatsTopic string

	// CommitInterval is how often each partition's committable offset is
	// committed (only when it moved). A crash replays at most this much
	// completed work. Default: DefaultCommitInterval (200 ms).
	CommitInterval time.Duration

	// MaxInFlightPerPartition bounds each partition's window: records
	// fetched and not yet behind the committable offset. When it is full
	// the partition stops fetching until the oldest record completes
	// (backpressure); other partitions go on.
	// Default: DefaultMaxInFlightPerPartition (1024).
	MaxInFlightPerPartition int

	// MaxValueBytes is the largest record value accepted; larger ones are
	// dead-lettered as oversized. Default: DefaultMaxValueBytes (1 KiB).
	MaxValueBytes int

	// SessionTimeout: see the type comment. Default:
	// DefaultSessionTimeout (10 s).
	SessionTimeout time.Duration

	// HeartbeatInterval is how often the member heartbeats, and so how
	// fast it notices a rebalance. At most SessionTimeout/3.
	// Default: DefaultHeartbeatInterval (1 s).
	HeartbeatInterval time.Duration

	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin. Must exceed DrainTimeout.
	// Default: DefaultRebalanceTimeout (20 s).
	RebalanceTimeout time.Duration

	// DrainTimeout is how long a revoked partition (rebalance or Close)
	// waits for records already handed to the Handler before its final
	// commit. Default: DefaultDrainTimeout (5 s).
	DrainTimeout time.Duration

	// JoinGroupBackoff is the pause after a failed attempt to join.
	// Default: DefaultJoinGroupBackoff (1 s).
	JoinGroupBackoff time.Duration

	// RetryBackoff is the pause before handing a record over again after
	// ErrRetry, before retrying a failed dead-letter write, and after a
	// fetch error. Default: DefaultRetryBackoff (500 ms).
	RetryBackoff time.Duration

	// FetchMaxWait is how long a fetch waits on the broker for new
	// records. Default: DefaultFetchMaxWait (250 ms).
	FetchMaxWait time.Duration

	// FetchMaxBytes bounds one fetch response per partition.
	// Default: DefaultFetchMaxBytes (1 MiB).
	FetchMaxBytes int

	// QueueCapacity is how many fetched records each partition reader
	// buffers ahead of the window. Default: DefaultQueueCapacity (100).
	QueueCapacity int

	// StartAtLatest makes a group without a committed offset start at the
	// end of a partition instead of its beginning. Default: false, so no
	// frame already in Kafka is skipped.
	StartAtLatest bool

	// OnCommit, when set, receives every offset about to be committed,
	// before the Kafka commit, and must make them durable where the
	// Handler's state lives (the node writes them into its twin store).
	// A checkpoint of that state then carries the offsets it covers, so a
	// restored backup knows where to resume. An error skips the Kafka
	// commit of this round (counted in CommitErrors); the same offsets
	// (or later ones) are offered again on the next round. ctx bounds the
	// call by RebalanceTimeout. Default nil: Kafka only.
	OnCommit func(ctx context.Context, offsets []Offset) error

	// StartOffset, when set, is asked for the next offset to read of each
	// partition when it is assigned. When it reports an offset lower than
	// the group's committed one, the partition starts there instead: the
	// state behind the Handler is older than Kafka's commit (a restored
	// backup), and the records in between must be applied again. Replaying
	// is safe (the Handler recognises what it already holds); skipping is
	// not. The replay's progress reaches OnCommit as it advances; Kafka's
	// commit never moves backwards and moves again once the replay passes
	// it. A higher or missing offset changes nothing: Kafka's commit, or
	// the group's start position without one, rules. Default nil.
	StartOffset func(topic string, partition int) (offset int64, ok bool)
}

// Validate fills defaults into zero fields and reports the first invalid
// field, wrapped in ErrInvalidConfig.
func (c *ConsumerConfig) Validate() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	if c.GroupID == "" {
		c.GroupID = DefaultGroupID
	}
	if c.UplinkTopic == "" {
		c.UplinkTopic = TopicUplink
	}
	if c.GatewayStatsTopic == "" {
		c.GatewayStatsTopic = TopicGatewayStats
	}
	def(&c.CommitInterval, DefaultCommitInterval)
	def(&c.SessionTimeout, DefaultSessionTimeout)
	def(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	def(&c.RebalanceTimeout, DefaultRebalanceTimeout)
	def(&c.DrainTimeout, DefaultDrainTimeout)
	def(&c.JoinGroupBackoff, DefaultJoinGroupBackoff)
	def(&c.RetryBackoff, DefaultRetryBackoff)
	def(&c.FetchMaxWait, DefaultFetchMaxWait)
	defInt(&c.MaxInFlightPerPartition, DefaultMaxInFlightPerPartition)
	defInt(&c.MaxValueBytes, DefaultMaxValueBytes)
	defInt(&c.FetchMaxBytes, DefaultFetchMaxBytes)
	defInt(&c.QueueCapacity, DefaultQueueCapacity)

	if err := c.Client.Validate(); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.UplinkTopic == c.GatewayStatsTopic:
		return bad("UplinkTopic and GatewayStatsTopic are both %q", c.UplinkTopic)
	case c.CommitInterval < 10*time.Millisecond:
		return bad("CommitInterval %v < 10ms", c.CommitInterval)
	case c.MaxInFlightPerPartition < 1 || c.MaxInFlightPerPartition > 1<<20:
		return bad("MaxInFlightPerPartition %d not in 1..%d", c.MaxInFlightPerPartition, 1<<20)
	case c.MaxValueBytes < 64:
		return bad("MaxValueBytes %d < 64", c.MaxValueBytes)
	case c.SessionTimeout < time.Second:
		return bad("SessionTimeout %v < 1s", c.SessionTimeout)
	case c.HeartbeatInterval <= 0 || c.HeartbeatInterval > c.SessionTimeout/3:
		return bad("HeartbeatInterval %v not in (0, SessionTimeout/3]", c.HeartbeatInterval)
	case c.DrainTimeout < 0 || c.DrainTimeout >= c.RebalanceTimeout:
		return bad("DrainTimeout %v not in [0, RebalanceTimeout %v)", c.DrainTimeout, c.RebalanceTimeout)
	case c.JoinGroupBackoff < 0 || c.RetryBackoff <= 0:
		return bad("JoinGroupBackoff and RetryBackoff must be positive")
	case c.FetchMaxWait < 10*time.Millisecond:
		return bad("FetchMaxWait %v < 10ms", c.FetchMaxWait)
	case c.FetchMaxBytes < c.MaxValueBytes:
		return bad("FetchMaxBytes %d < MaxValueBytes %d", c.FetchMaxBytes, c.MaxValueBytes)
	case c.QueueCapacity < 1:
		return bad("QueueCapacity %d < 1", c.QueueCapacity)
	}
	return nil
}

// Consumer reads lorawan.uplink and lorawan.gateway.stats as one member of
// a consumer group, hands decoded records to a Handler, dead-letters what
// it cannot decode or the Handler rejects, and commits each partition's
// offset once every record before it is complete.
//
// Group membership uses kafka-go's ConsumerGroup (the machinery behind its
// group Reader) so that assignments are explicit: each assigned partition
// gets its own session with its own kafka-go Reader (FetchMessage only),
// watermark Tracker and bounded window, and commits go through the
// generation that owns the partition, so a revoked partition can never
// commit over its new owner.
type Consumer struct {
	cfg     ConsumerConfig
	metrics *Metrics
	logger  *slog.Logger
	dialer  *kafka.Dialer
	env     *sessionEnv

	started atomic.Bool
	// onCommitFailing: the last OnCommit failed (logged once per outage).
	onCommitFailing atomic.Bool
	mu              sync.Mutex
	closing         bool
	cancel          context.CancelFunc
	stopped         chan struct{}
}

// NewConsumer returns a Consumer; Run starts it. metrics may be nil.
func NewConsumer(cfg ConsumerConfig, h Handler, dlq DeadLetterer, metrics *Metrics, logger *slog.Logger) (*Consumer, error) {
	if h == nil || dlq == nil {
		return nil, fmt.Errorf("%w: nil Handler or DeadLetterer", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dialer, err := cfg.Client.Dialer()
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = &Metrics{}
	}
	c := &Consumer{
		cfg: cfg, metrics: metrics, logger: orDiscard(logger), dialer: dialer,
		stopped: make(chan struct{}),
	}
	c.env = &sessionEnv{
		brokers: cfg.Client.Brokers, dialer: dialer, handler: h, dlq: dlq, metrics: metrics, logger: c.logger,
		window: cfg.MaxInFlightPerPartition, maxValueBytes: cfg.MaxValueBytes,
		fetchMaxBytes: cfg.FetchMaxBytes, queueCapacity: cfg.QueueCapacity,
		drainTimeout: cfg.DrainTimeout, retryBackoff: cfg.RetryBackoff, fetchMaxWait: cfg.FetchMaxWait,
	}
	return c, nil
}

// Metrics returns the consumer's counters.
func (c *Consumer) Metrics() *Metrics { return c.metrics }

// Run joins the group and consumes until ctx is cancelled or Close is
// called. Before it returns, every owned partition drains (DrainTimeout),
// commits what is complete, and the member leaves the group. It returns
// nil on a clean stop. Run may be called once.
func (c *Consumer) Run(ctx context.Context) error {
	if c.started.Swap(true) {
		return fmt.Errorf("%w: Run called twice", ErrClosed)
	}
	defer close(c.stopped)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	closing := c.closing
	c.cancel = cancel
	c.mu.Unlock()
	if closing {
		return fmt.Errorf("%w: Close called before Run", ErrClosed)
	}

	start := kafka.FirstOffset
	if c.cfg.StartAtLatest {
		start = kafka.LastOffset
	}
	gcfg := kafka.ConsumerGroupConfig{
		ID:                    c.cfg.GroupID,
		Brokers:               c.cfg.Client.Brokers,
		Dialer:                c.dialer,
		Topics:                []string{c.cfg.UplinkTopic, c.cfg.GatewayStatsTopic},
		HeartbeatInterval:     c.cfg.HeartbeatInterval,
		SessionTimeout:        c.cfg.SessionTimeout,
		RebalanceTimeout:      c.cfg.RebalanceTimeout,
		JoinGroupBackoff:      c.cfg.JoinGroupBackoff,
		WatchPartitionChanges: true,
		StartOffset:           start,
		ErrorLogger:           kafkaLogger(c.logger, slog.LevelDebug),
	}
	if c.logger.Enabled(ctx, slog.LevelDebug) {
		gcfg.Logger = kafkaLogger(c.logger, slog.LevelDebug)
	}
	group, err := kafka.NewConsumerGroup(gcfg)
	if err != nil {
		return fmt.Errorf("%w: consumer group: %w", ErrInvalidConfig, err)
	}
	c.logger.Info("kafka consumer starting", "group", c.cfg.GroupID,
		"topics", gcfg.Topics, "brokers", c.cfg.Client.Brokers)

	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				break
			}
			c.metrics.GroupErrors.Add(1)
			c.logger.Warn("kafka consumer group: join failed; retrying", "group", c.cfg.GroupID, "err", err)
			continue
		}
		c.metrics.Generations.Add(1)
		c.logger.Info("kafka consumer group generation", "group", c.cfg.GroupID,
			"generation", gen.ID, "member", gen.MemberID, "assignments", describeAssignments(gen.Assignments))
		// runCtx's values (not its cancellation) reach the Handler.
		gen.Start(func(gctx context.Context) { c.runGeneration(ctx, gctx, gen) })
	}
	// Closing the group ends the current generation: its partitions drain
	// and commit (runGeneration) before the member leaves the group.
	if err := group.Close(); err != nil {
		c.logger.Warn("kafka consumer group close", "err", err)
	}
	c.logger.Info("kafka consumer stopped", "group", c.cfg.GroupID)
	return nil
}

// Close stops a running Run and waits until it returned (partitions
// drained, complete offsets committed, group left). A Run that starts after
// Close returns ErrClosed at once. Close is safe to call more than once.
func (c *Consumer) Close() error {
	c.mu.Lock()
	c.closing = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-c.stopped
	return nil
}

func describeAssignments(as map[string][]kafka.PartitionAssignment) map[string][]int {
	out := make(map[string][]int, len(as))
	for t, ps := range as {
		for _, p := range ps {
			out[t] = append(out[t], p.ID)
		}
		slices.Sort(out[t])
	}
	return out
}

type topicPartition struct {
	topic     string
	partition int
}

// runGeneration owns one generation: a session per assigned partition and
// the periodic commit of their watermarks. It returns, after the final
// commit, once the generation ends (rebalance or Close) and every session
// has drained.
func (c *Consumer) runGeneration(runCtx, gctx context.Context, gen *kafka.Generation) {
	var wg sync.WaitGroup
	var sessions []*session
	marks := commitMarks{kafka: map[topicPartition]int64{}, stored: map[topicPartition]int64{}}
	for topic, parts := range gen.Assignments {
		for _, pa := range parts {
			kind := kindGatewayStats
			if topic == c.cfg.UplinkTopic {
				kind = kindUplink
			}
			start := c.startOffset(topic, pa.ID, pa.Offset)
			s := newSession(c.env, runCtx, topic, kind, pa.ID, start)
			sessions = append(sessions, s)
			tp := topicPartition{topic, pa.ID}
			// A replay from a lower stored offset is stored as it
			// advances, but Kafka's commit moves only past its own.
			marks.kafka[tp] = max(pa.Offset, -1)
			marks.stored[tp] = max(start, -1)
			wg.Go(func() { s.run(gctx) })
		}
	}

	tick := time.NewTicker(c.cfg.CommitInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			c.commit(gen, sessions, marks)
			continue
		case <-gctx.Done():
		}
		break
	}
	wg.Wait()
	c.commit(gen, sessions, marks)
}

// commitMarks are a generation's last successful commits per partition:
// to Kafka, and through OnCommit.
type commitMarks struct {
	kafka, stored map[topicPartition]int64
}

// startOffset is where an assigned partition starts: Kafka's committed
// offset (or the group's FirstOffset/LastOffset marker without one), or
// the lower offset StartOffset reports.
func (c *Consumer) startOffset(topic string, partition int, committed int64) int64 {
	if c.cfg.StartOffset == nil || committed < 0 {
		return committed
	}
	off, ok := c.cfg.StartOffset(topic, partition)
	if !ok || off < 0 || off >= committed {
		return committed
	}
	c.metrics.Rewinds.Add(1)
	c.logger.Warn("kafka partition starts before the group's committed offset: the stored state is older (restored backup?); replaying",
		"topic", topic, "partition", partition, "stored", off, "committed", committed, "replay", committed-off)
	return off
}

// commit hands every session's committable offset that moved since the
// last stored one to OnCommit, then, once they are stored, commits those
// beyond Kafka's last commit in one request through gen. Kafka's commit
// thus never runs ahead of the stored offsets, and never moves backwards.
func (c *Consumer) commit(gen *kafka.Generation, sessions []*session, marks commitMarks) {
	if c.cfg.OnCommit != nil {
		var list []Offset
		for _, s := range sessions {
			off := s.committable.Load()
			if off > marks.stored[topicPartition{s.topic, s.partition}] {
				list = append(list, Offset{Topic: s.topic, Partition: s.partition, Next: off})
			}
		}
		if len(list) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RebalanceTimeout)
			err := c.cfg.OnCommit(ctx, list)
			cancel()
			if err != nil {
				c.metrics.CommitErrors.Add(1)
				if !c.onCommitFailing.Swap(true) { // log once per outage
					c.logger.Warn("offsets not stored; Kafka commits wait until they are",
						"group", c.cfg.GroupID, "generation", gen.ID, "err", err)
				}
				return
			}
			if c.onCommitFailing.Swap(false) {
				c.logger.Info("offsets stored again; Kafka commits resume", "group", c.cfg.GroupID)
			}
			for _, o := range list {
				marks.stored[topicPartition{o.Topic, o.Partition}] = o.Next
			}
		}
	}
	offsets := map[string]map[int]int64{}
	var advance int64
	for _, s := range sessions {
		tp := topicPartition{s.topic, s.partition}
		off := s.committable.Load()
		if c.cfg.OnCommit != nil {
			off = min(off, marks.stored[tp]) // what is stored, no more
		}
		if off <= marks.kafka[tp] {
			continue
		}
		if offsets[s.topic] == nil {
			offsets[s.topic] = map[int]int64{}
		}
		offsets[s.topic][s.partition] = off
		advance += off - max(marks.kafka[tp], s.firstFetched.Load())
	}
	if len(offsets) == 0 {
		return
	}
	if err := gen.CommitOffsets(offsets); err != nil {
		c.metrics.CommitErrors.Add(1)
		level := slog.LevelWarn
		if errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.IllegalGeneration) ||
			errors.Is(err, kafka.UnknownMemberId) {
			level = slog.LevelInfo // the generation is over; the next owner resumes
		}
		c.logger.Log(context.Background(), level, "kafka offset commit failed",
			"group", c.cfg.GroupID, "generation", gen.ID, "err", err)
		return
	}
	c.metrics.Commits.Add(1)
	c.metrics.CommittedRecords.Add(uint64(max(advance, 0)))
	for topic, ps := range offsets {
		for p, off := range ps {
			marks.kafka[topicPartition{topic, p}] = off
		}
	}
}

// kafkaLogger adapts slog to kafka-go's printf logger.
func kafkaLogger(l *slog.Logger, level slog.Level) kafka.Logger {
	return kafka.LoggerFunc(func(format string, args ...any) {
		l.Log(context.Background(), level, "kafka-go: "+fmt.Sprintf(format, args...))
	})
}
