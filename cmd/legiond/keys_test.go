package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/legionelladossier/legiond/storage/encfs"
)

// keysFixture is a data folder with a keystore, one encrypted file, and a
// master key file.
type keysFixture struct {
	dir     string
	keyFile string
	key     []byte
}

// sst is the encrypted file the fixture wrote.
func (fx keysFixture) sst() string { return filepath.Join(storageDir(fx.dir), "000001.sst") }

func newKeysFixture(t *testing.T) keysFixture {
	t.Helper()
	t.Setenv(encfs.EnvMasterKey, "")
	root := t.TempDir()
	fx := keysFixture{dir: filepath.Join(root, "data"), keyFile: filepath.Join(root, "master.key"), key: bytes.Repeat([]byte{0x42}, 32)}
	if err := os.WriteFile(fx.keyFile, []byte(hex.EncodeToString(fx.key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	efs, err := encfs.Open(encfs.Config{Dir: storageDir(fx.dir), MasterKey: fx.key})
	if err != nil {
		t.Fatal(err)
	}
	writeEncrypted(t, efs, fx.sst(), "written under key 1")
	if err := efs.Close(); err != nil {
		t.Fatal(err)
	}
	return fx
}

func writeEncrypted(t *testing.T, efs *encfs.FS, name, content string) {
	t.Helper()
	f, err := efs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readEncrypted(t *testing.T, efs *encfs.FS, name string) string {
	t.Helper()
	f, err := efs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKeysRotateThenStatus(t *testing.T) {
	fx := newKeysFixture(t)
	code, out, errOut := runCLI(t, "", "keys", "status", "--data-dir", fx.dir, "--master-key-file", fx.keyFile)
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "primary key:  1") || !strings.Contains(out, encfs.Fingerprint(fx.key)) {
		t.Fatalf("status before rotation:\n%s", out)
	}

	code, out, errOut = runCLI(t, "", "keys", "rotate", "--data-dir", fx.dir, "--master-key-file", fx.keyFile)
	if code != exitOK || !strings.Contains(out, "storage data key 2 is now primary (was 1)") {
		t.Fatalf("rotate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// The key can also come from the environment.
	t.Setenv(encfs.EnvMasterKey, hex.EncodeToString(fx.key))
	code, out, errOut = runCLI(t, "", "keys", "status", "--data-dir", fx.dir)
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, errOut)
	}
	rows := map[string][]string{} // key id → fields
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	// KEY CREATED [PRIMARY] FILES BYTES
	if !strings.Contains(out, "primary key:  2") ||
		strings.Join(rows["1"][2:], " ") != "1 19" || strings.Join(rows["2"][2:], " ") != "yes 0 0" {
		t.Fatalf("status after rotation:\n%s", out)
	}

	// A node opening the folder now writes under key 2 and still reads key 1.
	efs, err := encfs.Open(encfs.Config{Dir: storageDir(fx.dir), MasterKey: fx.key})
	if err != nil {
		t.Fatal(err)
	}
	defer efs.Close()
	if efs.PrimaryKeyID() != 2 {
		t.Fatalf("primary %d, want 2", efs.PrimaryKeyID())
	}
	if got := readEncrypted(t, efs, fx.sst()); got != "written under key 1" {
		t.Fatalf("old file reads %q", got)
	}
}

func TestKeysRefusals(t *testing.T) {
	fx := newKeysFixture(t)
	wrongKey := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrongKey, []byte(hex.EncodeToString(bytes.Repeat([]byte{7}, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	missingDir := filepath.Join(t.TempDir(), "nowhere")
	tests := []struct {
		name string
		args []string
		hold bool // a node has the folder open
		code int
		want string
	}{
		{"wrong master key", []string{"rotate", "--data-dir", fx.dir, "--master-key-file", wrongKey}, false, exitFailure, "wrong storage master key"},
		{"no master key", []string{"rotate", "--data-dir", fx.dir}, false, exitFailure, encfs.EnvMasterKey},
		{"node running", []string{"rotate", "--data-dir", fx.dir, "--master-key-file", fx.keyFile}, true, exitFailure, "stop the node first"},
		{"not a data folder", []string{"rotate", "--data-dir", missingDir, "--master-key-file", fx.keyFile}, false, exitFailure, "no keystore"},
		{"no data dir", []string{"status", "--master-key-file", fx.keyFile}, false, exitUsage, "--data-dir is required"},
		{"two key sources", []string{"status", "--data-dir", fx.dir, "--master-key-file", fx.keyFile, "--dev-master-key"}, false, exitUsage, "not both"},
		{"unknown verb", []string{"destroy"}, false, exitUsage, "unknown command"},
		{"no verb", nil, false, exitUsage, "usage: legiond keys"},
		{"rewrap without new key", []string{"rewrap", "--data-dir", fx.dir, "--master-key-file", fx.keyFile}, false, exitUsage, "--new-master-key-file is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.hold {
				efs, err := encfs.Open(encfs.Config{Dir: storageDir(fx.dir), MasterKey: fx.key})
				if err != nil {
					t.Fatal(err)
				}
				defer efs.Close()
			}
			before := snapshotFiles(t, fx.dir)
			code, _, errOut := runCLI(t, "", append([]string{"keys"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tt.code, errOut, tt.want)
			}
			if after := snapshotFiles(t, fx.dir); !equalFiles(before, after) {
				t.Fatal("a refused command changed the data folder")
			}
			if _, err := os.Stat(missingDir); err == nil {
				t.Fatal("a refused command created a data folder")
			}
		})
	}
}

func TestKeysRewrap(t *testing.T) {
	fx := newKeysFixture(t)
	newKey := filepath.Join(t.TempDir(), "new.key")
	code, out, errOut := runCLI(t, "", "keys", "generate-master-key", "--out", newKey)
	if code != exitOK || !strings.Contains(out, newKey) {
		t.Fatalf("generate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "", "keys", "rewrap", "--data-dir", fx.dir, "--master-key-file", fx.keyFile, "--new-master-key-file", newKey)
	if code != exitOK || !strings.Contains(out, "opens with master key") {
		t.Fatalf("rewrap: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "", "keys", "status", "--data-dir", fx.dir, "--master-key-file", fx.keyFile)
	if code != exitFailure || !strings.Contains(errOut, "wrong storage master key") {
		t.Fatalf("old key after rewrap: exit %d, stderr %q", code, errOut)
	}
	k, err := encfs.LoadMasterKey(newKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	efs, err := encfs.Open(encfs.Config{Dir: storageDir(fx.dir), MasterKey: k})
	if err != nil {
		t.Fatal(err)
	}
	defer efs.Close()
	if got := readEncrypted(t, efs, fx.sst()); got != "written under key 1" {
		t.Fatalf("file after rewrap reads %q", got)
	}
}

func TestKeysGenerateMasterKey(t *testing.T) {
	code, out, errOut := runCLI(t, "", "keys", "generate-master-key")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if _, err := encfs.ParseMasterKey([]byte(out), false); err != nil || len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("printed key %q: %v", out, err)
	}
	file := filepath.Join(t.TempDir(), "k")
	if code, _, _ := runCLI(t, "", "keys", "generate-master-key", "--out", file); code != exitOK {
		t.Fatalf("--out: exit %d", code)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	before, _ := os.ReadFile(file)
	code, _, errOut = runCLI(t, "", "keys", "generate-master-key", "--out", file)
	after, _ := os.ReadFile(file)
	if code != exitFailure || !strings.Contains(errOut, "refusing to overwrite") || !bytes.Equal(before, after) {
		t.Fatalf("overwrite: exit %d, stderr %q", code, errOut)
	}
}

func TestKeysDevMasterKey(t *testing.T) {
	t.Setenv(encfs.EnvMasterKey, "")
	dir := t.TempDir()
	efs, err := openEncryptedStorage(dir, "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = efs.Close()
	code, out, errOut := runCLI(t, "", "keys", "rotate", "--data-dir", dir, "--dev-master-key")
	if code != exitOK || !strings.Contains(out, "key 2 is now primary") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestOpenEncryptedStorage(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	tests := []struct {
		name    string
		env     string
		keyFile bool
		dev     bool
		wantErr error
		devKey  bool // the dev key file exists afterwards
	}{
		{"key file", "", true, false, nil, false},
		{"environment", hex.EncodeToString(key), false, false, nil, false},
		{"environment wins over dev key", hex.EncodeToString(key), false, true, nil, false},
		{"dev key created", "", false, true, nil, true},
		{"no key outside dev", "", false, false, encfs.ErrNoMasterKey, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(encfs.EnvMasterKey, tt.env)
			dir := t.TempDir()
			file := ""
			if tt.keyFile {
				file = filepath.Join(t.TempDir(), "k")
				if err := os.WriteFile(file, []byte(hex.EncodeToString(key)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			efs, err := openEncryptedStorage(dir, file, tt.dev, nil)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer efs.Close()
			if _, err := os.Stat(filepath.Join(storageDir(dir), encfs.KeyStoreFile)); err != nil {
				t.Fatalf("no keystore in the storage folder: %v", err)
			}
			_, err = os.Stat(filepath.Join(storageDir(dir), encfs.DevMasterKeyFile))
			if (err == nil) != tt.devKey {
				t.Fatalf("dev key file exists: %v, want %v", err == nil, tt.devKey)
			}
		})
	}
}

func snapshotFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
