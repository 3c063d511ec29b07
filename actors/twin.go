package actors

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// op is one applied input whose effects are not durable yet. A twin keeps
// its ops in input order and makes them durable in that order: publish the
// events (any order, batched with other twins), then persist the state
// after the longest published prefix (one store unit, fenced by version),
// then complete the inputs.
type op struct {
	in     any        // the input, to re-apply after a failure
	done   completion // nil for ticks
	result error      // handed to done once durable (a rejection or nil)
	events []*twinv1.TwinEvent
	// before is the state right before this op (*devicetwin.SensorState
	// or *devicetwin.GatewayState), kept when the op has events and joined
	// a non-empty list: a unit ending right before it persists that state.
	before    any
	changed   bool
	published bool
	seq       uint64 // AppliedSeq of the state after this op
	pubStart  time.Time
}

// twin is the actor of one sensor or gateway. Its identity (kind, EUI) is
// its actor name, so the supervisor's restart (a fresh instance from the
// shared props) knows who it is. Only the actor's goroutine touches it.
//
// It is kept small because every active twin costs its size: what is only
// needed while inputs are in flight (ops, held inputs, the session
// ciphers) lives in a flight that exists only then.
type twin struct {
	sys     *System
	self    *actor.PID
	fl      *flight // nil when nothing is in flight
	gw      *devicetwin.GatewayState
	tenant  string
	partner string
	timer   Timer
	version uint64
	gen     uint64
	// Unix nanoseconds of the Clock.
	timerAt, lastActive, lastTick int64
	key                           key
	loaded                        bool
	broken                        bool // a publish or persist failed: reload once nothing is in flight
	passivating                   bool
	idleSent                      bool
	armed                         bool
	sensor                        devicetwin.SensorState
}

// flight is the part of a twin that exists while inputs are in flight.
type flight struct {
	ops          []*op
	held         []any // inputs received while broken or not loaded
	current      any   // the input being applied (for twin_panic)
	persisting   int   // ops covered by the unit in flight
	persistBumps bool  // the unit in flight writes the twin (bumps its version)
	persistStart time.Time
	// Session ciphers of the frames in flight; rebuilt for the next
	// transmission (copies from other gateways arrive while the first is
	// in flight and reuse them).
	keys     *lorawan.SessionKeys
	nwk, app postgres.AES128Key
	// waiting: a recovery is scheduled (retryMsg) after retries failed
	// recoveries in a row.
	waiting bool
	retries int
}

// f returns the flight, creating it.
func (t *twin) f() *flight {
	if t.fl == nil {
		t.fl = &flight{}
	}
	return t.fl
}

// land drops the flight once nothing is in flight.
func (t *twin) land() {
	if t.fl != nil && len(t.fl.ops) == 0 && len(t.fl.held) == 0 && t.fl.persisting == 0 && t.fl.current == nil && !t.broken {
		t.fl = nil
	}
}

// evPool recycles the core's event buffers (a twin needs one only while
// applying an input).
var evPool = sync.Pool{New: func() any { b := make([]devicetwin.Event, 0, 16); return &b }}

func (t *twin) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *frameMsg:
		t.input(m)
	case *gwMsg:
		t.input(m)
	case *opMsg:
		t.input(m)
	case *wakeMsg:
		t.input(m)
	case *publishedMsg:
		t.onPublished(m)
	case *persistedMsg:
		t.onPersisted(m)
	case *retryMsg:
		t.onRetry(m)
	case *timerMsg:
		t.onTimer()
	case *passivateMsg:
		t.passivating = true
		t.maybeStop()
	case *actor.Started:
		t.start(ctx)
	case *actor.Restarting:
		t.onRestarting()
	case *actor.Stopping:
		t.onStopping()
	}
}

func (t *twin) now() int64 { return t.sys.cfg.Clock.Now().UnixNano() }

// tickNow is the "now" of time-based rules (Config.TickClock), which may
// lag behind the timer clock while a backlog is replayed.
func (t *twin) tickNow() int64 { return t.sys.cfg.TickClock().UnixNano() }

func (t *twin) start(ctx actor.Context) {
	k, ok := keyFromName(ctx.Self().GetId())
	if !ok {
		panic(fmt.Sprintf("actors: twin actor with unexpected id %q", ctx.Self().GetId()))
	}
	t.self, t.key = ctx.Self(), k
	t.sys.m.nActive.Add(1)
	t.sys.m.nActivations.Add(1)
	t.sys.m.activations.Inc()
	t.gauge().Inc()
	t.lastActive = t.now()
	_ = t.load(nil) // a sensor not in the directory loads with its first frame
	t.arm()
	if h := t.sys.cfg.Hooks.Activated; h != nil {
		h(t.key.kind, t.key.eui)
	}
}

func (t *twin) gauge() interface {
	Inc()
	Dec()
} {
	if t.key.kind == pebblestore.KindGateway {
		return t.sys.m.activeGw
	}
	return t.sys.m.activeSensor
}

var errNoDevice = errors.New("device not in the registry")

// load (re)reads the twin's durable state and starts a new generation:
// callbacks of earlier generations are ignored from now on.
func (t *twin) load(cand *postgres.Candidate) error {
	t.gen = t.sys.nextGen()
	t.loaded = false
	ctx := t.sys.ctx
	eui := pebblestore.EUI(t.key.eui)
	if t.key.kind == pebblestore.KindGateway {
		t.tenant = t.sys.cfg.GatewayTenant
		rec, err := t.sys.cfg.Store.LoadTwin(ctx, t.tenant, pebblestore.KindGateway, eui)
		var st devicetwin.GatewayState
		switch {
		case errors.Is(err, pebblestore.ErrNotFound):
			st, rec.Version = devicetwin.NewGateway(t.key.eui, devicetwin.GatewayConfig{Revision: 1, TenantID: t.tenant}), 0
		case err != nil:
			return err
		default:
			if st, err = devicetwin.UnmarshalGatewaySnapshot(rec.Snapshot); err != nil {
				t.sys.log.Error("gateway twin snapshot does not load", "gateway_eui", t.key.eui.String(), "err", err)
				return err
			}
		}
		t.gw, t.version, t.loaded = &st, rec.Version, true
		return nil
	}
	if cand == nil {
		c, ok := t.sys.cfg.Directory.Device(postgres.EUI64(t.key.eui))
		if !ok {
			return errNoDevice
		}
		cand = &c
	}
	t.tenant = idString(cand.CustomerID)
	if t.tenant == "" {
		t.tenant = t.sys.cfg.GatewayTenant
	}
	rec, err := t.sys.cfg.Store.LoadTwin(ctx, t.tenant, pebblestore.KindSensor, eui)
	switch {
	case errors.Is(err, pebblestore.ErrNotFound):
		cfg, cerr := SensorConfig(cand)
		if cerr != nil {
			// NewSensor falls back to the zero configuration; say so once.
			t.sys.log.Warn("device configuration invalid; using defaults", "dev_eui", t.key.eui.String(), "err", cerr)
		}
		t.sensor, t.version = devicetwin.NewSensor(t.key.eui, cfg), 0
	case err != nil:
		return err
	default:
		st, err := devicetwin.UnmarshalSensorSnapshot(rec.Snapshot)
		if err != nil {
			t.sys.log.Error("sensor twin snapshot does not load", "dev_eui", t.key.eui.String(), "err", err)
			return err
		}
		t.sensor, t.version = st, rec.Version
	}
	t.partner = t.sys.partner(cand)
	t.loaded = true
	return nil
}

// tenancy returns what the twin stamps on its events.
func (t *twin) tenancy() tenancy {
	if t.key.kind == pebblestore.KindGateway {
		return tenancy{}
	}
	cfg := t.sensor.Config()
	return tenancy{partner: t.partner, customer: cfg.TenantID, site: cfg.SiteID, tap: cfg.TapPointID}
}

// sessionKeys returns the session ciphers of a candidate, (re)built when
// the flight has none or the registry's keys changed.
func (t *twin) sessionKeys(c *postgres.Candidate) *lorawan.SessionKeys {
	fl := t.f()
	if fl.keys != nil && c.NwkSKey == fl.nwk && c.AppSKey == fl.app {
		return fl.keys
	}
	k, err := lorawan.NewSessionKeys(lorawan.AES128Key(c.NwkSKey), lorawan.AES128Key(c.AppSKey))
	if err != nil {
		panic(err) // cannot happen: 16-byte keys always make a cipher
	}
	fl.keys, fl.nwk, fl.app = k, c.NwkSKey, c.AppSKey
	return k
}

// input handles a routed input.
func (t *twin) input(in any) {
	t.lastActive = t.now()
	t.idleSent = false
	if _, ok := in.(*wakeMsg); ok {
		t.arm() // the due deadline fires from the timer
		return
	}
	if !t.loaded && !t.broken {
		var cand *postgres.Candidate
		if m, ok := in.(*frameMsg); ok {
			cand = &m.cands[m.idx]
		}
		if err := t.load(cand); err != nil {
			t.sys.fail(in, fmt.Errorf("%w: load twin %s: %w", ErrRetry, t.key.name(), err))
			return
		}
	}
	if t.broken {
		t.f().held = append(t.f().held, in)
		return
	}
	t.apply(in)
	t.advance()
	t.arm()
}

// apply applies one input to the in-memory state and records it as an op.
func (t *twin) apply(in any) {
	fl := t.f()
	fl.current = in
	if h := t.sys.cfg.Hooks.BeforeApply; h != nil {
		h(t.key.kind, t.key.eui, in)
	}
	bp := evPool.Get().(*[]devicetwin.Event)
	evs := (*bp)[:0]
	switch m := in.(type) {
	case *frameMsg:
		evs = t.applyFrame(m, evs)
	case *gwMsg:
		before := *t.gw
		evs = t.gw.Apply(m.input(), evs)
		t.record(in, m, nil, evs, *t.gw != before, func() any { c := before; return &c })
	case *opMsg:
		evs = t.applyOp(m, evs)
	case *tickIn:
		t.lastTick = m.now.UnixNano()
		t.sys.m.nTicks.Add(1)
		t.sys.m.ticks.Inc()
		if t.key.kind == pebblestore.KindGateway {
			before := *t.gw
			evs = t.gw.Apply(devicetwin.Tick{Now: m.now}, evs)
			t.record(in, nil, nil, evs, *t.gw != before, func() any { c := before; return &c })
		} else {
			before := t.sensor
			evs = t.sensor.Apply(devicetwin.Tick{Now: m.now}, evs)
			t.record(in, nil, nil, evs, t.sensor != before, func() any { c := before; return &c })
		}
	}
	clear(evs)
	*bp = evs[:0]
	evPool.Put(bp)
	fl.current = nil
}

func (t *twin) applyFrame(m *frameMsg, evs []devicetwin.Event) []devicetwin.Event {
	keys := t.sessionKeys(&m.cands[m.idx])
	m.frame.DevEUI = t.key.eui
	last, has := t.sensor.LastFCnt()
	if next := nextWithSession(m.cands, m.idx+1); next >= 0 && !t.micMatches(m, keys, last, has) {
		// Several devices share the DevAddr and the MIC is not this one's:
		// pass the frame on untouched, so that another device's frame never
		// counts as an attack on this one. The last candidate applies it
		// whatever its MIC (and counts a BAD_MIC).
		m.idx = next
		t.sys.route(key{pebblestore.KindSensor, devicetwin.EUI64(m.cands[next].DevEUI)}, m)
		return evs
	}
	before := t.sensor
	evs = t.sensor.ApplyFrame(&m.frame, keys, evs)
	changed := t.sensor != before
	var result error
	if r, ok := rejection(evs); ok {
		result = &RejectError{Reason: coreReason(r.Reason), Detail: r.Detail}
	}
	if result == nil && !m.forwarded && m.frame.Rx.GatewayEUI != (devicetwin.EUI64{}) {
		t.forward(m, keys, last, has, len(evs) > 0 || changed)
	}
	t.record(m, m, result, evs, changed, func() any { c := before; return &c })
	return evs
}

// applyOp applies an operator input. A twin with no stored state (nothing
// persisted and nothing in flight) or of another tenant refuses it with
// ErrNotFound; the refusal completes in order like any other op.
func (t *twin) applyOp(m *opMsg, evs []devicetwin.Event) []devicetwin.Event {
	m.view, m.events = devicetwin.SensorView{}, nil
	if t.key.kind != pebblestore.KindSensor || t.tenant != m.tenant || (t.version == 0 && len(t.fl.ops) == 0) {
		t.record(m, m, fmt.Errorf("%w: twin %s", ErrNotFound, t.key.name()), nil, false, nil)
		return evs
	}
	in := m.in
	if m.check != nil {
		c := t.sensor
		if err := m.check(&c, &in); err != nil {
			t.record(m, m, err, nil, false, nil)
			return evs
		}
	}
	before := t.sensor
	evs = t.sensor.Apply(in, evs)
	if len(evs) > 0 {
		m.events = append([]devicetwin.Event(nil), evs...)
	}
	m.view = t.sensor.View()
	t.record(m, m, nil, evs, t.sensor != before, func() any { c := before; return &c })
	return evs
}

// micMatches tells whether the frame's MIC verifies under this twin's
// session, with the counter the core would try (and, under ResetOnReboot,
// the counter restarted from zero).
func (t *twin) micMatches(m *frameMsg, keys *lorawan.SessionKeys, last uint32, has bool) bool {
	df, err := lorawan.ParseDataFrame(m.frame.PHYPayload)
	if err != nil {
		return false
	}
	fcnt, _, _ := lorawan.FullFCnt(last, has, df.FCnt16)
	if keys.VerifyUplinkMIC(&df, fcnt) == nil {
		return true
	}
	return t.sensor.Config().ResetPolicy == devicetwin.ResetOnReboot && uint32(df.FCnt16) != fcnt &&
		keys.VerifyUplinkMIC(&df, uint32(df.FCnt16)) == nil
}

// forward tells the receiving gateway's twin that it heard this frame.
// The frame completes only when that is durable too. A frame that changed
// nothing (a redelivery) is forwarded only if its MIC verifies, so that a
// redelivered rejected frame does not count as heard.
func (t *twin) forward(m *frameMsg, keys *lorawan.SessionKeys, last uint32, has, applied bool) {
	df, err := lorawan.ParseDataFrame(m.frame.PHYPayload)
	if err != nil {
		return
	}
	fcnt, _, _ := lorawan.FullFCnt(last, has, df.FCnt16)
	if !applied && keys.VerifyUplinkMIC(&df, fcnt) != nil {
		return
	}
	m.forwarded = true
	m.parts.Add(1)
	gw := m.frame.Rx.GatewayEUI
	seen := devicetwin.GatewayUplinkSeen{DevEUI: t.key.eui, FCnt: fcnt, Rx: m.frame.Rx}
	if sink := t.sys.cfg.GatewaySeen; sink != nil && !sink.Local(gw) {
		sys := t.sys
		sink.PublishSeen(sys.ctx, gw, seen, func(err error) {
			if err != nil {
				err = fmt.Errorf("%w: gateway %s: %w", ErrRetry, gw, err)
			}
			m.complete(sys, err)
		})
		return
	}
	t.sys.route(key{pebblestore.KindGateway, gw}, &gwMsg{eui: gw, frame: m, seen: seen})
}

func rejection(evs []devicetwin.Event) (devicetwin.Rejection, bool) {
	for i := range evs {
		if evs[i].Kind == devicetwin.KindRejection {
			return evs[i].Rejection, true
		}
	}
	return devicetwin.Rejection{}, false
}

// record appends the op of an applied input and hands its events to the
// batcher. A unit persists the state after the longest published prefix of
// the ops; that prefix ends right before an op still being published, so
// an op with events that joins a non-empty list keeps a copy of the state
// before it (saveBefore). Ops without events are published at once and
// never end a prefix early.
func (t *twin) record(in any, done completion, result error, evs []devicetwin.Event, changed bool, saveBefore func() any) {
	fl := t.f()
	o := &op{in: in, done: done, result: result, changed: changed, seq: t.seq()}
	if len(evs) > 0 {
		tn := t.tenancy()
		o.events = toProtos(evs, &tn)
	}
	if len(o.events) == 0 {
		o.published = true
		fl.ops = append(fl.ops, o)
		return
	}
	if len(fl.ops) > 0 {
		o.before = saveBefore()
	}
	fl.ops = append(fl.ops, o)
	o.pubStart = time.Now()
	t.sys.pub.submit(&pubItem{events: o.events, op: o, gen: t.gen, pid: t.self})
}

func (t *twin) seq() uint64 {
	if t.key.kind == pebblestore.KindGateway {
		return t.gw.TotalUplinks()
	}
	f, _ := t.sensor.LastFCnt()
	return uint64(f)
}

// advance persists the published prefix of the ops when no unit is in
// flight, and completes ops that need no write.
func (t *twin) advance() {
	for fl := t.fl; fl != nil && fl.persisting == 0 && !t.broken && t.loaded && len(fl.ops) > 0; {
		k, changed, nev := 0, false, 0
		for k < len(fl.ops) && fl.ops[k].published {
			changed = changed || fl.ops[k].changed
			nev += len(fl.ops[k].events)
			k++
		}
		if k == 0 {
			return
		}
		if t.sys.cfg.NoRecentEvents {
			nev = 0
		}
		if !changed && nev == 0 {
			t.completeOps(k, nil)
			continue
		}
		writes := make([]pebblestore.Write, 0, 1+nev)
		if changed {
			var at any // the state after ops[k-1]: before ops[k], or the current one
			if k < len(fl.ops) {
				if at = fl.ops[k].before; at == nil {
					return // cannot happen (see record); wait for ops[k] instead
				}
			}
			snap, err := t.marshal(at)
			if err != nil {
				t.sys.log.Error("twin snapshot does not marshal", "twin", t.key.name(), "err", err)
				t.broken = true
				t.recover()
				return
			}
			writes = append(writes, pebblestore.PutTwin(t.tenant, t.key.kind, pebblestore.EUI(t.key.eui), pebblestore.TwinUpdate{
				ExpectedVersion: t.version, Epoch: t.sys.cfg.Epoch, AppliedSeq: fl.ops[k-1].seq, Snapshot: snap,
			}))
		}
		if nev > 0 {
			// The events are published, so nothing else reads them now. The
			// window keeps them without the ids its key and the twin already
			// hold (tenant, partner, site, tap point, device): a third of the
			// bytes, which is most of the store's write volume.
			var buf []byte
			for _, o := range fl.ops[:k] {
				for _, ev := range o.events {
					StripForWindow(ev)
					start := len(buf)
					var err error
					if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf, ev); err != nil {
						buf = buf[:start]
						continue // cannot happen for a built message
					}
					writes = append(writes, pebblestore.PutEvent(t.tenant, pebblestore.EventRecord{
						EUI: pebblestore.EUI(t.key.eui), Time: ev.GetEventTime().AsTime(), ID: ev.GetEventId(), Payload: buf[start:len(buf):len(buf)],
					}))
				}
			}
		}
		fl.persisting, fl.persistBumps, fl.persistStart = k, changed, time.Now()
		gen, self, root := t.gen, t.self, t.sys.root
		err := t.sys.cfg.Store.Submit(t.sys.ctx, writes, func(err error) { root.Send(self, &persistedMsg{gen: gen, err: err}) })
		if err != nil {
			fl.persisting = 0
			t.sys.m.persistErrs.Inc()
			t.broken = true
			t.recover()
		}
		return
	}
	t.land()
	t.maybeStop()
}

func (t *twin) marshal(after any) ([]byte, error) {
	switch s := after.(type) {
	case *devicetwin.SensorState:
		return s.MarshalSnapshot()
	case *devicetwin.GatewayState:
		return s.MarshalSnapshot()
	}
	if t.key.kind == pebblestore.KindGateway {
		return t.gw.MarshalSnapshot()
	}
	return t.sensor.MarshalSnapshot()
}

// completeOps completes the first k ops: their effects are durable.
func (t *twin) completeOps(k int, err error) {
	fl := t.fl
	for i, o := range fl.ops[:k] {
		if o.done != nil {
			e := err
			if e == nil {
				e = o.result
			}
			o.done.complete(t.sys, e)
		}
		fl.ops[i] = nil
	}
	n := copy(fl.ops, fl.ops[k:])
	clear(fl.ops[n:])
	fl.ops = fl.ops[:n]
}

func (t *twin) onPublished(m *publishedMsg) {
	if m.gen != t.gen || t.fl == nil {
		return // an earlier generation's op: re-applied since
	}
	t.sys.m.pubLatency.Observe(time.Since(m.op.pubStart).Seconds())
	if m.err != nil {
		t.broken = true
		if t.fl.persisting == 0 {
			t.recover()
		}
		return
	}
	m.op.published = true
	t.advance()
}

func (t *twin) onPersisted(m *persistedMsg) {
	if m.gen != t.gen || t.fl == nil {
		return
	}
	fl := t.fl
	n := fl.persisting
	fl.persisting = 0
	t.sys.m.persistLat.Observe(time.Since(fl.persistStart).Seconds())
	if m.err != nil {
		t.sys.m.persistErrs.Inc()
		t.broken = true
		t.recover()
		return
	}
	if fl.persistBumps {
		t.version++
	}
	fl.retries = 0
	t.completeOps(n, nil)
	if t.broken {
		t.recover()
		return
	}
	t.advance()
	t.arm()
}

// recover makes memory equal to durable state again after a failed
// publish or persist: it reloads the twin (a new generation) and re-applies
// every input that was not durable, in order, so nothing is reordered.
//
// Once an input has been re-applied MaxApplyAttempts times the failure is
// not passing (Kafka or the Raft group unreachable, a leader election): the
// twin then waits (backing off up to retryMaxDelay) and tries again, still
// holding every later input behind it. It never hands one input back to
// its sender while applying the next ones: the sender would redeliver it
// after its successors, and a frame applied out of order yields other
// events (readings backfilled from the next frame's history) than the same
// frames in order. Only when the twin must stop (passivation, a partition
// moved away, shutdown) does it give every input back, in order, and
// forget its unconfirmed state. Precondition: no unit in flight.
func (t *twin) recover() {
	fl := t.f()
	if fl.waiting {
		return // onRetry recovers
	}
	over := false
	pending := make([]any, 0, len(fl.ops)+len(fl.held))
	for _, o := range fl.ops {
		if attempts(o.in) >= t.sys.cfg.MaxApplyAttempts {
			over = true
		}
		pending = append(pending, o.in)
	}
	fl.held = append(pending, fl.held...)
	fl.ops = nil
	fl.keys = nil
	if over {
		if t.passivating || t.sys.closing.Load() || !t.sys.owns(t.key) {
			t.giveUp()
			return
		}
		fl.retries++
		fl.waiting = true
		t.sys.m.nRecoveryWaits.Add(1)
		d := min(retryBaseDelay<<min(fl.retries-1, 6), retryMaxDelay)
		gen, self, root := t.gen, t.self, t.sys.root
		t.sys.cfg.Clock.AfterFunc(d, func() { root.Send(self, &retryMsg{gen: gen}) })
		return
	}
	var cand *postgres.Candidate
	for _, in := range fl.held {
		if m, ok := in.(*frameMsg); ok {
			cand = &m.cands[m.idx]
			break
		}
	}
	if err := t.load(cand); err != nil {
		t.broken = false
		t.failHeld(fmt.Errorf("%w: reload twin %s: %w", ErrRetry, t.key.name(), err))
		t.land()
		return
	}
	t.broken = false
	for len(fl.held) > 0 && !t.broken {
		in := fl.held[0]
		fl.held[0] = nil
		fl.held = fl.held[1:]
		t.apply(in)
	}
	t.advance()
	t.arm()
}

// Backoff of recoveries after MaxApplyAttempts failed ones.
const (
	retryBaseDelay = 50 * time.Millisecond
	retryMaxDelay  = 2 * time.Second
)

// onRetry recovers again once the backoff is over, giving every held
// input a fresh count of attempts.
func (t *twin) onRetry(m *retryMsg) {
	if t.fl == nil || !t.fl.waiting || m.gen != t.gen {
		return
	}
	t.fl.waiting = false
	for _, in := range t.fl.held {
		resetAttempts(in)
	}
	if t.passivating || t.sys.closing.Load() || !t.sys.owns(t.key) {
		t.giveUp()
		return
	}
	t.recover()
}

// giveUp hands every input not durable back to its sender with ErrRetry,
// in order, and drops the unconfirmed in-memory state: the next input
// reloads the durable one.
func (t *twin) giveUp() {
	t.broken = false
	t.loaded = false
	t.failHeld(fmt.Errorf("%w: twin %s: publish or persist failing while the twin stops", ErrRetry, t.key.name()))
	t.fl.retries, t.fl.waiting = 0, false
	t.land()
	t.maybeStop()
}

// retried is an input that counts how often it was re-applied.
type retried interface{ tries() *int }

func (m *frameMsg) tries() *int { return &m.attempts }
func (m *gwMsg) tries() *int    { return &m.attempts }
func (m *opMsg) tries() *int    { return &m.attempts }
func (m *tickIn) tries() *int   { return &m.attempts }

// attempts counts one more application of in and returns the count before.
func attempts(in any) int {
	if r, ok := in.(retried); ok {
		n := r.tries()
		*n++
		return *n - 1
	}
	return 0
}

func resetAttempts(in any) {
	if r, ok := in.(retried); ok {
		*r.tries() = 0
	}
}

func (t *twin) failHeld(err error) {
	if t.fl == nil {
		return
	}
	for _, in := range t.fl.held {
		t.sys.fail(in, err)
	}
	t.fl.held = nil
}

func (t *twin) quiet() bool {
	return !t.broken && (t.fl == nil || (len(t.fl.ops) == 0 && t.fl.persisting == 0 && len(t.fl.held) == 0))
}

func (t *twin) deadline() (int64, bool) {
	if !t.loaded {
		return 0, false
	}
	var d time.Time
	var ok bool
	if t.key.kind == pebblestore.KindGateway {
		d, ok = t.gw.NextDeadline()
	} else {
		d, ok = t.sensor.NextDeadline()
	}
	// A deadline the last tick did not move past is not retried until
	// another input changes the state.
	if !ok || (t.lastTick != 0 && d.UnixNano() <= t.lastTick) {
		return 0, false
	}
	return d.UnixNano(), true
}

// arm keeps one timer per twin armed at the earlier of its next deadline
// and the end of its idle period. It only moves the timer earlier; a timer
// that fires early re-arms. A deadline due by the timer clock but not yet
// by the tick clock (a backlog being replayed) is looked at again after
// TickRetry: arming it at once would spin.
func (t *twin) arm() {
	now := t.now()
	var next int64
	has := false
	if !t.idleSent && !t.passivating {
		next, has = t.lastActive+int64(t.sys.cfg.IdleTimeout), true
	}
	if d, ok := t.deadline(); ok {
		if d <= now && d > t.tickNow() {
			d = now + int64(t.sys.cfg.TickRetry)
		}
		if !has || d < next {
			next, has = d, true
		}
	}
	if !has {
		return
	}
	if t.broken && next < now+int64(time.Second) {
		next = now + int64(time.Second)
	}
	if t.armed && next >= t.timerAt {
		return
	}
	d := time.Duration(max(next-now, 0))
	if t.timer == nil {
		self, root := t.self, t.sys.root
		t.timer = t.sys.cfg.Clock.AfterFunc(d, func() { root.Send(self, timerFired) })
	} else {
		t.timer.Reset(d)
	}
	t.timerAt, t.armed = next, true
}

// onTimer ticks the twin when its deadline is due by the tick clock (the
// time rules' "now"), and starts passivation when it has been idle by the
// timer clock.
func (t *twin) onTimer() {
	t.armed = false
	now := t.now()
	if d, ok := t.deadline(); ok && !t.broken {
		if tickNow := t.tickNow(); tickNow >= d {
			t.apply(&tickIn{now: time.Unix(0, tickNow).UTC()})
			t.advance()
		}
	}
	if !t.idleSent && !t.passivating && now-t.lastActive >= int64(t.sys.cfg.IdleTimeout) && t.quiet() {
		t.idleSent = true
		t.sys.route(t.key, &idleMsg{key: t.key, pid: t.self})
	}
	t.arm()
}

func (t *twin) maybeStop() {
	if !t.passivating || !t.quiet() {
		return
	}
	if d, ok := t.deadline(); ok {
		_ = t.sys.dl.set(t.sys.ctx, t.key, time.Unix(0, d))
	}
	t.stopTimer()
	t.sys.m.nPassivations.Add(1)
	t.sys.m.passivations.Inc()
	t.passivating = false // stop once
	t.sys.root.Stop(t.self)
	if h := t.sys.cfg.Hooks.Passivated; h != nil {
		h(t.key.kind, t.key.eui)
	}
}

func (t *twin) stopTimer() {
	if t.timer != nil {
		t.timer.Stop()
	}
	t.armed = false
}

// onRestarting runs in the failed instance before the supervisor replaces
// it: the input that panicked is rejected as twin_panic (dead-lettered),
// the others are handed back for a retry, and the replacement reloads the
// durable state, so nothing the panic may have corrupted survives.
func (t *twin) onRestarting() {
	t.sys.m.nRestarts.Add(1)
	t.sys.m.restarts.Inc()
	t.deactivate()
	if t.fl != nil && t.fl.current != nil {
		t.sys.fail(t.fl.current, &RejectError{Reason: ReasonTwinPanic, Detail: "twin " + t.key.name() + " panicked applying it"})
		t.fl.current = nil
	}
	t.failAll(fmt.Errorf("%w: twin %s restarted", ErrRetry, t.key.name()))
}

func (t *twin) onStopping() {
	t.deactivate()
	t.failAll(fmt.Errorf("%w: twin %s stopped: %w", ErrRetry, t.key.name(), ErrClosed))
}

func (t *twin) deactivate() {
	t.stopTimer()
	t.sys.m.nActive.Add(-1)
	t.gauge().Dec()
}

func (t *twin) failAll(err error) {
	if t.fl == nil {
		return
	}
	for _, o := range t.fl.ops {
		t.sys.fail(o.in, err)
	}
	t.fl.ops = nil
	t.failHeld(err)
}

// fail completes an input with err (ticks and wakes have no sender).
func (s *System) fail(in any, err error) {
	switch m := in.(type) {
	case *frameMsg:
		m.complete(s, err)
	case *gwMsg:
		m.complete(s, err)
	case *opMsg:
		m.complete(s, err)
	}
}
