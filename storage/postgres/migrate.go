package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Role and schema names. Roles are cluster-wide; the schema is per database.
const (
	// OwnerRole owns every registry object. It cannot log in: migrations
	// run as a login role that is a member of it (SET ROLE).
	OwnerRole = "legiond_owner"
	// AppRole is the application's login role. It owns nothing, is neither
	// superuser nor BYPASSRLS, and so is always bound by row-level security.
	AppRole = "legiond_app"
	// Schema holds every registry object.
	Schema = "legiond"

	versionTable = Schema + ".goose_db_version"
	// migrateLockID is the advisory lock serialising concurrent migrators.
	migrateLockID = 0x6c6567696f6e64 // "legiond"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrateConfig configures Migrate.
type MigrateConfig struct {
	// DSN connects as a role allowed to create roles (CREATEROLE or
	// superuser) and to create a schema in the database (its owner or a
	// superuser). Required.
	DSN string
	// AppPassword, when set, lets AppRole log in with this password.
	// Default "": the role's password is left as it is (an operator sets
	// it, or certificate authentication is used).
	AppPassword string
	// Logger receives one line per applied migration. Default: discard.
	Logger *slog.Logger
}

// Validate reports a missing DSN.
func (c *MigrateConfig) Validate() error {
	if c.DSN == "" {
		return &FieldError{Field: "database_url", Reason: "is required"}
	}
	return nil
}

// MigrateResult tells what Migrate did.
type MigrateResult struct {
	From, To int64    // schema versions before and after
	Applied  []string // migration files applied, in order
}

// LatestVersion is the schema version this binary's migrations end at.
func LatestVersion() int64 {
	var latest int64
	entries, _ := fs.ReadDir(migrationFiles, "migrations")
	for _, e := range entries {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// Migrate creates the roles and the schema when missing and applies every
// pending embedded migration, as OwnerRole, under an advisory lock so that
// concurrent starts do not race.
func Migrate(ctx context.Context, cfg MigrateConfig) (MigrateResult, error) {
	var res MigrateResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := bootstrap(ctx, cfg.DSN, cfg.AppPassword); err != nil {
		return res, fmt.Errorf("migrate: bootstrap roles and schema: %w", err)
	}

	connCfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return res, fmt.Errorf("migrate: parse dsn: %w", err)
	}
	connCfg.RuntimeParams["search_path"] = Schema
	db := stdlib.OpenDB(*connCfg, stdlib.OptionAfterConnect(func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE "+OwnerRole)
		return err
	}))
	defer func() { _ = db.Close() }()

	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrateLockID))
	if err != nil {
		return res, fmt.Errorf("migrate: locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(versionTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if res.From, err = currentVersion(ctx, db); err != nil {
		return res, err
	}
	results, err := p.Up(ctx)
	for _, r := range results {
		if r.Error == nil {
			res.Applied = append(res.Applied, r.Source.Path)
			log.Info("migration applied", "file", r.Source.Path, "version", r.Source.Version, "duration", r.Duration)
		}
	}
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if res.To, err = p.GetDBVersion(ctx); err != nil {
		return res, fmt.Errorf("migrate: version: %w", err)
	}
	log.Info("schema up to date", "from", res.From, "to", res.To)
	return res, nil
}

// currentVersion reads the applied version, 0 on a fresh database.
func currentVersion(ctx context.Context, db *sql.DB) (int64, error) {
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&exists); err != nil {
		return 0, fmt.Errorf("migrate: version table: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT max(version_id) FROM `+versionTable+` WHERE is_applied`).Scan(&v); err != nil {
		return 0, fmt.Errorf("migrate: version: %w", err)
	}
	return v.Int64, nil
}

// bootstrap creates the cluster roles and the schema. Roles are shared by
// every database of a cluster, so concurrent bootstraps in different
// databases may race: duplicates are tolerated.
func bootstrap(ctx context.Context, dsn, appPassword string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()

	if err := ensureRoles(ctx, conn, appPassword); err != nil {
		return fmt.Errorf("roles: %w", err)
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+Schema+` AUTHORIZATION `+OwnerRole); err != nil {
		var owner string
		if qerr := conn.QueryRow(ctx, `SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1`, Schema).Scan(&owner); qerr != nil || owner != OwnerRole {
			return fmt.Errorf("schema: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, `REVOKE CREATE ON SCHEMA `+Schema+` FROM PUBLIC`); err != nil {
		return fmt.Errorf("schema privileges: %w", err)
	}
	return nil
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// errSchemaMissing is returned by Open when the database was never migrated.
var errSchemaMissing = errors.New("registry schema missing: run `legiond migrate`")
