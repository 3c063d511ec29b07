package main

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/legionelladossier/legiond/storage/backup"
	"github.com/legionelladossier/legiond/storage/encfs"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// writeEncryptedNode creates a stopped node's data folder in the encrypted
// layout with a few twins, and returns its storage master key file.
func writeEncryptedNode(t *testing.T, dataDir string) (string, []pebblestore.TwinEntry) {
	t.Helper()
	mk := encfs.GenerateMasterKey()
	keyFile := filepath.Join(t.TempDir(), "storage-master.key")
	if err := os.WriteFile(keyFile, []byte(encfs.EncodeMasterKey(mk)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	efs, err := encfs.Open(encfs.Config{Dir: filepath.Join(dataDir, "storage"), MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	st, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dataDir, encryptedTwinDir), FS: efs})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		eui := pebblestore.EUI{0x70, 0xB3, 0xD5, 0x7E, 0, 0, 0, byte(i)}
		if err := st.Commit(context.Background(), pebblestore.PutTwin("00000000-0000-4000-8000-000000000001", pebblestore.KindSensor, eui,
			pebblestore.TwinUpdate{Epoch: 1, AppliedSeq: uint64(i), Snapshot: []byte("state-" + hex.EncodeToString(eui[:]))}),
			pebblestore.PutOffset(pebblestore.TopicPartition{Topic: "lorawan.uplink", Partition: 0}, int64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	twins := readTwins(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := efs.Close(); err != nil {
		t.Fatal(err)
	}
	return keyFile, twins
}

func readTwins(t *testing.T, st *pebblestore.Store) []pebblestore.TwinEntry {
	t.Helper()
	var out []pebblestore.TwinEntry
	if err := st.ForEachTwin(context.Background(), func(e pebblestore.TwinEntry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackupAndRestoreCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const db, pw = "legiond_backup_cli", "backup-cli-password"
	srv, run := cliDB(t, ctx, db, pw)
	t.Setenv(envBackupRecipient, "")
	t.Setenv(encfs.EnvMasterKey, "")

	// A registry with a customer and an audit trail.
	st, err := postgres.Open(ctx, postgres.Config{DSN: srv.UserDSN(db, postgres.AppRole, pw)})
	if err != nil {
		t.Fatal(err)
	}
	err = st.InTx(ctx, postgres.PlatformScope("cli:test"), func(tx *postgres.Tx) error {
		c, err := tx.Customers().Create(ctx, postgres.NewCustomer{Name: "Zorghuis De Linde"})
		if err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, postgres.AuditEntry{Action: postgres.AuditAdminChange, Target: "customer:" + c.ID.String()})
		return err
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "node")
	masterKeyFile, twins := writeEncryptedNode(t, dataDir)

	// Keys.
	idFile := filepath.Join(t.TempDir(), "backup-identity.txt")
	code, rcpt, errs := run("backup", "keygen", "--out", idFile, "--dev")
	rcpt = strings.TrimSpace(rcpt)
	if code != exitOK || !strings.HasPrefix(rcpt, "age1") {
		t.Fatalf("keygen: %d %q %s", code, rcpt, errs)
	}
	if b, _ := os.ReadFile(idFile); !strings.Contains(string(b), "DEVELOPMENT ONLY") || !strings.Contains(string(b), rcpt) {
		t.Fatalf("identity file:\n%s", b)
	}
	if code, _, _ = run("backup", "keygen", "--out", idFile); code != exitFailure {
		t.Fatal("keygen overwrote an identity")
	}

	// Back up: full (node stopped), verified with the identity; then db-only.
	bdir := filepath.Join(t.TempDir(), "backups")
	to := "file://" + bdir
	admin := srv.DSN(db)
	code, out, errs := run("backup", "run", "--to", to, "--database-url", admin, "--data-dir", dataDir,
		"--master-key-file", masterKeyFile, "--recipient-file", idFile, "--identity", idFile, "--node", "cli-node")
	if code != exitOK || !strings.Contains(out, "verified: decrypted and checked") {
		t.Fatalf("backup run (full): %d\n%s%s", code, out, errs)
	}
	t.Logf("legiond backup run (full):\n%s", out)
	full := regexp.MustCompile(`wrote (legiond-full-\S+\.tar\.age)`).FindStringSubmatch(out)
	anchor := regexp.MustCompile(`audit anchor: (\S+)`).FindStringSubmatch(out)
	if full == nil || anchor == nil {
		t.Fatalf("no name or anchor in:\n%s", out)
	}
	t.Setenv(envBackupDatabaseURL, admin)
	code, out, errs = run("backup", "run", "--to", to, "--recipient", rcpt, "--node", "cli-node")
	if code != exitOK || !strings.Contains(out, "legiond-db-") || !strings.Contains(out, "pass --identity to verify") {
		t.Fatalf("backup run (db): %d\n%s%s", code, out, errs)
	}
	t.Setenv(envBackupDatabaseURL, "")
	code, out, _ = run("backup", "list", "--from", to)
	if code != exitOK || !strings.Contains(out, full[1]) || !strings.Contains(out, "db ") || strings.Count(out, "cli-node") != 4 {
		t.Fatalf("list:\n%s", out)
	}
	code, out, errs = run("backup", "verify", full[1], "--from", to, "--identity", idFile)
	if code != exitOK || !strings.Contains(out, "files checked") || !strings.Contains(out, "keystore \"storage/STORAGE-KEYS\"") {
		t.Fatalf("verify: %d\n%s%s", code, out, errs)
	}
	if code, out, _ = run("backup", "verify", "latest", "--from", to); code != exitOK || !strings.Contains(out, "trailer checked only") {
		t.Fatalf("verify latest: %d %s", code, out)
	}
	// Both backups were recorded in the audit trail.
	code, out, errs = run("audit", "verify", "--database-url", admin)
	if code != exitOK || !strings.Contains(out, "intact: 3 entries") {
		t.Fatalf("audit after backups: %d %s%s", code, out, errs)
	}

	// Restore the newest full backup into a new folder and a new database.
	const restored = "legiond_backup_cli_restored"
	if err := srv.CreateDatabase(ctx, restored, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.DropDatabase(context.Background(), restored) })
	newDir := filepath.Join(t.TempDir(), "node-restored")
	code, out, errs = run("restore", "--from", to, "--name", "latest", "--identity", idFile, "--data-dir", newDir, "--database-url", srv.DSN(restored))
	if code != exitOK || !strings.Contains(out, "restored "+full[1]) {
		t.Fatalf("restore: %d\n%s%s", code, out, errs)
	}
	t.Logf("legiond restore:\n%s", out)
	// The restored registry works for the application, its audit trail
	// holds the anchor and the restore itself.
	code, out, errs = run("audit", "verify", "--database-url", srv.UserDSN(restored, postgres.AppRole, pw), "--anchor", anchor[1])
	if code != exitOK || !strings.Contains(out, "intact: 2 entries, 1 anchors") {
		t.Fatalf("audit of the restored registry: %d %s%s", code, out, errs)
	}
	// The node's twins are back, readable with the same master key.
	mk, err := encfs.LoadMasterKey(masterKeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	efs, err := encfs.Open(encfs.Config{Dir: filepath.Join(newDir, "storage"), MasterKey: mk, MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	rst, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(newDir, encryptedTwinDir), FS: efs})
	if err != nil {
		t.Fatal(err)
	}
	got := readTwins(t, rst)
	_ = rst.Close()
	_ = efs.Close()
	if len(got) != len(twins) || string(got[7].Snapshot) != string(twins[7].Snapshot) {
		t.Fatalf("restored %d twins, want %d", len(got), len(twins))
	}
	// Again into the same targets: refused, nothing changed.
	code, _, errs = run("restore", "--from", to, "--name", full[1], "--identity", idFile, "--data-dir", newDir)
	if code != exitFailure || !strings.Contains(errs, "not empty") || !strings.Contains(errs, "nothing was changed") {
		t.Fatalf("restore into used targets: %d %s", code, errs)
	}
	// A damaged archive is refused by verify and restore.
	p := filepath.Join(bdir, full[1])
	b, _ := os.ReadFile(p)
	b[len(b)/3] ^= 0x80
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run("backup", "verify", full[1], "--from", to, "--identity", idFile)
	if code != exitFailure || !strings.Contains(errs, "modified") {
		t.Fatalf("verify damaged: %d %s %s", code, out, errs)
	}
	code, _, errs = run("restore", "--from", to, "--name", full[1], "--identity", idFile, "--data-dir", filepath.Join(t.TempDir(), "x"))
	if code != exitFailure || !strings.Contains(errs, "damaged") {
		t.Fatalf("restore damaged: %d %s", code, errs)
	}
	code, out, _ = run("backup", "prune", "--from", to, "--dry-run")
	if code != exitOK || !strings.Contains(out, "kept 2 backups") {
		t.Fatalf("prune: %d %s", code, out)
	}
	// Usage errors.
	for _, args := range [][]string{
		{"backup", "run", "--to", to, "--database-url", admin}, // no recipient
		{"backup", "run", "--to", to, "--database-url", admin, "--recipient", rcpt, "--kind", "full"},
		{"restore", "--from", to, "--name", "latest", "--identity", idFile},
		{"backup", "nope"},
	} {
		if code, _, _ := run(args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}

	// To an S3 bucket (in-process, TLS), registry only.
	be := s3mem.New()
	if err := be.CreateBucket("legiond-backups"); err != nil {
		t.Fatal(err)
	}
	s3srv := httptest.NewTLSServer(gofakes3.New(be).Server())
	defer s3srv.Close()
	caFile := filepath.Join(t.TempDir(), "s3-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s3srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envS3AccessKey, "test")
	t.Setenv(envS3SecretKey, "test-secret")
	s3flags := []string{"--s3-endpoint", s3srv.URL, "--s3-ca-file", caFile, "--s3-path-style"}
	code, out, errs = run(append([]string{"backup", "run", "--to", "s3://legiond-backups/eu/node-1", "--database-url", admin, "--recipient", rcpt, "--identity", idFile}, s3flags...)...)
	if code != exitOK || !strings.Contains(out, "verified") {
		t.Fatalf("backup to S3: %d\n%s%s", code, out, errs)
	}
	code, out, _ = run(append([]string{"backup", "list", "--from", "s3://legiond-backups/eu/node-1"}, s3flags...)...)
	if code != exitOK || !strings.Contains(out, "legiond-db-") {
		t.Fatalf("list S3: %d %s", code, out)
	}
}

func TestBackupScheduleFlags(t *testing.T) {
	t.Setenv(envBackupDatabaseURL, "")
	t.Setenv(envBackupRecipient, "")
	_, rcpt, err := backup.GenerateIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) *backupScheduleFlags {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var b backupScheduleFlags
		b.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return &b
	}
	cp := fakeCP{}
	if s, err := parse().scheduler(cp, t.TempDir(), "twins", "", nil, nil); s != nil || err != nil {
		t.Fatalf("no --backup-to: %v %v", s, err)
	}
	dir := t.TempDir()
	if _, err := parse("--backup-to", dir, "--backup-recipient", rcpt).scheduler(cp, dir, "twins", "", nil, nil); err == nil ||
		!strings.Contains(err.Error(), "--backup-database-url") {
		t.Fatalf("without a backup database: %v", err)
	}
	for _, bad := range [][]string{
		{"--backup-daily-at", "25:00"}, {"--backup-weekly-on", "someday"}, {"--backup-keep-daily", "0"}, {}, // last: no recipient
	} {
		args := append([]string{"--backup-to", dir, "--backup-database-url", "postgres://x@localhost/db"}, bad...)
		if len(bad) > 0 {
			args = append(args, "--backup-recipient", rcpt)
		}
		if _, err := parse(args...).scheduler(cp, dir, "twins", "", nil, nil); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	s, err := parse("--backup-to", dir, "--backup-database-url", "postgres://x@localhost/db", "--backup-recipient", rcpt,
		"--backup-daily-at", "03:30", "--backup-weekly-on", "Saturday").scheduler(cp, dir, "twins", "", nil, nil)
	if err != nil || s == nil {
		t.Fatalf("scheduler: %v", err)
	}
	// Friday 2025-02-28 04:00 → Saturday 03:30 is the weekly full backup.
	next, kind := s.Next(time.Date(2025, 2, 28, 4, 0, 0, 0, time.UTC))
	if !next.Equal(time.Date(2025, 3, 1, 3, 30, 0, 0, time.UTC)) || kind != backup.KindFull {
		t.Fatalf("next: %v %s", next, kind)
	}
	s, err = parse("--backup-to", dir, "--backup-database-url", "postgres://x@localhost/db", "--backup-recipient", rcpt,
		"--backup-daily-at", "00:00").scheduler(cp, dir, "twins", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next, _ := s.Next(time.Date(2025, 2, 28, 4, 0, 0, 0, time.UTC)); !next.Equal(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("midnight: %v", next)
	}
}

type fakeCP struct{}

func (fakeCP) Checkpoint(context.Context, string) error { return nil }
