package lorawan

import (
	"encoding/hex"
	"fmt"
)

// EUI64 is an IEEE EUI-64 (DevEUI, JoinEUI/AppEUI, gateway EUI), stored in
// display order (most significant byte first). It travels little-endian on
// the air.
type EUI64 [8]byte

// DevAddr is a 32-bit device address, stored in display order (big-endian),
// little-endian on the wire.
type DevAddr [4]byte

// AES128Key is an AES-128 key (AppKey, NwkSKey, AppSKey).
//
// Its String and MarshalText reveal the key in hex: they exist for
// provisioning files and tools. Never log a value of this type.
type AES128Key [16]byte

// NetID is a 24-bit network identifier, stored in display order
// (big-endian), little-endian on the wire.
type NetID [3]byte

// JoinNonce is the 24-bit nonce chosen by the network for a join accept
// (called AppNonce before LoRaWAN 1.0.4), stored in display order
// (big-endian), little-endian on the wire.
type JoinNonce [3]byte

// AppNonce is the LoRaWAN 1.0.2/1.0.3 name of JoinNonce.
type AppNonce = JoinNonce

// DevNonce is the 16-bit nonce of a join request (random in 1.0.2/1.0.3, a
// counter in 1.0.4), little-endian on the wire.
type DevNonce uint16

// hexString renders b as lowercase hex without allocating more than the result.
func hexString(b []byte) string { return hex.EncodeToString(b) }

// appendHex appends the lowercase hex form of b to dst.
func appendHex(dst, b []byte) []byte { return hex.AppendEncode(dst, b) }

// decodeHex fills dst from exactly 2*len(dst) hex digits (either case).
func decodeHex(dst []byte, text []byte, what string) error {
	if len(text) != 2*len(dst) {
		return fmt.Errorf("%s %q: want %d hex digits, got %d: %w", what, truncate(text), 2*len(dst), len(text), ErrInvalidLength)
	}
	var tmp [16]byte // largest identifier is a key; keeps dst untouched on error
	if _, err := hex.Decode(tmp[:len(dst)], text); err != nil {
		return fmt.Errorf("%s %q: %w", what, truncate(text), ErrInvalidHex)
	}
	copy(dst, tmp[:len(dst)])
	return nil
}

// truncate keeps error messages bounded when fed garbage.
func truncate(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// String returns the EUI as 16 lowercase hex digits.
func (e EUI64) String() string { return hexString(e[:]) }

// MarshalText implements encoding.TextMarshaler (16 lowercase hex digits).
func (e EUI64) MarshalText() ([]byte, error) { return appendHex(nil, e[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler: exactly 16 hex digits.
func (e *EUI64) UnmarshalText(text []byte) error { return decodeHex(e[:], text, "EUI64") }

// ParseEUI64 parses exactly 16 hex digits (no separators) into an EUI64.
func ParseEUI64(s string) (EUI64, error) {
	var e EUI64
	err := e.UnmarshalText([]byte(s))
	return e, err
}

// String returns the address as 8 lowercase hex digits.
func (a DevAddr) String() string { return hexString(a[:]) }

// MarshalText implements encoding.TextMarshaler (8 lowercase hex digits).
func (a DevAddr) MarshalText() ([]byte, error) { return appendHex(nil, a[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler: exactly 8 hex digits.
func (a *DevAddr) UnmarshalText(text []byte) error { return decodeHex(a[:], text, "DevAddr") }

// ParseDevAddr parses exactly 8 hex digits into a DevAddr.
func ParseDevAddr(s string) (DevAddr, error) {
	var a DevAddr
	err := a.UnmarshalText([]byte(s))
	return a, err
}

// Uint32 returns the address as a number (display order).
func (a DevAddr) Uint32() uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

// NwkID returns the 7-bit network identifier that LoRaWAN 1.0.x places in
// the most significant bits of a DevAddr (the lowest 7 bits of the NetID).
func (a DevAddr) NwkID() uint8 { return a[0] >> 1 }

// String returns the key as 32 lowercase hex digits. See the type's warning.
func (k AES128Key) String() string { return hexString(k[:]) }

// MarshalText implements encoding.TextMarshaler (32 lowercase hex digits).
func (k AES128Key) MarshalText() ([]byte, error) { return appendHex(nil, k[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler: exactly 32 hex digits.
func (k *AES128Key) UnmarshalText(text []byte) error {
	return decodeHex(k[:], text, "AES128Key")
}

// ParseAES128Key parses exactly 32 hex digits into a key.
func ParseAES128Key(s string) (AES128Key, error) {
	var k AES128Key
	err := k.UnmarshalText([]byte(s))
	return k, err
}

// String returns the NetID as 6 lowercase hex digits.
func (n NetID) String() string { return hexString(n[:]) }

// MarshalText implements encoding.TextMarshaler (6 lowercase hex digits).
func (n NetID) MarshalText() ([]byte, error) { return appendHex(nil, n[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler: exactly 6 hex digits.
func (n *NetID) UnmarshalText(text []byte) error { return decodeHex(n[:], text, "NetID") }

// ParseNetID parses exactly 6 hex digits into a NetID.
func ParseNetID(s string) (NetID, error) {
	var n NetID
	err := n.UnmarshalText([]byte(s))
	return n, err
}

// String returns the nonce as 6 lowercase hex digits.
func (n JoinNonce) String() string { return hexString(n[:]) }

// MarshalText implements encoding.TextMarshaler (6 lowercase hex digits).
func (n JoinNonce) MarshalText() ([]byte, error) { return appendHex(nil, n[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler: exactly 6 hex digits.
func (n *JoinNonce) UnmarshalText(text []byte) error {
	return decodeHex(n[:], text, "JoinNonce")
}

// ParseJoinNonce parses exactly 6 hex digits into a JoinNonce.
func ParseJoinNonce(s string) (JoinNonce, error) {
	var n JoinNonce
	err := n.UnmarshalText([]byte(s))
	return n, err
}

// String returns the nonce as 4 lowercase hex digits.
func (n DevNonce) String() string {
	b := [2]byte{byte(n >> 8), byte(n)}
	return hexString(b[:])
}

// MarshalText implements encoding.TextMarshaler (4 lowercase hex digits).
func (n DevNonce) MarshalText() ([]byte, error) {
	b := [2]byte{byte(n >> 8), byte(n)}
	return appendHex(nil, b[:]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler: exactly 4 hex digits.
func (n *DevNonce) UnmarshalText(text []byte) error {
	var b [2]byte
	if err := decodeHex(b[:], text, "DevNonce"); err != nil {
		return err
	}
	*n = DevNonce(b[0])<<8 | DevNonce(b[1])
	return nil
}

// ParseDevNonce parses exactly 4 hex digits into a DevNonce.
func ParseDevNonce(s string) (DevNonce, error) {
	var n DevNonce
	err := n.UnmarshalText([]byte(s))
	return n, err
}

// putReversed writes src into dst in reverse byte order: the conversion
// between display order and wire order for every identifier type.
func putReversed(dst, src []byte) {
	for i := range src {
		dst[len(src)-1-i] = src[i]
	}
}
