package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/legionelladossier/legiond/storage/postgres"
)

// TestStaffAccessCLI: break-glass grants, recorded token issuance and GDPR
// export and erasure through `legiond admin` and `legiond token`, against
// a private PostgreSQL server.
func TestStaffAccessCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := "legiond_staff_cli_test"
	srv, run := cliDB(t, ctx, db, "staff-cli-password")
	t.Setenv(postgres.MasterKeyEnv, "")
	app := srv.UserDSN(db, postgres.AppRole, "staff-cli-password")
	admin := func(args ...string) (int, string, string) {
		return run(append([]string{"admin"}, append(args, "--database-url", app, "--actor", "user:op-1")...)...)
	}
	id := func(out string) string {
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.ID == "" {
			t.Fatalf("no id in %q: %v", out, err)
		}
		return v.ID
	}
	must := func(code int, out, errs string) string {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		return out
	}
	customer := id(must(admin("customer", "create", "--name", "Zorghuis De Linde", "--json")))
	const name, email, phone = "Jan Jansen-Verhoeven", "jan.jansen@zorghuis.example", "+31 6 1234 5678"
	user := id(must(admin("user", "create", "--customer", customer, "--email", email, "--name", name, "--phone", phone, "--json")))

	// Break-glass: a reason is required; grant, list, revoke.
	if code, _, errs := admin("grant", "break-glass", "--customer", customer, "--user", "support-1", "--for", "2h"); code != exitUsage || !strings.Contains(errs, "reason") {
		t.Fatalf("grant without reason: %d %s", code, errs)
	}
	if code, _, errs := admin("grant", "break-glass", "--customer", customer, "--user", "support-1", "--reason", "x", "--for", "48h"); code != exitUsage {
		t.Fatalf("grant for 48h: %d %s", code, errs)
	}
	grant := id(must(admin("grant", "break-glass", "--customer", customer, "--user", "support-1", "--reason", "ticket 9: no readings", "--for", "2h", "--json")))
	if out := must(admin("grant", "list", "--customer", customer)); !strings.Contains(out, grant) || !strings.Contains(out, "until") {
		t.Fatalf("grant list: %s", out)
	}
	must(admin("grant", "revoke", "--id", grant))
	if out := must(admin("grant", "list", "--user", "support-1")); !strings.Contains(out, "revoked") {
		t.Fatalf("grant list after revoke: %s", out)
	}

	// A token issued with a database is recorded (never the token itself).
	dir := t.TempDir()
	tok := strings.TrimSpace(must(run("token", "issue", "--data-dir", dir, "--role", "support", "--subject", "support-1", "--database-url", app)))

	// The logbook refers to the person by id: an acknowledgement.
	store, err := postgres.Open(ctx, postgres.Config{DSN: app, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	uid := uuid.MustParse(user)
	cid := uuid.MustParse(customer)
	ack, err := store.AppendAudit(ctx, postgres.CustomerScope(cid, postgres.PersonSubject(uid)), postgres.AuditEntry{
		ActorRole: "technician", Action: postgres.AuditAlarmAcknowledge, Target: "device:70B3D57ED0000001",
		Details: map[string]any{"alarm_id": "70b3d57ed0000001-HOT_WATER_TOO_COLD-1"}})
	if err != nil {
		t.Fatal(err)
	}

	// GDPR export: the person's data, as JSON.
	exp := must(admin("gdpr", "export", "--user", user))
	var ex postgres.PersonExport
	if err := json.Unmarshal([]byte(exp), &ex); err != nil || ex.User.Email != email || ex.User.DisplayName != name || ex.User.Phone != phone ||
		len(ex.AuditAsActor) != 1 {
		t.Fatalf("export: %v %s", err, exp)
	}
	// GDPR erasure: name, e-mail and phone are in no table afterwards
	// (every table, read by the superuser, so no policy hides a row); the
	// logbook entry is still there, naming the same id.
	must(admin("gdpr", "erase", "--user", user))
	conn, err := pgx.Connect(ctx, srv.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var s, n string
		err := r.Scan(&s, &n)
		return pgx.Identifier{s, n}.Sanitize(), err
	})
	if err != nil || len(tables) < 10 {
		t.Fatalf("tables %v %v", tables, err)
	}
	for _, tbl := range tables {
		for _, needle := range []string{name, "Jansen", email, "jan.jansen", phone, "1234 5678"} {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+tbl+` x WHERE x::text ILIKE '%' || $1 || '%'`, needle).Scan(&n); err != nil {
				t.Fatalf("%s: %v", tbl, err)
			}
			if n != 0 {
				t.Errorf("%q still in %s (%d rows) after erasure", needle, tbl, n)
			}
		}
	}
	var actor string
	if err := conn.QueryRow(ctx, `SELECT actor FROM legiond.audit_log WHERE seq = $1`, ack.Seq).Scan(&actor); err != nil || actor != "user:"+user {
		t.Errorf("logbook entry after erasure: %q %v", actor, err)
	}

	// Everything above is in the audit trail, and it verifies.
	var recs []postgres.AuditRecord
	err = store.InTx(ctx, postgres.PlatformScope("t"), func(tx *postgres.Tx) error {
		recs, err = tx.AuditEntries(ctx, postgres.AuditFilter{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action)
		if strings.Contains(string(r.Details), tok) {
			t.Error("a token reached the audit trail")
		}
	}
	want := "admin.change admin.change breakglass.grant breakglass.revoke token.issue alarm.acknowledge gdpr.export gdpr.erase"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("audit actions %q, want %q", got, want)
	}
	if code, out, errs := run("audit", "verify", "--database-url", app); code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %d %s %s", code, out, errs)
	}
}
