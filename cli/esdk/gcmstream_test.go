package esdk

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"testing"
)

// TestGCMOpenerMatchesStandardLibrary: opening in pieces of any size gives
// cipher.NewGCM's plaintext and accepts its tag, for content and AAD of
// lengths around block boundaries; a flipped bit anywhere fails.
func TestGCMOpenerMatchesStandardLibrary(t *testing.T) {
	for _, keyLen := range []int{16, 24, 32} {
		key := make([]byte, keyLen)
		rand.Read(key)
		block, _ := aes.NewCipher(key)
		aead, _ := cipher.NewGCM(block)
		for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 100, 4096, 70_001} {
			for _, aadLen := range []int{0, 5, 16, 67} {
				iv, plain, aad := make([]byte, 12), make([]byte, n), make([]byte, aadLen)
				rand.Read(iv)
				rand.Read(plain)
				rand.Read(aad)
				sealed := aead.Seal(nil, iv, plain, aad)
				ct, tag := sealed[:n], sealed[n:]
				for _, piece := range []int{1, 7, 16, 1000, n + 1} {
					o := newGCMOpener(block, iv, aad)
					got := make([]byte, 0, n)
					for rest := ct; len(rest) > 0; {
						k := min(piece, len(rest))
						out := make([]byte, k)
						o.open(out, rest[:k])
						got = append(got, out...)
						rest = rest[k:]
					}
					if err := o.close(tag); err != nil {
						t.Fatalf("key %d, %d bytes, aad %d, pieces of %d: %v", keyLen, n, aadLen, piece, err)
					}
					if !bytes.Equal(got, plain) {
						t.Fatalf("key %d, %d bytes, aad %d, pieces of %d: wrong plaintext", keyLen, n, aadLen, piece)
					}
				}
				// Tampering with the content, the AAD or the tag fails.
				for _, flip := range []struct {
					what string
					b    []byte
				}{{"content", ct}, {"aad", aad}, {"tag", tag}} {
					if len(flip.b) == 0 {
						continue
					}
					flip.b[len(flip.b)/2] ^= 0x10
					o := newGCMOpener(block, iv, aad)
					o.open(make([]byte, n), ct)
					if o.close(tag) == nil {
						t.Fatalf("key %d, %d bytes, aad %d: a flipped bit in the %s verified", keyLen, n, aadLen, flip.what)
					}
					flip.b[len(flip.b)/2] ^= 0x10
				}
			}
		}
	}
}
