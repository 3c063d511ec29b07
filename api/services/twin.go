package services

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/api/auth"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// GetTwin returns one twin: the live state from the actor system, with
// its tenancy and placement from the registry. A registered device that
// was never heard from answers with its registry view.
func (s *Services) GetTwin(ctx context.Context, req *connect.Request[apiv1.GetTwinRequest]) (*connect.Response[apiv1.GetTwinResponse], error) {
	const op = apiv1connect.TwinServiceGetTwinProcedure
	p, err := s.authorize(ctx, auth.ScopeDevicesRead, auth.ScopeHealthRead)
	if err != nil {
		return nil, err
	}
	eui, err := parseEUI("dev_eui", req.Msg.GetDevEui(), true)
	if err != nil {
		return nil, err
	}
	d, err := s.findDevice(ctx, p, eui, "device "+euiHex(eui))
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	if s.d.Twins == nil {
		return nil, errUnavailablePort
	}
	pl, err := s.placeDevice(ctx, p, d)
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	t, err := s.d.Twins.GetTwin(ctx, pl.customer, euiHex(eui))
	if errors.Is(err, ErrNoState) {
		t, err = nil, nil
	}
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	tw := stampTwin(t, euiHex(eui), pl)
	if healthOnly(p) {
		redactTwin(tw)
	}
	return connect.NewResponse(&apiv1.GetTwinResponse{Twin: tw}), nil
}

// placeDevice completes a device's placement with its tap kind and its
// site's rule profile.
func (s *Services) placeDevice(ctx context.Context, p *auth.Principal, d postgres.Device) (placement, error) {
	pl := placementOf(d)
	if d.SiteID == nil {
		return pl, nil
	}
	sc, err := scopeFor(p, d.CustomerID)
	if err != nil {
		return pl, err
	}
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		site, err := tx.Sites().Get(ctx, *d.SiteID)
		if err != nil {
			return err
		}
		pl.profile = profileToProto(site.RuleProfile)
		if d.TapPointID != nil {
			tp, err := tx.TapPoints().Get(ctx, *d.TapPointID)
			if err != nil {
				return err
			}
			pl.kind = tapKindToProto(tp.Kind)
		}
		return nil
	})
	return pl, err
}

// ListTwins lists the twins of a site in DevEUI order, optionally only one
// tap kind or only those with alarms.
func (s *Services) ListTwins(ctx context.Context, req *connect.Request[apiv1.ListTwinsRequest]) (*connect.Response[apiv1.ListTwinsResponse], error) {
	const op = apiv1connect.TwinServiceListTwinsProcedure
	p, err := s.authorize(ctx, auth.ScopeDevicesRead, auth.ScopeHealthRead)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	siteID, err := parseID("site_id", m.GetSiteId(), true)
	if err != nil {
		return nil, err
	}
	if _, ok := twinv1.TapKind_name[int32(m.GetTapKind())]; !ok {
		return nil, invalid("tap_kind", "unknown value %d", m.GetTapKind())
	}
	size, err := pageSize(m.GetPageSize())
	if err != nil {
		return nil, err
	}
	q := queryKey("twins", siteID.String(), m.GetTapKind().String(), strconv.FormatBool(m.GetOnlyAlarming()))
	cursor, err := decodePage(m.GetPageToken(), q, 1)
	if err != nil {
		return nil, err
	}
	var after postgres.EUI64
	if cursor != nil {
		if after, err = parseEUI("page_token", cursor[0], true); err != nil {
			return nil, err
		}
	}
	site, err := s.findSite(ctx, p, siteID)
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	if s.d.Twins == nil {
		return nil, errUnavailablePort
	}
	sc, err := scopeFor(p, site.CustomerID)
	if err != nil {
		return nil, err
	}
	var (
		devs  []postgres.Device
		kinds = map[uuid.UUID]postgres.TapKind{}
	)
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		var err error
		if devs, err = tx.Devices().List(ctx, postgres.ListOptions{SiteID: site.ID, Limit: s.d.MaxScanDevices}); err != nil {
			return err
		}
		taps, err := tx.TapPoints().List(ctx, postgres.ListOptions{SiteID: site.ID, Limit: s.d.MaxScanDevices})
		for _, t := range taps {
			kinds[t.ID] = t.Kind
		}
		return err
	})
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	// Candidates in DevEUI order after the cursor, of the wanted kind.
	var cands []postgres.Device
	for _, d := range devs {
		if cursor != nil && bytes.Compare(d.DevEUI[:], after[:]) <= 0 {
			continue
		}
		var kind postgres.TapKind
		if d.TapPointID != nil {
			kind = kinds[*d.TapPointID]
		}
		if m.GetTapKind() != twinv1.TapKind_TAP_KIND_UNSPECIFIED && kind != tapKindFromProto(m.GetTapKind()) {
			continue
		}
		cands = append(cands, d)
	}
	resp := &apiv1.ListTwinsResponse{}
	customer := site.CustomerID.String()
	for len(cands) > 0 && len(resp.Twins) < size {
		chunk := cands[:min(len(cands), max(size-len(resp.Twins), 64))]
		euis := make([]string, len(chunk))
		for i, d := range chunk {
			euis[i] = euiHex(d.DevEUI)
		}
		twins, err := s.d.Twins.GetTwins(ctx, customer, euis)
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		byEUI := make(map[string]*apiv1.Twin, len(twins))
		for _, t := range twins {
			if t != nil {
				byEUI[strings.ToLower(t.GetDevEui())] = t
			}
		}
		used := 0
		for i, d := range chunk {
			used = i + 1
			pl := placementOf(d)
			pl.profile = profileToProto(site.RuleProfile)
			if d.TapPointID != nil {
				pl.kind = tapKindToProto(kinds[*d.TapPointID])
			}
			t := stampTwin(byEUI[euis[i]], euis[i], pl)
			if healthOnly(p) {
				redactTwin(t)
			}
			if m.GetOnlyAlarming() && len(t.ActiveAlarms) == 0 {
				continue
			}
			resp.Twins = append(resp.Twins, t)
			if len(resp.Twins) == size {
				break
			}
		}
		cands = cands[used:]
	}
	if len(resp.Twins) == size && len(cands) > 0 {
		resp.NextPageToken = encodePage(q, resp.Twins[len(resp.Twins)-1].GetDevEui())
	}
	return connect.NewResponse(resp), nil
}
