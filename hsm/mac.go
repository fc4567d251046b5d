package hsm

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// MACAlgorithm is an HMAC, named as AWS KMS names it.
type MACAlgorithm string

// The HMAC algorithms.
const (
	HMACSHA224 MACAlgorithm = "HMAC_SHA_224"
	HMACSHA256 MACAlgorithm = "HMAC_SHA_256"
	HMACSHA384 MACAlgorithm = "HMAC_SHA_384"
	HMACSHA512 MACAlgorithm = "HMAC_SHA_512"
)

// MaxMACMessage bounds a message to GenerateMAC or VerifyMAC: AWS KMS's
// 4096 bytes.
const MaxMACMessage = 4096

// macParams is what the token needs for one HMAC: the mechanism, and the
// size of the MAC, which is also the size of the key (as AWS KMS makes its
// HMAC keys: HMAC_224 keys are 224 bits).
type macParams struct {
	mech uint
	size int
}

func (alg MACAlgorithm) params(op string, caps Capabilities) (macParams, error) {
	var p macParams
	var ok bool
	switch alg {
	case HMACSHA224:
		p, ok = macParams{pkcs11.CKM_SHA224_HMAC, 28}, caps.HMACSHA224
	case HMACSHA256:
		p, ok = macParams{pkcs11.CKM_SHA256_HMAC, 32}, caps.HMACSHA256
	case HMACSHA384:
		p, ok = macParams{pkcs11.CKM_SHA384_HMAC, 48}, caps.HMACSHA384
	case HMACSHA512:
		p, ok = macParams{pkcs11.CKM_SHA512_HMAC, 64}, caps.HMACSHA512
	default:
		return p, invalidInput(op, "unknown MAC algorithm %q", alg)
	}
	return p, requireMechanism(op, ok, p.mech)
}

// Size is the length in bytes of alg's MACs and keys (0 for an unknown
// algorithm).
func (alg MACAlgorithm) Size() int {
	p, err := alg.params("", Capabilities{HMACSHA224: true, HMACSHA256: true, HMACSHA384: true, HMACSHA512: true})
	if err != nil {
		return 0
	}
	return p.size
}

// hmacKeyTemplate is an HMAC key version: a generic secret of size bytes
// that signs and verifies and does nothing else, that nothing can read,
// wrap or copy out.
func hmacKeyTemplate(id ObjectID, label string, size int) []*pkcs11.Attribute {
	tmpl := secretKeyTemplate(id[:], label, pkcs11.CKK_GENERIC_SECRET, false, true)
	for i, a := range tmpl {
		if a.Type == pkcs11.CKA_VALUE_LEN {
			tmpl[i] = pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, size)
		}
	}
	return tmpl
}

// CreateHMACKey generates the key of an HMAC key version for alg inside
// the token, under CKA_ID id: as long as alg's MAC, sensitive, never
// extractable, usable only to sign and verify.
func (t *Token) CreateHMACKey(ctx context.Context, id ObjectID, label string, alg MACAlgorithm) error {
	const op = "create HMAC key"
	if len(label) == 0 || len(label) > MaxLabel {
		return invalidInput(op, "label must be 1 to %d bytes", MaxLabel)
	}
	caps := t.Capabilities()
	p, err := alg.params(op, caps)
	if err != nil {
		return err
	}
	if err := requireMechanism(op, caps.GenericKeyGen, pkcs11.CKM_GENERIC_SECRET_KEY_GEN); err != nil {
		return err
	}
	return t.do(ctx, op, nil, nil, func(s pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		if err := t.lockObjects(ctx); err != nil {
			return err
		}
		defer t.objectMu.Unlock()
		if err := t.refuseExisting(s, id); err != nil {
			return err
		}
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}
		tmpl := hmacKeyTemplate(id, label, p.size)
		return retryRace(func() error {
			_, err := t.generateKey(s, mech, tmpl)
			return err
		})
	})
}

// checkMACMessage refuses a message the token must not see.
func checkMACMessage(op string, msg []byte) error {
	if len(msg) == 0 || len(msg) > MaxMACMessage {
		return invalidInput(op, "message must be 1 to %d bytes, got %d", MaxMACMessage, len(msg))
	}
	return nil
}

// GenerateMAC computes the HMAC of msg with the HMAC key id on the token.
func (t *Token) GenerateMAC(ctx context.Context, id ObjectID, alg MACAlgorithm, msg []byte) ([]byte, error) {
	const op = "generate MAC"
	p, err := alg.params(op, t.Capabilities())
	if err != nil {
		return nil, err
	}
	if err := checkMACMessage(op, msg); err != nil {
		return nil, err
	}
	return t.computeMAC(ctx, op, id, alg, p, msg)
}

// computeMAC has the token compute the HMAC of msg under the key id.
func (t *Token) computeMAC(ctx context.Context, op string, id ObjectID, alg MACAlgorithm, p macParams, msg []byte) ([]byte, error) {
	var mac []byte
	err := t.do(ctx, op, hmacKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := t.checkMACKey(op, s, h, alg, p); err != nil {
			return err
		}
		if err := t.p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.mech, nil)}, h); err != nil {
			return err
		}
		var err error
		mac, err = t.p.Sign(s, msg)
		return err
	})
	return mac, err
}

// VerifyMAC checks that mac is the HMAC of msg under the HMAC key id: the
// token computes the MAC, hsmkms compares in constant time and never
// returns it. A MAC that does not match, of any length, gives
// ErrInvalidSignature. (C_Verify would compare on the token, but tokens
// disagree on what a mismatch returns: NSS's softoken answers
// CKR_BUFFER_TOO_SMALL or CKR_DEVICE_ERROR, the latter indistinguishable
// from a failed device.)
func (t *Token) VerifyMAC(ctx context.Context, id ObjectID, alg MACAlgorithm, msg, mac []byte) error {
	const op = "verify MAC"
	p, err := alg.params(op, t.Capabilities())
	if err != nil {
		return err
	}
	if err := checkMACMessage(op, msg); err != nil {
		return err
	}
	if len(mac) != p.size {
		return newError(op, ErrInvalidSignature, fmt.Errorf("%s MACs are %d bytes, got %d", alg, p.size, len(mac)))
	}
	want, err := t.computeMAC(ctx, op, id, alg, p, msg)
	if err != nil {
		return err
	}
	defer clear(want)
	if subtle.ConstantTimeCompare(want, mac) != 1 {
		return newError(op, ErrInvalidSignature, errors.New("the MAC does not match"))
	}
	return nil
}

// checkMACKey refuses a key of a length alg's keys never have: shorter
// than its MAC (PKCS#11 tokens differ on whether they allow it; SoftHSM2
// refuses a key shorter than the hash with CKR_KEY_SIZE_RANGE) or longer
// than the hash's block. hsmkms makes keys as long as the MAC; imported
// ones may be longer, as AWS KMS takes them.
func (t *Token) checkMACKey(op string, s pkcs11.SessionHandle, h pkcs11.ObjectHandle, alg MACAlgorithm, p macParams) error {
	a, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil)})
	if err != nil {
		return err
	}
	// A key made with C_CreateObject may not report its length
	// (openCryptoki 3.8 gives 0): only a known, wrong length is refused.
	lo, hi := ImportTarget{MAC: alg}.lengths()
	if n := int(attrUint(a[0].Value)); n != 0 && (n < lo || n > hi) {
		return invalidInput(op, "the key is %d bytes; %s takes %d to %d", n, MechanismName(p.mech), lo, hi)
	}
	return nil
}
