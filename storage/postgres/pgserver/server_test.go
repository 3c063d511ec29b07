package pgserver

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Port: 5433}, true},
		{Config{Port: -1}, false},
		{Config{Port: 70000}, false},
		{Config{StartTimeout: -time.Second}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: err=%v", tc.cfg, err)
		}
	}
}

func TestMissingBinaries(t *testing.T) {
	t.Setenv("PG_BINDIR", "/nonexistent")
	if _, err := Start(context.Background(), Config{}); !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("want ErrNoBinaries, got %v", err)
	}
}

// TestStartStop starts a throw-away server with a TCP listener, checks
// password authentication, and checks Stop removes everything.
func TestStartStop(t *testing.T) {
	if os.Getenv("PGTEST_DATABASE_URL")+os.Getenv("DATABASE_URL") != "" {
		t.Skip("an external server is configured; private servers are not started")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := Start(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := srv.DataDir()
	conn, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var user string
	if err := conn.QueryRow(ctx, `SELECT current_user`).Scan(&user); err != nil || user != Superuser {
		t.Fatalf("user %q %v", user, err)
	}
	_ = conn.Close(ctx)
	if c, err := pgx.Connect(ctx, srv.UserDSN("postgres", Superuser, "wrong")); err == nil {
		_ = c.Close(ctx)
		t.Fatal("wrong password accepted")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data folder left behind: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal("second Stop:", err)
	}
}
