package postgres

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestGDPRExportPerson(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	subject := PersonSubject(w.A.User.ID)
	// The user acted (and was acted upon) in the audit trail.
	appendN(t, e, CustomerScope(w.A.Customer.ID, subject), 2, AuditAdminChange)
	if _, err := e.store.AppendAudit(ctx, PlatformScope("user:ops"), AuditEntry{Action: AuditTokenIssued, Target: subject, CustomerID: &w.A.Customer.ID}); err != nil {
		t.Fatal(err)
	}
	appendN(t, e, CustomerScope(w.B.Customer.ID, PersonSubject(w.B.User.ID)), 1, AuditAdminChange)

	out, err := e.store.ExportPerson(ctx, CustomerScope(w.A.Customer.ID, "user:admin-a"), w.A.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	var exp PersonExport
	if err := json.Unmarshal(out, &exp); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if exp.Subject != subject || exp.User.ID != w.A.User.ID || exp.User.Email != w.A.User.Email {
		t.Fatalf("user: %+v", exp.User)
	}
	if len(exp.RoleGrants) != 1 || exp.RoleGrants[0].ID != w.A.Grant.ID {
		t.Fatalf("grants: %+v", exp.RoleGrants)
	}
	if len(exp.AuditAsActor) != 2 || len(exp.AuditAbout) != 1 || exp.AuditAbout[0].Action != AuditTokenIssued {
		t.Fatalf("audit: as actor %d, about %d", len(exp.AuditAsActor), len(exp.AuditAbout))
	}
	if !strings.Contains(string(out), `"details": {`) {
		t.Fatalf("details should be embedded JSON:\n%s", out)
	}
	// The export was itself audited.
	e.inTx(t, PlatformScope("t"), func(tx *Tx) error {
		recs, err := tx.AuditEntries(ctx, AuditFilter{Action: AuditPersonExported})
		if err == nil && (len(recs) != 1 || recs[0].Target != subject || recs[0].Actor != "user:admin-a") {
			t.Errorf("export audit entry: %+v", recs)
		}
		return err
	})
	// Another tenant's user is not found.
	if _, err := e.store.ExportPerson(ctx, CustomerScope(w.A.Customer.ID, "x"), w.B.User.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other tenant's user: %v", err)
	}
	// A partner may export its customers' users.
	if _, err := e.store.ExportPerson(ctx, PartnerScope(w.P1.Partner.ID, "x"), w.A.User.ID); err != nil {
		t.Fatalf("partner export: %v", err)
	}
}

func TestGDPRErasePerson(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	subject := PersonSubject(w.A.User.ID)
	acted := appendN(t, e, CustomerScope(w.A.Customer.ID, subject), 2, AuditAdminChange)
	email := w.A.User.Email

	if _, err := e.store.ErasePerson(ctx, CustomerScope(w.C.Customer.ID, "x"), w.A.User.ID, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("erasing another tenant's user: %v", err)
	}
	rep, err := e.store.ErasePerson(ctx, CustomerScope(w.A.Customer.ID, "user:dpo"), w.A.User.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.AlreadyErased || rep.RoleGrantsRevoked != 1 || rep.AuditEntryAsActor != 2 || rep.Pseudonym != Pseudonym(w.A.User.ID) || !strings.HasPrefix(rep.Pseudonym, "erased-") {
		t.Fatalf("report: %+v", rep)
	}
	admin := e.admin(t)
	var gotEmail, gotName string
	var disabled bool
	if err := admin.QueryRow(ctx, `SELECT email, display_name, disabled FROM legiond.users WHERE id = $1`, w.A.User.ID).Scan(&gotEmail, &gotName, &disabled); err != nil {
		t.Fatalf("the user row (and its id) must stay: %v", err)
	}
	if gotEmail != rep.Pseudonym+"@erased.invalid" || gotName != rep.Pseudonym || !disabled {
		t.Fatalf("after erasure: %q %q disabled=%v", gotEmail, gotName, disabled)
	}
	// The e-mail is gone from every text column of the registry.
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM legiond.users u WHERE position($1 in u::text) > 0`, email).Scan(&n); err != nil || n != 0 {
		t.Fatalf("e-mail still in users: %d %v", n, err)
	}
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM legiond.audit_log a WHERE position($1 in a::text) > 0`, email).Scan(&n); err != nil || n != 0 {
		t.Fatalf("e-mail in the audit log: %d %v", n, err)
	}
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM legiond.role_grants WHERE user_id = $1`, w.A.User.ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("grants left: %d %v", n, err)
	}
	// The audit trail keeps the actor id, records the erasure, and is intact.
	var erased []AuditRecord
	e.inTx(t, PlatformScope("t"), func(tx *Tx) error {
		var err error
		erased, err = tx.AuditEntries(ctx, AuditFilter{Actor: subject})
		return err
	})
	if len(erased) != 2 || erased[0].Seq != acted[0].Seq {
		t.Fatalf("audit entries of the erased person: %+v", erased)
	}
	var entry []AuditRecord
	e.inTx(t, PlatformScope("t"), func(tx *Tx) error {
		var err error
		entry, err = tx.AuditEntries(ctx, AuditFilter{Action: AuditPersonErased})
		return err
	})
	if len(entry) != 1 || entry[0].Seq != rep.AuditSeq || entry[0].Actor != "user:dpo" || entry[0].Target != subject ||
		entry[0].CustomerID == nil || *entry[0].CustomerID != w.A.Customer.ID {
		t.Fatalf("erasure entry: %+v", entry)
	}
	vr, err := e.store.VerifyAudit(ctx)
	if err != nil || !vr.Intact() {
		t.Fatalf("verify: %+v %v", vr, err)
	}
	// Erasing again is harmless and recorded.
	rep2, err := e.store.ErasePerson(ctx, PlatformScope("user:ops"), w.A.User.ID, "user:dpo")
	if err != nil || !rep2.AlreadyErased || rep2.RoleGrantsRevoked != 0 {
		t.Fatalf("second erasure: %+v %v", rep2, err)
	}
}
