package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/legionelladossier/legiond/storage/raftstore"
)

// Group is this member's part of the Raft group that replicates twin
// snapshots and Kafka offsets. Create it with NewGroup, then Start it.
// All methods are safe for concurrent use.
type Group struct {
	cfg Config
	log *slog.Logger

	life    sync.Mutex // Start/Shutdown
	started bool
	stopped bool
	running atomic.Bool // set once Start succeeded (never cleared)

	fsm      *fsm
	logs     *raftstore.Store
	snaps    raft.SnapshotStore
	mux      *mux
	trans    *raft.NetworkTransport
	raft     *raft.Raft
	fwdC     *fwdClient
	fwdS     *fwdServer
	observer *raft.Observer
	addr     string // advertised

	ctx    context.Context // canceled by Shutdown
	cancel context.CancelFunc

	// Proposal pipeline: Propose → queue → batcher → dispatch (≤ MaxInflight).
	queue    chan *proposal
	inflight chan struct{}
	stop     chan struct{} // closed first by Shutdown
	enq      sync.RWMutex  // read-held while enqueuing; see Shutdown
	enqShut  bool
	enqDone  chan struct{} // closed once no Propose can enqueue any more
	wg       sync.WaitGroup

	assign *assignBox
	health peerHealth

	leaderMu      sync.Mutex
	leaderChanged chan struct{} // closed and replaced on every leader change

	m groupMetrics
}

type groupMetrics struct {
	proposals, commands, forwardedOut, forwardedIn atomic.Uint64
	outcomeUnknown, notLeaderRetries               atomic.Uint64
}

type proposal struct {
	enc  []byte
	done chan proposalResult
}

type proposalResult struct {
	resp Response
	err  error
}

// NewGroup validates cfg and returns a group that is not started.
func NewGroup(cfg Config) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Group{
		cfg:           cfg,
		log:           cfg.Logger.With("component", "replication", "node_id", cfg.NodeID),
		ctx:           ctx,
		cancel:        cancel,
		queue:         make(chan *proposal, cfg.QueueSize),
		inflight:      make(chan struct{}, cfg.MaxInflight),
		stop:          make(chan struct{}),
		enqDone:       make(chan struct{}),
		leaderChanged: make(chan struct{}),
		assign:        newAssignBox(),
		health:        peerHealth{failing: map[string]time.Time{}},
	}, nil
}

// Start opens the Raft log and snapshot stores under DataDir, listens,
// starts Raft and, with Bootstrap on a member without Raft state, creates the
// cluster. It does not wait for a leader (see WaitLeader).
func (g *Group) Start(ctx context.Context) (err error) {
	g.life.Lock()
	defer g.life.Unlock()
	if g.started || g.stopped {
		return fmt.Errorf("start: already started or shut down: %w", ErrInvalid)
	}
	cfg := g.cfg
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.BindAddr); err != nil {
			return fmt.Errorf("start: listen %s: %w", cfg.BindAddr, err)
		}
	}
	cleanup = append(cleanup, func() { _ = ln.Close() })
	g.addr = cfg.AdvertiseAddr
	if g.addr == "" {
		g.addr = ln.Addr().String()
		if err := checkAdvertise(g.addr); err != nil {
			return fmt.Errorf("start: listening on %s: set AdvertiseAddr: %w", g.addr, ErrInvalid)
		}
	}

	g.logs, err = raftstore.Open(raftstore.Config{Dir: filepath.Join(cfg.DataDir, "raft"), FS: cfg.FS, Logger: g.log})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	cleanup = append(cleanup, func() { _ = g.logs.Close() })
	hl := newHclog(g.log, cfg.RaftLogLevel)
	if g.snaps, err = newSnapStore(cfg.FS, filepath.Join(cfg.DataDir, "snapshots"), cfg.SnapshotRetain); err != nil {
		return fmt.Errorf("start: snapshot store: %w", err)
	}
	if g.fsm, err = newFSM(ctx, cfg.Store, g.log, cfg.VersionCacheSize, g.onFatal, g.assign); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := g.checkStateMatchesLog(); err != nil {
		return fmt.Errorf("start: %w", err)
	}

	maxFrame := cfg.MaxCommandBytes + 1<<20
	g.fwdC = newFwdClient(cfg.TLSClient, cfg.DialTimeout, maxFrame, cfg.Faults)
	g.fwdS = newFwdServer(maxFrame, g.handleForward)
	g.mux = newMux(ln, g.addr, cfg.TLSServer, cfg.DialTimeout, g.log, g.fwdS.serve, cfg.Faults)
	cleanup = append(cleanup, func() { g.fwdS.close(); _ = g.mux.close(); g.fwdC.close() })
	g.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{m: g.mux, clientTLS: cfg.TLSClient, dialTimeout: cfg.DialTimeout},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hl,
	})
	cleanup = append(cleanup, func() { _ = g.trans.Close() })

	g.raft, err = raft.NewRaft(cfg.raftConfig(), g.fsm, g.logs, g.logs, g.snaps, g.trans)
	if err != nil {
		return fmt.Errorf("start: raft: %w", err)
	}
	cleanup = append(cleanup, func() { _ = g.raft.Shutdown().Error() })
	obs := make(chan raft.Observation, 16)
	g.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	g.raft.RegisterObserver(g.observer)
	hb := make(chan raft.Observation, 64)
	g.raft.RegisterObserver(raft.NewObserver(hb, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	}))
	// Peers reach raft and the forward handler only from here on.
	g.mux.start()
	if cfg.Bootstrap {
		servers := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(g.addr)}}
		for _, p := range cfg.Peers {
			if p.ID != cfg.NodeID {
				servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
			}
		}
		err := g.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("start: bootstrap: %w", err)
		}
		if err == nil {
			g.log.Info("raft cluster bootstrapped", "voters", len(servers))
		}
	}

	g.wg.Add(3)
	go g.watchLeader(obs)
	go g.watchHeartbeats(hb)
	go g.batcher()
	g.started = true
	g.running.Store(true)
	g.log.Info("replication group started", "address", g.addr, "bootstrap", cfg.Bootstrap)
	return nil
}

// checkStateMatchesLog refuses a state store that the Raft data cannot
// account for: an incomplete restore with no snapshot to redo it from, or a
// store that reflects log entries this member's log and snapshots never had
// (the raft directory was wiped, or the store comes from a backup or another
// cluster). Applying the log to such a store would skip or misapply entries;
// the fix is to wipe the state store, so the member catches up from the
// leader's snapshot.
func (g *Group) checkStateMatchesLog() error {
	metas, err := g.snaps.List()
	if err != nil {
		return fmt.Errorf("list raft snapshots: %w", err)
	}
	var snapIndex uint64
	if len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	if g.fsm.needRestore && len(metas) == 0 {
		return fmt.Errorf("the state store holds an incomplete restore and there is no raft snapshot to redo it from (wipe the state store): %w", ErrState)
	}
	last, err := g.logs.LastIndex()
	if err != nil {
		return err
	}
	if reach := max(last, snapIndex); g.fsm.applied > reach {
		return fmt.Errorf("the state store reflects raft index %d but this member's raft log and snapshots end at %d (raft data wiped, or a store from a backup or another cluster?): wipe the state store: %w",
			g.fsm.applied, reach, ErrState)
	}
	return nil
}

// onFatal is called (on its own goroutine) when the FSM cannot write its
// store: the member leaves by shutting down.
func (g *Group) onFatal(err error) {
	g.log.Error("shutting down the raft member after a state store failure", "err", err)
	_ = g.Shutdown()
}

func (g *Group) watchLeader(obs chan raft.Observation) {
	defer g.wg.Done()
	for {
		select {
		case <-obs:
			g.leaderMu.Lock()
			close(g.leaderChanged)
			g.leaderChanged = make(chan struct{})
			g.leaderMu.Unlock()
			// What a previous term's heartbeats learned is void: a new
			// leader's replication reports a peer's recovery only after
			// a failure it saw itself.
			g.health.mu.Lock()
			clear(g.health.failing)
			g.health.mu.Unlock()
		case <-g.stop:
			return
		}
	}
}

// waitLeader waits until the known leader differs from prev (and is not
// empty), at most maxWait, or ctx ends.
func (g *Group) waitLeader(ctx context.Context, prev raft.ServerAddress, maxWait time.Duration) {
	g.leaderMu.Lock()
	ch := g.leaderChanged
	g.leaderMu.Unlock()
	if addr, _ := g.raft.LeaderWithID(); addr != "" && addr != prev {
		return
	}
	t := time.NewTimer(maxWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

func backoff(attempt int) time.Duration {
	return min(10*time.Millisecond<<min(attempt, 6), 500*time.Millisecond)
}

// Propose replicates b and returns every member's decision about it, once
// it is committed by a majority and applied to this group's leader's store
// (followers apply it moments later). Concurrent proposals are batched into
// one Raft entry (group commit); on a follower the entry is forwarded to the
// leader over the mutual-TLS port, and leader changes are retried.
//
// Errors: ErrInvalid (b fails Validate, nothing proposed); ErrStaleVersion
// (fencing refused b; the Response lists the stale twins with their current
// versions); ErrOutcomeUnknown (b may or may not be committed: reload or
// re-propose, fencing makes duplicates harmless); ErrNoLeader, ErrShutdown
// (not committed); ctx errors while waiting for queue room (not proposed).
// Propose blocks while the queue is full.
func (g *Group) Propose(ctx context.Context, b Batch) (Response, error) {
	if err := b.Validate(); err != nil {
		return Response{}, err
	}
	enc := appendBatch(nil, &b)
	if len(enc)+cmdHeaderLen+binary.MaxVarintLen64 > g.cfg.MaxCommandBytes {
		return Response{}, fmt.Errorf("batch of %d bytes exceeds MaxCommandBytes %d: %w", len(enc), g.cfg.MaxCommandBytes, ErrInvalid)
	}
	p := &proposal{enc: enc, done: make(chan proposalResult, 1)}
	if err := g.enqueue(ctx, p); err != nil {
		return Response{}, err
	}
	g.m.proposals.Add(1)
	select {
	case r := <-p.done:
		return r.resp, r.err
	case <-ctx.Done():
		g.m.outcomeUnknown.Add(1)
		return Response{}, fmt.Errorf("propose: %w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

func (g *Group) enqueue(ctx context.Context, p *proposal) error {
	g.enq.RLock()
	defer g.enq.RUnlock()
	switch {
	case g.enqShut:
		return ErrShutdown
	case !g.isStarted():
		return ErrNotStarted
	}
	select {
	case g.queue <- p:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("propose: %w", ctx.Err())
	case <-g.stop:
		return ErrShutdown
	}
}

func (g *Group) isStarted() bool { return g.running.Load() }

// batcher owns the queue: it waits for a proposal, then for an in-flight
// slot, then takes everything queued meanwhile (up to the limits) into one
// entry. Entries are thus as large as the load makes them, with no lingering.
func (g *Group) batcher() {
	defer g.wg.Done()
	var carry *proposal
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-g.queue:
			case <-g.stop:
				g.drain(nil)
				return
			}
		}
		select {
		case g.inflight <- struct{}{}:
		case <-g.stop:
			g.drain(first)
			return
		}
		batch := []*proposal{first}
		size := len(first.enc)
	gather:
		for len(batch) < g.cfg.MaxBatchProposals {
			select {
			case p := <-g.queue:
				if size+len(p.enc) > g.cfg.MaxCommandBytes-cmdHeaderLen-binary.MaxVarintLen64 {
					carry = p
					break gather
				}
				batch = append(batch, p)
				size += len(p.enc)
			default:
				break gather
			}
		}
		g.wg.Add(1)
		go g.dispatch(batch)
	}
}

// drain answers every proposal left once no Propose can enqueue any more.
func (g *Group) drain(first *proposal) {
	if first != nil {
		first.done <- proposalResult{err: ErrShutdown}
	}
	<-g.enqDone
	for {
		select {
		case p := <-g.queue:
			p.done <- proposalResult{err: ErrShutdown}
		default:
			return
		}
	}
}

func (g *Group) dispatch(batch []*proposal) {
	defer func() {
		<-g.inflight
		g.wg.Done()
	}()
	encs := make([][]byte, len(batch))
	for i, p := range batch {
		encs[i] = p.enc
	}
	g.m.commands.Add(1)
	rs, err := g.apply(encodeCommand(encs))
	if err == nil && len(rs) != len(batch) {
		err = fmt.Errorf("%d responses for %d batches: %w", len(rs), len(batch), ErrOutcomeUnknown)
	}
	if errors.Is(err, ErrOutcomeUnknown) {
		g.m.outcomeUnknown.Add(uint64(len(batch)))
	}
	for i, p := range batch {
		if err != nil {
			p.done <- proposalResult{err: err}
			continue
		}
		r := rs[i]
		var rerr error
		switch r.Status {
		case StatusApplied:
		case StatusStale:
			rerr = fmt.Errorf("%d twin(s) stale at index %d: %w", len(r.Stale), r.Index, ErrStaleVersion)
		case StatusInvalid:
			rerr = fmt.Errorf("%s: %w", r.Reason, ErrInvalid)
		default:
			rerr = fmt.Errorf("status %s: %w", r.Status, ErrOutcomeUnknown)
		}
		p.done <- proposalResult{resp: r, err: rerr}
	}
}

// apply commits one command through the leader, locally or forwarded,
// retrying while it is certain that the command was not appended.
func (g *Group) apply(cmd []byte) ([]Response, error) {
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.ApplyTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			if g.ctx.Err() != nil {
				return nil, ErrShutdown
			}
			return nil, fmt.Errorf("no leader committed the entry within %s: %w", g.cfg.ApplyTimeout, ErrNoLeader)
		}
		if g.raft.State() == raft.Leader {
			rs, err, retry := g.applyLocal(ctx, cmd)
			if !retry {
				return rs, err
			}
			g.m.notLeaderRetries.Add(1)
			g.waitLeader(ctx, raft.ServerAddress(g.addr), backoff(attempt))
			continue
		}
		leader, _ := g.raft.LeaderWithID()
		if leader == "" {
			g.waitLeader(ctx, "", backoff(attempt))
			continue
		}
		code, body, err := g.fwdC.call(ctx, string(leader), opApply, cmd)
		if err != nil {
			if errors.Is(err, errNotSent) {
				g.waitLeader(ctx, leader, backoff(attempt))
				continue
			}
			return nil, fmt.Errorf("forward to leader %s: %w: %w", leader, ErrOutcomeUnknown, err)
		}
		g.m.forwardedOut.Add(1)
		switch code {
		case codeOK:
			rs, err := decodeResponses(body)
			if err != nil {
				return nil, fmt.Errorf("leader %s: %w: %w", leader, ErrOutcomeUnknown, err)
			}
			return rs, nil
		case codeNotLeader, codeShutdown:
			g.m.notLeaderRetries.Add(1)
			g.waitLeader(ctx, leader, backoff(attempt))
		case codeUnknown:
			return nil, fmt.Errorf("leader %s: %s: %w", leader, body, ErrOutcomeUnknown)
		case codeInvalid:
			return nil, fmt.Errorf("leader %s: %s: %w", leader, body, ErrInvalid)
		default:
			return nil, fmt.Errorf("leader %s: %s: %w", leader, body, ErrState)
		}
	}
}

// applyLocal appends cmd on this (leader) member and waits for its
// application. retry reports that raft refused it before appending it.
func (g *Group) applyLocal(ctx context.Context, cmd []byte) (rs []Response, err error, retry bool) {
	timeout := g.cfg.ApplyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	f := g.raft.Apply(cmd, timeout)
	err = waitFuture(g.ctx, f)
	switch {
	case err == nil:
	case errorsIsAny(err, raft.ErrNotLeader, raft.ErrLeadershipTransferInProgress, raft.ErrEnqueueTimeout):
		return nil, err, true
	case errorsIsAny(err, raft.ErrRaftShutdown, ErrShutdown):
		return nil, fmt.Errorf("%w: %w: %w", ErrOutcomeUnknown, ErrShutdown, err), false
	default: // ErrLeadershipLost, ErrAbortedByRestore: appended, fate unknown
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err), false
	}
	res, ok := f.Response().(*applyResult)
	switch {
	case !ok || res == nil:
		return nil, fmt.Errorf("unexpected apply response %T: %w", f.Response(), ErrOutcomeUnknown), false
	case res.err != nil:
		return nil, res.err, false
	}
	return res.responses, nil, false
}

// waitFuture waits for f unless the group shuts down first (raft answers
// every future it took, but a shutdown must not depend on it).
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ErrShutdown
	}
}

// handleForward answers one forwarded request (on a forward connection's
// goroutine).
func (g *Group) handleForward(op byte, body []byte) (byte, []byte) {
	if g.ctx.Err() != nil {
		return codeShutdown, []byte("shutting down")
	}
	switch op {
	case opApply:
		if err := checkCommand(body); err != nil {
			return codeInvalid, []byte(err.Error())
		}
		if g.raft.State() != raft.Leader {
			return g.notLeader()
		}
		g.m.forwardedIn.Add(1)
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.ApplyTimeout)
		defer cancel()
		rs, err, retry := g.applyLocal(ctx, body)
		switch {
		case retry:
			return g.notLeader()
		case errors.Is(err, ErrOutcomeUnknown):
			return codeUnknown, []byte(err.Error())
		case errors.Is(err, ErrInvalid):
			return codeInvalid, []byte(err.Error())
		case err != nil:
			return codeError, []byte(err.Error())
		}
		return codeOK, appendResponses(nil, rs)
	case opVoter, opRemove:
		r := reader{b: body}
		id := readShort(&r)
		var addr string
		if op == opVoter {
			addr = readShort(&r)
		}
		if r.err != nil || id == "" || len(r.b) != 0 || (op == opVoter && addr == "") {
			return codeInvalid, []byte("malformed membership request")
		}
		if g.raft.State() != raft.Leader {
			return g.notLeader()
		}
		var f raft.IndexFuture
		if op == opVoter {
			f = g.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, g.cfg.ApplyTimeout)
		} else {
			f = g.raft.RemoveServer(raft.ServerID(id), 0, g.cfg.ApplyTimeout)
		}
		if err := waitFuture(g.ctx, f); err != nil {
			if errorsIsAny(err, raft.ErrNotLeader, raft.ErrLeadershipTransferInProgress) {
				return g.notLeader()
			}
			return codeError, []byte(err.Error())
		}
		g.log.Info("membership changed", "op", map[byte]string{opVoter: "add voter", opRemove: "remove"}[op], "member", id, "address", addr)
		return codeOK, nil
	case opStatus:
		return codeOK, g.localStatus().append(nil)
	case opApp:
		if g.cfg.Serve == nil {
			return codeInvalid, []byte("this member serves no application requests")
		}
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.ApplyTimeout)
		defer cancel()
		resp, err := g.cfg.Serve(ctx, body)
		if err != nil {
			return codeError, []byte(err.Error())
		}
		return codeOK, resp
	}
	return codeInvalid, []byte(fmt.Sprintf("unknown op %d", op))
}

func (g *Group) notLeader() (byte, []byte) {
	addr, id := g.raft.LeaderWithID()
	b := appendShort(nil, string(id))
	return codeNotLeader, appendShort(b, string(addr))
}

// Leader returns the current leader's ID and address as this member knows
// them, empty while there is none.
func (g *Group) Leader() (id, address string) {
	if !g.isStarted() {
		return "", ""
	}
	addr, sid := g.raft.LeaderWithID()
	return string(sid), string(addr)
}

// IsLeader reports whether this member is the leader.
func (g *Group) IsLeader() bool { return g.isStarted() && g.raft.State() == raft.Leader }

// WaitLeader waits until a leader is known.
func (g *Group) WaitLeader(ctx context.Context) (id, address string, err error) {
	if !g.isStarted() {
		return "", "", ErrNotStarted
	}
	for attempt := 0; ; attempt++ {
		if addr, sid := g.raft.LeaderWithID(); addr != "" {
			return string(sid), string(addr), nil
		}
		if err := ctx.Err(); err != nil {
			return "", "", fmt.Errorf("wait leader: %w: %w", ErrNoLeader, err)
		}
		g.waitLeader(ctx, "", backoff(attempt))
	}
}

// AddVoter adds (or re-addresses) a voting member at run time. It runs on
// the leader, through forwarding if this member is not the leader. The new
// member catches up from the log or, if it is far behind, from a snapshot.
func (g *Group) AddVoter(ctx context.Context, id, address string) error {
	if id == "" {
		return fmt.Errorf("add voter: empty id: %w", ErrInvalid)
	}
	if err := checkAdvertise(address); err != nil {
		return fmt.Errorf("add voter %s: %w: %w", id, ErrInvalid, err)
	}
	body := appendShort(appendShort(nil, id), address)
	return g.membership(ctx, opVoter, body, func(timeout time.Duration) raft.IndexFuture {
		return g.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(address), 0, timeout)
	})
}

// RemoveServer removes a member at run time (through the leader). Removing
// the leader itself makes it step down once the change is committed.
func (g *Group) RemoveServer(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("remove server: empty id: %w", ErrInvalid)
	}
	return g.membership(ctx, opRemove, appendShort(nil, id), func(timeout time.Duration) raft.IndexFuture {
		return g.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	})
}

func (g *Group) membership(ctx context.Context, op byte, body []byte, local func(time.Duration) raft.IndexFuture) error {
	if !g.isStarted() {
		return ErrNotStarted
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("membership change: %w: %w", ErrNoLeader, err)
		}
		if g.ctx.Err() != nil {
			return ErrShutdown
		}
		if g.raft.State() == raft.Leader {
			timeout := g.cfg.ApplyTimeout
			if d, ok := ctx.Deadline(); ok {
				timeout = max(time.Until(d), time.Millisecond)
			}
			err := waitFuture(g.ctx, local(timeout))
			if errorsIsAny(err, raft.ErrNotLeader, raft.ErrLeadershipTransferInProgress) {
				g.waitLeader(ctx, raft.ServerAddress(g.addr), backoff(attempt))
				continue
			}
			if err != nil {
				return fmt.Errorf("membership change: %w", err)
			}
			return nil
		}
		leader, _ := g.raft.LeaderWithID()
		if leader == "" {
			g.waitLeader(ctx, "", backoff(attempt))
			continue
		}
		done, err := g.callMembership(ctx, string(leader), op, body)
		if done || err != nil {
			return err
		}
		g.waitLeader(ctx, leader, backoff(attempt))
	}
}

// callMembership sends a membership request to addr. done is false when it
// should be retried elsewhere (not delivered, not the leader); redirect is
// the leader the peer named, if any.
func (g *Group) callMembership(ctx context.Context, addr string, op byte, body []byte) (done bool, err error) {
	done, _, err = g.callMembershipRedirect(ctx, addr, op, body)
	return done, err
}

func (g *Group) callMembershipRedirect(ctx context.Context, addr string, op byte, body []byte) (done bool, redirect string, err error) {
	code, resp, err := g.fwdC.call(ctx, addr, op, body)
	switch {
	case errors.Is(err, ErrTLS):
		return true, "", fmt.Errorf("membership change via %s: %w", addr, err)
	case errors.Is(err, errNotSent):
		return false, "", nil
	case err != nil:
		return true, "", fmt.Errorf("membership change via %s: %w: %w", addr, ErrOutcomeUnknown, err)
	}
	switch code {
	case codeOK:
		return true, "", nil
	case codeNotLeader:
		r := reader{b: resp}
		_ = readShort(&r)
		return false, readShort(&r), nil
	case codeShutdown:
		return false, "", nil
	default:
		return true, "", fmt.Errorf("membership change via %s: %s: %w", addr, resp, ErrState)
	}
}

// Join asks the group, through the seeds in Config.Peers (following their
// redirects to the leader), to add this member as a voter. Use it on a
// member started without Bootstrap that is not yet in the configuration;
// joining twice is harmless.
func (g *Group) Join(ctx context.Context) error {
	if !g.isStarted() {
		return ErrNotStarted
	}
	body := appendShort(appendShort(nil, g.cfg.NodeID), g.addr)
	var lastErr error
	for attempt := 0; ; attempt++ {
		for _, p := range g.cfg.Peers {
			if p.ID == g.cfg.NodeID {
				continue
			}
			addr := p.Address
			for hop := 0; hop < 3 && addr != ""; hop++ {
				done, redirect, err := g.callMembershipRedirect(ctx, addr, opVoter, body)
				if done && err == nil {
					g.log.Info("joined the raft group", "via", addr)
					return nil
				}
				if err != nil {
					lastErr = err
					if errors.Is(err, ErrTLS) {
						return fmt.Errorf("join: %w", err) // our certificate is refused: retrying will not help
					}
					break
				}
				addr = redirect
			}
		}
		t := time.NewTimer(backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			if lastErr != nil {
				return fmt.Errorf("join: %w (last error: %w)", ctx.Err(), lastErr)
			}
			return fmt.Errorf("join: %w: %w", ErrNoLeader, ctx.Err())
		case <-t.C:
		}
	}
}

// Leave removes this member from the group and shuts it down.
func (g *Group) Leave(ctx context.Context) error {
	err := g.RemoveServer(ctx, g.cfg.NodeID)
	return errors.Join(err, g.Shutdown())
}

// Snapshot makes Raft take a snapshot now (and compact its log down to
// TrailingLogs entries). Raft also snapshots by itself per
// SnapshotInterval/SnapshotThreshold.
func (g *Group) Snapshot() error {
	if !g.isStarted() {
		return ErrNotStarted
	}
	if err := g.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Shutdown stops this member without leaving the group (its peers keep it
// in the configuration and it can restart and catch up). Queued proposals
// fail with ErrShutdown; proposals in flight get their outcome or
// ErrOutcomeUnknown. The state store is not closed. Calling it again returns
// nil.
func (g *Group) Shutdown() error {
	g.life.Lock()
	if g.stopped {
		g.life.Unlock()
		return nil
	}
	g.stopped = true
	started := g.started
	g.life.Unlock()

	close(g.stop)
	g.enq.Lock()
	g.enqShut = true
	g.enq.Unlock()
	close(g.enqDone)
	g.cancel()
	if !started {
		return nil
	}
	var errs []error
	// Forwarded requests see g.ctx canceled; close their connections so
	// that no new one arrives, then stop raft (which resolves every future
	// a handler may wait on, and closes the transport and the mux).
	g.fwdS.closeConns()
	if err := g.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
	}
	g.raft.DeregisterObserver(g.observer)
	g.fwdS.wait()
	if err := g.trans.Close(); err != nil {
		errs = append(errs, fmt.Errorf("transport close: %w", err))
	}
	g.fwdC.close()
	g.wg.Wait()
	if err := g.logs.Close(); err != nil {
		errs = append(errs, err)
	}
	g.log.Info("replication group shut down")
	return errors.Join(errs...)
}

// Address returns the advertised address (after Start).
func (g *Group) Address() string {
	g.life.Lock()
	defer g.life.Unlock()
	return g.addr
}

// memberStatus is what a member reports about itself (opStatus):
//
//	state u8 | term u64 | last index u64 | commit index u64 | applied u64 |
//	store index u64 [| active twins u64]
//
// The last field is optional (members before it omit it).
type memberStatus struct {
	State                                 raft.RaftState
	Term, LastIndex, CommitIndex, Applied uint64
	StoreIndex                            uint64
	ActiveTwins                           uint64
}

func (s memberStatus) append(dst []byte) []byte {
	dst = append(dst, byte(s.State))
	for _, v := range []uint64{s.Term, s.LastIndex, s.CommitIndex, s.Applied, s.StoreIndex, s.ActiveTwins} {
		dst = binary.BigEndian.AppendUint64(dst, v)
	}
	return dst
}

func decodeMemberStatus(b []byte) (memberStatus, error) {
	r := reader{b: b}
	s := memberStatus{State: raft.RaftState(r.byte())}
	for _, p := range []*uint64{&s.Term, &s.LastIndex, &s.CommitIndex, &s.Applied, &s.StoreIndex} {
		*p = r.uint64()
	}
	if r.err == nil && len(r.b) == 8 {
		s.ActiveTwins = r.uint64()
	}
	if r.err != nil || len(r.b) != 0 {
		return memberStatus{}, fmt.Errorf("member status: %w", errCorrupt)
	}
	return s, nil
}

func (g *Group) localStatus() memberStatus {
	return memberStatus{
		State:       g.raft.State(),
		Term:        g.raft.CurrentTerm(),
		LastIndex:   g.raft.LastIndex(),
		CommitIndex: g.raft.CommitIndex(),
		Applied:     g.raft.AppliedIndex(),
		StoreIndex:  g.fsm.m.applied.Load(),
		ActiveTwins: g.activeTwins(),
	}
}

// Stats is a point-in-time report of the member.
type Stats struct {
	NodeID, Address         string
	State                   string // Follower, Candidate, Leader, Shutdown
	LeaderID, LeaderAddress string
	Term                    uint64
	LastIndex               uint64 // last entry in this member's log
	CommitIndex             uint64
	AppliedIndex            uint64 // raft's last applied entry
	StoreIndex              uint64 // the log position the state store reflects
	// LastContact is the time since this follower heard from a leader
	// (0 on the leader, -1 if never).
	LastContact time.Duration
	// Peers are the other members of the configuration as they report
	// themselves (over the forward port, within Stats' ctx).
	Peers []PeerStats

	Proposals        uint64 // Propose calls accepted into the queue
	Commands         uint64 // Raft entries proposed by this member
	ForwardedOut     uint64 // entries forwarded to the leader
	ForwardedIn      uint64 // entries applied for followers (as leader)
	NotLeaderRetries uint64
	OutcomeUnknown   uint64 // proposals answered with ErrOutcomeUnknown
	QueueLen         int

	BatchesApplied, BatchesStale, BatchesInvalid uint64 // FSM decisions
	TwinWrites                                   uint64
	ReplayedLogs                                 uint64 // logs skipped because the store already had them
	SnapshotRestores, SnapshotRestoresSkipped    uint64
	StoreFailures                                uint64

	AcceptedConns, RefusedConns uint64 // mutual-TLS handshakes on the port
}

// PeerStats describes another member.
type PeerStats struct {
	ID, Address string
	Suffrage    string
	State       string
	LastIndex   uint64
	StoreIndex  uint64
	// Lag is this member's LastIndex minus the peer's (0 if the peer is
	// ahead): on the leader, the peer's replication lag in entries.
	Lag uint64
	// ActiveTwins is the peer's count of twin actors in memory, as it
	// reports it (Config.ActiveTwins).
	ActiveTwins uint64
	// Err is why the peer could not be asked.
	Err string
}

// Stats reports this member and, within ctx, asks every other member of
// the configuration for its indexes.
func (g *Group) Stats(ctx context.Context) Stats {
	s := Stats{NodeID: g.cfg.NodeID}
	if !g.isStarted() {
		s.State = "NotStarted"
		return s
	}
	s.Address = g.addr
	st := g.localStatus()
	s.State = st.State.String()
	s.Term, s.LastIndex, s.CommitIndex, s.AppliedIndex, s.StoreIndex = st.Term, st.LastIndex, st.CommitIndex, st.Applied, st.StoreIndex
	s.LeaderID, s.LeaderAddress = g.Leader()
	switch lc := g.raft.LastContact(); {
	case st.State == raft.Leader:
	case lc.IsZero():
		s.LastContact = -1
	default:
		s.LastContact = time.Since(lc)
	}
	s.Proposals = g.m.proposals.Load()
	s.Commands = g.m.commands.Load()
	s.ForwardedOut = g.m.forwardedOut.Load()
	s.ForwardedIn = g.m.forwardedIn.Load()
	s.NotLeaderRetries = g.m.notLeaderRetries.Load()
	s.OutcomeUnknown = g.m.outcomeUnknown.Load()
	s.QueueLen = len(g.queue)
	fm := &g.fsm.m
	s.BatchesApplied, s.BatchesStale, s.BatchesInvalid = fm.batchesApplied.Load(), fm.batchesStale.Load(), fm.batchesInvalid.Load()
	s.TwinWrites, s.ReplayedLogs = fm.twinWrites.Load(), fm.replayedLogs.Load()
	s.SnapshotRestores, s.SnapshotRestoresSkipped, s.StoreFailures = fm.restores.Load(), fm.restoresSkipped.Load(), fm.failures.Load()
	s.AcceptedConns, s.RefusedConns = g.mux.accepted.Load(), g.mux.refused.Load()

	cf := g.raft.GetConfiguration()
	if cf.Error() != nil || ctx.Err() != nil {
		return s
	}
	var wg sync.WaitGroup
	for _, srv := range cf.Configuration().Servers {
		if string(srv.ID) == g.cfg.NodeID {
			continue
		}
		s.Peers = append(s.Peers, PeerStats{ID: string(srv.ID), Address: string(srv.Address), Suffrage: srv.Suffrage.String()})
	}
	for i := range s.Peers {
		p := &s.Peers[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := g.fwdC.call(ctx, p.Address, opStatus, nil)
			if err == nil && code != codeOK {
				err = fmt.Errorf("status code %d: %s", code, body)
			}
			var ps memberStatus
			if err == nil {
				ps, err = decodeMemberStatus(body)
			}
			if err != nil {
				p.Err = err.Error()
				return
			}
			p.State, p.LastIndex, p.StoreIndex, p.ActiveTwins = ps.State.String(), ps.LastIndex, ps.StoreIndex, ps.ActiveTwins
			if s.LastIndex > ps.LastIndex {
				p.Lag = s.LastIndex - ps.LastIndex
			}
		}()
	}
	wg.Wait()
	return s
}

func (g *Group) activeTwins() uint64 {
	if g.cfg.ActiveTwins == nil {
		return 0
	}
	return g.cfg.ActiveTwins()
}

// Call sends an application request to the member with id (Config.Serve
// on that member answers it) over the mutual-TLS port. Errors: ErrRemote
// with the member's error text, ErrInvalid when the member is not in the
// configuration or serves no requests, or the transport's error.
func (g *Group) Call(ctx context.Context, member string, request []byte) ([]byte, error) {
	if !g.isStarted() {
		return nil, ErrNotStarted
	}
	cf := g.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, fmt.Errorf("call %s: %w", member, err)
	}
	var addr string
	for _, srv := range cf.Configuration().Servers {
		if string(srv.ID) == member {
			addr = string(srv.Address)
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("call %s: not a member: %w", member, ErrInvalid)
	}
	code, body, err := g.fwdC.call(ctx, addr, opApp, request)
	switch {
	case err != nil:
		return nil, fmt.Errorf("call %s: %w", member, err)
	case code == codeOK:
		return body, nil
	case code == codeError:
		return nil, fmt.Errorf("%w %s: %s", ErrRemote, member, body)
	}
	return nil, fmt.Errorf("call %s: code %d: %s: %w", member, code, body, ErrInvalid)
}
