package streams

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

func twinEvent(dev, seq int) *twinv1.TwinEvent {
	eui := fmt.Sprintf("70b3d5000000%04x", dev)
	pipe := 55.5
	return &twinv1.TwinEvent{
		EventId:    fmt.Sprintf("%s-%d-0", eui, seq),
		CustomerId: "customer-1",
		DeviceEui:  eui,
		EventTime:  timestamppb.New(time.Unix(1_700_000_000+int64(seq), 0)),
		FCnt:       uint32(seq),
		Payload:    &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &pipe}},
	}
}

// TestEventProducer publishes events from concurrent callers and reads
// them back: each exactly once, keyed by DevEUI, one partition per device,
// in publish order per device.
func TestEventProducer(t *testing.T) {
	_, cc := startBroker(t)
	m := &Metrics{}
	p, err := NewEventProducer(ProducerConfig{Client: cc}, m, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	const devices, perDevice = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for d := range devices {
		wg.Go(func() {
			for s := 0; s < perDevice; s += 5 {
				evs := []*twinv1.TwinEvent{}
				for i := s; i < s+5; i++ {
					evs = append(evs, twinEvent(d, i))
				}
				if err := p.Publish(t.Context(), evs...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := m.EventsPublished.Load(); got != devices*perDevice {
		t.Fatalf("EventsPublished %d", got)
	}

	// Refused before anything is written.
	bad := twinEvent(1, 99)
	bad.EventId = ""
	if err := p.Publish(t.Context(), twinEvent(1, 98), bad); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("event without id: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), twinEvent(1, 100)); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}

	msgs := readAll(t, cc, TopicTwinEvents)
	if len(msgs) != devices*perDevice {
		t.Fatalf("read %d events, want %d", len(msgs), devices*perDevice)
	}
	partitionOf := map[string]int{}
	lastSeq := map[string]int{}
	seen := map[string]bool{}
	for _, msg := range msgs {
		var e twinv1.TwinEvent
		if err := proto.Unmarshal(msg.Value, &e); err != nil {
			t.Fatal(err)
		}
		if string(msg.Key) != e.GetDeviceEui() {
			t.Errorf("event %s keyed %q", e.GetEventId(), msg.Key)
		}
		if len(msg.Headers) != 1 || msg.Headers[0].Key != HeaderEventID || string(msg.Headers[0].Value) != e.GetEventId() {
			t.Errorf("event %s headers %v", e.GetEventId(), msg.Headers)
		}
		if seen[e.GetEventId()] {
			t.Errorf("event %s twice", e.GetEventId())
		}
		seen[e.GetEventId()] = true
		dev := e.GetDeviceEui()
		if p, ok := partitionOf[dev]; ok && p != msg.Partition {
			t.Errorf("device %s on partitions %d and %d", dev, p, msg.Partition)
		}
		partitionOf[dev] = msg.Partition
		if last, ok := lastSeq[dev]; ok && int(e.GetFCnt()) != last+1 {
			t.Errorf("device %s: event %d after %d", dev, e.GetFCnt(), last)
		}
		lastSeq[dev] = int(e.GetFCnt())
	}
}

// TestDLQProducerHeaders checks the dead letter of a record with headers.
func TestDLQProducerHeaders(t *testing.T) {
	_, cc := startBroker(t)
	p, err := NewDLQProducer(ProducerConfig{Client: cc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rec := Record{Topic: TopicUplink, Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("v"),
		Headers: []Header{{Key: "trace", Value: []byte("abc")}}}
	if err := p.DeadLetter(t.Context(), rec, ReasonUndecodable, "boom"); err != nil {
		t.Fatal(err)
	}
	msgs := readAll(t, cc, TopicUplinkDLQ)
	if len(msgs) != 1 {
		t.Fatalf("%d dead letters", len(msgs))
	}
	got := map[string]string{}
	for _, h := range msgs[0].Headers {
		got[h.Key] = string(h.Value)
	}
	want := map[string]string{"trace": "abc", HeaderReason: "undecodable", HeaderReasonDetail: "boom",
		HeaderSourceTopic: TopicUplink, HeaderSourcePartition: "3", HeaderSourceOffset: "42"}
	if fmt.Sprint(got) != fmt.Sprint(want) || string(msgs[0].Key) != "k" || string(msgs[0].Value) != "v" {
		t.Fatalf("dead letter %q=%q headers %v", msgs[0].Key, msgs[0].Value, got)
	}
}

func TestProducerConfigValidate(t *testing.T) {
	cc := ClientConfig{Brokers: []string{"127.0.0.1:9092"}}
	c := ProducerConfig{Client: cc, Topic: "x"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.BatchTimeout != DefaultBatchTimeout || c.MaxAttempts != DefaultMaxAttempts || c.Compression != CompressionNone {
		t.Fatalf("defaults not applied: %+v", c)
	}
	for name, pc := range map[string]ProducerConfig{
		"no topic":     {Client: cc},
		"compression":  {Client: cc, Topic: "x", Compression: "brotli"},
		"batch size":   {Client: cc, Topic: "x", BatchSize: -1},
		"batch bytes":  {Client: cc, Topic: "x", BatchBytes: 10},
		"attempts":     {Client: cc, Topic: "x", MaxAttempts: -2},
		"client":       {Topic: "x"},
		"neg. timeout": {Client: cc, Topic: "x", WriteTimeout: -time.Second},
	} {
		if err := pc.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, comp := range []string{CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd} {
		pc := ProducerConfig{Client: cc, Topic: "x", Compression: comp}
		if err := pc.Validate(); err != nil {
			t.Errorf("%s: %v", comp, err)
		}
	}
	// Constructors fill in their topic.
	p, err := NewEventProducer(ProducerConfig{Client: cc}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.w.w.Topic != TopicTwinEvents || p.w.w.RequiredAcks != -1 {
		t.Errorf("event producer topic %q acks %d", p.w.w.Topic, p.w.w.RequiredAcks)
	}
	_ = p.Close()
}

func TestDevAddrKey(t *testing.T) {
	if got := DevAddrKey(0x26011BDA); got != "26011bda" {
		t.Fatal(got)
	}
	if got := DevAddrKey(1); got != "00000001" {
		t.Fatal(got)
	}
}

// TestEnsureTopicsIdempotent runs EnsureTopics twice and checks the
// topics and partition counts.
func TestEnsureTopicsIdempotent(t *testing.T) {
	_, cc := startBroker(t) // creates the topics once
	if err := EnsureTopics(t.Context(), cc, DefaultTopics(testPartitions, 1), testLogger()); err != nil {
		t.Fatalf("second run: %v", err)
	}
	// A differing partition count is logged, not an error.
	if err := EnsureTopics(t.Context(), cc, DefaultTopics(testPartitions+2, 1), nil); err != nil {
		t.Fatalf("mismatch run: %v", err)
	}
	extra := []TopicSpec{{Name: "extra.topic", Partitions: 2, ReplicationFactor: 1}}
	if err := EnsureTopics(t.Context(), cc, extra, nil); err != nil {
		t.Fatal(err)
	}
	md, err := adminClient(t, cc).Metadata(t.Context(), &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, tp := range md.Topics {
		got[tp.Name] = len(tp.Partitions)
	}
	for _, s := range DefaultTopics(testPartitions, 1) {
		if got[s.Name] != testPartitions {
			t.Errorf("topic %s: %d partitions", s.Name, got[s.Name])
		}
	}
	if got["extra.topic"] != 2 {
		t.Errorf("extra.topic: %d partitions", got["extra.topic"])
	}
	if err := EnsureTopics(t.Context(), cc, []TopicSpec{{Name: "x", Partitions: 0, ReplicationFactor: 1}}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("zero partitions: %v", err)
	}
}

func TestDefaultTopics(t *testing.T) {
	specs := DefaultTopics(12, 3)
	if len(specs) != 6 {
		t.Fatalf("%d topics", len(specs))
	}
	for _, s := range specs {
		if s.Partitions != 12 || s.ReplicationFactor != 3 || s.Configs["min.insync.replicas"] != "2" {
			t.Errorf("%+v", s)
		}
		if s.Name == TopicUplinkDLQ && s.Configs["retention.ms"] == "" {
			t.Errorf("dlq without retention")
		}
	}
	if DefaultTopics(4, 1)[0].Configs["min.insync.replicas"] != "" {
		t.Errorf("min.insync.replicas with replication 1")
	}
}

// TestDevBrokerPersists restarts a development broker from its data folder
// and checks that records and committed offsets survived, so a consumer
// of the same group resumes after them.
func TestDevBrokerPersists(t *testing.T) {
	dir := t.TempDir()
	start := func() (*devbroker.Broker, ClientConfig) {
		b, err := devbroker.Start(t.Context(), devbroker.Config{Dir: dir, Partitions: testPartitions}, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		cc := ClientConfig{Brokers: b.Addrs()}
		if err := EnsureTopics(t.Context(), cc, DefaultTopics(testPartitions, 1), testLogger()); err != nil {
			t.Fatal(err)
		}
		return b, cc
	}
	b, cc := start()
	produceUplinks(t, cc, 0, 100)
	h := newFakeHandler(t)
	c, err := NewConsumer(testConsumerConfig(cc, "persist"), h, &fakeDLQ{}, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(t.Context()) }()
	eventually(t, 10*time.Second, func() (bool, string) { return committedAtEnd(t, cc, "persist", TopicUplink) })
	_ = c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ends := endOffsets(t, cc, TopicUplink)
	_ = b.Close()

	b, cc = start() // new ports, same folder
	defer b.Close()
	if got := endOffsets(t, cc, TopicUplink); fmt.Sprint(got) != fmt.Sprint(ends) {
		t.Fatalf("after restart end offsets %v, want %v", got, ends)
	}
	if got := committedOffsets(t, cc, "persist", TopicUplink); fmt.Sprint(got) != fmt.Sprint(ends) {
		t.Fatalf("after restart committed %v, want %v", got, ends)
	}
	produceUplinks(t, cc, 100, 20)
	h2 := newFakeHandler(t)
	runConsumer(t, testConsumerConfig(cc, "persist"), h2, &fakeDLQ{})
	eventually(t, 10*time.Second, func() (bool, string) { return committedAtEnd(t, cc, "persist", TopicUplink) })
	h2.mu.Lock()
	defer h2.mu.Unlock()
	if len(h2.seen) != 20 {
		t.Fatalf("after restart the group re-read %d records, want the 20 new ones", len(h2.seen))
	}
}
