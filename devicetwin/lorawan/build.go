package lorawan

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// DataFrameParams describes a data frame to build. FRMPayload is plaintext;
// the builder encrypts it and appends the MIC.
type DataFrameParams struct {
	MType   MType // UnconfirmedDataUp, ConfirmedDataUp, UnconfirmedDataDown or ConfirmedDataDown
	DevAddr DevAddr
	// FCtrl flags; FOptsLen is ignored and set from len(FOpts).
	FCtrl FCtrl
	// FCnt is the full 32-bit session counter: its low 16 bits go on the
	// wire, all 32 bits into the MIC and the encryption.
	FCnt  uint32
	FOpts []byte // at most 15 bytes, plaintext MAC commands
	// HasFPort must be true when FRMPayload is not empty; FPort 0 carries
	// MAC commands encrypted with the NwkSKey and forbids FOpts.
	HasFPort   bool
	FPort      uint8
	FRMPayload []byte
}

// validate applies the structural rules of LoRaWAN 1.0.x to p and returns
// the encoded FCtrl byte and the resulting PHYPayload length.
func (p *DataFrameParams) validate() (fctrl byte, size int, err error) {
	if !p.MType.IsData() {
		return 0, 0, fmt.Errorf("build %s: %w", p.MType, ErrUnexpectedMType)
	}
	if len(p.FOpts) > maxFOptsLen {
		return 0, 0, fmt.Errorf("FOpts of %d bytes: %w", len(p.FOpts), ErrFOptsLength)
	}
	if !p.HasFPort && len(p.FRMPayload) > 0 {
		return 0, 0, fmt.Errorf("%d-byte FRMPayload: %w", len(p.FRMPayload), ErrMissingFPort)
	}
	if p.HasFPort && p.FPort == 0 && len(p.FOpts) > 0 {
		return 0, 0, fmt.Errorf("FOpts of %d bytes: %w", len(p.FOpts), ErrFPortZeroWithFOpts)
	}
	c := p.FCtrl
	c.FOptsLen = uint8(len(p.FOpts))
	fctrl, err = c.Byte(p.MType.IsUplink())
	if err != nil {
		return 0, 0, err
	}
	size = 1 + fhdrMinLen + len(p.FOpts) + micLen
	if p.HasFPort {
		size += 1 + len(p.FRMPayload)
	}
	if size > MaxPHYPayloadSize {
		return 0, 0, fmt.Errorf("data frame of %d bytes, max %d: %w", size, MaxPHYPayloadSize, ErrTooLong)
	}
	return fctrl, size, nil
}

// AppendDataFrame builds the complete PHYPayload described by p (encrypted
// FRMPayload, correct MIC) and appends it to dst. With enough capacity in
// dst it does not allocate. Errors: ErrUnexpectedMType, ErrFOptsLength,
// ErrMissingFPort, ErrFPortZeroWithFOpts, ErrInvalidFCtrl, ErrTooLong.
func (k *SessionKeys) AppendDataFrame(dst []byte, p DataFrameParams) ([]byte, error) {
	fctrl, size, err := p.validate()
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, size)
	start := len(dst)
	dst = append(dst, MHDR{MType: p.MType, Major: LoRaWANR1}.Byte())
	dst = append(dst, p.DevAddr[3], p.DevAddr[2], p.DevAddr[1], p.DevAddr[0], fctrl)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(p.FCnt))
	dst = append(dst, p.FOpts...)
	dir := dirByte(p.MType)
	s := k.borrow()
	if p.HasFPort {
		dst = append(dst, p.FPort)
		n := len(dst)
		dst = append(dst, p.FRMPayload...)
		cryptFRM(k.frmBlock(p.FPort), s, dir, p.DevAddr, p.FCnt, dst[n:])
	}
	mic := dataMIC(&k.nwk, s, p.MType, p.DevAddr, p.FCnt, dst[start:])
	k.release(s)
	return append(dst, mic[:]...), nil
}

// BuildDataFrame is the one-shot form of SessionKeys.AppendDataFrame for
// tools and tests.
func BuildDataFrame(nwkSKey, appSKey AES128Key, p DataFrameParams) ([]byte, error) {
	k, err := NewSessionKeys(nwkSKey, appSKey)
	if err != nil {
		return nil, err
	}
	return k.AppendDataFrame(nil, p)
}
