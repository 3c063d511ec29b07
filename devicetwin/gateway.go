package devicetwin

import "time"

// recentUplinks is how many (DevEUI, FCnt) keys a gateway twin remembers to
// recognise a redelivered GatewayUplinkSeen. An uplink received no later
// than one that left this ring is ignored (it may have been counted), so
// re-delivery never counts twice; a copy that arrives that late is lost to
// the statistics, which are statistics.
const recentUplinks = 32

type seenUplink struct {
	key uint64
	at  ms
}

// GatewayState is the state of one gateway twin: GATEWAY_OFFLINE and the
// link-quality statistics of the uplinks it heard. Like SensorState it is a
// plain comparable value.
type GatewayState struct {
	eui EUI64
	cfg GatewayConfig

	commissioned, lastHeard, lastStats, lastTick, now ms

	// Counters of the newest stats record.
	rxReceived, rxOK, txReceived, txEmitted uint32
	lat, lon                                float64
	hasLoc                                  bool

	// Link statistics since the newest stats record.
	uplinks          uint32
	rssiMin, rssiMax int16
	rssiSum          int64
	snrSum           float64
	totalUplinks     uint64

	// recent remembers the newest uplinks (key and receive time);
	// evictedMax is the newest receive time that left the ring: anything
	// received no later may have been counted and is ignored.
	recent     [recentUplinks]seenUplink
	recentPos  uint8
	evictedMax ms

	alarm Alarm
	opAt  ms
}

// NewGateway returns the twin of a gateway that has never been heard.
func NewGateway(eui EUI64, cfg GatewayConfig) GatewayState {
	if cfg.Validate() != nil {
		cfg = GatewayConfig{Revision: cfg.Revision}
	}
	return GatewayState{eui: eui, cfg: cfg}
}

// EUI returns the gateway EUI.
func (g *GatewayState) EUI() EUI64 { return g.eui }

// Config returns the configuration in force.
func (g *GatewayState) Config() GatewayConfig { return g.cfg }

// Alarm returns the GATEWAY_OFFLINE occurrence (other types: none).
func (g *GatewayState) Alarm(t AlarmType) Alarm {
	if t != GatewayOffline {
		return Alarm{}
	}
	return g.alarm
}

// LastHeard returns when the gateway was last heard (stats or uplink).
func (g *GatewayState) LastHeard() time.Time { return g.lastHeard.time() }

// TotalUplinks returns how many distinct uplinks the gateway was seen to
// receive.
func (g *GatewayState) TotalUplinks() uint64 { return g.totalUplinks }

// ApplyGateway applies one input to a gateway twin; see ApplySensor.
func ApplyGateway(g GatewayState, in Input) (GatewayState, []Event) {
	ev := g.Apply(in, nil)
	return g, ev
}

// Apply is ApplyGateway in place, appending the events to dst.
func (g *GatewayState) Apply(in Input, dst []Event) []Event {
	switch v := in.(type) {
	case GatewayStats:
		return g.applyStats(&v, dst)
	case GatewayUplinkSeen:
		return g.applyUplinkSeen(&v, dst)
	case Tick:
		now := toMS(v.Now)
		if now <= g.lastTick {
			return dst
		}
		g.lastTick = now
		e := emitter{dst: dst, id: EventID{Dev: g.eui, Src: srcTick, N: uint64(now)}}
		g.offlineCheck(now, true, &e)
		return e.dst
	case GatewayConfigChange:
		if v.Config.Revision <= g.cfg.Revision || v.Config.Validate() != nil {
			return dst
		}
		g.cfg = v.Config
		if at := toMS(v.At); g.commissioned == 0 && at != 0 {
			g.commissioned = at
		}
		return dst
	case AlarmAck:
		return g.applyOperator(v.Type, toMS(v.At), v.By, v.Note, false, dst)
	case AlarmClear:
		return g.applyOperator(v.Type, toMS(v.At), v.By, v.Note, true, dst)
	}
	return dst
}

// NextDeadline returns when the gateway twin next needs a Tick.
func (g *GatewayState) NextDeadline() (time.Time, bool) {
	d, ok := g.offlineDeadline()
	return d.time(), ok
}

func (g *GatewayState) offlineDeadline() (ms, bool) {
	if g.commissioned == 0 || g.alarm.Status.Active() {
		return 0, false
	}
	d := max(g.lastHeard, g.commissioned) + g.cfg.offlineAfter()
	if d <= g.alarm.ClearedAt {
		return 0, false
	}
	return d, true
}

// offlineCheck raises GATEWAY_OFFLINE at its deadline when now passed it
// (inclusive for ticks; a record received exactly at the deadline is in
// time).
func (g *GatewayState) offlineCheck(now ms, inclusive bool, e *emitter) {
	if now > g.now {
		g.now = now
	}
	d, ok := g.offlineDeadline()
	if !ok || d > now || (!inclusive && d == now) {
		return
	}
	silent := d - max(g.lastHeard, g.commissioned)
	c := alarmCtx{typ: GatewayOffline, at: d, by: SystemActor, note: "nothing heard for " + fmtDur(silent)}
	c.raise(&g.alarm, Major, true, int32(silent/60000), int32(silent/60000), e)
}

// heard records that the gateway was heard at at.
func (g *GatewayState) heard(at ms, e *emitter) {
	if g.commissioned == 0 {
		g.commissioned = at
	}
	g.offlineCheck(at, false, e)
	g.lastHeard = max(g.lastHeard, at)
	if at < g.alarm.RaisedAt {
		return // heard before it went silent: a late record proves nothing
	}
	c := alarmCtx{typ: GatewayOffline, at: at, by: SystemActor, note: "gateway heard"}
	c.clear(&g.alarm, e)
}

func (g *GatewayState) applyStats(st *GatewayStats, dst []Event) []Event {
	at := toMS(st.At)
	if at <= g.lastStats {
		return dst
	}
	g.lastStats = at
	e := emitter{dst: dst, id: EventID{Dev: g.eui, Src: srcGateway, N: uint64(at)}}
	g.heard(at, &e)
	g.rxReceived, g.rxOK, g.txReceived, g.txEmitted = st.RxReceived, st.RxOK, st.TxReceived, st.TxEmitted
	if st.HasLocation {
		g.lat, g.lon, g.hasLoc = st.Latitude, st.Longitude, true
	}
	ev := e.add(KindGatewayStatus, at)
	ev.Gateway = GatewayStatus{
		Online: !g.alarm.Status.Active(), RxReceived: st.RxReceived, RxOK: st.RxOK,
		TxReceived: st.TxReceived, TxEmitted: st.TxEmitted, Uplinks: g.uplinks,
		MinRSSI: g.rssiMin, MaxRSSI: g.rssiMax, LastSeen: g.lastHeard.time(),
	}
	if g.uplinks > 0 {
		ev.Gateway.MeanRSSI = float64(g.rssiSum) / float64(g.uplinks)
		ev.Gateway.MeanSNR = g.snrSum / float64(g.uplinks)
	}
	g.uplinks, g.rssiMin, g.rssiMax, g.rssiSum, g.snrSum = 0, 0, 0, 0, 0
	return e.dst
}

// uplinkKey hashes (DevEUI, FCnt) with FNV-1a; never 0 (the empty slot).
func uplinkKey(dev EUI64, fcnt uint32) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range dev {
		h = (h ^ uint64(b)) * 1099511628211
	}
	for i := range 4 {
		h = (h ^ uint64(byte(fcnt>>(8*i)))) * 1099511628211
	}
	if h == 0 {
		h = 1
	}
	return h
}

func (g *GatewayState) applyUplinkSeen(u *GatewayUplinkSeen, dst []Event) []Event {
	key := uplinkKey(u.DevEUI, u.FCnt)
	at := toMS(u.Rx.ReceivedAt)
	if at <= g.evictedMax {
		return dst
	}
	for _, r := range g.recent {
		if r.key == key {
			return dst
		}
	}
	if old := g.recent[g.recentPos]; old.key != 0 {
		g.evictedMax = max(g.evictedMax, old.at)
	}
	g.recent[g.recentPos] = seenUplink{key, at}
	g.recentPos = (g.recentPos + 1) % recentUplinks
	e := emitter{dst: dst, id: EventID{Dev: g.eui, Src: srcGateway, Epoch: 1, N: uint64(at)}}
	g.heard(at, &e)
	r := u.Rx.RSSI
	if g.uplinks == 0 || r < g.rssiMin {
		g.rssiMin = r
	}
	if g.uplinks == 0 || r > g.rssiMax {
		g.rssiMax = r
	}
	g.uplinks++
	g.totalUplinks++
	g.rssiSum += int64(r)
	g.snrSum += float64(u.Rx.SNR)
	return e.dst
}

func (g *GatewayState) applyOperator(t AlarmType, at ms, by, note string, clear bool, dst []Event) []Event {
	if t != GatewayOffline || at <= g.opAt {
		return dst
	}
	g.opAt = at // see SensorState.applyOperator
	if g.alarm.RaisedAt > at {
		return dst
	}
	e := emitter{dst: dst, id: EventID{Dev: g.eui, Src: srcOperator, Epoch: uint32(t), N: uint64(at)}}
	c := alarmCtx{typ: t, at: at, by: by, note: note}
	if clear {
		c.manualClear(&g.alarm, &e)
	} else {
		c.ack(&g.alarm, &e)
	}
	return e.dst
}
