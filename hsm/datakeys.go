package hsm

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Limits on what callers pass in. They are checked before any cgo call.
const (
	// IVSize is the only GCM IV length accepted. SoftHSM2 takes an empty IV
	// and then encrypts with a fixed one; other lengths are hashed into a
	// counter and weaken the random-IV bound.
	IVSize = 12
	// TagSize is the GCM tag appended to every sealed value.
	TagSize = 16
	// MaxPlaintext bounds what the seal operations take. The key service
	// applies the API's own limit first: 4096 bytes for KMS Encrypt, 4300
	// for the XKS proxy API (which requires at least that).
	MaxPlaintext = 8192
	// MaxDataKey bounds a data key: 1 to 1024 bytes, as GenerateDataKey's
	// NumberOfBytes.
	MaxDataKey = 1024
	// MaxAAD bounds the additional authenticated data of a seal: room for a
	// header and the largest encryption context AWS allows (8192 bytes of
	// keys and values, each with a 2-byte length).
	MaxAAD = 48 << 10
	// MaxRandom bounds GenerateRandom.
	MaxRandom = 1024
	// wrapOverhead is what RFC 3394 adds to the wrapped key.
	wrapOverhead = 8
)

// NewIV returns a fresh random 12-byte GCM IV from the operating system's
// generator. The token never makes IVs: SoftHSM2 uses whatever it is given.
func NewIV() ([]byte, error) { return randomIV(IVSize) }

// randomIV returns n random bytes from the operating system's generator.
func randomIV(n int) ([]byte, error) {
	iv := make([]byte, n)
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("hsm: reading random bytes: %w", err)
	}
	return iv, nil
}

// checkGCM checks the inputs every aes-gcm operation shares, and that the
// token has the mechanism: a token without it answers with a clear
// ErrMechanismUnsupported, not whatever its C_EncryptInit returns.
func (t *Token) checkGCM(op string, iv, aad []byte) error {
	if !t.caps.AESGCM {
		return newError(op, ErrMechanismUnsupported, fmt.Errorf("the token lacks %s", t.caps.gcmLack()))
	}
	if len(iv) != IVSize {
		return invalidInput(op, "IV must be %d bytes, got %d", IVSize, len(iv))
	}
	// Some PKCS#11 builds abort on empty AAD, and the key service always
	// binds a header: an empty AAD is a caller bug.
	if len(aad) == 0 || len(aad) > MaxAAD {
		return invalidInput(op, "AAD must be 1 to %d bytes, got %d", MaxAAD, len(aad))
	}
	return nil
}

// Seal encrypts plaintext (1 to 4096 bytes) under the master key id with
// AES-GCM on the token and returns ciphertext || 16-byte tag.
func (t *Token) Seal(ctx context.Context, id ObjectID, iv, aad, plaintext []byte) ([]byte, error) {
	const op = "seal"
	if err := t.checkGCM(op, iv, aad); err != nil {
		return nil, err
	}
	if len(plaintext) == 0 || len(plaintext) > MaxPlaintext {
		return nil, invalidInput(op, "plaintext must be 1 to %d bytes, got %d", MaxPlaintext, len(plaintext))
	}
	var sealed []byte
	err := t.do(ctx, op, secretKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		var err error
		sealed, err = t.gcmEncrypt(s, h, iv, aad, plaintext)
		return err
	})
	return sealed, err
}

// SealWithTokenIV seals plaintext (1 to MaxPlaintext bytes) under the
// master key id with AES-GCM on the token, under a 12-byte IV drawn from
// the token's generator (through its pool, random.go): the XKS proxy API
// wants the IV made by the key manager. It returns the IV and ciphertext || tag.
func (t *Token) SealWithTokenIV(ctx context.Context, id ObjectID, aad, plaintext []byte) (iv, sealed []byte, err error) {
	const op = "seal with token IV"
	if err := t.checkGCM(op, make([]byte, IVSize), aad); err != nil {
		return nil, nil, err
	}
	if len(plaintext) == 0 || len(plaintext) > MaxPlaintext {
		return nil, nil, invalidInput(op, "plaintext must be 1 to %d bytes, got %d", MaxPlaintext, len(plaintext))
	}
	err = t.do(ctx, op, secretKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		var err error
		if iv, err = t.drawRandom(s, IVSize); err != nil {
			return err
		}
		sealed, err = t.gcmEncrypt(s, h, iv, aad, plaintext)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return iv, sealed, nil
}

// SealDataKey draws n random bytes (1 to 1024) from the token's generator
// (through its pool of drawn bytes, random.go) and seals them under the
// master key id with AES-GCM: the aes-gcm data key mechanism. It returns the data key and ciphertext || tag.
func (t *Token) SealDataKey(ctx context.Context, id ObjectID, n int, iv, aad []byte) (dataKey, sealed []byte, err error) {
	const op = "seal data key"
	if err := t.checkGCM(op, iv, aad); err != nil {
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
		sealed, err = t.gcmEncrypt(s, h, iv, aad, dataKey)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return dataKey, sealed, nil
}

// Unseal opens what Seal or SealDataKey made. A wrong tag, IV, AAD or key
// gives ErrInvalidCiphertext; the session stays usable.
func (t *Token) Unseal(ctx context.Context, id ObjectID, iv, aad, sealed []byte) ([]byte, error) {
	const op = "unseal"
	if err := t.checkGCM(op, iv, aad); err != nil {
		return nil, err
	}
	if len(sealed) <= TagSize || len(sealed) > MaxPlaintext+TagSize {
		return nil, newError(op, ErrInvalidCiphertext, fmt.Errorf("sealed value must be %d to %d bytes, got %d", TagSize+1, MaxPlaintext+TagSize, len(sealed)))
	}
	var plain []byte
	err := t.do(ctx, op, secretKey(id), ErrInvalidCiphertext, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		params := pkcs11.NewGCMParams(iv, aad, TagSize*8)
		defer params.Free()
		if err := t.p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
			return err
		}
		var err error
		plain, err = t.p.Decrypt(s, sealed)
		return err
	})
	return plain, err
}

// gcmEncrypt runs C_EncryptInit and C_Encrypt; the GCM parameters' C memory
// is freed only after the operation, which some tokens read until the end.
func (t *Token) gcmEncrypt(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, iv, aad, plaintext []byte) ([]byte, error) {
	params := pkcs11.NewGCMParams(iv, aad, TagSize*8)
	defer params.Free()
	if err := t.p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
		return nil, err
	}
	return t.p.Encrypt(s, plaintext)
}

// dataKeyTemplate makes a data key a session object whose value can be read
// once: the aes-kw mechanism needs the plaintext data key for the caller.
func dataKeyTemplate(n int) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	}
	if n > 0 { // C_UnwrapKey takes the length from the wrapped value
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, n))
	}
	return t
}

func checkWrapSize(op string, n int) error {
	if n < 16 || n > MaxDataKey || n%8 != 0 {
		return invalidInput(op, "aes-kw data keys must be a multiple of 8 bytes from 16 to %d, got %d", MaxDataKey, n)
	}
	return nil
}

// WrapDataKey generates an n-byte data key inside the token (n a multiple
// of 8 from 16 to 1024, as RFC 3394 requires), wraps it under the master
// key id with CKM_AES_KEY_WRAP, reads its value and destroys the session
// object: the aes-kw data key mechanism.
func (t *Token) WrapDataKey(ctx context.Context, id ObjectID, n int) (dataKey, wrapped []byte, err error) {
	const op = "wrap data key"
	if err := checkWrapSize(op, n); err != nil {
		return nil, nil, err
	}
	if err := requireMechanism(op, t.caps.AESKeyWrap, pkcs11.CKM_AES_KEY_WRAP); err != nil {
		return nil, nil, err
	}
	if err := requireMechanism(op, t.caps.GenericKeyGen, pkcs11.CKM_GENERIC_SECRET_KEY_GEN); err != nil {
		return nil, nil, err
	}
	if n > t.caps.GenericKeyMax {
		return nil, nil, newError(op, ErrMechanismUnsupported, fmt.Errorf("the token makes generic secrets of at most %d bytes, not %d", t.caps.GenericKeyMax, n))
	}
	err = t.do(ctx, op, secretKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		dk, err := t.p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, dataKeyTemplate(n))
		if err != nil {
			return err
		}
		defer t.destroySessionKey(s, dk)
		if wrapped, err = t.wrapObject(s, h, dk); err != nil {
			return err
		}
		dataKey, err = t.readValue(s, dk)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return dataKey, wrapped, nil
}

func (t *Token) wrapObject(s pkcs11.SessionHandle, wrapping, key pkcs11.ObjectHandle) ([]byte, error) {
	return t.p.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, wrapping, key)
}

// UnwrapDataKey recovers a data key that WrapDataKey wrapped. A wrapped
// value that fails RFC 3394's integrity check gives ErrInvalidCiphertext.
func (t *Token) UnwrapDataKey(ctx context.Context, id ObjectID, wrapped []byte) ([]byte, error) {
	const op = "unwrap data key"
	// miekg/pkcs11 panics on an empty wrapped value; RFC 3394 needs whole
	// 8-byte blocks and at least two of them besides the integrity block.
	if n := len(wrapped) - wrapOverhead; n < 16 || n > MaxDataKey || n%8 != 0 {
		return nil, newError(op, ErrInvalidCiphertext, fmt.Errorf("wrapped data key must be a multiple of 8 bytes from 24 to %d, got %d", MaxDataKey+wrapOverhead, len(wrapped)))
	}
	if err := requireMechanism(op, t.caps.AESKeyWrap, pkcs11.CKM_AES_KEY_WRAP); err != nil {
		return nil, err
	}
	// A token that makes no generic secret this long unwraps none either
	// (NSS: CKR_TEMPLATE_INCONSISTENT past 256 bytes), and WrapDataKey on
	// it never made one: the value is not a data key of this token's.
	if n := len(wrapped) - wrapOverhead; t.caps.GenericKeyGen && n > t.caps.GenericKeyMax {
		return nil, newError(op, ErrInvalidCiphertext, fmt.Errorf("a %d-byte data key is longer than any this token makes (%d bytes)", n, t.caps.GenericKeyMax))
	}
	var dataKey []byte
	err := t.do(ctx, op, secretKey(id), ErrInvalidCiphertext, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		dk, err := t.p.UnwrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, h, wrapped, dataKeyTemplate(0))
		if err != nil {
			return err
		}
		defer t.destroySessionKey(s, dk)
		dataKey, err = t.readValue(s, dk)
		return err
	})
	return dataKey, err
}

func (t *Token) readValue(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, error) {
	attrs, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return nil, err
	}
	return attrs[0].Value, nil
}

// destroySessionKey destroys a data key's session object at once; a
// failure is logged, and the object dies with the session at the latest.
func (t *Token) destroySessionKey(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) {
	if err := t.p.DestroyObject(s, h); err != nil {
		t.log.Warn("destroying a data key session object failed", "error", err)
	}
}

// GenerateRandom returns n (1 to 1024) random bytes from the token's generator.
func (t *Token) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	const op = "generate random"
	if n < 1 || n > MaxRandom {
		return nil, invalidInput(op, "length must be 1 to %d, got %d", MaxRandom, n)
	}
	var out []byte
	err := t.do(ctx, op, nil, nil, func(s pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		var err error
		out, err = t.p.GenerateRandom(s, n)
		return err
	})
	return out, err
}
