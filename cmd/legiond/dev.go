package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/hub"
	"github.com/legionelladossier/legiond/loadtest/fleet"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
)

const devUsage = `usage: legiond dev [--data-dir .dev] [--api 127.0.0.1:8443] [--sensors 200] [--gateways 5]
                  [--history 96h]

Runs the whole system on one machine for development and demos: a private
PostgreSQL registry, the embedded Kafka broker, one node, the TLS 1.3 API
with a development token issuer, and a simulated Clip'R fleet of two
partners and four customers. It replays --history of simulated traffic
first (so alarms exist within a minute), then keeps the fleet reporting.
Every key, certificate and token it makes is for development only.`

// demoCustomer places one quarter of the demo fleet.
type demoCustomer struct {
	partner, name, site, city, country string
	profile                            postgres.RuleProfile
}

var demoCustomers = [...]demoCustomer{
	{"Installatiebedrijf Noord", "Zorgcentrum De Linde", "Hoofdgebouw", "Groningen", "NL", postgres.ProfileNL},
	{"Installatiebedrijf Noord", "Sporthal Het Ravijn", "Kleedkamers", "Assen", "NL", postgres.ProfileNL},
	{"Haustechnik Süd", "Hotel Alpenblick", "Haupthaus", "München", "DE", postgres.ProfileDE},
	{"Haustechnik Süd", "Leisure Centre Liffey", "Pool building", "Dublin", "IE", postgres.ProfileUK},
}

func runDev(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("data-dir", ".dev", "development data folder (kept across runs)")
	apiAddr := fs.String("api", "127.0.0.1:8443", "API listen address (TLS 1.3)")
	sensors := fs.Int("sensors", 200, "simulated sensors, split over four customers")
	gateways := fs.Int("gateways", 5, "simulated gateways")
	history := fs.Duration("history", 96*time.Hour, "simulated history replayed at start")
	metricsAddr := fs.String("metrics", "127.0.0.1:9464", "Prometheus metrics address (empty: none)")
	logLevel := fs.String("log-level", "warn", "log level of the components")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *sensors < 4 || *gateways < 1 {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(s.out, devUsage)
			return exitOK
		}
		fmt.Fprintf(s.err, "legiond dev: bad arguments (%v)\n%s\n", err, devUsage)
		return exitUsage
	}
	log, err := newLogger(s.err, *logLevel)
	if err != nil {
		fmt.Fprintf(s.err, "legiond dev: %v\n", err)
		return exitUsage
	}
	say := func(format string, a ...any) { fmt.Fprintf(s.out, format+"\n", a...) }
	fail := func(what string, err error) int {
		if ctx.Err() != nil { // Ctrl-C while starting or replaying: a normal stop
			fmt.Fprintln(s.out, "\nstopping …")
			return exitOK
		}
		fmt.Fprintf(s.err, "legiond dev: %s: %v\n", what, err)
		return exitFailure
	}
	dataDir, err := filepath.Abs(*dir)
	if err != nil {
		return fail("data dir", err)
	}
	say("Legiond development system — data in %s (development keys and certificates only)", dataDir)
	say("starting PostgreSQL, the embedded Kafka broker and the node …")
	if err := refusePlaintextStore(dataDir); errors.Is(err, errPlaintextStore) {
		// A development folder from before encryption at rest: encrypt
		// it in place with the development key rather than refuse.
		say("encrypting the twin store of this older development folder …")
		if code := runKeysEncrypt([]string{"--data-dir", dataDir, "--dev-master-key"}, s); code != exitOK {
			return fail("encrypt the old twin store", err)
		}
	}

	n, err := startNode(ctx, nodeConfig{DataDir: dataDir, Logger: log, MetricsAddr: *metricsAddr,
		DevStorageKey: true, Backups: &nodeBackups{Dev: true}})
	if err != nil {
		return fail("start node", err)
	}
	defer func() { _ = n.Close() }()
	client := streams.ClientConfig{Brokers: n.brokers}
	api, err := startAPI(ctx, apiConfig{Addr: *apiAddr}, apiDeps{
		DataDir: dataDir, Kafka: client, Registry: n.pg, Store: n.store, Alarms: alarmCommander{sys: n.system}, Logger: log,
	})
	if err != nil {
		return fail("start API", err)
	}
	defer api.close(context.Background())

	// The demo fleet: one simulated fleet per customer, so every customer
	// has its own devices, gateways and history.
	now := time.Now().UTC().Truncate(time.Minute)
	start := now.Add(-*history)
	perFleet, gwPerFleet := *sensors/len(demoCustomers), max(1, *gateways/len(demoCustomers))
	fleets := make([]*fleet.Fleet, len(demoCustomers))
	for i := range fleets {
		if fleets[i], err = fleet.New(fleet.Config{Sensors: perFleet, Gateways: gwPerFleet, Seed: int64(1000 + i), Start: start}); err != nil {
			return fail("fleet", err)
		}
	}
	ids, err := provisionDemo(ctx, n.pg, fleets)
	if err != nil {
		return fail("provision demo tenants", err)
	}
	tokens, err := devTokens(api.issuer, ids)
	if err != nil {
		return fail("tokens", err)
	}
	tokenFile := filepath.Join(dataDir, "tokens.DEVELOPMENT-ONLY.env")
	if err := writeTokens(tokenFile, tokens); err != nil {
		return fail("tokens", err)
	}
	printDevWelcome(s.out, api, tokenFile, ids, tokens)

	// The in-process watcher shows what the API streams.
	go showEvents(ctx, s.out, api.hub, func() uint64 { return n.system.Stats().Applied })

	p, err := streams.NewUplinkProducer(streams.ProducerConfig{Client: client, BatchSize: 1000, BatchTimeout: time.Millisecond}, log)
	if err != nil {
		return fail("producer", err)
	}
	defer func() { _ = p.Close() }()
	sims := make([]*simulation, len(fleets))
	for i, f := range fleets {
		sims[i] = &simulation{fleet: f, producer: p, statsEvery: 5 * time.Minute}
	}
	// History as fast as the node takes it, then real time.
	say("replaying %s of simulated history (%d sensors, %d gateways) …", history.String(), perFleet*len(fleets), gwPerFleet*len(fleets))
	// The fleets advance together, five minutes at a time, so that the stream's
	// event time (which paces the twins' time rules) is the same for all.
	produced := 0
	for t := start; t.Before(now); {
		if t = t.Add(5 * time.Minute); t.After(now) {
			t = now
		}
		for _, sim := range sims {
			k, err := sim.run(ctx, t)
			produced += k
			if err != nil {
				return fail("replay history", err)
			}
		}
	}
	say("history produced: %d uplink copies; the node applies them now — alarms appear below", produced)
	if err := runLive(ctx, sims); err != nil && !errors.Is(err, context.Canceled) {
		return fail("live fleet", err)
	}
	say("\nstopping …")
	return exitOK
}

// runLive keeps the fleets reporting in real time.
func runLive(ctx context.Context, sims []*simulation) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		now := time.Now().UTC()
		for _, s := range sims {
			if _, err := s.run(ctx, now); err != nil {
				return err
			}
		}
	}
}

// demoIDs are the registry ids of the demo tenants.
type demoIDs struct {
	partners  [2]uuid.UUID
	customers [len(demoCustomers)]uuid.UUID
	sites     [len(demoCustomers)]uuid.UUID
}

// provisionDemo registers the demo tenants and their fleets, once: a data
// folder that has them already keeps them.
func provisionDemo(ctx context.Context, st *postgres.Store, fleets []*fleet.Fleet) (demoIDs, error) {
	var ids demoIDs
	scope := postgres.PlatformScope("cli:dev")
	err := st.InTx(ctx, scope, func(tx *postgres.Tx) error {
		partners, err := tx.Partners().List(ctx, postgres.ListOptions{})
		if err != nil {
			return err
		}
		byName := map[string]uuid.UUID{}
		for _, p := range partners {
			byName[p.Name] = p.ID
		}
		customers, err := tx.Customers().List(ctx, postgres.ListOptions{})
		if err != nil {
			return err
		}
		custByName := map[string]uuid.UUID{}
		for _, c := range customers {
			custByName[c.Name] = c.ID
		}
		for i, dc := range demoCustomers {
			pid, ok := byName[dc.partner]
			if !ok {
				p, err := tx.Partners().Create(ctx, postgres.NewPartner{Name: dc.partner})
				if err != nil {
					return err
				}
				pid, byName[dc.partner] = p.ID, p.ID
			}
			ids.partners[i/2] = pid
			if cid, ok := custByName[dc.name]; ok {
				ids.customers[i] = cid
				sites, err := tx.Sites().List(ctx, postgres.ListOptions{CustomerID: cid})
				if err != nil || len(sites) == 0 {
					return fmt.Errorf("customer %s has no site: %w", dc.name, err)
				}
				ids.sites[i] = sites[0].ID
				continue
			}
			c, err := tx.Customers().Create(ctx, postgres.NewCustomer{PartnerID: &pid, Name: dc.name})
			if err != nil {
				return err
			}
			site, err := tx.Sites().Create(ctx, postgres.NewSite{CustomerID: c.ID, Name: dc.site, City: dc.city, Country: dc.country, RuleProfile: dc.profile})
			if err != nil {
				return err
			}
			ids.customers[i], ids.sites[i] = c.ID, site.ID
		}
		return nil
	})
	if err != nil {
		return ids, err
	}
	for i, f := range fleets {
		if err := provisionFleetAt(ctx, st, f, ids.customers[i], ids.sites[i]); err != nil {
			return ids, fmt.Errorf("%s: %w", demoCustomers[i].name, err)
		}
	}
	return ids, nil
}

// provisionFleetAt registers a fleet's tap points, gateways and ABP devices
// on one site, unless its first sensor exists already.
func provisionFleetAt(ctx context.Context, st *postgres.Store, fl *fleet.Fleet, customer, site uuid.UUID) error {
	scope := postgres.PlatformScope("cli:provision")
	sensors := fl.Sensors()
	taps := make([]string, len(sensors))
	exists := false
	err := st.InTx(ctx, scope, func(tx *postgres.Tx) error {
		if _, err := tx.Devices().Get(ctx, postgres.EUI64(sensors[0].DevEUI)); err == nil {
			exists = true
			return nil
		} else if !errors.Is(err, postgres.ErrNotFound) {
			return err
		}
		for i, s := range sensors {
			tp, err := tx.TapPoints().Create(ctx, postgres.NewTapPoint{SiteID: site,
				Name: fmt.Sprintf("%s %d", strings.ToLower(strings.ReplaceAll(string(s.TapKind), "_", " ")), i+1), Kind: postgres.TapKind(s.TapKind)})
			if err != nil {
				return err
			}
			taps[i] = tp.ID.String()
		}
		for i, g := range fl.Gateways() {
			if _, err := tx.Gateways().Create(ctx, postgres.NewGateway{GatewayEUI: postgres.EUI64(g.EUI), CustomerID: &customer,
				SiteID: &site, Name: "gateway " + strconv.Itoa(i+1)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || exists {
		return err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"dev_eui", "activation", "name", "tap_point_id", "dev_addr", "nwk_s_key", "app_s_key", "expected_interval_s"})
	interval := strconv.Itoa(int(fl.Config().ReportInterval / time.Second))
	for i, s := range sensors {
		_ = w.Write([]string{s.DevEUI.String(), "ABP", "Clip'R " + strconv.Itoa(i+1), taps[i], s.DevAddr.String(), s.NwkSKey.String(), s.AppSKey.String(), interval})
	}
	w.Flush()
	rep, err := st.ImportDevices(ctx, scope, &buf, postgres.ImportOptions{})
	if err != nil {
		return fmt.Errorf("import devices: %w (%v)", err, rep.Errors)
	}
	if rep.Imported != len(sensors) {
		return fmt.Errorf("imported %d of %d devices", rep.Imported, len(sensors))
	}
	return nil
}

// devToken is one development token and what it stands for.
type devToken struct{ env, who, token string }

func devTokens(iss *auth.Issuer, ids demoIDs) ([]devToken, error) {
	specs := []struct {
		env, who string
		c        auth.Claims
	}{
		{"LEGIOND_TOKEN_PLATFORM_ADMIN", "platform admin (every tenant)", auth.Claims{Subject: "dev-platform-admin", Role: auth.RolePlatformAdmin}},
		{"LEGIOND_TOKEN_PARTNER_ADMIN", "partner admin of " + demoCustomers[0].partner, auth.Claims{Subject: "dev-partner-admin", Role: auth.RolePartnerAdmin, PartnerID: ids.partners[0]}},
		{"LEGIOND_TOKEN_CUSTOMER_ADMIN", "customer admin of " + demoCustomers[2].name, auth.Claims{Subject: "dev-customer-admin", Role: auth.RoleCustomerAdmin, PartnerID: ids.partners[1], CustomerIDs: []uuid.UUID{ids.customers[2]}}},
		{"LEGIOND_TOKEN_TECHNICIAN", "technician of " + demoCustomers[0].site + " (" + demoCustomers[0].name + ")", auth.Claims{Subject: "dev-technician", Role: auth.RoleTechnician, PartnerID: ids.partners[0], CustomerIDs: []uuid.UUID{ids.customers[0]}, SiteIDs: []uuid.UUID{ids.sites[0]}}},
		{"LEGIOND_TOKEN_VIEWER", "read-only viewer of " + demoCustomers[1].name, auth.Claims{Subject: "dev-viewer", Role: auth.RoleViewer, PartnerID: ids.partners[0], CustomerIDs: []uuid.UUID{ids.customers[1]}}},
		{"LEGIOND_TOKEN_INTEGRATION", "integration client (readings:read alarms:read) of " + demoCustomers[3].name, auth.Claims{Subject: "dev-integration", Role: auth.RoleIntegration, ClientID: "dev-integration", PartnerID: ids.partners[1], CustomerIDs: []uuid.UUID{ids.customers[3]}, Scopes: []string{auth.ScopeReadingsRead, auth.ScopeAlarmsRead}}},
	}
	out := make([]devToken, 0, len(specs))
	for _, sp := range specs {
		tok, err := iss.Issue(sp.c, 12*time.Hour)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sp.env, err)
		}
		out = append(out, devToken{env: sp.env, who: sp.who, token: tok})
	}
	return out, nil
}

func writeTokens(path string, tokens []devToken) error {
	var b strings.Builder
	b.WriteString("# DEVELOPMENT-ONLY access tokens issued by `legiond dev` (valid 12 h). Source this file.\n")
	for _, t := range tokens {
		fmt.Fprintf(&b, "# %s\nexport %s=%s\n", t.who, t.env, t.token)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

func printDevWelcome(w io.Writer, api *nodeAPI, tokenFile string, ids demoIDs, tokens []devToken) {
	fmt.Fprintf(w, `
API        %s   (TLS 1.3; CA: %s)
tokens     %s
`, api.URL(), api.caFile, tokenFile)
	for _, t := range tokens {
		fmt.Fprintf(w, "           $%-30s %s\n", t.env, t.who)
	}
	fmt.Fprintf(w, `
Try, in another terminal:
  source %[1]s
  go run ./cmd/legiond watch alarms --api %[2]s --ca %[3]s --token "$LEGIOND_TOKEN_PLATFORM_ADMIN"
  go run ./cmd/legiond watch readings --api %[2]s --ca %[3]s --token "$LEGIOND_TOKEN_TECHNICIAN"
  curl --cacert %[3]s -H "Authorization: Bearer $LEGIOND_TOKEN_CUSTOMER_ADMIN" -H 'Content-Type: application/json' \
       -d '{"siteId":"%[4]s","onlyAlarming":true}' %[2]s/legiond.api.v1.TwinService/ListTwins
  curl --cacert %[3]s -H "Authorization: Bearer $LEGIOND_TOKEN_VIEWER" -H 'Content-Type: application/json' \
       -d '{"siteId":"%[4]s"}' %[2]s/legiond.api.v1.TwinService/ListTwins      # NotFound: another tenant's site

Live alarms follow (Ctrl-C stops everything; data stays in the data folder).
`, tokenFile, api.URL(), api.caFile, ids.sites[2])
}

// showEvents prints alarm transitions and water events as the API streams
// them, and every five seconds a summary: frames applied, water events and
// open alarms by type. A subscription cut for being slow resumes from its
// last token, like any API client.
func showEvents(ctx context.Context, w io.Writer, h *hub.Hub, applied func() uint64) {
	colour := isTerminal(w) && os.Getenv("NO_COLOR") == ""
	paint := func(code, s string) string {
		if !colour {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	var mu sync.Mutex
	water := 0
	open := map[string]twinv1.AlarmType{}
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			byType := map[string]int{}
			for _, t := range open {
				byType[strings.TrimPrefix(t.String(), "ALARM_TYPE_")]++
			}
			nWater := water
			mu.Unlock()
			types := make([]string, 0, len(byType))
			for t, k := range byType {
				types = append(types, fmt.Sprintf("%s %d", t, k))
			}
			sort.Strings(types)
			fmt.Fprintf(w, "%s frames applied %d · water events %d · open alarms: %s\n", paint("2", "──"), applied(), nWater, strings.Join(types, ", "))
		}
	}()
	token := ""
	for ctx.Err() == nil {
		sub, err := h.Subscribe(ctx, hub.Filter{AllTenants: true, Kinds: hub.KindAlarm | hub.KindWaterEvent}, token)
		if err != nil {
			return
		}
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				break
			}
			token = m.Token
			ev := m.Event
			if ev == nil {
				continue
			}
			mu.Lock()
			switch p := ev.Payload.(type) {
			case *twinv1.TwinEvent_WaterEvent:
				water++
			case *twinv1.TwinEvent_Alarm:
				a := p.Alarm
				switch a.ToStatus {
				case twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK, twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_ACK:
					open[a.AlarmId] = a.Type
				default:
					delete(open, a.AlarmId)
				}
				sev := strings.TrimPrefix(a.Severity.String(), "SEVERITY_")
				code := map[string]string{"CRITICAL": "1;31", "MAJOR": "31", "MINOR": "33", "WARNING": "36"}[sev]
				fmt.Fprintf(w, "%s  %-8s %-22s %-14s %s %s\n", ev.EventTime.AsTime().Format("2006-01-02 15:04"),
					paint(code, sev), strings.TrimPrefix(a.Type.String(), "ALARM_TYPE_"),
					strings.TrimPrefix(a.ToStatus.String(), "ALARM_STATUS_"), ev.DeviceEui, a.Message)
			}
			mu.Unlock()
		}
		sub.Close()
	}
}
