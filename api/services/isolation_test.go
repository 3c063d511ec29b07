package services_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/auth"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// call is one RPC with a given bearer token; streams return their first
// message.
type call func(ctx context.Context, tok string) (proto.Message, error)

// attempt is a call that must fail with code and return no data.
type attempt struct {
	name string
	tok  string
	do   call
	code connect.Code
}

// procCase is the isolation suite's entry for one procedure.
type procCase struct {
	// validTok and valid: a call in the caller's own scope that must
	// succeed; its response must hold no id of foreignIDs and every id of
	// mustContain.
	validTok    string
	valid       call
	mustContain []string
	foreignIDs  []string // default: every id of customers B and C
	check       func(t *testing.T, resp proto.Message)
	// attacks: another tenant's ids (NotFound) and insufficient rights
	// (PermissionDenied, or NotFound where existence must not leak).
	attacks []attempt
	// noTenantIDs marks procedures that take no tenant id; their
	// isolation is the valid response holding no foreign data.
	noTenantIDs bool
}

// streamFirst returns a server stream's first message, or its error.
func streamFirst[T any](s *connect.ServerStreamForClient[T], err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if s.Receive() {
		return any(s.Msg()).(proto.Message), nil
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("stream ended without a message")
}

func unary[T any](resp *connect.Response[T], err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	return any(resp.Msg).(proto.Message), nil
}

// allProcedures lists every procedure of the public API, from the
// generated descriptors: a new RPC without a case fails the suite.
func allProcedures() []string {
	var out []string
	for _, fd := range []protoreflect.FileDescriptor{
		apiv1.File_legiond_api_v1_twin_service_proto, apiv1.File_legiond_api_v1_telemetry_service_proto,
		apiv1.File_legiond_api_v1_alarm_service_proto, apiv1.File_legiond_api_v1_admin_service_proto,
		apiv1.File_legiond_api_v1_cluster_service_proto,
	} {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				out = append(out, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
	}
	return out
}

// TestIsolation is the isolation suite: for every procedure, missing,
// forged, expired and wrong-audience tokens are Unauthenticated; another
// tenant's ids are NotFound; insufficient roles and scopes are
// PermissionDenied (or NotFound where existence must not leak); and a
// valid call returns only the caller's data. Everything goes through the
// real TLS 1.3 server, real tokens, the real registry (row-level security),
// Pebble and Kafka.
func TestIsolation(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.w
	A, B, C := w.a, w.b, w.c
	claims := func(role auth.Role, mod func(*auth.Claims)) string {
		c := auth.Claims{Role: role}
		if mod != nil {
			mod(&c)
		}
		return e.token(t, c)
	}
	onA := func(c *auth.Claims) { c.CustomerIDs = []uuid.UUID{A.customer.ID} }
	integ := func(id string, scopes ...string) string {
		return claims(auth.RoleIntegration, func(c *auth.Claims) { onA(c); c.ClientID = id; c.Scopes = scopes })
	}
	var (
		tPlatform      = claims(auth.RolePlatformAdmin, nil)
		tPartner1      = claims(auth.RolePartnerAdmin, func(c *auth.Claims) { c.PartnerID = w.p1.ID })
		tAdmA          = claims(auth.RoleCustomerAdmin, onA)
		tViewA         = claims(auth.RoleViewer, onA)
		tTechA         = claims(auth.RoleTechnician, func(c *auth.Claims) { onA(c); c.SiteIDs = []uuid.UUID{A.site1.ID} })
		tIntReadings   = integ("int-readings", auth.ScopeReadingsRead)
		tIntAlarmsOnly = integ("int-alarms", auth.ScopeAlarmsRead)
		tIntReadOnly   = integ("int-ro", auth.ScopeReadingsRead, auth.ScopeAlarmsRead, auth.ScopeDevicesRead, auth.ScopeAdminRead)
	)
	cl := e.clients
	period := &apiv1.Period{Start: timestamppb.New(e.now.Add(-2 * time.Hour)), End: timestamppb.New(e.now)}
	id := func(u uuid.UUID) string { return u.String() }
	dev := hexEUI
	newEUI := func() string { return dev(nextEUI(0x71)) }
	key := func() string { return strings.Repeat("0123456789abcdef", 2) }
	csv := func(tap uuid.UUID) []byte {
		e := nextEUI(0x72)
		return fmt.Appendf(nil, "dev_eui,activation,tap_point_id,dev_addr,nwk_s_key,app_s_key\n%s,ABP,%s,2601%02x%02x,%s,%s\n",
			dev(e), tap, e[6], e[7], key(), strings.Repeat("fedcba9876543210", 2))
	}

	// Builders of each procedure's requests, by the ids they name.
	getTwin := func(eui postgres.EUI64) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.twin.GetTwin(ctx, withToken(tok, &apiv1.GetTwinRequest{DevEui: dev(eui)})))
		}
	}
	listTwins := func(site uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.twin.ListTwins(ctx, withToken(tok, &apiv1.ListTwinsRequest{SiteId: id(site)})))
		}
	}
	listReadings := func(eui postgres.EUI64, site uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			req := &apiv1.ListReadingsRequest{Period: period}
			if site != uuid.Nil {
				req.SiteId = id(site)
			} else {
				req.DevEui = dev(eui)
			}
			return unary(cl.telemetry.ListReadings(ctx, withToken(tok, req)))
		}
	}
	listWater := func(eui postgres.EUI64, site uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			req := &apiv1.ListWaterEventsRequest{Period: period}
			if site != uuid.Nil {
				req.SiteId = id(site)
			} else {
				req.DevEui = dev(eui)
			}
			return unary(cl.telemetry.ListWaterEvents(ctx, withToken(tok, req)))
		}
	}
	streamEvents := func(req *apiv1.StreamEventsRequest) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return streamFirst(cl.telemetry.StreamEvents(ctx, withToken(tok, req)))
		}
	}
	listAlarms := func(req *apiv1.ListAlarmsRequest) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.alarm.ListAlarms(ctx, withToken(tok, req)))
		}
	}
	ack := func(alarm string) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.alarm.AcknowledgeAlarm(ctx, withToken(tok, &apiv1.AcknowledgeAlarmRequest{AlarmId: alarm, Note: "on my way"})))
		}
	}
	clearA := func(alarm string) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.alarm.ClearAlarm(ctx, withToken(tok, &apiv1.ClearAlarmRequest{AlarmId: alarm, Note: "valve replaced"})))
		}
	}
	streamAlarms := func(req *apiv1.StreamAlarmsRequest) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return streamFirst(cl.alarm.StreamAlarms(ctx, withToken(tok, req)))
		}
	}
	createCustomer := func(partner uuid.UUID, name string) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.CreateCustomer(ctx, withToken(tok, &apiv1.CreateCustomerRequest{PartnerId: id(partner), Name: name})))
		}
	}
	listCustomers := func(partner string) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.ListCustomers(ctx, withToken(tok, &apiv1.ListCustomersRequest{PartnerId: partner})))
		}
	}
	createSite := func(customer uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.CreateSite(ctx, withToken(tok, &apiv1.CreateSiteRequest{
				CustomerId: id(customer), Name: "site " + uuid.NewString()[:8], Country: "NL", Address: "Dorpsstraat 1"})))
		}
	}
	listSites := func(customer string) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.ListSites(ctx, withToken(tok, &apiv1.ListSitesRequest{CustomerId: customer})))
		}
	}
	createTap := func(site uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.CreateTapPoint(ctx, withToken(tok, &apiv1.CreateTapPointRequest{
				SiteId: id(site), Name: "tap " + uuid.NewString()[:8], Kind: twinv1.TapKind_TAP_KIND_HOT_TAP})))
		}
	}
	listTaps := func(site uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.ListTapPoints(ctx, withToken(tok, &apiv1.ListTapPointsRequest{SiteId: id(site)})))
		}
	}
	createDevice := func(tap uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.CreateDevice(ctx, withToken(tok, &apiv1.CreateDeviceRequest{
				DevEui: newEUI(), TapPointId: id(tap), Activation: apiv1.Activation_ACTIVATION_ABP,
				DevAddr: "26019999", NwkSKey: key(), AppSKey: key()})))
		}
	}
	listDevices := func(site, tap string) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.ListDevices(ctx, withToken(tok, &apiv1.ListDevicesRequest{SiteId: site, TapPointId: tap})))
		}
	}
	importDevices := func(customer uuid.UUID, tap uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.ImportDevices(ctx, withToken(tok, &apiv1.ImportDevicesRequest{CustomerId: id(customer), Csv: csv(tap)})))
		}
	}
	createGateway := func(customer uuid.UUID) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.CreateGateway(ctx, withToken(tok, &apiv1.CreateGatewayRequest{
				GatewayEui: dev(nextEUI(0xbc)), CustomerId: id(customer), Name: "roof"})))
		}
	}
	listGateways := func(customer string) call {
		return func(ctx context.Context, tok string) (proto.Message, error) {
			return unary(cl.admin.ListGateways(ctx, withToken(tok, &apiv1.ListGatewaysRequest{CustomerId: customer})))
		}
	}
	pd, nf := connect.CodePermissionDenied, connect.CodeNotFound
	foreignB := func(name string, do call) attempt { return attempt{name: "B's " + name, tok: tAdmA, do: do, code: nf} }
	foreignC := func(name string, do call) attempt { return attempt{name: "C's " + name, tok: tAdmA, do: do, code: nf} }

	cases := map[string]procCase{
		"/legiond.api.v1.TwinService/GetTwin": {
			validTok: tAdmA, valid: getTwin(A.dev1), mustContain: []string{dev(A.dev1), A.alarm1},
			check: func(t *testing.T, m proto.Message) {
				tw := m.(*apiv1.GetTwinResponse).GetTwin()
				if tw.GetCustomerId() != id(A.customer.ID) || tw.GetTapKind() != twinv1.TapKind_TAP_KIND_HOT_TAP || tw.GetProfile() != twinv1.RuleProfile_RULE_PROFILE_NL {
					t.Errorf("twin %v", tw)
				}
			},
			attacks: []attempt{
				foreignB("device", getTwin(B.dev1)), foreignC("device", getTwin(C.dev2)),
				{"integration without devices:read", tIntReadings, getTwin(A.dev1), pd},
				{"technician, unassigned site", tTechA, getTwin(A.dev2), nf},
			},
		},
		"/legiond.api.v1.TwinService/ListTwins": {
			validTok: tAdmA, valid: listTwins(A.site1.ID), mustContain: []string{dev(A.dev1)},
			attacks: []attempt{
				foreignB("site", listTwins(B.site1.ID)), foreignC("site", listTwins(C.site2.ID)),
				{"integration without devices:read", tIntReadings, listTwins(A.site1.ID), pd},
				{"technician, unassigned site", tTechA, listTwins(A.site2.ID), nf},
			},
		},
		"/legiond.api.v1.TelemetryService/ListReadings": {
			validTok: tAdmA, valid: listReadings(postgres.EUI64{}, A.site1.ID), mustContain: []string{dev(A.dev1) + "-r0"},
			attacks: []attempt{
				foreignB("device", listReadings(B.dev1, uuid.Nil)), foreignB("site", listReadings(postgres.EUI64{}, B.site1.ID)),
				foreignC("site", listReadings(postgres.EUI64{}, C.site1.ID)),
				{"integration without readings:read", tIntAlarmsOnly, listReadings(A.dev1, uuid.Nil), pd},
				{"technician, unassigned site's device", tTechA, listReadings(A.dev2, uuid.Nil), nf},
			},
		},
		"/legiond.api.v1.TelemetryService/ListWaterEvents": {
			validTok: tAdmA, valid: listWater(A.dev1, uuid.Nil), mustContain: []string{dev(A.dev1) + "-w"},
			attacks: []attempt{
				foreignB("device", listWater(B.dev1, uuid.Nil)), foreignC("site", listWater(postgres.EUI64{}, C.site1.ID)),
				{"integration without readings:read", tIntAlarmsOnly, listWater(A.dev1, uuid.Nil), pd},
				{"technician, unassigned site", tTechA, listWater(postgres.EUI64{}, A.site2.ID), nf},
			},
		},
		"/legiond.api.v1.TelemetryService/StreamEvents": {
			validTok: tAdmA, valid: streamEvents(&apiv1.StreamEventsRequest{SiteId: id(A.site1.ID)}),
			check: func(t *testing.T, m proto.Message) {
				if m.(*apiv1.StreamEventsResponse).GetHeartbeat() == nil || m.(*apiv1.StreamEventsResponse).GetResumeToken() == "" {
					t.Errorf("first message %v", m)
				}
			},
			attacks: []attempt{
				foreignB("site", streamEvents(&apiv1.StreamEventsRequest{SiteId: id(B.site1.ID)})),
				foreignC("device", streamEvents(&apiv1.StreamEventsRequest{DevEui: dev(C.dev1)})),
				{"integration without readings:read", tIntAlarmsOnly, streamEvents(&apiv1.StreamEventsRequest{Kinds: []apiv1.EventKind{apiv1.EventKind_EVENT_KIND_READING}}), pd},
				{"technician, unassigned site", tTechA, streamEvents(&apiv1.StreamEventsRequest{SiteId: id(A.site2.ID)}), nf},
			},
		},
		"/legiond.api.v1.AlarmService/ListAlarms": {
			validTok: tAdmA, valid: listAlarms(&apiv1.ListAlarmsRequest{Period: period}), mustContain: []string{A.alarm1, A.alarm2},
			attacks: []attempt{
				foreignB("site", listAlarms(&apiv1.ListAlarmsRequest{SiteId: id(B.site1.ID)})),
				foreignC("device", listAlarms(&apiv1.ListAlarmsRequest{DevEui: dev(C.dev1)})),
				{"integration without alarms:read", tIntReadings, listAlarms(&apiv1.ListAlarmsRequest{}), pd},
				{"technician, unassigned site", tTechA, listAlarms(&apiv1.ListAlarmsRequest{SiteId: id(A.site2.ID)}), nf},
			},
		},
		"/legiond.api.v1.AlarmService/AcknowledgeAlarm": {
			validTok: tAdmA, valid: ack(A.alarm1), mustContain: []string{A.alarm1, "ALARM_STATUS_ACTIVE_ACK"},
			attacks: []attempt{
				foreignB("alarm", ack(B.alarm1)), foreignC("alarm", ack(C.alarm2)),
				{"viewer", tViewA, ack(A.alarm1), pd},
				{"integration without alarms:write", tIntReadOnly, ack(A.alarm1), pd},
				{"technician, unassigned site", tTechA, ack(A.alarm2), nf},
			},
		},
		"/legiond.api.v1.AlarmService/ClearAlarm": {
			validTok: tAdmA, valid: clearA(A.alarm2), mustContain: []string{A.alarm2, "valve replaced"},
			attacks: []attempt{
				foreignB("alarm", clearA(B.alarm2)), foreignC("alarm", clearA(C.alarm1)),
				{"viewer", tViewA, clearA(A.alarm2), pd},
				{"integration without alarms:write", tIntReadOnly, clearA(A.alarm2), pd},
				{"technician, unassigned site", tTechA, clearA(A.alarm2), nf},
			},
		},
		"/legiond.api.v1.AlarmService/StreamAlarms": {
			validTok: tAdmA, valid: streamAlarms(&apiv1.StreamAlarmsRequest{SiteId: id(A.site1.ID)}),
			attacks: []attempt{
				foreignB("site", streamAlarms(&apiv1.StreamAlarmsRequest{SiteId: id(B.site1.ID)})),
				foreignC("site", streamAlarms(&apiv1.StreamAlarmsRequest{SiteId: id(C.site1.ID)})),
				{"integration without alarms:read", tIntReadings, streamAlarms(&apiv1.StreamAlarmsRequest{}), pd},
				{"technician, unassigned site", tTechA, streamAlarms(&apiv1.StreamAlarmsRequest{SiteId: id(A.site2.ID)}), nf},
			},
		},
		"/legiond.api.v1.AdminService/CreatePartner": {
			noTenantIDs: true, validTok: tPlatform,
			valid: func(ctx context.Context, tok string) (proto.Message, error) {
				return unary(cl.admin.CreatePartner(ctx, withToken(tok, &apiv1.CreatePartnerRequest{Name: "partner three"})))
			},
			mustContain: []string{"partner three"},
			attacks: []attempt{
				{"partner admin", tPartner1, func(ctx context.Context, tok string) (proto.Message, error) {
					return unary(cl.admin.CreatePartner(ctx, withToken(tok, &apiv1.CreatePartnerRequest{Name: "rogue"})))
				}, pd},
				{"customer admin", tAdmA, func(ctx context.Context, tok string) (proto.Message, error) {
					return unary(cl.admin.CreatePartner(ctx, withToken(tok, &apiv1.CreatePartnerRequest{Name: "rogue"})))
				}, pd},
			},
		},
		"/legiond.api.v1.AdminService/ListPartners": {
			noTenantIDs: true, validTok: tPartner1,
			valid: func(ctx context.Context, tok string) (proto.Message, error) {
				return unary(cl.admin.ListPartners(ctx, withToken(tok, &apiv1.ListPartnersRequest{})))
			},
			mustContain: []string{id(w.p1.ID)}, foreignIDs: []string{id(w.p2.ID), "partner two"},
			attacks: []attempt{
				{"viewer", tViewA, func(ctx context.Context, tok string) (proto.Message, error) {
					return unary(cl.admin.ListPartners(ctx, withToken(tok, &apiv1.ListPartnersRequest{})))
				}, pd},
			},
		},
		"/legiond.api.v1.AdminService/CreateCustomer": {
			validTok: tPartner1, valid: createCustomer(w.p1.ID, "delta"), mustContain: []string{id(w.p1.ID), "delta"},
			attacks: []attempt{
				{"another partner's id", tPartner1, createCustomer(w.p2.ID, "rogue"), nf},
				{"customer admin", tAdmA, createCustomer(w.p1.ID, "rogue"), pd},
				{"viewer", tViewA, createCustomer(w.p1.ID, "rogue"), pd},
			},
		},
		"/legiond.api.v1.AdminService/ListCustomers": {
			validTok: tAdmA, valid: listCustomers(""), mustContain: []string{id(A.customer.ID)},
			attacks: []attempt{
				{"another partner's id", tAdmA, listCustomers(id(w.p2.ID)), nf},
				{"partner admin, another partner's id", tPartner1, listCustomers(id(w.p2.ID)), nf},
				{"integration without admin:read or devices:read", tIntAlarmsOnly, listCustomers(""), pd},
			},
		},
		"/legiond.api.v1.AdminService/CreateSite": {
			validTok: tAdmA, valid: createSite(A.customer.ID), mustContain: []string{id(A.customer.ID)},
			attacks: []attempt{
				foreignB("customer", createSite(B.customer.ID)), foreignC("customer", createSite(C.customer.ID)),
				{"viewer", tViewA, createSite(A.customer.ID), pd},
				{"technician", tTechA, createSite(A.customer.ID), pd},
			},
		},
		"/legiond.api.v1.AdminService/ListSites": {
			validTok: tAdmA, valid: listSites(""), mustContain: []string{id(A.site1.ID), id(A.site2.ID)},
			attacks: []attempt{
				foreignB("customer", listSites(id(B.customer.ID))), foreignC("customer", listSites(id(C.customer.ID))),
				{"integration without admin:read or devices:read", tIntAlarmsOnly, listSites(""), pd},
			},
		},
		"/legiond.api.v1.AdminService/CreateTapPoint": {
			validTok: tAdmA, valid: createTap(A.site1.ID), mustContain: []string{id(A.site1.ID)},
			attacks: []attempt{
				foreignB("site", createTap(B.site1.ID)), foreignC("site", createTap(C.site2.ID)),
				{"viewer", tViewA, createTap(A.site1.ID), pd},
				{"technician", tTechA, createTap(A.site1.ID), pd},
			},
		},
		"/legiond.api.v1.AdminService/ListTapPoints": {
			validTok: tAdmA, valid: listTaps(A.site1.ID), mustContain: []string{id(A.tap1.ID)},
			attacks: []attempt{
				foreignB("site", listTaps(B.site1.ID)), foreignC("site", listTaps(C.site1.ID)),
				{"integration without admin:read or devices:read", tIntAlarmsOnly, listTaps(A.site1.ID), pd},
				{"technician, unassigned site", tTechA, listTaps(A.site2.ID), nf},
			},
		},
		"/legiond.api.v1.AdminService/CreateDevice": {
			validTok: tAdmA, valid: createDevice(A.tap1.ID), mustContain: []string{id(A.tap1.ID)},
			attacks: []attempt{
				foreignB("tap point", createDevice(B.tap1.ID)), foreignC("tap point", createDevice(C.tap2.ID)),
				{"viewer", tViewA, createDevice(A.tap1.ID), pd},
				{"technician, unassigned site", tTechA, createDevice(A.tap2.ID), nf},
			},
		},
		"/legiond.api.v1.AdminService/ListDevices": {
			validTok: tAdmA, valid: listDevices("", ""), mustContain: []string{dev(A.dev1), dev(A.dev2)},
			attacks: []attempt{
				foreignB("site", listDevices(id(B.site1.ID), "")), foreignB("tap point", listDevices("", id(B.tap1.ID))),
				foreignC("site", listDevices(id(C.site2.ID), "")),
				{"integration without admin:read or devices:read", tIntAlarmsOnly, listDevices("", ""), pd},
				{"technician, unassigned site", tTechA, listDevices(id(A.site2.ID), ""), nf},
			},
		},
		"/legiond.api.v1.AdminService/ImportDevices": {
			validTok: tAdmA, valid: importDevices(A.customer.ID, A.tap1.ID),
			check: func(t *testing.T, m proto.Message) {
				if r := m.(*apiv1.ImportDevicesResponse); r.GetImported() != 1 || len(r.GetErrors()) != 0 {
					t.Errorf("import: %v", r)
				}
			},
			attacks: []attempt{
				foreignB("customer", importDevices(B.customer.ID, B.tap1.ID)),
				foreignC("customer", importDevices(C.customer.ID, C.tap1.ID)),
				// A's customer, but the row names B's tap point: the row is
				// refused as an unknown reference, nothing is written.
				{"B's tap point in A's file", tAdmA, importDevices(A.customer.ID, B.tap1.ID), connect.CodeInvalidArgument},
				{"viewer", tViewA, importDevices(A.customer.ID, A.tap1.ID), pd},
				{"technician", tTechA, importDevices(A.customer.ID, A.tap1.ID), pd},
			},
		},
		"/legiond.api.v1.AdminService/CreateGateway": {
			validTok: tAdmA, valid: createGateway(A.customer.ID), mustContain: []string{id(A.customer.ID)},
			attacks: []attempt{
				foreignB("customer", createGateway(B.customer.ID)), foreignC("customer", createGateway(C.customer.ID)),
				{"viewer", tViewA, createGateway(A.customer.ID), pd},
			},
		},
		"/legiond.api.v1.AdminService/ListGateways": {
			validTok: tAdmA, valid: listGateways(""), mustContain: []string{dev(A.gateway)},
			attacks: []attempt{
				foreignB("customer", listGateways(id(B.customer.ID))), foreignC("customer", listGateways(id(C.customer.ID))),
				{"integration without admin:read or devices:read", tIntAlarmsOnly, listGateways(""), pd},
			},
		},
		"/legiond.api.v1.ClusterService/GetClusterStatus": {
			noTenantIDs: true, validTok: tPlatform,
			valid: func(ctx context.Context, tok string) (proto.Message, error) {
				return unary(cl.cluster.GetClusterStatus(ctx, withToken(tok, &apiv1.GetClusterStatusRequest{})))
			},
			mustContain: []string{"node-1"},
			attacks: []attempt{
				{"customer admin", tAdmA, func(ctx context.Context, tok string) (proto.Message, error) {
					return unary(cl.cluster.GetClusterStatus(ctx, withToken(tok, &apiv1.GetClusterStatusRequest{})))
				}, pd},
				{"partner admin", tPartner1, func(ctx context.Context, tok string) (proto.Message, error) {
					return unary(cl.cluster.GetClusterStatus(ctx, withToken(tok, &apiv1.GetClusterStatusRequest{})))
				}, pd},
			},
		},
	}

	foreign := slices.Concat(B.ids(), C.ids())
	procs := allProcedures()
	if len(procs) < 23 {
		t.Fatalf("only %d procedures found", len(procs))
	}
	for name := range cases {
		if !slices.Contains(procs, name) {
			t.Errorf("case for unknown procedure %s", name)
		}
	}
	var matrix []string
	for _, proc := range procs {
		c, ok := cases[proc]
		if !ok {
			t.Errorf("procedure %s has no isolation case: add one", proc)
			continue
		}
		if !c.noTenantIDs && !slices.ContainsFunc(c.attacks, func(a attempt) bool { return a.code == nf }) {
			t.Errorf("procedure %s takes tenant ids but has no other-tenant (NotFound) case", proc)
		}
		if !slices.ContainsFunc(c.attacks, func(a attempt) bool { return a.code == pd }) {
			t.Errorf("procedure %s has no insufficient-rights (PermissionDenied) case", proc)
		}
		t.Run(strings.TrimPrefix(proc, "/legiond.api.v1."), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			forbidden := foreign
			if c.foreignIDs != nil {
				forbidden = c.foreignIDs
			}
			// (1)-(4): unauthenticated, with the valid request.
			for kind, tok := range e.bad {
				resp, err := c.valid(ctx, tok)
				expectRefused(t, kind, resp, err, connect.CodeUnauthenticated, foreign)
			}
			// (5)-(6): other tenants' ids, insufficient rights.
			for _, a := range c.attacks {
				resp, err := a.do(ctx, a.tok)
				expectRefused(t, a.name, resp, err, a.code, foreign)
			}
			// (7): the valid call returns the caller's data only.
			resp, err := c.valid(ctx, c.validTok)
			if err != nil {
				t.Fatalf("valid call: %v", err)
			}
			js := protojson.Format(resp)
			for _, f := range forbidden {
				if strings.Contains(js, f) {
					t.Errorf("response holds foreign %q:\n%s", f, js)
				}
			}
			for _, m := range c.mustContain {
				if !strings.Contains(js, m) {
					t.Errorf("response lacks %q:\n%s", m, js)
				}
			}
			if c.check != nil {
				c.check(t, resp)
			}
		})
		matrix = append(matrix, fmt.Sprintf("%-48s unauth×%d  attacks×%d  valid", proc, len(e.bad), len(c.attacks)))
	}
	t.Logf("isolation matrix (%d procedures):\n%s", len(matrix), strings.Join(matrix, "\n"))

	// No command reached another tenant's twins, and nothing was written
	// into another tenant's registry rows.
	for cust := range e.alarms.customersCalled() {
		if cust != id(A.customer.ID) {
			t.Errorf("alarm command reached customer %s", cust)
		}
	}
	ctx := context.Background()
	for _, f := range []*tenantFix{B, C} {
		err := e.store.InTx(ctx, postgres.CustomerScope(f.customer.ID, "check"), func(tx *postgres.Tx) error {
			sites, err := tx.Sites().List(ctx, postgres.ListOptions{})
			if err != nil {
				return err
			}
			devs, err := tx.Devices().List(ctx, postgres.ListOptions{})
			if err != nil {
				return err
			}
			taps, err := tx.TapPoints().List(ctx, postgres.ListOptions{})
			if err != nil {
				return err
			}
			gws, err := tx.Gateways().List(ctx, postgres.ListOptions{})
			if len(sites) != 2 || len(devs) != 2 || len(taps) != 2 || len(gws) != 1 {
				t.Errorf("customer %s changed: %d sites, %d devices, %d taps, %d gateways", f.name, len(sites), len(devs), len(taps), len(gws))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// expectRefused asserts a refusal with code, no response, and an error
// text that names nothing of another tenant.
func expectRefused(t *testing.T, name string, resp proto.Message, err error, code connect.Code, foreign []string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want %v: %v", name, code, resp)
		return
	}
	if got := connect.CodeOf(err); got != code {
		t.Errorf("%s: %v (%v), want %v", name, got, err, code)
	}
	if resp != nil {
		t.Errorf("%s: data with the error: %v", name, resp)
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		for _, d := range ce.Details() {
			v, derr := d.Value()
			if derr == nil && v != nil {
				js := protojson.Format(v)
				for _, f := range foreign {
					if strings.Contains(js, f) {
						t.Errorf("%s: error detail holds foreign %q", name, f)
					}
				}
			}
		}
	}
	for _, f := range foreign {
		// Echoing the id the caller sent is fine; names are data.
		if !isIDLike(f) && strings.Contains(err.Error(), f) {
			t.Errorf("%s: error text holds foreign %q: %v", name, f, err)
		}
	}
}

func isIDLike(s string) bool {
	if _, err := uuid.Parse(s); err == nil {
		return true
	}
	return len(s) == 16 && strings.Trim(s, "0123456789abcdef") == ""
}
