package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

type principalKey struct{}

// WithPrincipal returns a context carrying p. The interceptor uses it;
// handler tests use it to act as a caller.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the authenticated caller of a request, and false
// for a public procedure (or outside a request).
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

// Failure reasons, the keys of Stats.Failures.
const (
	ReasonMissing     = "missing"
	ReasonMalformed   = "malformed"
	ReasonExpired     = "expired"
	ReasonNotYetValid = "not_yet_valid"
	ReasonSignature   = "signature"
	ReasonIssuer      = "issuer"
	ReasonAudience    = "audience"
	ReasonClaims      = "claims"
	ReasonKeySet      = "key_set"
	ReasonOther       = "other"
)

var reasons = []struct {
	err    error
	reason string
}{
	{ErrTokenMissing, ReasonMissing},
	{ErrTokenMalformed, ReasonMalformed},
	{ErrTokenExpired, ReasonExpired},
	{ErrTokenNotYetValid, ReasonNotYetValid},
	{ErrTokenSignature, ReasonSignature},
	{ErrTokenIssuer, ReasonIssuer},
	{ErrTokenAudience, ReasonAudience},
	{ErrClaims, ReasonClaims},
	{ErrKeySet, ReasonKeySet},
}

// reasonIndex returns the index of err's reason (len(reasons) = other).
func reasonIndex(err error) int {
	for i, r := range reasons {
		if errors.Is(err, r.err) {
			return i
		}
	}
	return len(reasons)
}

// InterceptorConfig configures the authentication interceptor.
type InterceptorConfig struct {
	// Verifier checks bearer tokens. Required.
	Verifier TokenVerifier
	// Public lists procedures callable without a token: full procedure
	// names ("/grpc.health.v1.Health/Check") or service prefixes ending in
	// "/" ("/grpc.health.v1.Health/"). Default none.
	Public []string
	// Realm is the realm of WWW-Authenticate challenges. Default "legiond".
	Realm string
	// KeepStreamsPastExpiry lets a stream outlive its token. By default a
	// streaming call ends with Unauthenticated when its token expires, and
	// the client resumes with a fresh token.
	KeepStreamsPastExpiry bool
	// Leeway is added to a token's expiry before a stream is ended.
	// Default DefaultLeeway.
	Leeway time.Duration
	// Logger is kept for wiring symmetry; failures are counted, not
	// logged. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports an unusable configuration.
func (c InterceptorConfig) Validate() error {
	if c.Verifier == nil {
		return fmt.Errorf("%w: interceptor needs a verifier", ErrConfig)
	}
	for _, p := range c.Public {
		if !strings.HasPrefix(p, "/") || strings.Count(p, "/") < 2 {
			return fmt.Errorf("%w: public procedure %q must look like /pkg.Service/Method or /pkg.Service/", ErrConfig, p)
		}
	}
	if strings.ContainsAny(c.Realm, "\"\\\r\n") {
		return fmt.Errorf("%w: realm must not contain quotes or line breaks", ErrConfig)
	}
	return nil
}

// Stats are the interceptor's counters.
type Stats struct {
	// Authenticated counts calls that carried a valid token.
	Authenticated uint64
	// Public counts calls to public procedures.
	Public uint64
	// Failures counts refused calls by reason (Reason* keys).
	Failures map[string]uint64
}

// Interceptor authenticates unary and streaming Connect handlers: it
// reads "Authorization: Bearer <token>", verifies the token, and puts the
// Principal into the context. Refusals are Unauthenticated with a
// WWW-Authenticate challenge (RFC 6750), or Unavailable when the key set
// cannot be fetched. Client-side calls pass through untouched.
type Interceptor struct {
	cfg           InterceptorConfig
	authenticated atomic.Uint64
	public        atomic.Uint64
	failures      []atomic.Uint64 // by reasonIndex
}

var _ connect.Interceptor = (*Interceptor)(nil)

// NewInterceptor returns the authentication interceptor.
func NewInterceptor(cfg InterceptorConfig) (*Interceptor, error) {
	if cfg.Realm == "" {
		cfg.Realm = "legiond"
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Interceptor{cfg: cfg, failures: make([]atomic.Uint64, len(reasons)+1)}, nil
}

// Stats returns a snapshot of the counters.
func (i *Interceptor) Stats() Stats {
	s := Stats{Authenticated: i.authenticated.Load(), Public: i.public.Load(), Failures: make(map[string]uint64, len(reasons)+1)}
	for idx := range i.failures {
		name := ReasonOther
		if idx < len(reasons) {
			name = reasons[idx].reason
		}
		s.Failures[name] = i.failures[idx].Load()
	}
	return s
}

func (i *Interceptor) isPublic(procedure string) bool {
	for _, p := range i.cfg.Public {
		if procedure == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(procedure, p)) {
			return true
		}
	}
	return false
}

// authenticate returns the context for the handler, or the error to send.
func (i *Interceptor) authenticate(ctx context.Context, procedure string, h http.Header) (context.Context, *Principal, error) {
	if i.isPublic(procedure) {
		i.public.Add(1)
		return ctx, nil, nil
	}
	token, err := bearerToken(h)
	var p *Principal
	if err == nil {
		p, err = i.cfg.Verifier.Verify(ctx, token)
	}
	if err != nil {
		i.failures[reasonIndex(err)].Add(1)
		return nil, nil, i.deny(err)
	}
	i.authenticated.Add(1)
	return WithPrincipal(ctx, p), p, nil
}

// bearerToken extracts the token of the one Authorization header.
func bearerToken(h http.Header) (string, error) {
	vals := h.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", ErrTokenMissing
	case 1:
	default:
		return "", fmt.Errorf("%w: more than one Authorization header", ErrTokenMalformed)
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: authorization scheme must be Bearer", ErrTokenMalformed)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", ErrTokenMissing
	}
	return token, nil
}

// deny maps a verification error to a Connect error with a challenge.
func (i *Interceptor) deny(err error) *connect.Error {
	code := connect.CodeUnauthenticated
	if errors.Is(err, ErrKeySet) {
		code = connect.CodeUnavailable
	}
	ce := connect.NewError(code, err)
	challenge := `Bearer realm="` + i.cfg.Realm + `"`
	if idx := reasonIndex(err); idx < len(reasons) && !errors.Is(reasons[idx].err, ErrTokenMissing) && code == connect.CodeUnauthenticated {
		challenge += `, error="invalid_token", error_description="` + reasons[idx].err.Error() + `"`
	}
	ce.Meta().Set("WWW-Authenticate", challenge)
	return ce
}

// WrapUnary implements connect.Interceptor.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, _, err := i.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor; it does nothing.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// errStreamTokenExpired ends streams whose token expired.
var errStreamTokenExpired = fmt.Errorf("%w during the stream; reconnect with a fresh token", ErrTokenExpired)

// WrapStreamingHandler implements connect.Interceptor.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, p, err := i.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		if p == nil || i.cfg.KeepStreamsPastExpiry || p.ExpiresAt.IsZero() {
			return next(ctx, conn)
		}
		ctx, cancel := context.WithDeadlineCause(ctx, p.ExpiresAt.Add(i.cfg.Leeway), errStreamTokenExpired)
		defer cancel()
		err = next(ctx, conn)
		if err != nil && errors.Is(context.Cause(ctx), errStreamTokenExpired) {
			i.failures[reasonIndex(ErrTokenExpired)].Add(1)
			return i.deny(errStreamTokenExpired)
		}
		return err
	}
}
