package postgres

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
)

// appendN appends n entries under scope and returns them.
func appendN(t *testing.T, e *env, scope Scope, n int, action string) []AuditRecord {
	t.Helper()
	var out []AuditRecord
	for i := 0; i < n; i++ {
		r, err := e.store.AppendAudit(testCtx(t), scope, AuditEntry{Action: action, Target: fmt.Sprintf("thing:%d", i),
			Details: map[string]any{"i": i, "note": "é ✓ \"quoted\"", "nested": map[string]any{"b": []int{1, 2}, "a": nil}}})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		out = append(out, r)
	}
	return out
}

func TestAuditAppendChainsAndVerifies(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)

	var recs []AuditRecord
	recs = append(recs, appendN(t, e, PlatformScope("user:ops"), 2, AuditDataAccess)...)
	recs = append(recs, appendN(t, e, CustomerScope(w.A.Customer.ID, "user:a"), 2, AuditAdminChange)...)
	recs = append(recs, appendN(t, e, PartnerScope(w.P1.Partner.ID, "user:p1"), 1, AuditTokenIssued)...)

	// An admin change and its entry commit together...
	e.inTx(t, CustomerScope(w.A.Customer.ID, "user:a"), func(tx *Tx) error {
		site, err := tx.Sites().Create(ctx, NewSite{Name: "audited", Country: "NL"})
		if err != nil {
			return err
		}
		r, err := tx.AppendAudit(ctx, AuditEntry{Action: AuditAdminChange, Target: "site:" + site.ID.String(),
			Details: map[string]any{"op": "create"}})
		recs = append(recs, r)
		return err
	})
	// ...and roll back together, leaving no gap in seq.
	boom := errors.New("boom")
	err := e.store.InTx(ctx, CustomerScope(w.A.Customer.ID, "user:a"), func(tx *Tx) error {
		if _, err := tx.Sites().Create(ctx, NewSite{Name: "rolled back", Country: "NL"}); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(ctx, AuditEntry{Action: AuditAdminChange, Target: "site:x"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	recs = append(recs, appendN(t, e, PlatformScope("cli:backup"), 1, AuditBackupCreated)...)

	zero := make([]byte, 32)
	for i, r := range recs {
		if r.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d: want a gapless sequence", i, r.Seq)
		}
		want := zero
		if i > 0 {
			want = recs[i-1].Hash
		}
		if !bytes.Equal(r.PrevHash, want) {
			t.Fatalf("entry %d: prev_hash %x, want %x", r.Seq, r.PrevHash, want)
		}
		if !bytes.Equal(AuditHash(r), r.Hash) {
			t.Fatalf("entry %d: Go hash %x differs from the database's %x", r.Seq, AuditHash(r), r.Hash)
		}
	}
	if recs[2].CustomerID == nil || *recs[2].CustomerID != w.A.Customer.ID || recs[2].Actor != "user:a" {
		t.Fatalf("customer-scope entry defaults: %+v", recs[2])
	}
	if recs[4].PartnerID == nil || *recs[4].PartnerID != w.P1.Partner.ID {
		t.Fatalf("partner-scope entry defaults: %+v", recs[4])
	}
	if recs[0].PartnerID != nil || recs[0].CustomerID != nil {
		t.Fatalf("platform entry has a tenant: %+v", recs[0])
	}

	rep, err := e.store.VerifyAudit(ctx, AuditAnchor{Seq: 3, Hash: recs[2].Hash})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || rep.Entries != int64(len(recs)) || rep.Head.Seq != int64(len(recs)) || !bytes.Equal(rep.Head.Hash, recs[len(recs)-1].Hash) {
		t.Fatalf("report: %+v", rep)
	}
	a, err := ParseAuditAnchor(rep.Head.String())
	if err != nil || a.Seq != rep.Head.Seq || !bytes.Equal(a.Hash, rep.Head.Hash) {
		t.Fatalf("anchor round trip: %v %v", a, err)
	}
}

func TestAuditAppendValidates(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	cases := []struct {
		name  string
		entry AuditEntry
		field string
	}{
		{"no action", AuditEntry{}, "action"},
		{"bad action", AuditEntry{Action: "Drop Table"}, "action"},
		{"array details", AuditEntry{Action: "x", Details: []int{1}}, "details"},
		{"two owners", AuditEntry{Action: "x", PartnerID: &w.P1.Partner.ID, CustomerID: &w.A.Customer.ID}, "customer_id"},
		{"long target", AuditEntry{Action: "x", Target: strings.Repeat("t", 401)}, "target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.store.AppendAudit(testCtx(t), PlatformScope("t"), tc.entry)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("want a FieldError on %s, got %v", tc.field, err)
			}
		})
	}
}

func TestAuditIsolation(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	appendN(t, e, PlatformScope("ops"), 1, AuditDataAccess)
	for _, f := range []tenantFixture{w.A, w.B, w.C, w.D} {
		appendN(t, e, CustomerScope(f.Customer.ID, "u"), 1, AuditAdminChange)
	}
	appendN(t, e, PartnerScope(w.P1.Partner.ID, "p"), 1, AuditAdminChange)
	appendN(t, e, PartnerScope(w.P2.Partner.ID, "p"), 1, AuditAdminChange)

	admin := e.admin(t)
	cases := []struct {
		name  string
		scope Scope
		where string
		id    uuid.UUID
	}{
		{"customer A", CustomerScope(w.A.Customer.ID, "t"), custOwned, w.A.Customer.ID},
		{"customer D", CustomerScope(w.D.Customer.ID, "t"), custOwned, w.D.Customer.ID},
		{"partner P1", PartnerScope(w.P1.Partner.ID, "t"), ownerPart, w.P1.Partner.ID},
		{"partner P2", PartnerScope(w.P2.Partner.ID, "t"), ownerPart, w.P2.Partner.ID},
		{"platform", PlatformScope("t"), "$1::uuid IS NOT NULL", uuid.Nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := pkSet(ctx, admin, "seq", `SELECT * FROM legiond.audit_log WHERE `+tc.where, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]bool
			e.inTx(t, tc.scope, func(tx *Tx) error {
				got, err = pkSet(ctx, tx.PgxTx(), "seq", `SELECT * FROM audit_log`)
				return err
			})
			if len(want) == 0 || strings.Join(keys(got), ",") != strings.Join(keys(want), ",") {
				t.Fatalf("got %v, want %v", keys(got), keys(want))
			}
		})
	}
	// No scope: nothing.
	conn, err := e.store.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("without a scope: %d rows, %v", n, err)
	}
	conn.Release()

	// Writing an entry about another tenant is refused.
	for _, tc := range []struct {
		name  string
		scope Scope
		entry AuditEntry
	}{
		{"customer A about B", CustomerScope(w.A.Customer.ID, "x"), AuditEntry{Action: "x", CustomerID: &w.B.Customer.ID}},
		{"customer A about its partner", CustomerScope(w.A.Customer.ID, "x"), AuditEntry{Action: "x", PartnerID: &w.P1.Partner.ID}},
		{"partner P1 about C", PartnerScope(w.P1.Partner.ID, "x"), AuditEntry{Action: "x", CustomerID: &w.C.Customer.ID}},
	} {
		if _, err := e.store.AppendAudit(ctx, tc.scope, tc.entry); !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("%s: want ErrPermissionDenied, got %v", tc.name, err)
		}
	}
}

func TestAuditIsAppendOnly(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	recs := appendN(t, e, PlatformScope("ops"), 3, AuditDataAccess)

	// The application role: no privilege at all.
	for _, stmt := range []string{
		`UPDATE audit_log SET actor = 'someone else' WHERE seq = 2`,
		`DELETE FROM audit_log WHERE seq = 2`,
		`TRUNCATE audit_log`,
	} {
		err := e.store.InTx(ctx, PlatformScope("attacker"), func(tx *Tx) error {
			_, err := tx.PgxTx().Exec(ctx, stmt)
			return err
		})
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("app role %q: want insufficient_privilege, got %v", stmt, err)
		}
	}
	// A forged seq or hash is overwritten by the chain trigger.
	e.inTx(t, PlatformScope("attacker"), func(tx *Tx) error {
		var seq int64
		var hash []byte
		err := tx.PgxTx().QueryRow(ctx, `INSERT INTO audit_log (seq, at, actor, action, prev_hash, hash)
			VALUES (1000, '2000-01-01', 'x', 'forged', '\x`+strings.Repeat("ab", 32)+`', '\x`+strings.Repeat("cd", 32)+`')
			RETURNING seq, hash`).Scan(&seq, &hash)
		if err == nil && (seq != 4 || bytes.Equal(hash, bytes.Repeat([]byte{0xcd}, 32))) {
			t.Errorf("forged values kept: seq %d hash %x", seq, hash)
		}
		return err
	})
	// The owner (here the superuser) is stopped by the trigger too.
	admin := e.admin(t)
	for _, stmt := range []string{
		`UPDATE legiond.audit_log SET actor = 'x' WHERE seq = 1`,
		`DELETE FROM legiond.audit_log WHERE seq = 1`,
		`DELETE FROM legiond.audit_log WHERE false`,
		`TRUNCATE legiond.audit_log`,
	} {
		_, err := admin.Exec(ctx, stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("owner %q: want the append-only trigger to refuse, got %v", stmt, err)
		}
	}
	rep, err := e.store.VerifyAudit(ctx, AuditAnchor{Seq: 3, Hash: recs[2].Hash})
	if err != nil || !rep.Intact() || rep.Entries != 4 {
		t.Fatalf("after refused tampering: %+v %v", rep, err)
	}
}

// tamper runs statements as the superuser with triggers disabled, as a
// malicious database administrator would.
func tamper(t *testing.T, e *env, stmts ...string) {
	t.Helper()
	ctx := testCtx(t)
	admin := e.admin(t)
	if _, err := admin.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := admin.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestAuditVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name    string
		stmts   []string
		anchor  bool // verify with an anchor at the newest entry
		wantBad []int64
		reason  string
	}{
		{"edited details", []string{`UPDATE legiond.audit_log SET details = '{"i": 99}' WHERE seq = 3`}, false, []int64{3}, "edited"},
		{"edited actor", []string{`UPDATE legiond.audit_log SET actor = 'user:innocent' WHERE seq = 1`}, false, []int64{1}, "edited"},
		{"edited time", []string{`UPDATE legiond.audit_log SET at = at - interval '1 microsecond' WHERE seq = 6`}, false, []int64{6}, "edited"},
		{"deleted entry", []string{`DELETE FROM legiond.audit_log WHERE seq = 4`}, false, []int64{4}, "missing"},
		{"deleted two", []string{`DELETE FROM legiond.audit_log WHERE seq IN (2, 3)`}, false, []int64{2}, "2 to 3 are missing"},
		{"edit and delete", []string{
			`UPDATE legiond.audit_log SET target = 'thing:other' WHERE seq = 2`,
			`DELETE FROM legiond.audit_log WHERE seq = 5`}, false, []int64{2, 5}, "edited"},
		{"rewritten with recomputed hash", []string{
			`UPDATE legiond.audit_log SET action = 'admin.change', hash = sha256(prev_hash || legiond.audit_entry_bytes(seq, at, actor, actor_role, 'admin.change', partner_id, customer_id, target, details)) WHERE seq = 2`},
			false, []int64{3}, "does not link to entry 2"},
		{"newest deleted, anchored", []string{`DELETE FROM legiond.audit_log WHERE seq = 6`}, true, []int64{6}, "newest entries deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			recs := appendN(t, e, PlatformScope("ops"), 6, AuditDataAccess)
			tamper(t, e, tc.stmts...)
			var anchors []AuditAnchor
			if tc.anchor {
				anchors = append(anchors, AuditAnchor{Seq: 6, Hash: recs[5].Hash})
			}
			rep, err := e.store.VerifyAudit(testCtx(t), anchors...)
			if err != nil {
				t.Fatal(err)
			}
			var bad []int64
			for _, p := range rep.Problems {
				bad = append(bad, p.Seq)
			}
			if rep.Intact() || fmt.Sprint(bad) != fmt.Sprint(tc.wantBad) || rep.FirstBad != tc.wantBad[0] || !strings.Contains(rep.Reason, tc.reason) {
				b, _ := json.MarshalIndent(rep, "", " ")
				t.Fatalf("want problems at %v (%q), got %s", tc.wantBad, tc.reason, b)
			}
		})
	}
	t.Run("newest deleted, no anchor: undetectable in-database", func(t *testing.T) {
		e := newEnv(t)
		appendN(t, e, PlatformScope("ops"), 3, AuditDataAccess)
		tamper(t, e, `DELETE FROM legiond.audit_log WHERE seq = 3`)
		rep, err := e.store.VerifyAudit(testCtx(t))
		if err != nil || !rep.Intact() || rep.Head.Seq != 2 {
			t.Fatalf("%+v %v", rep, err)
		}
	})
}

func TestAuditConcurrentAppendsStayLinear(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	scopes := []Scope{PlatformScope("a"), CustomerScope(w.A.Customer.ID, "b"), CustomerScope(w.C.Customer.ID, "c"), PartnerScope(w.P2.Partner.ID, "d")}
	const per = 15
	var wg sync.WaitGroup
	errs := make(chan error, len(scopes)*per)
	for _, sc := range scopes {
		wg.Add(1)
		go func(sc Scope) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := e.store.AppendAudit(ctx, sc, AuditEntry{Action: AuditDataAccess, Details: map[string]int{"i": i}}); err != nil {
					errs <- err
					return
				}
			}
		}(sc)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep, err := e.store.VerifyAudit(ctx)
	if err != nil || !rep.Intact() || rep.Entries != int64(len(scopes)*per) || rep.Head.Seq != rep.Entries {
		t.Fatalf("%+v %v", rep, err)
	}
}

func TestAuditAnchorParse(t *testing.T) {
	good := "12:" + strings.Repeat("0a", 32)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{good, true}, {" " + good + "\n", true}, {"0:" + strings.Repeat("0a", 32), false},
		{"12", false}, {"x:" + strings.Repeat("0a", 32), false}, {"12:abcd", false}, {"12:" + strings.Repeat("zz", 32), false},
	} {
		_, err := ParseAuditAnchor(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
