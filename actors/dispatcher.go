package actors

import (
	"context"
)

// workerDispatcher runs actor mailboxes on long-lived worker goroutines.
// protoactor's default dispatcher starts a goroutine for every mailbox run,
// and each new goroutine grows its stack again through the twin's call
// chain (core, protobuf, store): measurable at tens of thousands of
// messages per second. Mailboxes ready to run wait in a bounded queue; when
// it is full the dispatcher falls back to a new goroutine. Workers block
// only on the batcher's and the store's queues, which drain without any
// actor's help, so the pool cannot deadlock.
type workerDispatcher struct {
	work       chan func()
	throughput int
}

func newWorkerDispatcher(throughput, queue int) *workerDispatcher {
	return &workerDispatcher{work: make(chan func(), queue), throughput: throughput}
}

func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go fn()
	}
}

func (d *workerDispatcher) Throughput() int { return d.throughput }

func (d *workerDispatcher) run(ctx context.Context) {
	for {
		select {
		case fn := <-d.work:
			fn()
		case <-ctx.Done():
			return
		}
	}
}
