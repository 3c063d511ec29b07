package pebblestore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
)

// Key layout constants. The full table is in doc.go; every key the store
// writes is built by a function in this file, so that the layout lives in one
// place and its tests cover all of it.
const (
	tenantRoot    = "t/"
	twinSegment   = "/twin/"
	recentSegment = "/recent/"
	offsetsRoot   = "sys/offsets/"
	schemaKey     = "sys/meta/schema"

	maxTenantLen  = 64
	maxEventIDLen = 256
	maxTopicLen   = 249 // Kafka's own limit
)

// EUI is a DevEUI or gateway EUI (EUI-64), big-endian as printed on the
// label. It is a plain [8]byte so that callers convert their own EUI types
// without this package importing them.
type EUI [8]byte

// String returns the EUI as 16 upper-case hex digits.
func (e EUI) String() string { return strings.ToUpper(hex.EncodeToString(e[:])) }

// Kind says whether a twin is a sensor or a gateway. Sensors and gateways live
// in separate key ranges so that an EUI collision between the two namespaces
// can never mix their states.
type Kind uint8

// Twin kinds. The zero value is invalid on purpose: a forgotten field is an
// error, not a sensor.
const (
	KindSensor  Kind = 1
	KindGateway Kind = 2
)

// String returns the key segment of the kind ("sensor", "gateway").
func (k Kind) String() string {
	switch k {
	case KindSensor:
		return "sensor"
	case KindGateway:
		return "gateway"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

func (k Kind) valid() bool { return k == KindSensor || k == KindGateway }

func parseKind(s []byte) (Kind, bool) {
	switch string(s) {
	case "sensor":
		return KindSensor, true
	case "gateway":
		return KindGateway, true
	}
	return 0, false
}

// TopicPartition names a Kafka partition whose consumed offset is stored.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// ValidTenant reports whether s may be used as a tenant (customer) id in a
// key: 1..64 bytes of [0-9a-z._-]. That admits the canonical lower-case UUID
// form the registry uses and excludes '/', so that one tenant's prefix can
// never be a prefix of another's ("t/a/" is not a prefix of "t/ab/"), and
// excludes upper case, so that one customer cannot end up under two spellings.
func ValidTenant(s string) bool {
	if len(s) == 0 || len(s) > maxTenantLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validTopic(s string) bool {
	if len(s) == 0 || len(s) > maxTopicLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func checkTenant(tenant string) error {
	if !ValidTenant(tenant) {
		return fmt.Errorf("tenant %q: %w", tenant, ErrInvalid)
	}
	return nil
}

// TenantPrefix returns "t/<tenant>/": every key of the tenant, and nothing
// else, starts with it.
func TenantPrefix(tenant string) ([]byte, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	return appendTenantPrefix(nil, tenant), nil
}

func appendTenantPrefix(dst []byte, tenant string) []byte {
	dst = append(dst, tenantRoot...)
	dst = append(dst, tenant...)
	return append(dst, '/')
}

// TwinKey returns t/<tenant>/twin/<sensor|gateway>/<eui: 8 raw bytes>.
func TwinKey(tenant string, kind Kind, eui EUI) ([]byte, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if !kind.valid() {
		return nil, fmt.Errorf("twin %s: %w", kind, ErrInvalid)
	}
	return appendTwinKey(make([]byte, 0, len(tenant)+24), tenant, kind, eui), nil
}

func appendTwinKey(dst []byte, tenant string, kind Kind, eui EUI) []byte {
	dst = append(dst, tenantRoot...)
	dst = append(dst, tenant...)
	dst = append(dst, twinSegment...)
	dst = append(dst, kind.String()...)
	dst = append(dst, '/')
	return append(dst, eui[:]...)
}

// ParseTwinKey is the inverse of TwinKey.
func ParseTwinKey(key []byte) (tenant string, kind Kind, eui EUI, err error) {
	bad := func() (string, Kind, EUI, error) {
		return "", 0, EUI{}, fmt.Errorf("twin key %q: %w", key, ErrInvalid)
	}
	rest, ok := bytes.CutPrefix(key, []byte(tenantRoot))
	if !ok {
		return bad()
	}
	t, rest, ok := bytes.Cut(rest, []byte(twinSegment))
	if !ok || !ValidTenant(string(t)) || len(rest) < 10 {
		return bad()
	}
	k, ok := parseKind(rest[:len(rest)-9])
	if !ok || rest[len(rest)-9] != '/' {
		return bad()
	}
	copy(eui[:], rest[len(rest)-8:])
	return string(t), k, eui, nil
}

// twinRange returns [lower, upper) covering every twin key of the tenant.
func twinRange(tenant string) (lower, upper []byte) {
	lower = appendTenantPrefix(nil, tenant)
	lower = append(lower, twinSegment[1:]...)
	return lower, prefixEnd(lower)
}

// eventTime is the 8-byte key encoding of an event time: Unix nanoseconds
// with the sign bit flipped, big-endian. Flipping the sign bit maps the int64
// order onto the unsigned byte order, so keys sort by time for every
// representable instant (1677..2262), pre-1970 included.
func eventTime(t time.Time) (uint64, error) {
	// UnixNano is undefined outside the int64 range; reject it explicitly.
	if t.Before(minEventTime) || t.After(maxEventTime) {
		return 0, fmt.Errorf("event time %s outside the storable range: %w", t, ErrInvalid)
	}
	return uint64(t.UnixNano()) ^ (1 << 63), nil
}

var (
	minEventTime = time.Unix(0, math.MinInt64)
	maxEventTime = time.Unix(0, math.MaxInt64)
)

func timeFromKey(v uint64) time.Time { return time.Unix(0, int64(v^(1<<63))).UTC() }

// EventKey returns t/<tenant>/recent/<eui: 8 raw bytes>/<event time: 8 bytes
// big-endian>/<event id>. The id is last so that it needs no escaping and so
// that two events at the same instant are both kept (ordered by id).
func EventKey(tenant string, eui EUI, at time.Time, id string) ([]byte, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if len(id) == 0 || len(id) > maxEventIDLen {
		return nil, fmt.Errorf("event id of %d bytes: %w", len(id), ErrInvalid)
	}
	ts, err := eventTime(at)
	if err != nil {
		return nil, err
	}
	k := appendDevicePrefix(make([]byte, 0, len(tenant)+len(id)+32), tenant, eui)
	k = binary.BigEndian.AppendUint64(k, ts)
	k = append(k, '/')
	return append(k, id...), nil
}

// appendDevicePrefix appends t/<tenant>/recent/<eui>/.
func appendDevicePrefix(dst []byte, tenant string, eui EUI) []byte {
	dst = append(dst, tenantRoot...)
	dst = append(dst, tenant...)
	dst = append(dst, recentSegment...)
	dst = append(dst, eui[:]...)
	return append(dst, '/')
}

// ParseEventKey is the inverse of EventKey.
func ParseEventKey(key []byte) (tenant string, eui EUI, at time.Time, id string, err error) {
	bad := func() (string, EUI, time.Time, string, error) {
		return "", EUI{}, time.Time{}, "", fmt.Errorf("event key %q: %w", key, ErrInvalid)
	}
	rest, ok := bytes.CutPrefix(key, []byte(tenantRoot))
	if !ok {
		return bad()
	}
	t, rest, ok := bytes.Cut(rest, []byte(recentSegment))
	// eui(8) '/' time(8) '/' id(>=1)
	if !ok || !ValidTenant(string(t)) || len(rest) < 19 || rest[8] != '/' || rest[17] != '/' {
		return bad()
	}
	copy(eui[:], rest[:8])
	at = timeFromKey(binary.BigEndian.Uint64(rest[9:17]))
	return string(t), eui, at, string(rest[18:]), nil
}

// OffsetKey returns sys/offsets/<topic>/<partition: 4 bytes big-endian>.
// Kafka topic names cannot contain '/', so the topic ends at the last '/'
// before the fixed-width partition.
func OffsetKey(tp TopicPartition) ([]byte, error) {
	if !validTopic(tp.Topic) || tp.Partition < 0 {
		return nil, fmt.Errorf("topic partition %s/%d: %w", tp.Topic, tp.Partition, ErrInvalid)
	}
	k := make([]byte, 0, len(offsetsRoot)+len(tp.Topic)+5)
	k = append(k, offsetsRoot...)
	k = append(k, tp.Topic...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint32(k, uint32(tp.Partition)), nil
}

// ParseOffsetKey is the inverse of OffsetKey.
func ParseOffsetKey(key []byte) (TopicPartition, error) {
	rest, ok := bytes.CutPrefix(key, []byte(offsetsRoot))
	if !ok || len(rest) < 6 || rest[len(rest)-5] != '/' {
		return TopicPartition{}, fmt.Errorf("offset key %q: %w", key, ErrInvalid)
	}
	tp := TopicPartition{
		Topic:     string(rest[:len(rest)-5]),
		Partition: int32(binary.BigEndian.Uint32(rest[len(rest)-4:])),
	}
	if !validTopic(tp.Topic) || tp.Partition < 0 {
		return TopicPartition{}, fmt.Errorf("offset key %q: %w", key, ErrInvalid)
	}
	return tp, nil
}

// prefixEnd returns the smallest key greater than every key with the prefix
// p, for use as an exclusive upper bound. Our prefixes end in '/' or in a
// printable byte, never 0xff, so incrementing the last byte suffices; the
// general case is handled anyway.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
