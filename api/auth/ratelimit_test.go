package auth

import (
	"context"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
)

func TestRateLimiterBuckets(t *testing.T) {
	now := testNow
	l, err := NewRateLimiter(RateLimitConfig{Rate: 2, Burst: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		advance time.Duration
		key     string
		ok      bool
		wait    time.Duration
	}{
		{"burst 1", 0, "a", true, 0},
		{"burst 2", 0, "a", true, 0},
		{"burst 3", 0, "a", true, 0},
		{"over burst", 0, "a", false, 500 * time.Millisecond},
		{"other client unaffected", 0, "b", true, 0},
		{"refilled one token", 500 * time.Millisecond, "a", true, 0},
		{"empty again", 0, "a", false, 500 * time.Millisecond},
		{"fully refilled", 2 * time.Second, "a", true, 0},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		ok, wait := l.Allow(s.key)
		if ok != s.ok || (!ok && (wait <= 0 || wait > s.wait)) {
			t.Errorf("%s: Allow = %v, %v; want %v, ≤%v", s.name, ok, wait, s.ok, s.wait)
		}
	}
}

func TestRateLimiterBoundedClients(t *testing.T) {
	now := testNow
	l, err := NewRateLimiter(RateLimitConfig{Rate: 1, Burst: 1, MaxClients: 10, IdleTTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		l.Allow(strconv.Itoa(i))
		if len(l.buckets) > 10 {
			t.Fatalf("%d buckets after %d clients, bound is 10", len(l.buckets), i+1)
		}
	}
	// Idle clients are dropped before active ones.
	now = now.Add(2 * time.Minute)
	l.Allow("active")
	for i := range 9 {
		l.Allow("new" + strconv.Itoa(i))
	}
	if _, ok := l.buckets["active"]; !ok {
		t.Error("an active client was evicted while idle ones existed")
	}
}

func TestRateLimiterConfig(t *testing.T) {
	for _, cfg := range []RateLimitConfig{{Rate: -1}, {Burst: -1}, {MaxClients: -1}, {IdleTTL: -time.Second}} {
		if _, err := NewRateLimiter(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestRateLimiterInterceptor(t *testing.T) {
	iss := newTestIssuer(t, t.TempDir(), nil, nil)
	v, _ := NewVerifier(iss.VerifierConfig())
	ic, _ := NewInterceptor(InterceptorConfig{Verifier: v})
	now := testNow
	rl, _ := NewRateLimiter(RateLimitConfig{Rate: 1, Burst: 2, Now: func() time.Time { return now }})
	f := newFixtureWith(t, connect.WithInterceptors(ic, rl))

	tokA, _ := iss.Issue(Claims{Subject: "a", Role: RoleViewer, CustomerIDs: []uuid.UUID{customer1}}, time.Hour)
	tokB, _ := iss.Issue(Claims{Subject: "b", Role: RoleViewer, CustomerIDs: []uuid.UUID{customer1}}, time.Hour)
	call := func(tok string) error {
		req := connect.NewRequest(&apiv1.ListReadingsRequest{})
		bearer(tok)(req.Header())
		_, err := f.ListReadings(context.Background(), req)
		return err
	}
	for i := range 2 {
		if err := call(tokA); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	err := call(tokA)
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("third call: %v, want ResourceExhausted", err)
	}
	if ce, ok := err.(*connect.Error); !ok || ce.Meta().Get("Retry-After") != "1" {
		t.Errorf("Retry-After missing: %v", err)
	}
	if err := call(tokB); err != nil {
		t.Fatalf("another client was limited too: %v", err)
	}
	// A stream opening is charged as a call.
	req := connect.NewRequest(&apiv1.StreamEventsRequest{})
	bearer(tokA)(req.Header())
	stream, err := f.StreamEvents(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if stream.Receive() || connect.CodeOf(stream.Err()) != connect.CodeResourceExhausted {
		t.Fatalf("stream: %v, want ResourceExhausted", stream.Err())
	}
	now = now.Add(time.Second)
	if err := call(tokA); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	if rl.Limited() != 2 {
		t.Errorf("limited = %d, want 2", rl.Limited())
	}
}
