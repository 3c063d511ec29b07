package encfs

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"testing"
)

func TestCounterAtCarries(t *testing.T) {
	tests := []struct {
		name string
		iv   [16]byte
		n    uint64
		want [16]byte
	}{
		{"zero", [16]byte{}, 0, [16]byte{}},
		{"low word", [16]byte{15: 1}, 2, [16]byte{15: 3}},
		{"carry into high word", [16]byte{8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff}, 1, [16]byte{7: 1}},
		{"wraps mod 2^128", [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1, [16]byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := counterAt(tt.iv, tt.n); got != tt.want {
				t.Fatalf("counterAt = %x, want %x", got, tt.want)
			}
		})
	}
}

// TestXorAtMatchesSequentialCTR checks that the keystream at any offset is
// the one a single AES-CTR stream from the IV produces, including across
// the 64-bit boundary of the counter.
func TestXorAtMatchesSequentialCTR(t *testing.T) {
	block, err := aes.NewCipher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	nearWrap := [16]byte{}
	binary.BigEndian.PutUint64(nearWrap[8:], ^uint64(0)-3) // wraps after 4 blocks
	for _, iv := range [][16]byte{{}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, nearWrap} {
		const size = 1000
		ref := make([]byte, size)
		cipher.NewCTR(block, iv[:]).XORKeyStream(ref, ref)
		c := &fileCipher{block: block, iv: iv}
		for _, span := range []struct{ off, n int }{{0, 1}, {0, size}, {1, 15}, {15, 2}, {16, 16}, {17, 100}, {63, 200}, {999, 1}, {500, 500}} {
			got := make([]byte, span.n)
			c.xorAt(got, got, int64(span.off))
			if !bytes.Equal(got, ref[span.off:span.off+span.n]) {
				t.Fatalf("iv %x span %+v: keystream differs from sequential CTR", iv, span)
			}
		}
	}
}

func TestParseHeader(t *testing.T) {
	good := header{keyID: 42, iv: [16]byte{1, 2, 3}}.marshal()
	withVersion := func(v uint16) []byte {
		b := good
		binary.BigEndian.PutUint16(b[offVer:], v)
		binary.BigEndian.PutUint32(b[offCRC:], headerCRC(b[:]))
		return b[:]
	}
	flip := func(i int) []byte { b := good; b[i] ^= 1; return b[:] }
	tests := []struct {
		name  string
		in    []byte
		want  error
		keyID uint32
	}{
		{"good", good[:], nil, 42},
		{"short", good[:HeaderSize-1], ErrCorruptHeader, 0},
		{"plaintext", []byte("\x00\x00\x00\x00 an sstable or a WAL chunk  "), ErrNotEncrypted, 0},
		{"magic flipped", flip(0), ErrNotEncrypted, 0},
		{"key id flipped", flip(offKeyID + 3), ErrCorruptHeader, 0},
		{"iv flipped", flip(offIV + 5), ErrCorruptHeader, 0},
		{"crc flipped", flip(offCRC), ErrCorruptHeader, 0},
		{"future version", withVersion(2), ErrCorruptHeader, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseHeader(tt.in)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (h.keyID != tt.keyID || h.iv != [16]byte{1, 2, 3}) {
				t.Fatalf("header = %+v", h)
			}
		})
	}
}

func TestNewHeaderIVsDiffer(t *testing.T) {
	seen := map[[16]byte]bool{}
	for range 1000 {
		h := newHeader(1)
		if seen[h.iv] {
			t.Fatal("IV repeated")
		}
		seen[h.iv] = true
	}
}

func FuzzParseHeader(f *testing.F) {
	good := header{keyID: 3, iv: [16]byte{9}}.marshal()
	f.Add(good[:])
	f.Add([]byte("LGDENC"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			return
		}
		if m := h.marshal(); !bytes.Equal(m[:], b[:HeaderSize]) {
			t.Fatalf("accepted header does not round-trip: %x vs %x", m, b[:HeaderSize])
		}
	})
}
