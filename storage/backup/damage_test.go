package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
)

// reseal replaces an object's trailer with one that matches its (modified)
// ciphertext, as an attacker who knows the format would.
func reseal(ct []byte) []byte {
	sum := sha256.Sum256(ct)
	out := append([]byte(nil), ct...)
	out = append(out, trailerMagic...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(ct)))
	return append(out, sum[:]...)
}

func TestRestoreRefusesDamagedArchives(t *testing.T) {
	f := makeFixture(t)
	raw, err := os.ReadFile(filepath.Join(f.dest.Dir(), f.res.Name))
	if err != nil {
		t.Fatal(err)
	}
	ct := raw[:len(raw)-trailerSize]
	flip := func(b []byte, at int) []byte {
		out := append([]byte(nil), b...)
		out[at] ^= 0x01
		return out
	}
	// The payload starts after the header ("--- <mac>\n") and a 16-byte
	// nonce, in chunks of 64 KiB plus a 16-byte tag.
	const chunk = 64<<10 + 16
	mac := bytes.Index(ct, []byte("\n--- "))
	payload := mac + 1 + bytes.IndexByte(ct[mac+1:], '\n') + 1 + 16
	lastChunk := payload + (len(ct)-payload-1)/chunk*chunk
	other, _ := testKey(t)
	cases := []struct {
		name string
		data []byte
		ids  []age.Identity
		want error
	}{
		{"byte flipped in the payload", flip(raw, len(raw)/2), nil, ErrTampered},
		{"byte flipped in the payload, trailer recomputed", reseal(flip(ct, len(ct)/2)), nil, ErrTampered},
		{"byte flipped in the last chunk, trailer recomputed", reseal(flip(ct, len(ct)-3)), nil, ErrTampered},
		{"byte flipped in the trailer checksum", flip(raw, len(raw)-1), nil, ErrTampered},
		{"cut in half", raw[:len(raw)/2], nil, ErrTruncated},
		{"last byte missing", raw[:len(raw)-1], nil, ErrTruncated},
		{"trailer missing", ct, nil, ErrTruncated},
		{"empty", nil, nil, ErrTruncated},
		{"last chunk removed, trailer recomputed", reseal(ct[:lastChunk]), nil, ErrTruncated},
		{"wrong identity", raw, []age.Identity{other}, ErrWrongKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			dest, err := NewLocalDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dest.Dir(), f.res.Name), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			ids := tc.ids
			if ids == nil {
				ids = []age.Identity{f.id}
			}
			if _, err := Verify(ctx, dest, f.res.Name, ids); !errors.Is(err, tc.want) {
				t.Fatalf("verify: want %v, got %v", tc.want, err)
			}
			dataDir := filepath.Join(t.TempDir(), "node")
			_, dsn := emptyDatabase(t)
			db := pgDump(t, dsn)
			_, err = Restore(ctx, dest, f.res.Name, ids, Target{DataDir: dataDir, Database: db})
			if !errors.Is(err, tc.want) {
				t.Fatalf("restore: want %v, got %v", tc.want, err)
			}
			t.Logf("refused: %v", err)
			// Nothing was written.
			if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("data folder exists after a refused restore: %v", err)
			}
			if err := db.CheckEmpty(ctx); err != nil {
				t.Fatalf("database after a refused restore: %v", err)
			}
			ents, _ := os.ReadDir(filepath.Dir(dataDir))
			if len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
		})
	}
	t.Run("missing object", func(t *testing.T) {
		if _, err := Verify(testCtx(t), f.dest, "legiond-db-20250101T000000Z-x.tar.age", []age.Identity{f.id}); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	})
	t.Run("integrity check without the key", func(t *testing.T) {
		dest, _ := NewLocalDir(t.TempDir())
		_ = os.WriteFile(filepath.Join(dest.Dir(), f.res.Name), flip(raw, 100), 0o600)
		if _, err := VerifyIntegrity(testCtx(t), dest, f.res.Name); !errors.Is(err, ErrTampered) {
			t.Fatalf("flipped byte: %v", err)
		}
		_ = os.WriteFile(filepath.Join(dest.Dir(), f.res.Name), raw[:1000], 0o600)
		if _, err := VerifyIntegrity(testCtx(t), dest, f.res.Name); !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut: %v", err)
		}
	})
	if !bytes.Equal(raw[len(raw)-trailerSize:][:8], []byte(trailerMagic)) {
		t.Fatal("trailer magic not at the end")
	}
}
