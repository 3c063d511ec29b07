package encfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FS is an encrypting vfs.FS. Pass it as pebble.Options.FS (or
// pebblestore.Config.FS) for every store under its data folder. Its
// methods are safe for concurrent use.
type FS struct {
	base vfs.FS
	dir  string
	log  *slog.Logger
	now  func() time.Time

	keys atomic.Pointer[keySet]

	mu     sync.Mutex // serialises Rotate, RewrapMasterKey and Close
	master []byte
	lock   io.Closer
}

var _ vfs.FS = (*FS)(nil)

// Open opens the data folder's keystore (creating it for a new, empty
// folder) and checks every file under the folder, then returns the FS.
// It holds the folder's lock until Close.
//
// Open writes nothing except the lock file and, for a folder without any
// data, the new keystore: a wrong master key (ErrWrongMasterKey), a lost
// keystore (ErrNoKeyStore), a plaintext store (ErrNotEncrypted), a file
// under a key the keystore lacks (ErrUnknownKey), a damaged header
// (ErrCorruptHeader) or keystore (ErrCorruptKeyStore) fail Open with
// everything left as it was.
func Open(cfg Config) (*FS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	base, dir := cfg.Base, cfg.Dir
	ksPath := base.PathJoin(dir, KeyStoreFile)
	if cfg.MustExist {
		if _, err := base.Stat(ksPath); err != nil {
			return nil, fmt.Errorf("encfs: %s: %w (%w)", dir, ErrNoKeyStore, err)
		}
	} else if err := base.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("encfs: create data folder: %w", err)
	}
	lockPath := base.PathJoin(dir, LockFile)
	_, statErr := base.Stat(lockPath)
	lock, err := base.Lock(lockPath)
	if err != nil {
		return nil, fmt.Errorf("encfs: lock %s (is a node or another legiond command using this data folder?): %w (%w)", lockPath, ErrLocked, err)
	}
	f := &FS{base: base, dir: dir, log: cfg.Logger, now: cfg.Now, master: bytes.Clone(cfg.MasterKey), lock: lock}
	if err := f.load(cfg.MustExist); err != nil {
		_ = lock.Close()
		if statErr != nil {
			_ = base.Remove(lockPath) // leave the folder as we found it
		}
		return nil, err
	}
	return f, nil
}

func (f *FS) load(mustExist bool) error {
	ks, err := readKeyStore(f.base, f.dir, f.master)
	if err != nil {
		return fmt.Errorf("encfs: %w", err)
	}
	if ks == nil {
		if mustExist {
			return fmt.Errorf("encfs: %s has no %s: %w", f.dir, KeyStoreFile, ErrNoKeyStore)
		}
		sr, err := scan(f.base, f.dir, nil)
		if err != nil {
			return err
		}
		if sr.encrypted > 0 {
			return fmt.Errorf("encfs: %s holds %d encrypted files (e.g. %s) but no %s: restore the keystore from backup; a new one would not open them: %w",
				f.dir, sr.encrypted, sr.firstEncrypted, KeyStoreFile, ErrNoKeyStore)
		}
		if sr.plaintext > 0 {
			return fmt.Errorf("encfs: %s holds %d unencrypted files (e.g. %s), an unencrypted store: copy it (closed) through the encrypted FS into an empty folder first, e.g. with vfs.Clone: %w",
				f.dir, sr.plaintext, sr.firstPlaintext, ErrNotEncrypted)
		}
		if ks, err = newKeySet(f.now()); err != nil {
			return fmt.Errorf("encfs: new keystore: %w", err)
		}
		if err := writeKeyStore(f.base, f.dir, ks, f.master); err != nil {
			return fmt.Errorf("encfs: new keystore: %w", err)
		}
		// The folder itself may be new: make its entry durable too.
		if err := syncDir(f.base, f.base.PathDir(f.dir)); err != nil {
			return fmt.Errorf("encfs: new keystore: %w", err)
		}
		f.log.Info("storage keystore created", "dir", f.dir, "primary_key", ks.primary.id, "master_key", Fingerprint(f.master))
	}
	sr, err := scan(f.base, f.dir, ks)
	if err != nil {
		return err
	}
	f.keys.Store(ks)
	f.log.Info("storage encryption ready", "dir", f.dir, "primary_key", ks.primary.id, "keys", len(ks.byID), "files", sr.total())
	return nil
}

// Close releases the data folder's lock. Close every Pebble store using f
// first; f's files keep working, but another process may then rotate keys.
func (f *FS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lock == nil {
		return nil
	}
	err := f.lock.Close()
	f.lock = nil
	f.log.Info("storage encryption closed", "dir", f.dir)
	return err
}

// PrimaryKeyID returns the id of the data key new files use.
func (f *FS) PrimaryKeyID() uint32 { return f.keys.Load().primary.id }

// Rotate adds a new random data key and makes it primary: files created
// (or WALs recycled) from now on use it; existing files keep their key and
// stay readable, since no key is ever dropped. The new key is durable in
// the keystore before any file uses it. It returns the new key's id.
func (f *FS) Rotate() (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.keys.Load()
	next, err := cur.withNewPrimary(f.now())
	if err != nil {
		return 0, fmt.Errorf("encfs: rotate: %w", err)
	}
	if err := writeKeyStore(f.base, f.dir, next, f.master); err != nil {
		return 0, fmt.Errorf("encfs: rotate: %w", err)
	}
	f.keys.Store(next)
	f.log.Info("storage data key rotated", "dir", f.dir, "primary_key", next.primary.id, "previous_key", cur.primary.id)
	return next.primary.id, nil
}

// RewrapMasterKey rewrites the keystore with every data key wrapped under
// newMaster; afterwards only newMaster opens the folder. Files are not
// touched. Use it when the master key is compromised or retired.
func (f *FS) RewrapMasterKey(newMaster []byte) error {
	if err := (Config{Dir: f.dir, MasterKey: newMaster}).Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := writeKeyStore(f.base, f.dir, f.keys.Load(), newMaster); err != nil {
		return fmt.Errorf("encfs: rewrap: %w", err)
	}
	old := Fingerprint(f.master)
	f.master = bytes.Clone(newMaster)
	f.log.Info("storage master key replaced", "dir", f.dir, "master_key", Fingerprint(newMaster), "previous_master_key", old)
	return nil
}

// KeyInfo describes one data key and the files under it.
type KeyInfo struct {
	ID      uint32
	Created time.Time
	Primary bool
	// Files and Bytes (logical) count the files under Dir using this key.
	Files int
	Bytes int64
}

// Status is a snapshot of the keystore and of the files under Dir.
type Status struct {
	Dir string
	// MasterKey is the master key's Fingerprint.
	MasterKey string
	Primary   uint32
	Keys      []KeyInfo
	// EmptyFiles counts files without a header: empty, or left by a crash
	// before their header reached the disk (they hold no synced data).
	EmptyFiles int
}

// Status rescans Dir and reports, per data key, how many files use it: a
// key that no file uses any more is no longer needed to read the data.
func (f *FS) Status() (Status, error) {
	f.mu.Lock()
	master := f.master
	f.mu.Unlock()
	ks := f.keys.Load()
	sr, err := scan(f.base, f.dir, ks)
	if err != nil {
		return Status{}, err
	}
	st := Status{Dir: f.dir, MasterKey: Fingerprint(master), Primary: ks.primary.id, EmptyFiles: sr.empty}
	for _, k := range ks.sorted() {
		u := sr.byKey[k.id]
		st.Keys = append(st.Keys, KeyInfo{ID: k.id, Created: k.created, Primary: k == ks.primary, Files: u.files, Bytes: u.bytes})
	}
	return st, nil
}

// Create implements vfs.FS: a new file under the primary key with a fresh
// IV. If the header cannot be written the file is removed.
func (f *FS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	k := f.keys.Load().primary
	bf, err := f.base.Create(name, category)
	if err != nil {
		return nil, err
	}
	ef, err := f.startFile(bf, name, k, false)
	if err != nil {
		_ = f.base.Remove(name)
		return nil, err
	}
	return ef, nil
}

// ReuseForWrite implements vfs.FS. The recycled file gets a new header,
// hence a fresh IV under the primary key: its old content turns into
// noise, which Pebble's WAL reader treats like any torn tail.
func (f *FS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	k := f.keys.Load().primary
	bf, err := f.base.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return f.startFile(bf, newname, k, false)
}

// startFile writes a fresh header at offset 0 of bf (with WriteAt, or
// Write from offset 0) and returns the encrypted file.
func (f *FS) startFile(bf vfs.File, name string, k *dataKey, positional bool) (*file, error) {
	h := newHeader(k.id)
	hb := h.marshal()
	var err error
	if positional {
		_, err = bf.WriteAt(hb[:], 0)
	} else {
		_, err = bf.Write(hb[:])
	}
	if err != nil {
		_ = bf.Close()
		return nil, fmt.Errorf("encfs: write header of %s: %w", name, err)
	}
	ef := &file{name: name, base: bf, fs: f, positional: positional}
	ef.c.Store(&fileCipher{block: k.block, iv: h.iv})
	return ef, nil
}

// Open implements vfs.FS. opts apply to the underlying file (fadvise).
func (f *FS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	bf, err := f.base.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	c, err := readHeader(bf, name, f.keys.Load())
	if err != nil {
		if fi, serr := bf.Stat(); serr == nil && fi.IsDir() {
			return bf, nil // a directory has no content to encrypt
		}
		_ = bf.Close()
		return nil, err
	}
	ef := &file{name: name, base: bf, fs: f}
	if c != nil {
		ef.c.Store(c)
	}
	return ef, nil
}

// OpenReadWrite implements vfs.FS. A file without a header (new, or left
// empty by a crash) gets one; Write starts at logical offset 0, as
// os.OpenFile without O_APPEND does.
func (f *FS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	k := f.keys.Load().primary
	bf, err := f.base.OpenReadWrite(name, category, opts...)
	if err != nil {
		return nil, err
	}
	c, err := readHeader(bf, name, f.keys.Load())
	if err != nil {
		_ = bf.Close()
		return nil, err
	}
	if c == nil {
		return f.startFile(bf, name, k, true)
	}
	ef := &file{name: name, base: bf, fs: f, positional: true}
	ef.c.Store(c)
	return ef, nil
}

// Stat implements vfs.FS and reports a regular file's logical size.
func (f *FS) Stat(name string) (vfs.FileInfo, error) {
	fi, err := f.base.Stat(name)
	if err != nil {
		return nil, err
	}
	return logicalInfo(fi), nil
}

// Link implements vfs.FS; the header travels with the inode.
func (f *FS) Link(oldname, newname string) error { return f.base.Link(oldname, newname) }

// Rename implements vfs.FS; the header travels with the file.
func (f *FS) Rename(oldname, newname string) error { return f.base.Rename(oldname, newname) }

// OpenDir implements vfs.FS (directories pass through).
func (f *FS) OpenDir(name string) (vfs.File, error) { return f.base.OpenDir(name) }

// Remove implements vfs.FS.
func (f *FS) Remove(name string) error { return f.base.Remove(name) }

// RemoveAll implements vfs.FS.
func (f *FS) RemoveAll(name string) error { return f.base.RemoveAll(name) }

// MkdirAll implements vfs.FS.
func (f *FS) MkdirAll(dir string, perm os.FileMode) error { return f.base.MkdirAll(dir, perm) }

// Lock implements vfs.FS: lock files are empty and pass through.
func (f *FS) Lock(name string) (io.Closer, error) { return f.base.Lock(name) }

// List implements vfs.FS.
func (f *FS) List(dir string) ([]string, error) { return f.base.List(dir) }

// PathBase implements vfs.FS.
func (f *FS) PathBase(path string) string { return f.base.PathBase(path) }

// PathJoin implements vfs.FS.
func (f *FS) PathJoin(elem ...string) string { return f.base.PathJoin(elem...) }

// PathDir implements vfs.FS.
func (f *FS) PathDir(path string) string { return f.base.PathDir(path) }

// GetDiskUsage implements vfs.FS.
func (f *FS) GetDiskUsage(path string) (vfs.DiskUsage, error) { return f.base.GetDiskUsage(path) }

// Unwrap returns nil on purpose: vfs.Root must not hand anyone the
// plaintext filesystem underneath.
func (f *FS) Unwrap() vfs.FS { return nil }

// scanResult summarises the files under a data folder.
type scanResult struct {
	byKey          map[uint32]keyUsage
	empty          int
	encrypted      int // files with the magic (only counted without a keystore)
	plaintext      int
	firstEncrypted string
	firstPlaintext string
}

type keyUsage struct {
	files int
	bytes int64
}

func (s scanResult) total() int {
	n := s.empty + s.encrypted + s.plaintext
	for _, u := range s.byKey {
		n += u.files
	}
	return n
}

// ownFiles are this package's files at the top of the data folder, which
// the scan skips.
var ownFiles = []string{KeyStoreFile, keyStoreTemp, LockFile, DevMasterKeyFile}

// scan reads the header of every non-empty file under dir. With a keystore
// it fails on the first file that is unencrypted, damaged or under an
// unknown key; without one (ks nil) it only counts encrypted and
// plaintext files. It never writes.
func scan(base vfs.FS, dir string, ks *keySet) (scanResult, error) {
	sr := scanResult{byKey: map[uint32]keyUsage{}}
	var walk func(d string, top bool) error
	walk = func(d string, top bool) error {
		names, err := base.List(d)
		if err != nil {
			return fmt.Errorf("encfs: list %s: %w", d, err)
		}
		slices.Sort(names)
		for _, n := range names {
			if top && slices.Contains(ownFiles, n) {
				continue
			}
			p := base.PathJoin(d, n)
			fi, err := base.Stat(p)
			if err != nil {
				return fmt.Errorf("encfs: stat %s: %w", p, err)
			}
			switch {
			case fi.IsDir():
				if err := walk(p, false); err != nil {
					return err
				}
				continue
			case !fi.Mode().IsRegular():
				continue
			case fi.Size() == 0:
				sr.empty++
				continue
			}
			if err := scanFile(base, p, fi.Size(), ks, &sr); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(dir, true); err != nil {
		return scanResult{}, err
	}
	return sr, nil
}

func scanFile(base vfs.FS, path string, size int64, ks *keySet, sr *scanResult) error {
	bf, err := base.Open(path)
	if err != nil {
		return fmt.Errorf("encfs: open %s: %w", path, err)
	}
	defer func() { _ = bf.Close() }()
	if ks != nil {
		h, ok, err := loadHeader(bf, path)
		switch {
		case err != nil:
			return err
		case !ok:
			sr.empty++
		case ks.byID[h.keyID] == nil:
			return fmt.Errorf("encfs: %s is under data key %d: %w", path, h.keyID, ErrUnknownKey)
		default:
			u := sr.byKey[h.keyID]
			u.files++
			u.bytes += size - HeaderSize
			sr.byKey[h.keyID] = u
		}
		return nil
	}
	var b [HeaderSize]byte
	n, err := bf.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("encfs: read %s: %w", path, err)
	}
	if headerAbsent(b[:n]) {
		sr.empty++
		return nil
	}
	if isHeaderPrefix(b[:n]) {
		sr.encrypted++
		if sr.firstEncrypted == "" {
			sr.firstEncrypted = path
		}
		return nil
	}
	sr.plaintext++
	if sr.firstPlaintext == "" {
		sr.firstPlaintext = path
	}
	return nil
}
