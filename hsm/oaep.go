package hsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"

	"github.com/miekg/pkcs11"
)

// EncryptionAlgorithm is how an RSA key pair encrypts, named as AWS KMS
// names it.
type EncryptionAlgorithm string

// The RSA encryption algorithms: OAEP with MGF1 over the same hash and an
// empty label, as AWS KMS and `openssl pkeyutl -pkeyopt rsa_padding_mode:oaep`
// use them.
const (
	RSAOAEPSHA1   EncryptionAlgorithm = "RSAES_OAEP_SHA_1"
	RSAOAEPSHA256 EncryptionAlgorithm = "RSAES_OAEP_SHA_256"
)

// maxModulus is the largest RSA modulus hsmkms makes, in bytes (RSA-4096):
// no RSA ciphertext or plaintext is longer.
const maxModulus = 512

type oaepParams struct {
	hash      crypto.Hash
	hashMech  uint
	mgf       uint
	newHash   func() hash.Hash
	emptyHash []byte // the hash of the empty label
}

func (alg EncryptionAlgorithm) params(op string) (oaepParams, error) {
	switch alg {
	case RSAOAEPSHA1:
		h := sha1.Sum(nil)
		return oaepParams{crypto.SHA1, pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, sha1.New, h[:]}, nil
	case RSAOAEPSHA256:
		h := sha256.Sum256(nil)
		return oaepParams{crypto.SHA256, pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, sha256.New, h[:]}, nil
	}
	return oaepParams{}, invalidInput(op, "unknown encryption algorithm %q", alg)
}

func (p oaepParams) mechanism() []*pkcs11.Mechanism {
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP,
		pkcs11.NewOAEPParams(p.hashMech, p.mgf, pkcs11.CKZ_DATA_SPECIFIED, nil))}
}

// MaxOAEPPlaintext is the longest plaintext alg encrypts under a modulus
// of modulusBytes: k - 2·hLen - 2 (RFC 8017, 7.1.1).
func MaxOAEPPlaintext(alg EncryptionAlgorithm, modulusBytes int) int {
	p, err := alg.params("")
	if err != nil {
		return 0
	}
	return modulusBytes - 2*p.hash.Size() - 2
}

// refusesParams reports a token that does not take these OAEP parameters:
// SoftHSM2 2.6.1 takes only SHA-1 and answers CKR_ARGUMENTS_BAD.
func refusesParams(err error) bool {
	return isCode(err, pkcs11.CKR_ARGUMENTS_BAD) || isCode(err, pkcs11.CKR_MECHANISM_PARAM_INVALID)
}

// EncryptOAEP encrypts plaintext under the public half of the RSA key pair
// id with alg. Where the token does not take alg's OAEP parameters it
// encrypts with the public key it reads from the token: encryption needs
// no secret.
func (t *Token) EncryptOAEP(ctx context.Context, id ObjectID, alg EncryptionAlgorithm, plaintext []byte) ([]byte, error) {
	const op = "encrypt OAEP"
	p, err := alg.params(op)
	if err != nil {
		return nil, err
	}
	if len(plaintext) == 0 || len(plaintext) > maxModulus {
		return nil, invalidInput(op, "plaintext must be 1 to %d bytes, got %d", maxModulus, len(plaintext))
	}
	var out []byte
	err = t.do(ctx, op, publicKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		k, err := t.rsaModulus(op, s, h)
		if err != nil {
			return err
		}
		if max := k - 2*p.hash.Size() - 2; len(plaintext) > max {
			return invalidInput(op, "%s encrypts at most %d bytes under this key, got %d", alg, max, len(plaintext))
		}
		if alg != RSAOAEPSHA1 && t.oaepSHA1Only.Load() {
			out, err = t.encryptOAEPSoftware(s, h, p, plaintext)
			return err
		}
		err = t.p.EncryptInit(s, p.mechanism(), h)
		if refusesParams(err) && alg != RSAOAEPSHA1 {
			t.noteSHA1Only(err)
			out, err = t.encryptOAEPSoftware(s, h, p, plaintext)
			return err
		}
		if err != nil {
			return err
		}
		out, err = t.p.Encrypt(s, plaintext)
		return err
	})
	return out, err
}

func (t *Token) encryptOAEPSoftware(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, p oaepParams, plaintext []byte) ([]byte, error) {
	pub, err := t.readPublicKey(s, h)
	if err != nil {
		return nil, err
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, invalidInput("encrypt OAEP", "the key is not an RSA key")
	}
	return rsa.EncryptOAEP(p.newHash(), rand.Reader, rsaPub, plaintext, nil)
}

func (t *Token) noteSHA1Only(err error) {
	if !t.oaepSHA1Only.Swap(true) {
		t.log.Warn("the token takes CKM_RSA_PKCS_OAEP only with SHA-1: RSAES_OAEP_SHA_256 decrypts with CKM_RSA_X_509 on the token and decodes OAEP in hsmkms", "error", err)
	}
}

// DecryptOAEP decrypts an OAEP ciphertext with the private half of the RSA
// key pair id on the token. A ciphertext that does not decrypt gives
// ErrInvalidCiphertext.
//
// Where the token does not take alg's OAEP parameters (SoftHSM2 2.6.1 takes
// only SHA-1), the private-key operation runs on the token as CKM_RSA_X_509
// and hsmkms checks and strips the OAEP padding in constant time.
func (t *Token) DecryptOAEP(ctx context.Context, id ObjectID, alg EncryptionAlgorithm, ciphertext []byte) ([]byte, error) {
	const op = "decrypt OAEP"
	p, err := alg.params(op)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) == 0 || len(ciphertext) > maxModulus {
		return nil, newError(op, ErrInvalidCiphertext, fmt.Errorf("ciphertext must be 1 to %d bytes, got %d", maxModulus, len(ciphertext)))
	}
	var out []byte
	err = t.do(ctx, op, privateKey(id), ErrInvalidCiphertext, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		k, err := t.rsaModulus(op, s, h)
		if err != nil {
			return err
		}
		if len(ciphertext) != k {
			return newError(op, ErrInvalidCiphertext, fmt.Errorf("this key's ciphertexts are %d bytes, got %d", k, len(ciphertext)))
		}
		if alg != RSAOAEPSHA1 && t.oaepSHA1Only.Load() {
			out, err = t.decryptOAEPRaw(s, h, p, k, ciphertext)
			return err
		}
		err = t.p.DecryptInit(s, p.mechanism(), h)
		if refusesParams(err) && alg != RSAOAEPSHA1 {
			t.noteSHA1Only(err)
			out, err = t.decryptOAEPRaw(s, h, p, k, ciphertext)
			return err
		}
		if err != nil {
			return err
		}
		out, err = t.p.Decrypt(s, ciphertext)
		if isCode(err, pkcs11.CKR_ARGUMENTS_BAD) {
			// NSS's softoken answers an OAEP ciphertext whose padding
			// does not check out so; C_DecryptInit took the arguments.
			return newError(op, ErrInvalidCiphertext, err)
		}
		return err
	})
	return out, err
}

func (t *Token) decryptOAEPRaw(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, p oaepParams, k int, ciphertext []byte) ([]byte, error) {
	const op = "decrypt OAEP"
	if !t.caps.RSAX509 {
		return nil, newError(op, ErrMechanismUnsupported, fmt.Errorf("the token takes CKM_RSA_PKCS_OAEP only with SHA-1 and lacks CKM_RSA_X_509"))
	}
	if err := t.p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil)}, h); err != nil {
		return nil, err
	}
	em, err := t.p.Decrypt(s, ciphertext)
	if err != nil {
		return nil, err
	}
	defer clear(em)
	if len(em) > k {
		return nil, newError(op, ErrToken, fmt.Errorf("CKM_RSA_X_509 gave %d bytes for a %d-byte modulus", len(em), k))
	}
	// Tokens may drop the leading zero bytes of the integer.
	full := make([]byte, k)
	copy(full[k-len(em):], em)
	defer clear(full)
	msg, err := decodeOAEP(p, full)
	if err != nil {
		return nil, newError(op, ErrInvalidCiphertext, err)
	}
	return msg, nil
}

// errOAEP is the one error every malformed OAEP encoding gives: telling
// the reasons apart would tell an attacker which check failed (Manger).
var errOAEP = errors.New("decryption error")

// decodeOAEP checks and strips the OAEP encoding em (RFC 8017, 7.1.2 step
// 3) with an empty label. It runs in time independent of where em is
// wrong, and fails the same way whatever is wrong with it.
func decodeOAEP(p oaepParams, em []byte) ([]byte, error) {
	hLen := p.hash.Size()
	k := len(em)
	if k < 2*hLen+2 {
		return nil, errOAEP
	}
	firstZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed := make([]byte, hLen)
	db := make([]byte, k-hLen-1)
	copy(seed, em[1:1+hLen])
	copy(db, em[1+hLen:])
	defer clear(seed)
	defer clear(db)
	mgf1XOR(seed, p.newHash, db)
	mgf1XOR(db, p.newHash, seed)

	labelOK := subtle.ConstantTimeCompare(db[:hLen], p.emptyHash)
	// After the label hash: zero bytes, then 0x01, then the message. Scan
	// all of it, recording where the first 0x01 is and whether anything
	// but zeros came before it.
	rest := db[hLen:]
	looking, index, invalid := 1, 0, 0
	for i, b := range rest {
		zero := subtle.ConstantTimeByteEq(b, 0)
		one := subtle.ConstantTimeByteEq(b, 1)
		index = subtle.ConstantTimeSelect(looking&one, i, index)
		looking = subtle.ConstantTimeSelect(one, 0, looking)
		invalid = subtle.ConstantTimeSelect(looking&^zero, 1, invalid)
	}
	if firstZero&labelOK&^invalid&^looking != 1 {
		return nil, errOAEP
	}
	return append([]byte(nil), rest[index+1:]...), nil
}

// mgf1XOR xors out with MGF1(seed) (RFC 8017, B.2.1).
func mgf1XOR(out []byte, newHash func() hash.Hash, seed []byte) {
	h := newHash()
	var counter [4]byte
	var digest []byte
	for done := 0; done < len(out); {
		h.Reset()
		h.Write(seed)
		h.Write(counter[:])
		digest = h.Sum(digest[:0])
		done += subtle.XORBytes(out[done:], out[done:], digest)
		for i := 3; i >= 0; i-- {
			counter[i]++
			if counter[i] != 0 {
				break
			}
		}
	}
	clear(digest)
}

// rsaModulus returns the modulus length in bytes of the RSA key h, and
// refuses any other key type.
func (t *Token) rsaModulus(op string, s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (int, error) {
	a, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return 0, err
	}
	if attrUint(a[0].Value) != pkcs11.CKK_RSA {
		return 0, invalidInput(op, "the key is not an RSA key")
	}
	a, err = t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil)})
	if err != nil {
		return 0, err
	}
	n := a[0].Value
	for len(n) > 0 && n[0] == 0 {
		n = n[1:]
	}
	if len(n) == 0 || len(n) > maxModulus {
		return 0, invalidInput(op, "the key's modulus is %d bytes", len(n))
	}
	return len(n), nil
}
