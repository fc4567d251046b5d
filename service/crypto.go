package service

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// Limits on cryptographic requests, as AWS KMS has them.
const (
	maxPlaintext = 4096
	maxDataKey   = 1024
	maxRandom    = 1024
	symmetricAlg = "SYMMETRIC_DEFAULT"
)

// Encrypt seals up to 4096 bytes under a key's current version with
// AES-GCM on the token, bound to the encryption context; under an RSA
// encryption key it encrypts with RSAES-OAEP instead.
func (s *Service) Encrypt(ctx context.Context, in EncryptInput) (out EncryptOutput, err error) {
	o := s.begin(ctx, "kms:Encrypt")
	defer endWith(o, &out, &err)
	if in.DryRun {
		return out, dryRunRefused()
	}
	o.withContext(in.EncryptionContext)
	if err := o.withGrantTokens(in.GrantTokens); err != nil {
		return out, err
	}
	if len(in.Plaintext) == 0 || len(in.Plaintext) > maxPlaintext {
		return out, newErr(CodeValidation, "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length between 1 and %d", maxPlaintext)
	}
	if err := checkAlgorithm("encryptionAlgorithm", in.EncryptionAlgorithm); err != nil {
		return out, err
	}
	k, v, err := s.encryptionKey(ctx, o, in.KeyId, true)
	if err != nil {
		return out, err
	}
	alg, err := keyAlgorithm(k, in.EncryptionAlgorithm)
	if err != nil {
		return out, err
	}
	var blob []byte
	if asymmetricEncryption(k) {
		blob, err = s.encryptAsymmetric(ctx, k, v, alg, in.EncryptionContext, in.Plaintext)
	} else {
		blob, err = s.seal(ctx, k, v, in.EncryptionContext, s.sealPlaintext(ctx, v, in.Plaintext))
	}
	if err != nil {
		return out, err
	}
	return EncryptOutput{CiphertextBlob: blob, KeyId: s.keyARN(k.ID), EncryptionAlgorithm: alg}, nil
}

// encryptionKey resolves, authorises and checks the key named by ident and
// returns its current version: the hot path reads two or three records and
// never searches the token. Only Encrypt and ReEncrypt (asymmetric) take
// an RSA encryption key; data keys need a symmetric one.
func (s *Service) encryptionKey(ctx context.Context, o *op, ident string, asymmetric bool) (store.Key, store.Version, error) {
	var kv keyVersion
	ref, err := s.parseKeyRef("keyId", ident)
	if err != nil {
		return kv.k, kv.v, err
	}
	err = s.store.View(ctx, func(tx store.Tx) error {
		k, err := s.resolve(tx, ref)
		if err != nil {
			return err
		}
		err = o.authorizeIn(tx, o.rec.Action, &k, ref.alias)
		if err != nil {
			return err
		}
		if err := s.usable(k, UsageEncrypt); err != nil {
			return err
		}
		if !asymmetric && k.Spec != SpecSymmetric {
			return newErr(CodeInvalidKeyUsage, "%s key KeySpec is %s which is not valid for %s.", s.keyARN(k.ID), k.Spec, strings.TrimPrefix(o.rec.Action, "kms:"))
		}
		kv.k = k
		kv.v, err = tx.Version(k.ID, k.CurrentVersion)
		return err
	})
	o.rec.KeyVersion = kv.v.Number
	return kv.k, kv.v, storeErrOrNil(err)
}

// keyVersion is what a lookup transaction hands out: one variable for the
// closure to fill, where a key, a version and an error would each be moved
// to the heap on every request.
type keyVersion struct {
	k store.Key
	v store.Version
}

// sealer is what seal asks of the token: a seal with AES-GCM under the
// given IV and AAD, or with the portable mechanism under the given IV,
// header and context. Only the one of the key's mechanism is called.
type sealer struct {
	gcm      func(iv, aad []byte) ([]byte, error)
	portable func(iv, header, context []byte) ([]byte, error)
}

// sealPlaintext is the sealer of caller data (Encrypt, ReEncrypt).
func (s *Service) sealPlaintext(ctx context.Context, v store.Version, plain []byte) sealer {
	return sealer{
		gcm: func(iv, aad []byte) ([]byte, error) { return s.hsm.Seal(ctx, v.ObjectID, iv, aad, plain) },
		portable: func(iv, header, context []byte) ([]byte, error) {
			return s.hsm.SealPortable(ctx, v.ObjectID, iv, header, context, plain)
		},
	}
}

// seal makes a ciphertext blob with the key's sealing mechanism (aes-gcm,
// or aes-cbc-hmac on keys made for tokens without AES-GCM): it takes a
// seal from the version's budget, makes a fresh IV, binds header and
// context and lets the sealer call the token.
func (s *Service) seal(ctx context.Context, k store.Key, v store.Version, encCtx map[string]string, sl sealer) ([]byte, error) {
	b := ciphertext.Blob{Mechanism: ciphertext.AESGCM, KeyID: uuidBytes(k.ID), Version: v.Number}
	portable := k.Mechanism == ciphertext.AESCBCHMAC.String()
	var aad, header, context []byte
	var err error
	if portable {
		b.Mechanism = ciphertext.AESCBCHMAC
		header, context, err = ciphertext.MACParts(b, ciphertext.Context(encCtx))
	} else {
		aad, err = ciphertext.AAD(b, ciphertext.Context(encCtx))
	}
	if err != nil {
		return nil, newErr(CodeValidation, "%v", err)
	}
	if err := s.seals.take(ctx, k, v); err != nil {
		return nil, err
	}
	if portable {
		if b.IV, err = hsm.NewCBCIV(); err == nil {
			b.Sealed, err = sl.portable(b.IV, header, context)
		}
	} else if b.IV, err = hsm.NewIV(); err == nil {
		b.Sealed, err = sl.gcm(b.IV, aad)
	}
	if err != nil {
		if b.IV == nil {
			return nil, wrapErr(CodeInternal, err, "no randomness for an IV")
		}
		return nil, s.hsmErr(err, k.ID, v.Number)
	}
	if s.cfg.OnSeal != nil {
		s.cfg.OnSeal(k.ID, v.Number)
	}
	return b.Marshal()
}

func uuidBytes(id string) [16]byte { return uuid.MustParse(id) }

// dataKeySize reads GenerateDataKey's KeySpec or NumberOfBytes.
func dataKeySize(in GenerateDataKeyInput) (int, error) {
	switch {
	case in.KeySpec != "" && in.NumberOfBytes != 0:
		return 0, newErr(CodeValidation, "give KeySpec or NumberOfBytes, not both")
	case in.KeySpec == "AES_256":
		return 32, nil
	case in.KeySpec == "AES_128":
		return 16, nil
	case in.KeySpec != "":
		return 0, newErr(CodeValidation, "1 validation error detected: Value '%s' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]", in.KeySpec)
	case in.NumberOfBytes < 1 || in.NumberOfBytes > maxDataKey:
		return 0, newErr(CodeValidation, "1 validation error detected: Value '%d' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and %d; or give KeySpec", in.NumberOfBytes, maxDataKey)
	}
	return in.NumberOfBytes, nil
}

// dryRunRefused refuses a request with DryRun set, before anything is
// done: answering it as if it were not set would do what the caller asked
// only to have checked (a Decrypt would return the plaintext).
func dryRunRefused() error {
	return newErr(CodeUnsupported, "DryRun is not supported")
}

// recipientRefused refuses a request with a Recipient (see RecipientInfo),
// before any token call: its result must not be returned in plaintext.
func recipientRefused() error {
	return newErr(CodeUnsupported, "Recipient is not supported: hsmkms cannot encrypt the result to an attested enclave's key, and does not return it in plaintext instead")
}

// dataKeyRequest is what GenerateDataKey and GenerateDataKeyPair check
// first, alike: the encryption context recorded for the audit, DryRun and
// Recipient refused, the grant tokens read.
func (o *op) dataKeyRequest(encCtx map[string]string, dryRun bool, recipient *RecipientInfo, grantTokens []string) error {
	o.withContext(encCtx)
	switch {
	case dryRun:
		return dryRunRefused()
	case recipient != nil:
		return recipientRefused()
	}
	return o.withGrantTokens(grantTokens)
}

// GenerateDataKey makes a data key on the token and returns it in plaintext
// and protected under the key's current version.
func (s *Service) GenerateDataKey(ctx context.Context, in GenerateDataKeyInput) (GenerateDataKeyOutput, error) {
	return s.generateDataKey(ctx, "kms:GenerateDataKey", in, true)
}

// GenerateDataKeyWithoutPlaintext is GenerateDataKey without the plaintext.
func (s *Service) GenerateDataKeyWithoutPlaintext(ctx context.Context, in GenerateDataKeyInput) (GenerateDataKeyOutput, error) {
	return s.generateDataKey(ctx, "kms:GenerateDataKeyWithoutPlaintext", in, false)
}

func (s *Service) generateDataKey(ctx context.Context, action string, in GenerateDataKeyInput, plain bool) (out GenerateDataKeyOutput, err error) {
	o := s.begin(ctx, action)
	defer endWith(o, &out, &err)
	if err := o.dataKeyRequest(in.EncryptionContext, in.DryRun, in.Recipient, in.GrantTokens); err != nil {
		return out, err
	}
	n, err := dataKeySize(in)
	if err != nil {
		return out, err
	}
	k, v, err := s.encryptionKey(ctx, o, in.KeyId, false)
	if err != nil {
		return out, err
	}
	var dataKey, blob []byte
	if k.Mechanism == ciphertext.AESKW.String() {
		dataKey, blob, err = s.wrapDataKey(ctx, k, v, n, in.EncryptionContext)
	} else {
		blob, err = s.seal(ctx, k, v, in.EncryptionContext, sealer{
			gcm: func(iv, aad []byte) (sealed []byte, err error) {
				dataKey, sealed, err = s.hsm.SealDataKey(ctx, v.ObjectID, n, iv, aad)
				return sealed, err
			},
			portable: func(iv, header, context []byte) (sealed []byte, err error) {
				dataKey, sealed, err = s.hsm.SealDataKeyPortable(ctx, v.ObjectID, n, iv, header, context)
				return sealed, err
			},
		})
	}
	if err != nil {
		return out, err
	}
	out = GenerateDataKeyOutput{CiphertextBlob: blob, KeyId: s.keyARN(k.ID), KeyMaterialId: materialID(v.Number)}
	if plain {
		out.Plaintext = dataKey
	}
	return out, nil
}

// wrapDataKey makes an aes-kw data key: generated inside the token and
// exported only wrapped. Key wrap has no AAD, so no context can be bound.
func (s *Service) wrapDataKey(ctx context.Context, k store.Key, v store.Version, n int, encCtx map[string]string) (dataKey, blob []byte, err error) {
	if len(encCtx) > 0 {
		return nil, nil, newErr(CodeValidation, "%s protects data keys with AES key wrap, which cannot bind an encryption context; send none, or use an aes-gcm key", s.keyARN(k.ID))
	}
	if n < 16 || n%8 != 0 {
		return nil, nil, newErr(CodeValidation, "%s protects data keys with AES key wrap, which needs a multiple of 8 bytes from 16 to %d; got %d", s.keyARN(k.ID), maxDataKey, n)
	}
	dataKey, wrapped, err := s.hsm.WrapDataKey(ctx, v.ObjectID, n)
	if err != nil {
		return nil, nil, s.hsmErr(err, k.ID, v.Number)
	}
	b := ciphertext.Blob{Mechanism: ciphertext.AESKW, KeyID: uuidBytes(k.ID), Version: v.Number, Sealed: wrapped}
	blob, err = b.Marshal()
	return dataKey, blob, err
}

// Decrypt opens a ciphertext blob. The blob names its key and version; a
// KeyId given by the caller must name the same key.
func (s *Service) Decrypt(ctx context.Context, in DecryptInput) (out DecryptOutput, err error) {
	o := s.begin(ctx, "kms:Decrypt")
	defer endWith(o, &out, &err)
	if in.DryRun {
		return out, dryRunRefused()
	}
	o.withContext(in.EncryptionContext)
	if in.Recipient != nil {
		return out, recipientRefused()
	}
	if err := o.withGrantTokens(in.GrantTokens); err != nil {
		return out, err
	}
	if err := checkAlgorithm("encryptionAlgorithm", in.EncryptionAlgorithm); err != nil {
		return out, err
	}
	plain, k, v, err := s.openAny(ctx, o, "kms:Decrypt", in.CiphertextBlob, in.KeyId, in.EncryptionAlgorithm, in.EncryptionContext)
	if err != nil {
		return out, err
	}
	alg := in.EncryptionAlgorithm
	if alg == "" {
		alg = symmetricAlg
	}
	return DecryptOutput{KeyId: s.keyARN(k.ID), Plaintext: plain, EncryptionAlgorithm: alg, KeyMaterialId: materialID(v.Number)}, nil
}

// openAny opens a ciphertext: an hsmkms blob for SYMMETRIC_DEFAULT (the
// default), a bare RSAES-OAEP ciphertext for the RSA algorithms.
func (s *Service) openAny(ctx context.Context, o *op, action string, data []byte, keyID, alg string, encCtx map[string]string) ([]byte, store.Key, store.Version, error) {
	if alg == "" || alg == symmetricAlg {
		return s.open(ctx, o, action, data, keyID, encCtx)
	}
	return s.openAsymmetric(ctx, o, action, data, keyID, alg, encCtx)
}

// open parses, authorises and unseals a blob.
func (s *Service) open(ctx context.Context, o *op, action string, data []byte, keyID string, encCtx map[string]string) ([]byte, store.Key, store.Version, error) {
	var k store.Key
	var v store.Version
	if len(data) == 0 || len(data) > ciphertext.MaxBlob {
		return nil, k, v, newErr(CodeValidation, "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length between 1 and %d", ciphertext.MaxBlob)
	}
	// A malformed context is a validation error whatever the blob's
	// mechanism: aes-kw blobs bind none, but must not hide a bad request.
	if err := ciphertext.Context(encCtx).Validate(); err != nil {
		return nil, k, v, newErr(CodeValidation, "%v", err)
	}
	b, err := ciphertext.Parse(data)
	if err != nil {
		return nil, k, v, wrapErr(CodeInvalidCipher, err, "the ciphertext is not an hsmkms ciphertext: %v", err)
	}
	k, v, err = s.blobKey(ctx, o, action, b, keyID)
	if err != nil {
		return nil, k, v, err
	}
	var plain []byte
	switch b.Mechanism {
	case ciphertext.AESGCM:
		aad, cerr := ciphertext.AAD(b, ciphertext.Context(encCtx))
		if cerr != nil {
			return nil, k, v, newErr(CodeValidation, "%v", cerr)
		}
		plain, err = s.hsm.Unseal(ctx, v.ObjectID, b.IV, aad, b.Sealed)
	case ciphertext.AESKW:
		if len(encCtx) > 0 {
			return nil, k, v, newErr(CodeInvalidCipher, "the ciphertext was made without an encryption context")
		}
		plain, err = s.hsm.UnwrapDataKey(ctx, v.ObjectID, b.Sealed)
	case ciphertext.AESCBCHMAC:
		header, context, cerr := ciphertext.MACParts(b, ciphertext.Context(encCtx))
		if cerr != nil {
			return nil, k, v, newErr(CodeValidation, "%v", cerr)
		}
		plain, err = s.hsm.UnsealPortable(ctx, v.ObjectID, b.IV, header, context, b.Sealed)
	}
	return plain, k, v, s.hsmErr(err, k.ID, v.Number)
}

// blobKey finds the key and version a blob names and checks that the
// caller may use them.
func (s *Service) blobKey(ctx context.Context, o *op, action string, b ciphertext.Blob, keyID string) (store.Key, store.Version, error) {
	var kv keyVersion
	var given keyRef
	if keyID != "" {
		var err error
		if given, err = s.parseKeyRef("keyId", keyID); err != nil {
			return kv.k, kv.v, err
		}
	}
	id := uuid.UUID(b.KeyID).String()
	err := s.store.View(ctx, func(tx store.Tx) error {
		k, err := tx.Key(id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return newErr(CodeInvalidCipher, "the ciphertext names a key that does not exist")
			}
			return err
		}
		o.rec.KeyID, o.rec.KeyVersion = k.ID, b.Version
		switch k.State {
		case store.KeyCreating:
			return newErr(CodeInvalidCipher, "the ciphertext names a key that does not exist")
		case store.KeyDeleted:
			return newErr(CodeNotFound, "Key '%s' does not exist", s.keyARN(k.ID))
		}
		if keyID != "" {
			g, err := s.resolve(tx, given)
			if err != nil {
				return err
			}
			if g.ID != k.ID {
				return newErr(CodeIncorrectKey, "The key ID in the request does not identify a CMK that can perform this operation.")
			}
		}
		err = o.authorizeIn(tx, action, &k, given.alias)
		if err != nil {
			return err
		}
		if err := s.usable(k, UsageEncrypt); err != nil {
			return err
		}
		if k.Spec != SpecSymmetric {
			return newErr(CodeInvalidCipher, "%s is an asymmetric key: decrypt its ciphertexts with its EncryptionAlgorithm", s.keyARN(k.ID))
		}
		v, err := tx.Version(k.ID, b.Version)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err // the store failed: not the ciphertext's fault
		}
		if err != nil || v.State != store.VersionActive {
			return newErr(CodeInvalidCipher, "the ciphertext names key material version %d, which %s does not have", b.Version, s.keyARN(k.ID))
		}
		if b.Mechanism == ciphertext.AESKW && k.Mechanism != ciphertext.AESKW.String() {
			return newErr(CodeInvalidCipher, "%s never makes aes-kw ciphertexts", s.keyARN(k.ID))
		}
		// An aes-cbc-hmac key makes only aes-cbc-hmac ciphertexts, and only
		// it does: its versions have the HMAC key the others lack.
		if portable := k.Mechanism == ciphertext.AESCBCHMAC.String(); portable != (b.Mechanism == ciphertext.AESCBCHMAC) {
			return newErr(CodeInvalidCipher, "%s never makes %s ciphertexts", s.keyARN(k.ID), b.Mechanism)
		}
		kv.k, kv.v = k, v
		return nil
	})
	return kv.k, kv.v, storeErrOrNil(err)
}

// ReEncrypt opens a ciphertext and seals its plaintext under another key
// (or the newest version of the same one); the plaintext never leaves the
// service.
func (s *Service) ReEncrypt(ctx context.Context, in ReEncryptInput) (out ReEncryptOutput, err error) {
	o := s.begin(ctx, "kms:ReEncrypt")
	defer endWith(o, &out, &err)
	if in.DryRun {
		return out, dryRunRefused()
	}
	o.withContext(in.DestinationEncryptionContext)
	if err := errors.Join(checkAlgorithm("sourceEncryptionAlgorithm", in.SourceEncryptionAlgorithm), checkAlgorithm("destinationEncryptionAlgorithm", in.DestinationEncryptionAlgorithm)); err != nil {
		return out, newErr(CodeValidation, "%v", err)
	}
	if err := o.withGrantTokens(in.GrantTokens); err != nil {
		return out, err
	}
	o.grantContext = in.SourceEncryptionContext
	plain, src, _, err := s.openAny(ctx, o, "kms:ReEncryptFrom", in.CiphertextBlob, in.SourceKeyId, in.SourceEncryptionAlgorithm, in.SourceEncryptionContext)
	o.grantContext = in.DestinationEncryptionContext
	if err != nil {
		return out, err
	}
	defer clear(plain)
	// From here the record names the destination key: drop the alias the
	// caller may have named the source by.
	o.rec.Action, o.rec.Alias = "kms:ReEncryptTo", ""
	k, v, err := s.encryptionKey(ctx, o, in.DestinationKeyId, true)
	o.rec.Action = "kms:ReEncrypt"
	if err != nil {
		return out, err
	}
	alg, err := keyAlgorithm(k, in.DestinationEncryptionAlgorithm)
	if err != nil {
		return out, err
	}
	var blob []byte
	if asymmetricEncryption(k) {
		blob, err = s.encryptAsymmetric(ctx, k, v, alg, in.DestinationEncryptionContext, plain)
	} else {
		// To an aes-kw key too the plaintext is sealed with AES-GCM, as
		// Encrypt does: key wrap only exports keys the token made itself.
		blob, err = s.seal(ctx, k, v, in.DestinationEncryptionContext, s.sealPlaintext(ctx, v, plain))
	}
	if err != nil {
		return out, err
	}
	srcAlg := in.SourceEncryptionAlgorithm
	if srcAlg == "" {
		srcAlg = symmetricAlg
	}
	return ReEncryptOutput{CiphertextBlob: blob, SourceKeyId: s.keyARN(src.ID), KeyId: s.keyARN(k.ID),
		SourceEncryptionAlgorithm: srcAlg, DestinationEncryptionAlgorithm: alg}, nil
}

// GenerateRandom returns 1 to 1024 random bytes from the token.
func (s *Service) GenerateRandom(ctx context.Context, in GenerateRandomInput) (out GenerateRandomOutput, err error) {
	o := s.begin(ctx, "kms:GenerateRandom")
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	if in.Recipient != nil {
		return out, recipientRefused()
	}
	if in.NumberOfBytes < 1 || in.NumberOfBytes > maxRandom {
		return out, newErr(CodeValidation, "1 validation error detected: Value '%d' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and %d", in.NumberOfBytes, maxRandom)
	}
	b, err := s.hsm.GenerateRandom(ctx, in.NumberOfBytes)
	if err != nil {
		return out, s.hsmErr(err, "", 0)
	}
	return GenerateRandomOutput{Plaintext: b}, nil
}
