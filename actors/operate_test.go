package actors

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// statusFrame builds a status frame fcnt saying the sensor is detached.
func (d *testDevice) statusFrame(tb testing.TB, fcnt uint32, at time.Time, detached bool) *lorawanv1.UplinkFrame {
	tb.Helper()
	port, payload, err := clipr.Encode(clipr.Status{Detached: detached, BatteryMV: 3600, IntervalS: 180, FwMajor: 1})
	if err != nil {
		tb.Fatal(err)
	}
	phy, err := lorawan.BuildDataFrame(d.nwk, d.app, lorawan.DataFrameParams{
		MType: lorawan.MTypeUnconfirmedDataUp, DevAddr: lorawan.DevAddr(d.cand.DevAddr), FCnt: fcnt,
		HasFPort: true, FPort: port, FRMPayload: payload,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &lorawanv1.UplinkFrame{PhyPayload: phy, Rssi: -80, Snr: 7.5, ReceivedAt: timestamppb.New(at), GatewayEui: gw1[:]}
}

func alarmEvents(evs []*twinv1.TwinEvent, to twinv1.AlarmStatus) int {
	n := 0
	for _, ev := range evs {
		if a := ev.GetAlarm(); a != nil && a.GetType() == twinv1.AlarmType_ALARM_TYPE_SENSOR_DETACHED && a.GetToStatus() == to {
			n++
		}
	}
	return n
}

func TestOperateAlarmAck(t *testing.T) {
	d := newTestDevice(1, 0x26011001)
	h := newHarness(t, []*testDevice{d}, nil)
	ctx := context.Background()
	tenant := testCustomer.String()

	// No stored state yet: not found.
	if _, _, err := h.sys.Operate(ctx, tenant, d.eui(), devicetwin.AlarmAck{Type: devicetwin.SensorDetached, By: "op", At: t0}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("operate before any frame: err = %v, want ErrNotFound", err)
	}

	mustApply(t, h, d.uplink(t, 1, t0, gw1), d.statusFrame(t, 2, t0.Add(time.Minute), true))
	st, _ := h.stored(t, d)
	raised := st.Alarm(devicetwin.SensorDetached)
	if raised.Status != devicetwin.ActiveUnack {
		t.Fatalf("after detached status: alarm %v, want ACTIVE_UNACK", raised.Status)
	}

	// Another tenant does not see the twin.
	if _, _, err := h.sys.Operate(ctx, "someone-else", d.eui(), devicetwin.AlarmAck{Type: devicetwin.SensorDetached, By: "op", At: t0}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("operate as another tenant: err = %v, want ErrNotFound", err)
	}

	ack := devicetwin.AlarmAck{Type: devicetwin.SensorDetached, By: "alice", At: t0.Add(2 * time.Minute), Note: "on it"}
	view, evs, err := h.sys.Operate(ctx, tenant, d.eui(), ack, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got *devicetwin.OpenAlarm
	for i := range view.OpenAlarms {
		if view.OpenAlarms[i].Type == devicetwin.SensorDetached {
			got = &view.OpenAlarms[i]
		}
	}
	if got == nil || got.Status != devicetwin.ActiveAck || got.Seq != raised.Seq {
		t.Fatalf("view after ack: %+v, want ACTIVE_ACK seq %d", got, raised.Seq)
	}
	if len(evs) != 1 || evs[0].Kind != devicetwin.KindAlarm || evs[0].Alarm.To != devicetwin.ActiveAck || evs[0].Alarm.By != "alice" {
		t.Fatalf("events after ack: %+v", evs)
	}
	// Published before Operate returned, and persisted.
	if n := alarmEvents(h.sink.snapshot(), twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_ACK); n != 1 {
		t.Fatalf("published ACTIVE_ACK events: %d, want 1", n)
	}
	st, ver := h.stored(t, d)
	if a := st.Alarm(devicetwin.SensorDetached); a.Status != devicetwin.ActiveAck {
		t.Fatalf("stored alarm %v, want ACTIVE_ACK", a.Status)
	}

	// The same ack again changes nothing.
	view2, evs2, err := h.sys.Operate(ctx, tenant, d.eui(), ack, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs2) != 0 {
		t.Fatalf("second ack events: %+v", evs2)
	}
	if a := view2.OpenAlarms; len(a) != len(view.OpenAlarms) {
		t.Fatalf("second ack view: %+v", a)
	}
	if n := alarmEvents(h.sink.snapshot(), twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_ACK); n != 1 {
		t.Fatalf("published ACTIVE_ACK events after second ack: %d, want 1", n)
	}
	if _, ver2 := h.stored(t, d); ver2 != ver {
		t.Fatalf("second ack wrote the twin: version %d → %d", ver, ver2)
	}

	// A check refuses the input before it applies.
	errNo := errors.New("refused")
	if _, _, err := h.sys.Operate(ctx, tenant, d.eui(), devicetwin.AlarmClear{Type: devicetwin.SensorDetached, By: "bob", At: t0.Add(3 * time.Minute)},
		func(*devicetwin.SensorState, *devicetwin.Input) error { return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("refused clear: err = %v", err)
	}

	// A clear closes it.
	_, evs3, err := h.sys.Operate(ctx, tenant, d.eui(), devicetwin.AlarmClear{Type: devicetwin.SensorDetached, By: "alice", At: t0.Add(3 * time.Minute)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs3) != 1 || evs3[0].Alarm.To != devicetwin.ClearedAck {
		t.Fatalf("events after clear: %+v", evs3)
	}
}
