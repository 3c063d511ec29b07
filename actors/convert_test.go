package actors

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/clipr"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

func TestToProtos(t *testing.T) {
	dev := devicetwin.EUI64{0, 4, 0xa3, 0x0b, 0, 0, 0, 7}
	id := func(idx uint16) devicetwin.EventID { return devicetwin.EventID{Dev: dev, Src: 'f', N: 42, Idx: idx} }
	evs := []devicetwin.Event{
		{ID: id(0), At: t0, Kind: devicetwin.KindReading, FCnt: 42, Reading: devicetwin.Reading{Pipe: 6150, Ambient: clipr.NoTemp, Index: 0}},
		{ID: id(1), At: t0.Add(time.Minute), Kind: devicetwin.KindRejection},
		{ID: id(2), At: t0.Add(2 * time.Minute), Kind: devicetwin.KindReading, FCnt: 42, Reading: devicetwin.Reading{Pipe: clipr.NoTemp, Ambient: 2100, Index: 1}},
		{ID: id(3), At: t0, Kind: devicetwin.KindAlarm, FCnt: 42, Alarm: devicetwin.AlarmTransition{Type: devicetwin.HotWaterTooCold,
			Severity: devicetwin.Major, From: devicetwin.StatusNone, To: devicetwin.ActiveUnack, Seq: 2, By: devicetwin.SystemActor,
			Note: "too cold", HasValue: true, Value: 48.5, Threshold: 55, RaisedAt: t0}},
		{ID: id(4), At: t0, Kind: devicetwin.KindWaterEvent, Water: devicetwin.WaterEventOut{Kind: clipr.EventFlush, Assessed: true,
			Compliant: true, Duration: 3 * time.Minute, StartPipe: 3000, ExtremePipe: 6200}},
		{ID: id(5), At: t0, Kind: devicetwin.KindDeviceStatus, Status: devicetwin.DeviceStatus{BatteryMV: 3000, FwMajor: 1, FwMinor: 4,
			NGateways: 1, Gateways: [4]devicetwin.EUI64{gw1}}},
	}
	tn := tenancy{partner: "p", customer: "c", site: "s", tap: "tp"}
	got := toProtos(evs, &tn)
	pipe, amb, v, th := 61.5, 21.0, 48.5, 55.0
	want := []*twinv1.TwinEvent{
		{EventId: id(0).String(), Payload: &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &pipe, SampleIndex: 0}}},
		{EventId: id(2).String(), Payload: &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{AmbientC: &amb, SampleIndex: 1}}},
		{EventId: id(3).String(), Payload: &twinv1.TwinEvent_Alarm{Alarm: &twinv1.AlarmTransition{
			AlarmId: dev.String() + "-HOT_WATER_TOO_COLD-2", Type: twinv1.AlarmType_ALARM_TYPE_HOT_WATER_TOO_COLD,
			Severity: twinv1.Severity_SEVERITY_MAJOR, FromStatus: twinv1.AlarmStatus_ALARM_STATUS_UNSPECIFIED,
			ToStatus: twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK, By: "system", Note: "too cold", Value: &v, Threshold: &th,
			Message: "HOT_WATER_TOO_COLD ACTIVE_UNACK: too cold"}}},
		{EventId: id(4).String(), Payload: &twinv1.TwinEvent_WaterEvent{WaterEvent: &twinv1.WaterEvent{
			Kind: twinv1.WaterEventKind_WATER_EVENT_KIND_FLUSH, DurationS: 180, StartPipeC: ptr(30.0), ExtremePipeC: ptr(62.0), Compliant: true}}},
		{EventId: id(5).String(), Payload: &twinv1.TwinEvent_DeviceStatus{DeviceStatus: &twinv1.DeviceStatus{
			BatteryMv: 3000, Firmware: "1.4", Online: true, GatewayEuis: []string{gw1.String()}}}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d (the rejection left out)", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		w.PartnerId, w.CustomerId, w.SiteId, w.TapPointId, w.DeviceEui = "p", "c", "s", "tp", dev.String()
		w.EventTime, w.FCnt = g.GetEventTime(), evs[idxOf(evs, g.GetEventId())].FCnt
		if a := w.GetAlarm(); a != nil {
			a.RaisedAt = g.GetAlarm().GetRaisedAt()
		}
		if we := w.GetWaterEvent(); we != nil {
			we.StartedAt = g.GetEventTime()
		}
		if !proto.Equal(g, w) {
			t.Errorf("record %d:\n got %v\nwant %v", i, g, w)
		}
		if at := g.GetEventTime().AsTime(); !at.Equal(evs[idxOf(evs, g.GetEventId())].At) {
			t.Errorf("record %d: event time %v", i, at)
		}
	}
	if toProtos(evs[1:2], &tn) != nil {
		t.Error("a rejection alone must yield no record")
	}
}

func idxOf(evs []devicetwin.Event, id string) int {
	for i := range evs {
		if evs[i].ID.String() == id {
			return i
		}
	}
	return -1
}

func ptr[T any](v T) *T { return &v }

func TestSensorConfigFromCandidate(t *testing.T) {
	cold, sustain := 20.0, 600
	c := postgres.Candidate{
		DevEUI: postgres.EUI64{1}, CustomerID: testCustomer, SiteID: testSite, TapPointID: uuid.Nil,
		TapKind: postgres.TapCold, RuleProfile: postgres.ProfileDE, FlushInterval: 72 * time.Hour, ExpectedInterval: 10 * time.Minute,
		Overrides: postgres.Overrides{ColdMaxC: &cold, SustainS: &sustain},
	}
	cfg, err := SensorConfig(&c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TenantID != testCustomer.String() || cfg.SiteID != testSite.String() || cfg.TapPointID != "" ||
		cfg.TapKind != devicetwin.ColdTap || cfg.Profile != devicetwin.ProfileDE || cfg.ExpectedInterval != 10*time.Minute {
		t.Fatalf("config %+v", cfg)
	}
	st := devicetwin.NewSensor(devicetwin.EUI64{1}, cfg)
	if p := st.Profile(); p.ColdMax != 2000 || p.SustainedWindow != 10*time.Minute || p.FlushEvery != 72*time.Hour {
		t.Fatalf("overrides not applied: cold %d sustain %v flush %v", p.ColdMax, p.SustainedWindow, p.FlushEvery)
	}
	c.TapKind = "BATHTUB"
	if _, err := SensorConfig(&c); err == nil {
		t.Fatal("unknown tap kind accepted")
	}
}
