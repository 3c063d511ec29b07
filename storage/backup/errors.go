package backup

import "errors"

// Sentinel errors. Every error this package returns wraps one of them, a
// context error, or an error of the destination or of a source; match them
// with errors.Is.
var (
	// ErrInvalid: a bad argument or configuration.
	ErrInvalid = errors.New("backup: invalid argument")
	// ErrNotFound: the destination has no object of that name.
	ErrNotFound = errors.New("backup: no such backup")
	// ErrExists: an object of that name exists already (two backups of one
	// kind and node within the same second).
	ErrExists = errors.New("backup: backup exists already")
	// ErrTruncated: the archive ends early (an interrupted upload or copy).
	// Nothing was restored.
	ErrTruncated = errors.New("backup: archive is truncated")
	// ErrTampered: the archive's bytes are not the ones that were written
	// (its checksum or its authenticated encryption fails). Nothing was
	// restored.
	ErrTampered = errors.New("backup: archive was modified or is corrupt")
	// ErrWrongKey: none of the given identities can decrypt the archive.
	ErrWrongKey = errors.New("backup: wrong backup key: no identity matches the archive")
	// ErrChecksum: the decrypted content does not match its manifest
	// (size, SHA-256, missing or extra files, or restored row counts).
	ErrChecksum = errors.New("backup: content does not match the manifest")
	// ErrIncompatible: the archive's format or schema versions are newer
	// than this binary understands. Restore with the version that wrote it.
	ErrIncompatible = errors.New("backup: archive is newer than this binary")
	// ErrMissingPart: the restore target asks for a part (node data or
	// registry) that the archive does not hold.
	ErrMissingPart = errors.New("backup: archive lacks the requested part")
	// ErrNotEmpty: a restore target (data folder or database) is not empty.
	// Restore never overwrites anything.
	ErrNotEmpty = errors.New("backup: restore target is not empty")
	// ErrTool: pg_dump, pg_restore or a PostgreSQL query failed.
	ErrTool = errors.New("backup: database tool failed")
)
