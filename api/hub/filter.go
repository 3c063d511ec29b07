package hub

import (
	"fmt"
	"slices"
	"strings"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// Kinds is a set of event kinds; the zero value means every kind.
type Kinds uint8

// Event kinds. Gateway status counts as KindStatus.
const (
	KindReading Kinds = 1 << iota
	KindWaterEvent
	KindAlarm
	KindStatus
)

// KindOf returns the kind of an event (0 for an event without payload).
func KindOf(ev *twinv1.TwinEvent) Kinds {
	switch ev.GetPayload().(type) {
	case *twinv1.TwinEvent_Reading:
		return KindReading
	case *twinv1.TwinEvent_WaterEvent:
		return KindWaterEvent
	case *twinv1.TwinEvent_Alarm:
		return KindAlarm
	case *twinv1.TwinEvent_DeviceStatus, *twinv1.TwinEvent_GatewayStatus:
		return KindStatus
	}
	return 0
}

// Filter selects the events of one subscription. The tenant part (AllTenants,
// Partners, Customers, Sites) is what the caller may see and must come from
// its verified principal; SiteID, DevEUI, Kinds and Match narrow within it.
// An event passes when its tenant is visible AND every narrowing holds.
type Filter struct {
	// AllTenants sees every tenant (platform operators only).
	AllTenants bool
	// Partners: events whose partner_id is listed are visible
	// (partner-wide principals).
	Partners []string
	// Customers: events whose customer_id is listed are visible.
	Customers []string
	// Sites, when not empty, restricts the visible events to these sites
	// (technicians, narrowed viewers), on top of the tenant.
	Sites []string
	// SiteID and DevEUI, when set, keep only that site's or device's
	// events. DevEUI is 16 hex digits (compared in lower case).
	SiteID string
	DevEUI string
	// Kinds keeps only these kinds; 0 keeps all.
	Kinds Kinds
	// Match, when set, is a last predicate (e.g. a minimum severity). It
	// runs on a partition goroutine for every candidate event: it must be
	// quick, must not block and must not keep or modify the event.
	Match func(*twinv1.TwinEvent) bool
}

// Validate reports a filter that names no tenant (ErrFilter): the zero
// Filter sees nothing rather than everything.
func (f Filter) Validate() error {
	if !f.AllTenants && len(f.Partners) == 0 && len(f.Customers) == 0 {
		return ErrFilter
	}
	for _, s := range slices.Concat(f.Partners, f.Customers, f.Sites) {
		if s == "" {
			return fmt.Errorf("%w: empty id", ErrFilter)
		}
	}
	return nil
}

// compiled is a Filter prepared for the hot path.
type compiled struct {
	Filter
}

func compile(f Filter) compiled {
	f.DevEUI = strings.ToLower(f.DevEUI)
	return compiled{Filter: f}
}

// match reports whether ev (of kind k) passes the filter.
func (c *compiled) match(ev *twinv1.TwinEvent, k Kinds) bool {
	if c.Kinds != 0 && c.Kinds&k == 0 {
		return false
	}
	if !c.AllTenants && !slices.Contains(c.Customers, ev.GetCustomerId()) &&
		(ev.GetPartnerId() == "" || !slices.Contains(c.Partners, ev.GetPartnerId())) {
		return false
	}
	if len(c.Sites) > 0 && !slices.Contains(c.Sites, ev.GetSiteId()) {
		return false
	}
	if c.SiteID != "" && ev.GetSiteId() != c.SiteID {
		return false
	}
	if c.DevEUI != "" && !strings.EqualFold(ev.GetDeviceEui(), c.DevEUI) {
		return false
	}
	if c.Match != nil && !c.Match(ev) {
		return false
	}
	return true
}
