package placement

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/api/tlsconf"
	"github.com/legionelladossier/legiond/cluster/replication"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// A real cluster: 3 replication.Groups on loopback with mutual TLS 1.3 and
// Pebble stores in temp dirs, each member running RunCoordinator and
// RunMember with the default FailAfter and Lease, serving through one
// shared recorder.

const clusterPartitions = 12

// nodeView is what a node hands RunMember: its group plus its replicated
// store's offsets.
type nodeView struct {
	*replication.Group
	store *pebblestore.Store
}

func (v nodeView) Offsets(ctx context.Context) (map[pebblestore.TopicPartition]int64, error) {
	return v.store.Offsets(ctx)
}

type node struct {
	id     string
	addr   string
	store  *pebblestore.Store
	g      *replication.Group
	cancel context.CancelFunc
	done   chan struct{}
	dead   bool
}

type testCluster struct {
	t     *testing.T
	rec   *recorder
	nodes []*node
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

// startCluster starts 3 members (the first bootstraps) and their placement
// loops.
func startCluster(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{t: t, rec: newRecorder()}
	ca := newDevCA(t)
	lns := make([]net.Listener, 3)
	var peers []replication.Peer
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		n := &node{id: fmt.Sprintf("node-%d", i+1), addr: ln.Addr().String(), done: make(chan struct{})}
		c.nodes = append(c.nodes, n)
		peers = append(peers, replication.Peer{ID: n.id, Address: n.addr})
	}
	t.Cleanup(c.shutdown)
	for i, n := range c.nodes {
		var err error
		n.store, err = pebblestore.Open(pebblestore.Config{Dir: t.TempDir(), CacheSize: 8 << 20, MemTableSize: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		server, client := memberTLS(t, ca, n.id)
		n.g, err = replication.NewGroup(replication.Config{
			NodeID: n.id, Listener: lns[i], DataDir: t.TempDir(), Store: n.store,
			TLSServer: server, TLSClient: client, Bootstrap: i == 0, Peers: peers,
			Logger: testLogger().With("member", n.id),
			// Test timings, as in cluster/replication's tests.
			HeartbeatTimeout: 250 * time.Millisecond, ElectionTimeout: 250 * time.Millisecond,
			LeaderLeaseTimeout: 200 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
			ApplyTimeout: 5 * time.Second, DialTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.g.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		ctx, cancel := context.WithCancel(context.Background())
		n.cancel = cancel
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := RunCoordinator(ctx, CoordinatorConfig{Group: n.g, Partitions: clusterPartitions, Logger: testLogger().With("member", n.id)}); err != nil {
				t.Errorf("coordinator %s: %v", n.id, err)
			}
		}()
		go func() {
			defer wg.Done()
			// A crashed member's final revocations fail: its error is expected.
			_ = RunMember(ctx, MemberConfig{NodeID: n.id, View: nodeView{n.g, n.store}, Target: c.rec.target(n.id), Topics: testTopics, Logger: testLogger()})
		}()
		go func() { wg.Wait(); close(n.done) }()
	}
	return c
}

func (c *testCluster) shutdown() {
	for _, n := range c.nodes {
		if n.cancel != nil {
			n.cancel()
			<-n.done
		}
	}
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if !n.dead && n.g != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.stop(n) }()
		}
	}
	wg.Wait()
}

func (c *testCluster) stop(n *node) {
	if err := n.g.Shutdown(); err != nil {
		c.t.Errorf("shutdown %s: %v", n.id, err)
	}
	if err := n.store.Close(); err != nil {
		c.t.Errorf("close store of %s: %v", n.id, err)
	}
}

// crash kills n as a crashed process would: it serves nothing from now on,
// its loops stop and its group shuts down without leaving.
func (c *testCluster) crash(n *node) {
	c.rec.crash(n.id)
	n.dead = true
	n.cancel()
	<-n.done
	c.stop(n)
}

func (c *testCluster) live() []*node {
	var out []*node
	for _, n := range c.nodes {
		if !n.dead {
			out = append(out, n)
		}
	}
	return out
}

func (c *testCluster) leader() *node {
	c.t.Helper()
	var l *node
	waitFor(c.t, 10*time.Second, "a leader", func() (bool, string) {
		for _, n := range c.live() {
			if n.g.IsLeader() {
				l = n
				return true, ""
			}
		}
		return false, "none"
	})
	return l
}

// waitServed waits until every partition is served by exactly one live
// member, each live member serving its balanced share, and returns how long
// that took.
func (c *testCluster) waitServed(since time.Time, bound time.Duration, what string) time.Duration {
	c.t.Helper()
	var took time.Duration
	live := c.live()
	waitFor(c.t, bound+5*time.Second, what, func() (bool, string) {
		owners := c.rec.owners(clusterPartitions)
		per := map[string]int{}
		for p, o := range owners {
			if o == "" || o == "*" || !slices.ContainsFunc(live, func(n *node) bool { return n.id == o }) {
				return false, fmt.Sprintf("partition %d served by %q: %q", p, o, owners)
			}
			per[o]++
		}
		for _, n := range live {
			if k := per[n.id]; k < clusterPartitions/len(live) || k > (clusterPartitions+len(live)-1)/len(live) {
				return false, fmt.Sprintf("%s serves %d: %q", n.id, k, owners)
			}
		}
		took = time.Since(since)
		return true, ""
	})
	if took > bound {
		c.t.Fatalf("%s took %s, bound %s", what, took, bound)
	}
	return took
}

// checkShares checks that each live member serves exactly what every live
// member's applied assignment gives it.
func (c *testCluster) checkShares() {
	c.t.Helper()
	waitFor(c.t, 5*time.Second, "every member to apply the same assignment", func() (bool, string) {
		want := c.live()[0].g.Assignment()
		for _, n := range c.live() {
			a := n.g.Assignment()
			if a.Epoch != want.Epoch || !slices.Equal(a.Owners, want.Owners) {
				return false, fmt.Sprintf("%s at epoch %d, %s at %d", n.id, a.Epoch, c.live()[0].id, want.Epoch)
			}
			if got := c.rec.servedBy(n.id); !slices.Equal(got, a.Owned(n.id)) {
				return false, fmt.Sprintf("%s serves %v, owns %v", n.id, got, a.Owned(n.id))
			}
		}
		return true, ""
	})
}

func (c *testCluster) checkNoOverlap() {
	c.t.Helper()
	if o := c.rec.overlapList(); len(o) != 0 {
		c.t.Fatalf("a partition was served twice: %q", o)
	}
}

// commitOffsets stores an offset of lorawan.uplink for every partition
// through Raft, as twin batches would.
func (c *testCluster) commitOffsets(base int64) {
	c.t.Helper()
	var offs []replication.Offset
	for p := range int32(clusterPartitions) {
		offs = append(offs, replication.Offset{Topic: testTopics[0], Partition: p, Next: base + int64(p)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := c.leader().g.Propose(ctx, replication.Batch{Offsets: offs}); err != nil || r.Status != replication.StatusApplied {
		c.t.Fatalf("propose offsets: %+v, %v", r, err)
	}
}

// checkStarts checks that member id started partitions ps at the offsets
// committed before.
func (c *testCluster) checkStarts(id string, ps []int, base int64) {
	c.t.Helper()
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	for _, p := range ps {
		if got := c.rec.starts[id][p][testTopics[0]]; got != base+int64(p) {
			c.t.Errorf("%s started partition %d at %d, want %d", id, p, got, base+int64(p))
		}
	}
}

// (a) + (b) + (e): initial placement, then a follower crashes.
func TestClusterFollowerCrash(t *testing.T) {
	start := time.Now()
	c := startCluster(t)
	took := c.waitServed(start, 10*time.Second, "initial placement")
	c.checkShares()
	t.Logf("initial placement: %d partitions over 3 members served %s after the groups started", clusterPartitions, took.Round(time.Millisecond))

	c.commitOffsets(1000)
	l := c.leader()
	var victim *node
	for _, n := range c.nodes {
		if n != l {
			victim = n
			break
		}
	}
	moved := c.rec.servedBy(victim.id)
	crashed := time.Now()
	c.crash(victim)
	took = c.waitServed(crashed, 5*time.Second, "failover after a follower crash")
	t.Logf("follower %s crashed: its %d partitions served elsewhere after %s (FailAfter %s, Lease %s)",
		victim.id, len(moved), took.Round(time.Millisecond), DefaultFailAfter, DefaultLease)
	c.checkShares()
	for _, n := range c.live() {
		c.checkStarts(n.id, slices.DeleteFunc(c.rec.servedBy(n.id), func(p int) bool { return !slices.Contains(moved, p) }), 1000)
	}
	c.checkNoOverlap()
}

// (c) + (e): the leader crashes.
func TestClusterLeaderCrash(t *testing.T) {
	c := startCluster(t)
	c.waitServed(time.Now(), 10*time.Second, "initial placement")
	c.checkShares()
	c.commitOffsets(5000)
	victim := c.leader()
	moved := c.rec.servedBy(victim.id)
	crashed := time.Now()
	c.crash(victim)
	took := c.waitServed(crashed, 5*time.Second, "failover after the leader crashed")
	newLeader := c.leader()
	t.Logf("leader %s crashed: its %d partitions served elsewhere after %s (new leader %s; FailAfter %s, Lease %s)",
		victim.id, len(moved), took.Round(time.Millisecond), newLeader.id, DefaultFailAfter, DefaultLease)
	c.checkShares()
	for _, n := range c.live() {
		c.checkStarts(n.id, slices.DeleteFunc(c.rec.servedBy(n.id), func(p int) bool { return !slices.Contains(moved, p) }), 5000)
	}
	c.checkNoOverlap()
}
