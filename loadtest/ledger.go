package loadtest

import (
	"sync"
	"sync/atomic"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// source is who saw an event: the harness's reader of twin.events, or an
// API stream.
type source uint8

const (
	srcKafka     source = iota // the harness's reader of twin.events
	srcAPI                     // TelemetryService.StreamEvents
	srcAPIAlarms               // AlarmService.StreamAlarms
	nSources
)

func (s source) String() string {
	switch s {
	case srcAPI:
		return "api"
	case srcAPIAlarms:
		return "api_alarms"
	}
	return "kafka"
}

// bit is the slot flag of a source.
func (s source) bit() uint8 { return slotSeenKafka << s }

// eventKind is the payload of a TwinEvent (its oneof field number).
type eventKind uint8

const (
	kindOther    eventKind = 0
	kindReading  eventKind = 10
	kindWater    eventKind = 11
	kindAlarm    eventKind = 12
	kindStatus   eventKind = 13
	kindGateway  eventKind = 14
	ledgerStripe           = 256
)

// slot flags.
const (
	slotProduced  uint8 = 1 << iota // a copy was handed to Kafka
	slotDelivered                   // a copy was acknowledged by Kafka
	slotExpected                    // its port always yields an event (1, 3)
	slotSeenKafka                   // then one bit per further source
)

// frameSlot is one transmission (sensor, FCnt) of the run.
type frameSlot struct {
	producedAt int64 // unix ns of the first copy handed to Kafka
	flags      uint8
	port       uint8
}

// firstFCnt is the frame counter of every sensor's first uplink in a run
// (fleet.Config.InitialFCnt).
const firstFCnt = 1

// sensorFrames holds a sensor's transmissions, indexed by FCnt - base.
type sensorFrames struct {
	base  uint32
	slots []frameSlot
}

// ledger tracks every transmission of the run: when its first copy was
// produced and which observers saw an event of it. Sensors are striped over
// 256 locks (producer and observers touch it per record/event; one owning
// goroutine fed by channels would cost more than the work itself).
type ledger struct {
	index   map[lorawan.EUI64]int32 // DevEUI → sensor; read-only after newLedger
	stripes [ledgerStripe]sync.Mutex
	sensors []sensorFrames

	transmissions     atomic.Int64 // distinct frames handed to Kafka
	expectedDelivered atomic.Int64 // delivered frames whose port yields events
	seen              [nSources]atomic.Int64
	seenExpected      [nSources]atomic.Int64
	unknownEvents     [nSources]atomic.Int64 // events of devices or frames not in the run
	tickEvents        [nSources]atomic.Int64 // events without a frame (deadline ticks)
	lastSeenExpected  [nSources]atomic.Int64 // unix ns of the latest first sighting of an expected frame
	eventsTotal       [nSources]atomic.Int64
}

func newLedger(devEUIs []lorawan.EUI64) *ledger {
	l := &ledger{index: make(map[lorawan.EUI64]int32, len(devEUIs)), sensors: make([]sensorFrames, len(devEUIs))}
	for i, e := range devEUIs {
		l.index[e] = int32(i)
		// Slots are fixed from the first frame counter on (fleet
		// InitialFCnt), not from the first one produced: concurrent
		// writers may hand a sensor's frames over out of order.
		l.sensors[i].base = firstFCnt
	}
	return l
}

// sensor returns the index of a DevEUI, or -1.
func (l *ledger) sensor(dev lorawan.EUI64) int32 {
	if i, ok := l.index[dev]; ok {
		return i
	}
	return -1
}

// slotLocked returns the slot of (sensor, fcnt), growing the sensor's
// slice when create is set; nil when absent. The stripe lock is held.
func (l *ledger) slotLocked(s *sensorFrames, fcnt uint32, create bool) *frameSlot {
	if fcnt < s.base {
		return nil
	}
	i := int(fcnt - s.base)
	if i >= len(s.slots) {
		if !create || i > len(s.slots)+1<<20 {
			return nil
		}
		if i < cap(s.slots) {
			s.slots = s.slots[:i+1]
		} else {
			s.slots = append(s.slots, make([]frameSlot, i+1-len(s.slots))...)
		}
	}
	return &s.slots[i]
}

// produced records that a copy of (sensor, fcnt) is handed to Kafka at
// unix ns at; the first copy's time is the frame's produced time.
func (l *ledger) produced(sensor int32, fcnt uint32, port uint8, at int64) {
	mu := &l.stripes[int(sensor)%ledgerStripe]
	mu.Lock()
	sl := l.slotLocked(&l.sensors[sensor], fcnt, true)
	first := sl != nil && sl.flags&slotProduced == 0
	if first {
		sl.flags |= slotProduced
		sl.producedAt, sl.port = at, port
		if port == 1 || port == 3 {
			sl.flags |= slotExpected
		}
	}
	mu.Unlock()
	if first {
		l.transmissions.Add(1)
	}
}

// delivered records that Kafka acknowledged a copy of (sensor, fcnt).
func (l *ledger) delivered(sensor int32, fcnt uint32) {
	mu := &l.stripes[int(sensor)%ledgerStripe]
	mu.Lock()
	sl := l.slotLocked(&l.sensors[sensor], fcnt, false)
	first := sl != nil && sl.flags&slotDelivered == 0
	if first {
		sl.flags |= slotDelivered
	}
	expected := first && sl.flags&slotExpected != 0
	mu.Unlock()
	if expected {
		l.expectedDelivered.Add(1)
	}
}

// observation is what observe found out about one event.
type observation struct {
	known      bool  // the frame belongs to this run
	first      bool  // first event of the frame from this source
	producedAt int64 // unix ns
}

// observe records an event of (dev, fcnt) seen by src at unix ns now.
func (l *ledger) observe(src source, dev lorawan.EUI64, fcnt uint32, now int64) observation {
	l.eventsTotal[src].Add(1)
	if fcnt == 0 {
		// Deadline ticks (offline alarms) carry no frame: the run's
		// frames count from 1 (fleet InitialFCnt).
		l.tickEvents[src].Add(1)
		return observation{}
	}
	sensor := l.sensor(dev)
	if sensor < 0 {
		l.unknownEvents[src].Add(1)
		return observation{}
	}
	bit := src.bit()
	mu := &l.stripes[int(sensor)%ledgerStripe]
	mu.Lock()
	sl := l.slotLocked(&l.sensors[sensor], fcnt, false)
	var o observation
	expected := false
	if sl != nil && sl.flags&slotProduced != 0 {
		o.known, o.producedAt = true, sl.producedAt
		if sl.flags&bit == 0 {
			sl.flags |= bit
			o.first = true
			expected = sl.flags&slotExpected != 0
		}
	}
	mu.Unlock()
	if !o.known {
		l.unknownEvents[src].Add(1)
		return o
	}
	if o.first {
		l.seen[src].Add(1)
		if expected {
			l.seenExpected[src].Add(1)
			for last := &l.lastSeenExpected[src]; ; {
				v := last.Load()
				if v >= now || last.CompareAndSwap(v, now) {
					break
				}
			}
		}
	}
	return o
}

// FrameRef names one transmission in a loss report.
type FrameRef struct {
	DevEUI string `json:"dev_eui"`
	FCnt   uint32 `json:"f_cnt"`
	Port   uint8  `json:"f_port"`
}

// missing lists up to limit delivered, event-bearing frames that src never
// saw (and counts all of them), for sensors where include is true (nil:
// every sensor).
func (l *ledger) missing(src source, devEUIs []lorawan.EUI64, include func(sensor int) bool, limit int) (int64, []FrameRef) {
	bit := src.bit()
	var n int64
	var out []FrameRef
	for i := range l.sensors {
		if include != nil && !include(i) {
			continue
		}
		mu := &l.stripes[i%ledgerStripe]
		mu.Lock()
		s := &l.sensors[i]
		for j := range s.slots {
			sl := &s.slots[j]
			if sl.flags&(slotDelivered|slotExpected) == slotDelivered|slotExpected && sl.flags&bit == 0 {
				n++
				if len(out) < limit {
					out = append(out, FrameRef{DevEUI: devEUIs[i].String(), FCnt: s.base + uint32(j), Port: sl.port})
				}
			}
		}
		mu.Unlock()
	}
	return n, out
}

// expectedFor counts delivered, event-bearing frames of the sensors where
// include is true.
func (l *ledger) expectedFor(include func(sensor int) bool) int64 {
	var n int64
	for i := range l.sensors {
		if !include(i) {
			continue
		}
		mu := &l.stripes[i%ledgerStripe]
		mu.Lock()
		for _, sl := range l.sensors[i].slots {
			if sl.flags&(slotDelivered|slotExpected) == slotDelivered|slotExpected {
				n++
			}
		}
		mu.Unlock()
	}
	return n
}
