package encfs

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Sentinel errors. Every error returned by this package wraps one of them
// (or an error of the underlying filesystem) with context.
var (
	// ErrInvalid reports a Config that Validate refuses.
	ErrInvalid = errors.New("encfs: invalid config")
	// ErrNoMasterKey reports that no master key was configured.
	ErrNoMasterKey = errors.New("encfs: no storage master key")
	// ErrInvalidMasterKey reports master-key material that is not 32 bytes
	// of hex, base64 or raw key.
	ErrInvalidMasterKey = errors.New("encfs: invalid storage master key")
	// ErrWrongMasterKey reports a master key that is not the one the
	// keystore was written with.
	ErrWrongMasterKey = errors.New("encfs: wrong storage master key")
	// ErrNoKeyStore reports a data folder without a keystore where one is
	// required: encrypted files exist (the keystore was lost), or the caller
	// asked not to create one (Config.MustExist).
	ErrNoKeyStore = errors.New("encfs: no keystore")
	// ErrCorruptKeyStore reports a keystore that does not parse or does not
	// authenticate under the (right) master key.
	ErrCorruptKeyStore = errors.New("encfs: corrupt keystore")
	// ErrNotEncrypted reports a file that lacks the encryption header: a
	// plaintext store opened with encryption on.
	ErrNotEncrypted = errors.New("encfs: file is not encrypted")
	// ErrUnknownKey reports a file encrypted under a data key the keystore
	// does not hold.
	ErrUnknownKey = errors.New("encfs: unknown data key")
	// ErrCorruptHeader reports a file whose encryption header is damaged or
	// of an unsupported format version.
	ErrCorruptHeader = errors.New("encfs: corrupt file header")
	// ErrLocked reports that another process (or another FS in this
	// process) holds the data folder.
	ErrLocked = errors.New("encfs: data folder in use")
)

// MasterKeySize is the size of the master key and of every data key:
// AES-256.
const MasterKeySize = 32

// Config configures Open.
type Config struct {
	// Dir is the data folder (required): the keystore and its lock live in
	// it, and Open checks every file under it. Pebble stores may live in Dir
	// or below it. It is created if missing, unless MustExist.
	Dir string
	// MasterKey wraps the data keys (required, MasterKeySize bytes). See
	// LoadMasterKey and LoadOrCreateDevMasterKey.
	MasterKey []byte
	// Base is the filesystem underneath. Default vfs.Default; tests pass
	// vfs.NewMem, vfs.NewCrashableMem or an errorfs.
	Base vfs.FS
	// Logger receives Open, Rotate, RewrapMasterKey and Close events, never
	// I/O-path events. Default: discard.
	Logger *slog.Logger
	// Now stamps new data keys. Default time.Now.
	Now func() time.Time
	// MustExist makes Open fail with ErrNoKeyStore instead of creating a
	// keystore (operator tools use it, so that a mistyped folder is not
	// initialised).
	MustExist bool
}

// Validate reports a configuration that Open would refuse.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("encfs config: Dir is required: %w", ErrInvalid)
	case len(c.MasterKey) == 0:
		return fmt.Errorf("encfs config: MasterKey is required: %w", ErrNoMasterKey)
	case len(c.MasterKey) != MasterKeySize:
		return fmt.Errorf("encfs config: MasterKey is %d bytes, want %d: %w", len(c.MasterKey), MasterKeySize, ErrInvalidMasterKey)
	case allZero(c.MasterKey):
		return fmt.Errorf("encfs config: MasterKey is all zeros: %w", ErrInvalidMasterKey)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Base == nil {
		c.Base = vfs.Default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
