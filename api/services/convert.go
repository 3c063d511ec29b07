package services

import (
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

func idStr(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

func optIDStr(id *uuid.UUID) string {
	if id == nil {
		return ""
	}
	return idStr(*id)
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tapKindToProto(k postgres.TapKind) twinv1.TapKind {
	return twinv1.TapKind(twinv1.TapKind_value["TAP_KIND_"+string(k)])
}

func tapKindFromProto(k twinv1.TapKind) postgres.TapKind {
	return postgres.TapKind(strings.TrimPrefix(k.String(), "TAP_KIND_"))
}

func profileToProto(p postgres.RuleProfile) twinv1.RuleProfile {
	return twinv1.RuleProfile(twinv1.RuleProfile_value["RULE_PROFILE_"+string(p)])
}

func profileFromProto(p twinv1.RuleProfile) postgres.RuleProfile {
	if p == twinv1.RuleProfile_RULE_PROFILE_UNSPECIFIED {
		return ""
	}
	return postgres.RuleProfile(strings.TrimPrefix(p.String(), "RULE_PROFILE_"))
}

func partnerToProto(p postgres.Partner) *apiv1.Partner {
	return &apiv1.Partner{PartnerId: p.ID.String(), Name: p.Name, CreatedAt: ts(p.CreatedAt)}
}

func customerToProto(c postgres.Customer) *apiv1.Customer {
	return &apiv1.Customer{CustomerId: c.ID.String(), PartnerId: optIDStr(c.PartnerID), Name: c.Name, CreatedAt: ts(c.CreatedAt)}
}

// siteAddress renders the registry's address fields as one line.
func siteAddress(s postgres.Site) string {
	var parts []string
	if s.Street != "" {
		parts = append(parts, s.Street)
	}
	if town := strings.TrimSpace(s.PostalCode + " " + s.City); town != "" {
		parts = append(parts, town)
	}
	return strings.Join(parts, ", ")
}

func siteToProto(s postgres.Site) *apiv1.Site {
	return &apiv1.Site{
		SiteId: s.ID.String(), CustomerId: s.CustomerID.String(), Name: s.Name, Address: siteAddress(s),
		Country: s.Country, Profile: profileToProto(s.RuleProfile), CreatedAt: ts(s.CreatedAt),
	}
}

// overridesFromProto maps the API's rule overrides onto the registry's,
// according to the tap point's kind: hot_min_c is the minimum of the line
// the tap point monitors (heater outlet, circulation return, or the
// temperature a hot tap's flush must reach).
func overridesFromProto(o *apiv1.RuleOverrides, kind postgres.TapKind) (postgres.Overrides, time.Duration) {
	var out postgres.Overrides
	if o == nil {
		return out, 0
	}
	if o.HotMinC != nil {
		v := o.GetHotMinC()
		switch kind {
		case postgres.TapHeaterOutlet:
			out.HeaterOutletMinC = &v
		case postgres.TapCirculationReturn:
			out.CirculationReturnMinC = &v
		default:
			out.HotFlushMinC = &v
		}
	}
	if o.ColdMaxC != nil {
		v := o.GetColdMaxC()
		out.ColdMaxC = &v
	}
	if o.FlushMinDurationS != nil {
		v := int(o.GetFlushMinDurationS())
		out.FlushMinDurationS = &v
	}
	if o.SustainedWindowS != nil {
		v := int(o.GetSustainedWindowS())
		out.SustainS = &v
	}
	var flush time.Duration
	if o.FlushIntervalS != nil {
		flush = time.Duration(o.GetFlushIntervalS()) * time.Second
	}
	return out, flush
}

func overridesToProto(o postgres.Overrides, kind postgres.TapKind, flush time.Duration) *apiv1.RuleOverrides {
	out := &apiv1.RuleOverrides{ColdMaxC: o.ColdMaxC}
	switch kind {
	case postgres.TapHeaterOutlet:
		out.HotMinC = o.HeaterOutletMinC
	case postgres.TapCirculationReturn:
		out.HotMinC = o.CirculationReturnMinC
	default:
		out.HotMinC = o.HotFlushMinC
	}
	if o.FlushMinDurationS != nil {
		v := uint32(*o.FlushMinDurationS)
		out.FlushMinDurationS = &v
	}
	if o.SustainS != nil {
		v := uint32(*o.SustainS)
		out.SustainedWindowS = &v
	}
	if flush > 0 {
		v := uint32(flush / time.Second)
		out.FlushIntervalS = &v
	}
	return out
}

func tapPointToProto(t postgres.TapPoint) *apiv1.TapPoint {
	return &apiv1.TapPoint{
		TapPointId: t.ID.String(), SiteId: t.SiteID.String(), Name: t.Name, Kind: tapKindToProto(t.Kind),
		Overrides: overridesToProto(t.Overrides, t.Kind, t.FlushInterval), CreatedAt: ts(t.CreatedAt),
	}
}

func deviceToProto(d postgres.Device) *apiv1.Device {
	out := &apiv1.Device{
		DevEui: euiHex(d.DevEUI), TapPointId: optIDStr(d.TapPointID),
		ExpectedIntervalS: uint32(d.ExpectedInterval / time.Second), CreatedAt: ts(d.CreatedAt),
	}
	if d.DevAddr != nil {
		out.DevAddr = strings.ToLower(d.DevAddr.String())
	}
	switch d.Activation {
	case postgres.ABP:
		out.Activation = apiv1.Activation_ACTIVATION_ABP
	case postgres.OTAA:
		out.Activation = apiv1.Activation_ACTIVATION_OTAA
	}
	return out
}

func gatewayToProto(g postgres.Gateway) *apiv1.Gateway {
	return &apiv1.Gateway{
		GatewayEui: euiHex(g.GatewayEUI), CustomerId: optIDStr(g.CustomerID), Name: g.Name,
		StatsIntervalS: uint32(g.StatsInterval / time.Second), CreatedAt: ts(g.CreatedAt),
	}
}

// placement is where a device sits, from the registry: the authoritative
// tenancy stamped on every twin and alarm the API returns.
type placement struct {
	customer, site, tap string
	kind                twinv1.TapKind
	profile             twinv1.RuleProfile
}

func placementOf(d postgres.Device) placement {
	return placement{customer: d.CustomerID.String(), site: optIDStr(d.SiteID), tap: optIDStr(d.TapPointID)}
}

// stampTwin overwrites a twin's tenancy with the registry's, and drops
// alarms that are not the device's.
func stampTwin(t *apiv1.Twin, eui string, pl placement) *apiv1.Twin {
	if t == nil {
		t = &apiv1.Twin{}
	}
	t.DevEui, t.CustomerId, t.SiteId, t.TapPointId = eui, pl.customer, pl.site, pl.tap
	t.TapKind, t.Profile = pl.kind, pl.profile
	alarms := t.ActiveAlarms[:0]
	for _, a := range t.ActiveAlarms {
		if a == nil || !strings.EqualFold(a.GetDevEui(), eui) {
			continue
		}
		alarms = append(alarms, stampAlarm(a, eui, pl))
	}
	t.ActiveAlarms = alarms
	return t
}

func stampAlarm(a *apiv1.Alarm, eui string, pl placement) *apiv1.Alarm {
	a.DevEui, a.CustomerId, a.SiteId, a.TapPointId = eui, pl.customer, pl.site, pl.tap
	return a
}
