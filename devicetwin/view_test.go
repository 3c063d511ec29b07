package devicetwin

import (
	"testing"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

func TestSensorView(t *testing.T) {
	dev := EUI64{0, 0, 0, 0, 0, 0, 0, 9}
	s := NewSensor(dev, SensorConfig{TapKind: CirculationReturn})
	v := s.View()
	if v.LastPipe != clipr.NoTemp || len(v.OpenAlarms) != 0 || v.HasFCnt {
		t.Fatalf("fresh twin view = %+v", v)
	}
	at := time.Date(2025, 1, 6, 8, 0, 0, 0, time.UTC)
	gw := EUI64{1, 2, 3, 4, 5, 6, 7, 8}
	for i, pipe := range []float64{44, 44, 44} {
		s.Apply(Uplink{DevEUI: dev, FCnt: uint32(i + 1), FPort: clipr.PortMeasurement,
			Msg: clipr.Measurement{IntervalS: 900, BatteryMV: 2800, Samples: []clipr.Sample{{Pipe: clipr.TempFromCelsius(pipe), Ambient: 2100}}},
			Rx:  Rx{GatewayEUI: gw, RSSI: -90, SNR: 5, ReceivedAt: at.Add(time.Duration(i) * 20 * time.Minute)}}, nil)
	}
	v = s.View()
	if !v.HasFCnt || v.LastFCnt != 3 || v.LastPipe != 4400 || v.LastAmbient != 2100 || v.BatteryMV != 2800 {
		t.Fatalf("view after uplinks = %+v", v)
	}
	if len(v.Gateways) != 1 || v.Gateways[0] != gw || v.BestRSSI != -90 {
		t.Fatalf("rx in view = %+v", v)
	}
	types := map[AlarmType]bool{}
	for _, a := range v.OpenAlarms {
		types[a.Type] = true
	}
	if !types[HotWaterTooCold] || !types[BatteryLow] {
		t.Fatalf("open alarms %+v; want HOT_WATER_TOO_COLD and BATTERY_LOW", v.OpenAlarms)
	}
}
