package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func newTestIssuer(t *testing.T, dir string, clients ClientStore, now func() time.Time) *Issuer {
	t.Helper()
	iss, err := NewIssuer(IssuerConfig{Issuer: testIssuer, KeyFile: DevKeyFile(dir), Clients: clients, Now: now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func TestIssuerKeyFile(t *testing.T) {
	dir := t.TempDir()
	a := newTestIssuer(t, dir, nil, nil)
	st, err := os.Stat(DevKeyFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(DevKeyFile(dir))); dst.Mode().Perm() != 0o700 {
		t.Errorf("key folder mode %v, want 0700", dst.Mode().Perm())
	}
	b, _ := os.ReadFile(DevKeyFile(dir))
	if !strings.Contains(string(b), "DEVELOPMENT") || !strings.Contains(filepath.Base(DevKeyFile(dir)), "dev") {
		t.Error("key file is not clearly marked as a development key")
	}
	if b := newTestIssuer(t, dir, nil, nil); b.KeyID() != a.KeyID() {
		t.Errorf("key not reused: kid %s then %s", a.KeyID(), b.KeyID())
	}
	if err := os.Chmod(DevKeyFile(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewIssuer(IssuerConfig{Issuer: testIssuer, KeyFile: DevKeyFile(dir), Logger: quiet()}); !errors.Is(err, ErrIssuerKey) {
		t.Errorf("world-readable key: err = %v, want ErrIssuerKey", err)
	}
	if err := os.WriteFile(DevKeyFile(dir), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewIssuer(IssuerConfig{Issuer: testIssuer, KeyFile: DevKeyFile(dir), Logger: quiet()}); !errors.Is(err, ErrIssuerKey) {
		t.Errorf("corrupt key: err = %v, want ErrIssuerKey", err)
	}
}

func TestIssuerConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  IssuerConfig
		ok   bool
	}{
		{"ok", IssuerConfig{Issuer: "https://localhost:8443", KeyFile: "k"}, true},
		{"http issuer", IssuerConfig{Issuer: "http://localhost:8443", KeyFile: "k"}, false},
		{"issuer with query", IssuerConfig{Issuer: "https://localhost:8443/?a=b", KeyFile: "k"}, false},
		{"no key", IssuerConfig{Issuer: "https://localhost:8443"}, false},
		{"default above max", IssuerConfig{Issuer: "https://localhost:8443", KeyFile: "k", DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour}, false},
	}
	for _, tt := range tests {
		tt.cfg.setDefaults()
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestIssueAndVerify(t *testing.T) {
	iss := newTestIssuer(t, t.TempDir(), nil, func() time.Time { return testNow })
	cfg := iss.VerifierConfig()
	now := testNow
	cfg.Now = func() time.Time { return now }
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := Claims{Subject: "tech-7", Role: RoleTechnician, CustomerIDs: []uuid.UUID{customer1}, SiteIDs: []uuid.UUID{site1, site2}}
	tok, err := iss.Issue(c, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "tech-7" || !p.CanSeeSite(customer1, site2) || p.TokenID == "" || !p.ExpiresAt.Equal(testNow.Add(10*time.Minute)) {
		t.Errorf("principal %+v", p)
	}
	now = testNow.Add(11 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("after ttl: %v, want ErrTokenExpired", err)
	}

	if _, err := iss.Issue(Claims{Subject: "x", Role: "root"}, 0); !errors.Is(err, ErrClaims) {
		t.Errorf("bad claims: %v", err)
	}
	if _, err := iss.Issue(c, 48*time.Hour); !errors.Is(err, ErrTTL) {
		t.Errorf("ttl above max: %v", err)
	}
	if _, err := iss.Issue(c, -time.Second); !errors.Is(err, ErrTTL) {
		t.Errorf("negative ttl: %v", err)
	}
}

func TestIssuerDocuments(t *testing.T) {
	iss := newTestIssuer(t, t.TempDir(), nil, nil)
	routes := iss.Routes()
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		routes[path].ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	rec := get(JWKSPath)
	keys, err := ParseJWKS(rec.Body.Bytes())
	if err != nil || len(keys) != 1 || keys[0].KeyID != iss.KeyID() || keys[0].Algorithm != "ES256" {
		t.Fatalf("JWKS %s: %v", rec.Body, err)
	}
	if strings.Contains(rec.Body.String(), `"d"`) {
		t.Fatal("JWKS leaks the private key")
	}
	var doc map[string]any
	if err := json.Unmarshal(get(DiscoveryPath).Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != testIssuer || doc["jwks_uri"] != testIssuer+JWKSPath || doc["token_endpoint"] != testIssuer+TokenPath {
		t.Errorf("discovery %v", doc)
	}
	rec = httptest.NewRecorder()
	routes[JWKSPath].ServeHTTP(rec, httptest.NewRequest(http.MethodPost, JWKSPath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST JWKS: %d", rec.Code)
	}
}

func TestTokenEndpoint(t *testing.T) {
	store := NewMemoryClientStore()
	tmpl := Claims{Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer1}, Scopes: []string{ScopeReadingsRead, ScopeAlarmsRead}}
	id, secret, err := store.Generate(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	add := func(c Client) {
		t.Helper()
		if err := store.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	add(Client{ID: "disabled", SecretHash: HashSecret("s"), Claims: tmpl, Disabled: true})
	add(Client{ID: "expired", SecretHash: HashSecret("s"), Claims: tmpl, ExpiresAt: testNow.Add(-time.Second)})
	add(Client{ID: "short", SecretHash: HashSecret("s"), Claims: tmpl, TokenTTL: 5 * time.Minute})
	add(Client{ID: "human", SecretHash: HashSecret("s"), Claims: Claims{Role: RoleCustomerAdmin, CustomerIDs: []uuid.UUID{customer1}}})
	if err := store.Add(Client{ID: "bad", SecretHash: HashSecret("s"), Claims: Claims{Role: "root"}}); !errors.Is(err, ErrClaims) {
		t.Errorf("store accepted an invalid template: %v", err)
	}

	iss := newTestIssuer(t, t.TempDir(), store, func() time.Time { return testNow })
	vcfg := iss.VerifierConfig()
	vcfg.Now = func() time.Time { return testNow }
	v, err := NewVerifier(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	h := iss.TokenHandler()

	form := func(kv ...string) string {
		f := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			f.Add(kv[i], kv[i+1])
		}
		return f.Encode()
	}
	tests := []struct {
		name      string
		method    string
		ctype     string
		basic     []string // id, secret
		body      string
		status    int
		errCode   string
		scope     string // granted scope on success
		expiresIn int64
	}{
		{"basic auth", "POST", "", []string{id, secret}, form("grant_type", "client_credentials"), 200, "", "readings:read alarms:read", 3600},
		{"form auth narrowed scope", "POST", "", nil, form("grant_type", "client_credentials", "client_id", id, "client_secret", secret, "scope", "alarms:read"), 200, "", "alarms:read", 3600},
		{"per-client ttl", "POST", "", []string{"short", "s"}, form("grant_type", "client_credentials"), 200, "", "readings:read alarms:read", 300},
		{"wrong secret", "POST", "", []string{id, "lgs_wrong"}, form("grant_type", "client_credentials"), 401, "invalid_client", "", 0},
		{"unknown client", "POST", "", nil, form("grant_type", "client_credentials", "client_id", "lgc_nope", "client_secret", secret), 401, "invalid_client", "", 0},
		{"no credentials", "POST", "", nil, form("grant_type", "client_credentials"), 401, "invalid_client", "", 0},
		{"disabled client", "POST", "", []string{"disabled", "s"}, form("grant_type", "client_credentials"), 401, "invalid_client", "", 0},
		{"expired client", "POST", "", []string{"expired", "s"}, form("grant_type", "client_credentials"), 401, "invalid_client", "", 0},
		{"two auth methods", "POST", "", []string{id, secret}, form("grant_type", "client_credentials", "client_secret", secret), 400, "invalid_request", "", 0},
		{"password grant", "POST", "", []string{id, secret}, form("grant_type", "password", "username", "a", "password", "b"), 400, "unsupported_grant_type", "", 0},
		{"no grant type", "POST", "", []string{id, secret}, "", 400, "invalid_request", "", 0},
		{"scope not granted", "POST", "", []string{id, secret}, form("grant_type", "client_credentials", "scope", "readings:read admin:write"), 400, "invalid_scope", "", 0},
		{"human client", "POST", "", []string{"human", "s"}, form("grant_type", "client_credentials"), 400, "unauthorized_client", "", 0},
		{"repeated parameter", "POST", "", []string{id, secret}, form("grant_type", "client_credentials", "grant_type", "client_credentials"), 400, "invalid_request", "", 0},
		{"JSON body", "POST", "application/json", []string{id, secret}, `{"grant_type":"client_credentials"}`, 400, "invalid_request", "", 0},
		{"oversized body", "POST", "", []string{id, secret}, form("grant_type", "client_credentials", "pad", strings.Repeat("x", maxTokenRequestBytes)), 400, "invalid_request", "", 0},
		{"GET", "GET", "", []string{id, secret}, "", 405, "invalid_request", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, TokenPath, strings.NewReader(tt.body))
			ctype := tt.ctype
			if ctype == "" {
				ctype = "application/x-www-form-urlencoded"
			}
			req.Header.Set("Content-Type", ctype)
			if tt.basic != nil {
				req.SetBasicAuth(url.QueryEscape(tt.basic[0]), url.QueryEscape(tt.basic[1]))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", rec.Header())
			}
			if tt.errCode != "" {
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != tt.errCode {
					t.Fatalf("body %s, want error %s", rec.Body, tt.errCode)
				}
				if tt.status == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic") {
					t.Errorf("401 without a Basic challenge")
				}
				return
			}
			var resp tokenResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.TokenType != "Bearer" || resp.Scope != tt.scope || resp.ExpiresIn != tt.expiresIn {
				t.Errorf("response %+v", resp)
			}
			p, err := v.Verify(context.Background(), resp.AccessToken)
			if err != nil {
				t.Fatalf("issued token does not verify: %v", err)
			}
			if p.Role != RoleIntegration || p.ClientID == "" || p.Subject != p.ClientID || !slices.Equal(p.Scopes, strings.Fields(tt.scope)) || !p.CanSeeCustomer(customer1) {
				t.Errorf("principal %+v", p)
			}
		})
	}
}

// TestIssuerOnIssue: every token, direct or at the token endpoint, is
// reported before it is handed out, and a failing report refuses it.
func TestIssuerOnIssue(t *testing.T) {
	clients := NewMemoryClientStore()
	customer := uuid.New()
	id, secret, err := clients.Generate(Claims{Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer}, Scopes: []string{ScopeReadingsRead}})
	if err != nil {
		t.Fatal(err)
	}
	var got []IssuedToken
	fail := false
	iss, err := NewIssuer(IssuerConfig{Issuer: testIssuer, KeyFile: DevKeyFile(t.TempDir()), Clients: clients, Logger: quiet(),
		OnIssue: func(_ context.Context, tk IssuedToken) error {
			if fail {
				return errors.New("audit log down")
			}
			got = append(got, tk)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Issue(Claims{Subject: "u1", Role: RolePlatformAdmin}, time.Minute); err != nil {
		t.Fatal(err)
	}
	post := func() int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", TokenPath, strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		iss.TokenHandler().ServeHTTP(rec, req)
		return rec.Code
	}
	if code := post(); code != http.StatusOK {
		t.Fatalf("token endpoint: %d", code)
	}
	if len(got) != 2 || got[0].Grant != "direct" || got[0].Claims.Subject != "u1" || got[1].Grant != "client_credentials" ||
		got[1].Claims.ClientID != id || got[1].TokenID == "" || got[1].ExpiresAt.IsZero() {
		t.Fatalf("reported %+v", got)
	}
	fail = true
	if _, err := iss.Issue(Claims{Subject: "u1", Role: RolePlatformAdmin}, time.Minute); err == nil {
		t.Error("Issue succeeded although recording failed")
	}
	if code := post(); code != http.StatusInternalServerError {
		t.Errorf("token endpoint with failing record: %d, want 500", code)
	}
}
