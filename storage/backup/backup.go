package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"filippo.io/age"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// PebbleCheckpointer takes a consistent copy of a Pebble store into dir
// (which must not exist). *pebblestore.Store implements it.
type PebbleCheckpointer interface {
	Checkpoint(ctx context.Context, dir string) error
}

// NodeSource is the node's data in a full backup.
type NodeSource struct {
	// Checkpointer is the open twin store (required).
	Checkpointer PebbleCheckpointer
	// DataDir is the node's data folder (required).
	DataDir string
	// StoreDir is the store's folder relative to DataDir, where Restore
	// puts the checkpoint back ("storage/twins"; required).
	StoreDir string
	// KeyStore is the storage keystore (encfs.KeyStoreFile) relative to
	// DataDir ("storage/STORAGE-KEYS"), when the store is encrypted. It is
	// copied after the checkpoint, so it holds every data key the
	// checkpoint's files use. The storage master key that unwraps them is
	// never backed up. "" for a plaintext store.
	KeyStore string
	// PebbleSchema is the store's keyspace version. Default
	// pebblestore.SchemaVersion.
	PebbleSchema int
}

// Config configures one Backup.
type Config struct {
	// Kind of the backup. Default KindFull when Node is set, else
	// KindDatabase.
	Kind Kind
	// Database dumps the registry (required).
	Database DatabaseDumper
	// Node is the node's data (required for KindFull).
	Node *NodeSource
	// Recipients the archive is encrypted to (required): the backup public
	// key(s). See ParseRecipients and LoadRecipients.
	Recipients []age.Recipient
	// Destination stores the archive (required).
	Destination Destination
	// NodeID names the node in the object name and manifest. Default: the
	// host name.
	NodeID string
	// Version is recorded in the manifest. Default BuildVersion().
	Version string
	// WorkDir holds the checkpoint and the dump while the archive is
	// written (removed afterwards). Default: a temporary folder in
	// Node.DataDir for full backups, so that the checkpoint hard-links
	// sstables instead of copying them, else os.TempDir(). The dump is
	// plaintext while it sits there (mode 0600).
	WorkDir string
	// Now stamps the backup. Default time.Now.
	Now func() time.Time
	// Logger receives one line per backup. Default: discard.
	Logger *slog.Logger
}

// Validate reports a configuration Backup would refuse (after defaults).
func (c *Config) Validate() error {
	switch {
	case c.Database == nil:
		return fmt.Errorf("%w: no database dumper", ErrInvalid)
	case len(c.Recipients) == 0:
		return fmt.Errorf("%w: no backup recipient (public key)", ErrInvalid)
	case c.Destination == nil:
		return fmt.Errorf("%w: no destination", ErrInvalid)
	case c.Kind != "" && !c.Kind.Valid():
		return fmt.Errorf("%w: kind %q", ErrInvalid, c.Kind)
	case c.Kind == KindFull && c.Node == nil:
		return fmt.Errorf("%w: a full backup needs the node's data", ErrInvalid)
	}
	if n := c.Node; n != nil {
		switch {
		case n.Checkpointer == nil:
			return fmt.Errorf("%w: no checkpointer", ErrInvalid)
		case n.DataDir == "":
			return fmt.Errorf("%w: no data folder", ErrInvalid)
		}
		if err := checkRelPath(n.StoreDir); err != nil {
			return fmt.Errorf("%w: store folder: %w", ErrInvalid, err)
		}
		if n.KeyStore != "" {
			if err := checkRelPath(n.KeyStore); err != nil {
				return fmt.Errorf("%w: keystore: %w", ErrInvalid, err)
			}
		}
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Kind == "" {
		c.Kind = KindDatabase
		if c.Node != nil {
			c.Kind = KindFull
		}
	}
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
	}
	if c.Version == "" {
		c.Version = BuildVersion()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Node != nil && c.Node.PebbleSchema == 0 {
		c.Node.PebbleSchema = pebblestore.SchemaVersion
	}
}

// Result is what Backup wrote.
type Result struct {
	Name     string   `json:"name"`
	Size     int64    `json:"size"`
	SHA256   string   `json:"sha256"` // of the stored object's ciphertext
	Manifest Manifest `json:"manifest"`
	// Durations of the steps: checkpoint, dump, encrypt+upload, total.
	Checkpoint time.Duration `json:"checkpoint"`
	Dump       time.Duration `json:"dump"`
	Upload     time.Duration `json:"upload"`
	Took       time.Duration `json:"took"`
}

// Backup takes a backup: a Pebble checkpoint and the keystore (full
// backups), a consistent registry dump, all packed with a manifest into a
// tar stream, encrypted with age to cfg.Recipients, sealed with a trailer
// and stored under ObjectName(kind, now, node). Nothing is stored unless
// every step succeeded.
func Backup(ctx context.Context, cfg Config) (Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	start := cfg.Now()
	var res Result
	m := Manifest{Format: FormatVersion, Kind: cfg.Kind, CreatedAt: start.UTC(), Node: SanitizeNode(cfg.NodeID), LegiondVersion: cfg.Version}
	res.Name = ObjectName(cfg.Kind, start, cfg.NodeID)
	if objs, err := cfg.Destination.List(ctx, res.Name); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	} else if len(objs) > 0 && objs[0].Name == res.Name {
		return res, fmt.Errorf("%w: %s", ErrExists, res.Name)
	}

	workParent := cfg.WorkDir
	if workParent == "" && cfg.Kind == KindFull {
		workParent = cfg.Node.DataDir
	}
	work, err := os.MkdirTemp(workParent, ".legiond-backup-*")
	if err != nil {
		return res, fmt.Errorf("backup: work folder: %w", err)
	}
	defer func() { _ = os.RemoveAll(work) }()

	var members []member
	if cfg.Kind == KindFull {
		t0 := time.Now()
		nm, info, err := checkpointMembers(ctx, cfg.Node, filepath.Join(work, "checkpoint"))
		if err != nil {
			return res, fmt.Errorf("backup: %w", err)
		}
		res.Checkpoint = time.Since(t0)
		members, m.NodeData = nm, info
	}

	t0 := time.Now()
	dumpPath := filepath.Join(work, "registry.pgdump")
	info, err := dumpTo(ctx, cfg.Database, dumpPath)
	if err != nil {
		return res, fmt.Errorf("backup: registry dump: %w", err)
	}
	dm, err := fileMember(registryName, dumpPath)
	if err != nil {
		return res, fmt.Errorf("backup: registry dump: %w", err)
	}
	res.Dump = time.Since(t0)
	members = append(members, dm)
	m.Registry = &RegistryInfo{File: registryName, DumpInfo: info}

	t0 = time.Now()
	pr, pw := io.Pipe()
	type sealed struct {
		sum string
		n   int64
		err error
	}
	done := make(chan sealed, 1)
	go func() {
		sw := newSealWriter(pw)
		err := func() error {
			aw, err := age.Encrypt(sw, cfg.Recipients...)
			if err != nil {
				return fmt.Errorf("%w: encrypt: %w", ErrInvalid, err)
			}
			if err := writeArchive(aw, &m, members); err != nil {
				return err
			}
			if err := aw.Close(); err != nil {
				return err
			}
			return sw.Close()
		}()
		sum, n := sw.sum()
		_ = pw.CloseWithError(err)
		done <- sealed{sum, n + int64(trailerSize), err}
	}()
	putErr := cfg.Destination.Put(ctx, res.Name, pr)
	_ = pr.CloseWithError(errors.New("destination stopped reading"))
	s := <-done
	if s.err != nil {
		return res, fmt.Errorf("backup: write archive: %w", s.err)
	}
	if putErr != nil {
		return res, fmt.Errorf("backup: store %s: %w", res.Name, putErr)
	}
	res.Upload = time.Since(t0)
	res.SHA256, res.Size, res.Manifest = s.sum, s.n, m
	res.Took = cfg.Now().Sub(start)
	if res.Took <= 0 {
		res.Took = res.Checkpoint + res.Dump + res.Upload
	}
	cfg.Logger.Info("backup written", "name", res.Name, "kind", cfg.Kind, "bytes", res.Size,
		"checkpoint", res.Checkpoint, "dump", res.Dump, "upload", res.Upload)
	return res, nil
}

// checkpointMembers checkpoints the store into dir and lists its files
// (plus the keystore) as members.
func checkpointMembers(ctx context.Context, n *NodeSource, dir string) ([]member, *NodeInfo, error) {
	if err := n.Checkpointer.Checkpoint(ctx, dir); err != nil {
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		} else if !d.IsDir() {
			return fmt.Errorf("checkpoint holds %s, which is not a regular file", p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	sort.Strings(files)
	var out []member
	for _, p := range files {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil, nil, err
		}
		mb, err := fileMember(nodePrefix+n.StoreDir+"/"+filepath.ToSlash(rel), p)
		if err != nil {
			return nil, nil, fmt.Errorf("checkpoint: %w", err)
		}
		out = append(out, mb)
	}
	info := &NodeInfo{PebbleSchema: n.PebbleSchema, StoreDir: n.StoreDir, KeyStore: n.KeyStore}
	if n.KeyStore != "" {
		b, err := os.ReadFile(filepath.Join(n.DataDir, filepath.FromSlash(n.KeyStore)))
		if err != nil {
			return nil, nil, fmt.Errorf("storage keystore: %w", err)
		}
		out = append(out, bytesMember(nodePrefix+n.KeyStore, b))
	}
	return out, info, nil
}

// dumpTo writes the dump into a new file (0600) and syncs nothing: it is
// read back at once and removed.
func dumpTo(ctx context.Context, d DatabaseDumper, path string) (DumpInfo, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return DumpInfo{}, err
	}
	info, err := d.Dump(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return info, err
}
