package devicetwin

import (
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// SensorView is what the portal shows of a sensor twin: a read-only copy of
// the state other layers need, so they never reach into SensorState.
type SensorView struct {
	DevEUI     EUI64
	Config     SensorConfig
	LastUplink time.Time
	LastFCnt   uint32
	HasFCnt    bool

	// Newest sample that went through the rules.
	LastSampleAt          time.Time
	LastPipe, LastAmbient clipr.Temp

	// Device health as last reported.
	BatteryMV            uint16
	Detached, ProbeFault bool
	FwMajor, FwMinor     uint8
	IntervalS            uint16
	// Receive metadata of the newest frame.
	BestRSSI int16
	BestSNR  float32
	Gateways []EUI64

	// End of the newest compliant flush and disinfection (zero: never).
	LastCompliantFlush        time.Time
	LastCompliantDisinfection time.Time

	// Alarms that are not closed (every status but CLEARED_ACK), by type.
	OpenAlarms []OpenAlarm
}

// OpenAlarm is an alarm occurrence that still needs attention.
type OpenAlarm struct {
	Type AlarmType
	Alarm
}

// View returns the read-only view of the twin.
func (s *SensorState) View() SensorView {
	v := SensorView{
		DevEUI: s.dev, Config: s.cfg, LastUplink: s.lastUplink.time(), LastFCnt: s.lastFCnt, HasFCnt: s.hasFCnt,
		LastSampleAt: s.lastSampleAt.time(), LastPipe: s.lastPipe, LastAmbient: s.lastAmbient,
		BatteryMV: s.batteryMV, Detached: s.detached, ProbeFault: s.probeErr,
		FwMajor: s.fwMajor, FwMinor: s.fwMinor, IntervalS: s.devIntervalS,
		BestRSSI: s.rx.rssi, BestSNR: s.rx.snr,
		LastCompliantFlush: s.lastFlush.time(), LastCompliantDisinfection: s.lastDisinfection.time(),
	}
	if s.lastSampleAt == 0 {
		v.LastPipe, v.LastAmbient = clipr.NoTemp, clipr.NoTemp
	}
	for i := range s.rx.nGateways {
		v.Gateways = append(v.Gateways, s.rx.gateways[i])
	}
	for t := HotWaterTooCold; t < numAlarmTypes; t++ {
		if a := s.alarms[t]; a.Status != StatusNone && a.Status != ClearedAck {
			v.OpenAlarms = append(v.OpenAlarms, OpenAlarm{Type: t, Alarm: a})
		}
	}
	return v
}
