package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Audit actions of staff access. Break-glass grants and their revocations
// are written by BreakGlassGrants; requests made under a grant by the API
// (AuditDataAccess with the grant id in Details).
const (
	AuditBreakGlassGrant  = "breakglass.grant"
	AuditBreakGlassRevoke = "breakglass.revoke"
	// AuditAlarmAcknowledge and AuditAlarmClear: an operator transition of
	// an alarm (Target "device:<DevEUI>", Details the alarm id).
	AuditAlarmAcknowledge = "alarm.acknowledge"
	AuditAlarmClear       = "alarm.clear"
)

// MaxBreakGlass is the longest a break-glass grant may last (also a
// constraint of the table).
const MaxBreakGlass = 24 * time.Hour

// BreakGlassGrant gives one support user (Subject, the token's "sub")
// read access to one customer from StartsAt until ExpiresAt, unless
// revoked earlier.
type BreakGlassGrant struct {
	ID         uuid.UUID  `json:"id"`
	CustomerID uuid.UUID  `json:"customer_id"`
	Subject    string     `json:"subject"`
	Reason     string     `json:"reason"`
	StartsAt   time.Time  `json:"starts_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	RevokedBy  string     `json:"revoked_by,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
}

// ActiveAt reports whether the grant allows access at t.
func (g BreakGlassGrant) ActiveAt(t time.Time) bool {
	return g.RevokedAt == nil && !t.Before(g.StartsAt) && t.Before(g.ExpiresAt)
}

// NewBreakGlassGrant is the input of BreakGlassGrants.Create.
type NewBreakGlassGrant struct {
	CustomerID uuid.UUID
	// Subject is the support user's token subject (required).
	Subject string
	// Reason says why (required, at most 1000 characters): a ticket
	// number and what is being investigated.
	Reason string
	// Now is the server clock at creation; the grant lasts For (at most
	// MaxBreakGlass).
	Now time.Time
	For time.Duration
	// ActorRole is recorded in the audit entry ("platform_admin", "cli").
	ActorRole string
}

// BreakGlassGrants is the break-glass repository of a transaction. Create
// and Revoke need the platform scope (row-level security refuses others
// with ErrPermissionDenied); reads follow the customer-owned policy.
type BreakGlassGrants struct{ t *Tx }

// BreakGlass returns the break-glass grant repository.
func (t *Tx) BreakGlass() BreakGlassGrants { return BreakGlassGrants{t} }

const grantBGCols = `id, customer_id, subject, reason, starts_at, expires_at, revoked_at, coalesce(revoked_by, ''), created_at, created_by`

func scanBreakGlass(row pgx.Row) (BreakGlassGrant, error) {
	var g BreakGlassGrant
	err := row.Scan(&g.ID, &g.CustomerID, &g.Subject, &g.Reason, &g.StartsAt, &g.ExpiresAt, &g.RevokedAt, &g.RevokedBy, &g.CreatedAt, &g.CreatedBy)
	return g, err
}

// Create stores a grant and appends AuditBreakGlassGrant (customer,
// subject, reason, expiry) in the same transaction.
func (r BreakGlassGrants) Create(ctx context.Context, in NewBreakGlassGrant) (BreakGlassGrant, error) {
	if in.CustomerID == uuid.Nil {
		return BreakGlassGrant{}, fieldErr("customer_id", "is required")
	}
	subject, err := checkText("subject", in.Subject, true, 256)
	if err != nil {
		return BreakGlassGrant{}, err
	}
	reason, err := checkText("reason", in.Reason, true, 1000)
	if err != nil {
		return BreakGlassGrant{}, err
	}
	if in.For <= 0 || in.For > MaxBreakGlass {
		return BreakGlassGrant{}, fieldErr("duration", fmt.Sprintf("must be more than 0 and at most %s", MaxBreakGlass))
	}
	if in.Now.IsZero() {
		return BreakGlassGrant{}, fieldErr("now", "the server clock is required")
	}
	if r.t.scope.Kind != ScopePlatform {
		return BreakGlassGrant{}, fmt.Errorf("create break-glass grant: %w: platform scope required", ErrPermissionDenied)
	}
	start := in.Now.UTC().Truncate(time.Microsecond)
	g, err := scanBreakGlass(r.t.tx.QueryRow(ctx, `INSERT INTO break_glass_grants (customer_id, subject, reason, starts_at, expires_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+grantBGCols, in.CustomerID, subject, reason, start, start.Add(in.For)))
	if err != nil {
		return BreakGlassGrant{}, mapErr("create break-glass grant", err)
	}
	customer := g.CustomerID
	_, err = r.t.AppendAudit(ctx, AuditEntry{
		ActorRole: in.ActorRole, Action: AuditBreakGlassGrant, CustomerID: &customer, Target: "break-glass:" + g.ID.String(),
		Details: map[string]any{"grant_id": g.ID, "subject": g.Subject, "reason": g.Reason,
			"starts_at": g.StartsAt, "expires_at": g.ExpiresAt},
	})
	return g, err
}

// Get returns a grant visible in the scope.
func (r BreakGlassGrants) Get(ctx context.Context, id uuid.UUID) (BreakGlassGrant, error) {
	g, err := scanBreakGlass(r.t.tx.QueryRow(ctx, `SELECT `+grantBGCols+` FROM break_glass_grants WHERE id = $1`, id))
	return g, mapErr("get break-glass grant", err)
}

// Active returns grant id when it belongs to subject and allows access at
// now (the server clock): not revoked, started, not expired. Anything
// else is ErrNotFound, so a caller learns nothing about others' grants.
func (r BreakGlassGrants) Active(ctx context.Context, id uuid.UUID, subject string, now time.Time) (BreakGlassGrant, error) {
	g, err := scanBreakGlass(r.t.tx.QueryRow(ctx, `SELECT `+grantBGCols+` FROM break_glass_grants
		WHERE id = $1 AND subject = $2 AND revoked_at IS NULL AND starts_at <= $3 AND expires_at > $3`, id, subject, now))
	return g, mapErr("active break-glass grant", err)
}

// Revoke ends a grant at now and appends AuditBreakGlassRevoke. Revoking
// a grant twice is ErrInvalidArgument (the first revocation stands).
func (r BreakGlassGrants) Revoke(ctx context.Context, id uuid.UUID, now time.Time, actorRole string) (BreakGlassGrant, error) {
	if r.t.scope.Kind != ScopePlatform {
		return BreakGlassGrant{}, fmt.Errorf("revoke break-glass grant: %w: platform scope required", ErrPermissionDenied)
	}
	g, err := r.Get(ctx, id)
	if err != nil {
		return g, err
	}
	if g.RevokedAt != nil {
		return g, fieldErr("grant_id", "already revoked")
	}
	by := r.t.scope.Actor
	if strings.TrimSpace(by) == "" {
		by = "unknown"
	}
	g, err = scanBreakGlass(r.t.tx.QueryRow(ctx, `UPDATE break_glass_grants SET revoked_at = $2, revoked_by = $3
		WHERE id = $1 RETURNING `+grantBGCols, id, now.UTC().Truncate(time.Microsecond), by))
	if err != nil {
		return g, mapErr("revoke break-glass grant", err)
	}
	customer := g.CustomerID
	_, err = r.t.AppendAudit(ctx, AuditEntry{
		ActorRole: actorRole, Action: AuditBreakGlassRevoke, CustomerID: &customer, Target: "break-glass:" + g.ID.String(),
		Details: map[string]any{"grant_id": g.ID, "subject": g.Subject, "revoked_at": g.RevokedAt},
	})
	return g, err
}

// List returns the grants visible in the scope, newest first, optionally
// of one customer or (Subject) one support user.
func (r BreakGlassGrants) List(ctx context.Context, o ListOptions, subject string) ([]BreakGlassGrant, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT `+grantBGCols+` FROM break_glass_grants
		WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2 = '' OR subject = $2)
		ORDER BY created_at DESC, id LIMIT $3`, nullID(o.CustomerID), subject, o.limit())
	if err != nil {
		return nil, mapErr("list break-glass grants", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BreakGlassGrant, error) { return scanBreakGlass(row) })
	return out, mapErr("list break-glass grants", err)
}
