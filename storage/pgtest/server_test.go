package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	os.Exit(Main(m, MainOptions{Template: func(ctx context.Context, dsn string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `CREATE TABLE marker (v int); INSERT INTO marker VALUES (42)`)
		return err
	}}))
}

func TestNewDatabaseCopiesTemplateAndIsolates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := NewDatabase(t), NewDatabase(t)
	if a.Name == b.Name {
		t.Fatal("same database twice")
	}
	ca, err := pgx.Connect(ctx, a.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	var v int
	if err := ca.QueryRow(ctx, `SELECT v FROM marker`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("template not copied: v=%d err=%v", v, err)
	}
	if _, err := ca.Exec(ctx, `INSERT INTO marker VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, `SELECT count(*) FROM marker`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("databases not isolated: n=%d err=%v", n, err)
	}
}
