package loadtest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// apiStreams follows the run through the API as an app would:
// TelemetryService.StreamEvents (per probe building, or the whole scope)
// and AlarmService.StreamAlarms, resuming with the last token after a drop.
// Each event feeds the API observer; its arrival time against the frame's
// produced time is the end-to-end latency.
type apiStreams struct {
	cfg       *APIConfig
	obs       *observer
	alarmObs  *observer
	errs      *errorCounts
	log       func(msg string, args ...any)
	wg        sync.WaitGroup
	connected atomic.Int64 // streams that received at least one message
	received  atomic.Int64
}

// startAPI opens the streams: one StreamEvents per site id (none: the
// whole scope) and, unless disabled, one StreamAlarms.
func startAPI(ctx context.Context, cfg *APIConfig, siteIDs []string, obs, alarmObs *observer, errs *errorCounts, log func(string, ...any)) *apiStreams {
	a := &apiStreams{cfg: cfg, obs: obs, alarmObs: alarmObs, errs: errs, log: log}
	base := strings.TrimRight(cfg.BaseURL, "/")
	tel := apiv1connect.NewTelemetryServiceClient(cfg.HTTPClient, base)
	if len(siteIDs) == 0 {
		siteIDs = []string{""}
	}
	for _, site := range siteIDs {
		a.wg.Go(func() {
			a.follow(ctx, "api_events", func(ctx context.Context, token string) (stream, error) {
				req := connect.NewRequest(&apiv1.StreamEventsRequest{SiteId: site, ResumeToken: token})
				req.Header().Set("Authorization", "Bearer "+cfg.Token)
				s, err := tel.StreamEvents(ctx, req)
				if err != nil {
					return nil, err
				}
				return eventsStream{s}, nil
			}, a.obs)
		})
	}
	if !cfg.NoAlarms {
		al := apiv1connect.NewAlarmServiceClient(cfg.HTTPClient, base)
		a.wg.Go(func() {
			a.follow(ctx, "api_alarms", func(ctx context.Context, token string) (stream, error) {
				req := connect.NewRequest(&apiv1.StreamAlarmsRequest{ResumeToken: token})
				req.Header().Set("Authorization", "Bearer "+cfg.Token)
				s, err := al.StreamAlarms(ctx, req)
				if err != nil {
					return nil, err
				}
				return alarmsStream{s}, nil
			}, a.alarmObs)
		})
	}
	return a
}

// stream abstracts the two server streams.
type stream interface {
	Receive() bool
	Event() *twinv1.TwinEvent
	Token() string
	Err() error
	Close() error
}

type eventsStream struct {
	*connect.ServerStreamForClient[apiv1.StreamEventsResponse]
}

func (s eventsStream) Event() *twinv1.TwinEvent { return s.Msg().GetEvent() }
func (s eventsStream) Token() string            { return s.Msg().GetResumeToken() }

type alarmsStream struct {
	*connect.ServerStreamForClient[apiv1.StreamAlarmsResponse]
}

func (s alarmsStream) Event() *twinv1.TwinEvent { return s.Msg().GetEvent() }
func (s alarmsStream) Token() string            { return s.Msg().GetResumeToken() }

// follow keeps one stream open until ctx ends, resuming after drops; it
// gives up on authentication and argument errors.
func (a *apiStreams) follow(ctx context.Context, kind string, open func(context.Context, string) (stream, error), obs *observer) {
	token := ""
	backoff := 100 * time.Millisecond
	counted := false
	for ctx.Err() == nil {
		s, err := open(ctx, token)
		if err == nil {
			for s.Receive() {
				if !counted {
					counted = true
					a.connected.Add(1)
				}
				backoff = 100 * time.Millisecond
				if ev := s.Event(); ev != nil {
					a.received.Add(1)
					if dev, ok := parseEUI([]byte(ev.GetDeviceEui())); ok {
						obs.event(dev, infoOf(ev))
					}
				}
				if t := s.Token(); t != "" {
					token = t
				}
			}
			err = s.Err()
			_ = s.Close()
		}
		if ctx.Err() != nil {
			return
		}
		code := connect.CodeOf(err)
		a.errs.add(kind+"_"+strings.ReplaceAll(code.String(), " ", "_"), 1)
		switch code {
		case connect.CodeUnauthenticated, connect.CodePermissionDenied, connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeUnimplemented:
			a.log("API stream refused; latency over the API is not measured", "stream", kind, "err", err)
			return
		case connect.CodeOutOfRange:
			token = "" // the token fell out of retention: events were missed
		}
		if errors.Is(err, context.Canceled) {
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (a *apiStreams) wait() { a.wg.Wait() }

// infoOf is eventInfo of a decoded event.
func infoOf(ev *twinv1.TwinEvent) eventInfo {
	in := eventInfo{fcnt: ev.GetFCnt()}
	switch p := ev.GetPayload().(type) {
	case *twinv1.TwinEvent_Reading:
		in.kind = kindReading
	case *twinv1.TwinEvent_WaterEvent:
		in.kind = kindWater
	case *twinv1.TwinEvent_Alarm:
		in.kind = kindAlarm
		in.alarmType = int32(p.Alarm.GetType())
		in.alarmRaised = p.Alarm.GetToStatus() == twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK
	case *twinv1.TwinEvent_DeviceStatus:
		in.kind = kindStatus
	case *twinv1.TwinEvent_GatewayStatus:
		in.kind = kindGateway
	}
	return in
}
