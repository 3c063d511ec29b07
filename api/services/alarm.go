package services

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/api/auth"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// parseAlarmID splits "<deveui>-<ALARM_TYPE>-<occurrence>" (the id the
// twin core gives every alarm, devicetwin.AlarmTransition.AlarmID).
func parseAlarmID(s string) (postgres.EUI64, twinv1.AlarmType, uint32, error) {
	bad := func(why string) (postgres.EUI64, twinv1.AlarmType, uint32, error) {
		return postgres.EUI64{}, 0, 0, invalid("alarm_id", "%s (want <16 hex dev_eui>-<TYPE>-<occurrence>)", why)
	}
	if s == "" {
		return bad("is required")
	}
	if len(s) > 64 || len(s) < 20 || s[16] != '-' {
		return bad("malformed")
	}
	eui, err := parseEUI("alarm_id", s[:16], true)
	if err != nil {
		return bad("malformed device EUI")
	}
	rest := s[17:]
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return bad("malformed")
	}
	typ, ok := twinv1.AlarmType_value["ALARM_TYPE_"+rest[:i]]
	if !ok || typ == 0 {
		return bad("unknown alarm type")
	}
	occ, err := strconv.ParseUint(rest[i+1:], 10, 32)
	if err != nil {
		return bad("malformed occurrence")
	}
	return eui, twinv1.AlarmType(typ), uint32(occ), nil
}

// severityAtLeast reports whether sev is min or more severe (lower is more
// severe; UNSPECIFIED min passes everything).
func severityAtLeast(sev, min twinv1.Severity) bool {
	return min == twinv1.Severity_SEVERITY_UNSPECIFIED || (sev != twinv1.Severity_SEVERITY_UNSPECIFIED && sev <= min)
}

// ListAlarms lists the alarms in the caller's scope, newest change first:
// without a period, the alarms that need attention now (every status but
// CLEARED_ACK, from the twins); with a period, also every alarm with a
// transition in it (from the recent-event window), in its latest state.
func (s *Services) ListAlarms(ctx context.Context, req *connect.Request[apiv1.ListAlarmsRequest]) (*connect.Response[apiv1.ListAlarmsResponse], error) {
	const op = apiv1connect.AlarmServiceListAlarmsProcedure
	p, err := s.authorize(ctx, auth.ScopeAlarmsRead)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	siteID, err := parseID("site_id", m.GetSiteId(), false)
	if err != nil {
		return nil, err
	}
	eui, err := parseEUI("dev_eui", m.GetDevEui(), false)
	if err != nil {
		return nil, err
	}
	statuses := map[twinv1.AlarmStatus]bool{}
	for _, st := range m.GetStatuses() {
		if _, ok := twinv1.AlarmStatus_name[int32(st)]; !ok || st == 0 {
			return nil, invalid("statuses", "unknown status %d", st)
		}
		statuses[st] = true
	}
	types := map[twinv1.AlarmType]bool{}
	for _, t := range m.GetTypes() {
		if _, ok := twinv1.AlarmType_name[int32(t)]; !ok || t == 0 {
			return nil, invalid("types", "unknown type %d", t)
		}
		types[t] = true
	}
	if _, ok := twinv1.Severity_name[int32(m.GetMinSeverity())]; !ok {
		return nil, invalid("min_severity", "unknown severity %d", m.GetMinSeverity())
	}
	var from, to time.Time
	if m.GetPeriod() != nil {
		if from, to, err = period(m.GetPeriod(), s.d.Now()); err != nil {
			return nil, err
		}
	}
	size, err := pageSize(m.GetPageSize())
	if err != nil {
		return nil, err
	}
	filterKey := []string{"alarms", siteID.String(), euiHex(eui), m.GetMinSeverity().String()}
	for _, st := range m.GetStatuses() {
		filterKey = append(filterKey, st.String())
	}
	for _, t := range m.GetTypes() {
		filterKey = append(filterKey, t.String())
	}
	if m.GetPeriod() != nil {
		filterKey = append(filterKey, from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	}
	qk := queryKey(filterKey...)
	cur, err := decodePage(m.GetPageToken(), qk, 2)
	if err != nil {
		return nil, err
	}
	var curT int64
	if cur != nil {
		if curT, err = strconv.ParseInt(cur[0], 10, 64); err != nil {
			return nil, invalid("page_token", "malformed")
		}
	}

	// The devices in question.
	var devs []postgres.Device
	var site *postgres.Site
	if siteID != uuid.Nil {
		st, err := s.findSite(ctx, p, siteID)
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		site = &st
	}
	switch {
	case !eui.IsZero():
		d, err := s.findDevice(ctx, p, eui, "device "+euiHex(eui))
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		if site == nil || (d.SiteID != nil && *d.SiteID == site.ID) {
			devs = []postgres.Device{d}
		}
	default:
		if devs, err = s.devicesIn(ctx, p, site, s.d.MaxScanDevices); err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
	}
	if s.d.Twins == nil {
		return nil, errUnavailablePort
	}

	alarms := map[string]*apiv1.Alarm{}
	if m.GetPeriod() != nil {
		if err := s.alarmHistory(ctx, devs, from, to, alarms); err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
	}
	if err := s.currentAlarms(ctx, devs, alarms, func(a *apiv1.Alarm) bool {
		return m.GetPeriod() == nil || a.GetRaisedAt() == nil || a.GetRaisedAt().AsTime().Before(to)
	}); err != nil {
		return nil, s.toConnect(ctx, op, err)
	}

	list := make([]*apiv1.Alarm, 0, len(alarms))
	for _, a := range alarms {
		if len(statuses) > 0 && !statuses[a.GetStatus()] {
			continue
		}
		if len(types) > 0 && !types[a.GetType()] {
			continue
		}
		if !severityAtLeast(a.GetSeverity(), m.GetMinSeverity()) {
			continue
		}
		list = append(list, a)
	}
	// Newest change first, then by id.
	order := func(a, b *apiv1.Alarm) int {
		if c := cmp.Compare(b.GetUpdatedAt().AsTime().UnixNano(), a.GetUpdatedAt().AsTime().UnixNano()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetAlarmId(), b.GetAlarmId())
	}
	slices.SortFunc(list, order)
	if cur != nil {
		marker := &apiv1.Alarm{AlarmId: cur[1], UpdatedAt: ts(time.Unix(0, curT))}
		if curT == 0 {
			marker.UpdatedAt = nil
		}
		i, _ := slices.BinarySearchFunc(list, marker, order)
		for i < len(list) && order(list[i], marker) <= 0 {
			i++
		}
		list = list[i:]
	}
	resp := &apiv1.ListAlarmsResponse{Alarms: list[:min(len(list), size)]}
	if len(list) > size {
		last := resp.Alarms[size-1]
		var t int64
		if last.GetUpdatedAt() != nil {
			t = last.GetUpdatedAt().AsTime().UnixNano()
		}
		resp.NextPageToken = encodePage(qk, strconv.FormatInt(t, 10), last.GetAlarmId())
	}
	return connect.NewResponse(resp), nil
}

// currentAlarms adds the twins' alarms of devs (grouped by customer) to
// into, overriding what the history said.
func (s *Services) currentAlarms(ctx context.Context, devs []postgres.Device, into map[string]*apiv1.Alarm, keep func(*apiv1.Alarm) bool) error {
	byCustomer := map[uuid.UUID][]postgres.Device{}
	for _, d := range devs {
		byCustomer[d.CustomerID] = append(byCustomer[d.CustomerID], d)
	}
	for customer, ds := range byCustomer {
		place := make(map[string]placement, len(ds))
		euis := make([]string, len(ds))
		for i, d := range ds {
			euis[i] = euiHex(d.DevEUI)
			place[euis[i]] = placementOf(d)
		}
		for start := 0; start < len(euis); start += 500 {
			twins, err := s.d.Twins.GetTwins(ctx, customer.String(), euis[start:min(len(euis), start+500)])
			if err != nil {
				return err
			}
			for _, t := range twins {
				e := strings.ToLower(t.GetDevEui())
				pl, ok := place[e]
				if !ok {
					continue // not asked for: never shown
				}
				for _, a := range stampTwin(t, e, pl).GetActiveAlarms() {
					if keep(a) {
						into[a.GetAlarmId()] = a
					}
				}
			}
		}
	}
	return nil
}

// alarmHistory folds the alarm transitions of devs in [from, to) into the
// latest state of each alarm.
func (s *Services) alarmHistory(ctx context.Context, devs []postgres.Device, from, to time.Time, into map[string]*apiv1.Alarm) error {
	for _, d := range devs {
		pl, e := placementOf(d), euiHex(d.DevEUI)
		recs, err := s.d.Recent.RecentEvents(ctx, d.CustomerID.String(), pebblestore.EUI(d.DevEUI), from, to, s.d.MaxScanEvents)
		if err != nil {
			return err
		}
		for _, r := range recs {
			ev := new(twinv1.TwinEvent)
			if proto.Unmarshal(r.Payload, ev) != nil {
				continue
			}
			tr := ev.GetAlarm()
			if tr == nil || tr.GetAlarmId() == "" {
				continue
			}
			a := into[tr.GetAlarmId()]
			if a == nil {
				a = &apiv1.Alarm{AlarmId: tr.GetAlarmId(), RaisedAt: tr.GetRaisedAt()}
				into[tr.GetAlarmId()] = a
			}
			a.Type, a.Severity, a.Status = tr.GetType(), tr.GetSeverity(), tr.GetToStatus()
			a.UpdatedAt, a.Message = ev.GetEventTime(), tr.GetMessage()
			if a.RaisedAt == nil {
				a.RaisedAt = tr.GetRaisedAt()
			}
			if a.RaisedAt == nil {
				a.RaisedAt = ev.GetEventTime()
			}
			if tr.GetBy() != "" && tr.GetBy() != "system" {
				switch tr.GetToStatus() {
				case twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_ACK, twinv1.AlarmStatus_ALARM_STATUS_CLEARED_ACK:
					if a.AcknowledgedBy == "" {
						a.AcknowledgedBy = tr.GetBy()
					}
				}
				if tr.GetNote() != "" {
					a.Note = tr.GetNote()
				}
			}
			stampAlarm(a, e, pl)
		}
	}
	return nil
}

// AcknowledgeAlarm acknowledges an alarm occurrence with an optional note.
func (s *Services) AcknowledgeAlarm(ctx context.Context, req *connect.Request[apiv1.AcknowledgeAlarmRequest]) (*connect.Response[apiv1.AcknowledgeAlarmResponse], error) {
	a, err := s.alarmCommand(ctx, apiv1connect.AlarmServiceAcknowledgeAlarmProcedure, req.Msg.GetAlarmId(), req.Msg.GetNote(), false)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.AcknowledgeAlarmResponse{Alarm: a}), nil
}

// ClearAlarm clears an alarm occurrence; the note is required (why a
// person clears what the rules still consider active).
func (s *Services) ClearAlarm(ctx context.Context, req *connect.Request[apiv1.ClearAlarmRequest]) (*connect.Response[apiv1.ClearAlarmResponse], error) {
	a, err := s.alarmCommand(ctx, apiv1connect.AlarmServiceClearAlarmProcedure, req.Msg.GetAlarmId(), req.Msg.GetNote(), true)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ClearAlarmResponse{Alarm: a}), nil
}

func (s *Services) alarmCommand(ctx context.Context, op, alarmID, rawNote string, clear bool) (*apiv1.Alarm, error) {
	p, err := s.authorize(ctx, auth.ScopeAlarmsWrite)
	if err != nil {
		return nil, err
	}
	eui, typ, occ, err := parseAlarmID(alarmID)
	if err != nil {
		return nil, err
	}
	text, err := note("note", rawNote, clear)
	if err != nil {
		return nil, err
	}
	d, err := s.findDevice(ctx, p, eui, "alarm "+alarmID)
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	if s.d.Alarms == nil {
		return nil, errUnavailablePort
	}
	e := euiHex(eui)
	ref := AlarmRef{
		AlarmID: e + alarmID[16:], CustomerID: d.CustomerID.String(), DevEUI: e, Type: typ, Occurrence: occ,
	}
	var a *apiv1.Alarm
	if clear {
		a, err = s.d.Alarms.Clear(ctx, ref, p.Actor(), text)
	} else {
		a, err = s.d.Alarms.Acknowledge(ctx, ref, p.Actor(), text)
	}
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	if a == nil || !strings.EqualFold(a.GetDevEui(), e) {
		return nil, s.toConnect(ctx, op, errMismatch)
	}
	// The logbook (the twin's event) says who and when with the note; the
	// audit trail records the operator action itself.
	action := postgres.AuditAlarmAcknowledge
	if clear {
		action = postgres.AuditAlarmClear
	}
	customer := d.CustomerID
	if _, err := s.d.Registry.AppendAudit(ctx, postgres.CustomerScope(customer, p.Actor()), postgres.AuditEntry{
		Actor: p.Actor(), ActorRole: string(p.Role), Action: action, CustomerID: &customer, Target: "device:" + d.DevEUI.String(),
		Details: map[string]any{"alarm_id": ref.AlarmID, "procedure": op},
	}); err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return stampAlarm(a, e, placementOf(d)), nil
}

// errMismatch: a port answered about another device than asked (a wiring
// bug; answered Internal, never shown).
var errMismatch = errors.New("alarm commander answered for another device")
