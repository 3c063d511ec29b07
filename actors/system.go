package actors

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// System runs the twin actors of one node: shard actors that own the
// directory of active twins and supervise them, the twins themselves, the
// event batcher and the deadline index of passivated twins.
//
// HandleUplink and HandleGatewayStats may be called from any goroutine and
// never block beyond handing the input to an actor mailbox; the number of
// inputs in flight is bounded by the caller (the Kafka consumer's window).
type System struct {
	cfg    Config
	log    *slog.Logger
	as     *actor.ActorSystem
	root   *actor.RootContext
	shards []*actor.PID
	props  *actor.Props // twin props, shared by every twin
	pub    *publisher
	dl     *deadlines
	m      *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	gen      atomic.Uint64
	closing  atomic.Bool
	closed   atomic.Bool
	inflight atomic.Int64
	// streamTime is the newest input time seen (Unix nanoseconds): the
	// receive time of uplinks and the time of gateway stats.
	streamTime atomic.Int64
	// lastInput is the wall-clock time of the newest input (Unix ns).
	lastInput atomic.Int64
	drained   chan struct{} // signalled when inflight reaches 0 while closing

	partners sync.Map // uuid string interning: partner id → string
}

// NewSystem starts a System. Close stops it.
func NewSystem(cfg Config) (*System, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("actors: metrics: %w", err)
	}
	s := &System{cfg: cfg, log: cfg.Logger, m: m, drained: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	plog := slog.New(minLevel{h: cfg.Logger.Handler(), min: slog.LevelWarn}).With("lib", "protoactor")
	s.as = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return plog }))
	s.root = s.as.Root
	disp := newWorkerDispatcher(300, 4096)
	for range 2*runtime.GOMAXPROCS(0) + 2 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); disp.run(s.ctx) }()
	}
	s.props = actor.PropsFromProducer(func() actor.Actor { return &twin{sys: s} }, actor.WithDispatcher(disp))
	// A panic inside one twin restarts that twin only (its state reloads
	// from the store); the limit is effectively off because every restart
	// dead-letters the input that caused it, so the twin makes progress.
	strategy := actor.NewOneForOneStrategy(1<<30, time.Second, func(any) actor.Directive { return actor.RestartDirective })
	shardProps := actor.PropsFromProducer(func() actor.Actor { return &shard{sys: s, twins: make(map[key]*entry)} },
		actor.WithSupervisor(strategy), actor.WithDispatcher(disp))
	for i := range cfg.Shards {
		pid, err := s.root.SpawnNamed(shardProps, fmt.Sprintf("shard%d", i))
		if err != nil {
			s.as.Shutdown()
			return nil, fmt.Errorf("actors: spawn shard: %w", err)
		}
		s.shards = append(s.shards, pid)
	}
	s.pub = newPublisher(s)
	s.dl = newDeadlines(s)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.pub.run(s.ctx) }()
	go func() { defer s.wg.Done(); s.dl.run(s.ctx) }()
	if !cfg.SkipDeadlineScan {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.scanDeadlines(s.ctx) }()
	}
	return s, nil
}

// HandleUplink hands one uplink copy to the twin of the device it belongs
// to and calls done once: nil when its effects are durable (events
// published, state persisted), an error wrapping ErrRejected (a
// *RejectError) when it is rejected for good, or one wrapping ErrRetry when
// it may succeed later.
func (s *System) HandleUplink(ctx context.Context, f *lorawanv1.UplinkFrame, done func(error)) {
	start := time.Now()
	s.m.framesIn.Inc()
	s.inflight.Add(1)
	if s.closing.Load() {
		s.finish(start, done, fmt.Errorf("%w: %w", ErrRetry, ErrClosed), true)
		return
	}
	phy := f.GetPhyPayload()
	df, err := lorawan.ParseDataFrame(phy)
	if err != nil {
		reason := ReasonMalformed
		if len(phy) > 0 && lorawan.MType(phy[0]>>5) == lorawan.MTypeJoinRequest {
			reason = ReasonUnsupported
		}
		s.finish(start, done, &RejectError{Reason: reason, Detail: err.Error()}, true)
		return
	}
	if !df.IsUplink() {
		s.finish(start, done, &RejectError{Reason: ReasonMalformed, Detail: "downlink frame on the uplink topic"}, true)
		return
	}
	if f.GetReceivedAt() == nil {
		s.finish(start, done, &RejectError{Reason: ReasonMalformed, Detail: "frame without received_at"}, true)
		return
	}
	s.seen(f.GetReceivedAt().AsTime())
	cands := s.cfg.Directory.Lookup(postgres.DevAddr(df.DevAddr))
	idx := nextWithSession(cands, 0)
	if idx < 0 {
		s.finish(start, done, &RejectError{Reason: ReasonUnknownDevAddr, Detail: "no device with a session holds DevAddr " + df.DevAddr.String()}, true)
		return
	}
	m := &frameMsg{
		frame: devicetwin.Frame{PHYPayload: phy, Rx: devicetwin.Rx{
			GatewayEUI: euiOf(f.GetGatewayEui()), RSSI: clampRSSI(f.GetRssi()), SNR: f.GetSnr(),
			ReceivedAt: f.GetReceivedAt().AsTime(),
		}},
		cands: cands, idx: idx, done: done, start: start,
	}
	m.parts.Store(1)
	s.route(key{pebblestore.KindSensor, devicetwin.EUI64(cands[idx].DevEUI)}, m)
}

// HandleGatewayStats hands a gateway's stats record to its twin; done is
// called as for HandleUplink.
func (s *System) HandleGatewayStats(ctx context.Context, st *lorawanv1.GatewayStats, done func(error)) {
	start := time.Now()
	s.m.statsIn.Inc()
	s.inflight.Add(1)
	if s.closing.Load() {
		s.finish(start, done, fmt.Errorf("%w: %w", ErrRetry, ErrClosed), false)
		return
	}
	if len(st.GetGatewayEui()) != 8 || st.GetTime() == nil {
		s.finish(start, done, &RejectError{Reason: ReasonMalformed, Detail: "gateway stats without an 8-byte gateway_eui or a time"}, false)
		return
	}
	s.seen(st.GetTime().AsTime())
	in := devicetwin.GatewayStats{
		At: st.GetTime().AsTime(), RxReceived: st.GetRxPacketsReceived(), RxOK: st.GetRxPacketsReceivedOk(),
		TxReceived: st.GetTxPacketsReceived(), TxEmitted: st.GetTxPacketsEmitted(),
	}
	if loc := st.GetLocation(); loc != nil {
		in.Latitude, in.Longitude, in.HasLocation = loc.GetLatitude(), loc.GetLongitude(), true
	}
	m := &gwMsg{eui: euiOf(st.GetGatewayEui()), stats: in, isStats: true, done: done, start: start}
	s.route(key{pebblestore.KindGateway, m.eui}, m)
}

// HandleGatewaySeen applies a gateway's "uplink heard" input that another
// member's sensor twin sent through the repartition topic (cluster mode);
// done is called as for HandleGatewayStats.
func (s *System) HandleGatewaySeen(ctx context.Context, gateway devicetwin.EUI64, seen devicetwin.GatewayUplinkSeen, done func(error)) {
	start := time.Now()
	s.inflight.Add(1)
	if s.closing.Load() {
		s.finish(start, done, fmt.Errorf("%w: %w", ErrRetry, ErrClosed), false)
		return
	}
	if seen.Rx.ReceivedAt.IsZero() {
		s.finish(start, done, &RejectError{Reason: ReasonMalformed, Detail: "gateway uplink-seen record without a receive time"}, false)
		return
	}
	s.route(key{pebblestore.KindGateway, gateway}, &gwMsg{eui: gateway, seen: seen, done: done, start: start})
}

// Release passivates the active twins that match (cluster mode: the twins
// of partitions this member no longer owns), so that their timers stop
// and their next activation, wherever it happens, loads the replicated
// state. Inputs already delivered to them finish first.
func (s *System) Release(match func(kind pebblestore.Kind, eui pebblestore.EUI) bool) {
	for _, sh := range s.shards {
		s.root.Send(sh, &releaseMsg{match: match})
	}
}

// RescanDeadlines registers the deadlines of the stored twins this node
// owns and that are not active (cluster mode: after partitions were
// assigned to this member), so their time rules fire here.
func (s *System) RescanDeadlines(ctx context.Context) {
	s.scanDeadlines(ctx)
}

func (s *System) owns(k key) bool {
	return s.cfg.Owns == nil || s.cfg.Owns(k.kind, pebblestore.EUI(k.eui))
}

// Operate applies an operator input (devicetwin.AlarmAck or AlarmClear)
// to the sensor twin of dev owned by tenant, in order with the twin's
// other inputs, and returns once its effects are durable (events
// published, state persisted) with the twin's view after it and the
// events it produced (none when it changed nothing). check, when not nil,
// runs in the twin right before the input is applied, on a copy of the
// state, and may adjust the input (e.g. its time) from that state: an
// error it returns refuses the input (Operate returns it once the inputs
// before it are durable). It runs again, on the same state, when the input
// is re-applied after a failure. The error otherwise wraps ErrNotFound when
// the twin has no stored state or belongs to another tenant, ErrRetry when
// it may succeed later, or is ctx's error.
func (s *System) Operate(ctx context.Context, tenant string, dev devicetwin.EUI64, in devicetwin.Input, check func(*devicetwin.SensorState, *devicetwin.Input) error) (devicetwin.SensorView, []devicetwin.Event, error) {
	switch in.(type) {
	case devicetwin.AlarmAck, devicetwin.AlarmClear:
	default:
		return devicetwin.SensorView{}, nil, fmt.Errorf("actors: operate: unsupported input %T", in)
	}
	s.inflight.Add(1)
	m := &opMsg{eui: dev, tenant: tenant, in: in, check: check, res: make(chan error, 1)}
	if s.closing.Load() {
		m.complete(s, fmt.Errorf("%w: %w", ErrRetry, ErrClosed))
	} else {
		s.route(key{pebblestore.KindSensor, dev}, m)
	}
	select {
	case err := <-m.res:
		if err != nil {
			if errors.Is(err, errNoDevice) {
				err = fmt.Errorf("%w: %w", ErrNotFound, err)
			}
			return devicetwin.SensorView{}, nil, err
		}
		// The twin wrote view and events before completing (the channel
		// orders the accesses).
		return m.view, m.events, nil
	case <-ctx.Done():
		return devicetwin.SensorView{}, nil, ctx.Err()
	}
}

// seen moves the stream time forward to at (it never moves back: inputs
// of different devices and partitions arrive out of order).
func (s *System) seen(at time.Time) {
	s.lastInput.Store(time.Now().UnixNano())
	ns := at.UnixNano()
	for {
		cur := s.streamTime.Load()
		if ns <= cur || s.streamTime.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// LastInput is the wall-clock time the System last received an uplink or
// gateway stats record (the zero time before the first): how a caller tells
// an idle stream from one that is catching up.
func (s *System) LastInput() time.Time {
	ns := s.lastInput.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// StreamTime is the newest receive time of the uplinks and gateway stats
// handed to the System so far (the zero time before the first). A caller
// replaying a backlog uses it as Config.TickClock, so that time rules do
// not run ahead of the inputs.
func (s *System) StreamTime() time.Time {
	ns := s.streamTime.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// finish ends one input: metrics, then done.
func (s *System) finish(start time.Time, done func(error), err error, frame bool) {
	switch {
	case err == nil:
		s.m.nApplied.Add(1)
		if frame {
			s.m.applied.Inc()
		}
	case RejectReason(err) != "":
		s.m.reject(RejectReason(err))
	default:
		s.m.nRetried.Add(1)
		s.m.retried.Inc()
	}
	if frame {
		s.m.applyLatency.Observe(time.Since(start).Seconds())
	}
	done(err)
	s.release()
}

// release ends one input in flight, waking Close when it was the last.
func (s *System) release() {
	if s.inflight.Add(-1) == 0 && s.closing.Load() {
		select {
		case s.drained <- struct{}{}:
		default:
		}
	}
}

// route sends a message to the shard that owns k.
func (s *System) route(k key, msg any) {
	h := binary.LittleEndian.Uint64(k.eui[:]) * 0x9E3779B97F4A7C15
	s.root.Send(s.shards[(h>>32)%uint64(len(s.shards))], msg)
}

func (s *System) nextGen() uint64 { return s.gen.Add(1) }

// partner interns a partner id string (few partners, many twins).
func (s *System) partner(c *postgres.Candidate) string {
	if c == nil {
		return ""
	}
	if v, ok := s.partners.Load(c.PartnerID); ok {
		return v.(string)
	}
	v, _ := s.partners.LoadOrStore(c.PartnerID, idString(c.PartnerID))
	return v.(string)
}

// Stats returns the System's counters.
func (s *System) Stats() Stats {
	return Stats{
		ActiveTwins: s.m.nActive.Load(), Applied: s.m.nApplied.Load(), Rejected: s.m.nRejected.Load(),
		Retried: s.m.nRetried.Load(), Ticks: s.m.nTicks.Load(), Activations: s.m.nActivations.Load(),
		Passivations: s.m.nPassivations.Load(), Restarts: s.m.nRestarts.Load(), InFlightInput: s.inflight.Load(),
		RecoveryWaits: s.m.nRecoveryWaits.Load(),
	}
}

// Close stops accepting inputs (they get ErrRetry), waits up to
// ShutdownTimeout (or ctx) for the inputs in flight to become durable,
// then stops every actor and background goroutine. Inputs still in flight
// then get ErrRetry. Close is safe to call more than once.
func (s *System) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.closing.Store(true)
	wait, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	var err error
	for s.inflight.Load() > 0 {
		select {
		case <-s.drained:
		case <-wait.Done():
			err = fmt.Errorf("actors: close: %d inputs still in flight: %w", s.inflight.Load(), wait.Err())
		}
		if err != nil {
			break
		}
	}
	for _, pid := range s.shards {
		_ = s.root.StopFuture(pid).Wait()
	}
	s.cancel()
	s.wg.Wait()
	s.as.Shutdown()
	return err
}

// scanDeadlines reads every stored twin once and registers the deadlines
// of those not active, so that a time rule of a twin nobody sends frames
// to still fires after a restart of the node.
func (s *System) scanDeadlines(ctx context.Context) {
	n := 0
	err := s.cfg.Store.ForEachTwin(ctx, func(e pebblestore.TwinEntry) error {
		if !s.owns(key{e.Kind, devicetwin.EUI64(e.EUI)}) {
			return nil
		}
		if at, ok := storedDeadline(e); ok {
			n++
			return s.dl.set(ctx, key{e.Kind, devicetwin.EUI64(e.EUI)}, at)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("deadline scan failed; passivated twins' deadlines fire on their next input", "err", err)
		return
	}
	s.log.Info("deadline scan done", "deadlines", n)
	if h := s.cfg.Hooks.DeadlinesScanned; h != nil {
		h(n)
	}
}

// storedDeadline is the next deadline of a stored twin. A snapshot that
// does not load has none here; the twin reports it when it activates.
func storedDeadline(e pebblestore.TwinEntry) (time.Time, bool) {
	switch e.Kind {
	case pebblestore.KindSensor:
		if st, err := devicetwin.UnmarshalSensorSnapshot(e.Snapshot); err == nil {
			return st.NextDeadline()
		}
	case pebblestore.KindGateway:
		if st, err := devicetwin.UnmarshalGatewaySnapshot(e.Snapshot); err == nil {
			return st.NextDeadline()
		}
	}
	return time.Time{}, false
}

func nextWithSession(cands []postgres.Candidate, from int) int {
	for i := from; i < len(cands); i++ {
		if cands[i].HasSession {
			return i
		}
	}
	return -1
}

func euiOf(b []byte) devicetwin.EUI64 {
	var e devicetwin.EUI64
	if len(b) == 8 {
		copy(e[:], b)
	}
	return e
}

func clampRSSI(v int32) int16 {
	switch {
	case v > 32767:
		return 32767
	case v < -32768:
		return -32768
	}
	return int16(v)
}

// minLevel passes records at or above min to h: protoactor logs at info
// on paths we do not want in production logs (supervision, dead letters).
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(a), min: m.min}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{h: m.h.WithGroup(n), min: m.min} }
