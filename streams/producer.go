package streams

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// Defaults applied by ProducerConfig.Validate.
const (
	DefaultBatchSize    = 100
	DefaultBatchBytes   = 1 << 20
	DefaultBatchTimeout = 5 * time.Millisecond
	DefaultWriteTimeout = 10 * time.Second
	DefaultMaxAttempts  = 10
	DefaultLaneRequests = 4
)

// Compression codecs accepted in ProducerConfig.Compression.
const (
	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionSnappy = "snappy"
	CompressionLZ4    = "lz4"
	CompressionZstd   = "zstd"
)

// Headers written on dead letters, besides the original record's headers.
const (
	HeaderReason          = "reason"
	HeaderReasonDetail    = "reason_detail"
	HeaderSourceTopic     = "source_topic"
	HeaderSourcePartition = "source_partition"
	HeaderSourceOffset    = "source_offset"
	// HeaderEventID carries TwinEvent.event_id on twin.events so that
	// consumers can de-duplicate without decoding.
	HeaderEventID = "event_id"
)

// ProducerConfig configures a producer. Every producer writes with
// acks=all (the write returns once all in-sync replicas have the record)
// and partitions by key with murmur2, like the Java client, so records of
// one key stay in order on one partition whoever produces them.
type ProducerConfig struct {
	// Client says how to reach the cluster. Required.
	Client ClientConfig

	// Topic is the destination. Default: the producer's own topic
	// (twin.events, lorawan.uplink.dlq or lorawan.uplink).
	Topic string

	// GatewayStatsTopic is where UplinkProducer.SendGatewayStats writes.
	// Default: TopicGatewayStats. Other producers ignore it.
	GatewayStatsTopic string

	// BatchSize is the most records per partition batch.
	// Default: DefaultBatchSize (100).
	BatchSize int

	// BatchBytes is the largest batch in bytes.
	// Default: DefaultBatchBytes (1 MiB).
	BatchBytes int64

	// BatchTimeout is how long a partial batch waits for more records
	// from concurrent callers before it is sent. kafka-go's own default
	// of one second would add a second to every lone write.
	// Default: DefaultBatchTimeout (5 ms).
	BatchTimeout time.Duration

	// WriteTimeout bounds one produce request.
	// Default: DefaultWriteTimeout (10 s).
	WriteTimeout time.Duration

	// MaxAttempts is how often a batch is tried before the write fails.
	// Default: DefaultMaxAttempts (10).
	MaxAttempts int

	// LaneRequests bounds the produce requests EventProducer.PublishAsync
	// has in flight together, over all partitions (each partition has at
	// most one). Fewer means larger batches under load; more means
	// partitions wait less for each other. Other producers ignore it.
	// Default: DefaultLaneRequests (4).
	LaneRequests int

	// Compression is CompressionNone, CompressionGzip, CompressionSnappy,
	// CompressionLZ4 or CompressionZstd. Default: CompressionNone.
	Compression string
}

// Validate fills defaults into zero fields and reports the first invalid
// field, wrapped in ErrInvalidConfig. The producer constructors fill in
// their own Topic before validating; here a zero Topic is an error.
func (c *ProducerConfig) Validate() error { return c.validate("") }

func (c *ProducerConfig) validate(defaultTopic string) error {
	if c.Topic == "" {
		c.Topic = defaultTopic
	}
	if c.GatewayStatsTopic == "" {
		c.GatewayStatsTopic = TopicGatewayStats
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.LaneRequests == 0 {
		c.LaneRequests = DefaultLaneRequests
	}
	if c.Compression == "" {
		c.Compression = CompressionNone
	}
	if err := c.Client.Validate(); err != nil {
		return err
	}
	switch {
	case c.Topic == "":
		return fmt.Errorf("%w: producer without a topic", ErrInvalidConfig)
	case c.BatchSize < 1:
		return fmt.Errorf("%w: BatchSize %d < 1", ErrInvalidConfig, c.BatchSize)
	case c.BatchBytes < 1024:
		return fmt.Errorf("%w: BatchBytes %d < 1024", ErrInvalidConfig, c.BatchBytes)
	case c.BatchTimeout < 0 || c.WriteTimeout < 0:
		return fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	case c.MaxAttempts < 1:
		return fmt.Errorf("%w: MaxAttempts %d < 1", ErrInvalidConfig, c.MaxAttempts)
	case c.LaneRequests < 1:
		return fmt.Errorf("%w: LaneRequests %d < 1", ErrInvalidConfig, c.LaneRequests)
	}
	if _, err := compression(c.Compression); err != nil {
		return err
	}
	return nil
}

func compression(name string) (kafka.Compression, error) {
	switch name {
	case CompressionNone:
		return 0, nil
	case CompressionGzip:
		return kafka.Gzip, nil
	case CompressionSnappy:
		return kafka.Snappy, nil
	case CompressionLZ4:
		return kafka.Lz4, nil
	case CompressionZstd:
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("%w: unknown compression %q", ErrInvalidConfig, name)
}

// writer is the kafka-go Writer shared by the producers.
type writer struct {
	w         *kafka.Writer
	transport *kafka.Transport
	closed    atomic.Bool
}

// newWriter validates cfg for its default topic (filling defaults in) and
// builds the writer every producer wraps.
func newWriter(cfg *ProducerConfig, topic string, withTopic bool, logger *slog.Logger) (*writer, error) {
	if err := cfg.validate(topic); err != nil {
		return nil, err
	}
	transport, err := cfg.Client.Transport()
	if err != nil {
		return nil, err
	}
	codec, _ := compression(cfg.Compression)
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Client.Brokers...),
		Balancer:     &kafka.Murmur2Balancer{},
		MaxAttempts:  cfg.MaxAttempts,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   cfg.BatchBytes,
		BatchTimeout: cfg.BatchTimeout,
		WriteTimeout: cfg.WriteTimeout,
		ReadTimeout:  cfg.WriteTimeout,
		RequiredAcks: kafka.RequireAll,
		Compression:  codec,
		Transport:    transport,
		ErrorLogger: kafka.LoggerFunc(func(format string, args ...any) {
			logger.Warn("kafka writer: " + fmt.Sprintf(format, args...))
		}),
	}
	if withTopic {
		w.Topic = cfg.Topic
	}
	return &writer{w: w, transport: transport}, nil
}

func (w *writer) write(ctx context.Context, msgs []kafka.Message) error {
	if w.closed.Load() {
		return ErrClosed
	}
	return w.w.WriteMessages(ctx, msgs...)
}

func (w *writer) close() error {
	if w.closed.Swap(true) {
		return nil
	}
	err := w.w.Close()
	w.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close writer: %w", err)
	}
	return nil
}

// EventProducer writes TwinEvents to twin.events, keyed by DevEUI.
//
// Publish is synchronous: it returns nil only once every event is durably
// written (acks=all). A twin applies an uplink, calls Publish with the
// resulting events, and only then reports the uplink done, so the uplink's
// offset is never committed before its events exist. Concurrent Publish
// calls share batches. A failed Publish may still have written some events
// (and a retry writes them again): event ids are deterministic, so
// consumers de-duplicate.
type EventProducer struct {
	w       *writer
	lanes   *lanes // PublishAsync
	metrics *Metrics
	marshal proto.MarshalOptions
}

// NewEventProducer returns a producer for twin.events. metrics may be nil.
func NewEventProducer(cfg ProducerConfig, metrics *Metrics, logger *slog.Logger) (*EventProducer, error) {
	logger = orDiscard(logger)
	w, err := newWriter(&cfg, TopicTwinEvents, true, logger)
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = &Metrics{}
	}
	return &EventProducer{w: w, lanes: newLanes(cfg, w.transport, metrics, logger), metrics: metrics,
		marshal: proto.MarshalOptions{Deterministic: true}}, nil
}

// Publish writes events and returns once all are durable. Every event needs
// an event_id and a device_eui (the key); otherwise nothing is written and
// the error wraps ErrInvalidRecord. Other errors wrap ErrPublish.
func (p *EventProducer) Publish(ctx context.Context, events ...*twinv1.TwinEvent) error {
	if len(events) == 0 {
		return nil
	}
	msgs, err := p.messages(events)
	if err != nil {
		return err
	}
	if err := p.w.write(ctx, msgs); err != nil {
		p.metrics.PublishErrors.Add(1)
		return fmt.Errorf("%w: %d twin events: %w", ErrPublish, len(msgs), err)
	}
	p.metrics.EventsPublished.Add(uint64(len(msgs)))
	return nil
}

// messages marshals events into records keyed by DevEUI.
func (p *EventProducer) messages(events []*twinv1.TwinEvent) ([]kafka.Message, error) {
	msgs := make([]kafka.Message, len(events))
	for i, e := range events {
		if e.GetEventId() == "" || e.GetDeviceEui() == "" {
			return nil, fmt.Errorf("%w: twin event %d lacks event_id or device_eui", ErrInvalidRecord, i)
		}
		b, err := p.marshal.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("%w: marshal twin event %s: %w", ErrInvalidRecord, e.GetEventId(), err)
		}
		msgs[i] = kafka.Message{
			Key:     []byte(e.GetDeviceEui()),
			Value:   b,
			Headers: []kafka.Header{{Key: HeaderEventID, Value: []byte(e.GetEventId())}},
		}
	}
	return msgs, nil
}

// Close writes what PublishAsync queued, flushes pending writes and
// releases connections.
func (p *EventProducer) Close() error {
	if p.w.closed.Load() {
		return nil
	}
	lerr := p.lanes.close()
	if err := p.w.close(); err != nil {
		return err
	}
	return lerr
}

// DLQProducer writes rejected records to the dead-letter topic: the
// original key, value and headers plus reason, reason_detail,
// source_topic, source_partition and source_offset headers. It implements
// DeadLetterer.
type DLQProducer struct {
	w *writer
}

// NewDLQProducer returns a producer for lorawan.uplink.dlq.
func NewDLQProducer(cfg ProducerConfig, logger *slog.Logger) (*DLQProducer, error) {
	logger = orDiscard(logger)
	w, err := newWriter(&cfg, TopicUplinkDLQ, true, logger)
	if err != nil {
		return nil, err
	}
	return &DLQProducer{w: w}, nil
}

// DeadLetter writes rec to the dead-letter topic and returns once it is
// durable. Errors wrap ErrPublish.
func (p *DLQProducer) DeadLetter(ctx context.Context, rec Record, reason Reason, detail string) error {
	hs := make([]kafka.Header, 0, len(rec.Headers)+5)
	for _, h := range rec.Headers {
		hs = append(hs, kafka.Header{Key: h.Key, Value: h.Value})
	}
	hs = append(hs,
		kafka.Header{Key: HeaderReason, Value: []byte(reason.String())},
		kafka.Header{Key: HeaderReasonDetail, Value: []byte(detail)},
		kafka.Header{Key: HeaderSourceTopic, Value: []byte(rec.Topic)},
		kafka.Header{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(rec.Partition))},
		kafka.Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
	)
	msg := kafka.Message{Key: rec.Key, Value: rec.Value, Headers: hs}
	if err := p.w.write(ctx, []kafka.Message{msg}); err != nil {
		return fmt.Errorf("%w: dead letter %s: %w", ErrPublish, rec, err)
	}
	return nil
}

// Close flushes pending writes and releases connections.
func (p *DLQProducer) Close() error { return p.w.close() }

// Uplink is one frame for UplinkProducer, with the DevAddr that keys it.
type Uplink struct {
	DevAddr uint32
	Frame   *lorawanv1.UplinkFrame
}

// DevAddrKey renders a DevAddr as the lorawan.uplink key: 8 lowercase hex
// digits, most significant byte first.
func DevAddrKey(devAddr uint32) string { return fmt.Sprintf("%08x", devAddr) }

// UplinkProducer puts frames on lorawan.uplink (keyed by DevAddr) and
// gateway reports on lorawan.gateway.stats (keyed by gateway EUI), as a
// gateway bridge would. Simulators and load tests use it.
type UplinkProducer struct {
	w                     *writer
	uplinkTopic, gwsTopic string
}

// NewUplinkProducer returns a producer for lorawan.uplink and
// lorawan.gateway.stats.
func NewUplinkProducer(cfg ProducerConfig, logger *slog.Logger) (*UplinkProducer, error) {
	logger = orDiscard(logger)
	w, err := newWriter(&cfg, TopicUplink, false, logger)
	if err != nil {
		return nil, err
	}
	return &UplinkProducer{w: w, uplinkTopic: cfg.Topic, gwsTopic: cfg.GatewayStatsTopic}, nil
}

// SendUplinks writes frames and returns once all are durable. Errors wrap
// ErrInvalidRecord or ErrPublish.
func (p *UplinkProducer) SendUplinks(ctx context.Context, ups ...Uplink) error {
	msgs := make([]kafka.Message, len(ups))
	for i, u := range ups {
		b, err := proto.Marshal(u.Frame)
		if err != nil {
			return fmt.Errorf("%w: marshal uplink %d: %w", ErrInvalidRecord, i, err)
		}
		msgs[i] = kafka.Message{Topic: p.uplinkTopic, Key: []byte(DevAddrKey(u.DevAddr)), Value: b}
	}
	if err := p.w.write(ctx, msgs); err != nil {
		return fmt.Errorf("%w: %d uplinks: %w", ErrPublish, len(msgs), err)
	}
	return nil
}

// SendGatewayStats writes gateway reports and returns once all are
// durable. Each needs an 8-byte gateway_eui (its key).
func (p *UplinkProducer) SendGatewayStats(ctx context.Context, stats ...*lorawanv1.GatewayStats) error {
	msgs := make([]kafka.Message, len(stats))
	for i, s := range stats {
		if len(s.GetGatewayEui()) != 8 {
			return fmt.Errorf("%w: gateway stats %d: gateway_eui of %d bytes", ErrInvalidRecord, i, len(s.GetGatewayEui()))
		}
		b, err := proto.Marshal(s)
		if err != nil {
			return fmt.Errorf("%w: marshal gateway stats %d: %w", ErrInvalidRecord, i, err)
		}
		msgs[i] = kafka.Message{Topic: p.gwsTopic, Key: []byte(hex.EncodeToString(s.GetGatewayEui())), Value: b}
	}
	if err := p.w.write(ctx, msgs); err != nil {
		return fmt.Errorf("%w: %d gateway stats: %w", ErrPublish, len(msgs), err)
	}
	return nil
}

// Close flushes pending writes and releases connections.
func (p *UplinkProducer) Close() error { return p.w.close() }

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
