package main

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/loadtest/fleet"
	"github.com/legionelladossier/legiond/streams"
)

// BenchmarkClusterFailover kills a member of a loaded three-member cluster
// with SIGKILL over and over (alternately the Raft leader and a follower),
// measuring the time until its partitions are served again, and restarts
// it with its disk. It reports the p50, p99 and max failover in ms.
//
//	LEGIOND_FAILOVER_CYCLES=20 go test ./cmd/legiond -run '^$' -bench ClusterFailover -benchtime 1x
func BenchmarkClusterFailover(b *testing.B) {
	cycles := 10
	if v, err := strconv.Atoi(os.Getenv("LEGIOND_FAILOVER_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	const partitions = 6
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c := newTestCluster(b, ctx, 3, partitions)
	start := time.Now().UTC().Truncate(time.Minute)
	fl, ups := fleetUplinks(b, fleet.Config{Sensors: 100, Gateways: 3, Seed: 7, Start: start}, start.Add(24*time.Hour))
	if err := provisionFleet(ctx, c.reg.store, fl, "failover fleet"); err != nil {
		b.Fatal(err)
	}
	c.startAll(b, ctx)
	waitBalanced(b, ctx, c.members, partitions)
	var times []time.Duration
	slice := len(ups) / (cycles + 1)
	for i := 0; i < b.N; i++ {
		for k := range cycles {
			produce(b, ctx, c.brokers, ups[k*slice:(k+1)*slice]) // load during the kill
			victim := clusterLeader(b, ctx, c.members)
			if k%2 == 1 {
				victim = c.members[(slices.Index(c.members, victim)+1)%len(c.members)]
			}
			victim.p.kill(b)
			times = append(times, waitServed(b, ctx, c.members, partitions))
			victim.start(b, ctx, c.tmp, c.bin, victim.id+"-"+strconv.Itoa(k+1))
			waitBalanced(b, ctx, c.members, partitions)
		}
	}
	slices.Sort(times)
	q := func(p float64) float64 {
		return float64(times[min(len(times)-1, int(p*float64(len(times))))].Milliseconds())
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
	b.Logf("%d failovers: %v", len(times), times)
}

// waitBalanced waits until every member serves its even share.
func waitBalanced(tb testing.TB, ctx context.Context, members []*clusterMember, partitions int) {
	tb.Helper()
	pollUntil(tb, ctx, "balanced partitions", func() bool {
		for _, m := range members {
			if m.gauge(ctx, "legiond_cluster_partitions_owned") != float64(partitions/len(members)) {
				return false
			}
		}
		return true
	})
}

// BenchmarkClusterThroughput drains the same backlog (300 sensors, 24
// simulated hours, 1–3 gateway copies per frame) with a one-member and a
// three-member cluster on this machine and reports uplink records/s.
//
//	go test ./cmd/legiond -run '^$' -bench ClusterThroughput -benchtime 1x
func BenchmarkClusterThroughput(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(strconv.Itoa(n)+"-members", func(b *testing.B) {
			const partitions = 6
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			c := newTestCluster(b, ctx, n, partitions)
			start := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Minute)
			fl, ups := fleetUplinks(b, fleet.Config{Sensors: 300, Gateways: 3, Seed: 11, Start: start}, start.Add(24*time.Hour))
			if err := provisionFleet(ctx, c.reg.store, fl, "throughput fleet"); err != nil {
				b.Fatal(err)
			}
			produce(b, ctx, c.brokers, ups)
			ends, err := endOffsets(ctx, c.brokers, streams.TopicUplink, partitions)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			began := time.Now()
			c.startAll(b, ctx)
			// Every member replicates the same offsets: the first one tells.
			pollUntil(b, ctx, "the backlog drained", func() bool {
				got, err := scrapeLabeled(ctx, c.members[0].metrics, "legiond_cluster_replicated_offset", "topic", streams.TopicUplink)
				done := err == nil
				for p, end := range ends {
					done = done && (end == 0 || got[strconv.Itoa(p)] >= float64(end))
				}
				return done
			})
			d := time.Since(began)
			b.StopTimer()
			b.ReportMetric(float64(len(ups))/d.Seconds(), "records/s")
			b.Logf("%d members drained %d uplink records in %v (start included)", n, len(ups), d.Round(time.Millisecond))
			for _, m := range c.members {
				m.p.stop(b)
			}
		})
	}
}
