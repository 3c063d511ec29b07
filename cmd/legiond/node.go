package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/legionelladossier/legiond/actors"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/storage/encfs"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/storage/postgres/devdb"
	"github.com/legionelladossier/legiond/streams"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

// headerTwinReason is added to dead letters the twins rejected: the
// machine-readable reason (bad_mic, replay, unknown_devaddr, twin_panic…)
// behind streams' generic "handler" reason header.
const headerTwinReason = "twin_reason"

// nodeConfig assembles one Legiond node. Zero fields take defaults.
type nodeConfig struct {
	// DataDir holds the encrypted twin store (storage/twins/, see
	// encryption.go), the embedded broker's log (kafka/) and the
	// development registry (registry/). Required.
	DataDir string
	// StorageMasterKeyFile holds the master key of the encrypted storage;
	// default $LEGIOND_STORAGE_MASTER_KEY. DevStorageKey: without either,
	// use (creating it) the DEVELOPMENT-ONLY key kept in DataDir/storage.
	StorageMasterKeyFile string
	DevStorageKey        bool
	// PlaintextStore keeps the twin store unencrypted in DataDir/twins.
	// Tests only (the control of the encryption test): no flag sets it.
	PlaintextStore bool
	// Backups runs the backup schedule inside the node; nil: none. See
	// backupsched.go.
	Backups *nodeBackups

	// Kafka reaches the cluster. No brokers: the embedded development
	// broker starts on BrokerAddr, persisted under DataDir/kafka.
	Kafka      streams.ClientConfig
	BrokerAddr string // default 127.0.0.1:0
	// Partitions and Replication of the topics created when missing.
	// Defaults 4 and 1.
	Partitions, Replication int
	// Consumer tunes the consumer group (Client is filled in). Its
	// MaxInFlightPerPartition defaults to 2048 here: the window must cover
	// a frame's publish → persist latency at the target rate.
	Consumer streams.ConsumerConfig
	// EventBatchSize is the producer batch of twin.events. Default 1000.
	EventBatchSize int

	// DatabaseURL is the registry as the application role; the master key
	// comes from MasterKeyFile or $LEGIOND_MASTER_KEY. Empty: a private
	// development PostgreSQL under DataDir/registry.
	DatabaseURL   string
	MasterKeyFile string

	// MetricsAddr serves /metrics and /healthz. Empty: no endpoint.
	MetricsAddr string

	// Actors tunes the twin actors (ports are filled in).
	Actors actors.Config
	// StoreNoSync acknowledges state writes before fsync (benchmarks of
	// the non-durable path only).
	StoreNoSync bool

	// Cluster, when set, makes the node a cluster member (cluster.go):
	// replicated twin state, partitions assigned by the Raft leader.
	Cluster *clusterConfig

	Logger *slog.Logger
	// Registry receives every metric. Default: a new registry.
	Registry *prometheus.Registry
}

// node is a running Legiond node: registry cache, twin store, Kafka in and
// out, the twin actors and the metrics endpoint.
type node struct {
	cfg      nodeConfig
	log      *slog.Logger
	broker   *devbroker.Broker
	devdb    *devdb.DB
	pg       *postgres.Store
	cache    *postgres.Cache
	store    *pebblestore.Store
	efs      *encfs.FS
	backups  *backupRunner
	events   *streams.EventProducer
	dlq      *streams.DLQProducer
	consumer *streams.Consumer
	system   *actors.System
	smetrics *streams.Metrics
	reg      *prometheus.Registry
	http     *http.Server
	cluster  *clusterPart // nil on a single node

	brokers     []string
	metricsAddr string

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// startNode starts a node and returns once it consumes. ctx bounds the
// start only; Close stops the node.
func startNode(ctx context.Context, cfg nodeConfig) (_ *node, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("node: DataDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 4
	}
	if cfg.Replication == 0 {
		cfg.Replication = 1
	}
	if cfg.EventBatchSize == 0 {
		cfg.EventBatchSize = 1000
	}
	if cfg.Consumer.MaxInFlightPerPartition == 0 {
		cfg.Consumer.MaxInFlightPerPartition = 2048
	}
	// The folder itself is traversable (the development PostgreSQL runs as
	// another account); what is inside is private.
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n := &node{cfg: cfg, log: cfg.Logger, reg: cfg.Registry, cancel: cancel, smetrics: &streams.Metrics{}}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()

	// Twin store first: a missing or wrong storage key fails the start
	// before anything else runs.
	if err := n.openTwinStore(); err != nil {
		return nil, err
	}

	// Kafka: the given cluster, or the embedded development broker.
	client := cfg.Kafka
	if len(client.Brokers) == 0 {
		n.broker, err = devbroker.Start(ctx, devbroker.Config{
			Dir: filepath.Join(cfg.DataDir, "kafka"), Addr: cfg.BrokerAddr, Partitions: cfg.Partitions,
		}, n.log.With("component", "devbroker"))
		if err != nil {
			return nil, fmt.Errorf("node: embedded broker: %w", err)
		}
		client.Brokers = n.broker.Addrs()
		n.log.Info("embedded Kafka broker started (development only)", "addrs", client.Brokers)
	}
	n.brokers = client.Brokers
	if err := streams.EnsureTopics(ctx, client, streams.DefaultTopics(cfg.Partitions, cfg.Replication), n.log); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}

	// Registry and its cache.
	if err := n.openRegistry(ctx); err != nil {
		return nil, err
	}
	n.cache, err = postgres.NewCache(postgres.CacheConfig{Store: n.pg, Logger: n.log.With("component", "registry-cache")})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.cache.Run(runCtx); err != nil {
			n.log.Error("registry cache stopped", "err", err)
		}
	}()
	select {
	case <-n.cache.Ready():
	case <-ctx.Done():
		return nil, fmt.Errorf("node: registry cache: %w", ctx.Err())
	}

	if err := n.startBackups(runCtx); err != nil {
		return nil, err
	}

	// Producers.
	// The actors' batcher hands over whole batches (one call in flight),
	// so kafka-go's linger would only delay each call: a 10 µs timeout
	// closes a partition's batch as soon as the call's records are in
	// (1 ms cost ≈ 1.3 ms per call on the embedded broker).
	n.events, err = streams.NewEventProducer(streams.ProducerConfig{Client: client, BatchSize: cfg.EventBatchSize,
		BatchTimeout: 10 * time.Microsecond}, n.smetrics, n.log)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.dlq, err = streams.NewDLQProducer(streams.ProducerConfig{Client: client, BatchTimeout: time.Millisecond}, n.log)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}

	// Twin actors.
	acfg := cfg.Actors
	acfg.Store, acfg.Events, acfg.Directory = n.store, n.events, n.cache
	acfg.Logger, acfg.Registerer = n.log.With("component", "actors"), n.reg
	if acfg.TickClock == nil {
		acfg.TickClock = n.tickClock
	}
	if cfg.Cluster != nil {
		if err := n.startReplication(ctx, &acfg); err != nil {
			return nil, err
		}
	}
	n.system, err = actors.NewSystem(acfg)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}

	if err := n.registerMetrics(); err != nil {
		return nil, err
	}
	if cfg.MetricsAddr != "" {
		if err := n.serveMetrics(cfg.MetricsAddr); err != nil {
			return nil, err
		}
	}

	// Consumer last: from here on frames flow.
	if cfg.Cluster != nil {
		if err := n.startPlacement(client); err != nil {
			return nil, err
		}
		return n, nil
	}
	ccfg := cfg.Consumer
	ccfg.Client = client
	n.storeOffsets(&ccfg)
	n.consumer, err = streams.NewConsumer(ccfg, twinHandler{n.system}, reasonDLQ{n.dlq}, n.smetrics, n.log.With("component", "consumer"))
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.consumer.Run(runCtx); err != nil && !errors.Is(err, streams.ErrClosed) {
			n.log.Error("consumer stopped", "err", err)
		}
	}()
	return n, nil
}

// Event-time clock of the twins' time rules; see tickClock.
const (
	// streamIdle: no input for this long means the stream is idle (not
	// catching up), and the wall clock rules.
	streamIdle = 30 * time.Second
	// streamGrace lets frames still in flight from gateways arrive before
	// event time moves past a deadline.
	streamGrace = time.Minute
)

// tickClock is the "now" of the twins' time rules (SENSOR_OFFLINE,
// GATEWAY_OFFLINE, FLUSH_OVERDUE). While the node replays old frames (a
// gateway that reconnects with hours of buffered frames, a history replay,
// a restart after downtime) the wall clock is hours ahead of the frames:
// every twin's deadline would look past, the twin would raise
// SENSOR_OFFLINE and its next replayed frame would clear it, a false
// raise/clear pair in the legal logbook. So, like a stream processor's
// watermark, rules run on event time while inputs flow: the newest receive
// time handed to the twins plus streamGrace, never later than the wall
// clock. Consumer lag is no guide here: a replay produced as fast as it is
// consumed shows no lag. When no input arrived for streamIdle the stream is
// idle and event time would stop; then the wall clock rules (idle-source
// handling), so that a fleet that fell silent still raises SENSOR_OFFLINE.
// Known limit: the stream time is one maximum over all partitions, so a
// backlog replayed beside live traffic still runs on the live time.
func (n *node) tickClock() time.Time {
	now := time.Now()
	// n.system is nil while NewSystem runs (a twin timer may fire then).
	if n.system == nil {
		return now
	}
	if last := n.system.LastInput(); last.IsZero() || now.Sub(last) > streamIdle {
		return now
	}
	if t := n.system.StreamTime().Add(streamGrace); t.Before(now) {
		return t
	}
	return now
}

func (n *node) openRegistry(ctx context.Context) error {
	if n.cfg.DatabaseURL == "" {
		db, err := devdb.Start(ctx, devdb.Config{
			Dir: filepath.Join(n.cfg.DataDir, "registry"), Logger: n.log.With("component", "devdb"),
			// The flag (or its $DATABASE_URL default) was empty on purpose.
			Getenv: func(k string) string {
				if k == envDatabaseURL || k == envMigrateDatabaseURL {
					return ""
				}
				return os.Getenv(k)
			},
		})
		if err != nil {
			return fmt.Errorf("node: development registry: %w", err)
		}
		n.devdb = db
		n.pg, err = db.Open(ctx, n.log)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		return nil
	}
	mk, err := postgres.LoadMasterKey(n.cfg.MasterKeyFile, os.Getenv)
	if err != nil {
		return fmt.Errorf("node: master key: %w", err)
	}
	ring, err := postgres.NewKeyRing(mk)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.pg, err = postgres.Open(ctx, postgres.Config{DSN: n.cfg.DatabaseURL, KeyRing: ring, Logger: n.log})
	if err != nil {
		return fmt.Errorf("node: registry: %w", err)
	}
	return nil
}

// registerMetrics exports the consumer's and the store's counters next to
// the actors' own metrics.
func (n *node) registerMetrics() error {
	m := n.smetrics
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "legiond", Name: name, Help: help},
			func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "legiond", Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		counter("kafka_uplinks_in_total", "Records fetched from lorawan.uplink (redeliveries included).", m.UplinksIn.Load),
		counter("kafka_gateway_stats_in_total", "Records fetched from lorawan.gateway.stats.", m.GatewayStatsIn.Load),
		counter("kafka_handled_total", "Records the twins completed successfully.", m.Handled.Load),
		counter("kafka_retried_total", "Records handed to the twins again after a retryable failure.", m.Retried.Load),
		counter("kafka_committed_records_total", "Records moved past by offset commits.", m.CommittedRecords.Load),
		counter("kafka_commit_errors_total", "Failed offset commits.", m.CommitErrors.Load),
		counter("kafka_dlq_errors_total", "Failed dead-letter writes (retried).", m.DLQErrors.Load),
		counter("kafka_generations_total", "Consumer-group generations joined.", m.Generations.Load),
		counter("kafka_events_published_total", "twin.events records written.", m.EventsPublished.Load),
		counter("kafka_event_requests_total", "Produce calls of the twin.events partition lanes (one partition each).", m.EventRequests.Load),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "legiond", Name: "kafka_event_request_seconds_total",
			Help: "Total duration of the twin.events partition lanes' produce calls."},
			func() float64 { return float64(m.EventRequestNanos.Load()) / 1e9 }),
		gauge("kafka_consumer_lag", "High watermark minus committable offset, summed over owned partitions.",
			func() float64 { return float64(m.Lag.Load()) }),
		gauge("kafka_consumer_in_flight", "Records held in partition windows.", func() float64 { return float64(m.InFlight.Load()) }),
		counter("twin_store_group_commits_total", "Group commits of the twin store (one fsync each).", func() uint64 { return n.store.Metrics().Groups }),
		counter("twin_store_writes_total", "Writes committed to the twin store.", func() uint64 { return n.store.Metrics().Writes }),
		counter("twin_store_stale_rejects_total", "Twin writes refused by version fencing.", func() uint64 { return n.store.Metrics().StaleRejects }),
		counter("twin_store_commit_errors_total", "Failed group commits.", func() uint64 { return n.store.Metrics().CommitErrors }),
	}
	dl := prometheus.NewDesc("legiond_kafka_dead_lettered_total", "Records written to lorawan.uplink.dlq, by streams reason.", []string{"reason"}, nil)
	cs = append(cs, collectorFunc{desc: dl, collect: func(ch chan<- prometheus.Metric) {
		for _, r := range streams.Reasons() {
			ch <- prometheus.MustNewConstMetric(dl, prometheus.CounterValue, float64(m.DeadLettered(r)), r.String())
		}
	}})
	for _, c := range cs {
		if err := n.reg.Register(c); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
	}
	return nil
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func (n *node) serveMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("node: metrics listener: %w", err)
	}
	n.metricsAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	return nil
}

// Close stops the node in dependency order: stop consuming (in-flight
// records drain and their offsets are committed), let the twins finish,
// flush the producers, close the store, then the registry and the broker.
func (n *node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.consumer != nil {
			errs = append(errs, n.consumer.Close())
		}
		if n.cluster != nil {
			errs = append(errs, n.cluster.stopPlacement())
		}
		if n.system != nil {
			errs = append(errs, n.system.Close(context.Background()))
		}
		if n.events != nil {
			errs = append(errs, n.events.Close())
		}
		if n.dlq != nil {
			errs = append(errs, n.dlq.Close())
		}
		if n.cluster != nil && n.cluster.group != nil {
			errs = append(errs, n.cluster.group.Shutdown())
		}
		errs = append(errs, n.stopBackups()) // it checkpoints the store
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		if n.efs != nil {
			errs = append(errs, n.efs.Close())
		}
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, n.http.Shutdown(ctx))
			cancel()
		}
		n.cancel()
		n.wg.Wait()
		if n.pg != nil {
			n.pg.Close()
		}
		if n.devdb != nil {
			errs = append(errs, n.devdb.Stop())
		}
		if n.broker != nil {
			errs = append(errs, n.broker.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// twinHandler is the streams.Handler of the twin actors.
type twinHandler struct{ sys *actors.System }

func (h twinHandler) HandleUplink(ctx context.Context, _ streams.Record, f *lorawanv1.UplinkFrame, done func(error)) {
	h.sys.HandleUplink(ctx, f, retryAs(done))
}

func (h twinHandler) HandleGatewayStats(ctx context.Context, _ streams.Record, s *lorawanv1.GatewayStats, done func(error)) {
	h.sys.HandleGatewayStats(ctx, s, retryAs(done))
}

// retryAs maps the actors' retry error onto streams' (redeliver rather
// than dead-letter).
func retryAs(done func(error)) func(error) {
	return func(err error) {
		if err != nil && errors.Is(err, actors.ErrRetry) {
			err = fmt.Errorf("%w: %w", streams.ErrRetry, err)
		}
		done(err)
	}
}

// reasonDLQ adds the twins' rejection reason to handler dead letters.
type reasonDLQ struct{ *streams.DLQProducer }

func (d reasonDLQ) DeadLetter(ctx context.Context, rec streams.Record, reason streams.Reason, detail string) error {
	if reason == streams.ReasonHandler {
		if r := actors.ReasonFromDetail(detail); r != "" {
			rec.Headers = append(slices.Clip(rec.Headers), streams.Header{Key: headerTwinReason, Value: []byte(r)})
		}
	}
	return d.DLQProducer.DeadLetter(ctx, rec, reason, detail)
}
