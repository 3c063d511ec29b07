package services_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/services"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// clock is an injectable server clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// newClockEnv is an env whose services read c.
func newClockEnv(t *testing.T) (*env, *clock) {
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	e := newEnv(t, envOptions{deps: func(d *services.Deps) { d.Now = c.now; d.GrantRecheck = 20 * time.Millisecond }})
	return e, c
}

// code returns err's Connect code (0 for nil).
func code(err error) connect.Code {
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

// withGrant adds the break-glass header naming grant.
func withGrant[T any](tok string, grant string, msg *T) *connect.Request[T] {
	req := withToken(tok, msg)
	req.Header().Set(services.BreakGlassHeader, grant)
	return req
}

// auditOf returns the audit entries with action (all when "").
func (e *env) auditOf(t *testing.T, action string) []postgres.AuditRecord {
	t.Helper()
	var out []postgres.AuditRecord
	err := e.store.InTx(context.Background(), postgres.PlatformScope("test"), func(tx *postgres.Tx) error {
		var err error
		out, err = tx.AuditEntries(context.Background(), postgres.AuditFilter{Action: action, Limit: 100000})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) verifyAudit(t *testing.T) {
	t.Helper()
	rep, err := e.store.VerifyAudit(context.Background())
	if err != nil || !rep.Intact() {
		t.Fatalf("audit verify: %+v %v", rep, err)
	}
}

// grant creates a break-glass grant as an operator would.
func (e *env) grant(t *testing.T, customer uuid.UUID, subject string, now time.Time, d time.Duration) postgres.BreakGlassGrant {
	t.Helper()
	var g postgres.BreakGlassGrant
	err := e.store.InTx(context.Background(), postgres.PlatformScope("user:admin-1"), func(tx *postgres.Tx) error {
		var err error
		g, err = tx.BreakGlass().Create(context.Background(), postgres.NewBreakGlassGrant{CustomerID: customer, Subject: subject,
			Reason: "ticket 77: sensor readings look wrong", Now: now, For: d, ActorRole: "platform_admin"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// addReadingsToTwins gives every twin alarms of both kinds and notes, so
// that redaction has something to remove.
func (e *env) enrichTwins(f *tenantFix) {
	for _, eui := range []postgres.EUI64{f.dev1, f.dev2} {
		e.twins.mu.Lock()
		tw := e.twins.twins[f.customer.ID.String()+"/"+hexEUI(eui)]
		tw.LastCompliantFlush = timestamppb.New(e.now.Add(-time.Hour))
		tw.Status = &twinv1.DeviceStatus{BatteryMv: 2850, Online: true, BestRssi: -97, Firmware: "1.4", IntervalS: 900}
		tw.ActiveAlarms[0].Note, tw.ActiveAlarms[0].Message, tw.ActiveAlarms[0].AcknowledgedBy = "tap 3 scalded Mrs Jansen", "41.2 °C", "user:tech-1"
		tw.ActiveAlarms = append(tw.ActiveAlarms, &apiv1.Alarm{AlarmId: hexEUI(eui) + "-BATTERY_LOW-1", DevEui: hexEUI(eui),
			Type: twinv1.AlarmType_ALARM_TYPE_BATTERY_LOW, Severity: twinv1.Severity_SEVERITY_MINOR, Message: "battery 2850 mV",
			Note: "replace battery, call Mr de Vries", Status: twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK})
		e.twins.mu.Unlock()
	}
}

// TestSupportRole: support reads device health and configuration of every
// customer and nothing else; its twins carry no readings, logbook or
// notes; every call is audited.
func TestSupportRole(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.enrichTwins(e.w.a)
	e.enrichTwins(e.w.b)
	tok := e.token(t, auth.Claims{Subject: "support-1", Role: auth.RoleSupport})
	ctx := context.Background()
	cl := e.clients
	before := len(e.auditOf(t, postgres.AuditDataAccess))

	// Allowed: health and configuration of customers A and B (of two partners' worth).
	for _, f := range []*tenantFix{e.w.a, e.w.b, e.w.c} {
		resp, err := cl.twin.GetTwin(ctx, withToken(tok, &apiv1.GetTwinRequest{DevEui: hexEUI(f.dev1)}))
		if err != nil {
			t.Fatalf("GetTwin %s: %v", f.name, err)
		}
		tw := resp.Msg.Twin
		if tw.GetStatus().GetBatteryMv() != 2850 && f != e.w.c || tw.LastSeen == nil {
			t.Errorf("%s: health missing: %v", f.name, tw)
		}
		checkRedacted(t, f.name, tw)
		list, err := cl.twin.ListTwins(ctx, withToken(tok, &apiv1.ListTwinsRequest{SiteId: f.site1.ID.String()}))
		if err != nil || len(list.Msg.Twins) != 1 {
			t.Fatalf("ListTwins %s: %v %v", f.name, list, err)
		}
		checkRedacted(t, f.name, list.Msg.Twins[0])
		devs, err := cl.admin.ListDevices(ctx, withToken(tok, &apiv1.ListDevicesRequest{}))
		if err != nil || len(devs.Msg.Devices) < 6 {
			t.Fatalf("ListDevices: %v %v", devs, err)
		}
	}
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"customers", func() error {
			_, err := cl.admin.ListCustomers(ctx, withToken(tok, &apiv1.ListCustomersRequest{}))
			return err
		}},
		{"sites", func() error { _, err := cl.admin.ListSites(ctx, withToken(tok, &apiv1.ListSitesRequest{})); return err }},
		{"tap points", func() error {
			_, err := cl.admin.ListTapPoints(ctx, withToken(tok, &apiv1.ListTapPointsRequest{}))
			return err
		}},
		{"gateways", func() error {
			_, err := cl.admin.ListGateways(ctx, withToken(tok, &apiv1.ListGatewaysRequest{}))
			return err
		}},
	} {
		if err := call.do(); err != nil {
			t.Errorf("support %s: %v", call.name, err)
		}
	}

	// Denied: readings, water events, logbook and alarms, streams, writes,
	// partners (PermissionDenied before any lookup).
	period := &apiv1.Period{Start: timestamppb.New(e.now.Add(-2 * time.Hour)), End: timestamppb.New(e.now)}
	a := e.w.a
	for _, call := range deniedCalls(cl, a, period) {
		if c := code(call.do(ctx, tok)); c != connect.CodePermissionDenied {
			t.Errorf("support %s: code %v, want permission_denied", call.name, c)
		}
	}

	// Every allowed call is in the audit trail as support's data access.
	recs := e.auditOf(t, postgres.AuditDataAccess)[before:]
	if len(recs) != 3*3+4 {
		t.Errorf("%d data.access entries, want %d", len(recs), 3*3+4)
	}
	for _, r := range recs {
		if r.Actor != "user:support-1" || r.ActorRole != "support" || !strings.HasPrefix(r.Target, "procedure:/legiond.api.v1.") {
			t.Errorf("audit entry %+v", r)
		}
	}
	e.verifyAudit(t)
}

type namedCall struct {
	name string
	do   func(ctx context.Context, tok string) error
}

// deniedCalls are the procedures support must not reach without a grant.
func deniedCalls(cl clientSet, a *tenantFix, period *apiv1.Period) []namedCall {
	return []namedCall{
		{"readings", func(ctx context.Context, tok string) error {
			_, err := cl.telemetry.ListReadings(ctx, withToken(tok, &apiv1.ListReadingsRequest{DevEui: hexEUI(a.dev1), Period: period}))
			return err
		}},
		{"water events (logbook)", func(ctx context.Context, tok string) error {
			_, err := cl.telemetry.ListWaterEvents(ctx, withToken(tok, &apiv1.ListWaterEventsRequest{DevEui: hexEUI(a.dev1), Period: period}))
			return err
		}},
		{"alarms (logbook, notes)", func(ctx context.Context, tok string) error {
			_, err := cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{}))
			return err
		}},
		{"acknowledge", func(ctx context.Context, tok string) error {
			_, err := cl.alarm.AcknowledgeAlarm(ctx, withToken(tok, &apiv1.AcknowledgeAlarmRequest{AlarmId: a.alarm1}))
			return err
		}},
		{"event stream", func(ctx context.Context, tok string) error {
			_, err := streamFirst(cl.telemetry.StreamEvents(ctx, withToken(tok, &apiv1.StreamEventsRequest{})))
			return err
		}},
		{"alarm stream", func(ctx context.Context, tok string) error {
			_, err := streamFirst(cl.alarm.StreamAlarms(ctx, withToken(tok, &apiv1.StreamAlarmsRequest{})))
			return err
		}},
		{"partners", func(ctx context.Context, tok string) error {
			_, err := cl.admin.ListPartners(ctx, withToken(tok, &apiv1.ListPartnersRequest{}))
			return err
		}},
		{"create site", func(ctx context.Context, tok string) error {
			_, err := cl.admin.CreateSite(ctx, withToken(tok, &apiv1.CreateSiteRequest{CustomerId: a.customer.ID.String(), Name: "x", Country: "NL"}))
			return err
		}},
		{"cluster", func(ctx context.Context, tok string) error {
			_, err := cl.cluster.GetClusterStatus(ctx, withToken(tok, &apiv1.GetClusterStatusRequest{}))
			return err
		}},
	}
}

// checkRedacted fails when a twin holds readings, logbook fields, notes or
// non-health alarms.
func checkRedacted(t *testing.T, who string, tw *apiv1.Twin) {
	t.Helper()
	if tw.LastPipeC != nil || tw.LastAmbientC != nil || tw.LastCompliantFlush != nil {
		t.Errorf("%s: support sees readings or logbook: %v", who, tw)
	}
	for _, a := range tw.ActiveAlarms {
		if a.Type != twinv1.AlarmType_ALARM_TYPE_BATTERY_LOW || a.Note != "" || a.Message != "" || a.AcknowledgedBy != "" {
			t.Errorf("%s: support sees alarm %v", who, a)
		}
	}
	js, _ := protojson.Marshal(tw)
	for _, bad := range []string{"lastPipeC", "lastAmbientC", "Jansen", "de Vries", "41.2", "lastCompliantFlush"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("%s: response holds %q: %s", who, bad, js)
		}
	}
}

// TestBreakGlass: a grant gives one support user read access to one
// customer, per request naming it, until it expires (server clock) or is
// revoked; every request under it is audited with the grant id.
func TestBreakGlass(t *testing.T) {
	e, clk := newClockEnv(t)
	ctx := context.Background()
	cl := e.clients
	A, B := e.w.a, e.w.b
	tok := e.token(t, auth.Claims{Subject: "support-1", Role: auth.RoleSupport})
	other := e.token(t, auth.Claims{Subject: "support-2", Role: auth.RoleSupport})
	admin := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})
	period := &apiv1.Period{Start: timestamppb.New(e.now.Add(-2 * time.Hour)), End: timestamppb.New(e.now)}
	readings := func(tok, grant string, f *tenantFix) (*apiv1.ListReadingsResponse, error) {
		req := withToken(tok, &apiv1.ListReadingsRequest{DevEui: hexEUI(f.dev1), Period: period})
		if grant != "" {
			req.Header().Set(services.BreakGlassHeader, grant)
		}
		resp, err := cl.telemetry.ListReadings(ctx, req)
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}

	// Without a grant: denied.
	if _, err := readings(tok, "", A); code(err) != connect.CodePermissionDenied {
		t.Fatalf("no grant: %v", err)
	}
	g := e.grant(t, A.customer.ID, "support-1", clk.now(), 2*time.Hour)
	gid := g.ID.String()

	// With the grant: customer A's readings, alarms and full twins.
	r, err := readings(tok, gid, A)
	if err != nil || len(r.Readings) != 3 {
		t.Fatalf("with grant: %v %v", r, err)
	}
	if _, err := cl.alarm.ListAlarms(ctx, withGrant(tok, gid, &apiv1.ListAlarmsRequest{})); err != nil {
		t.Fatalf("alarms with grant: %v", err)
	}
	tw, err := cl.twin.GetTwin(ctx, withGrant(tok, gid, &apiv1.GetTwinRequest{DevEui: hexEUI(A.dev1)}))
	if err != nil || tw.Msg.Twin.LastPipeC == nil {
		t.Fatalf("full twin under grant: %v %v", tw, err)
	}
	// ... for that customer only, read only, for that user only.
	for _, tt := range []struct {
		name string
		err  error
		want connect.Code
	}{
		{"customer B", func() error { _, err := readings(tok, gid, B); return err }(), connect.CodeNotFound},
		{"customer B twin", func() error {
			_, err := cl.twin.GetTwin(ctx, withGrant(tok, gid, &apiv1.GetTwinRequest{DevEui: hexEUI(B.dev1)}))
			return err
		}(), connect.CodeNotFound},
		{"acknowledge", func() error {
			_, err := cl.alarm.AcknowledgeAlarm(ctx, withGrant(tok, gid, &apiv1.AcknowledgeAlarmRequest{AlarmId: A.alarm1}))
			return err
		}(), connect.CodePermissionDenied},
		{"create site", func() error {
			_, err := cl.admin.CreateSite(ctx, withGrant(tok, gid, &apiv1.CreateSiteRequest{CustomerId: A.customer.ID.String(), Name: "x", Country: "NL"}))
			return err
		}(), connect.CodePermissionDenied},
		{"another support user", func() error { _, err := readings(other, gid, A); return err }(), connect.CodePermissionDenied},
		{"a customer admin naming it", func() error { _, err := readings(admin, gid, A); return err }(), connect.CodePermissionDenied},
		{"unknown grant", func() error { _, err := readings(tok, uuid.NewString(), A); return err }(), connect.CodePermissionDenied},
		{"malformed grant", func() error { _, err := readings(tok, "grant-1", A); return err }(), connect.CodeInvalidArgument},
	} {
		if code(tt.err) != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.err, tt.want)
		}
	}

	// Expiry by the server clock.
	clk.add(2*time.Hour - time.Second)
	if _, err := readings(tok, gid, A); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	clk.add(time.Second)
	if _, err := readings(tok, gid, A); code(err) != connect.CodePermissionDenied {
		t.Fatalf("at expiry: %v", err)
	}

	// Revocation works at once.
	g2 := e.grant(t, A.customer.ID, "support-1", clk.now(), time.Hour)
	if _, err := readings(tok, g2.ID.String(), A); err != nil {
		t.Fatalf("second grant: %v", err)
	}
	err = e.store.InTx(ctx, postgres.PlatformScope("user:admin-2"), func(tx *postgres.Tx) error {
		_, err := tx.BreakGlass().Revoke(ctx, g2.ID, clk.now(), "platform_admin")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readings(tok, g2.ID.String(), A); code(err) != connect.CodePermissionDenied {
		t.Fatalf("after revocation: %v", err)
	}

	// A stream opened under a grant ends, PermissionDenied, once the grant
	// is revoked (GrantRecheck later).
	g3 := e.grant(t, A.customer.ID, "support-1", clk.now(), time.Hour)
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	stream, err := cl.telemetry.StreamEvents(sctx, withGrant(tok, g3.ID.String(), &apiv1.StreamEventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() { // the hello: the stream is open
		t.Fatalf("stream under a grant: %v", stream.Err())
	}
	err = e.store.InTx(ctx, postgres.PlatformScope("user:admin-2"), func(tx *postgres.Tx) error {
		_, err := tx.BreakGlass().Revoke(ctx, g3.ID, clk.now(), "platform_admin")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() { // heartbeats until the recheck ends it
	}
	if code(stream.Err()) != connect.CodePermissionDenied {
		t.Fatalf("stream after revocation: %v, want PermissionDenied", stream.Err())
	}
	_ = stream.Close()

	// Every request under a grant was audited with the grant id and reason.
	var under []postgres.AuditRecord
	for _, rec := range e.auditOf(t, postgres.AuditDataAccess) {
		if strings.Contains(string(rec.Details), `"break-glass"`) {
			under = append(under, rec)
			if rec.CustomerID == nil || *rec.CustomerID != A.customer.ID || rec.Actor != "user:support-1" ||
				!strings.Contains(string(rec.Details), "ticket 77") {
				t.Errorf("entry %+v", rec)
			}
		}
	}
	// readings, alarms, twin, B readings, B twin, 1 s before expiry, second
	// grant, the stream under the third.
	if len(under) != 8 {
		t.Errorf("%d break-glass entries, want 8", len(under))
	}
	if n := len(e.auditOf(t, postgres.AuditBreakGlassGrant)); n != 3 {
		t.Errorf("%d grant entries", n)
	}
	if n := len(e.auditOf(t, postgres.AuditBreakGlassRevoke)); n != 2 {
		t.Errorf("%d revoke entries", n)
	}
	e.verifyAudit(t)

	// A reason is required.
	err = e.store.InTx(ctx, postgres.PlatformScope("user:admin-1"), func(tx *postgres.Tx) error {
		_, err := tx.BreakGlass().Create(ctx, postgres.NewBreakGlassGrant{CustomerID: A.customer.ID, Subject: "support-1", Now: clk.now(), For: time.Hour})
		return err
	})
	if !errors.Is(err, postgres.ErrInvalidArgument) {
		t.Errorf("grant without reason: %v", err)
	}
}

// TestAuditCallSites: admin changes and alarm commands through the API are
// in the audit trail with who, role, tenant and target; the chain verifies.
func TestAuditCallSites(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	cl := e.clients
	A := e.w.a
	platform := e.token(t, auth.Claims{Subject: "op-1", Role: auth.RolePlatformAdmin})
	adminA := e.token(t, auth.Claims{Subject: "anna", Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})
	tech := e.token(t, auth.Claims{Subject: "tom", Role: auth.RoleTechnician, CustomerIDs: []uuid.UUID{A.customer.ID}, SiteIDs: []uuid.UUID{A.site1.ID}})

	p, err := cl.admin.CreatePartner(ctx, withToken(platform, &apiv1.CreatePartnerRequest{Name: "audit partner"}))
	if err != nil {
		t.Fatal(err)
	}
	site, err := cl.admin.CreateSite(ctx, withToken(adminA, &apiv1.CreateSiteRequest{CustomerId: A.customer.ID.String(), Name: "audited", Country: "NL"}))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := cl.admin.CreateTapPoint(ctx, withToken(adminA, &apiv1.CreateTapPointRequest{SiteId: site.Msg.Site.SiteId, Name: "tap", Kind: twinv1.TapKind_TAP_KIND_HOT_TAP}))
	if err != nil {
		t.Fatal(err)
	}
	eui := hexEUI(nextEUI(0x73))
	if _, err := cl.admin.CreateDevice(ctx, withToken(adminA, &apiv1.CreateDeviceRequest{DevEui: eui, Activation: apiv1.Activation_ACTIVATION_ABP,
		TapPointId: tp.Msg.TapPoint.TapPointId, DevAddr: "26aa0001", NwkSKey: strings.Repeat("ab", 16), AppSKey: strings.Repeat("cd", 16)})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.alarm.AcknowledgeAlarm(ctx, withToken(tech, &apiv1.AcknowledgeAlarmRequest{AlarmId: A.alarm1, Note: "on my way"})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.alarm.ClearAlarm(ctx, withToken(tech, &apiv1.ClearAlarmRequest{AlarmId: A.alarm1, Note: "valve replaced"})); err != nil {
		t.Fatal(err)
	}

	changes := e.auditOf(t, postgres.AuditAdminChange)
	want := []struct{ actor, role, target string }{
		{"user:op-1", "platform_admin", "partner:" + p.Msg.Partner.PartnerId},
		{"user:anna", "customer_admin", "site:" + site.Msg.Site.SiteId},
		{"user:anna", "customer_admin", "tap-point:" + tp.Msg.TapPoint.TapPointId},
		{"user:anna", "customer_admin", "device:" + strings.ToUpper(eui)},
	}
	if len(changes) != len(want) {
		t.Fatalf("admin changes %+v", changes)
	}
	for i, w := range want {
		c := changes[i]
		if c.Actor != w.actor || c.ActorRole != w.role || c.Target != w.target || c.At.IsZero() {
			t.Errorf("change %d: %+v, want %+v", i, c, w)
		}
		if i > 0 && (c.CustomerID == nil || *c.CustomerID != A.customer.ID) {
			t.Errorf("change %d: tenant %v", i, c.CustomerID)
		}
		if strings.Contains(string(c.Details), strings.Repeat("ab", 16)) {
			t.Errorf("a key reached the audit trail: %s", c.Details)
		}
	}
	for _, action := range []string{postgres.AuditAlarmAcknowledge, postgres.AuditAlarmClear} {
		recs := e.auditOf(t, action)
		if len(recs) != 1 || recs[0].Actor != "user:tom" || recs[0].ActorRole != "technician" ||
			recs[0].Target != "device:"+strings.ToUpper(hexEUI(A.dev1)) || *recs[0].CustomerID != A.customer.ID ||
			!strings.Contains(string(recs[0].Details), A.alarm1) {
			t.Errorf("%s entries %+v", action, recs)
		}
	}
	// A platform admin's read of a customer's data is a staff access.
	if _, err := cl.twin.GetTwin(ctx, withToken(platform, &apiv1.GetTwinRequest{DevEui: hexEUI(A.dev1)})); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range e.auditOf(t, postgres.AuditDataAccess) {
		found = found || (r.Actor == "user:op-1" && r.ActorRole == "platform_admin" && strings.Contains(r.Target, "GetTwin"))
	}
	if !found {
		t.Error("the platform admin's GetTwin is not in the audit trail")
	}
	e.verifyAudit(t)
}

// TestVendorClient: an integration client with readings:read on customer
// A reads A's readings and nothing else, and cannot mint broader tokens.
func TestVendorClient(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	A, B := e.w.a, e.w.b
	clients := auth.NewMemoryClientStore()
	id, secret, err := clients.Generate(auth.Claims{Role: auth.RoleIntegration, CustomerIDs: []uuid.UUID{A.customer.ID}, Scopes: []string{auth.ScopeReadingsRead}})
	if err != nil {
		t.Fatal(err)
	}
	var issued []auth.IssuedToken
	iss, err := auth.NewIssuer(auth.IssuerConfig{Issuer: e.url, Key: e.key, Clients: clients, Logger: quiet(),
		OnIssue: func(_ context.Context, tk auth.IssuedToken) error { issued = append(issued, tk); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	tokenReq := func(scope string) (int, string) {
		form := url.Values{"grant_type": {"client_credentials"}}
		if scope != "" {
			form.Set("scope", scope)
		}
		req := httptest.NewRequest(http.MethodPost, auth.TokenPath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		rec := httptest.NewRecorder()
		iss.TokenHandler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	// Broader scopes than granted are refused at the issuer.
	for _, scope := range []string{"alarms:read", "readings:read admin:write", "admin:read", "health:read devices:read"} {
		if status, body := tokenReq(scope); status != http.StatusBadRequest || !strings.Contains(body, "invalid_scope") {
			t.Errorf("scope %q: %d %s", scope, status, body)
		}
	}
	status, body := tokenReq("")
	if status != http.StatusOK {
		t.Fatalf("token: %d %s", status, body)
	}
	tok := body[strings.Index(body, `"access_token":"`)+16:]
	tok = tok[:strings.IndexByte(tok, '"')]
	if len(issued) != 1 || issued[0].Claims.ClientID != id || strings.Join(issued[0].Claims.Scopes, " ") != "readings:read" {
		t.Fatalf("issued %+v", issued)
	}

	cl := e.clients
	period := &apiv1.Period{Start: timestamppb.New(e.now.Add(-2 * time.Hour)), End: timestamppb.New(e.now)}
	r, err := cl.telemetry.ListReadings(ctx, withToken(tok, &apiv1.ListReadingsRequest{DevEui: hexEUI(A.dev1), Period: period}))
	if err != nil || len(r.Msg.Readings) != 3 {
		t.Fatalf("own readings: %v %v", r, err)
	}
	for _, tt := range []struct {
		name string
		do   func() error
		want connect.Code
	}{
		{"customer B's readings", func() error {
			_, err := cl.telemetry.ListReadings(ctx, withToken(tok, &apiv1.ListReadingsRequest{DevEui: hexEUI(B.dev1), Period: period}))
			return err
		}, connect.CodeNotFound},
		{"alarms", func() error {
			_, err := cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{}))
			return err
		}, connect.CodePermissionDenied},
		{"alarm stream", func() error {
			_, err := streamFirst(cl.alarm.StreamAlarms(ctx, withToken(tok, &apiv1.StreamAlarmsRequest{})))
			return err
		}, connect.CodePermissionDenied},
		{"twins", func() error {
			_, err := cl.twin.GetTwin(ctx, withToken(tok, &apiv1.GetTwinRequest{DevEui: hexEUI(A.dev1)}))
			return err
		}, connect.CodePermissionDenied},
		{"admin list", func() error { _, err := cl.admin.ListSites(ctx, withToken(tok, &apiv1.ListSitesRequest{})); return err }, connect.CodePermissionDenied},
		{"admin create", func() error {
			_, err := cl.admin.CreateSite(ctx, withToken(tok, &apiv1.CreateSiteRequest{CustomerId: A.customer.ID.String(), Name: "x", Country: "NL"}))
			return err
		}, connect.CodePermissionDenied},
		{"cluster", func() error {
			_, err := cl.cluster.GetClusterStatus(ctx, withToken(tok, &apiv1.GetClusterStatusRequest{}))
			return err
		}, connect.CodePermissionDenied},
		{"break-glass header", func() error {
			_, err := cl.telemetry.ListReadings(ctx, withGrant(tok, uuid.NewString(), &apiv1.ListReadingsRequest{DevEui: hexEUI(A.dev1), Period: period}))
			return err
		}, connect.CodePermissionDenied},
	} {
		if c := code(tt.do()); c != tt.want {
			t.Errorf("vendor %s: %v, want %v", tt.name, c, tt.want)
		}
	}
}
