package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

// TwinUpdate is one twin's new state in a Batch: the snapshot the twin
// computed from the version it loaded (ExpectedVersion, 0 for a new twin).
// When its batch is applied the twin's version becomes ExpectedVersion+1 on
// every member.
type TwinUpdate struct {
	Tenant          string
	Kind            pebblestore.Kind
	EUI             pebblestore.EUI
	ExpectedVersion uint64
	// Epoch is the writer's activation epoch, stored for diagnosis.
	Epoch uint64
	// AppliedSeq is the last input (full FCnt, input sequence) the snapshot
	// reflects.
	AppliedSeq uint64
	Snapshot   []byte
}

// Offset is a Kafka position the batch's twin states reflect: every record
// of the partition below Next is covered.
type Offset struct {
	Topic     string
	Partition int32
	Next      int64
}

// Batch is one proposal: twin updates and the offsets they cover, applied
// atomically (all or nothing) on every member.
type Batch struct {
	Twins   []TwinUpdate
	Offsets []Offset
}

// Status is the outcome of one applied batch.
type Status uint8

// Batch outcomes. The zero value is not an outcome.
const (
	// StatusApplied: every twin update and offset was stored.
	StatusApplied Status = 1
	// StatusStale: at least one twin's ExpectedVersion was not its
	// replicated version; nothing of the batch was stored. Response.Stale
	// lists the offending twins with their current versions.
	StatusStale Status = 2
	// StatusInvalid: the batch is malformed (only possible for a batch that
	// bypassed Propose's validation, e.g. from a faulty peer).
	StatusInvalid Status = 3
)

func (s Status) String() string {
	switch s {
	case StatusApplied:
		return "applied"
	case StatusStale:
		return "stale"
	case StatusInvalid:
		return "invalid"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// StaleTwin is a twin whose update was refused by fencing.
type StaleTwin struct {
	Tenant   string
	Kind     pebblestore.Kind
	EUI      pebblestore.EUI
	Expected uint64 // the version the update was derived from
	Current  uint64 // the replicated version (0: the twin has no state)
}

// Response is what every member decided about one batch (identically: the
// decision is a pure function of the replicated log).
type Response struct {
	Status Status
	// Index is the Raft log index of the entry that carried the batch.
	Index uint64
	// Stale lists the refused twins when Status is StatusStale.
	Stale []StaleTwin
	// Reason explains StatusInvalid.
	Reason string
}

// Limits of the wire formats. They bound allocations when decoding input
// from a peer; Propose refuses batches beyond them.
const (
	maxTenantLen   = 64
	maxTopicLen    = 249
	maxSnapshotLen = 16 << 20
	maxItems       = 1 << 20
)

// Command format, version 1 (see doc.go).
const (
	cmdMagic0, cmdMagic1 = 'L', 'R'
	cmdVersion           = 1
	cmdHeaderLen         = 3
)

// Validate reports a batch that no member would apply (ErrInvalid): empty,
// a bad tenant, kind, topic or offset, an oversized snapshot, or two updates
// of one twin (a batch carries the latest state of each twin once).
func (b *Batch) Validate() error {
	if len(b.Twins) == 0 && len(b.Offsets) == 0 {
		return fmt.Errorf("empty batch: %w", ErrInvalid)
	}
	if len(b.Twins) > maxItems || len(b.Offsets) > maxItems {
		return fmt.Errorf("batch of %d twins, %d offsets: %w", len(b.Twins), len(b.Offsets), ErrInvalid)
	}
	seen := make(map[twinID]struct{}, len(b.Twins))
	for i := range b.Twins {
		u := &b.Twins[i]
		if _, err := pebblestore.TwinKey(u.Tenant, u.Kind, u.EUI); err != nil {
			return fmt.Errorf("twin %d: %w: %w", i, ErrInvalid, err)
		}
		if len(u.Snapshot) > maxSnapshotLen {
			return fmt.Errorf("twin %d: snapshot of %d bytes: %w", i, len(u.Snapshot), ErrInvalid)
		}
		if u.ExpectedVersion == math.MaxUint64 {
			return fmt.Errorf("twin %d: expected version overflows: %w", i, ErrInvalid)
		}
		id := twinID{tenant: u.Tenant, kind: u.Kind, eui: u.EUI}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("twin %s %s twice in one batch: %w", u.Kind, u.EUI, ErrInvalid)
		}
		seen[id] = struct{}{}
	}
	for i, o := range b.Offsets {
		if _, err := pebblestore.OffsetKey(pebblestore.TopicPartition{Topic: o.Topic, Partition: o.Partition}); err != nil {
			return fmt.Errorf("offset %d: %w: %w", i, ErrInvalid, err)
		}
		if o.Partition < 0 || o.Next < 0 {
			return fmt.Errorf("offset %d: partition %d, next %d: %w", i, o.Partition, o.Next, ErrInvalid)
		}
	}
	return nil
}

type twinID struct {
	tenant string
	kind   pebblestore.Kind
	eui    pebblestore.EUI
}

// appendBatch appends the encoding of b (which must be valid).
func appendBatch(dst []byte, b *Batch) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b.Twins)))
	for i := range b.Twins {
		u := &b.Twins[i]
		dst = append(dst, byte(u.Kind), byte(len(u.Tenant)))
		dst = append(dst, u.Tenant...)
		dst = append(dst, u.EUI[:]...)
		dst = binary.AppendUvarint(dst, u.ExpectedVersion)
		dst = binary.AppendUvarint(dst, u.Epoch)
		dst = binary.AppendUvarint(dst, u.AppliedSeq)
		dst = binary.AppendUvarint(dst, uint64(len(u.Snapshot)))
		dst = append(dst, u.Snapshot...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Offsets)))
	for _, o := range b.Offsets {
		dst = binary.AppendUvarint(dst, uint64(len(o.Topic)))
		dst = append(dst, o.Topic...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(o.Partition))
		dst = binary.AppendUvarint(dst, uint64(o.Next))
	}
	return dst
}

// encodeCommand builds a log entry from encoded batches.
func encodeCommand(batches [][]byte) []byte {
	n := cmdHeaderLen + binary.MaxVarintLen64
	for _, b := range batches {
		n += len(b)
	}
	dst := make([]byte, 0, n)
	dst = append(dst, cmdMagic0, cmdMagic1, cmdVersion)
	dst = binary.AppendUvarint(dst, uint64(len(batches)))
	for _, b := range batches {
		dst = append(dst, b...)
	}
	return dst
}

// EncodeCommand returns the log entry that carries batches, for tools and
// tests; Propose builds it itself.
func EncodeCommand(batches ...Batch) ([]byte, error) {
	enc := make([][]byte, len(batches))
	for i := range batches {
		if err := batches[i].Validate(); err != nil {
			return nil, err
		}
		enc[i] = appendBatch(nil, &batches[i])
	}
	return encodeCommand(enc), nil
}

// errCorrupt is wrapped by every decoding error.
var errCorrupt = fmt.Errorf("%w: malformed encoding", ErrInvalid)

// DecodeCommand decodes a log entry. Snapshots alias data. Any malformed
// input is an error wrapping ErrInvalid, never a panic; the batches are not
// validated (the FSM validates each one, so that one bad batch does not
// refuse its neighbours).
func DecodeCommand(data []byte) ([]Batch, error) {
	if len(data) < cmdHeaderLen || data[0] != cmdMagic0 || data[1] != cmdMagic1 {
		return nil, fmt.Errorf("command header: %w", errCorrupt)
	}
	if data[2] != cmdVersion {
		return nil, fmt.Errorf("command version %d: %w", data[2], ErrUnsupported)
	}
	r := reader{b: data[cmdHeaderLen:]}
	n := r.count()
	out := make([]Batch, 0, min(n, 1024))
	for i := 0; i < n && r.err == nil; i++ {
		var b Batch
		nt := r.count()
		if nt > 0 {
			b.Twins = make([]TwinUpdate, 0, min(nt, 1024))
		}
		for j := 0; j < nt && r.err == nil; j++ {
			var u TwinUpdate
			u.Kind = pebblestore.Kind(r.byte())
			u.Tenant = string(r.bytes(int(r.byte())))
			copy(u.EUI[:], r.bytes(8))
			u.ExpectedVersion = r.uvarint()
			u.Epoch = r.uvarint()
			u.AppliedSeq = r.uvarint()
			u.Snapshot = r.lenBytes(maxSnapshotLen)
			b.Twins = append(b.Twins, u)
		}
		no := r.count()
		if no > 0 {
			b.Offsets = make([]Offset, 0, min(no, 1024))
		}
		for j := 0; j < no && r.err == nil; j++ {
			var o Offset
			o.Topic = string(r.lenBytes(maxTopicLen))
			o.Partition = int32(r.uint32())
			next := r.uvarint()
			if next > math.MaxInt64 {
				r.fail()
			}
			o.Next = int64(next)
			b.Offsets = append(b.Offsets, o)
		}
		out = append(out, b)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return nil, fmt.Errorf("command: %w", r.err)
	}
	return out, nil
}

// reader decodes the compact formats of this package; the first error
// sticks and every later read returns zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errCorrupt
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uint32() uint32 {
	v := r.bytes(4)
	if len(v) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (r *reader) uint64() uint64 {
	v := r.bytes(8)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// count reads an item count, refusing counts the remaining input cannot
// hold (each item takes at least one byte).
func (r *reader) count() int {
	n := r.uvarint()
	if n > maxItems || n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reader) lenBytes(limit int) []byte {
	n := r.uvarint()
	if n > uint64(limit) {
		r.fail()
		return nil
	}
	return r.bytes(int(n))
}

// Response encoding (forwarded results), version 1:
//
//	version u8 | count uvarint | count × (status u8 | index uvarint |
//	reason len uvarint | reason | stale count uvarint | stale × (kind u8 |
//	tenant len u8 | tenant | eui [8] | expected uvarint | current uvarint))
const respVersion = 1

func appendResponses(dst []byte, rs []Response) []byte {
	dst = append(dst, respVersion)
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for _, r := range rs {
		dst = append(dst, byte(r.Status))
		dst = binary.AppendUvarint(dst, r.Index)
		dst = binary.AppendUvarint(dst, uint64(len(r.Reason)))
		dst = append(dst, r.Reason...)
		dst = binary.AppendUvarint(dst, uint64(len(r.Stale)))
		for _, s := range r.Stale {
			dst = append(dst, byte(s.Kind), byte(len(s.Tenant)))
			dst = append(dst, s.Tenant...)
			dst = append(dst, s.EUI[:]...)
			dst = binary.AppendUvarint(dst, s.Expected)
			dst = binary.AppendUvarint(dst, s.Current)
		}
	}
	return dst
}

func decodeResponses(data []byte) ([]Response, error) {
	if len(data) < 1 || data[0] != respVersion {
		return nil, fmt.Errorf("responses: %w", errCorrupt)
	}
	r := reader{b: data[1:]}
	n := r.count()
	out := make([]Response, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		var resp Response
		resp.Status = Status(r.byte())
		resp.Index = r.uvarint()
		resp.Reason = string(r.lenBytes(1 << 16))
		ns := r.count()
		for j := 0; j < ns && r.err == nil; j++ {
			var s StaleTwin
			s.Kind = pebblestore.Kind(r.byte())
			s.Tenant = string(r.bytes(int(r.byte())))
			copy(s.EUI[:], r.bytes(8))
			s.Expected = r.uvarint()
			s.Current = r.uvarint()
			resp.Stale = append(resp.Stale, s)
		}
		out = append(out, resp)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return nil, fmt.Errorf("responses: %w", r.err)
	}
	return out, nil
}

// errorsIsAny reports whether err matches any of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
