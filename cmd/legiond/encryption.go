package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/legionelladossier/legiond/storage/encfs"
	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// Encryption at rest of a node's data folder.
//
//	DATA/storage/            encfs.FS Dir: keystore STORAGE-KEYS, lock, (dev) master key
//	DATA/storage/twins/      the twin store (Pebble), every file encrypted
//	DATA/storage/<name>/     further Pebble stores (Raft log and stable store of cluster mode)
//	DATA/kafka/              embedded development broker: outside, see below
//	DATA/registry/           development PostgreSQL: outside, see below
//
// Only Pebble goes through encfs: the embedded broker (kfake) and the
// development PostgreSQL write with their own file APIs, and encfs refuses
// unencrypted files under its Dir, so both live beside DATA/storage. In
// production neither exists on the node: Kafka and PostgreSQL are servers
// with their own encryption at rest (volume or tablespace encryption), and
// the registry's device keys are sealed by its own master key.
//
// The storage master key is not the registry's: it comes from
// --storage-master-key-file or $LEGIOND_STORAGE_MASTER_KEY, the source
// `legiond keys`, `legiond backup run --data-dir` and the runbook use, so
// that the two keys can be rotated (`legiond keys rewrap`) and held apart.

// errPlaintextStore: the data folder holds a twin store written before
// encryption at rest (DATA/twins). The node does not mix the two layouts.
var errPlaintextStore = errors.New("unencrypted twin store")

// twinStoreName is the twin store's folder under storageDir.
const twinStoreName = "twins"

// pebbleDir is the folder of the Pebble store name under the node's
// encrypted storage folder: open it with the FS encryptedFS returns.
func pebbleDir(dataDir, name string) string { return filepath.Join(storageDir(dataDir), name) }

// encryptedFS opens the encrypted storage folder of a node's data folder
// (creating its keystore on first use) and returns the FS to open every
// Pebble store of the node with: pebblestore.Config{Dir: pebbleDir(dataDir,
// name), FS: efs}, or pebble.Options.FS for a Raft store. Close the FS after
// every store on it is closed; one process holds the folder at a time.
//
// The master key comes from masterKeyFile, else $LEGIOND_STORAGE_MASTER_KEY,
// else, with dev only, the DEVELOPMENT-ONLY key kept in the folder (created
// if missing). A missing or wrong key, a folder whose keystore is lost, and
// a data folder with a twin store from before encryption (DATA/twins) fail
// here with what to do, before anything is written.
func encryptedFS(dataDir, masterKeyFile string, dev bool, log *slog.Logger) (*encfs.FS, error) {
	if err := refusePlaintextStore(dataDir); err != nil {
		return nil, err
	}
	efs, err := openEncryptedStorage(dataDir, masterKeyFile, dev, log)
	if err == nil {
		return efs, nil
	}
	switch {
	case errors.Is(err, encfs.ErrNoMasterKey):
		return nil, fmt.Errorf("storage encryption: %w: pass --storage-master-key-file or set %s (make one with `legiond keys generate-master-key`; keep it in the node's secret store, it is never backed up)",
			err, encfs.EnvMasterKey)
	case errors.Is(err, encfs.ErrWrongMasterKey):
		return nil, fmt.Errorf("storage encryption: %w: %s was encrypted under another master key (after a restore: the key of the node that made the backup); nothing was changed",
			err, storageDir(dataDir))
	case errors.Is(err, encfs.ErrLocked):
		return nil, fmt.Errorf("storage encryption: %w: another node or legiond command uses %s", err, dataDir)
	}
	return nil, fmt.Errorf("storage encryption: %w", err)
}

// refusePlaintextStore fails when dataDir holds an unencrypted twin store
// (DATA/twins, the layout before encryption at rest): starting beside it
// with a new, empty encrypted store would silently lose its twin states.
func refusePlaintextStore(dataDir string) error {
	dir := filepath.Join(dataDir, plainTwinDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage encryption: %w", err)
	}
	return fmt.Errorf("%w in %s: this legiond keeps the twin store encrypted in %s; nothing was changed. Stop the node and run `legiond keys encrypt --data-dir %s` (copies the store through the encryption, then moves the plaintext one aside for you to delete)",
		errPlaintextStore, dir, pebbleDir(dataDir, twinStoreName), dataDir)
}

// openTwinStore opens the node's twin store: encrypted in
// DATA/storage/twins, or (PlaintextStore, tests only) in DATA/twins.
func (n *node) openTwinStore() error {
	pcfg := pebblestore.Config{Logger: n.log.With("component", "pebble"), NoSync: n.cfg.StoreNoSync}
	if n.cfg.PlaintextStore {
		pcfg.Dir = filepath.Join(n.cfg.DataDir, plainTwinDir)
		if err := os.MkdirAll(pcfg.Dir, 0o700); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.log.Warn("twin store NOT encrypted (test configuration)", "dir", pcfg.Dir)
	} else {
		efs, err := encryptedFS(n.cfg.DataDir, n.cfg.StorageMasterKeyFile, n.cfg.DevStorageKey, n.log.With("component", "encfs"))
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.efs = efs
		pcfg.Dir, pcfg.FS = pebbleDir(n.cfg.DataDir, twinStoreName), efs
	}
	st, err := pebblestore.Open(pcfg)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.store = st
	return nil
}

// twinStoreLayout is where backups find the open twin store: its folder
// and keystore relative to the data folder ("" keystore: plaintext).
func (n *node) twinStoreLayout() (storeDir, keyStore string) {
	if n.cfg.PlaintextStore {
		return plainTwinDir, ""
	}
	return encryptedTwinDir, encryptedKeyRel
}

// runKeysEncrypt moves a twin store written before encryption at rest
// (DATA/twins) into the encrypted layout (DATA/storage/twins): a file-by-file
// copy of the stopped store through encfs, checked by opening the copy and
// comparing twins and offsets, after which the plaintext folder is renamed
// DATA/twins.plaintext-old for the operator to delete (shred) once the node
// runs. Nothing is changed if any step fails before the rename.
func runKeysEncrypt(args []string, s stdio) int {
	k := newKeyFlags("encrypt", s)
	if !k.parse(args, s) {
		return exitUsage
	}
	dataDir := *k.dataDir
	src, dst := filepath.Join(dataDir, plainTwinDir), pebbleDir(dataDir, twinStoreName)
	fail := func(err error) int {
		fmt.Fprintf(s.err, "legiond keys encrypt: %v\n", err)
		return exitFailure
	}
	if err := refusePlaintextStore(dataDir); !errors.Is(err, errPlaintextStore) {
		if err == nil {
			err = fmt.Errorf("no unencrypted twin store in %s: nothing to do", src)
		}
		return fail(err)
	}
	if entries, err := os.ReadDir(dst); err == nil && len(entries) > 0 {
		return fail(fmt.Errorf("%s already holds an encrypted store: not mixing them; nothing was changed", dst))
	}
	// Count what the plaintext store holds (this also proves it is closed).
	before, err := countStore(pebblestore.Config{Dir: src})
	if err != nil {
		return fail(fmt.Errorf("plaintext store (is the node stopped?): %w", err))
	}
	file := *k.keyFile
	efs, err := openEncryptedStorage(dataDir, file, *k.devKey, nil)
	if err != nil {
		k.fail(s, err)
		return exitFailure
	}
	defer func() { _ = efs.Close() }()
	if _, err := vfs.Clone(vfs.Default, efs, src, dst, vfs.CloneSync); err != nil {
		_ = os.RemoveAll(dst)
		return fail(fmt.Errorf("copy: %w (the plaintext store is unchanged)", err))
	}
	after, err := countStore(pebblestore.Config{Dir: dst, FS: efs})
	if err == nil && after != before {
		err = fmt.Errorf("it holds %d twins and %d offsets, the plaintext store %d and %d", after.twins, after.offsets, before.twins, before.offsets)
	}
	if err != nil {
		_ = os.RemoveAll(dst)
		return fail(fmt.Errorf("the encrypted copy does not check out: %w; the plaintext store is unchanged", err))
	}
	old := src + ".plaintext-old"
	if err := os.Rename(src, old); err != nil {
		return fail(err)
	}
	fmt.Fprintf(s.out, "encrypted the twin store into %s (%d twins, %d offsets)\n", dst, after.twins, after.offsets)
	fmt.Fprintf(s.out, "the plaintext copy is in %s: delete it (shred) once the node runs\n", old)
	return exitOK
}

type storeCount struct{ twins, offsets int }

func countStore(cfg pebblestore.Config) (storeCount, error) {
	st, err := pebblestore.Open(cfg)
	if err != nil {
		return storeCount{}, err
	}
	defer func() { _ = st.Close() }()
	var c storeCount
	ctx := context.Background()
	if err := st.ForEachTwin(ctx, func(pebblestore.TwinEntry) error { c.twins++; return nil }); err != nil {
		return c, err
	}
	offs, err := st.Offsets(ctx)
	c.offsets = len(offs)
	return c, err
}
