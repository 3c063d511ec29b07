package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
)

// offsetSink is the Commit port of AssignedConsumer: what the Raft state
// would hold.
type offsetSink struct {
	mu      sync.Mutex
	offsets map[topicPartition]int64
	calls   int
	fail    int // fail this many calls first
	// after records, per partition, whether a commit arrived after
	// closedFor[p] was set (a commit after Revoke returned).
	closedFor map[int]bool
	late      []Offset
}

func newOffsetSink() *offsetSink {
	return &offsetSink{offsets: map[topicPartition]int64{}, closedFor: map[int]bool{}}
}

func (s *offsetSink) commit(_ context.Context, offs []Offset) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail > 0 {
		s.fail--
		return errors.New("raft unavailable")
	}
	for _, o := range offs {
		tp := topicPartition{o.Topic, o.Partition}
		if o.Next <= s.offsets[tp] && s.offsets[tp] != 0 {
			return fmt.Errorf("offset %s/%d went from %d to %d", o.Topic, o.Partition, s.offsets[tp], o.Next)
		}
		if s.closedFor[o.Partition] {
			s.late = append(s.late, o)
		}
		s.offsets[tp] = o.Next
	}
	return nil
}

// get returns the stored offset of topic/p, or -1.
func (s *offsetSink) get(topic string, p int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	off, ok := s.offsets[topicPartition{topic, p}]
	if !ok {
		return -1
	}
	return off
}

// starts returns the stored offsets of partition p, for Assign.
func (s *offsetSink) starts(p int) map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for tp, off := range s.offsets {
		if tp.partition == p {
			out[tp.topic] = off
		}
	}
	return out
}

// atEnd reports whether the sink holds the end offset of every non-empty
// partition of topic.
func (s *offsetSink) atEnd(t testing.TB, cc ClientConfig, topic string, parts ...int) (bool, string) {
	ends := endOffsets(t, cc, topic)
	for p, end := range ends {
		if len(parts) > 0 && !slices.Contains(parts, p) {
			continue
		}
		if end == 0 {
			continue
		}
		if got := s.get(topic, p); got != end {
			return false, fmt.Sprintf("%s/%d stored %d, end %d", topic, p, got, end)
		}
	}
	return true, ""
}

func testAssignedConfig(cc ClientConfig, sink *offsetSink) AssignedConfig {
	return AssignedConfig{
		Client:         cc,
		Commit:         sink.commit,
		CommitInterval: 20 * time.Millisecond,
		DrainTimeout:   300 * time.Millisecond,
		RetryBackoff:   20 * time.Millisecond,
		FetchMaxWait:   50 * time.Millisecond,
	}
}

func newAssigned(t testing.TB, cfg AssignedConfig, h Handler, dlq DeadLetterer) *AssignedConsumer {
	t.Helper()
	c, err := NewAssignedConsumer(cfg, h, dlq, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func assignAll(t testing.TB, c *AssignedConsumer, sink *offsetSink) {
	t.Helper()
	for p := range testPartitions {
		if err := c.Assign(t.Context(), p, sink.starts(p)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAssignedDeliversAndCommits assigns every partition and checks that
// every record is delivered in offset order and the sink ends up with the
// end offsets.
func TestAssignedDeliversAndCommits(t *testing.T) {
	_, cc := startBroker(t)
	const n = 1000
	produceUplinks(t, cc, 0, n)
	up, err := NewUplinkProducer(ProducerConfig{Client: cc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stats []*lorawanv1.GatewayStats
	for i := range 20 {
		stats = append(stats, &lorawanv1.GatewayStats{GatewayEui: []byte{0xaa, 0, 0, 0, 0, 0, 0, byte(i % 5)}})
	}
	if err := up.SendGatewayStats(t.Context(), stats...); err != nil {
		t.Fatal(err)
	}
	_ = up.Close()

	sink := newOffsetSink()
	h := newFakeHandler(t)
	dlq := &fakeDLQ{}
	c := newAssigned(t, testAssignedConfig(cc, sink), h, dlq)
	if got := c.Topics(); !slices.Equal(got, []string{TopicUplink, TopicGatewayStats}) {
		t.Fatalf("topics %v without a SeenHandler", got)
	}
	assignAll(t, c, sink)
	if got := c.Owned(); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("owned %v", got)
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		if ok, why := sink.atEnd(t, cc, TopicUplink); !ok {
			return false, why
		}
		return sink.atEnd(t, cc, TopicGatewayStats)
	})

	h.mu.Lock()
	for p, end := range endOffsets(t, cc, TopicUplink) {
		for off := range end {
			if !h.completed[key{TopicUplink, p, off}] {
				t.Fatalf("uplink %d@%d not completed", p, off)
			}
		}
		if !slices.IsSorted(h.order[p]) {
			t.Errorf("partition %d delivered out of order", p)
		}
	}
	if h.stats != len(stats) {
		t.Errorf("stats delivered %d, want %d", h.stats, len(stats))
	}
	h.mu.Unlock()
	m := c.Metrics()
	if got := m.CommittedRecords.Load(); got != n+uint64(len(stats)) {
		t.Errorf("committed records %d, want %d", got, n+len(stats))
	}
	if m.Handled.Load() != n+uint64(len(stats)) || m.Commits.Load() == 0 || m.Lag.Load() != 0 {
		t.Errorf("metrics: handled %d commits %d lag %d", m.Handled.Load(), m.Commits.Load(), m.Lag.Load())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if m.InFlight.Load() != 0 || m.Lag.Load() != 0 {
		t.Errorf("gauges after Close: in flight %d lag %d", m.InFlight.Load(), m.Lag.Load())
	}
	if len(c.Owned()) != 0 {
		t.Errorf("owned after Close: %v", c.Owned())
	}
	if err := c.Assign(t.Context(), 0, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Assign after Close: %v", err)
	}
}

// firstCall signals the first Handler call.
type firstCall struct {
	*fakeHandler
	once sync.Once
	at   chan time.Time
}

func (f *firstCall) HandleUplink(ctx context.Context, rec Record, u *lorawanv1.UplinkFrame, done func(error)) {
	f.once.Do(func() { f.at <- time.Now() })
	f.fakeHandler.HandleUplink(ctx, rec, u, done)
}

// TestAssignedFirstRecordLatency measures the time from Assign to the
// first Handler call of a partition that holds records (the failover
// budget is 5 s at p99; this is the streams share of it).
func TestAssignedFirstRecordLatency(t *testing.T) {
	_, cc := startBroker(t)
	produceUplinks(t, cc, 0, 200)
	var lat []time.Duration
	for p := range testPartitions {
		h := &firstCall{fakeHandler: newFakeHandler(t), at: make(chan time.Time, 1)}
		cfg := testAssignedConfig(cc, newOffsetSink())
		cfg.FetchMaxWait = 0 // the production default
		c := newAssigned(t, cfg, h, &fakeDLQ{})
		start := time.Now()
		if err := c.Assign(t.Context(), p, nil); err != nil {
			t.Fatal(err)
		}
		returned := time.Since(start)
		select {
		case at := <-h.at:
			lat = append(lat, at.Sub(start))
		case <-time.After(5 * time.Second):
			t.Fatalf("partition %d: no record within 5 s of Assign", p)
		}
		if returned > 250*time.Millisecond {
			t.Errorf("Assign took %v", returned)
		}
		start = time.Now()
		if err := c.Revoke(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		t.Logf("partition %d: Assign returned in %v, first record after %v, Revoke took %v",
			p, returned, lat[len(lat)-1], time.Since(start))
		_ = c.Close()
	}
	slices.Sort(lat)
	if lat[len(lat)-1] > 2*time.Second {
		t.Errorf("slowest first record %v after Assign", lat[len(lat)-1])
	}
}

// TestAssignedRevokeHandOver revokes a partition while records are in
// flight: Revoke waits for them, the final commit includes them and stops
// at the first record never completed, no Handler call follows Revoke,
// and a second consumer (another member) assigned from the stored offsets
// resumes exactly there, so that together they complete every record.
func TestAssignedRevokeHandOver(t *testing.T) {
	_, cc := startBroker(t)
	const p = 0
	produceUplinks(t, cc, 0, 800)
	end := endOffsets(t, cc, TopicUplink)[p]
	if end < 100 {
		t.Fatalf("partition %d has only %d records", p, end)
	}
	forever := func(off int64) bool { return off%97 == 40 }
	sink := newOffsetSink()
	h1 := newFakeHandler(t)
	var released atomic.Bool
	h1.hold = func(r Record) bool { return forever(r.Offset) || (!released.Load() && r.Offset%25 == 7) }
	cfg := testAssignedConfig(cc, sink)
	cfg.DrainTimeout = 2 * time.Second // the records never completed hold Revoke this long
	c1 := newAssigned(t, cfg, h1, &fakeDLQ{})
	if err := c1.Assign(t.Context(), p, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		n := h1.seenCount()
		return int64(n) == end, fmt.Sprintf("seen %d of %d", n, end)
	})

	revoked := make(chan error, 1)
	revokeStart := time.Now()
	go func() { revoked <- c1.Revoke(context.Background(), p) }()
	// Assertion window: Revoke must still wait for the held records.
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-revoked:
		t.Fatalf("Revoke returned (%v) with records in flight", err)
	default:
	}
	if got := c1.Owned(); len(got) != 0 {
		t.Errorf("owned while revoking: %v", got)
	}
	if err := c1.Assign(t.Context(), p, nil); !errors.Is(err, ErrAlreadyOwned) {
		t.Errorf("Assign while revoking: %v", err)
	}
	released.Store(true)
	h1.mu.Lock()
	var forEver []func(error)
	for k, done := range h1.held {
		if forever(k.offset) {
			forEver = append(forEver, done)
			continue
		}
		h1.completed[k] = true
		done(nil)
	}
	h1.held = map[key]func(error){}
	h1.mu.Unlock()
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	t.Logf("Revoke with held records took %v (DrainTimeout %v)", time.Since(revokeStart), cfg.DrainTimeout)
	sink.mu.Lock()
	sink.closedFor[p] = true
	sink.mu.Unlock()
	seenAtRevoke := h1.seenCount()

	// The final commit stopped at the first record never completed.
	want := end
	for off := range end {
		if forever(off) {
			want = off
			break
		}
	}
	if got := sink.get(TopicUplink, p); got != want {
		t.Fatalf("stored %d after Revoke, want first incomplete %d", got, want)
	}
	// Late completions are ignored and counted.
	for _, done := range forEver {
		done(nil)
	}
	if got := c1.Metrics().StaleDone.Load(); got != uint64(len(forEver)) {
		t.Errorf("stale done %d, want %d", got, len(forEver))
	}

	// New records arrive; the revoked consumer must not see them.
	produceUplinks(t, cc, 800, 400)
	end = endOffsets(t, cc, TopicUplink)[p]

	// Another member takes over from the stored offsets.
	h2 := newFakeHandler(t)
	c2 := newAssigned(t, testAssignedConfig(cc, sink), h2, &fakeDLQ{})
	sink.mu.Lock()
	sink.closedFor[p] = false
	sink.mu.Unlock()
	if err := c2.Assign(t.Context(), p, sink.starts(p)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() (bool, string) { return sink.atEnd(t, cc, TopicUplink, p) })

	if got := h1.seenCount(); got != seenAtRevoke {
		t.Errorf("Handler called %d times after Revoke returned", got-seenAtRevoke)
	}
	h1.mu.Lock()
	h2.mu.Lock()
	defer h1.mu.Unlock()
	defer h2.mu.Unlock()
	if first := h2.order[p][0]; first != want {
		t.Errorf("second member started at %d, stored offset was %d", first, want)
	}
	for off := range end {
		k := key{TopicUplink, p, off}
		if !h1.completed[k] && !h2.completed[k] {
			t.Errorf("offset %d completed by neither member", off)
		}
		if off < want && h2.seen[k] > 0 {
			t.Errorf("offset %d before the stored offset %d redelivered", off, want)
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.late) != 0 {
		t.Errorf("commits after Revoke returned: %v", sink.late)
	}
}

// TestAssignedCloseDrains holds records on every partition, closes, and
// releases them during the drain: Close waits for them and commits them.
func TestAssignedCloseDrains(t *testing.T) {
	_, cc := startBroker(t)
	produceUplinks(t, cc, 0, 400)
	sink := newOffsetSink()
	h := newFakeHandler(t)
	var released atomic.Bool
	h.hold = func(r Record) bool { return !released.Load() && r.Offset%10 == 3 }
	cfg := testAssignedConfig(cc, sink)
	cfg.DrainTimeout = 5 * time.Second
	c := newAssigned(t, cfg, h, &fakeDLQ{})
	assignAll(t, c, sink)
	eventually(t, 10*time.Second, func() (bool, string) { return h.seenCount() == 400, fmt.Sprint(h.seenCount()) })
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	time.Sleep(100 * time.Millisecond) // assertion window: Close waits
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with records in flight", err)
	default:
	}
	released.Store(true)
	h.mu.Lock()
	for _, done := range h.held {
		done(nil)
	}
	h.held = map[key]func(error){}
	h.mu.Unlock()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if ok, why := sink.atEnd(t, cc, TopicUplink); !ok {
		t.Fatalf("after Close: %s", why)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestAssignedCommitErrorsRetried fails the sink a few times: the offsets
// are offered again and end up stored.
func TestAssignedCommitErrorsRetried(t *testing.T) {
	_, cc := startBroker(t)
	produceUplinks(t, cc, 0, 100)
	sink := newOffsetSink()
	sink.fail = 3
	c := newAssigned(t, testAssignedConfig(cc, sink), newFakeHandler(t), &fakeDLQ{})
	assignAll(t, c, sink)
	eventually(t, 10*time.Second, func() (bool, string) { return sink.atEnd(t, cc, TopicUplink) })
	if got := c.Metrics().CommitErrors.Load(); got != 3 {
		t.Errorf("commit errors %d, want 3", got)
	}
	if got := c.Metrics().CommittedRecords.Load(); got != 100 {
		t.Errorf("committed records %d, want 100", got)
	}
}

// keyDLQ collects dead letters by topic and Kafka key.
type keyDLQ struct {
	mu      sync.Mutex
	letters map[string]Reason // topic|key → reason
}

func (d *keyDLQ) DeadLetter(_ context.Context, rec Record, reason Reason, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.letters == nil {
		d.letters = map[string]Reason{}
	}
	d.letters[rec.Topic+"|"+string(rec.Key)] = reason
	return nil
}

// seenHandler is a fakeHandler that also takes gateway seen records.
type seenHandler struct {
	*fakeHandler
	smu       sync.Mutex
	byGateway map[string][]Record // gateway key → records
	msgs      []*lorawanv1.GatewayUplinkSeen
}

func (h *seenHandler) HandleGatewaySeen(_ context.Context, rec Record, s *lorawanv1.GatewayUplinkSeen, done func(error)) {
	h.smu.Lock()
	if h.byGateway == nil {
		h.byGateway = map[string][]Record{}
	}
	h.byGateway[string(rec.Key)] = append(h.byGateway[string(rec.Key)], rec)
	h.msgs = append(h.msgs, s)
	h.smu.Unlock()
	h.mu.Lock()
	h.seen[recKey(rec)]++
	h.mu.Unlock()
	h.queue <- delivery{rec: rec, done: done}
}

func (h *seenHandler) count() int {
	h.smu.Lock()
	defer h.smu.Unlock()
	return len(h.msgs)
}

// TestAssignedRetryAndDeadLetters runs the dead-letter expectations of
// the group consumer (TestConsumerDeadLetters) through the assigned
// consumer, the seen topic included.
func TestAssignedRetryAndDeadLetters(t *testing.T) {
	_, cc := startBroker(t)
	good := func(i int) []byte {
		b, _ := proto.Marshal(frame(i))
		return b
	}
	emptyPayload, _ := proto.Marshal(&lorawanv1.UplinkFrame{GatewayEui: []byte{1}})
	hugePayload, _ := proto.Marshal(&lorawanv1.UplinkFrame{PhyPayload: make([]byte, 300)})
	shortEUI, _ := proto.Marshal(&lorawanv1.GatewayStats{GatewayEui: []byte{1, 2, 3}})
	gw := []byte{0xb8, 0x27, 0xeb, 0, 0, 0, 0, 1}
	seenOK, _ := proto.Marshal(&lorawanv1.GatewayUplinkSeen{GatewayEui: gw, DevEui: make([]byte, 8), Fcnt: 1})
	seenNoDev, _ := proto.Marshal(&lorawanv1.GatewayUplinkSeen{GatewayEui: gw})
	tests := []struct {
		topic, key string
		value      []byte
		want       Reason // 0: completed by the handler
	}{
		{TopicUplink, "26011001", good(1), 0},
		{TopicUplink, "not-hex!", good(2), ReasonBadKey},
		{TopicUplink, "26011002", []byte{0xff, 0xff, 0xff, 0xff}, ReasonUndecodable},
		{TopicUplink, "26011003", emptyPayload, ReasonEmptyPayload},
		{TopicUplink, "26011004", make([]byte, 2000), ReasonOversized},
		{TopicUplink, "26011005", hugePayload, ReasonOversized},
		{TopicUplink, "26011006", good(6), ReasonHandler}, // rejected by the handler
		{TopicUplink, "26011007", good(7), 0},             // ErrRetry twice, then fine
		{TopicUplink, "0011223344556677", good(8), 0},
		{TopicGatewayStats, "aa00000000000001", shortEUI, ReasonInvalid},
		{TopicGatewayStats, "zz", shortEUI, ReasonBadKey},
		{TopicGatewaySeen, GatewayKey(gw), seenOK, 0},
		{TopicGatewaySeen, GatewayKey(gw), seenNoDev, ReasonInvalid},
		{TopicGatewaySeen, "B827EB0000000001", seenOK, ReasonBadKey}, // not the lowercase key
		{TopicGatewaySeen, "b827eb0000000002", seenOK, ReasonBadKey}, // another gateway
		{TopicGatewaySeen, "b827eb0000000003", []byte{0xff}, ReasonUndecodable},
	}
	for _, tt := range tests {
		produceRaw(t, cc, tt.topic, kafka.Message{Key: []byte(tt.key), Value: tt.value})
	}
	h := &seenHandler{fakeHandler: newFakeHandler(t)}
	h.result = func(r Record, _ *lorawanv1.UplinkFrame, attempt int) error {
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
	dlq := &keyDLQ{}
	sink := newOffsetSink()
	c := newAssigned(t, testAssignedConfig(cc, sink), h, dlq)
	if got := c.Topics(); !slices.Equal(got, []string{TopicUplink, TopicGatewayStats, TopicGatewaySeen}) {
		t.Fatalf("topics %v with a SeenHandler", got)
	}
	assignAll(t, c, sink)
	eventually(t, 20*time.Second, func() (bool, string) {
		for _, topic := range []string{TopicUplink, TopicGatewayStats, TopicGatewaySeen} {
			if ok, why := sink.atEnd(t, cc, topic); !ok {
				return false, why
			}
		}
		return true, ""
	})
	dlq.mu.Lock()
	defer dlq.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, tt := range tests {
		k := tt.topic + "|" + tt.key
		if tt.want == 0 {
			if tt.topic == TopicUplink && !h.completedKeys[tt.key] {
				t.Errorf("%s: not completed", k)
			}
			continue
		}
		if k == TopicGatewaySeen+"|"+GatewayKey(gw) {
			continue // same key as the good record: checked below by count
		}
		if got := dlq.letters[k]; got != tt.want {
			t.Errorf("%s: dead letter %v, want %v", k, got, tt.want)
		}
	}
	if got := dlq.letters[TopicGatewaySeen+"|"+GatewayKey(gw)]; got != ReasonInvalid {
		t.Errorf("seen without dev_eui: %v", got)
	}
	if h.count() != 1 {
		t.Errorf("seen records handled %d, want 1", h.count())
	}
	m := c.Metrics()
	if m.Retried.Load() != 2 || m.DeadLettered(ReasonHandler) != 1 || m.DeadLettered(ReasonBadKey) != 4 ||
		m.DeadLettered(ReasonOversized) != 2 || m.DeadLettered(ReasonInvalid) != 2 || m.DeadLettered(ReasonUndecodable) != 2 {
		t.Errorf("metrics: retried %d, dead letters %d", m.Retried.Load(), m.DeadLetteredTotal())
	}
	if m.GatewaySeenIn.Load() != 5 {
		t.Errorf("seen in %d, want 5", m.GatewaySeenIn.Load())
	}
}

// TestGatewaySeenPartitionAlignment produces gateway stats and seen records
// for the same gateways and checks that each gateway's records are on the
// same partition index of both topics, and that the seen records arrive
// intact through the assigned consumer.
func TestGatewaySeenPartitionAlignment(t *testing.T) {
	_, cc := startBroker(t)
	metrics := &Metrics{}
	sp, err := NewSeenProducer(ProducerConfig{Client: cc}, metrics, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	up, err := NewUplinkProducer(ProducerConfig{Client: cc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	const gateways = 24
	rx := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	want := map[string]*lorawanv1.GatewayUplinkSeen{}
	var stats []*lorawanv1.GatewayStats
	var wg sync.WaitGroup
	errs := make(chan error, gateways)
	for i := range gateways {
		eui := []byte{0xb8, 0x27, 0xeb, 0, 0, 0, byte(i >> 8), byte(i)}
		s := &lorawanv1.GatewayUplinkSeen{
			GatewayEui: eui, DevEui: []byte{0x70, 0xb3, 0xd5, 0, 0, 0, 0, byte(i)}, Fcnt: uint32(70000 + i),
			Rssi: int32(-60 - i), Snr: float32(i) / 4, ReceivedAt: timestamppb.New(rx.Add(time.Duration(i) * time.Second)),
		}
		want[GatewayKey(eui)] = s
		stats = append(stats, &lorawanv1.GatewayStats{GatewayEui: eui})
		// Concurrent callers share batches and each returns once durable.
		wg.Go(func() { errs <- sp.PublishSeen(t.Context(), s) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if metrics.SeenPublished.Load() != gateways {
		t.Errorf("seen published %d", metrics.SeenPublished.Load())
	}
	if err := up.SendGatewayStats(t.Context(), stats...); err != nil {
		t.Fatal(err)
	}
	if err := sp.PublishSeen(t.Context(), &lorawanv1.GatewayUplinkSeen{GatewayEui: []byte{1}}); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("short gateway EUI: %v", err)
	}

	statsPart := map[string]int{}
	for _, m := range readAll(t, cc, TopicGatewayStats) {
		statsPart[string(m.Key)] = m.Partition
	}
	seenPart := map[string]int{}
	parts := map[int]bool{}
	for _, m := range readAll(t, cc, TopicGatewaySeen) {
		seenPart[string(m.Key)] = m.Partition
		parts[m.Partition] = true
	}
	if len(seenPart) != gateways {
		t.Fatalf("%d gateways on the seen topic", len(seenPart))
	}
	if len(parts) < 2 {
		t.Errorf("all gateways on one partition: the check proves little")
	}
	for k, p := range seenPart {
		if sp, ok := statsPart[k]; !ok || sp != p {
			t.Errorf("gateway %s: seen on partition %d, stats on %d", k, p, sp)
		}
	}

	// Consume them through the assigned consumer, partition by partition.
	h := &seenHandler{fakeHandler: newFakeHandler(t)}
	sink := newOffsetSink()
	c := newAssigned(t, testAssignedConfig(cc, sink), h, &fakeDLQ{})
	assignAll(t, c, sink)
	eventually(t, 10*time.Second, func() (bool, string) { return sink.atEnd(t, cc, TopicGatewaySeen) })
	h.smu.Lock()
	defer h.smu.Unlock()
	if len(h.msgs) != gateways {
		t.Fatalf("handled %d seen records, want %d", len(h.msgs), gateways)
	}
	for _, got := range h.msgs {
		k := GatewayKey(got.GetGatewayEui())
		if !proto.Equal(got, want[k]) {
			t.Errorf("gateway %s: got %v, want %v", k, got, want[k])
		}
		if r := h.byGateway[k][0]; r.Partition != statsPart[k] {
			t.Errorf("gateway %s: handed over from partition %d, stats on %d", k, r.Partition, statsPart[k])
		}
	}
}

// TestAssignedGroupCopy checks that with GroupID the stored offsets also
// reach Kafka's group offset store (standalone commit, generation -1), so
// standard tools see the lag.
func TestAssignedGroupCopy(t *testing.T) {
	_, cc := startBroker(t)
	produceUplinks(t, cc, 0, 300)
	sink := newOffsetSink()
	cfg := testAssignedConfig(cc, sink)
	cfg.GroupID = "legiond-monitor"
	c := newAssigned(t, cfg, newFakeHandler(t), &fakeDLQ{})
	assignAll(t, c, sink)
	eventually(t, 10*time.Second, func() (bool, string) { return sink.atEnd(t, cc, TopicUplink) })
	eventually(t, 10*time.Second, func() (bool, string) { return committedAtEnd(t, cc, "legiond-monitor", TopicUplink) })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAssignedErrors(t *testing.T) {
	sink := newOffsetSink()
	cfg := AssignedConfig{Client: ClientConfig{Brokers: []string{"127.0.0.1:1"}}, Commit: sink.commit}
	c, err := NewAssignedConsumer(cfg, newFakeHandler(t), &fakeDLQ{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	if err := c.Assign(ctx, 1, map[string]int64{"other.topic": 0}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown topic: %v", err)
	}
	if err := c.Assign(ctx, 1, map[string]int64{TopicUplink: -7}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad offset: %v", err)
	}
	if err := c.Assign(ctx, -1, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative partition: %v", err)
	}
	if err := c.Assign(ctx, 1, map[string]int64{TopicUplink: 5, TopicGatewayStats: kafka.LastOffset}); err != nil {
		t.Fatal(err)
	}
	if err := c.Assign(ctx, 1, nil); !errors.Is(err, ErrAlreadyOwned) {
		t.Errorf("assign twice: %v", err)
	}
	if err := c.Revoke(ctx, 2); !errors.Is(err, ErrNotOwned) {
		t.Errorf("revoke unowned: %v", err)
	}
	if err := c.Revoke(ctx, 1); err != nil {
		t.Errorf("revoke: %v", err)
	}
	if err := c.Revoke(ctx, 1); !errors.Is(err, ErrNotOwned) {
		t.Errorf("revoke twice: %v", err)
	}
	sink.mu.Lock()
	if sink.calls != 0 {
		t.Errorf("Commit called %d times without progress", sink.calls)
	}
	sink.mu.Unlock()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Assign(ctx, 1, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("assign after Close: %v", err)
	}

	for name, mutate := range map[string]func(*AssignedConfig){
		"no commit":      func(c *AssignedConfig) { c.Commit = nil },
		"no brokers":     func(c *AssignedConfig) { c.Client.Brokers = nil },
		"seen is uplink": func(c *AssignedConfig) { c.GatewaySeenTopic = TopicUplink },
		"same inputs":    func(c *AssignedConfig) { c.GatewayStatsTopic = TopicUplink },
		"tiny commit":    func(c *AssignedConfig) { c.CommitInterval = time.Millisecond },
		"small values":   func(c *AssignedConfig) { c.MaxValueBytes = 10 },
	} {
		cfg := AssignedConfig{Client: ClientConfig{Brokers: []string{"127.0.0.1:1"}}, Commit: sink.commit}
		mutate(&cfg)
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	good := AssignedConfig{Client: ClientConfig{Brokers: []string{"127.0.0.1:1"}}, Commit: sink.commit}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if good.GatewaySeenTopic != TopicGatewaySeen || good.DrainTimeout != DefaultDrainTimeout || good.MaxInFlightPerPartition != DefaultMaxInFlightPerPartition {
		t.Errorf("defaults not applied: %+v", good)
	}
	if _, err := NewAssignedConsumer(good, nil, &fakeDLQ{}, nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil handler: %v", err)
	}
}

func TestDecodeGatewaySeen(t *testing.T) {
	gw := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	enc := func(s *lorawanv1.GatewayUplinkSeen) []byte {
		b, _ := proto.Marshal(s)
		return b
	}
	good := enc(&lorawanv1.GatewayUplinkSeen{GatewayEui: gw, DevEui: gw, Fcnt: 3})
	tests := []struct {
		name  string
		key   string
		value []byte
		want  Reason
	}{
		{"good", "0102030405060708", good, 0},
		{"upper key", "0102030405060A08", good, ReasonBadKey},
		{"other gateway", "0102030405060709", good, ReasonBadKey},
		{"short key", "01020304", good, ReasonBadKey},
		{"garbage", "0102030405060708", []byte{0xff}, ReasonUndecodable},
		{"oversized", "0102030405060708", make([]byte, 2000), ReasonOversized},
		{"no dev eui", "0102030405060708", enc(&lorawanv1.GatewayUplinkSeen{GatewayEui: gw}), ReasonInvalid},
		{"empty", "0102030405060708", nil, ReasonInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rej := decodeGatewaySeen(&Record{Key: []byte(tt.key), Value: tt.value}, 1024)
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

// FuzzDecodeGatewaySeen: the seen decoder never panics, and accepts only
// records a gateway twin can use, on the gateway's own key.
func FuzzDecodeGatewaySeen(f *testing.F) {
	gw := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	good, _ := proto.Marshal(&lorawanv1.GatewayUplinkSeen{GatewayEui: gw, DevEui: gw, Fcnt: 1, Rssi: -90})
	f.Add([]byte("0102030405060708"), good)
	f.Add([]byte("0102030405060709"), good)
	f.Add([]byte("x"), []byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		s, rej := decodeGatewaySeen(&Record{Key: k, Value: v}, 1024)
		if rej != nil {
			if rej.reason == 0 || rej.detail == "" {
				t.Fatalf("rejection without reason: %+v", rej)
			}
			return
		}
		if len(s.GetGatewayEui()) != 8 || len(s.GetDevEui()) != 8 || string(k) != GatewayKey(s.GetGatewayEui()) || len(v) > 1024 {
			t.Fatalf("accepted bad seen record %q %x", k, v)
		}
	})
}
