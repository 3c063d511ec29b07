package replication

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// StateStore is the port the FSM writes the replicated state through. The
// node's *pebblestore.Store implements it in replica mode (see pebblestore's
// restore.go): the FSM is then the only writer of twin records and offsets
// in it.
type StateStore interface {
	// CommitReplica durably writes exact records and meta as one atomic
	// unit.
	CommitReplica(ctx context.Context, meta []byte, writes ...pebblestore.ReplicaWrite) error
	// ReplicaMeta returns the last meta written, or pebblestore.ErrNotFound.
	ReplicaMeta(ctx context.Context) ([]byte, error)
	// ResetReplica replaces every twin and offset with what load puts.
	ResetReplica(ctx context.Context, meta []byte, load func(put func(pebblestore.ReplicaWrite) error) error) error
	// LoadTwin returns a twin's stored record, or pebblestore.ErrNotFound.
	LoadTwin(ctx context.Context, tenant string, kind pebblestore.Kind, eui pebblestore.EUI) (pebblestore.TwinRecord, error)
	// Offsets returns every stored offset.
	Offsets(ctx context.Context) (map[pebblestore.TopicPartition]int64, error)
	// ForEachTwin walks every twin over a point-in-time view.
	ForEachTwin(ctx context.Context, fn func(pebblestore.TwinEntry) error) error
	// Snapshot returns a point-in-time view for a Raft snapshot.
	Snapshot() (*pebblestore.View, error)
}

var _ StateStore = (*pebblestore.Store)(nil)

// Peer is a member of the Raft group.
type Peer struct {
	// ID is the member's stable identity (Config.NodeID on that member).
	ID string
	// Address is its advertised host:port.
	Address string
}

// Defaults applied by Start to zero Config fields.
const (
	DefaultHeartbeatTimeout   = time.Second
	DefaultElectionTimeout    = time.Second
	DefaultLeaderLeaseTimeout = 500 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	DefaultSnapshotInterval   = 2 * time.Minute
	DefaultSnapshotThreshold  = 8192
	DefaultTrailingLogs       = 10240
	DefaultSnapshotRetain     = 2
	DefaultQueueSize          = 4096
	DefaultMaxBatchProposals  = 1024
	DefaultMaxCommandBytes    = 4 << 20
	DefaultMaxInflight        = 4
	DefaultApplyTimeout       = 10 * time.Second
	DefaultDialTimeout        = 3 * time.Second
	DefaultVersionCacheSize   = 1 << 18
)

// Config configures a Group. Zero fields take the documented defaults.
type Config struct {
	// NodeID is this member's stable Raft identity (required). Reusing an
	// ID for a different machine's data is an operator error.
	NodeID string
	// BindAddr is the host:port to listen on for Raft and forwarded
	// proposals (one TLS port, told apart by ALPN). Required unless
	// Listener is set.
	BindAddr string
	// Listener, if set, is used instead of binding BindAddr (tests, socket
	// activation). The group closes it on Shutdown.
	Listener net.Listener
	// AdvertiseAddr is the host:port peers dial. Default: the listener's
	// address, which must then not be an unspecified IP (0.0.0.0, ::).
	AdvertiseAddr string
	// DataDir holds the Raft log and stable store (DataDir/raft, Pebble)
	// and Raft snapshots (DataDir/snapshots). Required.
	DataDir string
	// FS is the file system of the Raft log store and the Raft
	// snapshots (which hold every twin state). Default vfs.Default; the
	// encryption-at-rest wrapper plugs in here.
	FS vfs.FS
	// Store is the node's replicated twin store (required). The group
	// does not close it.
	Store StateStore
	// TLSServer is the TLS 1.3 server configuration of the listener. It
	// must require and verify client certificates (e.g. api/tlsconf's
	// RequireClientCerts, wired in cmd): a peer without a certificate from the
	// cluster's CA is refused at the handshake.
	TLSServer *tls.Config
	// TLSClient is the TLS 1.3 configuration for dialing peers: it must
	// carry this member's client certificate and trust the cluster's CA.
	// ServerName defaults to the host of the dialled address.
	TLSClient *tls.Config
	// Bootstrap makes a member with no Raft state create the cluster with
	// Peers (plus itself) as voters. Set it on one member of a new
	// cluster; it is ignored once state exists.
	Bootstrap bool
	// Peers are the initial voters when bootstrapping and the seeds Join
	// asks to be added through.
	Peers []Peer

	// Raft timing; defaults are hashicorp/raft's (1 s, 1 s, 500 ms, 50 ms).
	// Tests use ~100–300 ms.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotInterval is how often Raft checks whether to snapshot;
	// SnapshotThreshold the number of new entries that triggers one.
	// Default 2 min and 8,192. TrailingLogs entries are kept after a
	// snapshot so that a briefly absent follower catches up from the log
	// (default 10,240); one further behind receives the snapshot.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// SnapshotRetain is how many snapshots are kept on disk. Default 2.
	SnapshotRetain int

	// QueueSize bounds proposals waiting to be batched; Propose blocks
	// when it is full (backpressure to the Kafka consumer). Default 4,096.
	QueueSize int
	// MaxBatchProposals caps the proposals in one Raft entry (default
	// 1,024) and MaxCommandBytes its size (default 4 MiB; one batch larger
	// than that is refused by Propose).
	MaxBatchProposals int
	MaxCommandBytes   int
	// MaxInflight caps the Raft entries proposed (or forwarded) and not yet
	// applied; while they are in flight, new proposals gather into the
	// next entry. Default 4.
	MaxInflight int
	// ApplyTimeout bounds how long one entry may wait for a leader and its
	// commit, retries included. Default 10 s.
	ApplyTimeout time.Duration
	// DialTimeout bounds a TCP connect plus TLS handshake to a peer.
	// Default 3 s.
	DialTimeout time.Duration
	// VersionCacheSize bounds the FSM's map of current twin versions (a
	// miss costs one store read). Default 262,144.
	VersionCacheSize int

	// Serve, when set, answers application requests that other members
	// send with Group.Call over the mutual-TLS port (e.g. an operator's
	// alarm acknowledgement for a twin this member serves). An error is
	// returned to the caller as its text (ErrRemote).
	Serve func(ctx context.Context, request []byte) ([]byte, error)

	// ActiveTwins, when set, reports this member's active twins to peers
	// asking for its status (operators' `legiond cluster status`).
	ActiveTwins func() uint64

	// Faults, when set, lets a test or drill cut this member off its peers
	// (Faults.Isolate). Nil in production.
	Faults *Faults

	// Logger receives lifecycle events and hashicorp/raft's own log lines
	// at RaftLogLevel and above. Default: discard.
	Logger *slog.Logger
	// RaftLogLevel filters raft's (chatty) logging. Default (nil)
	// slog.LevelWarn.
	RaftLogLevel slog.Leveler
}

// Validate reports a configuration Start would refuse.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("replication config: "+format+": %w", append(args, ErrInvalid)...)
	}
	switch {
	case c.NodeID == "":
		return bad("NodeID is required")
	case c.BindAddr == "" && c.Listener == nil:
		return bad("BindAddr or Listener is required")
	case c.DataDir == "":
		return bad("DataDir is required")
	case c.Store == nil:
		return bad("Store is required")
	case c.HeartbeatTimeout < 0 || c.ElectionTimeout < 0 || c.LeaderLeaseTimeout < 0 || c.CommitTimeout < 0:
		return bad("negative raft timeout")
	case c.SnapshotInterval < 0 || c.SnapshotRetain < 0:
		return bad("negative snapshot setting")
	case c.QueueSize < 0 || c.MaxBatchProposals < 0 || c.MaxCommandBytes < 0 || c.MaxInflight < 0 || c.VersionCacheSize < 0:
		return bad("negative queue or batch limit")
	case c.ApplyTimeout < 0 || c.DialTimeout < 0:
		return bad("negative timeout")
	}
	for i, p := range c.Peers {
		if p.ID == "" || p.Address == "" {
			return bad("peer %d: ID and Address are required", i)
		}
		if _, _, err := net.SplitHostPort(p.Address); err != nil {
			return bad("peer %s address %q: %v", p.ID, p.Address, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if err := checkAdvertise(c.AdvertiseAddr); err != nil {
			return bad("AdvertiseAddr: %v", err)
		}
	}
	if err := checkServerTLS(c.TLSServer); err != nil {
		return fmt.Errorf("replication config: TLSServer: %w", err)
	}
	if err := checkClientTLS(c.TLSClient); err != nil {
		return fmt.Errorf("replication config: TLSClient: %w", err)
	}
	if err := raft.ValidateConfig(c.withDefaults().raftConfig()); err != nil {
		return bad("raft: %v", err)
	}
	return nil
}

// raftConfig builds hashicorp/raft's configuration (on a defaulted Config).
func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	// BatchApplyCh stays off: with a buffered apply channel, an Apply
	// still in the buffer when raft shuts down is never answered (its
	// future hangs). Proposals are batched into entries before raft.Apply,
	// and raft's leader loop still appends every entry waiting on the
	// channel with one fsync.
	rc.BatchApplyCh = false
	// Restarts restore the latest snapshot, which the FSM skips when its
	// durable store is already at or beyond it (see fsm.Restore).
	rc.NoSnapshotRestoreOnStart = false
	rc.Logger = newHclog(c.Logger, c.RaftLogLevel)
	return rc
}

func checkAdvertise(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" || port == "0" {
		return fmt.Errorf("%q has no port", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("%q is not an address peers can dial", addr)
	}
	return nil
}

func checkServerTLS(cfg *tls.Config) error {
	if cfg == nil {
		return fmt.Errorf("missing: %w", ErrTLS)
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return fmt.Errorf("no server certificate: %w", ErrTLS)
	}
	if cfg.MinVersion < tls.VersionTLS13 {
		return fmt.Errorf("MinVersion below TLS 1.3: %w", ErrTLS)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		return fmt.Errorf("client certificates are not required and verified (use tlsconf.RequireClientCerts): %w", ErrTLS)
	}
	return nil
}

func checkClientTLS(cfg *tls.Config) error {
	switch {
	case cfg == nil:
		return fmt.Errorf("missing: %w", ErrTLS)
	case cfg.MinVersion < tls.VersionTLS13:
		return fmt.Errorf("MinVersion below TLS 1.3: %w", ErrTLS)
	case cfg.InsecureSkipVerify:
		return fmt.Errorf("InsecureSkipVerify: %w", ErrTLS)
	case len(cfg.Certificates) == 0 && cfg.GetClientCertificate == nil:
		return fmt.Errorf("no client certificate: %w", ErrTLS)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RaftLogLevel == nil {
		c.RaftLogLevel = slog.LevelWarn
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	def(&c.CommitTimeout, DefaultCommitTimeout)
	def(&c.SnapshotInterval, DefaultSnapshotInterval)
	def(&c.ApplyTimeout, DefaultApplyTimeout)
	def(&c.DialTimeout, DefaultDialTimeout)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxBatchProposals == 0 {
		c.MaxBatchProposals = DefaultMaxBatchProposals
	}
	if c.MaxCommandBytes == 0 {
		c.MaxCommandBytes = DefaultMaxCommandBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.VersionCacheSize == 0 {
		c.VersionCacheSize = DefaultVersionCacheSize
	}
	return c
}
