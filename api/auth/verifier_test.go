package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var timeZero time.Time

const (
	testIssuer   = "https://id.legiond.test"
	testAudience = "legiond"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testKeys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() struct {
	ec, ec2 *ecdsa.PrivateKey
	rsa     *rsa.PrivateKey
} {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r, _ := rsa.GenerateKey(rand.Reader, 2048)
	return struct {
		ec, ec2 *ecdsa.PrivateKey
		rsa     *rsa.PrivateKey
	}{ec, ec2, r}
})

// sign makes a compact JWS of payload with key and alg, and kid when set.
func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, payload map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned builds a token with an arbitrary header and an empty signature.
func unsigned(header, payload map[string]any) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(payload)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

func validPayload() map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "user-1",
		"iat": testNow.Add(-time.Minute).Unix(), "nbf": testNow.Add(-time.Minute).Unix(), "exp": testNow.Add(time.Hour).Unix(),
		"jti": "t1", "role": "customer_admin", "customer_ids": []string{customer1.String()},
	}
}

func with(p map[string]any, kv ...any) map[string]any {
	out := maps.Clone(p)
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

func staticVerifier(t *testing.T) *Verifier {
	t.Helper()
	k := testKeys()
	v, err := NewVerifier(VerifierConfig{
		Issuer: testIssuer, Audience: testAudience,
		StaticKeys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &k.ec.PublicKey, KeyID: "ec1", Use: "sig"},
			{Key: &k.rsa.PublicKey, KeyID: "rsa1", Algorithm: "RS256"},
			{Key: []byte("a-shared-secret-that-must-never-be-used"), KeyID: "hmac1"},
		}},
		Now: func() time.Time { return testNow }, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	k := testKeys()
	v := staticVerifier(t)
	ecPubDER, _ := x509.MarshalPKIXPublicKey(&k.ec.PublicKey)
	good := validPayload()

	tests := []struct {
		name  string
		token string
		want  error // nil: valid
	}{
		{"ES256 valid", sign(t, k.ec, jose.ES256, "ec1", good), nil},
		{"RS256 valid", sign(t, k.rsa, jose.RS256, "rsa1", good), nil},
		{"audience array", sign(t, k.ec, jose.ES256, "ec1", with(good, "aud", []string{"other", testAudience})), nil},
		{"expired within leeway", sign(t, k.ec, jose.ES256, "ec1", with(good, "exp", testNow.Add(-10*time.Second).Unix())), nil},
		{"nbf within leeway", sign(t, k.ec, jose.ES256, "ec1", with(good, "nbf", testNow.Add(10*time.Second).Unix())), nil},
		{"single customer_id claim", sign(t, k.ec, jose.ES256, "ec1", with(good, "customer_ids", nil, "customer_id", customer1.String())), nil},

		{"empty", "", ErrTokenMissing},
		{"garbage", "not-a-token", ErrTokenMalformed},
		{"four parts", "a.b.c.d", ErrTokenMalformed},
		{"header not base64", "%%%.e30.sig", ErrTokenMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".e30.sig", ErrTokenMalformed},
		{"oversized", strings.Repeat("a", DefaultMaxTokenBytes+1), ErrTokenMalformed},
		{"foreign typ", unsigned(map[string]any{"alg": "ES256", "typ": "dpop+jwt", "kid": "ec1"}, good), ErrTokenMalformed},

		{"alg none", unsigned(map[string]any{"alg": "none", "kid": "ec1"}, good), ErrTokenSignature},
		{"alg missing", unsigned(map[string]any{"kid": "ec1"}, good), ErrTokenSignature},
		{"HS256 with the public key as secret", sign(t, ecPubDER, jose.HS256, "ec1", good), ErrTokenSignature},
		{"HS256 with the set's HMAC key", sign(t, []byte("a-shared-secret-that-must-never-be-used"), jose.HS256, "hmac1", good), ErrTokenSignature},
		{"ES384 not accepted", unsigned(map[string]any{"alg": "ES384", "kid": "ec1"}, good), ErrTokenSignature},
		{"RS256 header on the EC key", sign(t, k.rsa, jose.RS256, "ec1", good), ErrTokenSignature},
		{"ES256 header on the RSA key", sign(t, k.ec, jose.ES256, "rsa1", good), ErrTokenSignature},
		{"forged: other key, real kid", sign(t, k.ec2, jose.ES256, "ec1", good), ErrTokenSignature},
		{"unknown kid", sign(t, k.ec, jose.ES256, "ec9", good), ErrTokenSignature},
		{"payload tampered", tamper(sign(t, k.ec, jose.ES256, "ec1", good), with(good, "role", "platform_admin", "customer_ids", nil)), ErrTokenSignature},

		{"expired", sign(t, k.ec, jose.ES256, "ec1", with(good, "exp", testNow.Add(-time.Minute).Unix())), ErrTokenExpired},
		{"not yet valid", sign(t, k.ec, jose.ES256, "ec1", with(good, "nbf", testNow.Add(time.Minute).Unix())), ErrTokenNotYetValid},
		{"issued in the future", sign(t, k.ec, jose.ES256, "ec1", with(good, "iat", testNow.Add(time.Hour).Unix())), ErrTokenNotYetValid},
		{"wrong issuer", sign(t, k.ec, jose.ES256, "ec1", with(good, "iss", "https://evil.test")), ErrTokenIssuer},
		{"wrong audience", sign(t, k.ec, jose.ES256, "ec1", with(good, "aud", "other-api")), ErrTokenAudience},
		{"no audience", sign(t, k.ec, jose.ES256, "ec1", with(good, "aud", nil)), ErrTokenAudience},
		{"no exp", sign(t, k.ec, jose.ES256, "ec1", with(good, "exp", nil)), ErrClaims},
		{"unknown role", sign(t, k.ec, jose.ES256, "ec1", with(good, "role", "root")), ErrClaims},
		{"support role with a customer", sign(t, k.ec, jose.ES256, "ec1", with(good, "role", "support")), ErrClaims},
		{"customer admin without customer", sign(t, k.ec, jose.ES256, "ec1", with(good, "customer_ids", nil)), ErrClaims},
		{"malformed customer id", sign(t, k.ec, jose.ES256, "ec1", with(good, "customer_ids", []string{"c1"})), ErrClaims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.Subject != "user-1" || p.Role != RoleCustomerAdmin || !p.CanSeeCustomer(customer1) {
					t.Errorf("principal %+v", p)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			// Exactly one reason, so counters are unambiguous.
			for _, r := range reasons {
				if r.err != tt.want && errors.Is(err, r.err) {
					t.Errorf("error %v also matches %v", err, r.err)
				}
			}
		})
	}
}

// tamper replaces a token's payload, keeping header and signature.
func tamper(tok string, payload map[string]any) string {
	parts := strings.Split(tok, ".")
	b, _ := json.Marshal(payload)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestVerifyPrincipalFields(t *testing.T) {
	k := testKeys()
	v := staticVerifier(t)
	tok := sign(t, k.ec, jose.ES256, "ec1", with(validPayload(),
		"role", "integration", "client_id", "lgc_1", "sub", "lgc_1", "scope", "readings:read alarms:read",
		"customer_ids", []string{customer1.String(), customer2.String()}))
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.TokenID != "t1" || !p.ExpiresAt.Equal(testNow.Add(time.Hour)) || p.ClientID != "lgc_1" ||
		!p.HasScope(ScopeAlarmsRead) || p.HasScope(ScopeAlarmsWrite) || !p.CanSeeCustomer(customer2) || p.Actor() != "client:lgc_1" {
		t.Errorf("principal %+v", p)
	}
}

func TestVerifierConfigValidate(t *testing.T) {
	k := testKeys()
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.ec.PublicKey, KeyID: "ec1"}}}
	onlyHMAC := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("secret"), KeyID: "h"}}}
	tests := []struct {
		name string
		cfg  VerifierConfig
		ok   bool
	}{
		{"static", VerifierConfig{Issuer: testIssuer, Audience: testAudience, StaticKeys: keys}, true},
		{"url", VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://id.test/jwks"}, true},
		{"http url", VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "http://id.test/jwks"}, false},
		{"both sources", VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://id.test/jwks", StaticKeys: keys}, false},
		{"no source", VerifierConfig{Issuer: testIssuer, Audience: testAudience}, false},
		{"only HMAC keys", VerifierConfig{Issuer: testIssuer, Audience: testAudience, StaticKeys: onlyHMAC}, false},
		{"no issuer", VerifierConfig{Audience: testAudience, StaticKeys: keys}, false},
		{"no audience", VerifierConfig{Issuer: testIssuer, StaticKeys: keys}, false},
		{"huge leeway", VerifierConfig{Issuer: testIssuer, Audience: testAudience, StaticKeys: keys, Leeway: time.Hour}, false},
	}
	for _, tt := range tests {
		_, err := NewVerifier(tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: NewVerifier = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v is not ErrConfig", tt.name, err)
		}
	}
}

// jwksServer serves a key set that the test can change, over TLS.
type jwksServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	keys   []jose.JSONWebKey
	fail   bool
	served atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	j := &jwksServer{keys: keys}
	j.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.served.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		// One exotic key must not hide the others.
		raw := []json.RawMessage{json.RawMessage(`{"kty":"XYZ","kid":"odd"}`)}
		for _, k := range j.keys {
			b, _ := k.MarshalJSON()
			raw = append(raw, b)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": raw})
	}))
	j.srv.EnableHTTP2 = true
	j.srv.StartTLS()
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) set(fail bool, keys ...jose.JSONWebKey) {
	j.mu.Lock()
	j.fail, j.keys = fail, keys
	j.mu.Unlock()
}

func TestRemoteJWKS(t *testing.T) {
	k := testKeys()
	key1 := jose.JSONWebKey{Key: &k.ec.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}
	key2 := jose.JSONWebKey{Key: &k.ec2.PublicKey, KeyID: "k2", Algorithm: "ES256", Use: "sig"}
	j := newJWKSServer(t, key1)

	now := testNow
	v, err := NewVerifier(VerifierConfig{
		Issuer: testIssuer, Audience: testAudience, JWKSURL: j.srv.URL + "/jwks",
		HTTPClient: j.srv.Client(), Now: func() time.Time { return now }, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	verify := func(key *ecdsa.PrivateKey, kid string) error {
		_, err := v.Verify(ctx, sign(t, key, jose.ES256, kid, validPayload()))
		return err
	}

	// First use fetches; the next uses the cache.
	if err := verify(k.ec, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := verify(k.ec, "k1"); err != nil {
		t.Fatal(err)
	}
	if v.Fetches() != 1 {
		t.Fatalf("fetches = %d, want 1", v.Fetches())
	}

	// The issuer rotates to k2: an unknown kid triggers one re-fetch, but
	// not before MinRefreshInterval has passed since the last one.
	j.set(false, key1, key2)
	if err := verify(k.ec2, "k2"); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("k2 before min refresh interval: %v, want ErrTokenSignature", err)
	}
	if v.Fetches() != 1 {
		t.Fatalf("fetched again within the min refresh interval")
	}
	now = now.Add(DefaultMinRefreshInterval)
	if err := verify(k.ec2, "k2"); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	if v.Fetches() != 2 {
		t.Fatalf("fetches = %d, want 2", v.Fetches())
	}
	// Made-up kids do not cause a fetch each.
	for range 5 {
		_ = verify(k.ec, "made-up")
	}
	if v.Fetches() != 2 {
		t.Fatalf("made-up kids caused fetches: %d", v.Fetches())
	}

	// The issuer goes down after the cache expired: old keys keep working.
	j.set(true)
	now = now.Add(DefaultCacheTTL)
	if err := verify(k.ec, "k1"); err != nil {
		t.Fatalf("cached key during outage: %v", err)
	}
}

func TestRemoteJWKSUnavailable(t *testing.T) {
	j := newJWKSServer(t)
	j.set(true)
	now := testNow
	v, err := NewVerifier(VerifierConfig{
		Issuer: testIssuer, Audience: testAudience, JWKSURL: j.srv.URL,
		HTTPClient: j.srv.Client(), Now: func() time.Time { return now }, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, testKeys().ec, jose.ES256, "k1", validPayload())
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrKeySet) {
		t.Fatalf("err = %v, want ErrKeySet", err)
	}
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrKeySet) {
		t.Fatalf("err = %v, want ErrKeySet", err)
	}
	if got := j.served.Load(); got != 1 {
		t.Fatalf("a failing issuer was asked %d times within the min refresh interval, want 1", got)
	}
}

func TestParseJWKS(t *testing.T) {
	k := testKeys()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	mk := func(keys ...jose.JSONWebKey) []byte {
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		return b
	}
	tests := []struct {
		name string
		in   []byte
		n    int
	}{
		{"ec and rsa", mk(jose.JSONWebKey{Key: &k.ec.PublicKey, KeyID: "a"}, jose.JSONWebKey{Key: &k.rsa.PublicKey, KeyID: "b"}), 2},
		{"private key published: public half kept", mk(jose.JSONWebKey{Key: k.ec, KeyID: "a"}), 1},
		{"encryption key skipped", mk(jose.JSONWebKey{Key: &k.ec.PublicKey, KeyID: "a", Use: "enc"}, jose.JSONWebKey{Key: &k.rsa.PublicKey, KeyID: "b"}), 1},
		{"small RSA and P-384 skipped", mk(jose.JSONWebKey{Key: &small.PublicKey, KeyID: "a"}, jose.JSONWebKey{Key: &p384.PublicKey, KeyID: "b"}, jose.JSONWebKey{Key: &k.ec.PublicKey, KeyID: "c"}), 1},
		{"alg mismatch skipped", mk(jose.JSONWebKey{Key: &k.ec.PublicKey, KeyID: "a", Algorithm: "RS256"}, jose.JSONWebKey{Key: &k.rsa.PublicKey, KeyID: "b"}), 1},
		{"only HMAC", mk(jose.JSONWebKey{Key: []byte("secret"), KeyID: "h"}), 0},
		{"not JSON", []byte("<html>"), 0},
	}
	for _, tt := range tests {
		keys, err := ParseJWKS(tt.in)
		if tt.n == 0 {
			if !errors.Is(err, ErrKeySet) {
				t.Errorf("%s: err = %v, want ErrKeySet", tt.name, err)
			}
			continue
		}
		if err != nil || len(keys) != tt.n {
			t.Errorf("%s: %d keys, %v; want %d", tt.name, len(keys), err, tt.n)
		}
		for _, key := range keys {
			if !key.IsPublic() {
				t.Errorf("%s: kept a non-public key", tt.name)
			}
		}
	}
}

// FuzzVerify: untrusted tokens never panic the verifier, and every refusal
// carries exactly one of the typed reasons.
func FuzzVerify(f *testing.F) {
	k := testKeys()
	seed := func(key any, alg jose.SignatureAlgorithm, kid string, p map[string]any) string {
		opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
		b, _ := json.Marshal(p)
		jws, _ := s.Sign(b)
		tok, _ := jws.CompactSerialize()
		return tok
	}
	f.Add(seed(k.ec, jose.ES256, "ec1", validPayload()))
	f.Add(seed(k.rsa, jose.RS256, "rsa1", validPayload()))
	f.Add(unsigned(map[string]any{"alg": "none"}, validPayload()))
	f.Add("a.b.c")
	f.Add("")
	v, err := NewVerifier(VerifierConfig{
		Issuer: testIssuer, Audience: testAudience, Now: func() time.Time { return testNow }, Logger: quiet(),
		StaticKeys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.ec.PublicKey, KeyID: "ec1"}, {Key: &k.rsa.PublicKey, KeyID: "rsa1"}}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(context.Background(), tok)
		if err == nil {
			if p == nil || p.Subject == "" || p.Role == "" {
				t.Fatalf("accepted token without a valid principal: %+v", p)
			}
			return
		}
		n := 0
		for _, r := range reasons {
			if errors.Is(err, r.err) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %q matches %d reasons, want 1", err, n)
		}
	})
}

func BenchmarkVerifyES256(b *testing.B) {
	k := testKeys()
	v, err := NewVerifier(VerifierConfig{
		Issuer: testIssuer, Audience: testAudience, Now: func() time.Time { return testNow }, Logger: quiet(),
		StaticKeys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.ec.PublicKey, KeyID: "ec1"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.ec}, (&jose.SignerOptions{}).WithHeader("kid", "ec1"))
	body, _ := json.Marshal(validPayload())
	jws, _ := s.Sign(body)
	tok, _ := jws.CompactSerialize()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
