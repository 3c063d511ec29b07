package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/tlsconf"
	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/loadtest/fleet"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
)

// clusterMember is one `legiond run` member process of the fault tests.
type clusterMember struct {
	id, dataDir string
	api         string // API listen address
	args        []string
	p           *proc
	metrics     string
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func (m *clusterMember) start(tb testing.TB, ctx context.Context, tmp, bin, name string) {
	tb.Helper()
	m.p = startProc(tb, ctx, tmp, name, bin, m.args...)
	m.metrics = metricsAddr(m.p.waitLine(tb, "legiond node ready:"))
}

func (m *clusterMember) alive() bool { return m.p != nil && m.p.cmd.ProcessState == nil }

// gauge reads a metric of a live member, -1 when it cannot be read.
func (m *clusterMember) gauge(ctx context.Context, name string) float64 {
	if !m.alive() {
		return -1
	}
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	v, err := scrape(c, m.metrics, name)
	if err != nil {
		return -1
	}
	return v
}

// waitServed waits until the live members serve every partition and
// returns how long that took.
func waitServed(t testing.TB, ctx context.Context, members []*clusterMember, partitions int) time.Duration {
	t.Helper()
	began := time.Now()
	pollUntil(t, ctx, fmt.Sprintf("all %d partitions served", partitions), func() bool {
		total := 0.0
		for _, m := range members {
			total += max(m.gauge(ctx, "legiond_cluster_partitions_owned"), 0)
		}
		return int(total) == partitions
	})
	return time.Since(began)
}

// pollUntil polls cond (metrics or the API of member processes: there is
// no event to await across processes) until it holds or ctx ends.
func pollUntil(tb testing.TB, ctx context.Context, what string, cond func() bool) {
	tb.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			tb.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// clusterLeader returns the member that reports itself the Raft leader.
func clusterLeader(tb testing.TB, ctx context.Context, members []*clusterMember) *clusterMember {
	tb.Helper()
	var leader *clusterMember
	pollUntil(tb, ctx, "a leader", func() bool {
		for _, m := range members {
			if m.gauge(ctx, "legiond_cluster_leader") == 1 {
				leader = m
				return true
			}
		}
		return false
	})
	return leader
}

// testCluster is a broker process, a registry and n member processes
// (not started) sharing a development cluster CA.
type testCluster struct {
	tmp, bin string
	reg      *registry
	brokers  []string
	members  []*clusterMember
}

func newTestCluster(tb testing.TB, ctx context.Context, n, partitions int) *testCluster {
	tb.Helper()
	c := &testCluster{tmp: tb.TempDir()}
	c.bin = filepath.Join(c.tmp, "legiond")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", c.bin, ".").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	c.reg = startRegistry(tb, ctx)
	broker := startProc(tb, ctx, c.tmp, "broker", c.bin, "broker", "--data-dir", filepath.Join(c.tmp, "kafka"),
		"--addr", "127.0.0.1:0", "--partitions", strconv.Itoa(partitions))
	c.brokers = []string{strings.TrimPrefix(broker.waitLine(tb, "legiond broker listening on "), "legiond broker listening on ")}
	tb.Cleanup(func() { broker.stop(tb) })
	if err := streams.EnsureTopics(ctx, streams.ClientConfig{Brokers: c.brokers}, streams.DefaultTopics(partitions, 1), nil); err != nil {
		tb.Fatal(err)
	}
	// A shared development CA: every member's certificate chains to it.
	caDir := filepath.Join(c.tmp, "cluster-ca")
	if _, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: caDir}); err != nil {
		tb.Fatal(err)
	}
	addrs := make([]string, n)
	var peers []string
	for i := range n {
		addrs[i] = freeAddr(tb)
		peers = append(peers, fmt.Sprintf("m%d=%s", i+1, addrs[i]))
	}
	for i := range n {
		id := fmt.Sprintf("m%d", i+1)
		m := &clusterMember{id: id, dataDir: filepath.Join(c.tmp, id), api: freeAddr(tb)}
		m.args = []string{"run", "--data-dir", m.dataDir, "--api-addr", m.api, "--kafka-brokers", c.brokers[0], "--kafka-partitions", strconv.Itoa(partitions),
			"--database-url", c.reg.appDSN, "--master-key-file", c.reg.keyFile, "--storage-master-key-file", c.reg.storageKeyFile,
			"--metrics-addr", "127.0.0.1:0", "--kafka-drain-timeout", "1s", "--log-level", "warn",
			"--node-id", id, "--cluster-addr", addrs[i], "--cluster-peers", strings.Join(peers, ","), "--cluster-ca-dir", caDir,
			"--cluster-fault-injection"}
		if i == 0 {
			m.args = append(m.args, "--cluster-bootstrap")
		}
		c.members = append(c.members, m)
	}
	return c
}

// startAll starts every member and waits until all partitions are served.
func (c *testCluster) startAll(tb testing.TB, ctx context.Context) {
	tb.Helper()
	for _, m := range c.members {
		m.start(tb, ctx, c.tmp, c.bin, m.id+"-0")
	}
}

// TestClusterFaults runs three `legiond run` members on loopback (mutual
// TLS between them, a `legiond broker` process as Kafka, a real
// PostgreSQL registry), feeds them a simulated fleet, and while frames
// flow kills a follower with SIGKILL and restarts it with its disk, then
// kills the Raft leader and restarts it with an empty disk. It proves:
//
//   - after each kill the dead member's partitions are served by the live
//     members within 5 s (the failover time is logged);
//   - every sensor twin's replicated state, on every member, equals that of
//     an uninterrupted run: nothing lost, nothing applied twice;
//   - twin.events holds every expected event id and no sensor event the
//     uninterrupted run does not have; nothing was dead-lettered.
func TestClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	const (
		partitions = 6
		seed       = 20261128
	)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := newTestCluster(t, ctx, 3, partitions)
	tmp, bin, reg, brokers, members := c.tmp, c.bin, c.reg, c.brokers, c.members

	start := time.Now().UTC().Truncate(time.Minute)
	fl, ups := fleetUplinks(t, fleet.Config{Sensors: 60, Gateways: 3, Seed: seed, Start: start}, start.Add(12*time.Hour))
	if err := provisionFleet(ctx, reg.store, fl, "cluster fleet"); err != nil {
		t.Fatal(err)
	}
	c.startAll(t, ctx)
	t.Logf("cluster of 3 formed; all %d partitions served after %v", partitions, waitServed(t, ctx, members, partitions))

	// Frames flow in slices so that each fault hits a cluster under load.
	slice := len(ups) / 4
	produceSlice := func(i int) {
		end := min((i+1)*slice, len(ups))
		if i == 3 {
			end = len(ups)
		}
		produce(t, ctx, brokers, ups[i*slice:end])
	}
	produceSlice(0)
	stats := produceGatewayStats(t, ctx, brokers, fl, start, 12*time.Hour)
	applied := func() float64 {
		total := 0.0
		for _, m := range members {
			if v := m.gauge(ctx, "legiond_frames_applied_total"); v > 0 {
				total += v
			}
		}
		return total
	}
	waitFor := func(what string, cond func() bool) { t.Helper(); pollUntil(t, ctx, what, cond) }
	waitFor("a share of the first slice applied", func() bool { return applied() > float64(slice/3) })

	var failovers []time.Duration
	kill := func(m *clusterMember, why string) {
		t.Helper()
		m.p.kill(t)
		d := waitServed(t, ctx, members, partitions)
		failovers = append(failovers, d)
		t.Logf("SIGKILL %s (%s): its partitions served again after %v", m.id, why, d)
		if d > 5*time.Second {
			t.Errorf("failover of %s took %v, goal 5 s", m.id, d)
		}
	}
	leader := func() *clusterMember { return clusterLeader(t, ctx, members) }

	// 1. A follower dies under load.
	l := leader()
	var follower *clusterMember
	for _, m := range members {
		if m != l {
			follower = m
			break
		}
	}
	produceSlice(1)
	kill(follower, "a follower, under load")

	// 2. It comes back with its disk and catches up through Raft; the
	// leader gives it partitions again.
	follower.start(t, ctx, tmp, bin, follower.id+"-1")
	waitFor(follower.id+" serving again", func() bool { return follower.gauge(ctx, "legiond_cluster_partitions_owned") > 0 })
	t.Logf("%s restarted with its disk and serves again", follower.id)

	// 3. The leader dies under load.
	produceSlice(2)
	l = leader()
	kill(l, "the raft leader, under load")

	// 4. The old leader comes back with an empty disk: it catches up
	// from the new leader's snapshot and log.
	if err := os.RemoveAll(l.dataDir); err != nil {
		t.Fatal(err)
	}
	l.start(t, ctx, tmp, bin, l.id+"-1")
	waitFor(l.id+" serving again", func() bool { return l.gauge(ctx, "legiond_cluster_partitions_owned") > 0 })
	t.Logf("%s restarted with an empty disk, caught up and serves again", l.id)

	// 5. A member is cut off its peers (not from Kafka) under load: it
	// stops serving within its lease, the others take its partitions
	// over; healed, it catches up and serves again.
	cut := members[2]
	if err := cut.p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	isolated := time.Now()
	produceSlice(3)
	var others []*clusterMember
	for _, m := range members {
		if m != cut {
			others = append(others, m)
		}
	}
	d := waitServed(t, ctx, others, partitions)
	failovers = append(failovers, d)
	waitFor(cut.id+" serving nothing", func() bool { return cut.gauge(ctx, "legiond_cluster_partitions_owned") == 0 })
	t.Logf("%s cut off: the others serve its partitions after %v; it stopped serving within %v", cut.id, d, time.Since(isolated).Round(time.Millisecond))
	if d > 5*time.Second {
		t.Errorf("failover of the cut-off %s took %v, goal 5 s", cut.id, d)
	}
	if err := cut.p.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitFor(cut.id+" serving after the heal", func() bool { return cut.gauge(ctx, "legiond_cluster_partitions_owned") > 0 })

	// Drain: on every member, the replicated offsets reach the end of
	// every input partition (at least: the members themselves append to
	// lorawan.gateway.seen, again when a frame is redelivered).
	for _, topic := range []string{streams.TopicUplink, streams.TopicGatewayStats, streams.TopicGatewaySeen} {
		ends, err := endOffsets(ctx, brokers, topic, partitions)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			waitFor(m.id+" replicated "+topic, func() bool {
				got, err := scrapeLabeled(ctx, m.metrics, "legiond_cluster_replicated_offset", "topic", topic)
				if err != nil {
					return false
				}
				for p, end := range ends {
					if end > 0 && got[strconv.Itoa(p)] < float64(end) {
						return false
					}
				}
				return true
			})
		}
	}
	// The restarted empty member has caught up once its assignment epoch
	// equals the others'.
	waitFor("every member on the same assignment", func() bool {
		var epochs []float64
		for _, m := range members {
			epochs = append(epochs, m.gauge(ctx, "legiond_cluster_assignment_epoch"))
		}
		return !slices.Contains(epochs, -1) && slices.Min(epochs) == slices.Max(epochs)
	})
	// `legiond cluster status` through a member's API: three live members,
	// a leader, every partition owned.
	asker := members[1]
	code, token, stderr := runCLI(t, "", "token", "issue", "--role", "platform_admin", "--issuer", "https://"+asker.api, "--data-dir", asker.dataDir)
	if code != 0 {
		t.Fatalf("token issue: %d %s", code, stderr)
	}
	code, status, stderr := runCLI(t, "", "cluster", "status", "--api", "https://"+asker.api, "--token", strings.TrimSpace(token),
		"--ca", filepath.Join(asker.dataDir, "tls", tlsconf.CAFileName))
	if code != 0 {
		t.Fatalf("cluster status: %d %s", code, stderr)
	}
	t.Logf("legiond cluster status:\n%s", status)
	if !strings.Contains(status, "consensus true") || strings.Count(status, " true ") < 3 {
		t.Errorf("cluster status does not show three live members and consensus:\n%s", status)
	}
	ackedDev, ackIn := ackThroughAnotherMember(t, ctx, asker, strings.TrimSpace(token), fl, start)
	for _, m := range members {
		m.p.stop(t)
	}
	slices.Sort(failovers)
	t.Logf("%d uplinks, %d gateway reports; failovers %v", len(ups), stats, failovers)

	// (a) Every member's replicated state equals the uninterrupted run.
	cache, stopCache := runCache(t, ctx, reg.store)
	defer stopCache()
	frames := make([]*lorawanv1.UplinkFrame, len(ups))
	for i := range ups {
		frames[i] = uplinkFrame(&ups[i])
	}
	ref := referenceSensors(t, cache, frames)
	// The operator's acknowledgement belongs to the uninterrupted run too.
	for _, e := range ref[ackedDev].state.Apply(ackIn, nil) {
		ref[ackedDev].events = append(ref[ackedDev].events, e.ID.String())
	}
	for _, m := range members {
		got := storedSensors(t, m.dataDir, reg.storageKeyFile)
		if len(got) != len(ref) || len(ref) != len(fl.Sensors()) {
			t.Fatalf("%s: %d sensor twins stored, %d in the reference, want %d", m.id, len(got), len(ref), len(fl.Sensors()))
		}
		for eui, want := range ref {
			if g := got[eui]; g != want.state {
				t.Errorf("%s: sensor %s: state differs from the uninterrupted run", m.id, eui)
			}
		}
	}

	// (a') Nothing of it in plaintext on any member's disk: twin store,
	// Raft log and Raft snapshots are encrypted at rest.
	var needles []string
	tenants := map[string]bool{}
	for _, s := range fl.Sensors() {
		needles = append(needles, string(s.DevEUI[:])) // raw, as in the keys
		if c, ok := cache.Device(postgres.EUI64(s.DevEUI)); ok {
			tenants[c.CustomerID.String()] = true
		}
	}
	needles = append(needles, sortedKeys(tenants)...)
	for _, r := range ref {
		needles = append(needles, r.events[:min(len(r.events), 3)]...)
	}
	for _, m := range members {
		if found := scanFor(t, storageDir(m.dataDir), needles); len(found) > 0 {
			t.Errorf("%s: plaintext at rest: %v", m.id, found[:min(len(found), 5)])
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
	unexpected := 0
	for _, msg := range readAll(t, ctx, brokers, streams.TopicTwinEvents, partitions) {
		eui, err := devicetwin.ParseEUI(string(msg.Key))
		if err != nil {
			t.Fatalf("twin.events key %q: %v", msg.Key, err)
		}
		if _, sensor := ref[eui]; !sensor {
			continue
		}
		id := header(msg, streams.HeaderEventID)
		seen[id]++
		if !expected[id] {
			if unexpected++; unexpected <= 10 {
				var ev twinv1.TwinEvent
				_ = proto.Unmarshal(msg.Value, &ev)
				t.Errorf("unexpected event %s on twin.events: %v", id, prototext.Format(&ev))
			}
		}
	}
	if unexpected > 10 {
		t.Errorf("%d unexpected events in all", unexpected)
	}
	for id := range expected {
		if seen[id] == 0 {
			t.Errorf("event %s missing from twin.events", id)
		}
	}
	t.Logf("%d expected sensor events all present", len(expected))

	// (c) Nothing was dead-lettered.
	dlq, err := endOffsets(ctx, brokers, streams.TopicUplinkDLQ, partitions)
	if err != nil {
		t.Fatal(err)
	}
	for p, off := range dlq {
		if off != 0 {
			t.Errorf("dead-letter partition %d holds %d records", p, off)
		}
	}
}

// scrapeLabeled reads every sample of a metric whose label is value,
// keyed by its "partition" label.
func scrapeLabeled(ctx context.Context, addr, name, label, value string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	want := label + "=\"" + value + "\""
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, want) {
			continue
		}
		_, rest, _ := strings.Cut(line, `partition="`)
		part, _, _ := strings.Cut(rest, `"`)
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return nil, err
		}
		out[part] = v
	}
	return out, nil
}

// ackThroughAnotherMember acknowledges an open alarm through the API of a
// member that does not serve the device: the member forwards it to the one
// that does, and the replicated twin shows it acknowledged.
//
// It also reads the device's readings through that member: every member's
// recent-event window holds every device's events.
func ackThroughAnotherMember(t *testing.T, ctx context.Context, asker *clusterMember, token string, fl *fleet.Fleet, start time.Time) (devicetwin.EUI64, devicetwin.Input) {
	t.Helper()
	tlsCfg, err := tlsconf.ClientConfig(filepath.Join(asker.dataDir, "tls", tlsconf.CAFileName))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	url := "https://" + asker.api
	auth := func(r connect.AnyRequest) { r.Header().Set("Authorization", "Bearer "+token) }
	st := connect.NewRequest(&apiv1.GetClusterStatusRequest{})
	auth(st)
	status, err := apiv1connect.NewClusterServiceClient(hc, url).GetClusterStatus(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	mine := map[uint32]bool{}
	for _, m := range status.Msg.GetMembers() {
		if m.GetId() == asker.id {
			for _, p := range m.GetPartitions() {
				mine[p] = true
			}
		}
	}
	twins := apiv1connect.NewTwinServiceClient(hc, url)
	var target *apiv1.Alarm
	for _, s := range fl.Sensors() {
		var b kafka.Murmur2Balancer
		p := b.Balance(kafka.Message{Key: []byte(hex.EncodeToString(s.DevAddr[:]))}, 0, 1, 2, 3, 4, 5)
		if mine[uint32(p)] {
			continue
		}
		req := connect.NewRequest(&apiv1.GetTwinRequest{DevEui: hex.EncodeToString(s.DevEUI[:])})
		auth(req)
		resp, err := twins.GetTwin(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.Msg.GetTwin().GetActiveAlarms() {
			if a.GetStatus() == twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK {
				target = a
			}
		}
		if target != nil {
			break
		}
	}
	if target == nil {
		t.Fatal("no open alarm on a device served by another member")
	}
	telemetry := apiv1connect.NewTelemetryServiceClient(hc, url)
	pollUntil(t, ctx, "readings of "+target.GetDevEui()+" on "+asker.id, func() bool {
		req := connect.NewRequest(&apiv1.ListReadingsRequest{DevEui: target.GetDevEui(), PageSize: 10,
			Period: &apiv1.Period{Start: timestamppb.New(start), End: timestamppb.New(start.Add(13 * time.Hour))}})
		auth(req)
		resp, err := telemetry.ListReadings(ctx, req)
		return err == nil && len(resp.Msg.GetReadings()) > 0
	})
	ack := connect.NewRequest(&apiv1.AcknowledgeAlarmRequest{AlarmId: target.GetAlarmId(), Note: "forwarded"})
	auth(ack)
	resp, err := apiv1connect.NewAlarmServiceClient(hc, url).AcknowledgeAlarm(ctx, ack)
	if err != nil {
		t.Fatalf("acknowledge %s through %s: %v", target.GetAlarmId(), asker.id, err)
	}
	got := resp.Msg.GetAlarm()
	if got.GetStatus() != twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_ACK {
		t.Fatalf("acknowledged alarm: %v", got)
	}
	t.Logf("alarm %s acknowledged through %s, which does not serve the device", target.GetAlarmId(), asker.id)
	dev, err := devicetwin.ParseEUI(got.GetDevEui())
	if err != nil {
		t.Fatal(err)
	}
	return dev, devicetwin.AlarmAck{Type: devicetwin.AlarmType(got.GetType()), By: got.GetAcknowledgedBy(),
		At: got.GetUpdatedAt().AsTime(), Note: got.GetNote()}
}
