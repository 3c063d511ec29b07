package services

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/hub"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// kindScopes are the stream kinds and the scope each needs.
var kindScopes = []struct {
	api   apiv1.EventKind
	hub   hub.Kinds
	scope string
}{
	{apiv1.EventKind_EVENT_KIND_READING, hub.KindReading, auth.ScopeReadingsRead},
	{apiv1.EventKind_EVENT_KIND_WATER_EVENT, hub.KindWaterEvent, auth.ScopeReadingsRead},
	{apiv1.EventKind_EVENT_KIND_ALARM, hub.KindAlarm, auth.ScopeAlarmsRead},
	{apiv1.EventKind_EVENT_KIND_DEVICE_STATUS, hub.KindStatus, auth.ScopeDevicesRead},
}

// StreamEvents streams live twin events in the caller's scope, optionally
// narrowed to a site, a device and kinds, resuming after resume_token.
// Without kinds it streams every kind the caller's scopes allow.
func (s *Services) StreamEvents(ctx context.Context, req *connect.Request[apiv1.StreamEventsRequest], stream *connect.ServerStream[apiv1.StreamEventsResponse]) error {
	const op = apiv1connect.TelemetryServiceStreamEventsProcedure
	p, err := s.principal(ctx)
	if err != nil {
		return err
	}
	m := req.Msg
	var kinds hub.Kinds
	if len(m.GetKinds()) == 0 {
		for _, k := range kindScopes {
			if p.HasScope(k.scope) {
				kinds |= k.hub
			}
		}
		if kinds == 0 {
			return denied("requires scope %s, %s or %s", auth.ScopeReadingsRead, auth.ScopeAlarmsRead, auth.ScopeDevicesRead)
		}
	}
	for _, want := range m.GetKinds() {
		found := false
		for _, k := range kindScopes {
			if k.api == want {
				if err := need(p, k.scope); err != nil {
					return err
				}
				kinds |= k.hub
				found = true
			}
		}
		if !found {
			return invalid("kinds", "unknown kind %d", want)
		}
	}
	if err := s.auditStaff(ctx, p); err != nil {
		return err
	}
	ctx, cancel := s.grantDeadline(ctx, p)
	defer cancel()
	f := streamFilter(p)
	f.Kinds = kinds
	if err := s.narrow(ctx, p, &f, m.GetSiteId(), m.GetDevEui()); err != nil {
		return s.toConnect(ctx, op, err)
	}
	return s.stream(ctx, op, f, m.GetResumeToken(), func(msg hub.Message) error {
		r := &apiv1.StreamEventsResponse{ResumeToken: msg.Token}
		if msg.Heartbeat() {
			r.Message = &apiv1.StreamEventsResponse_Heartbeat{Heartbeat: &apiv1.Heartbeat{ServerTime: timestamppb.New(msg.Time)}}
		} else {
			r.Message = &apiv1.StreamEventsResponse_Event{Event: msg.Event}
		}
		return stream.Send(r)
	})
}

// StreamAlarms streams alarm transitions in the caller's scope, optionally
// of one site and from a minimum severity, resuming after resume_token.
func (s *Services) StreamAlarms(ctx context.Context, req *connect.Request[apiv1.StreamAlarmsRequest], stream *connect.ServerStream[apiv1.StreamAlarmsResponse]) error {
	const op = apiv1connect.AlarmServiceStreamAlarmsProcedure
	p, err := s.authorize(ctx, auth.ScopeAlarmsRead)
	if err != nil {
		return err
	}
	ctx, cancel := s.grantDeadline(ctx, p)
	defer cancel()
	m := req.Msg
	minSev := m.GetMinSeverity()
	if _, ok := twinv1.Severity_name[int32(minSev)]; !ok {
		return invalid("min_severity", "unknown severity %d", minSev)
	}
	f := streamFilter(p)
	f.Kinds = hub.KindAlarm
	if minSev != twinv1.Severity_SEVERITY_UNSPECIFIED {
		f.Match = func(ev *twinv1.TwinEvent) bool { return severityAtLeast(ev.GetAlarm().GetSeverity(), minSev) }
	}
	if err := s.narrow(ctx, p, &f, m.GetSiteId(), ""); err != nil {
		return s.toConnect(ctx, op, err)
	}
	return s.stream(ctx, op, f, m.GetResumeToken(), func(msg hub.Message) error {
		r := &apiv1.StreamAlarmsResponse{ResumeToken: msg.Token}
		if msg.Heartbeat() {
			r.Message = &apiv1.StreamAlarmsResponse_Heartbeat{Heartbeat: &apiv1.Heartbeat{ServerTime: timestamppb.New(msg.Time)}}
		} else {
			r.Message = &apiv1.StreamAlarmsResponse_Event{Event: msg.Event}
		}
		return stream.Send(r)
	})
}

// narrow adds the optional site and device filters, after checking that
// the caller may see them (NotFound otherwise).
func (s *Services) narrow(ctx context.Context, p *auth.Principal, f *hub.Filter, siteID, devEUI string) error {
	if siteID != "" {
		id, err := parseID("site_id", siteID, true)
		if err != nil {
			return err
		}
		site, err := s.findSite(ctx, p, id)
		if err != nil {
			return err
		}
		f.SiteID = site.ID.String()
	}
	if devEUI != "" {
		eui, err := parseEUI("dev_eui", devEUI, true)
		if err != nil {
			return err
		}
		if _, err := s.findDevice(ctx, p, eui, "device "+euiHex(eui)); err != nil {
			return err
		}
		f.DevEUI = euiHex(eui)
	}
	return nil
}

type controlKey struct{}

// streamControl is what a stream handler may do to its response beyond
// Connect's API: cut off a client that stopped reading (a write deadline)
// and hold back flushes while more messages are ready.
type streamControl struct {
	rc *http.ResponseController
	// hold skips the flush Connect does after each message, so that a
	// burst of ready messages goes out in a few frames and syscalls
	// instead of one per message. Only set while the next message is
	// already waiting, so it adds no latency.
	hold atomic.Bool
}

// gatedWriter is the response writer the handlers see: Flush honours
// streamControl.hold; everything else is the server's writer (Unwrap lets
// http.ResponseController reach it).
type gatedWriter struct {
	http.ResponseWriter
	sc *streamControl
}

func (w *gatedWriter) Flush() {
	if w.sc.hold.Load() {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *gatedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withStreamControl gives the stream handlers their streamControl through
// the request context.
func withStreamControl(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := &streamControl{rc: http.NewResponseController(w)}
		h.ServeHTTP(&gatedWriter{ResponseWriter: w, sc: sc}, r.WithContext(context.WithValue(r.Context(), controlKey{}, sc)))
	})
}

// stream runs a hub subscription until the client goes away, the token
// expires (the auth interceptor ends ctx) or the subscriber falls behind.
//
// A subscriber that falls behind ends with ResourceExhausted once the
// handler gets back to the hub. If the handler is stuck sending to a client
// that stopped reading (flow control), the hub's verdict cannot reach it:
// the response then gets a write deadline of Deps.StreamWriteGrace, after
// which the stream is reset and its resources freed.
func (s *Services) stream(ctx context.Context, op string, f hub.Filter, token string, send func(hub.Message) error) error {
	sub, err := s.d.Hub.Subscribe(ctx, f, token)
	if err != nil {
		return s.toConnect(ctx, op, err)
	}
	defer sub.Close()
	sc, _ := ctx.Value(controlKey{}).(*streamControl)
	if sc != nil {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			select {
			case <-sub.Done():
				_ = sc.rc.SetWriteDeadline(time.Now().Add(s.d.StreamWriteGrace))
			case <-stop:
			}
		})
		// Before the handler returns, and so before the response writer
		// may no longer be touched; Connect's last flush must go out.
		defer func() { close(stop); wg.Wait(); sc.hold.Store(false) }()
	}
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				if errors.Is(context.Cause(ctx), errGrantRevoked) {
					return denied("%v", errGrantRevoked)
				}
				return ctx.Err() // the interceptor tells an expired token apart
			}
			return s.toConnect(ctx, op, err)
		}
		if sc != nil {
			sc.hold.Store(sub.More())
		}
		if err := send(msg); err != nil {
			return err
		}
	}
}
