package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// Sentinel errors. Every error returned by the store wraps one of these or a
// Pebble/ctx error; match them with errors.Is.
var (
	// ErrNotFound: the key does not exist under the caller's tenant (which
	// is also what another tenant's key looks like).
	ErrNotFound = errors.New("pebblestore: not found")
	// ErrStaleVersion: a twin write named a version that is no longer the
	// stored one (another activation wrote first). The whole unit was
	// rejected; reload the twin before writing again.
	ErrStaleVersion = errors.New("pebblestore: stale twin version")
	// ErrClosed: the store is closed or closing.
	ErrClosed = errors.New("pebblestore: closed")
	// ErrOverloaded: TrySubmit found the submission queue full.
	ErrOverloaded = errors.New("pebblestore: overloaded")
	// ErrInvalid: a malformed argument (tenant, topic, event id, config…).
	ErrInvalid = errors.New("pebblestore: invalid argument")
	// ErrCorrupt: a stored value does not decode.
	ErrCorrupt = errors.New("pebblestore: corrupt value")
	// ErrSchema: the directory holds a keyspace of another schema version.
	ErrSchema = errors.New("pebblestore: unsupported schema version")
)

// SchemaVersion is the keyspace version stored at sys/meta/schema. Open
// refuses a store with another version rather than misread it.
const SchemaVersion = 1

// Store is the durable twin state of one node. All methods are safe for
// concurrent use.
type Store struct {
	cfg Config
	log *slog.Logger
	db  *pebble.DB

	queue   chan *unit
	closing chan struct{} // closed first by Close: wakes blocked submitters
	quit    chan struct{} // closed once no Submit is in flight: drain and stop
	stopped chan struct{} // closed by the committer on exit

	mu     sync.Mutex
	idle   *sync.Cond // signalled when active drops to 0 while closed
	closed bool
	active int                // calls in flight (acquire/release)
	views  map[*View]struct{} // open point-in-time views, closed by Close

	metrics metrics
}

// Open opens (creating if needed) the store in cfg.Dir and starts its
// committer.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := &pebble.Options{
		FS:                 cfg.FS,
		CacheSize:          cfg.CacheSize + 2*int64(cfg.MemTableSize), // see Config.CacheSize
		MemTableSize:       cfg.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{cfg.Logger},
	}
	// Bloom filters (~1 % false positives at 10 bits/key; L1+ inherit L0's
	// setting) let a Get for an absent key, e.g. the first write or load of
	// a new twin, skip the sstables' data blocks.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
	}
	if err := checkSchema(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:     cfg,
		log:     cfg.Logger,
		db:      db,
		queue:   make(chan *unit, cfg.QueueSize),
		closing: make(chan struct{}),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
		views:   make(map[*View]struct{}),
	}
	s.idle = sync.NewCond(&s.mu)
	sync := pebble.Sync
	if cfg.NoSync {
		sync = pebble.NoSync
	}
	c := &committer{
		s:        s,
		maxDelay: cfg.GroupCommitMaxDelay,
		maxBatch: cfg.GroupCommitMaxBatch,
		sync:     sync,
		timer:    time.NewTimer(time.Hour),
		versions: make(map[string]uint64),
		cacheCap: cfg.VersionCacheSize,
		pending:  make(map[string]uint64),
	}
	c.timer.Stop()
	go c.run()
	s.log.Info("pebble store open", "dir", cfg.Dir, "sync", !cfg.NoSync,
		"group_commit_max_delay", cfg.GroupCommitMaxDelay, "group_commit_max_batch", cfg.GroupCommitMaxBatch)
	return s, nil
}

// checkSchema writes the schema version into a new store and refuses a store
// written with another one.
func checkSchema(db *pebble.DB) error {
	v, closer, err := db.Get([]byte(schemaKey))
	if errors.Is(err, pebble.ErrNotFound) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], SchemaVersion)
		if err := db.Set([]byte(schemaKey), b[:], pebble.Sync); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	defer func() { _ = closer.Close() }()
	if len(v) != 4 || binary.BigEndian.Uint32(v) != SchemaVersion {
		return fmt.Errorf("schema %x, want %d: %w", v, SchemaVersion, ErrSchema)
	}
	return nil
}

// Close stops accepting submissions, commits everything already queued
// (calling each done), closes open views and then Pebble. Blocked Submit
// calls return ErrClosed. Close waits for calls in flight (e.g. a running
// ForEachTwin) to return. Calling Close again returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	for s.active > 0 {
		s.idle.Wait()
	}
	views := s.views
	s.views = nil
	s.mu.Unlock()

	close(s.quit)
	<-s.stopped
	var errs []error
	for v := range views {
		if err := v.snap.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, err)
	}
	s.log.Info("pebble store closed", "dir", s.cfg.Dir)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// acquire registers a call in flight; Close waits for all of them. It fails
// once Close has begun, so no call touches Pebble after it is closed.
func (s *Store) acquire() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.active++
	return nil
}

func (s *Store) release() {
	s.mu.Lock()
	s.active--
	if s.active == 0 && s.closed {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// LoadTwin returns the stored state of a twin of the tenant, or ErrNotFound.
// The key is built from the tenant, so no EUI can reach another tenant's twin.
func (s *Store) LoadTwin(ctx context.Context, tenant string, kind Kind, eui EUI) (TwinRecord, error) {
	if err := s.acquire(); err != nil {
		return TwinRecord{}, err
	}
	defer s.release()
	return loadTwin(ctx, s.db, tenant, kind, eui)
}

func loadTwin(ctx context.Context, r pebble.Reader, tenant string, kind Kind, eui EUI) (TwinRecord, error) {
	if err := ctx.Err(); err != nil {
		return TwinRecord{}, err
	}
	key, err := TwinKey(tenant, kind, eui)
	if err != nil {
		return TwinRecord{}, fmt.Errorf("load twin: %w", err)
	}
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return TwinRecord{}, fmt.Errorf("load twin %s %s: %w", kind, eui, ErrNotFound)
	}
	if err != nil {
		return TwinRecord{}, fmt.Errorf("load twin %s %s: %w", kind, eui, err)
	}
	defer func() { _ = closer.Close() }()
	rec, err := decodeTwinValue(v)
	if err != nil {
		return TwinRecord{}, fmt.Errorf("load twin %s %s: %w", kind, eui, err)
	}
	return rec, nil
}

// RecentEvents returns the tenant's events of one device with from ≤ time <
// to, oldest first, at most limit of them (limit ≤ 0: no limit). Only keys
// under the tenant's prefix are read.
func (s *Store) RecentEvents(ctx context.Context, tenant string, eui EUI, from, to time.Time, limit int) ([]EventRecord, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	if err := checkTenant(tenant); err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	lo, err1 := eventTime(from)
	hi, err2 := eventTime(to)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	if hi <= lo {
		return nil, nil
	}
	prefix := appendDevicePrefix(nil, tenant, eui)
	lower := binary.BigEndian.AppendUint64(bytes.Clone(prefix), lo)
	upper := binary.BigEndian.AppendUint64(bytes.Clone(prefix), hi)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	defer func() { _ = it.Close() }()
	var out []EventRecord
	for ok := it.First(); ok; ok = it.Next() {
		if len(out)%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		_, e, at, id, err := ParseEventKey(it.Key())
		if err != nil {
			return nil, fmt.Errorf("recent events: %w", err)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("recent events: %w", err)
		}
		payload, err := decodeEventValue(v)
		if err != nil {
			return nil, fmt.Errorf("recent events: %w", err)
		}
		out = append(out, EventRecord{EUI: e, Time: at, ID: id, Payload: payload})
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	return out, nil
}

// Offsets returns every stored Kafka offset: for each partition, the next
// offset to consume such that all earlier records are reflected in the
// stored twin states.
func (s *Store) Offsets(ctx context.Context) (map[TopicPartition]int64, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	return offsets(ctx, s.db)
}

func offsets(ctx context.Context, r pebble.Reader) (map[TopicPartition]int64, error) {
	lower := []byte(offsetsRoot)
	it, err := r.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return nil, fmt.Errorf("offsets: %w", err)
	}
	defer func() { _ = it.Close() }()
	out := make(map[TopicPartition]int64)
	for ok := it.First(); ok; ok = it.Next() {
		tp, err := ParseOffsetKey(it.Key())
		if err != nil {
			return nil, fmt.Errorf("offsets: %w", err)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("offsets: %w", err)
		}
		off, err := decodeOffset(v)
		if err != nil {
			return nil, fmt.Errorf("offsets %s/%d: %w", tp.Topic, tp.Partition, err)
		}
		out[tp] = off
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("offsets: %w", err)
	}
	return out, nil
}

func encodeOffset(off int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(off)) }

func decodeOffset(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("offset value of %d bytes: %w", len(v), ErrCorrupt)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// Prune deletes every recent-window event older than before, for all
// tenants: one range deletion per device that has such events, so the cost
// is per device, not per event. It writes without waiting for fsync: a prune
// lost in a crash is simply redone by the next one. Pruning is not fenced
// against concurrent event writes; an event older than before written during
// the prune may survive until the next one.
func (s *Store) Prune(ctx context.Context, before time.Time) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	cut, err := eventTime(before)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	root := []byte(tenantRoot)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: root, UpperBound: prefixEnd(root)})
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	defer func() { _ = it.Close() }()
	b := s.db.NewBatch()
	defer func() { _ = b.Close() }()
	devices := 0
	// Walk tenants, and within each tenant its devices' event ranges,
	// seeking over everything else (twin keys, newer events).
	for ok := it.First(); ok; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		key := it.Key()
		tenant, _, found := bytes.Cut(key[len(tenantRoot):], []byte("/"))
		if !found {
			ok = it.SeekGE(prefixEnd(key))
			continue
		}
		tp := appendTenantPrefix(nil, string(tenant))
		recent := append(bytes.Clone(tp), recentSegment[1:]...)
		switch {
		case bytes.Compare(key, recent) < 0:
			ok = it.SeekGE(recent)
			continue
		case !bytes.HasPrefix(key, recent):
			ok = it.SeekGE(prefixEnd(tp)) // next tenant
			continue
		}
		// key is the first remaining event of a device.
		if len(key) < len(recent)+9 {
			return fmt.Errorf("prune: event key %q: %w", key, ErrCorrupt)
		}
		dev := bytes.Clone(key[:len(recent)+9]) // …/recent/<eui>/
		if ts := key[len(dev):]; len(ts) >= 8 && binary.BigEndian.Uint64(ts[:8]) < cut {
			end := binary.BigEndian.AppendUint64(bytes.Clone(dev), cut)
			if err := b.DeleteRange(dev, end, nil); err != nil {
				return fmt.Errorf("prune: %w", err)
			}
			devices++
		}
		ok = it.SeekGE(prefixEnd(dev))
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if !b.Empty() {
		if err := s.db.Apply(b, pebble.NoSync); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
	}
	s.metrics.prunedDevices.Add(uint64(devices))
	s.log.Info("pruned recent events", "before", before, "devices", devices)
	return nil
}

// Expire prunes the events that fall out of the configured Retention as of
// now (the caller's clock, so tests and replays control it).
func (s *Store) Expire(ctx context.Context, now time.Time) error {
	return s.Prune(ctx, now.Add(-s.cfg.Retention))
}

// Checkpoint writes a consistent copy of the store into dir (on the store's
// FS; dir must not exist), hard-linking sstables where possible. The WAL is
// flushed first, so every acknowledged write is in the copy. The copy opens
// as a Store. Used for backups; encrypt it before it leaves the node.
func (s *Store) Checkpoint(ctx context.Context, dir string) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	s.log.Info("checkpoint written", "dir", dir)
	return nil
}

// TwinEntry is one twin seen by ForEachTwin.
type TwinEntry struct {
	Tenant string
	Kind   Kind
	EUI    EUI
	TwinRecord
}

// ForEachTwin calls fn for every twin of every tenant, in key order, over a
// point-in-time view: writes committed meanwhile are not seen. fn's error
// stops the walk and is returned. Cross-tenant by design: it serves
// replication and backup, never a tenant-facing API.
func (s *Store) ForEachTwin(ctx context.Context, fn func(TwinEntry) error) error {
	v, err := s.Snapshot()
	if err != nil {
		return err
	}
	defer func() { _ = v.Close() }()
	return v.ForEachTwin(ctx, fn)
}

// View is a point-in-time, read-only view of the store (a Pebble snapshot).
// Close it when done; Close of the Store closes any still open.
type View struct {
	s    *Store
	snap *pebble.Snapshot
}

// Snapshot returns a point-in-time view. Raft snapshots use it so that the
// twins and offsets they capture are one consistent state while writes go on.
func (s *Store) Snapshot() (*View, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	v := &View{s: s, snap: s.db.NewSnapshot()}
	s.mu.Lock()
	s.views[v] = struct{}{}
	s.mu.Unlock()
	return v, nil
}

// Close releases the view. It is idempotent.
func (v *View) Close() error {
	v.s.mu.Lock()
	_, open := v.s.views[v]
	delete(v.s.views, v)
	v.s.mu.Unlock()
	if !open {
		return nil
	}
	return v.snap.Close()
}

// acquire is Store.acquire plus a check that the view is still open.
func (v *View) acquire() error {
	if err := v.s.acquire(); err != nil {
		return err
	}
	v.s.mu.Lock()
	_, open := v.s.views[v]
	v.s.mu.Unlock()
	if !open {
		v.s.release()
		return fmt.Errorf("view: %w", ErrClosed)
	}
	return nil
}

// LoadTwin is Store.LoadTwin as of the view.
func (v *View) LoadTwin(ctx context.Context, tenant string, kind Kind, eui EUI) (TwinRecord, error) {
	if err := v.acquire(); err != nil {
		return TwinRecord{}, err
	}
	defer v.s.release()
	return loadTwin(ctx, v.snap, tenant, kind, eui)
}

// Offsets is Store.Offsets as of the view.
func (v *View) Offsets(ctx context.Context) (map[TopicPartition]int64, error) {
	if err := v.acquire(); err != nil {
		return nil, err
	}
	defer v.s.release()
	return offsets(ctx, v.snap)
}

// ForEachTwin is Store.ForEachTwin as of the view.
func (v *View) ForEachTwin(ctx context.Context, fn func(TwinEntry) error) error {
	if err := v.acquire(); err != nil {
		return err
	}
	defer v.s.release()
	root := []byte(tenantRoot)
	it, err := v.snap.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: root, UpperBound: prefixEnd(root)})
	if err != nil {
		return fmt.Errorf("for each twin: %w", err)
	}
	defer func() { _ = it.Close() }()
	for ok := it.First(); ok; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("for each twin: %w", err)
		}
		key := it.Key()
		tenant, _, found := bytes.Cut(key[len(tenantRoot):], []byte("/"))
		if !found {
			ok = it.SeekGE(prefixEnd(key))
			continue
		}
		lower, upper := twinRange(string(tenant))
		if bytes.Compare(key, lower) < 0 {
			ok = it.SeekGE(lower)
			continue
		}
		if bytes.Compare(key, upper) >= 0 {
			ok = it.SeekGE(prefixEnd(appendTenantPrefix(nil, string(tenant))))
			continue
		}
		t, kind, eui, err := ParseTwinKey(key)
		if err != nil {
			return fmt.Errorf("for each twin: %w", err)
		}
		val, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("for each twin: %w", err)
		}
		rec, err := decodeTwinValue(val)
		if err != nil {
			return fmt.Errorf("for each twin %s %s: %w", kind, eui, err)
		}
		if err := fn(TwinEntry{Tenant: t, Kind: kind, EUI: eui, TwinRecord: rec}); err != nil {
			return err
		}
		ok = it.Next()
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("for each twin: %w", err)
	}
	return nil
}

// pebbleLogger routes Pebble's own log lines into the injected slog logger.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble on unrecoverable corruption; it must not
// return. Panicking (rather than os.Exit) lets the process supervisor and
// tests see the message.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("pebble: " + msg)
}
