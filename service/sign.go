package service

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"slices"
	"strings"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// maxMessage bounds a RAW message to Sign or Verify, as AWS KMS does.
const maxMessage = 4096

// Sign signs a message or digest with an asymmetric key's private half on
// the token.
func (s *Service) Sign(ctx context.Context, in SignInput) (out SignOutput, err error) {
	o := s.begin(ctx, "kms:Sign")
	defer endWith(o, &out, &err)
	if in.DryRun {
		return out, dryRunRefused()
	}
	if err := o.withGrantTokens(in.GrantTokens); err != nil {
		return out, err
	}
	k, v, digest, err := s.signingRequest(ctx, o, in.KeyId, in.Message, in.MessageType, in.SigningAlgorithm)
	if err != nil {
		return out, err
	}
	sig, err := s.hsm.Sign(ctx, v.ObjectID, hsm.SigningAlgorithm(in.SigningAlgorithm), digest)
	if err != nil {
		return out, s.hsmErr(err, k.ID, v.Number)
	}
	return SignOutput{KeyId: s.keyARN(k.ID), Signature: sig, SigningAlgorithm: in.SigningAlgorithm}, nil
}

// Verify checks a signature on the token. A signature that does not verify
// is a KMSInvalidSignatureException, as in AWS KMS.
func (s *Service) Verify(ctx context.Context, in VerifyInput) (out VerifyOutput, err error) {
	o := s.begin(ctx, "kms:Verify")
	defer endWith(o, &out, &err)
	if in.DryRun {
		return out, dryRunRefused()
	}
	if err := o.withGrantTokens(in.GrantTokens); err != nil {
		return out, err
	}
	k, v, digest, err := s.signingRequest(ctx, o, in.KeyId, in.Message, in.MessageType, in.SigningAlgorithm)
	if err != nil {
		return out, err
	}
	if len(in.Signature) == 0 || len(in.Signature) > 6144 {
		return out, newErr(CodeValidation, "1 validation error detected: Value at 'signature' failed to satisfy constraint: Member must have length between 1 and 6144")
	}
	if err := s.hsm.Verify(ctx, v.ObjectID, hsm.SigningAlgorithm(in.SigningAlgorithm), digest, in.Signature); err != nil {
		return out, s.hsmErr(err, k.ID, v.Number)
	}
	return VerifyOutput{KeyId: s.keyARN(k.ID), SignatureValid: true, SigningAlgorithm: in.SigningAlgorithm}, nil
}

// signingRequest validates a Sign or Verify request and returns the key,
// its version and the digest to sign.
func (s *Service) signingRequest(ctx context.Context, o *op, ident string, msg []byte, msgType, alg string) (store.Key, store.Version, []byte, error) {
	if err := checkSigningAlgorithm(alg); err != nil {
		return store.Key{}, store.Version{}, nil, err
	}
	if msgType != "" && !slices.Contains(messageTypeValues, msgType) {
		return store.Key{}, store.Version{}, nil, enumErr("messageType", msgType, messageTypeValues)
	}
	k, err := s.authorizedKey(ctx, o, ident)
	if err != nil {
		return k, store.Version{}, nil, err
	}
	if err := s.usable(k, UsageSign); err != nil {
		return k, store.Version{}, nil, err
	}
	if !slices.Contains(keySpecs[k.Spec].signing, alg) {
		return k, store.Version{}, nil, newErr(CodeInvalidKeyUsage, "SigningAlgorithm %q is not valid for %s; use one of %v", alg, s.keyARN(k.ID), keySpecs[k.Spec].signing)
	}
	digest, err := digestOf(alg, msg, msgType)
	if err != nil {
		return k, store.Version{}, nil, err
	}
	var v store.Version
	err = s.store.View(ctx, func(tx store.Tx) error {
		v, err = tx.Version(k.ID, k.CurrentVersion)
		return err
	})
	o.rec.KeyVersion = v.Number
	return k, v, digest, storeErrOrNil(err)
}

// signingAlgorithmValues is AWS KMS's SigningAlgorithmSpec enum, in its
// order: a value outside it is a ValidationException, one inside it that
// the key cannot use an InvalidKeyUsageException.
var signingAlgorithmValues = []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
	"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
	"ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512", "SM2DSA", "ML_DSA_SHAKE_256"}

// messageTypeValues is AWS KMS's MessageType enum, in its order. A value
// outside it is a ValidationException before the key is looked up.
var messageTypeValues = []string{"RAW", "DIGEST", "EXTERNAL_MU"}

// checkSigningAlgorithm refuses a missing SigningAlgorithm, or one AWS KMS
// does not know, as AWS KMS does.
func checkSigningAlgorithm(alg string) error {
	switch {
	case alg == "":
		return newErr(CodeValidation, "1 validation error detected: Value null at 'signingAlgorithm' failed to satisfy constraint: Member must not be null")
	case !slices.Contains(signingAlgorithmValues, alg):
		return newErr(CodeValidation, "1 validation error detected: Value '%s' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [%s]",
			alg, strings.Join(signingAlgorithmValues, ", "))
	}
	return nil
}

// digestOf hashes a RAW message with the algorithm's hash, or checks that a
// DIGEST has its length.
func digestOf(alg string, msg []byte, msgType string) ([]byte, error) {
	size := 32
	switch alg {
	case string(hsm.ECDSASHA384):
		size = 48
	case string(hsm.ECDSASHA512):
		size = 64
	}
	switch msgType {
	case "", "RAW":
		if len(msg) == 0 || len(msg) > maxMessage {
			return nil, newErr(CodeValidation, "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and %d", maxMessage)
		}
		switch size {
		case 48:
			d := sha512.Sum384(msg)
			return d[:], nil
		case 64:
			d := sha512.Sum512(msg)
			return d[:], nil
		}
		d := sha256.Sum256(msg)
		return d[:], nil
	case "DIGEST":
		if len(msg) != size {
			return nil, newErr(CodeValidation, "Digest is invalid length for algorithm %s: %d bytes, want %d", alg, len(msg), size)
		}
		return msg, nil
	}
	// EXTERNAL_MU is for ML-DSA keys only, which hsmkms does not make.
	return nil, newErr(CodeValidation, "MessageType %s is valid only with the ML_DSA_SHAKE_256 signing algorithm", msgType)
}

// GetPublicKey returns an asymmetric key's public half, DER-encoded
// SubjectPublicKeyInfo as AWS KMS returns it.
func (s *Service) GetPublicKey(ctx context.Context, in KeyIDInput) (out GetPublicKeyOutput, err error) {
	o := s.begin(ctx, "kms:GetPublicKey")
	defer endWith(o, &out, &err)
	k, err := s.authorizedKey(ctx, o, in.KeyId)
	if err != nil {
		return out, err
	}
	ks := keySpecs[k.Spec]
	if !ks.asymmetric() {
		return out, newErr(CodeUnsupported, "%s is a %s key; it has no public key", s.keyARN(k.ID), k.Spec)
	}
	if err := s.usable(k, k.Usage); err != nil {
		return out, err
	}
	var v store.Version
	err = s.store.View(ctx, func(tx store.Tx) error {
		v, err = tx.Version(k.ID, k.CurrentVersion)
		return err
	})
	if err != nil {
		return out, storeErr(err)
	}
	o.rec.KeyVersion = v.Number
	pub, err := s.hsm.PublicKey(ctx, v.ObjectID)
	if err != nil {
		return out, s.hsmErr(err, k.ID, v.Number)
	}
	der, err := hsm.MarshalPublicKey(pub)
	if err != nil {
		return out, wrapErr(CodeInternal, err, "encoding the public key")
	}
	enc, sign, _ := ks.algorithms(k.Usage)
	return GetPublicKeyOutput{KeyId: s.keyARN(k.ID), PublicKey: der, CustomerMasterKeySpec: k.Spec,
		KeySpec: k.Spec, KeyUsage: k.Usage, SigningAlgorithms: sign, EncryptionAlgorithms: enc}, nil
}
