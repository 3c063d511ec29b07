package encfs

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
)

// HeaderSize is the size of the header at the start of every encrypted
// file. Logical offset o is stored at physical offset HeaderSize+o.
const HeaderSize = 32

// FormatVersion is the file format this package writes and reads.
const FormatVersion = 1

// Header layout (all integers big-endian):
//
//	[0:6]   magic "LGDENC"
//	[6:8]   format version
//	[8:12]  data key id
//	[12:16] CRC-32C (Castagnoli) of bytes [0:12] and [16:32]
//	[16:32] IV: the initial AES-CTR counter block, from crypto/rand
const (
	magic    = "LGDENC"
	offVer   = 6
	offKeyID = 8
	offCRC   = 12
	offIV    = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the parsed form of a file header.
type header struct {
	keyID uint32
	iv    [16]byte
}

// newHeader returns a header for a new file under keyID with a fresh IV.
func newHeader(keyID uint32) header {
	h := header{keyID: keyID}
	_, _ = rand.Read(h.iv[:]) // crypto/rand.Read never returns an error
	return h
}

func (h header) marshal() [HeaderSize]byte {
	var b [HeaderSize]byte
	copy(b[:offVer], magic)
	binary.BigEndian.PutUint16(b[offVer:], FormatVersion)
	binary.BigEndian.PutUint32(b[offKeyID:], h.keyID)
	copy(b[offIV:], h.iv[:])
	binary.BigEndian.PutUint32(b[offCRC:], headerCRC(b[:]))
	return b
}

func headerCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:offCRC])
	return crc32.Update(c, castagnoli, b[offIV:HeaderSize])
}

// parseHeader decodes a full header. It returns ErrNotEncrypted when the
// magic is missing and ErrCorruptHeader for a bad checksum or an unknown
// format version.
func parseHeader(b []byte) (header, error) {
	if len(b) < HeaderSize {
		return header{}, fmt.Errorf("header is %d bytes, want %d: %w", len(b), HeaderSize, ErrCorruptHeader)
	}
	if string(b[:offVer]) != magic {
		return header{}, ErrNotEncrypted
	}
	if got, want := binary.BigEndian.Uint32(b[offCRC:]), headerCRC(b); got != want {
		return header{}, fmt.Errorf("header checksum %08x, want %08x: %w", got, want, ErrCorruptHeader)
	}
	if v := binary.BigEndian.Uint16(b[offVer:]); v != FormatVersion {
		return header{}, fmt.Errorf("format version %d, want %d: %w", v, FormatVersion, ErrCorruptHeader)
	}
	var h header
	h.keyID = binary.BigEndian.Uint32(b[offKeyID:])
	copy(h.iv[:], b[offIV:HeaderSize])
	return h, nil
}

// isHeaderPrefix reports whether b (shorter than a header) can be the start
// of a header.
func isHeaderPrefix(b []byte) bool {
	n := min(len(b), len(magic))
	return bytes.Equal(b[:n], []byte(magic)[:n])
}

// headerAbsent reports whether the first bytes of a file (up to
// HeaderSize) are what a crash leaves of a header that never reached the
// disk: nothing, zeros (a file's unsynced first block, while later blocks
// did reach the disk), or part of a header in a file shorter than one.
// Such a file holds no synced data, since every sync covers the header.
func headerAbsent(b []byte) bool {
	return allZero(b) || (len(b) < HeaderSize && isHeaderPrefix(b))
}

// fileCipher is the keystream of one file: AES-256-CTR under one data key
// starting from the file's IV. It is immutable and safe for concurrent use.
type fileCipher struct {
	block cipher.Block
	iv    [16]byte
}

// xorAt sets dst to src XOR the keystream at logical offset off. dst and
// src may be the same slice; len(dst) must be ≥ len(src).
func (c *fileCipher) xorAt(dst, src []byte, off int64) {
	if len(src) == 0 {
		return
	}
	ctr := counterAt(c.iv, uint64(off)/16)
	s := cipher.NewCTR(c.block, ctr[:])
	if skip := off % 16; skip != 0 {
		var junk [16]byte
		s.XORKeyStream(junk[:skip], junk[:skip])
	}
	s.XORKeyStream(dst[:len(src)], src)
}

// counterAt returns iv + n as a 128-bit big-endian integer (mod 2^128),
// which is how AES-CTR advances its counter block.
func counterAt(iv [16]byte, n uint64) [16]byte {
	hi := binary.BigEndian.Uint64(iv[:8])
	lo := binary.BigEndian.Uint64(iv[8:])
	lo, carry := bits.Add64(lo, n, 0)
	hi += carry
	var out [16]byte
	binary.BigEndian.PutUint64(out[:8], hi)
	binary.BigEndian.PutUint64(out[8:], lo)
	return out
}
