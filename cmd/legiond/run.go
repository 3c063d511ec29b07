package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/legionelladossier/legiond/actors"
	"github.com/legionelladossier/legiond/storage/encfs"
	"github.com/legionelladossier/legiond/streams"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

// envKafkaSASLPassword holds the SASL password when no file is given.
const envKafkaSASLPassword = "LEGIOND_KAFKA_SASL_PASSWORD"

// kafkaFlags are the Kafka client flags shared by run and simulate.
type kafkaFlags struct {
	brokers                           string
	tls                               bool
	tlsCA, tlsCert, tlsKey, tlsServer string
	tlsMin                            string
	saslMech, saslUser                string
	saslPasswordFile                  string
}

func (k *kafkaFlags) register(fs *flag.FlagSet, brokersHelp string) {
	fs.StringVar(&k.brokers, "kafka-brokers", "", brokersHelp)
	fs.BoolVar(&k.tls, "kafka-tls", false, "connect to Kafka with TLS")
	fs.StringVar(&k.tlsCA, "kafka-tls-ca", "", "PEM bundle of the brokers' CAs (default: system pool)")
	fs.StringVar(&k.tlsCert, "kafka-tls-cert", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&k.tlsKey, "kafka-tls-key", "", "client key (PEM) for mutual TLS")
	fs.StringVar(&k.tlsServer, "kafka-tls-server-name", "", "name to verify in the broker certificates")
	fs.StringVar(&k.tlsMin, "kafka-tls-min-version", streams.TLS13, "lowest TLS version: 1.3 or 1.2")
	fs.StringVar(&k.saslMech, "kafka-sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: none)")
	fs.StringVar(&k.saslUser, "kafka-sasl-username", "", "SASL user")
	fs.StringVar(&k.saslPasswordFile, "kafka-sasl-password-file", "", "file holding the SASL password (default $"+envKafkaSASLPassword+")")
}

// client builds the Kafka client configuration; no brokers means "embedded".
func (k *kafkaFlags) client() (streams.ClientConfig, error) {
	var c streams.ClientConfig
	for _, b := range strings.Split(k.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	c.TLS = streams.TLSConfig{Enable: k.tls, CAFile: k.tlsCA, CertFile: k.tlsCert, KeyFile: k.tlsKey, ServerName: k.tlsServer, MinVersion: k.tlsMin}
	if k.saslMech != "" {
		pw := os.Getenv(envKafkaSASLPassword)
		if k.saslPasswordFile != "" {
			b, err := os.ReadFile(k.saslPasswordFile)
			if err != nil {
				return c, err
			}
			pw = strings.TrimSpace(string(b))
		}
		c.SASL = streams.SASLConfig{Mechanism: k.saslMech, Username: k.saslUser, Password: pw}
	}
	if len(c.Brokers) == 0 {
		if k.tls || k.saslMech != "" {
			return c, errors.New("--kafka-tls and --kafka-sasl-* need --kafka-brokers")
		}
		return c, nil
	}
	err := c.Validate()
	return c, err
}

const runUsage = `usage: legiond run --data-dir DIR [--kafka-brokers HOST:PORT,...] [--kafka-tls ...] [--kafka-sasl-...]
                  [--database-url URL --master-key-file FILE] [--storage-master-key-file FILE]
                  [--backup-to DEST --backup-database-url URL --backup-recipient age1... ...]
                  [--metrics-addr 127.0.0.1:9464]

Runs one node: consumes lorawan.uplink and lorawan.gateway.stats, applies
frames in the device twins, persists their state encrypted under
DIR/storage/twins (storage master key: --storage-master-key-file or
$LEGIOND_STORAGE_MASTER_KEY) and publishes readings, water events and
alarms on twin.events. With --backup-to it backs up the registry daily and
the registry with the twin store weekly (docs/disaster-recovery.md).

Without --kafka-brokers an embedded Kafka broker (development only) starts
on --broker-addr, persisted under DIR/kafka. Without a database URL a private
development PostgreSQL starts under DIR/registry, and the registry and the
storage use DEVELOPMENT-ONLY master keys kept in DIR unless given.
SIGINT or SIGTERM stops the node gracefully.`

func runRun(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dataDir := fs.String("data-dir", "", "data folder (required)")
	var kf kafkaFlags
	kf.register(fs, "Kafka bootstrap brokers, comma-separated (default: the embedded development broker)")
	brokerAddr := fs.String("broker-addr", "127.0.0.1:0", "listen address of the embedded broker")
	partitions := fs.Int("kafka-partitions", 4, "partitions of topics created when missing")
	replication := fs.Int("kafka-replication", 1, "replication factor of topics created when missing")
	group := fs.String("kafka-group", streams.DefaultGroupID, "consumer group")
	session := fs.Duration("kafka-session-timeout", streams.DefaultSessionTimeout, "consumer-group session timeout")
	heartbeat := fs.Duration("kafka-heartbeat-interval", streams.DefaultHeartbeatInterval, "consumer-group heartbeat interval")
	rebalance := fs.Duration("kafka-rebalance-timeout", streams.DefaultRebalanceTimeout, "consumer-group rebalance timeout")
	drain := fs.Duration("kafka-drain-timeout", streams.DefaultDrainTimeout, "how long a revoked partition waits for records in flight")
	dbURL := fs.String("database-url", os.Getenv(envDatabaseURL), "registry as the application role (default $"+envDatabaseURL+"; none: development PostgreSQL)")
	keyFile := fs.String("master-key-file", "", "registry master key file (default $"+"LEGIOND_MASTER_KEY"+")")
	storageKeyFile := fs.String("storage-master-key-file", "", "storage master key file of the encrypted twin store (default $"+encfs.EnvMasterKey+")")
	var bf backupScheduleFlags
	bf.register(fs)
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:9464", "Prometheus /metrics listen address (empty: off)")
	idle := fs.Duration("idle-timeout", actors.DefaultIdleTimeout, "passivate a twin after this long without input")
	shards := fs.Int("shards", actors.DefaultShards, "router actors owning the twin directory")
	apiAddr := fs.String("api-addr", "", "TLS 1.3 Connect API listen address, e.g. 127.0.0.1:8443 (empty: no API)")
	apiCert := fs.String("api-cert", "", "API server certificate (PEM; default: a development CA under --data-dir)")
	apiKey := fs.String("api-key", "", "API server key (PEM)")
	apiIssuer := fs.String("api-issuer", "", "OAuth issuer whose JWKS (<issuer>/.well-known/jwks.json) signs access tokens (default: the embedded development issuer)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	pprofAddr := fs.String("pprof-addr", "", "serve Go profiles (/debug/pprof/) on this loopback address (empty: off)")
	eventLanes := fs.Bool("event-lanes", false, "publish twin events through per-partition lanes (lower latency at moderate rates, fewer frames per CPU-second at saturation)")
	var cf clusterFlags
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(s.err, runUsage)
			fs.SetOutput(s.err)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(s.err, "legiond run: %v\n%s\n", err, runUsage)
		return exitUsage
	}
	if *dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintf(s.err, "legiond run: --data-dir is required and no arguments are accepted\n%s\n", runUsage)
		return exitUsage
	}
	client, err := kf.client()
	if err != nil {
		fmt.Fprintf(s.err, "legiond run: %v\n", err)
		return exitUsage
	}
	log, err := newLogger(s.err, *logLevel)
	if err != nil {
		fmt.Fprintf(s.err, "legiond run: %v\n", err)
		return exitUsage
	}
	if *pprofAddr != "" {
		if err := servePprof(ctx, *pprofAddr, log); err != nil {
			fmt.Fprintf(s.err, "legiond run: %v\n", err)
			return exitUsage
		}
	}
	cfg := nodeConfig{
		DataDir: *dataDir, Kafka: client, BrokerAddr: *brokerAddr, Partitions: *partitions, Replication: *replication,
		Consumer: streams.ConsumerConfig{GroupID: *group, SessionTimeout: *session, HeartbeatInterval: *heartbeat,
			RebalanceTimeout: *rebalance, DrainTimeout: *drain},
		DatabaseURL: *dbURL, MasterKeyFile: *keyFile, MetricsAddr: *metricsAddr,
		// The development registry (no database URL) goes with a
		// development storage key, unless a real one is given.
		StorageMasterKeyFile: *storageKeyFile, DevStorageKey: *dbURL == "",
		Actors: actors.Config{IdleTimeout: *idle, Shards: *shards, AsyncPublish: *eventLanes},
		Logger: log,
	}
	if cfg.Cluster, err = cf.config(); err != nil {
		fmt.Fprintf(s.err, "legiond run: %v\n", err)
		return exitUsage
	}
	if bf.to != "" {
		cfg.Backups = &nodeBackups{Flags: &bf}
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	n, err := startNode(startCtx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintf(s.err, "legiond run: %v\n", err)
		return exitFailure
	}
	apiURL := "off"
	if *apiAddr != "" {
		api, err := startAPI(ctx, apiConfig{Addr: *apiAddr, CertFile: *apiCert, KeyFile: *apiKey, Issuer: *apiIssuer}, apiDeps{
			DataDir: *dataDir, Kafka: streams.ClientConfig{Brokers: n.brokers, TLS: client.TLS, SASL: client.SASL},
			Registry: n.pg, Store: n.store, Alarms: n.alarmCommander(), Cluster: n.clusterStatus(), Logger: log,
		})
		if err != nil {
			_ = n.Close()
			fmt.Fprintf(s.err, "legiond run: %v\n", err)
			return exitFailure
		}
		defer api.close(context.Background())
		apiURL = api.URL()
	}
	fmt.Fprintf(s.out, "legiond node ready: brokers=%s metrics=%s api=%s\n", strings.Join(n.brokers, ","), n.metricsAddr, apiURL)
	<-ctx.Done()
	log.Info("stopping")
	if err := n.Close(); err != nil {
		fmt.Fprintf(s.err, "legiond run: stop: %v\n", err)
		return exitFailure
	}
	return exitOK
}

const brokerUsage = `usage: legiond broker --data-dir DIR [--addr 127.0.0.1:9092] [--partitions 4]

Runs the embedded development Kafka broker (franz-go kfake) as its own
process, persisted under DIR: nodes and tools reach it with
--kafka-brokers ADDR. Loopback only, no authentication: never production.`

func runBroker(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dataDir := fs.String("data-dir", "", "data folder (required)")
	addr := fs.String("addr", "127.0.0.1:9092", "listen address (loopback)")
	partitions := fs.Int("partitions", devbroker.DefaultPartitions, "partitions of topics created without a count")
	minSession := fs.Duration("group-min-session-timeout", devbroker.DefaultGroupMinSessionTimeout, "smallest consumer-group session timeout accepted")
	pprofAddr := fs.String("pprof-addr", "", "serve Go profiles (/debug/pprof/) on this loopback address (empty: off)")
	noSync := fs.Bool("no-sync", false, "do not fsync every produced batch (acknowledged records then survive a crash of the process, not of the machine)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(s.err, brokerUsage)
			return exitOK
		}
		fmt.Fprintf(s.err, "legiond broker: %v\n%s\n", err, brokerUsage)
		return exitUsage
	}
	if *dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintf(s.err, "legiond broker: --data-dir is required and no arguments are accepted\n%s\n", brokerUsage)
		return exitUsage
	}
	log, _ := newLogger(s.err, "info")
	if *pprofAddr != "" {
		if err := servePprof(ctx, *pprofAddr, log); err != nil {
			fmt.Fprintf(s.err, "legiond broker: %v\n", err)
			return exitUsage
		}
	}
	b, err := devbroker.Start(ctx, devbroker.Config{Dir: *dataDir, NoSync: *noSync, Addr: *addr, Partitions: *partitions, GroupMinSessionTimeout: *minSession}, log)
	if err != nil {
		fmt.Fprintf(s.err, "legiond broker: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(s.out, "legiond broker listening on %s\n", strings.Join(b.Addrs(), ","))
	<-ctx.Done()
	if err := b.Close(); err != nil {
		fmt.Fprintf(s.err, "legiond broker: stop: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
