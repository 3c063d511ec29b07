package encfs

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// EnvMasterKey is the environment variable LoadMasterKey reads when no
// master-key file is given: 64 hex characters or the base64 of 32 bytes.
const EnvMasterKey = "LEGIOND_STORAGE_MASTER_KEY"

// DevMasterKeyFile is the name, inside the data folder, of the master key
// LoadOrCreateDevMasterKey keeps for `make run`. A master key stored next
// to the data protects nothing: development only.
const DevMasterKeyFile = "master-key.DEVELOPMENT-ONLY"

// GenerateMasterKey returns a new random master key.
func GenerateMasterKey() []byte {
	k := make([]byte, MasterKeySize)
	_, _ = rand.Read(k) // crypto/rand.Read never returns an error
	return k
}

// EncodeMasterKey returns the hex form of a master key, as ParseMasterKey
// and EnvMasterKey accept it.
func EncodeMasterKey(k []byte) string { return hex.EncodeToString(k) }

// ParseMasterKey decodes master-key material: 64 hex characters or the
// base64 (standard or URL alphabet, padded or not) of 32 bytes, with
// surrounding white space ignored. With allowRaw, exactly 32 bytes of
// other content are taken as the raw key (a binary key file).
func ParseMasterKey(material []byte, allowRaw bool) ([]byte, error) {
	s := bytes.TrimSpace(material)
	var key []byte
	if len(s) == 2*MasterKeySize {
		if k, err := hex.DecodeString(string(s)); err == nil {
			key = k
		}
	}
	if key == nil {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if k, err := enc.DecodeString(string(s)); err == nil && len(k) == MasterKeySize {
				key = k
				break
			}
		}
	}
	if key == nil && allowRaw && len(material) == MasterKeySize {
		key = bytes.Clone(material)
	}
	switch {
	case key == nil:
		return nil, fmt.Errorf("want 64 hex characters or base64 of %d bytes: %w", MasterKeySize, ErrInvalidMasterKey)
	case allZero(key):
		return nil, fmt.Errorf("key is all zeros: %w", ErrInvalidMasterKey)
	}
	return key, nil
}

// LoadMasterKey returns the storage master key from file when file is not
// empty (hex, base64 or 32 raw bytes), otherwise from the EnvMasterKey
// variable read through getenv (hex or base64). Neither: ErrNoMasterKey.
func LoadMasterKey(file string, getenv func(string) string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("encfs: read master key file: %w (%w)", ErrNoMasterKey, err)
		}
		k, err := ParseMasterKey(b, true)
		if err != nil {
			return nil, fmt.Errorf("encfs: master key file %s: %w", file, err)
		}
		return k, nil
	}
	v := ""
	if getenv != nil {
		v = getenv(EnvMasterKey)
	}
	if v == "" {
		return nil, fmt.Errorf("encfs: set %s (64 hex characters) or give a master key file: %w", EnvMasterKey, ErrNoMasterKey)
	}
	k, err := ParseMasterKey([]byte(v), false)
	if err != nil {
		return nil, fmt.Errorf("encfs: %s: %w", EnvMasterKey, err)
	}
	return k, nil
}

// LoadOrCreateDevMasterKey returns the development master key kept in
// dir/DevMasterKeyFile, creating dir and the key (mode 0600) when missing.
// For `make run` and tests only: the key sits next to the data it protects.
func LoadOrCreateDevMasterKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, DevMasterKeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := ParseMasterKey(b, false)
		if err != nil {
			return nil, fmt.Errorf("encfs: %s: %w", path, err)
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("encfs: read dev master key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("encfs: create data folder: %w", err)
	}
	k := GenerateMasterKey()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first: use theirs.
		return LoadOrCreateDevMasterKey(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("encfs: create dev master key: %w", err)
	}
	_, werr := f.WriteString(EncodeMasterKey(k) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("encfs: write dev master key: %w", err)
	}
	return k, nil
}

// Fingerprint identifies a master key without revealing it: the first 8
// bytes of an HKDF-SHA256 derivation, in hex. The keystore records it, so
// a wrong key is told apart from a damaged keystore.
func Fingerprint(masterKey []byte) string {
	return hex.EncodeToString(derive(masterKey, "legiond/encfs/v1 master key fingerprint", 8))
}

// derive returns n bytes derived from the master key for one purpose.
func derive(masterKey []byte, info string, n int) []byte {
	k, err := hkdf.Key(sha256.New, masterKey, nil, info, n)
	if err != nil {
		panic("encfs: hkdf: " + err.Error()) // only for n > 255*32
	}
	return k
}
