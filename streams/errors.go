package streams

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (and
// usually the underlying kafka-go error too) so callers can use errors.Is.
var (
	// ErrInvalidConfig reports a configuration that Validate rejects.
	ErrInvalidConfig = errors.New("streams: invalid config")
	// ErrTLS reports TLS material that cannot be loaded.
	ErrTLS = errors.New("streams: tls")
	// ErrTopics reports that topics could not be listed or created.
	ErrTopics = errors.New("streams: topics")
	// ErrPublish reports records that were not durably produced; the
	// caller must not treat the input that caused them as applied.
	ErrPublish = errors.New("streams: publish")
	// ErrInvalidRecord reports a record a producer refuses to send
	// (missing key or id, unencodable value).
	ErrInvalidRecord = errors.New("streams: invalid record")
	// ErrClosed reports use of a closed producer or consumer.
	ErrClosed = errors.New("streams: closed")
	// ErrAlreadyOwned reports AssignedConsumer.Assign of a partition the
	// consumer already owns (or is still revoking).
	ErrAlreadyOwned = errors.New("streams: partition already owned")
	// ErrNotOwned reports AssignedConsumer.Revoke of a partition the
	// consumer does not own.
	ErrNotOwned = errors.New("streams: partition not owned")
	// ErrCommit reports offsets that AssignedConfig.Commit did not store.
	ErrCommit = errors.New("streams: commit")
	// ErrRetry, returned (wrapped) through a Handler's done callback,
	// means the record was not applied but may succeed later: the
	// consumer hands it to the Handler again after ConsumerConfig.RetryBackoff
	// instead of dead-lettering it. Context cancellation errors are
	// treated the same way.
	ErrRetry = errors.New("streams: retry")
)
