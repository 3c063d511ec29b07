package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Sentinel errors. Errors returned by the store wrap one of these, a Pebble
// error or raft.ErrLogNotFound; ErrKeyNotFound is returned unwrapped.
var (
	// ErrKeyNotFound is a stable-store key that was never set. Its text is
	// exactly "not found", which hashicorp/raft compares; never wrap it.
	ErrKeyNotFound = errors.New("not found")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("raftstore: closed")
	// ErrInvalid: a malformed argument or configuration.
	ErrInvalid = errors.New("raftstore: invalid argument")
	// ErrCorrupt: a stored key or value does not decode.
	ErrCorrupt = errors.New("raftstore: corrupt value")
)

// Store is a raft.LogStore and raft.StableStore on Pebble. All methods are
// safe for concurrent use.
type Store struct {
	cfg Config
	log *slog.Logger

	mu     sync.RWMutex // read-held by every call, write-held by Close
	db     *pebble.DB
	closed bool
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Open opens (creating if needed) the store in cfg.Dir.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := &pebble.Options{
		FS:                 cfg.FS,
		CacheSize:          cfg.CacheSize + 2*int64(cfg.MemTableSize),
		MemTableSize:       cfg.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{cfg.Logger},
	}
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w", cfg.Dir, err)
	}
	cfg.Logger.Info("raft store open", "dir", cfg.Dir)
	return &Store{cfg: cfg, log: cfg.Logger, db: db}, nil
}

// Close closes Pebble. Calls after Close return ErrClosed. Calling Close
// again returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close raft store: %w", err)
	}
	s.log.Info("raft store closed", "dir", s.cfg.Dir)
	return nil
}

func (s *Store) acquire() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) release() { s.mu.RUnlock() }

// FirstIndex returns the index of the first stored log entry, 0 if none.
func (s *Store) FirstIndex() (uint64, error) { return s.edgeIndex(true) }

// LastIndex returns the index of the last stored log entry, 0 if none.
func (s *Store) LastIndex() (uint64, error) { return s.edgeIndex(false) }

func (s *Store) edgeIndex(first bool) (uint64, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logLower, UpperBound: logUpper})
	if err != nil {
		return 0, fmt.Errorf("raft log index: %w", err)
	}
	defer func() { _ = it.Close() }()
	var ok bool
	if first {
		ok = it.First()
	} else {
		ok = it.Last()
	}
	if !ok {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("raft log index: %w", err)
		}
		return 0, nil
	}
	return parseLogKey(it.Key())
}

// GetLog reads the entry at index into log, or returns raft.ErrLogNotFound.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	var kb [logKeyLen]byte
	v, closer, err := s.db.Get(logKey(kb[:0], index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("get raft log %d: %w", index, err)
	}
	defer func() { _ = closer.Close() }()
	if err := decodeLog(v, log); err != nil {
		return fmt.Errorf("get raft log %d: %w", index, err)
	}
	log.Index = index
	return nil
}

// StoreLog stores one entry, synced.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries in one atomic, synced batch.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	size := 0
	for _, l := range logs {
		size += logKeyLen + encodedLogLen(l)
	}
	b := s.db.NewBatchWithSize(size + 16*len(logs))
	defer func() { _ = b.Close() }()
	buf := make([]byte, 0, size)
	for _, l := range logs {
		start := len(buf)
		buf = logKey(buf, l.Index)
		kEnd := len(buf)
		buf = appendLog(buf, l)
		// Set copies key and value into the batch.
		if err := b.Set(buf[start:kEnd], buf[kEnd:], nil); err != nil {
			return fmt.Errorf("store raft logs: %w", err)
		}
	}
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("store raft logs: %w", err)
	}
	return nil
}

// DeleteRange deletes the entries min..max, both inclusive, synced.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	if err := s.db.DeleteRange(logKey(nil, min), logKeyAfter(max), pebble.Sync); err != nil {
		return fmt.Errorf("delete raft logs %d..%d: %w", min, max, err)
	}
	return nil
}

// Set stores a stable value, synced.
func (s *Store) Set(key, val []byte) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	if err := s.db.Set(stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("set %q: %w", key, err)
	}
	return nil
}

// Get returns a copy of a stable value, or ErrKeyNotFound ("not found").
func (s *Store) Get(key []byte) ([]byte, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	v, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	defer func() { _ = closer.Close() }()
	return append([]byte{}, v...), nil
}

// SetUint64 stores val big-endian under key, synced.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value SetUint64 stored, or ErrKeyNotFound.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("get uint64 %q: value of %d bytes: %w", key, len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// pebbleLogger routes Pebble's log lines into the injected slog logger.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(fmt.Sprintf(format, args...), "component", "pebble-raft")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble-raft")
}

// Fatalf is called by Pebble on unrecoverable corruption and must not
// return; panicking lets the supervisor and tests see the message.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble-raft", "fatal", true)
	panic("pebble: " + msg)
}
