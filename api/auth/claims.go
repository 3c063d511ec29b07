package auth

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/storage/postgres"
)

// Role is what a token's holder is. The claim is "role".
type Role string

// Roles.
const (
	// RolePlatformAdmin operates the whole platform (every tenant).
	RolePlatformAdmin Role = "platform_admin"
	// RolePartnerAdmin manages one partner and all its customers.
	RolePartnerAdmin Role = "partner_admin"
	// RoleCustomerAdmin manages one customer.
	RoleCustomerAdmin Role = "customer_admin"
	// RoleTechnician works on the sites assigned to them (site_ids) of
	// one or more customers.
	RoleTechnician Role = "technician"
	// RoleViewer reads a partner's customers (partner_id only) or named
	// customers, optionally narrowed to sites.
	RoleViewer Role = "viewer"
	// RoleIntegration is a machine client (client credentials) with
	// explicit scopes on named customers.
	RoleIntegration Role = "integration"
	// RoleSupport is platform support staff: device health and
	// configuration of every customer (ScopeHealthRead) and nothing else;
	// no readings, logbook, alarm notes or personal data. A support user
	// reads one customer's data only under a break-glass grant (see
	// BreakGlass), which api/services checks and audits on every request.
	// The token carries no partner, customer or site.
	RoleSupport Role = "support"
)

// Roles returns the roles a token may carry.
func Roles() []Role {
	return []Role{RolePlatformAdmin, RolePartnerAdmin, RoleCustomerAdmin, RoleTechnician, RoleViewer, RoleIntegration, RoleSupport}
}

// Staff reports the roles of the platform operator's own people, whose
// every request (reads of customer data included) is audited.
func (r Role) Staff() bool { return r == RoleSupport || r == RolePlatformAdmin }

// OAuth 2 scopes: what a token allows. Integration clients get them
// explicitly; human roles imply theirs (see Principal.HasScope).
const (
	ScopeReadingsRead = "readings:read"
	ScopeAlarmsRead   = "alarms:read"
	ScopeAlarmsWrite  = "alarms:write"
	ScopeDevicesRead  = "devices:read"
	ScopeDevicesWrite = "devices:write"
	ScopeAdminRead    = "admin:read"
	ScopeAdminWrite   = "admin:write"
	// ScopeHealthRead reads device health and configuration (battery,
	// online, last seen, link quality, firmware, interval, registry
	// placement) without any reading, water event, alarm note or
	// personal data. It is what support staff have everywhere; a caller
	// holding it without ScopeDevicesRead gets redacted twins.
	ScopeHealthRead = "health:read"
)

// KnownScopes returns every scope Legiond interprets.
func KnownScopes() []string {
	return []string{ScopeReadingsRead, ScopeAlarmsRead, ScopeAlarmsWrite, ScopeDevicesRead, ScopeDevicesWrite, ScopeAdminRead, ScopeAdminWrite, ScopeHealthRead}
}

// breakGlassScopes are what a support user holds on the one customer of
// an active break-glass grant: every read, no write.
var breakGlassScopes = []string{ScopeReadingsRead, ScopeAlarmsRead, ScopeDevicesRead, ScopeAdminRead, ScopeHealthRead}

// impliedScopes are the scopes of the human roles.
var impliedScopes = map[Role][]string{
	RolePlatformAdmin: KnownScopes(),
	RolePartnerAdmin:  KnownScopes(),
	RoleCustomerAdmin: KnownScopes(),
	RoleTechnician:    {ScopeReadingsRead, ScopeAlarmsRead, ScopeAlarmsWrite, ScopeDevicesRead, ScopeDevicesWrite, ScopeHealthRead},
	RoleViewer:        {ScopeReadingsRead, ScopeAlarmsRead, ScopeDevicesRead, ScopeHealthRead},
	RoleSupport:       {ScopeHealthRead},
}

// Limits on claim sizes, so a token cannot make the server allocate much.
const (
	maxSubject   = 256
	maxCustomers = 256
	maxSites     = 1024
	maxScopes    = 32
	maxScopeLen  = 100
)

// Claims are Legiond's private claims of an access token, next to the
// registered ones (iss, aud, exp, nbf, iat, jti) that the Issuer and the
// Verifier handle. On the wire: "sub", "role", "partner_id",
// "customer_ids" (a single "customer_id" is accepted too), "site_ids",
// "scope" (space-separated, RFC 9068) and "client_id".
type Claims struct {
	Subject     string
	Role        Role
	PartnerID   uuid.UUID
	CustomerIDs []uuid.UUID
	SiteIDs     []uuid.UUID
	Scopes      []string
	ClientID    string
}

type wireClaims struct {
	Subject     string   `json:"sub,omitempty"`
	Role        string   `json:"role,omitempty"`
	PartnerID   string   `json:"partner_id,omitempty"`
	CustomerID  string   `json:"customer_id,omitempty"`
	CustomerIDs []string `json:"customer_ids,omitempty"`
	SiteIDs     []string `json:"site_ids,omitempty"`
	Scope       string   `json:"scope,omitempty"`
	ClientID    string   `json:"client_id,omitempty"`
}

// MarshalJSON writes the wire form.
func (c Claims) MarshalJSON() ([]byte, error) {
	w := wireClaims{Subject: c.Subject, Role: string(c.Role), Scope: strings.Join(c.Scopes, " "), ClientID: c.ClientID}
	if c.PartnerID != uuid.Nil {
		w.PartnerID = c.PartnerID.String()
	}
	for _, id := range c.CustomerIDs {
		w.CustomerIDs = append(w.CustomerIDs, id.String())
	}
	for _, id := range c.SiteIDs {
		w.SiteIDs = append(w.SiteIDs, id.String())
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the wire form; a malformed id is an error naming the
// claim (wrapping ErrClaims).
func (c *Claims) UnmarshalJSON(b []byte) error {
	var w wireClaims
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %w", ErrClaims, err)
	}
	out := Claims{Subject: w.Subject, Role: Role(w.Role), ClientID: w.ClientID, Scopes: strings.Fields(w.Scope)}
	if len(out.Scopes) == 0 {
		out.Scopes = nil
	}
	var err error
	if w.PartnerID != "" {
		if out.PartnerID, err = parseID("partner_id", w.PartnerID); err != nil {
			return err
		}
	}
	ids := w.CustomerIDs
	if w.CustomerID != "" {
		ids = append([]string{w.CustomerID}, ids...)
	}
	if len(ids) > maxCustomers {
		return fmt.Errorf("%w: customer_ids: more than %d", ErrClaims, maxCustomers)
	}
	for i, s := range ids {
		id, err := parseID(fmt.Sprintf("customer_ids[%d]", i), s)
		if err != nil {
			return err
		}
		if !slices.Contains(out.CustomerIDs, id) {
			out.CustomerIDs = append(out.CustomerIDs, id)
		}
	}
	if len(w.SiteIDs) > maxSites {
		return fmt.Errorf("%w: site_ids: more than %d", ErrClaims, maxSites)
	}
	for i, s := range w.SiteIDs {
		id, err := parseID(fmt.Sprintf("site_ids[%d]", i), s)
		if err != nil {
			return err
		}
		out.SiteIDs = append(out.SiteIDs, id)
	}
	*c = out
	return nil
}

func parseID(claim, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil || len(s) != 36 {
		return uuid.Nil, fmt.Errorf("%w: %s: not a UUID", ErrClaims, claim)
	}
	return id, nil
}

// Validate checks that the claims make a coherent principal: a subject, a
// known role and the tenant fields that role needs (and no others). The
// error wraps ErrClaims and names the claim.
func (c Claims) Validate() error {
	bad := func(claim, why string) error { return fmt.Errorf("%w: %s: %s", ErrClaims, claim, why) }
	if c.Subject == "" {
		return bad("sub", "is required")
	}
	if len(c.Subject) > maxSubject {
		return bad("sub", "too long")
	}
	if len(c.CustomerIDs) > maxCustomers {
		return bad("customer_ids", fmt.Sprintf("more than %d", maxCustomers))
	}
	if len(c.SiteIDs) > maxSites {
		return bad("site_ids", fmt.Sprintf("more than %d", maxSites))
	}
	if len(c.Scopes) > maxScopes {
		return bad("scope", fmt.Sprintf("more than %d scopes", maxScopes))
	}
	for _, s := range c.Scopes {
		if s == "" || len(s) > maxScopeLen || strings.ContainsAny(s, " \t\r\n\"\\") {
			return bad("scope", "malformed scope")
		}
	}
	for _, ids := range [][]uuid.UUID{c.CustomerIDs, c.SiteIDs} {
		if slices.Contains(ids, uuid.Nil) {
			return bad("customer_ids/site_ids", "nil UUID")
		}
	}
	hasPartner, nCust, nSites := c.PartnerID != uuid.Nil, len(c.CustomerIDs), len(c.SiteIDs)
	switch c.Role {
	case RolePlatformAdmin:
		if hasPartner || nCust > 0 || nSites > 0 {
			return bad("role", "platform_admin carries no partner, customer or site")
		}
	case RolePartnerAdmin:
		if !hasPartner {
			return bad("partner_id", "is required for partner_admin")
		}
		if nCust > 0 || nSites > 0 {
			return bad("customer_ids", "partner_admin covers the whole partner; no customer or site ids")
		}
	case RoleCustomerAdmin:
		if nCust != 1 {
			return bad("customer_ids", "customer_admin needs exactly one customer")
		}
		if nSites > 0 {
			return bad("site_ids", "customer_admin covers the whole customer")
		}
	case RoleTechnician:
		if nCust == 0 {
			return bad("customer_ids", "technician needs the customers of their sites")
		}
		if nSites == 0 {
			return bad("site_ids", "technician needs assigned sites")
		}
	case RoleViewer:
		if !hasPartner && nCust == 0 {
			return bad("customer_ids", "viewer needs a partner or customers")
		}
		if hasPartner && nCust == 0 && nSites > 0 {
			return bad("site_ids", "a partner-wide viewer cannot be narrowed to sites without customers")
		}
	case RoleIntegration:
		if nCust == 0 {
			return bad("customer_ids", "integration needs named customers")
		}
		if c.ClientID == "" {
			return bad("client_id", "is required for integration")
		}
		if !slices.ContainsFunc(c.Scopes, func(s string) bool { return slices.Contains(KnownScopes(), s) }) {
			return bad("scope", "integration needs at least one known scope")
		}
	case RoleSupport:
		if hasPartner || nCust > 0 || nSites > 0 {
			return bad("role", "support carries no partner, customer or site (customer access is a break-glass grant)")
		}
	case "":
		return bad("role", "is required")
	default:
		return bad("role", fmt.Sprintf("unknown role %q", string(c.Role)))
	}
	return nil
}

// Principal is an authenticated caller: validated claims plus the token's
// id and expiry. The interceptor puts it into the request context.
type Principal struct {
	Subject     string      `json:"subject"`
	Role        Role        `json:"role"`
	PartnerID   uuid.UUID   `json:"partner_id,omitzero"`
	CustomerIDs []uuid.UUID `json:"customer_ids,omitempty"`
	SiteIDs     []uuid.UUID `json:"site_ids,omitempty"`
	Scopes      []string    `json:"scopes,omitempty"`
	ClientID    string      `json:"client_id,omitempty"`
	// TokenID is the token's jti ("" when absent).
	TokenID string `json:"token_id,omitempty"`
	// ExpiresAt is the token's exp; streams end there.
	ExpiresAt time.Time `json:"expires_at"`
	// BreakGlass is set (by api/services, per request, never from the
	// token) on a support principal acting under a break-glass grant.
	BreakGlass *BreakGlass `json:"break_glass,omitempty"`
}

// BreakGlass is an active break-glass grant a support principal acts
// under: read access to one customer until ExpiresAt.
type BreakGlass struct {
	GrantID    uuid.UUID `json:"grant_id"`
	CustomerID uuid.UUID `json:"customer_id"`
	Reason     string    `json:"reason"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// WithBreakGlass returns a copy of a support principal narrowed to the
// grant's customer with the grant's read scopes. Other roles are returned
// unchanged (grants are for support users only).
func (p *Principal) WithBreakGlass(g BreakGlass) *Principal {
	if p.Role != RoleSupport {
		return p
	}
	q := *p
	q.CustomerIDs = []uuid.UUID{g.CustomerID}
	q.SiteIDs, q.PartnerID = nil, uuid.Nil
	q.BreakGlass = &g
	return &q
}

// allCustomers reports principals that see every customer: platform
// administrators, and support users outside a break-glass grant (who see
// every customer's device health only; HasScope limits what).
func (p *Principal) allCustomers() bool {
	return p.Role == RolePlatformAdmin || (p.Role == RoleSupport && p.BreakGlass == nil)
}

// NewPrincipal validates claims and returns their principal.
func NewPrincipal(c Claims, tokenID string, expiresAt time.Time) (*Principal, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Principal{
		Subject: c.Subject, Role: c.Role, PartnerID: c.PartnerID,
		CustomerIDs: slices.Clone(c.CustomerIDs), SiteIDs: slices.Clone(c.SiteIDs), Scopes: slices.Clone(c.Scopes),
		ClientID: c.ClientID, TokenID: tokenID, ExpiresAt: expiresAt,
	}, nil
}

// PartnerWide reports a principal that covers all of a partner's
// customers (a partner admin, or a viewer with a partner and no customers).
func (p *Principal) PartnerWide() bool {
	return p.PartnerID != uuid.Nil && len(p.CustomerIDs) == 0 && (p.Role == RolePartnerAdmin || p.Role == RoleViewer)
}

// CanSeeCustomer reports whether the token allows the customer. For a
// platform admin it is always true. For a partner-wide principal the
// partner's customer list lives in the registry, not in the token: it
// returns true, and the PartnerScope from ScopeFor makes the registry's
// row-level security hide other partners' customers (NotFound). For
// everyone else the customer must be in customer_ids.
func (p *Principal) CanSeeCustomer(id uuid.UUID) bool {
	if id == uuid.Nil {
		return false
	}
	if p.allCustomers() || p.PartnerWide() {
		return true
	}
	return slices.Contains(p.CustomerIDs, id)
}

// CanSeeSite reports whether the token allows the site of the customer:
// the customer must be visible, and a principal narrowed to sites
// (technicians, narrowed viewers) must list the site.
func (p *Principal) CanSeeSite(customerID, siteID uuid.UUID) bool {
	if siteID == uuid.Nil || !p.CanSeeCustomer(customerID) {
		return false
	}
	return len(p.SiteIDs) == 0 || slices.Contains(p.SiteIDs, siteID)
}

// SiteRestricted reports a principal narrowed to the sites in SiteIDs.
func (p *Principal) SiteRestricted() bool { return len(p.SiteIDs) > 0 }

// HasScope reports whether the principal may do what scope s names.
// Integration clients have exactly their token's scopes; the human roles
// have the scopes their role implies (a viewer reads, a technician also
// acknowledges alarms and places devices, admins do everything within
// their tenant) and the token's scope claim does not widen them.
func (p *Principal) HasScope(s string) bool {
	switch {
	case p.Role == RoleIntegration:
		return slices.Contains(p.Scopes, s)
	case p.Role == RoleSupport && p.BreakGlass != nil:
		return slices.Contains(breakGlassScopes, s)
	}
	return slices.Contains(impliedScopes[p.Role], s)
}

// Actor names the principal for the registry's audit columns:
// "client:<client_id>" for integrations, "user:<sub>" otherwise.
func (p *Principal) Actor() string {
	if p.Role == RoleIntegration {
		return "client:" + p.ClientID
	}
	return "user:" + p.Subject
}

// Scope returns the registry scope covering everything the principal may
// see: the platform, its partner, or its single customer. A principal of
// several customers gets ErrScopeAmbiguous: use ScopeFor.
func (p *Principal) Scope() (postgres.Scope, error) {
	switch {
	case p.allCustomers():
		return postgres.PlatformScope(p.Actor()), nil
	case p.PartnerWide():
		return postgres.PartnerScope(p.PartnerID, p.Actor()), nil
	case len(p.CustomerIDs) == 1:
		return postgres.CustomerScope(p.CustomerIDs[0], p.Actor()), nil
	case len(p.CustomerIDs) > 1:
		return postgres.Scope{}, ErrScopeAmbiguous
	}
	return postgres.Scope{}, fmt.Errorf("%w: principal has no tenant", ErrClaims)
}

// ScopeFor returns the registry scope for acting on one customer:
// a customer scope for a platform admin (least privilege) and for
// principals that list the customer, the partner scope for partner-wide
// principals (row-level security then hides foreign customers), and
// ErrNotVisible otherwise.
func (p *Principal) ScopeFor(customerID uuid.UUID) (postgres.Scope, error) {
	if !p.CanSeeCustomer(customerID) {
		return postgres.Scope{}, ErrNotVisible
	}
	if p.PartnerWide() {
		return postgres.PartnerScope(p.PartnerID, p.Actor()), nil
	}
	return postgres.CustomerScope(customerID, p.Actor()), nil
}
