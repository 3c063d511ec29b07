package services_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/auth"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// TestBadInput: invalid ids, filters, enums, periods, notes and page tokens
// are InvalidArgument naming the field; oversized and unknown-field
// requests are refused by the server's limits.
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	A := e.w.a
	tok := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})
	cl := e.clients
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(e.now.Add(d)) }
	site := A.site1.ID.String()
	dev := hexEUI(A.dev1)
	readingsToken := func() string {
		r, err := cl.telemetry.ListReadings(context.Background(), withToken(tok, &apiv1.ListReadingsRequest{DevEui: dev, PageSize: 1,
			Period: &apiv1.Period{Start: ts(-2 * time.Hour), End: ts(0)}}))
		if err != nil || r.Msg.GetNextPageToken() == "" {
			t.Fatalf("readings page: %v", err)
		}
		return r.Msg.GetNextPageToken()
	}()
	cases := []struct {
		name  string
		field string
		code  connect.Code
		do    func(ctx context.Context) error
	}{
		{"dev_eui not hex", "dev_eui", 0, func(ctx context.Context) error {
			_, err := cl.twin.GetTwin(ctx, withToken(tok, &apiv1.GetTwinRequest{DevEui: "xyz"}))
			return err
		}},
		{"dev_eui missing", "dev_eui", 0, func(ctx context.Context) error {
			_, err := cl.twin.GetTwin(ctx, withToken(tok, &apiv1.GetTwinRequest{}))
			return err
		}},
		{"dev_eui zero", "dev_eui", 0, func(ctx context.Context) error {
			_, err := cl.twin.GetTwin(ctx, withToken(tok, &apiv1.GetTwinRequest{DevEui: "0000000000000000"}))
			return err
		}},
		{"site_id not a UUID", "site_id", 0, func(ctx context.Context) error {
			_, err := cl.twin.ListTwins(ctx, withToken(tok, &apiv1.ListTwinsRequest{SiteId: "site-1"}))
			return err
		}},
		{"page_size too large", "page_size", 0, func(ctx context.Context) error {
			_, err := cl.twin.ListTwins(ctx, withToken(tok, &apiv1.ListTwinsRequest{SiteId: site, PageSize: 501}))
			return err
		}},
		{"page_size negative", "page_size", 0, func(ctx context.Context) error {
			_, err := cl.admin.ListSites(ctx, withToken(tok, &apiv1.ListSitesRequest{PageSize: -1}))
			return err
		}},
		{"tap_kind unknown", "tap_kind", 0, func(ctx context.Context) error {
			_, err := cl.twin.ListTwins(ctx, withToken(tok, &apiv1.ListTwinsRequest{SiteId: site, TapKind: 99}))
			return err
		}},
		{"page_token garbage", "page_token", 0, func(ctx context.Context) error {
			_, err := cl.twin.ListTwins(ctx, withToken(tok, &apiv1.ListTwinsRequest{SiteId: site, PageToken: "garbage!"}))
			return err
		}},
		{"page_token of another request", "page_token", 0, func(ctx context.Context) error {
			_, err := cl.telemetry.ListWaterEvents(ctx, withToken(tok, &apiv1.ListWaterEventsRequest{DevEui: dev, PageToken: readingsToken,
				Period: &apiv1.Period{Start: ts(-2 * time.Hour), End: ts(0)}}))
			return err
		}},
		{"both dev_eui and site_id", "dev_eui", 0, func(ctx context.Context) error {
			_, err := cl.telemetry.ListReadings(ctx, withToken(tok, &apiv1.ListReadingsRequest{DevEui: dev, SiteId: site}))
			return err
		}},
		{"neither dev_eui nor site_id", "dev_eui", 0, func(ctx context.Context) error {
			_, err := cl.telemetry.ListReadings(ctx, withToken(tok, &apiv1.ListReadingsRequest{}))
			return err
		}},
		{"period reversed", "period", 0, func(ctx context.Context) error {
			_, err := cl.telemetry.ListReadings(ctx, withToken(tok, &apiv1.ListReadingsRequest{DevEui: dev, Period: &apiv1.Period{Start: ts(0), End: ts(-time.Hour)}}))
			return err
		}},
		{"period too long", "period", 0, func(ctx context.Context) error {
			_, err := cl.telemetry.ListReadings(ctx, withToken(tok, &apiv1.ListReadingsRequest{DevEui: dev, Period: &apiv1.Period{Start: ts(-32 * 24 * time.Hour), End: ts(0)}}))
			return err
		}},
		{"period half open", "period", 0, func(ctx context.Context) error {
			_, err := cl.telemetry.ListWaterEvents(ctx, withToken(tok, &apiv1.ListWaterEventsRequest{DevEui: dev, Period: &apiv1.Period{Start: ts(0)}}))
			return err
		}},
		{"statuses unknown", "statuses", 0, func(ctx context.Context) error {
			_, err := cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{Statuses: []twinv1.AlarmStatus{99}}))
			return err
		}},
		{"types unspecified", "types", 0, func(ctx context.Context) error {
			_, err := cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{Types: []twinv1.AlarmType{0}}))
			return err
		}},
		{"min_severity unknown", "min_severity", 0, func(ctx context.Context) error {
			_, err := cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{MinSeverity: 9}))
			return err
		}},
		{"alarm_id malformed", "alarm_id", 0, func(ctx context.Context) error {
			_, err := cl.alarm.AcknowledgeAlarm(ctx, withToken(tok, &apiv1.AcknowledgeAlarmRequest{AlarmId: "alarm-1"}))
			return err
		}},
		{"alarm_id unknown type", "alarm_id", 0, func(ctx context.Context) error {
			_, err := cl.alarm.AcknowledgeAlarm(ctx, withToken(tok, &apiv1.AcknowledgeAlarmRequest{AlarmId: dev + "-NOPE-1"}))
			return err
		}},
		{"alarm_id bad occurrence", "alarm_id", 0, func(ctx context.Context) error {
			_, err := cl.alarm.AcknowledgeAlarm(ctx, withToken(tok, &apiv1.AcknowledgeAlarmRequest{AlarmId: dev + "-HOTSPOT-x"}))
			return err
		}},
		{"note too long", "note", 0, func(ctx context.Context) error {
			_, err := cl.alarm.AcknowledgeAlarm(ctx, withToken(tok, &apiv1.AcknowledgeAlarmRequest{AlarmId: A.alarm1, Note: strings.Repeat("x", 1001)}))
			return err
		}},
		{"clear without note", "note", 0, func(ctx context.Context) error {
			_, err := cl.alarm.ClearAlarm(ctx, withToken(tok, &apiv1.ClearAlarmRequest{AlarmId: A.alarm1}))
			return err
		}},
		{"stream kinds unknown", "kinds", 0, func(ctx context.Context) error {
			_, err := streamFirst(cl.telemetry.StreamEvents(ctx, withToken(tok, &apiv1.StreamEventsRequest{Kinds: []apiv1.EventKind{42}})))
			return err
		}},
		{"stream resume_token", "resume_token", 0, func(ctx context.Context) error {
			_, err := streamFirst(cl.telemetry.StreamEvents(ctx, withToken(tok, &apiv1.StreamEventsRequest{ResumeToken: "AAAA"})))
			return err
		}},
		{"stream site_id", "site_id", 0, func(ctx context.Context) error {
			_, err := streamFirst(cl.alarm.StreamAlarms(ctx, withToken(tok, &apiv1.StreamAlarmsRequest{SiteId: "x"})))
			return err
		}},
		{"stream min_severity", "min_severity", 0, func(ctx context.Context) error {
			_, err := streamFirst(cl.alarm.StreamAlarms(ctx, withToken(tok, &apiv1.StreamAlarmsRequest{MinSeverity: 7})))
			return err
		}},
		{"site outside the EEA", "country", 0, func(ctx context.Context) error {
			_, err := cl.admin.CreateSite(ctx, withToken(tok, &apiv1.CreateSiteRequest{Name: "Boston", Country: "US"}))
			return err
		}},
		{"site without name", "name", 0, func(ctx context.Context) error {
			_, err := cl.admin.CreateSite(ctx, withToken(tok, &apiv1.CreateSiteRequest{Country: "NL"}))
			return err
		}},
		{"site profile unknown", "profile", 0, func(ctx context.Context) error {
			_, err := cl.admin.CreateSite(ctx, withToken(tok, &apiv1.CreateSiteRequest{Name: "x", Country: "NL", Profile: 9}))
			return err
		}},
		{"tap point kind unspecified", "kind", 0, func(ctx context.Context) error {
			_, err := cl.admin.CreateTapPoint(ctx, withToken(tok, &apiv1.CreateTapPointRequest{SiteId: site, Name: "x"}))
			return err
		}},
		{"device activation", "activation", 0, func(ctx context.Context) error {
			_, err := cl.admin.CreateDevice(ctx, withToken(tok, &apiv1.CreateDeviceRequest{DevEui: "70b3d57e000000ff", TapPointId: A.tap1.ID.String()}))
			return err
		}},
		{"device key", "nwk_s_key", 0, func(ctx context.Context) error {
			_, err := cl.admin.CreateDevice(ctx, withToken(tok, &apiv1.CreateDeviceRequest{DevEui: "70b3d57e000000ff", TapPointId: A.tap1.ID.String(),
				Activation: apiv1.Activation_ACTIVATION_ABP, DevAddr: "26010000", NwkSKey: "zz"}))
			return err
		}},
		{"device dev_addr", "dev_addr", 0, func(ctx context.Context) error {
			_, err := cl.admin.CreateDevice(ctx, withToken(tok, &apiv1.CreateDeviceRequest{DevEui: "70b3d57e000000ff", TapPointId: A.tap1.ID.String(),
				Activation: apiv1.Activation_ACTIVATION_ABP, DevAddr: "123"}))
			return err
		}},
		{"device taken", "dev_eui", connect.CodeAlreadyExists, func(ctx context.Context) error {
			_, err := cl.admin.CreateDevice(ctx, withToken(tok, &apiv1.CreateDeviceRequest{DevEui: dev, TapPointId: A.tap1.ID.String(),
				Activation: apiv1.Activation_ACTIVATION_ABP, DevAddr: "26010000", NwkSKey: strings.Repeat("ab", 16), AppSKey: strings.Repeat("cd", 16)}))
			return err
		}},
		{"gateway_eui missing", "gateway_eui", 0, func(ctx context.Context) error {
			_, err := cl.admin.CreateGateway(ctx, withToken(tok, &apiv1.CreateGatewayRequest{}))
			return err
		}},
		{"customer name too long", "name", 0, func(ctx context.Context) error {
			tp := e.token(t, auth.Claims{Role: auth.RolePartnerAdmin, PartnerID: e.w.p1.ID})
			_, err := cl.admin.CreateCustomer(ctx, withToken(tp, &apiv1.CreateCustomerRequest{Name: strings.Repeat("n", 201)}))
			return err
		}},
		{"import bad row", "csv", 0, func(ctx context.Context) error {
			_, err := cl.admin.ImportDevices(ctx, withToken(tok, &apiv1.ImportDevicesRequest{Csv: []byte("dev_eui,activation\nzz,ABP\n")}))
			var ce *connect.Error
			if ok := asConnect(err, &ce); !ok || len(ce.Details()) != 1 {
				t.Errorf("import rejection without its report: %v", err)
			}
			return err
		}},
		{"unknown field", "unknown field", 0, func(ctx context.Context) error {
			m := &apiv1.GetTwinRequest{DevEui: dev}
			m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
			_, err := cl.twin.GetTwin(ctx, withToken(tok, m))
			return err
		}},
		{"oversized", "", connect.CodeResourceExhausted, func(ctx context.Context) error {
			tp := e.token(t, auth.Claims{Role: auth.RolePlatformAdmin})
			_, err := cl.admin.CreatePartner(ctx, withToken(tp, &apiv1.CreatePartnerRequest{Name: strings.Repeat("p", 5<<20)}))
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := c.do(ctx)
			want := c.code
			if want == 0 {
				want = connect.CodeInvalidArgument
			}
			if connect.CodeOf(err) != want {
				t.Fatalf("got %v (%v), want %v", connect.CodeOf(err), err, want)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("error does not name %q: %v", c.field, err)
			}
		})
	}
}

func asConnect(err error, ce **connect.Error) bool {
	if err == nil {
		return false
	}
	var x *connect.Error
	ok := errorsAs(err, &x)
	*ce = x
	return ok
}

// TestPagingAndFilters walks pages with their tokens and checks filters.
func TestPagingAndFilters(t *testing.T) {
	e := newEnv(t, envOptions{})
	A := e.w.a
	tok := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})
	ctx := context.Background()
	cl := e.clients
	per := &apiv1.Period{Start: timestamppb.New(e.now.Add(-2 * time.Hour)), End: timestamppb.New(e.now)}

	// Readings of the whole customer's site 1 and 2 devices, one per page,
	// in event-time order.
	var got []*twinv1.TwinEvent
	token := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		r, err := cl.telemetry.ListReadings(ctx, withToken(tok, &apiv1.ListReadingsRequest{SiteId: A.site1.ID.String(), Period: per, PageSize: 1, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Msg.GetReadings()...)
		if token = r.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d readings over the pages", len(got))
	}
	for i := 1; i < len(got); i++ {
		if !got[i-1].GetEventTime().AsTime().Before(got[i].GetEventTime().AsTime()) {
			t.Errorf("readings out of order: %v", got)
		}
	}

	// Sites by name, one per page: "alpha annex" then "alpha site".
	var names []string
	token = ""
	for {
		r, err := cl.admin.ListSites(ctx, withToken(tok, &apiv1.ListSitesRequest{PageSize: 1, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.Msg.GetSites() {
			names = append(names, s.GetName())
		}
		if token = r.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	if strings.Join(names, ",") != "alpha annex,alpha site" {
		t.Errorf("sites %v", names)
	}

	// Water events: only compliant ones (device 1's flush is compliant).
	yes := true
	w, err := cl.telemetry.ListWaterEvents(ctx, withToken(tok, &apiv1.ListWaterEventsRequest{SiteId: A.site2.ID.String(), Period: per, Compliant: &yes}))
	if err != nil || len(w.Msg.GetWaterEvents()) != 0 {
		t.Errorf("compliant at site 2: %v %v", w, err)
	}

	// Alarms: by type and status.
	al, err := cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{Types: []twinv1.AlarmType{twinv1.AlarmType_ALARM_TYPE_COLD_WATER_TOO_WARM}}))
	if err != nil || len(al.Msg.GetAlarms()) != 1 || al.Msg.GetAlarms()[0].GetAlarmId() != A.alarm2 {
		t.Errorf("alarms by type: %v %v", al, err)
	}
	al, err = cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{Statuses: []twinv1.AlarmStatus{twinv1.AlarmStatus_ALARM_STATUS_CLEARED_ACK}}))
	if err != nil || len(al.Msg.GetAlarms()) != 0 {
		t.Errorf("alarms by status: %v %v", al, err)
	}
	al, err = cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{PageSize: 1}))
	if err != nil || len(al.Msg.GetAlarms()) != 1 || al.Msg.GetNextPageToken() == "" {
		t.Fatalf("alarms page 1: %v %v", al, err)
	}
	al2, err := cl.alarm.ListAlarms(ctx, withToken(tok, &apiv1.ListAlarmsRequest{PageSize: 1, PageToken: al.Msg.GetNextPageToken()}))
	if err != nil || len(al2.Msg.GetAlarms()) != 1 || al2.Msg.GetAlarms()[0].GetAlarmId() == al.Msg.GetAlarms()[0].GetAlarmId() || al2.Msg.GetNextPageToken() != "" {
		t.Fatalf("alarms page 2: %v %v", al2, err)
	}

	// Twins of site 1 of the hot kind, and only alarming ones.
	tw, err := cl.twin.ListTwins(ctx, withToken(tok, &apiv1.ListTwinsRequest{SiteId: A.site1.ID.String(), TapKind: twinv1.TapKind_TAP_KIND_COLD_TAP}))
	if err != nil || len(tw.Msg.GetTwins()) != 0 {
		t.Errorf("cold twins at site 1: %v %v", tw, err)
	}
	tw, err = cl.twin.ListTwins(ctx, withToken(tok, &apiv1.ListTwinsRequest{SiteId: A.site1.ID.String(), OnlyAlarming: true}))
	if err != nil || len(tw.Msg.GetTwins()) != 1 || len(tw.Msg.GetTwins()[0].GetActiveAlarms()) != 1 {
		t.Errorf("alarming twins: %v %v", tw, err)
	}

	// A device never heard from answers with its registry view.
	created, err := cl.admin.CreateDevice(ctx, withToken(tok, &apiv1.CreateDeviceRequest{DevEui: "70b3d57e0000ffff", TapPointId: A.tap2.ID.String(),
		Activation: apiv1.Activation_ACTIVATION_OTAA, JoinEui: "70b3d57ed0000001", AppKey: strings.Repeat("5a", 16)}))
	if err != nil {
		t.Fatal(err)
	}
	if created.Msg.GetDevice().GetTapPointId() != A.tap2.ID.String() {
		t.Errorf("created %v", created.Msg)
	}
	g, err := cl.twin.GetTwin(ctx, withToken(tok, &apiv1.GetTwinRequest{DevEui: "70B3D57E0000FFFF"}))
	if err != nil || !proto.Equal(g.Msg.GetTwin(), &apiv1.Twin{DevEui: "70b3d57e0000ffff", CustomerId: A.customer.ID.String(), SiteId: A.site2.ID.String(),
		TapPointId: A.tap2.ID.String(), TapKind: twinv1.TapKind_TAP_KIND_COLD_TAP, Profile: twinv1.RuleProfile_RULE_PROFILE_DE}) {
		t.Errorf("new twin: %v %v", g, err)
	}
}

func errorsAs(err error, target **connect.Error) bool { return errors.As(err, target) }
