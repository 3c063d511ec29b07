package pebblestore

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultCacheSize           = 64 << 20
	DefaultMemTableSize        = 64 << 20
	DefaultGroupCommitMaxBatch = 1000
	DefaultQueueSize           = 4096
	DefaultVersionCacheSize    = 1 << 18
	DefaultRetention           = 7 * 24 * time.Hour
)

// Config configures a Store. Zero fields take the documented defaults, and
// the zero value of every field is the safe choice: in particular syncing is
// turned off by NoSync rather than on by a Sync flag, so a Config that forgot
// the field is durable.
type Config struct {
	// Dir is the Pebble directory (required). It is created if missing.
	Dir string
	// FS is the filesystem Pebble uses. Default vfs.Default. This is where
	// the encryption-at-rest wrapper plugs in, and tests pass vfs.NewMem or
	// vfs.NewCrashableMem.
	FS vfs.FS
	// Logger receives Pebble's own log lines and the store's lifecycle
	// events (open, close, prune). Never used on the write path. Default:
	// discard.
	Logger *slog.Logger
	// CacheSize is the block cache for sstable blocks, in bytes. Default
	// 64 MiB. Pebble charges memtables against its cache, so Open asks
	// Pebble for CacheSize + 2×MemTableSize (two memtables can be live at
	// once); without that headroom full memtables evict every cached block
	// and each read goes to disk (measured: 0 hits after a 64 MiB
	// memtable filled a 64 MiB cache).
	CacheSize int64
	// MemTableSize is Pebble's memtable size in bytes. Default 64 MiB: twin
	// snapshots are rewritten constantly, and a large memtable absorbs the
	// overwrites before they reach an sstable. Pebble caps it below 4 GiB.
	MemTableSize uint64
	// NoSync acknowledges writes once they are in the WAL buffer and the
	// memtable, without waiting for fsync. A process crash can then lose
	// acknowledged writes. Default false (every commit syncs the WAL); only
	// benchmarks and throwaway dev stores should set it.
	NoSync bool
	// GroupCommitMaxDelay is how long the committer lingers, after the
	// first unit of a group, for more units when the queue runs dry.
	// Default 0: no lingering. Grouping does not need it: every unit that
	// arrives while one group is being fsynced joins the next group, so the
	// group size follows the load by itself (as PostgreSQL's commit_delay,
	// also 0 by default). Measured by BenchmarkGroupCommit, a 1 ms linger
	// lowered throughput at every concurrency (16 synchronous submitters:
	// 10k instead of 22k writes/s; 256: 88k instead of 127–147k) because
	// the committer idles while it could be syncing. Set it only to trade
	// latency for fewer fsyncs on an IOPS-limited disk at moderate load.
	GroupCommitMaxDelay time.Duration
	// GroupCommitMaxBatch caps the writes of one group commit. Default
	// 1,000. A single unit larger than this is committed alone: units are
	// never split, because a unit is atomic.
	GroupCommitMaxBatch int
	// QueueSize bounds the submission queue, in units (one Submit or
	// Commit call each). Default 4,096. When it is full, Submit blocks until
	// there is room or its ctx ends, and TrySubmit returns ErrOverloaded.
	QueueSize int
	// VersionCacheSize bounds the committer's map of current twin versions,
	// which saves a Pebble read per fenced write. Default 262,144 twins; a
	// miss costs one Get.
	VersionCacheSize int
	// Retention is how long the recent-event window keeps events, used by
	// Expire. Default 7 days.
	Retention time.Duration
}

// Validate reports a configuration that Open would refuse.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("pebblestore config: Dir is required: %w", ErrInvalid)
	case c.CacheSize < 0:
		return fmt.Errorf("pebblestore config: CacheSize %d < 0: %w", c.CacheSize, ErrInvalid)
	case c.MemTableSize >= 4<<30:
		return fmt.Errorf("pebblestore config: MemTableSize %d ≥ 4 GiB: %w", c.MemTableSize, ErrInvalid)
	case c.GroupCommitMaxDelay < 0 || c.GroupCommitMaxDelay > time.Second:
		return fmt.Errorf("pebblestore config: GroupCommitMaxDelay %s outside [0, 1s]: %w", c.GroupCommitMaxDelay, ErrInvalid)
	case c.GroupCommitMaxBatch < 0:
		return fmt.Errorf("pebblestore config: GroupCommitMaxBatch %d < 0: %w", c.GroupCommitMaxBatch, ErrInvalid)
	case c.QueueSize < 0:
		return fmt.Errorf("pebblestore config: QueueSize %d < 0: %w", c.QueueSize, ErrInvalid)
	case c.VersionCacheSize < 0:
		return fmt.Errorf("pebblestore config: VersionCacheSize %d < 0: %w", c.VersionCacheSize, ErrInvalid)
	case c.Retention < 0:
		return fmt.Errorf("pebblestore config: Retention %s < 0: %w", c.Retention, ErrInvalid)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = DefaultMemTableSize
	}
	if c.GroupCommitMaxBatch == 0 {
		c.GroupCommitMaxBatch = DefaultGroupCommitMaxBatch
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.VersionCacheSize == 0 {
		c.VersionCacheSize = DefaultVersionCacheSize
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	return c
}
