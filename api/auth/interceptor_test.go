package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
)

// stubTelemetry echoes the caller's subject, so tests see which principal
// the handler got.
type stubTelemetry struct {
	apiv1connect.UnimplementedTelemetryServiceHandler
}

func (stubTelemetry) ListReadings(ctx context.Context, _ *connect.Request[apiv1.ListReadingsRequest]) (*connect.Response[apiv1.ListReadingsResponse], error) {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return connect.NewResponse(&apiv1.ListReadingsResponse{NextPageToken: "anonymous"}), nil
	}
	return connect.NewResponse(&apiv1.ListReadingsResponse{NextPageToken: p.Subject}), nil
}

func (stubTelemetry) StreamEvents(ctx context.Context, req *connect.Request[apiv1.StreamEventsRequest], s *connect.ServerStream[apiv1.StreamEventsResponse]) error {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return connect.NewError(connect.CodeInternal, errors.New("no principal in a stream"))
	}
	if err := s.Send(&apiv1.StreamEventsResponse{ResumeToken: p.Subject}); err != nil {
		return err
	}
	if req.Msg.ResumeToken == "hold" { // stay open until the context ends
		<-ctx.Done()
		return connect.NewError(connect.CodeCanceled, ctx.Err())
	}
	return nil
}

type fixture struct {
	iss         *Issuer
	interceptor *Interceptor
	client      apiv1connect.TelemetryServiceClient
}

func newFixture(t *testing.T, public []string, streamLeeway time.Duration) *fixture {
	t.Helper()
	iss := newTestIssuer(t, t.TempDir(), nil, nil)
	v, err := NewVerifier(iss.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	ic, err := NewInterceptor(InterceptorConfig{Verifier: v, Public: public, Leeway: streamLeeway})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{iss: iss, interceptor: ic, client: newFixtureWith(t, connect.WithInterceptors(ic))}
}

// newFixtureWith serves the stub over TLS with HTTP/2 and returns a client.
func newFixtureWith(t *testing.T, opts ...connect.HandlerOption) apiv1connect.TelemetryServiceClient {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(apiv1connect.NewTelemetryServiceHandler(stubTelemetry{}, opts...))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return apiv1connect.NewTelemetryServiceClient(srv.Client(), srv.URL)
}

func bearer(tok string) func(http.Header) {
	return func(h http.Header) { h.Set("Authorization", "Bearer "+tok) }
}

func TestInterceptorUnary(t *testing.T) {
	f := newFixture(t, nil, 0)
	good, err := f.iss.Issue(Claims{Subject: "viewer-1", Role: RoleViewer, CustomerIDs: []uuid.UUID{customer1}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestIssuer(t, t.TempDir(), nil, nil) // same issuer URL, different key
	forged, _ := other.Issue(Claims{Subject: "viewer-1", Role: RolePlatformAdmin}, time.Hour)

	tests := []struct {
		name      string
		header    func(http.Header)
		code      connect.Code // 0: OK
		reason    string
		challenge string
	}{
		{"valid", bearer(good), 0, "", ""},
		{"lower-case scheme", func(h http.Header) { h.Set("Authorization", "bearer "+good) }, 0, "", ""},
		{"no header", func(http.Header) {}, connect.CodeUnauthenticated, ReasonMissing, `Bearer realm="legiond"`},
		{"empty bearer", func(h http.Header) { h.Set("Authorization", "Bearer ") }, connect.CodeUnauthenticated, ReasonMissing, `Bearer realm="legiond"`},
		{"basic scheme", func(h http.Header) { h.Set("Authorization", "Basic dXNlcjpwdw==") }, connect.CodeUnauthenticated, ReasonMalformed, `error="invalid_token"`},
		{"two headers", func(h http.Header) { h.Add("Authorization", "Bearer "+good); h.Add("Authorization", "Bearer "+good) }, connect.CodeUnauthenticated, ReasonMalformed, `error="invalid_token"`},
		{"forged", bearer(forged), connect.CodeUnauthenticated, ReasonSignature, `error_description="token signature invalid"`},
		{"garbage", bearer("abc.def.ghi"), connect.CodeUnauthenticated, ReasonMalformed, `error="invalid_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.interceptor.Stats()
			req := connect.NewRequest(&apiv1.ListReadingsRequest{})
			tt.header(req.Header())
			resp, err := f.client.ListReadings(context.Background(), req)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if resp.Msg.NextPageToken != "viewer-1" {
					t.Errorf("handler saw subject %q", resp.Msg.NextPageToken)
				}
				if f.interceptor.Stats().Authenticated != before.Authenticated+1 {
					t.Error("authenticated call not counted")
				}
				return
			}
			if connect.CodeOf(err) != tt.code {
				t.Fatalf("code %v (%v), want %v", connect.CodeOf(err), err, tt.code)
			}
			var ce *connect.Error
			if !errors.As(err, &ce) || !strings.Contains(ce.Meta().Get("WWW-Authenticate"), tt.challenge) {
				t.Errorf("WWW-Authenticate %q, want it to contain %q", ce.Meta().Get("WWW-Authenticate"), tt.challenge)
			}
			if got := f.interceptor.Stats().Failures[tt.reason]; got != before.Failures[tt.reason]+1 {
				t.Errorf("failure %s counted %d, want %d", tt.reason, got, before.Failures[tt.reason]+1)
			}
		})
	}
}

func TestInterceptorPublicProcedure(t *testing.T) {
	f := newFixture(t, []string{apiv1connect.TelemetryServiceListReadingsProcedure}, 0)
	resp, err := f.client.ListReadings(context.Background(), connect.NewRequest(&apiv1.ListReadingsRequest{}))
	if err != nil {
		t.Fatalf("public procedure without token: %v", err)
	}
	if resp.Msg.NextPageToken != "anonymous" {
		t.Errorf("public call carried a principal: %q", resp.Msg.NextPageToken)
	}
	// The allow-list is exact: the stream on the same service still needs a token.
	stream, err := f.client.StreamEvents(context.Background(), connect.NewRequest(&apiv1.StreamEventsRequest{}))
	if err == nil {
		for stream.Receive() {
			t.Fatal("stream delivered a message without a token")
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("stream without token: %v", err)
	}
	if s := f.interceptor.Stats(); s.Public != 1 || s.Failures[ReasonMissing] != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestInterceptorStreams(t *testing.T) {
	f := newFixture(t, nil, time.Millisecond)
	good, _ := f.iss.Issue(Claims{Subject: "tech-1", Role: RoleTechnician, CustomerIDs: []uuid.UUID{customer1}, SiteIDs: []uuid.UUID{site1}}, time.Hour)

	// Without a token: refused before the handler runs.
	stream, err := f.client.StreamEvents(context.Background(), connect.NewRequest(&apiv1.StreamEventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if stream.Receive() {
		t.Fatal("message without a token")
	}
	if connect.CodeOf(stream.Err()) != connect.CodeUnauthenticated {
		t.Fatalf("no token: %v", stream.Err())
	}

	// With a token: the handler sees the principal.
	req := connect.NewRequest(&apiv1.StreamEventsRequest{})
	bearer(good)(req.Header())
	stream, err = f.client.StreamEvents(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() || stream.Msg().ResumeToken != "tech-1" {
		t.Fatalf("first message: %v %v", stream.Msg(), stream.Err())
	}
	if stream.Receive() || stream.Err() != nil {
		t.Fatalf("stream end: %v", stream.Err())
	}

	// A stream outliving its token ends with Unauthenticated. The token's
	// exp is a whole second, so this waits at most about a second.
	short, err := f.iss.Issue(Claims{Subject: "tech-1", Role: RoleTechnician, CustomerIDs: []uuid.UUID{customer1}, SiteIDs: []uuid.UUID{site1}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req = connect.NewRequest(&apiv1.StreamEventsRequest{ResumeToken: "hold"})
	bearer(short)(req.Header())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err = f.client.StreamEvents(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("first message: %v", stream.Err())
	}
	if stream.Receive() {
		t.Fatal("unexpected second message")
	}
	if connect.CodeOf(stream.Err()) != connect.CodeUnauthenticated || !strings.Contains(stream.Err().Error(), "during the stream") {
		t.Fatalf("expired stream ended with %v", stream.Err())
	}
}

func TestInterceptorConfig(t *testing.T) {
	v := staticVerifier(t)
	tests := []struct {
		name string
		cfg  InterceptorConfig
		ok   bool
	}{
		{"ok", InterceptorConfig{Verifier: v, Public: []string{"/grpc.health.v1.Health/"}}, true},
		{"no verifier", InterceptorConfig{}, false},
		{"bad public entry", InterceptorConfig{Verifier: v, Public: []string{"grpc.health.v1.Health"}}, false},
		{"quote in realm", InterceptorConfig{Verifier: v, Realm: `a"b`}, false},
	}
	for _, tt := range tests {
		if _, err := NewInterceptor(tt.cfg); (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestPrincipalFromEmptyContext(t *testing.T) {
	if _, ok := PrincipalFrom(context.Background()); ok {
		t.Fatal("principal in an empty context")
	}
	p := &Principal{Subject: "x"}
	if got, ok := PrincipalFrom(WithPrincipal(context.Background(), p)); !ok || got != p {
		t.Fatal("WithPrincipal round trip")
	}
}
