package postgres

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures a Store.
type Config struct {
	// DSN connects as the application role (AppRole). Required.
	DSN string
	// MaxConns bounds the pool. Default 8.
	MaxConns int32
	// KeyRing encrypts and decrypts device keys. Default nil: operations
	// that touch keys fail with ErrNoKeyRing; everything else works.
	KeyRing *KeyRing
	// Logger is used for rare events (pool open/close). Default: discard.
	Logger *slog.Logger
	// AllowUnsafeRole lets Open accept a superuser, BYPASSRLS or owning
	// role. Default false; only for tools that must repair data, never for
	// a serving node: with such a role row-level security does not apply.
	AllowUnsafeRole bool
	// SkipVersionCheck skips checking that the schema is migrated to
	// LatestVersion. Default false.
	SkipVersionCheck bool
}

// Validate reports missing or out-of-range settings.
func (c *Config) Validate() error {
	if c.DSN == "" {
		return &FieldError{Field: "database_url", Reason: "is required"}
	}
	if c.MaxConns < 0 {
		return &FieldError{Field: "max_conns", Reason: "must not be negative"}
	}
	return nil
}

// Store is the PostgreSQL registry: a pgxpool plus the key ring. Every
// access goes through InTx with a Scope.
type Store struct {
	pool *pgxpool.Pool
	keys *KeyRing
	log  *slog.Logger
	cfg  Config
}

// Open connects, and refuses (ErrUnsafeRole) a role that row-level
// security would not bind, and a schema older than this binary.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("open store: parse dsn: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	pc.ConnConfig.RuntimeParams["search_path"] = Schema
	pc.ConnConfig.RuntimeParams["application_name"] = "legiond"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{pool: pool, keys: cfg.KeyRing, log: cfg.Logger, cfg: cfg}
	if err := s.checkRole(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.log.Info("registry store open", "max_conns", cfg.MaxConns)
	return s, nil
}

func (s *Store) checkRole(ctx context.Context) error {
	var (
		user          string
		super, bypass bool
		owns          bool
		schemaExists  bool
	)
	err := s.pool.QueryRow(ctx, `
		SELECT current_user, r.rolsuper, r.rolbypassrls,
		       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		               WHERE n.nspname = $1 AND pg_has_role(current_user, c.relowner, 'USAGE')),
		       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)
		FROM pg_roles r WHERE r.rolname = current_user`, Schema).Scan(&user, &super, &bypass, &owns, &schemaExists)
	if err != nil {
		return fmt.Errorf("check role: %w", err)
	}
	if !s.cfg.AllowUnsafeRole && (super || bypass || owns) {
		return fmt.Errorf("%w: %q (superuser=%v bypassrls=%v owns registry tables=%v); connect as %s",
			ErrUnsafeRole, user, super, bypass, owns, AppRole)
	}
	if !schemaExists {
		return errSchemaMissing
	}
	if s.cfg.SkipVersionCheck {
		return nil
	}
	var v *int64
	if err := s.pool.QueryRow(ctx, `SELECT max(version_id) FROM `+versionTable+` WHERE is_applied`).Scan(&v); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if v == nil || *v < LatestVersion() {
		got := int64(0)
		if v != nil {
			got = *v
		}
		return fmt.Errorf("schema at version %d, this binary needs %d: run `legiond migrate`", got, LatestVersion())
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pool for adapters that manage their own transactions
// (they must set the scope themselves with SetScope).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// KeyRing returns the configured key ring (may be nil).
func (s *Store) KeyRing() *KeyRing { return s.keys }

// Tx is one scoped transaction. Its repositories run every statement
// inside it; row-level security hides every row outside the scope.
type Tx struct {
	tx    pgx.Tx
	scope Scope
	store *Store
}

// Scope returns the transaction's scope.
func (t *Tx) Scope() Scope { return t.scope }

// PgxTx exposes the underlying transaction, for queries this package
// does not provide. The scope applies to them too.
func (t *Tx) PgxTx() pgx.Tx { return t.tx }

// SetScope sets scope on an open transaction (SET LOCAL semantics: it ends
// with the transaction). InTx does this; use it only with Pool.
func SetScope(ctx context.Context, tx pgx.Tx, scope Scope) error {
	if err := scope.Validate(); err != nil {
		return err
	}
	actor := scope.Actor
	if actor == "" {
		actor = "unknown"
	}
	if len(actor) > 200 {
		actor = actor[:200]
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('legiond.tenant', $1, true), set_config('legiond.actor', $2, true)`,
		scope.setting(), actor); err != nil {
		return fmt.Errorf("set scope: %w", err)
	}
	return nil
}

// InTx runs fn in a transaction scoped to scope, committing when fn
// returns nil and rolling back otherwise: nothing is half-written.
func (s *Store) InTx(ctx context.Context, scope Scope, fn func(tx *Tx) error) error {
	if err := scope.Validate(); err != nil {
		return err
	}
	ptx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = ptx.Rollback(context.WithoutCancel(ctx)) }()
	if err := SetScope(ctx, ptx, scope); err != nil {
		return err
	}
	if err := fn(&Tx{tx: ptx, scope: scope, store: s}); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return mapErr("commit", err)
	}
	return nil
}
