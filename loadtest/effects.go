package loadtest

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	"github.com/legionelladossier/legiond/loadtest/fleet"
)

// record is one lorawan.uplink record to produce: a gateway's copy of a
// transmission, possibly rewritten by a scenario's effects.
type record struct {
	up     fleet.Uplink
	sensor int32
	fcnt   uint32 // the frame counter on the air (after rewriting)
	port   uint8
}

// effects turns the fleet's uplinks into the records of a scenario. The
// fleet cannot be told that a building's hot water failed or that the
// caretaker flushed every tap at 8 o'clock, so the harness rewrites the
// frames of the sensors concerned with their real session keys: it caps
// their pipe temperatures (alarm storm) or inserts extra FPort 2 flush
// reports (flush storm), renumbering the sensor's later frames so that its
// frame counter stays strictly increasing, as a real device's would.
// Other sensors' uplinks pass through untouched and cost a slice lookup.
//
// One goroutine (the pacer) owns it.
type effects struct {
	infos   []fleet.SensorInfo
	index   map[lorawan.EUI64]int32
	touched []*fxSensor // nil: not affected
	pending injHeap
	// lastUp is every sensor's latest reception (its gateway and radio),
	// so that a sensor touched later starts from where it is.
	lastUp []fleet.Uplink
	seen   []bool

	capFrom time.Time // zero: no capping yet
	capTemp clipr.Temp

	injected, skipped, rewritten, failures int64
}

// fxSensor is the rewriting state of one affected sensor.
type fxSensor struct {
	keys    *lorawan.SessionKeys
	capHot  bool   // alarm storm: its hot line fails
	flushes bool   // flush storm candidate
	offset  uint32 // frames inserted so far
	next    uint32 // next free frame counter on the air
	has     bool   // last is valid
	last    fleet.Uplink
	// The last transmission as rewritten, for its other gateways' copies.
	lastOrig, lastOut uint32
	lastPHY           []byte
}

type injection struct {
	at     time.Time
	sensor int32
}

type injHeap []injection

func (h injHeap) Len() int           { return len(h) }
func (h injHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h injHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *injHeap) Push(x any)        { *h = append(*h, x.(injection)) }
func (h *injHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newEffects(infos []fleet.SensorInfo, index map[lorawan.EUI64]int32) *effects {
	return &effects{infos: infos, index: index, touched: make([]*fxSensor, len(infos)),
		lastUp: make([]fleet.Uplink, len(infos)), seen: make([]bool, len(infos))}
}

func (fx *effects) sensorState(i int) (*fxSensor, error) {
	if st := fx.touched[i]; st != nil {
		return st, nil
	}
	k, err := lorawan.NewSessionKeys(fx.infos[i].NwkSKey, fx.infos[i].AppSKey)
	if err != nil {
		return nil, fmt.Errorf("%w: session keys: %w", ErrFleet, err)
	}
	st := &fxSensor{keys: k}
	if fx.seen[i] {
		u := fx.lastUp[i]
		st.has, st.last, st.lastOrig, st.lastOut, st.lastPHY, st.next = true, u, u.FCnt, u.FCnt, u.PHYPayload, u.FCnt+1
	}
	fx.touched[i] = st
	return st, nil
}

// hotLineFailure caps the pipe temperature of every hot line among the
// sensors where in is true, from simulated time from on. It returns the
// number of sensors affected.
func (fx *effects) hotLineFailure(from time.Time, capC float64, in func(sensor int) bool) (int, error) {
	fx.capFrom, fx.capTemp = from, clipr.TempFromCelsius(capC)
	n := 0
	for i, s := range fx.infos {
		if !in(i) || !s.TapKind.IsHot() {
			continue
		}
		st, err := fx.sensorState(i)
		if err != nil {
			return n, err
		}
		st.capHot = true
		n++
	}
	return n, nil
}

// flushStorm schedules a flush report for share of the tap points (not the
// continuously flowing lines), spread uniformly over window from at on.
// It returns the number of flushes scheduled.
func (fx *effects) flushStorm(at time.Time, window time.Duration, share float64, seed uint64) (int, error) {
	rng := rand.New(rand.NewPCG(seed, 0x5f1a54))
	n := 0
	for i, s := range fx.infos {
		if s.TapKind.IsContinuous() || rng.Float64() >= share {
			continue
		}
		st, err := fx.sensorState(i)
		if err != nil {
			return n, err
		}
		st.flushes = true
		heap.Push(&fx.pending, injection{at: at.Add(time.Duration(rng.Int64N(int64(window)))), sensor: int32(i)})
		n++
	}
	return n, nil
}

// apply hands the records of one fleet uplink (and of the injections due
// before it) to emit.
func (fx *effects) apply(u fleet.Uplink, emit func(record)) {
	if len(fx.pending) > 0 {
		fx.due(u.ReceivedAt, emit)
	}
	i, ok := fx.index[u.DevEUI]
	if !ok {
		fx.failures++
		return
	}
	st := fx.touched[i]
	if st == nil {
		fx.lastUp[i], fx.seen[i] = u, true
		emit(record{up: u, sensor: i, fcnt: u.FCnt, port: u.FPort})
		return
	}
	if st.has && u.FCnt == st.lastOrig {
		// Another gateway's copy of the transmission just rewritten.
		u.PHYPayload = st.lastPHY
		st.last = u
		emit(record{up: u, sensor: i, fcnt: st.lastOut, port: u.FPort})
		return
	}
	out := u.FCnt + st.offset
	capping := st.capHot && !fx.capFrom.IsZero() && !u.ReceivedAt.Before(fx.capFrom) &&
		(u.FPort == clipr.PortMeasurement || u.FPort == clipr.PortWaterEvent)
	if out != u.FCnt || capping {
		phy, err := fx.rebuild(st, u, out, capping)
		if err != nil {
			fx.failures++
		} else {
			u.PHYPayload = phy
			fx.rewritten++
		}
	}
	st.has, st.last, st.lastOrig, st.lastOut, st.lastPHY = true, u, u.FCnt, out, u.PHYPayload
	st.next = out + 1
	emit(record{up: u, sensor: i, fcnt: out, port: u.FPort})
}

// due emits every injection scheduled before t.
func (fx *effects) due(t time.Time, emit func(record)) {
	for len(fx.pending) > 0 && fx.pending[0].at.Before(t) {
		in := heap.Pop(&fx.pending).(injection)
		st := fx.touched[in.sensor]
		if !st.has {
			fx.skipped++ // not booted yet: it has no session on the air
			continue
		}
		hot := fx.infos[in.sensor].TapKind.IsHot()
		extreme := clipr.TempFromCelsius(12)
		if hot {
			extreme = clipr.TempFromCelsius(61.5)
			if st.capHot && !fx.capFrom.IsZero() && !in.at.Before(fx.capFrom) {
				extreme = min(extreme, fx.capTemp)
			}
		}
		ev := clipr.WaterEvent{Kind: clipr.EventFlush, StartedSAgo: 150, DurationS: 120,
			StartPipe: clipr.TempFromCelsius(21), ExtremePipe: extreme}
		plain, err := ev.AppendBinary(nil)
		if err != nil {
			fx.failures++
			continue
		}
		u := st.last
		fcnt := st.next
		phy, err := st.keys.AppendDataFrame(nil, lorawan.DataFrameParams{
			MType: lorawan.MTypeUnconfirmedDataUp, DevAddr: u.DevAddr, FCnt: fcnt,
			HasFPort: true, FPort: clipr.PortWaterEvent, FRMPayload: plain,
		})
		if err != nil {
			fx.failures++
			continue
		}
		st.next++
		st.offset++
		u.PHYPayload, u.ReceivedAt, u.FCnt, u.FPort = phy, in.at, fcnt, clipr.PortWaterEvent
		fx.injected++
		emit(record{up: u, sensor: in.sensor, fcnt: fcnt, port: clipr.PortWaterEvent})
	}
}

// rebuild re-encodes a sensor's frame with frame counter out, capping its
// hot-line temperatures when capping is set.
func (fx *effects) rebuild(st *fxSensor, u fleet.Uplink, out uint32, capping bool) ([]byte, error) {
	f, err := lorawan.ParseDataFrame(u.PHYPayload)
	if err != nil {
		return nil, err
	}
	plain := st.keys.DecryptFRMPayload(nil, &f, u.FCnt)
	if capping {
		switch f.FPort {
		case clipr.PortMeasurement:
			m, err := clipr.DecodeMeasurement(plain)
			if err != nil {
				return nil, err
			}
			for j := range m.Samples {
				if p := m.Samples[j].Pipe; p != clipr.NoTemp && p > fx.capTemp {
					m.Samples[j].Pipe = fx.capTemp
				}
			}
			if plain, err = m.AppendBinary(nil); err != nil {
				return nil, err
			}
		case clipr.PortWaterEvent:
			w, err := clipr.DecodeWaterEvent(plain)
			if err != nil {
				return nil, err
			}
			if w.ExtremePipe != clipr.NoTemp && w.ExtremePipe > fx.capTemp {
				w.ExtremePipe = fx.capTemp
			}
			if w.StartPipe != clipr.NoTemp && w.StartPipe > fx.capTemp {
				w.StartPipe = fx.capTemp
			}
			if plain, err = w.AppendBinary(nil); err != nil {
				return nil, err
			}
		}
	}
	return st.keys.AppendDataFrame(nil, lorawan.DataFrameParams{
		MType: f.MType, DevAddr: f.DevAddr, FCtrl: f.FCtrl, FCnt: out, FOpts: f.FOpts,
		HasFPort: f.HasFPort, FPort: f.FPort, FRMPayload: plain,
	})
}
