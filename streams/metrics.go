package streams

import "sync/atomic"

// Metrics counts what the consumer and the producers do. All fields are
// safe for concurrent use; counters only grow, gauges (Lag, InFlight) move
// both ways. One Metrics may be shared by a consumer and producers.
// Exporting them (Prometheus) is the wiring's job.
type Metrics struct {
	// UplinksIn, GatewayStatsIn and GatewaySeenIn count records fetched
	// per input topic, duplicates after a rebalance included.
	UplinksIn      atomic.Uint64
	GatewayStatsIn atomic.Uint64
	GatewaySeenIn  atomic.Uint64
	// Handled counts records whose Handler reported success.
	Handled atomic.Uint64
	// Retried counts records handed to the Handler again after ErrRetry.
	Retried atomic.Uint64
	// DLQErrors counts failed attempts to write a dead letter (retried).
	DLQErrors atomic.Uint64
	// Commits counts successful offset commit requests and
	// CommittedRecords the records they moved past; CommitErrors counts
	// failed commit requests, and rounds skipped because
	// ConsumerConfig.OnCommit failed.
	Commits          atomic.Uint64
	CommittedRecords atomic.Uint64
	CommitErrors     atomic.Uint64
	// Generations counts consumer-group generations joined (one per
	// rebalance); GroupErrors counts failures to join.
	Generations atomic.Uint64
	GroupErrors atomic.Uint64
	// FetchErrors counts errors reading a partition (the reader retries).
	FetchErrors atomic.Uint64
	// Rewinds counts partitions started before the group's committed
	// offset because ConsumerConfig.StartOffset reported an older one.
	Rewinds atomic.Uint64
	// Skipped counts fetched records refused because their offset did not
	// increase (never seen in practice; defensive).
	Skipped atomic.Uint64
	// DuplicateDone counts done callbacks called more than once; StaleDone
	// counts done callbacks of partitions already revoked (ignored, the
	// record is redelivered to the new owner).
	DuplicateDone atomic.Uint64
	StaleDone     atomic.Uint64
	// Lag is the sum over owned partitions of high watermark minus
	// committable offset; InFlight is the number of records held in
	// partition windows.
	Lag      atomic.Int64
	InFlight atomic.Int64

	// EventsPublished and PublishErrors count twin.events records durably
	// written and failed Publish calls.
	EventsPublished atomic.Uint64
	PublishErrors   atomic.Uint64
	// EventRequests counts the produce calls of PublishAsync's partition
	// lanes (one partition each) and EventRequestNanos their total
	// duration; failed ones also count in PublishErrors.
	EventRequests     atomic.Uint64
	EventRequestNanos atomic.Uint64
	// SeenPublished counts lorawan.gateway.seen records durably written
	// by SeenProducer (its failed calls count in PublishErrors).
	SeenPublished atomic.Uint64

	deadLettered [numReasons]atomic.Uint64
}

// DeadLettered returns how many records were written to the dead-letter
// topic for reason.
func (m *Metrics) DeadLettered(r Reason) uint64 {
	if r == 0 || r >= numReasons {
		return 0
	}
	return m.deadLettered[r].Load()
}

// DeadLetteredTotal returns the records written to the dead-letter topic
// for any reason.
func (m *Metrics) DeadLetteredTotal() uint64 {
	var n uint64
	for r := ReasonUndecodable; r < numReasons; r++ {
		n += m.deadLettered[r].Load()
	}
	return n
}

func (m *Metrics) addDeadLettered(r Reason) {
	if r > 0 && r < numReasons {
		m.deadLettered[r].Add(1)
	}
}
