package streams

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/legionelladossier/legiond/streams/devbroker"
)

func TestClientConfigValidate(t *testing.T) {
	brokers := []string{"kafka-1.example:9093"}
	tests := []struct {
		name string
		cfg  ClientConfig
		ok   bool
	}{
		{"plain", ClientConfig{Brokers: brokers}, true},
		{"no brokers", ClientConfig{}, false},
		{"broker without port", ClientConfig{Brokers: []string{"kafka"}}, false},
		{"broker bad port", ClientConfig{Brokers: []string{"kafka:0"}}, false},
		{"tls", ClientConfig{Brokers: brokers, TLS: TLSConfig{Enable: true}}, true},
		{"tls 1.2", ClientConfig{Brokers: brokers, TLS: TLSConfig{Enable: true, MinVersion: TLS12}}, true},
		{"tls 1.1", ClientConfig{Brokers: brokers, TLS: TLSConfig{Enable: true, MinVersion: "1.1"}}, false},
		{"cert without key", ClientConfig{Brokers: brokers, TLS: TLSConfig{Enable: true, CertFile: "c.pem"}}, false},
		{"tls files while off", ClientConfig{Brokers: brokers, TLS: TLSConfig{CAFile: "ca.pem"}}, false},
		{"insecure base", ClientConfig{Brokers: brokers, TLS: TLSConfig{Enable: true, Base: &tls.Config{InsecureSkipVerify: true}}}, false},
		{"scram", ClientConfig{Brokers: brokers, SASL: SASLConfig{Mechanism: SASLSCRAMSHA512, Username: "u", Password: "p"}}, true},
		{"scram no password", ClientConfig{Brokers: brokers, SASL: SASLConfig{Mechanism: SASLSCRAMSHA256, Username: "u"}}, false},
		{"plain over tls", ClientConfig{Brokers: brokers, TLS: TLSConfig{Enable: true}, SASL: SASLConfig{Mechanism: SASLPlain, Username: "u", Password: "p"}}, true},
		{"plain in clear", ClientConfig{Brokers: brokers, SASL: SASLConfig{Mechanism: SASLPlain, Username: "u", Password: "p"}}, false},
		{"unknown mechanism", ClientConfig{Brokers: brokers, SASL: SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "p"}}, false},
		{"credentials without mechanism", ClientConfig{Brokers: brokers, SASL: SASLConfig{Username: "u"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.ok && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
		})
	}

	c := ClientConfig{Brokers: brokers}
	_ = c.Validate()
	if c.ClientID != DefaultClientID || c.DialTimeout != DefaultDialTimeout || c.TLS.MinVersion != TLS13 {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestClientConfigTLSAndSASL(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pki.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	c := ClientConfig{Brokers: []string{"127.0.0.1:9093"},
		TLS:  TLSConfig{Enable: true, CAFile: caFile, MinVersion: TLS12, ServerName: "kafka.internal"},
		SASL: SASLConfig{Mechanism: SASLPlain, Username: "u", Password: "p"}}
	d, err := c.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	if d.TLS == nil || d.TLS.MinVersion != tls.VersionTLS12 || d.TLS.RootCAs == nil || d.TLS.ServerName != "kafka.internal" {
		t.Fatalf("dialer TLS %+v", d.TLS)
	}
	if m, ok := d.SASLMechanism.(plain.Mechanism); !ok || m.Username != "u" {
		t.Fatalf("dialer SASL %#v", d.SASLMechanism)
	}
	tr, err := c.Transport()
	if err != nil {
		t.Fatal(err)
	}
	if tr.TLS == nil || tr.SASL == nil || tr.ClientID != DefaultClientID {
		t.Fatalf("transport %+v", tr)
	}

	// Base may not lower the minimum version.
	c2 := ClientConfig{Brokers: c.Brokers, TLS: TLSConfig{Enable: true, Base: &tls.Config{MinVersion: tls.VersionTLS10}}}
	d, err = c2.Dialer()
	if err != nil || d.TLS.MinVersion != tls.VersionTLS13 {
		t.Fatalf("base min version: %v %v", err, d)
	}

	// Unreadable material is a TLS error.
	c3 := ClientConfig{Brokers: c.Brokers, TLS: TLSConfig{Enable: true, CAFile: filepath.Join(dir, "missing.pem")}}
	if _, err := c3.Dialer(); !errors.Is(err, ErrTLS) {
		t.Fatalf("missing CA: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	c3.TLS.CAFile = filepath.Join(dir, "junk.pem")
	if _, err := c3.Transport(); !errors.Is(err, ErrTLS) {
		t.Fatalf("junk CA: %v", err)
	}
	c4 := ClientConfig{Brokers: c.Brokers, TLS: TLSConfig{Enable: true, CertFile: caFile, KeyFile: caFile}}
	if _, err := c4.Dialer(); !errors.Is(err, ErrTLS) {
		t.Fatalf("cert without key material: %v", err)
	}
}

// TestTLSAndSASLEndToEnd runs topics, producer and consumer against a
// development broker that requires TLS 1.3 and SASL.
func TestTLSAndSASLEndToEnd(t *testing.T) {
	pki := newTestPKI(t)
	b, err := devbroker.Start(t.Context(), devbroker.Config{
		Partitions: testPartitions,
		TLS:        &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS13},
		Users: []devbroker.User{
			{Mechanism: devbroker.MechanismSCRAMSHA512, Name: "legiond", Password: "s3cret"},
			{Mechanism: devbroker.MechanismPlain, Name: "sim", Password: "pw"},
		},
	}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	base := &tls.Config{RootCAs: pki.pool}
	cc := ClientConfig{Brokers: b.Addrs(), DialTimeout: 3 * time.Second,
		TLS:  TLSConfig{Enable: true, Base: base},
		SASL: SASLConfig{Mechanism: SASLSCRAMSHA512, Username: "legiond", Password: "s3cret"}}
	if err := EnsureTopics(t.Context(), cc, DefaultTopics(testPartitions, 1), testLogger()); err != nil {
		t.Fatal(err)
	}

	// The simulator authenticates with PLAIN (allowed over TLS).
	sim := cc
	sim.SASL = SASLConfig{Mechanism: SASLPlain, Username: "sim", Password: "pw"}
	produceUplinks(t, sim, 0, 50)

	h := newFakeHandler(t)
	runConsumer(t, testConsumerConfig(cc, "secure"), h, &fakeDLQ{})
	eventually(t, 20*time.Second, func() (bool, string) {
		return committedAtEnd(t, cc, "secure", TopicUplink)
	})
	if h.seenCount() < 50 {
		t.Fatalf("seen %d", h.seenCount())
	}

	// Wrong password, no TLS, and a client that only trusts other CAs all fail.
	wrong := cc
	wrong.SASL.Password = "nope"
	if err := EnsureTopics(t.Context(), wrong, DefaultTopics(testPartitions, 1), nil); !errors.Is(err, ErrTopics) {
		t.Errorf("wrong password: %v", err)
	} else {
		t.Logf("wrong password: %v", err)
	}
	untrusted := cc
	untrusted.TLS.Base = &tls.Config{RootCAs: x509.NewCertPool()}
	if err := EnsureTopics(t.Context(), untrusted, DefaultTopics(testPartitions, 1), nil); !errors.Is(err, ErrTopics) {
		t.Errorf("untrusted CA: %v", err)
	} else {
		t.Logf("untrusted CA: %v", err)
	}
}

type testPKI struct {
	caPEM  []byte
	pool   *x509.CertPool
	server tls.Certificate
}

// newTestPKI makes a CA and a server certificate for 127.0.0.1.
func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"kafka.internal"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return testPKI{
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pool:   pool,
		server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
	}
}
