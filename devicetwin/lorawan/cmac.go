package lorawan

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
)

// blockSize is the AES block size.
const blockSize = aes.BlockSize

// cmacKey is an AES-CMAC key (RFC 4493) with its subkeys precomputed, so a
// MIC costs only the block encryptions of the message.
type cmacKey struct {
	block  cipher.Block
	k1, k2 [blockSize]byte
}

// newAES returns the AES-128 cipher for key. aes.NewCipher only fails on a
// bad key length, which the array type rules out; the error is still mapped
// to a sentinel rather than ignored.
func newAES(key AES128Key) (cipher.Block, error) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("aes: %w: %w", err, ErrInvalidLength)
	}
	return b, nil
}

// newCMACKey derives the CMAC subkeys K1 and K2 (RFC 4493 §2.3):
// L = AES(K, 0^128); K1 = dbl(L); K2 = dbl(K1).
func newCMACKey(block cipher.Block) cmacKey {
	c := cmacKey{block: block}
	var l [blockSize]byte
	block.Encrypt(l[:], l[:])
	dbl(&c.k1, &l)
	dbl(&c.k2, &c.k1)
	return c
}

// dbl is the doubling in GF(2^128) used for subkeys: shift left one bit and
// XOR the constant Rb = 0x87 into the last byte if the top bit fell off.
func dbl(dst, src *[blockSize]byte) {
	msb := src[0] >> 7
	for i := 0; i < blockSize-1; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[blockSize-1] = src[blockSize-1]<<1 ^ (0x87 * msb)
}

// sum continues an AES-CMAC computation: x holds the CBC chaining value of
// the blocks processed so far (all zero for a fresh MAC) and msg is the rest
// of the message, which must include the final block. On return x holds the
// 16-byte tag.
//
// Only the final block is padded (10* padding, XOR K2) or tweaked (XOR K1
// when complete), so a caller may feed a whole first block through x (as the
// data-frame MIC does with B0) and pass the remainder here, provided the
// remainder is not empty.
func (c *cmacKey) sum(x *[blockSize]byte, msg []byte) {
	for len(msg) > blockSize {
		for i := 0; i < blockSize; i++ {
			x[i] ^= msg[i]
		}
		c.block.Encrypt(x[:], x[:])
		msg = msg[blockSize:]
	}
	if len(msg) == blockSize {
		for i := 0; i < blockSize; i++ {
			x[i] ^= msg[i] ^ c.k1[i]
		}
	} else {
		for i := range msg {
			x[i] ^= msg[i]
		}
		x[len(msg)] ^= 0x80
		for i := 0; i < blockSize; i++ {
			x[i] ^= c.k2[i]
		}
	}
	c.block.Encrypt(x[:], x[:])
}

// cmac computes the full AES-CMAC of msg under key (RFC 4493). It allocates;
// it serves the join path and tests, not the data hot path.
func cmac(key AES128Key, msg []byte) ([blockSize]byte, error) {
	var x [blockSize]byte
	b, err := newAES(key)
	if err != nil {
		return x, err
	}
	c := newCMACKey(b)
	c.sum(&x, msg)
	return x, nil
}
