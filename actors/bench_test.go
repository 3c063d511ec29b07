package actors

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// nullStore keeps nothing: every twin is new and every write succeeds at
// once. It isolates the twins' own memory from Pebble's memtables.
type nullStore struct{}

func (nullStore) LoadTwin(context.Context, string, pebblestore.Kind, pebblestore.EUI) (pebblestore.TwinRecord, error) {
	return pebblestore.TwinRecord{}, pebblestore.ErrNotFound
}

func (nullStore) Submit(_ context.Context, _ []pebblestore.Write, done func(error)) error {
	go done(nil)
	return nil
}

func (nullStore) ForEachTwin(context.Context, func(pebblestore.TwinEntry) error) error { return nil }

type nullSink struct{}

func (nullSink) Publish(context.Context, ...*twinv1.TwinEvent) error { return nil }

// BenchmarkActiveTwinMemory reports the resident heap per active sensor
// twin (actor, mailbox, directory entry, state, session ciphers, timer):
// HeapInuse after activating N twins with one frame each, minus before,
// divided by N. Run with -benchtime=1x.
func BenchmarkActiveTwinMemory(b *testing.B) {
	const n = 20000
	devs := make([]*testDevice, n)
	frames := make([]*lorawanv1.UplinkFrame, n)
	for i := range devs {
		devs[i] = newTestDevice(i, 0x26100000+uint32(i))
		frames[i] = devs[i].uplink(b, 1, t0, gw1)
	}
	dir := newFakeDirectory(devs...)
	for range b.N {
		sys, err := NewSystem(Config{Store: nullStore{}, Events: nullSink{}, Directory: dir, SkipDeadlineScan: true})
		if err != nil {
			b.Fatal(err)
		}
		before := heapInuse()
		var wg sync.WaitGroup
		wg.Add(n)
		for _, f := range frames {
			sys.HandleUplink(context.Background(), f, func(err error) {
				if err != nil {
					b.Error(err)
				}
				wg.Done()
			})
		}
		wg.Wait()
		after := heapInuse()
		if got := sys.Stats().ActiveTwins; got != n+1 {
			b.Fatalf("%d active twins, want %d sensors + 1 gateway", got, n)
		}
		b.ReportMetric(float64(after-before)/n, "bytes/twin")
		_ = sys.Close(context.Background())
		runtime.KeepAlive(frames)
	}
}

func heapInuse() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // let finalizers and sweeping settle: a measurement, not synchronisation
	}
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
