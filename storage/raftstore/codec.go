package raftstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/raft"
)

// logFormatV1 is the first byte of every encoded log entry.
const logFormatV1 = 1

// maxLogLen bounds one decoded field so that a corrupt length cannot make
// the decoder allocate gigabytes.
const maxLogLen = 1 << 30

// appendLog appends the encoding of l (without its index, which is the key).
func appendLog(dst []byte, l *raft.Log) []byte {
	dst = append(dst, logFormatV1, byte(l.Type))
	dst = binary.AppendUvarint(dst, l.Term)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, at)
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	return append(dst, l.Extensions...)
}

func encodedLogLen(l *raft.Log) int {
	return 2 + 3*binary.MaxVarintLen64 + len(l.Data) + len(l.Extensions)
}

// decodeLog decodes v into l (whose Index the caller sets). Data and
// Extensions are copies: v may be released afterwards.
func decodeLog(v []byte, l *raft.Log) error {
	if len(v) < 2 || v[0] != logFormatV1 {
		return fmt.Errorf("log value of %d bytes, format %d: %w", len(v), firstByte(v), ErrCorrupt)
	}
	typ := raft.LogType(v[1])
	v = v[2:]
	term, n := binary.Uvarint(v)
	if n <= 0 {
		return fmt.Errorf("log term: %w", ErrCorrupt)
	}
	v = v[n:]
	at, n := binary.Varint(v)
	if n <= 0 {
		return fmt.Errorf("log appended_at: %w", ErrCorrupt)
	}
	v = v[n:]
	data, v, err := readBytes(v, "data")
	if err != nil {
		return err
	}
	ext, v, err := readBytes(v, "extensions")
	if err != nil {
		return err
	}
	if len(v) != 0 {
		return fmt.Errorf("log value: %d trailing bytes: %w", len(v), ErrCorrupt)
	}
	l.Type = typ
	l.Term = term
	l.Data = data
	l.Extensions = ext
	l.AppendedAt = time.Time{}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	return nil
}

func readBytes(v []byte, what string) (field, rest []byte, err error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || n > maxLogLen || n > uint64(len(v)-k) {
		return nil, nil, fmt.Errorf("log %s length: %w", what, ErrCorrupt)
	}
	v = v[k:]
	if n == 0 {
		return nil, v, nil
	}
	return append([]byte(nil), v[:n]...), v[n:], nil
}

func firstByte(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0])
}

// Keyspace: see doc.go.
const (
	logPrefix    = 'l'
	stablePrefix = 's'
	logKeyLen    = 9
)

var (
	logLower = []byte{logPrefix}
	logUpper = []byte{logPrefix + 1}
)

func logKey(dst []byte, index uint64) []byte {
	dst = append(dst, logPrefix)
	return binary.BigEndian.AppendUint64(dst, index)
}

func parseLogKey(k []byte) (uint64, error) {
	if len(k) != logKeyLen || k[0] != logPrefix {
		return 0, fmt.Errorf("log key %x: %w", k, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// logKeyAfter returns the first key after index's (the exclusive end of a
// range ending at index inclusive).
func logKeyAfter(index uint64) []byte {
	if index == math.MaxUint64 {
		return logUpper
	}
	return logKey(nil, index+1)
}

func stableKey(k []byte) []byte {
	out := make([]byte, 0, 1+len(k))
	out = append(out, stablePrefix)
	return append(out, k...)
}
