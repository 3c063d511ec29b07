package services_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/hub"
	"github.com/legionelladossier/legiond/api/server"
	"github.com/legionelladossier/legiond/api/services"
	"github.com/legionelladossier/legiond/api/tlsconf"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/pgtest"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

const testAppPassword = "legiond-services-test-password"

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, pgtest.MainOptions{Template: func(ctx context.Context, dsn string) error {
		_, err := postgres.Migrate(ctx, postgres.MigrateConfig{DSN: dsn, AppPassword: testAppPassword})
		return err
	}}))
}

func quiet() *slog.Logger {
	if os.Getenv("SERVICES_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// tenantFix is one customer's registry rows.
type tenantFix struct {
	name           string
	customer       postgres.Customer
	site1, site2   postgres.Site
	tap1, tap2     postgres.TapPoint
	dev1, dev2     postgres.EUI64
	gateway        postgres.EUI64
	partner        uuid.UUID
	alarm1, alarm2 string // alarm ids on dev1 and dev2
}

// ids returns every id and EUI of the tenant as the API prints them: none
// of them may appear in another tenant's responses.
func (f *tenantFix) ids() []string {
	return []string{
		f.customer.ID.String(), f.site1.ID.String(), f.site2.ID.String(), f.tap1.ID.String(), f.tap2.ID.String(),
		hexEUI(f.dev1), hexEUI(f.dev2), hexEUI(f.gateway), f.name + " site",
	}
}

func hexEUI(e postgres.EUI64) string { return strings.ToLower(e.String()) }

// world: partners P1 (customers A, B) and P2 (customer C).
type world struct {
	p1, p2  postgres.Partner
	a, b, c *tenantFix
}

var euiSeq struct {
	sync.Mutex
	n uint32
}

func nextEUI(prefix byte) postgres.EUI64 {
	euiSeq.Lock()
	defer euiSeq.Unlock()
	euiSeq.n++
	return postgres.EUI64{prefix, 0xb3, 0xd5, 0x7e, byte(euiSeq.n >> 24), byte(euiSeq.n >> 16), byte(euiSeq.n >> 8), byte(euiSeq.n)}
}

func mustKey(t testing.TB) *postgres.AES128Key {
	t.Helper()
	var k postgres.AES128Key
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return &k
}

func buildTenant(ctx context.Context, t testing.TB, tx *postgres.Tx, partner uuid.UUID, name string) *tenantFix {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("fixture %s: %v", name, err)
		}
	}
	f := &tenantFix{name: name, partner: partner}
	var err error
	f.customer, err = tx.Customers().Create(ctx, postgres.NewCustomer{PartnerID: &partner, Name: name})
	must(err)
	f.site1, err = tx.Sites().Create(ctx, postgres.NewSite{CustomerID: f.customer.ID, Name: name + " site", Country: "NL", City: "Utrecht"})
	must(err)
	f.site2, err = tx.Sites().Create(ctx, postgres.NewSite{CustomerID: f.customer.ID, Name: name + " annex", Country: "DE"})
	must(err)
	f.tap1, err = tx.TapPoints().Create(ctx, postgres.NewTapPoint{SiteID: f.site1.ID, Name: name + " hot tap", Kind: postgres.TapHot})
	must(err)
	f.tap2, err = tx.TapPoints().Create(ctx, postgres.NewTapPoint{SiteID: f.site2.ID, Name: name + " cold tap", Kind: postgres.TapCold})
	must(err)
	for _, d := range []struct {
		eui *postgres.EUI64
		tap *postgres.TapPoint
	}{{&f.dev1, &f.tap1}, {&f.dev2, &f.tap2}} {
		*d.eui = nextEUI(0x70)
		addr := postgres.DevAddr{0x26, 0x01, d.eui[6], d.eui[7]}
		_, err = tx.Devices().Create(ctx, postgres.NewDevice{DevEUI: *d.eui, TapPointID: &d.tap.ID, Activation: postgres.ABP,
			DevAddr: &addr, NwkSKey: mustKey(t), AppSKey: mustKey(t)})
		must(err)
	}
	f.gateway = nextEUI(0xbb)
	_, err = tx.Gateways().Create(ctx, postgres.NewGateway{GatewayEUI: f.gateway, SiteID: &f.site1.ID, Name: name + " gw"})
	must(err)
	f.alarm1 = hexEUI(f.dev1) + "-HOT_WATER_TOO_COLD-1"
	f.alarm2 = hexEUI(f.dev2) + "-COLD_WATER_TOO_WARM-3"
	return f
}

// ---- fakes of the actor-system ports ----

// twinFake holds one twin per device, answering only for its customer (as
// the actor system does: twins live under their tenant).
type twinFake struct {
	mu    sync.Mutex
	twins map[string]*apiv1.Twin // by customer/eui
}

func (f *twinFake) put(customer uuid.UUID, tw *apiv1.Twin) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.twins[customer.String()+"/"+tw.DevEui] = tw
}

func (f *twinFake) GetTwin(_ context.Context, customer, eui string) (*apiv1.Twin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tw, ok := f.twins[customer+"/"+eui]
	if !ok {
		return nil, services.ErrNoState
	}
	return proto.Clone(tw).(*apiv1.Twin), nil
}

func (f *twinFake) GetTwins(ctx context.Context, customer string, euis []string) ([]*apiv1.Twin, error) {
	var out []*apiv1.Twin
	for _, e := range euis {
		if tw, err := f.GetTwin(ctx, customer, e); err == nil {
			out = append(out, tw)
		}
	}
	return out, nil
}

// alarmFake records commands; it knows the alarms of the twins.
type alarmFake struct {
	twins *twinFake
	mu    sync.Mutex
	calls []services.AlarmRef
}

func (f *alarmFake) command(ctx context.Context, ref services.AlarmRef, by, note string, to twinv1.AlarmStatus) (*apiv1.Alarm, error) {
	f.mu.Lock()
	f.calls = append(f.calls, ref)
	f.mu.Unlock()
	tw, err := f.twins.GetTwin(ctx, ref.CustomerID, ref.DevEUI)
	if err != nil {
		return nil, services.ErrAlarmNotFound
	}
	for _, a := range tw.ActiveAlarms {
		if a.AlarmId == ref.AlarmID {
			a.Status, a.AcknowledgedBy, a.Note = to, by, note
			return a, nil
		}
	}
	return nil, services.ErrAlarmNotFound
}

func (f *alarmFake) Acknowledge(ctx context.Context, ref services.AlarmRef, by, note string) (*apiv1.Alarm, error) {
	return f.command(ctx, ref, by, note, twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_ACK)
}

func (f *alarmFake) Clear(ctx context.Context, ref services.AlarmRef, by, note string) (*apiv1.Alarm, error) {
	return f.command(ctx, ref, by, note, twinv1.AlarmStatus_ALARM_STATUS_CLEARED_ACK)
}

func (f *alarmFake) customersCalled() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bool{}
	for _, c := range f.calls {
		out[c.CustomerID] = true
	}
	return out
}

type clusterFake struct{}

func (clusterFake) ClusterStatus(context.Context) (*apiv1.GetClusterStatusResponse, error) {
	return &apiv1.GetClusterStatusResponse{RaftLeader: "node-1", RaftTerm: 3, TopologyConsensus: true,
		Members: []*apiv1.Member{{Id: "node-1", Address: "127.0.0.1:7000", Alive: true}}}, nil
}

// ---- the environment ----

// env is a real API: PostgreSQL registry, Pebble window, Kafka + hub, TLS
// 1.3 server with real tokens; the actor-system ports are fakes.
type env struct {
	w       *world
	store   *postgres.Store
	pebble  *pebblestore.Store
	kafka   streams.ClientConfig
	prod    *streams.EventProducer
	hub     *hub.Hub
	srv     *server.Server
	url     string
	http    *http.Client
	ca      *tlsconf.DevCA
	iss     *auth.Issuer
	key     *ecdsa.PrivateKey // the issuer's: expired and wrong-audience tokens are signed right
	twins   *twinFake
	alarms  *alarmFake
	now     time.Time
	bad     map[string]string // unauthenticated tokens by kind
	clients clientSet
}

// clientSet holds a Connect client per service.
type clientSet struct {
	twin      apiv1connect.TwinServiceClient
	telemetry apiv1connect.TelemetryServiceClient
	alarm     apiv1connect.AlarmServiceClient
	admin     apiv1connect.AdminServiceClient
	cluster   apiv1connect.ClusterServiceClient
}

type envOptions struct {
	hubConfig func(*hub.Config)
	deps      func(*services.Deps)
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := &env{now: time.Now().UTC().Truncate(time.Second)}

	// PostgreSQL registry as the application role, with a world in it.
	db := pgtest.NewDatabase(t)
	mk, err := postgres.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := postgres.NewKeyRing(mk)
	if err != nil {
		t.Fatal(err)
	}
	e.store, err = postgres.Open(ctx, postgres.Config{DSN: db.UserDSN(postgres.AppRole, testAppPassword), KeyRing: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.store.Close)
	e.w = &world{}
	err = e.store.InTx(ctx, postgres.PlatformScope("fixture"), func(tx *postgres.Tx) error {
		var err error
		if e.w.p1, err = tx.Partners().Create(ctx, postgres.NewPartner{Name: "partner one"}); err != nil {
			return err
		}
		if e.w.p2, err = tx.Partners().Create(ctx, postgres.NewPartner{Name: "partner two"}); err != nil {
			return err
		}
		e.w.a = buildTenant(ctx, t, tx, e.w.p1.ID, "alpha")
		e.w.b = buildTenant(ctx, t, tx, e.w.p1.ID, "bravo")
		e.w.c = buildTenant(ctx, t, tx, e.w.p2.ID, "charlie")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Pebble recent window and the twins.
	e.pebble, err = pebblestore.Open(pebblestore.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.pebble.Close() })
	e.twins = &twinFake{twins: map[string]*apiv1.Twin{}}
	e.alarms = &alarmFake{twins: e.twins}
	for _, f := range []*tenantFix{e.w.a, e.w.b, e.w.c} {
		e.seed(t, f)
	}

	// Kafka and the hub.
	b, err := devbroker.Start(ctx, devbroker.Config{Partitions: 4}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	e.kafka = streams.ClientConfig{Brokers: b.Addrs()}
	if err := streams.EnsureTopics(ctx, e.kafka, streams.DefaultTopics(4, 1), quiet()); err != nil {
		t.Fatal(err)
	}
	e.prod, err = streams.NewEventProducer(streams.ProducerConfig{Client: e.kafka, BatchTimeout: time.Millisecond}, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.prod.Close() })
	hcfg := hub.Config{Client: e.kafka, Heartbeat: 200 * time.Millisecond, Logger: quiet(), RetryBackoff: 50 * time.Millisecond}
	if opts.hubConfig != nil {
		opts.hubConfig(&hcfg)
	}
	e.hub, err = hub.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(context.Background())
	hdone := make(chan struct{})
	go func() { defer close(hdone); _ = e.hub.Run(hctx) }()
	t.Cleanup(func() { hcancel(); <-hdone })

	// TLS 1.3 server with real tokens.
	dir := t.TempDir()
	e.ca, err = tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "https://" + ln.Addr().String()
	e.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.iss, err = auth.NewIssuer(auth.IssuerConfig{Issuer: e.url, Key: e.key, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(e.iss.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = server.New(server.Config{
		Listener: ln, TLS: e.ca.ServerConfig(), Verifier: v,
		RateLimit: auth.RateLimitConfig{Rate: 100000, Burst: 100000}, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	deps := services.Deps{
		Registry: e.store, Recent: e.pebble, Twins: e.twins, Alarms: e.alarms, Cluster: clusterFake{},
		Hub: e.hub, Logger: quiet(), Now: func() time.Time { return e.now },
	}
	if opts.deps != nil {
		opts.deps(&deps)
	}
	if err := services.Register(e.srv, deps); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	if err := e.srv.Start(sctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		scancel()
		c, cc := context.WithTimeout(context.Background(), 5*time.Second)
		defer cc()
		_ = e.srv.Shutdown(c)
	})
	e.http = &http.Client{Transport: &http.Transport{TLSClientConfig: e.ca.ClientConfig(), ForceAttemptHTTP2: true}}
	t.Cleanup(e.http.CloseIdleConnections)
	e.clients.twin = apiv1connect.NewTwinServiceClient(e.http, e.url)
	e.clients.telemetry = apiv1connect.NewTelemetryServiceClient(e.http, e.url)
	e.clients.alarm = apiv1connect.NewAlarmServiceClient(e.http, e.url)
	e.clients.admin = apiv1connect.NewAdminServiceClient(e.http, e.url)
	e.clients.cluster = apiv1connect.NewClusterServiceClient(e.http, e.url)
	e.bad = e.badTokens(t)
	select {
	case <-e.hub.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("hub not ready")
	}
	return e
}

// seed writes a tenant's recent events into Pebble and its twins into the
// fake: per device three readings, a water event and an alarm.
func (e *env) seed(t testing.TB, f *tenantFix) {
	t.Helper()
	for i, d := range []struct {
		eui   postgres.EUI64
		site  postgres.Site
		tap   postgres.TapPoint
		alarm string
		typ   twinv1.AlarmType
	}{{f.dev1, f.site1, f.tap1, f.alarm1, twinv1.AlarmType_ALARM_TYPE_HOT_WATER_TOO_COLD}, {f.dev2, f.site2, f.tap2, f.alarm2, twinv1.AlarmType_ALARM_TYPE_COLD_WATER_TOO_WARM}} {
		eui := hexEUI(d.eui)
		base := func(id string, at time.Time) *twinv1.TwinEvent {
			return &twinv1.TwinEvent{EventId: id, PartnerId: f.partner.String(), CustomerId: f.customer.ID.String(),
				SiteId: d.site.ID.String(), TapPointId: d.tap.ID.String(), DeviceEui: eui, EventTime: timestamppb.New(at)}
		}
		var writes []pebblestore.Write
		put := func(ev *twinv1.TwinEvent) {
			b, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			writes = append(writes, pebblestore.PutEvent(f.customer.ID.String(), pebblestore.EventRecord{
				EUI: pebblestore.EUI(d.eui), Time: ev.EventTime.AsTime(), ID: ev.EventId, Payload: b}))
		}
		for j := range 3 {
			ev := base(fmt.Sprintf("%s-r%d", eui, j), e.now.Add(-time.Duration(50-10*j-i)*time.Minute))
			v := 40.0 + float64(j)
			ev.Payload = &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &v}}
			put(ev)
		}
		we := base(eui+"-w", e.now.Add(-20*time.Minute))
		we.Payload = &twinv1.TwinEvent_WaterEvent{WaterEvent: &twinv1.WaterEvent{Kind: twinv1.WaterEventKind_WATER_EVENT_KIND_FLUSH, Compliant: i == 0, DurationS: 180}}
		put(we)
		raised := e.now.Add(-15 * time.Minute)
		ae := base(eui+"-a", raised)
		ae.Payload = &twinv1.TwinEvent_Alarm{Alarm: &twinv1.AlarmTransition{AlarmId: d.alarm, Type: d.typ,
			Severity: twinv1.Severity_SEVERITY_MAJOR, ToStatus: twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK, By: "system",
			RaisedAt: timestamppb.New(raised), Message: "too cold"}}
		put(ae)
		if err := e.pebble.Commit(context.Background(), writes...); err != nil {
			t.Fatal(err)
		}
		last := 42.0
		e.twins.put(f.customer.ID, &apiv1.Twin{DevEui: eui, LastPipeC: &last, LastSeen: timestamppb.New(e.now.Add(-10 * time.Minute)),
			ActiveAlarms: []*apiv1.Alarm{{AlarmId: d.alarm, DevEui: eui, Type: d.typ, Severity: twinv1.Severity_SEVERITY_MAJOR,
				Status: twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK, RaisedAt: timestamppb.New(raised), UpdatedAt: timestamppb.New(raised)}}})
	}
}

// token issues a token for claims (valid for an hour).
func (e *env) token(t testing.TB, c auth.Claims) string {
	t.Helper()
	if c.Subject == "" {
		c.Subject = "test-" + string(c.Role)
	}
	tok, err := e.iss.Issue(c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// badTokens are tokens the server must refuse: none, forged (another key),
// expired, and for another audience.
func (e *env) badTokens(t testing.TB) map[string]string {
	t.Helper()
	claims := auth.Claims{Subject: "mallory", Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{e.w.a.customer.ID}}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forger, err := auth.NewIssuer(auth.IssuerConfig{Issuer: e.url, Key: otherKey, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := forger.Issue(claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key := e.key
	past, err := auth.NewIssuer(auth.IssuerConfig{Issuer: e.url, Key: key, Logger: quiet(),
		Now: func() time.Time { return time.Now().Add(-3 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := past.Issue(claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.NewIssuer(auth.IssuerConfig{Issuer: e.url, Key: key, Audience: "another-api", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	wrongAud, err := other.Issue(claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"no token": "", "forged": forged, "expired": expired, "wrong audience": wrongAud}
}

// auth sets the bearer token of a request ("" sends none).
func withToken[T any](tok string, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if tok != "" {
		req.Header().Set("Authorization", "Bearer "+tok)
	}
	return req
}
