package fleet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// Uplink is one gateway's reception of one LoRaWAN uplink, the shape of a
// lorawan.uplink record (DESIGN §3) without depending on the proto package.
type Uplink struct {
	DevEUI  lorawan.EUI64
	DevAddr lorawan.DevAddr
	// PHYPayload is the complete encrypted frame. The copies of one
	// transmission heard by several gateways share this slice: treat it
	// as read-only.
	PHYPayload  []byte
	GatewayEUI  lorawan.EUI64
	RSSI        int32   // dBm
	SNR         float32 // dB
	FrequencyHz uint32
	DataRate    string // e.g. "SF9BW125"
	ReceivedAt  time.Time

	// Ground truth for tests, not part of the wire record.
	FCnt  uint32 // full 32-bit frame counter
	FPort uint8
}

// Fleet is a running simulation. It is not safe for concurrent use: one
// goroutine drives it (Next or Step) and paces it.
type Fleet struct {
	cfg      Config
	sensors  []*sensor
	gateways []GatewayInfo

	sched minHeap[schedItem] // each live sensor's next transmission
	out   minHeap[outItem]   // receptions not yet handed out
	seq   uint64             // tie-breaker making out a total order
	txs   uint64             // transmissions simulated (lost ones included)

	recv    []reception // scratch
	payload []byte      // scratch for Clip'R payloads
	err     error       // sticky: a simulator bug stops the fleet
}

type schedItem struct {
	at     time.Duration
	sensor int
	kind   txKind
}

type outItem struct {
	at  time.Duration
	seq uint64
	up  Uplink
}

// New builds a fleet from cfg (defaults applied, then validated). Identities,
// keys, placement and behaviours follow from cfg.Seed alone.
func New(cfg Config) (*Fleet, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Fleet{
		cfg:   cfg,
		sched: minHeap[schedItem]{less: func(a, b schedItem) bool { return a.at < b.at || a.at == b.at && a.sensor < b.sensor }},
		out:   minHeap[outItem]{less: func(a, b outItem) bool { return a.at < b.at || a.at == b.at && a.seq < b.seq }},
	}
	h := splitmix64(uint64(cfg.Seed))
	world := rand.New(rand.NewPCG(h, 0x776f726c64)) // "world": placement and assignment
	f.placeGateways(world, h)
	kinds := assignKinds(world, cfg.Sensors, cfg.Taps)
	behaviours := assignBehaviours(world, kinds, cfg.Behaviours)
	midnight := cfg.Start.Sub(cfg.Start.UTC().Truncate(24 * time.Hour))

	f.sensors = make([]*sensor, cfg.Sensors)
	for i := range f.sensors {
		s, err := f.newSensor(world, h, i, kinds[i], behaviours[i], midnight)
		if err != nil {
			return nil, err
		}
		f.sensors[i] = s
		f.schedule(i)
	}
	return f, nil
}

// placeGateways scatters the gateways over a square whose side grows with
// their number (about one per square kilometre).
func (f *Fleet) placeGateways(world *rand.Rand, h uint64) {
	side := 1000 * math.Sqrt(float64(f.cfg.Gateways))
	f.gateways = make([]GatewayInfo, f.cfg.Gateways)
	for i := range f.gateways {
		x, y := world.Float64()*side, world.Float64()*side
		f.gateways[i] = GatewayInfo{
			EUI:       lorawan.EUI64{'L', 'G', 'G', 'W', byte(h >> 8), byte(h), byte(i >> 8), byte(i)},
			X:         x,
			Y:         y,
			Latitude:  originLat + y/metresPerDegLat,
			Longitude: originLon + x/(metresPerDegLat*math.Cos(originLat*math.Pi/180)),
		}
	}
}

// newSensor derives sensor i: identity and keys from its own key stream,
// position near a random home gateway, radio links, behaviour script.
func (f *Fleet) newSensor(world *rand.Rand, h uint64, i int, kind TapKind, b Behaviour, midnight time.Duration) (*sensor, error) {
	cfg := &f.cfg
	keyRNG := rand.New(rand.NewPCG(h^0x6b657973, uint64(i))) // "keys"
	info := SensorInfo{
		Index:     i,
		DevEUI:    lorawan.EUI64{'L', 'G', byte(h >> 16), byte(h >> 8), byte(h), byte(i >> 16), byte(i >> 8), byte(i)},
		TapKind:   kind,
		Behaviour: b,
	}
	// 7-bit NwkID 0 (experimental NetID), 25-bit address unique in the fleet.
	addr := (uint32(h>>32) + uint32(i)) & 0x01ff_ffff
	info.DevAddr = lorawan.DevAddr{byte(addr >> 24), byte(addr >> 16), byte(addr >> 8), byte(addr)}
	fillKey(keyRNG, &info.NwkSKey)
	fillKey(keyRNG, &info.AppSKey)
	keys, err := lorawan.NewSessionKeys(info.NwkSKey, info.AppSKey)
	if err != nil {
		return nil, fmt.Errorf("sensor %d keys: %w", i, err)
	}

	rng := rand.New(rand.NewPCG(h, uint64(i)+1))
	home := f.gateways[world.IntN(len(f.gateways))]
	dist := math.Exp(uniform(world, math.Log(15), math.Log(1500)))
	angle := world.Float64() * 2 * math.Pi
	info.X, info.Y = home.X+dist*math.Cos(angle), home.Y+dist*math.Sin(angle)
	penetration := uniform(world, 10, 30) // basements, shafts, cupboards
	links := make([]link, 0, len(f.gateways))
	for g, gw := range f.gateways {
		d := math.Hypot(info.X-gw.X, info.Y-gw.Y)
		snr := meanRSSI(d, penetration+world.NormFloat64()*shadowingSigma) - noiseFloorDBm
		links = append(links, link{gw: g, meanSNR: snr})
	}
	sortLinks(links)
	links = links[:min(len(links), cfg.MaxGatewaysPerUplink+2)]
	sf := chooseSF(links[0].meanSNR)
	info.DataRate = dataRateName(sf)

	s := &sensor{
		info: info, keys: keys, rng: rng, links: links, sf: sf, cfg: cfg,
		boot:     (time.Duration(rng.Int64N(int64(cfg.ReportInterval))) / time.Second) * time.Second,
		midnight: midnight,
	}
	s.setupPhysics()
	s.info.BootAt = cfg.Start.Add(s.boot)
	if s.detachAt != never {
		s.info.DetachAt = cfg.Start.Add(s.detachAt)
	}
	if s.silentAt != never {
		s.info.SilentAt = cfg.Start.Add(s.silentAt)
	}
	return s, nil
}

// fillKey draws a test key (not cryptographically random, by design:
// reproducible from the seed).
func fillKey(rng *rand.Rand, k *lorawan.AES128Key) {
	for i := 0; i < len(k); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			k[i+j] = byte(v >> (8 * j))
		}
	}
}

// sortLinks orders links best first (ties by gateway index).
func sortLinks(ls []link) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && (ls[j].meanSNR > ls[j-1].meanSNR || ls[j].meanSNR == ls[j-1].meanSNR && ls[j].gw < ls[j-1].gw); j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

// schedule queues sensor i's next transmission, if any.
func (f *Fleet) schedule(i int) {
	if at, kind, ok := f.sensors[i].nextTx(); ok {
		f.sched.Push(schedItem{at: at, sensor: i, kind: kind})
	}
}

// Config returns the effective configuration (defaults applied).
func (f *Fleet) Config() Config { return f.cfg }

// Sensors returns every sensor's identity, keys and script, in index order.
func (f *Fleet) Sensors() []SensorInfo {
	out := make([]SensorInfo, len(f.sensors))
	for i, s := range f.sensors {
		out[i] = s.info
	}
	return out
}

// Gateways returns the gateways in index order.
func (f *Fleet) Gateways() []GatewayInfo { return append([]GatewayInfo(nil), f.gateways...) }

// ready reports whether the earliest pending reception can be handed out:
// no transmission still to be simulated can be received before it, since
// reception follows transmission.
func (f *Fleet) ready() bool {
	return f.out.Len() > 0 && (f.sched.Len() == 0 || f.out.Peek().at <= f.sched.Peek().at)
}

// fill simulates transmissions until a reception is ready; false when the
// fleet has nothing more to say (every sensor silent).
func (f *Fleet) fill() bool {
	for f.err == nil && !f.ready() {
		if f.sched.Len() == 0 {
			return false
		}
		it := f.sched.Pop()
		if f.err = f.transmit(it); f.err != nil {
			return false
		}
		f.schedule(it.sensor)
	}
	return f.err == nil
}

// Err returns the error that stopped the fleet, if any. Errors are
// simulator bugs (a payload or frame the codecs refuse); tests assert nil.
func (f *Fleet) Err() error { return f.err }

// Next returns the next reception in receive-time order. It returns false
// when no sensor will ever transmit again (with the default behaviours that
// does not happen, so bound runs with Step or a count) or after an error
// (see Err).
func (f *Fleet) Next() (Uplink, bool) {
	if !f.fill() {
		return Uplink{}, false
	}
	return f.out.Pop().up, true
}

// Step hands every reception received before until to emit, in receive-time
// order, and returns how many it emitted. Later calls continue where it
// stopped; slicing time differently yields the same sequence.
func (f *Fleet) Step(until time.Time, emit func(Uplink)) int {
	limit := until.Sub(f.cfg.Start)
	n := 0
	for f.fill() && f.out.Peek().at < limit {
		emit(f.out.Pop().up)
		n++
	}
	return n
}

// transmit builds one frame of sensor it.sensor and queues its receptions.
func (f *Fleet) transmit(it schedItem) error {
	s := f.sensors[it.sensor]
	msg := s.message(it.at, it.kind)
	var err error
	f.payload, err = msg.AppendBinary(f.payload[:0])
	if err != nil {
		return fmt.Errorf("sensor %d %T: %w", it.sensor, msg, err)
	}
	fcnt := s.fcnt
	s.fcnt++
	f.txs++
	s.lastTx = it.at
	port := msg.Port()
	p := lorawan.DataFrameParams{
		MType: lorawan.MTypeUnconfirmedDataUp, DevAddr: s.info.DevAddr, FCtrl: lorawan.FCtrl{ADR: true},
		FCnt: fcnt, HasFPort: true, FPort: port, FRMPayload: f.payload,
	}
	phy, err := s.keys.AppendDataFrame(make([]byte, 0, 13+len(f.payload)), p)
	if err != nil {
		return fmt.Errorf("sensor %d frame: %w", it.sensor, err)
	}
	if f.cfg.FrameLoss > 0 && s.rng.Float64() < f.cfg.FrameLoss {
		return nil
	}
	freq := channelHz(s.rng.IntN(numChannels))
	at := it.at + airtime(len(phy), s.sf)
	f.recv = receive(f.recv[:0], s.rng, s.links, s.sf, f.cfg.MaxGatewaysPerUplink)
	for _, r := range f.recv {
		at += time.Duration(1+s.rng.IntN(5000)) * time.Microsecond // backhaul and clock skew
		f.seq++
		f.out.Push(outItem{at: at, seq: f.seq, up: Uplink{
			DevEUI: s.info.DevEUI, DevAddr: s.info.DevAddr, PHYPayload: phy,
			GatewayEUI: f.gateways[r.gw].EUI, RSSI: r.rssi, SNR: r.snr,
			FrequencyHz: freq, DataRate: dataRateName(s.sf),
			ReceivedAt: f.cfg.Start.Add(at), FCnt: fcnt, FPort: port,
		}})
	}
	return nil
}

// splitmix64 spreads a seed over 64 bits (Steele et al.).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
