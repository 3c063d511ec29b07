package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/storage/postgres/pgserver"
)

// Server is a running PostgreSQL server (see pgserver).
type Server = pgserver.Server

// Config configures a private server (see pgserver).
type Config = pgserver.Config

// Superuser is the bootstrap superuser of a private server.
const Superuser = pgserver.Superuser

// Start starts a private server (see pgserver.Start).
func Start(ctx context.Context, cfg Config) (*Server, error) { return pgserver.Start(ctx, cfg) }

// External wraps an existing server (see pgserver.External).
func External(dsn string) (*Server, error) { return pgserver.External(dsn) }

// MainOptions configure Main.
type MainOptions struct {
	// Template, when set, prepares the template database every
	// NewDatabase copies (for example: run the migrations). It gets an
	// administrative DSN for the template and must close its connections.
	Template func(ctx context.Context, dsn string) error
	// Server configures the private server. Default: the zero Config.
	Server Config
}

// The server of the running test binary. Main sets it once before m.Run
// and tests only read it: this is test plumbing, not production state.
var current struct {
	mu       sync.Mutex
	srv      *Server
	template string
	seq      atomic.Int64
	prefix   string
}

// StartFromEnv returns the server named by PGTEST_DATABASE_URL or
// DATABASE_URL when one is set, and otherwise starts a private one.
func StartFromEnv(ctx context.Context, cfg Config) (*Server, error) {
	for _, k := range []string{"PGTEST_DATABASE_URL", "DATABASE_URL"} {
		if dsn := os.Getenv(k); dsn != "" {
			return External(dsn)
		}
	}
	return Start(ctx, cfg)
}

// Main starts the server for a test binary, prepares the template, runs
// the tests and stops the server. It returns the exit code for os.Exit.
// A server that cannot be started fails the run with a clear message:
// tests never skip silently.
func Main(m *testing.M, opts MainOptions) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	srv, err := StartFromEnv(ctx, opts.Server)
	if err != nil {
		cancel()
		fmt.Fprintf(os.Stderr, "FAIL: cannot start PostgreSQL for the integration tests: %v\n", err)
		return 1
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "lgt_" + hex.EncodeToString(b[:])
	template := ""
	if opts.Template != nil {
		template = prefix + "_template"
		if err := srv.CreateDatabase(ctx, template, ""); err != nil {
			cancel()
			_ = srv.Stop()
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			return 1
		}
		if err := opts.Template(ctx, srv.DSN(template)); err != nil {
			_ = srv.DropDatabase(ctx, template)
			cancel()
			_ = srv.Stop()
			fmt.Fprintf(os.Stderr, "FAIL: prepare template database: %v\n", err)
			return 1
		}
	}
	cancel()

	current.mu.Lock()
	current.srv, current.template, current.prefix = srv, template, prefix
	current.mu.Unlock()

	code := m.Run()

	if !srv.Private() && template != "" {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = srv.DropDatabase(dctx, template)
		dcancel()
	}
	if err := srv.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
	}
	return code
}

// Current returns the server started by Main; it fails tb when Main did
// not run.
func Current(tb testing.TB) *Server {
	tb.Helper()
	current.mu.Lock()
	defer current.mu.Unlock()
	if current.srv == nil {
		tb.Fatal("pgtest: no server: call pgtest.Main from TestMain")
	}
	return current.srv
}

// Database is a fresh database for one test.
type Database struct {
	Server *Server
	Name   string
	// DSN is an administrative DSN (superuser on a private server).
	DSN string
}

// UserDSN returns a DSN for this database as another role.
func (d *Database) UserDSN(user, password string) string {
	return d.Server.UserDSN(d.Name, user, password)
}

// NewDatabase creates a fresh database from the template Main prepared
// and drops it when the test ends.
func NewDatabase(tb testing.TB) *Database {
	tb.Helper()
	srv := Current(tb)
	current.mu.Lock()
	template, prefix := current.template, current.prefix
	current.mu.Unlock()
	name := fmt.Sprintf("%s_%d_%s", prefix, current.seq.Add(1), sanitize(tb.Name()))
	if len(name) > 63 {
		name = name[:63]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.CreateDatabase(ctx, name, template); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.DropDatabase(ctx, name); err != nil {
			tb.Logf("pgtest: %v", err)
		}
	})
	return &Database{Server: srv, Name: name, DSN: srv.DSN(name)}
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
