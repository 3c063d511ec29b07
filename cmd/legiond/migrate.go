package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/legionelladossier/legiond/storage/postgres"
)

// Environment variables of the database commands.
const (
	envDatabaseURL        = "DATABASE_URL"
	envMigrateDatabaseURL = "LEGIOND_MIGRATE_DATABASE_URL"
	envAppPassword        = "LEGIOND_APP_PASSWORD"
)

func runMigrate(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(s.err)
	dbURL := fs.String("database-url", "", "PostgreSQL URL of a role that may create roles and the schema "+
		"(default $"+envMigrateDatabaseURL+", else $"+envDatabaseURL+")")
	pwFile := fs.String("app-password-file", "", "file holding the password to set for the "+postgres.AppRole+
		" role (default $"+envAppPassword+"; none: leave it unchanged)")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "usage: legiond migrate [--database-url URL] [--app-password-file FILE]")
		fmt.Fprintln(s.err, "\nCreates the roles "+postgres.OwnerRole+" and "+postgres.AppRole+" and the schema when missing,")
		fmt.Fprintln(s.err, "then applies every pending migration embedded in this binary.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	url := firstNonEmpty(*dbURL, os.Getenv(envMigrateDatabaseURL), os.Getenv(envDatabaseURL))
	if url == "" {
		fmt.Fprintln(s.err, "legiond migrate: no database: pass --database-url or set "+envMigrateDatabaseURL+" or "+envDatabaseURL)
		return exitUsage
	}
	pw := os.Getenv(envAppPassword)
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			fmt.Fprintf(s.err, "legiond migrate: %v\n", err)
			return exitFailure
		}
		pw = strings.TrimSpace(string(b))
	}
	log := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelInfo}))
	res, err := postgres.Migrate(ctx, postgres.MigrateConfig{DSN: url, AppPassword: pw, Logger: log})
	if err != nil {
		fmt.Fprintf(s.err, "legiond migrate: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(s.out, "schema at version %d (was %d; %d migrations applied)\n", res.To, res.From, len(res.Applied))
	return exitOK
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
