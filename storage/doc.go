// Package storage holds the adapters for durable state: Pebble (twin state
// keyspace, encryption-at-rest filesystem, checkpoints), Raft log and stable
// stores on Pebble, and PostgreSQL (registry, logbook archive, migrations,
// row-level security).
//
// It must not apply domain rules; it stores what devicetwin produces.
package storage
