package hsm

import (
	"testing"

	"github.com/hsmkms/hsmkms/hsm/benchcmp"
	"github.com/miekg/pkcs11"
)

// The benchmarks measure each hsm operation beside a raw miekg/pkcs11
// baseline that makes the same PKCS#11 calls on its own sessions, in the
// same run and interleaved in rounds, so that the ratio holds on a shared,
// noisy machine. They report raw-op/s, hsm-op/s and hsm/raw (the fraction
// of the raw call rate the package keeps).

// benchOp makes one operation for worker w; it is called once per worker.
type benchOp = benchcmp.Op

func benchCompare(b *testing.B, _ *Token, rawOp, hsmOp benchOp) {
	benchcmp.Compare(b, benchcmp.Side{Name: "raw", Op: rawOp}, benchcmp.Side{Name: "hsm", Op: hsmOp}, 1, 4)
}

// rawSession opens a session of its own on tok's slot and finds the master
// key by CKA_ID once, as a hand-written miekg/pkcs11 program would.
func rawSession(b *testing.B, tok *Token, id ObjectID) (*pkcs11.Ctx, pkcs11.SessionHandle, pkcs11.ObjectHandle) {
	p := raw(b, tok)
	s, err := p.OpenSession(tok.slot, sessionFlags)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.CloseSession(s) })
	h, err := findOne(p, s, *secretKey(id))
	if err != nil {
		b.Fatal(err)
	}
	return p, s, h
}

func benchToken(b *testing.B) (*Token, ObjectID) {
	tok := openToken(b, func(c *Config) { c.PoolSize = 4 })
	return tok, newMasterKey(b, tok)
}

var benchAAD = []byte("hsmkms-v1 benchmark header and context")

// BenchmarkSealDataKey: C_GenerateRandom(32) + C_EncryptInit/C_Encrypt
// (AES-GCM), the aes-gcm data key path. The hsm side draws its data keys
// from the token's pool of random bytes (random.go): one C_GenerateRandom
// of 1 KiB per 32 keys, where raw makes one per key.
func BenchmarkSealDataKey(b *testing.B) {
	tok, id := benchToken(b)
	iv := make([]byte, IVSize)
	rawOp := rawSealDataKey(tok, id, iv)
	hsmOp := func(b *testing.B, _ int) func() error {
		return func() error {
			_, _, err := tok.SealDataKey(b.Context(), id, 32, iv, benchAAD)
			return err
		}
	}
	benchCompare(b, tok, rawOp, hsmOp)
}

// BenchmarkUnseal: C_DecryptInit/C_Decrypt (AES-GCM) of a sealed data key.
func BenchmarkUnseal(b *testing.B) {
	tok, id := benchToken(b)
	iv := make([]byte, IVSize)
	_, sealed, err := tok.SealDataKey(b.Context(), id, 32, iv, benchAAD)
	if err != nil {
		b.Fatal(err)
	}
	rawOp := rawUnseal(tok, id, iv, sealed)
	hsmOp := func(b *testing.B, _ int) func() error {
		return func() error {
			_, err := tok.Unseal(b.Context(), id, iv, benchAAD, sealed)
			return err
		}
	}
	benchCompare(b, tok, rawOp, hsmOp)
}

// BenchmarkWrapDataKey: C_GenerateKey + C_WrapKey (RFC 3394) + read value +
// C_DestroyObject, the aes-kw data key path.
func BenchmarkWrapDataKey(b *testing.B) {
	tok, id := benchToken(b)
	rawOp := func(b *testing.B, _ int) func() error {
		p, s, h := rawSession(b, tok, id)
		return func() error {
			dk, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, dataKeyTemplate(32))
			if err != nil {
				return err
			}
			defer p.DestroyObject(s, dk)
			if _, err := p.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, h, dk); err != nil {
				return err
			}
			_, err = p.GetAttributeValue(s, dk, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
			return err
		}
	}
	hsmOp := func(b *testing.B, _ int) func() error {
		return func() error {
			_, _, err := tok.WrapDataKey(b.Context(), id, 32)
			return err
		}
	}
	benchCompare(b, tok, rawOp, hsmOp)
}

// BenchmarkUnwrapDataKey: C_UnwrapKey + read value + C_DestroyObject.
func BenchmarkUnwrapDataKey(b *testing.B) {
	tok, id := benchToken(b)
	_, wrapped, err := tok.WrapDataKey(b.Context(), id, 32)
	if err != nil {
		b.Fatal(err)
	}
	rawOp := func(b *testing.B, _ int) func() error {
		p, s, h := rawSession(b, tok, id)
		return func() error {
			dk, err := p.UnwrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, h, wrapped, dataKeyTemplate(0))
			if err != nil {
				return err
			}
			defer p.DestroyObject(s, dk)
			_, err = p.GetAttributeValue(s, dk, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
			return err
		}
	}
	hsmOp := func(b *testing.B, _ int) func() error {
		return func() error {
			_, err := tok.UnwrapDataKey(b.Context(), id, wrapped)
			return err
		}
	}
	benchCompare(b, tok, rawOp, hsmOp)
}

// rawSealDataKey is the aes-gcm data key path as raw calls:
// C_GenerateRandom(32) + C_EncryptInit/C_Encrypt (AES-GCM).
func rawSealDataKey(tok *Token, id ObjectID, iv []byte) benchOp {
	return func(b *testing.B, _ int) func() error {
		p, s, h := rawSession(b, tok, id)
		return func() error {
			dk, err := p.GenerateRandom(s, 32)
			if err != nil {
				return err
			}
			params := pkcs11.NewGCMParams(iv, benchAAD, 128)
			defer params.Free()
			if err := p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
				return err
			}
			_, err = p.Encrypt(s, dk)
			return err
		}
	}
}

// rawUnseal is the aes-gcm open as raw calls: C_DecryptInit/C_Decrypt.
func rawUnseal(tok *Token, id ObjectID, iv, sealed []byte) benchOp {
	return func(b *testing.B, _ int) func() error {
		p, s, h := rawSession(b, tok, id)
		return func() error {
			params := pkcs11.NewGCMParams(iv, benchAAD, 128)
			defer params.Free()
			if err := p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
				return err
			}
			_, err := p.Decrypt(s, sealed)
			return err
		}
	}
}

// rawSealTokenIV is the XKS proxy API's Encrypt as raw calls: a 12-byte
// IV from C_GenerateRandom, then C_EncryptInit/C_Encrypt of a 32-byte
// data key under the spec's AAD layout (SealWithTokenIV).
func rawSealTokenIV(tok *Token, id ObjectID) benchOp {
	aad := append([]byte{0, byte(len(benchAAD))}, benchAAD...)
	aad = append(aad, 5, 1, 0, 0, 0, 1) // ciphertextMetadata: format 1, version 1
	plain := make([]byte, 32)
	return func(b *testing.B, _ int) func() error {
		p, s, h := rawSession(b, tok, id)
		return func() error {
			iv, err := p.GenerateRandom(s, IVSize)
			if err != nil {
				return err
			}
			params := pkcs11.NewGCMParams(iv, aad, 128)
			defer params.Free()
			if err := p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
				return err
			}
			_, err = p.Encrypt(s, plain)
			return err
		}
	}
}

// BenchmarkRawToken measures the bare token operations behind the
// server's GenerateDataKey (rawSealDataKey), Decrypt (rawUnseal) and the
// XKS proxy API's Encrypt (rawSealTokenIV; its Decrypt is Decrypt's
// calls) in-process at 1, 2 and 4 goroutines: the "raw" of the server
// benchmark's bounds, which tests/bench.sh takes as the best of the three.
func BenchmarkRawToken(b *testing.B) {
	tok, id := benchToken(b)
	iv := make([]byte, IVSize)
	_, sealed, err := tok.SealDataKey(b.Context(), id, 32, iv, benchAAD)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("op=GenerateDataKey", func(b *testing.B) {
		benchcmp.Measure(b, benchcmp.Side{Name: "raw", Op: rawSealDataKey(tok, id, iv)}, 1, 2, 4)
	})
	b.Run("op=Decrypt", func(b *testing.B) {
		benchcmp.Measure(b, benchcmp.Side{Name: "raw", Op: rawUnseal(tok, id, iv, sealed)}, 1, 2, 4)
	})
	b.Run("op=XKSEncrypt", func(b *testing.B) {
		benchcmp.Measure(b, benchcmp.Side{Name: "raw", Op: rawSealTokenIV(tok, id)}, 1, 2, 4)
	})
}
