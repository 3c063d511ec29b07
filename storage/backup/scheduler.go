package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"filippo.io/age"
)

// Clock is the scheduler's view of time. Tests inject a fake one whose
// timers fire when the test advances it, so nothing sleeps.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// SystemClock is the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) NewTimer(d time.Duration) Timer {
	return sysTimer{time.NewTimer(d)}
}

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }

// ScheduleConfig configures a Scheduler.
type ScheduleConfig struct {
	// Backup is the template of every run (Database, Node, Recipients,
	// Destination, NodeID, ...); Kind and Now are set per run.
	Backup Config
	// Identities, when set, verify each new backup completely (Verify).
	// Default nil: the node holds only the public key, and each backup is
	// read back and checked without decrypting (VerifyIntegrity); verify
	// fully with `legiond backup verify` where the identity is kept.
	Identities []age.Identity
	// Retention applies after each verified backup. Default
	// DefaultRetention().
	Retention Retention
	// DailyAt is the time of day of the daily run, as an offset from
	// midnight in Location. Default (0) 02:00; midnight is 24h.
	DailyAt time.Duration
	// WeeklyOn is the day whose run is a full backup (registry and node
	// data) instead of a registry-only one. Default Sunday. Without
	// Backup.Node every run is a registry backup.
	WeeklyOn time.Weekday
	// Location of DailyAt and WeeklyOn. Default UTC.
	Location *time.Location
	// RunTimeout bounds one run. Default 6 hours.
	RunTimeout time.Duration
	// SkipCatchUp turns off the run at start-up that makes up for missed
	// runs (no backup of the day's kind in the last 26 hours, no full
	// backup in the last 8 days). Default false: catch up.
	SkipCatchUp bool
	// Clock defaults to SystemClock().
	Clock Clock
	// Logger receives one line per run. Default: discard.
	Logger *slog.Logger
	// OnRun, when set, is called after every run (audit trail, alerts). It
	// runs on the scheduler's goroutine.
	OnRun func(RunReport)
}

// Validate reports a configuration NewScheduler would refuse.
func (c *ScheduleConfig) Validate() error {
	b := c.Backup
	b.Kind = ""
	b.setDefaults()
	if err := b.Validate(); err != nil {
		return err
	}
	if err := c.Retention.Validate(); err != nil && c.Retention != (Retention{}) {
		return err
	}
	if c.DailyAt < 0 || c.DailyAt > 24*time.Hour {
		return fmt.Errorf("%w: daily time %v is not within a day", ErrInvalid, c.DailyAt)
	}
	if c.WeeklyOn < time.Sunday || c.WeeklyOn > time.Saturday {
		return fmt.Errorf("%w: weekday %d", ErrInvalid, c.WeeklyOn)
	}
	return nil
}

// RunReport is the outcome of one scheduled run.
type RunReport struct {
	Kind     Kind
	Started  time.Time
	Finished time.Time
	// Result is the backup written (zero if the backup step failed).
	Result Result
	// Verified is what reading it back found.
	Verified Verification
	// Step is where the run failed ("backup", "verify"), "" on success.
	Step string
	Err  error
	// Deleted are the objects Prune removed; PruneErr is the first
	// deletion that failed (the run still counts as a success).
	Deleted  []Object
	PruneErr error
	// Discarded: the new archive failed verification and was deleted.
	Discarded bool
}

// OK reports a successful run.
func (r RunReport) OK() bool { return r.Err == nil }

// SchedulerStats are the scheduler's counters.
type SchedulerStats struct {
	Runs, Successes, Failures uint64
	// PruneFailures counts deletions that failed; Deleted counts those
	// that succeeded.
	PruneFailures, Deleted   uint64
	LastSuccess, LastFailure time.Time
	LastName, LastError      string
	NextRun                  time.Time
	NextKind                 Kind
}

// Scheduler runs backup → verify → prune on a daily/weekly schedule.
type Scheduler struct {
	cfg   ScheduleConfig
	clock Clock
	log   *slog.Logger

	mu    sync.Mutex
	stats SchedulerStats
}

// NewScheduler validates cfg and returns a Scheduler; Run starts it.
func NewScheduler(cfg ScheduleConfig) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Retention == (Retention{}) {
		cfg.Retention = DefaultRetention()
	}
	if cfg.DailyAt == 0 {
		cfg.DailyAt = 2 * time.Hour
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.RunTimeout == 0 {
		cfg.RunTimeout = 6 * time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{cfg: cfg, clock: cfg.Clock, log: cfg.Logger}, nil
}

// Stats returns a copy of the counters.
func (s *Scheduler) Stats() SchedulerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Next returns the first scheduled run strictly after t and its kind.
func (s *Scheduler) Next(t time.Time) (time.Time, Kind) {
	lt := t.In(s.cfg.Location)
	h := s.cfg.DailyAt
	for day := 0; day < 3; day++ {
		d := lt.AddDate(0, 0, day)
		at := time.Date(d.Year(), d.Month(), d.Day(), int(h/time.Hour), int(h%time.Hour/time.Minute), int(h%time.Minute/time.Second), 0, s.cfg.Location)
		if at.After(t) {
			return at, s.kindOn(at)
		}
	}
	panic("unreachable: a day has a next run")
}

func (s *Scheduler) kindOn(at time.Time) Kind {
	if s.cfg.Backup.Node != nil && at.In(s.cfg.Location).Weekday() == s.cfg.WeeklyOn {
		return KindFull
	}
	return KindDatabase
}

// Run runs the schedule until ctx ends (it then returns nil). A failed
// run is counted and logged; the schedule goes on.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.cfg.SkipCatchUp {
		if kind, ok := s.catchUp(ctx); ok {
			s.RunOnce(ctx, kind)
		}
	}
	last := s.clock.Now()
	for {
		next, kind := s.Next(last)
		s.mu.Lock()
		s.stats.NextRun, s.stats.NextKind = next, kind
		s.mu.Unlock()
		t := s.clock.NewTimer(next.Sub(s.clock.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		// Never run one slot twice, even if the timer fired early.
		last = next
		s.RunOnce(ctx, kind)
	}
}

// catchUp decides whether a run is due at start-up.
func (s *Scheduler) catchUp(ctx context.Context) (Kind, bool) {
	now := s.clock.Now()
	if s.cfg.Backup.Node != nil {
		_, info, err := Latest(ctx, s.cfg.Backup.Destination, KindFull)
		if errors.Is(err, ErrNotFound) || (err == nil && now.Sub(info.At) > 8*24*time.Hour) {
			return KindFull, true
		}
		if err != nil {
			s.log.Warn("backup catch-up: cannot list backups", "err", err)
			return "", false
		}
	}
	_, info, err := Latest(ctx, s.cfg.Backup.Destination)
	if errors.Is(err, ErrNotFound) || (err == nil && now.Sub(info.At) > 26*time.Hour) {
		return KindDatabase, true
	}
	if err != nil {
		s.log.Warn("backup catch-up: cannot list backups", "err", err)
	}
	return "", false
}

// RunOnce runs one backup of kind now: back up, read back and verify (an
// archive that fails as truncated, tampered or inconsistent is deleted),
// then apply the retention policy. It updates the counters and calls
// OnRun.
func (s *Scheduler) RunOnce(ctx context.Context, kind Kind) RunReport {
	rep := RunReport{Kind: kind, Started: s.clock.Now()}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RunTimeout)
	defer cancel()
	defer func() { s.finish(&rep) }()

	cfg := s.cfg.Backup
	cfg.Kind = kind
	cfg.Now = s.clock.Now
	res, err := Backup(ctx, cfg)
	if err != nil {
		rep.Step, rep.Err = "backup", err
		return rep
	}
	rep.Result = res
	dest := s.cfg.Backup.Destination
	if len(s.cfg.Identities) > 0 {
		rep.Verified, err = Verify(ctx, dest, res.Name, s.cfg.Identities)
	} else {
		rep.Verified, err = VerifyIntegrity(ctx, dest, res.Name)
	}
	if err == nil && rep.Verified.SHA256 != res.SHA256 {
		err = fmt.Errorf("%w: %s reads back with SHA-256 %s, wrote %s", ErrTampered, res.Name, rep.Verified.SHA256, res.SHA256)
	}
	if err != nil {
		rep.Step, rep.Err = "verify", err
		if errors.Is(err, ErrTampered) || errors.Is(err, ErrTruncated) || errors.Is(err, ErrChecksum) {
			if derr := dest.Delete(ctx, res.Name); derr == nil {
				rep.Discarded = true
			}
		}
		return rep
	}
	objs, err := dest.List(ctx, namePrefix)
	if err != nil {
		rep.PruneErr = err
		return rep
	}
	_, remove := s.cfg.Retention.Prune(objs, s.clock.Now())
	for _, o := range remove {
		if err := dest.Delete(ctx, o.Name); err != nil {
			if rep.PruneErr == nil {
				rep.PruneErr = err
			}
			continue
		}
		rep.Deleted = append(rep.Deleted, o)
	}
	return rep
}

func (s *Scheduler) finish(rep *RunReport) {
	rep.Finished = s.clock.Now()
	s.mu.Lock()
	s.stats.Runs++
	if rep.Err == nil {
		s.stats.Successes++
		s.stats.LastSuccess, s.stats.LastName = rep.Finished, rep.Result.Name
	} else {
		s.stats.Failures++
		s.stats.LastFailure, s.stats.LastError = rep.Finished, rep.Err.Error()
	}
	s.stats.Deleted += uint64(len(rep.Deleted))
	if rep.PruneErr != nil {
		s.stats.PruneFailures++
	}
	s.mu.Unlock()
	switch {
	case rep.Err != nil:
		s.log.Error("scheduled backup failed", "kind", rep.Kind, "step", rep.Step, "err", rep.Err, "discarded", rep.Discarded)
	default:
		s.log.Info("scheduled backup done", "kind", rep.Kind, "name", rep.Result.Name, "bytes", rep.Result.Size,
			"took", rep.Finished.Sub(rep.Started), "pruned", len(rep.Deleted))
		if rep.PruneErr != nil {
			s.log.Warn("backup retention: deletion failed", "err", rep.PruneErr)
		}
	}
	if s.cfg.OnRun != nil {
		s.cfg.OnRun(*rep)
	}
}
