package streams

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// AssignedConfig configures an AssignedConsumer. Zero fields take the
// defaults of ConsumerConfig (DefaultCommitInterval, ...).
type AssignedConfig struct {
	// Client says how to reach the cluster. Required.
	Client ClientConfig

	// UplinkTopic, GatewayStatsTopic and GatewaySeenTopic are the input
	// topics; partition index p of each is assigned and revoked together,
	// so they must have the same partition count. The seen topic is read
	// only when the Handler implements SeenHandler.
	// Defaults: TopicUplink, TopicGatewayStats, TopicGatewaySeen.
	UplinkTopic       string
	GatewayStatsTopic string
	GatewaySeenTopic  string

	// Commit stores committable offsets durably (in the cluster's Raft
	// state, beside the twin snapshots they cover). It is called every
	// CommitInterval with the offsets that moved since the last
	// successful call, and once more when a revoked partition has
	// drained; it is never called concurrently, and never for a partition
	// after its Revoke returned. Every record before an offset passed is
	// complete. On error the offsets are offered again next round.
	// Required.
	Commit func(ctx context.Context, offsets []Offset) error

	// GroupID, when set, also writes the offsets Commit stored to Kafka's
	// group offset store (standalone-consumer commit: generation -1, no
	// member), so standard tools show the lag. It is best effort,
	// asynchronous and never read back; use a group id that no group
	// Consumer uses (Kafka refuses such commits to a group with members).
	// Default: "" (off).
	GroupID string

	// CommitInterval: see ConsumerConfig. Default: DefaultCommitInterval.
	CommitInterval time.Duration
	// DrainTimeout is how long Revoke (and Close) wait for records already
	// handed to the Handler before the final Commit.
	// Default: DefaultDrainTimeout (5 s).
	DrainTimeout time.Duration
	// RetryBackoff, FetchMaxWait, MaxInFlightPerPartition, MaxValueBytes,
	// FetchMaxBytes, QueueCapacity: see ConsumerConfig; same defaults.
	RetryBackoff            time.Duration
	FetchMaxWait            time.Duration
	MaxInFlightPerPartition int
	MaxValueBytes           int
	FetchMaxBytes           int
	QueueCapacity           int
}

// Validate fills defaults into zero fields and reports the first invalid
// field, wrapped in ErrInvalidConfig.
func (c *AssignedConfig) Validate() error {
	if c.UplinkTopic == "" {
		c.UplinkTopic = TopicUplink
	}
	if c.GatewayStatsTopic == "" {
		c.GatewayStatsTopic = TopicGatewayStats
	}
	if c.GatewaySeenTopic == "" {
		c.GatewaySeenTopic = TopicGatewaySeen
	}
	// The shared fields follow ConsumerConfig's rules exactly.
	cc := ConsumerConfig{
		Client: c.Client, UplinkTopic: c.UplinkTopic, GatewayStatsTopic: c.GatewayStatsTopic,
		CommitInterval: c.CommitInterval, DrainTimeout: c.DrainTimeout, RetryBackoff: c.RetryBackoff,
		FetchMaxWait: c.FetchMaxWait, MaxInFlightPerPartition: c.MaxInFlightPerPartition,
		MaxValueBytes: c.MaxValueBytes, FetchMaxBytes: c.FetchMaxBytes, QueueCapacity: c.QueueCapacity,
	}
	if c.DrainTimeout > 0 {
		cc.RebalanceTimeout = c.DrainTimeout + time.Second // only the group needs it
	}
	if err := cc.Validate(); err != nil {
		return err
	}
	c.Client = cc.Client
	c.CommitInterval, c.DrainTimeout, c.RetryBackoff, c.FetchMaxWait = cc.CommitInterval, cc.DrainTimeout, cc.RetryBackoff, cc.FetchMaxWait
	c.MaxInFlightPerPartition, c.MaxValueBytes = cc.MaxInFlightPerPartition, cc.MaxValueBytes
	c.FetchMaxBytes, c.QueueCapacity = cc.FetchMaxBytes, cc.QueueCapacity
	switch {
	case c.GatewaySeenTopic == c.UplinkTopic || c.GatewaySeenTopic == c.GatewayStatsTopic:
		return fmt.Errorf("%w: GatewaySeenTopic %q is another input topic", ErrInvalidConfig, c.GatewaySeenTopic)
	case c.Commit == nil:
		return fmt.Errorf("%w: no Commit function", ErrInvalidConfig)
	}
	return nil
}

// Offset is a committable position: Next is the next offset to read from
// Topic's Partition, every record before it complete.
type Offset struct {
	Topic     string
	Partition int
	Next      int64
}

// AssignedConsumer reads partitions that its caller assigns and revokes
// explicitly (in a cluster, the Raft leader decides which member owns
// partition index p of every input topic), from start offsets the caller
// gives, and stores committable offsets through the caller's Commit
// function instead of a Kafka consumer group. It does no failure
// detection of its own, so a partition moves as fast as the caller
// decides.
//
// Each assigned topic-partition runs the same session as the group
// Consumer: its own kafka-go Reader, watermark Tracker, bounded window,
// retries and dead-lettering, under the Handler contract.
type AssignedConsumer struct {
	cfg    AssignedConfig
	env    *sessionEnv
	topics []assignedTopic
	logger *slog.Logger
	group  *groupCommitter // nil without GroupID

	mu     sync.Mutex
	closed bool
	parts  map[int]*assignedPartition
	// releasing counts partitions being revoked (Add under mu).
	releasing sync.WaitGroup

	// commitMu serialises Commit calls and guards
	// assignedPartition.committed and commitFailing.
	commitMu      sync.Mutex
	commitFailing bool

	stop     chan struct{}
	loopDone chan struct{}
}

type assignedTopic struct {
	name string
	kind topicKind
}

// assignedPartition is partition index p of every input topic.
type assignedPartition struct {
	index     int
	cancel    context.CancelFunc
	sessions  []*session
	committed []int64       // per session; guarded by commitMu
	done      chan struct{} // closed when every session has drained
	revoking  bool          // guarded by AssignedConsumer.mu
}

// NewAssignedConsumer returns a consumer that owns no partition yet. It
// consumes GatewaySeenTopic too when h implements SeenHandler. m may be
// nil.
func NewAssignedConsumer(cfg AssignedConfig, h Handler, dlq DeadLetterer, m *Metrics, logger *slog.Logger) (*AssignedConsumer, error) {
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
	if m == nil {
		m = &Metrics{}
	}
	logger = orDiscard(logger)
	c := &AssignedConsumer{
		cfg: cfg, logger: logger,
		env: &sessionEnv{
			brokers: cfg.Client.Brokers, dialer: dialer, handler: h, dlq: dlq, metrics: m, logger: logger,
			window: cfg.MaxInFlightPerPartition, maxValueBytes: cfg.MaxValueBytes,
			fetchMaxBytes: cfg.FetchMaxBytes, queueCapacity: cfg.QueueCapacity,
			drainTimeout: cfg.DrainTimeout, retryBackoff: cfg.RetryBackoff, fetchMaxWait: cfg.FetchMaxWait,
		},
		topics: []assignedTopic{{cfg.UplinkTopic, kindUplink}, {cfg.GatewayStatsTopic, kindGatewayStats}},
		parts:  map[int]*assignedPartition{},
		stop:   make(chan struct{}), loopDone: make(chan struct{}),
	}
	if sh, ok := h.(SeenHandler); ok {
		c.env.seen = sh
		c.topics = append(c.topics, assignedTopic{cfg.GatewaySeenTopic, kindGatewaySeen})
	}
	if cfg.GroupID != "" {
		if c.group, err = newGroupCommitter(cfg.Client, cfg.GroupID, logger); err != nil {
			return nil, err
		}
	}
	go c.commitLoop()
	return c, nil
}

// Metrics returns the consumer's counters.
func (c *AssignedConsumer) Metrics() *Metrics { return c.env.metrics }

// Topics returns the topics whose partition index p Assign takes over: the
// uplink and gateway stats topics, and the seen topic when the Handler
// implements SeenHandler.
func (c *AssignedConsumer) Topics() []string {
	out := make([]string, len(c.topics))
	for i, t := range c.topics {
		out[i] = t.name
	}
	return out
}

// Assign starts consuming partition index p of every topic (Topics) and
// returns once fetching has started. starts gives the next offset to read
// per topic; a topic missing from it starts at its first offset
// (kafka.FirstOffset), and kafka.LastOffset starts at its end. ctx's
// values (not its cancellation) reach the Handler. It fails with
// ErrAlreadyOwned when p is owned or still being revoked, ErrClosed after
// Close, and ErrInvalidConfig for a negative p, an unknown topic in
// starts, or a negative offset other than those two markers.
func (c *AssignedConsumer) Assign(ctx context.Context, p int, starts map[string]int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p < 0 {
		return fmt.Errorf("%w: partition %d", ErrInvalidConfig, p)
	}
	for topic, off := range starts {
		if !slices.ContainsFunc(c.topics, func(t assignedTopic) bool { return t.name == topic }) {
			return fmt.Errorf("%w: start offset for topic %q, which is not consumed", ErrInvalidConfig, topic)
		}
		if off < 0 && off != kafka.FirstOffset && off != kafka.LastOffset {
			return fmt.Errorf("%w: start offset %d for %s/%d", ErrInvalidConfig, off, topic, p)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if _, ok := c.parts[p]; ok {
		return fmt.Errorf("%w: partition %d", ErrAlreadyOwned, p)
	}
	pctx, cancel := context.WithCancel(context.Background())
	ap := &assignedPartition{index: p, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	for _, t := range c.topics {
		start, ok := starts[t.name]
		if !ok {
			start = kafka.FirstOffset
		}
		s := newSession(c.env, ctx, t.name, t.kind, p, start)
		ap.sessions = append(ap.sessions, s)
		ap.committed = append(ap.committed, max(start, -1))
		wg.Go(func() { s.run(pctx) })
	}
	go func() { wg.Wait(); close(ap.done) }()
	c.parts[p] = ap
	c.logger.Debug("kafka partition assigned", "partition", p, "starts", starts)
	return nil
}

// Revoke stops fetching partition index p of every topic, waits for the
// records already handed to the Handler (DrainTimeout at most; later done
// calls are ignored and counted in Metrics.StaleDone), stores the final
// offsets through Commit (with ctx) and returns. Once it returned, the
// Handler gets no record of p and Commit no offset of p from this
// consumer, so a new owner may start from the committed offsets. The
// drain is bounded by DrainTimeout, not by ctx. An error wrapping
// ErrCommit means the final offsets were not stored (the partition is
// released all the same; its next owner redelivers from the last stored
// offsets).
func (c *AssignedConsumer) Revoke(ctx context.Context, p int) error {
	c.mu.Lock()
	ap := c.parts[p]
	if ap == nil || ap.revoking {
		c.mu.Unlock()
		return fmt.Errorf("%w: partition %d", ErrNotOwned, p)
	}
	ap.revoking = true
	c.releasing.Add(1)
	c.mu.Unlock()
	return c.release(ctx, []*assignedPartition{ap})
}

// release drains aps, commits their final offsets and forgets them. The
// caller marked them revoking and added them to c.releasing.
func (c *AssignedConsumer) release(ctx context.Context, aps []*assignedPartition) error {
	defer c.releasing.Add(-len(aps))
	for _, ap := range aps {
		ap.cancel()
	}
	for _, ap := range aps {
		<-ap.done
	}
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	err := c.commitLocked(ctx, aps)
	c.mu.Lock()
	for _, ap := range aps {
		delete(c.parts, ap.index)
		c.logger.Debug("kafka partition released", "partition", ap.index)
	}
	c.mu.Unlock()
	return err
}

// Owned returns the partition indexes owned and not being revoked, in
// increasing order.
func (c *AssignedConsumer) Owned() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, 0, len(c.parts))
	for p, ap := range c.parts {
		if !ap.revoking {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Close revokes every owned partition (drain, then one final Commit for
// all), waits for Revoke calls in progress, and stops the consumer. Later
// Assign calls fail with ErrClosed. Close is safe to call more than once;
// its error wraps ErrCommit when the final offsets were not stored.
func (c *AssignedConsumer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.loopDone
		return nil
	}
	c.closed = true
	var aps []*assignedPartition
	for _, p := range slices.Sorted(maps.Keys(c.parts)) {
		if ap := c.parts[p]; !ap.revoking {
			ap.revoking = true
			aps = append(aps, ap)
		}
	}
	c.releasing.Add(len(aps))
	c.mu.Unlock()

	var err error
	if len(aps) > 0 {
		err = c.release(context.Background(), aps)
	}
	c.releasing.Wait() // Revoke calls in progress
	close(c.stop)
	<-c.loopDone
	if c.group != nil {
		c.group.close()
	}
	return err
}

// commitLoop commits moved offsets every CommitInterval until Close.
func (c *AssignedConsumer) commitLoop() {
	defer close(c.loopDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.stop
		cancel()
	}()
	tick := time.NewTicker(c.cfg.CommitInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		c.commitMu.Lock()
		c.mu.Lock()
		aps := slices.Collect(maps.Values(c.parts))
		c.mu.Unlock()
		_ = c.commitLocked(ctx, aps)
		c.commitMu.Unlock()
	}
}

// commitLocked passes the offsets of aps that moved to Commit. The caller
// holds commitMu.
func (c *AssignedConsumer) commitLocked(ctx context.Context, aps []*assignedPartition) error {
	var offsets []Offset
	var advance int64
	type moved struct {
		ap  *assignedPartition
		i   int
		off int64
	}
	var ms []moved
	for _, ap := range aps {
		for i, s := range ap.sessions {
			off := s.committable.Load()
			if off <= ap.committed[i] {
				continue
			}
			offsets = append(offsets, Offset{Topic: s.topic, Partition: s.partition, Next: off})
			ms = append(ms, moved{ap, i, off})
			advance += off - max(ap.committed[i], s.firstFetched.Load())
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	m := c.env.metrics
	if err := c.cfg.Commit(ctx, offsets); err != nil {
		m.CommitErrors.Add(1)
		if !c.commitFailing {
			c.commitFailing = true
			c.logger.Warn("offset commit failed; retrying every commit interval", "offsets", len(offsets), "err", err)
		}
		return fmt.Errorf("%w: %d offsets: %w", ErrCommit, len(offsets), err)
	}
	if c.commitFailing {
		c.commitFailing = false
		c.logger.Info("offset commit recovered")
	}
	m.Commits.Add(1)
	m.CommittedRecords.Add(uint64(max(advance, 0)))
	for _, mv := range ms {
		mv.ap.committed[mv.i] = mv.off
	}
	if c.group != nil {
		c.group.offer(offsets)
	}
	return nil
}

// groupCommitter copies stored offsets to a Kafka consumer group's offset
// store in the background, for lag monitoring only. Newer offers replace
// older ones per partition; a failed write is dropped (the next offer
// carries newer offsets).
type groupCommitter struct {
	client    *kafka.Client
	transport *kafka.Transport
	groupID   string
	logger    *slog.Logger

	mu      sync.Mutex
	pending map[topicPartition]int64
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	warned  bool
}

func newGroupCommitter(cc ClientConfig, groupID string, logger *slog.Logger) (*groupCommitter, error) {
	tr, err := cc.Transport()
	if err != nil {
		return nil, err
	}
	g := &groupCommitter{
		client:    &kafka.Client{Addr: kafka.TCP(cc.Brokers...), Transport: tr, Timeout: 5 * time.Second},
		transport: tr, groupID: groupID, logger: logger,
		pending: map[topicPartition]int64{},
		wake:    make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go g.run()
	return g, nil
}

func (g *groupCommitter) offer(offsets []Offset) {
	g.mu.Lock()
	for _, o := range offsets {
		g.pending[topicPartition{o.Topic, o.Partition}] = o.Next
	}
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *groupCommitter) run() {
	defer close(g.done)
	for {
		select {
		case <-g.wake:
			g.flush()
		case <-g.stop:
			g.flush() // the last offsets, once
			return
		}
	}
}

func (g *groupCommitter) flush() {
	g.mu.Lock()
	pending := g.pending
	g.pending = map[topicPartition]int64{}
	g.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	topics := map[string][]kafka.OffsetCommit{}
	for tp, off := range pending {
		topics[tp.topic] = append(topics[tp.topic], kafka.OffsetCommit{Partition: tp.partition, Offset: off})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := g.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: g.groupID, GenerationID: -1, Topics: topics})
	if err == nil {
	check:
		for _, ps := range resp.Topics {
			for _, p := range ps {
				if p.Error != nil {
					err = p.Error
					break check
				}
			}
		}
	}
	if err != nil && !g.warned {
		g.warned = true
		g.logger.Warn("kafka group offset copy failed (monitoring only)", "group", g.groupID, "err", err)
	}
	if err == nil {
		g.warned = false
	}
}

func (g *groupCommitter) close() {
	close(g.stop)
	<-g.done
	g.transport.CloseIdleConnections()
}
