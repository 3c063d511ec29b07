package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/loadtest/fleet"
	"github.com/legionelladossier/legiond/storage/encfs"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/streams"
)

// TestNodeTwinStoreEncryptedAtRest runs a node with a small fleet flowing
// through it, closes it, and scans every file of its twin store for the
// tenant ids and event ids it stored: none may appear. The same node with
// PlaintextStore must show them (the scan works). Then the refusals: a
// wrong or missing storage master key, and an encrypted node started on the
// plaintext data folder, fail at start and change no file; `legiond keys
// encrypt` moves the plaintext store into the encrypted layout, and the
// encrypted node then opens it with every twin intact.
func TestNodeTwinStoreEncryptedAtRest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := startRegistry(t, ctx)
	start := time.Now().UTC().Truncate(time.Minute)
	fl, ups := fleetUplinks(t, fleet.Config{Sensors: 4, Gateways: 1, Seed: 11, Start: start}, start.Add(3*time.Hour))
	if err := provisionFleet(ctx, reg.store, fl, "Encryption fleet"); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	encDir, plainDir := filepath.Join(base, "encrypted"), filepath.Join(base, "plaintext")
	cfg := func(dataDir string) nodeConfig {
		return nodeConfig{DataDir: dataDir, Partitions: 2, DatabaseURL: reg.appDSN, MasterKeyFile: reg.keyFile,
			StorageMasterKeyFile: reg.storageKeyFile}
	}

	// run starts a node, lets it apply every frame and returns what its
	// store holds that must not be readable at rest.
	run := func(c nodeConfig) (needles []string) {
		t.Helper()
		n, err := startNode(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		produce(t, ctx, n.brokers, ups)
		waitCommitted(t, ctx, n.brokers, streams.TopicUplink, c.Partitions)
		tenants := map[string]bool{}
		if err := n.store.ForEachTwin(ctx, func(e pebblestore.TwinEntry) error { tenants[e.Tenant] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		needles = append(needles, sortedKeys(tenants)...)
		events := 0
		for _, m := range readAll(t, ctx, n.brokers, streams.TopicTwinEvents, c.Partitions) {
			if id := header(m, streams.HeaderEventID); id != "" && events < 20 {
				needles, events = append(needles, id), events+1
			}
		}
		if len(tenants) == 0 || events == 0 {
			t.Fatalf("nothing stored: %d tenants, %d events", len(tenants), events)
		}
		ends, err := endOffsets(ctx, n.brokers, streams.TopicUplink, c.Partitions)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		// The offsets the node committed are in its store too.
		key := c.StorageMasterKeyFile
		if c.PlaintextStore {
			key = ""
		}
		stored := storedOffsets(t, c.DataDir, key)
		for p, end := range ends {
			if got := stored[pebblestore.TopicPartition{Topic: streams.TopicUplink, Partition: int32(p)}]; got != end {
				t.Errorf("partition %d: stored offset %d, committed end %d", p, got, end)
			}
		}
		return needles
	}

	needles := run(cfg(encDir))
	if found := scanFor(t, storageDir(encDir), needles); len(found) > 0 {
		t.Errorf("plaintext found in the encrypted twin store: %v", found)
	}
	if _, err := os.Stat(filepath.Join(encDir, plainTwinDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the encrypted node made %s: %v", plainTwinDir, err)
	}

	plain := cfg(plainDir)
	plain.PlaintextStore = true
	plainNeedles := run(plain)
	found := scanFor(t, filepath.Join(plainDir, plainTwinDir), plainNeedles)
	if len(found) == 0 || !strings.Contains(strings.Join(found, " "), plainNeedles[0]) {
		t.Fatalf("the control found %v of %v in the plaintext store: the scan does not work", found, plainNeedles)
	}
	t.Logf("control: %d of %d needles found in the plaintext store; none in the encrypted one", len(found), len(plainNeedles))

	// Refusals: each fails at start and leaves every file as it was.
	otherKey := filepath.Join(t.TempDir(), "other.key")
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	if err := os.WriteFile(otherKey, []byte(hex.EncodeToString(raw)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(encfs.EnvMasterKey, "")
	refusals := []struct {
		name    string
		dir     string
		mutate  func(*nodeConfig)
		is      error
		message string
	}{
		{"wrong key", encDir, func(c *nodeConfig) { c.StorageMasterKeyFile = otherKey }, encfs.ErrWrongMasterKey, "another master key"},
		{"no key", encDir, func(c *nodeConfig) { c.StorageMasterKeyFile = "" }, encfs.ErrNoMasterKey, "--storage-master-key-file"},
		{"plaintext store", plainDir, func(*nodeConfig) {}, errPlaintextStore, "legiond keys encrypt"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := treeDigest(t, tt.dir)
			c := cfg(tt.dir)
			tt.mutate(&c)
			n, err := startNode(ctx, c)
			if err == nil {
				_ = n.Close()
				t.Fatal("the node started")
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q, want %v mentioning %q", err, tt.is, tt.message)
			}
			if after := treeDigest(t, tt.dir); !maps.Equal(before, after) {
				t.Errorf("files changed by a refused start:\nbefore %v\nafter  %v", before, after)
			}
		})
	}

	// Migration of the plaintext folder, then the encrypted node opens it.
	want := storedSensors(t, plainDir, "")
	code, out, errs := runCLI(t, "", "keys", "encrypt", "--data-dir", plainDir, "--master-key-file", reg.storageKeyFile)
	if code != exitOK {
		t.Fatalf("keys encrypt: exit %d\n%s%s", code, out, errs)
	}
	if found := scanFor(t, storageDir(plainDir), plainNeedles); len(found) > 0 {
		t.Errorf("plaintext found in the migrated store: %v", found)
	}
	n, err := startNode(ctx, cfg(plainDir))
	if err != nil {
		t.Fatalf("node on the migrated folder: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if got := storedSensors(t, plainDir, reg.storageKeyFile); !maps.Equal(got, want) || len(got) != len(fl.Sensors()) {
		t.Errorf("migrated store holds %d sensor twins (equal: %v), want %d", len(got), maps.Equal(got, want), len(want))
	}
}

// storedOffsets reads the Kafka offsets kept in a stopped node's store.
func storedOffsets(t *testing.T, dataDir, storageKeyFile string) map[pebblestore.TopicPartition]int64 {
	t.Helper()
	st, _, closeStore, err := openTwinStore(dataDir, storageKeyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	offs, err := st.Offsets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return offs
}

// scanFor returns the needles found in any file under dir.
func scanFor(t *testing.T, dir string, needles []string) []string {
	t.Helper()
	found := map[string]bool{}
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for _, nd := range needles {
			if bytes.Contains(b, []byte(nd)) {
				found[nd+" in "+filepath.Base(p)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Fatalf("only %d files under %s", files, dir)
	}
	return sortedKeys(found)
}

// treeDigest maps every file under dir to its SHA-256.
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, string(filepath.Separator)+"registry"+string(filepath.Separator)) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[strings.TrimPrefix(p, dir)] = hex.EncodeToString(sum[:8])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
