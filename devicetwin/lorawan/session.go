package lorawan

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// Block-type bytes of the LoRaWAN 1.0.x crypto blocks.
const (
	blockTypeA  = 0x01 // FRMPayload encryption (A_i)
	blockTypeB0 = 0x49 // data MIC (B0)
)

// Direction bytes in the A and B0 blocks.
const (
	dirUplink   = 0x00
	dirDownlink = 0x01
)

// SessionKeys holds one session's NwkSKey and AppSKey in ready-to-use form:
// the AES key schedules and the CMAC subkeys of the NwkSKey. Building it
// costs a few allocations and microseconds (aes.NewCipher); using it costs
// none, which is why twins keep one per session instead of passing raw keys.
//
// A SessionKeys is safe for concurrent use. It carries one scratch block
// that the first concurrent user borrows (an atomic flag, no lock); other
// concurrent users allocate a 16-byte block instead, so contention costs an
// allocation, never correctness. Do not copy a SessionKeys; share the pointer.
type SessionKeys struct {
	nwk cmacKey      // NwkSKey: MIC, and FRMPayload when FPort is 0
	app cipher.Block // AppSKey: FRMPayload when FPort > 0

	busy    atomic.Bool
	scratch [blockSize]byte // guarded by busy
}

// NewSessionKeys prepares the ciphers for one session.
func NewSessionKeys(nwkSKey, appSKey AES128Key) (*SessionKeys, error) {
	nb, err := newAES(nwkSKey)
	if err != nil {
		return nil, fmt.Errorf("NwkSKey: %w", err)
	}
	ab, err := newAES(appSKey)
	if err != nil {
		return nil, fmt.Errorf("AppSKey: %w", err)
	}
	return &SessionKeys{nwk: newCMACKey(nb), app: ab}, nil
}

// borrow returns a scratch block: the shared one when free, else a new one.
// The block's contents are unspecified.
func (k *SessionKeys) borrow() *[blockSize]byte {
	if k.busy.CompareAndSwap(false, true) {
		return &k.scratch
	}
	return new([blockSize]byte)
}

// release hands the shared scratch block back (no-op for a private one).
func (k *SessionKeys) release(s *[blockSize]byte) {
	if s == &k.scratch {
		k.busy.Store(false)
	}
}

// dirByte is the direction byte of the A and B0 blocks for a message type.
func dirByte(m MType) byte {
	if m.IsUplink() {
		return dirUplink
	}
	return dirDownlink
}

// putBlockHeader writes the common part of the A and B0 blocks:
// type | 0x00×4 | Dir | DevAddr (LE) | FCnt32 (LE) | 0x00 | last.
func putBlockHeader(b *[blockSize]byte, typ, dir byte, addr DevAddr, fcnt uint32, last byte) {
	b[0] = typ
	b[1], b[2], b[3], b[4] = 0, 0, 0, 0
	b[5] = dir
	putReversed(b[6:10], addr[:])
	binary.LittleEndian.PutUint32(b[10:14], fcnt)
	b[14] = 0
	b[15] = last
}

// dataMIC computes the 4-byte data MIC: CMAC(NwkSKey, B0 | msg)[0:4] with
// B0 = 0x49 | 0x00×4 | Dir | DevAddr | FCnt32 | 0x00 | len(msg). B0 is a
// whole block, so it is encrypted directly as the first CBC step; msg is
// never empty (at least MHDR and FHDR).
func dataMIC(c *cmacKey, x *[blockSize]byte, m MType, addr DevAddr, fcnt uint32, msg []byte) [4]byte {
	putBlockHeader(x, blockTypeB0, dirByte(m), addr, fcnt, byte(len(msg)))
	c.block.Encrypt(x[:], x[:])
	c.sum(x, msg)
	return [4]byte{x[0], x[1], x[2], x[3]}
}

// checkFCnt rejects a 32-bit counter that cannot belong to the frame.
func checkFCnt(f *DataFrame, fcnt uint32) error {
	if uint16(fcnt) != f.FCnt16 {
		return fmt.Errorf("FCnt32 %d vs wire %d: %w", fcnt, f.FCnt16, ErrFCntMismatch)
	}
	return nil
}

// ComputeMIC returns the MIC the frame should carry for the given 32-bit
// counter (whose low 16 bits must equal f.FCnt16). Direction comes from the
// frame's MType.
func (k *SessionKeys) ComputeMIC(f *DataFrame, fcnt32 uint32) ([4]byte, error) {
	if err := checkFCnt(f, fcnt32); err != nil {
		return [4]byte{}, err
	}
	s := k.borrow()
	mic := dataMIC(&k.nwk, s, f.MType, f.DevAddr, fcnt32, f.MICInput())
	k.release(s)
	return mic, nil
}

// VerifyMIC checks the MIC of a data frame of either direction in constant
// time. Errors: ErrFCntMismatch, ErrInvalidMIC.
func (k *SessionKeys) VerifyMIC(f *DataFrame, fcnt32 uint32) error {
	mic, err := k.ComputeMIC(f, fcnt32)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(mic[:], f.MIC[:]) != 1 {
		return fmt.Errorf("%s %s FCnt %d: %w", f.MType, f.DevAddr, fcnt32, ErrInvalidMIC)
	}
	return nil
}

// VerifyUplinkMIC is VerifyMIC for the uplink path: a downlink MType fed to
// it is an ErrUnexpectedMType, not a MIC failure, so that a confused or
// hostile gateway cannot make a twin verify under the downlink direction.
func (k *SessionKeys) VerifyUplinkMIC(f *DataFrame, fcnt32 uint32) error {
	if !f.MType.IsUplink() {
		return fmt.Errorf("%s on the uplink path: %w", f.MType, ErrUnexpectedMType)
	}
	return k.VerifyMIC(f, fcnt32)
}

// DecryptFRMPayload appends the plaintext FRMPayload of f to dst and returns
// the extended slice (like append): with enough capacity in dst nothing is
// allocated. The key is the AppSKey, or the NwkSKey when FPort is 0. A frame
// without FPort leaves dst unchanged. Verify the MIC first: decryption
// cannot detect a wrong key or counter, it only yields garbage.
func (k *SessionKeys) DecryptFRMPayload(dst []byte, f *DataFrame, fcnt32 uint32) []byte {
	if !f.HasFPort || len(f.FRMPayload) == 0 {
		return dst
	}
	n := len(dst)
	dst = append(dst, f.FRMPayload...)
	s := k.borrow()
	cryptFRM(k.frmBlock(f.FPort), s, dirByte(f.MType), f.DevAddr, fcnt32, dst[n:])
	k.release(s)
	return dst
}

// frmBlock selects the FRMPayload key: NwkSKey for FPort 0, else AppSKey.
func (k *SessionKeys) frmBlock(fport uint8) cipher.Block {
	if fport == 0 {
		return k.nwk.block
	}
	return k.app
}

// cryptFRM encrypts or decrypts buf in place (the operation is its own
// inverse): buf ^= AES(K, A_1) | AES(K, A_2) | … with
// A_i = 0x01 | 0x00×4 | Dir | DevAddr | FCnt32 | 0x00 | i.
func cryptFRM(b cipher.Block, s *[blockSize]byte, dir byte, addr DevAddr, fcnt uint32, buf []byte) {
	for i := 0; len(buf) > 0; i++ {
		putBlockHeader(s, blockTypeA, dir, addr, fcnt, byte(i+1))
		b.Encrypt(s[:], s[:])
		n := min(len(buf), blockSize)
		subtle.XORBytes(buf[:n], buf[:n], s[:n])
		buf = buf[n:]
	}
}

// ComputeDataMIC is the one-shot form of SessionKeys.ComputeMIC for tools.
func ComputeDataMIC(nwkSKey AES128Key, f *DataFrame, fcnt32 uint32) ([4]byte, error) {
	if err := checkFCnt(f, fcnt32); err != nil {
		return [4]byte{}, err
	}
	b, err := newAES(nwkSKey)
	if err != nil {
		return [4]byte{}, err
	}
	c := newCMACKey(b)
	var x [blockSize]byte
	return dataMIC(&c, &x, f.MType, f.DevAddr, fcnt32, f.MICInput()), nil
}

// VerifyDataMIC is the one-shot form of SessionKeys.VerifyMIC for tools.
// Errors: ErrFCntMismatch, ErrInvalidMIC.
func VerifyDataMIC(nwkSKey AES128Key, f *DataFrame, fcnt32 uint32) error {
	mic, err := ComputeDataMIC(nwkSKey, f, fcnt32)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(mic[:], f.MIC[:]) != 1 {
		return fmt.Errorf("%s %s FCnt %d: %w", f.MType, f.DevAddr, fcnt32, ErrInvalidMIC)
	}
	return nil
}

// DecryptFRMPayload is the one-shot form of SessionKeys.DecryptFRMPayload
// for tools. key must be the AppSKey, or the NwkSKey when f.FPort is 0.
func DecryptFRMPayload(key AES128Key, dst []byte, f *DataFrame, fcnt32 uint32) ([]byte, error) {
	if !f.HasFPort || len(f.FRMPayload) == 0 {
		return dst, nil
	}
	b, err := newAES(key)
	if err != nil {
		return dst, err
	}
	n := len(dst)
	dst = append(dst, f.FRMPayload...)
	var s [blockSize]byte
	cryptFRM(b, &s, dirByte(f.MType), f.DevAddr, fcnt32, dst[n:])
	return dst, nil
}
