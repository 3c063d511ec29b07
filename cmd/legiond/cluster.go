package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/actors"
	"github.com/legionelladossier/legiond/api/services"
	"github.com/legionelladossier/legiond/api/tlsconf"
	"github.com/legionelladossier/legiond/cluster/placement"
	"github.com/legionelladossier/legiond/cluster/replication"
	"github.com/legionelladossier/legiond/devicetwin"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
)

// clusterConfig makes a node a member of a cluster: its twin states and
// offsets are replicated through Raft, and the partitions it consumes are
// assigned by the Raft leader (cluster/placement) instead of Kafka's group
// protocol.
type clusterConfig struct {
	// NodeID is the member's stable identity. Required.
	NodeID string
	// BindAddr is the mutual-TLS port for Raft and forwarded proposals;
	// AdvertiseAddr what peers dial (default: the bound address).
	BindAddr, AdvertiseAddr string
	// Peers are the initial voters (with Bootstrap) or the members Join
	// asks to be added through.
	Peers []replication.Peer
	// Bootstrap creates a new cluster with Peers; Join asks Peers to add
	// this member. Neither: restart of an existing member.
	Bootstrap, Join bool
	// CADir is a development CA folder shared by the members (the CA's
	// key signs each member's client certificate at start). Production
	// uses CAFile, CertFile and KeyFile instead (the certificate must
	// allow both server and client authentication).
	CADir                     string
	CAFile, CertFile, KeyFile string
	FailAfter, Lease          time.Duration // placement timing; defaults 2 s and 1.5 s
	// FaultInjection lets SIGUSR1 cut the member off its peers and
	// SIGUSR2 heal it (fault tests and drills only).
	FaultInjection             bool
	HeartbeatTimeout, Election time.Duration // raft timing; defaults 500 ms
}

// memberTLS returns the server and client TLS 1.3 configurations of the
// cluster port: both sides present a certificate of the cluster CA.
func (c *clusterConfig) memberTLS() (server, client *tls.Config, err error) {
	if c.CADir != "" {
		ca, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: c.CADir})
		if err != nil {
			return nil, nil, fmt.Errorf("cluster CA: %w", err)
		}
		cert, err := ca.IssueClientCert(c.NodeID)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster CA: %w", err)
		}
		client = ca.ClientConfig()
		client.Certificates = []tls.Certificate{cert}
		return tlsconf.RequireClientCerts(ca.ServerConfig(), ca.Pool()), client, nil
	}
	if c.CAFile == "" || c.CertFile == "" || c.KeyFile == "" {
		return nil, nil, errors.New("cluster: --cluster-ca-dir, or --cluster-ca, --cluster-cert and --cluster-key, are required")
	}
	srv, err := tlsconf.ServerConfig(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: %w", err)
	}
	client, err = tlsconf.ClientConfig(c.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: %w", err)
	}
	client.Certificates = srv.Certificates
	server = tlsconf.RequireClientCerts(srv, client.RootCAs)
	return server, client, nil
}

// clusterPart is a node's cluster machinery.
type clusterPart struct {
	cfg      clusterConfig
	group    *replication.Group
	twins    replication.TwinStore
	seen     *streams.SeenProducer
	consumer *streams.AssignedConsumer
	owned    []atomic.Bool // by partition index
	parts    []int         // 0..N-1 for the balancer
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	faults     *replication.Faults
	stopFaults func()
	// sys is the node's actor system once it exists (the Raft group
	// starts before it and reports its twins to peers).
	sys atomic.Pointer[actors.System]
}

// watchFaultSignals isolates the member on SIGUSR1 and heals it on SIGUSR2.
func watchFaultSignals(f *replication.Faults, log *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				f.Isolate(sig == syscall.SIGUSR1)
				log.Warn("fault injection", "isolated", f.Isolated())
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// startReplication opens the Raft group over the twin store (replica
// mode) and points the actors at it.
func (n *node) startReplication(ctx context.Context, acfg *actors.Config) error {
	cc := *n.cfg.Cluster
	if cc.NodeID == "" {
		return errors.New("node: cluster: a node id is required")
	}
	if cc.FailAfter == 0 {
		cc.FailAfter = placement.DefaultFailAfter
	}
	if cc.Lease == 0 {
		cc.Lease = placement.DefaultLease
	}
	if cc.HeartbeatTimeout == 0 {
		cc.HeartbeatTimeout = 500 * time.Millisecond
	}
	if cc.Election == 0 {
		cc.Election = 500 * time.Millisecond
	}
	srvTLS, cliTLS, err := cc.memberTLS()
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	c := &clusterPart{cfg: cc, owned: make([]atomic.Bool, n.cfg.Partitions)}
	for p := range n.cfg.Partitions {
		c.parts = append(c.parts, p)
	}
	n.cluster = c
	// The Raft log and snapshots hold every twin state: they go through
	// the same encryption at rest as the twin store.
	raftDir := filepath.Join(n.cfg.DataDir, "raft")
	var raftFS vfs.FS
	if n.efs != nil {
		raftDir, raftFS = pebbleDir(n.cfg.DataDir, "raft"), n.efs
	}
	if cc.FaultInjection {
		c.faults = &replication.Faults{}
		c.stopFaults = watchFaultSignals(c.faults, n.log)
	}
	c.group, err = replication.NewGroup(replication.Config{
		NodeID: cc.NodeID, BindAddr: cc.BindAddr, AdvertiseAddr: cc.AdvertiseAddr,
		DataDir: raftDir, FS: raftFS, Faults: c.faults, Store: n.store,
		Serve: n.serveMember,
		ActiveTwins: func() uint64 {
			if sys := c.sys.Load(); sys != nil {
				return uint64(max(sys.Stats().ActiveTwins, 0))
			}
			return 0
		},
		TLSServer: srvTLS, TLSClient: cliTLS, Bootstrap: cc.Bootstrap, Peers: cc.Peers,
		HeartbeatTimeout: cc.HeartbeatTimeout, ElectionTimeout: cc.Election,
		LeaderLeaseTimeout: cc.HeartbeatTimeout / 2,
		Logger:             n.log.With("component", "raft"),
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := c.group.Start(ctx); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if cc.Join {
		if err := c.group.Join(ctx); err != nil {
			return fmt.Errorf("node: join the cluster: %w", err)
		}
	}
	c.twins = replication.TwinStore{Group: c.group, Store: n.store, SkipEvents: true} // the event view writes them
	acfg.Store = c.twins
	acfg.Owns = n.owns
	acfg.GatewaySeen = seenSink{n}
	// Deadlines are scanned per assigned partition (RescanDeadlines).
	acfg.SkipDeadlineScan = true
	return nil
}

// partitionOf is the input partition index of a twin: the partition its
// frames (sensors: keyed by DevAddr) or its stats and uplink-seen records
// (gateways: keyed by EUI) land on under Kafka's default partitioner.
func (n *node) partitionOf(kind pebblestore.Kind, eui pebblestore.EUI) (int, bool) {
	var k string
	switch kind {
	case pebblestore.KindGateway:
		k = streams.GatewayKey(eui[:])
	case pebblestore.KindSensor:
		c, ok := n.cache.Device(postgres.EUI64(eui))
		if !ok || !c.HasSession {
			return 0, false
		}
		k = hex.EncodeToString(c.DevAddr[:]) // streams.DevAddrKey of the frame's DevAddr
	default:
		return 0, false
	}
	var b kafka.Murmur2Balancer
	return b.Balance(kafka.Message{Key: []byte(k)}, n.cluster.parts...), true
}

// alarmCommander is the API's alarm commander of this node: on a cluster
// member it forwards transitions for devices served elsewhere.
func (n *node) alarmCommander() alarmCommander {
	if n.cluster == nil {
		return alarmCommander{sys: n.system}
	}
	return alarmCommander{sys: n.system, owns: n.owns, forward: n.forwardAlarm}
}

// owns reports whether this member serves the twin now.
func (n *node) owns(kind pebblestore.Kind, eui pebblestore.EUI) bool {
	p, ok := n.partitionOf(kind, eui)
	return ok && n.cluster.owned[p].Load()
}

// seenSink sends "gateway heard this uplink" to a gateway twin on another
// member through lorawan.gateway.seen (a repartition topic).
type seenSink struct{ n *node }

func (s seenSink) Local(gw devicetwin.EUI64) bool {
	return s.n.owns(pebblestore.KindGateway, pebblestore.EUI(gw))
}

func (s seenSink) PublishSeen(ctx context.Context, gw devicetwin.EUI64, seen devicetwin.GatewayUplinkSeen, done func(error)) {
	rec := &lorawanv1.GatewayUplinkSeen{
		GatewayEui: append([]byte(nil), gw[:]...), DevEui: append([]byte(nil), seen.DevEUI[:]...),
		Fcnt: seen.FCnt, Rssi: int32(seen.Rx.RSSI), Snr: seen.Rx.SNR, ReceivedAt: timestamppb.New(seen.Rx.ReceivedAt),
	}
	go func() { done(s.n.cluster.seen.PublishSeen(ctx, rec)) }()
}

// HandleGatewaySeen feeds a repartitioned uplink-seen record to the
// gateway's twin.
func (h twinHandler) HandleGatewaySeen(ctx context.Context, _ streams.Record, r *lorawanv1.GatewayUplinkSeen, done func(error)) {
	if len(r.GetGatewayEui()) != 8 || len(r.GetDevEui()) != 8 {
		done(&actors.RejectError{Reason: actors.ReasonMalformed, Detail: "uplink-seen record without 8-byte EUIs"})
		return
	}
	gw, dev := devicetwin.EUI64(r.GetGatewayEui()), devicetwin.EUI64(r.GetDevEui())
	var at time.Time
	if r.GetReceivedAt() != nil {
		at = r.GetReceivedAt().AsTime()
	}
	h.sys.HandleGatewaySeen(ctx, gw, devicetwin.GatewayUplinkSeen{DevEUI: dev, FCnt: r.GetFcnt(),
		Rx: devicetwin.Rx{GatewayEUI: gw, RSSI: int16(r.GetRssi()), SNR: r.GetSnr(), ReceivedAt: at}}, retryAs(done))
}

// startPlacement starts consuming the partitions the leader assigns to
// this member, and the leader's coordinator (active only on the leader).
func (n *node) startPlacement(client streams.ClientConfig) error {
	c := n.cluster
	c.sys.Store(n.system)
	var err error
	c.seen, err = streams.NewSeenProducer(streams.ProducerConfig{Client: client, BatchTimeout: time.Millisecond}, n.smetrics, n.log)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	ccfg := n.cfg.Consumer
	c.consumer, err = streams.NewAssignedConsumer(streams.AssignedConfig{
		Client: client, GroupID: ccfg.GroupID + "-lag", CommitInterval: ccfg.CommitInterval, DrainTimeout: ccfg.DrainTimeout,
		MaxInFlightPerPartition: ccfg.MaxInFlightPerPartition,
		Commit: func(ctx context.Context, offs []streams.Offset) error {
			ro := make([]replication.Offset, len(offs))
			for i, o := range offs {
				ro[i] = replication.Offset{Topic: o.Topic, Partition: int32(o.Partition), Next: o.Next}
			}
			return c.twins.CommitOffsets(ctx, ro)
		},
	}, twinHandler{n.system}, reasonDLQ{n.dlq}, n.smetrics, n.log.With("component", "consumer"))
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	for _, m := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "legiond", Name: "cluster_partitions_owned",
			Help: "Input partitions this member serves."}, func() float64 {
			k := 0
			for i := range c.owned {
				if c.owned[i].Load() {
					k++
				}
			}
			return float64(k)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "legiond", Name: "cluster_leader",
			Help: "1 while this member is the Raft leader."}, func() float64 {
			if c.group.IsLeader() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "legiond", Name: "cluster_assignment_epoch",
			Help: "Epoch of the partition assignment this member applied."}, func() float64 { return float64(c.group.Assignment().Epoch) }),
		replicatedOffsets(n.store),
	} {
		if err := n.reg.Register(m); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	log := n.log.With("component", "placement")
	view, err := newEventView(client, ccfg.GroupID+"-view-"+c.cfg.NodeID, n.store)
	if err != nil {
		cancel()
		return fmt.Errorf("node: %w", err)
	}
	c.wg.Go(func() {
		if err := view.run(ctx); err != nil {
			n.log.Error("event view stopped", "err", err)
		}
	})
	c.wg.Go(func() {
		if err := placement.RunCoordinator(ctx, placement.CoordinatorConfig{
			Group: c.group, Partitions: n.cfg.Partitions, FailAfter: c.cfg.FailAfter, Logger: log,
		}); err != nil {
			log.Error("placement coordinator stopped", "err", err)
		}
	})
	c.wg.Go(func() {
		if err := placement.RunMember(ctx, placement.MemberConfig{
			NodeID: c.cfg.NodeID, View: memberView{c.group, n.store}, Target: servedPartitions{n},
			Topics: c.consumer.Topics(), Lease: c.cfg.Lease, Logger: log,
		}); err != nil {
			log.Error("placement member stopped", "err", err)
		}
	})
	return nil
}

// replicatedOffsets exports the offsets in the replicated state: the
// cluster's real consumer position (every record below it is reflected in
// replicated twin state). The copy in Kafka's "<group>-lag" group is only
// for standard lag tools and may trail it.
func replicatedOffsets(store *pebblestore.Store) prometheus.Collector {
	desc := prometheus.NewDesc("legiond_cluster_replicated_offset",
		"Next offset to consume per input partition, as replicated through Raft.", []string{"topic", "partition"}, nil)
	return collectorFunc{desc: desc, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		offs, err := store.Offsets(ctx)
		if err != nil {
			return
		}
		for tp, next := range offs {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(next), tp.Topic, strconv.Itoa(int(tp.Partition)))
		}
	}}
}

// memberView is the member's replicated view: assignment and leader
// contact from the group, offsets from the replicated store.
type memberView struct {
	*replication.Group
	store *pebblestore.Store
}

func (v memberView) Offsets(ctx context.Context) (map[pebblestore.TopicPartition]int64, error) {
	return v.store.Offsets(ctx)
}

// servedPartitions turns placement decisions into consumption and twins.
type servedPartitions struct{ n *node }

func (s servedPartitions) Assign(ctx context.Context, p int, starts map[string]int64) error {
	c := s.n.cluster
	c.owned[p].Store(true)
	if err := c.consumer.Assign(ctx, p, starts); err != nil {
		c.owned[p].Store(false)
		return err
	}
	go s.n.system.RescanDeadlines(ctx) //nolint:contextcheck // bounded by the member's context
	return nil
}

func (s servedPartitions) Revoke(ctx context.Context, p int) error {
	c := s.n.cluster
	err := c.consumer.Revoke(ctx, p)
	if errors.Is(err, streams.ErrCommit) || errors.Is(err, streams.ErrNotOwned) {
		// Released anyway; the next owner resumes from the last
		// replicated offset (replaying is safe).
		s.n.log.Warn("partition released without its final offset commit", "partition", p, "err", err)
		err = nil
	}
	c.owned[p].Store(false)
	s.n.system.Release(func(kind pebblestore.Kind, eui pebblestore.EUI) bool {
		q, ok := s.n.partitionOf(kind, eui)
		return ok && q == p
	})
	return err
}

// stopPlacement stops consuming: the member revokes (drains and commits)
// what it serves.
func (c *clusterPart) stopPlacement() error {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	var errs []error
	if c.consumer != nil {
		errs = append(errs, c.consumer.Close())
	}
	if c.seen != nil {
		errs = append(errs, c.seen.Close())
	}
	if c.stopFaults != nil {
		c.stopFaults()
	}
	return errors.Join(errs...)
}

// clusterStatus answers the API's cluster status from the Raft group.
type clusterStatus struct{ n *node }

func (s clusterStatus) ClusterStatus(ctx context.Context) (*apiv1.GetClusterStatusResponse, error) {
	g := s.n.cluster.group
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st := g.Stats(ctx)
	a := g.Assignment()
	live := map[string]bool{}
	if ids, ok := g.LiveMembers(s.n.cluster.cfg.FailAfter); ok {
		for _, id := range ids {
			live[id] = true
		}
	}
	parts := func(id string) []uint32 {
		var out []uint32
		for _, p := range a.Owned(id) {
			out = append(out, uint32(p))
		}
		return out
	}
	self := &apiv1.Member{Id: st.NodeID, Address: st.Address, Alive: true, RaftState: st.State,
		ActiveTwins: uint32(s.n.system.Stats().ActiveTwins), Partitions: parts(st.NodeID)}
	resp := &apiv1.GetClusterStatusResponse{Members: []*apiv1.Member{self}, RaftLeader: st.LeaderID, RaftTerm: st.Term,
		AssignmentEpoch: a.Epoch}
	for _, p := range st.Peers {
		alive := p.Err == ""
		if len(live) > 0 {
			alive = live[p.ID]
		}
		resp.Members = append(resp.Members, &apiv1.Member{Id: p.ID, Address: p.Address, Alive: alive, RaftState: p.State,
			ReplicationLag: p.Lag, Partitions: parts(p.ID), ActiveTwins: uint32(min(p.ActiveTwins, 1<<32-1))})
	}
	// Consensus: a leader is known and every partition has a live owner.
	resp.TopologyConsensus = st.LeaderID != ""
	for p := range a.Owners {
		if o := a.Owner(p); o == "" || (len(live) > 0 && !live[o]) {
			resp.TopologyConsensus = false
		}
	}
	if len(a.Owners) == 0 {
		resp.TopologyConsensus = false
	}
	return resp, nil
}

// Application requests between members (replication.Group.Call): a kind
// byte, then the request. Answers: a status byte, then the payload.
const (
	memberReqAlarm = 1 // JSON alarmRequest → apiv1.Alarm (protobuf)

	memberOK          = 0
	memberNotFound    = 1
	memberState       = 2
	memberUnavailable = 3
)

// forwardAlarm sends an operator's alarm transition to the member that
// serves the device, so that any member's API can take it.
func (n *node) forwardAlarm(ctx context.Context, r alarmRequest) (*apiv1.Alarm, error) {
	notFound := fmt.Errorf("alarm %s: %w", r.Ref.AlarmID, services.ErrAlarmNotFound)
	eui, err := devicetwin.ParseEUI(r.Ref.DevEUI)
	if err != nil {
		return nil, notFound
	}
	p, ok := n.partitionOf(pebblestore.KindSensor, pebblestore.EUI(eui))
	if !ok {
		return nil, notFound
	}
	c := n.cluster
	owner := c.group.Assignment().Owner(p)
	if owner == "" || owner == c.cfg.NodeID {
		return nil, fmt.Errorf("device %s: its partition is moving between members, retry: %w", r.Ref.DevEUI, services.ErrUnavailable)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	resp, err := c.group.Call(ctx, owner, append([]byte{memberReqAlarm}, body...))
	if err == nil && len(resp) == 0 {
		err = errors.New("empty answer")
	}
	if err != nil {
		return nil, fmt.Errorf("device %s: member %s: %w: %w", r.Ref.DevEUI, owner, err, services.ErrUnavailable)
	}
	switch resp[0] {
	case memberOK:
		var a apiv1.Alarm
		if err := proto.Unmarshal(resp[1:], &a); err != nil {
			return nil, fmt.Errorf("device %s: member %s: %w: %w", r.Ref.DevEUI, owner, err, services.ErrUnavailable)
		}
		return &a, nil
	case memberNotFound:
		return nil, notFound
	case memberState:
		return nil, services.ErrAlarmState
	}
	return nil, fmt.Errorf("device %s: member %s: %s: %w", r.Ref.DevEUI, owner, resp[1:], services.ErrUnavailable)
}

// serveMember answers other members' application requests.
func (n *node) serveMember(ctx context.Context, req []byte) ([]byte, error) {
	if len(req) == 0 || req[0] != memberReqAlarm {
		return nil, errors.New("unknown member request")
	}
	var r alarmRequest
	if err := json.Unmarshal(req[1:], &r); err != nil {
		return nil, fmt.Errorf("alarm request: %w", err)
	}
	sys := n.cluster.sys.Load()
	if sys == nil {
		return []byte{memberUnavailable}, nil
	}
	// No forward here: a member that no longer serves the device says so
	// rather than passing the request on.
	a, err := alarmCommander{sys: sys, owns: n.owns}.operate(ctx, r)
	switch {
	case err == nil:
		b, err := proto.Marshal(a)
		if err != nil {
			return nil, err
		}
		return append([]byte{memberOK}, b...), nil
	case errors.Is(err, services.ErrAlarmNotFound):
		return []byte{memberNotFound}, nil
	case errors.Is(err, services.ErrAlarmState):
		return []byte{memberState}, nil
	}
	return append([]byte{memberUnavailable}, err.Error()...), nil
}
