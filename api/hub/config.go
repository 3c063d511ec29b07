package hub

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/legionelladossier/legiond/streams"
)

// Defaults of Config.
const (
	DefaultRingSize     = 16384
	DefaultRingMaxAge   = 15 * time.Minute
	DefaultQueueSize    = 1024
	DefaultHeartbeat    = 15 * time.Second
	DefaultFetchMaxWait = 100 * time.Millisecond
	DefaultRetryBackoff = time.Second
	DefaultReplayChunk  = 512
)

// Sentinel errors. Errors of this package wrap one of them; api/services
// maps them to Connect codes.
var (
	// ErrConfig is an invalid configuration.
	ErrConfig = errors.New("hub: invalid configuration")
	// ErrSlow ends a subscription whose queue overflowed.
	ErrSlow = errors.New("subscriber too slow; resume with the last token")
	// ErrBadToken is a resume token that does not decode or does not fit
	// the topic.
	ErrBadToken = errors.New("resume token invalid")
	// ErrTokenTooOld is a resume token pointing before the oldest event
	// Kafka still retains: events were lost to retention, so resuming
	// without a gap is impossible. Start a new stream without a token.
	ErrTokenTooOld = errors.New("resume token older than the retained events; start again without it")
	// ErrFilter is a Filter that names no tenant.
	ErrFilter = errors.New("hub: filter names no tenant")
	// ErrClosed: the hub stopped (or the subscription was closed).
	ErrClosed = errors.New("hub: closed")
)

// Config configures a Hub.
type Config struct {
	// Client says how to reach Kafka. Required.
	Client streams.ClientConfig
	// Topic is the event topic. Default streams.TopicTwinEvents.
	Topic string
	// RingSize bounds the events kept in memory per partition for resumes
	// (decoded, about 0.5 KiB each). Default 16,384: 64 Ki events, some
	// 32 MiB, over the default 4 partitions.
	RingSize int
	// RingMaxAge drops ring events older than this (by arrival). Default
	// 15 min. Older resumes are served from Kafka.
	RingMaxAge time.Duration
	// QueueSize bounds each subscriber's queue, in events. A subscriber
	// whose queue is full is disconnected with ErrSlow. Default 1,024.
	QueueSize int
	// Heartbeat is how often an otherwise idle stream gets a heartbeat
	// carrying its current token. Default 15 s.
	Heartbeat time.Duration
	// FetchMaxWait is how long a partition fetch waits on the broker when
	// there is nothing new. Fetches ask for one byte at least, so new
	// events are returned at once whatever this is; it only bounds idle
	// polling. Default 100 ms.
	FetchMaxWait time.Duration
	// RetryBackoff is the pause before retrying topic discovery or after
	// a fetch error. Default 1 s.
	RetryBackoff time.Duration
	// ReplayChunk is how many events a replay copies out of the ring (or
	// reads from Kafka) at a time. Default 512.
	ReplayChunk int
	// StartOffsets, when set, are the offsets (by partition) the hub
	// starts at instead of the end of each partition; partitions not
	// listed start at the end.
	StartOffsets map[int]int64
	// Now is the clock (ring ages, heartbeat times). Default time.Now.
	Now func() time.Time
	// Logger receives lifecycle events and fetch errors. Default: discard.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = streams.TopicTwinEvents
	}
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.RingMaxAge == 0 {
		c.RingMaxAge = DefaultRingMaxAge
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.FetchMaxWait == 0 {
		c.FetchMaxWait = DefaultFetchMaxWait
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.ReplayChunk == 0 {
		c.ReplayChunk = DefaultReplayChunk
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate reports an unusable configuration (after defaults).
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	cc := c.Client
	if err := cc.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch {
	case c.RingSize < 1 || c.RingSize > 10_000_000:
		return bad("RingSize %d not in 1..10,000,000", c.RingSize)
	case c.RingMaxAge < time.Second:
		return bad("RingMaxAge %v < 1s", c.RingMaxAge)
	case c.QueueSize < 1 || c.QueueSize > 1_000_000:
		return bad("QueueSize %d not in 1..1,000,000", c.QueueSize)
	case c.Heartbeat < 10*time.Millisecond:
		return bad("Heartbeat %v < 10ms", c.Heartbeat)
	case c.FetchMaxWait < time.Millisecond:
		return bad("FetchMaxWait %v < 1ms", c.FetchMaxWait)
	case c.RetryBackoff <= 0:
		return bad("RetryBackoff must be positive")
	case c.ReplayChunk < 1 || c.ReplayChunk > 100_000:
		return bad("ReplayChunk %d not in 1..100,000", c.ReplayChunk)
	}
	for p, off := range c.StartOffsets {
		if p < 0 || off < 0 {
			return bad("StartOffsets[%d] = %d: partitions and offsets are not negative", p, off)
		}
	}
	return nil
}
