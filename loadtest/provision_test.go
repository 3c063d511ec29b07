package loadtest

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/legionelladossier/legiond/loadtest/fleet"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// fakeAdmin is the AdminService as the provisioner uses it; it refuses
// every third tap point call once with ResourceExhausted (rate limit).
type fakeAdmin struct {
	apiv1connect.AdminServiceClient // unimplemented calls panic
	mu                              sync.Mutex
	sites, taps, gateways, refused  int
	imported                        []string // DevEUIs
	tokens                          map[string]bool
}

func (f *fakeAdmin) seen(h interface{ Get(string) string }) {
	f.mu.Lock()
	f.tokens[h.Get("Authorization")] = true
	f.mu.Unlock()
}

func (f *fakeAdmin) CreatePartner(_ context.Context, r *connect.Request[apiv1.CreatePartnerRequest]) (*connect.Response[apiv1.CreatePartnerResponse], error) {
	f.seen(r.Header())
	return connect.NewResponse(&apiv1.CreatePartnerResponse{Partner: &apiv1.Partner{PartnerId: "p1"}}), nil
}

func (f *fakeAdmin) CreateCustomer(_ context.Context, r *connect.Request[apiv1.CreateCustomerRequest]) (*connect.Response[apiv1.CreateCustomerResponse], error) {
	if r.Msg.GetPartnerId() != "p1" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("partner"))
	}
	return connect.NewResponse(&apiv1.CreateCustomerResponse{Customer: &apiv1.Customer{CustomerId: "c1"}}), nil
}

func (f *fakeAdmin) CreateSite(_ context.Context, r *connect.Request[apiv1.CreateSiteRequest]) (*connect.Response[apiv1.CreateSiteResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sites++
	return connect.NewResponse(&apiv1.CreateSiteResponse{Site: &apiv1.Site{SiteId: fmt.Sprintf("s%d", f.sites-1)}}), nil
}

func (f *fakeAdmin) CreateTapPoint(_ context.Context, r *connect.Request[apiv1.CreateTapPointRequest]) (*connect.Response[apiv1.CreateTapPointResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Msg.GetKind() == twinv1.TapKind_TAP_KIND_UNSPECIFIED {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("kind"))
	}
	f.taps++
	if f.taps%3 == 0 {
		f.refused++
		return nil, connect.NewError(connect.CodeResourceExhausted, errors.New("rate limit exceeded"))
	}
	return connect.NewResponse(&apiv1.CreateTapPointResponse{TapPoint: &apiv1.TapPoint{
		TapPointId: r.Msg.GetSiteId() + "/" + r.Msg.GetName()}}), nil
}

func (f *fakeAdmin) ImportDevices(_ context.Context, r *connect.Request[apiv1.ImportDevicesRequest]) (*connect.Response[apiv1.ImportDevicesResponse], error) {
	rows, err := csv.NewReader(strings.NewReader(string(r.Msg.GetCsv()))).ReadAll()
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, row := range rows[1:] {
		if row[3] == "" {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("tap_point_id"))
		}
		f.imported = append(f.imported, row[0])
	}
	return connect.NewResponse(&apiv1.ImportDevicesResponse{Imported: uint32(len(rows) - 1)}), nil
}

func (f *fakeAdmin) CreateGateway(_ context.Context, r *connect.Request[apiv1.CreateGatewayRequest]) (*connect.Response[apiv1.CreateGatewayResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gateways++
	return connect.NewResponse(&apiv1.CreateGatewayResponse{}), nil
}

func TestAPIProvisioner(t *testing.T) {
	fl, err := fleet.New(fleet.Config{Sensors: 25, Gateways: 2, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	plan := &Plan{Name: "t", Sensors: fl.Sensors(), Gateways: fl.Gateways(), SensorsPerSite: 10, ReportInterval: fl.Config().ReportInterval}
	fake := &fakeAdmin{tokens: map[string]bool{}}
	p := &APIProvisioner{Client: fake, Token: "tok", Concurrency: 3}
	got, err := p.Provision(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if got.CustomerID != "c1" || len(got.SiteIDs) != 3 || fake.sites != 3 {
		t.Fatalf("provisioned %+v, sites %d", got, fake.sites)
	}
	if len(fake.imported) != 25 || fake.gateways != 2 || fake.refused == 0 {
		t.Fatalf("imported %d, gateways %d, refused %d", len(fake.imported), fake.gateways, fake.refused)
	}
	if !fake.tokens["Bearer tok"] || len(fake.tokens) != 1 {
		t.Fatalf("tokens %v", fake.tokens)
	}
	if plan.Site(9) != 0 || plan.Site(10) != 1 || plan.Sites() != 3 {
		t.Fatal("site assignment")
	}
}
