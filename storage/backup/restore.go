package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// Target says where Restore puts an archive's parts. At least one must be
// set; each one set must be empty, and the archive must hold its part.
type Target struct {
	// DataDir receives the node's data (full backups): the checkpoint as
	// the twin store under its StoreDir and the storage keystore. It must
	// not exist or be an empty folder. Start the node on it with the
	// storage master key of the node that made the backup.
	DataDir string
	// Database receives the registry dump; it must be empty. See PgDump.
	Database DatabaseRestorer
	// SpoolDir holds the downloaded (still encrypted) archive while it is
	// checked and restored. Default os.TempDir().
	SpoolDir string
	// Logger receives progress lines. Default: discard.
	Logger *slog.Logger
}

// RestoreResult tells what Restore did and how long each step took.
type RestoreResult struct {
	Manifest Manifest      `json:"manifest"`
	Download time.Duration `json:"download"` // fetch and check the trailer
	Verify   time.Duration `json:"verify"`   // decrypt and check every member
	Restore  time.Duration `json:"restore"`  // decrypt again, write files, load the dump
	Took     time.Duration `json:"took"`
}

// Restore brings archive name back into target. It refuses non-empty
// targets (ErrNotEmpty) before reading anything, then downloads the
// archive to a spool file checking its trailer (ErrTruncated,
// ErrTampered), decrypts and checks every member against the manifest
// without writing anything (ErrWrongKey, ErrTampered, ErrChecksum,
// ErrIncompatible, ErrMissingPart), and only then decrypts it a second
// time to stage the node's files beside DataDir, load the registry dump
// (in one transaction, then compare row counts) and move the staged
// folder into place. On failure, staged files are removed and the
// database transaction is rolled back.
func Restore(ctx context.Context, d Destination, name string, ids []age.Identity, target Target) (RestoreResult, error) {
	var res RestoreResult
	start := time.Now()
	log := target.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if target.DataDir == "" && target.Database == nil {
		return res, fmt.Errorf("%w: restore needs a data folder, a database or both", ErrInvalid)
	}
	if len(ids) == 0 {
		return res, fmt.Errorf("%w: no backup identity given", ErrInvalid)
	}
	if target.DataDir != "" {
		if err := checkEmptyDir(target.DataDir); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
	}
	if target.Database != nil {
		if err := target.Database.CheckEmpty(ctx); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
	}

	// 1. Download, checking the trailer.
	t0 := time.Now()
	spool, err := download(ctx, d, name, target.SpoolDir)
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", name, err)
	}
	defer func() { _ = spool.Close(); _ = os.Remove(spool.Name()) }()
	res.Download = time.Since(t0)
	log.Info("archive downloaded and its trailer checked", "name", name, "took", res.Download)

	// 2. Verify everything, writing nothing.
	t0 = time.Now()
	var m *Manifest
	if _, _, err := openSealed(ctx, rewind(spool), ids, func(plain io.Reader) error {
		var err error
		m, err = readArchive(plain, nil)
		return err
	}); err != nil {
		return res, fmt.Errorf("restore %s: %w", name, err)
	}
	if target.DataDir != "" && m.NodeData == nil {
		return res, fmt.Errorf("restore %s: %w: a %s backup holds no node data (use a full backup)", name, ErrMissingPart, m.Kind)
	}
	if target.Database != nil && m.Registry == nil {
		return res, fmt.Errorf("restore %s: %w: no registry dump", name, ErrMissingPart)
	}
	if target.DataDir != "" && m.NodeData.PebbleSchema != pebblestore.SchemaVersion {
		return res, fmt.Errorf("restore %s: %w: twin store schema %d, this binary uses %d", name, ErrIncompatible, m.NodeData.PebbleSchema, pebblestore.SchemaVersion)
	}
	res.Verify = time.Since(t0)
	res.Manifest = *m
	log.Info("archive verified", "name", name, "kind", m.Kind, "created_at", m.CreatedAt, "files", len(m.Files), "took", res.Verify)

	// 3. Restore.
	t0 = time.Now()
	var stage string
	if target.DataDir != "" {
		parent := filepath.Dir(filepath.Clean(target.DataDir))
		if err := os.MkdirAll(parent, 0o700); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		if stage, err = os.MkdirTemp(parent, "."+filepath.Base(target.DataDir)+".restoring-*"); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		defer func() {
			if stage != "" {
				_ = os.RemoveAll(stage)
			}
		}()
	}
	_, _, err = openSealed(ctx, rewind(spool), ids, func(plain io.Reader) error {
		_, err := readArchive(plain, func(m *Manifest, f File, r io.Reader) error {
			switch {
			case f.Path == registryName && target.Database != nil:
				log.Info("loading the registry dump", "bytes", f.Size)
				return target.Database.Restore(ctx, r, m.Registry.DumpInfo)
			case strings.HasPrefix(f.Path, nodePrefix) && stage != "":
				return writeStaged(stage, strings.TrimPrefix(f.Path, nodePrefix), r)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", name, err)
	}
	if stage != "" {
		if err := syncTree(stage); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		// An empty DataDir is replaced by the staged folder.
		if err := os.Remove(target.DataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, fmt.Errorf("restore: %w", err)
		}
		if err := os.Rename(stage, target.DataDir); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		stage = ""
		if err := syncDir(filepath.Dir(filepath.Clean(target.DataDir))); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
	}
	res.Restore = time.Since(t0)
	res.Took = time.Since(start)
	log.Info("restored", "name", name, "data_dir", target.DataDir, "database", target.Database != nil, "took", res.Took)
	return res, nil
}

// checkEmptyDir accepts a missing folder or an empty one.
func checkEmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%w: data folder %s holds %d entries (%s, ...): restore into a new or empty folder", ErrNotEmpty, dir, len(ents), ents[0].Name())
	}
	return nil
}

// download copies the object into an unlinked-on-close spool file,
// checking the trailer on the way.
func download(ctx context.Context, d Destination, name, dir string) (*os.File, error) {
	rc, err := d.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	f, err := os.CreateTemp(dir, ".legiond-restore-*.tar.age")
	if err != nil {
		return nil, err
	}
	sr := newSealReader(ctx, rc)
	_, err = io.Copy(f, sr)
	if err == nil {
		_, _, err = sr.check()
	}
	if err == nil {
		_, err = f.Write(sr.pend) // the trailer, so later passes check it again
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// rewind seeks f to its start and returns it as a reader.
func rewind(f *os.File) io.Reader {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return errReader{err}
	}
	return f
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// writeStaged writes one node file under stage (folders 0700, files 0600).
func writeStaged(stage, rel string, r io.Reader) error {
	if err := checkRelPath(rel); err != nil {
		return err
	}
	p := filepath.Join(stage, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncTree fsyncs every folder under root (files were synced as written).
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return syncDir(p)
		}
		return nil
	})
}
