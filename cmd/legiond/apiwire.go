package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/actors"
	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/hub"
	"github.com/legionelladossier/legiond/api/server"
	"github.com/legionelladossier/legiond/api/services"
	"github.com/legionelladossier/legiond/api/tlsconf"
	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/clipr"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
)

// apiConfig configures a node's Connect API listener.
type apiConfig struct {
	// Addr is the TLS listen address. Default 127.0.0.1:8443.
	Addr string
	// CertFile and KeyFile are the server certificate; empty: a
	// development CA and certificate under the data folder.
	CertFile, KeyFile string
	// Issuer is the "iss" of accepted tokens. Empty: the embedded
	// development issuer at https://<Addr>.
	Issuer string
}

// apiDeps are the node parts the API serves from.
type apiDeps struct {
	DataDir  string
	Kafka    streams.ClientConfig
	Registry *postgres.Store
	Store    *pebblestore.Store
	// Alarms applies operator transitions through the twins; nil answers
	// Unavailable.
	Alarms services.AlarmCommander
	// Cluster reports the cluster; nil: a single node.
	Cluster services.ClusterStatus
	Logger  *slog.Logger
}

func (d apiDeps) clusterStatus(addr string) services.ClusterStatus {
	if d.Cluster != nil {
		return d.Cluster
	}
	return singleNode{addr: addr}
}

// nodeAPI is a running API: TLS server, stream hub and the dev issuer.
type nodeAPI struct {
	srv    *server.Server
	hub    *hub.Hub
	issuer *auth.Issuer
	caFile string
	cancel context.CancelFunc
	done   chan struct{}
}

// startAPI starts the stream hub and the TLS 1.3 Connect server.
func startAPI(ctx context.Context, cfg apiConfig, d apiDeps) (_ *nodeAPI, err error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8443"
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("api: address %q: %w", cfg.Addr, err)
	}
	a := &nodeAPI{done: make(chan struct{})}
	var serverTLS *tls.Config
	if cfg.CertFile != "" {
		if serverTLS, err = tlsconf.ServerConfig(cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("api: tls: %w", err)
		}
	} else {
		var hosts []string
		if host != "" && host != "0.0.0.0" && host != "::" {
			hosts = append(hosts, host)
		}
		ca, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: d.DataDir, Hosts: hosts, Logger: d.Logger})
		if err != nil {
			return nil, fmt.Errorf("api: tls: %w", err)
		}
		serverTLS, a.caFile = ca.ServerConfig(), ca.CAFile()
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	defer func() {
		if err != nil {
			_ = ln.Close()
		}
	}()
	var verifier auth.TokenVerifier
	if cfg.Issuer == "" {
		icfg := auth.IssuerConfig{Issuer: "https://" + ln.Addr().String(), KeyFile: auth.DevKeyFile(d.DataDir), Logger: d.Logger}
		if d.Registry != nil {
			icfg.OnIssue = tokenAudit(d.Registry, "issuer:embedded")
		}
		a.issuer, err = auth.NewIssuer(icfg)
		if err != nil {
			return nil, fmt.Errorf("api: issuer: %w", err)
		}
		if verifier, err = auth.NewVerifier(a.issuer.VerifierConfig()); err != nil {
			return nil, fmt.Errorf("api: verifier: %w", err)
		}
	} else if verifier, err = auth.NewVerifier(auth.VerifierConfig{Issuer: cfg.Issuer, JWKSURL: strings.TrimSuffix(cfg.Issuer, "/") + auth.JWKSPath, Logger: d.Logger}); err != nil {
		return nil, fmt.Errorf("api: verifier: %w", err)
	}

	a.hub, err = hub.New(hub.Config{Client: d.Kafka, Logger: d.Logger.With("component", "hub")})
	if err != nil {
		return nil, fmt.Errorf("api: hub: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() {
		defer close(a.done)
		if err := a.hub.Run(runCtx); err != nil && runCtx.Err() == nil {
			d.Logger.Error("stream hub stopped", "err", err)
		}
	}()
	select {
	case <-a.hub.Ready():
	case <-ctx.Done():
		a.close(context.Background())
		return nil, fmt.Errorf("api: hub: %w", ctx.Err())
	}

	a.srv, err = server.New(server.Config{Listener: ln, TLS: serverTLS, Verifier: verifier, Issuer: a.issuer, Logger: d.Logger.With("component", "api")})
	if err != nil {
		a.close(context.Background())
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := services.Register(a.srv, services.Deps{
		Registry: d.Registry, Recent: d.Store, Twins: storeTwins{d.Store}, Alarms: d.Alarms,
		Cluster: d.clusterStatus(ln.Addr().String()), Hub: a.hub, Logger: d.Logger.With("component", "services"),
	}); err != nil {
		a.close(context.Background())
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := a.srv.Start(ctx); err != nil {
		a.close(context.Background())
		return nil, fmt.Errorf("api: %w", err)
	}
	return a, nil
}

// URL is the API's base URL.
func (a *nodeAPI) URL() string { return a.srv.URL() }

func (a *nodeAPI) close(ctx context.Context) {
	if a.srv != nil {
		_ = a.srv.Shutdown(ctx)
	}
	if a.cancel != nil {
		a.cancel()
		<-a.done
	}
}

// storeTwins answers twin queries from the durable twin store: the state
// as of the last applied input.
type storeTwins struct{ store *pebblestore.Store }

func (r storeTwins) GetTwin(ctx context.Context, customerID, devEUI string) (*apiv1.Twin, error) {
	dev, err := devicetwin.ParseEUI(devEUI)
	if err != nil {
		return nil, fmt.Errorf("dev eui %q: %w", devEUI, services.ErrNoState)
	}
	eui := pebblestore.EUI(dev)
	rec, err := r.store.LoadTwin(ctx, customerID, pebblestore.KindSensor, eui)
	if errors.Is(err, pebblestore.ErrNotFound) {
		return nil, fmt.Errorf("twin %s: %w", devEUI, services.ErrNoState)
	}
	if err != nil {
		return nil, err
	}
	st, err := devicetwin.UnmarshalSensorSnapshot(rec.Snapshot)
	if err != nil {
		return nil, err
	}
	return twinProto(st.View(), customerID), nil
}

func (r storeTwins) GetTwins(ctx context.Context, customerID string, devEUIs []string) ([]*apiv1.Twin, error) {
	out := make([]*apiv1.Twin, 0, len(devEUIs))
	for _, d := range devEUIs {
		t, err := r.GetTwin(ctx, customerID, d)
		if errors.Is(err, services.ErrNoState) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func tempPtr(t clipr.Temp) *float64 {
	if !t.Valid() {
		return nil
	}
	c := t.Celsius()
	return &c
}

// timestamp is t as a protobuf timestamp, nil for the zero time ("never").
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// twinProto converts a twin view to the API's Twin.
func twinProto(v devicetwin.SensorView, customerID string) *apiv1.Twin {
	dev := v.DevEUI.String()
	t := &apiv1.Twin{
		DevEui: dev, CustomerId: customerID, SiteId: v.Config.SiteID, TapPointId: v.Config.TapPointID,
		TapKind: twinv1.TapKind(v.Config.TapKind), Profile: twinv1.RuleProfile(v.Config.Profile),
		LastSeen:           timestamp(v.LastUplink),
		LastPipeC:          tempPtr(v.LastPipe),
		LastAmbientC:       tempPtr(v.LastAmbient),
		LastCompliantFlush: timestamp(v.LastCompliantFlush),
		LastFCnt:           v.LastFCnt,
		Status: &twinv1.DeviceStatus{
			BatteryMv: uint32(v.BatteryMV), Detached: v.Detached, ProbeFault: v.ProbeFault,
			Firmware: strconv.Itoa(int(v.FwMajor)) + "." + strconv.Itoa(int(v.FwMinor)), IntervalS: uint32(v.IntervalS),
			BestRssi: int32(v.BestRSSI), BestSnr: v.BestSNR,
		},
	}
	for _, g := range v.Gateways {
		t.Status.GatewayEuis = append(t.Status.GatewayEuis, g.String())
	}
	for _, oa := range v.OpenAlarms {
		raised := oa.RaisedTime()
		t.ActiveAlarms = append(t.ActiveAlarms, &apiv1.Alarm{
			AlarmId: dev + "-" + oa.Type.String() + "-" + strconv.FormatUint(uint64(oa.Seq), 10),
			DevEui:  dev, CustomerId: customerID, SiteId: v.Config.SiteID, TapPointId: v.Config.TapPointID,
			Type: twinv1.AlarmType(oa.Type), Severity: twinv1.Severity(oa.Severity), Status: twinv1.AlarmStatus(oa.Status),
			RaisedAt: timestamp(raised),
		})
	}
	return t
}

// alarmCommander applies operator alarm transitions through the twins.
// On a cluster member, owns says whether this member serves the device:
// a transition for a device served elsewhere is refused (Unavailable)
// rather than applied by a second activation of its twin.
type alarmCommander struct {
	sys  *actors.System
	owns func(pebblestore.Kind, pebblestore.EUI) bool
	// forward sends the transition to the member that serves the device
	// (cluster mode); nil: refuse with Unavailable.
	forward func(ctx context.Context, r alarmRequest) (*apiv1.Alarm, error)
}

// alarmRequest is an operator transition, as forwarded between members.
type alarmRequest struct {
	Ack      bool
	Ref      services.AlarmRef
	By, Note string
}

func (c alarmCommander) Acknowledge(ctx context.Context, ref services.AlarmRef, by, note string) (*apiv1.Alarm, error) {
	return c.operate(ctx, alarmRequest{Ack: true, Ref: ref, By: by, Note: note})
}

func (c alarmCommander) Clear(ctx context.Context, ref services.AlarmRef, by, note string) (*apiv1.Alarm, error) {
	return c.operate(ctx, alarmRequest{Ref: ref, By: by, Note: note})
}

// operate checks, inside the twin, that ref is the current open
// occurrence (and, for an ack, not acknowledged yet), then applies the
// input and returns the alarm after it.
func (c alarmCommander) operate(ctx context.Context, r alarmRequest) (*apiv1.Alarm, error) {
	ref, ack := r.Ref, r.Ack
	if c.sys == nil {
		return nil, services.ErrUnavailable
	}
	eui, err := devicetwin.ParseEUI(ref.DevEUI)
	if err != nil {
		return nil, fmt.Errorf("alarm %s: %w", ref.AlarmID, services.ErrAlarmNotFound)
	}
	if c.owns != nil && !c.owns(pebblestore.KindSensor, pebblestore.EUI(eui)) {
		if c.forward != nil {
			return c.forward(ctx, r)
		}
		return nil, fmt.Errorf("device %s is served by another cluster member (legiond cluster status): %w", ref.DevEUI, services.ErrUnavailable)
	}
	typ := devicetwin.AlarmType(ref.Type)
	now := time.Now()
	check := func(st *devicetwin.SensorState, in *devicetwin.Input) error {
		a := st.Alarm(typ)
		if a.Status == devicetwin.StatusNone || a.Status == devicetwin.ClearedAck || a.Seq != ref.Occurrence {
			return fmt.Errorf("alarm %s: %w", ref.AlarmID, services.ErrAlarmNotFound)
		}
		if ack && (a.Status == devicetwin.ActiveAck) {
			return services.ErrAlarmState
		}
		// The operator acts on this very occurrence (checked above), so the
		// action is never older than its raise: a gateway clock a little
		// ahead of ours must not make the core drop it as an action on an
		// earlier occurrence.
		at := now
		if raised := a.RaisedTime(); !at.After(raised) {
			at = raised.Add(time.Millisecond)
		}
		*in = devicetwin.AlarmClear{Type: typ, By: r.By, At: at, Note: r.Note}
		if ack {
			*in = devicetwin.AlarmAck{Type: typ, By: r.By, At: at, Note: r.Note}
		}
		return nil
	}
	var in devicetwin.Input = devicetwin.AlarmClear{Type: typ, By: r.By, At: now, Note: r.Note}
	if ack {
		in = devicetwin.AlarmAck{Type: typ, By: r.By, At: now, Note: r.Note}
	}
	view, evs, err := c.sys.Operate(ctx, ref.CustomerID, eui, in, check)
	switch {
	case errors.Is(err, actors.ErrNotFound):
		return nil, fmt.Errorf("alarm %s: %w", ref.AlarmID, services.ErrAlarmNotFound)
	case errors.Is(err, actors.ErrRetry):
		return nil, fmt.Errorf("%w: %w", services.ErrUnavailable, err)
	case err != nil:
		return nil, err
	}
	return alarmProto(view, ref, evs), nil
}

// alarmProto is the API's Alarm of ref after an operator transition: from
// the transition's event, else (nothing changed) from the twin's view.
func alarmProto(v devicetwin.SensorView, ref services.AlarmRef, evs []devicetwin.Event) *apiv1.Alarm {
	dev := v.DevEUI.String()
	typ := devicetwin.AlarmType(ref.Type)
	a := &apiv1.Alarm{
		AlarmId: dev + "-" + typ.String() + "-" + strconv.FormatUint(uint64(ref.Occurrence), 10),
		DevEui:  dev, CustomerId: ref.CustomerID, SiteId: v.Config.SiteID, TapPointId: v.Config.TapPointID,
		Type: ref.Type,
	}
	for i := range evs {
		e := &evs[i]
		if e.Kind != devicetwin.KindAlarm || e.Alarm.Type != typ {
			continue
		}
		a.Severity, a.Status = twinv1.Severity(e.Alarm.Severity), twinv1.AlarmStatus(e.Alarm.To)
		a.RaisedAt = timestamp(e.Alarm.RaisedAt)
		a.UpdatedAt = timestamp(e.At)
		a.AcknowledgedBy, a.Note = e.Alarm.By, e.Alarm.Note
		return a
	}
	for _, oa := range v.OpenAlarms {
		if oa.Type == typ {
			raised := oa.RaisedTime()
			a.Severity, a.Status = twinv1.Severity(oa.Severity), twinv1.AlarmStatus(oa.Status)
			a.RaisedAt = timestamp(raised)
		}
	}
	return a
}

// singleNode is the cluster status of a node that runs alone.
type singleNode struct{ addr string }

func (s singleNode) ClusterStatus(context.Context) (*apiv1.GetClusterStatusResponse, error) {
	return &apiv1.GetClusterStatusResponse{
		Members:           []*apiv1.Member{{Id: "node-1", Address: s.addr, Alive: true}},
		TopologyConsensus: true,
	}, nil
}
