package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/storage/pgtest"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// TestAdminAndMigrateCLI runs `legiond migrate` and `legiond admin`
// in-process against a private PostgreSQL server.
func TestAdminAndMigrateCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := pgtest.StartFromEnv(ctx, pgtest.Config{})
	if err != nil {
		t.Fatalf("cannot start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	db := "legiond_cli_test"
	if err := srv.CreateDatabase(ctx, db, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.DropDatabase(context.Background(), db) })

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := dispatch(ctx, args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
		return code, out.String(), errb.String()
	}
	t.Setenv("DATABASE_URL", "")
	t.Setenv(postgres.MasterKeyEnv, "")
	t.Setenv("LEGIOND_APP_PASSWORD", "cli-test-password")
	if code, out, errs := run("migrate", "--database-url", srv.DSN(db)); code != 0 || !strings.Contains(out, "schema at version") {
		t.Fatalf("migrate: %d %s %s", code, out, errs)
	}
	if code, _, _ := run("migrate", "--database-url", srv.DSN(db)); code != 0 {
		t.Fatal("second migrate failed")
	}

	keyFile := filepath.Join(t.TempDir(), "master.key")
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i + 1)
	}
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	app := srv.UserDSN(db, postgres.AppRole, "cli-test-password")
	admin := func(args ...string) (int, string, string) {
		return run(append([]string{"admin"}, append(args, "--database-url", app, "--master-key-file", keyFile)...)...)
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

	code, out, errs := admin("partner", "create", "--name", "Installateur BV", "--json")
	if code != 0 {
		t.Fatalf("partner create: %s", errs)
	}
	partner := id(out)
	code, out, errs = admin("customer", "create", "--name", "Zorghuis De Linde", "--partner", partner, "--json")
	if code != 0 {
		t.Fatalf("customer create: %s", errs)
	}
	customer := id(out)
	code, _, errs = admin("site", "create", "--customer", customer, "--name", "London", "--country", "GB")
	if code != exitUsage || !strings.Contains(errs, "outside the European Economic Area") {
		t.Fatalf("site in GB: code %d, %s", code, errs)
	}
	code, out, errs = admin("site", "create", "--customer", customer, "--name", "Hoofdgebouw", "--country", "NL", "--city", "Utrecht", "--json")
	if code != 0 {
		t.Fatalf("site create: %s", errs)
	}
	site := id(out)
	code, out, errs = admin("tappoint", "create", "--site", site, "--name", "Douche 1", "--kind", "HOT_TAP", "--flush-interval", "72h", "--json")
	if code != 0 {
		t.Fatalf("tappoint create: %s", errs)
	}
	tap := id(out)
	code, _, errs = admin("device", "create", "--dev-eui", "70B3D57ED0000001", "--activation", "OTAA", "--tap-point", tap,
		"--join-eui", "70B3D57ED0FFFFFF", "--app-key", "2B7E151628AED2A6ABF7158809CF4F3C")
	if code != 0 {
		t.Fatalf("device create: %s", errs)
	}
	code, _, errs = admin("device", "create", "--dev-eui", "70B3D57ED00001", "--activation", "OTAA")
	if code != exitUsage || !strings.Contains(errs, "dev_eui") {
		t.Fatalf("bad DevEUI: %d %s", code, errs)
	}
	code, _, errs = admin("gateway", "create", "--gateway-eui", "B827EBFFFE000001", "--site", site, "--name", "kelder")
	if code != 0 {
		t.Fatalf("gateway create: %s", errs)
	}

	csvPath := filepath.Join(t.TempDir(), "devices.csv")
	csv := "dev_eui,activation,tap_point_id,join_eui,app_key\n" +
		"70B3D57ED0000002,OTAA," + tap + ",70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C\n" +
		"70B3D57ED0000001,OTAA," + tap + ",70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C\n"
	if err := os.WriteFile(csvPath, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = admin("device", "import", "--file", csvPath)
	if code != exitUsage || !strings.Contains(out, "line 3: dev_eui: already registered") || !strings.Contains(out, "imported  0") {
		t.Fatalf("rejected import: %d\n%s", code, out)
	}
	code, out, errs = admin("device", "import", "--file", csvPath, "--skip-bad-rows")
	if code != 0 || !strings.Contains(out, "imported  1") {
		t.Fatalf("skip import: %d\n%s%s", code, out, errs)
	}
	code, out, _ = admin("device", "list")
	if code != 0 || strings.Count(out, "70B3D57ED000000") != 2 || strings.Contains(out, "2B7E1516") {
		t.Fatalf("device list:\n%s", out)
	}
	// Customer scope sees its own rows; another customer's scope none.
	code, out, _ = admin("site", "list", "--as-customer", customer)
	if code != 0 || !strings.Contains(out, "Hoofdgebouw") {
		t.Fatalf("site list as customer:\n%s", out)
	}
	code, out, _ = admin("site", "list", "--as-customer", "6f1c7b5e-0000-4000-8000-000000000000")
	if code != 0 || strings.Contains(out, "Hoofdgebouw") {
		t.Fatalf("site list as a stranger:\n%s", out)
	}
	for _, list := range [][]string{{"partner", "list"}, {"customer", "list"}, {"tappoint", "list"}, {"gateway", "list"}} {
		if code, out, errs := admin(append(list, "--json")...); code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "[") {
			t.Fatalf("%v: %d %s %s", list, code, out, errs)
		}
	}
	// The superuser is refused: row-level security would not bind it.
	code, _, errs = run("admin", "partner", "list", "--database-url", srv.DSN(db))
	if code == 0 || !strings.Contains(errs, "bypasses row-level security") {
		t.Fatalf("superuser admin: %d %s", code, errs)
	}
}
