package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/legionelladossier/legiond/storage/backup"
)

// devBackupIdentityFile is the backup identity `legiond dev` keeps next to
// its data: a backup key beside the data it protects protects nothing.
const devBackupIdentityFile = "backup-identity.DEVELOPMENT-ONLY.txt"

// nodeBackups configures the backup schedule inside a node: a registry
// backup every day, a full one (registry and the twin store's checkpoint,
// with the Kafka offsets it covers) once a week instead, each read back and
// verified, then the retention policy; every backup is an audit entry.
type nodeBackups struct {
	// Flags are `legiond run`'s --backup-* flags. Required unless Dev.
	Flags *backupScheduleFlags
	// Dev backs up into DataDir/backups, encrypted to a DEVELOPMENT-ONLY
	// backup identity kept in DataDir (created on first use), dumping the
	// development registry as its superuser; the identity also verifies
	// each backup completely.
	Dev bool
	// OnRun, when set, receives every run's report after it is recorded
	// (tests await backups through it).
	OnRun func(backup.RunReport)
}

// backupRunner is the schedule running in a node.
type backupRunner struct {
	sched  *backup.Scheduler
	cancel context.CancelFunc
	done   chan struct{}
}

// startBackups starts the backup schedule when the node has one. It runs
// once the registry and the twin store are open, and stops (stopBackups)
// before the store closes, since a run checkpoints the store.
func (n *node) startBackups(ctx context.Context) error {
	nb := n.cfg.Backups
	if nb == nil {
		return nil
	}
	flags := nb.Flags
	if nb.Dev {
		f, err := n.devBackupFlags()
		if err != nil {
			return fmt.Errorf("node: development backups: %w", err)
		}
		if f == nil {
			return nil
		}
		flags = f
	}
	if flags == nil {
		return errors.New("node: backups without flags")
	}
	storeDir, keyStore := n.twinStoreLayout()
	log := n.log.With("component", "backup")
	sched, err := flags.scheduler(n.store, n.cfg.DataDir, storeDir, keyStore, log, nb.OnRun)
	if err != nil {
		return fmt.Errorf("node: backup schedule: %w", err)
	}
	if sched == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &backupRunner{sched: sched, cancel: cancel, done: make(chan struct{})}
	n.backups = r
	go func() {
		defer close(r.done)
		_ = sched.Run(ctx) // returns nil when ctx ends; failed runs are logged and counted
	}()
	next, kind := sched.Next(time.Now())
	log.Info("backup schedule started", "to", flags.to, "next", next, "next_kind", kind)
	return nil
}

// stopBackups stops the schedule and waits for a run in progress (its
// context is cancelled, so it ends early and leaves no archive).
func (n *node) stopBackups() error {
	if n.backups == nil {
		return nil
	}
	n.backups.cancel()
	<-n.backups.done
	return nil
}

// devBackupFlags is the schedule of `legiond dev`: into DataDir/backups,
// to the development backup identity. nil (no schedule, with a warning)
// when the registry is not the private development server and no backup
// database URL is set.
func (n *node) devBackupFlags() (*backupScheduleFlags, error) {
	dbURL := os.Getenv(envBackupDatabaseURL)
	if n.devdb != nil && n.devdb.AdminDSN != "" {
		dbURL = n.devdb.AdminDSN
	}
	if dbURL == "" {
		n.log.Warn("development backups off: the registry is external; set " + envBackupDatabaseURL)
		return nil, nil
	}
	idFile := filepath.Join(n.cfg.DataDir, devBackupIdentityFile)
	if _, err := os.Stat(idFile); errors.Is(err, os.ErrNotExist) {
		if _, err := backup.WriteIdentityFile(idFile, true, false, time.Now()); err != nil {
			return nil, err
		}
		n.log.Warn("created a DEVELOPMENT-ONLY backup identity next to the data", "file", idFile)
	} else if err != nil {
		return nil, err
	}
	dir := filepath.Join(n.cfg.DataDir, "backups")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	def := backup.DefaultRetention()
	f := &backupScheduleFlags{
		to: dir, dbURL: dbURL, identity: idFile, dailyAt: "02:00", weeklyOn: "sunday",
		keepD: def.Daily, keepW: def.Weekly, keepM: def.Monthly,
	}
	f.rf.files = []string{idFile}
	return f, nil
}
