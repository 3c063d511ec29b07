package server

import (
	"testing"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/tlsconf"
)

// TestNoWriteTimeout guards DESIGN §6: a WriteTimeout would cut every
// server stream after that long.
func TestNoWriteTimeout(t *testing.T) {
	ca, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.NewIssuer(auth.IssuerConfig{Issuer: "https://localhost:8443", KeyFile: auth.DevKeyFile(t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(iss.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{TLS: ca.ServerConfig(), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if s.http.WriteTimeout != 0 || s.http.ReadTimeout != 0 {
		t.Errorf("WriteTimeout %v, ReadTimeout %v: both must be 0 for streams", s.http.WriteTimeout, s.http.ReadTimeout)
	}
	if s.http.ReadHeaderTimeout == 0 || s.http.IdleTimeout == 0 {
		t.Error("ReadHeaderTimeout and IdleTimeout must be set")
	}
	if !s.http.Protocols.HTTP2() || !s.http.Protocols.HTTP1() {
		t.Error("HTTP/2 and HTTP/1.1 must both be served")
	}
}
