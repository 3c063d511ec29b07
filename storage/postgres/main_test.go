package postgres

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/legionelladossier/legiond/storage/pgtest"
)

// testAppPassword is the application role's password on test servers.
const testAppPassword = "legiond-app-test-password"

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, pgtest.MainOptions{Template: func(ctx context.Context, dsn string) error {
		_, err := Migrate(ctx, MigrateConfig{DSN: dsn, AppPassword: testAppPassword})
		return err
	}}))
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type env struct {
	db    *pgtest.Database
	store *Store
	keys  *KeyRing
}

// appDSN is the test database as the application role.
func (e *env) appDSN() string { return e.db.UserDSN(AppRole, testAppPassword) }

// admin connects as the superuser, which bypasses row-level security:
// tests use it to look at raw tables.
func (e *env) admin(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testCtx(t), e.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func newEnv(t testing.TB) *env {
	t.Helper()
	db := pgtest.NewDatabase(t)
	mk, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := NewKeyRing(mk)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, keys: kr}
	st, err := Open(testCtx(t), Config{DSN: e.appDSN(), KeyRing: kr})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	e.store = st
	return e
}

// inTx runs fn under scope and fails the test on error.
func (e *env) inTx(t testing.TB, scope Scope, fn func(tx *Tx) error) {
	t.Helper()
	if err := e.store.InTx(testCtx(t), scope, fn); err != nil {
		t.Fatal(err)
	}
}
