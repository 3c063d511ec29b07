package loadtest

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/legionelladossier/legiond/loadtest/fleet"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// Plan is the registry layout of a run's fleet: one partner and customer,
// buildings (sites, NL rule profile) of SensorsPerSite sensors each, a tap
// point of the sensor's kind per sensor, its ABP device, and the gateways.
type Plan struct {
	Name           string
	Sensors        []fleet.SensorInfo
	Gateways       []fleet.GatewayInfo
	SensorsPerSite int
	ReportInterval time.Duration
}

// Sites returns the number of buildings.
func (p *Plan) Sites() int { return (len(p.Sensors) + p.SensorsPerSite - 1) / p.SensorsPerSite }

// Site returns the building of a sensor.
func (p *Plan) Site(sensor int) int { return sensor / p.SensorsPerSite }

// Provisioned is what the registry assigned.
type Provisioned struct {
	CustomerID string
	SiteIDs    []string // by building
}

// Provisioner registers a Plan before the run (a port: the command plugs
// in the registry directly or the API).
type Provisioner interface {
	Provision(ctx context.Context, p *Plan) (Provisioned, error)
}

// DeviceCSV writes the devices of sensors [from, to) as the registry's CSV
// import (docs/operations.md), with the tap point ids by sensor.
func (p *Plan) DeviceCSV(from, to int, tapIDs []string) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"dev_eui", "activation", "name", "tap_point_id", "dev_addr", "nwk_s_key", "app_s_key", "expected_interval_s"})
	iv := strconv.Itoa(int(p.ReportInterval / time.Second))
	for i := from; i < to; i++ {
		s := &p.Sensors[i]
		_ = w.Write([]string{s.DevEUI.String(), "ABP", "clip " + strconv.Itoa(i), tapIDs[i], s.DevAddr.String(),
			s.NwkSKey.String(), s.AppSKey.String(), iv})
	}
	w.Flush()
	return buf.Bytes()
}

// TapKindProto maps a fleet tap kind onto the API enum.
func TapKindProto(k fleet.TapKind) twinv1.TapKind {
	if v, ok := twinv1.TapKind_value["TAP_KIND_"+string(k)]; ok {
		return twinv1.TapKind(v)
	}
	return twinv1.TapKind_TAP_KIND_UNSPECIFIED
}

// APIProvisioner registers the fleet through AdminService with a platform
// administrator's token. It keeps the harness outside Legiond (it needs
// only the API), but one call per tap point meets the API's per-client
// rate limit (20 calls/s by default): refusals are retried with backoff,
// so large fleets are slow to provision this way. Prefer the registry
// adapter of `legiond loadtest --database-url` for them.
type APIProvisioner struct {
	Client apiv1connect.AdminServiceClient
	Token  string
	// Concurrency of the per-tap-point calls. Default 4.
	Concurrency int
	// Retries of a call refused with ResourceExhausted or Unavailable.
	// Default 50.
	Retries int
}

// devicesPerImport keeps an ImportDevices call under its 4 MiB limit.
const devicesPerImport = 10_000

// Provision implements Provisioner.
func (a *APIProvisioner) Provision(ctx context.Context, p *Plan) (Provisioned, error) {
	var out Provisioned
	conc := a.Concurrency
	if conc <= 0 {
		conc = 4
	}
	partner, err := call(ctx, a, a.Client.CreatePartner, &apiv1.CreatePartnerRequest{Name: p.Name + " partner"})
	if err != nil {
		return out, fmt.Errorf("%w: create partner: %w", ErrProvision, err)
	}
	cust, err := call(ctx, a, a.Client.CreateCustomer, &apiv1.CreateCustomerRequest{
		PartnerId: partner.GetPartner().GetPartnerId(), Name: p.Name + " customer"})
	if err != nil {
		return out, fmt.Errorf("%w: create customer: %w", ErrProvision, err)
	}
	out.CustomerID = cust.GetCustomer().GetCustomerId()
	for s := range p.Sites() {
		site, err := call(ctx, a, a.Client.CreateSite, &apiv1.CreateSiteRequest{
			CustomerId: out.CustomerID, Name: fmt.Sprintf("%s building %d", p.Name, s), Country: "NL",
			Profile: twinv1.RuleProfile_RULE_PROFILE_NL})
		if err != nil {
			return out, fmt.Errorf("%w: create site: %w", ErrProvision, err)
		}
		out.SiteIDs = append(out.SiteIDs, site.GetSite().GetSiteId())
	}
	taps := make([]string, len(p.Sensors))
	work := make(chan int)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range conc {
		wg.Go(func() {
			for i := range work {
				s := &p.Sensors[i]
				tp, err := call(ctx, a, a.Client.CreateTapPoint, &apiv1.CreateTapPointRequest{
					SiteId: out.SiteIDs[p.Site(i)], Name: "tap " + strconv.Itoa(i) + " " + s.DevEUI.String(),
					Kind: TapKindProto(s.TapKind)})
				if err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					continue
				}
				taps[i] = tp.GetTapPoint().GetTapPointId()
			}
		})
	}
feed:
	for i := range p.Sensors {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	if first != nil {
		return out, fmt.Errorf("%w: create tap points: %w", ErrProvision, first)
	}
	for from := 0; from < len(p.Sensors); from += devicesPerImport {
		to := min(from+devicesPerImport, len(p.Sensors))
		if _, err := call(ctx, a, a.Client.ImportDevices, &apiv1.ImportDevicesRequest{
			CustomerId: out.CustomerID, Csv: p.DeviceCSV(from, to, taps)}); err != nil {
			return out, fmt.Errorf("%w: import devices: %w", ErrProvision, err)
		}
	}
	for i, g := range p.Gateways {
		if _, err := call(ctx, a, a.Client.CreateGateway, &apiv1.CreateGatewayRequest{
			GatewayEui: g.EUI.String(), CustomerId: out.CustomerID, Name: fmt.Sprintf("%s gateway %d", p.Name, i)}); err != nil {
			return out, fmt.Errorf("%w: create gateway: %w", ErrProvision, err)
		}
	}
	return out, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// call makes one unary call with the bearer token, retrying refusals that
// mean "later" (rate limit, unavailable) with capped exponential backoff.
func call[Req, Res any](ctx context.Context, a *APIProvisioner, fn func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error), msg *Req) (*Res, error) {
	retries := a.Retries
	if retries <= 0 {
		retries = 50
	}
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		req := connect.NewRequest(msg)
		req.Header().Set("Authorization", "Bearer "+a.Token)
		res, err := fn(ctx, req)
		if err == nil {
			return res.Msg, nil
		}
		code := connect.CodeOf(err)
		if attempt >= retries || (code != connect.CodeResourceExhausted && code != connect.CodeUnavailable) {
			return nil, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(err, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
