package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// Defaults applied by Config.Validate to zero fields.
const (
	DefaultShards             = 8
	DefaultIdleTimeout        = 5 * time.Minute
	DefaultGatewayTenant      = "platform"
	DefaultPublishMaxEvents   = 16384
	DefaultPublishMaxDelay    = 2 * time.Millisecond
	DefaultPublishMaxInFlight = 1
	DefaultPublishQueue       = 8192
	DefaultMaxApplyAttempts   = 3
	DefaultShutdownTimeout    = 10 * time.Second
	DefaultTickRetry          = time.Second
)

// Config configures a System. Ports are required; every other zero field
// takes the documented default.
type Config struct {
	// Store holds twin state durably. Required.
	Store StateStore
	// Events publishes twin events. Required.
	Events EventSink
	// Directory maps DevAddr and DevEUI to registered devices. Required.
	Directory Directory

	// Clock drives the timers (deadlines and passivation) and the idle
	// periods. Default: RealClock.
	Clock Clock
	// TickClock is the 'now' given to time-based rules; default Clock.Now.
	// A deadline ticks only once it is due by TickClock, so a caller
	// replaying a backlog can hold ticks back to the time of the input it
	// has reached (event time) instead of the wall clock, which would
	// raise SENSOR_OFFLINE for every twin whose next frame is still
	// queued. It must be safe for concurrent use and cheap: twins call it
	// from their timers.
	TickClock func() time.Time
	// TickRetry is how long a twin (or the index of passivated twins)
	// waits before it looks again at a deadline that is due by Clock but
	// not yet by TickClock; it bounds the timer firings while ticks are
	// held back. Default: DefaultTickRetry (1 s).
	TickRetry time.Duration
	// Logger receives lifecycle messages (never per frame) and
	// protoactor's own messages at warn level and above. Default: discard.
	Logger *slog.Logger
	// Registerer receives the Prometheus metrics. Default: nil, metrics
	// are kept but not registered anywhere.
	Registerer prometheus.Registerer

	// Shards is the number of router actors that own the twin directory;
	// twins are spread over them by EUI. Default: DefaultShards (8).
	Shards int
	// IdleTimeout passivates a twin that received no input for this long
	// and has nothing in flight. Default: DefaultIdleTimeout (5 min).
	IdleTimeout time.Duration
	// GatewayTenant is the tenant under which gateway twins are stored
	// and published (the registry cache does not carry gateway owners).
	// Default: DefaultGatewayTenant ("platform").
	GatewayTenant string
	// Epoch is written with every twin state for diagnosis (which
	// activation wrote it). Default: the start time in Unix milliseconds.
	Epoch uint64

	// PublishMaxEvents, PublishMaxDelay, PublishMaxInFlight and
	// PublishQueue configure the System's own batcher, used when Events
	// is not an AsyncEventSink or AsyncPublish is off.
	//
	// PublishMaxEvents bounds the events of one Publish call; the batcher
	// collects events of many twins until this many, or until
	// PublishMaxDelay passed while other calls were in flight.
	// Default: DefaultPublishMaxEvents (16384).
	PublishMaxEvents int
	// PublishMaxDelay bounds how long an event waits for a batch while
	// Publish calls are in flight (an idle batcher sends at once).
	// Default: DefaultPublishMaxDelay (2 ms).
	PublishMaxDelay time.Duration
	// PublishMaxInFlight bounds concurrent Publish calls. One call in
	// flight while the next batch gathers is the fastest against a broker
	// that syncs every produce request (the embedded one); raise it for
	// clusters whose partition leaders work in parallel.
	// Default: DefaultPublishMaxInFlight (1).
	PublishMaxInFlight int
	// AsyncPublish hands each twin's events straight to Events when it
	// implements AsyncEventSink (streams.EventProducer batches them per
	// partition) instead of the System's batcher. Lower publish latency
	// at moderate rates; on a broker that fsyncs every produce request,
	// ≈ 10–15 % fewer frames per CPU-second at saturation (smaller
	// batches, smaller store groups). Default false.
	AsyncPublish bool
	// PublishQueue bounds the twins' submissions waiting for the batcher;
	// a full queue blocks the submitting twin (backpressure).
	// Default: DefaultPublishQueue (8192).
	PublishQueue int
	// NoRecentEvents skips writing events into the store's recent-event
	// window. Default false: events are kept with the state that caused
	// them.
	NoRecentEvents bool

	// MaxApplyAttempts is how often a twin re-applies an input after a
	// failed publish or persist (reloading its state in between) before it
	// gives up with ErrRetry. Default: DefaultMaxApplyAttempts (3).
	MaxApplyAttempts int
	// Owns reports whether this node serves a twin: in a cluster, whether
	// the twin's input partition is assigned to this member. Deadlines of
	// twins it does not own are neither scanned nor fired here (their owner
	// fires them). Nil: every twin (one node).
	Owns func(kind pebblestore.Kind, eui pebblestore.EUI) bool
	// GatewaySeen, when set, carries "this gateway heard that uplink" to
	// gateway twins this node does not serve (cluster mode). Nil: every
	// gateway twin is local.
	GatewaySeen GatewaySeenSink
	// SkipDeadlineScan skips reading every stored twin at start to learn
	// the deadlines of inactive twins. Default false.
	SkipDeadlineScan bool
	// ShutdownTimeout bounds Close's wait for in-flight inputs.
	// Default: DefaultShutdownTimeout (10 s).
	ShutdownTimeout time.Duration

	// Hooks are for tests only.
	Hooks Hooks
}

// Hooks let tests inject faults. Production code leaves them nil.
type Hooks struct {
	// BeforeApply runs inside the twin actor before each input is applied;
	// a panic in it is a panic of the twin.
	BeforeApply func(kind pebblestore.Kind, eui devicetwin.EUI64, input any)
	// Activated runs when a twin actor started (its state may load
	// later); Passivated when an idle twin stops.
	Activated, Passivated func(kind pebblestore.Kind, eui devicetwin.EUI64)
	// DeadlinesScanned runs when the start-up scan of the store has
	// indexed n deadlines.
	DeadlinesScanned func(n int)
	// DeadlinesArmed runs each time the index of passivated twins'
	// deadlines armed its timer to fire at at; DeadlinesFired each time it
	// handled its timer, with the number of twins it woke.
	DeadlinesArmed func(at time.Time)
	DeadlinesFired func(woken int)
}

// Validate fills defaults into zero fields and reports the first invalid
// field, wrapped in ErrInvalidConfig.
func (c *Config) Validate() error {
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.TickClock == nil {
		c.TickClock = c.Clock.Now
	}
	if c.TickRetry == 0 {
		c.TickRetry = DefaultTickRetry
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.GatewayTenant == "" {
		c.GatewayTenant = DefaultGatewayTenant
	}
	if c.Epoch == 0 {
		c.Epoch = uint64(time.Now().UnixMilli())
	}
	if c.PublishMaxEvents == 0 {
		c.PublishMaxEvents = DefaultPublishMaxEvents
	}
	if c.PublishMaxDelay == 0 {
		c.PublishMaxDelay = DefaultPublishMaxDelay
	}
	if c.PublishMaxInFlight == 0 {
		c.PublishMaxInFlight = DefaultPublishMaxInFlight
	}
	if c.PublishQueue == 0 {
		c.PublishQueue = DefaultPublishQueue
	}
	if c.MaxApplyAttempts == 0 {
		c.MaxApplyAttempts = DefaultMaxApplyAttempts
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case c.Store == nil:
		return bad("Store is required")
	case c.Events == nil:
		return bad("Events is required")
	case c.Directory == nil:
		return bad("Directory is required")
	case c.Shards < 1 || c.Shards > 1024:
		return bad("Shards %d outside 1..1024", c.Shards)
	case c.IdleTimeout < time.Second:
		return bad("IdleTimeout %v < 1s", c.IdleTimeout)
	case !pebblestore.ValidTenant(c.GatewayTenant):
		return bad("GatewayTenant %q is not a valid tenant", c.GatewayTenant)
	case c.PublishMaxEvents < 1:
		return bad("PublishMaxEvents %d < 1", c.PublishMaxEvents)
	case c.PublishMaxDelay < 0:
		return bad("PublishMaxDelay %v < 0", c.PublishMaxDelay)
	case c.PublishMaxInFlight < 1:
		return bad("PublishMaxInFlight %d < 1", c.PublishMaxInFlight)
	case c.PublishQueue < 1:
		return bad("PublishQueue %d < 1", c.PublishQueue)
	case c.MaxApplyAttempts < 1:
		return bad("MaxApplyAttempts %d < 1", c.MaxApplyAttempts)
	case c.TickRetry < 0:
		return bad("TickRetry %v < 0", c.TickRetry)
	case c.ShutdownTimeout < 0:
		return bad("ShutdownTimeout %v < 0", c.ShutdownTimeout)
	}
	return nil
}
