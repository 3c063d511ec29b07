// Package pgtest gives integration tests a real PostgreSQL server.
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
// databases and roles. Otherwise a private server is started with
// storage/postgres/pgserver (see there for how) and stopped at the end.
// A server that cannot be started fails the run with a clear message:
// tests never skip silently. Binaries missing on a fresh machine are
// installed by scripts/ensure-postgres.sh (make test calls it).
//
// Only tests import this package.
package pgtest
