package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultAudience is the "aud" of tokens for the Legiond API.
const DefaultAudience = "legiond"

// DefaultDevIssuer is the issuer URL of the embedded development issuer
// when the API listens on its default address. The server and `legiond
// token issue` must agree on it.
const DefaultDevIssuer = "https://localhost:8443"

// Paths of the issuer's endpoints, relative to its issuer URL.
const (
	JWKSPath      = "/.well-known/jwks.json"
	DiscoveryPath = "/.well-known/openid-configuration"
	TokenPath     = "/oauth2/token"
)

// Defaults of IssuerConfig.
const (
	DefaultTokenTTL    = time.Hour
	DefaultMaxTokenTTL = 24 * time.Hour
)

// DevKeyFile is where the development issuer keeps its signing key inside
// a data folder.
func DevKeyFile(dataDir string) string {
	return filepath.Join(dataDir, "auth", "dev-issuer-es256-key.pem")
}

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	// Issuer is the "iss" of the tokens and the base URL of the endpoints,
	// e.g. "https://localhost:8443". Required; https, no query.
	Issuer string
	// Audience is the "aud" of the tokens. Default DefaultAudience.
	Audience string
	// KeyFile holds the ES256 signing key (PEM, PKCS #8), created with mode
	// 0600 when missing (DevKeyFile). Required unless Key is set.
	KeyFile string
	// Key is an in-memory signing key, for tests.
	Key *ecdsa.PrivateKey
	// Clients authenticates the client-credentials grant. Without it the
	// token endpoint answers invalid_client to everyone.
	Clients ClientStore
	// DefaultTTL is the lifetime of client-credentials tokens and of
	// Issue(ttl=0). Default 1 h.
	DefaultTTL time.Duration
	// MaxTTL caps every lifetime. Default 24 h.
	MaxTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger reports key creation and store failures. Default
	// slog.Default().
	Logger *slog.Logger
	// OnIssue, when set, is called for every token before it is handed
	// out (the audit trail). An error refuses the token: no token leaves
	// the issuer unrecorded.
	OnIssue func(ctx context.Context, t IssuedToken) error
}

// IssuedToken describes a token for OnIssue: never the token itself.
type IssuedToken struct {
	Claims    Claims
	TokenID   string
	ExpiresAt time.Time
	// Grant is how it was issued: "client_credentials" at the token
	// endpoint, "direct" for Issue (development tools, `legiond token issue`).
	Grant string
}

func (c *IssuerConfig) setDefaults() {
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = DefaultTokenTTL
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTokenTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports an unusable configuration (after defaults).
func (c IssuerConfig) Validate() error {
	u, err := url.Parse(c.Issuer)
	if c.Issuer == "" || err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: issuer must be an https URL without query", ErrConfig)
	}
	if c.KeyFile == "" && c.Key == nil {
		return fmt.Errorf("%w: a key file or key is required", ErrConfig)
	}
	if c.Key != nil && c.Key.Curve != elliptic.P256() {
		return fmt.Errorf("%w: ES256 needs a P-256 key", ErrConfig)
	}
	if c.DefaultTTL <= 0 || c.MaxTTL <= 0 || c.DefaultTTL > c.MaxTTL {
		return fmt.Errorf("%w: need 0 < default TTL <= max TTL", ErrConfig)
	}
	return nil
}

// Issuer is the embedded development identity provider: it signs access
// tokens with an ES256 key and serves its JWKS, a minimal discovery
// document and the client-credentials token endpoint. Production points
// the Verifier at an external identity provider instead.
type Issuer struct {
	cfg    IssuerConfig
	key    *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
	jwks   []byte
}

// NewIssuer loads or creates the signing key and returns the issuer.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	key := cfg.Key
	if key == nil {
		var err error
		if key, err = loadOrCreateKey(cfg.KeyFile, cfg.Logger); err != nil {
			return nil, err
		}
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: thumbprint: %w", ErrIssuerKey, err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, fmt.Errorf("%w: signer: %w", ErrIssuerKey, err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, fmt.Errorf("%w: JWKS: %w", ErrIssuerKey, err)
	}
	return &Issuer{cfg: cfg, key: key, kid: pub.KeyID, signer: signer, jwks: jwks}, nil
}

// WithOnIssue returns a copy of the issuer (same key) that reports every
// token to fn (IssuerConfig.OnIssue).
func (i *Issuer) WithOnIssue(fn func(ctx context.Context, t IssuedToken) error) *Issuer {
	c := *i
	c.cfg.OnIssue = fn
	return &c
}

// URL returns the issuer identifier ("iss").
func (i *Issuer) URL() string { return i.cfg.Issuer }

// Audience returns the "aud" of issued tokens.
func (i *Issuer) Audience() string { return i.cfg.Audience }

// KeyID returns the kid of the signing key (its RFC 7638 thumbprint).
func (i *Issuer) KeyID() string { return i.kid }

// KeySet returns the public key set, for a Verifier's StaticKeys.
func (i *Issuer) KeySet() *jose.JSONWebKeySet {
	return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &i.key.PublicKey, KeyID: i.kid, Algorithm: string(jose.ES256), Use: "sig"}}}
}

// VerifierConfig returns a verifier configuration that accepts exactly
// this issuer's tokens, with its keys held statically.
func (i *Issuer) VerifierConfig() VerifierConfig {
	return VerifierConfig{Issuer: i.cfg.Issuer, Audience: i.cfg.Audience, StaticKeys: i.KeySet(), Logger: i.cfg.Logger}
}

// Issue signs an access token for the claims, valid for ttl (0: the
// default TTL). The claims are validated first, so the issuer never signs
// a token the verifier would refuse for its claims.
func (i *Issuer) Issue(c Claims, ttl time.Duration) (string, error) {
	return i.IssueContext(context.Background(), c, ttl)
}

// IssueContext is Issue with a context for OnIssue.
func (i *Issuer) IssueContext(ctx context.Context, c Claims, ttl time.Duration) (string, error) {
	return i.issue(ctx, c, ttl, "direct")
}

func (i *Issuer) issue(ctx context.Context, c Claims, ttl time.Duration, grant string) (string, error) {
	if ttl == 0 {
		ttl = i.cfg.DefaultTTL
	}
	if ttl < 0 || ttl > i.cfg.MaxTTL {
		return "", fmt.Errorf("%w: %s (max %s)", ErrTTL, ttl, i.cfg.MaxTTL)
	}
	if err := c.Validate(); err != nil {
		return "", err
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	var payload map[string]any
	if err := json.Unmarshal(body, &payload); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	now := i.cfg.Now().Truncate(time.Second)
	payload["iss"] = i.cfg.Issuer
	payload["aud"] = i.cfg.Audience
	payload["iat"] = now.Unix()
	payload["nbf"] = now.Unix()
	payload["exp"] = now.Add(ttl).Unix()
	jtiText := base64.RawURLEncoding.EncodeToString(jti[:])
	payload["jti"] = jtiText
	body, err = json.Marshal(payload)
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	sig, err := i.signer.Sign(body)
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	tok, err := sig.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	if i.cfg.OnIssue != nil {
		if err := i.cfg.OnIssue(ctx, IssuedToken{Claims: c, TokenID: jtiText, ExpiresAt: now.Add(ttl), Grant: grant}); err != nil {
			return "", fmt.Errorf("issue token: record: %w", err)
		}
	}
	return tok, nil
}

const devKeyPreamble = "# Legiond DEVELOPMENT token-issuer key (ES256). Generated by legiond for development\n" +
	"# and tests only; production uses an external identity provider. Keep this file private.\n"

// loadOrCreateKey reads the PEM key at path, or creates it (0600, in a
// 0700 folder) when the file does not exist. Creation is exclusive, so two
// processes starting together end up with the same key.
func loadOrCreateKey(path string, log *slog.Logger) (*ecdsa.PrivateKey, error) {
	key, err := loadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssuerKey, err)
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: generate: %w", ErrIssuerKey, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: marshal: %w", ErrIssuerKey, err)
	}
	data := append([]byte(devKeyPreamble), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	f, err := os.CreateTemp(filepath.Dir(path), ".dev-issuer-key-*")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssuerKey, err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%w: write: %w", ErrIssuerKey, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			return loadKey(path)
		}
		return nil, fmt.Errorf("%w: %w", ErrIssuerKey, err)
	}
	log.Info("created development token-issuer key", "key_file", path)
	return key, nil
}

func loadKey(path string) (*ecdsa.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrIssuerKey, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is accessible by others (mode %v); chmod 600 it", ErrIssuerKey, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssuerKey, err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM block", ErrIssuerKey, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIssuerKey, path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: %s is not a P-256 ECDSA key", ErrIssuerKey, path)
	}
	return ec, nil
}
