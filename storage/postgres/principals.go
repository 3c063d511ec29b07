package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// owner resolves the partner/customer owner of a row: at most one of the
// two; none given means the caller's own tenant (or, under the platform
// scope and when allowed, the platform itself). The owner must be visible.
func (t *Tx) owner(ctx context.Context, partner, customer uuid.UUID, platformOK bool) (uuid.UUID, uuid.UUID, error) {
	if partner != uuid.Nil && customer != uuid.Nil {
		return uuid.Nil, uuid.Nil, fieldErr("customer_id", "give a partner or a customer, not both")
	}
	if partner == uuid.Nil && customer == uuid.Nil {
		switch t.scope.Kind {
		case ScopeCustomer:
			customer = t.scope.CustomerID
		case ScopePartner:
			partner = t.scope.PartnerID
		default:
			if !platformOK {
				return uuid.Nil, uuid.Nil, fieldErr("customer_id", "a partner or a customer is required")
			}
			return uuid.Nil, uuid.Nil, nil
		}
	}
	if partner != uuid.Nil {
		ok, err := t.exists(ctx, "partners", partner)
		if err != nil {
			return uuid.Nil, uuid.Nil, mapErr("check partner", err)
		}
		if !ok {
			return uuid.Nil, uuid.Nil, notFoundRef("partner_id", "partner")
		}
		return partner, uuid.Nil, nil
	}
	c, err := t.customerFor(ctx, customer)
	return uuid.Nil, c, err
}

// ---- gateways ----

// Gateway is a LoRaWAN gateway owned by a partner or a customer.
type Gateway struct {
	GatewayEUI    EUI64         `json:"gateway_eui"`
	PartnerID     *uuid.UUID    `json:"partner_id,omitempty"`
	CustomerID    *uuid.UUID    `json:"customer_id,omitempty"`
	SiteID        *uuid.UUID    `json:"site_id,omitempty"`
	Name          string        `json:"name,omitempty"`
	StatsInterval time.Duration `json:"stats_interval"`
	Audit
}

// NewGateway is the input of Gateways.Create. With a site, the owner is
// the site's customer. StatsInterval defaults to 5 min (10 s to 1 h).
type NewGateway struct {
	GatewayEUI    EUI64
	PartnerID     *uuid.UUID
	CustomerID    *uuid.UUID
	SiteID        *uuid.UUID
	Name          string
	StatsInterval time.Duration
}

// Gateways is the gateway repository of a transaction.
type Gateways struct{ t *Tx }

// Gateways returns the gateway repository.
func (t *Tx) Gateways() Gateways { return Gateways{t} }

const gatewayCols = `gateway_eui, partner_id, customer_id, site_id, name, stats_interval_s, ` + auditCols

func scanGateway(row pgx.Row) (Gateway, error) {
	var g Gateway
	var eui []byte
	var si int32
	err := row.Scan(append([]any{&eui, &g.PartnerID, &g.CustomerID, &g.SiteID, &g.Name, &si}, g.dest()...)...)
	copy(g.GatewayEUI[:], eui)
	g.StatsInterval = time.Duration(si) * time.Second
	return g, err
}

// Create registers a gateway.
func (r Gateways) Create(ctx context.Context, in NewGateway) (Gateway, error) {
	if in.GatewayEUI.IsZero() {
		return Gateway{}, fieldErr("gateway_eui", "is required (16 hex digits, not all zero)")
	}
	name, err := checkText("name", in.Name, false, 200)
	if err != nil {
		return Gateway{}, err
	}
	if in.StatsInterval == 0 {
		in.StatsInterval = 5 * time.Minute
	}
	if in.StatsInterval < 10*time.Second || in.StatsInterval > time.Hour || in.StatsInterval%time.Second != 0 {
		return Gateway{}, fieldErr("stats_interval", "must be whole seconds between 10 s and 1 h")
	}
	partner, customer := optID(in.PartnerID), optID(in.CustomerID)
	site := optID(in.SiteID)
	if site != uuid.Nil {
		var sCust uuid.UUID
		err := r.t.tx.QueryRow(ctx, `SELECT customer_id FROM sites WHERE id = $1`, site).Scan(&sCust)
		if errors.Is(err, pgx.ErrNoRows) {
			return Gateway{}, notFoundRef("site_id", "site")
		} else if err != nil {
			return Gateway{}, mapErr("create gateway", err)
		}
		if partner != uuid.Nil || (customer != uuid.Nil && customer != sCust) {
			return Gateway{}, fieldErr("customer_id", "a gateway at a site belongs to the site's customer")
		}
		customer = sCust
	}
	if partner, customer, err = r.t.owner(ctx, partner, customer, false); err != nil {
		return Gateway{}, err
	}
	g, err := scanGateway(r.t.tx.QueryRow(ctx, `INSERT INTO gateways (gateway_eui, partner_id, customer_id, site_id, name, stats_interval_s)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+gatewayCols,
		in.GatewayEUI[:], nullID(partner), nullID(customer), nullID(site), name, int32(in.StatsInterval/time.Second)))
	return g, mapErr("create gateway", err)
}

// Get returns a gateway visible in the scope.
func (r Gateways) Get(ctx context.Context, eui EUI64) (Gateway, error) {
	g, err := scanGateway(r.t.tx.QueryRow(ctx, `SELECT `+gatewayCols+` FROM gateways WHERE gateway_eui = $1`, eui[:]))
	return g, mapErr("get gateway", err)
}

// List returns the gateways visible in the scope.
func (r Gateways) List(ctx context.Context, o ListOptions) ([]Gateway, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT `+gatewayCols+` FROM gateways
		WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::uuid IS NULL OR partner_id = $2)
		ORDER BY gateway_eui LIMIT $3`, nullID(o.CustomerID), nullID(o.PartnerID), o.limit())
	if err != nil {
		return nil, mapErr("list gateways", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Gateway, error) { return scanGateway(row) })
	return out, mapErr("list gateways", err)
}

// ---- users ----

// User is a person who signs in; owned by a partner, a customer, or
// (neither) the platform's staff.
type User struct {
	ID          uuid.UUID  `json:"id"`
	PartnerID   *uuid.UUID `json:"partner_id,omitempty"`
	CustomerID  *uuid.UUID `json:"customer_id,omitempty"`
	Email       string     `json:"email"`
	DisplayName string     `json:"display_name,omitempty"`
	Phone       string     `json:"phone,omitempty"`
	Disabled    bool       `json:"disabled"`
	Audit
}

// NewUser is the input of Users.Create; the owner defaults to the
// caller's tenant (the platform under the platform scope).
type NewUser struct {
	PartnerID   *uuid.UUID
	CustomerID  *uuid.UUID
	Email       string
	DisplayName string
	// Phone is an optional contact number: digits, spaces and + ( ) . / -,
	// at most 32 characters.
	Phone string
}

// Users is the user repository of a transaction.
type Users struct{ t *Tx }

// Users returns the user repository.
func (t *Tx) Users() Users { return Users{t} }

const userCols = `id, partner_id, customer_id, email, display_name, phone, disabled, ` + auditCols

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(append([]any{&u.ID, &u.PartnerID, &u.CustomerID, &u.Email, &u.DisplayName, &u.Phone, &u.Disabled}, u.dest()...)...)
	return u, err
}

// Create adds a user.
func (r Users) Create(ctx context.Context, in NewUser) (User, error) {
	email, err := checkText("email", in.Email, true, 254)
	if err != nil {
		return User{}, err
	}
	if at := strings.IndexByte(email, '@'); at < 1 || at == len(email)-1 || strings.ContainsAny(email, " ,;<>") {
		return User{}, fieldErr("email", "is not an e-mail address")
	}
	display, err := checkText("display_name", in.DisplayName, false, 200)
	if err != nil {
		return User{}, err
	}
	phone, err := checkText("phone", in.Phone, false, 32)
	if err != nil {
		return User{}, err
	}
	if strings.Trim(phone, "+0123456789 ()./-") != "" {
		return User{}, fieldErr("phone", "digits, spaces and + ( ) . / - only")
	}
	partner, customer, err := r.t.owner(ctx, optID(in.PartnerID), optID(in.CustomerID), true)
	if err != nil {
		return User{}, err
	}
	u, err := scanUser(r.t.tx.QueryRow(ctx, `INSERT INTO users (partner_id, customer_id, email, display_name, phone)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+userCols, nullID(partner), nullID(customer), email, display, phone))
	return u, mapErr("create user", err)
}

// List returns the users visible in the scope.
func (r Users) List(ctx context.Context, o ListOptions) ([]User, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT `+userCols+` FROM users
		WHERE ($1::uuid IS NULL OR customer_id = $1) ORDER BY lower(email) LIMIT $2`, nullID(o.CustomerID), o.limit())
	if err != nil {
		return nil, mapErr("list users", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) { return scanUser(row) })
	return out, mapErr("list users", err)
}

// ---- API clients ----

// APIClient is an integration's credential (OAuth2 client credentials).
type APIClient struct {
	ID         uuid.UUID  `json:"id"`
	ClientID   string     `json:"client_id"`
	PartnerID  *uuid.UUID `json:"partner_id,omitempty"`
	CustomerID *uuid.UUID `json:"customer_id,omitempty"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	Disabled   bool       `json:"disabled"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	Audit
}

// NewAPIClient is the input of APIClients.Create.
type NewAPIClient struct {
	PartnerID  *uuid.UUID
	CustomerID *uuid.UUID
	Name       string
	Scopes     []string
	ExpiresAt  *time.Time
}

// APIClients is the API client repository of a transaction.
type APIClients struct{ t *Tx }

// APIClients returns the API client repository.
func (t *Tx) APIClients() APIClients { return APIClients{t} }

const apiClientCols = `id, client_id, partner_id, customer_id, name, scopes, disabled, expires_at, ` + auditCols

func scanAPIClient(row pgx.Row) (APIClient, error) {
	var c APIClient
	err := row.Scan(append([]any{&c.ID, &c.ClientID, &c.PartnerID, &c.CustomerID, &c.Name, &c.Scopes, &c.Disabled, &c.ExpiresAt}, c.dest()...)...)
	return c, err
}

// HashClientSecret is how client secrets are stored (they are 256-bit
// random values, so a plain SHA-256 suffices).
func HashClientSecret(secret string) []byte {
	s := sha256.Sum256([]byte(secret))
	return s[:]
}

// Create adds an API client and returns its secret, which is not stored
// and cannot be shown again.
func (r APIClients) Create(ctx context.Context, in NewAPIClient) (APIClient, string, error) {
	name, err := checkText("name", in.Name, true, 200)
	if err != nil {
		return APIClient{}, "", err
	}
	if len(in.Scopes) > 32 {
		return APIClient{}, "", fieldErr("scopes", "at most 32 scopes")
	}
	for _, s := range in.Scopes {
		if _, err := checkText("scopes", s, true, 100); err != nil {
			return APIClient{}, "", err
		}
	}
	if in.Scopes == nil {
		in.Scopes = []string{}
	}
	partner, customer, err := r.t.owner(ctx, optID(in.PartnerID), optID(in.CustomerID), true)
	if err != nil {
		return APIClient{}, "", err
	}
	var idb [8]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return APIClient{}, "", fmt.Errorf("create api client: %w", err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return APIClient{}, "", fmt.Errorf("create api client: %w", err)
	}
	secret := "lgs_" + base64.RawURLEncoding.EncodeToString(sec[:])
	c, err := scanAPIClient(r.t.tx.QueryRow(ctx, `INSERT INTO api_clients (client_id, partner_id, customer_id, name, secret_hash, scopes, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+apiClientCols,
		"lgc_"+hex.EncodeToString(idb[:]), nullID(partner), nullID(customer), name, HashClientSecret(secret), in.Scopes, in.ExpiresAt))
	if err != nil {
		return APIClient{}, "", mapErr("create api client", err)
	}
	return c, secret, nil
}

// List returns the API clients visible in the scope.
func (r APIClients) List(ctx context.Context, o ListOptions) ([]APIClient, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT `+apiClientCols+` FROM api_clients
		WHERE ($1::uuid IS NULL OR customer_id = $1) ORDER BY lower(name), id LIMIT $2`, nullID(o.CustomerID), o.limit())
	if err != nil {
		return nil, mapErr("list api clients", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIClient, error) { return scanAPIClient(row) })
	return out, mapErr("list api clients", err)
}

// ---- role grants ----

// Role is what a grant allows; the api package interprets it.
type Role string

// Roles.
const (
	RoleAdmin       Role = "admin"
	RoleManager     Role = "manager"
	RoleTechnician  Role = "technician"
	RoleViewer      Role = "viewer"
	RoleIntegration Role = "integration"
)

// RoleGrant gives a user or API client a role over the platform (no owner
// field set), a partner, a customer, or one site of a customer.
type RoleGrant struct {
	ID          uuid.UUID  `json:"id"`
	UserID      *uuid.UUID `json:"user_id,omitempty"`
	APIClientID *uuid.UUID `json:"api_client_id,omitempty"`
	Role        Role       `json:"role"`
	PartnerID   *uuid.UUID `json:"partner_id,omitempty"`
	CustomerID  *uuid.UUID `json:"customer_id,omitempty"`
	SiteID      *uuid.UUID `json:"site_id,omitempty"`
	Audit
}

// NewRoleGrant is the input of RoleGrants.Create: exactly one principal;
// the target defaults to the caller's tenant (platform-wide only under the
// platform scope). A site grant is under the site's customer.
type NewRoleGrant struct {
	UserID      *uuid.UUID
	APIClientID *uuid.UUID
	Role        Role
	PartnerID   *uuid.UUID
	CustomerID  *uuid.UUID
	SiteID      *uuid.UUID
}

// RoleGrants is the role grant repository of a transaction.
type RoleGrants struct{ t *Tx }

// RoleGrants returns the role grant repository.
func (t *Tx) RoleGrants() RoleGrants { return RoleGrants{t} }

const grantCols = `id, user_id, api_client_id, role, partner_id, customer_id, site_id, ` + auditCols

func scanGrant(row pgx.Row) (RoleGrant, error) {
	var g RoleGrant
	err := row.Scan(append([]any{&g.ID, &g.UserID, &g.APIClientID, &g.Role, &g.PartnerID, &g.CustomerID, &g.SiteID}, g.dest()...)...)
	return g, err
}

// Create adds a role grant. The principal must be visible in the scope.
func (r RoleGrants) Create(ctx context.Context, in NewRoleGrant) (RoleGrant, error) {
	switch in.Role {
	case RoleAdmin, RoleManager, RoleTechnician, RoleViewer, RoleIntegration:
	default:
		return RoleGrant{}, fieldErr("role", "must be admin, manager, technician, viewer or integration")
	}
	user, client := optID(in.UserID), optID(in.APIClientID)
	if (user == uuid.Nil) == (client == uuid.Nil) {
		return RoleGrant{}, fieldErr("user_id", "give exactly one of user_id and api_client_id")
	}
	if user != uuid.Nil {
		if ok, err := r.t.exists(ctx, "users", user); err != nil {
			return RoleGrant{}, mapErr("create role grant", err)
		} else if !ok {
			return RoleGrant{}, notFoundRef("user_id", "user")
		}
	} else {
		if ok, err := r.t.exists(ctx, "api_clients", client); err != nil {
			return RoleGrant{}, mapErr("create role grant", err)
		} else if !ok {
			return RoleGrant{}, notFoundRef("api_client_id", "API client")
		}
	}
	partner, customer, site := optID(in.PartnerID), optID(in.CustomerID), optID(in.SiteID)
	if site != uuid.Nil {
		var sCust uuid.UUID
		err := r.t.tx.QueryRow(ctx, `SELECT customer_id FROM sites WHERE id = $1`, site).Scan(&sCust)
		if errors.Is(err, pgx.ErrNoRows) {
			return RoleGrant{}, notFoundRef("site_id", "site")
		} else if err != nil {
			return RoleGrant{}, mapErr("create role grant", err)
		}
		if partner != uuid.Nil || (customer != uuid.Nil && customer != sCust) {
			return RoleGrant{}, fieldErr("customer_id", "a site grant is under the site's customer")
		}
		customer = sCust
	}
	partner, customer, err := r.t.owner(ctx, partner, customer, true)
	if err != nil {
		return RoleGrant{}, err
	}
	g, err := scanGrant(r.t.tx.QueryRow(ctx, `INSERT INTO role_grants (user_id, api_client_id, role, partner_id, customer_id, site_id)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+grantCols,
		nullID(user), nullID(client), string(in.Role), nullID(partner), nullID(customer), nullID(site)))
	return g, mapErr("create role grant", err)
}

// List returns the role grants visible in the scope.
func (r RoleGrants) List(ctx context.Context, o ListOptions) ([]RoleGrant, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT `+grantCols+` FROM role_grants
		WHERE ($1::uuid IS NULL OR customer_id = $1) ORDER BY created_at, id LIMIT $2`, nullID(o.CustomerID), o.limit())
	if err != nil {
		return nil, mapErr("list role grants", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RoleGrant, error) { return scanGrant(row) })
	return out, mapErr("list role grants", err)
}
