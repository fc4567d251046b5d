package esdk

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/hsmkms/hsmkms/hsm/benchcmp"
)

// benchFile is the plaintext each benchmark operation encrypts.
const benchFile = 16 << 20

// benchCases are the suites and frame lengths the file benchmarks run:
// the SDKs' default suite (signed) and the unsigned one, at the default
// frame length and at 64 KiB.
func benchCases(b *testing.B, run func(b *testing.B, s Suite, frame int)) {
	for _, s := range []Suite{SuiteSigned, SuiteUnsigned} {
		for _, fl := range []int{DefaultFrameLength, 64 << 10} {
			b.Run(fmt.Sprintf("suite=0x%04X/frame=%d", s.ID, fl), func(b *testing.B) { run(b, s, fl) })
		}
	}
}

// benchGCM is Go's AES-256-GCM under a fixed key: the raw side.
func benchGCM(b *testing.B) cipher.AEAD {
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return gcm
}

// rawSeal is the raw side of the encrypt benchmarks: Go's AES-256-GCM
// sealing plain in frames of the given length, a counter for IV.
func rawSeal(gcm cipher.AEAD, plain []byte, frame int) func(*testing.B, int) func() error {
	return func(*testing.B, int) func() error {
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
}

func benchPlain() []byte {
	return bytes.Repeat([]byte("hsmkms benchmark "), benchFile/17+1)[:benchFile]
}

// BenchmarkEncryptFile: Encrypt of a 16 MiB stream (the data key from an
// in-memory KMS) beside Go's raw AES-256-GCM sealing the same bytes in the
// same frames, interleaved in one run. esdk/raw is the fraction of the raw
// throughput the format keeps: framing, headers, key derivation,
// commitment, copying and, for the signed suite, SHA-384 over the whole
// message and one ECDSA P-384 signature.
func BenchmarkEncryptFile(b *testing.B) {
	benchCases(b, func(b *testing.B, s Suite, frame int) {
		plain, gcm := benchPlain(), benchGCM(b)
		raw := rawSeal(gcm, plain, frame)
		kms := newFakeKMS()
		format := func(b *testing.B, _ int) func() error {
			return func() error {
				_, err := Encrypt(context.Background(), kms, testARN, map[string]string{"purpose": "bench"},
					bytes.NewReader(plain), io.Discard, WithFrameLength(frame), WithSuite(s))
				return err
			}
		}
		b.SetBytes(benchFile)
		benchcmp.Compare(b, benchcmp.Side{Name: "raw", Op: raw}, benchcmp.Side{Name: "esdk", Op: format}, 1)
	})
}

// BenchmarkDecryptFile: Decrypt of a 16 MiB message beside Go's raw
// AES-256-GCM opening the same frames, interleaved in one run.
func BenchmarkDecryptFile(b *testing.B) {
	benchCases(b, func(b *testing.B, s Suite, frame int) {
		plain, gcm := benchPlain(), benchGCM(b)
		iv := make([]byte, gcm.NonceSize())
		var sealed [][]byte
		for i := 0; i < len(plain); i += frame {
			binary.BigEndian.PutUint32(iv[8:], uint32(i/frame+1))
			sealed = append(sealed, gcm.Seal(nil, iv, plain[i:min(i+frame, len(plain))], nil))
		}
		raw := func(b *testing.B, _ int) func() error {
			out := make([]byte, 0, frame)
			iv := make([]byte, gcm.NonceSize())
			return func() error {
				for i, f := range sealed {
					binary.BigEndian.PutUint32(iv[8:], uint32(i+1))
					var err error
					if out, err = gcm.Open(out[:0], iv, f, nil); err != nil {
						return err
					}
				}
				return nil
			}
		}
		kms := newFakeKMS()
		var msg bytes.Buffer
		if _, err := Encrypt(context.Background(), kms, testARN, map[string]string{"purpose": "bench"},
			bytes.NewReader(plain), &msg, WithFrameLength(frame), WithSuite(s)); err != nil {
			b.Fatal(err)
		}
		format := func(b *testing.B, _ int) func() error {
			return func() error {
				_, err := Decrypt(context.Background(), kms, bytes.NewReader(msg.Bytes()), io.Discard)
				return err
			}
		}
		b.SetBytes(benchFile)
		benchcmp.Compare(b, benchcmp.Side{Name: "raw", Op: raw}, benchcmp.Side{Name: "esdk", Op: format}, 1)
	})
}

// BenchmarkHashCeiling: SHA-384 over 16 MiB beside Go's raw AES-256-GCM
// sealing the same bytes, interleaved in one run. A signed suite hashes
// every byte of the message, so sha384/raw is the most esdk/raw of
// 0x0578 can reach on this CPU however the work is arranged.
func BenchmarkHashCeiling(b *testing.B) {
	plain, gcm := benchPlain(), benchGCM(b)
	const frame = 64 << 10
	raw := rawSeal(gcm, plain, frame)
	hash := func(b *testing.B, _ int) func() error {
		return func() error {
			sha512.Sum384(plain)
			return nil
		}
	}
	b.SetBytes(benchFile)
	benchcmp.Compare(b, benchcmp.Side{Name: "raw", Op: raw}, benchcmp.Side{Name: "sha384", Op: hash}, 1)
}
