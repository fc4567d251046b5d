package hsm

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/miekg/pkcs11"
)

// The portable mechanism protects data keys on tokens without AES-GCM,
// with two mechanisms nearly every token has, both run on the token:
// AES-256-CBC with PKCS#7 padding (CKM_AES_CBC_PAD) under the version's AES
// key, then HMAC-SHA-256 (CKM_SHA256_HMAC) under a companion generic-secret
// key of the same version, over the header, the IV, the ciphertext and the
// context (encrypt-then-MAC). Opening verifies the MAC on the token before
// anything is decrypted. Both keys are sensitive, non-extractable token
// objects sharing the version's CKA_ID.

// Sizes of the portable mechanism.
const (
	// CBCIVSize is the AES-CBC IV: 16 random bytes per seal.
	CBCIVSize = 16
	// MACSize is the HMAC-SHA-256 tag.
	MACSize = 32
	// cbcBlock is AES's block: padding adds 1 to 16 bytes.
	cbcBlock = 16
)

// NewCBCIV returns a fresh random 16-byte IV from the operating system's
// generator.
func NewCBCIV() ([]byte, error) { return randomIV(CBCIVSize) }

// macKeyTemplate is the template of a version's HMAC key: a 256-bit generic
// secret with CKA_ID id followed by MACIDSuffix that can sign and verify
// and nothing else, and that nothing can read, wrap or copy out.
func macKeyTemplate(id ObjectID, label string) []*pkcs11.Attribute {
	return secretKeyTemplate(macID(id), label, pkcs11.CKK_GENERIC_SECRET, false, true)
}

// CreatePortableKey makes the two objects of a portable-mechanism version
// under id: the AES key (label) and the HMAC key (label + "/hmac"). It
// makes only those missing, so that a version whose maker died between
// the two is completed; use it only for a version that has sealed nothing,
// since a new HMAC key does not open what an old one sealed.
func (t *Token) CreatePortableKey(ctx context.Context, id ObjectID, label string) error {
	const op = "create portable key"
	if len(label) == 0 || len(label)+len("/hmac") > MaxLabel {
		return invalidInput(op, "label must be 1 to %d bytes", MaxLabel-len("/hmac"))
	}
	caps := t.Capabilities()
	if err := requireMechanism(op, caps.GenericKeyGen, pkcs11.CKM_GENERIC_SECRET_KEY_GEN); err != nil {
		return err
	}
	if err := requireMechanism(op, caps.AESCBCPad, pkcs11.CKM_AES_CBC_PAD); err != nil {
		return err
	}
	if err := requireMechanism(op, caps.HMACSHA256, pkcs11.CKM_SHA256_HMAC); err != nil {
		return err
	}
	return t.do(ctx, op, nil, nil, func(s pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		if err := t.lockObjects(ctx); err != nil {
			return err
		}
		defer t.objectMu.Unlock()
		for _, k := range []struct {
			ref  *keyRef
			mech uint
			tmpl []*pkcs11.Attribute
		}{
			{secretKey(id), pkcs11.CKM_AES_KEY_GEN, masterKeyTemplate(id, label)},
			{macKey(id), pkcs11.CKM_GENERIC_SECRET_KEY_GEN, macKeyTemplate(id, label+"/hmac")},
		} {
			hs, err := findObjects(t.p, s, k.ref.template(), 1)
			if err != nil {
				return err
			}
			if len(hs) > 0 {
				continue
			}
			mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(k.mech, nil)}
			err = retryRace(func() error {
				_, err := t.generateKey(s, mech, k.tmpl)
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// checkPortable checks the inputs every portable operation shares, and
// that the token has both of its mechanisms.
func (t *Token) checkPortable(op string, iv, header, context []byte) error {
	if err := requireMechanism(op, t.caps.AESCBCPad, pkcs11.CKM_AES_CBC_PAD); err != nil {
		return err
	}
	if err := requireMechanism(op, t.caps.HMACSHA256, pkcs11.CKM_SHA256_HMAC); err != nil {
		return err
	}
	if len(iv) != CBCIVSize {
		return invalidInput(op, "IV must be %d bytes, got %d", CBCIVSize, len(iv))
	}
	if len(header) == 0 || len(header)+len(context) > MaxAAD {
		return invalidInput(op, "header and context must be 1 to %d bytes together, got %d", MaxAAD, len(header)+len(context))
	}
	return nil
}

// macInput is what the HMAC covers: the header and the ciphertext with
// their lengths, so that no two (header, IV, ciphertext, context) share an
// input, then the IV and the context (the canonical encoding, which
// carries its own lengths).
func macInput(header, iv, ct, context []byte) []byte {
	b := make([]byte, 0, 8+len(header)+len(iv)+len(ct)+len(context))
	b = binary.BigEndian.AppendUint32(b, uint32(len(header)))
	b = append(b, header...)
	b = append(b, iv...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ct)))
	b = append(b, ct...)
	return append(b, context...)
}

// SealPortable encrypts plaintext (1 to 4096 bytes) under version id with
// the portable mechanism and returns ciphertext || MAC.
func (t *Token) SealPortable(ctx context.Context, id ObjectID, iv, header, context, plaintext []byte) ([]byte, error) {
	const op = "seal (portable)"
	if err := t.checkPortable(op, iv, header, context); err != nil {
		return nil, err
	}
	if len(plaintext) == 0 || len(plaintext) > MaxPlaintext {
		return nil, invalidInput(op, "plaintext must be 1 to %d bytes, got %d", MaxPlaintext, len(plaintext))
	}
	var sealed []byte
	err := t.do(ctx, op, secretKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		var err error
		sealed, err = t.encryptThenMAC(s, h, id, iv, header, context, plaintext)
		return err
	})
	return sealed, err
}

// SealDataKeyPortable draws n random bytes (1 to 1024) from the token's
// generator and seals them with the portable mechanism. It returns the
// data key and ciphertext || MAC.
func (t *Token) SealDataKeyPortable(ctx context.Context, id ObjectID, n int, iv, header, context []byte) (dataKey, sealed []byte, err error) {
	const op = "seal data key (portable)"
	if err := t.checkPortable(op, iv, header, context); err != nil {
		return nil, nil, err
	}
	if n < 1 || n > MaxDataKey {
		return nil, nil, invalidInput(op, "data key size must be 1 to %d bytes, got %d", MaxDataKey, n)
	}
	err = t.do(ctx, op, secretKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		var err error
		if dataKey, err = t.drawRandom(s, n); err != nil {
			return err
		}
		sealed, err = t.encryptThenMAC(s, h, id, iv, header, context, dataKey)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return dataKey, sealed, nil
}

// encryptThenMAC runs C_Encrypt (AES-CBC-PAD) under h and C_Sign
// (HMAC-SHA-256) under the version's HMAC key.
func (t *Token) encryptThenMAC(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, id ObjectID, iv, header, context, plaintext []byte) ([]byte, error) {
	mh, err := t.keys.handle(t.p, s, *macKey(id))
	if err != nil {
		return nil, err
	}
	if err := t.p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv)}, h); err != nil {
		return nil, err
	}
	ct, err := t.p.Encrypt(s, plaintext)
	if err != nil {
		return nil, err
	}
	if err := t.p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, mh); err != nil {
		return nil, err
	}
	mac, err := t.p.Sign(s, macInput(header, iv, ct, context))
	if err != nil {
		return nil, err
	}
	if len(mac) != MACSize {
		return nil, fmt.Errorf("hsm: the token's HMAC-SHA-256 is %d bytes, not %d", len(mac), MACSize)
	}
	return append(ct, mac...), nil
}

// UnsealPortable opens what SealPortable or SealDataKeyPortable made: it
// verifies the MAC on the token and decrypts only if it holds. A wrong
// MAC, IV, header, context or key gives ErrInvalidCiphertext.
func (t *Token) UnsealPortable(ctx context.Context, id ObjectID, iv, header, context, sealed []byte) ([]byte, error) {
	const op = "unseal (portable)"
	if err := t.checkPortable(op, iv, header, context); err != nil {
		return nil, err
	}
	ctLen := len(sealed) - MACSize
	if ctLen < cbcBlock || ctLen%cbcBlock != 0 || ctLen > MaxPlaintext+cbcBlock {
		return nil, newError(op, ErrInvalidCiphertext, fmt.Errorf("sealed value must be a whole number of %d-byte blocks, %d to %d, and a %d-byte MAC; got %d bytes",
			cbcBlock, cbcBlock, MaxPlaintext+cbcBlock, MACSize, len(sealed)))
	}
	ct, mac := sealed[:ctLen], sealed[ctLen:]
	var plain []byte
	err := t.do(ctx, op, secretKey(id), ErrInvalidCiphertext, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		mh, err := t.keys.handle(t.p, s, *macKey(id))
		if err != nil {
			return err
		}
		// The MAC is computed on the token with C_Sign and compared here
		// in constant time rather than checked with C_Verify: NSS's
		// softoken answers a C_Verify that does not match with whatever
		// error its thread last set (CKR_BUFFER_TOO_SMALL, or
		// CKR_DEVICE_ERROR, which would send the Token into recovery),
		// so a token's verify failure cannot be told from a fault.
		if err := t.p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, mh); err != nil {
			return err
		}
		want, err := t.p.Sign(s, macInput(header, iv, ct, context))
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(want, mac) != 1 {
			return newError(op, ErrInvalidCiphertext, fmt.Errorf("the MAC does not match"))
		}
		if err := t.p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv)}, h); err != nil {
			return err
		}
		plain, err = t.p.Decrypt(s, ct)
		return err
	})
	return plain, err
}
