package backup

import (
	"context"
	"fmt"
	"io"

	"filippo.io/age"
)

// Verification is what a read-back found.
type Verification struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	Manifest *Manifest `json:"manifest,omitempty"` // nil for VerifyIntegrity
}

// Verify reads archive name back from d, decrypts it with ids and checks
// it completely: the trailer (ErrTruncated, ErrTampered), the key
// (ErrWrongKey), the authenticated encryption (ErrTampered), and every
// member against the manifest (ErrChecksum, ErrIncompatible). Nothing is
// written anywhere.
func Verify(ctx context.Context, d Destination, name string, ids []age.Identity) (Verification, error) {
	v := Verification{Name: name}
	rc, err := d.Get(ctx, name)
	if err != nil {
		return v, fmt.Errorf("verify %s: %w", name, err)
	}
	defer func() { _ = rc.Close() }()
	var m *Manifest
	v.SHA256, v.Size, err = openSealed(ctx, rc, ids, func(plain io.Reader) error {
		var err error
		m, err = readArchive(plain, nil)
		return err
	})
	v.Size += int64(trailerSize)
	if err != nil {
		return v, fmt.Errorf("verify %s: %w", name, err)
	}
	v.Manifest = m
	return v, nil
}

// VerifyIntegrity reads archive name back and checks its trailer (length
// and SHA-256) without decrypting it: what a node can check with only the
// public key. It catches truncation, storage corruption and edits that do
// not rewrite the trailer; Verify catches everything.
func VerifyIntegrity(ctx context.Context, d Destination, name string) (Verification, error) {
	v := Verification{Name: name}
	rc, err := d.Get(ctx, name)
	if err != nil {
		return v, fmt.Errorf("verify %s: %w", name, err)
	}
	defer func() { _ = rc.Close() }()
	sr := newSealReader(ctx, rc)
	v.SHA256, v.Size, err = sr.check()
	v.Size += int64(trailerSize)
	if err != nil {
		return v, fmt.Errorf("verify %s: %w", name, err)
	}
	return v, nil
}
