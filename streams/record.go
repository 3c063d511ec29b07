package streams

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
)

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is a consumed Kafka record as handed to a Handler. Key, Value and
// Headers must not be modified.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	// Time is the record timestamp (producer or log-append time). It is
	// not the event time: rules run on UplinkFrame.received_at.
	Time time.Time
}

// String identifies the record for logs: topic/partition@offset.
func (r Record) String() string { return fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset) }

// Reason says why a record went to the dead-letter topic. Its String is
// the value of the record's "reason" header there.
type Reason uint8

// Reasons for dead-lettering.
const (
	// ReasonUndecodable: the value is not the expected protobuf message.
	ReasonUndecodable Reason = iota + 1
	// ReasonEmptyPayload: an UplinkFrame without phy_payload.
	ReasonEmptyPayload
	// ReasonOversized: the value exceeds ConsumerConfig.MaxValueBytes or
	// the PHYPayload exceeds the LoRaWAN maximum of 255 bytes.
	ReasonOversized
	// ReasonBadKey: the key is not the hex DevAddr (or DevEUI) or
	// gateway EUI the topic is keyed by.
	ReasonBadKey
	// ReasonInvalid: decodable but structurally wrong (a gateway EUI that
	// is not 8 bytes).
	ReasonInvalid
	// ReasonHandler: the Handler rejected the record (done with an error
	// that is not ErrRetry).
	ReasonHandler
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonUndecodable:  "undecodable",
	ReasonEmptyPayload: "empty_payload",
	ReasonOversized:    "oversized",
	ReasonBadKey:       "bad_key",
	ReasonInvalid:      "invalid",
	ReasonHandler:      "handler",
}

func (r Reason) String() string {
	if r == 0 || r >= numReasons {
		return fmt.Sprintf("reason(%d)", uint8(r))
	}
	return reasonNames[r]
}

// Reasons lists every Reason, for metric export.
func Reasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := ReasonUndecodable; r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// maxPHYPayload is the largest LoRaWAN PHYPayload (regional parameters cap
// it at 255 bytes on every data rate).
const maxPHYPayload = 255

// rejection is why a record cannot be handled.
type rejection struct {
	reason Reason
	detail string
}

// isHexKey reports whether key is n hex digits (either case).
func isHexKey(key []byte, n int) bool {
	if len(key) != n {
		return false
	}
	for _, c := range key {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// decodeUplink validates and decodes a lorawan.uplink record. The key is
// the DevAddr as 8 hex digits; 16 hex digits (a DevEUI) are accepted too,
// because a join-request carries no DevAddr.
func decodeUplink(rec *Record, maxValue int) (*lorawanv1.UplinkFrame, *rejection) {
	if !isHexKey(rec.Key, 8) && !isHexKey(rec.Key, 16) {
		return nil, &rejection{ReasonBadKey, fmt.Sprintf("key %q is not 8 (DevAddr) or 16 (DevEUI) hex digits", truncate(rec.Key))}
	}
	if len(rec.Value) > maxValue {
		return nil, &rejection{ReasonOversized, fmt.Sprintf("value of %d bytes exceeds %d", len(rec.Value), maxValue)}
	}
	f := &lorawanv1.UplinkFrame{}
	if err := proto.Unmarshal(rec.Value, f); err != nil {
		return nil, &rejection{ReasonUndecodable, "UplinkFrame: " + err.Error()}
	}
	switch {
	case len(f.GetPhyPayload()) == 0:
		return nil, &rejection{ReasonEmptyPayload, "UplinkFrame without phy_payload"}
	case len(f.GetPhyPayload()) > maxPHYPayload:
		return nil, &rejection{ReasonOversized, fmt.Sprintf("phy_payload of %d bytes exceeds %d", len(f.GetPhyPayload()), maxPHYPayload)}
	}
	return f, nil
}

// decodeGatewayStats validates and decodes a lorawan.gateway.stats record,
// keyed by the gateway EUI as 16 hex digits.
func decodeGatewayStats(rec *Record, maxValue int) (*lorawanv1.GatewayStats, *rejection) {
	if !isHexKey(rec.Key, 16) {
		return nil, &rejection{ReasonBadKey, fmt.Sprintf("key %q is not a 16 hex digit gateway EUI", truncate(rec.Key))}
	}
	if len(rec.Value) > maxValue {
		return nil, &rejection{ReasonOversized, fmt.Sprintf("value of %d bytes exceeds %d", len(rec.Value), maxValue)}
	}
	s := &lorawanv1.GatewayStats{}
	if err := proto.Unmarshal(rec.Value, s); err != nil {
		return nil, &rejection{ReasonUndecodable, "GatewayStats: " + err.Error()}
	}
	if len(s.GetGatewayEui()) != 8 {
		return nil, &rejection{ReasonInvalid, fmt.Sprintf("gateway_eui of %d bytes, want 8", len(s.GetGatewayEui()))}
	}
	return s, nil
}

// truncate keeps log and header details short when keys are garbage.
func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}
