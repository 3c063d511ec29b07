package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestGroup runs scenarios on one 3-member cluster (real TCP on loopback,
// mutual TLS, Pebble in temp dirs); they build on each other's state.
func TestGroup(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.leader()

	t.Run("concurrent proposals from every member replicate to all", func(t *testing.T) {
		const twins, versions = 48, 8
		ctx := ctxT(t, 20*time.Second)
		var wg sync.WaitGroup
		errs := make(chan error, twins)
		for i := range twins {
			m := c.members[i%3] // leader and followers alike
			wg.Add(1)
			go func() {
				defer wg.Done()
				for v := range uint64(versions) {
					b := Batch{
						Twins:   []TwinUpdate{update(tenantA, i, v, fmt.Sprintf("twin %d v%d", i, v+1))},
						Offsets: []Offset{uplink(int32(i%4), int64(i*versions)+int64(v)+1)},
					}
					var retried bool
					r, err := proposeRetry(ctx, m.g, b, &retried)
					if err != nil || r.Status != StatusApplied || r.Index == 0 {
						errs <- fmt.Errorf("twin %d v%d via %s: %+v, %w", i, v, m.id, r, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got := c.converge()
		if len(got.Twins) != twins || len(got.Offsets) != 4 {
			t.Fatalf("replicated %d twins, %d offsets", len(got.Twins), len(got.Offsets))
		}
		for p := range int32(4) {
			// The highest offset of each partition, whatever the commit order.
			want := int64((twins-4+int(p))*versions + versions)
			if off := got.Offsets[pebblestore.TopicPartition{Topic: "lorawan.uplink", Partition: p}]; off != want {
				t.Fatalf("partition %d offset %d, want %d", p, off, want)
			}
		}
		var props, cmds, fwd uint64
		for _, m := range c.members {
			st := m.g.Stats(ctx)
			props += st.Proposals
			cmds += st.Commands
			if m != leader {
				fwd += st.ForwardedOut
			}
		}
		if fwd == 0 {
			t.Fatal("followers forwarded nothing")
		}
		t.Logf("%d proposals in %d raft entries (%.1f per entry), %d forwarded entries", props, cmds, float64(props)/float64(cmds), fwd)
	})

	t.Run("a follower's proposal is forwarded to the leader", func(t *testing.T) {
		f := c.followers()[0]
		before := f.g.Stats(context.Background()).ForwardedOut
		var retried bool
		r, err := proposeRetry(ctxT(t, 5*time.Second), f.g, Batch{Twins: []TwinUpdate{update(tenantB, 7, 0, "from a follower")}}, &retried)
		if err != nil || r.Status != StatusApplied {
			t.Fatalf("Propose on follower: %+v, %v", r, err)
		}
		if after := f.g.Stats(context.Background()).ForwardedOut; after < before+1 || (!retried && after != before+1) {
			t.Fatalf("ForwardedOut %d → %d", before, after)
		}
		c.converge()
		rec, err := f.store.LoadTwin(context.Background(), tenantB, pebblestore.KindSensor, eui(7))
		if err != nil || rec.Version != 1 {
			t.Fatalf("follower's own store: %+v, %v", rec, err)
		}
	})

	t.Run("fencing is decided identically on every member", func(t *testing.T) {
		ctx := ctxT(t, 10*time.Second)
		fs := c.followers()
		staleBefore := map[string]uint64{}
		for _, m := range c.members {
			staleBefore[m.id] = m.g.Stats(ctx).BatchesStale
		}
		x := func(exp uint64, s string) TwinUpdate { return update(tenantB, 100, exp, s) }
		var retried bool
		if _, err := proposeRetry(ctx, fs[0].g, Batch{Twins: []TwinUpdate{x(0, "x1")}}, &retried); err != nil {
			t.Fatal(err)
		}
		// A second activation that loaded version 0 too.
		r, err := proposeKnown(ctx, fs[1].g, Batch{Twins: []TwinUpdate{x(0, "x1 from a stale activation")}})
		if !errors.Is(err, ErrStaleVersion) || r.Status != StatusStale || len(r.Stale) != 1 || r.Stale[0].Current != 1 {
			t.Fatalf("stale proposal: %+v, %v", r, err)
		}
		// A batch with one stale twin is refused whole, offsets included.
		r, err = proposeKnown(ctx, leader.g, Batch{
			Twins:   []TwinUpdate{update(tenantB, 101, 0, "fresh"), x(0, "stale")},
			Offsets: []Offset{{Topic: "fenced.topic", Partition: 0, Next: 99}},
		})
		if !errors.Is(err, ErrStaleVersion) || len(r.Stale) != 1 || r.Stale[0].EUI != eui(100) {
			t.Fatalf("mixed batch: %+v, %v", r, err)
		}
		// Three activations racing from three members: one wins. (After
		// an unknown outcome a racer re-proposes and may then see its own
		// win as stale: wins ≤ 1, and the store says who won.)
		var wins, stales atomic.Int32
		var winner atomic.Value
		var wg sync.WaitGroup
		for _, m := range []*member{fs[0], fs[1], leader} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := proposeKnown(ctx, m.g, Batch{Twins: []TwinUpdate{update(tenantB, 102, 0, "racer "+m.id)}})
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store("racer " + m.id)
				case errors.Is(err, ErrStaleVersion):
					stales.Add(1)
				default:
					t.Errorf("racer %s: %v", m.id, err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() > 1 || wins.Load()+stales.Load() != 3 {
			t.Fatalf("race: %d wins, %d stale", wins.Load(), stales.Load())
		}
		c.converge()
		for _, m := range c.members {
			rec, err := m.store.LoadTwin(ctx, tenantB, pebblestore.KindSensor, eui(102))
			if err != nil || rec.Version != 1 || (wins.Load() == 1 && string(rec.Snapshot) != winner.Load()) {
				t.Fatalf("%s: raced twin %+v, %v; winner %v", m.id, rec, err, winner.Load())
			}
		}
		staleCounts := map[uint64]bool{}
		for _, m := range c.members {
			if _, err := m.store.LoadTwin(ctx, tenantB, pebblestore.KindSensor, eui(101)); !errors.Is(err, pebblestore.ErrNotFound) {
				t.Fatalf("%s stored the fresh twin of a refused batch: %v", m.id, err)
			}
			offs, _ := m.store.Offsets(ctx)
			if _, ok := offs[pebblestore.TopicPartition{Topic: "fenced.topic"}]; ok {
				t.Fatalf("%s stored the offset of a refused batch", m.id)
			}
			n := m.g.Stats(ctx).BatchesStale - staleBefore[m.id]
			if n < 4 {
				t.Fatalf("%s refused %d batches, want ≥ 4", m.id, n)
			}
			staleCounts[n] = true
		}
		if len(staleCounts) != 1 {
			t.Fatalf("members refused different numbers of batches: %v", staleCounts)
		}
	})

	t.Run("a member with a certificate from another CA is refused", func(t *testing.T) {
		rogueCA := newDevCA(t)
		target := c.members[1].addr
		refusedBefore := c.members[1].g.Stats(context.Background()).RefusedConns

		// Raw connections: a foreign client certificate, no certificate,
		// and TLS 1.2, each for both protocols.
		foreign, err := rogueCA.IssueClientCert("rogue")
		if err != nil {
			t.Fatal(err)
		}
		trustCluster := c.ca.ClientConfig() // the rogue may trust the cluster's server cert…
		withForeign := trustCluster.Clone()
		withForeign.Certificates = []tls.Certificate{foreign} // …but its own cert is foreign
		tls12 := trustCluster.Clone()
		_, own := memberTLS(t, c.ca, "node-x")
		tls12.Certificates = own.Certificates
		tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		for _, tc := range []struct {
			name string
			cfg  *tls.Config
		}{{"foreign certificate", withForeign}, {"no certificate", trustCluster}, {"TLS 1.2", tls12}} {
			for _, proto := range []string{alpnRaft, alpnForward} {
				if err := probe(target, tc.cfg, proto); err == nil {
					t.Fatalf("%s over %s: the member accepted the connection", tc.name, proto)
				}
			}
		}
		// The cluster's own certificate passes the same probe.
		if err := probe(target, own, alpnForward); err != nil {
			t.Fatalf("a valid member certificate was refused: %v", err)
		}

		// A rogue member (its own CA for everything) cannot join.
		rogueLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		rogueServer, rogueClient := memberTLS(t, rogueCA, "rogue")
		rogueStore := memStateStore(t)
		cfg := Config{NodeID: "rogue", Listener: rogueLn, DataDir: t.TempDir(), Store: rogueStore,
			TLSServer: rogueServer, TLSClient: rogueClient, Peers: c.peers(), Logger: testLogger()}
		fastRaft(&cfg)
		rogue, err := NewGroup(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := rogue.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer rogue.Shutdown()
		err = rogue.Join(ctxT(t, 3*time.Second))
		if !errors.Is(err, ErrTLS) {
			t.Fatalf("rogue Join = %v, want ErrTLS", err)
		}
		// Even if an operator adds it by mistake, the cluster's members
		// do not accept its server certificate either: it gets no data.
		if _, err := rogue.Propose(ctxT(t, 300*time.Millisecond), Batch{Offsets: []Offset{uplink(0, 1)}}); err == nil {
			t.Fatal("rogue proposal succeeded")
		}
		cf := leader.g.raft.GetConfiguration()
		if err := cf.Error(); err != nil || len(cf.Configuration().Servers) != 3 {
			t.Fatalf("configuration after the rogue's attempts: %+v, %v", cf.Configuration().Servers, err)
		}
		if d := dumpStore(t, rogueStore); len(d.Twins) != 0 {
			t.Fatalf("rogue holds %d twins", len(d.Twins))
		}
		if after := c.members[1].g.Stats(context.Background()).RefusedConns; after <= refusedBefore {
			t.Fatalf("RefusedConns %d → %d", refusedBefore, after)
		}
	})

	t.Run("a member joins at run time, catches up and is removed", func(t *testing.T) {
		ctx := ctxT(t, 15*time.Second)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m := &member{id: "node-4", addr: ln.Addr().String()}
		c.members = append(c.members, m)
		c.start(m, ln, false)
		if err := m.g.Join(ctx); err != nil {
			t.Fatal(err)
		}
		want := c.converge()
		if got := dumpStore(t, m.store); !got.equal(want) || len(got.Twins) == 0 {
			t.Fatalf("new member holds %d twins, want %d", len(got.Twins), len(want.Twins))
		}
		var retried bool
		if _, err := proposeRetry(ctx, m.g, Batch{Twins: []TwinUpdate{update(tenantA, 4444, 0, "via node-4")}}, &retried); err != nil {
			t.Fatal(err)
		}
		st := c.leader().g.Stats(ctx)
		if len(st.Peers) != 3 {
			t.Fatalf("leader sees %d peers: %+v", len(st.Peers), st.Peers)
		}
		for _, p := range st.Peers {
			if p.Err != "" || p.LastIndex == 0 {
				t.Fatalf("peer stats %+v", p)
			}
		}
		// Removal through a follower (forwarded to the leader).
		if err := c.followers()[0].g.RemoveServer(ctx, m.id); err != nil {
			t.Fatal(err)
		}
		cf := c.leader().g.raft.GetConfiguration()
		if err := cf.Error(); err != nil || len(cf.Configuration().Servers) != 3 {
			t.Fatalf("configuration after removal: %+v, %v", cf.Configuration().Servers, err)
		}
		c.stop(m)
		c.members = c.members[:3]
		c.converge()
	})
}

// probe dials addr with cfg offering proto and makes one round trip: with
// TLS 1.3 the server checks the client certificate after the client's side
// of the handshake, so a refusal shows on the first read.
func probe(addr string, cfg *tls.Config, proto string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := cfg.Clone()
	c.NextProtos = []string{proto}
	c.ServerName = "127.0.0.1"
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	tc := tls.Client(raw, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
	if proto == alpnRaft {
		// A raft RequestVote would need msgpack; any byte makes the
		// server answer or hang up. Reading shows whether we were refused.
		if _, err := tc.Write([]byte{0xff}); err != nil {
			return err
		}
		_, err := tc.Read(make([]byte, 1))
		if errors.Is(err, io.EOF) {
			return nil // accepted, then closed on the bad rpc type
		}
		if isTLSRefusal(err) {
			return err
		}
		return nil
	}
	if err := writeFrame(bufio.NewWriter(tc), opStatus, nil); err != nil {
		return err
	}
	code, _, err := readFrame(bufio.NewReader(tc), 1<<20)
	if err != nil {
		return err
	}
	if code != codeOK {
		return fmt.Errorf("status code %d", code)
	}
	return nil
}

func TestLeaderFailover(t *testing.T) {
	c := newCluster(t, 3, nil)
	old := c.leader()
	fs := c.followers()

	// Each proposer owns twins on one follower and proposes versions in
	// sequence; it records what was acknowledged. On an unknown outcome it
	// re-proposes the same update: fencing reports the version if the
	// first attempt did commit.
	type proposer struct {
		m     *member
		base  int
		acked map[int]uint64 // twin → last acknowledged version
		n     atomic.Int64   // acknowledgements
		err   error
	}
	const twinsPer = 4
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ps []*proposer
	for i, f := range fs {
		p := &proposer{m: f, base: 1000 * (i + 1), acked: map[int]uint64{}}
		ps = append(ps, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				tw := p.base + k%twinsPer
				v := p.acked[tw]
				for {
					r, err := p.m.g.Propose(ctx, Batch{
						Twins:   []TwinUpdate{update(tenantA, tw, v, fmt.Sprintf("%d v%d", tw, v+1))},
						Offsets: []Offset{uplink(int32(p.base), int64(k+1))},
					})
					if err == nil {
						p.acked[tw] = v + 1
						p.n.Add(1)
						break
					}
					if errors.Is(err, ErrStaleVersion) && len(r.Stale) == 1 && r.Stale[0].Current == v+1 {
						p.acked[tw] = v + 1 // our earlier attempt committed
						p.n.Add(1)
						break
					}
					if errorsIsAny(err, ErrOutcomeUnknown, ErrNoLeader) {
						continue
					}
					p.err = fmt.Errorf("twin %d v%d: %+v %w", tw, v, r, err)
					return
				}
			}
		}()
	}
	acks := func() int64 { return ps[0].n.Load() + ps[1].n.Load() }
	waitFor(t, 10*time.Second, "acknowledgements before the kill", func() (bool, string) { return acks() >= 40, fmt.Sprint(acks()) })

	killedAt := time.Now()
	c.stop(old) // no leave: the others must notice
	nl := c.leader()
	if nl == old {
		t.Fatal("the killed member is still leader")
	}
	elected := time.Since(killedAt)
	atKill := acks()
	waitFor(t, 10*time.Second, "acknowledgements after the new election", func() (bool, string) {
		return acks() >= atKill+40, fmt.Sprint(acks() - atKill)
	})
	close(stop)
	wg.Wait()
	for _, p := range ps {
		if p.err != nil {
			t.Fatal(p.err)
		}
	}
	got := c.converge()
	_ = got
	for _, m := range c.running() {
		for _, p := range ps {
			for tw, v := range p.acked {
				rec, err := m.store.LoadTwin(context.Background(), tenantA, pebblestore.KindSensor, eui(tw))
				if err != nil || rec.Version != v || string(rec.Snapshot) != fmt.Sprintf("%d v%d", tw, v) {
					t.Fatalf("%s: twin %d = %+v, %v; acknowledged v%d", m.id, tw, rec, err, v)
				}
			}
		}
	}
	t.Logf("new leader %s elected %s after the kill; %d acks before, %d after", nl.id, elected.Round(time.Millisecond), atKill, acks()-atKill)
}

func TestRestartWithEmptyDataDir(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.TrailingLogs = 4
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when asked
		cfg.SnapshotInterval = time.Hour
	})
	ctx := ctxT(t, 20*time.Second)
	l := c.leader()
	propose := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			var retried bool
			if _, err := proposeRetry(ctx, l.g, Batch{
				Twins:   []TwinUpdate{update(tenantA, i, 0, fmt.Sprintf("twin %d", i))},
				Offsets: []Offset{uplink(0, int64(i+1))},
			}, &retried); err != nil {
				t.Fatal(err)
			}
		}
	}
	propose(0, 30)
	c.converge()
	f := c.followers()[0]
	c.stop(f)
	c.wipe(f)
	propose(30, 30)
	// Compact the leader's log: the wiped member can only catch up from a
	// snapshot now.
	if err := l.g.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if first, _ := l.g.logs.FirstIndex(); first <= 1 {
		t.Fatalf("leader log not compacted: first index %d", first)
	}
	c.start(f, nil, false)
	want := c.converge()
	st := f.g.Stats(ctx)
	if st.SnapshotRestores != 1 {
		t.Fatalf("wiped member restored %d snapshots, want 1", st.SnapshotRestores)
	}
	if len(want.Twins) != 60 {
		t.Fatalf("%d twins", len(want.Twins))
	}
	// It follows the log after the snapshot.
	propose(60, 5)
	c.converge()

	// A restart with its data is cheap: raft hands the FSM its latest
	// snapshot, which the store is already beyond, and replays the log.
	c.stop(f)
	c.start(f, nil, false)
	c.converge()
	st = f.g.Stats(ctx)
	if st.SnapshotRestores != 0 || st.SnapshotRestoresSkipped != 1 {
		t.Fatalf("restart with data: %d restores, %d skipped; want 0 and 1", st.SnapshotRestores, st.SnapshotRestoresSkipped)
	}
}

func TestProposeLifecycle(t *testing.T) {
	c := newCluster(t, 1, nil)
	m := c.members[0]
	c.leader()
	ctx := ctxT(t, 5*time.Second)
	if _, err := m.g.Propose(ctx, Batch{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty batch: %v", err)
	}
	big := Batch{Twins: []TwinUpdate{{Tenant: tenantA, Kind: pebblestore.KindSensor, Snapshot: make([]byte, DefaultMaxCommandBytes)}}}
	if _, err := m.g.Propose(ctx, big); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized batch: %v", err)
	}
	if r, err := m.g.Propose(ctx, Batch{Offsets: []Offset{uplink(0, 1)}}); err != nil || r.Status != StatusApplied {
		t.Fatalf("single-member propose: %+v, %v", r, err)
	}
	g := m.g
	c.stop(m)
	if _, err := g.Propose(ctx, Batch{Offsets: []Offset{uplink(0, 2)}}); !errors.Is(err, ErrShutdown) {
		t.Fatalf("propose after shutdown: %v", err)
	}
	unstarted, err := NewGroup(validConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unstarted.Propose(ctx, Batch{Offsets: []Offset{uplink(0, 2)}}); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("propose before start: %v", err)
	}
}

func TestStartRefusesStateAheadOfLog(t *testing.T) {
	c := newCluster(t, 1, nil)
	m := c.members[0]
	c.leader()
	var retried bool
	if _, err := proposeRetry(ctxT(t, 5*time.Second), m.g, Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "x")}}, &retried); err != nil {
		t.Fatal(err)
	}
	c.stop(m)
	// Only the raft data is lost; the state store still says index ≥ 3.
	if err := os.RemoveAll(m.dir); err != nil {
		t.Fatal(err)
	}
	store, err := pebblestore.Open(pebblestore.Config{Dir: m.stateDir})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	server, client := memberTLS(t, c.ca, m.id)
	cfg := Config{NodeID: m.id, BindAddr: "127.0.0.1:0", DataDir: t.TempDir(), Store: store, TLSServer: server, TLSClient: client, Bootstrap: true}
	fastRaft(&cfg)
	g, err := NewGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); !errors.Is(err, ErrState) {
		_ = g.Shutdown()
		t.Fatalf("Start over a store ahead of the log: %v, want ErrState", err)
	}
}

func validConfig(t *testing.T) Config {
	ca := newDevCA(t)
	server, client := memberTLS(t, ca, "n1")
	return Config{NodeID: "n1", BindAddr: "127.0.0.1:0", DataDir: t.TempDir(), Store: memStateStore(t), TLSServer: server, TLSClient: client}
}

func TestConfigValidate(t *testing.T) {
	base := validConfig(t)
	noClientAuth := base.TLSServer.Clone()
	noClientAuth.ClientAuth = tls.NoClientCert
	tls12 := base.TLSServer.Clone()
	tls12.MinVersion = tls.VersionTLS12
	insecure := base.TLSClient.Clone()
	insecure.InsecureSkipVerify = true
	noCert := base.TLSClient.Clone()
	noCert.Certificates = nil
	tests := []struct {
		name   string
		change func(*Config)
		want   error
	}{
		{"valid", func(*Config) {}, nil},
		{"no node id", func(c *Config) { c.NodeID = "" }, ErrInvalid},
		{"no address", func(c *Config) { c.BindAddr = "" }, ErrInvalid},
		{"no data dir", func(c *Config) { c.DataDir = "" }, ErrInvalid},
		{"no store", func(c *Config) { c.Store = nil }, ErrInvalid},
		{"unspecified advertise address", func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7000" }, ErrInvalid},
		{"peer without address", func(c *Config) { c.Peers = []Peer{{ID: "n2"}} }, ErrInvalid},
		{"lease above heartbeat", func(c *Config) {
			c.HeartbeatTimeout = 100 * time.Millisecond
			c.LeaderLeaseTimeout = 200 * time.Millisecond
		}, ErrInvalid},
		{"election below heartbeat", func(c *Config) {
			c.HeartbeatTimeout = 300 * time.Millisecond
			c.ElectionTimeout = 100 * time.Millisecond
		}, ErrInvalid},
		{"no server TLS", func(c *Config) { c.TLSServer = nil }, ErrTLS},
		{"client certificates not required", func(c *Config) { c.TLSServer = noClientAuth }, ErrTLS},
		{"TLS 1.2 server", func(c *Config) { c.TLSServer = tls12 }, ErrTLS},
		{"no client TLS", func(c *Config) { c.TLSClient = nil }, ErrTLS},
		{"client skips verification", func(c *Config) { c.TLSClient = insecure }, ErrTLS},
		{"client without certificate", func(c *Config) { c.TLSClient = noCert }, ErrTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.change(&cfg)
			err := cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestCall: an application request reaches the named member's Serve over
// the mutual-TLS port; its error comes back as ErrRemote.
func TestCall(t *testing.T) {
	c := newCluster(t, 2, func(cfg *Config) {
		id := cfg.NodeID
		cfg.Serve = func(_ context.Context, req []byte) ([]byte, error) {
			if string(req) == "fail" {
				return nil, errors.New("refused by " + id)
			}
			return append([]byte(id+":"), req...), nil
		}
	})
	ctx := ctxT(t, 10*time.Second)
	l := c.leader()
	other := c.followers()[0]
	got, err := l.g.Call(ctx, other.g.cfg.NodeID, []byte("hello"))
	if err != nil || string(got) != other.g.cfg.NodeID+":hello" {
		t.Fatalf("Call = %q, %v", got, err)
	}
	if _, err := l.g.Call(ctx, other.g.cfg.NodeID, []byte("fail")); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "refused by") {
		t.Fatalf("Call of a failing request: %v, want ErrRemote with its text", err)
	}
	if _, err := l.g.Call(ctx, "nobody", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Call of a non-member: %v, want ErrInvalid", err)
	}
}
