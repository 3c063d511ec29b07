package loadtest

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

func TestLedgerLossAndLatency(t *testing.T) {
	devs := []lorawan.EUI64{{1}, {2}}
	l := newLedger(devs)
	// Sensor 0: frames 1..3 (FPort 1), handed over out of order, 3 never
	// acknowledged by Kafka. Sensor 1: frame 1 (FPort 3) and a flush
	// report (FPort 2, not required to yield an event).
	l.produced(0, 2, 1, 200)
	l.produced(0, 1, 1, 100)
	l.produced(0, 1, 1, 150) // a second gateway's copy: keeps the first time
	l.produced(0, 3, 1, 300)
	l.produced(1, 1, 3, 100)
	l.produced(1, 2, 2, 100)
	for _, d := range []struct {
		s int32
		f uint32
	}{{0, 1}, {0, 1}, {0, 2}, {1, 1}, {1, 2}} {
		l.delivered(d.s, d.f)
	}
	if got := l.transmissions.Load(); got != 5 {
		t.Fatalf("transmissions %d, want 5", got)
	}
	if got := l.expectedDelivered.Load(); got != 3 {
		t.Fatalf("expected delivered %d, want 3 (FPort 1 and 3, acknowledged)", got)
	}
	o := l.observe(srcKafka, devs[0], 1, 1_000)
	if !o.known || !o.first || o.producedAt != 100 {
		t.Fatalf("first event: %+v", o)
	}
	if o := l.observe(srcKafka, devs[0], 1, 1_100); !o.known || o.first {
		t.Fatalf("second reading of the frame: %+v", o)
	}
	if o := l.observe(srcAPI, devs[0], 1, 1_200); !o.first {
		t.Fatalf("each source sees its own first: %+v", o)
	}
	if o := l.observe(srcKafka, lorawan.EUI64{9}, 1, 1_000); o.known {
		t.Fatal("unknown device")
	}
	if o := l.observe(srcKafka, devs[1], 0, 1_000); o.known {
		t.Fatal("f_cnt 0 is a tick, not a frame")
	}
	l.observe(srcKafka, devs[1], 1, 2_000)
	lost, ex := l.missing(srcKafka, devs, nil, 10)
	if lost != 1 || len(ex) != 1 || ex[0].FCnt != 2 || ex[0].DevEUI != devs[0].String() {
		t.Fatalf("missing %d %+v, want sensor 0 frame 2", lost, ex)
	}
	if n := l.expectedFor(func(i int) bool { return i == 1 }); n != 1 {
		t.Fatalf("expected for sensor 1: %d", n)
	}
	if l.unknownEvents[srcKafka].Load() != 1 || l.tickEvents[srcKafka].Load() != 1 || l.lastSeenExpected[srcKafka].Load() != 2_000 {
		t.Fatalf("counters: unknown %d ticks %d last %d", l.unknownEvents[srcKafka].Load(), l.tickEvents[srcKafka].Load(), l.lastSeenExpected[srcKafka].Load())
	}
}

func TestParseEvent(t *testing.T) {
	v := 41.5
	tests := []struct {
		name string
		ev   *twinv1.TwinEvent
		want eventInfo
	}{
		{"reading", &twinv1.TwinEvent{EventId: "x", DeviceEui: "0102030405060708", FCnt: 77,
			Payload: &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &v, SampleIndex: 3}}}, eventInfo{fcnt: 77, kind: kindReading}},
		{"alarm raised", &twinv1.TwinEvent{FCnt: 9, Payload: &twinv1.TwinEvent_Alarm{Alarm: &twinv1.AlarmTransition{
			AlarmId: "a", Type: twinv1.AlarmType_ALARM_TYPE_HOT_WATER_TOO_COLD, ToStatus: twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK, Value: &v}}},
			eventInfo{fcnt: 9, kind: kindAlarm, alarmType: 1, alarmRaised: true}},
		{"alarm cleared", &twinv1.TwinEvent{FCnt: 10, Payload: &twinv1.TwinEvent_Alarm{Alarm: &twinv1.AlarmTransition{
			Type: twinv1.AlarmType_ALARM_TYPE_SENSOR_OFFLINE, FromStatus: 1, ToStatus: twinv1.AlarmStatus_ALARM_STATUS_CLEARED_UNACK}}},
			eventInfo{fcnt: 10, kind: kindAlarm, alarmType: 7}},
		{"status", &twinv1.TwinEvent{FCnt: 1, Payload: &twinv1.TwinEvent_DeviceStatus{DeviceStatus: &twinv1.DeviceStatus{BatteryMv: 3000}}},
			eventInfo{fcnt: 1, kind: kindStatus}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseEvent(b)
			if err != nil || got != tt.want {
				t.Fatalf("parseEvent = %+v, %v; want %+v", got, err, tt.want)
			}
			if in := infoOf(tt.ev); in != tt.want {
				t.Fatalf("infoOf = %+v, want %+v", in, tt.want)
			}
		})
	}
	if _, err := parseEvent([]byte{0x42, 0xff}); err == nil {
		t.Fatal("truncated input must fail")
	}
	if _, ok := parseEUI([]byte("0102030405060708")); !ok {
		t.Fatal("parseEUI")
	}
	if _, ok := parseEUI([]byte("01020304")); ok {
		t.Fatal("short EUI accepted")
	}
}
