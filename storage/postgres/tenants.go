package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Audit are the created/updated columns every registry row carries.
type Audit struct {
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

const auditCols = `created_at, created_by, updated_at, updated_by`

func (a *Audit) dest() []any { return []any{&a.CreatedAt, &a.CreatedBy, &a.UpdatedAt, &a.UpdatedBy} }

// ListOptions filter and bound List calls. Zero IDs mean "any"; each
// repository uses the filters that apply to it.
type ListOptions struct {
	PartnerID  uuid.UUID
	CustomerID uuid.UUID
	SiteID     uuid.UUID
	// Limit bounds the result. Default 1000, at most 100000.
	Limit int
}

func (o ListOptions) limit() int {
	switch {
	case o.Limit <= 0:
		return 1000
	case o.Limit > 100000:
		return 100000
	}
	return o.Limit
}

// nullID maps uuid.Nil to NULL.
func nullID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}

func optID(p *uuid.UUID) uuid.UUID {
	if p == nil {
		return uuid.Nil
	}
	return *p
}

// requireKind fails unless the scope is one of kinds.
func (t *Tx) requireKind(op string, kinds ...ScopeKind) error {
	for _, k := range kinds {
		if t.scope.Kind == k {
			return nil
		}
	}
	return fmt.Errorf("%s: %w: not allowed in %s scope", op, ErrPermissionDenied, t.scope.Kind)
}

// exists reports whether a row with id is visible in the scope.
func (t *Tx) exists(ctx context.Context, table string, id uuid.UUID) (bool, error) {
	var ok bool
	err := t.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{Schema, table}.Sanitize()+` WHERE id = $1)`, id).Scan(&ok)
	return ok, err
}

// ---- partners ----

// Partner is an installer or service company managing customers.
type Partner struct {
	ID   uuid.UUID `json:"id"`
	Name string    `json:"name"`
	Audit
}

// Partners is the partner repository of a transaction.
type Partners struct{ t *Tx }

// Partners returns the partner repository.
func (t *Tx) Partners() Partners { return Partners{t} }

// NewPartner is the input of Partners.Create.
type NewPartner struct{ Name string }

// Create adds a partner (platform scope only).
func (r Partners) Create(ctx context.Context, in NewPartner) (Partner, error) {
	var p Partner
	if err := r.t.requireKind("create partner", ScopePlatform); err != nil {
		return p, err
	}
	name, err := checkText("name", in.Name, true, 200)
	if err != nil {
		return p, err
	}
	err = r.t.tx.QueryRow(ctx, `INSERT INTO partners (name) VALUES ($1) RETURNING id, name, `+auditCols, name).
		Scan(append([]any{&p.ID, &p.Name}, p.dest()...)...)
	return p, mapErr("create partner", err)
}

// Get returns a partner visible in the scope.
func (r Partners) Get(ctx context.Context, id uuid.UUID) (Partner, error) {
	var p Partner
	err := r.t.tx.QueryRow(ctx, `SELECT id, name, `+auditCols+` FROM partners WHERE id = $1`, id).
		Scan(append([]any{&p.ID, &p.Name}, p.dest()...)...)
	return p, mapErr("get partner", err)
}

// List returns the partners visible in the scope, by name.
func (r Partners) List(ctx context.Context, o ListOptions) ([]Partner, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT id, name, `+auditCols+` FROM partners ORDER BY lower(name), id LIMIT $1`, o.limit())
	if err != nil {
		return nil, mapErr("list partners", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Partner, error) {
		var p Partner
		err := row.Scan(append([]any{&p.ID, &p.Name}, p.dest()...)...)
		return p, err
	})
	return out, mapErr("list partners", err)
}

// ---- customers ----

// Customer is a tenant: it owns sites, tap points, devices.
type Customer struct {
	ID        uuid.UUID  `json:"id"`
	PartnerID *uuid.UUID `json:"partner_id,omitempty"`
	Name      string     `json:"name"`
	Audit
}

// Customers is the customer repository of a transaction.
type Customers struct{ t *Tx }

// Customers returns the customer repository.
func (t *Tx) Customers() Customers { return Customers{t} }

// NewCustomer is the input of Customers.Create. PartnerID defaults to the
// caller's partner in a partner scope; under the platform scope it may be
// nil (a direct customer).
type NewCustomer struct {
	PartnerID *uuid.UUID
	Name      string
}

// Create adds a customer (platform or partner scope).
func (r Customers) Create(ctx context.Context, in NewCustomer) (Customer, error) {
	var c Customer
	if err := r.t.requireKind("create customer", ScopePlatform, ScopePartner); err != nil {
		return c, err
	}
	name, err := checkText("name", in.Name, true, 200)
	if err != nil {
		return c, err
	}
	partner := optID(in.PartnerID)
	if r.t.scope.Kind == ScopePartner {
		if partner == uuid.Nil {
			partner = r.t.scope.PartnerID
		}
		if partner != r.t.scope.PartnerID {
			return c, notFoundRef("partner_id", "partner")
		}
	}
	if partner != uuid.Nil {
		ok, err := r.t.exists(ctx, "partners", partner)
		if err != nil {
			return c, mapErr("create customer", err)
		}
		if !ok {
			return c, notFoundRef("partner_id", "partner")
		}
	}
	err = r.t.tx.QueryRow(ctx, `INSERT INTO customers (partner_id, name) VALUES ($1, $2)
		RETURNING id, partner_id, name, `+auditCols, nullID(partner), name).
		Scan(append([]any{&c.ID, &c.PartnerID, &c.Name}, c.dest()...)...)
	return c, mapErr("create customer", err)
}

// Get returns a customer visible in the scope.
func (r Customers) Get(ctx context.Context, id uuid.UUID) (Customer, error) {
	var c Customer
	err := r.t.tx.QueryRow(ctx, `SELECT id, partner_id, name, `+auditCols+` FROM customers WHERE id = $1`, id).
		Scan(append([]any{&c.ID, &c.PartnerID, &c.Name}, c.dest()...)...)
	return c, mapErr("get customer", err)
}

// List returns the customers visible in the scope, by name.
func (r Customers) List(ctx context.Context, o ListOptions) ([]Customer, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT id, partner_id, name, `+auditCols+` FROM customers
		WHERE ($1::uuid IS NULL OR partner_id = $1) ORDER BY lower(name), id LIMIT $2`, nullID(o.PartnerID), o.limit())
	if err != nil {
		return nil, mapErr("list customers", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Customer, error) {
		var c Customer
		err := row.Scan(append([]any{&c.ID, &c.PartnerID, &c.Name}, c.dest()...)...)
		return c, err
	})
	return out, mapErr("list customers", err)
}

// customerFor resolves the customer a new row belongs to: the given one,
// else the caller's own in a customer scope; it must be visible.
func (t *Tx) customerFor(ctx context.Context, given uuid.UUID) (uuid.UUID, error) {
	if given == uuid.Nil {
		if t.scope.Kind != ScopeCustomer {
			return uuid.Nil, fieldErr("customer_id", "is required")
		}
		given = t.scope.CustomerID
	}
	ok, err := t.exists(ctx, "customers", given)
	if err != nil {
		return uuid.Nil, mapErr("check customer", err)
	}
	if !ok {
		return uuid.Nil, notFoundRef("customer_id", "customer")
	}
	return given, nil
}

// ---- sites ----

// Site is a building or installation of a customer.
type Site struct {
	ID          uuid.UUID   `json:"id"`
	CustomerID  uuid.UUID   `json:"customer_id"`
	Name        string      `json:"name"`
	Street      string      `json:"street,omitempty"`
	PostalCode  string      `json:"postal_code,omitempty"`
	City        string      `json:"city,omitempty"`
	Country     string      `json:"country"`
	RuleProfile RuleProfile `json:"rule_profile"`
	Overrides   Overrides   `json:"overrides"`
	Audit
}

// Sites is the site repository of a transaction.
type Sites struct{ t *Tx }

// Sites returns the site repository.
func (t *Tx) Sites() Sites { return Sites{t} }

// NewSite is the input of Sites.Create. CustomerID defaults to the
// caller's customer. Country must be in the EEA. RuleProfile defaults to
// DefaultProfileFor(Country).
type NewSite struct {
	CustomerID  uuid.UUID
	Name        string
	Street      string
	PostalCode  string
	City        string
	Country     string
	RuleProfile RuleProfile
	Overrides   Overrides
}

const siteCols = `id, customer_id, name, street, postal_code, city, country, rule_profile, overrides, ` + auditCols

func scanSite(row pgx.Row) (Site, error) {
	var s Site
	var ov []byte
	err := row.Scan(append([]any{&s.ID, &s.CustomerID, &s.Name, &s.Street, &s.PostalCode, &s.City, &s.Country, &s.RuleProfile, &ov}, s.dest()...)...)
	if err == nil {
		err = json.Unmarshal(ov, &s.Overrides)
	}
	return s, err
}

// Create adds a site after the residency check.
func (r Sites) Create(ctx context.Context, in NewSite) (Site, error) {
	var err error
	if in.Name, err = checkText("name", in.Name, true, 200); err != nil {
		return Site{}, err
	}
	if in.Street, err = checkText("street", in.Street, false, 200); err != nil {
		return Site{}, err
	}
	if in.PostalCode, err = checkText("postal_code", in.PostalCode, false, 20); err != nil {
		return Site{}, err
	}
	if in.City, err = checkText("city", in.City, false, 100); err != nil {
		return Site{}, err
	}
	if in.Country, err = CheckResidency(in.Country); err != nil {
		return Site{}, err
	}
	if in.RuleProfile, err = ParseRuleProfile(string(in.RuleProfile), DefaultProfileFor(in.Country)); err != nil {
		return Site{}, fieldErr("rule_profile", err.Error())
	}
	if err := in.Overrides.Validate(); err != nil {
		return Site{}, err
	}
	cust, err := r.t.customerFor(ctx, in.CustomerID)
	if err != nil {
		return Site{}, err
	}
	ov, _ := json.Marshal(in.Overrides)
	s, err := scanSite(r.t.tx.QueryRow(ctx, `INSERT INTO sites (customer_id, name, street, postal_code, city, country, rule_profile, overrides)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+siteCols,
		cust, in.Name, in.Street, in.PostalCode, in.City, in.Country, string(in.RuleProfile), ov))
	return s, mapErr("create site", err)
}

// Get returns a site visible in the scope.
func (r Sites) Get(ctx context.Context, id uuid.UUID) (Site, error) {
	s, err := scanSite(r.t.tx.QueryRow(ctx, `SELECT `+siteCols+` FROM sites WHERE id = $1`, id))
	return s, mapErr("get site", err)
}

// List returns the sites visible in the scope, optionally of one customer.
func (r Sites) List(ctx context.Context, o ListOptions) ([]Site, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT `+siteCols+` FROM sites WHERE ($1::uuid IS NULL OR customer_id = $1)
		ORDER BY lower(name), id LIMIT $2`, nullID(o.CustomerID), o.limit())
	if err != nil {
		return nil, mapErr("list sites", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Site, error) { return scanSite(row) })
	return out, mapErr("list sites", err)
}

// ---- tap points ----

// TapPoint is a monitored point of a site's water installation.
type TapPoint struct {
	ID         uuid.UUID `json:"id"`
	CustomerID uuid.UUID `json:"customer_id"`
	SiteID     uuid.UUID `json:"site_id"`
	Name       string    `json:"name"`
	Kind       TapKind   `json:"kind"`
	// FlushInterval is 0 when the rule profile's interval applies.
	FlushInterval time.Duration `json:"flush_interval"`
	Overrides     Overrides     `json:"overrides"`
	Audit
}

// TapPoints is the tap point repository of a transaction.
type TapPoints struct{ t *Tx }

// TapPoints returns the tap point repository.
func (t *Tx) TapPoints() TapPoints { return TapPoints{t} }

// NewTapPoint is the input of TapPoints.Create; the customer is the site's.
type NewTapPoint struct {
	SiteID uuid.UUID
	Name   string
	Kind   TapKind
	// FlushInterval overrides the profile's (1 h to 90 days); 0 keeps it.
	FlushInterval time.Duration
	Overrides     Overrides
}

const tapCols = `id, customer_id, site_id, name, kind, flush_interval_s, overrides, ` + auditCols

func scanTap(row pgx.Row) (TapPoint, error) {
	var tp TapPoint
	var ov []byte
	var fi *int32
	err := row.Scan(append([]any{&tp.ID, &tp.CustomerID, &tp.SiteID, &tp.Name, &tp.Kind, &fi, &ov}, tp.dest()...)...)
	if err == nil {
		if fi != nil {
			tp.FlushInterval = time.Duration(*fi) * time.Second
		}
		err = json.Unmarshal(ov, &tp.Overrides)
	}
	return tp, err
}

// Create adds a tap point to a visible site.
func (r TapPoints) Create(ctx context.Context, in NewTapPoint) (TapPoint, error) {
	var err error
	if in.Name, err = checkText("name", in.Name, true, 200); err != nil {
		return TapPoint{}, err
	}
	if in.Kind, err = ParseTapKind(string(in.Kind)); err != nil {
		return TapPoint{}, fieldErr("kind", err.Error())
	}
	var fi any
	if in.FlushInterval != 0 {
		if in.FlushInterval < time.Hour || in.FlushInterval > 90*24*time.Hour || in.FlushInterval%time.Second != 0 {
			return TapPoint{}, fieldErr("flush_interval", "must be whole seconds between 1h and 90 days")
		}
		fi = int32(in.FlushInterval / time.Second)
	}
	if err := in.Overrides.Validate(); err != nil {
		return TapPoint{}, err
	}
	if in.SiteID == uuid.Nil {
		return TapPoint{}, fieldErr("site_id", "is required")
	}
	var cust uuid.UUID
	if err := r.t.tx.QueryRow(ctx, `SELECT customer_id FROM sites WHERE id = $1`, in.SiteID).Scan(&cust); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return TapPoint{}, notFoundRef("site_id", "site")
		}
		return TapPoint{}, mapErr("create tap point", err)
	}
	ov, _ := json.Marshal(in.Overrides)
	tp, err := scanTap(r.t.tx.QueryRow(ctx, `INSERT INTO tap_points (customer_id, site_id, name, kind, flush_interval_s, overrides)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+tapCols, cust, in.SiteID, in.Name, string(in.Kind), fi, ov))
	return tp, mapErr("create tap point", err)
}

// Get returns a tap point visible in the scope.
func (r TapPoints) Get(ctx context.Context, id uuid.UUID) (TapPoint, error) {
	tp, err := scanTap(r.t.tx.QueryRow(ctx, `SELECT `+tapCols+` FROM tap_points WHERE id = $1`, id))
	return tp, mapErr("get tap point", err)
}

// List returns the tap points visible in the scope, optionally filtered.
func (r TapPoints) List(ctx context.Context, o ListOptions) ([]TapPoint, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT `+tapCols+` FROM tap_points
		WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::uuid IS NULL OR site_id = $2)
		ORDER BY lower(name), id LIMIT $3`, nullID(o.CustomerID), nullID(o.SiteID), o.limit())
	if err != nil {
		return nil, mapErr("list tap points", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TapPoint, error) { return scanTap(row) })
	return out, mapErr("list tap points", err)
}
