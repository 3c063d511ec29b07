package streams

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

const testPartitions = 4

// testLogger logs warnings and errors to stderr (visible with -v), so
// unexpected client trouble shows up next to a failure.
func testLogger() *slog.Logger {
	if os.Getenv("STREAMS_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startBroker starts an in-memory development broker with the five topics.
func startBroker(t testing.TB) (*devbroker.Broker, ClientConfig) {
	t.Helper()
	return startBrokers(t, 1)
}

// startBrokers starts an in-memory development cluster of n brokers.
func startBrokers(t testing.TB, n int) (*devbroker.Broker, ClientConfig) {
	t.Helper()
	b, err := devbroker.Start(t.Context(), devbroker.Config{Partitions: testPartitions, NumBrokers: n}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cc := ClientConfig{Brokers: b.Addrs()}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, cc, DefaultTopics(testPartitions, 1), testLogger()); err != nil {
		t.Fatal(err)
	}
	return b, cc
}

// testConsumerConfig keeps group timing short for tests.
func testConsumerConfig(cc ClientConfig, group string) ConsumerConfig {
	return ConsumerConfig{
		Client:            cc,
		GroupID:           group,
		CommitInterval:    20 * time.Millisecond,
		SessionTimeout:    6 * time.Second,
		HeartbeatInterval: 100 * time.Millisecond,
		RebalanceTimeout:  10 * time.Second,
		DrainTimeout:      300 * time.Millisecond,
		JoinGroupBackoff:  100 * time.Millisecond,
		RetryBackoff:      20 * time.Millisecond,
		FetchMaxWait:      50 * time.Millisecond,
	}
}

// frame returns an uplink whose payload encodes i, so a test can tell
// frames apart.
func frame(i int) *lorawanv1.UplinkFrame {
	p := make([]byte, 12)
	p[0] = 0x40 // unconfirmed data up
	binary.BigEndian.PutUint64(p[4:], uint64(i))
	return &lorawanv1.UplinkFrame{PhyPayload: p, GatewayEui: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Rssi: -80}
}

// produceUplinks writes n frames (indexes from..from+n-1) over 64 DevAddrs.
func produceUplinks(t testing.TB, cc ClientConfig, from, n int) {
	t.Helper()
	p, err := NewUplinkProducer(ProducerConfig{Client: cc, BatchSize: 500}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ups := make([]Uplink, 0, n)
	for i := from; i < from+n; i++ {
		ups = append(ups, Uplink{DevAddr: 0x26011000 + uint32(i%64), Frame: frame(i)})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.SendUplinks(ctx, ups...); err != nil {
		t.Fatal(err)
	}
}

// produceRaw writes arbitrary records to topic.
func produceRaw(t testing.TB, cc ClientConfig, topic string, msgs ...kafka.Message) {
	t.Helper()
	tr, err := cc.Transport()
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(cc.Brokers...), Topic: topic, Transport: tr,
		Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// readAll reads every record of topic (all partitions) up to its end.
func readAll(t testing.TB, cc ClientConfig, topic string) []kafka.Message {
	t.Helper()
	ends := endOffsets(t, cc, topic)
	dialer, err := cc.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for p, end := range ends {
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cc.Brokers, Dialer: dialer, Topic: topic, Partition: p, MaxWait: 50 * time.Millisecond})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				cancel()
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset >= end-1 {
				break
			}
		}
		cancel()
		r.Close()
	}
	return out
}

func adminClient(t testing.TB, cc ClientConfig) *kafka.Client {
	t.Helper()
	tr, err := cc.Transport()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &kafka.Client{Addr: kafka.TCP(cc.Brokers...), Transport: tr, Timeout: 5 * time.Second}
}

// endOffsets returns partition → offset one past the last record.
func endOffsets(t testing.TB, cc ClientConfig, topic string) map[int]int64 {
	t.Helper()
	reqs := make([]kafka.OffsetRequest, testPartitions)
	for p := range testPartitions {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	resp, err := adminClient(t, cc).ListOffsets(t.Context(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("list offsets %s/%d: %v", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out
}

// committedOffsets returns partition → committed offset (-1: none).
func committedOffsets(t testing.TB, cc ClientConfig, group, topic string) map[int]int64 {
	t.Helper()
	ps := make([]int, testPartitions)
	for p := range ps {
		ps[p] = p
	}
	resp, err := adminClient(t, cc).OffsetFetch(t.Context(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// eventually polls cond until it holds or timeout passes. It is a
// condition wait with a deadline, not a sleep: it returns as soon as cond
// holds.
func eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, why)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// committedAtEnd reports whether group committed every partition of topic
// up to its end.
func committedAtEnd(t testing.TB, cc ClientConfig, group, topic string) (bool, string) {
	ends := endOffsets(t, cc, topic)
	got := committedOffsets(t, cc, group, topic)
	for p, end := range ends {
		if got[p] != end && (end != 0 || got[p] >= 0) {
			return false, fmt.Sprintf("%s committed %v, end %v", topic, got, ends)
		}
	}
	return true, ""
}

// key identifies a record.
type key struct {
	topic     string
	partition int
	offset    int64
}

func recKey(r Record) key { return key{r.Topic, r.Partition, r.Offset} }

// delivery is one Handler call.
type delivery struct {
	rec   Record
	frame *lorawanv1.UplinkFrame
	done  func(error)
}

// fakeHandler records every delivery and completes them from its own
// goroutine in reversed batches, so completions arrive out of order.
// result decides each record's outcome (nil: success); hold keeps a
// record forever incomplete.
type fakeHandler struct {
	result func(Record, *lorawanv1.UplinkFrame, int) error // attempt counts from 1
	hold   func(Record) bool

	mu        sync.Mutex
	seen      map[key]int
	order     map[int][]int64 // partition (uplink topic) → offsets in delivery order
	completed map[key]bool
	// completedKeys holds the Kafka keys of completed records.
	completedKeys map[string]bool
	held          map[key]func(error)
	stats         int

	queue chan delivery
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newFakeHandler(t testing.TB) *fakeHandler {
	h := &fakeHandler{
		seen: map[key]int{}, order: map[int][]int64{}, completed: map[key]bool{}, completedKeys: map[string]bool{}, held: map[key]func(error){},
		queue: make(chan delivery, 1<<16), stop: make(chan struct{}),
	}
	h.wg.Go(h.complete)
	t.Cleanup(func() { close(h.stop); h.wg.Wait() })
	return h
}

func (h *fakeHandler) HandleUplink(_ context.Context, rec Record, f *lorawanv1.UplinkFrame, done func(error)) {
	h.mu.Lock()
	h.seen[recKey(rec)]++
	h.order[rec.Partition] = append(h.order[rec.Partition], rec.Offset)
	h.mu.Unlock()
	h.queue <- delivery{rec: rec, frame: f, done: done}
}

func (h *fakeHandler) HandleGatewayStats(_ context.Context, rec Record, _ *lorawanv1.GatewayStats, done func(error)) {
	h.mu.Lock()
	h.seen[recKey(rec)]++
	h.stats++
	h.mu.Unlock()
	h.queue <- delivery{rec: rec, done: done}
}

func (h *fakeHandler) complete() {
	var batch []delivery
	for {
		select {
		case d := <-h.queue:
			batch = append(batch, d)
		case <-h.stop:
			return
		}
	more:
		for len(batch) < 16 {
			select {
			case d := <-h.queue:
				batch = append(batch, d)
			default:
				break more
			}
		}
		for i := len(batch) - 1; i >= 0; i-- {
			h.finish(batch[i])
		}
		batch = batch[:0]
	}
}

func (h *fakeHandler) finish(d delivery) {
	k := recKey(d.rec)
	if h.hold != nil && h.hold(d.rec) {
		h.mu.Lock()
		h.held[k] = d.done
		h.mu.Unlock()
		return
	}
	var err error
	if h.result != nil {
		h.mu.Lock()
		n := h.seen[k]
		h.mu.Unlock()
		err = h.result(d.rec, d.frame, n)
	}
	if err == nil {
		h.mu.Lock()
		h.completed[k] = true
		h.completedKeys[string(d.rec.Key)] = true
		h.mu.Unlock()
	}
	d.done(err)
}

func (h *fakeHandler) seenCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// fakeDLQ collects dead letters in memory.
type fakeDLQ struct {
	mu      sync.Mutex
	letters map[key]Reason
	fail    int // fail this many writes first
}

func (d *fakeDLQ) DeadLetter(_ context.Context, rec Record, reason Reason, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail > 0 {
		d.fail--
		return errors.New("fake dlq down")
	}
	if d.letters == nil {
		d.letters = map[key]Reason{}
	}
	d.letters[recKey(rec)] = reason
	return nil
}

// runConsumer starts a consumer and returns it; the test's cleanup closes
// it.
func runConsumer(t testing.TB, cfg ConsumerConfig, h Handler, dlq DeadLetterer) *Consumer {
	t.Helper()
	c, err := NewConsumer(cfg, h, dlq, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = c.Close()
		if err := <-errc; err != nil {
			t.Errorf("consumer Run: %v", err)
		}
	})
	return c
}
