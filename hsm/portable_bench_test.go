package hsm

import (
	"crypto/subtle"
	"errors"
	"testing"

	"github.com/hsmkms/hsmkms/hsm/benchcmp"
	"github.com/miekg/pkcs11"
)

var benchHeader, benchContext = []byte("HK\x01\x03 benchmark header"), []byte("\x00\x01\x00\x07purpose\x00\x05bench")

// rawPortable opens a session of its own and finds a portable version's
// AES and HMAC keys once, as a hand-written miekg/pkcs11 program would.
func rawPortable(b *testing.B, tok *Token, id ObjectID) (*pkcs11.Ctx, pkcs11.SessionHandle, pkcs11.ObjectHandle, pkcs11.ObjectHandle) {
	p, s, h := rawSession(b, tok, id)
	mh, err := findOne(p, s, *macKey(id))
	if err != nil {
		b.Fatal(err)
	}
	return p, s, h, mh
}

// BenchmarkSealDataKeyPortable: C_GenerateRandom(32) + C_Encrypt
// (AES-CBC-PAD) + C_Sign (HMAC-SHA-256), the portable data key path,
// beside the same raw calls.
func BenchmarkSealDataKeyPortable(b *testing.B) {
	tok := openToken(b, func(c *Config) { c.PoolSize = 4 })
	id := newPortableKey(b, tok)
	iv := make([]byte, CBCIVSize)
	rawOp := func(b *testing.B, _ int) func() error {
		p, s, h, mh := rawPortable(b, tok, id)
		return func() error {
			dk, err := p.GenerateRandom(s, 32)
			if err != nil {
				return err
			}
			if err := p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv)}, h); err != nil {
				return err
			}
			ct, err := p.Encrypt(s, dk)
			if err != nil {
				return err
			}
			if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, mh); err != nil {
				return err
			}
			_, err = p.Sign(s, macInput(benchHeader, iv, ct, benchContext))
			return err
		}
	}
	hsmOp := func(b *testing.B, _ int) func() error {
		return func() error {
			_, _, err := tok.SealDataKeyPortable(b.Context(), id, 32, iv, benchHeader, benchContext)
			return err
		}
	}
	benchCompare(b, tok, rawOp, hsmOp)
}

// BenchmarkUnsealPortable: C_Sign (HMAC-SHA-256) + C_Decrypt
// (AES-CBC-PAD) of a sealed data key, beside the same raw calls.
func BenchmarkUnsealPortable(b *testing.B) {
	tok := openToken(b, func(c *Config) { c.PoolSize = 4 })
	id := newPortableKey(b, tok)
	iv := make([]byte, CBCIVSize)
	_, sealed, err := tok.SealDataKeyPortable(b.Context(), id, 32, iv, benchHeader, benchContext)
	if err != nil {
		b.Fatal(err)
	}
	ct, mac := sealed[:len(sealed)-MACSize], sealed[len(sealed)-MACSize:]
	rawOp := func(b *testing.B, _ int) func() error {
		p, s, h, mh := rawPortable(b, tok, id)
		return func() error {
			if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, mh); err != nil {
				return err
			}
			got, err := p.Sign(s, macInput(benchHeader, iv, ct, benchContext))
			if err != nil {
				return err
			}
			if subtle.ConstantTimeCompare(got, mac) != 1 {
				return errors.New("MAC mismatch")
			}
			if err := p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv)}, h); err != nil {
				return err
			}
			_, err = p.Decrypt(s, ct)
			return err
		}
	}
	hsmOp := func(b *testing.B, _ int) func() error {
		return func() error {
			_, err := tok.UnsealPortable(b.Context(), id, iv, benchHeader, benchContext, sealed)
			return err
		}
	}
	benchCompare(b, tok, rawOp, hsmOp)
}

// BenchmarkPortableVsGCM: the portable data key seal beside the aes-gcm
// one, both through the hsm package on one token: what a token without
// AES-GCM costs (portable/gcm).
func BenchmarkPortableVsGCM(b *testing.B) {
	tok := openToken(b, func(c *Config) { c.PoolSize = 4 })
	gcm, portable := newMasterKey(b, tok), newPortableKey(b, tok)
	gcmIV, cbcIV := make([]byte, IVSize), make([]byte, CBCIVSize)
	gcmOp := func(b *testing.B, _ int) func() error {
		return func() error {
			_, _, err := tok.SealDataKey(b.Context(), gcm, 32, gcmIV, benchAAD)
			return err
		}
	}
	portableOp := func(b *testing.B, _ int) func() error {
		return func() error {
			_, _, err := tok.SealDataKeyPortable(b.Context(), portable, 32, cbcIV, benchHeader, benchContext)
			return err
		}
	}
	benchcmp.Compare(b, benchcmp.Side{Name: "gcm", Op: gcmOp}, benchcmp.Side{Name: "portable", Op: portableOp}, 1, 4)
}
