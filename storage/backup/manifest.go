package backup

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

// FormatVersion is the archive format this package writes. Restore and
// Verify refuse a larger one with ErrIncompatible.
const FormatVersion = 1

// Kind says what an archive holds.
type Kind string

// Backup kinds. Every archive holds the registry dump; a full one also
// holds the node's Pebble checkpoint and storage keystore.
const (
	// KindDatabase: the PostgreSQL registry only (the daily backup).
	KindDatabase Kind = "db"
	// KindFull: the registry and the node's data (the weekly backup).
	KindFull Kind = "full"
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindDatabase || k == KindFull }

// Archive member names.
const (
	manifestName = "manifest.json"
	registryName = "registry/registry.pgdump"
	nodePrefix   = "node/"
	maxManifest  = 4 << 20
)

// Manifest describes an archive. It is the archive's first member, inside
// the encryption: nothing about a backup is readable without the key
// except the object name (kind, time, node) and the size.
type Manifest struct {
	Format         int       `json:"format"`
	Kind           Kind      `json:"kind"`
	CreatedAt      time.Time `json:"created_at"`
	Node           string    `json:"node"`
	LegiondVersion string    `json:"legiond_version"`
	// Registry describes the PostgreSQL dump (every kind has one).
	Registry *RegistryInfo `json:"registry,omitempty"`
	// NodeData describes the node's files (full backups).
	NodeData *NodeInfo `json:"node_data,omitempty"`
	// Files lists every member after the manifest, in archive order.
	Files []File `json:"files"`
}

// RegistryInfo describes the registry dump.
type RegistryInfo struct {
	// File is the member holding the dump.
	File string `json:"file"`
	DumpInfo
}

// DumpInfo is what a DatabaseDumper reports about its dump, taken in the
// dump's own snapshot.
type DumpInfo struct {
	// Format names the dump format, e.g. "pg_dump-custom".
	Format string `json:"format"`
	// SchemaVersion is the registry's goose version (0 when unknown).
	SchemaVersion int64 `json:"schema_version"`
	// ServerVersion and Tool are the PostgreSQL server and pg_dump versions.
	ServerVersion string `json:"server_version"`
	Tool          string `json:"tool"`
	// Tables maps "schema.table" to its row count in the snapshot; Restore
	// compares them after loading the dump.
	Tables map[string]int64 `json:"tables"`
	// AuditHead is the newest audit entry ("seq:sha256hex"), an anchor for
	// `legiond audit verify --anchor`. Empty when there is none.
	AuditHead string `json:"audit_head,omitempty"`
}

// NodeInfo describes the node's files.
type NodeInfo struct {
	// PebbleSchema is the twin store's keyspace version.
	PebbleSchema int `json:"pebble_schema"`
	// StoreDir is the store's folder relative to the data folder
	// ("storage/twins"); its files are members under node/StoreDir/.
	StoreDir string `json:"store_dir"`
	// KeyStore is the storage keystore's path relative to the data folder
	// ("storage/STORAGE-KEYS"), empty when the store is not encrypted. The
	// checkpoint files are encrypted under its data keys, which the storage
	// master key (never in a backup) unwraps.
	KeyStore string `json:"key_store,omitempty"`
}

// File is one archive member after the manifest.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// validate checks a manifest read from an archive.
func (m *Manifest) validate() error {
	if m.Format < 1 {
		return fmt.Errorf("%w: manifest has no format version", ErrChecksum)
	}
	if m.Format > FormatVersion {
		return fmt.Errorf("%w: archive format %d, this binary reads up to %d", ErrIncompatible, m.Format, FormatVersion)
	}
	if !m.Kind.Valid() {
		return fmt.Errorf("%w: unknown kind %q", ErrIncompatible, m.Kind)
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if err := checkMemberPath(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("%w: %s listed twice", ErrChecksum, f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 || !hexSHA256.MatchString(f.SHA256) {
			return fmt.Errorf("%w: bad size or checksum for %s", ErrChecksum, f.Path)
		}
	}
	if m.Registry != nil && !seen[m.Registry.File] {
		return fmt.Errorf("%w: registry dump %q not listed", ErrChecksum, m.Registry.File)
	}
	if m.NodeData != nil {
		if err := checkRelPath(m.NodeData.StoreDir); err != nil {
			return err
		}
		if m.NodeData.KeyStore != "" {
			if err := checkRelPath(m.NodeData.KeyStore); err != nil {
				return err
			}
		}
	}
	if m.Kind == KindFull && m.NodeData == nil {
		return fmt.Errorf("%w: full backup without node data", ErrChecksum)
	}
	return nil
}

// checkMemberPath refuses member names that could escape a restore folder.
func checkMemberPath(p string) error {
	if p == manifestName || p == registryName {
		return nil
	}
	if !strings.HasPrefix(p, nodePrefix) {
		return fmt.Errorf("%w: unexpected member %q", ErrChecksum, p)
	}
	return checkRelPath(strings.TrimPrefix(p, nodePrefix))
}

// checkRelPath accepts a clean, relative, slash-separated path without
// "..", "." or empty elements.
func checkRelPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.Contains(p, "\\") {
		return fmt.Errorf("%w: unsafe path %q", ErrChecksum, p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." || el == "." || el == "" {
			return fmt.Errorf("%w: unsafe path %q", ErrChecksum, p)
		}
	}
	return nil
}

func (m *Manifest) marshal() ([]byte, error) { return json.MarshalIndent(m, "", "  ") }

// ---- object names ----

const (
	namePrefix = "legiond-"
	nameSuffix = ".tar.age"
	nameTime   = "20060102T150405Z"
)

var nodeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// SanitizeNode turns a host or node name into the form object names use:
// lower case, [a-z0-9.-], at most 63 characters ("node" if nothing is left).
func SanitizeNode(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), ".-")
	if len(out) > 63 {
		out = strings.Trim(out[:63], ".-")
	}
	if out == "" {
		return "node"
	}
	return out
}

// ObjectName returns legiond-<kind>-<UTC time>-<node>.tar.age, e.g.
// legiond-db-20250301T020000Z-node-1.tar.age. Names sort by kind, then time.
func ObjectName(kind Kind, at time.Time, node string) string {
	return namePrefix + string(kind) + "-" + at.UTC().Format(nameTime) + "-" + SanitizeNode(node) + nameSuffix
}

// ObjectInfo is what an object name says.
type ObjectInfo struct {
	Kind Kind
	At   time.Time
	Node string
}

// ParseObjectName is the inverse of ObjectName; ok is false for names this
// package did not make.
func ParseObjectName(name string) (ObjectInfo, bool) {
	rest, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return ObjectInfo{}, false
	}
	rest, ok = strings.CutSuffix(rest, nameSuffix)
	if !ok {
		return ObjectInfo{}, false
	}
	kind, rest, ok := strings.Cut(rest, "-")
	if !ok || !Kind(kind).Valid() || len(rest) < len(nameTime)+2 || rest[len(nameTime)] != '-' {
		return ObjectInfo{}, false
	}
	at, err := time.Parse(nameTime, rest[:len(nameTime)])
	node := rest[len(nameTime)+1:]
	if err != nil || !nodeNameRE.MatchString(node) {
		return ObjectInfo{}, false
	}
	return ObjectInfo{Kind: Kind(kind), At: at, Node: node}, true
}

// validObjectName accepts names a destination may store: one path element
// of [A-Za-z0-9._-], not starting with '.' (temporary files do).
func validObjectName(name string) error {
	if name == "" || len(name) > 255 || name[0] == '.' {
		return fmt.Errorf("%w: object name %q", ErrInvalid, name)
	}
	for _, r := range name {
		if !nameRune(r) {
			return fmt.Errorf("%w: object name %q", ErrInvalid, name)
		}
	}
	return nil
}

func nameRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return r == '.' || r == '_' || r == '-'
}

// BuildVersion is this binary's module version and VCS revision, the
// default Config.Version.
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
