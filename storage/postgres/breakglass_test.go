package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestBreakGlassGrantLifecycle(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	var g BreakGlassGrant
	e.inTx(t, PlatformScope("user:admin-1"), func(tx *Tx) error {
		var err error
		g, err = tx.BreakGlass().Create(ctx, NewBreakGlassGrant{CustomerID: w.A.Customer.ID, Subject: "support-7",
			Reason: "ticket 1234: gateway offline", Now: now, For: 2 * time.Hour, ActorRole: "platform_admin"})
		return err
	})
	if !g.ExpiresAt.Equal(now.Add(2*time.Hour)) || g.CreatedBy != "user:admin-1" || !g.ActiveAt(now) {
		t.Fatalf("grant %+v", g)
	}

	active := func(id uuid.UUID, subject string, at time.Time) error {
		return e.store.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
			_, err := tx.BreakGlass().Active(ctx, id, subject, at)
			return err
		})
	}
	for _, tt := range []struct {
		name    string
		id      uuid.UUID
		subject string
		at      time.Time
		ok      bool
	}{
		{"in the window", g.ID, "support-7", now.Add(time.Hour), true},
		{"another support user", g.ID, "support-8", now.Add(time.Hour), false},
		{"before the start", g.ID, "support-7", now.Add(-time.Second), false},
		{"at expiry", g.ID, "support-7", now.Add(2 * time.Hour), false},
		{"unknown grant", uuid.New(), "support-7", now, false},
	} {
		err := active(tt.id, tt.subject, tt.at)
		if tt.ok != (err == nil) || (!tt.ok && !errors.Is(err, ErrNotFound)) {
			t.Errorf("%s: Active = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}

	// Bad input is refused before the database.
	for _, tt := range []struct {
		name  string
		in    NewBreakGlassGrant
		field string
	}{
		{"no reason", NewBreakGlassGrant{CustomerID: w.A.Customer.ID, Subject: "s", Reason: "  ", Now: now, For: time.Hour}, "reason"},
		{"no subject", NewBreakGlassGrant{CustomerID: w.A.Customer.ID, Reason: "r", Now: now, For: time.Hour}, "subject"},
		{"too long", NewBreakGlassGrant{CustomerID: w.A.Customer.ID, Subject: "s", Reason: "r", Now: now, For: 25 * time.Hour}, "duration"},
		{"no duration", NewBreakGlassGrant{CustomerID: w.A.Customer.ID, Subject: "s", Reason: "r", Now: now}, "duration"},
		{"unknown customer", NewBreakGlassGrant{CustomerID: uuid.New(), Subject: "s", Reason: "r", Now: now, For: time.Hour}, "customer_id"},
	} {
		err := e.store.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
			_, err := tx.BreakGlass().Create(ctx, tt.in)
			return err
		})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s: err = %v, want a FieldError on %s", tt.name, err, tt.field)
		}
	}

	// Only the platform grants and revokes; customers and partners see the
	// grants on their customers (transparency), never others'.
	for _, sc := range []Scope{CustomerScope(w.A.Customer.ID, "a"), PartnerScope(w.P1.Partner.ID, "p1")} {
		err := e.store.InTx(ctx, sc, func(tx *Tx) error {
			_, err := tx.BreakGlass().Create(ctx, NewBreakGlassGrant{CustomerID: w.A.Customer.ID, Subject: "s", Reason: "r", Now: now, For: time.Hour})
			return err
		})
		if !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("create under %s: %v, want ErrPermissionDenied", sc, err)
		}
		err = e.store.InTx(ctx, sc, func(tx *Tx) error {
			_, err := tx.BreakGlass().Revoke(ctx, g.ID, now, "")
			return err
		})
		if !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("revoke under %s: %v, want ErrPermissionDenied", sc, err)
		}
	}
	seen := func(sc Scope) int {
		var n int
		e.inTx(t, sc, func(tx *Tx) error {
			gs, err := tx.BreakGlass().List(ctx, ListOptions{}, "")
			n = len(gs)
			return err
		})
		return n
	}
	if n := seen(CustomerScope(w.A.Customer.ID, "a")); n != 2 { // the fixture's and g
		t.Errorf("customer A sees %d grants, want 2", n)
	}
	if n := seen(CustomerScope(w.C.Customer.ID, "c")); n != 1 {
		t.Errorf("customer C sees %d grants, want 1", n)
	}

	// Revocation ends it at once, once; nothing else can be edited or
	// deleted, not even under the platform scope.
	e.inTx(t, PlatformScope("user:admin-2"), func(tx *Tx) error {
		r, err := tx.BreakGlass().Revoke(ctx, g.ID, now.Add(time.Minute), "platform_admin")
		if err == nil && (r.RevokedBy != "user:admin-2" || r.RevokedAt == nil) {
			t.Errorf("revoked %+v", r)
		}
		return err
	})
	if err := active(g.ID, "support-7", now.Add(2*time.Minute)); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoked grant still active: %v", err)
	}
	err := e.store.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
		_, err := tx.BreakGlass().Revoke(ctx, g.ID, now, "")
		return err
	})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("second revocation: %v", err)
	}
	for _, stmt := range []string{
		`UPDATE break_glass_grants SET expires_at = expires_at + interval '1 hour'`,
		`UPDATE break_glass_grants SET revoked_at = NULL, revoked_by = NULL`,
		`DELETE FROM break_glass_grants`,
	} {
		err := e.store.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
			_, err := tx.PgxTx().Exec(ctx, stmt)
			return err
		})
		if err == nil {
			t.Errorf("%q succeeded", stmt)
		}
	}

	// Both steps are in the audit trail, which still verifies.
	var recs []AuditRecord
	e.inTx(t, PlatformScope("t"), func(tx *Tx) error {
		var err error
		recs, err = tx.AuditEntries(ctx, AuditFilter{Target: "break-glass:" + g.ID.String()})
		return err
	})
	if len(recs) != 2 || recs[0].Action != AuditBreakGlassGrant || recs[1].Action != AuditBreakGlassRevoke ||
		recs[0].Actor != "user:admin-1" || recs[1].Actor != "user:admin-2" || *recs[0].CustomerID != w.A.Customer.ID {
		t.Fatalf("audit entries %+v", recs)
	}
	rep, err := e.store.VerifyAudit(ctx)
	if err != nil || !rep.Intact() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
