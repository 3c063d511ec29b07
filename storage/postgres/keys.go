package postgres

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// Envelope encryption of device keys:
//
//   - each customer has an AES-256 data key (table data_keys), stored only
//     wrapped (AES-256-GCM) by a master key that never reaches the database;
//   - each device key is sealed with AES-256-GCM under its customer's data
//     key, with the row and column as additional data, so a ciphertext
//     copied to another row or column does not decrypt.
//
// Ciphertext layout: version (1 byte, 1) | nonce (12) | ciphertext+tag.

// MasterKeyEnv is the environment variable holding the master key.
const MasterKeyEnv = "LEGIOND_MASTER_KEY"

// DevMasterKeyFile is the name of the generated development key file.
const DevMasterKeyFile = "master-key.DEVELOPMENT-ONLY.txt"

const cipherVersion = 1

// MasterKey is a 256-bit key-encryption key.
type MasterKey struct {
	id  string
	key [32]byte
}

// ID is a short fingerprint stored beside wrapped keys, so the right key
// is picked after a rotation. It reveals nothing about the key.
func (m MasterKey) ID() string { return m.id }

// String never prints the key.
func (m MasterKey) String() string { return "MasterKey(" + m.id + ")" }

// NewMasterKey wraps 32 raw bytes.
func NewMasterKey(raw []byte) (MasterKey, error) {
	var m MasterKey
	if len(raw) != 32 {
		return m, fmt.Errorf("master key: want 32 bytes, got %d", len(raw))
	}
	copy(m.key[:], raw)
	if m.key == [32]byte{} {
		return m, errors.New("master key: all zero")
	}
	sum := sha256.Sum256(append([]byte("legiond master key id\x00"), raw...))
	m.id = hex.EncodeToString(sum[:6])
	return m, nil
}

// GenerateMasterKey returns a fresh random master key.
func GenerateMasterKey() (MasterKey, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return MasterKey{}, fmt.Errorf("master key: %w", err)
	}
	return NewMasterKey(raw[:])
}

// ParseMasterKey reads 64 hex digits or standard base64 of 32 bytes.
// Lines starting with '#' and blank lines are ignored.
func ParseMasterKey(text string) (MasterKey, error) {
	var body strings.Builder
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		body.WriteString(line)
	}
	s := body.String()
	if len(s) == 64 {
		if raw, err := hex.DecodeString(s); err == nil {
			return NewMasterKey(raw)
		}
	}
	if raw, err := base64.StdEncoding.DecodeString(s); err == nil {
		return NewMasterKey(raw)
	}
	return MasterKey{}, errors.New("master key: want 64 hex digits or base64 of 32 bytes")
}

// LoadMasterKeyFile reads a master key file. The file must not be
// readable by other users.
func LoadMasterKeyFile(path string) (MasterKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return MasterKey{}, fmt.Errorf("master key file: %w", err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return MasterKey{}, fmt.Errorf("master key file %s is accessible by other users (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return MasterKey{}, fmt.Errorf("master key file: %w", err)
	}
	m, err := ParseMasterKey(string(b))
	if err != nil {
		return MasterKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// LoadMasterKey loads the key from file when set, else from the
// environment variable LEGIOND_MASTER_KEY read through getenv.
func LoadMasterKey(file string, getenv func(string) string) (MasterKey, error) {
	if file != "" {
		return LoadMasterKeyFile(file)
	}
	if v := getenv(MasterKeyEnv); v != "" {
		return ParseMasterKey(v)
	}
	return MasterKey{}, fmt.Errorf("%w: set %s or pass a master key file", ErrNoKeyRing, MasterKeyEnv)
}

// LoadOrCreateDevMasterKey returns the development master key in dir,
// generating it on first use. Its file name and first lines say that it
// is for development only. Never use it for real devices.
func LoadOrCreateDevMasterKey(dir string) (MasterKey, string, error) {
	path := filepath.Join(dir, DevMasterKeyFile)
	if _, err := os.Stat(path); err == nil {
		m, err := LoadMasterKeyFile(path)
		return m, path, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return MasterKey{}, "", fmt.Errorf("dev master key: %w", err)
	}
	m, err := GenerateMasterKey()
	if err != nil {
		return MasterKey{}, "", err
	}
	body := "# DEVELOPMENT ONLY master key, generated for `make run`.\n" +
		"# NOT FOR PRODUCTION: anything encrypted with it is as good as plaintext.\n" +
		hex.EncodeToString(m.key[:]) + "\n"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return MasterKey{}, "", fmt.Errorf("dev master key: %w", err)
	}
	if _, err := f.WriteString(body); err != nil {
		_ = f.Close()
		return MasterKey{}, "", fmt.Errorf("dev master key: %w", err)
	}
	if err := f.Close(); err != nil {
		return MasterKey{}, "", fmt.Errorf("dev master key: %w", err)
	}
	return m, path, nil
}

// KeyRing holds the primary master key (wraps new data keys) and retired
// ones (still unwrap old data keys), plus a cache of unwrapped data keys.
// It is safe for concurrent use.
type KeyRing struct {
	primary MasterKey
	byID    map[string]cipher.AEAD

	mu   sync.RWMutex
	deks map[uuid.UUID]cipher.AEAD
}

// NewKeyRing builds a key ring.
func NewKeyRing(primary MasterKey, retired ...MasterKey) (*KeyRing, error) {
	if primary.id == "" {
		return nil, errors.New("key ring: no primary master key")
	}
	kr := &KeyRing{primary: primary, byID: map[string]cipher.AEAD{}, deks: map[uuid.UUID]cipher.AEAD{}}
	for _, m := range append([]MasterKey{primary}, retired...) {
		a, err := newGCM(m.key[:])
		if err != nil {
			return nil, err
		}
		kr.byID[m.id] = a
	}
	return kr, nil
}

// PrimaryID is the fingerprint of the key that wraps new data keys.
func (k *KeyRing) PrimaryID() string { return k.primary.id }

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(b)
}

func seal(a cipher.AEAD, plain, aad []byte) ([]byte, error) {
	out := make([]byte, 1+a.NonceSize(), 1+a.NonceSize()+len(plain)+a.Overhead())
	out[0] = cipherVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return a.Seal(out, out[1:1+a.NonceSize()], plain, aad), nil
}

func open(a cipher.AEAD, ct, aad []byte) ([]byte, error) {
	n := a.NonceSize()
	if len(ct) < 1+n+a.Overhead() || ct[0] != cipherVersion {
		return nil, ErrDecrypt
	}
	p, err := a.Open(nil, ct[1:1+n], ct[1+n:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return p, nil
}

func dekAAD(customer uuid.UUID) []byte { return []byte("legiond/data-key/v1/" + customer.String()) }

// newDataKey generates a data key for customer and wraps it.
func (k *KeyRing) newDataKey(customer uuid.UUID) (raw []byte, masterID string, wrapped []byte, err error) {
	raw = make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", nil, fmt.Errorf("data key: %w", err)
	}
	wrapped, err = seal(k.byID[k.primary.id], raw, dekAAD(customer))
	if err != nil {
		return nil, "", nil, err
	}
	return raw, k.primary.id, wrapped, nil
}

// dataKey returns the AEAD for a stored data key, unwrapping it once.
func (k *KeyRing) dataKey(id, customer uuid.UUID, masterID string, wrapped []byte) (cipher.AEAD, error) {
	k.mu.RLock()
	a, ok := k.deks[id]
	k.mu.RUnlock()
	if ok {
		return a, nil
	}
	m, ok := k.byID[masterID]
	if !ok {
		return nil, fmt.Errorf("%w: data key %s is wrapped by master key %s, which is not loaded", ErrDecrypt, id, masterID)
	}
	raw, err := open(m, wrapped, dekAAD(customer))
	if err != nil {
		return nil, fmt.Errorf("%w: data key %s", ErrDecrypt, id)
	}
	a, err = newGCM(raw)
	clear(raw)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.deks[id] = a
	k.mu.Unlock()
	return a, nil
}

// fieldAAD binds a sealed device key to its row and column.
func fieldAAD(devEUI EUI64, column string) []byte {
	return []byte("legiond/device-key/v1/" + devEUI.String() + "/" + column)
}

func sealKey(a cipher.AEAD, devEUI EUI64, column string, key *AES128Key) ([]byte, error) {
	if key == nil {
		return nil, nil
	}
	return seal(a, key[:], fieldAAD(devEUI, column))
}

func openKey(a cipher.AEAD, devEUI EUI64, column string, ct []byte) (*AES128Key, error) {
	if ct == nil {
		return nil, nil
	}
	p, err := open(a, ct, fieldAAD(devEUI, column))
	if err != nil {
		return nil, fmt.Errorf("%w: %s of %s", err, column, devEUI)
	}
	if len(p) != 16 {
		return nil, fmt.Errorf("%w: %s of %s has %d bytes", ErrDecrypt, column, devEUI, len(p))
	}
	var k AES128Key
	copy(k[:], p)
	clear(p)
	return &k, nil
}
