package replication

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

const (
	benchSnapshot    = 384 // bytes: a sensor twin's snapshot, as in pebblestore's benchmarks
	benchParallelism = 32  // × GOMAXPROCS proposers
)

// BenchmarkReplicatedPropose measures replicated twin updates per second
// through a 3-member group on loopback (mutual TLS, Pebble on the real file
// system, every write fsynced: the Raft log on each member, the state store
// on each member), with many concurrent proposers whose proposals the group
// batches into Raft entries. Each op is one Propose of one twin update plus
// its Kafka offset.
func BenchmarkReplicatedPropose(b *testing.B) {
	for _, bc := range []struct {
		via      string
		inflight int
	}{{"leader", 1}, {"leader", 2}, {"leader", 4}, {"leader", 8}, {"follower", 2}, {"follower", 4}} {
		via := bc.via
		b.Run(fmt.Sprintf("3 members/via %s/inflight=%d", via, bc.inflight), func(b *testing.B) {
			c := newCluster(b, 3, func(cfg *Config) {
				cfg.HeartbeatTimeout = 500 * time.Millisecond
				cfg.ElectionTimeout = 500 * time.Millisecond
				cfg.LeaderLeaseTimeout = 250 * time.Millisecond
				cfg.MaxInflight = bc.inflight
			})
			m := c.leader()
			if via == "follower" {
				m = c.followers()[0]
			}
			runProposers(b, func(ctx context.Context, twin int, version uint64, snap []byte) error {
				// A leader change on a loaded machine is retried, as a
				// twin would (fencing makes it safe).
				var retried bool
				_, err := proposeRetry(ctx, m.g, Batch{
					Twins:   []TwinUpdate{{Tenant: tenantA, Kind: pebblestore.KindSensor, EUI: eui(twin), ExpectedVersion: version, Snapshot: snap}},
					Offsets: []Offset{uplink(int32(twin%8), int64(version)+1)},
				}, &retried)
				return err
			})
			var props, cmds uint64
			for _, m := range c.members {
				st := m.g.Stats(context.Background())
				props += st.Proposals
				cmds += st.Commands
			}
			b.ReportMetric(float64(props)/float64(max(cmds, 1)), "proposals/entry")
		})
	}
}

// BenchmarkSingleNodeCommit is the baseline: the same twin updates with
// offsets committed (fenced, group-committed, fsynced) into one node's
// pebblestore, without replication.
func BenchmarkSingleNodeCommit(b *testing.B) {
	s, err := pebblestore.Open(pebblestore.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	runProposers(b, func(ctx context.Context, twin int, version uint64, snap []byte) error {
		return s.Commit(ctx,
			pebblestore.PutTwin(tenantA, pebblestore.KindSensor, eui(twin), pebblestore.TwinUpdate{ExpectedVersion: version, Snapshot: snap}),
			pebblestore.PutOffset(pebblestore.TopicPartition{Topic: "lorawan.uplink", Partition: int32(twin % 8)}, int64(version)+1))
	})
}

// runProposers runs b.N updates from benchParallelism×GOMAXPROCS
// goroutines, each owning one twin and updating it in sequence.
func runProposers(b *testing.B, update func(ctx context.Context, twin int, version uint64, snap []byte) error) {
	var next atomic.Int64
	ctx := context.Background()
	snap := bytes.Repeat([]byte{0x5a}, benchSnapshot)
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		twin := int(next.Add(1))
		var version uint64
		for pb.Next() {
			if err := update(ctx, twin, version, snap); err != nil {
				b.Error(err)
				return
			}
			version++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "twin-updates/s")
}
