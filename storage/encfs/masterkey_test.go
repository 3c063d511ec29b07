package encfs

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadMasterKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	other := bytes.Repeat([]byte{0xcd}, 32)
	dir := t.TempDir()
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hexFile := write("hex", []byte(hex.EncodeToString(key)+"\n"))
	b64File := write("b64", []byte(base64.StdEncoding.EncodeToString(key)))
	rawFile := write("raw", key)
	shortFile := write("short", []byte("deadbeef"))
	zeroFile := write("zero", []byte(hex.EncodeToString(make([]byte, 32))))
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvMasterKey {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name   string
		file   string
		getenv func(string) string
		want   []byte
		err    error
	}{
		{"hex file", hexFile, nil, key, nil},
		{"base64 file", b64File, nil, key, nil},
		{"raw file", rawFile, nil, key, nil},
		{"hex env", "", env(hex.EncodeToString(key)), key, nil},
		{"base64url env", "", env(base64.RawURLEncoding.EncodeToString(key)), key, nil},
		{"file wins over env", hexFile, env(hex.EncodeToString(other)), key, nil},
		{"nothing", "", env(""), nil, ErrNoMasterKey},
		{"nil getenv", "", nil, nil, ErrNoMasterKey},
		{"missing file", filepath.Join(dir, "nope"), nil, nil, ErrNoMasterKey},
		{"short file", shortFile, nil, nil, ErrInvalidMasterKey},
		{"zero key", zeroFile, nil, nil, ErrInvalidMasterKey},
		{"raw bytes not allowed in env", "", env(string(key)), nil, ErrInvalidMasterKey},
		{"env too short", "", env("00ff"), nil, ErrInvalidMasterKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadMasterKey(tt.file, tt.getenv)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("key = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestLoadOrCreateDevMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := LoadOrCreateDevMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, DevMasterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev key mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateDevMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) || len(k1) != MasterKeySize {
		t.Fatalf("second call returned another key")
	}
	// The dev key lives in the data folder, and Open's scan skips it.
	f, err := Open(Config{Dir: dir, MasterKey: k1})
	if err != nil {
		t.Fatalf("open with dev key next to it: %v", err)
	}
	_ = f.Close()
}

func TestConfigValidate(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"ok", Config{Dir: "d", MasterKey: key}, nil},
		{"no dir", Config{MasterKey: key}, ErrInvalid},
		{"no key", Config{Dir: "d"}, ErrNoMasterKey},
		{"short key", Config{Dir: "d", MasterKey: key[:16]}, ErrInvalidMasterKey},
		{"zero key", Config{Dir: "d", MasterKey: make([]byte, 32)}, ErrInvalidMasterKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestKeyStoreRoundTripAndTamper(t *testing.T) {
	master := bytes.Repeat([]byte{3}, 32)
	ks, err := newKeySet(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if ks, err = ks.withNewPrimary(time.Date(2026, 2, 2, 3, 4, 5, 6, time.UTC)); err != nil {
		t.Fatal(err)
	}
	data, err := encodeKeyStore(ks, master)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeKeyStore(data, master)
	if err != nil {
		t.Fatal(err)
	}
	if got.primary.id != 2 || len(got.byID) != 2 || !bytes.Equal(got.byID[1].key, ks.byID[1].key) || !got.byID[2].created.Equal(ks.byID[2].created) {
		t.Fatalf("round trip lost data: primary %d, %d keys", got.primary.id, len(got.byID))
	}
	tests := []struct {
		name   string
		data   []byte
		master []byte
		want   error
	}{
		{"wrong master", data, bytes.Repeat([]byte{4}, 32), ErrWrongMasterKey},
		{"primary changed", bytes.Replace(data, []byte(`"primary": 2`), []byte(`"primary": 1`), 1), master, ErrCorruptKeyStore},
		{"not json", []byte("{"), master, ErrCorruptKeyStore},
		{"empty", nil, master, ErrCorruptKeyStore},
		{"other format", bytes.Replace(data, []byte(`"format": 1`), []byte(`"format": 9`), 1), master, ErrCorruptKeyStore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeKeyStore(tt.data, tt.master); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzDecodeKeyStore(f *testing.F) {
	master := bytes.Repeat([]byte{3}, 32)
	ks, _ := newKeySet(time.Unix(0, 0))
	data, _ := encodeKeyStore(ks, master)
	f.Add(data)
	f.Add([]byte(`{"format":1,"keys":[{"id":1,"wrapped":""}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := decodeKeyStore(b, master)
		if err == nil && (ks.primary == nil || ks.byID[ks.primary.id] != ks.primary) {
			t.Fatal("accepted keystore without its primary key")
		}
	})
}
