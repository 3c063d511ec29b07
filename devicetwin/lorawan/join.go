package lorawan

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// Join frame sizes (LoRaWAN 1.0.x §6.2).
const (
	joinRequestSize       = 1 + 8 + 8 + 2 + micLen // 23
	joinAcceptSize        = 1 + 3 + 3 + 4 + 1 + 1 + micLen
	cfListSize            = 16
	joinAcceptCFListSize  = joinAcceptSize + cfListSize // 33
	joinAcceptPayloadSize = joinAcceptSize - 1 - micLen // 12, without CFList
)

// JoinRequest is an OTAA join request. EUIs are in display order.
type JoinRequest struct {
	JoinEUI  EUI64 // AppEUI before LoRaWAN 1.0.4
	DevEUI   EUI64
	DevNonce DevNonce
	MIC      [4]byte // as received; ignored by BuildJoinRequest
}

// ParseJoinRequest parses a join-request PHYPayload (23 bytes) without
// checking the MIC; see VerifyJoinRequest. Errors: ErrTooShort, ErrTooLong,
// ErrUnsupportedMajor, ErrUnexpectedMType.
func ParseJoinRequest(phy []byte) (JoinRequest, error) {
	var jr JoinRequest
	if err := checkFixedFrame(phy, MTypeJoinRequest, joinRequestSize, joinRequestSize); err != nil {
		return jr, err
	}
	putReversed(jr.JoinEUI[:], phy[1:9])
	putReversed(jr.DevEUI[:], phy[9:17])
	jr.DevNonce = DevNonce(binary.LittleEndian.Uint16(phy[17:19]))
	copy(jr.MIC[:], phy[19:])
	return jr, nil
}

// VerifyJoinRequest parses a join request and checks its MIC,
// CMAC(AppKey, MHDR | JoinEUI | DevEUI | DevNonce)[0:4], in constant time.
// DevNonce reuse is the twin's check: it owns the list of used nonces.
// Errors: those of ParseJoinRequest and ErrInvalidMIC.
func VerifyJoinRequest(appKey AES128Key, phy []byte) (JoinRequest, error) {
	jr, err := ParseJoinRequest(phy)
	if err != nil {
		return JoinRequest{}, err
	}
	tag, err := cmac(appKey, phy[:joinRequestSize-micLen])
	if err != nil {
		return JoinRequest{}, err
	}
	if subtle.ConstantTimeCompare(tag[:micLen], jr.MIC[:]) != 1 {
		return JoinRequest{}, fmt.Errorf("join request DevEUI %s: %w", jr.DevEUI, ErrInvalidMIC)
	}
	return jr, nil
}

// BuildJoinRequest encodes jr with the MIC computed under appKey (jr.MIC is
// ignored).
func BuildJoinRequest(appKey AES128Key, jr JoinRequest) ([]byte, error) {
	phy := make([]byte, 0, joinRequestSize)
	phy = append(phy, MHDR{MType: MTypeJoinRequest}.Byte())
	phy = appendReversed(phy, jr.JoinEUI[:])
	phy = appendReversed(phy, jr.DevEUI[:])
	phy = binary.LittleEndian.AppendUint16(phy, uint16(jr.DevNonce))
	tag, err := cmac(appKey, phy)
	if err != nil {
		return nil, err
	}
	return append(phy, tag[:micLen]...), nil
}

// DLSettings is the downlink-settings byte of a join accept.
type DLSettings struct {
	RX1DROffset uint8 // 0..7
	RX2DataRate uint8 // 0..15
}

// ParseDLSettings decodes the byte. Bit 7 (RFU in 1.0.x, OptNeg in 1.1) is
// dropped; it stays covered by the MIC.
func ParseDLSettings(b byte) DLSettings {
	return DLSettings{RX1DROffset: b >> 4 & 0x07, RX2DataRate: b & 0x0f}
}

// Byte encodes the settings; out-of-range values are ErrInvalidField.
func (d DLSettings) Byte() (byte, error) {
	if d.RX1DROffset > 7 || d.RX2DataRate > 15 {
		return 0, fmt.Errorf("DLSettings RX1DROffset %d RX2DataRate %d: %w", d.RX1DROffset, d.RX2DataRate, ErrInvalidField)
	}
	return d.RX1DROffset<<4 | d.RX2DataRate, nil
}

// JoinAccept is an OTAA join accept in plaintext. Identifiers are in display
// order.
type JoinAccept struct {
	JoinNonce  JoinNonce // AppNonce before LoRaWAN 1.0.4
	NetID      NetID
	DevAddr    DevAddr
	DLSettings DLSettings
	// RxDelay is the RX1 delay in seconds, 0..15 (0 means 1 s).
	RxDelay uint8
	// HasCFList says whether the optional 16-byte channel list is present
	// (EU868: five 24-bit frequencies in units of 100 Hz, then CFListType).
	HasCFList bool
	CFList    [cfListSize]byte
}

// appendPlain appends MACPayload of ja in wire order (no MHDR, no MIC).
func (ja *JoinAccept) appendPlain(dst []byte) ([]byte, error) {
	dl, err := ja.DLSettings.Byte()
	if err != nil {
		return nil, err
	}
	if ja.RxDelay > 15 {
		return nil, fmt.Errorf("RxDelay %d: %w", ja.RxDelay, ErrInvalidField)
	}
	dst = appendReversed(dst, ja.JoinNonce[:])
	dst = appendReversed(dst, ja.NetID[:])
	dst = appendReversed(dst, ja.DevAddr[:])
	dst = append(dst, dl, ja.RxDelay)
	if ja.HasCFList {
		dst = append(dst, ja.CFList[:]...)
	}
	return dst, nil
}

// BuildJoinAccept encodes ja as the network sends it: MHDR in clear, then
// MACPayload | MIC "encrypted" with AES *decryption* under appKey (ECB,
// one or two blocks), so that the device needs only AES encryption.
// MIC = CMAC(AppKey, MHDR | JoinNonce | NetID | DevAddr | DLSettings |
// RxDelay | CFList)[0:4]. Errors: ErrInvalidField.
func BuildJoinAccept(appKey AES128Key, ja JoinAccept) ([]byte, error) {
	phy := make([]byte, 0, joinAcceptCFListSize)
	phy = append(phy, MHDR{MType: MTypeJoinAccept}.Byte())
	phy, err := ja.appendPlain(phy)
	if err != nil {
		return nil, err
	}
	b, err := newAES(appKey)
	if err != nil {
		return nil, err
	}
	c := newCMACKey(b)
	var tag [blockSize]byte
	c.sum(&tag, phy)
	phy = append(phy, tag[:micLen]...)
	for i := 1; i < len(phy); i += blockSize {
		b.Decrypt(phy[i:i+blockSize], phy[i:i+blockSize])
	}
	return phy, nil
}

// DecryptJoinAccept decrypts a join-accept PHYPayload (17 or 33 bytes) with
// the device's AppKey, checks its MIC in constant time and decodes it.
// Errors: ErrTooShort, ErrTooLong, ErrInvalidLength, ErrUnsupportedMajor,
// ErrUnexpectedMType, ErrInvalidMIC.
func DecryptJoinAccept(appKey AES128Key, phy []byte) (JoinAccept, error) {
	if err := checkFixedFrame(phy, MTypeJoinAccept, joinAcceptSize, joinAcceptCFListSize); err != nil {
		return JoinAccept{}, err
	}
	if len(phy) != joinAcceptSize && len(phy) != joinAcceptCFListSize {
		return JoinAccept{}, fmt.Errorf("join accept of %d bytes, want %d or %d: %w", len(phy), joinAcceptSize, joinAcceptCFListSize, ErrInvalidLength)
	}
	b, err := newAES(appKey)
	if err != nil {
		return JoinAccept{}, err
	}
	var plain [joinAcceptCFListSize]byte
	plain[0] = phy[0]
	for i := 1; i < len(phy); i += blockSize {
		b.Encrypt(plain[i:i+blockSize], phy[i:i+blockSize])
	}
	n := len(phy) - micLen
	c := newCMACKey(b)
	var tag [blockSize]byte
	c.sum(&tag, plain[:n])
	if subtle.ConstantTimeCompare(tag[:micLen], plain[n:len(phy)]) != 1 {
		return JoinAccept{}, fmt.Errorf("join accept: %w", ErrInvalidMIC)
	}
	var ja JoinAccept
	putReversed(ja.JoinNonce[:], plain[1:4])
	putReversed(ja.NetID[:], plain[4:7])
	putReversed(ja.DevAddr[:], plain[7:11])
	ja.DLSettings = ParseDLSettings(plain[11])
	ja.RxDelay = plain[12] & 0x0f
	if n > 1+joinAcceptPayloadSize {
		ja.HasCFList = true
		copy(ja.CFList[:], plain[13:13+cfListSize])
	}
	return ja, nil
}

// DeriveSessionKeys derives the LoRaWAN 1.0.x session keys after a join:
// NwkSKey = AES(AppKey, 0x01 | JoinNonce | NetID | DevNonce | pad16) and
// AppSKey = AES(AppKey, 0x02 | …), fields little-endian as on the wire.
func DeriveSessionKeys(appKey AES128Key, joinNonce JoinNonce, netID NetID, devNonce DevNonce) (nwkSKey, appSKey AES128Key, err error) {
	b, err := newAES(appKey)
	if err != nil {
		return nwkSKey, appSKey, err
	}
	var in [blockSize]byte
	putReversed(in[1:4], joinNonce[:])
	putReversed(in[4:7], netID[:])
	binary.LittleEndian.PutUint16(in[7:9], uint16(devNonce))
	in[0] = 0x01
	b.Encrypt(nwkSKey[:], in[:])
	in[0] = 0x02
	b.Encrypt(appSKey[:], in[:])
	return nwkSKey, appSKey, nil
}

// checkFixedFrame checks the length bounds and MHDR of a join frame.
func checkFixedFrame(phy []byte, want MType, minLen, maxLen int) error {
	if len(phy) < minLen {
		return fmt.Errorf("%s of %d bytes, need %d: %w", want, len(phy), minLen, ErrTooShort)
	}
	if len(phy) > maxLen {
		return fmt.Errorf("%s of %d bytes, max %d: %w", want, len(phy), maxLen, ErrTooLong)
	}
	h, err := ParseMHDR(phy[0])
	if err != nil {
		return err
	}
	if h.MType != want {
		return fmt.Errorf("%s where %s expected: %w", h.MType, want, ErrUnexpectedMType)
	}
	return nil
}

// appendReversed appends src in reverse byte order (display → wire order).
func appendReversed(dst, src []byte) []byte {
	for i := len(src) - 1; i >= 0; i-- {
		dst = append(dst, src[i])
	}
	return dst
}
