package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"
)

// Errors of this package. Callers match them with errors.Is.
var (
	// ErrConfig is an invalid configuration (a missing path, a bad host).
	ErrConfig = errors.New("tlsconf: invalid configuration")
	// ErrCertificate is a certificate or key that cannot be loaded or is
	// not valid now (unreadable, unparsable, expired, key mismatch).
	ErrCertificate = errors.New("tlsconf: invalid certificate")
	// ErrInsecure is a tls.Config that would accept less than TLS 1.3 or
	// would not verify its peer.
	ErrInsecure = errors.New("tlsconf: insecure TLS configuration")
)

// ALPN protocols offered by every server, in preference order.
var alpn = []string{"h2", "http/1.1"}

// base returns the settings every Legiond TLS configuration shares:
// TLS 1.3 as the minimum (and so the only) version.
func base() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13}
}

// ServerConfig loads a certificate chain and its private key from PEM files
// and returns a server configuration that speaks TLS 1.3 only and offers
// h2 and http/1.1 by ALPN. The leaf must be valid now.
func ServerConfig(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%w: certificate and key files are required", ErrConfig)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: load %s: %w", ErrCertificate, certFile, err)
	}
	if err := checkValidity(pair.Leaf, time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	return serverConfig(pair), nil
}

func serverConfig(pair tls.Certificate) *tls.Config {
	c := base()
	c.Certificates = []tls.Certificate{pair}
	c.NextProtos = append([]string(nil), alpn...)
	return c
}

// ClientConfig returns a TLS 1.3 client configuration that trusts the CA
// certificates in caFile (PEM). An empty caFile trusts the system roots.
func ClientConfig(caFile string) (*tls.Config, error) {
	c := base()
	c.NextProtos = append([]string(nil), alpn...)
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%w: read CA file: %w", ErrCertificate, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrCertificate, caFile)
	}
	c.RootCAs = pool
	return c, nil
}

// RequireClientCerts turns a server configuration into a mutual-TLS one:
// every client must present a certificate that chains to one of cas. It
// returns a copy; cfg is not changed.
func RequireClientCerts(cfg *tls.Config, cas *x509.CertPool) *tls.Config {
	c := cfg.Clone()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.ClientCAs = cas
	return c
}

// CheckServerConfig reports (ErrInsecure) a server configuration that
// would accept a protocol version below TLS 1.3, or that has no way to
// present a certificate.
func CheckServerConfig(cfg *tls.Config) error {
	if cfg == nil {
		return fmt.Errorf("%w: no TLS configuration", ErrInsecure)
	}
	if cfg.MinVersion < tls.VersionTLS13 {
		return fmt.Errorf("%w: minimum version must be TLS 1.3", ErrInsecure)
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13 {
		return fmt.Errorf("%w: maximum version below TLS 1.3", ErrInsecure)
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return fmt.Errorf("%w: no server certificate", ErrInsecure)
	}
	return nil
}

func checkValidity(leaf *x509.Certificate, now time.Time) error {
	if leaf == nil {
		return fmt.Errorf("%w: no leaf certificate", ErrCertificate)
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("%w: not valid before %s", ErrCertificate, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("%w: expired at %s", ErrCertificate, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
