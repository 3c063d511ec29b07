package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

type rawMember struct {
	name string
	data string
	typ  byte
}

// craft builds an archive by hand: a tar of members, encrypted and sealed.
func craft(t *testing.T, rcpt age.Recipient, members ...rawMember) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: m.name, Typeflag: typ, Mode: 0o600, Size: int64(len(m.data))}
		if typ != tar.TypeReg {
			h.Size, h.Linkname = 0, "x"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(m.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sw := newSealWriter(&out)
	aw, err := age.Encrypt(sw, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func manifestJSON(t *testing.T, mod func(m *Manifest), files ...File) string {
	t.Helper()
	m := Manifest{Format: FormatVersion, Kind: KindDatabase, CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Node: "n",
		Registry: &RegistryInfo{File: registryName, DumpInfo: DumpInfo{Format: dumpFormat}}, Files: files}
	if mod != nil {
		mod(&m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerifyChecksContentAgainstManifest(t *testing.T) {
	id, rcpt := testKey(t)
	dump := "PGDMP fake dump"
	good := File{Path: registryName, Size: int64(len(dump)), SHA256: sha(dump)}
	cases := []struct {
		name    string
		members []rawMember
		want    error
		msg     string
	}{
		{"well formed", []rawMember{{manifestName, manifestJSON(t, nil, good), 0}, {registryName, dump, 0}}, nil, ""},
		{"wrong checksum", []rawMember{{manifestName, manifestJSON(t, nil, File{Path: registryName, Size: int64(len(dump)), SHA256: sha("other")}), 0}, {registryName, dump, 0}}, ErrChecksum, "SHA-256"},
		{"wrong size", []rawMember{{manifestName, manifestJSON(t, nil, File{Path: registryName, Size: 3, SHA256: sha(dump)}), 0}, {registryName, dump, 0}}, ErrChecksum, "bytes"},
		{"member missing", []rawMember{{manifestName, manifestJSON(t, nil, good), 0}}, ErrChecksum, "missing"},
		{"extra member", []rawMember{{manifestName, manifestJSON(t, nil, good), 0}, {registryName, dump, 0}, {"node/x", "y", 0}}, ErrChecksum, "not in the manifest"},
		{"member twice", []rawMember{{manifestName, manifestJSON(t, nil, good), 0}, {registryName, dump, 0}, {registryName, dump, 0}}, ErrChecksum, "twice"},
		{"manifest not first", []rawMember{{registryName, dump, 0}, {manifestName, manifestJSON(t, nil, good), 0}}, ErrChecksum, "manifest"},
		{"no manifest", nil, ErrChecksum, "manifest"},
		{"manifest not JSON", []rawMember{{manifestName, "{", 0}}, ErrChecksum, "manifest"},
		{"path escapes", []rawMember{{manifestName, manifestJSON(t, nil, good, File{Path: "node/../../etc/passwd", SHA256: sha("")}), 0}}, ErrChecksum, "unsafe"},
		{"absolute store dir", []rawMember{{manifestName, manifestJSON(t, func(m *Manifest) {
			m.NodeData = &NodeInfo{StoreDir: "/etc"}
		}, good), 0}, {registryName, dump, 0}}, ErrChecksum, "unsafe"},
		{"symlink member", []rawMember{{manifestName, manifestJSON(t, nil, good, File{Path: "node/link", SHA256: sha("")}), 0}, {registryName, dump, 0}, {"node/link", "", tar.TypeSymlink}}, ErrChecksum, "regular"},
		{"newer format", []rawMember{{manifestName, manifestJSON(t, func(m *Manifest) { m.Format = FormatVersion + 1 }, good), 0}, {registryName, dump, 0}}, ErrIncompatible, "format"},
		{"unknown kind", []rawMember{{manifestName, manifestJSON(t, func(m *Manifest) { m.Kind = "docs" }, good), 0}, {registryName, dump, 0}}, ErrIncompatible, "kind"},
		{"full without node data", []rawMember{{manifestName, manifestJSON(t, func(m *Manifest) { m.Kind = KindFull }, good), 0}, {registryName, dump, 0}}, ErrChecksum, "node data"},
		{"not a tar", []rawMember{}, nil, ""}, // replaced below
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			dest, err := NewLocalDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			data := craft(t, rcpt, tc.members...)
			want, msg := tc.want, tc.msg
			if tc.name == "not a tar" {
				var out bytes.Buffer
				sw := newSealWriter(&out)
				aw, _ := age.Encrypt(sw, rcpt)
				_, _ = io.WriteString(aw, strings.Repeat("garbage ", 200))
				_ = aw.Close()
				_ = sw.Close()
				data, want, msg = out.Bytes(), ErrChecksum, "manifest"
			}
			name := ObjectName(KindDatabase, time.Now(), "n")
			if err := dest.Put(ctx, name, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			v, err := Verify(ctx, dest, name, []age.Identity{id})
			if want == nil {
				if err != nil || v.Manifest == nil || v.Manifest.Files[0] != good {
					t.Fatalf("%+v %v", v, err)
				}
				return
			}
			if !errors.Is(err, want) || !strings.Contains(err.Error(), msg) {
				t.Fatalf("want %v (%q), got %v", want, msg, err)
			}
		})
	}
}

func TestObjectNames(t *testing.T) {
	at := time.Date(2025, 3, 1, 2, 0, 5, 999, time.FixedZone("CET", 3600))
	cases := []struct {
		kind Kind
		node string
		want string
	}{
		{KindDatabase, "node-1", "legiond-db-20250301T010005Z-node-1.tar.age"},
		{KindFull, "Node 1.example.COM", "legiond-full-20250301T010005Z-node-1.example.com.tar.age"},
		{KindFull, "---", "legiond-full-20250301T010005Z-node.tar.age"},
		{KindDatabase, strings.Repeat("a", 80), "legiond-db-20250301T010005Z-" + strings.Repeat("a", 63) + ".tar.age"},
	}
	for _, tc := range cases {
		got := ObjectName(tc.kind, at, tc.node)
		if got != tc.want {
			t.Errorf("ObjectName(%s, %q) = %q, want %q", tc.kind, tc.node, got, tc.want)
		}
		info, ok := ParseObjectName(got)
		if !ok || info.Kind != tc.kind || !info.At.Equal(at.Truncate(time.Second)) || SanitizeNode(tc.node) != info.Node {
			t.Errorf("ParseObjectName(%q) = %+v %v", got, info, ok)
		}
		if err := validObjectName(got); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range []string{"", "legiond-db-20250301T010005Z-n.tar", "legiond-docs-20250301T010005Z-n.tar.age",
		"legiond-db-2025030T010005Z-n.tar.age", "legiond-db-20250301T010005Z-.tar.age", "other.tar.age", "legiond-db-20251301T010005Z-n.tar.age"} {
		if _, ok := ParseObjectName(bad); ok {
			t.Errorf("ParseObjectName(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", ".hidden", "a/b", "../x", "a b"} {
		if validObjectName(bad) == nil {
			t.Errorf("validObjectName(%q) accepted", bad)
		}
	}
}
