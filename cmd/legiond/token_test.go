package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/api/auth"
)

func tokenCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), append([]string{"token"}, args...), stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

// devVerifier verifies against the dev issuer key in dir, independently of
// the command under test.
func devVerifier(t *testing.T, dir string) *auth.Verifier {
	t.Helper()
	iss, err := auth.NewIssuer(auth.IssuerConfig{Issuer: auth.DefaultDevIssuer, KeyFile: auth.DevKeyFile(dir)})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(iss.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenIssue(t *testing.T) {
	dir := t.TempDir()
	cust, site := uuid.New(), uuid.New()
	partner := uuid.New()
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, p *auth.Principal)
	}{
		{"technician", []string{"--role", "technician", "--customer", cust.String(), "--site", site.String(), "--subject", "jan"},
			func(t *testing.T, p *auth.Principal) {
				if p.Subject != "jan" || p.Role != auth.RoleTechnician || !p.CanSeeSite(cust, site) || p.CanSeeSite(cust, uuid.New()) {
					t.Errorf("principal %+v", p)
				}
			}},
		{"integration with scopes", []string{"--role", "integration", "--customer", cust.String(), "--scope", "readings:read", "--scope", "alarms:read", "--ttl", "10m"},
			func(t *testing.T, p *auth.Principal) {
				if p.ClientID != "dev-client" || !p.HasScope(auth.ScopeAlarmsRead) || p.HasScope(auth.ScopeAlarmsWrite) {
					t.Errorf("principal %+v", p)
				}
				if left := time.Until(p.ExpiresAt); left > 10*time.Minute || left < 9*time.Minute {
					t.Errorf("expires in %v, want ~10m", left)
				}
			}},
		{"partner admin", []string{"--role", "partner_admin", "--partner", partner.String()},
			func(t *testing.T, p *auth.Principal) {
				if p.Subject != "dev-partner_admin" || !p.PartnerWide() {
					t.Errorf("principal %+v", p)
				}
			}},
		{"platform admin", []string{"--role", "platform_admin"},
			func(t *testing.T, p *auth.Principal) {
				if sc, err := p.Scope(); err != nil || sc.Kind.String() != "platform" {
					t.Errorf("scope %v %v", sc, err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := tokenCLI(t, "", append([]string{"issue", "--data-dir", dir}, tt.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			p, err := devVerifier(t, dir).Verify(context.Background(), strings.TrimSpace(out))
			if err != nil {
				t.Fatalf("printed token does not verify: %v", err)
			}
			tt.check(t, p)
		})
	}

	// token verify reads the token from standard input and prints the claims.
	_, tok, _ := tokenCLI(t, "", "issue", "--data-dir", dir, "--role", "viewer", "--customer", cust.String())
	code, out, stderr := tokenCLI(t, tok, "verify", "--data-dir", dir)
	if code != exitOK {
		t.Fatalf("verify exit %d: %s", code, stderr)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(out), &p); err != nil || p["role"] != "viewer" {
		t.Fatalf("verify printed %s (%v)", out, err)
	}
	// A token for another audience is refused.
	_, other, _ := tokenCLI(t, "", "issue", "--data-dir", dir, "--role", "platform_admin", "--audience", "other")
	if code, _, stderr := tokenCLI(t, other, "verify", "--data-dir", dir); code != exitFailure || !strings.Contains(stderr, "audience") {
		t.Errorf("verify of a foreign-audience token: exit %d, %s", code, stderr)
	}
}

func TestTokenIssueErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no subcommand", nil, exitUsage, "usage"},
		{"unknown subcommand", []string{"mint"}, exitUsage, "unknown command"},
		{"no role", []string{"issue", "--data-dir", dir}, exitUsage, "--role is required"},
		{"unknown role", []string{"issue", "--data-dir", dir, "--role", "root"}, exitUsage, "unknown role"},
		{"support with a customer", []string{"issue", "--data-dir", dir, "--role", "support", "--customer", "0b8e2a0e-4c1f-4d8a-9a51-6a3f7c1e2d40"}, exitUsage, "break-glass"},
		{"customer admin without customer", []string{"issue", "--data-dir", dir, "--role", "customer_admin"}, exitUsage, "customer_ids"},
		{"bad customer id", []string{"issue", "--data-dir", dir, "--role", "viewer", "--customer", "acme"}, exitUsage, "not a UUID"},
		{"ttl too long", []string{"issue", "--data-dir", dir, "--role", "platform_admin", "--ttl", "1000h"}, exitUsage, "lifetime"},
		{"stray argument", []string{"issue", "--data-dir", dir, "--role", "platform_admin", "extra"}, exitUsage, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := tokenCLI(t, "", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.msg)
			}
			if out != "" {
				t.Errorf("printed %q on failure", out)
			}
		})
	}
}
