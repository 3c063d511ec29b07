package lorawan

import (
	"encoding/binary"
	"fmt"
)

// Data-frame layout: MHDR(1) | DevAddr(4) | FCtrl(1) | FCnt(2) | FOpts(0..15)
// | [FPort(1) | FRMPayload] | MIC(4).
const (
	fhdrMinLen       = 7
	micLen           = 4
	minDataFrameSize = 1 + fhdrMinLen + micLen
	maxFOptsLen      = 15
)

// DataFrame is a parsed data frame (confirmed or unconfirmed, up or down).
//
// ParseDataFrame does not copy: FOpts, FRMPayload and PHYPayload alias the
// input, so the caller must not modify the input while the frame is in use,
// and must copy whatever it keeps beyond the input's lifetime.
type DataFrame struct {
	MType   MType
	DevAddr DevAddr // display order
	FCtrl   FCtrl
	// FCnt16 is the frame counter as carried on the wire: the low 16 bits of
	// the session counter. FullFCnt rebuilds the 32-bit value.
	FCnt16 uint16
	// FOpts are the piggy-backed MAC commands, plaintext in LoRaWAN 1.0.x.
	FOpts []byte
	// HasFPort is false when the frame carries no FPort and no FRMPayload
	// (e.g. an empty ACK or an FOpts-only frame).
	HasFPort bool
	// FPort: 0 means FRMPayload carries MAC commands (encrypted with the
	// NwkSKey); 1..223 application data (AppSKey); 224 the test protocol.
	FPort uint8
	// FRMPayload is still encrypted; see DecryptFRMPayload.
	FRMPayload []byte
	MIC        [4]byte
	// PHYPayload is the whole input frame, MIC included.
	PHYPayload []byte
}

// IsUplink reports whether the frame travels from device to network.
func (f *DataFrame) IsUplink() bool { return f.MType.IsUplink() }

// MICInput returns the bytes the MIC covers: MHDR through FRMPayload.
func (f *DataFrame) MICInput() []byte { return f.PHYPayload[:len(f.PHYPayload)-micLen] }

// ParseDataFrame parses a data PHYPayload (MTypes 2..5) without copying or
// allocating. It checks the structure only; the MIC needs the session key
// and the 32-bit counter, see SessionKeys.VerifyUplinkMIC.
//
// Errors: ErrTooShort, ErrTooLong, ErrUnsupportedMajor, ErrUnexpectedMType,
// ErrFPortZeroWithFOpts.
func ParseDataFrame(phy []byte) (DataFrame, error) {
	var f DataFrame
	if len(phy) < minDataFrameSize {
		return DataFrame{}, fmt.Errorf("data frame of %d bytes, need %d: %w", len(phy), minDataFrameSize, ErrTooShort)
	}
	if len(phy) > MaxPHYPayloadSize {
		return DataFrame{}, fmt.Errorf("data frame of %d bytes, max %d: %w", len(phy), MaxPHYPayloadSize, ErrTooLong)
	}
	h, err := ParseMHDR(phy[0])
	if err != nil {
		return DataFrame{}, err
	}
	if !h.MType.IsData() {
		return DataFrame{}, fmt.Errorf("%s is not a data frame: %w", h.MType, ErrUnexpectedMType)
	}
	f.MType = h.MType
	putReversed(f.DevAddr[:], phy[1:5])
	f.FCtrl = ParseFCtrl(phy[5], h.MType.IsUplink())
	f.FCnt16 = binary.LittleEndian.Uint16(phy[6:8])
	end := len(phy) - micLen
	optsEnd := 8 + int(f.FCtrl.FOptsLen)
	if optsEnd > end {
		return DataFrame{}, fmt.Errorf("FOptsLen %d exceeds a %d-byte frame: %w", f.FCtrl.FOptsLen, len(phy), ErrTooShort)
	}
	f.FOpts = phy[8:optsEnd:optsEnd]
	if optsEnd < end {
		f.HasFPort = true
		f.FPort = phy[optsEnd]
		f.FRMPayload = phy[optsEnd+1 : end : end]
		if f.FPort == 0 && len(f.FOpts) > 0 {
			return DataFrame{}, fmt.Errorf("FOptsLen %d: %w", len(f.FOpts), ErrFPortZeroWithFOpts)
		}
	}
	copy(f.MIC[:], phy[end:])
	f.PHYPayload = phy
	return f, nil
}
