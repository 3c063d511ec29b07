package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
)

// TestConsumerDeliversAndCommits produces uplinks and gateway stats,
// completes them out of order, and checks that every record reaches the
// Handler and the group commits exactly the end offsets.
func TestConsumerDeliversAndCommits(t *testing.T) {
	_, cc := startBroker(t)
	const n = 2000
	produceUplinks(t, cc, 0, n)
	up, err := NewUplinkProducer(ProducerConfig{Client: cc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stats []*lorawanv1.GatewayStats
	for i := range 40 {
		stats = append(stats, &lorawanv1.GatewayStats{GatewayEui: []byte{0xaa, 0, 0, 0, 0, 0, 0, byte(i % 5)}, RxPacketsReceived: uint32(i)})
	}
	if err := up.SendGatewayStats(t.Context(), stats...); err != nil {
		t.Fatal(err)
	}
	_ = up.Close()

	h := newFakeHandler(t)
	dlq := &fakeDLQ{}
	c := runConsumer(t, testConsumerConfig(cc, "deliver"), h, dlq)

	eventually(t, 20*time.Second, func() (bool, string) {
		if ok, why := committedAtEnd(t, cc, "deliver", TopicUplink); !ok {
			return false, why
		}
		return committedAtEnd(t, cc, "deliver", TopicGatewayStats)
	})

	h.mu.Lock()
	defer h.mu.Unlock()
	ends := endOffsets(t, cc, TopicUplink)
	var total int64
	for p, end := range ends {
		total += end
		for off := range end {
			if h.seen[key{TopicUplink, p, off}] == 0 {
				t.Fatalf("uplink %d@%d never delivered", p, off)
			}
		}
		if !slices.IsSorted(h.order[p]) {
			t.Errorf("partition %d delivered out of offset order", p)
		}
	}
	if total != n {
		t.Fatalf("end offsets sum to %d, want %d", total, n)
	}
	if h.stats != len(stats) {
		t.Errorf("gateway stats delivered %d, want %d", h.stats, len(stats))
	}
	if len(dlq.letters) != 0 {
		t.Errorf("unexpected dead letters: %v", dlq.letters)
	}
	m := c.Metrics()
	if m.UplinksIn.Load() < n || m.Handled.Load() < n+uint64(len(stats)) || m.Commits.Load() == 0 {
		t.Errorf("metrics: in %d handled %d commits %d", m.UplinksIn.Load(), m.Handled.Load(), m.Commits.Load())
	}
	if got := m.CommittedRecords.Load(); got != n+uint64(len(stats)) {
		t.Errorf("committed records %d, want %d", got, n+len(stats))
	}
	if lag := m.Lag.Load(); lag != 0 {
		t.Errorf("lag %d after everything committed", lag)
	}
}

// TestConsumerRestartResumes closes a consumer while some records are
// still incomplete and checks that the committed offset stops exactly at
// the first incomplete record of each partition, that a new member of the
// group resumes there, and that together they cover every record.
func TestConsumerRestartResumes(t *testing.T) {
	_, cc := startBroker(t)
	const n = 1200
	produceUplinks(t, cc, 0, n)
	ends := endOffsets(t, cc, TopicUplink)

	// First member: never completes records at offsets ≡ 40 mod 97.
	h1 := newFakeHandler(t)
	h1.hold = func(r Record) bool { return r.Offset%97 == 40 }
	c1 := runConsumer(t, testConsumerConfig(cc, "restart"), h1, &fakeDLQ{})
	eventually(t, 20*time.Second, func() (bool, string) {
		return h1.seenCount() == n, fmt.Sprintf("first member saw %d of %d", h1.seenCount(), n)
	})
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	// Completions of revoked partitions are ignored and counted.
	h1.mu.Lock()
	held := h1.held
	h1.mu.Unlock()
	for _, done := range held {
		done(nil)
	}
	if got := c1.Metrics().StaleDone.Load(); got != uint64(len(held)) || len(held) == 0 {
		t.Errorf("stale done %d, held %d", got, len(held))
	}

	// The committed offset is exactly the first held record per partition.
	committed := committedOffsets(t, cc, "restart", TopicUplink)
	h1.mu.Lock()
	for p, end := range ends {
		want := end
		for off := range end {
			if off%97 == 40 {
				want = off
				break
			}
		}
		if committed[p] != want {
			t.Errorf("partition %d: committed %d, want first incomplete %d", p, committed[p], want)
		}
		for off := range committed[p] {
			if !h1.completed[key{TopicUplink, p, off}] {
				t.Errorf("partition %d: committed %d past incomplete %d", p, committed[p], off)
			}
		}
	}
	h1.mu.Unlock()

	// Second member resumes at the committed offsets and finishes.
	h2 := newFakeHandler(t)
	runConsumer(t, testConsumerConfig(cc, "restart"), h2, &fakeDLQ{})
	eventually(t, 20*time.Second, func() (bool, string) {
		return committedAtEnd(t, cc, "restart", TopicUplink)
	})
	h1.mu.Lock()
	h2.mu.Lock()
	defer h1.mu.Unlock()
	defer h2.mu.Unlock()
	for p, end := range ends {
		if end == committed[p] {
			continue
		}
		if first := h2.order[p][0]; first != committed[p] {
			t.Errorf("partition %d: second member started at %d, committed was %d", p, first, committed[p])
		}
		for off := range end {
			k := key{TopicUplink, p, off}
			if !h1.completed[k] && !h2.completed[k] {
				t.Errorf("partition %d offset %d completed by neither member (gap)", p, off)
			}
		}
	}
}

// TestConsumerDeadLetters sends garbage and records the Handler rejects,
// and checks that they land on the dead-letter topic with their reason and
// source headers while good records keep flowing and offsets get committed.
func TestConsumerDeadLetters(t *testing.T) {
	_, cc := startBroker(t)
	good := func(i int) []byte {
		b, _ := proto.Marshal(frame(i))
		return b
	}
	emptyPayload, _ := proto.Marshal(&lorawanv1.UplinkFrame{GatewayEui: []byte{1}})
	hugePayload, _ := proto.Marshal(&lorawanv1.UplinkFrame{PhyPayload: make([]byte, 300)})
	shortEUI, _ := proto.Marshal(&lorawanv1.GatewayStats{GatewayEui: []byte{1, 2, 3}})
	want := map[string]Reason{} // key → reason
	msgs := []kafka.Message{
		{Key: []byte("26011001"), Value: good(1)},
		{Key: []byte("not-hex!"), Value: good(2)},
		{Key: []byte("26011002"), Value: []byte{0xff, 0xff, 0xff, 0xff}},
		{Key: []byte("26011003"), Value: emptyPayload},
		{Key: []byte("26011004"), Value: make([]byte, 2000)},
		{Key: []byte("26011005"), Value: hugePayload},
		{Key: []byte("26011006"), Value: good(6)},         // rejected by the handler
		{Key: []byte("26011007"), Value: good(7)},         // ErrRetry twice, then fine
		{Key: []byte("0011223344556677"), Value: good(8)}, // DevEUI key: accepted
		{Key: nil, Value: good(9)},
	}
	want["not-hex!"] = ReasonBadKey
	want["26011002"] = ReasonUndecodable
	want["26011003"] = ReasonEmptyPayload
	want["26011004"] = ReasonOversized
	want["26011005"] = ReasonOversized
	want["26011006"] = ReasonHandler
	want[""] = ReasonBadKey
	produceRaw(t, cc, TopicUplink, msgs...)
	produceRaw(t, cc, TopicGatewayStats,
		kafka.Message{Key: []byte("aa00000000000001"), Value: shortEUI},
		kafka.Message{Key: []byte("zz"), Value: shortEUI},
	)
	wantStats := map[string]Reason{"aa00000000000001": ReasonInvalid, "zz": ReasonBadKey}

	h := newFakeHandler(t)
	h.result = func(r Record, f *lorawanv1.UplinkFrame, attempt int) error {
		switch string(r.Key) {
		case "26011006":
			return errors.New("mic mismatch")
		case "26011007":
			if attempt <= 2 {
				return fmt.Errorf("twin busy: %w", ErrRetry)
			}
		}
		return nil
	}
	dlq, err := NewDLQProducer(ProducerConfig{Client: cc}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	c := runConsumer(t, testConsumerConfig(cc, "dlq"), h, dlq)

	eventually(t, 20*time.Second, func() (bool, string) {
		if ok, why := committedAtEnd(t, cc, "dlq", TopicUplink); !ok {
			return false, why
		}
		return committedAtEnd(t, cc, "dlq", TopicGatewayStats)
	})

	letters := readAll(t, cc, TopicUplinkDLQ)
	got := map[string]Reason{}
	gotStats := map[string]Reason{}
	for _, m := range letters {
		hs := map[string]string{}
		for _, h := range m.Headers {
			hs[h.Key] = string(h.Value)
		}
		var r Reason
		for _, c := range Reasons() {
			if c.String() == hs[HeaderReason] {
				r = c
			}
		}
		if r == 0 || hs[HeaderReasonDetail] == "" {
			t.Errorf("dead letter %q: headers %v", m.Key, hs)
		}
		src := hs[HeaderSourceTopic]
		part, _ := strconv.Atoi(hs[HeaderSourcePartition])
		off, _ := strconv.ParseInt(hs[HeaderSourceOffset], 10, 64)
		orig := readAt(t, cc, src, part, off)
		if string(orig.Key) != string(m.Key) || string(orig.Value) != string(m.Value) {
			t.Errorf("dead letter %q does not carry the original record %s/%d@%d", m.Key, src, part, off)
		}
		switch src {
		case TopicUplink:
			got[string(m.Key)] = r
		case TopicGatewayStats:
			gotStats[string(m.Key)] = r
		default:
			t.Errorf("dead letter from unknown topic %q", src)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("uplink dead letters %v, want %v", got, want)
	}
	if fmt.Sprint(gotStats) != fmt.Sprint(wantStats) {
		t.Errorf("gateway stats dead letters %v, want %v", gotStats, wantStats)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range []string{"26011001", "26011007", "0011223344556677"} {
		if !h.completedKeys[k] {
			t.Errorf("good record %s not completed", k)
		}
	}
	m := c.Metrics()
	if m.DeadLettered(ReasonOversized) != 2 || m.DeadLettered(ReasonBadKey) != 3 || m.DeadLettered(ReasonHandler) != 1 ||
		m.DeadLettered(ReasonUndecodable) != 1 || m.DeadLettered(ReasonEmptyPayload) != 1 || m.DeadLettered(ReasonInvalid) != 1 {
		t.Errorf("dead-letter counters wrong: total %d", m.DeadLetteredTotal())
	}
	if m.Retried.Load() != 2 {
		t.Errorf("retried %d, want 2", m.Retried.Load())
	}
}

// readAt reads one record.
func readAt(t testing.TB, cc ClientConfig, topic string, partition int, offset int64) kafka.Message {
	t.Helper()
	dialer, err := cc.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cc.Brokers, Dialer: dialer, Topic: topic, Partition: partition, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	m, err := r.FetchMessage(ctx)
	if err != nil {
		t.Fatalf("read %s/%d@%d: %v", topic, partition, offset, err)
	}
	return m
}

// TestConsumerDeadLetterRetry checks that a failing dead-letter writer
// stalls the record (no commit past it) and is retried until it succeeds.
func TestConsumerDeadLetterRetry(t *testing.T) {
	_, cc := startBroker(t)
	produceRaw(t, cc, TopicUplink, kafka.Message{Key: []byte("bad key"), Value: []byte{1}})
	h := newFakeHandler(t)
	dlq := &fakeDLQ{fail: 3}
	c := runConsumer(t, testConsumerConfig(cc, "dlqretry"), h, dlq)
	eventually(t, 10*time.Second, func() (bool, string) {
		return committedAtEnd(t, cc, "dlqretry", TopicUplink)
	})
	if c.Metrics().DLQErrors.Load() != 3 || c.Metrics().DeadLettered(ReasonBadKey) != 1 {
		t.Errorf("dlq errors %d, dead letters %d", c.Metrics().DLQErrors.Load(), c.Metrics().DeadLettered(ReasonBadKey))
	}
}

// TestConsumerBackpressure holds every record and checks that each
// partition stops at MaxInFlightPerPartition, then drains when released.
func TestConsumerBackpressure(t *testing.T) {
	_, cc := startBroker(t)
	const limit = 8
	produceUplinks(t, cc, 0, 400)
	h := newFakeHandler(t)
	release := make(chan struct{})
	h.hold = func(Record) bool {
		select {
		case <-release:
			return false
		default:
			return true
		}
	}
	cfg := testConsumerConfig(cc, "backpressure")
	cfg.MaxInFlightPerPartition = limit
	c := runConsumer(t, cfg, h, &fakeDLQ{})

	eventually(t, 10*time.Second, func() (bool, string) {
		return h.seenCount() == limit*testPartitions, fmt.Sprintf("seen %d", h.seenCount())
	})
	// Assertion window (not synchronisation): nothing beyond the limit
	// may arrive while all records are held.
	time.Sleep(200 * time.Millisecond)
	if got := h.seenCount(); got != limit*testPartitions {
		t.Fatalf("seen %d records with a window of %d on %d partitions", got, limit, testPartitions)
	}
	if got := c.Metrics().InFlight.Load(); got != limit*testPartitions {
		t.Errorf("in-flight gauge %d, want %d", got, limit*testPartitions)
	}

	close(release)
	h.mu.Lock()
	held := h.held
	h.held = map[key]func(error){}
	h.mu.Unlock()
	for _, done := range held {
		done(nil)
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		return committedAtEnd(t, cc, "backpressure", TopicUplink)
	})
}

// TestConsumerRebalance runs two members of one group; the second joins
// while the first consumes. Every record is delivered (duplicates allowed)
// and the group commits the end offsets.
func TestConsumerRebalance(t *testing.T) {
	_, cc := startBroker(t)
	produceUplinks(t, cc, 0, 1000)
	h1, h2 := newFakeHandler(t), newFakeHandler(t)
	c1 := runConsumer(t, testConsumerConfig(cc, "rebalance"), h1, &fakeDLQ{})
	eventually(t, 10*time.Second, func() (bool, string) { return h1.seenCount() > 0, "first member idle" })
	c2 := runConsumer(t, testConsumerConfig(cc, "rebalance"), h2, &fakeDLQ{})
	// Once the second member holds partitions, new records reach both.
	eventually(t, 20*time.Second, func() (bool, string) {
		return c2.Metrics().Generations.Load() >= 1, "second member never joined"
	})
	produceUplinks(t, cc, 1000, 1000)

	eventually(t, 30*time.Second, func() (bool, string) {
		return committedAtEnd(t, cc, "rebalance", TopicUplink)
	})
	eventually(t, 10*time.Second, func() (bool, string) {
		return c1.Metrics().Generations.Load() >= 2 && c2.Metrics().Generations.Load() >= 1,
			fmt.Sprintf("generations %d/%d", c1.Metrics().Generations.Load(), c2.Metrics().Generations.Load())
	})
	ends := endOffsets(t, cc, TopicUplink)
	h1.mu.Lock()
	h2.mu.Lock()
	defer h1.mu.Unlock()
	defer h2.mu.Unlock()
	if len(h2.completed) == 0 {
		t.Errorf("second member completed nothing")
	}
	for p, end := range ends {
		for off := range end {
			k := key{TopicUplink, p, off}
			if !h1.completed[k] && !h2.completed[k] {
				t.Fatalf("record %d@%d completed by neither member", p, off)
			}
		}
	}
}

func TestConsumerConfigValidate(t *testing.T) {
	base := func() ConsumerConfig {
		return ConsumerConfig{Client: ClientConfig{Brokers: []string{"127.0.0.1:9092"}}}
	}
	c := base()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c.CommitInterval != DefaultCommitInterval || c.GroupID != DefaultGroupID || c.MaxInFlightPerPartition != DefaultMaxInFlightPerPartition ||
		c.MaxValueBytes != 1024 || c.SessionTimeout != DefaultSessionTimeout || c.UplinkTopic != TopicUplink {
		t.Fatalf("defaults not applied: %+v", c)
	}
	tests := map[string]func(*ConsumerConfig){
		"no brokers":         func(c *ConsumerConfig) { c.Client.Brokers = nil },
		"same topics":        func(c *ConsumerConfig) { c.GatewayStatsTopic = TopicUplink },
		"tiny commit":        func(c *ConsumerConfig) { c.CommitInterval = time.Millisecond },
		"huge window":        func(c *ConsumerConfig) { c.MaxInFlightPerPartition = 1 << 21 },
		"negative window":    func(c *ConsumerConfig) { c.MaxInFlightPerPartition = -1 },
		"heartbeat too slow": func(c *ConsumerConfig) { c.HeartbeatInterval = 5 * time.Second },
		"drain too long":     func(c *ConsumerConfig) { c.DrainTimeout = time.Minute },
		"small values":       func(c *ConsumerConfig) { c.MaxValueBytes = 10 },
		"short session":      func(c *ConsumerConfig) { c.SessionTimeout = 100 * time.Millisecond },
		"fetch below value":  func(c *ConsumerConfig) { c.FetchMaxBytes = 100; c.MaxValueBytes = 1000 },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			c := base()
			mutate(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := NewConsumer(base(), nil, &fakeDLQ{}, nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil handler: %v", err)
	}
}

func TestDecode(t *testing.T) {
	good, _ := proto.Marshal(frame(1))
	tests := []struct {
		name  string
		key   string
		value []byte
		want  Reason
	}{
		{"good devaddr", "26011001", good, 0},
		{"good upper", "2601ABCD", good, 0},
		{"good deveui", "0011223344556677", good, 0},
		{"short key", "2601", good, ReasonBadKey},
		{"non hex key", "2601100g", good, ReasonBadKey},
		{"garbage", "26011001", []byte{0xff, 0xff}, ReasonUndecodable},
		{"empty value", "26011001", nil, ReasonEmptyPayload},
		{"oversized value", "26011001", make([]byte, 1025), ReasonOversized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rej := decodeUplink(&Record{Key: []byte(tt.key), Value: tt.value}, 1024)
			var got Reason
			if rej != nil {
				got = rej.reason
			}
			if got != tt.want {
				t.Fatalf("reason %v, want %v (%v)", got, tt.want, rej)
			}
		})
	}
}

// FuzzDecode feeds arbitrary keys and values to both decoders: they must
// never panic, and accept only what they can hand to a Handler.
func FuzzDecode(f *testing.F) {
	good, _ := proto.Marshal(frame(1))
	stats, _ := proto.Marshal(&lorawanv1.GatewayStats{GatewayEui: make([]byte, 8)})
	f.Add([]byte("26011001"), good)
	f.Add([]byte("0011223344556677"), stats)
	f.Add([]byte("x"), []byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		rec := &Record{Key: k, Value: v}
		if u, rej := decodeUplink(rec, 1024); rej == nil {
			if len(u.GetPhyPayload()) == 0 || len(u.GetPhyPayload()) > maxPHYPayload || len(v) > 1024 {
				t.Fatalf("accepted bad uplink %x", v)
			}
		} else if rej.reason == 0 || rej.detail == "" {
			t.Fatalf("rejection without reason: %+v", rej)
		}
		if s, rej := decodeGatewayStats(rec, 1024); rej == nil && len(s.GetGatewayEui()) != 8 {
			t.Fatalf("accepted bad stats %x", v)
		}
	})
}

func TestConsumerCloseBeforeRun(t *testing.T) {
	cfg := ConsumerConfig{Client: ClientConfig{Brokers: []string{"127.0.0.1:1"}}}
	c, err := NewConsumer(cfg, newFakeHandler(t), &fakeDLQ{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
	if err := c.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Run: %v", err)
	}
}

// TestConsumerMultiBroker spreads partition leaders and the group
// coordinator over three brokers.
func TestConsumerMultiBroker(t *testing.T) {
	_, cc := startBrokers(t, 3)
	produceUplinks(t, cc, 0, 500)
	h := newFakeHandler(t)
	runConsumer(t, testConsumerConfig(cc, "multi"), h, &fakeDLQ{})
	eventually(t, 20*time.Second, func() (bool, string) {
		return committedAtEnd(t, cc, "multi", TopicUplink)
	})
	if h.seenCount() != 500 {
		t.Fatalf("seen %d", h.seenCount())
	}
}
