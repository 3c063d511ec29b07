package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/legionelladossier/legiond/api/tlsconf"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

const (
	tenantA = "8f14e45f-ceea-467f-a0e6-2a4f1c5b3f10"
	tenantB = "c9f0f895-fb98-4b91-9f1a-3d6f4b1e2a77"
)

func eui(i int) pebblestore.EUI {
	return pebblestore.EUI{0x70, 0xb3, 0xd5, 0x7e, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func testLogger() *slog.Logger {
	if os.Getenv("REPLICATION_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func memStateStore(t testing.TB) *pebblestore.Store {
	t.Helper()
	s, err := pebblestore.Open(pebblestore.Config{Dir: "/state", FS: vfs.NewMem(), CacheSize: 8 << 20, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// dump is a comparable picture of a store's replicated state.
type dump struct {
	Twins   []string
	Offsets map[pebblestore.TopicPartition]int64
}

func dumpStore(t testing.TB, s StateStore) dump {
	t.Helper()
	ctx := context.Background()
	var d dump
	if err := s.ForEachTwin(ctx, func(e pebblestore.TwinEntry) error {
		d.Twins = append(d.Twins, fmt.Sprintf("%s/%s/%s v%d e%d s%d %q", e.Tenant, e.Kind, e.EUI, e.Version, e.Epoch, e.AppliedSeq, e.Snapshot))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var err error
	if d.Offsets, err = s.Offsets(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d dump) equal(o dump) bool {
	return reflect.DeepEqual(d.Twins, o.Twins) && reflect.DeepEqual(d.Offsets, o.Offsets)
}

// waitFor polls cond until it holds or timeout passes (a deadline, not a
// sleep: the condition is the synchronisation).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// member is one in-process Legiond member: a Group over a real Pebble
// store in a temp dir, on a loopback port with mutual TLS.
type member struct {
	id       string
	dir      string // DataDir
	stateDir string
	addr     string
	store    *pebblestore.Store
	g        *Group
	tweak    func(*Config)
}

type cluster struct {
	t       testing.TB
	ca      *tlsconf.DevCA
	members []*member
	tweak   func(*Config)
}

func newDevCA(t testing.TB) *tlsconf.DevCA {
	t.Helper()
	ca, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func memberTLS(t testing.TB, ca *tlsconf.DevCA, id string) (server, client *tls.Config) {
	t.Helper()
	cert, err := ca.IssueClientCert(id)
	if err != nil {
		t.Fatal(err)
	}
	client = ca.ClientConfig()
	client.Certificates = []tls.Certificate{cert}
	return tlsconf.RequireClientCerts(ca.ServerConfig(), ca.Pool()), client
}

// fastRaft are test timings: elections in a few hundred ms.
func fastRaft(c *Config) {
	c.HeartbeatTimeout = 250 * time.Millisecond
	c.ElectionTimeout = 250 * time.Millisecond
	c.LeaderLeaseTimeout = 200 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.ApplyTimeout = 5 * time.Second
	c.DialTimeout = time.Second
}

// newCluster starts n members; member 0 bootstraps the cluster with all.
func newCluster(t testing.TB, n int, tweak func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, ca: newDevCA(t), tweak: tweak}
	lns := make([]net.Listener, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		c.members = append(c.members, &member{id: fmt.Sprintf("node-%d", i+1), addr: ln.Addr().String()})
	}
	for i, m := range c.members {
		c.start(m, lns[i], i == 0)
	}
	t.Cleanup(c.shutdown)
	return c
}

func (c *cluster) peers() []Peer {
	var ps []Peer
	for _, m := range c.members {
		ps = append(ps, Peer{ID: m.id, Address: m.addr})
	}
	return ps
}

// start (re)starts m, with fresh directories if m has none.
func (c *cluster) start(m *member, ln net.Listener, bootstrap bool) {
	t := c.t
	t.Helper()
	if m.dir == "" {
		m.dir = t.TempDir()
		m.stateDir = t.TempDir()
	}
	if ln == nil {
		var err error
		if ln, err = listenRetry(m.addr); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	m.store, err = pebblestore.Open(pebblestore.Config{Dir: m.stateDir, CacheSize: 8 << 20, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	server, client := memberTLS(t, c.ca, m.id)
	cfg := Config{
		NodeID:    m.id,
		Listener:  ln,
		DataDir:   m.dir,
		Store:     m.store,
		TLSServer: server,
		TLSClient: client,
		Bootstrap: bootstrap,
		Peers:     c.peers(),
		Logger:    testLogger().With("member", m.id),
	}
	fastRaft(&cfg)
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	if m.tweak != nil {
		m.tweak(&cfg)
	}
	m.g, err = NewGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// listenRetry binds a port a stopped member held a moment ago.
func listenRetry(addr string) (net.Listener, error) {
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// stop shuts m down without leaving and closes its store.
func (c *cluster) stop(m *member) {
	c.t.Helper()
	if m.g == nil {
		return
	}
	if err := m.g.Shutdown(); err != nil {
		c.t.Errorf("shutdown %s: %v", m.id, err)
	}
	if err := m.store.Close(); err != nil {
		c.t.Errorf("close store of %s: %v", m.id, err)
	}
	m.g = nil
}

// wipe removes m's data: it restarts as a brand-new machine would.
func (c *cluster) wipe(m *member) {
	for _, d := range []string{m.dir, m.stateDir} {
		if err := os.RemoveAll(d); err != nil {
			c.t.Fatal(err)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			c.t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(m.dir); len(entries) != 0 {
		c.t.Fatalf("%s not empty", filepath.Clean(m.dir))
	}
}

func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		if m.g != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.stop(m) }()
		}
	}
	wg.Wait()
}

func (c *cluster) running() []*member {
	var out []*member
	for _, m := range c.members {
		if m.g != nil {
			out = append(out, m)
		}
	}
	return out
}

// leader waits until every running member knows the same leader and it is
// running, and returns it.
func (c *cluster) leader() *member {
	c.t.Helper()
	var l *member
	waitFor(c.t, 10*time.Second, "an agreed leader", func() (bool, string) {
		ids := map[string]bool{}
		for _, m := range c.running() {
			id, _ := m.g.Leader()
			ids[id] = true
		}
		if len(ids) != 1 {
			return false, fmt.Sprintf("leaders seen: %v", ids)
		}
		for _, m := range c.running() {
			if id, _ := m.g.Leader(); id == m.id && m.g.IsLeader() {
				l = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("leader %v not running", ids)
	})
	return l
}

func (c *cluster) followers() []*member {
	var out []*member
	for _, m := range c.running() {
		if !m.g.IsLeader() {
			out = append(out, m)
		}
	}
	return out
}

// converge waits until every running member applied the leader's whole
// log and holds the same replicated state.
func (c *cluster) converge() dump {
	c.t.Helper()
	l := c.leader()
	var want dump
	waitFor(c.t, 10*time.Second, "all members to hold the leader's state", func() (bool, string) {
		commit := l.g.raft.CommitIndex()
		want = dumpStore(c.t, l.store)
		for _, m := range c.running() {
			if applied := m.g.raft.AppliedIndex(); applied < commit {
				return false, fmt.Sprintf("%s applied %d of %d", m.id, applied, commit)
			}
			if got := dumpStore(c.t, m.store); !got.equal(want) {
				return false, fmt.Sprintf("%s: %d twins, leader %d", m.id, len(got.Twins), len(want.Twins))
			}
		}
		return true, ""
	})
	return want
}

func update(tenant string, i int, expected uint64, snap string) TwinUpdate {
	return TwinUpdate{Tenant: tenant, Kind: pebblestore.KindSensor, EUI: eui(i), ExpectedVersion: expected, Epoch: 1, AppliedSeq: expected + 1, Snapshot: []byte(snap)}
}

// proposeRetry proposes b (single-twin updates or offsets only) until the
// outcome is known: after ErrOutcomeUnknown or ErrNoLeader (a leader change
// on a loaded machine) it re-proposes, and a refusal saying every twin is
// now exactly one version past what b expected means the earlier attempt
// committed.
func proposeRetry(ctx context.Context, g *Group, b Batch, retried *bool) (Response, error) {
	for {
		r, err := g.Propose(ctx, b)
		if errorsIsAny(err, ErrOutcomeUnknown, ErrNoLeader) && ctx.Err() == nil {
			*retried = true
			continue
		}
		if *retried && errors.Is(err, ErrStaleVersion) && len(r.Stale) == len(b.Twins) {
			mine := true
			for i, s := range r.Stale {
				mine = mine && s.Current == b.Twins[i].ExpectedVersion+1
			}
			if mine {
				return Response{Status: StatusApplied, Index: r.Index}, nil
			}
		}
		return r, err
	}
}

// proposeKnown proposes b until the outcome is known, without guessing:
// for proposals expected to be refused (a duplicate refusal is harmless).
func proposeKnown(ctx context.Context, g *Group, b Batch) (Response, error) {
	for {
		r, err := g.Propose(ctx, b)
		if errorsIsAny(err, ErrOutcomeUnknown, ErrNoLeader) && ctx.Err() == nil {
			continue
		}
		return r, err
	}
}
