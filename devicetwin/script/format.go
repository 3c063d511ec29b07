package script

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

type head struct {
	At      string  `json:"at"`
	Type    string  `json:"type"`
	ID      string  `json:"id"`
	Device  string  `json:"device"`
	FCnt    *uint32 `json:"fCnt,omitempty"`
	Gateway string  `json:"gateway,omitempty"`
}

type readingOut struct {
	head
	PipeC    clipr.Temp `json:"pipeC"`
	AmbientC clipr.Temp `json:"ambientC"`
	Index    uint8      `json:"index"`
}

type waterOut struct {
	head
	Event        string     `json:"event"`
	Inferred     bool       `json:"inferred"`
	Compliant    bool       `json:"compliant"`
	Assessed     bool       `json:"assessed"`
	Reason       string     `json:"reason,omitempty"`
	DurationS    float64    `json:"durationS"`
	StartPipeC   clipr.Temp `json:"startPipeC"`
	ExtremePipeC clipr.Temp `json:"extremePipeC"`
}

type alarmOut struct {
	head
	AlarmType string   `json:"alarmType"`
	AlarmID   string   `json:"alarmId"`
	Severity  string   `json:"severity"`
	Status    string   `json:"status"`
	From      string   `json:"from"`
	By        string   `json:"by"`
	Note      string   `json:"note,omitempty"`
	Value     *float64 `json:"value,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	Unit      string   `json:"unit,omitempty"`
	RaisedAt  string   `json:"raisedAt,omitempty"`
}

type statusOut struct {
	head
	BatteryMv    uint16   `json:"batteryMv"`
	Detached     bool     `json:"detached"`
	ProbeFault   bool     `json:"probeFault"`
	Rebooted     bool     `json:"rebooted"`
	Firmware     string   `json:"firmware"`
	IntervalS    uint16   `json:"intervalS"`
	CounterReset bool     `json:"counterReset"`
	BestRSSI     int16    `json:"bestRssi"`
	BestSNR      float32  `json:"bestSnr"`
	Gateways     []string `json:"gateways"`
}

type gatewayOut struct {
	head
	Online     bool    `json:"online"`
	RxReceived uint32  `json:"rxReceived"`
	RxOK       uint32  `json:"rxOk"`
	TxReceived uint32  `json:"txReceived"`
	TxEmitted  uint32  `json:"txEmitted"`
	Uplinks    uint32  `json:"uplinks"`
	MinRSSI    int16   `json:"minRssi"`
	MaxRSSI    int16   `json:"maxRssi"`
	MeanRSSI   float64 `json:"meanRssi"`
	MeanSNR    float64 `json:"meanSnr"`
	LastSeen   string  `json:"lastSeen,omitempty"`
}

type rejectedOut struct {
	head
	Reason  string `json:"reason"`
	Detail  string `json:"detail,omitempty"`
	Counted bool   `json:"counted"`
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func round2(v float64) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 2, 64), 64)
	return f
}

// FormatEvent renders an event of the twin dev as one JSON object (no
// newline). Gateway events carry "gateway".
func FormatEvent(ev *devicetwin.Event) ([]byte, error) {
	h := head{At: stamp(ev.At), Type: ev.Kind.String(), ID: ev.ID.String(), Device: ev.ID.Dev.String()}
	if ev.FromFrame() {
		f := ev.FCnt
		h.FCnt = &f
	}
	switch ev.Kind {
	case devicetwin.KindReading:
		r := ev.Reading
		return json.Marshal(readingOut{h, r.Pipe, r.Ambient, r.Index})
	case devicetwin.KindWaterEvent:
		w := ev.Water
		return json.Marshal(waterOut{h, w.Kind.String(), w.Inferred, w.Compliant, w.Assessed, w.Reason, w.Duration.Seconds(), w.StartPipe, w.ExtremePipe})
	case devicetwin.KindAlarm:
		a := ev.Alarm
		if a.Type == devicetwin.GatewayOffline {
			h.Gateway = h.Device
		}
		o := alarmOut{head: h, AlarmType: a.Type.String(), AlarmID: a.AlarmID(ev.ID.Dev), Severity: a.Severity.String(),
			Status: a.To.String(), From: a.From.String(), By: a.By, Note: a.Note, RaisedAt: stamp(a.RaisedAt)}
		if a.HasValue {
			v, t := round2(a.Value), round2(a.Threshold)
			o.Value, o.Threshold, o.Unit = &v, &t, a.Unit
		}
		return json.Marshal(o)
	case devicetwin.KindDeviceStatus:
		s := ev.Status
		gws := make([]string, 0, s.NGateways)
		for _, g := range s.Gateways[:s.NGateways] {
			gws = append(gws, g.String())
		}
		return json.Marshal(statusOut{h, s.BatteryMV, s.Detached, s.ProbeFault, s.Rebooted,
			strconv.Itoa(int(s.FwMajor)) + "." + strconv.Itoa(int(s.FwMinor)), s.IntervalS, s.CounterReset, s.BestRSSI, s.BestSNR, gws})
	case devicetwin.KindGatewayStatus:
		g := ev.Gateway
		h.Gateway = h.Device
		return json.Marshal(gatewayOut{h, g.Online, g.RxReceived, g.RxOK, g.TxReceived, g.TxEmitted, g.Uplinks,
			g.MinRSSI, g.MaxRSSI, round2(g.MeanRSSI), round2(g.MeanSNR), stamp(g.LastSeen)})
	case devicetwin.KindRejection:
		r := ev.Rejection
		return json.Marshal(rejectedOut{h, r.Reason.String(), r.Detail, r.Counted})
	}
	return json.Marshal(h)
}
