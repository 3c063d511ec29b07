package actors

import (
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/clipr"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// SensorConfig builds the twin configuration of a registered device: its
// tenancy and placement, tap kind, rule profile, overrides (site with the
// tap point's on top, as the registry merged them), flush interval and
// expected uplink interval. It is what a twin starts from when it has no
// stored state.
func SensorConfig(c *postgres.Candidate) (devicetwin.SensorConfig, error) {
	cfg := devicetwin.SensorConfig{
		Revision:         1,
		TenantID:         idString(c.CustomerID),
		SiteID:           idString(c.SiteID),
		TapPointID:       idString(c.TapPointID),
		ExpectedInterval: c.ExpectedInterval,
	}
	if c.TapKind != "" {
		k, err := devicetwin.ParseTapKind(string(c.TapKind))
		if err != nil {
			return cfg, fmt.Errorf("device %s: %w", c.DevEUI, err)
		}
		cfg.TapKind = k
	}
	if c.RuleProfile != "" {
		p, err := devicetwin.ParseProfile(string(c.RuleProfile))
		if err != nil {
			return cfg, fmt.Errorf("device %s: %w", c.DevEUI, err)
		}
		cfg.Profile = p
	}
	o := &c.Overrides
	t := &cfg.Tap
	t.HeaterOutletMin = tempOpt(o.HeaterOutletMinC)
	t.CirculationReturnMin = tempOpt(o.CirculationReturnMinC)
	t.HotFlushMin = tempOpt(o.HotFlushMinC)
	t.HotFlushWithin = secondsOpt(o.HotFlushWithinS)
	t.ColdMax = tempOpt(o.ColdMaxC)
	t.FlushMinDuration = secondsOpt(o.FlushMinDurationS)
	t.SustainedWindow = secondsOpt(o.SustainS)
	t.Hysteresis = tempOpt(o.HysteresisK)
	t.HotspotDelta = tempOpt(o.HotspotDeltaK)
	if c.FlushInterval > 0 {
		t.FlushEvery = devicetwin.Some(c.FlushInterval)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("device %s: %w", c.DevEUI, err)
	}
	return cfg, nil
}

func tempOpt(v *float64) devicetwin.Opt[clipr.Temp] {
	if v == nil {
		return devicetwin.Opt[clipr.Temp]{}
	}
	return devicetwin.Some(clipr.TempFromCelsius(*v))
}

func secondsOpt(v *int) devicetwin.Opt[time.Duration] {
	if v == nil {
		return devicetwin.Opt[time.Duration]{}
	}
	return devicetwin.Some(time.Duration(*v) * time.Second)
}

// idString renders a registry id; the nil UUID is "".
func idString(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

// tenancy is what a twin stamps on its events.
type tenancy struct {
	partner, customer, site, tap string
}

// toProtos converts the core events of one input into twin.events
// records. Rejections are not events on twin.events (they go to the
// dead-letter topic) and are left out. The records of one input share a
// few slab allocations instead of eight small ones per event: this is the
// hottest allocation site of the pipeline.
func toProtos(evs []devicetwin.Event, tn *tenancy) []*twinv1.TwinEvent {
	n, readings := 0, 0
	for i := range evs {
		switch evs[i].Kind {
		case devicetwin.KindRejection:
		case devicetwin.KindReading:
			n++
			readings++
		default:
			n++
		}
	}
	if n == 0 {
		return nil
	}
	var (
		out   = make([]*twinv1.TwinEvent, 0, n)
		recs  = make([]twinv1.TwinEvent, n)
		times = make([]timestamppb.Timestamp, n)
		rds   = make([]twinv1.Reading, readings)
		wraps = make([]twinv1.TwinEvent_Reading, readings)
		temps = make([]float64, 2*readings)
		dev   string
		k     int // next reading slot
	)
	for i := range evs {
		ev := &evs[i]
		if ev.Kind == devicetwin.KindRejection {
			continue
		}
		if dev == "" {
			dev = ev.ID.Dev.String()
		}
		rec, ts := &recs[len(out)], &times[len(out)]
		ts.Seconds, ts.Nanos = ev.At.Unix(), int32(ev.At.Nanosecond())
		rec.EventId, rec.PartnerId, rec.CustomerId = ev.ID.String(), tn.partner, tn.customer
		rec.SiteId, rec.TapPointId, rec.DeviceEui = tn.site, tn.tap, dev
		rec.EventTime, rec.FCnt = ts, ev.FCnt
		if ev.Kind == devicetwin.KindReading {
			r := &rds[k]
			r.SampleIndex = uint32(ev.Reading.Index)
			if ev.Reading.Pipe.Valid() {
				temps[2*k] = ev.Reading.Pipe.Celsius()
				r.PipeC = &temps[2*k]
			}
			if ev.Reading.Ambient.Valid() {
				temps[2*k+1] = ev.Reading.Ambient.Celsius()
				r.AmbientC = &temps[2*k+1]
			}
			wraps[k].Reading = r
			rec.Payload = &wraps[k]
			k++
		} else {
			setPayload(rec, ev)
		}
		out = append(out, rec)
	}
	return out
}

// setPayload fills the payload of the less frequent kinds.
func setPayload(out *twinv1.TwinEvent, ev *devicetwin.Event) {
	switch ev.Kind {
	case devicetwin.KindWaterEvent:
		w := &ev.Water
		kind := twinv1.WaterEventKind_WATER_EVENT_KIND_UNSPECIFIED
		switch w.Kind {
		case clipr.EventFlush:
			kind = twinv1.WaterEventKind_WATER_EVENT_KIND_FLUSH
		case clipr.EventDisinfection:
			kind = twinv1.WaterEventKind_WATER_EVENT_KIND_DISINFECTION
		}
		out.Payload = &twinv1.TwinEvent_WaterEvent{WaterEvent: &twinv1.WaterEvent{
			Kind: kind, Inferred: w.Inferred, StartedAt: out.EventTime,
			DurationS: uint32(w.Duration / time.Second), StartPipeC: celsius(w.StartPipe),
			ExtremePipeC: celsius(w.ExtremePipe), Compliant: w.Compliant, Reason: w.Reason,
		}}
	case devicetwin.KindAlarm:
		a := &ev.Alarm
		at := &twinv1.AlarmTransition{
			AlarmId: a.AlarmID(ev.ID.Dev), Type: twinv1.AlarmType(a.Type), Severity: twinv1.Severity(a.Severity),
			FromStatus: twinv1.AlarmStatus(a.From), ToStatus: twinv1.AlarmStatus(a.To),
			By: a.By, Note: a.Note, Message: alarmMessage(a),
		}
		if !a.RaisedAt.IsZero() {
			at.RaisedAt = timestamppb.New(a.RaisedAt)
		}
		if a.HasValue {
			v, th := a.Value, a.Threshold
			at.Value, at.Threshold = &v, &th
		}
		out.Payload = &twinv1.TwinEvent_Alarm{Alarm: at}
	case devicetwin.KindDeviceStatus:
		s := &ev.Status
		st := &twinv1.DeviceStatus{
			BatteryMv: uint32(s.BatteryMV), Detached: s.Detached, ProbeFault: s.ProbeFault, Rebooted: s.Rebooted,
			Firmware:  strconv.Itoa(int(s.FwMajor)) + "." + strconv.Itoa(int(s.FwMinor)),
			IntervalS: uint32(s.IntervalS), Online: true, BestRssi: int32(s.BestRSSI), BestSnr: s.BestSNR,
		}
		if s.NGateways > 0 {
			st.GatewayEuis = make([]string, s.NGateways)
			for i := range st.GatewayEuis {
				st.GatewayEuis[i] = s.Gateways[i].String()
			}
		}
		out.Payload = &twinv1.TwinEvent_DeviceStatus{DeviceStatus: st}
	case devicetwin.KindGatewayStatus:
		g := &ev.Gateway
		gs := &twinv1.GatewayStatus{
			Online: g.Online, UplinksHeard: uint64(g.Uplinks), MeanRssi: g.MeanRSSI, MeanSnr: g.MeanSNR,
		}
		if !g.LastSeen.IsZero() {
			gs.LastSeen = timestamppb.New(g.LastSeen)
		}
		out.Payload = &twinv1.TwinEvent_GatewayStatus{GatewayStatus: gs}
	}
}

func celsius(t clipr.Temp) *float64 {
	if !t.Valid() {
		return nil
	}
	v := t.Celsius()
	return &v
}

// alarmMessage is the human-readable summary of an alarm transition.
func alarmMessage(a *devicetwin.AlarmTransition) string {
	msg := a.Type.String() + " " + a.To.String()
	if a.From == a.To {
		msg = a.Type.String() + " now " + a.Severity.String()
	}
	if a.Note != "" {
		msg += ": " + a.Note
	}
	return msg
}

func postgresEUI(e devicetwin.EUI64) postgres.EUI64 { return postgres.EUI64(e) }

// StripForWindow clears the ids a recent-event window entry does not keep
// (tenant, partner, site, tap point, device: its key and the twin hold
// them). Every writer of the window stores events in this form.
func StripForWindow(ev *twinv1.TwinEvent) {
	ev.PartnerId, ev.CustomerId, ev.SiteId, ev.TapPointId, ev.DeviceEui = "", "", "", "", ""
}
