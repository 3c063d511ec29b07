package replication

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// Snapshot stream format, version 2 (see doc.go):
//
//	header  "LGSNAP" | version u8 (=2) | applied index u64 | applied term u64 |
//	        assignment len uvarint | assignment (epoch uvarint | partitions
//	        uvarint | owner… (len u8 | member id))
//	record  tag u8 = 1 twin: kind u8 | tenant len u8 | tenant | eui [8] |
//	                 version uvarint | epoch uvarint | applied seq uvarint |
//	                 snapshot len uvarint | snapshot
//	        tag u8 = 2 offset: topic len uvarint | topic | partition u32 |
//	                 next uvarint
//	trailer tag u8 = 0 | twins u64 | offsets u64 | crc32c u32 of every byte
//	        before it
//
// Integers are big-endian. A truncated stream, a bad count or checksum, or
// trailing bytes make Restore fail before the store's meta is written.
const (
	snapMagic   = "LGSNAP"
	snapVersion = 2
	snapV1      = 1 // no assignment; still read
	tagEnd      = 0
	tagTwin     = 1
	tagOffset   = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func writeSnapshot(ctx context.Context, w io.Writer, v *pebblestore.View, applied, term uint64, assign Assignment) error {
	h := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 256<<10)
	var buf []byte
	buf = append(buf, snapMagic...)
	buf = append(buf, snapVersion)
	buf = binary.BigEndian.AppendUint64(buf, applied)
	buf = binary.BigEndian.AppendUint64(buf, term)
	enc := appendAssignment(nil, assign)
	buf = binary.AppendUvarint(buf, uint64(len(enc)))
	buf = append(buf, enc...)
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	var twins, offs uint64
	err := v.ForEachTwin(ctx, func(e pebblestore.TwinEntry) error {
		buf = append(buf[:0], tagTwin, byte(e.Kind), byte(len(e.Tenant)))
		buf = append(buf, e.Tenant...)
		buf = append(buf, e.EUI[:]...)
		buf = binary.AppendUvarint(buf, e.Version)
		buf = binary.AppendUvarint(buf, e.Epoch)
		buf = binary.AppendUvarint(buf, e.AppliedSeq)
		buf = binary.AppendUvarint(buf, uint64(len(e.Snapshot)))
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		twins++
		_, err := bw.Write(e.Snapshot)
		return err
	})
	if err != nil {
		return err
	}
	offsets, err := v.Offsets(ctx)
	if err != nil {
		return err
	}
	for tp, next := range offsets {
		buf = append(buf[:0], tagOffset)
		buf = binary.AppendUvarint(buf, uint64(len(tp.Topic)))
		buf = append(buf, tp.Topic...)
		buf = binary.BigEndian.AppendUint32(buf, uint32(tp.Partition))
		buf = binary.AppendUvarint(buf, uint64(next))
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		offs++
	}
	buf = append(buf[:0], tagEnd)
	buf = binary.BigEndian.AppendUint64(buf, twins)
	buf = binary.BigEndian.AppendUint64(buf, offs)
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, h.Sum32()))
	return err
}

// snapshotReader decodes a snapshot stream, checksumming exactly the bytes
// it consumes.
type snapshotReader struct {
	r           *bufio.Reader
	h           hash.Hash32
	twins, offs uint64
}

func newSnapshotReader(r io.Reader) *snapshotReader {
	return &snapshotReader{r: bufio.NewReaderSize(r, 256<<10), h: crc32.New(castagnoli)}
}

func corrupt(what string, err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("snapshot %s: %w", what, ErrCorrupt)
	}
	return fmt.Errorf("snapshot %s: %w", what, err)
}

func (s *snapshotReader) full(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.r, b); err != nil {
		return nil, err
	}
	s.h.Write(b)
	return b, nil
}

func (s *snapshotReader) byte() (byte, error) {
	c, err := s.r.ReadByte()
	if err != nil {
		return 0, err
	}
	s.h.Write([]byte{c})
	return c, nil
}

func (s *snapshotReader) uvarint() (uint64, error) {
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := s.byte()
		if err != nil {
			return 0, err
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, ErrCorrupt
			}
			return x | uint64(c)<<shift, nil
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, ErrCorrupt
}

func (s *snapshotReader) header() (applied, term uint64, assign Assignment, err error) {
	b, err := s.full(len(snapMagic) + 1 + 16)
	if err != nil {
		return 0, 0, assign, corrupt("header", err)
	}
	if string(b[:len(snapMagic)]) != snapMagic {
		return 0, 0, assign, corrupt("magic", nil)
	}
	version := b[len(snapMagic)]
	if version != snapVersion && version != snapV1 {
		return 0, 0, assign, fmt.Errorf("snapshot version %d: %w", version, ErrUnsupported)
	}
	b = b[len(snapMagic)+1:]
	applied, term = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	if version == snapV1 {
		return applied, term, assign, nil
	}
	n, err := s.uvarint()
	if err != nil || n > 16*MaxPartitions {
		return 0, 0, assign, corrupt("assignment length", err)
	}
	enc, err := s.full(int(n))
	if err != nil {
		return 0, 0, assign, corrupt("assignment", err)
	}
	r := reader{b: enc}
	assign = readAssignment(&r)
	if r.err != nil || len(r.b) != 0 {
		return 0, 0, Assignment{}, corrupt("assignment", r.err)
	}
	return applied, term, assign, nil
}

// records decodes every record, calling put for each, and verifies the
// trailer. put's errors are returned as they are.
func (s *snapshotReader) records(put func(pebblestore.ReplicaWrite) error) error {
	for {
		tag, err := s.byte()
		if err != nil {
			return corrupt("record", err)
		}
		switch tag {
		case tagTwin:
			w, err := s.twin()
			if err != nil {
				return corrupt("twin", err)
			}
			if err := s.put(put, w); err != nil {
				return err
			}
			s.twins++
		case tagOffset:
			w, err := s.offset()
			if err != nil {
				return corrupt("offset", err)
			}
			if err := s.put(put, w); err != nil {
				return err
			}
			s.offs++
		case tagEnd:
			return s.trailer()
		default:
			return corrupt(fmt.Sprintf("record tag %d", tag), nil)
		}
	}
}

// put hands a record to the store; a record the store finds malformed
// (a bad tenant, topic, version 0) means the stream is corrupt.
func (s *snapshotReader) put(put func(pebblestore.ReplicaWrite) error, w pebblestore.ReplicaWrite) error {
	err := put(w)
	if errors.Is(err, pebblestore.ErrInvalid) {
		return fmt.Errorf("snapshot record: %w: %w", ErrCorrupt, err)
	}
	return err
}

func (s *snapshotReader) twin() (pebblestore.ReplicaWrite, error) {
	hdr, err := s.full(2)
	if err != nil {
		return pebblestore.ReplicaWrite{}, err
	}
	kind, tlen := pebblestore.Kind(hdr[0]), int(hdr[1])
	if tlen > maxTenantLen {
		return pebblestore.ReplicaWrite{}, ErrCorrupt
	}
	b, err := s.full(tlen + 8)
	if err != nil {
		return pebblestore.ReplicaWrite{}, err
	}
	var eui pebblestore.EUI
	copy(eui[:], b[tlen:])
	var rec pebblestore.TwinRecord
	var n uint64
	for _, p := range []*uint64{&rec.Version, &rec.Epoch, &rec.AppliedSeq, &n} {
		if *p, err = s.uvarint(); err != nil {
			return pebblestore.ReplicaWrite{}, err
		}
	}
	if n > maxSnapshotLen {
		return pebblestore.ReplicaWrite{}, ErrCorrupt
	}
	if rec.Snapshot, err = s.full(int(n)); err != nil {
		return pebblestore.ReplicaWrite{}, err
	}
	return pebblestore.ReplicaTwin(string(b[:tlen]), kind, eui, rec), nil
}

func (s *snapshotReader) offset() (pebblestore.ReplicaWrite, error) {
	n, err := s.uvarint()
	if err != nil {
		return pebblestore.ReplicaWrite{}, err
	}
	if n > maxTopicLen {
		return pebblestore.ReplicaWrite{}, ErrCorrupt
	}
	b, err := s.full(int(n) + 4)
	if err != nil {
		return pebblestore.ReplicaWrite{}, err
	}
	next, err := s.uvarint()
	if err != nil {
		return pebblestore.ReplicaWrite{}, err
	}
	tp := pebblestore.TopicPartition{Topic: string(b[:n]), Partition: int32(binary.BigEndian.Uint32(b[n:]))}
	return pebblestore.ReplicaOffset(tp, int64(next)), nil
}

func (s *snapshotReader) trailer() error {
	b, err := s.full(16)
	if err != nil {
		return corrupt("trailer", err)
	}
	if twins, offs := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]); twins != s.twins || offs != s.offs {
		return corrupt(fmt.Sprintf("counts: trailer says %d twins, %d offsets; read %d, %d", twins, offs, s.twins, s.offs), nil)
	}
	sum := s.h.Sum32()
	var c [4]byte
	if _, err := io.ReadFull(s.r, c[:]); err != nil {
		return corrupt("checksum", err)
	}
	if binary.BigEndian.Uint32(c[:]) != sum {
		return corrupt("checksum mismatch", nil)
	}
	if _, err := s.r.ReadByte(); !errors.Is(err, io.EOF) {
		return corrupt("trailing bytes", err)
	}
	return nil
}
