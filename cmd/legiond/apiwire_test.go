package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/api/services"
	"github.com/legionelladossier/legiond/devicetwin"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

func TestAlarmCommanderWithoutSystem(t *testing.T) {
	ref := services.AlarmRef{AlarmID: "x", CustomerID: "c", DevEUI: "0004a30b00000001", Type: twinv1.AlarmType(devicetwin.SensorDetached), Occurrence: 1}
	if _, err := (alarmCommander{}).Acknowledge(context.Background(), ref, "op", ""); !errors.Is(err, services.ErrUnavailable) {
		t.Fatalf("ack without a system: %v, want ErrUnavailable", err)
	}
}

func TestAlarmProtoFromTransition(t *testing.T) {
	eui := devicetwin.EUI64{0, 4, 0xa3, 0x0b, 0, 0, 0, 1}
	raised := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	at := raised.Add(time.Hour)
	ref := services.AlarmRef{CustomerID: "cust", DevEUI: eui.String(), Type: twinv1.AlarmType(devicetwin.SensorDetached), Occurrence: 3}
	evs := []devicetwin.Event{{Kind: devicetwin.KindAlarm, At: at, Alarm: devicetwin.AlarmTransition{
		Type: devicetwin.SensorDetached, Severity: devicetwin.Warning, From: devicetwin.ActiveUnack, To: devicetwin.ActiveAck,
		Seq: 3, By: "alice", Note: "on it", RaisedAt: raised,
	}}}
	a := alarmProto(devicetwin.SensorView{DevEUI: eui}, ref, evs)
	want := eui.String() + "-" + devicetwin.SensorDetached.String() + "-3"
	if a.GetAlarmId() != want || a.GetStatus() != twinv1.AlarmStatus(devicetwin.ActiveAck) || a.GetAcknowledgedBy() != "alice" ||
		a.GetNote() != "on it" || !a.GetRaisedAt().AsTime().Equal(raised) || !a.GetUpdatedAt().AsTime().Equal(at) || a.GetCustomerId() != "cust" {
		t.Fatalf("alarm: %v", a)
	}
}
