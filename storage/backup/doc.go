// Package backup makes, checks, stores, prunes and restores encrypted
// backups of a Legiond node: the PostgreSQL registry and the node's Pebble
// twin store with its storage keystore.
//
// # What it owns
//
//   - The archive format. An archive is a tar stream (archive/tar) of
//     manifest.json (format version, kind, creation time, node, legiond
//     version, registry schema and server versions, per-table row counts,
//     the audit-chain head, Pebble schema, and the size and SHA-256 of
//     every other member), then node/<path> (the Pebble checkpoint under
//     its store folder, and the storage keystore; full backups only), then
//     registry/registry.pgdump (pg_dump custom format). The tar stream is
//     encrypted with age (filippo.io/age, X25519 or hybrid post-quantum
//     recipients) and followed by a 48-byte trailer (magic, ciphertext
//     length, ciphertext SHA-256). Nothing but the object name
//     (legiond-<kind>-<UTC time>-<node>.tar.age) is readable without the
//     identity.
//   - The ports it needs: PebbleCheckpointer (pebblestore.Store),
//     DatabaseDumper and DatabaseRestorer (PgDump: pg_dump/pg_restore from
//     the system's PostgreSQL client), and Destination (LocalDir, S3 via
//     minio-go).
//   - Backup, Verify/VerifyIntegrity (read back and check), Restore (into
//     an empty data folder and an empty database), Retention.Prune (GFS
//     7 daily / 4 weekly / 12 monthly by default) and the Scheduler
//     (daily registry backups, a weekly full one, verify, prune, counters;
//     an injected Clock).
//
// # Guarantees
//
//   - Consistency: the Pebble checkpoint is a consistent copy of the store
//     (every acknowledged write is in it); the dump is one REPEATABLE READ
//     snapshot, exported to pg_dump (--snapshot), in which the manifest's
//     schema version, row counts and audit head are read too. The two are
//     taken one after the other, not atomically together: twins resume
//     from the Kafka offsets stored with their state, and the registry is
//     the system of record for everything else.
//   - Confidentiality: archives are encrypted before they leave the
//     process; the node needs only the public recipient. The Pebble files
//     are additionally still encrypted under the node's storage data keys
//     (encfs), which the storage master key (never backed up) unwraps.
//   - Integrity: a truncated archive is ErrTruncated, a modified one
//     ErrTampered, a wrong identity ErrWrongKey, content that disagrees
//     with the manifest ErrChecksum; Restore checks all of it before it
//     writes anything, restores into empty targets only (ErrNotEmpty),
//     loads the dump in one transaction and compares row counts after.
//   - Atomic storage: a failed Backup leaves no object behind.
//
// # What it must not do, and limits
//
//   - It must not interpret twin state or registry rows, and it must not
//     log on any hot path (it has none).
//   - age gives no sender authentication: whoever holds the public
//     recipient and write access to the bucket can plant a valid archive.
//     Protect the bucket (write-only credentials for nodes, Object Lock),
//     and compare a restored registry's audit head with the anchors kept
//     elsewhere (`legiond audit verify --anchor`).
//   - The dump is plaintext in the work folder (mode 0600) while the
//     archive is written; the restore spool holds ciphertext only.
package backup
