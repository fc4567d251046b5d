package esdk

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/hsmkms/hsmkms/hsm/benchcmp"
)

// benchFile is the plaintext each benchmark operation encrypts.
const benchFile = 16 << 20

// BenchmarkEncryptFile: Encrypt of a 16 MiB stream (4096-byte frames, the
// data key from an in-memory KMS) beside Go's raw AES-256-GCM sealing the
// same bytes in the same frames, interleaved in one run. esdk/raw is the
// fraction of the raw throughput the format keeps: framing, headers, key
// derivation, commitment and copying.
func BenchmarkEncryptFile(b *testing.B) {
	for _, fl := range []int{DefaultFrameLength, 64 << 10} {
		b.Run(fmt.Sprintf("frame=%d", fl), func(b *testing.B) { benchEncryptFile(b, fl) })
	}
}

func benchEncryptFile(b *testing.B, frame int) {
	plain := bytes.Repeat([]byte("hsmkms benchmark "), benchFile/17+1)[:benchFile]
	key := make([]byte, 32)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	raw := func(b *testing.B, _ int) func() error {
		out := make([]byte, 0, frame+gcm.Overhead())
		iv := make([]byte, gcm.NonceSize())
		return func() error {
			for i := 0; i < len(plain); i += frame {
				binary.BigEndian.PutUint32(iv[8:], uint32(i/frame+1))
				out = gcm.Seal(out[:0], iv, plain[i:min(i+frame, len(plain))], nil)
			}
			return nil
		}
	}
	kms := newFakeKMS()
	format := func(b *testing.B, _ int) func() error {
		return func() error {
			_, err := Encrypt(context.Background(), kms, testARN, map[string]string{"purpose": "bench"},
				bytes.NewReader(plain), io.Discard, WithFrameLength(frame))
			return err
		}
	}
	b.SetBytes(benchFile)
	benchcmp.Compare(b, benchcmp.Side{Name: "raw", Op: raw}, benchcmp.Side{Name: "esdk", Op: format}, 1)
}
