package streams

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
)

// benchHandler completes every record, inline or from worker goroutines
// (like actors answering later), and closes all once n are done.
type benchHandler struct {
	n     int64
	count atomic.Int64
	all   chan struct{}
	work  chan func(error)
}

func (h *benchHandler) finish(done func(error)) {
	done(nil)
	if h.count.Add(1) == h.n {
		close(h.all)
	}
}

func (h *benchHandler) HandleUplink(_ context.Context, _ Record, _ *lorawanv1.UplinkFrame, done func(error)) {
	if h.work != nil {
		h.work <- done
		return
	}
	h.finish(done)
}

func (h *benchHandler) HandleGatewayStats(_ context.Context, _ Record, _ *lorawanv1.GatewayStats, done func(error)) {
	h.finish(done)
}

// BenchmarkConsumeHandleCommit measures the whole input path against the
// embedded broker: fetch from lorawan.uplink (4 partitions), decode,
// Handler, watermark, commit. One op is one frame; the clock stops when
// the group has committed the end offsets of every partition.
func BenchmarkConsumeHandleCommit(b *testing.B) {
	for _, mode := range []string{"inline", "async"} {
		b.Run(mode, func(b *testing.B) {
			_, cc := startBroker(b)
			for from := 0; from < b.N; from += 20000 {
				produceUplinks(b, cc, from, min(20000, b.N-from))
			}
			h := &benchHandler{n: int64(b.N), all: make(chan struct{})}
			if mode == "async" {
				h.work = make(chan func(error), 4096)
				var wg sync.WaitGroup
				defer wg.Wait()
				defer close(h.work)
				for range 4 {
					wg.Go(func() {
						for done := range h.work {
							h.finish(done)
						}
					})
				}
			}
			group := fmt.Sprintf("bench-%s-%d", mode, b.N)
			cfg := testConsumerConfig(cc, group)
			cfg.CommitInterval = DefaultCommitInterval
			c, err := NewConsumer(cfg, h, &fakeDLQ{}, nil, testLogger())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			errc := make(chan error, 1)
			go func() { errc <- c.Run(context.Background()) }()
			select {
			case <-h.all:
			case <-time.After(5 * time.Minute):
				b.Fatal("frames not all handled")
			}
			eventually(b, time.Minute, func() (bool, string) { return committedAtEnd(b, cc, group, TopicUplink) })
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "frames/s")
			_ = c.Close()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkEventProducerPublish measures synchronous Publish of one event
// per call from concurrent callers (batched together by the writer).
func BenchmarkEventProducerPublish(b *testing.B) {
	_, cc := startBroker(b)
	p, err := NewEventProducer(ProducerConfig{Client: cc}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var seq atomic.Int64
	b.SetParallelism(64) // many twins publishing at once
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(seq.Add(1))
			if err := p.Publish(context.Background(), twinEvent(i%1000, i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
