package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Defaults of VerifierConfig.
const (
	DefaultCacheTTL           = 15 * time.Minute
	DefaultMinRefreshInterval = 30 * time.Second
	DefaultLeeway             = 30 * time.Second
	DefaultMaxTokenBytes      = 8 << 10
	DefaultFetchTimeout       = 10 * time.Second

	maxLeeway    = 5 * time.Minute
	maxJWKSBytes = 1 << 20
	minRSABits   = 2048
)

// allowedAlgs are the only signature algorithms accepted.
var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256}

// VerifierConfig configures a Verifier. Exactly one of JWKSURL and
// StaticKeys is set.
type VerifierConfig struct {
	// Issuer is the exact "iss" a token must carry. Required.
	Issuer string
	// Audience must be in the token's "aud". Required (DefaultAudience for
	// the embedded issuer).
	Audience string
	// JWKSURL is the issuer's key set (https only). Keys are cached for
	// CacheTTL and re-fetched early when a token names an unknown kid.
	JWKSURL string
	// StaticKeys is a fixed key set (tests, the embedded issuer).
	StaticKeys *jose.JSONWebKeySet
	// HTTPClient fetches JWKSURL. Default: TLS 1.3 with the system roots
	// and a DefaultFetchTimeout timeout.
	HTTPClient *http.Client
	// CacheTTL is how long a fetched key set is used before it is fetched
	// again. Default 15 min.
	CacheTTL time.Duration
	// MinRefreshInterval is the least time between two fetches, so tokens
	// with made-up kids cannot make the verifier hammer the issuer.
	// Default 30 s.
	MinRefreshInterval time.Duration
	// Leeway tolerates clock skew on exp, nbf and iat. Default 30 s, at
	// most 5 min.
	Leeway time.Duration
	// MaxTokenBytes refuses larger tokens unparsed. Default 8 KiB.
	MaxTokenBytes int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger reports key set fetch failures. Default slog.Default().
	Logger *slog.Logger
}

func (c *VerifierConfig) setDefaults() {
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.MinRefreshInterval == 0 {
		c.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			Timeout:   DefaultFetchTimeout,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13}, ForceAttemptHTTP2: true},
		}
	}
}

// Validate reports an unusable configuration (after defaults).
func (c VerifierConfig) Validate() error {
	if c.Issuer == "" {
		return fmt.Errorf("%w: issuer is required", ErrConfig)
	}
	if c.Audience == "" {
		return fmt.Errorf("%w: audience is required", ErrConfig)
	}
	if (c.JWKSURL == "") == (c.StaticKeys == nil) {
		return fmt.Errorf("%w: set exactly one of JWKS URL and static keys", ErrConfig)
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%w: JWKS URL must be an https URL", ErrConfig)
		}
	}
	if c.StaticKeys != nil && len(usableKeys(c.StaticKeys.Keys)) == 0 {
		return fmt.Errorf("%w: static key set has no ES256 or RS256 signing key", ErrConfig)
	}
	if c.Leeway < 0 || c.Leeway > maxLeeway {
		return fmt.Errorf("%w: leeway must be between 0 and %s", ErrConfig, maxLeeway)
	}
	if c.CacheTTL < 0 || c.MinRefreshInterval < 0 || c.MaxTokenBytes < 0 {
		return fmt.Errorf("%w: negative limit", ErrConfig)
	}
	return nil
}

// Verifier checks JWT access tokens. It is safe for concurrent use.
type Verifier struct {
	cfg VerifierConfig

	fetchMu sync.Mutex // serialises fetches
	mu      sync.Mutex // guards the fields below
	keys    []jose.JSONWebKey
	fetched time.Time // when keys were fetched
	tried   time.Time // last fetch attempt

	fetches atomic.Uint64
}

// TokenVerifier is what the interceptor needs; *Verifier implements it.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*Principal, error)
}

// NewVerifier returns a verifier; with a JWKS URL the key set is fetched
// on first use.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg}
	if cfg.StaticKeys != nil {
		v.keys = usableKeys(cfg.StaticKeys.Keys)
	}
	return v, nil
}

// Fetches returns how many times the key set was fetched.
func (v *Verifier) Fetches() uint64 { return v.fetches.Load() }

// header is the part of the JOSE header checked before anything else.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// Verify checks a compact JWS access token and returns its principal. The
// error wraps one of the ErrToken* sentinels, ErrClaims or ErrKeySet.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, ErrTokenMissing
	}
	if len(token) > v.cfg.MaxTokenBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrTokenMalformed, v.cfg.MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a signed JWT in compact form", ErrTokenMalformed)
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrTokenMalformed)
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("%w: header is not JSON", ErrTokenMalformed)
	}
	switch {
	case h.Alg == "" || strings.EqualFold(h.Alg, "none"):
		return nil, fmt.Errorf("%w: unsigned tokens (alg none) are refused", ErrTokenSignature)
	case strings.HasPrefix(strings.ToUpper(h.Alg), "HS"):
		return nil, fmt.Errorf("%w: HMAC algorithms are refused", ErrTokenSignature)
	case !slices.Contains(allowedAlgs, jose.SignatureAlgorithm(h.Alg)):
		return nil, fmt.Errorf("%w: algorithm %s is not accepted (ES256, RS256)", ErrTokenSignature, short(h.Alg))
	}
	switch strings.ToLower(h.Typ) {
	case "", "jwt", "at+jwt", "application/at+jwt":
	default:
		return nil, fmt.Errorf("%w: typ %s is not an access token", ErrTokenMalformed, short(h.Typ))
	}
	jws, err := jose.ParseSignedCompact(token, allowedAlgs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature", ErrTokenMalformed)
	}
	key, err := v.key(ctx, h.Kid, jose.SignatureAlgorithm(h.Alg))
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: does not verify with key %s", ErrTokenSignature, short(key.KeyID))
	}
	var reg jwt.Claims
	if err := json.Unmarshal(payload, &reg); err != nil {
		return nil, fmt.Errorf("%w: registered claims: %w", ErrClaims, err)
	}
	if err := v.checkRegistered(reg); err != nil {
		return nil, err
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err // wraps ErrClaims
	}
	return NewPrincipal(c, reg.ID, reg.Expiry.Time())
}

func (v *Verifier) checkRegistered(reg jwt.Claims) error {
	now, leeway := v.cfg.Now(), v.cfg.Leeway
	if reg.Expiry == nil {
		return fmt.Errorf("%w: exp is required", ErrClaims)
	}
	if exp := reg.Expiry.Time(); now.After(exp.Add(leeway)) {
		return fmt.Errorf("%w: at %s", ErrTokenExpired, exp.UTC().Format(time.RFC3339))
	}
	if reg.NotBefore != nil && now.Add(leeway).Before(reg.NotBefore.Time()) {
		return fmt.Errorf("%w: not before %s", ErrTokenNotYetValid, reg.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	if reg.IssuedAt != nil && now.Add(leeway).Before(reg.IssuedAt.Time()) {
		return fmt.Errorf("%w: issued in the future", ErrTokenNotYetValid)
	}
	if reg.Issuer != v.cfg.Issuer {
		return fmt.Errorf("%w: %s", ErrTokenIssuer, short(reg.Issuer))
	}
	if !slices.Contains(reg.Audience, v.cfg.Audience) {
		return fmt.Errorf("%w: want %s", ErrTokenAudience, v.cfg.Audience)
	}
	return nil
}

// key finds the verification key for kid and alg, fetching the key set
// when it is stale or lacks the kid.
func (v *Verifier) key(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (jose.JSONWebKey, error) {
	if v.cfg.StaticKeys != nil {
		return pick(v.keys, kid, alg)
	}
	v.mu.Lock()
	keys, fetched, tried := v.keys, v.fetched, v.tried
	v.mu.Unlock()
	now := v.cfg.Now()
	stale := keys == nil || now.Sub(fetched) >= v.cfg.CacheTTL
	if !stale {
		k, err := pick(keys, kid, alg)
		if err == nil || kid == "" || now.Sub(tried) < v.cfg.MinRefreshInterval {
			return k, err
		}
		// Unknown kid: the issuer may have rotated its keys.
	} else if now.Sub(tried) < v.cfg.MinRefreshInterval && !tried.IsZero() {
		// A recent fetch failed: keep serving the old keys meanwhile, and
		// do not retry faster than MinRefreshInterval.
		if keys == nil {
			return jose.JSONWebKey{}, fmt.Errorf("%w: last fetch failed; retrying after %s", ErrKeySet, v.cfg.MinRefreshInterval)
		}
		return pick(keys, kid, alg)
	}
	keys, err := v.refresh(ctx, tried)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	return pick(keys, kid, alg)
}

// refresh fetches the key set unless another caller did so after
// seenTried; it returns the keys to use. On failure old keys are kept.
func (v *Verifier) refresh(ctx context.Context, seenTried time.Time) ([]jose.JSONWebKey, error) {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	v.mu.Lock()
	if v.tried.After(seenTried) { // someone fetched while we waited
		keys := v.keys
		v.mu.Unlock()
		if keys == nil {
			return nil, fmt.Errorf("%w: fetch failed recently", ErrKeySet)
		}
		return keys, nil
	}
	v.tried = v.cfg.Now()
	old := v.keys
	v.mu.Unlock()

	keys, err := v.fetch(ctx)
	v.fetches.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		v.cfg.Logger.Warn("fetching the issuer's key set failed", "url", v.cfg.JWKSURL, "err", err)
		if old != nil {
			return old, nil
		}
		return nil, err
	}
	v.keys, v.fetched = keys, v.cfg.Now()
	return keys, nil
}

func (v *Verifier) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySet, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySet, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: HTTP %d", ErrKeySet, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySet, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrKeySet, maxJWKSBytes)
	}
	keys, err := ParseJWKS(body)
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// ParseJWKS parses a JSON Web Key Set and returns its usable verification
// keys (public ES256 P-256 and RS256 ≥ 2048-bit keys meant for signing).
// Keys it cannot use are skipped, so one exotic key does not break the
// rest; a set with no usable key is an error (ErrKeySet).
func ParseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%w: not a JWKS: %w", ErrKeySet, err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		keys = append(keys, k)
	}
	keys = usableKeys(keys)
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no usable ES256 or RS256 signing key", ErrKeySet)
	}
	return keys, nil
}

// usableKeys keeps the public halves of signing keys whose type one of the
// allowed algorithms fits. Symmetric keys are dropped: an HMAC key would
// let anyone holding it mint tokens.
func usableKeys(in []jose.JSONWebKey) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range in {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public()
		if !pub.Valid() || keyAlg(pub) == "" {
			continue
		}
		if pub.Algorithm != "" && pub.Algorithm != string(keyAlg(pub)) {
			continue
		}
		out = append(out, pub)
	}
	return out
}

// keyAlg is the one algorithm a key may verify, "" if none.
func keyAlg(k jose.JSONWebKey) jose.SignatureAlgorithm {
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			return jose.ES256
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() >= minRSABits {
			return jose.RS256
		}
	}
	return ""
}

// pick chooses the key for a token: the one with its kid, which must fit
// its algorithm; without a kid, the only key that fits.
func pick(keys []jose.JSONWebKey, kid string, alg jose.SignatureAlgorithm) (jose.JSONWebKey, error) {
	if kid == "" {
		var fits []jose.JSONWebKey
		for _, k := range keys {
			if keyAlg(k) == alg {
				fits = append(fits, k)
			}
		}
		if len(fits) != 1 {
			return jose.JSONWebKey{}, fmt.Errorf("%w: token has no kid and the key set has %d %s keys", ErrTokenSignature, len(fits), alg)
		}
		return fits[0], nil
	}
	for _, k := range keys {
		if k.KeyID != kid {
			continue
		}
		if keyAlg(k) != alg {
			return jose.JSONWebKey{}, fmt.Errorf("%w: algorithm %s does not fit key %s", ErrTokenSignature, alg, short(kid))
		}
		return k, nil
	}
	return jose.JSONWebKey{}, fmt.Errorf("%w: unknown key id %s", ErrTokenSignature, short(kid))
}

// short quotes untrusted text for an error message, cut to 64 bytes.
func short(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}
