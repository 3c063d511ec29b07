// Package devdb gives `legiond dev` (make run) a ready PostgreSQL registry
// on one machine: when DATABASE_URL is unset it starts a private server
// from the system's PostgreSQL binaries in <dir>/postgres (kept across
// runs), creates the database, applies the migrations, sets the
// application role's password (kept in <dir>), and loads or generates the
// DEVELOPMENT-ONLY master key in <dir>. With DATABASE_URL set it uses that
// server instead (and migrates it when LEGIOND_MIGRATE_DATABASE_URL names
// a role allowed to).
//
// It is development wiring only: production deployments run `legiond
// migrate` against their own server and pass the master key explicitly.
package devdb
