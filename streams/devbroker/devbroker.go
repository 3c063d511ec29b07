package devbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Sentinel errors.
var (
	// ErrInvalidConfig reports a Config that Validate rejects.
	ErrInvalidConfig = errors.New("devbroker: invalid config")
	// ErrStart reports that the broker could not start (port taken,
	// unreadable data folder, ...).
	ErrStart = errors.New("devbroker: start")
)

// SASL mechanisms a User may use.
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Defaults applied by Validate to zero fields.
const (
	DefaultAddr                   = "127.0.0.1:0"
	DefaultNumBrokers             = 1
	DefaultPartitions             = 4
	DefaultGroupMinSessionTimeout = 6 * time.Second
	DefaultLogLevel               = slog.LevelWarn
)

// User is a SASL account on the development broker. Every user is a
// superuser: the development broker does not model ACLs.
type User struct {
	// Mechanism is MechanismPlain, MechanismSCRAMSHA256 or
	// MechanismSCRAMSHA512.
	Mechanism string
	Name      string
	Password  string
}

// Config configures the development broker. The zero value is valid after
// Validate: one in-memory broker on a free loopback port.
type Config struct {
	// Dir, when set, persists the broker (logs, topics, committed group
	// offsets) under this folder and reloads it on the next Start.
	// Default: empty, everything lives in memory.
	Dir string

	// NoSync skips the fsync after every produced batch. Without it (the
	// default) an acknowledged record survives a SIGKILL of the process;
	// with it, the OS page cache decides. Ignored without Dir.
	NoSync bool

	// Addr is the listen address of the first broker: a loopback host
	// (127.0.0.1, ::1 or localhost) and a port. Broker i listens on
	// port+i; port 0 picks free ports. Non-loopback hosts are refused: the
	// development broker has no authentication by default.
	// Default: DefaultAddr ("127.0.0.1:0").
	Addr string

	// NumBrokers is how many brokers the cluster has. Partition leaders
	// and group coordinators are spread over them.
	// Default: DefaultNumBrokers (1).
	NumBrokers int

	// Partitions is the partition count of topics created without one.
	// Default: DefaultPartitions (4).
	Partitions int

	// GroupMinSessionTimeout is the smallest consumer-group session
	// timeout the broker accepts (Kafka's group.min.session.timeout.ms).
	// Tests may lower it to detect dead members quickly.
	// Default: DefaultGroupMinSessionTimeout (6 s, as Kafka).
	GroupMinSessionTimeout time.Duration

	// TLS, when set, makes every listener speak TLS with this
	// configuration (it must carry a certificate).
	// Default: nil, plaintext.
	TLS *tls.Config

	// Users, when non-empty, turns SASL authentication on; only these
	// accounts can connect. Default: none, no authentication.
	Users []User

	// LogLevel is the lowest level of kfake's own messages passed to the
	// logger. Default: DefaultLogLevel (warn).
	LogLevel *slog.Level
}

// Validate fills defaults into zero fields and reports the first invalid
// field, wrapped in ErrInvalidConfig.
func (c *Config) Validate() error {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.NumBrokers == 0 {
		c.NumBrokers = DefaultNumBrokers
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.GroupMinSessionTimeout == 0 {
		c.GroupMinSessionTimeout = DefaultGroupMinSessionTimeout
	}
	if c.LogLevel == nil {
		l := DefaultLogLevel
		c.LogLevel = &l
	}
	if _, _, err := c.listen(); err != nil {
		return err
	}
	if c.NumBrokers < 1 || c.NumBrokers > 16 {
		return fmt.Errorf("%w: NumBrokers %d not in 1..16", ErrInvalidConfig, c.NumBrokers)
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		return fmt.Errorf("%w: Partitions %d not in 1..10000", ErrInvalidConfig, c.Partitions)
	}
	if c.GroupMinSessionTimeout < 0 {
		return fmt.Errorf("%w: GroupMinSessionTimeout %v is negative", ErrInvalidConfig, c.GroupMinSessionTimeout)
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		return fmt.Errorf("%w: TLS config has no certificate", ErrInvalidConfig)
	}
	for i, u := range c.Users {
		switch u.Mechanism {
		case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		default:
			return fmt.Errorf("%w: Users[%d]: unknown SASL mechanism %q", ErrInvalidConfig, i, u.Mechanism)
		}
		if u.Name == "" || u.Password == "" {
			return fmt.Errorf("%w: Users[%d]: empty name or password", ErrInvalidConfig, i)
		}
	}
	return nil
}

// listen splits Addr into a loopback host and the broker ports (nil for
// free ports).
func (c *Config) listen() (host string, ports []int, err error) {
	h, p, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "", nil, fmt.Errorf("%w: Addr %q: %w", ErrInvalidConfig, c.Addr, err)
	}
	if h == "localhost" {
		h = "127.0.0.1"
	}
	ip := net.ParseIP(h)
	if ip == nil || !ip.IsLoopback() {
		return "", nil, fmt.Errorf("%w: Addr %q: host must be a loopback address", ErrInvalidConfig, c.Addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port+c.NumBrokers-1 > 65535 {
		return "", nil, fmt.Errorf("%w: Addr %q: bad port", ErrInvalidConfig, c.Addr)
	}
	if port == 0 {
		return h, nil, nil
	}
	for i := range c.NumBrokers {
		ports = append(ports, port+i)
	}
	return h, ports, nil
}

// Broker is a running development cluster.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string
	logger  *slog.Logger
	once    sync.Once
}

// Start starts the development broker and returns once it accepts
// connections. ctx bounds the start only; stop the broker with Close.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	host, ports, _ := cfg.listen()

	opts := []kfake.Opt{
		kfake.NumBrokers(cfg.NumBrokers),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.GroupMinSessionTimeout(cfg.GroupMinSessionTimeout),
		kfake.ClusterID("legiond-dev"),
		kfake.WithLogger(slogAdapter{logger: logger, min: *cfg.LogLevel}),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			// kfake asks for 127.0.0.1:port; bind the configured host.
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(host, port))
		}),
	}
	if len(ports) > 0 {
		opts = append(opts, kfake.Ports(ports...))
	}
	if cfg.Dir != "" {
		opts = append(opts, kfake.DataDir(cfg.Dir))
		if !cfg.NoSync {
			opts = append(opts, kfake.SyncWrites())
		}
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS.Clone()))
	}
	if len(cfg.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range cfg.Users {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Name, u.Password))
		}
	}

	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	b := &Broker{cluster: cluster, addrs: cluster.ListenAddrs(), logger: logger}
	logger.Info("development kafka broker started",
		"addrs", b.addrs, "dir", cfg.Dir, "sync_writes", cfg.Dir != "" && !cfg.NoSync,
		"tls", cfg.TLS != nil, "sasl", len(cfg.Users) > 0)
	return b, nil
}

// Addrs returns the brokers' host:port addresses, the bootstrap list for
// clients.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Close stops the broker; with a data folder it saves its state first. It
// is safe to call more than once.
func (b *Broker) Close() error {
	b.once.Do(func() {
		b.cluster.Close()
		b.logger.Info("development kafka broker stopped", "addrs", b.addrs)
	})
	return nil
}

// slogAdapter routes kfake's printf-style log lines to slog.
type slogAdapter struct {
	logger *slog.Logger
	min    slog.Level
}

func (a slogAdapter) Logf(level kfake.LogLevel, format string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	case kfake.LogLevelInfo:
		l = slog.LevelInfo
	default:
		l = slog.LevelDebug
	}
	if l < a.min || !a.logger.Enabled(context.Background(), l) {
		return
	}
	a.logger.Log(context.Background(), l, "kfake: "+fmt.Sprintf(format, args...))
}
