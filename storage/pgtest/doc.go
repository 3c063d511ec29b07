// Package pgtest runs a private, throw-away PostgreSQL server from the
// system's PostgreSQL binaries, for tests and for local development.
//
// A test package starts one server for its whole run from TestMain:
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.Main(m, pgtest.MainOptions{Template: migrate}))
//	}
//
// and each test takes a fresh database, copied from a template that Main
// prepared once (for example by running the migrations):
//
//	db := pgtest.NewDatabase(t)
//
// When PGTEST_DATABASE_URL or DATABASE_URL is set, no server is started:
// that server is used instead, and its role must be allowed to create
// databases (and roles, if the template creates them).
//
// Otherwise the binaries are taken from PG_BINDIR or the newest
// /usr/lib/postgresql/*/bin. The server runs in a fresh temporary data
// folder (or a given one, reused across runs), listens on a unix socket in
// that folder (and on a loopback TCP port when asked), authenticates with
// SCRAM passwords, and runs as an unprivileged user ("postgres", else
// "nobody") when the caller is root, because PostgreSQL refuses to run as
// root. Installing missing binaries is not this package's job: that is
// scripts/ensure-postgres.sh, called by the Makefile and CI.
//
// This package must not be imported by production code paths other than
// development tooling.
package pgtest
