package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/api/auth"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// Registry reads need admin:read, devices:read or health:read (viewers and
// technicians see the sites and devices they work with, support staff the
// configuration of every customer); writes need admin:write, and devices
// also devices:write.
var readScopes = []string{auth.ScopeAdminRead, auth.ScopeDevicesRead, auth.ScopeHealthRead}

// maxListScan bounds the rows one list call reads from the registry
// before paging them in memory.
const maxListScan = 100000

// page cuts a sorted list after the cursor and returns one page and the
// token of the next. key renders an item's sort key (whose parts compare
// as the list is sorted).
func page[T any](items []T, cursor []string, size int, qk string, key func(T) []string) ([]T, string) {
	if cursor != nil {
		i := 0
		for i < len(items) && slices.Compare(key(items[i]), cursor) <= 0 {
			i++
		}
		items = items[i:]
	}
	if len(items) <= size {
		return items, ""
	}
	items = items[:size]
	return items, encodePage(qk, key(items[size-1])...)
}

// nameKey sorts registry rows as the registry does: case-folded name, id.
func nameKey(name string, id uuid.UUID) []string { return []string{strings.ToLower(name), id.String()} }

// listArgs validates the paging arguments of a list call.
func listArgs(size int32, token, qk string, parts int) (int, []string, error) {
	n, err := pageSize(size)
	if err != nil {
		return 0, nil, err
	}
	cur, err := decodePage(token, qk, parts)
	return n, cur, err
}

// CreatePartner adds a partner (platform administrators only).
func (s *Services) CreatePartner(ctx context.Context, req *connect.Request[apiv1.CreatePartnerRequest]) (*connect.Response[apiv1.CreatePartnerResponse], error) {
	const op = apiv1connect.AdminServiceCreatePartnerProcedure
	p, err := s.authorize(ctx, auth.ScopeAdminWrite)
	if err != nil {
		return nil, err
	}
	if err := needPlatformAdmin(p, "create partners"); err != nil {
		return nil, err
	}
	var out postgres.Partner
	err = s.d.Registry.InTx(ctx, postgres.PlatformScope(p.Actor()), func(tx *postgres.Tx) error {
		if out, err = tx.Partners().Create(ctx, postgres.NewPartner{Name: req.Msg.GetName()}); err != nil {
			return err
		}
		return auditChange(ctx, tx, p, op, "partner:"+out.ID.String(), &out.ID, nil, "name")
	})
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return connect.NewResponse(&apiv1.CreatePartnerResponse{Partner: partnerToProto(out)}), nil
}

// ListPartners lists the partners visible to the caller, by name.
func (s *Services) ListPartners(ctx context.Context, req *connect.Request[apiv1.ListPartnersRequest]) (*connect.Response[apiv1.ListPartnersResponse], error) {
	const op = apiv1connect.AdminServiceListPartnersProcedure
	p, err := s.authorize(ctx, auth.ScopeAdminRead)
	if err != nil {
		return nil, err
	}
	qk := queryKey("partners")
	size, cur, err := listArgs(req.Msg.GetPageSize(), req.Msg.GetPageToken(), qk, 2)
	if err != nil {
		return nil, err
	}
	seen, err := gather(ctx, s, op, scopes(p), func(tx *postgres.Tx) ([]postgres.Partner, error) {
		return tx.Partners().List(ctx, postgres.ListOptions{Limit: maxListScan})
	}, func(x postgres.Partner) uuid.UUID { return x.ID }, nil)
	if err != nil {
		return nil, err
	}
	key := func(x postgres.Partner) []string { return nameKey(x.Name, x.ID) }
	items, next := page(sortedValues(seen, key), cur, size, qk, key)
	resp := &apiv1.ListPartnersResponse{NextPageToken: next}
	for _, x := range items {
		resp.Partners = append(resp.Partners, partnerToProto(x))
	}
	return connect.NewResponse(resp), nil
}

// sortedValues returns m's values sorted by key.
func sortedValues[K comparable, V any](m map[K]V, key func(V) []string) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b V) int { return slices.Compare(key(a), key(b)) })
	return out
}

// CreateCustomer adds a customer under a partner (platform administrators,
// or partner administrators under their own partner).
func (s *Services) CreateCustomer(ctx context.Context, req *connect.Request[apiv1.CreateCustomerRequest]) (*connect.Response[apiv1.CreateCustomerResponse], error) {
	const op = apiv1connect.AdminServiceCreateCustomerProcedure
	p, err := s.authorize(ctx, auth.ScopeAdminWrite)
	if err != nil {
		return nil, err
	}
	var sc postgres.Scope
	switch {
	case p.Role == auth.RolePlatformAdmin:
		sc = postgres.PlatformScope(p.Actor())
	case p.PartnerWide():
		sc = postgres.PartnerScope(p.PartnerID, p.Actor())
	default:
		return nil, denied("only platform and partner administrators may create customers")
	}
	partner, err := parseID("partner_id", req.Msg.GetPartnerId(), false)
	if err != nil {
		return nil, err
	}
	in := postgres.NewCustomer{Name: req.Msg.GetName()}
	if partner != uuid.Nil {
		in.PartnerID = &partner
	}
	var out postgres.Customer
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		if out, err = tx.Customers().Create(ctx, in); err != nil {
			return err
		}
		return auditChange(ctx, tx, p, op, "customer:"+out.ID.String(), nil, &out.ID, "name", "partner_id")
	})
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return connect.NewResponse(&apiv1.CreateCustomerResponse{Customer: customerToProto(out)}), nil
}

// ListCustomers lists the customers visible to the caller, optionally of
// one partner, by name.
func (s *Services) ListCustomers(ctx context.Context, req *connect.Request[apiv1.ListCustomersRequest]) (*connect.Response[apiv1.ListCustomersResponse], error) {
	const op = apiv1connect.AdminServiceListCustomersProcedure
	p, err := s.authorize(ctx, readScopes...)
	if err != nil {
		return nil, err
	}
	partner, err := parseID("partner_id", req.Msg.GetPartnerId(), false)
	if err != nil {
		return nil, err
	}
	qk := queryKey("customers", partner.String())
	size, cur, err := listArgs(req.Msg.GetPageSize(), req.Msg.GetPageToken(), qk, 2)
	if err != nil {
		return nil, err
	}
	if ownPartner := p.PartnerWide() && partner == p.PartnerID; partner != uuid.Nil && !ownPartner {
		err := s.inScopes(ctx, p, func(tx *postgres.Tx) error {
			_, err := tx.Partners().Get(ctx, partner)
			return err
		})
		if errors.Is(err, postgres.ErrNotFound) {
			return nil, notFound("partner " + partner.String())
		}
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
	}
	seen, err := gather(ctx, s, op, scopes(p), func(tx *postgres.Tx) ([]postgres.Customer, error) {
		return tx.Customers().List(ctx, postgres.ListOptions{PartnerID: partner, Limit: maxListScan})
	}, func(c postgres.Customer) uuid.UUID { return c.ID }, func(c postgres.Customer) bool { return p.CanSeeCustomer(c.ID) })
	if err != nil {
		return nil, err
	}
	key := func(c postgres.Customer) []string { return nameKey(c.Name, c.ID) }
	items, next := page(sortedValues(seen, key), cur, size, qk, key)
	resp := &apiv1.ListCustomersResponse{NextPageToken: next}
	for _, c := range items {
		resp.Customers = append(resp.Customers, customerToProto(c))
	}
	return connect.NewResponse(resp), nil
}

// customerArg resolves an optional customer_id: the named one (visible, or
// NotFound), else the caller's only customer.
func (s *Services) customerArg(ctx context.Context, p *auth.Principal, raw string) (uuid.UUID, postgres.Scope, error) {
	id, err := parseID("customer_id", raw, false)
	if err != nil {
		return uuid.Nil, postgres.Scope{}, err
	}
	if id == uuid.Nil {
		if p.Role != auth.RolePlatformAdmin && !p.PartnerWide() && len(p.CustomerIDs) == 1 {
			id = p.CustomerIDs[0]
		} else {
			return uuid.Nil, postgres.Scope{}, invalid("customer_id", "is required")
		}
	}
	_, sc, err := s.findCustomer(ctx, p, id)
	return id, sc, err
}

// CreateSite adds a site to a customer; the country must be in the EEA.
func (s *Services) CreateSite(ctx context.Context, req *connect.Request[apiv1.CreateSiteRequest]) (*connect.Response[apiv1.CreateSiteResponse], error) {
	const op = apiv1connect.AdminServiceCreateSiteProcedure
	p, err := s.authorize(ctx, auth.ScopeAdminWrite)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	if _, ok := twinv1.RuleProfile_name[int32(m.GetProfile())]; !ok {
		return nil, invalid("profile", "unknown value %d", m.GetProfile())
	}
	customer, sc, err := s.customerArg(ctx, p, m.GetCustomerId())
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	var out postgres.Site
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		out, err = tx.Sites().Create(ctx, postgres.NewSite{
			CustomerID: customer, Name: m.GetName(), Street: m.GetAddress(), Country: m.GetCountry(),
			RuleProfile: profileFromProto(m.GetProfile()),
		})
		if err != nil {
			return err
		}
		return auditChange(ctx, tx, p, op, "site:"+out.ID.String(), nil, &out.CustomerID, "name", "address", "country", "profile")
	})
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return connect.NewResponse(&apiv1.CreateSiteResponse{Site: siteToProto(out)}), nil
}

// ListSites lists the sites visible to the caller, optionally of one
// customer, by name.
func (s *Services) ListSites(ctx context.Context, req *connect.Request[apiv1.ListSitesRequest]) (*connect.Response[apiv1.ListSitesResponse], error) {
	const op = apiv1connect.AdminServiceListSitesProcedure
	p, err := s.authorize(ctx, readScopes...)
	if err != nil {
		return nil, err
	}
	customer, err := parseID("customer_id", req.Msg.GetCustomerId(), false)
	if err != nil {
		return nil, err
	}
	qk := queryKey("sites", customer.String())
	size, cur, err := listArgs(req.Msg.GetPageSize(), req.Msg.GetPageToken(), qk, 2)
	if err != nil {
		return nil, err
	}
	scs, err := s.listScopes(ctx, op, p, customer)
	if err != nil {
		return nil, err
	}
	seen, err := gather(ctx, s, op, scs, func(tx *postgres.Tx) ([]postgres.Site, error) {
		return tx.Sites().List(ctx, postgres.ListOptions{CustomerID: customer, Limit: maxListScan})
	}, func(x postgres.Site) uuid.UUID { return x.ID }, func(x postgres.Site) bool { return visible(p, x.CustomerID, &x.ID) })
	if err != nil {
		return nil, err
	}
	key := func(x postgres.Site) []string { return nameKey(x.Name, x.ID) }
	items, next := page(sortedValues(seen, key), cur, size, qk, key)
	resp := &apiv1.ListSitesResponse{NextPageToken: next}
	for _, x := range items {
		resp.Sites = append(resp.Sites, siteToProto(x))
	}
	return connect.NewResponse(resp), nil
}

// CreateTapPoint adds a tap point to a site.
func (s *Services) CreateTapPoint(ctx context.Context, req *connect.Request[apiv1.CreateTapPointRequest]) (*connect.Response[apiv1.CreateTapPointResponse], error) {
	const op = apiv1connect.AdminServiceCreateTapPointProcedure
	p, err := s.authorize(ctx, auth.ScopeAdminWrite)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	siteID, err := parseID("site_id", m.GetSiteId(), true)
	if err != nil {
		return nil, err
	}
	if _, ok := twinv1.TapKind_name[int32(m.GetKind())]; !ok || m.GetKind() == 0 {
		return nil, invalid("kind", "must be one of HOT_TAP, COLD_TAP, MIXED_TAP, CIRCULATION_RETURN, HEATER_OUTLET, COLD_MAIN")
	}
	site, err := s.findSite(ctx, p, siteID)
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	sc, err := scopeFor(p, site.CustomerID)
	if err != nil {
		return nil, err
	}
	kind := tapKindFromProto(m.GetKind())
	ov, flush := overridesFromProto(m.GetOverrides(), kind)
	var out postgres.TapPoint
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		out, err = tx.TapPoints().Create(ctx, postgres.NewTapPoint{
			SiteID: site.ID, Name: m.GetName(), Kind: kind, FlushInterval: flush, Overrides: ov,
		})
		if err != nil {
			return err
		}
		return auditChange(ctx, tx, p, op, "tap-point:"+out.ID.String(), nil, &out.CustomerID, "site_id", "name", "kind", "overrides")
	})
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return connect.NewResponse(&apiv1.CreateTapPointResponse{TapPoint: tapPointToProto(out)}), nil
}

// ListTapPoints lists tap points visible to the caller, optionally of one
// site, by name.
func (s *Services) ListTapPoints(ctx context.Context, req *connect.Request[apiv1.ListTapPointsRequest]) (*connect.Response[apiv1.ListTapPointsResponse], error) {
	const op = apiv1connect.AdminServiceListTapPointsProcedure
	p, err := s.authorize(ctx, readScopes...)
	if err != nil {
		return nil, err
	}
	siteID, err := parseID("site_id", req.Msg.GetSiteId(), false)
	if err != nil {
		return nil, err
	}
	qk := queryKey("tap_points", siteID.String())
	size, cur, err := listArgs(req.Msg.GetPageSize(), req.Msg.GetPageToken(), qk, 2)
	if err != nil {
		return nil, err
	}
	scs := scopes(p)
	if siteID != uuid.Nil {
		site, err := s.findSite(ctx, p, siteID)
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		sc, err := scopeFor(p, site.CustomerID)
		if err != nil {
			return nil, err
		}
		scs = []postgres.Scope{sc}
	}
	seen, err := gather(ctx, s, op, scs, func(tx *postgres.Tx) ([]postgres.TapPoint, error) {
		return tx.TapPoints().List(ctx, postgres.ListOptions{SiteID: siteID, Limit: maxListScan})
	}, func(x postgres.TapPoint) uuid.UUID { return x.ID }, func(x postgres.TapPoint) bool { return visible(p, x.CustomerID, &x.SiteID) })
	if err != nil {
		return nil, err
	}
	key := func(x postgres.TapPoint) []string { return nameKey(x.Name, x.ID) }
	items, next := page(sortedValues(seen, key), cur, size, qk, key)
	resp := &apiv1.ListTapPointsResponse{NextPageToken: next}
	for _, x := range items {
		resp.TapPoints = append(resp.TapPoints, tapPointToProto(x))
	}
	return connect.NewResponse(resp), nil
}

// parseKey parses an optional AES-128 key (32 hex digits).
func parseKey(field, s string) (*postgres.AES128Key, error) {
	if s == "" {
		return nil, nil
	}
	k, err := postgres.ParseAES128Key(s)
	if err != nil {
		return nil, invalid(field, "want 32 hex digits, not all zero")
	}
	return &k, nil
}

// CreateDevice registers a device, placed at a tap point (required unless
// the caller has exactly one customer). Its keys are stored encrypted and
// never returned.
func (s *Services) CreateDevice(ctx context.Context, req *connect.Request[apiv1.CreateDeviceRequest]) (*connect.Response[apiv1.CreateDeviceResponse], error) {
	const op = apiv1connect.AdminServiceCreateDeviceProcedure
	p, err := s.authorize(ctx, auth.ScopeDevicesWrite)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	in := postgres.NewDevice{ExpectedInterval: time.Duration(m.GetExpectedIntervalS()) * time.Second}
	if in.DevEUI, err = parseEUI("dev_eui", m.GetDevEui(), true); err != nil {
		return nil, err
	}
	switch m.GetActivation() {
	case apiv1.Activation_ACTIVATION_ABP:
		in.Activation = postgres.ABP
	case apiv1.Activation_ACTIVATION_OTAA:
		in.Activation = postgres.OTAA
	default:
		return nil, invalid("activation", "must be ACTIVATION_ABP or ACTIVATION_OTAA")
	}
	if m.GetDevAddr() != "" {
		a, err := postgres.ParseDevAddr(m.GetDevAddr())
		if err != nil || len(m.GetDevAddr()) != 8 {
			return nil, invalid("dev_addr", "want 8 hex digits")
		}
		in.DevAddr = &a
	}
	if m.GetJoinEui() != "" {
		j, err := parseEUI("join_eui", m.GetJoinEui(), true)
		if err != nil {
			return nil, err
		}
		in.JoinEUI = &j
	}
	for _, k := range []struct {
		field string
		raw   string
		dst   **postgres.AES128Key
	}{{"nwk_s_key", m.GetNwkSKey(), &in.NwkSKey}, {"app_s_key", m.GetAppSKey(), &in.AppSKey}, {"app_key", m.GetAppKey(), &in.AppKey}} {
		if *k.dst, err = parseKey(k.field, k.raw); err != nil {
			return nil, err
		}
	}
	tapID, err := parseID("tap_point_id", m.GetTapPointId(), false)
	if err != nil {
		return nil, err
	}
	var sc postgres.Scope
	if tapID != uuid.Nil {
		tp, err := s.findTapPoint(ctx, p, tapID)
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		if sc, err = scopeFor(p, tp.CustomerID); err != nil {
			return nil, err
		}
		in.TapPointID = &tp.ID
	} else {
		if p.SiteRestricted() {
			return nil, denied("a site-restricted caller must place the device at a tap point of its sites")
		}
		var err error
		sc, err = p.Scope()
		if err != nil || sc.Kind != postgres.ScopeCustomer {
			return nil, invalid("tap_point_id", "is required (it tells the device's customer)")
		}
	}
	var out postgres.Device
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		if out, err = tx.Devices().Create(ctx, in); err != nil {
			return err
		}
		return auditChange(ctx, tx, p, op, "device:"+out.DevEUI.String(), nil, &out.CustomerID, deviceFields(m)...)
	})
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return connect.NewResponse(&apiv1.CreateDeviceResponse{Device: deviceToProto(out)}), nil
}

// ListDevices lists devices visible to the caller, optionally of one site
// or tap point, by DevEUI.
func (s *Services) ListDevices(ctx context.Context, req *connect.Request[apiv1.ListDevicesRequest]) (*connect.Response[apiv1.ListDevicesResponse], error) {
	const op = apiv1connect.AdminServiceListDevicesProcedure
	p, err := s.authorize(ctx, readScopes...)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	siteID, err := parseID("site_id", m.GetSiteId(), false)
	if err != nil {
		return nil, err
	}
	tapID, err := parseID("tap_point_id", m.GetTapPointId(), false)
	if err != nil {
		return nil, err
	}
	qk := queryKey("devices", siteID.String(), tapID.String())
	size, cur, err := listArgs(m.GetPageSize(), m.GetPageToken(), qk, 1)
	if err != nil {
		return nil, err
	}
	var devs []postgres.Device
	switch {
	case tapID != uuid.Nil:
		tp, err := s.findTapPoint(ctx, p, tapID)
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		if siteID != uuid.Nil && siteID != tp.SiteID {
			return nil, invalid("tap_point_id", "is not at site_id")
		}
		site := postgres.Site{ID: tp.SiteID, CustomerID: tp.CustomerID}
		all, err := s.devicesIn(ctx, p, &site, maxListScan)
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		for _, d := range all {
			if d.TapPointID != nil && *d.TapPointID == tp.ID {
				devs = append(devs, d)
			}
		}
	case siteID != uuid.Nil:
		site, err := s.findSite(ctx, p, siteID)
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		if devs, err = s.devicesIn(ctx, p, &site, maxListScan); err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
	default:
		if devs, err = s.devicesIn(ctx, p, nil, maxListScan); err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
	}
	slices.SortFunc(devs, func(a, b postgres.Device) int { return bytes.Compare(a.DevEUI[:], b.DevEUI[:]) })
	items, next := page(devs, cur, size, qk, func(d postgres.Device) []string { return []string{euiHex(d.DevEUI)} })
	resp := &apiv1.ListDevicesResponse{NextPageToken: next}
	for _, d := range items {
		resp.Devices = append(resp.Devices, deviceToProto(d))
	}
	return connect.NewResponse(resp), nil
}

// ImportDevices registers devices from CSV (see docs/operations.md).
// Without skip_bad_rows one bad row rejects the file: InvalidArgument
// naming the first bad row, with the full report as an error detail.
func (s *Services) ImportDevices(ctx context.Context, req *connect.Request[apiv1.ImportDevicesRequest]) (*connect.Response[apiv1.ImportDevicesResponse], error) {
	const op = apiv1connect.AdminServiceImportDevicesProcedure
	p, err := s.authorize(ctx, auth.ScopeDevicesWrite)
	if err != nil {
		return nil, err
	}
	if p.SiteRestricted() {
		return nil, denied("bulk imports need a caller that covers the whole customer")
	}
	m := req.Msg
	if len(m.GetCsv()) == 0 {
		return nil, invalid("csv", "is required")
	}
	customer, sc, err := s.customerArg(ctx, p, m.GetCustomerId())
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	var rep postgres.ImportReport
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		var err error
		rep, err = tx.ImportDevices(ctx, bytes.NewReader(m.GetCsv()), postgres.ImportOptions{
			SkipBadRows: m.GetSkipBadRows(), CustomerID: customer, MaxBytes: 4 << 20,
		})
		if err != nil || rep.Imported == 0 {
			return err
		}
		return auditChange(ctx, tx, p, op, "devices:import", nil, &customer, "csv")
	})
	resp := &apiv1.ImportDevicesResponse{Imported: uint32(rep.Imported)}
	for _, e := range rep.Errors {
		resp.Errors = append(resp.Errors, &apiv1.RowError{Line: uint32(e.Line), Field: e.Field, Reason: e.Reason})
	}
	if errors.Is(err, postgres.ErrImportRejected) {
		msg := fmt.Sprintf("invalid csv: %d bad rows, nothing imported", len(rep.Errors))
		if len(rep.Errors) > 0 {
			e := rep.Errors[0]
			msg += fmt.Sprintf("; line %d: %s: %s", e.Line, e.Field, e.Reason)
		}
		ce := connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
		if d, derr := connect.NewErrorDetail(resp); derr == nil {
			ce.AddDetail(d)
		}
		return nil, ce
	}
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return connect.NewResponse(resp), nil
}

// CreateGateway registers a gateway of a customer (or of the caller's
// partner, for partner administrators without customer_id).
func (s *Services) CreateGateway(ctx context.Context, req *connect.Request[apiv1.CreateGatewayRequest]) (*connect.Response[apiv1.CreateGatewayResponse], error) {
	const op = apiv1connect.AdminServiceCreateGatewayProcedure
	p, err := s.authorize(ctx, auth.ScopeAdminWrite)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	in := postgres.NewGateway{Name: m.GetName(), StatsInterval: time.Duration(m.GetStatsIntervalS()) * time.Second}
	if in.GatewayEUI, err = parseEUI("gateway_eui", m.GetGatewayEui(), true); err != nil {
		return nil, err
	}
	var sc postgres.Scope
	if m.GetCustomerId() == "" && p.PartnerWide() {
		sc = postgres.PartnerScope(p.PartnerID, p.Actor())
		in.PartnerID = &p.PartnerID
	} else {
		customer, csc, err := s.customerArg(ctx, p, m.GetCustomerId())
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
		sc, in.CustomerID = csc, &customer
	}
	var out postgres.Gateway
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		if out, err = tx.Gateways().Create(ctx, in); err != nil {
			return err
		}
		return auditChange(ctx, tx, p, op, "gateway:"+out.GatewayEUI.String(), out.PartnerID, out.CustomerID, "gateway_eui", "name", "stats_interval_s")
	})
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return connect.NewResponse(&apiv1.CreateGatewayResponse{Gateway: gatewayToProto(out)}), nil
}

// ListGateways lists gateways visible to the caller, optionally of one
// customer, by EUI. Site-restricted callers see the gateways of their
// sites.
func (s *Services) ListGateways(ctx context.Context, req *connect.Request[apiv1.ListGatewaysRequest]) (*connect.Response[apiv1.ListGatewaysResponse], error) {
	const op = apiv1connect.AdminServiceListGatewaysProcedure
	p, err := s.authorize(ctx, readScopes...)
	if err != nil {
		return nil, err
	}
	customer, err := parseID("customer_id", req.Msg.GetCustomerId(), false)
	if err != nil {
		return nil, err
	}
	qk := queryKey("gateways", customer.String())
	size, cur, err := listArgs(req.Msg.GetPageSize(), req.Msg.GetPageToken(), qk, 1)
	if err != nil {
		return nil, err
	}
	scs, err := s.listScopes(ctx, op, p, customer)
	if err != nil {
		return nil, err
	}
	seen, err := gather(ctx, s, op, scs, func(tx *postgres.Tx) ([]postgres.Gateway, error) {
		return tx.Gateways().List(ctx, postgres.ListOptions{CustomerID: customer, Limit: maxListScan})
	}, func(g postgres.Gateway) postgres.EUI64 { return g.GatewayEUI }, func(g postgres.Gateway) bool { return gatewayVisible(p, g) })
	if err != nil {
		return nil, err
	}
	all := make([]postgres.Gateway, 0, len(seen))
	for _, g := range seen {
		all = append(all, g)
	}
	slices.SortFunc(all, func(a, b postgres.Gateway) int { return bytes.Compare(a.GatewayEUI[:], b.GatewayEUI[:]) })
	items, next := page(all, cur, size, qk, func(g postgres.Gateway) []string { return []string{euiHex(g.GatewayEUI)} })
	resp := &apiv1.ListGatewaysResponse{NextPageToken: next}
	for _, g := range items {
		resp.Gateways = append(resp.Gateways, gatewayToProto(g))
	}
	return connect.NewResponse(resp), nil
}

// gatewayVisible applies the token's restrictions to a gateway: partner
// gateways to partner-wide callers, customer gateways as their site.
func gatewayVisible(p *auth.Principal, g postgres.Gateway) bool {
	if g.CustomerID == nil {
		return p.Role == auth.RolePlatformAdmin || (p.PartnerWide() && g.PartnerID != nil && *g.PartnerID == p.PartnerID)
	}
	return visible(p, *g.CustomerID, g.SiteID)
}

// GetClusterStatus reports the cluster's members and Raft state (platform
// administrators only).
func (s *Services) GetClusterStatus(ctx context.Context, _ *connect.Request[apiv1.GetClusterStatusRequest]) (*connect.Response[apiv1.GetClusterStatusResponse], error) {
	p, err := s.principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := needPlatformAdmin(p, "see the cluster status"); err != nil {
		return nil, err
	}
	if s.d.Cluster == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("cluster status is not available on this node"))
	}
	st, err := s.d.Cluster.ClusterStatus(ctx)
	if err != nil {
		return nil, s.toConnect(ctx, apiv1connect.ClusterServiceGetClusterStatusProcedure, err)
	}
	return connect.NewResponse(st), nil
}

// deviceFields names the fields a CreateDevice request set, for the audit
// entry (key fields by name only).
func deviceFields(m *apiv1.CreateDeviceRequest) []string {
	out := []string{"dev_eui", "activation"}
	for _, f := range []struct {
		name string
		set  bool
	}{{"tap_point_id", m.GetTapPointId() != ""}, {"join_eui", m.GetJoinEui() != ""}, {"dev_addr", m.GetDevAddr() != ""},
		{"app_key", m.GetAppKey() != ""}, {"nwk_s_key", m.GetNwkSKey() != ""}, {"app_s_key", m.GetAppSKey() != ""}} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}
