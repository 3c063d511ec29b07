package lorawan

import (
	"fmt"
	"strconv"
)

// MaxPHYPayloadSize is the largest PHYPayload a LoRa radio can carry (the
// PHY length field is one byte). Region limits are lower; they are the
// network server's business.
const MaxPHYPayloadSize = 255

// MType is the LoRaWAN message type, the top 3 bits of the MHDR.
type MType uint8

// Message types of LoRaWAN 1.0.x. The MType prefix keeps the names
// JoinRequest and JoinAccept free for the frame types; String returns the
// bare name ("JoinRequest").
const (
	MTypeJoinRequest         MType = 0
	MTypeJoinAccept          MType = 1
	MTypeUnconfirmedDataUp   MType = 2
	MTypeUnconfirmedDataDown MType = 3
	MTypeConfirmedDataUp     MType = 4
	MTypeConfirmedDataDown   MType = 5
	MTypeRFU                 MType = 6
	MTypeProprietary         MType = 7
)

var mtypeNames = [8]string{
	"JoinRequest", "JoinAccept", "UnconfirmedDataUp", "UnconfirmedDataDown",
	"ConfirmedDataUp", "ConfirmedDataDown", "RFU", "Proprietary",
}

// String returns the constant's name, e.g. "UnconfirmedDataUp".
func (m MType) String() string {
	if int(m) < len(mtypeNames) {
		return mtypeNames[m]
	}
	return "MType(" + strconv.Itoa(int(m)) + ")"
}

// IsUplink reports whether frames of this type travel from device to
// network. Proprietary and RFU frames have no defined direction: false.
func (m MType) IsUplink() bool {
	return m == MTypeJoinRequest || m == MTypeUnconfirmedDataUp || m == MTypeConfirmedDataUp
}

// IsDownlink reports whether frames of this type travel from network to device.
func (m MType) IsDownlink() bool {
	return m == MTypeJoinAccept || m == MTypeUnconfirmedDataDown || m == MTypeConfirmedDataDown
}

// IsData reports whether the type carries a MACPayload (data up or down).
func (m MType) IsData() bool { return m >= MTypeUnconfirmedDataUp && m <= MTypeConfirmedDataDown }

// IsConfirmed reports whether the type asks for an acknowledgement.
func (m MType) IsConfirmed() bool { return m == MTypeConfirmedDataUp || m == MTypeConfirmedDataDown }

// Major is the LoRaWAN major version in the MHDR (its low 2 bits).
type Major uint8

// LoRaWANR1 is the only major version defined by LoRaWAN 1.0.x and 1.1.
const LoRaWANR1 Major = 0

// MHDR is the MAC header, the first byte of every PHYPayload. Its three RFU
// bits are ignored on parse (they stay covered by the MIC) and zero on build.
type MHDR struct {
	MType MType
	Major Major
}

// ParseMHDR decodes the MAC header byte. A Major other than LoRaWAN R1 is
// rejected with ErrUnsupportedMajor: the rest of such a frame is undefined.
func ParseMHDR(b byte) (MHDR, error) {
	h := MHDR{MType: MType(b >> 5), Major: Major(b & 0x03)}
	if h.Major != LoRaWANR1 {
		return h, fmt.Errorf("MHDR 0x%02x major %d: %w", b, h.Major, ErrUnsupportedMajor)
	}
	return h, nil
}

// Byte encodes the header (RFU bits zero).
func (h MHDR) Byte() byte { return byte(h.MType&0x07)<<5 | byte(h.Major&0x03) }

// PeekMType returns the message type of any PHYPayload without parsing the
// rest, so that a consumer can dispatch data frames and join frames.
func PeekMType(phy []byte) (MType, error) {
	if len(phy) == 0 {
		return 0, fmt.Errorf("empty PHYPayload: %w", ErrTooShort)
	}
	h, err := ParseMHDR(phy[0])
	if err != nil {
		return 0, err
	}
	return h.MType, nil
}

// FCtrl is the frame-control byte of a data frame. Bit 4 means FPending on
// downlinks and ClassB on uplinks (1.0.2+); bit 6 is ADRACKReq on uplinks
// and RFU on downlinks.
type FCtrl struct {
	ADR       bool
	ADRACKReq bool  // uplink only
	ACK       bool  // the previous confirmed frame was received
	FPending  bool  // downlink only: the network has more data
	ClassB    bool  // uplink only: the device is in Class B
	FOptsLen  uint8 // 0..15, the length of FOpts
}

// ParseFCtrl decodes an FCtrl byte in the given direction. Bits without a
// meaning in that direction (RFU) are dropped; they remain covered by the MIC.
func ParseFCtrl(b byte, uplink bool) FCtrl {
	c := FCtrl{
		ADR:      b&0x80 != 0,
		ACK:      b&0x20 != 0,
		FOptsLen: b & 0x0f,
	}
	if uplink {
		c.ADRACKReq = b&0x40 != 0
		c.ClassB = b&0x10 != 0
	} else {
		c.FPending = b&0x10 != 0
	}
	return c
}

// Byte encodes the FCtrl for the given direction. It rejects, with
// ErrInvalidFCtrl, FPending on an uplink, ADRACKReq or ClassB on a downlink,
// and an FOptsLen above 15.
func (c FCtrl) Byte(uplink bool) (byte, error) {
	if c.FOptsLen > 15 {
		return 0, fmt.Errorf("FOptsLen %d: %w", c.FOptsLen, ErrInvalidFCtrl)
	}
	var b byte
	if c.ADR {
		b |= 0x80
	}
	if c.ACK {
		b |= 0x20
	}
	if uplink {
		if c.FPending {
			return 0, fmt.Errorf("FPending on an uplink: %w", ErrInvalidFCtrl)
		}
		if c.ADRACKReq {
			b |= 0x40
		}
		if c.ClassB {
			b |= 0x10
		}
	} else {
		if c.ADRACKReq || c.ClassB {
			return 0, fmt.Errorf("ADRACKReq or ClassB on a downlink: %w", ErrInvalidFCtrl)
		}
		if c.FPending {
			b |= 0x10
		}
	}
	return b | c.FOptsLen, nil
}
