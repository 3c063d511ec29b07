package loadtest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
)

// Producer limits.
const (
	// maxWrite caps one produce request per partition (≈ 100 B records:
	// under the brokers' default 1 MiB message batch limit).
	maxWrite = 8_000
	// maxPending bounds the records waiting per partition; the pacer
	// blocks beyond it, and the achieved rate shows that Kafka (or the
	// harness) is the limit.
	maxPending = 2 * maxWrite
)

// producer writes records to lorawan.uplink as gateway bridges would:
// keyed by DevAddr (8 lowercase hex), value an UplinkFrame whose
// produced_at is the moment it is handed to the Kafka client.
//
// Batches from the pacer queue in a bounded channel; Writers goroutines
// marshal them and append each record to its partition's pending list
// (Murmur2 on the key, as Legiond's own producers). One goroutine per
// partition writes whatever is pending in one request while the next
// gathers (Nagle-style): small batches at low rates (low latency), large
// ones at high rates (throughput), without a linger delay.
type producer struct {
	w     *kafka.Writer
	led   *ledger
	now   func() time.Time
	errs  *errorCounts
	queue chan []record
	parts []*partQueue
	bal   kafka.Murmur2Balancer
	pidx  []int

	marshalWG sync.WaitGroup
	writeWG   sync.WaitGroup
	closed    atomic.Bool

	records   atomic.Int64 // acknowledged
	failed    atomic.Int64
	firstAt   atomic.Int64 // unix ns of the first record handed over
	lastAckAt atomic.Int64 // unix ns of the last acknowledgement
}

// partQueue is one partition's pending records.
type partQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond // signalled when pending shrinks or closing
	pending []pendingRec
	closing bool
	notify  chan struct{} // cap 1: pending grew or closing
}

type pendingRec struct {
	msg    kafka.Message
	sensor int32
	fcnt   uint32
}

func newProducer(cfg Config, led *ledger, errs *errorCounts, partitions int) *producer {
	w := &kafka.Writer{
		Addr:  kafka.TCP(cfg.Kafka.Brokers...),
		Topic: cfg.Kafka.UplinkTopic,
		// Records carry their partition already (see send).
		Balancer:     partitionBalancer{},
		BatchSize:    maxWrite,
		BatchBytes:   1 << 20,
		BatchTimeout: 100 * time.Microsecond,
		RequiredAcks: kafka.RequireAll,
		MaxAttempts:  10,
		WriteTimeout: 30 * time.Second,
	}
	if cfg.Kafka.Transport != nil {
		w.Transport = cfg.Kafka.Transport
	}
	p := &producer{w: w, led: led, now: cfg.Now, errs: errs, queue: make(chan []record, 2*cfg.Writers)}
	for i := range partitions {
		q := &partQueue{notify: make(chan struct{}, 1)}
		q.cond = sync.NewCond(&q.mu)
		p.parts = append(p.parts, q)
		p.pidx = append(p.pidx, i)
	}
	return p
}

// partitionBalancer routes a message to the partition it names.
type partitionBalancer struct{}

func (partitionBalancer) Balance(msg kafka.Message, partitions ...int) int {
	for _, p := range partitions {
		if p == msg.Partition {
			return p
		}
	}
	return partitions[0]
}

func (p *producer) start(ctx context.Context, writers int) {
	for range writers {
		p.marshalWG.Go(func() { p.marshalLoop() })
	}
	for _, q := range p.parts {
		p.writeWG.Go(func() { p.writeLoop(ctx, q) })
	}
}

// send queues a batch; it blocks while the queue is full.
func (p *producer) send(ctx context.Context, batch []record) error {
	if len(batch) == 0 {
		return nil
	}
	select {
	case p.queue <- batch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops accepting batches and waits until everything queued was
// written (or failed).
func (p *producer) close() error {
	if p.closed.Swap(true) {
		return nil
	}
	close(p.queue)
	p.marshalWG.Wait()
	for _, q := range p.parts {
		q.mu.Lock()
		q.closing = true
		q.cond.Broadcast()
		q.mu.Unlock()
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	p.writeWG.Wait()
	if err := p.w.Close(); err != nil {
		return fmt.Errorf("%w: close writer: %w", ErrProduce, err)
	}
	return nil
}

func (p *producer) marshalLoop() {
	for batch := range p.queue {
		now := p.now()
		ns := now.UnixNano()
		p.firstAt.CompareAndSwap(0, ns)
		ts := timestamppb.New(now)
		for i := range batch {
			r := &batch[i]
			u := &r.up
			f := &lorawanv1.UplinkFrame{
				PhyPayload: u.PHYPayload, GatewayEui: u.GatewayEUI[:], Rssi: u.RSSI, Snr: u.SNR,
				Frequency: u.FrequencyHz, DataRate: u.DataRate, ReceivedAt: timestamppb.New(u.ReceivedAt),
				ProducedAt: ts,
			}
			b, err := proto.Marshal(f)
			if err != nil {
				p.errs.add("produce_marshal", 1)
				continue
			}
			key := make([]byte, 8)
			hex.Encode(key, u.DevAddr[:])
			msg := kafka.Message{Key: key, Value: b}
			msg.Partition = p.bal.Balance(msg, p.pidx...)
			p.led.produced(r.sensor, r.fcnt, r.port, ns)
			q := p.parts[msg.Partition]
			q.mu.Lock()
			for len(q.pending) >= maxPending && !q.closing {
				q.cond.Wait()
			}
			q.pending = append(q.pending, pendingRec{msg: msg, sensor: r.sensor, fcnt: r.fcnt})
			q.mu.Unlock()
			select {
			case q.notify <- struct{}{}:
			default:
			}
		}
	}
}

// writeLoop writes a partition's pending records, up to maxWrite per
// request, until closing and empty.
func (p *producer) writeLoop(ctx context.Context, q *partQueue) {
	var msgs []kafka.Message
	var recs []pendingRec
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.closing {
			q.mu.Unlock()
			<-q.notify
			q.mu.Lock()
		}
		if len(q.pending) == 0 && q.closing {
			q.mu.Unlock()
			return
		}
		n := min(len(q.pending), maxWrite)
		recs = append(recs[:0], q.pending[:n]...)
		q.pending = append(q.pending[:0], q.pending[n:]...)
		q.cond.Broadcast()
		q.mu.Unlock()

		msgs = msgs[:0]
		for i := range recs {
			msgs = append(msgs, recs[i].msg)
		}
		err := p.w.WriteMessages(ctx, msgs...)
		var werrs kafka.WriteErrors
		switch {
		case err == nil:
			for i := range recs {
				p.led.delivered(recs[i].sensor, recs[i].fcnt)
			}
			p.records.Add(int64(len(recs)))
		case errors.As(err, &werrs) && len(werrs) == len(recs):
			ok := 0
			for i := range werrs {
				if werrs[i] == nil {
					p.led.delivered(recs[i].sensor, recs[i].fcnt)
					ok++
				}
			}
			p.records.Add(int64(ok))
			p.failed.Add(int64(len(recs) - ok))
			p.errs.add("produce", int64(len(recs)-ok))
		default:
			p.failed.Add(int64(len(recs)))
			if ctx.Err() == nil {
				p.errs.add("produce", int64(len(recs)))
			}
		}
		p.lastAckAt.Store(p.now().UnixNano())
	}
}

// errorCounts counts errors by kind.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func newErrorCounts() *errorCounts { return &errorCounts{m: map[string]int64{}} }

func (e *errorCounts) add(kind string, n int64) {
	if n == 0 {
		return
	}
	e.mu.Lock()
	e.m[kind] += n
	e.mu.Unlock()
}

func (e *errorCounts) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

func (e *errorCounts) total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, v := range e.m {
		n += v
	}
	return n
}
