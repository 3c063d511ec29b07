package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/legionelladossier/legiond/storage/pgtest"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// cliDB starts a private PostgreSQL server with one migrated database and
// returns the server, the database name, and a runner for the CLI.
func cliDB(t *testing.T, ctx context.Context, db, appPassword string) (*pgtest.Server, func(args ...string) (int, string, string)) {
	t.Helper()
	srv, err := pgtest.StartFromEnv(ctx, pgtest.Config{})
	if err != nil {
		t.Fatalf("cannot start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if err := srv.CreateDatabase(ctx, db, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.DropDatabase(context.Background(), db) })
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := dispatch(ctx, args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
		return code, out.String(), errb.String()
	}
	t.Setenv(envDatabaseURL, "")
	t.Setenv(envMigrateDatabaseURL, "")
	t.Setenv(envBackupDatabaseURL, "")
	t.Setenv(envAppPassword, appPassword)
	if code, out, errs := run("migrate", "--database-url", srv.DSN(db)); code != 0 {
		t.Fatalf("migrate: %d %s %s", code, out, errs)
	}
	return srv, run
}

func TestAuditVerifyCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const db, pw = "legiond_audit_cli", "audit-cli-password"
	srv, run := cliDB(t, ctx, db, pw)
	app := srv.UserDSN(db, postgres.AppRole, pw)
	st, err := postgres.Open(ctx, postgres.Config{DSN: app})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 6; i++ {
		if _, err := st.AppendAudit(ctx, postgres.PlatformScope("user:ops"), postgres.AuditEntry{Action: postgres.AuditAdminChange, Target: "site:x",
			Details: map[string]int{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}

	code, out, errs := run("audit", "verify", "--database-url", app)
	if code != exitOK || !strings.Contains(out, "intact: 6 entries") {
		t.Fatalf("intact chain: %d\n%s%s", code, out, errs)
	}
	head := regexp.MustCompile(`head: (\d+:[0-9a-f]{64})`).FindStringSubmatch(out)
	if head == nil {
		t.Fatalf("no head in %q", out)
	}
	// The superuser (who owns everything) can still switch the triggers
	// off: edit entry 2, delete entry 4.
	conn, err := pgx.Connect(ctx, srv.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, stmt := range []string{
		`SET session_replication_role = replica`,
		`UPDATE legiond.audit_log SET actor = 'user:someone-else' WHERE seq = 2`,
		`DELETE FROM legiond.audit_log WHERE seq = 4`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for _, dsn := range []string{app, srv.DSN(db)} { // as the application and as the superuser
		code, out, errs = run("audit", "verify", "--database-url", dsn)
		if code != exitFailure || !strings.Contains(out, "first bad entry 2: content does not match its hash") ||
			!strings.Contains(out, "entry 4: entry 4 is missing (deleted)") {
			t.Fatalf("tampered chain: %d\n%s%s", code, out, errs)
		}
	}
	code, out, _ = run("audit", "verify", "--database-url", app, "--json")
	if code != exitFailure || !strings.Contains(out, `"first_bad": 2`) || !strings.Contains(out, `"problem_count": 2`) {
		t.Fatalf("json: %d %s", code, out)
	}

	// Deleting the newest entry is only visible against an anchor.
	if _, err := conn.Exec(ctx, `DELETE FROM legiond.audit_log WHERE seq = 6`); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run("audit", "verify", "--database-url", app, "--anchor", head[1])
	if code != exitFailure || !strings.Contains(out, "anchored entry 6 is gone") {
		t.Fatalf("anchor: %d %s", code, out)
	}
	if code, _, errs = run("audit", "verify", "--database-url", app, "--anchor", "6:nothex"); code != exitUsage {
		t.Fatalf("bad anchor: %d %s", code, errs)
	}
	if code, _, _ = run("audit"); code != exitUsage {
		t.Fatalf("no verb: %d", code)
	}
}
