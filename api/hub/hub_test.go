package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/streams"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

const testPartitions = 4

func testLogger() *slog.Logger {
	if os.Getenv("HUB_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// kafkaEnv is an in-memory broker with twin.events and a producer.
type kafkaEnv struct {
	cc   streams.ClientConfig
	prod *streams.EventProducer
}

func startKafka(t testing.TB) *kafkaEnv {
	t.Helper()
	b, err := devbroker.Start(t.Context(), devbroker.Config{Partitions: testPartitions}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cc := streams.ClientConfig{Brokers: b.Addrs()}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := streams.EnsureTopics(ctx, cc, streams.DefaultTopics(testPartitions, 1), testLogger()); err != nil {
		t.Fatal(err)
	}
	prod, err := streams.NewEventProducer(streams.ProducerConfig{Client: cc, BatchTimeout: time.Millisecond}, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	return &kafkaEnv{cc: cc, prod: prod}
}

// startHub runs a hub until the test ends and waits until it is ready.
func startHub(t testing.TB, k *kafkaEnv, mod func(*Config)) *Hub {
	t.Helper()
	cfg := Config{Client: k.cc, Heartbeat: time.Hour, Logger: testLogger(), RetryBackoff: 50 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub run: %v", err)
		}
	})
	select {
	case <-h.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("hub not ready")
	}
	return h
}

// tenant names one customer's ids.
type tenant struct{ partner, customer, site string }

var (
	tenantA = tenant{"p1", "cust-a", "site-a"}
	tenantB = tenant{"p1", "cust-b", "site-b"}
	tenantC = tenant{"p2", "cust-c", "site-c"}
)

// event builds a reading of tenant t on device dev (0..15) numbered i.
func event(t tenant, dev, i int) *twinv1.TwinEvent {
	pipe := float64(i)
	return &twinv1.TwinEvent{
		EventId:    fmt.Sprintf("%s-%d-%d", t.customer, dev, i),
		PartnerId:  t.partner,
		CustomerId: t.customer,
		SiteId:     t.site,
		DeviceEui:  fmt.Sprintf("70b3d5%02x%08x", []byte(t.customer)[len(t.customer)-1], dev),
		EventTime:  timestamppb.Now(),
		FCnt:       uint32(i),
		Payload:    &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &pipe}},
	}
}

func alarmEvent(t tenant, dev, i int, sev twinv1.Severity) *twinv1.TwinEvent {
	ev := event(t, dev, i)
	ev.EventId += "-alarm"
	ev.Payload = &twinv1.TwinEvent_Alarm{Alarm: &twinv1.AlarmTransition{
		AlarmId: ev.DeviceEui + "-HOTSPOT-1", Type: twinv1.AlarmType_ALARM_TYPE_HOTSPOT, Severity: sev,
		ToStatus: twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK,
	}}
	return ev
}

func (k *kafkaEnv) publish(t testing.TB, evs ...*twinv1.TwinEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := k.prod.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
}

// batch returns n events of t spread over 8 devices, numbered from.
func batch(t tenant, from, n int) []*twinv1.TwinEvent {
	out := make([]*twinv1.TwinEvent, 0, n)
	for i := from; i < from+n; i++ {
		out = append(out, event(t, i%8, i))
	}
	return out
}

// receiver collects a subscription's events.
type receiver struct {
	sub    *Subscription
	events []*twinv1.TwinEvent
	token  string
}

// next returns the next event, skipping heartbeats (but keeping their
// tokens); it fails the test after timeout.
func (r *receiver) next(t testing.TB, timeout time.Duration) *twinv1.TwinEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for {
		m, err := r.sub.Next(ctx)
		if err != nil {
			t.Fatalf("next after %d events: %v", len(r.events), err)
		}
		r.token = m.Token
		if !m.Heartbeat() {
			r.events = append(r.events, m.Event)
			return m.Event
		}
	}
}

func (r *receiver) take(t testing.TB, n int) {
	t.Helper()
	for range n {
		r.next(t, 20*time.Second)
	}
}

// expectQuiet asserts that no event arrives before a heartbeat does.
func (r *receiver) expectQuiet(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	m, err := r.sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Heartbeat() {
		t.Fatalf("unexpected event %s", m.Event.GetEventId())
	}
	r.token = m.Token
}

func subscribe(t testing.TB, h *Hub, f Filter, token string) *receiver {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := h.Subscribe(ctx, f, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	r := &receiver{sub: s}
	// The first message is the hello heartbeat: once it is out, the
	// subscription is registered on every partition.
	m, err := s.Next(ctx)
	if err != nil || !m.Heartbeat() {
		t.Fatalf("hello: %v %v", m, err)
	}
	r.token = m.Token
	return r
}

// checkExactlyOnce asserts that got holds exactly want's ids, each once,
// and that events of each device keep their produced order (a device's
// events share a partition).
func checkExactlyOnce(t testing.TB, got, want []*twinv1.TwinEvent) {
	t.Helper()
	seen := map[string]int{}
	for _, e := range got {
		seen[e.GetEventId()]++
	}
	for _, e := range want {
		if seen[e.GetEventId()] != 1 {
			t.Errorf("event %s received %d times", e.GetEventId(), seen[e.GetEventId()])
		}
		delete(seen, e.GetEventId())
	}
	for id, n := range seen {
		t.Errorf("unexpected event %s (%d times)", id, n)
	}
	last := map[string]uint32{}
	for _, e := range got {
		if prev, ok := last[e.GetDeviceEui()]; ok && e.GetFCnt() <= prev {
			t.Errorf("device %s: event %d after %d", e.GetDeviceEui(), e.GetFCnt(), prev)
		}
		last[e.GetDeviceEui()] = e.GetFCnt()
	}
}

func TestTokenRoundTrip(t *testing.T) {
	for _, pos := range [][]int64{{}, {0}, {0, 1, 2, 3}, {1 << 40, 7, 0, 123456789}} {
		got, err := DecodeToken(EncodeToken(pos))
		if err != nil || !slices.Equal(got, pos) {
			t.Errorf("%v: got %v, %v", pos, got, err)
		}
	}
	good := EncodeToken([]int64{5, 6})
	for _, bad := range []string{"", "!!", "AAAA", good[:len(good)-1], good + "A", "x" + good[1:]} {
		if _, err := DecodeToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzDecodeToken(f *testing.F) {
	f.Add(EncodeToken([]int64{1, 2, 3}))
	f.Add("")
	f.Add("AQQAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		pos, err := DecodeToken(s)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("error not ErrBadToken: %v", err)
			}
			return
		}
		again, err := DecodeToken(EncodeToken(pos))
		if err != nil || !slices.Equal(again, pos) {
			t.Fatalf("re-encoding %v: %v %v", pos, again, err)
		}
	})
}

func TestRing(t *testing.T) {
	r := newRing(3000)
	base := time.Unix(1000, 0)
	for i := range 5000 {
		r.push(entry{off: int64(10 + i), at: base.Add(time.Duration(i) * time.Second)}, 3000)
	}
	if first, _ := r.first(); first != 2010 || r.n != 3000 {
		t.Fatalf("first %d n %d", first, r.n)
	}
	got := r.copyRange(nil, 2500, 2505, 100)
	if len(got) != 5 || got[0].off != 2500 || got[4].off != 2504 {
		t.Fatalf("copyRange: %v", got)
	}
	if got := r.copyRange(nil, 0, 1<<40, 7); len(got) != 7 || got[0].off != 2010 {
		t.Fatalf("limit: %d", len(got))
	}
	r.evictOlder(base.Add(4990 * time.Second))
	if first, _ := r.first(); first != 5000 || r.n != 10 {
		t.Fatalf("after age eviction: first %d n %d", first, r.n)
	}
}

func TestFilter(t *testing.T) {
	a := event(tenantA, 1, 1)
	crit := alarmEvent(tenantA, 1, 2, twinv1.Severity_SEVERITY_CRITICAL)
	minor := alarmEvent(tenantA, 1, 3, twinv1.Severity_SEVERITY_MINOR)
	cases := []struct {
		name string
		f    Filter
		ev   *twinv1.TwinEvent
		want bool
	}{
		{"customer", Filter{Customers: []string{"cust-a"}}, a, true},
		{"other customer", Filter{Customers: []string{"cust-b"}}, a, false},
		{"partner", Filter{Partners: []string{"p1"}}, a, true},
		{"other partner", Filter{Partners: []string{"p2"}}, a, false},
		{"all", Filter{AllTenants: true}, a, true},
		{"site restricted in", Filter{Customers: []string{"cust-a"}, Sites: []string{"site-a"}}, a, true},
		{"site restricted out", Filter{Customers: []string{"cust-a"}, Sites: []string{"site-x"}}, a, false},
		{"site narrowing", Filter{AllTenants: true, SiteID: "site-b"}, a, false},
		{"device narrowing", Filter{AllTenants: true, DevEUI: a.DeviceEui}, a, true},
		{"device narrowing upper", Filter{AllTenants: true, DevEUI: "70B3D561" + a.DeviceEui[8:]}, a, true},
		{"kind reading", Filter{AllTenants: true, Kinds: KindReading}, a, true},
		{"kind alarm", Filter{AllTenants: true, Kinds: KindAlarm}, a, false},
		{"match", Filter{AllTenants: true, Match: func(e *twinv1.TwinEvent) bool {
			return e.GetAlarm().GetSeverity() <= twinv1.Severity_SEVERITY_MAJOR
		}}, crit, true},
		{"match out", Filter{AllTenants: true, Match: func(e *twinv1.TwinEvent) bool {
			return e.GetAlarm().GetSeverity() <= twinv1.Severity_SEVERITY_MAJOR
		}}, minor, false},
	}
	for _, c := range cases {
		cf := compile(c.f)
		if got := cf.match(c.ev, KindOf(c.ev)); got != c.want {
			t.Errorf("%s: got %v", c.name, got)
		}
	}
	if err := (Filter{}).Validate(); !errors.Is(err, ErrFilter) {
		t.Errorf("zero filter: %v", err)
	}
	if err := (Filter{Customers: []string{""}}).Validate(); !errors.Is(err, ErrFilter) {
		t.Errorf("empty id: %v", err)
	}
}

// TestTenantIsolation: subscribers see their tenant's events only, in
// order; partner-wide sees its customers; platform sees everything.
func TestTenantIsolation(t *testing.T) {
	k := startKafka(t)
	h := startHub(t, k, nil)
	ra := subscribe(t, h, Filter{Customers: []string{"cust-a"}}, "")
	rb := subscribe(t, h, Filter{Customers: []string{"cust-b"}}, "")
	rp := subscribe(t, h, Filter{Partners: []string{"p1"}}, "")
	rall := subscribe(t, h, Filter{AllTenants: true}, "")
	var all, as, bs []*twinv1.TwinEvent
	for i := range 30 {
		ea, eb, ec := event(tenantA, i%5, i), event(tenantB, i%5, i), event(tenantC, i%5, i)
		all = append(all, ea, eb, ec)
		as, bs = append(as, ea), append(bs, eb)
	}
	k.publish(t, all...)
	ra.take(t, len(as))
	rb.take(t, len(bs))
	rp.take(t, len(as)+len(bs))
	rall.take(t, len(all))
	checkExactlyOnce(t, ra.events, as)
	checkExactlyOnce(t, rb.events, bs)
	checkExactlyOnce(t, rp.events, append(slices.Clone(as), bs...))
	checkExactlyOnce(t, rall.events, all)
	// Nothing else is pending for A: a heartbeat comes before any event.
	ra.sub.ticker.Reset(20 * time.Millisecond)
	ra.expectQuiet(t)
}

// TestResumeFromRing: disconnect after k events, reconnect with the last
// token; the union is every event exactly once, in order per device.
func TestResumeFromRing(t *testing.T) {
	k := startKafka(t)
	h := startHub(t, k, nil)
	r1 := subscribe(t, h, Filter{Customers: []string{"cust-a"}}, "")
	first := batch(tenantA, 0, 40)
	k.publish(t, first...)
	k.publish(t, batch(tenantB, 0, 40)...)
	r1.take(t, 17)
	r1.sub.Close()
	second := batch(tenantA, 40, 40)
	k.publish(t, second...)

	r2 := subscribe(t, h, Filter{Customers: []string{"cust-a"}}, r1.token)
	r2.take(t, 80-17)
	checkExactlyOnce(t, append(r1.events, r2.events...), append(first, second...))
	if m := h.Metrics(); m.ReplayedRing == 0 || m.ReplayedKafka != 0 {
		t.Errorf("metrics: %+v", m)
	}
	// Live delivery continues after the replay.
	third := batch(tenantA, 80, 10)
	k.publish(t, third...)
	r2.take(t, 10)
	checkExactlyOnce(t, append(r1.events, r2.events...), slices.Concat(first, second, third))
}

// TestResumeFromKafka: the token is older than the ring (a fresh hub, as
// after a node restart, and a tiny ring), so the replay reads Kafka.
func TestResumeFromKafka(t *testing.T) {
	k := startKafka(t)
	h1 := startHub(t, k, nil)
	r1 := subscribe(t, h1, Filter{Customers: []string{"cust-a"}}, "")
	first := batch(tenantA, 0, 30)
	k.publish(t, first...)
	r1.take(t, 11)
	r1.sub.Close()
	second := batch(tenantA, 30, 30)
	k.publish(t, append(batch(tenantB, 0, 30), second...)...)

	// A new hub starts at the end: everything after the token is in
	// Kafka only. Its ring holds 2 events per partition.
	h2 := startHub(t, k, func(c *Config) { c.RingSize = 2 })
	r2 := subscribe(t, h2, Filter{Customers: []string{"cust-a"}}, r1.token)
	third := batch(tenantA, 60, 30)
	k.publish(t, third...) // live while the replay is pending
	r2.take(t, 90-11)
	checkExactlyOnce(t, append(r1.events, r2.events...), slices.Concat(first, second, third))
	if m := h2.Metrics(); m.ReplayedKafka == 0 {
		t.Errorf("no Kafka replay: %+v", m)
	}

	// Resuming from a token taken mid-way on h2, with its tiny ring,
	// also replays from Kafka.
	r2.sub.Close()
	fourth := batch(tenantA, 90, 20)
	k.publish(t, fourth...)
	r3 := subscribe(t, h2, Filter{Customers: []string{"cust-a"}}, r2.token)
	r3.take(t, 20)
	checkExactlyOnce(t, slices.Concat(r1.events, r2.events, r3.events), slices.Concat(first, second, third, fourth))
}

// TestSlowSubscriber: a subscriber that does not read is disconnected with
// ErrSlow while a fast one receives everything; the slow one then resumes
// without gaps or duplicates.
func TestSlowSubscriber(t *testing.T) {
	k := startKafka(t)
	h := startHub(t, k, func(c *Config) { c.QueueSize = 32 })
	slow := subscribe(t, h, Filter{AllTenants: true}, "")
	fast := subscribe(t, h, Filter{AllTenants: true}, "")
	evs := batch(tenantA, 0, 200)
	// The fast one reads each chunk as it comes; the slow one never reads.
	for i := 0; i < len(evs); i += 20 {
		k.publish(t, evs[i:i+20]...)
		fast.take(t, 20)
	}
	checkExactlyOnce(t, fast.events, evs)

	// The slow one gets what was queued before the overflow, then ErrSlow.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		m, err := slow.sub.Next(ctx)
		if errors.Is(err, ErrSlow) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		slow.token = m.Token
		if !m.Heartbeat() {
			slow.events = append(slow.events, m.Event)
		}
	}
	if n := len(slow.events); n == 0 || n > 32 {
		t.Errorf("slow subscriber got %d events before the disconnect", n)
	}
	if m := h.Metrics(); m.Slow != 1 {
		t.Errorf("slow count %d", m.Slow)
	}
	slow.sub.Close()
	again := subscribe(t, h, Filter{AllTenants: true}, slow.token)
	again.take(t, len(evs)-len(slow.events))
	checkExactlyOnce(t, append(slow.events, again.events...), evs)
}

// TestHeartbeatAdvancesToken: an idle subscriber's token moves past the
// events it was not shown, so a resume replays nothing.
func TestHeartbeatAdvancesToken(t *testing.T) {
	k := startKafka(t)
	h := startHub(t, k, nil)
	rc := subscribe(t, h, Filter{Customers: []string{"cust-c"}}, "")
	ra := subscribe(t, h, Filter{Customers: []string{"cust-a"}}, "")
	evs := batch(tenantA, 0, 50)
	k.publish(t, evs...)
	ra.take(t, 50) // all appended by now
	rc.sub.ticker.Reset(10 * time.Millisecond)
	rc.expectQuiet(t)
	pos, err := DecodeToken(rc.token)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, p := range pos {
		sum += p
	}
	if sum != 50 {
		t.Fatalf("token positions %v sum to %d, want 50", pos, sum)
	}
	rc.sub.Close()
	before := h.Metrics().ReplayedRing
	r2 := subscribe(t, h, Filter{Customers: []string{"cust-c"}}, rc.token)
	if h.Metrics().ReplayedRing != before || len(r2.sub.replay) != 0 {
		t.Error("resume from a heartbeat token replays")
	}
}

func TestMinSeverityAndKinds(t *testing.T) {
	k := startKafka(t)
	h := startHub(t, k, nil)
	r := subscribe(t, h, Filter{Customers: []string{"cust-a"}, Kinds: KindAlarm, Match: func(e *twinv1.TwinEvent) bool {
		s := e.GetAlarm().GetSeverity()
		return s != 0 && s <= twinv1.Severity_SEVERITY_MAJOR
	}}, "")
	crit := alarmEvent(tenantA, 1, 1, twinv1.Severity_SEVERITY_CRITICAL)
	k.publish(t, event(tenantA, 1, 0), alarmEvent(tenantA, 1, 2, twinv1.Severity_SEVERITY_WARNING), crit)
	if got := r.next(t, 20*time.Second); got.GetEventId() != crit.GetEventId() {
		t.Fatalf("got %s", got.GetEventId())
	}
}

func TestBadTokens(t *testing.T) {
	k := startKafka(t)
	h := startHub(t, k, nil)
	ctx := t.Context()
	for _, tok := range []string{"garbage", EncodeToken(make([]int64, testPartitions+1))} {
		if _, err := h.Subscribe(ctx, Filter{AllTenants: true}, tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("%q: %v", tok, err)
		}
	}
	if _, err := h.Subscribe(ctx, Filter{}, ""); !errors.Is(err, ErrFilter) {
		t.Errorf("zero filter: %v", err)
	}
	// A token ahead of the hub (another node that is further along) waits
	// for those offsets instead of replaying or failing.
	ahead := make([]int64, testPartitions)
	for i := range ahead {
		ahead[i] = 5
	}
	r := subscribe(t, h, Filter{AllTenants: true}, EncodeToken(ahead))
	if len(r.sub.replay) != 0 {
		t.Fatal("replay for a token ahead of the head")
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Client: streams.ClientConfig{Brokers: []string{"127.0.0.1:9092"}}}
	good.setDefaults()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no brokers": func(c *Config) { c.Client.Brokers = nil },
		"ring":       func(c *Config) { c.RingSize = -1 },
		"queue":      func(c *Config) { c.QueueSize = -1 },
		"heartbeat":  func(c *Config) { c.Heartbeat = time.Microsecond },
		"offsets":    func(c *Config) { c.StartOffsets = map[int]int64{0: -1} },
	} {
		c := good
		mod(&c)
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestTokenTooOld: a token below what Kafka still retains is refused with
// ErrTokenTooOld instead of silently skipping the lost events.
func TestTokenTooOld(t *testing.T) {
	k := startKafka(t)
	k.publish(t, batch(tenantA, 0, 20)...)
	h := startHub(t, k, nil)
	// Retention removed everything below offset 1000 of every partition.
	h.oldest = func(context.Context, int) (int64, error) { return 1000, nil }
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := h.Subscribe(ctx, Filter{AllTenants: true}, EncodeToken(make([]int64, testPartitions)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for {
		m, err := s.Next(ctx)
		if errors.Is(err, ErrTokenTooOld) {
			break
		}
		if err != nil || !m.Heartbeat() {
			t.Fatalf("got %v, %v; want ErrTokenTooOld", m, err)
		}
	}
	if h.Metrics().TooOld != 1 {
		t.Errorf("metrics: %+v", h.Metrics())
	}
}
