package esdk

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"math/bits"
)

// gcmOpener decrypts one AES-GCM ciphertext (12-byte IV, 16-byte tag) in
// pieces, for non-framed content, which may be far larger than memory:
// the plaintext of each piece is released before the tag is checked, so a
// caller writes it somewhere nobody reads until close succeeds.
//
// The standard library's cipher.AEAD opens whole messages only and keeps
// GHASH internal, so GHASH is here: the 4-bit table method of the GCM
// specification (NIST SP 800-38D, and D. McGrew and J. Viega's GCM paper,
// section 4.1), checked against cipher.NewGCM in gcmstream_test.go. It
// runs at a few hundred MB/s; framed content, which every SDK writes by
// default, never comes here.
type gcmOpener struct {
	ctr      cipher.Stream
	table    [16]fieldElement // multiples of H, indexed by 4 reversed bits
	y        fieldElement     // GHASH so far
	tagMask  [16]byte         // E(K, J0)
	pending  [16]byte         // a partial ciphertext block
	npending int
	aadLen   uint64
	ctLen    uint64
}

// fieldElement is an element of GF(2^128) in GCM's bit order: lo holds
// the block's first 8 bytes, big-endian.
type fieldElement struct{ lo, hi uint64 }

func newGCMOpener(block cipher.Block, iv, aad []byte) *gcmOpener {
	o := &gcmOpener{}
	var h [16]byte
	block.Encrypt(h[:], h[:])
	x := fieldElement{binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:])}
	o.table[reverse4(1)] = x
	for i := 2; i < 16; i += 2 {
		o.table[reverse4(i)] = double(o.table[reverse4(i/2)])
		o.table[reverse4(i+1)] = add(o.table[reverse4(i)], x)
	}
	var j0 [16]byte
	copy(j0[:], iv)
	j0[15] = 1
	block.Encrypt(o.tagMask[:], j0[:])
	j0[15] = 2 // the first counter block of the content
	o.ctr = cipher.NewCTR(block, j0[:])
	o.aadLen = uint64(len(aad))
	o.absorb(aad)
	o.flush()
	return o
}

// open decrypts ct into dst (which may be ct itself, or as long).
func (o *gcmOpener) open(dst, ct []byte) {
	o.ctLen += uint64(len(ct))
	o.absorb(ct)
	o.ctr.XORKeyStream(dst[:len(ct)], ct)
}

// close checks the tag against everything opened.
func (o *gcmOpener) close(tag []byte) error {
	o.flush()
	o.y.lo ^= o.aadLen * 8
	o.y.hi ^= o.ctLen * 8
	o.mul()
	var sum [16]byte
	binary.BigEndian.PutUint64(sum[:8], o.y.lo)
	binary.BigEndian.PutUint64(sum[8:], o.y.hi)
	subtle.XORBytes(sum[:], sum[:], o.tagMask[:])
	if subtle.ConstantTimeCompare(sum[:], tag) != 1 {
		return errors.New("GCM tag mismatch")
	}
	return nil
}

// absorb adds b to GHASH, a block at a time, keeping a partial block.
func (o *gcmOpener) absorb(b []byte) {
	if o.npending > 0 {
		n := copy(o.pending[o.npending:], b)
		o.npending += n
		b = b[n:]
		if o.npending < 16 {
			return
		}
		o.block(o.pending[:])
		o.npending = 0
	}
	for len(b) >= 16 {
		o.block(b[:16])
		b = b[16:]
	}
	o.npending = copy(o.pending[:], b)
}

// flush adds a partial block, padded with zeros.
func (o *gcmOpener) flush() {
	if o.npending > 0 {
		clear(o.pending[o.npending:])
		o.block(o.pending[:])
		o.npending = 0
	}
}

func (o *gcmOpener) block(b []byte) {
	o.y.lo ^= binary.BigEndian.Uint64(b[:8])
	o.y.hi ^= binary.BigEndian.Uint64(b[8:])
	o.mul()
}

// mul sets y to y·H, four bits at a time from the last: shift the product
// by 4 (a right shift in GCM's bit order), reduce the 4 bits that fall off
// by the field polynomial, and add the table's multiple of H.
func (o *gcmOpener) mul() {
	var z fieldElement
	for _, word := range [2]uint64{o.y.hi, o.y.lo} {
		for range 16 {
			fall := z.hi & 0xf
			z.hi = z.hi>>4 | z.lo<<60
			z.lo = z.lo>>4 ^ uint64(reduction[fall])<<48
			t := o.table[word&0xf]
			z.lo ^= t.lo
			z.hi ^= t.hi
			word >>= 4
		}
	}
	o.y = z
}

// reduction[i] is the field polynomial's contribution when the 4 bits i
// fall off the end of an element shifted by 4.
var reduction = [16]uint16{
	0x0000, 0x1c20, 0x3840, 0x2460, 0x7080, 0x6ca0, 0x48c0, 0x54e0,
	0xe100, 0xfd20, 0xd940, 0xc560, 0x9180, 0x8da0, 0xa9c0, 0xb5e0,
}

// double is x·2 in GCM's bit order: a right shift, reduced by
// 1 + x + x^2 + x^7 + x^128 when a bit falls off.
func double(x fieldElement) fieldElement {
	d := fieldElement{lo: x.lo >> 1, hi: x.hi>>1 | x.lo<<63}
	if x.hi&1 == 1 {
		d.lo ^= 0xe100000000000000
	}
	return d
}

func add(x, y fieldElement) fieldElement { return fieldElement{x.lo ^ y.lo, x.hi ^ y.hi} }

// reverse4 reverses the 4 low bits of i.
func reverse4(i int) int { return int(bits.Reverse8(uint8(i)) >> 4) }
