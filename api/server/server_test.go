package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/server"
	"github.com/legionelladossier/legiond/api/tlsconf"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
)

var customer = uuid.MustParse("7e1d0c1e-0000-4000-8000-000000000001")

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// telemetry is a stub service: it echoes the caller's subject.
type telemetry struct {
	apiv1connect.UnimplementedTelemetryServiceHandler
}

func (telemetry) ListReadings(ctx context.Context, _ *connect.Request[apiv1.ListReadingsRequest]) (*connect.Response[apiv1.ListReadingsResponse], error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeInternal, errors.New("no principal"))
	}
	return connect.NewResponse(&apiv1.ListReadingsResponse{NextPageToken: string(p.Role) + ":" + p.Subject}), nil
}

func (telemetry) StreamEvents(ctx context.Context, _ *connect.Request[apiv1.StreamEventsRequest], s *connect.ServerStream[apiv1.StreamEventsResponse]) error {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return connect.NewError(connect.CodeInternal, errors.New("no principal"))
	}
	for i := range 3 {
		if err := s.Send(&apiv1.StreamEventsResponse{ResumeToken: p.Subject + "#" + string(rune('0'+i))}); err != nil {
			return err
		}
	}
	return nil
}

// protoRecorder remembers the HTTP version of the last response.
type protoRecorder struct {
	next  http.RoundTripper
	major atomic.Int32
}

func (r *protoRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		r.major.Store(int32(resp.ProtoMajor))
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (r *protoRecorder) CloseIdleConnections() {
	if c, ok := r.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type env struct {
	srv     *server.Server
	ca      *tlsconf.DevCA
	iss     *auth.Issuer
	dir     string
	url     string
	h2      *protoRecorder
	client  *http.Client // TLS 1.3, HTTP/2
	h1      *http.Client // TLS 1.3, HTTP/1.1 only
	clients *auth.MemoryClientStore
}

func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String()
	store := auth.NewMemoryClientStore()
	iss, err := auth.NewIssuer(auth.IssuerConfig{Issuer: base, KeyFile: auth.DevKeyFile(dir), Clients: store, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	h2 := &protoRecorder{next: &http.Transport{TLSClientConfig: ca.ClientConfig(), ForceAttemptHTTP2: true}}
	client := &http.Client{Transport: h2, Timeout: 30 * time.Second}
	h1cfg := ca.ClientConfig()
	h1cfg.NextProtos = []string{"http/1.1"}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: h1cfg, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, Timeout: 30 * time.Second}

	// The verifier fetches the issuer's JWKS over HTTPS from this very
	// server, as it would from an external identity provider.
	v, err := auth.NewVerifier(auth.VerifierConfig{
		Issuer: base, Audience: auth.DefaultAudience, JWKSURL: base + auth.JWKSPath, HTTPClient: client, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Listener: ln, TLS: ca.ServerConfig(), Verifier: v, Issuer: iss,
		RateLimit:       auth.RateLimitConfig{Rate: 0.001, Burst: 10},
		MaxRequestBytes: 64 << 10, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(apiv1connect.NewTelemetryServiceHandler(telemetry{}, srv.HandlerOptions()...))
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Clients hang up first; otherwise HTTP/2's graceful shutdown waits
		// a second for them after its GOAWAY.
		client.CloseIdleConnections()
		h1.CloseIdleConnections()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
	})
	return &env{srv: srv, ca: ca, iss: iss, dir: dir, url: srv.URL(), h2: h2, client: client, h1: h1, clients: store}
}

func (e *env) issue(t *testing.T, c auth.Claims, mod func(*auth.IssuerConfig)) string {
	t.Helper()
	cfg := auth.IssuerConfig{Issuer: e.iss.URL(), KeyFile: auth.DevKeyFile(e.dir), Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	iss, err := auth.NewIssuer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Issue(c, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func viewer(sub string) auth.Claims {
	return auth.Claims{Subject: sub, Role: auth.RoleViewer, CustomerIDs: []uuid.UUID{customer}}
}

func listReadings(c apiv1connect.TelemetryServiceClient, tok string, msg *apiv1.ListReadingsRequest) (*connect.Response[apiv1.ListReadingsResponse], error) {
	if msg == nil {
		msg = &apiv1.ListReadingsRequest{}
	}
	req := connect.NewRequest(msg)
	if tok != "" {
		req.Header().Set("Authorization", "Bearer "+tok)
	}
	return c.ListReadings(context.Background(), req)
}

func TestServerEndToEnd(t *testing.T) {
	e := start(t)
	valid := e.issue(t, viewer("alice"), nil)
	otherDir := t.TempDir()
	forged := e.issue(t, viewer("alice"), func(c *auth.IssuerConfig) { c.KeyFile = auth.DevKeyFile(otherDir) })
	expired := e.issue(t, viewer("alice"), func(c *auth.IssuerConfig) {
		c.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	})
	wrongAud := e.issue(t, viewer("alice"), func(c *auth.IssuerConfig) { c.Audience = "some-other-api" })
	wrongIss := e.issue(t, viewer("alice"), func(c *auth.IssuerConfig) { c.Issuer = "https://evil.test" })

	connectClient := apiv1connect.NewTelemetryServiceClient(e.client, e.url)
	grpcClient := apiv1connect.NewTelemetryServiceClient(e.client, e.url, connect.WithGRPC())
	grpcWebClient := apiv1connect.NewTelemetryServiceClient(e.client, e.url, connect.WithGRPCWeb())
	h1Client := apiv1connect.NewTelemetryServiceClient(e.h1, e.url)

	tests := []struct {
		name   string
		client apiv1connect.TelemetryServiceClient
		token  string
		code   connect.Code // 0: OK
		reason string
	}{
		{"no token", connectClient, "", connect.CodeUnauthenticated, auth.ReasonMissing},
		{"forged token", connectClient, forged, connect.CodeUnauthenticated, auth.ReasonSignature},
		{"expired token", connectClient, expired, connect.CodeUnauthenticated, auth.ReasonExpired},
		{"wrong audience", connectClient, wrongAud, connect.CodeUnauthenticated, auth.ReasonAudience},
		{"wrong issuer", connectClient, wrongIss, connect.CodeUnauthenticated, auth.ReasonIssuer},
		{"valid, Connect over h2", connectClient, valid, 0, ""},
		{"valid, gRPC", grpcClient, valid, 0, ""},
		{"valid, gRPC-Web", grpcWebClient, valid, 0, ""},
		{"valid, Connect over HTTP/1.1", h1Client, valid, 0, ""},
		{"no token, gRPC", grpcClient, "", connect.CodeUnauthenticated, auth.ReasonMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.srv.AuthStats().Failures[tt.reason]
			resp, err := listReadings(tt.client, tt.token, nil)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if resp.Msg.NextPageToken != "viewer:alice" {
					t.Errorf("handler saw %q", resp.Msg.NextPageToken)
				}
				return
			}
			if connect.CodeOf(err) != tt.code {
				t.Fatalf("code %v (%v), want %v", connect.CodeOf(err), err, tt.code)
			}
			if got := e.srv.AuthStats().Failures[tt.reason]; got != before+1 {
				t.Errorf("failures[%s] = %d, want %d", tt.reason, got, before+1)
			}
		})
	}
	if e.h2.major.Load() != 2 {
		t.Errorf("HTTP/%d negotiated, want HTTP/2", e.h2.major.Load())
	}
}

func TestServerStreams(t *testing.T) {
	e := start(t)
	for _, opt := range []struct {
		name string
		opts []connect.ClientOption
	}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}} {
		t.Run(opt.name, func(t *testing.T) {
			c := apiv1connect.NewTelemetryServiceClient(e.client, e.url, opt.opts...)
			stream, err := c.StreamEvents(context.Background(), connect.NewRequest(&apiv1.StreamEventsRequest{}))
			if err == nil {
				if stream.Receive() {
					t.Fatal("stream delivered a message without a token")
				}
				err = stream.Err()
			}
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("stream without token: %v", err)
			}

			req := connect.NewRequest(&apiv1.StreamEventsRequest{})
			req.Header().Set("Authorization", "Bearer "+e.issue(t, viewer("bob"), nil))
			stream, err = c.StreamEvents(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for stream.Receive() {
				got = append(got, stream.Msg().ResumeToken)
			}
			if stream.Err() != nil || !slices.Equal(got, []string{"bob#0", "bob#1", "bob#2"}) {
				t.Fatalf("stream: %v, %v", got, stream.Err())
			}
		})
	}
}

func TestServerRefusesTLS12(t *testing.T) {
	e := start(t)
	host := strings.TrimPrefix(e.url, "https://")
	tests := []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.2 only", tls.VersionTLS12, tls.VersionTLS12, false},
		{"TLS 1.0-1.2", tls.VersionTLS10, tls.VersionTLS12, false},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.ca.ClientConfig()
			cfg.MinVersion, cfg.MaxVersion, cfg.ServerName = tt.min, tt.max, "localhost"
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host, cfg)
			if !tt.ok {
				if err == nil {
					_ = conn.Close()
					t.Fatal("handshake succeeded")
				}
				if !strings.Contains(err.Error(), "protocol version") {
					t.Errorf("refusal %v is not a protocol-version alert", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			if st := conn.ConnectionState(); st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
				t.Errorf("version %x, ALPN %q", st.Version, st.NegotiatedProtocol)
			}
		})
	}
}

func TestServerClientCredentialsEndToEnd(t *testing.T) {
	e := start(t)
	id, secret, err := e.clients.Generate(auth.Claims{Role: auth.RoleIntegration, CustomerIDs: []uuid.UUID{customer},
		Scopes: []string{auth.ScopeReadingsRead, auth.ScopeAlarmsRead}})
	if err != nil {
		t.Fatal(err)
	}

	// Discovery tells where the token endpoint is.
	resp, err := e.client.Get(e.url + auth.DiscoveryPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	_ = resp.Body.Close()
	if err != nil || doc.TokenEndpoint != e.url+auth.TokenPath {
		t.Fatalf("discovery: %+v %v", doc, err)
	}

	post := func(id, secret, scope string) (*http.Response, map[string]any) {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}}
		if scope != "" {
			form.Set("scope", scope)
		}
		req, _ := http.NewRequest(http.MethodPost, doc.TokenEndpoint, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	if resp, body := post(id, "lgs_wrong", ""); resp.StatusCode != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", resp.StatusCode, body)
	}
	resp, body := post(id, secret, "readings:read")
	if resp.StatusCode != http.StatusOK || body["token_type"] != "Bearer" {
		t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	tok, _ := body["access_token"].(string)
	r, err := listReadings(apiv1connect.NewTelemetryServiceClient(e.client, e.url), tok, nil)
	if err != nil {
		t.Fatalf("call with client-credentials token: %v", err)
	}
	if r.Msg.NextPageToken != "integration:"+id {
		t.Errorf("handler saw %q", r.Msg.NextPageToken)
	}
}

func TestServerRateLimit(t *testing.T) {
	e := start(t)
	c := apiv1connect.NewTelemetryServiceClient(e.client, e.url)
	tok := e.issue(t, viewer("chatty"), nil)
	for i := range 10 { // the burst
		if _, err := listReadings(c, tok, nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := listReadings(c, tok, nil)
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("call past the burst: %v, want ResourceExhausted", err)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Meta().Get("Retry-After") == "" {
		t.Errorf("no Retry-After on %v", err)
	}
	if _, err := listReadings(c, e.issue(t, viewer("quiet"), nil), nil); err != nil {
		t.Fatalf("another client is limited too: %v", err)
	}
	if e.srv.RateLimited() != 1 {
		t.Errorf("RateLimited = %d, want 1", e.srv.RateLimited())
	}
}

func TestServerHealthAndReflectionWithoutToken(t *testing.T) {
	e := start(t)
	for _, svc := range []string{"", apiv1connect.TelemetryServiceName} {
		res, err := grpchealth.NewClient(e.client, e.url, connect.WithGRPC()).Check(context.Background(), &grpchealth.CheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		if res.Status != grpchealth.StatusServing {
			t.Errorf("health %q: %v", svc, res.Status)
		}
	}
	stream := grpcreflect.NewClient(e.client, e.url).NewStream(context.Background())
	names, err := stream.ListServices()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	_, _ = stream.Close()
	if !slices.ContainsFunc(names, func(n protoreflect.FullName) bool { return string(n) == apiv1connect.TelemetryServiceName }) {
		t.Errorf("reflection lists %v, want %s", names, apiv1connect.TelemetryServiceName)
	}
	if e.srv.AuthStats().Public == 0 {
		t.Error("public calls not counted")
	}
}

func TestServerBadInput(t *testing.T) {
	e := start(t)
	c := apiv1connect.NewTelemetryServiceClient(e.client, e.url)
	tok := e.issue(t, viewer("dora"), nil)

	unknown := &apiv1.ListReadingsRequest{SiteId: "x", Period: &apiv1.Period{}}
	unknown.Period.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	tests := []struct {
		name string
		msg  *apiv1.ListReadingsRequest
		code connect.Code
		text string
	}{
		{"unknown field", unknown, connect.CodeInvalidArgument, "unknown field number 99 in period"},
		{"oversized message", &apiv1.ListReadingsRequest{PageToken: strings.Repeat("x", 65<<10)}, connect.CodeResourceExhausted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := listReadings(c, tok, tt.msg)
			if connect.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.code, tt.text)
			}
		})
	}
}

func TestServerShutdown(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.NewIssuer(auth.IssuerConfig{Issuer: "https://localhost:8443", KeyFile: auth.DevKeyFile(dir), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier(iss.VerifierConfig())
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", TLS: ca.ServerConfig(), Verifier: v, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); !errors.Is(err, server.ErrState) {
		t.Errorf("shutdown before start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); !errors.Is(err, server.ErrState) {
		t.Errorf("second start: %v", err)
	}
	addr := srv.Addr()
	cancel() // ends the server like Shutdown
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Error("still accepting connections after shutdown")
	}
}

func TestServerConfigValidate(t *testing.T) {
	ca, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := auth.NewIssuer(auth.IssuerConfig{Issuer: "https://localhost:8443", KeyFile: auth.DevKeyFile(t.TempDir()), Logger: quiet()})
	v, _ := auth.NewVerifier(iss.VerifierConfig())
	weak := ca.ServerConfig()
	weak.MinVersion = tls.VersionTLS12
	tests := []struct {
		name string
		cfg  server.Config
		ok   bool
	}{
		{"ok", server.Config{TLS: ca.ServerConfig(), Verifier: v}, true},
		{"TLS 1.2 allowed", server.Config{TLS: weak, Verifier: v}, false},
		{"no TLS", server.Config{Verifier: v}, false},
		{"no verifier", server.Config{TLS: ca.ServerConfig()}, false},
		{"negative size", server.Config{TLS: ca.ServerConfig(), Verifier: v, MaxRequestBytes: -1}, false},
	}
	for _, tt := range tests {
		_, err := server.New(tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: New = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, server.ErrConfig) {
			t.Errorf("%s: %v is not ErrConfig", tt.name, err)
		}
	}
}
