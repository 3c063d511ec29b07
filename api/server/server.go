package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/tlsconf"
)

// Defaults of Config.
const (
	DefaultAddr              = ":8443"
	DefaultMaxRequestBytes   = 4 << 20
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
)

// Errors of this package.
var (
	// ErrConfig is an invalid configuration.
	ErrConfig = errors.New("server: invalid configuration")
	// ErrState is a lifecycle call out of order (Start twice, Addr before
	// Start).
	ErrState = errors.New("server: wrong state")
)

// PublicProcedures returns the service prefixes callable without a token:
// gRPC health and reflection (v1 and v1alpha, for older grpcurl).
func PublicProcedures() []string {
	return []string{
		"/" + grpchealth.HealthV1ServiceName + "/",
		"/" + grpcreflect.ReflectV1ServiceName + "/",
		"/" + grpcreflect.ReflectV1AlphaServiceName + "/",
	}
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address. Default ":8443".
	Addr string
	// Listener, when set, is used instead of listening on Addr (tests that
	// need the port before Start, socket activation). Start takes it over.
	Listener net.Listener
	// TLS is the listener's configuration; it must be TLS 1.3 only
	// (tlsconf.ServerConfig or DevCA.ServerConfig). Required.
	TLS *tls.Config
	// Verifier authenticates every call to a handler built with
	// HandlerOptions. Required.
	Verifier auth.TokenVerifier
	// Issuer, when set, is the embedded development token issuer whose
	// JWKS, discovery and token endpoints are mounted.
	Issuer *auth.Issuer
	// RateLimit limits each client's calls (and each IP's calls to public
	// procedures and the token endpoint). Zero fields take auth's defaults.
	RateLimit auth.RateLimitConfig
	// MaxRequestBytes bounds one request message (connect's
	// WithReadMaxBytes); larger ones get ResourceExhausted. Default 4 MiB.
	MaxRequestBytes int64
	// MaxHeaderBytes bounds request headers. Default 64 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading request headers. Default 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default 2 min.
	IdleTimeout time.Duration
	// DisableReflection stops serving gRPC reflection.
	DisableReflection bool
	// Logger is the server's logger. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports an unusable configuration (after defaults).
func (c Config) Validate() error {
	if err := tlsconf.CheckServerConfig(c.TLS); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.Verifier == nil {
		return fmt.Errorf("%w: a token verifier is required", ErrConfig)
	}
	if c.MaxRequestBytes < 1 || c.MaxRequestBytes > 1<<30 {
		return fmt.Errorf("%w: max request bytes must be in 1..1 GiB", ErrConfig)
	}
	if c.MaxHeaderBytes < 1 || c.ReadHeaderTimeout <= 0 || c.IdleTimeout <= 0 {
		return fmt.Errorf("%w: limits and timeouts must be positive", ErrConfig)
	}
	return nil
}

// Server is the API listener. Mount handlers before or after Start; start
// it once and shut it down once.
type Server struct {
	cfg       Config
	mux       *http.ServeMux
	auth      *auth.Interceptor
	limiter   *auth.RateLimiter
	ipLimiter *auth.RateLimiter
	strict    *strictInput
	health    *grpchealth.StaticChecker
	names     *serviceNames
	http      *http.Server
	handshake atomic.Uint64

	mu       sync.Mutex
	ln       net.Listener
	done     chan struct{}
	serveErr error
}

// New builds a server: health and reflection are mounted, and the issuer's
// endpoints when cfg.Issuer is set.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	interceptor, err := auth.NewInterceptor(auth.InterceptorConfig{Verifier: cfg.Verifier, Public: PublicProcedures(), Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	limiter, err := auth.NewRateLimiter(cfg.RateLimit)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	ipLimiter, err := auth.NewRateLimiter(cfg.RateLimit)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s := &Server{
		cfg: cfg, mux: http.NewServeMux(), auth: interceptor, limiter: limiter, ipLimiter: ipLimiter,
		strict: &strictInput{}, health: grpchealth.NewStaticChecker(), names: &serviceNames{},
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	s.http = &http.Server{
		Handler:           s.mux,
		TLSConfig:         cfg.TLS.Clone(),
		Protocols:         protocols,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		// No WriteTimeout: it would cut server streams (DESIGN §6).
		ErrorLog: log.New(&errorLogWriter{log: cfg.Logger, handshakes: &s.handshake}, "", 0),
	}
	s.mux.Handle(grpchealth.NewHandler(s.health, s.HandlerOptions()...))
	if !cfg.DisableReflection {
		reflector := grpcreflect.NewReflector(s.names)
		s.mux.Handle(grpcreflect.NewHandlerV1(reflector, s.HandlerOptions()...))
		s.mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, s.HandlerOptions()...))
	}
	if cfg.Issuer != nil {
		for path, h := range cfg.Issuer.Routes() {
			s.mux.Handle(path, s.limitByIP(h))
		}
	}
	return s, nil
}

// HandlerOptions are the options every service handler must be built
// with: authentication, per-client rate limiting, the request size limit
// and the unknown-field check, in that order.
//
//	path, h := apiv1connect.NewTwinServiceHandler(svc, srv.HandlerOptions()...)
//	srv.Mount(path, h)
func (s *Server) HandlerOptions() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithInterceptors(s.auth, s.limiter, s.strict),
		connect.WithReadMaxBytes(int(s.cfg.MaxRequestBytes)),
	}
}

var servicePath = regexp.MustCompile(`^/([A-Za-z_][A-Za-z0-9_]*\.)+[A-Za-z_][A-Za-z0-9_]*/$`)

// Mount registers a handler on path (http.ServeMux rules; it panics on a
// duplicate path, as ServeMux does). A Connect service path
// ("/pkg.Service/") is also reported SERVING by health and listed by
// reflection. Build service handlers with HandlerOptions.
func (s *Server) Mount(path string, h http.Handler) {
	s.mux.Handle(path, h)
	if servicePath.MatchString(path) {
		name := strings.Trim(path, "/")
		s.names.add(name)
		s.health.SetStatus(name, grpchealth.StatusServing)
	}
}

// Health returns the health checker, so services can report their state.
func (s *Server) Health() *grpchealth.StaticChecker { return s.health }

// AuthStats returns the authentication counters.
func (s *Server) AuthStats() auth.Stats { return s.auth.Stats() }

// RateLimited returns how many calls and token requests were refused for
// exceeding the rate limit.
func (s *Server) RateLimited() uint64 { return s.limiter.Limited() + s.ipLimiter.Limited() }

// HandshakeErrors counts failed TLS handshakes (TLS 1.2 clients, untrusted
// certificates, port scans).
func (s *Server) HandshakeErrors() uint64 { return s.handshake.Load() }

// Start listens on the configured address and serves in the background.
// It returns once the listener is open. When ctx ends, the server shuts
// down as by Shutdown with a 10 s grace period.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return fmt.Errorf("%w: already started", ErrState)
	}
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
		}
	}
	s.ln, s.done = ln, make(chan struct{})
	s.health.SetStatus("", grpchealth.StatusServing)
	go func() {
		defer close(s.done)
		err := s.http.ServeTLS(ln, "", "")
		if !errors.Is(err, http.ErrServerClosed) {
			s.mu.Lock()
			s.serveErr = err
			s.mu.Unlock()
			s.cfg.Logger.Error("API server stopped", "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = s.Shutdown(sctx)
		case <-s.done:
		}
	}()
	s.cfg.Logger.Info("API server listening", "addr", ln.Addr().String(), "tls", "1.3", "protocols", "h2,http/1.1")
	return nil
}

// Addr returns the listening address (useful with port 0), or "" before
// Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns "https://<addr>" for clients, or "" before Start.
func (s *Server) URL() string {
	if a := s.Addr(); a != "" {
		return "https://" + a
	}
	return ""
}

// Shutdown reports NOT_SERVING, stops accepting connections and waits for
// in-flight calls until ctx ends; then it closes what is left (streams
// included). It returns the serve loop's error, if it failed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%w: not started", ErrState)
	}
	s.health.SetStatus("", grpchealth.StatusNotServing)
	for _, n := range s.names.Names() {
		s.health.SetStatus(n, grpchealth.StatusNotServing)
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serveErr != nil {
		return s.serveErr
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil // forced close after the grace period is the contract
	}
	return err
}

// limitByIP applies the per-IP rate limit to a plain HTTP handler (the
// token endpoint), answering 429 with Retry-After.
func (s *Server) limitByIP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if ok, wait := s.ipLimiter.Allow("ip:" + host); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"rate limit exceeded"}` + "\n"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serviceNames is the dynamic service list for reflection.
type serviceNames struct {
	mu    sync.Mutex
	names []string
}

func (n *serviceNames) add(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.Contains(n.names, name) {
		n.names = append(n.names, name)
		slices.Sort(n.names)
	}
}

// Names implements grpcreflect.Namer.
func (n *serviceNames) Names() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.names)
}

// errorLogWriter receives http.Server's error log: TLS handshake failures
// are counted, not logged (they are routine: scanners, TLS 1.2 clients);
// anything else goes to slog.
type errorLogWriter struct {
	log        *slog.Logger
	handshakes *atomic.Uint64
}

func (w *errorLogWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("TLS handshake error")) {
		w.handshakes.Add(1)
		return len(p), nil
	}
	w.log.Warn("http server", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}
