package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/loadtest/fleet"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
)

// TestSIGKILLNoLossNoDuplicateApply runs `legiond run` as a separate
// process against `legiond broker` (another process, so Kafka survives),
// feeds it a simulated fleet, kills it with SIGKILL at seeded random
// moments, restarts it, lets it drain, and proves that
//
//   - every sensor twin's final state equals that of an uninterrupted run
//     (the same frames applied in-process with the core alone): nothing
//     lost, nothing applied twice;
//   - twin.events holds every expected event id (duplicates allowed) and
//     no sensor event the uninterrupted run does not have;
//   - no frame was dead-lettered.
func TestSIGKILLNoLossNoDuplicateApply(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	const (
		kills      = 6
		partitions = 4
		seed       = 20261127
	)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "legiond")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	reg := startRegistry(t, ctx)

	broker := startProc(t, ctx, tmp, "broker", bin, "broker", "--data-dir", filepath.Join(tmp, "kafka"),
		"--addr", "127.0.0.1:0", "--partitions", strconv.Itoa(partitions), "--group-min-session-timeout", "1s")
	brokers := []string{strings.TrimPrefix(broker.waitLine(t, "legiond broker listening on "), "legiond broker listening on ")}
	defer broker.stop(t)

	// The fleet's simulated time starts now, so no time rule comes due
	// during the test: the node's ticks (wall clock) add nothing that an
	// uninterrupted run would not have.
	start := time.Now().UTC().Truncate(time.Minute)
	fl, ups := fleetUplinks(t, fleet.Config{Sensors: 60, Gateways: 3, Seed: seed, Start: start}, start.Add(12*time.Hour))
	if err := provisionFleet(ctx, reg.store, fl, "SIGKILL fleet"); err != nil {
		t.Fatal(err)
	}
	if err := streams.EnsureTopics(ctx, streams.ClientConfig{Brokers: brokers}, streams.DefaultTopics(partitions, 1), nil); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, brokers, ups)
	stats := produceGatewayStats(t, ctx, brokers, fl, start, 12*time.Hour)
	t.Logf("%d uplink records (%d sensors, 3 gateways, 12 simulated hours), %d gateway reports", len(ups), len(fl.Sensors()), stats)

	dataDir := filepath.Join(tmp, "node")
	nodeArgs := []string{"run", "--data-dir", dataDir, "--kafka-brokers", brokers[0], "--kafka-partitions", strconv.Itoa(partitions),
		"--database-url", reg.appDSN, "--master-key-file", reg.keyFile, "--storage-master-key-file", reg.storageKeyFile, "--metrics-addr", "127.0.0.1:0",
		"--kafka-session-timeout", "1500ms", "--kafka-heartbeat-interval", "300ms", "--kafka-rebalance-timeout", "3s",
		"--kafka-drain-timeout", "1s", "--log-level", "warn"}
	rng := rand.New(rand.NewPCG(seed, 1))
	began := time.Now()
	for i := range kills {
		p := startProc(t, ctx, tmp, fmt.Sprintf("node-%d", i), bin, nodeArgs...)
		metrics := metricsAddr(p.waitLine(t, "legiond node ready:"))
		// Kill once this run applied a random share of the frames: the
		// moment falls anywhere in publish → persist → commit.
		target := float64(len(ups)/24 + rng.IntN(len(ups)/10))
		applied := waitMetric(t, ctx, metrics, "legiond_frames_applied_total", target)
		p.kill(t)
		t.Logf("run %d: SIGKILL after %.0f frames applied in this run (%v since start)", i, applied, time.Since(began).Round(time.Millisecond))
	}

	// The last run drains everything and stops gracefully.
	p := startProc(t, ctx, tmp, "node-final", bin, nodeArgs...)
	p.waitLine(t, "legiond node ready:")
	for _, topic := range []string{streams.TopicUplink, streams.TopicGatewayStats} {
		waitCommitted(t, ctx, brokers, topic, partitions)
	}
	p.stop(t)
	t.Logf("drained and stopped %v after the first start", time.Since(began).Round(time.Millisecond))

	// (a) Final states equal the uninterrupted reference.
	cache, stopCache := runCache(t, ctx, reg.store)
	defer stopCache()
	frames := make([]*lorawanv1.UplinkFrame, len(ups))
	for i := range ups {
		frames[i] = uplinkFrame(&ups[i])
	}
	ref := referenceSensors(t, cache, frames)
	got := storedSensors(t, dataDir, reg.storageKeyFile)
	if len(got) != len(ref) || len(ref) != len(fl.Sensors()) {
		t.Fatalf("%d sensor twins stored, %d in the reference, want %d", len(got), len(ref), len(fl.Sensors()))
	}
	for eui, want := range ref {
		if g := got[eui]; g != want.state {
			gs, _ := g.MarshalSnapshot()
			ws, _ := want.state.MarshalSnapshot()
			t.Errorf("sensor %s: state differs from the uninterrupted run\n got %x\nwant %x", eui, gs, ws)
		}
	}

	// (b) twin.events ⊇ expected ids, and no unexpected sensor event.
	expected := map[string]bool{}
	for _, r := range ref {
		for _, id := range r.events {
			expected[id] = true
		}
	}
	seen := map[string]int{}
	for _, m := range readAll(t, ctx, brokers, streams.TopicTwinEvents, partitions) {
		eui, err := devicetwin.ParseEUI(string(m.Key))
		if err != nil {
			t.Fatalf("twin.events key %q: %v", m.Key, err)
		}
		if _, sensor := ref[eui]; !sensor {
			continue // gateway events depend on the interleaving of partitions
		}
		id := header(m, streams.HeaderEventID)
		seen[id]++
		if !expected[id] {
			t.Errorf("unexpected event %s on twin.events", id)
		}
	}
	dups := 0
	for id := range expected {
		switch n := seen[id]; {
		case n == 0:
			t.Errorf("event %s missing from twin.events", id)
		case n > 1:
			dups += n - 1
		}
	}
	t.Logf("%d expected sensor events all present; %d duplicates from replays after kills", len(expected), dups)

	// (c) Nothing was dead-lettered.
	if dlq, err := endOffsets(ctx, brokers, streams.TopicUplinkDLQ, partitions); err != nil {
		t.Fatal(err)
	} else {
		for p, end := range dlq {
			if end != 0 {
				t.Errorf("partition %d of the dead-letter topic holds %d records", p, end)
			}
		}
	}
}

// produceGatewayStats writes one report per gateway every 5 simulated
// minutes.
func produceGatewayStats(tb testing.TB, ctx context.Context, brokers []string, fl *fleet.Fleet, start time.Time, d time.Duration) int {
	tb.Helper()
	p, err := streams.NewUplinkProducer(streams.ProducerConfig{Client: streams.ClientConfig{Brokers: brokers}, BatchTimeout: time.Millisecond}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close()
	var out []*lorawanv1.GatewayStats
	for at := start.Add(5 * time.Minute); !at.After(start.Add(d)); at = at.Add(5 * time.Minute) {
		for _, g := range fl.Gateways() {
			out = append(out, &lorawanv1.GatewayStats{GatewayEui: append([]byte(nil), g.EUI[:]...), Time: timestamppb.New(at), RxPacketsReceived: 10})
		}
	}
	if err := p.SendGatewayStats(ctx, out...); err != nil {
		tb.Fatal(err)
	}
	return len(out)
}

// runCache starts a registry cache and waits for its first load.
func runCache(tb testing.TB, ctx context.Context, st *postgres.Store) (*postgres.Cache, func()) {
	tb.Helper()
	c, err := postgres.NewCache(postgres.CacheConfig{Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(cctx) }()
	select {
	case <-c.Ready():
	case <-ctx.Done():
		tb.Fatal("registry cache not ready")
	}
	return c, func() { cancel(); <-done }
}

// waitCommitted waits until the node's group committed every record of
// topic.
func waitCommitted(tb testing.TB, ctx context.Context, brokers []string, topic string, partitions int) {
	tb.Helper()
	ends, err := endOffsets(ctx, brokers, topic, partitions)
	if err != nil {
		tb.Fatal(err)
	}
	for {
		got, err := committedOffsets(ctx, brokers, streams.DefaultGroupID, topic, partitions)
		done := err == nil
		for p := range ends {
			done = done && (got[p] == ends[p] || (ends[p] == 0 && got[p] < 0))
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%s: committed %v, end offsets %v (%v)", topic, got, ends, err)
		case <-time.After(50 * time.Millisecond): // polling the broker
		}
	}
}

// metricsAddr extracts the metrics address from the node's ready line.
func metricsAddr(ready string) string {
	for _, f := range strings.Fields(ready) {
		if v, ok := strings.CutPrefix(f, "metrics="); ok {
			return v
		}
	}
	return ""
}

// waitMetric polls a node's /metrics until name reaches at least min.
func waitMetric(tb testing.TB, ctx context.Context, addr, name string, min float64) float64 {
	tb.Helper()
	for {
		if v, err := scrape(ctx, addr, name); err == nil && v >= min {
			return v
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%s never reached %.0f", name, min)
		case <-time.After(2 * time.Millisecond): // polling the node
		}
	}
}

func scrape(ctx context.Context, addr, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s not exported", name)
}

// proc is a legiond subprocess; its stdout lines arrive on lines, its
// stderr goes to a log file kept with the test's temporary files.
type proc struct {
	name  string
	cmd   *exec.Cmd
	lines chan string
	log   string
}

func startProc(tb testing.TB, ctx context.Context, dir, name, bin string, args ...string) *proc {
	tb.Helper()
	p := &proc{name: name, lines: make(chan string, 16), log: filepath.Join(dir, name+".log")}
	logf, err := os.Create(p.log)
	if err != nil {
		tb.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = logf
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	_ = logf.Close()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, out)
		close(p.lines)
	}()
	tb.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	_ = ctx
	return p
}

func (p *proc) waitLine(tb testing.TB, prefix string) string {
	tb.Helper()
	timeout := time.After(90 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				tb.Fatalf("%s exited before printing %q; its log:\n%s", p.name, prefix, tail(p.log))
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			tb.Fatalf("%s did not print %q; its log:\n%s", p.name, prefix, tail(p.log))
		}
	}
}

func (p *proc) kill(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	_ = p.cmd.Wait()
}

func (p *proc) stop(tb testing.TB) {
	tb.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Fatalf("%s: %v; its log:\n%s", p.name, err, tail(p.log))
		}
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		tb.Fatalf("%s did not stop; its log:\n%s", p.name, tail(p.log))
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
