package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/loadtest/fleet"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

// TestDisasterRecoveryDrill is the runbook of docs/disaster-recovery.md as
// a test. A node (encrypted twin store, PostgreSQL registry, a Kafka broker
// of its own that outlives it, as a replicated cluster would) applies the
// first half of a simulated fleet's frames; it is stopped and backed up
// with `legiond backup run`; it then applies the second half. Its data
// folder and its registry database are destroyed (Kafka keeps the log).
// `legiond restore` brings both back from the backup into an empty folder
// and an empty database, and the node starts again: it finds offsets in
// its restored store lower than the group's commit and replays from them.
// After it drained:
//
//   - every sensor twin equals an uninterrupted run's (the reference
//     applies all frames in-process with the core alone);
//   - every registry row equals the destroyed database's (the audit
//     trail's backup entries aside);
//   - twin.events holds every expected event id (duplicates from the
//     replay allowed).
//
// The phases are timed (TIMING lines) for docs/disaster-recovery.md.
func TestDisasterRecoveryDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes, a broker and PostgreSQL")
	}
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Setenv(envBackupDatabaseURL, "")
	t.Setenv(envBackupRecipient, "")
	reg := startRegistry(t, ctx)
	tmp := t.TempDir()

	broker, err := devbroker.Start(ctx, devbroker.Config{Dir: filepath.Join(tmp, "kafka"), Addr: "127.0.0.1:0", Partitions: partitions}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	client := streams.ClientConfig{Brokers: broker.Addrs()}
	if err := streams.EnsureTopics(ctx, client, streams.DefaultTopics(partitions, 1), nil); err != nil {
		t.Fatal(err)
	}

	// The fleet's time starts now: no time rule comes due during the test
	// (see TestSIGKILLNoLossNoDuplicateApply).
	start := time.Now().UTC().Truncate(time.Minute)
	fl, ups := fleetUplinks(t, fleet.Config{Sensors: drillSensors, Gateways: 3, Seed: 20261128, Start: start}, start.Add(16*time.Hour))
	if err := provisionFleet(ctx, reg.store, fl, "DR drill fleet"); err != nil {
		t.Fatal(err)
	}
	// An audit trail, so that the backup has an anchor to check against.
	if _, err := reg.store.AppendAudit(ctx, postgres.PlatformScope("cli:drill"), postgres.AuditEntry{
		Action: postgres.AuditAdminChange, Target: "fleet:DR drill"}); err != nil {
		t.Fatal(err)
	}
	half := len(ups) / 2
	dataDir := filepath.Join(tmp, "node")
	nodeCfg := func(dbURL string) nodeConfig {
		return nodeConfig{DataDir: dataDir, Kafka: client, Partitions: partitions, DatabaseURL: dbURL, MasterKeyFile: reg.keyFile,
			StorageMasterKeyFile: reg.storageKeyFile}
	}
	// runNode starts the node, produces ups (if any) and returns once the
	// node's store holds offsets at the end of both input topics.
	runNode := func(dbURL string, ups []fleet.Uplink, stats time.Duration) (*node, time.Duration) {
		t.Helper()
		n, err := startNode(ctx, nodeCfg(dbURL))
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if len(ups) > 0 {
			produce(t, ctx, client.Brokers, ups)
			produceGatewayStats(t, ctx, client.Brokers, fl, ups[0].ReceivedAt.Truncate(5*time.Minute), stats)
		}
		waitStored(t, ctx, n, client.Brokers, partitions)
		return n, time.Since(began)
	}

	// 1. Normal operation: the first half of the frames.
	n, took := runNode(reg.appDSN, ups[:half], 8*time.Hour)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("phase 1: %d frames applied in %v", half, took.Round(time.Millisecond))

	// 2. Backup (node stopped: `legiond backup run --data-dir`).
	idFile, bdir := filepath.Join(tmp, "backup-identity.txt"), filepath.Join(tmp, "backups")
	code, rcpt, errs := runCLI(t, "", "backup", "keygen", "--out", idFile, "--dev")
	if code != exitOK {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	began := time.Now()
	code, out, errs := runCLI(t, "", "backup", "run", "--to", "file://"+bdir, "--database-url", reg.adminDSN, "--data-dir", dataDir,
		"--master-key-file", reg.storageKeyFile, "--recipient", strings.TrimSpace(rcpt), "--identity", idFile, "--node", "drill-node")
	backupTook := time.Since(began)
	if code != exitOK {
		t.Fatalf("backup run: %d\n%s%s", code, out, errs)
	}
	anchor := regexp.MustCompile(`audit anchor: (\S+)`).FindStringSubmatch(out)
	t.Logf("legiond backup run:\n%s", out)
	atBackup := storedOffsets(t, dataDir, reg.storageKeyFile)

	// 3. More traffic after the backup: the second half.
	n, took = runNode(reg.appDSN, ups[half:], 8*time.Hour)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("phase 2: %d frames applied in %v", len(ups)-half, took.Round(time.Millisecond))
	wantRows := registryRows(t, ctx, reg.adminDSN)

	// 4. Disaster: the node's data folder and the registry are gone;
	// Kafka keeps its log (replicated in production).
	reg.store.Close()
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	if err := reg.srv.DropDatabase(ctx, reg.db); err != nil {
		t.Fatal(err)
	}

	// 5. Restore into an empty database and an empty data folder.
	restoredDB := reg.db + "_restored"
	if err := reg.srv.CreateDatabase(ctx, restoredDB, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.srv.DropDatabase(context.Background(), restoredDB) })
	pwFile := filepath.Join(tmp, "app-password")
	if err := os.WriteFile(pwFile, []byte(registryAppPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	code, out, errs = runCLI(t, "", "restore", "--from", "file://"+bdir, "--name", "latest", "--identity", idFile,
		"--data-dir", dataDir, "--database-url", reg.srv.DSN(restoredDB), "--app-password-file", pwFile)
	restoreTook := time.Since(began)
	if code != exitOK {
		t.Fatalf("restore: %d\n%s%s", code, out, errs)
	}
	t.Logf("legiond restore:\n%s", out)
	if anchor == nil || !strings.Contains(out, anchor[1]) {
		t.Fatalf("restore does not name the backup's audit anchor %v", anchor)
	}
	if got := storedOffsets(t, dataDir, reg.storageKeyFile); len(got) == 0 || fmt.Sprint(got) != fmt.Sprint(atBackup) {
		t.Fatalf("restored store offsets %v, at backup %v", got, atBackup)
	}

	// Runbook step 7: the restored audit trail holds the backup's anchor.
	restoredApp := reg.srv.UserDSN(restoredDB, postgres.AppRole, registryAppPassword)
	if code, out, errs := runCLI(t, "", "audit", "verify", "--database-url", restoredApp, "--anchor", anchor[1]); code != exitOK {
		t.Fatalf("audit verify of the restored registry: %d\n%s%s", code, out, errs)
	}

	// 6. Start the node on the restored registry and data: it replays
	// from the restored offsets (lower than the group's commit).
	began = time.Now()
	n, _ = runNode(restoredApp, nil, 0)
	catchUp := time.Since(began)
	rewinds, handled := n.smetrics.Rewinds.Load(), n.smetrics.Handled.Load()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if rewinds == 0 || handled < uint64(len(ups)-half) {
		t.Errorf("the restored node rewound %d partitions and handled %d records; want a replay of the %d frames after the backup",
			rewinds, handled, len(ups)-half)
	}

	// (a) Twin states equal the uninterrupted reference.
	st, err := postgres.Open(ctx, postgres.Config{DSN: restoredApp, KeyRing: mustKeyRing(t, reg.keyFile)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cache, stopCache := runCache(t, ctx, st)
	defer stopCache()
	frames := make([]*lorawanv1.UplinkFrame, len(ups))
	for i := range ups {
		frames[i] = uplinkFrame(&ups[i])
	}
	ref := referenceSensors(t, cache, frames)
	got := storedSensors(t, dataDir, reg.storageKeyFile)
	if len(got) != len(ref) || len(ref) != len(fl.Sensors()) {
		t.Fatalf("%d sensor twins restored, %d in the reference, want %d", len(got), len(ref), len(fl.Sensors()))
	}
	for eui, want := range ref {
		if g := got[eui]; g != want.state {
			t.Errorf("sensor %s: state differs from the uninterrupted run", eui)
		}
	}

	// (b) Registry rows equal the destroyed database's.
	gotRows := registryRows(t, ctx, reg.srv.DSN(restoredDB))
	for table, want := range wantRows {
		if gotRows[table] != want {
			t.Errorf("registry table %s: restored %s, destroyed %s", table, gotRows[table], want)
		}
	}
	if len(gotRows) != len(wantRows) {
		t.Errorf("restored registry has %d tables, the destroyed one %d", len(gotRows), len(wantRows))
	}

	// (c) twin.events holds every expected event id.
	expected := map[string]bool{}
	for _, r := range ref {
		for _, id := range r.events {
			expected[id] = true
		}
	}
	seen := map[string]int{}
	for _, m := range readAll(t, ctx, client.Brokers, streams.TopicTwinEvents, partitions) {
		eui, err := devicetwin.ParseEUI(string(m.Key))
		if err != nil {
			t.Fatalf("twin.events key %q: %v", m.Key, err)
		}
		if _, sensor := ref[eui]; sensor {
			seen[header(m, streams.HeaderEventID)]++
		}
	}
	missing, dups := 0, 0
	for id := range expected {
		switch c := seen[id]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d expected events missing from twin.events", missing, len(expected))
	}
	t.Logf("%d frames (%d after the backup), %d sensors; %d expected events present, %d duplicates from the replay; %d registry tables equal",
		len(ups), len(ups)-half, len(fl.Sensors()), len(expected), dups, len(wantRows))
	t.Logf("TIMING backup (legiond backup run, full, verified): %v", backupTook.Round(time.Millisecond))
	t.Logf("TIMING restore (legiond restore, registry + node data): %v", restoreTook.Round(time.Millisecond))
	t.Logf("TIMING catch-up (node start → replayed %d frames after the backup, offsets stored): %v", len(ups)-half, catchUp.Round(time.Millisecond))
}

// drillSensors sizes the drill's fleet: 16 simulated hours of it, half
// before the backup.
const drillSensors = 150

// waitStored waits until the node's store holds, for every partition of
// both input topics, the end offset: every record applied and its offset
// stored (which precedes the Kafka commit).
func waitStored(tb testing.TB, ctx context.Context, n *node, brokers []string, partitions int) {
	tb.Helper()
	want := map[pebblestore.TopicPartition]int64{}
	for _, topic := range []string{streams.TopicUplink, streams.TopicGatewayStats} {
		ends, err := endOffsets(ctx, brokers, topic, partitions)
		if err != nil {
			tb.Fatal(err)
		}
		for p, end := range ends {
			if end > 0 {
				want[pebblestore.TopicPartition{Topic: topic, Partition: int32(p)}] = end
			}
		}
	}
	for {
		got, err := n.store.Offsets(ctx)
		done := err == nil
		for tp, end := range want {
			done = done && got[tp] == end
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("stored offsets %v, want %v (%v)", got, want, err)
		case <-time.After(20 * time.Millisecond): // polling the store
		}
	}
}

// registryRows maps every registry table to its row count and a digest of
// its rows, read as a superuser (row security does not filter). The audit
// trail's backup and restore entries are left out: the destroyed database
// recorded the backup after its dump, the restored one records the
// restore.
func registryRows(tb testing.TB, ctx context.Context, dsn string) map[string]string {
	tb.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`)
	if err != nil {
		tb.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var t [2]string
		return t, r.Scan(&t[0], &t[1])
	})
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for _, tn := range tables {
		where := ""
		if tn[1] == "audit_log" {
			where = ` WHERE t.action NOT IN ('` + postgres.AuditBackupCreated + `', '` + postgres.AuditBackupRestored + `')`
		}
		var count int64
		var digest string
		q := `SELECT count(*), coalesce(md5(string_agg(t::text, E'\n' ORDER BY t::text)), '') FROM ` + pgx.Identifier{tn[0], tn[1]}.Sanitize() + ` t` + where
		if err := conn.QueryRow(ctx, q).Scan(&count, &digest); err != nil {
			tb.Fatalf("%s.%s: %v", tn[0], tn[1], err)
		}
		out[tn[0]+"."+tn[1]] = fmt.Sprintf("%d rows, md5 %s", count, digest)
	}
	if len(out) < 5 {
		tb.Fatalf("only %d registry tables: %v", len(out), out)
	}
	return out
}

func mustKeyRing(tb testing.TB, keyFile string) *postgres.KeyRing {
	tb.Helper()
	mk, err := postgres.LoadMasterKeyFile(keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := postgres.NewKeyRing(mk)
	if err != nil {
		tb.Fatal(err)
	}
	return ring
}
