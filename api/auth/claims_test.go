package auth

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/storage/postgres"
)

var (
	partnerA  = uuid.MustParse("0c6a3c8e-0000-4000-8000-00000000000a")
	customer1 = uuid.MustParse("0c6a3c8e-0000-4000-8000-000000000c01")
	customer2 = uuid.MustParse("0c6a3c8e-0000-4000-8000-000000000c02")
	customer3 = uuid.MustParse("0c6a3c8e-0000-4000-8000-000000000c03")
	site1     = uuid.MustParse("0c6a3c8e-0000-4000-8000-000000005001")
	site2     = uuid.MustParse("0c6a3c8e-0000-4000-8000-000000005002")
)

func TestClaimsValidate(t *testing.T) {
	tests := []struct {
		name  string
		c     Claims
		claim string // "" means valid; else the claim the error must name
	}{
		{"platform admin", Claims{Subject: "u1", Role: RolePlatformAdmin}, ""},
		{"platform admin with tenant", Claims{Subject: "u1", Role: RolePlatformAdmin, PartnerID: partnerA}, "role"},
		{"partner admin", Claims{Subject: "u1", Role: RolePartnerAdmin, PartnerID: partnerA}, ""},
		{"partner admin without partner", Claims{Subject: "u1", Role: RolePartnerAdmin}, "partner_id"},
		{"partner admin with customers", Claims{Subject: "u1", Role: RolePartnerAdmin, PartnerID: partnerA, CustomerIDs: []uuid.UUID{customer1}}, "customer_ids"},
		{"customer admin", Claims{Subject: "u1", Role: RoleCustomerAdmin, CustomerIDs: []uuid.UUID{customer1}}, ""},
		{"customer admin of two", Claims{Subject: "u1", Role: RoleCustomerAdmin, CustomerIDs: []uuid.UUID{customer1, customer2}}, "customer_ids"},
		{"customer admin with sites", Claims{Subject: "u1", Role: RoleCustomerAdmin, CustomerIDs: []uuid.UUID{customer1}, SiteIDs: []uuid.UUID{site1}}, "site_ids"},
		{"technician", Claims{Subject: "u1", Role: RoleTechnician, CustomerIDs: []uuid.UUID{customer1}, SiteIDs: []uuid.UUID{site1}}, ""},
		{"technician without sites", Claims{Subject: "u1", Role: RoleTechnician, CustomerIDs: []uuid.UUID{customer1}}, "site_ids"},
		{"technician without customers", Claims{Subject: "u1", Role: RoleTechnician, SiteIDs: []uuid.UUID{site1}}, "customer_ids"},
		{"partner-wide viewer", Claims{Subject: "u1", Role: RoleViewer, PartnerID: partnerA}, ""},
		{"customer viewer", Claims{Subject: "u1", Role: RoleViewer, CustomerIDs: []uuid.UUID{customer1, customer2}}, ""},
		{"viewer of nothing", Claims{Subject: "u1", Role: RoleViewer}, "customer_ids"},
		{"integration", Claims{Subject: "c1", ClientID: "c1", Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer1}, Scopes: []string{ScopeReadingsRead}}, ""},
		{"integration without scope", Claims{Subject: "c1", ClientID: "c1", Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer1}}, "scope"},
		{"integration with unknown scope only", Claims{Subject: "c1", ClientID: "c1", Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer1}, Scopes: []string{"openid"}}, "scope"},
		{"integration without client id", Claims{Subject: "c1", Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer1}, Scopes: []string{ScopeReadingsRead}}, "client_id"},
		{"integration without customer", Claims{Subject: "c1", ClientID: "c1", Role: RoleIntegration, Scopes: []string{ScopeReadingsRead}}, "customer_ids"},
		{"support", Claims{Subject: "u1", Role: RoleSupport}, ""},
		{"support with a customer", Claims{Subject: "u1", Role: RoleSupport, CustomerIDs: []uuid.UUID{customer1}}, "role"},
		{"support with a partner", Claims{Subject: "u1", Role: RoleSupport, PartnerID: partnerA}, "role"},
		{"unknown role", Claims{Subject: "u1", Role: "root"}, "role"},
		{"no role", Claims{Subject: "u1"}, "role"},
		{"no subject", Claims{Role: RolePlatformAdmin}, "sub"},
		{"nil customer", Claims{Subject: "u1", Role: RoleViewer, CustomerIDs: []uuid.UUID{uuid.Nil}}, "customer_ids"},
		{"bad scope text", Claims{Subject: "u1", Role: RolePlatformAdmin, Scopes: []string{"a b"}}, "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.claim == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrClaims) {
				t.Fatalf("Validate() = %v, want ErrClaims", err)
			}
			if !strings.Contains(err.Error(), tt.claim) {
				t.Errorf("error %q does not name %s", err, tt.claim)
			}
		})
	}
}

func TestClaimsJSON(t *testing.T) {
	c := Claims{Subject: "c1", ClientID: "c1", Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer1, customer2},
		Scopes: []string{ScopeReadingsRead, ScopeAlarmsRead}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"scope":"readings:read alarms:read"`) {
		t.Errorf("scope is not space-separated (RFC 9068): %s", b)
	}
	var back Claims
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Subject != c.Subject || back.Role != c.Role || !slices.Equal(back.CustomerIDs, c.CustomerIDs) || !slices.Equal(back.Scopes, c.Scopes) {
		t.Errorf("round trip: got %+v, want %+v", back, c)
	}

	tests := []struct {
		name, in string
		want     []uuid.UUID
		errClaim string
	}{
		{"single customer_id", `{"customer_id":"` + customer1.String() + `"}`, []uuid.UUID{customer1}, ""},
		{"both forms merged", `{"customer_id":"` + customer1.String() + `","customer_ids":["` + customer1.String() + `","` + customer2.String() + `"]}`, []uuid.UUID{customer1, customer2}, ""},
		{"bad customer id", `{"customer_ids":["` + customer1.String() + `","nope"]}`, nil, "customer_ids[1]"},
		{"bad partner id", `{"partner_id":"123"}`, nil, "partner_id"},
		{"bad site id", `{"site_ids":["{` + site1.String() + `}"]}`, nil, "site_ids[0]"},
		{"wrong type", `{"customer_ids":"x"}`, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Claims
			err := json.Unmarshal([]byte(tt.in), &c)
			if tt.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(c.CustomerIDs, tt.want) {
					t.Errorf("customers %v, want %v", c.CustomerIDs, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrClaims) {
				t.Fatalf("err = %v, want ErrClaims", err)
			}
			if !strings.Contains(err.Error(), tt.errClaim) {
				t.Errorf("error %q does not name %s", err, tt.errClaim)
			}
		})
	}
}

func mustPrincipal(t *testing.T, c Claims) *Principal {
	t.Helper()
	p, err := NewPrincipal(c, "", timeZero)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrincipalAccess(t *testing.T) {
	platform := mustPrincipal(t, Claims{Subject: "ops", Role: RolePlatformAdmin})
	partner := mustPrincipal(t, Claims{Subject: "pa", Role: RolePartnerAdmin, PartnerID: partnerA})
	custAdmin := mustPrincipal(t, Claims{Subject: "ca", Role: RoleCustomerAdmin, CustomerIDs: []uuid.UUID{customer1}})
	tech := mustPrincipal(t, Claims{Subject: "tech", Role: RoleTechnician, CustomerIDs: []uuid.UUID{customer1, customer2}, SiteIDs: []uuid.UUID{site1}})
	viewer := mustPrincipal(t, Claims{Subject: "v", Role: RoleViewer, CustomerIDs: []uuid.UUID{customer1}})
	integ := mustPrincipal(t, Claims{Subject: "lgc_1", ClientID: "lgc_1", Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer2}, Scopes: []string{ScopeReadingsRead}})

	tests := []struct {
		name         string
		p            *Principal
		customer     uuid.UUID
		site         uuid.UUID
		wantCustomer bool
		wantSite     bool
	}{
		{"platform sees any customer", platform, customer3, site2, true, true},
		{"partner-wide defers to the registry", partner, customer3, site2, true, true},
		{"customer admin own customer", custAdmin, customer1, site2, true, true},
		{"customer admin other customer", custAdmin, customer2, site1, false, false},
		{"technician assigned site", tech, customer1, site1, true, true},
		{"technician unassigned site", tech, customer1, site2, true, false},
		{"technician foreign customer", tech, customer3, site1, false, false},
		{"viewer own customer", viewer, customer1, site2, true, true},
		{"integration named customer", integ, customer2, site1, true, true},
		{"integration other customer", integ, customer1, site1, false, false},
		{"nil ids", custAdmin, uuid.Nil, uuid.Nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.CanSeeCustomer(tt.customer); got != tt.wantCustomer {
				t.Errorf("CanSeeCustomer = %v, want %v", got, tt.wantCustomer)
			}
			if got := tt.p.CanSeeSite(tt.customer, tt.site); got != tt.wantSite {
				t.Errorf("CanSeeSite = %v, want %v", got, tt.wantSite)
			}
		})
	}

	scopes := []struct {
		p     *Principal
		scope string
		want  bool
	}{
		{platform, ScopeAdminWrite, true},
		{custAdmin, ScopeAdminWrite, true},
		{tech, ScopeAlarmsWrite, true},
		{tech, ScopeAdminWrite, false},
		{viewer, ScopeReadingsRead, true},
		{viewer, ScopeAlarmsWrite, false},
		{integ, ScopeReadingsRead, true},
		{integ, ScopeAlarmsRead, false},
	}
	for _, s := range scopes {
		if got := s.p.HasScope(s.scope); got != s.want {
			t.Errorf("%s HasScope(%s) = %v, want %v", s.p.Role, s.scope, got, s.want)
		}
	}
}

func TestPrincipalScope(t *testing.T) {
	tests := []struct {
		name    string
		c       Claims
		want    postgres.Scope
		wantErr error
		forC    uuid.UUID
		wantFor postgres.Scope
		forErr  error
	}{
		{"platform", Claims{Subject: "ops", Role: RolePlatformAdmin},
			postgres.PlatformScope("user:ops"), nil,
			customer1, postgres.CustomerScope(customer1, "user:ops"), nil},
		{"partner", Claims{Subject: "pa", Role: RolePartnerAdmin, PartnerID: partnerA},
			postgres.PartnerScope(partnerA, "user:pa"), nil,
			customer3, postgres.PartnerScope(partnerA, "user:pa"), nil},
		{"customer admin", Claims{Subject: "ca", Role: RoleCustomerAdmin, CustomerIDs: []uuid.UUID{customer1}},
			postgres.CustomerScope(customer1, "user:ca"), nil,
			customer2, postgres.Scope{}, ErrNotVisible},
		{"technician of two customers", Claims{Subject: "t", Role: RoleTechnician, CustomerIDs: []uuid.UUID{customer1, customer2}, SiteIDs: []uuid.UUID{site1}},
			postgres.Scope{}, ErrScopeAmbiguous,
			customer2, postgres.CustomerScope(customer2, "user:t"), nil},
		{"integration", Claims{Subject: "lgc_1", ClientID: "lgc_1", Role: RoleIntegration, CustomerIDs: []uuid.UUID{customer2}, Scopes: []string{ScopeAlarmsRead}},
			postgres.CustomerScope(customer2, "client:lgc_1"), nil,
			customer2, postgres.CustomerScope(customer2, "client:lgc_1"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPrincipal(t, tt.c)
			got, err := p.Scope()
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("Scope() = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
			if err == nil {
				if verr := got.Validate(); verr != nil {
					t.Errorf("scope does not validate: %v", verr)
				}
			}
			gotFor, err := p.ScopeFor(tt.forC)
			if !errors.Is(err, tt.forErr) || gotFor != tt.wantFor {
				t.Errorf("ScopeFor() = %+v, %v; want %+v, %v", gotFor, err, tt.wantFor, tt.forErr)
			}
		})
	}
}
