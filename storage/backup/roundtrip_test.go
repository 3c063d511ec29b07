package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/legionelladossier/legiond/storage/encfs"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/pgtest"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// Test data set size (printed with the timings for docs/disaster-recovery.md).
// LEGIOND_BACKUP_TEST_SCALE=N multiplies devices and twins by N to measure
// larger sets.
const (
	dsCustomers = 4
	dsSites     = 3  // per customer
	dsTaps      = 5  // per site
	dsUsers     = 5  // per customer
	dsAudit     = 50 // audit entries per customer
	dsEvents    = 20 // recent events per twin
	dsSnapshot  = 512
)

var (
	dsScale   = testScale()
	dsDevices = 2 * dsScale    // per tap point: 4×3×5×2 = 120 devices at scale 1
	dsTwins   = 5000 * dsScale // 100,000 events at scale 1
)

func testScale() int {
	n, err := strconv.Atoi(os.Getenv("LEGIOND_BACKUP_TEST_SCALE"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// registry is a populated registry database.
type registry struct {
	db    *pgtest.Database
	store *postgres.Store
	keys  *postgres.KeyRing
}

func populateRegistry(t *testing.T) *registry {
	t.Helper()
	ctx := testCtx(t)
	db := pgtest.NewDatabase(t)
	mk, err := postgres.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := postgres.NewKeyRing(mk)
	if err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(ctx, postgres.Config{DSN: db.UserDSN(postgres.AppRole, testAppPassword), KeyRing: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	var eui uint64 = 0x70B3D57ED0000000
	err = st.InTx(ctx, postgres.PlatformScope("fixture"), func(tx *postgres.Tx) error {
		p, err := tx.Partners().Create(ctx, postgres.NewPartner{Name: "Installateur BV"})
		if err != nil {
			return err
		}
		for c := 0; c < dsCustomers; c++ {
			cust, err := tx.Customers().Create(ctx, postgres.NewCustomer{PartnerID: &p.ID, Name: fmt.Sprintf("Zorghuis %d", c)})
			if err != nil {
				return err
			}
			for s := 0; s < dsSites; s++ {
				site, err := tx.Sites().Create(ctx, postgres.NewSite{CustomerID: cust.ID, Name: fmt.Sprintf("Gebouw %d", s), Country: "NL", City: "Utrecht"})
				if err != nil {
					return err
				}
				for k := 0; k < dsTaps; k++ {
					tap, err := tx.TapPoints().Create(ctx, postgres.NewTapPoint{SiteID: site.ID, Name: fmt.Sprintf("Douche %d", k), Kind: postgres.TapHot})
					if err != nil {
						return err
					}
					for d := 0; d < dsDevices; d++ {
						eui++
						var dev postgres.EUI64
						binary.BigEndian.PutUint64(dev[:], eui)
						join := postgres.EUI64{0x70, 0xB3, 0xD5, 0x7E, 0xD0, 0xFF, 0xFF, 0xFF}
						var key postgres.AES128Key
						_, _ = rand.Read(key[:])
						if _, err := tx.Devices().Create(ctx, postgres.NewDevice{DevEUI: dev, TapPointID: &tap.ID, Activation: postgres.OTAA, JoinEUI: &join, AppKey: &key}); err != nil {
							return err
						}
					}
				}
			}
			for u := 0; u < dsUsers; u++ {
				user, err := tx.Users().Create(ctx, postgres.NewUser{CustomerID: &cust.ID, Email: fmt.Sprintf("tech%d.%d@zorg.example", c, u), DisplayName: fmt.Sprintf("Technicus %d", u)})
				if err != nil {
					return err
				}
				if _, err := tx.RoleGrants().Create(ctx, postgres.NewRoleGrant{UserID: &user.ID, Role: postgres.RoleTechnician, CustomerID: &cust.ID}); err != nil {
					return err
				}
			}
			for a := 0; a < dsAudit; a++ {
				if _, err := tx.AppendAudit(ctx, postgres.AuditEntry{Action: postgres.AuditDataAccess, CustomerID: &cust.ID, Target: fmt.Sprintf("site:%d", a)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("populate registry: %v", err)
	}
	return &registry{db: db, store: st, keys: kr}
}

// node is an encrypted twin store in a data folder laid out like a node's.
type node struct {
	dataDir   string
	masterKey []byte
	efs       *encfs.FS
	store     *pebblestore.Store
}

const (
	testStoreDir = "storage/twins"
	testKeyStore = "storage/" + encfs.KeyStoreFile
)

func openNode(t *testing.T, dataDir string, mk []byte) *node {
	t.Helper()
	efs, err := encfs.Open(encfs.Config{Dir: filepath.Join(dataDir, "storage"), MasterKey: mk})
	if err != nil {
		t.Fatalf("open encrypted storage: %v", err)
	}
	st, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dataDir, filepath.FromSlash(testStoreDir)), FS: efs, NoSync: true})
	if err != nil {
		_ = efs.Close()
		t.Fatalf("open twin store: %v", err)
	}
	n := &node{dataDir: dataDir, masterKey: mk, efs: efs, store: st}
	t.Cleanup(n.close)
	return n
}

func (n *node) close() {
	if n.store != nil {
		_ = n.store.Close()
		_ = n.efs.Close()
		n.store = nil
	}
}

func populateNode(t *testing.T) *node {
	t.Helper()
	n := openNode(t, t.TempDir(), encfs.GenerateMasterKey())
	ctx := testCtx(t)
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < dsTwins; i++ {
		var eui pebblestore.EUI
		binary.BigEndian.PutUint64(eui[:], 0x70B3D57E00000000+uint64(i))
		tenant := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i%dsCustomers)
		snap := make([]byte, dsSnapshot)
		_, _ = rand.Read(snap)
		writes := []pebblestore.Write{pebblestore.PutTwin(tenant, pebblestore.KindSensor, eui, pebblestore.TwinUpdate{Epoch: 1, AppliedSeq: uint64(i), Snapshot: snap})}
		for e := 0; e < dsEvents; e++ {
			writes = append(writes, pebblestore.PutEvent(tenant, pebblestore.EventRecord{EUI: eui, Time: base.Add(time.Duration(e) * time.Minute),
				ID: fmt.Sprintf("%s-%d", eui, e), Payload: []byte(fmt.Sprintf(`{"reading":%d}`, e))}))
		}
		writes = append(writes, pebblestore.PutOffset(pebblestore.TopicPartition{Topic: "lorawan.uplink", Partition: int32(i % 8)}, int64(i+1)))
		if err := n.store.Commit(ctx, writes...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// nodeState is everything a twin store holds, for comparison.
type nodeState struct {
	Twins   []pebblestore.TwinEntry
	Offsets map[pebblestore.TopicPartition]int64
	Events  int
}

func readNode(t *testing.T, n *node) nodeState {
	t.Helper()
	ctx := testCtx(t)
	var s nodeState
	if err := n.store.ForEachTwin(ctx, func(e pebblestore.TwinEntry) error {
		s.Twins = append(s.Twins, e)
		ev, err := n.store.RecentEvents(ctx, e.Tenant, e.EUI, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), 0)
		s.Events += len(ev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.Offsets, err = n.store.Offsets(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// tableDump renders every row of every registry table, as text, sorted.
func tableDump(t *testing.T, dsn string) map[string][]string {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'legiond' AND c.relkind = 'r' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, n := range names {
		var rs []string
		if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(to_jsonb(t)::text ORDER BY to_jsonb(t)::text), '{}') FROM legiond.`+n+` t`).Scan(&rs); err != nil {
			t.Fatal(err)
		}
		out[n] = rs
	}
	return out
}

// emptyDatabase creates a new, empty database (not from the migrated
// template) and returns its name and an administrative DSN for it.
func emptyDatabase(t *testing.T) (string, string) {
	t.Helper()
	srv := pgtest.Current(t)
	name := "restore_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	ctx := testCtx(t)
	if err := srv.CreateDatabase(ctx, name, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.DropDatabase(context.Background(), name) })
	return name, srv.DSN(name)
}

func pgDump(t *testing.T, dsn string) *PgDump {
	t.Helper()
	p, err := NewPgDump(PgConfig{DSN: dsn, AppPassword: testAppPassword})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture is one full backup of a populated registry and node.
type fixture struct {
	reg      *registry
	node     *node
	dest     *LocalDir
	id       age.Identity
	rcpt     age.Recipient
	res      Result
	before   map[string][]string
	nodeWant nodeState
}

func makeFixture(t *testing.T) *fixture {
	t.Helper()
	t0 := time.Now()
	f := &fixture{reg: populateRegistry(t), node: populateNode(t)}
	t.Logf("test data set: %d devices, %d users, %d audit entries in the registry; %d twins with %d-byte snapshots and %d recent events in Pebble; built in %v",
		dsCustomers*dsSites*dsTaps*dsDevices, dsCustomers*dsUsers, dsCustomers*dsAudit, dsTwins, dsSnapshot, dsTwins*dsEvents, time.Since(t0).Round(time.Millisecond))
	var err error
	if f.dest, err = NewLocalDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	id, rcpt := testKey(t)
	f.id, f.rcpt = id, rcpt
	f.before = tableDump(t, f.reg.db.DSN)
	f.nodeWant = readNode(t, f.node)
	f.res, err = Backup(testCtx(t), Config{
		Database:    pgDump(t, f.reg.db.DSN),
		Node:        &NodeSource{Checkpointer: f.node.store, DataDir: f.node.dataDir, StoreDir: testStoreDir, KeyStore: testKeyStore},
		Recipients:  []age.Recipient{rcpt},
		Destination: f.dest,
		NodeID:      "Node 1",
	})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return f
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	f := makeFixture(t)
	ctx := testCtx(t)
	res := f.res
	t.Logf("TIMING backup (full): checkpoint %v, registry dump %v, encrypt+store %v, total %v; archive %d bytes (%s)",
		res.Checkpoint.Round(time.Millisecond), res.Dump.Round(time.Millisecond), res.Upload.Round(time.Millisecond), res.Took.Round(time.Millisecond), res.Size, res.Name)

	info, ok := ParseObjectName(res.Name)
	if !ok || info.Kind != KindFull || info.Node != "node-1" || !strings.HasSuffix(res.Name, ".tar.age") {
		t.Fatalf("object name %q: %+v", res.Name, info)
	}
	m := res.Manifest
	if m.Format != FormatVersion || m.Registry == nil || m.NodeData == nil || m.Registry.SchemaVersion != postgres.LatestVersion() ||
		m.NodeData.PebbleSchema != pebblestore.SchemaVersion || m.Registry.Tables["legiond.devices"] != int64(dsCustomers*dsSites*dsTaps*dsDevices) ||
		m.Registry.AuditHead == "" {
		t.Fatalf("manifest: %+v %+v %+v", m, m.Registry, m.NodeData)
	}
	if m.Files[len(m.Files)-1].Path != registryName || m.Files[len(m.Files)-2].Path != "node/"+testKeyStore {
		t.Fatalf("member order: %v", m.Files)
	}
	// Nothing readable in the stored object.
	raw, err := os.ReadFile(filepath.Join(f.dest.Dir(), res.Name))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"manifest", "Zorghuis", "tech0.0@zorg.example", "PGDMP", "legiond"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Fatalf("archive contains %q in clear", s)
		}
	}

	t0 := time.Now()
	v, err := Verify(ctx, f.dest, res.Name, []age.Identity{f.id})
	if err != nil || v.SHA256 != res.SHA256 || v.Size != res.Size || v.Manifest.CreatedAt != m.CreatedAt {
		t.Fatalf("verify: %+v %v", v, err)
	}
	t.Logf("TIMING verify (read back, decrypt, check every checksum): %v", time.Since(t0).Round(time.Millisecond))
	if _, err := VerifyIntegrity(ctx, f.dest, res.Name); err != nil {
		t.Fatal(err)
	}

	// Disaster: the node is gone, the database is gone. Restore into a new
	// data folder and a new, empty database.
	f.node.close()
	newDir := filepath.Join(t.TempDir(), "restored-node")
	dbName, dsn := emptyDatabase(t)
	rr, err := Restore(ctx, f.dest, res.Name, []age.Identity{f.id}, Target{DataDir: newDir, Database: pgDump(t, dsn)})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Logf("TIMING restore (full): download+trailer %v, verify %v, write files+pg_restore %v, total %v",
		rr.Download.Round(time.Millisecond), rr.Verify.Round(time.Millisecond), rr.Restore.Round(time.Millisecond), rr.Took.Round(time.Millisecond))

	// Registry: every row of every table is back.
	after := tableDump(t, dsn)
	if !reflect.DeepEqual(f.before, after) {
		for tbl := range f.before {
			if !reflect.DeepEqual(f.before[tbl], after[tbl]) {
				t.Errorf("table %s differs after restore: %d rows before, %d after", tbl, len(f.before[tbl]), len(after[tbl]))
			}
		}
		t.Fatal("registry differs")
	}
	// ... and the application can use it: role, password, grants, keys.
	st, err := postgres.Open(ctx, postgres.Config{DSN: pgtest.Current(t).UserDSN(dbName, postgres.AppRole, testAppPassword), KeyRing: f.reg.keys})
	if err != nil {
		t.Fatalf("open the restored registry as the application: %v", err)
	}
	defer st.Close()
	err = st.InTx(ctx, postgres.PlatformScope("t"), func(tx *postgres.Tx) error {
		devs, err := tx.Devices().List(ctx, postgres.ListOptions{Limit: 1})
		if err != nil || len(devs) != 1 {
			return fmt.Errorf("list devices: %v %w", devs, err)
		}
		keys, err := tx.Devices().Keys(ctx, devs[0].DevEUI)
		if err != nil || keys.AppKey == nil {
			return fmt.Errorf("device keys: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := postgres.ParseAuditAnchor(m.Registry.AuditHead)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := st.VerifyAudit(ctx, anchor); err != nil || !rep.Intact() || rep.Entries != dsCustomers*dsAudit {
		t.Fatalf("audit chain after restore: %+v %v", rep, err)
	}

	// Node: the twin store opens with the same storage master key and holds
	// exactly what it held.
	for _, p := range []string{testKeyStore, testStoreDir} {
		if _, err := os.Stat(filepath.Join(newDir, filepath.FromSlash(p))); err != nil {
			t.Fatalf("restored data folder lacks %s: %v", p, err)
		}
	}
	restored := openNode(t, newDir, f.node.masterKey)
	got := readNode(t, restored)
	if got.Events != dsTwins*dsEvents || len(got.Twins) != dsTwins || !reflect.DeepEqual(got, f.nodeWant) {
		t.Fatalf("twin store after restore: %d twins, %d events, %d offsets (want %d, %d, %d)",
			len(got.Twins), got.Events, len(got.Offsets), len(f.nodeWant.Twins), f.nodeWant.Events, len(f.nodeWant.Offsets))
	}
	// A wrong master key does not open it: the files are still encrypted.
	restored.close()
	if _, err := encfs.Open(encfs.Config{Dir: filepath.Join(newDir, "storage"), MasterKey: encfs.GenerateMasterKey()}); !errors.Is(err, encfs.ErrWrongMasterKey) {
		t.Fatalf("restored storage with another master key: %v", err)
	}

	// Restoring again over what was restored is refused, for both targets.
	_, err = Restore(ctx, f.dest, res.Name, []age.Identity{f.id}, Target{DataDir: newDir})
	if !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a non-empty data folder: %v", err)
	}
	_, err = Restore(ctx, f.dest, res.Name, []age.Identity{f.id}, Target{Database: pgDump(t, dsn)})
	if !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a non-empty database: %v", err)
	}
}

func TestBackupDatabaseOnlyRoundTrip(t *testing.T) {
	reg := populateRegistry(t)
	ctx := testCtx(t)
	dest, err := NewLocalDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id, rcpt := testKey(t)
	res, err := Backup(ctx, Config{Database: pgDump(t, reg.db.DSN), Recipients: []age.Recipient{rcpt}, Destination: dest, NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING backup (db): dump %v, encrypt+store %v, total %v; archive %d bytes",
		res.Dump.Round(time.Millisecond), res.Upload.Round(time.Millisecond), res.Took.Round(time.Millisecond), res.Size)
	if res.Manifest.Kind != KindDatabase || res.Manifest.NodeData != nil {
		t.Fatalf("manifest: %+v", res.Manifest)
	}
	// A registry-only archive cannot restore a data folder.
	_, err = Restore(ctx, dest, res.Name, []age.Identity{id}, Target{DataDir: filepath.Join(t.TempDir(), "x")})
	if !errors.Is(err, ErrMissingPart) {
		t.Fatalf("db archive into a data folder: %v", err)
	}
	// Into a migrated (non-empty) database: refused before anything is read.
	_, err = Restore(ctx, dest, res.Name, []age.Identity{id}, Target{Database: pgDump(t, pgtest.NewDatabase(t).DSN)})
	if !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a migrated database: %v", err)
	}
	_, dsn := emptyDatabase(t)
	rr, err := Restore(ctx, dest, res.Name, []age.Identity{id}, Target{Database: pgDump(t, dsn)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING restore (db): total %v", rr.Took.Round(time.Millisecond))
	if !reflect.DeepEqual(tableDump(t, reg.db.DSN), tableDump(t, dsn)) {
		t.Fatal("registry differs after restore")
	}
}

// TestDumpAsOwnerMember dumps as a login role that is only a member of
// legiond_owner (no superuser, no BYPASSRLS), as a migration role in
// production would be: forced row security must not filter the dump.
func TestDumpAsOwnerMember(t *testing.T) {
	reg := populateRegistry(t)
	ctx := testCtx(t)
	srv := pgtest.Current(t)
	role := "migrator_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if err := srv.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD 'migrator-pw' NOSUPERUSER NOBYPASSRLS IN ROLE `+postgres.OwnerRole); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Exec(context.Background(), `DROP ROLE IF EXISTS `+role) })
	dsn := reg.db.UserDSN(role, "migrator-pw")
	dest, err := NewLocalDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id, rcpt := testKey(t)
	res, err := Backup(ctx, Config{Database: pgDump(t, dsn), Recipients: []age.Recipient{rcpt}, Destination: dest, NodeID: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Manifest.Registry.Tables["legiond.users"]; n != dsCustomers*dsUsers {
		t.Fatalf("users counted as the owner member: %d", n)
	}
	_, target := emptyDatabase(t)
	if _, err := Restore(ctx, dest, res.Name, []age.Identity{id}, Target{Database: pgDump(t, target)}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tableDump(t, reg.db.DSN), tableDump(t, target)) {
		t.Fatal("registry differs after a dump as an owner member")
	}
}
