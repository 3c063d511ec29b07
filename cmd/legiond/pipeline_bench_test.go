package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/actors"
	"github.com/legionelladossier/legiond/loadtest/fleet"
	"github.com/legionelladossier/legiond/streams"
)

// BenchmarkPipeline measures sustained frames per second through a whole
// node with durability on: Kafka in, decode, route, twin apply, batched
// publish to twin.events (acks=all), group-committed Pebble state (WAL
// fsync) with the recent-event window, offset commits. Kafka is `legiond
// broker` in its own process on the same two cores (persisted, fsync per
// produce request), as in the SIGKILL test; PostgreSQL is a private
// server. The fleet's frames are produced before the node starts; the
// clock runs from the node's start until every record is committed.
//
//	go test ./cmd/legiond -run '^$' -bench BenchmarkPipeline -benchtime 1x
//
// PIPELINE_SENSORS and PIPELINE_HOURS size the load (default 4000 sensors
// × 9 simulated hours ≈ 380,000 records); PIPELINE_NO_RECENT=1 turns the
// recent-event window off; PIPELINE_CPUPROFILE=FILE profiles the timed part.
// It reports frames/s until every offset is committed (commits run every
// 200 ms), durable-frames/s until every record's effects are durable, the
// cores used by node and broker together, and frames per CPU-second.
func BenchmarkPipeline(b *testing.B) {
	sensors := envInt("PIPELINE_SENSORS", 4000)
	hours := envInt("PIPELINE_HOURS", 9)
	const partitions = 4
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir := b.TempDir()
	bin := filepath.Join(dir, "legiond")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	reg := startRegistry(b, ctx)
	broker := startProc(b, ctx, dir, "broker", bin, "broker", "--data-dir", filepath.Join(dir, "kafka"),
		"--addr", "127.0.0.1:0", "--partitions", strconv.Itoa(partitions))
	defer broker.stop(b)
	client := streams.ClientConfig{Brokers: []string{strings.TrimPrefix(broker.waitLine(b, "legiond broker listening on "), "legiond broker listening on ")}}
	if err := streams.EnsureTopics(ctx, client, streams.DefaultTopics(partitions, 1), nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now().UTC().Truncate(time.Minute)
	fl, ups := fleetUplinks(b, fleet.Config{Sensors: sensors, Gateways: 3, Seed: 5, Start: start}, start.Add(time.Duration(hours)*time.Hour))
	if err := provisionFleet(ctx, reg.store, fl, "Benchmark fleet"); err != nil {
		b.Fatal(err)
	}
	produce(b, ctx, client.Brokers, ups)
	total := uint64(len(ups))
	runtime.GC() // the produced frames are garbage from here on
	b.ResetTimer()
	for i := range b.N {
		began := time.Now()
		n, err := startNode(ctx, nodeConfig{
			DataDir: filepath.Join(dir, "node"+strconv.Itoa(i)), Kafka: client, Partitions: partitions,
			Consumer:    streams.ConsumerConfig{GroupID: fmt.Sprintf("bench-%d", i)},
			Actors:      actors.Config{NoRecentEvents: os.Getenv("PIPELINE_NO_RECENT") != ""},
			DatabaseURL: reg.appDSN, MasterKeyFile: reg.keyFile, StorageMasterKeyFile: reg.storageKeyFile,
		})
		if err != nil {
			b.Fatal(err)
		}
		ready := time.Now()
		cpu0, bcpu0 := cpuTime(), procCPU(broker.cmd.Process.Pid)
		if f := os.Getenv("PIPELINE_CPUPROFILE"); f != "" {
			if pf, err := os.Create(f); err == nil {
				_ = pprof.StartCPUProfile(pf)
				defer pf.Close()
			}
		}
		var durable time.Duration
		for n.smetrics.CommittedRecords.Load() < total {
			if durable == 0 && n.smetrics.Handled.Load()+n.smetrics.DeadLetteredTotal() >= total {
				durable = time.Since(ready)
			}
			select {
			case <-ctx.Done():
				b.Fatalf("committed %d of %d", n.smetrics.CommittedRecords.Load(), total)
			case <-time.After(2 * time.Millisecond): // polling the consumer's counters
			}
		}
		elapsed := time.Since(ready)
		if durable == 0 {
			durable = elapsed
		}
		pprof.StopCPUProfile()
		cpu := (cpuTime() - cpu0) + (procCPU(broker.cmd.Process.Pid) - bcpu0)
		st := n.system.Stats()
		b.StopTimer()
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
		if st.Rejected != 0 || st.Retried != 0 {
			b.Fatalf("%d rejected, %d retried: the benchmark fleet must be clean", st.Rejected, st.Retried)
		}
		b.ReportMetric(float64(total)/elapsed.Seconds(), "frames/s")
		b.ReportMetric(float64(total)/durable.Seconds(), "durable-frames/s")
		b.ReportMetric(float64(total), "frames")
		b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
		b.ReportMetric(float64(total)/cpu.Seconds(), "frames/cpu-s")
		b.ReportMetric(ready.Sub(began).Seconds(), "startup-s")
		b.StartTimer()
	}
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is another process's user and system CPU time (Linux /proc).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)   // field 14: utime
	st, _ := strconv.ParseInt(fields[12], 10, 64)   // field 15: stime
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
