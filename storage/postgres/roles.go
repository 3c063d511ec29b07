package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// EnsureRoles creates the cluster roles OwnerRole and AppRole when they
// are missing and makes the connecting role a member of OwnerRole, as
// Migrate's bootstrap does, but creates no schema: a restore
// (storage/backup) needs the roles a dump refers to in an otherwise empty
// database. With appPassword set it also sets AppRole's password (roles
// and their passwords are cluster-wide and not part of a database dump).
//
// dsn needs CREATEROLE (or superuser).
func EnsureRoles(ctx context.Context, dsn, appPassword string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("ensure roles: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if err := ensureRoles(ctx, conn, appPassword); err != nil {
		return fmt.Errorf("ensure roles: %w", err)
	}
	return nil
}

// ensureRoles is EnsureRoles on an open connection (Migrate's bootstrap
// runs it too).
func ensureRoles(ctx context.Context, conn *pgx.Conn, appPassword string) error {
	stmts := []string{
		`DO $$ BEGIN
		   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + OwnerRole + `') THEN
		     CREATE ROLE ` + OwnerRole + ` NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
		   END IF;
		 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
		 END $$`,
		`DO $$ BEGIN
		   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + AppRole + `') THEN
		     CREATE ROLE ` + AppRole + ` LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
		   END IF;
		 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
		 END $$`,
		`DO $$ BEGIN
		   IF NOT pg_has_role(current_user, '` + OwnerRole + `', 'MEMBER') THEN
		     EXECUTE format('GRANT ` + OwnerRole + ` TO %I', current_user);
		   END IF;
		 END $$`,
	}
	if appPassword != "" {
		// Utility statements take no parameters: quote the literal.
		stmts = append(stmts, `ALTER ROLE `+AppRole+` WITH LOGIN PASSWORD `+quoteLiteral(appPassword))
	}
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	var super, bypass bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1`, AppRole).Scan(&super, &bypass); err != nil {
		return fmt.Errorf("check %s: %w", AppRole, err)
	}
	if super || bypass {
		return fmt.Errorf("%w: %s is superuser or BYPASSRLS: row-level security would not bind it; fix the role", ErrUnsafeRole, AppRole)
	}
	return nil
}
