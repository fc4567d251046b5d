package hsm

import (
	"context"
	"crypto"
	"fmt"

	"github.com/miekg/pkcs11"
)

// WrappingAlgorithm is how key material to import is wrapped under a
// wrapping key pair's public half, named as AWS KMS names it.
type WrappingAlgorithm string

// The wrapping algorithms of key import. The RSA_AES ones are
// CKM_RSA_AES_KEY_WRAP: an AES-256 key wrapped with RSA-OAEP, then the
// material wrapped under it with AES key wrap with padding (RFC 5649).
const (
	WrapOAEPSHA1      WrappingAlgorithm = "RSAES_OAEP_SHA_1"
	WrapOAEPSHA256    WrappingAlgorithm = "RSAES_OAEP_SHA_256"
	WrapRSAAESSHA1    WrappingAlgorithm = "RSA_AES_KEY_WRAP_SHA_1"
	WrapRSAAESSHA256  WrappingAlgorithm = "RSA_AES_KEY_WRAP_SHA_256"
	importAESKeyBytes                   = 32
)

// wrapParams are the OAEP hash of a wrapping algorithm and whether it
// wraps an AES key first.
func (alg WrappingAlgorithm) params(op string) (oaepParams, bool, error) {
	switch alg {
	case WrapOAEPSHA1, WrapRSAAESSHA1:
		p, _ := RSAOAEPSHA1.params(op)
		return p, alg == WrapRSAAESSHA1, nil
	case WrapOAEPSHA256, WrapRSAAESSHA256:
		p, _ := RSAOAEPSHA256.params(op)
		return p, alg == WrapRSAAESSHA256, nil
	}
	return oaepParams{}, false, invalidInput(op, "unknown wrapping algorithm %q", alg)
}

// ImportTarget is what imported material becomes on the token: an AES-256
// master key version, or, with MAC set, the key of an HMAC key version.
type ImportTarget struct {
	MAC MACAlgorithm
}

// template is the unwrap template of the target. It has no CKA_VALUE_LEN
// (the material says how long it is) and no CKA_MODIFIABLE: SoftHSM2 2.6.1
// refuses either in C_UnwrapKey with CKR_ATTRIBUTE_READ_ONLY. An imported
// object stays modifiable; PKCS#11 lets no one make it extractable or not
// sensitive again.
func (it ImportTarget) template(id ObjectID, label string) []*pkcs11.Attribute {
	tmpl := masterKeyTemplate(id, label)
	if it.MAC != "" {
		tmpl = secretKeyTemplate(id[:], label, pkcs11.CKK_GENERIC_SECRET, false, true)
	}
	out := tmpl[:0:0]
	for _, a := range tmpl {
		if a.Type != pkcs11.CKA_VALUE_LEN && a.Type != pkcs11.CKA_MODIFIABLE {
			out = append(out, a)
		}
	}
	return out
}

// keyType is the CKA_KEY_TYPE of the target.
func (it ImportTarget) keyType() uint {
	if it.MAC != "" {
		return pkcs11.CKK_GENERIC_SECRET
	}
	return pkcs11.CKK_AES
}

// lengths are the material lengths the target takes, as AWS KMS takes
// them: 32 bytes for AES; for HMAC, from the hash's length to its block's.
func (it ImportTarget) lengths() (int, int) {
	switch it.MAC {
	case "":
		return importAESKeyBytes, importAESKeyBytes
	case HMACSHA224, HMACSHA256:
		return it.MAC.Size(), 64
	}
	return it.MAC.Size(), 128
}

// CreateWrappingKeyPair makes an RSA key pair of spec for importing key
// material: the public half wraps and encrypts nothing on the token (it is
// given out), the private half only unwraps and never leaves it.
func (t *Token) CreateWrappingKeyPair(ctx context.Context, id ObjectID, label string, spec KeySpec) (crypto.PublicKey, error) {
	return t.createKeyPair(ctx, id, label, spec, pairUnwrap)
}

// CheckUnwrap reports, with ErrMechanismUnsupported, a wrapping algorithm
// the token cannot unwrap with under the wrapping key pair id: one whose
// OAEP hash it refuses (SoftHSM2 2.6.1 takes only SHA-1), or an RSA_AES
// one where it has neither CKM_RSA_AES_KEY_WRAP nor CKM_AES_KEY_WRAP_PAD.
// It asks the token with a blob of zeros, which no key comes out of.
func (t *Token) CheckUnwrap(ctx context.Context, id ObjectID, alg WrappingAlgorithm) error {
	const op = "check unwrap"
	p, aes, err := alg.params(op)
	if err != nil {
		return err
	}
	if err := t.canUnwrap(op, aes); err != nil {
		return err
	}
	return t.do(ctx, op, privateKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		k, err := t.rsaModulus(op, s, h)
		if err != nil {
			return err
		}
		tmpl := sessionSecretTemplate(pkcs11.CKK_AES)
		obj, err := t.p.UnwrapKey(s, p.mechanism(), h, make([]byte, k), tmpl)
		if err == nil {
			t.destroySessionKey(s, obj)
			return nil
		}
		if refusesParams(err) {
			return newError(op, ErrMechanismUnsupported, fmt.Errorf("the token's C_UnwrapKey takes no CKM_RSA_PKCS_OAEP with %s: %w", p.hash, err))
		}
		return nil // refused the blob, took the parameters
	})
}

// canUnwrap refuses an import the token's mechanisms cannot do.
func (t *Token) canUnwrap(op string, aes bool) error {
	if !t.caps.RSAOAEP {
		return requireMechanism(op, false, pkcs11.CKM_RSA_PKCS_OAEP)
	}
	if aes && !t.caps.RSAAESKeyWrap && !t.caps.AESKeyWrapPad {
		return newError(op, ErrMechanismUnsupported, fmt.Errorf("the token lacks %s and an RFC 5649 %s", MechanismName(pkcs11.CKM_RSA_AES_KEY_WRAP), MechanismName(pkcs11.CKM_AES_KEY_WRAP_PAD)))
	}
	return nil
}

// sessionSecretTemplate is a session key of keyType that unwraps: the
// AES key of an RSA_AES import, never a token object.
func sessionSecretTemplate(keyType uint) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
	}
}

// ImportKey unwraps key material wrapped with alg under the public half
// of the wrapping key pair wrapping into a new token object with CKA_ID
// id: sensitive, never extractable, as target needs it. The material is
// only ever clear inside the token. A blob that does not unwrap gives
// ErrInvalidCiphertext; material of a length target does not take gives
// ErrInvalidInput, and no object is left.
func (t *Token) ImportKey(ctx context.Context, wrapping ObjectID, alg WrappingAlgorithm, wrapped []byte, id ObjectID, label string, target ImportTarget) error {
	const op = "import key"
	p, aes, err := alg.params(op)
	if err != nil {
		return err
	}
	if len(label) == 0 || len(label) > MaxLabel {
		return invalidInput(op, "label must be 1 to %d bytes", MaxLabel)
	}
	if target.MAC != "" {
		if _, err := target.MAC.params(op, t.caps); err != nil {
			return err
		}
	}
	if err := t.canUnwrap(op, aes); err != nil {
		return err
	}
	if len(wrapped) == 0 || len(wrapped) > 2*maxModulus {
		return newError(op, ErrInvalidCiphertext, fmt.Errorf("wrapped key material must be 1 to %d bytes, got %d", 2*maxModulus, len(wrapped)))
	}
	return t.do(ctx, op, privateKey(wrapping), ErrInvalidCiphertext, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		k, err := t.rsaModulus(op, s, h)
		if err != nil {
			return err
		}
		if err := t.lockObjects(ctx); err != nil {
			return err
		}
		defer t.objectMu.Unlock()
		if err := t.refuseExisting(s, id); err != nil {
			return err
		}
		if !aes && len(wrapped) != k {
			return newError(op, ErrInvalidCiphertext, fmt.Errorf("RSAES-OAEP wrapped material is %d bytes under this key, got %d", k, len(wrapped)))
		}
		unwrap := func(tmpl []*pkcs11.Attribute) (obj pkcs11.ObjectHandle, err error) {
			if aes {
				return t.unwrapRSAAES(s, h, p, k, wrapped, tmpl)
			}
			err = t.withCopyable(tmpl, func(tmpl []*pkcs11.Attribute) (err error) {
				obj, err = t.p.UnwrapKey(s, p.mechanism(), h, wrapped, tmpl)
				return err
			})
			return obj, err
		}
		obj, err := unwrap(target.template(id, label))
		if err != nil {
			if refusesParams(err) {
				return newError(op, ErrMechanismUnsupported, fmt.Errorf("the token's C_UnwrapKey takes no CKM_RSA_PKCS_OAEP with %s: %w", p.hash, err))
			}
			return err
		}
		return t.checkImported(op, s, obj, target, unwrap)
	})
}

// unwrapRSAAES unwraps an RSA_AES blob: with CKM_RSA_AES_KEY_WRAP where
// the token has it, else its AES key into a session object with
// CKM_RSA_PKCS_OAEP and the material with CKM_AES_KEY_WRAP_PAD under it.
func (t *Token) unwrapRSAAES(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, p oaepParams, k int, wrapped []byte, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	const op = "import key"
	if len(wrapped) <= k+8 || (len(wrapped)-k)%8 != 0 {
		return 0, newError(op, ErrInvalidCiphertext, fmt.Errorf("RSA_AES wrapped material must be the %d-byte wrapped AES key and a key-wrapped blob of a multiple of 8 bytes, got %d bytes", k, len(wrapped)))
	}
	var obj pkcs11.ObjectHandle
	if t.caps.RSAAESKeyWrap {
		params := &pkcs11.RSAAESKeyWrapParams{AESKeyBits: 8 * importAESKeyBytes,
			OAEPParams: pkcs11.OAEPParams{HashAlg: p.hashMech, MGF: p.mgf, SourceType: pkcs11.CKZ_DATA_SPECIFIED}}
		m := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_AES_KEY_WRAP, params)}
		err := t.withCopyable(tmpl, func(tmpl []*pkcs11.Attribute) (err error) {
			obj, err = t.p.UnwrapKey(s, m, h, wrapped, tmpl)
			return err
		})
		return obj, err
	}
	aesKey, err := t.p.UnwrapKey(s, p.mechanism(), h, wrapped[:k], sessionSecretTemplate(pkcs11.CKK_AES))
	if err != nil {
		return 0, err
	}
	defer t.destroySessionKey(s, aesKey)
	a, err := t.p.GetAttributeValue(s, aesKey, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil)})
	if err != nil {
		return 0, err
	}
	if n := int(attrUint(a[0].Value)); n != 0 && n != importAESKeyBytes {
		return 0, newError(op, ErrInvalidCiphertext, fmt.Errorf("the wrapped AES key is %d bytes, not %d", n, importAESKeyBytes))
	}
	m := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}
	err = t.withCopyable(tmpl, func(tmpl []*pkcs11.Attribute) (err error) {
		obj, err = t.p.UnwrapKey(s, m, aesKey, wrapped[k:], tmpl)
		return err
	})
	return obj, err
}

// checkImported keeps an unwrapped object only if it is as long as the
// target takes and the token keeps it in; otherwise it destroys it.
func (t *Token) checkImported(op string, s pkcs11.SessionHandle, obj pkcs11.ObjectHandle, target ImportTarget,
	unwrap func([]*pkcs11.Attribute) (pkcs11.ObjectHandle, error)) error {
	fail := func(err error) error {
		if derr := t.p.DestroyObject(s, obj); derr != nil {
			t.log.Error("destroying an imported object that failed its checks", "error", derr)
		}
		return err
	}
	a, err := t.p.GetAttributeValue(s, obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
	})
	if err != nil {
		return fail(err)
	}
	if !attrBool(a[1].Value) || attrBool(a[2].Value) {
		// openCryptoki 3.8 ignores both in an unwrap template, and takes
		// them afterwards: PKCS#11 lets a key become sensitive and
		// unextractable, never the other way.
		if err := t.p.SetAttributeValue(s, obj, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		}); err != nil {
			return fail(err)
		}
		b, err := t.p.GetAttributeValue(s, obj, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		})
		if err != nil {
			return fail(err)
		}
		if !attrBool(b[0].Value) || attrBool(b[1].Value) {
			return fail(newError(op, ErrToken, fmt.Errorf("the token keeps the imported key extractable or not sensitive")))
		}
	}
	lo, hi := target.lengths()
	n := int(attrUint(a[0].Value))
	if n == 0 {
		// SoftHSM2 2.6.1 does not record the length of an unwrapped key.
		if n, err = t.measure(s, target, unwrap); err != nil {
			return fail(err)
		}
	}
	if n < lo || n > hi {
		return fail(invalidInput(op, "the key material is %d bytes; this key takes %d to %d", n, lo, hi))
	}
	if target.MAC != "" {
		// The measure is to 8 bytes; the token's HMAC refuses a key
		// shorter than its hash (SoftHSM2: CKR_KEY_SIZE_RANGE).
		p, _ := target.MAC.params(op, t.caps)
		err := t.p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.mech, nil)}, obj)
		if err == nil {
			_, err = t.p.Sign(s, keyCheckInput)
		}
		if isCode(err, pkcs11.CKR_KEY_SIZE_RANGE) {
			return fail(invalidInput(op, "the key material is shorter than %s takes", target.MAC))
		}
		if err != nil {
			return fail(err)
		}
	}
	return nil
}

// measure finds the length of imported material where the token does not
// say it: it unwraps the material once more into a session object that
// may be wrapped, and wraps that under a fresh session AES key. The
// material never leaves the token in the clear; the length of its wrapping
// tells its own: exactly with CKM_AES_KEY_WRAP (AES material, whose length
// must be a multiple of 8: a token refusing to wrap it means it is not), to
// the next multiple of 8 with CKM_AES_KEY_WRAP_PAD (HMAC material; the
// token's HMAC refuses a key shorter than its hash).
func (t *Token) measure(s pkcs11.SessionHandle, target ImportTarget, unwrap func([]*pkcs11.Attribute) (pkcs11.ObjectHandle, error)) (int, error) {
	const op = "import key"
	mech, ok := uint(pkcs11.CKM_AES_KEY_WRAP), t.caps.AESKeyWrap
	if target.MAC != "" {
		mech, ok = pkcs11.CKM_AES_KEY_WRAP_PAD, t.caps.AESKeyWrapPad
	}
	if !ok || !t.caps.AESKeyGen {
		return 0, newError(op, ErrMechanismUnsupported, fmt.Errorf("the token does not tell the length of unwrapped keys, and lacks %s to measure it", MechanismName(mech)))
	}
	copyTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, target.keyType()),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	}
	cp, err := unwrap(copyTmpl)
	if err != nil {
		return 0, err
	}
	defer t.destroySessionKey(s, cp)
	kek, err := t.p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		selfTestKeyTemplate(pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true)))
	if err != nil {
		return 0, err
	}
	defer t.destroySessionKey(s, kek)
	out, err := t.p.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, kek, cp)
	if err != nil {
		if target.MAC == "" {
			return 0, invalidInput(op, "the key material is not 32 bytes")
		}
		return 0, err
	}
	return len(out) - 8, nil
}

// keyCheckInput is what KeyCheckValue seals or MACs: a constant.
var keyCheckInput = []byte("hsmkms key check value, version 1")

// KeyCheckValue returns a value that tells whether two imports brought the
// same key material, computed on the token: the AES-GCM seal of a constant
// under a fixed IV (never used by a seal: those IVs are random), or the
// HMAC of a constant. It reveals nothing of the material.
func (t *Token) KeyCheckValue(ctx context.Context, id ObjectID, target ImportTarget) ([]byte, error) {
	const op = "key check value"
	if target.MAC != "" {
		return t.GenerateMAC(ctx, id, target.MAC, keyCheckInput)
	}
	if err := requireMechanism(op, t.caps.AESGCM, pkcs11.CKM_AES_GCM); err != nil {
		return nil, err
	}
	var out []byte
	err := t.do(ctx, op, secretKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		var err error
		out, err = t.gcmEncrypt(s, h, make([]byte, IVSize), keyCheckInput, make([]byte, 16))
		return err
	})
	return out, err
}
