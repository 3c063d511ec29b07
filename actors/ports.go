package actors

import (
	"context"
	"time"

	"github.com/legionelladossier/legiond/devicetwin"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// StateStore is the durable twin state (storage/pebblestore.Store
// implements it). Submit must call done exactly once, after the unit is
// durable or rejected, from a goroutine that must not be blocked; it must
// reject a twin write whose ExpectedVersion is not the stored version.
type StateStore interface {
	LoadTwin(ctx context.Context, tenant string, kind pebblestore.Kind, eui pebblestore.EUI) (pebblestore.TwinRecord, error)
	Submit(ctx context.Context, writes []pebblestore.Write, done func(error)) error
	// ForEachTwin walks every stored twin; the System uses it once at start
	// to learn the time-rule deadlines of twins that are not active.
	ForEachTwin(ctx context.Context, fn func(pebblestore.TwinEntry) error) error
}

// EventSink publishes twin events (streams.EventProducer implements it).
// Publish returns nil only once every event is durable; on error some may
// have been written (event ids are deterministic, consumers de-duplicate).
// It must not keep the events after it returned: the twin reuses them.
type EventSink interface {
	Publish(ctx context.Context, events ...*twinv1.TwinEvent) error
}

// AsyncEventSink is an EventSink that also publishes without waiting
// (streams.EventProducer implements it). With Config.AsyncPublish, each
// twin hands its events over directly and the sink batches them (per
// partition, one request in flight while the next gathers) instead of
// the System's own batcher.
//
// PublishAsync must call done exactly once: nil once every event is
// durable, else the failure. It must not keep the events after it
// returned, and it must write the events of one device in the order they
// were handed over (one device's events share a key).
type AsyncEventSink interface {
	EventSink
	PublishAsync(ctx context.Context, events []*twinv1.TwinEvent, done func(error))
}

// Directory resolves frames to devices (postgres.Cache implements it).
// Returned slices are shared and read-only.
type Directory interface {
	Lookup(addr postgres.DevAddr) []postgres.Candidate
	Device(eui postgres.EUI64) (postgres.Candidate, bool)
}

// Clock gives the timers of deadlines and passivation, and by default
// (Config.TickClock) the time-based rules' "now". Tests inject a fake one
// to fire deadlines without waiting.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a Clock's timer.
type Timer interface {
	Stop() bool
	Reset(d time.Duration) bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// GatewaySeenSink hands a gateway twin's "uplink heard" input to the member
// that serves the gateway (cmd wires it to the lorawan.gateway.seen
// repartition topic).
type GatewaySeenSink interface {
	// Local reports whether the gateway's twin is served on this node.
	Local(gateway devicetwin.EUI64) bool
	// PublishSeen makes the input durable on its way to the gateway's
	// owner and then calls done (nil, or the failure: the frame is then
	// retried). It must not block beyond handing the input over.
	PublishSeen(ctx context.Context, gateway devicetwin.EUI64, seen devicetwin.GatewayUplinkSeen, done func(error))
}
