package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newCA(t *testing.T, dir string, mod func(*DevCAConfig)) *DevCA {
	t.Helper()
	cfg := DevCAConfig{Dir: dir, Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	ca, err := LoadOrCreateDevCA(cfg)
	if err != nil {
		t.Fatalf("LoadOrCreateDevCA: %v", err)
	}
	return ca
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDevCAFilesAndReuse(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, func(c *DevCAConfig) { c.Hosts = []string{"legiond.test", "10.1.2.3"} })

	for name, mode := range map[string]os.FileMode{
		CAFileName: 0o644, CAKeyFileName: 0o600, ServerCertFileName: 0o644, ServerKeyFileName: 0o600, noticeFileName: 0o644,
	} {
		st, err := os.Stat(filepath.Join(dir, "tls", name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "tls")); st.Mode().Perm() != 0o700 {
		t.Errorf("tls folder mode %v, want 0700", st.Mode().Perm())
	}
	if !strings.Contains(ca.CACert().Subject.CommonName, "DEVELOPMENT") {
		t.Errorf("CA subject %q does not say it is for development", ca.CACert().Subject)
	}
	leaf := ca.ServerConfig().Certificates[0].Leaf
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "legiond.test", "10.1.2.3"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("server certificate does not cover %s: %v", h, err)
		}
	}

	caPEM, srvPEM := readFile(t, ca.CAFile()), readFile(t, ca.ServerCertFile())
	again := newCA(t, dir, func(c *DevCAConfig) { c.Hosts = []string{"legiond.test", "10.1.2.3"} })
	if !bytes.Equal(caPEM, readFile(t, again.CAFile())) || !bytes.Equal(srvPEM, readFile(t, again.ServerCertFile())) {
		t.Fatal("valid files were not reused")
	}

	// A new host needs a new server certificate, not a new CA.
	third := newCA(t, dir, func(c *DevCAConfig) { c.Hosts = []string{"other.test"} })
	if !bytes.Equal(caPEM, readFile(t, third.CAFile())) {
		t.Error("CA was replaced though it is valid")
	}
	if bytes.Equal(srvPEM, readFile(t, third.ServerCertFile())) {
		t.Error("server certificate not reissued for a new host")
	}
	if err := third.ServerConfig().Certificates[0].Leaf.VerifyHostname("other.test"); err != nil {
		t.Error(err)
	}
}

func TestDevCARenewsExpiringAndBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, nil)
	caPEM, srvPEM := readFile(t, ca.CAFile()), readFile(t, ca.ServerCertFile())

	// Eleven months later the server certificate is inside the renew window.
	later := time.Now().Add(340 * 24 * time.Hour)
	renewed := newCA(t, dir, func(c *DevCAConfig) { c.Now = func() time.Time { return later } })
	if !bytes.Equal(caPEM, readFile(t, renewed.CAFile())) {
		t.Error("CA replaced though it is valid for years")
	}
	if bytes.Equal(srvPEM, readFile(t, renewed.ServerCertFile())) {
		t.Error("expiring server certificate was not renewed")
	}

	// A corrupt CA key replaces the whole chain.
	if err := os.WriteFile(filepath.Join(dir, "tls", CAKeyFileName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := newCA(t, dir, nil)
	if bytes.Equal(caPEM, readFile(t, fresh.CAFile())) {
		t.Error("broken CA was reused")
	}
	if _, err := fresh.ServerConfig().Certificates[0].Leaf.Verify(x509.VerifyOptions{Roots: fresh.Pool(), DNSName: "localhost"}); err != nil {
		t.Errorf("server certificate does not chain to the new CA: %v", err)
	}
}

func TestDevCAConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  DevCAConfig
		ok   bool
	}{
		{"defaults", DevCAConfig{Dir: "x"}, true},
		{"no dir", DevCAConfig{}, false},
		{"bad host", DevCAConfig{Dir: "x", Hosts: []string{"a b"}}, false},
		{"empty host", DevCAConfig{Dir: "x", Hosts: []string{""}}, false},
		{"cert outlives CA", DevCAConfig{Dir: "x", CAValidity: time.Hour, CertValidity: 2 * time.Hour}, false},
		{"renew window too long", DevCAConfig{Dir: "x", CertValidity: time.Hour, RenewBefore: time.Hour}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.setDefaults()
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("error %v is not ErrConfig", err)
			}
		})
	}
}

// serveTLS accepts connections on a loopback listener and completes their
// handshakes; it returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHandshakes(t *testing.T) {
	ca := newCA(t, t.TempDir(), nil)
	client, err := ca.IssueClientCert("node-1")
	if err != nil {
		t.Fatal(err)
	}
	fromFiles, err := ServerConfig(ca.ServerCertFile(), ca.ServerKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	fileClient, err := ClientConfig(ca.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	plain := serveTLS(t, ca.ServerConfig())
	files := serveTLS(t, fromFiles)
	mutual := serveTLS(t, RequireClientCerts(ca.ServerConfig(), ca.Pool()))

	tests := []struct {
		name   string
		addr   string
		client func() *tls.Config
		proto  string // wanted ALPN result; "" means the handshake must fail
	}{
		{"TLS 1.3 with h2", plain, ca.ClientConfig, "h2"},
		{"TLS 1.3 http/1.1 only", plain, func() *tls.Config {
			c := ca.ClientConfig()
			c.NextProtos = []string{"http/1.1"}
			return c
		}, "http/1.1"},
		{"certificate from files", files, func() *tls.Config { return fileClient.Clone() }, "h2"},
		{"TLS 1.2 client refused", plain, func() *tls.Config {
			c := ca.ClientConfig()
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}, ""},
		{"untrusted server refused", plain, func() *tls.Config {
			c := ca.ClientConfig()
			c.RootCAs = x509.NewCertPool()
			return c
		}, ""},
		{"mutual TLS with client certificate", mutual, func() *tls.Config {
			c := ca.ClientConfig()
			c.Certificates = []tls.Certificate{client}
			return c
		}, "h2"},
		{"mutual TLS without client certificate", mutual, ca.ClientConfig, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.client()
			cfg.ServerName = "localhost"
			d := &net.Dialer{Timeout: 5 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", tt.addr, cfg)
			if err == nil {
				// In TLS 1.3 the server verifies the client's certificate
				// after the client's handshake finished: a refusal shows on
				// the first read.
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, rerr := conn.Read(make([]byte, 1))
				if rerr != nil && !errors.Is(rerr, io.EOF) {
					err = rerr
				}
			}
			if tt.proto == "" {
				if err == nil {
					_ = conn.Close()
					t.Fatal("handshake succeeded, want refusal")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer func() { _ = conn.Close() }()
			st := conn.ConnectionState()
			if st.Version != tls.VersionTLS13 {
				t.Errorf("version %x, want TLS 1.3", st.Version)
			}
			if st.NegotiatedProtocol != tt.proto {
				t.Errorf("ALPN %q, want %q", st.NegotiatedProtocol, tt.proto)
			}
		})
	}
}

func TestTLS12RefusalIsAVersionAlert(t *testing.T) {
	ca := newCA(t, t.TempDir(), nil)
	addr := serveTLS(t, ca.ServerConfig())
	cfg := ca.ClientConfig()
	cfg.ServerName = "localhost"
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS12
	_, err := tls.Dial("tcp", addr, cfg)
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("err = %v, want a protocol version alert", err)
	}
}

func TestIssueClientCert(t *testing.T) {
	ca := newCA(t, t.TempDir(), nil)
	tests := []struct {
		name string
		ok   bool
	}{
		{"node-1", true}, {"member.eu-west:7000", true}, {"", false}, {"a b", false}, {strings.Repeat("x", 65), false},
	}
	for _, tt := range tests {
		c, err := ca.IssueClientCert(tt.name)
		if (err == nil) != tt.ok {
			t.Fatalf("IssueClientCert(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil {
			continue
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: client certificate does not verify: %v", tt.name, err)
		}
		if c.Leaf.Subject.CommonName != tt.name {
			t.Errorf("CN %q, want %q", c.Leaf.Subject.CommonName, tt.name)
		}
	}
}

func TestCheckServerConfig(t *testing.T) {
	ca := newCA(t, t.TempDir(), nil)
	weak := ca.ServerConfig()
	weak.MinVersion = tls.VersionTLS12
	capped := ca.ServerConfig()
	capped.MaxVersion = tls.VersionTLS12
	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"dev CA", ca.ServerConfig(), true},
		{"nil", nil, false},
		{"TLS 1.2 minimum", weak, false},
		{"TLS 1.2 maximum", capped, false},
		{"no certificate", &tls.Config{MinVersion: tls.VersionTLS13}, false},
	}
	for _, tt := range tests {
		err := CheckServerConfig(tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: CheckServerConfig = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInsecure) {
			t.Errorf("%s: %v is not ErrInsecure", tt.name, err)
		}
	}
}

func TestServerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, nil)
	if _, err := ServerConfig("", ""); !errors.Is(err, ErrConfig) {
		t.Errorf("empty paths: %v", err)
	}
	if _, err := ServerConfig(filepath.Join(dir, "missing.pem"), ca.ServerKeyFile()); !errors.Is(err, ErrCertificate) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ServerConfig(ca.CAFile(), ca.ServerKeyFile()); !errors.Is(err, ErrCertificate) {
		t.Errorf("mismatched key: %v", err)
	}
	if _, err := ClientConfig(ca.ServerKeyFile()); !errors.Is(err, ErrCertificate) {
		t.Errorf("CA file without certificates: %v", err)
	}
}
