// Package postgres is the PostgreSQL system of record for who owns what:
// partners, customers (the tenant), sites, tap points, devices and their
// keys, gateways, users, API clients and role grants.
//
// # Schema and roles
//
// The schema lives in migrations/*.sql, embedded in the binary and applied
// with goose by Migrate (`legiond migrate`). Every object sits in schema
// "legiond" and is owned by the NOLOGIN role legiond_owner. The application
// connects as legiond_app, which owns nothing and is neither superuser nor
// BYPASSRLS; Open refuses any other kind of role (ErrUnsafeRole), so that
// row-level security always binds the serving process.
//
// # Tenancy
//
// Every statement runs in a transaction started by Store.InTx with a
// Scope {Kind: platform|partner|customer, PartnerID, CustomerID}. InTx sets
// it with set_config('legiond.tenant', ..., true) (SET LOCAL semantics), and
// the row-level security policies (FORCEd, so they bind the owner too)
// read it: a customer sees only its own rows, a partner its own row and its
// customers' rows, the platform everything, and a transaction without a
// scope sees nothing. An application query that forgets its WHERE clause
// still gets only the caller's rows; a write into another tenant fails with
// ErrPermissionDenied or touches no row. Guessed ids of other tenants read
// as ErrNotFound.
//
// # Keys at rest
//
// LoRaWAN root and session keys are sealed with AES-256-GCM under a
// per-customer data key, itself stored only wrapped by a master key that
// never reaches the database (KeyRing, loaded from a file or
// LEGIOND_MASTER_KEY). Ciphertexts are bound to their row and column.
//
// # Registry cache
//
// Cache maps DevAddr to candidate devices (tenancy, placement, rules and
// decrypted keys) for the stream router. Statement-level triggers NOTIFY
// the keys of changed rows; the cache reloads exactly those.
//
// # Errors
//
// Sentinels ErrNotFound, ErrAlreadyExists, ErrInvalidArgument, ErrResidency,
// ErrPermissionDenied, ...; bad input is a *FieldError naming the field.
// The api package maps them to Connect codes.
//
// This package must not apply Legionella rules (devicetwin does), must not
// log on hot paths, and must not be imported by devicetwin.
package postgres
