package raftstore

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultCacheSize    = 8 << 20
	DefaultMemTableSize = 16 << 20
)

// Config configures a Store.
type Config struct {
	// Dir is the Pebble directory (required), created if missing. It must
	// not be the twin store's directory.
	Dir string
	// FS is the filesystem Pebble uses. Default vfs.Default; the
	// encryption-at-rest wrapper plugs in here, tests pass vfs.NewMem or
	// vfs.NewCrashableMem.
	FS vfs.FS
	// Logger receives Pebble's own log lines and open/close events. Never
	// used per write. Default: discard.
	Logger *slog.Logger
	// CacheSize is Pebble's block cache in bytes. Default 8 MiB: raft reads
	// recent entries, which are mostly still in the memtable.
	CacheSize int64
	// MemTableSize is Pebble's memtable size in bytes. Default 16 MiB.
	MemTableSize uint64
}

// Validate reports a configuration that Open would refuse.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("raftstore config: Dir is required: %w", ErrInvalid)
	case c.CacheSize < 0:
		return fmt.Errorf("raftstore config: CacheSize %d < 0: %w", c.CacheSize, ErrInvalid)
	case c.MemTableSize >= 4<<30:
		return fmt.Errorf("raftstore config: MemTableSize %d ≥ 4 GiB: %w", c.MemTableSize, ErrInvalid)
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
	return c
}
