package actors

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// shard is a router actor: it owns the directory of the active twins whose
// key hashes to it, spawns (activates) them on their first input, forwards
// their inputs, supervises them (one-for-one: a panicking twin is
// restarted alone) and passivates them when they report idle.
//
// Passivation handshake: an idle twin sends idleMsg; the shard marks it
// stopping and sends passivateMsg. Inputs already forwarded sit before
// passivateMsg in the twin's mailbox and are processed first; inputs that
// arrive later are held by the shard. The twin stops once nothing is in
// flight, and when its Terminated arrives the shard starts a fresh
// activation (which loads the now durable state) for the held inputs.
type shard struct {
	sys   *System
	twins map[key]*entry
}

type entry struct {
	pid      *actor.PID
	stopping bool
	held     []any
}

func (s *shard) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *frameMsg:
		s.deliver(ctx, key{pebblestore.KindSensor, devicetwin.EUI64(m.cands[m.idx].DevEUI)}, m)
	case *gwMsg:
		s.deliver(ctx, key{pebblestore.KindGateway, m.eui}, m)
	case *opMsg:
		s.deliver(ctx, key{pebblestore.KindSensor, m.eui}, m)
	case *wakeMsg:
		s.deliver(ctx, m.key, m)
	case *releaseMsg:
		for k, e := range s.twins {
			if !e.stopping && m.match(k.kind, pebblestore.EUI(k.eui)) {
				e.stopping = true
				ctx.Send(e.pid, passivate)
			}
		}
	case *idleMsg:
		if e := s.twins[m.key]; e != nil && !e.stopping && e.pid.Equal(m.pid) {
			e.stopping = true
			ctx.Send(e.pid, passivate)
		}
	case *actor.Terminated:
		k, ok := keyFromName(m.Who.GetId())
		if !ok {
			return
		}
		e := s.twins[k]
		if e == nil || !e.pid.Equal(m.Who) {
			return
		}
		if len(e.held) == 0 {
			delete(s.twins, k)
			return
		}
		held := e.held
		delete(s.twins, k)
		for _, msg := range held {
			s.deliver(ctx, k, msg)
		}
	}
}

// deliver forwards msg to the twin of k, activating it when needed. An
// input for a twin this node does not serve (cluster: its partition moved
// away, e.g. one held while the twin passivated) goes back with ErrRetry
// rather than reviving the twin here out of order; the twin's new member
// replays it from Kafka.
func (s *shard) deliver(ctx actor.Context, k key, msg any) {
	if !s.sys.owns(k) {
		s.sys.fail(msg, fmt.Errorf("%w: twin %s is not served by this member", ErrRetry, k.name()))
		return
	}
	e := s.twins[k]
	if e == nil {
		pid, err := ctx.SpawnNamed(s.sys.props, k.name())
		if err != nil {
			// Cannot happen: a name is reused only after Terminated.
			s.sys.log.Error("twin spawn failed", "twin", k.name(), "err", err)
			s.sys.fail(msg, ErrRetry)
			return
		}
		e = &entry{pid: pid}
		s.twins[k] = e
	}
	if e.stopping {
		e.held = append(e.held, msg)
		return
	}
	ctx.Send(e.pid, msg)
}
