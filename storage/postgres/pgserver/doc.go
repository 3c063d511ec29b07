// Package pgserver runs a private PostgreSQL server from the system's
// PostgreSQL binaries: for tests (through storage/pgtest) and for the
// development registry of `make run` (through storage/postgres/devdb).
//
// The binaries are taken from PG_BINDIR or the newest
// /usr/lib/postgresql/*/bin (else initdb in PATH). The server runs in a
// fresh temporary data folder (removed by Stop) or a given one (kept and
// reused), listens on a unix socket in a private folder (plus 127.0.0.1 on
// a given port), authenticates with SCRAM passwords, and runs as an
// unprivileged account ("postgres", else "nobody") when the caller is root,
// because PostgreSQL refuses to run as root. Readiness is a connection
// attempt loop with a deadline that also watches the process, so a server
// that dies at start-up fails fast with its log.
//
// Installing missing binaries is not this package's job: that is
// scripts/ensure-postgres.sh, which the Makefile and CI call.
package pgserver
