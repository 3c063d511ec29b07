package pebblestore

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Value format bytes. Each value starts with one so that a later layout can
// be told apart from this one without a schema-wide migration.
const (
	twinValueV1  = 1
	eventValueV1 = 1

	twinHeaderLen = 1 + 3*8
)

// TwinRecord is the stored state of one twin.
type TwinRecord struct {
	// Snapshot is the opaque state snapshot produced by devicetwin.
	Snapshot []byte
	// Version counts the accepted writes of this twin: 1 after the first.
	// It is the fencing token: a write names the version it was derived
	// from and is rejected unless that is still the stored one.
	Version uint64
	// Epoch is the writer's activation epoch (e.g. a placement or Raft
	// term), stored for diagnosis; fencing relies on Version alone.
	Epoch uint64
	// AppliedSeq is the last input the snapshot reflects (full 32-bit FCnt
	// for sensors, an input sequence for gateways); the twin skips inputs at
	// or below it after a replay.
	AppliedSeq uint64
}

func appendTwinValue(dst []byte, version, epoch, applied uint64, snapshot []byte) []byte {
	dst = append(dst, twinValueV1)
	dst = binary.BigEndian.AppendUint64(dst, version)
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	dst = binary.BigEndian.AppendUint64(dst, applied)
	return append(dst, snapshot...)
}

// decodeTwinValue decodes v; the returned Snapshot is a copy, so v may be
// released by the caller.
func decodeTwinValue(v []byte) (TwinRecord, error) {
	if len(v) < twinHeaderLen || v[0] != twinValueV1 {
		return TwinRecord{}, fmt.Errorf("twin value of %d bytes, format %d: %w", len(v), firstByte(v), ErrCorrupt)
	}
	return TwinRecord{
		Version:    binary.BigEndian.Uint64(v[1:9]),
		Epoch:      binary.BigEndian.Uint64(v[9:17]),
		AppliedSeq: binary.BigEndian.Uint64(v[17:25]),
		Snapshot:   append([]byte(nil), v[twinHeaderLen:]...),
	}, nil
}

// twinValueVersion reads only the version of a stored twin value.
func twinValueVersion(v []byte) (uint64, error) {
	if len(v) < twinHeaderLen || v[0] != twinValueV1 {
		return 0, fmt.Errorf("twin value of %d bytes, format %d: %w", len(v), firstByte(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v[1:9]), nil
}

// EventRecord is one entry of a device's recent-event window: a reading,
// water event, alarm transition or status, as opaque bytes (the serialized
// TwinEvent) under its deterministic event id.
type EventRecord struct {
	EUI     EUI
	Time    time.Time // event time (not processing time); the key orders by it
	ID      string    // deterministic event id, e.g. DevEUI + FCnt + index
	Payload []byte
}

func appendEventValue(dst, payload []byte) []byte {
	dst = append(dst, eventValueV1)
	return append(dst, payload...)
}

func decodeEventValue(v []byte) ([]byte, error) {
	if len(v) < 1 || v[0] != eventValueV1 {
		return nil, fmt.Errorf("event value of %d bytes, format %d: %w", len(v), firstByte(v), ErrCorrupt)
	}
	return append([]byte(nil), v[1:]...), nil
}

func firstByte(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0])
}
