package main

import (
	"context"
	"flag"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/loadtest/fleet"
	"github.com/legionelladossier/legiond/storage/backup"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// TestNodeRunsBackupSchedule starts a node with `legiond run`'s backup
// flags and a fake clock: the node finds no backup and takes a full one at
// once (catch-up), then sleeps until the next daily slot; advancing the
// clock there produces the daily registry backup. Each is verified by
// reading it back with the identity, and recorded in the audit trail.
func TestNodeRunsBackupSchedule(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Setenv(envBackupDatabaseURL, "")
	t.Setenv(envBackupRecipient, "")
	reg := startRegistry(t, ctx)
	start := time.Now().UTC().Truncate(time.Minute)
	fl, ups := fleetUplinks(t, fleet.Config{Sensors: 3, Gateways: 1, Seed: 21, Start: start}, start.Add(2*time.Hour))
	if err := provisionFleet(ctx, reg.store, fl, "Backup schedule fleet"); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	idFile, dest := filepath.Join(tmp, "backup-identity.txt"), filepath.Join(tmp, "backups")
	rcpt, err := backup.WriteIdentityFile(idFile, true, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var bf backupScheduleFlags
	bf.register(fs)
	if err := fs.Parse([]string{"--backup-to", dest, "--backup-database-url", reg.adminDSN,
		"--backup-recipient", rcpt, "--backup-identity", idFile}); err != nil {
		t.Fatal(err)
	}
	// Wednesday 10:00 UTC: the next slot is Thursday 02:00, a daily one.
	clk := newFakeClock(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC))
	bf.clock = clk
	reports := make(chan backup.RunReport, 4)
	dataDir := filepath.Join(tmp, "node")
	n, err := startNode(ctx, nodeConfig{DataDir: dataDir, Partitions: 2, DatabaseURL: reg.appDSN, MasterKeyFile: reg.keyFile,
		StorageMasterKeyFile: reg.storageKeyFile, Backups: &nodeBackups{Flags: &bf, OnRun: func(r backup.RunReport) { reports <- r }}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	produce(t, ctx, n.brokers, ups)

	next := func() backup.RunReport {
		t.Helper()
		select {
		case r := <-reports:
			if !r.OK() {
				t.Fatalf("%s backup failed at %s: %v", r.Kind, r.Step, r.Err)
			}
			return r
		case <-ctx.Done():
			t.Fatal("no backup ran")
			return backup.RunReport{}
		}
	}
	full := next()
	if full.Kind != backup.KindFull || full.Verified.Manifest == nil || full.Verified.Manifest.NodeData == nil ||
		full.Verified.Manifest.NodeData.KeyStore != encryptedKeyRel {
		t.Fatalf("catch-up run: kind %s, verified manifest %+v", full.Kind, full.Verified.Manifest)
	}
	// The scheduler sleeps until the next slot; wake it there.
	slot := <-clk.created
	if want := time.Date(2026, 3, 5, 2, 0, 0, 0, time.UTC); !slot.Equal(want) {
		t.Fatalf("next slot %v, want %v", slot, want)
	}
	clk.AdvanceTo(slot)
	daily := next()
	if daily.Kind != backup.KindDatabase || daily.Verified.Manifest == nil {
		t.Fatalf("daily run: kind %s, verified %+v", daily.Kind, daily.Verified)
	}
	t.Logf("full backup %s (%d bytes, %v), daily %s (%d bytes, %v)", full.Result.Name, full.Result.Size,
		full.Finished.Sub(full.Started), daily.Result.Name, daily.Result.Size, daily.Result.Took)

	// Both are at the destination and in the audit trail.
	d, err := backup.OpenDestination(dest, backup.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := d.List(ctx, "legiond-")
	if err != nil || len(objs) != 2 {
		t.Fatalf("destination holds %v (%v), want the two backups", objs, err)
	}
	var audited []string
	err = reg.store.InTx(ctx, postgres.PlatformScope("test"), func(tx *postgres.Tx) error {
		es, err := tx.AuditEntries(ctx, postgres.AuditFilter{Action: postgres.AuditBackupCreated})
		for _, e := range es {
			audited = append(audited, e.Target)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(audited) != 2 || audited[0] != full.Result.Name || audited[1] != daily.Result.Name {
		t.Errorf("audit trail has backups %v, want %s and %s", audited, full.Result.Name, daily.Result.Name)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if st := n.backups.sched.Stats(); st.Successes != 2 || st.Failures != 0 {
		t.Errorf("scheduler stats %+v", st)
	}
}

// fakeClock is a backup.Clock whose timers fire when the test advances
// it; created announces each new timer's deadline, so a test waits for the
// scheduler to go to sleep instead of sleeping itself.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	created chan time.Time
}

type fakeTimer struct {
	c        chan time.Time
	deadline time.Time
	stopped  atomic.Bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { return !t.stopped.Swap(true) }

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, created: make(chan time.Time, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) backup.Timer {
	c.mu.Lock()
	t := &fakeTimer{c: make(chan time.Time, 1), deadline: c.now.Add(d)}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.created <- t.deadline
	return t
}

// AdvanceTo moves the clock and fires the timers that are due.
func (c *fakeClock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.stopped.Load() && !tm.deadline.After(t) {
			tm.c <- t
			continue
		}
		kept = append(kept, tm)
	}
	c.timers = kept
}
