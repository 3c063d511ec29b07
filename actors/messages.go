package actors

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// key identifies a twin: its kind and EUI. It is the actor's identity (and
// will be the grain identity once twins are cluster grains).
type key struct {
	kind pebblestore.Kind
	eui  devicetwin.EUI64
}

// name is the child actor name: 's' or 'g' and the EUI in hex.
func (k key) name() string {
	c := "s"
	if k.kind == pebblestore.KindGateway {
		c = "g"
	}
	return c + k.eui.String()
}

// keyFromName parses the last path element of a twin actor's id.
func keyFromName(id string) (key, bool) {
	if len(id) < 17 {
		return key{}, false
	}
	n := id[len(id)-17:]
	var k key
	switch n[0] {
	case 's':
		k.kind = pebblestore.KindSensor
	case 'g':
		k.kind = pebblestore.KindGateway
	default:
		return key{}, false
	}
	eui, err := devicetwin.ParseEUI(n[1:])
	if err != nil {
		return key{}, false
	}
	k.eui = eui
	return k, true
}

// completion is the done side of an input. complete is called once per
// part of the input (a frame has a sensor part and, once forwarded, a
// gateway part).
type completion interface{ complete(s *System, err error) }

// frameMsg is one uplink copy on its way to a sensor twin (and, through
// it, to the receiving gateway's twin).
type frameMsg struct {
	frame devicetwin.Frame
	cands []postgres.Candidate
	idx   int
	done  func(error)
	start time.Time

	// Owned by the twin holding the message.
	forwarded bool // the gateway part exists
	attempts  int

	parts atomic.Int32
	mu    sync.Mutex
	err   error
}

func (m *frameMsg) complete(s *System, err error) {
	if err != nil {
		m.mu.Lock()
		// A rejection outranks a retry: the sensor decided for good.
		if m.err == nil || (RejectReason(err) != "" && RejectReason(m.err) == "") {
			m.err = err
		}
		m.mu.Unlock()
	}
	if m.parts.Add(-1) != 0 {
		return
	}
	m.mu.Lock()
	err = m.err
	m.mu.Unlock()
	s.finish(m.start, m.done, err, true)
}

// gwMsg is an input of a gateway twin: an uplink it heard (part of a
// frame) or its stats record.
type gwMsg struct {
	eui      devicetwin.EUI64
	seen     devicetwin.GatewayUplinkSeen
	stats    devicetwin.GatewayStats
	isStats  bool
	frame    *frameMsg   // seen: the frame whose gateway part this is
	done     func(error) // stats: the input's done
	start    time.Time   // stats
	attempts int
}

func (m *gwMsg) complete(s *System, err error) {
	if m.frame != nil {
		m.frame.complete(s, err)
		return
	}
	s.finish(m.start, m.done, err, false)
}

func (m *gwMsg) input() devicetwin.Input {
	if m.isStats {
		return m.stats
	}
	return m.seen
}

// opMsg is an operator input (an alarm acknowledgement or clear) on its
// way to a sensor twin. The twin fills view and events each time it
// applies it (a re-applied input overwrites them); res gets the outcome
// once the op is durable.
type opMsg struct {
	eui    devicetwin.EUI64
	tenant string
	in     devicetwin.Input
	check  func(*devicetwin.SensorState, *devicetwin.Input) error
	res    chan error // buffered 1: complete never blocks

	// Owned by the twin holding the message.
	attempts int
	view     devicetwin.SensorView
	events   []devicetwin.Event
}

func (m *opMsg) complete(s *System, err error) {
	select {
	case m.res <- err:
	default:
	}
	s.release()
}

// tickIn is a deadline tick, kept as an input so it can be re-applied.
type tickIn struct {
	now      time.Time
	attempts int
}

// releaseMsg asks a shard to passivate the twins that match.
type releaseMsg struct {
	match func(kind pebblestore.Kind, eui pebblestore.EUI) bool
}

// wakeMsg activates a twin whose deadline came while it was passivated.
type wakeMsg struct{ key key }

// Internal messages of a twin.
type (
	timerMsg     struct{}
	passivateMsg struct{}
	publishedMsg struct {
		op  *op
		gen uint64
		err error
	}
	persistedMsg struct {
		gen uint64
		err error
	}
	// retryMsg ends a recovery backoff.
	retryMsg struct{ gen uint64 }
	// idleMsg asks the shard to passivate a twin.
	idleMsg struct {
		key key
		pid *actor.PID
	}
)

var (
	timerFired = &timerMsg{}
	passivate  = &passivateMsg{}
)
