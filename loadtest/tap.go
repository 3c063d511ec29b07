package loadtest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// eventInfo is what the harness needs of a TwinEvent: parsed straight from
// the wire (protowire), because at 250,000 events/s a full unmarshal would
// cost the node under test a good part of a core on a shared box.
type eventInfo struct {
	fcnt        uint32
	kind        eventKind
	alarmType   int32
	alarmRaised bool // transition to ACTIVE_UNACK
}

// parseEvent reads f_cnt (8), the payload kind (10..14) and, for alarms,
// type (2) and to_status (5) of a TwinEvent.
func parseEvent(b []byte) (eventInfo, error) {
	var ev eventInfo
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ev, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 8 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			ev.fcnt, b = uint32(v), b[n:]
			continue
		case num >= 10 && num <= 14 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			ev.kind, b = eventKind(num), b[n:]
			if num == 12 {
				parseAlarm(v, &ev)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ev, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return ev, nil
}

func parseAlarm(b []byte, ev *eventInfo) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == 2 || num == 5) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return
			}
			b = b[n:]
			if num == 2 {
				ev.alarmType = int32(v)
			} else {
				ev.alarmRaised = v == 1 // ALARM_STATUS_ACTIVE_UNACK
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return
		}
		b = b[n:]
	}
}

// parseEUI reads 16 hex digits.
func parseEUI(s []byte) (lorawan.EUI64, bool) {
	var e lorawan.EUI64
	if len(s) != 16 {
		return e, false
	}
	_, err := hex.Decode(e[:], s)
	return e, err == nil
}

// observer turns events into measurements: latency of the first event of
// every frame, alarm latency, alarm counts.
type observer struct {
	src source
	led *ledger
	now func() time.Time
	// from: frames produced before this unix ns (the warm-up) count for
	// loss but not for latency.
	from    *atomic.Int64
	latency *Histogram
	alarms  *Histogram
	counts  *alarmCounts
}

// event takes one event. latency (first event of each frame) and alarms
// (every alarm transition caused by a frame) may be nil.
func (o *observer) event(dev lorawan.EUI64, ev eventInfo) {
	now := o.now().UnixNano()
	ob := o.led.observe(o.src, dev, ev.fcnt, now)
	alarm := ev.kind == kindAlarm && o.alarms != nil
	if alarm && ev.alarmRaised {
		o.counts.add(o.src, ev.alarmType, ob.known)
	}
	if !ob.known {
		return
	}
	if ob.producedAt < o.from.Load() {
		return
	}
	d := time.Duration(now - ob.producedAt)
	if ob.first && o.latency != nil {
		o.latency.Record(d)
	}
	if alarm {
		o.alarms.Record(d)
	}
}

// alarmCounts counts raised alarms by type and source.
type alarmCounts struct {
	mu sync.Mutex
	// raised[src][type]; fromFrames counts those caused by a frame of the
	// run (the others come from deadline ticks).
	raised     [nSources]map[int32]int64
	fromFrames [nSources]int64
}

func newAlarmCounts() *alarmCounts {
	a := &alarmCounts{}
	for i := range a.raised {
		a.raised[i] = map[int32]int64{}
	}
	return a
}

func (a *alarmCounts) add(src source, typ int32, fromFrame bool) {
	a.mu.Lock()
	a.raised[src][typ]++
	if fromFrame {
		a.fromFrames[src]++
	}
	a.mu.Unlock()
}

func (a *alarmCounts) total(src source) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, v := range a.raised[src] {
		n += v
	}
	return n
}

// tap reads twin.events from the offsets at the start of the run, one
// partition reader per partition (no consumer group: it must not disturb
// anyone), and feeds the observer.
type tap struct {
	cfg     Config
	obs     *observer
	errs    *errorCounts
	readers []*kafka.Reader
	wg      sync.WaitGroup
	read    atomic.Int64
}

func startTap(ctx context.Context, cfg Config, starts []int64, obs *observer, errs *errorCounts) *tap {
	t := &tap{cfg: cfg, obs: obs, errs: errs}
	for p, off := range starts {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: cfg.Kafka.Brokers, Topic: cfg.Kafka.EventsTopic, Partition: p, Dialer: cfg.Kafka.Dialer,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 50 * time.Millisecond, ReadBackoffMin: time.Millisecond,
			ReadBackoffMax: 50 * time.Millisecond, QueueCapacity: 4096,
		})
		if err := r.SetOffset(off); err != nil {
			errs.add("events_tap", 1)
		}
		t.readers = append(t.readers, r)
		t.wg.Go(func() { t.loop(ctx, r) })
	}
	return t
}

func (t *tap) loop(ctx context.Context, r *kafka.Reader) {
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			t.errs.add("events_tap", 1)
			continue
		}
		t.read.Add(1)
		dev, ok := parseEUI(m.Key)
		if !ok {
			t.errs.add("events_tap_key", 1)
			continue
		}
		ev, err := parseEvent(m.Value)
		if err != nil {
			t.errs.add("events_tap_decode", 1)
			continue
		}
		t.obs.event(dev, ev)
	}
}

func (t *tap) close() {
	for _, r := range t.readers {
		_ = r.Close()
	}
	t.wg.Wait()
}

// kafkaAdmin answers the offset questions of a run.
type kafkaAdmin struct {
	c     *kafka.Client
	group string
}

func newKafkaAdmin(cfg Config) *kafkaAdmin {
	c := &kafka.Client{Addr: kafka.TCP(cfg.Kafka.Brokers...), Timeout: 10 * time.Second}
	if cfg.Kafka.Transport != nil {
		c.Transport = cfg.Kafka.Transport
	}
	return &kafkaAdmin{c: c, group: cfg.Kafka.Group}
}

// partitions returns the partition count of topic.
func (k *kafkaAdmin) partitions(ctx context.Context, topic string) (int, error) {
	md, err := k.c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return 0, t.Error
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("topic %s not found", topic)
}

// endOffsets returns the next offset of every partition of topic.
func (k *kafkaAdmin) endOffsets(ctx context.Context, topic string, partitions int) ([]int64, error) {
	req := make([]kafka.OffsetRequest, partitions)
	for p := range partitions {
		req[p] = kafka.LastOffsetOf(p)
	}
	res, err := k.c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, err
	}
	out := make([]int64, partitions)
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		if po.Partition >= 0 && po.Partition < partitions {
			out[po.Partition] = po.LastOffset
		}
	}
	return out, nil
}

// lag returns the group's lag on topic from committed offsets: end minus
// committed, summed (a partition without a commit counts from 0).
func (k *kafkaAdmin) lag(ctx context.Context, topic string, partitions int) (int64, error) {
	ends, err := k.endOffsets(ctx, topic, partitions)
	if err != nil {
		return 0, err
	}
	ps := make([]int, partitions)
	for p := range ps {
		ps[p] = p
	}
	res, err := k.c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: k.group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		return 0, err
	}
	if res.Error != nil {
		return 0, res.Error
	}
	committed := make([]int64, partitions)
	for _, po := range res.Topics[topic] {
		if po.Partition >= 0 && po.Partition < partitions && po.CommittedOffset > 0 {
			committed[po.Partition] = po.CommittedOffset
		}
	}
	var lag int64
	for p := range partitions {
		lag += max(0, ends[p]-committed[p])
	}
	return lag, nil
}
