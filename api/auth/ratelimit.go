package auth

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"
)

// Defaults of RateLimitConfig.
const (
	DefaultRate       = 20.0
	DefaultBurst      = 40
	DefaultMaxClients = 10000
	DefaultIdleTTL    = 10 * time.Minute
)

// ErrRateLimited is the cause of a ResourceExhausted refusal.
var ErrRateLimited = errors.New("rate limit exceeded")

// RateLimitConfig configures per-client rate limiting. A client is the
// token's client_id (integrations) or subject; calls without a principal
// (public procedures) are limited per remote IP address.
type RateLimitConfig struct {
	// Rate is the sustained calls per second per client. Default 20.
	Rate float64
	// Burst is how many calls a client may make at once. Default 40.
	Burst int
	// MaxClients bounds the tracked clients; when full, idle ones are
	// dropped first, then an arbitrary one. Default 10000.
	MaxClients int
	// IdleTTL is how long an unused client's bucket is kept. Default 10 min.
	IdleTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *RateLimitConfig) setDefaults() {
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.IdleTTL == 0 {
		c.IdleTTL = DefaultIdleTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports an unusable configuration (after defaults).
func (c RateLimitConfig) Validate() error {
	if c.Rate <= 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate) || c.Burst < 1 || c.MaxClients < 1 || c.IdleTTL <= 0 {
		return fmt.Errorf("%w: rate limits must be positive", ErrConfig)
	}
	return nil
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// RateLimiter is a Connect interceptor holding a token bucket per client.
// Streaming calls are charged once, when they open. Install it after the
// authentication interceptor (connect.WithInterceptors(auth, limiter)).
type RateLimiter struct {
	cfg     RateLimitConfig
	mu      sync.Mutex
	buckets map[string]*bucket
	limited atomic.Uint64
}

var _ connect.Interceptor = (*RateLimiter)(nil)

// NewRateLimiter returns a rate limiter.
func NewRateLimiter(cfg RateLimitConfig) (*RateLimiter, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &RateLimiter{cfg: cfg, buckets: make(map[string]*bucket)}, nil
}

// Limited returns how many calls were refused.
func (l *RateLimiter) Limited() uint64 { return l.limited.Load() }

// Allow charges one call to key and reports whether it may proceed and,
// if not, how long until it may.
func (l *RateLimiter) Allow(key string) (bool, time.Duration) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.cfg.MaxClients {
			l.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)}
		l.buckets[key] = b
	}
	b.last = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	need := 1 - b.lim.TokensAt(now)
	return false, time.Duration(need / l.cfg.Rate * float64(time.Second))
}

// evict drops idle buckets, and one arbitrary bucket if none was idle.
// Called with mu held.
func (l *RateLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.cfg.IdleTTL {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < l.cfg.MaxClients {
		return
	}
	for k := range l.buckets {
		delete(l.buckets, k)
		return
	}
}

// clientKey names the caller for rate limiting.
func clientKey(ctx context.Context, peer connect.Peer) string {
	if p, ok := PrincipalFrom(ctx); ok {
		if p.ClientID != "" {
			return "client:" + p.ClientID
		}
		return "sub:" + p.Subject
	}
	host, _, err := net.SplitHostPort(peer.Addr)
	if err != nil {
		host = peer.Addr
	}
	return "ip:" + host
}

func (l *RateLimiter) check(ctx context.Context, peer connect.Peer) error {
	ok, wait := l.Allow(clientKey(ctx, peer))
	if ok {
		return nil
	}
	l.limited.Add(1)
	secs := int64(math.Ceil(wait.Seconds()))
	ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%w: retry in %ds", ErrRateLimited, max(secs, 1)))
	ce.Meta().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	return ce
}

// WrapUnary implements connect.Interceptor.
func (l *RateLimiter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		if err := l.check(ctx, req.Peer()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor; it does nothing.
func (l *RateLimiter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (l *RateLimiter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := l.check(ctx, conn.Peer()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
