package encfs

import (
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Names of this package's own files in Config.Dir.
const (
	// KeyStoreFile holds the wrapped data keys.
	KeyStoreFile = "STORAGE-KEYS"
	// LockFile is held from Open to Close.
	LockFile = "STORAGE-KEYS.lock"
	// keyStoreTemp is where a new keystore is written before its rename.
	keyStoreTemp = "STORAGE-KEYS.tmp"
)

// keyStoreFormat is the version of the keystore encoding.
const keyStoreFormat = 1

// HKDF purposes; changing one makes every existing keystore unreadable.
const (
	infoWrap = "legiond/encfs/v1 data key wrapping"
	infoMAC  = "legiond/encfs/v1 keystore mac"
	aadWrap  = "legiond/encfs/v1 data key "
)

// dataKey is one unwrapped data key.
type dataKey struct {
	id      uint32
	created time.Time
	key     []byte
	block   cipher.Block
}

func newDataKey(id uint32, created time.Time, key []byte) (*dataKey, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &dataKey{id: id, created: created.UTC(), key: key, block: b}, nil
}

// keySet is the in-memory keystore. It is immutable: Rotate builds a new
// one and swaps it in, so readers need no lock.
type keySet struct {
	primary *dataKey
	byID    map[uint32]*dataKey
}

// newKeySet returns a keystore holding one fresh key, id 1.
func newKeySet(now time.Time) (*keySet, error) {
	k, err := newDataKey(1, now, randomKey())
	if err != nil {
		return nil, err
	}
	return &keySet{primary: k, byID: map[uint32]*dataKey{1: k}}, nil
}

// withNewPrimary returns a copy of ks with a fresh key, one past the
// highest id, as primary.
func (ks *keySet) withNewPrimary(now time.Time) (*keySet, error) {
	var maxID uint32
	for id := range ks.byID {
		maxID = max(maxID, id)
	}
	if maxID == ^uint32(0) {
		return nil, fmt.Errorf("key ids exhausted: %w", ErrCorruptKeyStore)
	}
	k, err := newDataKey(maxID+1, now, randomKey())
	if err != nil {
		return nil, err
	}
	out := &keySet{primary: k, byID: make(map[uint32]*dataKey, len(ks.byID)+1)}
	for id, dk := range ks.byID {
		out.byID[id] = dk
	}
	out.byID[k.id] = k
	return out, nil
}

// sorted returns the keys by id.
func (ks *keySet) sorted() []*dataKey {
	out := make([]*dataKey, 0, len(ks.byID))
	for _, k := range ks.byID {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b *dataKey) int { return cmp.Compare(a.id, b.id) })
	return out
}

func randomKey() []byte {
	k := make([]byte, MasterKeySize)
	_, _ = rand.Read(k) // crypto/rand.Read never returns an error
	return k
}

// keyStoreJSON is the on-disk keystore.
type keyStoreJSON struct {
	Format      int          `json:"format"`
	Fingerprint string       `json:"master_key_fingerprint"`
	Primary     uint32       `json:"primary"`
	Keys        []storedJSON `json:"keys"`
	// MAC is HMAC-SHA256 over macInput, under a key derived from the master
	// key: it covers the primary id and the key list, which the per-key
	// GCM tags do not.
	MAC []byte `json:"mac"`
}

type storedJSON struct {
	ID      uint32    `json:"id"`
	Created time.Time `json:"created"`
	// Wrapped is nonce | AES-256-GCM(wrap key, data key, aad = purpose | id).
	Wrapped []byte `json:"wrapped"`
}

func macInput(ks *keyStoreJSON) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "legiond/encfs keystore\nformat %d\nfingerprint %s\nprimary %d\n", ks.Format, ks.Fingerprint, ks.Primary)
	for _, k := range ks.Keys {
		fmt.Fprintf(&b, "key %d %s %s\n", k.ID, k.Created.UTC().Format(time.RFC3339Nano), base64.StdEncoding.EncodeToString(k.Wrapped))
	}
	return []byte(b.String())
}

func keyStoreMAC(master []byte, ks *keyStoreJSON) []byte {
	m := hmac.New(sha256.New, derive(master, infoMAC, 32))
	m.Write(macInput(ks))
	return m.Sum(nil)
}

func wrapAEAD(master []byte) cipher.AEAD {
	b, err := aes.NewCipher(derive(master, infoWrap, 32))
	if err != nil {
		panic("encfs: aes: " + err.Error()) // the derived key is always 32 bytes
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic("encfs: gcm: " + err.Error())
	}
	return a
}

func wrapAAD(id uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(aadWrap), id)
}

// encodeKeyStore wraps every key of ks under master (fresh nonces) and
// returns the keystore file's content.
func encodeKeyStore(ks *keySet, master []byte) ([]byte, error) {
	a := wrapAEAD(master)
	out := keyStoreJSON{Format: keyStoreFormat, Fingerprint: Fingerprint(master), Primary: ks.primary.id}
	for _, k := range ks.sorted() {
		nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(k.key)+a.Overhead())
		_, _ = rand.Read(nonce)
		out.Keys = append(out.Keys, storedJSON{ID: k.id, Created: k.created, Wrapped: a.Seal(nonce, nonce, k.key, wrapAAD(k.id))})
	}
	out.MAC = keyStoreMAC(master, &out)
	b, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// decodeKeyStore parses and authenticates a keystore file's content.
func decodeKeyStore(data, master []byte) (*keySet, error) {
	var in keyStoreJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptKeyStore, err)
	}
	if in.Format != keyStoreFormat {
		return nil, fmt.Errorf("format %d, want %d: %w", in.Format, keyStoreFormat, ErrCorruptKeyStore)
	}
	if fp := Fingerprint(master); in.Fingerprint != fp {
		return nil, fmt.Errorf("keystore was written with master key %s, this key is %s: %w", in.Fingerprint, fp, ErrWrongMasterKey)
	}
	if !hmac.Equal(in.MAC, keyStoreMAC(master, &in)) {
		return nil, fmt.Errorf("keystore MAC does not verify: %w", ErrCorruptKeyStore)
	}
	if len(in.Keys) == 0 {
		return nil, fmt.Errorf("no keys: %w", ErrCorruptKeyStore)
	}
	a := wrapAEAD(master)
	ks := &keySet{byID: make(map[uint32]*dataKey, len(in.Keys))}
	for _, s := range in.Keys {
		if _, dup := ks.byID[s.ID]; dup {
			return nil, fmt.Errorf("key %d twice: %w", s.ID, ErrCorruptKeyStore)
		}
		if len(s.Wrapped) < a.NonceSize() {
			return nil, fmt.Errorf("key %d: wrapped key too short: %w", s.ID, ErrCorruptKeyStore)
		}
		key, err := a.Open(nil, s.Wrapped[:a.NonceSize()], s.Wrapped[a.NonceSize():], wrapAAD(s.ID))
		if err != nil || len(key) != MasterKeySize {
			return nil, fmt.Errorf("key %d does not unwrap: %w", s.ID, ErrCorruptKeyStore)
		}
		dk, err := newDataKey(s.ID, s.Created, key)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w: %w", s.ID, ErrCorruptKeyStore, err)
		}
		ks.byID[s.ID] = dk
	}
	ks.primary = ks.byID[in.Primary]
	if ks.primary == nil {
		return nil, fmt.Errorf("primary key %d missing: %w", in.Primary, ErrCorruptKeyStore)
	}
	return ks, nil
}

// readKeyStore loads dir/KeyStoreFile. A missing file is (nil, nil).
func readKeyStore(base vfs.FS, dir string, master []byte) (*keySet, error) {
	path := base.PathJoin(dir, KeyStoreFile)
	f, err := base.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read keystore: %w", err)
	}
	ks, err := decodeKeyStore(data, master)
	if err != nil {
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	return ks, nil
}

// writeKeyStore replaces dir/KeyStoreFile atomically and durably: temp
// file, fsync, rename, fsync of the directory. When it returns nil the new
// keystore survives a crash; when it fails the old one is still in place.
func writeKeyStore(base vfs.FS, dir string, ks *keySet, master []byte) error {
	data, err := encodeKeyStore(ks, master)
	if err != nil {
		return err
	}
	tmp := base.PathJoin(dir, keyStoreTemp)
	f, err := base.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = base.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := base.Rename(tmp, base.PathJoin(dir, KeyStoreFile)); err != nil {
		_ = base.Remove(tmp)
		return fmt.Errorf("install keystore: %w", err)
	}
	return syncDir(base, dir)
}

// syncDir makes dir's entries durable.
func syncDir(base vfs.FS, dir string) error {
	d, err := base.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open %s for sync: %w", dir, err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
