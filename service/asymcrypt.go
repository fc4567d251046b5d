package service

import (
	"context"
	"errors"
	"slices"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// encryptionAlgorithms are the EncryptionAlgorithm values AWS KMS knows.
// SM2PKE is China Regions' only, and no hsmkms key has it.
var encryptionAlgorithms = []string{symmetricAlg, string(hsm.RSAOAEPSHA1), string(hsm.RSAOAEPSHA256), "SM2PKE"}

// checkAlgorithm refuses an EncryptionAlgorithm AWS KMS does not know;
// field names it in the message. Whether it fits the key is keyAlgorithm's
// to say.
func checkAlgorithm(field, alg string) error {
	if alg != "" && !slices.Contains(encryptionAlgorithms, alg) {
		return newErr(CodeValidation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: %v", alg, field, encryptionAlgorithms)
	}
	return nil
}

// keyAlgorithm returns the algorithm a request uses with k (alg, or
// SYMMETRIC_DEFAULT when the request names none), refusing one the key
// does not have with AWS KMS's message.
func keyAlgorithm(k store.Key, alg string) (string, error) {
	if alg == "" {
		alg = symmetricAlg
	}
	if !slices.Contains(keySpecs[k.Spec].encryption, alg) {
		return alg, newErr(CodeInvalidKeyUsage, "Algorithm %s is incompatible with key spec %s.", alg, k.Spec)
	}
	return alg, nil
}

// asymmetricEncryption reports whether k encrypts with a key pair.
func asymmetricEncryption(k store.Key) bool {
	return k.Usage == UsageEncrypt && keySpecs[k.Spec].asymmetric()
}

// encryptAsymmetric encrypts plaintext under an RSA key's public half with
// alg: the ciphertext is the bare RSAES-OAEP ciphertext, as AWS KMS makes
// it, so that a ciphertext made offline with the public key decrypts too.
func (s *Service) encryptAsymmetric(ctx context.Context, k store.Key, v store.Version, alg string, encCtx map[string]string, plaintext []byte) ([]byte, error) {
	if len(encCtx) > 0 {
		return nil, newErr(CodeValidation, "EncryptionContext is not supported with asymmetric KMS keys")
	}
	if max := hsm.MaxOAEPPlaintext(hsm.EncryptionAlgorithm(alg), modulusBytes(k.Spec)); len(plaintext) > max {
		return nil, newErr(CodeValidation, "Plaintext is %d bytes; %s with %s encrypts at most %d", len(plaintext), k.Spec, alg, max)
	}
	ct, err := s.hsm.EncryptOAEP(ctx, v.ObjectID, hsm.EncryptionAlgorithm(alg), plaintext)
	return ct, s.hsmErr(err, k.ID, v.Number)
}

// modulusBytes is the modulus length of an RSA key spec's keys.
func modulusBytes(spec string) int {
	switch keySpecs[spec].pair {
	case hsm.RSA2048:
		return 256
	case hsm.RSA3072:
		return 384
	case hsm.RSA4096:
		return 512
	}
	return 0
}

// openAsymmetric decrypts an RSAES-OAEP ciphertext with the private half
// of the key the caller names: such a ciphertext names no key, so AWS KMS
// requires KeyId with it.
func (s *Service) openAsymmetric(ctx context.Context, o *op, action string, data []byte, keyID, alg string, encCtx map[string]string) ([]byte, store.Key, store.Version, error) {
	var kv keyVersion
	if keyID == "" {
		return nil, kv.k, kv.v, newErr(CodeValidation, "KeyId is required to decrypt with %s", alg)
	}
	if len(encCtx) > 0 {
		return nil, kv.k, kv.v, newErr(CodeValidation, "EncryptionContext is not supported with asymmetric KMS keys")
	}
	if len(data) == 0 || len(data) > 6144 {
		return nil, kv.k, kv.v, newErr(CodeValidation, "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length between 1 and 6144")
	}
	ref, err := s.parseKeyRef("keyId", keyID)
	if err != nil {
		return nil, kv.k, kv.v, err
	}
	err = s.store.View(ctx, func(tx store.Tx) error {
		k, err := s.resolve(tx, ref)
		if err != nil {
			return err
		}
		err = o.authorizeIn(tx, action, &k, ref.alias)
		if err != nil {
			return err
		}
		if err := s.usable(k, UsageEncrypt); err != nil {
			return err
		}
		if _, err := keyAlgorithm(k, alg); err != nil {
			return err
		}
		kv.k = k
		kv.v, err = tx.Version(k.ID, k.CurrentVersion)
		return err
	})
	o.rec.KeyVersion = kv.v.Number
	if err != nil {
		return nil, kv.k, kv.v, storeErrOrNil(err)
	}
	if len(data) != modulusBytes(kv.k.Spec) {
		return nil, kv.k, kv.v, newErr(CodeInvalidCipher, "the ciphertext is not a %s ciphertext of %s", alg, s.keyARN(kv.k.ID))
	}
	plain, err := s.hsm.DecryptOAEP(ctx, kv.v.ObjectID, hsm.EncryptionAlgorithm(alg), data)
	if errors.Is(err, hsm.ErrInvalidCiphertext) {
		return nil, kv.k, kv.v, wrapErr(CodeInvalidCipher, err, "the ciphertext is invalid, was altered, or was not made with %s under %s", alg, s.keyARN(kv.k.ID))
	}
	return plain, kv.k, kv.v, s.hsmErr(err, kv.k.ID, kv.v.Number)
}
