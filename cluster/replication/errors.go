package replication

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (or a
// ctx error); match them with errors.Is.
var (
	// ErrInvalid: a malformed batch, configuration or peer message.
	ErrInvalid = errors.New("replication: invalid")
	// ErrUnsupported: a command, snapshot or message of an unknown format
	// version (a newer member?).
	ErrUnsupported = errors.New("replication: unsupported format version")
	// ErrStaleVersion: fencing refused the batch (Response.Stale says which
	// twins, with their current versions). Nothing of it was stored.
	ErrStaleVersion = errors.New("replication: stale twin version")
	// ErrOutcomeUnknown: the batch may or may not have been committed (the
	// leader was lost after it took the batch, a forwarded call broke
	// mid-way, or the caller's ctx ended while it was in flight). Reload
	// the twin, or re-propose the same update: fencing turns a duplicate
	// into StatusStale with the current version.
	ErrOutcomeUnknown = errors.New("replication: outcome unknown")
	// ErrNoLeader: no leader was reachable before the deadline; the batch
	// was not committed.
	ErrNoLeader = errors.New("replication: no leader")
	// ErrRemote: the member asked with Call answered with an error (its
	// text follows).
	ErrRemote = errors.New("replication: remote member")
	// ErrShutdown: the group is shut down (or shutting down).
	ErrShutdown = errors.New("replication: shut down")
	// ErrNotStarted: Start has not been called (or failed).
	ErrNotStarted = errors.New("replication: not started")
	// ErrTLS: a TLS configuration that does not enforce mutual TLS 1.3, or a
	// peer that did not pass it.
	ErrTLS = errors.New("replication: mutual TLS 1.3 required")
	// ErrState: the replicated store cannot be used (a failed write, an
	// incomplete restore with no snapshot to redo it from).
	ErrState = errors.New("replication: state store failure")
	// ErrCorrupt: a snapshot stream does not decode or fails its checksum.
	ErrCorrupt = errors.New("replication: corrupt snapshot")
)
