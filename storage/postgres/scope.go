package postgres

import (
	"fmt"

	"github.com/google/uuid"
)

// ScopeKind says whose rows a transaction may see.
type ScopeKind uint8

// Scope kinds. The zero value is no scope: every policy hides every row.
const (
	ScopeNone ScopeKind = iota
	// ScopePlatform sees every tenant: operators' tools and the platform's
	// own background work (the registry cache). Never built from a
	// customer's or partner's token.
	ScopePlatform
	// ScopePartner sees the partner's own row and its customers' rows.
	ScopePartner
	// ScopeCustomer sees that customer's rows only.
	ScopeCustomer
)

func (k ScopeKind) String() string {
	switch k {
	case ScopePlatform:
		return "platform"
	case ScopePartner:
		return "partner"
	case ScopeCustomer:
		return "customer"
	}
	return "none"
}

// Scope is the caller's tenancy, built by the API layer from token claims
// (or by operator tools). Every tenant-scoped statement runs in a
// transaction that carries it; PostgreSQL row-level security does the
// filtering.
type Scope struct {
	Kind ScopeKind
	// PartnerID is required for ScopePartner.
	PartnerID uuid.UUID
	// CustomerID is required for ScopeCustomer.
	CustomerID uuid.UUID
	// Actor names who acts, for the audit columns (e.g. "user:<id>",
	// "cli:admin"). Default "unknown".
	Actor string
}

// PlatformScope returns the all-tenants scope.
func PlatformScope(actor string) Scope { return Scope{Kind: ScopePlatform, Actor: actor} }

// PartnerScope returns a partner's scope.
func PartnerScope(partner uuid.UUID, actor string) Scope {
	return Scope{Kind: ScopePartner, PartnerID: partner, Actor: actor}
}

// CustomerScope returns a customer's scope.
func CustomerScope(customer uuid.UUID, actor string) Scope {
	return Scope{Kind: ScopeCustomer, CustomerID: customer, Actor: actor}
}

// Validate reports a scope that names no tenant.
func (s Scope) Validate() error {
	switch s.Kind {
	case ScopePlatform:
		return nil
	case ScopePartner:
		if s.PartnerID == uuid.Nil {
			return fmt.Errorf("%w: partner scope without partner id", ErrNoScope)
		}
		return nil
	case ScopeCustomer:
		if s.CustomerID == uuid.Nil {
			return fmt.Errorf("%w: customer scope without customer id", ErrNoScope)
		}
		return nil
	}
	return ErrNoScope
}

// setting is the value of the legiond.tenant setting the policies read.
func (s Scope) setting() string {
	switch s.Kind {
	case ScopePlatform:
		return "platform"
	case ScopePartner:
		return "partner:" + s.PartnerID.String()
	case ScopeCustomer:
		return "customer:" + s.CustomerID.String()
	}
	return ""
}

func (s Scope) String() string { return s.setting() }
