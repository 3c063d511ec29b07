package devdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/storage/postgres/pgserver"
)

// Database is the name of the development database.
const Database = "legiond"

// Config configures Start.
type Config struct {
	// Dir is the development data folder (e.g. ./.dev). Required.
	Dir string
	// DatabaseURL is an external server as the application role. Default:
	// $DATABASE_URL; empty starts the private server.
	DatabaseURL string
	// MigrateURL migrates an external server. Default:
	// $LEGIOND_MIGRATE_DATABASE_URL; empty skips migrating it.
	MigrateURL string
	// Port adds a TCP listener on 127.0.0.1 to the private server.
	// Default 0: unix socket only, in <Dir>/sock.
	Port int
	// Logger. Default: discard.
	Logger *slog.Logger
	// Getenv reads the environment. Default os.Getenv.
	Getenv func(string) string
}

// Validate reports a missing folder.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("devdb: Dir is required")
	}
	return nil
}

// DB is a running development registry.
type DB struct {
	// AppDSN connects as postgres.AppRole: give it to postgres.Open.
	AppDSN string
	// AdminDSN is the private server's superuser ("" for an external server).
	AdminDSN string
	// KeyRing holds the master key: $LEGIOND_MASTER_KEY when set, else the
	// generated DEVELOPMENT-ONLY key at MasterKeyPath.
	KeyRing       *postgres.KeyRing
	MasterKeyPath string

	srv *pgserver.Server
}

// Start prepares the registry; Stop ends the private server.
func Start(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = cfg.Getenv("DATABASE_URL")
	}
	if cfg.MigrateURL == "" {
		cfg.MigrateURL = cfg.Getenv("LEGIOND_MIGRATE_DATABASE_URL")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("devdb: %w", err)
	}
	// World-traversable, so that a server running as "postgres" reaches
	// its folders when we are root; secrets inside are 0600.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devdb: %w", err)
	}
	db := &DB{}
	if cfg.DatabaseURL != "" {
		db.AppDSN = cfg.DatabaseURL
		if cfg.MigrateURL != "" {
			if _, err := postgres.Migrate(ctx, postgres.MigrateConfig{DSN: cfg.MigrateURL, Logger: cfg.Logger}); err != nil {
				return nil, fmt.Errorf("devdb: %w", err)
			}
		}
	} else {
		srv, err := pgserver.Start(ctx, pgserver.Config{DataDir: filepath.Join(dir, "postgres"), Durable: true, Port: cfg.Port, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("devdb: %w", err)
		}
		db.srv = srv
		if err := db.prepare(ctx, dir, cfg.Logger); err != nil {
			_ = srv.Stop()
			return nil, err
		}
	}
	if err := db.loadKey(dir, cfg.Getenv, cfg.Logger); err != nil {
		_ = db.Stop()
		return nil, err
	}
	return db, nil
}

func (db *DB) prepare(ctx context.Context, dir string, log *slog.Logger) error {
	db.AdminDSN = db.srv.DSN(Database)
	conn, err := pgx.Connect(ctx, db.srv.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("devdb: %w", err)
	}
	var exists bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, Database).Scan(&exists)
	_ = conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("devdb: %w", err)
	}
	if !exists {
		if err := db.srv.CreateDatabase(ctx, Database, ""); err != nil {
			return fmt.Errorf("devdb: %w", err)
		}
	}
	pw, err := secretFile(filepath.Join(dir, "app-role.password"))
	if err != nil {
		return err
	}
	if _, err := postgres.Migrate(ctx, postgres.MigrateConfig{DSN: db.AdminDSN, AppPassword: pw, Logger: log}); err != nil {
		return fmt.Errorf("devdb: %w", err)
	}
	db.AppDSN = db.srv.UserDSN(Database, postgres.AppRole, pw)
	// For operators: DATABASE_URL=$(cat .dev/database-url) legiond admin ...
	if err := os.WriteFile(filepath.Join(dir, "database-url"), []byte(db.AppDSN+"\n"), 0o600); err != nil {
		return fmt.Errorf("devdb: %w", err)
	}
	return nil
}

// secretFile returns the secret in path, generating it on first use.
func secretFile(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	}
	var r [18]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("devdb: %w", err)
	}
	s := hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("devdb: %w", err)
	}
	return s, nil
}

func (db *DB) loadKey(dir string, getenv func(string) string, log *slog.Logger) error {
	var mk postgres.MasterKey
	var err error
	if getenv(postgres.MasterKeyEnv) != "" {
		mk, err = postgres.LoadMasterKey("", getenv)
	} else {
		mk, db.MasterKeyPath, err = postgres.LoadOrCreateDevMasterKey(dir)
		if err == nil {
			log.Warn("using the DEVELOPMENT-ONLY master key; never for real devices", "path", db.MasterKeyPath)
		}
	}
	if err != nil {
		return fmt.Errorf("devdb: %w", err)
	}
	db.KeyRing, err = postgres.NewKeyRing(mk)
	return err
}

// Open opens a Store on the development registry.
func (db *DB) Open(ctx context.Context, log *slog.Logger) (*postgres.Store, error) {
	return postgres.Open(ctx, postgres.Config{DSN: db.AppDSN, KeyRing: db.KeyRing, Logger: log})
}

// Stop stops the private server (nothing for an external one).
func (db *DB) Stop() error {
	if db.srv == nil {
		return nil
	}
	return db.srv.Stop()
}
