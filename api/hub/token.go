package hub

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// tokenVersion is the first byte of every token's payload.
const tokenVersion = 1

// maxTokenPartitions bounds the partitions a token may carry, so a forged
// token cannot make the server allocate much.
const maxTokenPartitions = 4096

// maxTokenLen bounds a token's text before decoding.
const maxTokenLen = 4 * (maxTokenPartitions*10 + 16) / 3

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// EncodeToken renders positions (partition i → next offset to deliver) as
// a resume token: base64url (no padding) of
//
//	version=1 u8 · n uvarint · n × offset uvarint · CRC-32C of the above (4 bytes, big-endian)
//
// The token is opaque to clients; it carries no tenant data, only
// positions in twin.events, and it is only ever interpreted with the
// caller's own filter, so a forged token can do no more than replay the
// caller's own events.
func EncodeToken(positions []int64) string {
	buf := make([]byte, 0, 2+len(positions)*4+4)
	buf = append(buf, tokenVersion)
	buf = binary.AppendUvarint(buf, uint64(len(positions)))
	for _, p := range positions {
		if p < 0 {
			p = 0
		}
		buf = binary.AppendUvarint(buf, uint64(p))
	}
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
	return base64.RawURLEncoding.EncodeToString(buf)
}

// DecodeToken parses a token made by EncodeToken. Every failure wraps
// ErrBadToken.
func DecodeToken(s string) ([]int64, error) {
	if len(s) > maxTokenLen {
		return nil, fmt.Errorf("%w: too long", ErrBadToken)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrBadToken)
	}
	if len(raw) < 1+1+4 {
		return nil, fmt.Errorf("%w: too short", ErrBadToken)
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadToken)
	}
	if body[0] != tokenVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrBadToken, body[0])
	}
	body = body[1:]
	n, k := binary.Uvarint(body)
	if k <= 0 || n > maxTokenPartitions {
		return nil, fmt.Errorf("%w: bad partition count", ErrBadToken)
	}
	body = body[k:]
	out := make([]int64, n)
	for i := range out {
		v, k := binary.Uvarint(body)
		if k <= 0 || v > 1<<62 {
			return nil, fmt.Errorf("%w: bad offset of partition %d", ErrBadToken, i)
		}
		out[i] = int64(v)
		body = body[k:]
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrBadToken)
	}
	return out, nil
}
