package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// tenantTable describes one tenant-scoped table for the isolation suite.
type tenantTable struct {
	name string
	pk   string // primary key column
	// visible is the admin-side predicate of the rows a scope may see; $1
	// is the scope's tenant id.
	forCustomer, forPartner string
}

const (
	custOwned  = "customer_id = $1"
	custOfPart = "customer_id IN (SELECT id FROM legiond.customers WHERE partner_id = $1)"
	ownerPart  = "(partner_id = $1 OR customer_id IN (SELECT id FROM legiond.customers WHERE partner_id = $1))"
)

// tenantTables lists every table with tenant data. TestRLSCoversEveryTable
// fails when a table is added to the schema without being listed here.
var tenantTables = []tenantTable{
	{"partners", "id", "$1::uuid IS NULL AND false", "id = $1"},
	{"customers", "id", "id = $1", "partner_id = $1"},
	{"data_keys", "id", custOwned, custOfPart},
	{"sites", "id", custOwned, custOfPart},
	{"tap_points", "id", custOwned, custOfPart},
	{"devices", "dev_eui", custOwned, custOfPart},
	{"gateways", "gateway_eui", custOwned, ownerPart},
	{"users", "id", custOwned, ownerPart},
	{"api_clients", "id", custOwned, ownerPart},
	{"role_grants", "id", custOwned, ownerPart},
	{"break_glass_grants", "id", custOwned, custOfPart},
}

func TestRLSCoversEveryTable(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	rows, err := e.admin(t).Query(ctx, `SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
		pg_get_userbyid(c.relowner)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'legiond' AND c.relkind IN ('r', 'p') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, tt := range tenantTables {
		listed[tt.name] = true
	}
	var seen []string
	for rows.Next() {
		var name, owner string
		var rls, force bool
		if err := rows.Scan(&name, &rls, &force, &owner); err != nil {
			t.Fatal(err)
		}
		if owner != OwnerRole {
			t.Errorf("table %s is owned by %s, want %s", name, owner, OwnerRole)
		}
		if name == "goose_db_version" {
			continue
		}
		if !rls || !force {
			t.Errorf("table %s: row level security enabled=%v forced=%v", name, rls, force)
		}
		if name == "audit_log" { // append-only: its own isolation suite, TestAuditIsolation
			continue
		}
		seen = append(seen, name)
		if !listed[name] {
			t.Errorf("table %s is not in the isolation suite (tenantTables)", name)
		}
	}
	if len(seen) != len(tenantTables) {
		t.Errorf("schema has tables %v, suite lists %d", seen, len(tenantTables))
	}
}

// pkSet runs query and collects the named column of every row, rendered
// as text. It reads every column (the point is SELECT *).
func pkSet(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, pk, sql string, args ...any) (map[string]bool, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	idx := -1
	for i, f := range rows.FieldDescriptions() {
		if f.Name == pk {
			idx = i
		}
	}
	out := map[string]bool{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		if idx < 0 {
			return nil, fmt.Errorf("no column %s", pk)
		}
		out[fmt.Sprint(vals[idx])] = true
	}
	return out, rows.Err()
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestRLSSelectStarSeesOnlyOwnRows(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	admin := e.admin(t)

	type scopeCase struct {
		name   string
		scope  Scope
		id     uuid.UUID
		expect func(tt tenantTable) string
	}
	cases := []scopeCase{
		{"customer A (partner P1)", CustomerScope(w.A.Customer.ID, "t"), w.A.Customer.ID, func(tt tenantTable) string { return tt.forCustomer }},
		{"customer C (partner P2)", CustomerScope(w.C.Customer.ID, "t"), w.C.Customer.ID, func(tt tenantTable) string { return tt.forCustomer }},
		{"customer D (direct)", CustomerScope(w.D.Customer.ID, "t"), w.D.Customer.ID, func(tt tenantTable) string { return tt.forCustomer }},
		{"partner P1", PartnerScope(w.P1.Partner.ID, "t"), w.P1.Partner.ID, func(tt tenantTable) string { return tt.forPartner }},
		{"partner P2", PartnerScope(w.P2.Partner.ID, "t"), w.P2.Partner.ID, func(tt tenantTable) string { return tt.forPartner }},
		{"platform", PlatformScope("t"), uuid.Nil, func(tenantTable) string { return "$1::uuid IS NOT NULL" }},
	}
	for _, sc := range cases {
		for _, tt := range tenantTables {
			t.Run(sc.name+"/"+tt.name, func(t *testing.T) {
				want, err := pkSet(ctx, admin, tt.pk, `SELECT * FROM legiond.`+tt.name+` WHERE `+sc.expect(tt), sc.id)
				if err != nil {
					t.Fatal(err)
				}
				var got map[string]bool
				e.inTx(t, sc.scope, func(tx *Tx) error {
					got, err = pkSet(ctx, tx.PgxTx(), tt.pk, `SELECT * FROM `+tt.name) // no WHERE on purpose
					return err
				})
				if strings.Join(keys(got), ",") != strings.Join(keys(want), ",") {
					t.Fatalf("SELECT * FROM %s under %s:\n got  %v\n want %v", tt.name, sc.name, keys(got), keys(want))
				}
				// Every scope but a customer's on partners sees some rows:
				// an empty expectation would prove nothing.
				if len(want) == 0 && (tt.name != "partners" || sc.scope.Kind != ScopeCustomer) {
					t.Fatalf("fixture gives %s no rows in %s", sc.name, tt.name)
				}
			})
		}
	}
}

func TestRLSNoScopeSeesNothing(t *testing.T) {
	e := newEnv(t)
	buildWorld(t, e)
	ctx := testCtx(t)
	conn, err := e.store.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// A scoped transaction first: its SET LOCAL must not outlive it.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetScope(ctx, tx, PlatformScope("t")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tenantTables {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+tt.name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s: %d rows visible without a scope", tt.name, n)
		}
		set, err := pkSet(ctx, conn, tt.pk, `SELECT * FROM `+tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(set) != 0 {
			t.Errorf("%s: SELECT * without scope returned %d rows", tt.name, len(set))
		}
	}
	// And a scope-less InTx is refused before touching the database.
	if err := e.store.InTx(ctx, Scope{}, func(*Tx) error { return nil }); !errors.Is(err, ErrNoScope) {
		t.Fatalf("InTx without scope: %v", err)
	}
}

func TestRLSAppRoleCannotEscape(t *testing.T) {
	e := newEnv(t)
	buildWorld(t, e)
	ctx := testCtx(t)
	for _, stmt := range []string{
		`SET row_security = off; SELECT * FROM devices`,
		`ALTER TABLE devices DISABLE ROW LEVEL SECURITY`,
		`ALTER TABLE devices NO FORCE ROW LEVEL SECURITY`,
		`DROP POLICY tenant_isolation ON devices`,
		`SET ROLE legiond_owner`,
		`CREATE TABLE legiond.evil (x int)`,
		`UPDATE data_keys SET wrapped_key = '\x00'`,
		`DELETE FROM data_keys`,
	} {
		err := e.store.InTx(ctx, CustomerScope(uuid.New(), "t"), func(tx *Tx) error {
			_, err := tx.PgxTx().Exec(ctx, stmt)
			return err
		})
		if err == nil {
			t.Errorf("%q succeeded as the application role", stmt)
		}
	}
}

// writeCase is an attacker scope and the tenant it attacks.
type writeCase struct {
	name     string
	attacker Scope
	own      tenantFixture // a row the attacker legitimately owns
	victim   tenantFixture
	vPartner partnerFixture // a partner the attacker is not
}

func TestRLSWritesIntoOtherTenantFail(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	admin := e.admin(t)
	cases := []writeCase{
		{"customer A into B (same partner)", CustomerScope(w.A.Customer.ID, "attacker-a"), w.A, w.B, w.P2},
		{"customer D (direct) into A", CustomerScope(w.D.Customer.ID, "attacker-d"), w.D, w.A, w.P1},
		{"partner P1 into C (P2's customer)", PartnerScope(w.P1.Partner.ID, "attacker-p1"), w.A, w.C, w.P2},
	}
	for _, wc := range cases {
		v := wc.victim
		victimPK := map[string]any{
			"partners": wc.vPartner.Partner.ID, "customers": v.Customer.ID, "data_keys": v.DataKey,
			"sites": v.Site.ID, "tap_points": v.Tap.ID, "devices": v.Device[:], "gateways": v.Gateway[:],
			"users": v.User.ID, "api_clients": v.Client.ID, "role_grants": v.Grant.ID,
			"break_glass_grants": v.BreakGlass.ID,
		}
		inserts := []struct {
			table, sql string
			args       []any
		}{
			{"partners", `INSERT INTO partners (name) VALUES ('evil partner')`, nil},
			{"customers", `INSERT INTO customers (partner_id, name) VALUES ($1, 'evil')`, []any{wc.vPartner.Partner.ID}},
			{"data_keys", `INSERT INTO data_keys (customer_id, master_key_id, wrapped_key, retired_at) VALUES ($1, 'x', '\x00', now())`, []any{v.Customer.ID}},
			{"sites", `INSERT INTO sites (customer_id, name, country) VALUES ($1, 'evil', 'NL')`, []any{v.Customer.ID}},
			{"tap_points", `INSERT INTO tap_points (customer_id, site_id, name, kind) VALUES ($1, $2, 'evil', 'HOT_TAP')`, []any{v.Customer.ID, v.Site.ID}},
			{"devices", `INSERT INTO devices (dev_eui, customer_id, activation, join_eui, data_key_id, app_key_enc)
				VALUES ('\xdeadbeef00000001', $1, 'OTAA', '\x0102030405060708', $2, '\x00')`, []any{v.Customer.ID, v.DataKey}},
			{"gateways", `INSERT INTO gateways (gateway_eui, customer_id) VALUES ('\xdeadbeef00000002', $1)`, []any{v.Customer.ID}},
			{"gateways", `INSERT INTO gateways (gateway_eui, partner_id) VALUES ('\xdeadbeef00000003', $1)`, []any{wc.vPartner.Partner.ID}},
			{"users", `INSERT INTO users (customer_id, email) VALUES ($1, 'evil@evil.example')`, []any{v.Customer.ID}},
			{"users", `INSERT INTO users (email) VALUES ('staff-evil@evil.example')`, nil},
			{"api_clients", `INSERT INTO api_clients (client_id, customer_id, name, secret_hash) VALUES ('lgc_evil0001', $1, 'evil', sha256('x'))`, []any{v.Customer.ID}},
			{"role_grants", `INSERT INTO role_grants (user_id, role, customer_id) VALUES ($1, 'admin', $2)`, []any{v.User.ID, v.Customer.ID}},
			{"role_grants", `INSERT INTO role_grants (user_id, role) VALUES ($1, 'admin')`, []any{wc.own.User.ID}}, // platform-wide grant
			{"break_glass_grants", `INSERT INTO break_glass_grants (customer_id, subject, reason, starts_at, expires_at)
				VALUES ($1, 'evil', 'evil', now(), now() + interval '1 hour')`, []any{v.Customer.ID}},
			{"break_glass_grants", `INSERT INTO break_glass_grants (customer_id, subject, reason, starts_at, expires_at)
				VALUES ($1, 'evil', 'own customer: only the platform grants', now(), now() + interval '1 hour')`, []any{wc.own.Customer.ID}},
		}
		for i, ins := range inserts {
			t.Run(fmt.Sprintf("%s/insert %s #%d", wc.name, ins.table, i), func(t *testing.T) {
				err := e.store.InTx(ctx, wc.attacker, func(tx *Tx) error {
					_, err := tx.PgxTx().Exec(ctx, ins.sql, ins.args...)
					return err
				})
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "42501" {
					t.Fatalf("insert into %s of another tenant: want insufficient_privilege (42501), got %v", ins.table, err)
				}
			})
		}
		for _, tt := range tenantTables {
			t.Run(wc.name+"/update+delete "+tt.name, func(t *testing.T) {
				pk := victimPK[tt.name]
				var updated, deleted int64
				err := e.store.InTx(ctx, wc.attacker, func(tx *Tx) error {
					tag, err := tx.PgxTx().Exec(ctx, `UPDATE `+tt.name+` SET updated_by = 'x' WHERE `+tt.pk+` = $1`, pk)
					if err != nil {
						return err
					}
					updated = tag.RowsAffected()
					tag, err = tx.PgxTx().Exec(ctx, `DELETE FROM `+tt.name+` WHERE `+tt.pk+` = $1`, pk)
					deleted = tag.RowsAffected()
					return err
				})
				if tt.name == "data_keys" || tt.name == "break_glass_grants" {
					// The application role may not update or delete data
					// keys at all, nor delete or edit grants.
					if err == nil {
						t.Fatal("UPDATE data_keys succeeded")
					}
				} else if err != nil {
					t.Fatalf("targeted update/delete: %v", err)
				}
				if updated != 0 || deleted != 0 {
					t.Fatalf("%s: updated %d, deleted %d rows of another tenant", tt.name, updated, deleted)
				}
				// Unfiltered UPDATE: only own rows change.
				_ = e.store.InTx(ctx, wc.attacker, func(tx *Tx) error {
					_, err := tx.PgxTx().Exec(ctx, `UPDATE `+tt.name+` SET updated_by = 'x'`)
					return err
				})
				var exists bool
				var by string
				if err := admin.QueryRow(ctx, `SELECT true, coalesce(to_jsonb(x) ->> 'updated_by', '') FROM legiond.`+tt.name+` x WHERE `+tt.pk+` = $1`, pk).Scan(&exists, &by); err != nil {
					t.Fatalf("victim row of %s gone: %v", tt.name, err)
				}
				if by == wc.attacker.Actor {
					t.Fatalf("victim row of %s updated by the attacker", tt.name)
				}
			})
		}
		moves := []struct {
			table, sql string
			args       []any
		}{
			{"sites", `UPDATE sites SET customer_id = $1 WHERE id = $2`, []any{v.Customer.ID, wc.own.Site.ID}},
			{"devices", `UPDATE devices SET customer_id = $1, site_id = NULL, tap_point_id = NULL, data_key_id = NULL,
				app_key_enc = NULL, nwk_s_key_enc = NULL, app_s_key_enc = NULL, activation = 'OTAA' WHERE dev_eui = $2`, []any{v.Customer.ID, wc.own.Device[:]}},
			{"users", `UPDATE users SET customer_id = $1 WHERE id = $2`, []any{v.Customer.ID, wc.own.User.ID}},
			{"customers", `UPDATE customers SET partner_id = $1 WHERE id = $2`, []any{wc.vPartner.Partner.ID, wc.own.Customer.ID}},
		}
		for _, mv := range moves {
			t.Run(wc.name+"/move "+mv.table+" into victim", func(t *testing.T) {
				err := e.store.InTx(ctx, wc.attacker, func(tx *Tx) error {
					_, err := tx.PgxTx().Exec(ctx, mv.sql, mv.args...)
					return err
				})
				if err == nil {
					t.Fatalf("moving a %s row into another tenant succeeded", mv.table)
				}
			})
		}
	}
}

func TestRLSRepositoriesHideOtherTenants(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	scope := CustomerScope(w.A.Customer.ID, "t")
	checks := []struct {
		name string
		fn   func(tx *Tx) error
	}{
		{"get customer", func(tx *Tx) error { _, err := tx.Customers().Get(ctx, w.B.Customer.ID); return err }},
		{"get site", func(tx *Tx) error { _, err := tx.Sites().Get(ctx, w.B.Site.ID); return err }},
		{"get tap point", func(tx *Tx) error { _, err := tx.TapPoints().Get(ctx, w.B.Tap.ID); return err }},
		{"get device", func(tx *Tx) error { _, err := tx.Devices().Get(ctx, w.B.Device); return err }},
		{"device keys", func(tx *Tx) error { _, err := tx.Devices().Keys(ctx, w.B.Device); return err }},
		{"get gateway", func(tx *Tx) error { _, err := tx.Gateways().Get(ctx, w.B.Gateway); return err }},
		{"get partner", func(tx *Tx) error { _, err := tx.Partners().Get(ctx, w.P1.Partner.ID); return err }},
		{"delete device", func(tx *Tx) error { return tx.Devices().Delete(ctx, w.B.Device) }},
	}
	for _, c := range checks {
		err := e.store.InTx(ctx, scope, c.fn)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of another tenant: want ErrNotFound, got %v", c.name, err)
		}
	}
	// Creating under another tenant's parent: unknown reference, naming the field.
	refs := []struct {
		field string
		fn    func(tx *Tx) error
	}{
		{"site_id", func(tx *Tx) error {
			_, err := tx.TapPoints().Create(ctx, NewTapPoint{SiteID: w.B.Site.ID, Name: "x", Kind: TapCold})
			return err
		}},
		{"customer_id", func(tx *Tx) error {
			_, err := tx.Sites().Create(ctx, NewSite{CustomerID: w.B.Customer.ID, Name: "x", Country: "NL"})
			return err
		}},
		{"tap_point_id", func(tx *Tx) error {
			k := randKey(t)
			j := nextEUI(1)
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(2), TapPointID: &w.B.Tap.ID, Activation: OTAA, JoinEUI: &j, AppKey: &k})
			return err
		}},
	}
	for _, r := range refs {
		err := e.store.InTx(ctx, scope, r.fn)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != r.field || !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("reference to another tenant's %s: got %v", r.field, err)
		}
	}
	// Lists show own rows only.
	e.inTx(t, scope, func(tx *Tx) error {
		devs, err := tx.Devices().List(ctx, ListOptions{})
		if err != nil {
			return err
		}
		if len(devs) != 1 || devs[0].DevEUI != w.A.Device {
			t.Errorf("device list under A: %+v", devs)
		}
		custs, err := tx.Customers().List(ctx, ListOptions{})
		if err != nil {
			return err
		}
		if len(custs) != 1 || custs[0].ID != w.A.Customer.ID {
			t.Errorf("customer list under A: %+v", custs)
		}
		return nil
	})
	// A customer may not create partners or customers.
	err := e.store.InTx(ctx, scope, func(tx *Tx) error {
		_, err := tx.Partners().Create(ctx, NewPartner{Name: "x"})
		return err
	})
	if !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("customer creating a partner: %v", err)
	}
	// A partner creates customers only under itself.
	err = e.store.InTx(ctx, PartnerScope(w.P1.Partner.ID, "t"), func(tx *Tx) error {
		_, err := tx.Customers().Create(ctx, NewCustomer{PartnerID: &w.P2.Partner.ID, Name: "x"})
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("partner creating a customer under another partner: %v", err)
	}
	e.inTx(t, PartnerScope(w.P1.Partner.ID, "t"), func(tx *Tx) error {
		c, err := tx.Customers().Create(ctx, NewCustomer{Name: "new under p1"})
		if err == nil && (c.PartnerID == nil || *c.PartnerID != w.P1.Partner.ID) {
			t.Errorf("partner's new customer has partner %v", c.PartnerID)
		}
		return err
	})
}
