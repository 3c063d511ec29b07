package services

import (
	"context"

	"connectrpc.com/connect"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/legionelladossier/legiond/api/hub"
	"github.com/legionelladossier/legiond/api/server"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// Sentinel errors. Ports return them (wrapped) so that handlers answer with
// the right code.
var (
	// ErrDeps is an unusable Deps.
	ErrDeps = errors.New("services: invalid dependencies")
	// ErrNoState: the twin has no state yet (never heard from). GetTwin
	// then answers with the registry's view of the device.
	ErrNoState = errors.New("twin has no state yet")
	// ErrAlarmNotFound: no such alarm occurrence on the device (cleared
	// and acknowledged long ago, or a newer occurrence replaced it).
	ErrAlarmNotFound = errors.New("alarm not found")
	// ErrAlarmState: the alarm cannot make that transition (already
	// acknowledged, already cleared). Answered FailedPrecondition with
	// the error's text, so ports must keep that text free of other data.
	ErrAlarmState = errors.New("alarm transition not allowed")
	// ErrUnavailable: the port cannot answer now (actor system starting,
	// node leaving). Answered Unavailable; clients retry.
	ErrUnavailable = errors.New("temporarily unavailable")
)

// TwinReader is the live twin state, owned by the actor system (the wiring
// in cmd implements it). Device EUIs are 16 lowercase hex digits and
// customer ids canonical UUID strings; the handlers only ask for devices
// the registry showed them under the caller's scope, and the reader must
// still answer only for twins of that customer.
type TwinReader interface {
	// GetTwin returns the current state of a sensor twin: last readings,
	// status, last compliant flush, and its alarms that still need
	// attention (every status but CLEARED_ACK). It returns an error
	// wrapping ErrNoState when the twin has no state yet.
	GetTwin(ctx context.Context, customerID, devEUI string) (*apiv1.Twin, error)
	// GetTwins is GetTwin for many devices of one customer; twins without
	// state are left out, in any order.
	GetTwins(ctx context.Context, customerID string, devEUIs []string) ([]*apiv1.Twin, error)
}

// AlarmRef names one occurrence of an alarm, parsed from its id
// ("<deveui>-<TYPE>-<occurrence>", devicetwin.AlarmTransition.AlarmID).
type AlarmRef struct {
	AlarmID    string
	CustomerID string
	DevEUI     string
	Type       twinv1.AlarmType
	// Occurrence numbers the occurrences of this type on the device; the
	// commander must refuse (ErrAlarmNotFound) an occurrence that is not
	// the current one.
	Occurrence uint32
}

// AlarmCommander applies operator transitions to alarms through their twin
// (which records who, when and the note in the logbook). It returns the
// alarm after the transition, or an error wrapping ErrAlarmNotFound,
// ErrAlarmState or ErrUnavailable.
type AlarmCommander interface {
	Acknowledge(ctx context.Context, ref AlarmRef, by, note string) (*apiv1.Alarm, error)
	Clear(ctx context.Context, ref AlarmRef, by, note string) (*apiv1.Alarm, error)
}

// RecentReader is the recent-event window (pebblestore.Store implements
// it): the tenant's events of one device with from ≤ time < to, oldest
// first, at most limit (≤ 0: all).
type RecentReader interface {
	RecentEvents(ctx context.Context, tenant string, eui pebblestore.EUI, from, to time.Time, limit int) ([]pebblestore.EventRecord, error)
}

// ClusterStatus reports the cluster's members and Raft state (the wiring
// implements it over the cluster package).
type ClusterStatus interface {
	ClusterStatus(ctx context.Context) (*apiv1.GetClusterStatusResponse, error)
}

// Defaults of Deps.
const (
	DefaultMaxScanDevices   = 10000
	DefaultMaxScanEvents    = 20000
	DefaultStreamWriteGrace = 10 * time.Second
	DefaultGrantRecheck     = 10 * time.Second
)

// Deps are what the services need. Registry, Recent and Hub are required;
// a nil Twins, Alarms or Cluster makes the calls that need it answer
// Unavailable (so a node can serve the registry before its actor system is
// up).
type Deps struct {
	Registry *postgres.Store
	Recent   RecentReader
	Twins    TwinReader
	Alarms   AlarmCommander
	Cluster  ClusterStatus
	// Hub serves StreamEvents and StreamAlarms; the wiring runs it.
	Hub *hub.Hub
	// Logger receives unexpected errors (answered Internal). Default:
	// discard.
	Logger *slog.Logger
	// Now is the clock (default periods). Default time.Now.
	Now func() time.Time
	// MaxScanDevices bounds the devices one call looks at (a site's, or
	// every device of the caller). Default 10,000.
	MaxScanDevices int
	// MaxScanEvents bounds the recent events read per device by ListAlarms
	// over a period. Default 20,000.
	MaxScanEvents int
	// StreamWriteGrace is how long a stream whose subscriber the hub
	// dropped as too slow may stay blocked on a client that does not read
	// before the stream is reset. Default 10 s.
	StreamWriteGrace time.Duration
	// GrantRecheck is how often a stream opened under a break-glass grant
	// checks that the grant still holds (a revocation ends it within this
	// period; its expiry ends it at once). Default 10 s.
	GrantRecheck time.Duration
}

func (d *Deps) setDefaults() {
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.MaxScanDevices == 0 {
		d.MaxScanDevices = DefaultMaxScanDevices
	}
	if d.MaxScanEvents == 0 {
		d.MaxScanEvents = DefaultMaxScanEvents
	}
	if d.StreamWriteGrace == 0 {
		d.StreamWriteGrace = DefaultStreamWriteGrace
	}
	if d.GrantRecheck == 0 {
		d.GrantRecheck = DefaultGrantRecheck
	}
}

// Validate reports missing required dependencies (after defaults).
func (d Deps) Validate() error {
	switch {
	case d.Registry == nil:
		return fmt.Errorf("%w: Registry is required", ErrDeps)
	case d.Recent == nil:
		return fmt.Errorf("%w: Recent is required", ErrDeps)
	case d.Hub == nil:
		return fmt.Errorf("%w: Hub is required", ErrDeps)
	case d.MaxScanDevices < 1 || d.MaxScanDevices > 100000:
		return fmt.Errorf("%w: MaxScanDevices %d not in 1..100000", ErrDeps, d.MaxScanDevices)
	case d.MaxScanEvents < 1:
		return fmt.Errorf("%w: MaxScanEvents must be positive", ErrDeps)
	case d.StreamWriteGrace < 0:
		return fmt.Errorf("%w: StreamWriteGrace must not be negative", ErrDeps)
	}
	return nil
}

// compressMinBytes is the smallest response message that is compressed
// when the client accepts it.
const compressMinBytes = 1024

// Services implements every service of legiond.api.v1.
type Services struct {
	d   Deps
	log *slog.Logger
}

// Compile-time checks: Services serves all five services.
var (
	_ apiv1connect.TwinServiceHandler      = (*Services)(nil)
	_ apiv1connect.TelemetryServiceHandler = (*Services)(nil)
	_ apiv1connect.AlarmServiceHandler     = (*Services)(nil)
	_ apiv1connect.AdminServiceHandler     = (*Services)(nil)
	_ apiv1connect.ClusterServiceHandler   = (*Services)(nil)
)

// New validates d and returns the services.
func New(d Deps) (*Services, error) {
	d.setDefaults()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &Services{d: d, log: d.Logger}, nil
}

// Mount mounts the five services on srv, each built with its
// HandlerOptions (authentication, rate limits, size limits, strict input).
func (s *Services) Mount(srv *server.Server) {
	// Small messages (stream events, single records) are not worth
	// compressing: gzip's per-message setup cost more CPU than the bytes
	// it saved (measured with TestStreamLatency).
	opts := append(srv.HandlerOptions(), connect.WithCompressMinBytes(compressMinBytes))
	mount := func(path string, h http.Handler) { srv.Mount(path, withRequestInfo(withStreamControl(h))) }
	mount(apiv1connect.NewTwinServiceHandler(s, opts...))
	mount(apiv1connect.NewTelemetryServiceHandler(s, opts...))
	mount(apiv1connect.NewAlarmServiceHandler(s, opts...))
	mount(apiv1connect.NewAdminServiceHandler(s, opts...))
	mount(apiv1connect.NewClusterServiceHandler(s, opts...))
}

// Register builds the services from d and mounts them on srv. Run d.Hub
// (hub.Run) for the streams to deliver.
func Register(srv *server.Server, d Deps) error {
	s, err := New(d)
	if err != nil {
		return err
	}
	s.Mount(srv)
	return nil
}
