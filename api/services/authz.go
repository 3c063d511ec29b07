package services

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/hub"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// caller returns the authenticated principal. Handlers are only mounted
// behind the authentication interceptor, so a missing one is a wiring bug;
// it is refused all the same.
func caller(ctx context.Context) (*auth.Principal, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrTokenMissing)
	}
	return p, nil
}

// need refuses a principal that has none of scopes.
func need(p *auth.Principal, scopes ...string) error {
	for _, sc := range scopes {
		if p.HasScope(sc) {
			return nil
		}
	}
	return denied("requires scope %s", strings.Join(scopes, " or "))
}

// listScopes are the registry scopes a list runs under: everything the
// caller may see, or only the named customer's (NotFound when hidden).
func (s *Services) listScopes(ctx context.Context, op string, p *auth.Principal, customer uuid.UUID) ([]postgres.Scope, error) {
	if customer == uuid.Nil {
		return scopes(p), nil
	}
	_, sc, err := s.findCustomer(ctx, p, customer)
	if err != nil {
		return nil, s.toConnect(ctx, op, err)
	}
	return []postgres.Scope{sc}, nil
}

// needPlatformAdmin refuses everyone but platform administrators.
func needPlatformAdmin(p *auth.Principal, what string) error {
	if p.Role != auth.RolePlatformAdmin {
		return denied("only platform administrators may %s", what)
	}
	return nil
}

// scopes returns the registry scopes that together cover everything p may
// see: the platform, its partner, or one scope per listed customer. They
// come from the verified token only.
func scopes(p *auth.Principal) []postgres.Scope {
	if sc, err := p.Scope(); err == nil {
		return []postgres.Scope{sc}
	}
	out := make([]postgres.Scope, 0, len(p.CustomerIDs))
	for _, c := range p.CustomerIDs {
		if sc, err := p.ScopeFor(c); err == nil {
			out = append(out, sc)
		}
	}
	return out
}

// visible applies the token's customer and site restrictions on top of
// row-level security (which already hid other tenants). site may be nil
// (an unplaced device): site-restricted principals do not see those.
func visible(p *auth.Principal, customer uuid.UUID, site *uuid.UUID) bool {
	if !p.CanSeeCustomer(customer) {
		return false
	}
	if !p.SiteRestricted() {
		return true
	}
	return site != nil && p.CanSeeSite(customer, *site)
}

// inScopes runs fn in each of p's scopes until it returns something other
// than ErrNotFound. It returns postgres.ErrNotFound when no scope had it.
func (s *Services) inScopes(ctx context.Context, p *auth.Principal, fn func(tx *postgres.Tx) error) error {
	for _, sc := range scopes(p) {
		err := s.d.Registry.InTx(ctx, sc, fn)
		if errors.Is(err, postgres.ErrNotFound) {
			continue
		}
		return err
	}
	return postgres.ErrNotFound
}

// findDevice returns a device the caller may see, or NotFound.
func (s *Services) findDevice(ctx context.Context, p *auth.Principal, eui postgres.EUI64, what string) (postgres.Device, error) {
	var d postgres.Device
	err := s.inScopes(ctx, p, func(tx *postgres.Tx) error {
		var err error
		d, err = tx.Devices().Get(ctx, eui)
		return err
	})
	if errors.Is(err, postgres.ErrNotFound) || (err == nil && !visible(p, d.CustomerID, d.SiteID)) {
		return postgres.Device{}, notFound(what)
	}
	return d, err
}

// findSite returns a site the caller may see, or NotFound.
func (s *Services) findSite(ctx context.Context, p *auth.Principal, id uuid.UUID) (postgres.Site, error) {
	var site postgres.Site
	err := s.inScopes(ctx, p, func(tx *postgres.Tx) error {
		var err error
		site, err = tx.Sites().Get(ctx, id)
		return err
	})
	if errors.Is(err, postgres.ErrNotFound) || (err == nil && !visible(p, site.CustomerID, &site.ID)) {
		return postgres.Site{}, notFound("site " + id.String())
	}
	return site, err
}

// findTapPoint returns a tap point the caller may see, or NotFound.
func (s *Services) findTapPoint(ctx context.Context, p *auth.Principal, id uuid.UUID) (postgres.TapPoint, error) {
	var tp postgres.TapPoint
	err := s.inScopes(ctx, p, func(tx *postgres.Tx) error {
		var err error
		tp, err = tx.TapPoints().Get(ctx, id)
		return err
	})
	if errors.Is(err, postgres.ErrNotFound) || (err == nil && !visible(p, tp.CustomerID, &tp.SiteID)) {
		return postgres.TapPoint{}, notFound("tap point " + id.String())
	}
	return tp, err
}

// findCustomer returns a customer the caller may see, with the scope to
// act on it, or NotFound.
func (s *Services) findCustomer(ctx context.Context, p *auth.Principal, id uuid.UUID) (postgres.Customer, postgres.Scope, error) {
	sc, err := p.ScopeFor(id)
	if err != nil {
		return postgres.Customer{}, sc, notFound("customer " + id.String())
	}
	var c postgres.Customer
	err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
		var err error
		c, err = tx.Customers().Get(ctx, id)
		return err
	})
	if errors.Is(err, postgres.ErrNotFound) {
		return c, sc, notFound("customer " + id.String())
	}
	return c, sc, err
}

// scopeFor is the least-privilege scope to act on one of the caller's
// customers (already found visible).
func scopeFor(p *auth.Principal, customer uuid.UUID) (postgres.Scope, error) {
	sc, err := p.ScopeFor(customer)
	if err != nil {
		return sc, notFound("customer " + customer.String())
	}
	return sc, nil
}

// devicesIn lists the devices the caller may see: of one site when site
// is set, else every one of its scopes. At most max are returned.
func (s *Services) devicesIn(ctx context.Context, p *auth.Principal, site *postgres.Site, max int) ([]postgres.Device, error) {
	var out []postgres.Device
	if site != nil {
		sc, err := scopeFor(p, site.CustomerID)
		if err != nil {
			return nil, err
		}
		err = s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
			var err error
			out, err = tx.Devices().List(ctx, postgres.ListOptions{SiteID: site.ID, Limit: max})
			return err
		})
		return out, err
	}
	for _, sc := range scopes(p) {
		err := s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
			ds, err := tx.Devices().List(ctx, postgres.ListOptions{Limit: max})
			for _, d := range ds {
				if visible(p, d.CustomerID, d.SiteID) {
					out = append(out, d)
				}
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b postgres.Device) int { return bytes.Compare(a.DevEUI[:], b.DevEUI[:]) })
	return out[:min(len(out), max)], nil
}

// streamFilter is the tenant part of a hub filter: what the principal may
// see, from its token only.
func streamFilter(p *auth.Principal) hub.Filter {
	var f hub.Filter
	switch {
	case p.Role == auth.RolePlatformAdmin:
		f.AllTenants = true
	case p.PartnerWide():
		f.Partners = []string{p.PartnerID.String()}
	default:
		for _, c := range p.CustomerIDs {
			f.Customers = append(f.Customers, c.String())
		}
	}
	for _, s := range p.SiteIDs {
		f.Sites = append(f.Sites, s.String())
	}
	return f
}

// gather lists rows in every scope of scs and keeps, once per key, those
// keep accepts (nil: all). A row visible in two scopes (a partner's and
// one of its customers') counts once.
func gather[K comparable, V any](ctx context.Context, s *Services, op string, scs []postgres.Scope,
	list func(*postgres.Tx) ([]V, error), key func(V) K, keep func(V) bool) (map[K]V, error) {
	seen := map[K]V{}
	for _, sc := range scs {
		err := s.d.Registry.InTx(ctx, sc, func(tx *postgres.Tx) error {
			vs, err := list(tx)
			for _, v := range vs {
				if keep == nil || keep(v) {
					seen[key(v)] = v
				}
			}
			return err
		})
		if err != nil {
			return nil, s.toConnect(ctx, op, err)
		}
	}
	return seen, nil
}
