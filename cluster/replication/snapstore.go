package replication

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// snapStore is a raft.SnapshotStore on a vfs.FS, so that Raft snapshots
// (every twin state of the cluster) are written through the same
// encryption-at-rest wrapper as the Pebble stores. hashicorp/raft's
// FileSnapshotStore writes with the os package and cannot be wrapped.
//
// Layout, like FileSnapshotStore's: <dir>/<id>/meta.json and state.bin,
// written under <id>.tmp and renamed when complete, so a crash leaves no
// half snapshot that List would offer. state.bin carries a CRC-64 in
// meta.json, checked on Open.
type snapStore struct {
	fs     vfs.FS
	dir    string
	retain int
}

const (
	snapTmpSuffix = ".tmp"
	snapMetaFile  = "meta.json"
	snapStateFile = "state.bin"
)

var crcTable = crc64.MakeTable(crc64.ECMA)

type snapMeta struct {
	raft.SnapshotMeta
	CRC uint64
}

func newSnapStore(fs vfs.FS, dir string, retain int) (*snapStore, error) {
	if retain < 1 {
		return nil, fmt.Errorf("snapshot store: retain %d: %w", retain, ErrInvalid)
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	// Snapshots a crash left unfinished are useless.
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, snapTmpSuffix) {
			_ = fs.RemoveAll(fs.PathJoin(dir, n))
		}
	}
	return &snapStore{fs: fs, dir: dir, retain: retain}, nil
}

// Create implements raft.SnapshotStore.
func (s *snapStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("snapshot store: raft snapshot version %d: %w", version, ErrUnsupported)
	}
	id := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	tmp := s.fs.PathJoin(s.dir, id+snapTmpSuffix)
	if err := s.fs.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	f, err := s.fs.Create(s.fs.PathJoin(tmp, snapStateFile), vfs.WriteCategoryUnspecified)
	if err != nil {
		_ = s.fs.RemoveAll(tmp)
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	sink := &snapSink{store: s, tmp: tmp, file: f, crc: crc64.New(crcTable), meta: snapMeta{SnapshotMeta: raft.SnapshotMeta{
		Version: version, ID: id, Index: index, Term: term,
		Configuration: configuration, ConfigurationIndex: configurationIndex,
	}}}
	sink.w = bufio.NewWriterSize(io.MultiWriter(f, sink.crc), 256<<10)
	return sink, nil
}

// List implements raft.SnapshotStore: complete snapshots, newest first.
func (s *snapStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.list()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, 0, min(len(metas), s.retain))
	for _, m := range metas[:min(len(metas), s.retain)] {
		out = append(out, &m.SnapshotMeta)
	}
	return out, nil
}

func (s *snapStore) list() ([]*snapMeta, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	var metas []*snapMeta
	for _, n := range names {
		if strings.HasSuffix(n, snapTmpSuffix) {
			continue
		}
		m, err := s.readMeta(n)
		if err != nil {
			continue // not a snapshot of ours, or damaged: never offered
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b *snapMeta) int {
		switch {
		case a.Term != b.Term:
			return cmpDesc(a.Term, b.Term)
		case a.Index != b.Index:
			return cmpDesc(a.Index, b.Index)
		}
		return strings.Compare(b.ID, a.ID)
	})
	return metas, nil
}

func cmpDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	return 1
}

func (s *snapStore) readMeta(id string) (*snapMeta, error) {
	f, err := s.fs.Open(s.fs.PathJoin(s.dir, id, snapMetaFile))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var m snapMeta
	if err := json.NewDecoder(f).Decode(&m); err != nil {
		return nil, err
	}
	if m.ID != id {
		return nil, fmt.Errorf("snapshot %s: meta names %s", id, m.ID)
	}
	return &m, nil
}

// Open implements raft.SnapshotStore; the reader fails at its end when the
// state does not match the recorded checksum.
func (s *snapStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	m, err := s.readMeta(id)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot store: open %s: %w", id, err)
	}
	f, err := s.fs.Open(s.fs.PathJoin(s.dir, id, snapStateFile))
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot store: open %s: %w", id, err)
	}
	return &m.SnapshotMeta, &snapReader{r: bufio.NewReaderSize(f, 256<<10), f: f, crc: crc64.New(crcTable), want: m.CRC, left: m.Size}, nil
}

// reap removes all but the newest retain snapshots.
func (s *snapStore) reap() error {
	metas, err := s.list()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range metas[min(len(metas), s.retain):] {
		errs = append(errs, s.fs.RemoveAll(s.fs.PathJoin(s.dir, m.ID)))
	}
	return errors.Join(errs...)
}

type snapSink struct {
	store *snapStore
	tmp   string
	file  vfs.File
	w     *bufio.Writer
	crc   hash.Hash64
	meta  snapMeta
	once  sync.Once
}

func (k *snapSink) ID() string { return k.meta.ID }

func (k *snapSink) Write(p []byte) (int, error) {
	n, err := k.w.Write(p)
	k.meta.Size += int64(n)
	return n, err
}

// Close makes the snapshot durable and visible, then reaps old ones.
// Later calls return nil (the FSM closes the sink, and raft again).
func (k *snapSink) Close() error {
	var err error
	k.once.Do(func() { err = k.finish() })
	return err
}

func (k *snapSink) finish() error {
	fs := k.store.fs
	err := k.w.Flush()
	if err == nil {
		err = k.file.Sync()
	}
	err = errors.Join(err, k.file.Close())
	if err == nil {
		k.meta.CRC = k.crc.Sum64()
		err = k.writeMeta()
	}
	final := fs.PathJoin(k.store.dir, k.meta.ID)
	if err == nil {
		err = fs.Rename(k.tmp, final)
	}
	if err == nil {
		err = syncDir(fs, k.store.dir)
	}
	if err != nil {
		_ = fs.RemoveAll(k.tmp)
		return fmt.Errorf("snapshot store: %w", err)
	}
	return k.store.reap()
}

func (k *snapSink) writeMeta() error {
	fs := k.store.fs
	f, err := fs.Create(fs.PathJoin(k.tmp, snapMetaFile), vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	b, err := json.Marshal(&k.meta)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// Cancel discards the snapshot.
func (k *snapSink) Cancel() error {
	k.once.Do(func() { _ = k.file.Close() })
	return k.store.fs.RemoveAll(k.tmp)
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

type snapReader struct {
	r    *bufio.Reader
	f    vfs.File
	crc  hash.Hash64
	want uint64
	left int64
}

func (r *snapReader) Read(p []byte) (int, error) {
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	if len(p) == 0 {
		if r.crc.Sum64() != r.want {
			return 0, fmt.Errorf("snapshot state checksum mismatch: %w", ErrCorrupt)
		}
		return 0, io.EOF
	}
	n, err := r.r.Read(p)
	r.left -= int64(n)
	r.crc.Write(p[:n])
	if errors.Is(err, io.EOF) && r.left > 0 {
		return n, fmt.Errorf("snapshot state truncated: %w", ErrCorrupt)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (r *snapReader) Close() error { return r.f.Close() }
