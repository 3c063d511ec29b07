package streams

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms accepted in SASLConfig.Mechanism.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// TLS versions accepted in TLSConfig.MinVersion.
const (
	TLS12 = "1.2"
	TLS13 = "1.3"
)

// Defaults applied by ClientConfig.Validate.
const (
	DefaultClientID      = "legiond"
	DefaultDialTimeout   = 10 * time.Second
	DefaultTLSMinVersion = TLS13
)

// ClientConfig says how to reach a Kafka cluster. Consumers, producers and
// EnsureTopics all take one.
type ClientConfig struct {
	// Brokers is the bootstrap list, host:port each. Required.
	Brokers []string

	// ClientID names this client in broker logs and quotas.
	// Default: DefaultClientID ("legiond").
	ClientID string

	// DialTimeout bounds connecting, including the TLS and SASL
	// handshakes. Default: DefaultDialTimeout (10 s).
	DialTimeout time.Duration

	// TLS configures encryption; off unless TLS.Enable.
	TLS TLSConfig

	// SASL configures authentication; off unless SASL.Mechanism is set.
	SASL SASLConfig
}

// TLSConfig configures TLS towards the brokers.
type TLSConfig struct {
	// Enable turns TLS on.
	Enable bool

	// CAFile is a PEM bundle of the CAs that sign the brokers'
	// certificates. Default: the system pool.
	CAFile string

	// CertFile and KeyFile are the client certificate for mutual TLS,
	// both or neither. Default: none.
	CertFile string
	KeyFile  string

	// ServerName overrides the name checked in the broker certificate.
	// Default: the host of the address being dialled.
	ServerName string

	// MinVersion is the lowest TLS version offered, TLS12 ("1.2") or
	// TLS13 ("1.3"). Default: DefaultTLSMinVersion ("1.3", DESIGN §5);
	// set "1.2" for clusters that cannot do 1.3.
	MinVersion string

	// Base, when set, is cloned and used instead of building a
	// configuration from the files (embedding programs and tests with
	// in-memory certificates). MinVersion still applies and may only
	// raise Base.MinVersion. InsecureSkipVerify in Base is refused.
	Base *tls.Config
}

// SASLConfig configures SASL authentication.
type SASLConfig struct {
	// Mechanism is SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512, or empty
	// for none. PLAIN sends the password as is and is refused without TLS.
	Mechanism string
	Username  string
	Password  string
}

// Validate fills defaults into zero fields and reports the first invalid
// field, wrapped in ErrInvalidConfig. It does not read files; Dialer and
// Transport do.
func (c *ClientConfig) Validate() error {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.TLS.MinVersion == "" {
		c.TLS.MinVersion = DefaultTLSMinVersion
	}
	if len(c.Brokers) == 0 {
		return fmt.Errorf("%w: no brokers", ErrInvalidConfig)
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return fmt.Errorf("%w: broker %q is not host:port", ErrInvalidConfig, b)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%w: broker %q has a bad port", ErrInvalidConfig, b)
		}
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("%w: negative DialTimeout", ErrInvalidConfig)
	}
	if _, err := tlsVersion(c.TLS.MinVersion); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: TLS CertFile and KeyFile go together", ErrInvalidConfig)
	}
	if c.TLS.Base != nil && c.TLS.Base.InsecureSkipVerify {
		return fmt.Errorf("%w: TLS Base must not skip certificate verification", ErrInvalidConfig)
	}
	if !c.TLS.Enable && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.Base != nil) {
		return fmt.Errorf("%w: TLS material given but TLS.Enable is false", ErrInvalidConfig)
	}
	switch c.SASL.Mechanism {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" {
			return fmt.Errorf("%w: SASL credentials given without a mechanism", ErrInvalidConfig)
		}
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		if c.SASL.Username == "" || c.SASL.Password == "" {
			return fmt.Errorf("%w: SASL %s needs a username and a password", ErrInvalidConfig, c.SASL.Mechanism)
		}
		if c.SASL.Mechanism == SASLPlain && !c.TLS.Enable {
			return fmt.Errorf("%w: SASL PLAIN without TLS would send the password in clear", ErrInvalidConfig)
		}
	default:
		return fmt.Errorf("%w: unknown SASL mechanism %q", ErrInvalidConfig, c.SASL.Mechanism)
	}
	return nil
}

func tlsVersion(v string) (uint16, error) {
	switch v {
	case TLS12:
		return tls.VersionTLS12, nil
	case TLS13:
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%w: TLS MinVersion %q is not %q or %q", ErrInvalidConfig, v, TLS12, TLS13)
}

// tlsConfig builds the client TLS configuration, or nil when TLS is off.
func (c *ClientConfig) tlsConfig() (*tls.Config, error) {
	if !c.TLS.Enable {
		return nil, nil
	}
	minVersion, err := tlsVersion(c.TLS.MinVersion)
	if err != nil {
		return nil, err
	}
	var cfg *tls.Config
	if c.TLS.Base != nil {
		cfg = c.TLS.Base.Clone()
	} else {
		cfg = &tls.Config{}
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%w: read CA file: %w", ErrTLS, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrTLS, c.TLS.CAFile)
			}
			cfg.RootCAs = pool
		}
		if c.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("%w: load client certificate: %w", ErrTLS, err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	if cfg.MinVersion < minVersion {
		cfg.MinVersion = minVersion
	}
	if c.TLS.ServerName != "" {
		cfg.ServerName = c.TLS.ServerName
	}
	return cfg, nil
}

func (c *ClientConfig) saslMechanism() (sasl.Mechanism, error) {
	switch c.SASL.Mechanism {
	case SASLPlain:
		return plain.Mechanism{Username: c.SASL.Username, Password: c.SASL.Password}, nil
	case SASLSCRAMSHA256, SASLSCRAMSHA512:
		algo := scram.SHA256
		if c.SASL.Mechanism == SASLSCRAMSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.SASL.Username, c.SASL.Password)
		if err != nil {
			return nil, fmt.Errorf("%w: SASL %s: %w", ErrInvalidConfig, c.SASL.Mechanism, err)
		}
		return m, nil
	}
	return nil, nil
}

// Dialer returns a kafka-go Dialer with this configuration's TLS and SASL
// (used by consumer groups and readers). It validates first.
func (c ClientConfig) Dialer() (*kafka.Dialer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.saslMechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		ClientID:      c.ClientID,
		Timeout:       c.DialTimeout,
		DualStack:     true,
		KeepAlive:     30 * time.Second,
		TLS:           tc,
		SASLMechanism: mech,
	}, nil
}

// Transport returns a kafka-go Transport with this configuration's TLS
// and SASL (used by writers and admin requests). It validates first.
func (c ClientConfig) Transport() (*kafka.Transport, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.saslMechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		ClientID:    c.ClientID,
		DialTimeout: c.DialTimeout,
		TLS:         tc,
		SASL:        mech,
	}, nil
}
