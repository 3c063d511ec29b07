package services_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/hub"
	"github.com/legionelladossier/legiond/api/services"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// liveEvent is event i of a tenant's device (1 or 2), as a twin would
// publish it on twin.events.
func (e *env) liveEvent(f *tenantFix, devN, i int) *twinv1.TwinEvent {
	d, site, tap := f.dev1, f.site1, f.tap1
	if devN == 2 {
		d, site, tap = f.dev2, f.site2, f.tap2
	}
	v := float64(i) / 10
	return &twinv1.TwinEvent{
		EventId: fmt.Sprintf("%s-live-%d", hexEUI(d), i), PartnerId: f.partner.String(), CustomerId: f.customer.ID.String(),
		SiteId: site.ID.String(), TapPointId: tap.ID.String(), DeviceEui: hexEUI(d), EventTime: timestamppb.Now(), FCnt: uint32(i),
		Payload: &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &v}},
	}
}

func (e *env) liveBatch(f *tenantFix, from, n int) []*twinv1.TwinEvent {
	out := make([]*twinv1.TwinEvent, 0, n)
	for i := from; i < from+n; i++ {
		out = append(out, e.liveEvent(f, 1+i%2, i))
	}
	return out
}

func (e *env) publish(t testing.TB, evs ...*twinv1.TwinEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.prod.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
}

// apiStream is a client of StreamEvents over the real TLS API.
type apiStream struct {
	s      *connect.ServerStreamForClient[apiv1.StreamEventsResponse]
	cancel context.CancelFunc
	events []*twinv1.TwinEvent
	token  string
}

func (e *env) openStream(t testing.TB, client apiv1connect.TelemetryServiceClient, tok string, req *apiv1.StreamEventsRequest) *apiStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := client.StreamEvents(ctx, withToken(tok, req))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	a := &apiStream{s: s, cancel: cancel}
	t.Cleanup(a.close)
	// The hello heartbeat: from now on the subscription is registered.
	if !s.Receive() {
		t.Fatalf("no hello: %v", s.Err())
	}
	if s.Msg().GetHeartbeat() == nil || s.Msg().GetResumeToken() == "" {
		t.Fatalf("hello is %v", s.Msg())
	}
	a.token = s.Msg().GetResumeToken()
	return a
}

func (a *apiStream) close() {
	a.cancel()
	_ = a.s.Close()
}

// take receives n events (heartbeats keep the token only), failing the
// test after timeout.
func (a *apiStream) take(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	timer := time.AfterFunc(timeout, a.cancel)
	defer timer.Stop()
	for got := 0; got < n; {
		if !a.s.Receive() {
			t.Fatalf("stream ended after %d of %d events: %v", got, n, a.s.Err())
		}
		m := a.s.Msg()
		a.token = m.GetResumeToken()
		if ev := m.GetEvent(); ev != nil {
			a.events = append(a.events, ev)
			got++
		}
	}
}

// exactlyOnce asserts got holds exactly want's events, each once, in
// produced order per device.
func exactlyOnce(t testing.TB, got, want []*twinv1.TwinEvent) {
	t.Helper()
	count := map[string]int{}
	for _, e := range got {
		count[e.GetEventId()]++
	}
	for _, e := range want {
		if count[e.GetEventId()] != 1 {
			t.Errorf("event %s received %d times", e.GetEventId(), count[e.GetEventId()])
		}
		delete(count, e.GetEventId())
	}
	for id, n := range count {
		t.Errorf("unexpected event %s (%d times)", id, n)
	}
	last := map[string]uint32{}
	for _, e := range got {
		if prev, ok := last[e.GetDeviceEui()]; ok && e.GetFCnt() <= prev {
			t.Errorf("device %s: %d after %d", e.GetDeviceEui(), e.GetFCnt(), prev)
		}
		last[e.GetDeviceEui()] = e.GetFCnt()
	}
}

// TestStreamTenantIsolation: A's subscriber never receives B's or C's
// events, though all are on the same topic; the partner sees A and B.
func TestStreamTenantIsolation(t *testing.T) {
	e := newEnv(t, envOptions{})
	A, B, C := e.w.a, e.w.b, e.w.c
	tA := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})
	tB := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{B.customer.ID}})
	tP1 := e.token(t, auth.Claims{Role: auth.RolePartnerAdmin, PartnerID: e.w.p1.ID})
	tTech := e.token(t, auth.Claims{Role: auth.RoleTechnician, CustomerIDs: []uuid.UUID{A.customer.ID}, SiteIDs: []uuid.UUID{A.site1.ID}})
	sa := e.openStream(t, e.clients.telemetry, tA, &apiv1.StreamEventsRequest{})
	sb := e.openStream(t, e.clients.telemetry, tB, &apiv1.StreamEventsRequest{})
	sp := e.openStream(t, e.clients.telemetry, tP1, &apiv1.StreamEventsRequest{})
	st := e.openStream(t, e.clients.telemetry, tTech, &apiv1.StreamEventsRequest{})
	sd := e.openStream(t, e.clients.telemetry, tA, &apiv1.StreamEventsRequest{DevEui: hexEUI(A.dev2)})

	var all, as, bs []*twinv1.TwinEvent
	for i := range 40 {
		ea, eb, ec := e.liveEvent(A, 1+i%2, i), e.liveEvent(B, 1+i%2, i), e.liveEvent(C, 1+i%2, i)
		all = append(all, ec, eb, ea)
		as, bs = append(as, ea), append(bs, eb)
	}
	e.publish(t, all...)
	sa.take(t, len(as), 30*time.Second)
	sb.take(t, len(bs), 30*time.Second)
	sp.take(t, len(as)+len(bs), 30*time.Second)
	onSite1 := slices.DeleteFunc(slices.Clone(as), func(ev *twinv1.TwinEvent) bool { return ev.GetSiteId() != A.site1.ID.String() })
	onDev2 := slices.DeleteFunc(slices.Clone(as), func(ev *twinv1.TwinEvent) bool { return ev.GetDeviceEui() != hexEUI(A.dev2) })
	st.take(t, len(onSite1), 30*time.Second)
	sd.take(t, len(onDev2), 30*time.Second)
	exactlyOnce(t, sa.events, as)
	exactlyOnce(t, sb.events, bs)
	exactlyOnce(t, sp.events, append(slices.Clone(as), bs...))
	exactlyOnce(t, st.events, onSite1)
	exactlyOnce(t, sd.events, onDev2)

	// Nothing else arrives for A: a heartbeat (200 ms in this env) comes
	// before any event.
	if !sa.s.Receive() || sa.s.Msg().GetHeartbeat() == nil {
		t.Fatalf("after the batch A got %v (%v)", sa.s.Msg(), sa.s.Err())
	}
}

// TestStreamResume: disconnect after k events, reconnect with the last
// token: the union is every event exactly once, in order.
func TestStreamResume(t *testing.T) {
	e := newEnv(t, envOptions{})
	A, B := e.w.a, e.w.b
	tA := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})
	s1 := e.openStream(t, e.clients.telemetry, tA, &apiv1.StreamEventsRequest{})
	first := e.liveBatch(A, 0, 60)
	e.publish(t, first...)
	e.publish(t, e.liveBatch(B, 0, 60)...)
	s1.take(t, 23, 30*time.Second)
	s1.close() // the connection drops
	second := e.liveBatch(A, 60, 60)
	e.publish(t, append(e.liveBatch(B, 60, 10), second...)...)

	s2 := e.openStream(t, e.clients.telemetry, tA, &apiv1.StreamEventsRequest{ResumeToken: s1.token})
	third := e.liveBatch(A, 120, 20)
	e.publish(t, third...)
	s2.take(t, 140-23, 30*time.Second)
	exactlyOnce(t, append(s1.events, s2.events...), slices.Concat(first, second, third))

	// A forged or mangled token is InvalidArgument naming resume_token.
	s, err := e.clients.telemetry.StreamEvents(context.Background(), withToken(tA, &apiv1.StreamEventsRequest{ResumeToken: "not-a-token"}))
	if err == nil {
		if s.Receive() {
			t.Fatalf("bad token accepted: %v", s.Msg())
		}
		err = s.Err()
		s.Close()
	}
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "resume_token") {
		t.Fatalf("bad token: %v", err)
	}
}

// TestStreamSlowSubscriber: a client that does not read is disconnected
// with ResourceExhausted while a fast one receives everything; it then
// resumes with its last token without gaps or duplicates.
func TestStreamSlowSubscriber(t *testing.T) {
	e := newEnv(t, envOptions{})
	A := e.w.a
	tA := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})
	// The slow client's HTTP/2 receive window is small, so the server's
	// sends block soon and the hub queue (1,024) overflows.
	slowHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: e.ca.ClientConfig(), ForceAttemptHTTP2: true,
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 16 << 10}}}
	t.Cleanup(slowHTTP.CloseIdleConnections)
	slow := e.openStream(t, apiv1connect.NewTelemetryServiceClient(slowHTTP, e.url), tA, &apiv1.StreamEventsRequest{})
	fast := e.openStream(t, e.clients.telemetry, tA, &apiv1.StreamEventsRequest{})

	const total = 3000
	evs := e.liveBatch(A, 0, total)
	for i := 0; i < total; i += 100 {
		e.publish(t, evs[i:i+100]...)
		fast.take(t, 100, 30*time.Second)
	}
	exactlyOnce(t, fast.events, evs)
	if m := e.hub.Metrics(); m.Slow != 1 {
		t.Fatalf("hub dropped %d slow subscribers, want 1", m.Slow)
	}

	// Now the slow client reads: what was buffered, then the verdict.
	for slow.s.Receive() {
		m := slow.s.Msg()
		slow.token = m.GetResumeToken()
		if ev := m.GetEvent(); ev != nil {
			slow.events = append(slow.events, ev)
		}
	}
	err := slow.s.Err()
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), hub.ErrSlow.Error()) {
		t.Fatalf("slow client ended with %v", err)
	}
	if n := len(slow.events); n == 0 || n >= total {
		t.Fatalf("slow client got %d events before the disconnect", n)
	}
	again := e.openStream(t, apiv1connect.NewTelemetryServiceClient(slowHTTP, e.url), tA, &apiv1.StreamEventsRequest{ResumeToken: slow.token})
	again.take(t, total-len(slow.events), 30*time.Second)
	exactlyOnce(t, append(slow.events, again.events...), evs)
	t.Logf("slow client: %d events before ResourceExhausted, %d after resuming", len(slow.events), len(again.events))
}

// TestStreamAlarmsFilters: StreamAlarms carries alarm transitions of the
// caller's scope from the minimum severity on.
func TestStreamAlarmsFilters(t *testing.T) {
	e := newEnv(t, envOptions{})
	A, B := e.w.a, e.w.b
	tA := e.token(t, auth.Claims{Role: auth.RoleViewer, CustomerIDs: []uuid.UUID{A.customer.ID}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := e.clients.alarm.StreamAlarms(ctx, withToken(tA, &apiv1.StreamAlarmsRequest{MinSeverity: twinv1.Severity_SEVERITY_MAJOR}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Receive() || s.Msg().GetHeartbeat() == nil {
		t.Fatalf("hello: %v", s.Err())
	}
	alarm := func(f *tenantFix, i int, sev twinv1.Severity) *twinv1.TwinEvent {
		ev := e.liveEvent(f, 1, i)
		ev.Payload = &twinv1.TwinEvent_Alarm{Alarm: &twinv1.AlarmTransition{AlarmId: hexEUI(f.dev1) + "-HOTSPOT-1",
			Type: twinv1.AlarmType_ALARM_TYPE_HOTSPOT, Severity: sev, ToStatus: twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK}}
		return ev
	}
	want := alarm(A, 4, twinv1.Severity_SEVERITY_CRITICAL)
	e.publish(t, e.liveEvent(A, 1, 1), alarm(A, 2, twinv1.Severity_SEVERITY_WARNING), alarm(B, 3, twinv1.Severity_SEVERITY_CRITICAL), want)
	for s.Receive() {
		if ev := s.Msg().GetEvent(); ev != nil {
			if ev.GetEventId() != want.GetEventId() {
				t.Fatalf("got %s", ev.GetEventId())
			}
			return
		}
	}
	t.Fatal(s.Err())
}

// TestStreamStalledClientIsCut: a client that stops reading altogether is
// cut off StreamWriteGrace after the hub dropped it (its stream is reset,
// the handler and subscription are freed) without its reading again; when
// it comes back it resumes with its last token, exactly once.
func TestStreamStalledClientIsCut(t *testing.T) {
	e := newEnv(t, envOptions{deps: func(d *services.Deps) { d.StreamWriteGrace = 200 * time.Millisecond }})
	A := e.w.a
	tA := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})
	stalledHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: e.ca.ClientConfig(), ForceAttemptHTTP2: true,
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 16 << 10}}}
	t.Cleanup(stalledHTTP.CloseIdleConnections)
	stalled := e.openStream(t, apiv1connect.NewTelemetryServiceClient(stalledHTTP, e.url), tA, &apiv1.StreamEventsRequest{})
	fast := e.openStream(t, e.clients.telemetry, tA, &apiv1.StreamEventsRequest{})
	const total = 3000
	evs := e.liveBatch(A, 0, total)
	for i := 0; i < total; i += 100 {
		e.publish(t, evs[i:i+100]...)
		fast.take(t, 100, 30*time.Second)
	}
	// The stalled stream's handler ends on its own: only the fast
	// subscription is left.
	deadline := time.Now().Add(20 * time.Second)
	for e.hub.Metrics().Subscribers != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stalled subscription still open: %+v", e.hub.Metrics())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	for stalled.s.Receive() {
		stalled.token = stalled.s.Msg().GetResumeToken()
		if ev := stalled.s.Msg().GetEvent(); ev != nil {
			stalled.events = append(stalled.events, ev)
		}
	}
	if stalled.s.Err() == nil {
		t.Fatal("stalled stream ended without an error")
	}
	again := e.openStream(t, e.clients.telemetry, tA, &apiv1.StreamEventsRequest{ResumeToken: stalled.token})
	again.take(t, total-len(stalled.events), 30*time.Second)
	exactlyOnce(t, append(stalled.events, again.events...), evs)
	t.Logf("stalled client: %d events, then %v", len(stalled.events), stalled.s.Err())
}
