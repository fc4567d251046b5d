package service

import (
	"context"
	"slices"
	"strings"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/policy"
)

// Data key pairs: AWS KMS's GenerateDataKeyPair. The pair is made by the
// token (hsm.Token.GenerateDataKeyPair), its private key sealed under a
// symmetric encryption key as Encrypt seals a plaintext, so that Decrypt
// of PrivateKeyCiphertextBlob gives the PKCS#8 private key back.

// GenerateDataKeyPairInput is the request of GenerateDataKeyPair and
// GenerateDataKeyPairWithoutPlaintext.
type GenerateDataKeyPairInput struct {
	KeyId             string            `json:"KeyId"`
	KeyPairSpec       string            `json:"KeyPairSpec"`
	EncryptionContext map[string]string `json:"EncryptionContext"`
	GrantTokens       []string          `json:"GrantTokens"`
	// Recipient is refused (see RecipientInfo); only GenerateDataKeyPair
	// takes it.
	Recipient *RecipientInfo `json:"Recipient"`
	// DryRun is refused: hsmkms does not check a request without doing it.
	DryRun bool `json:"DryRun"`
}

// GenerateDataKeyPairOutput is the response of GenerateDataKeyPair;
// PrivateKeyPlaintext is empty for GenerateDataKeyPairWithoutPlaintext.
type GenerateDataKeyPairOutput struct {
	KeyId                    string `json:"KeyId"`
	KeyPairSpec              string `json:"KeyPairSpec"`
	PrivateKeyCiphertextBlob []byte `json:"PrivateKeyCiphertextBlob"`
	PrivateKeyPlaintext      []byte `json:"PrivateKeyPlaintext,omitempty"`
	PublicKey                []byte `json:"PublicKey"`
	KeyMaterialId            string `json:"KeyMaterialId,omitempty"`
}

// dataKeyPairSpecs maps the key pair specs hsmkms makes to the token's.
var dataKeyPairSpecs = map[string]hsm.KeySpec{
	"RSA_2048": hsm.RSA2048, "RSA_3072": hsm.RSA3072, "RSA_4096": hsm.RSA4096,
	"ECC_NIST_P256": hsm.ECP256, "ECC_NIST_P384": hsm.ECP384, "ECC_NIST_P521": hsm.ECP521,
	"ECC_SECG_P256K1": hsm.ECSecp256k1,
}

// dataKeyPairSpecValues are AWS KMS's DataKeyPairSpec values, in its order:
// those hsmkms does not make are refused as unsupported, not as invalid.
var dataKeyPairSpecValues = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
	"ECC_NIST_P521", "ECC_SECG_P256K1", "SM2", "ECC_NIST_EDWARDS25519", "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024"}

// GenerateDataKeyPair makes a data key pair and returns its public key,
// its private key, and the private key sealed under KeyId.
func (s *Service) GenerateDataKeyPair(ctx context.Context, in GenerateDataKeyPairInput) (GenerateDataKeyPairOutput, error) {
	return s.generateDataKeyPair(ctx, policy.ActionGenerateDataKeyPair, in, true)
}

// GenerateDataKeyPairWithoutPlaintext is GenerateDataKeyPair without the
// plaintext private key.
func (s *Service) GenerateDataKeyPairWithoutPlaintext(ctx context.Context, in GenerateDataKeyPairInput) (GenerateDataKeyPairOutput, error) {
	return s.generateDataKeyPair(ctx, policy.ActionGenerateDataKeyPairWithoutPlaintext, in, false)
}

func (s *Service) generateDataKeyPair(ctx context.Context, action string, in GenerateDataKeyPairInput, plain bool) (out GenerateDataKeyPairOutput, err error) {
	// Deferred before endWith, so run after it: a private key whose audit
	// record failed is cleared too.
	var priv []byte
	defer func() {
		if !plain || err != nil {
			clear(priv)
		}
	}()
	o := s.begin(ctx, action)
	defer endWith(o, &out, &err)
	if err := o.dataKeyRequest(in.EncryptionContext, in.DryRun, in.Recipient, in.GrantTokens); err != nil {
		return out, err
	}
	spec, err := dataKeyPairSpec(in.KeyPairSpec)
	if err != nil {
		return out, err
	}
	// Checked here, not first in seal as for GenerateDataKey: a bad
	// context must not cost the token a key pair (seconds for RSA_4096).
	if err := ciphertext.Context(in.EncryptionContext).Validate(); err != nil {
		return out, newErr(CodeValidation, "%v", err)
	}
	k, v, err := s.encryptionKey(ctx, o, in.KeyId, false)
	if err != nil {
		return out, err
	}
	// The pair is made inside the sealer, as GenerateDataKey makes its data
	// key: seal calls it only once it has taken a seal from the version's
	// budget, so a key that has sealed its limit refuses the request
	// before the token spends seconds on an RSA_4096 pair. (Found by
	// review: the budget was checked after the pair was made.) A token
	// error is mapped by seal with hsmErr, as it was here. A pair the
	// token fails to make now uses one seal of the budget, as a data key
	// SealDataKey fails to make does: the budget may over-count, never
	// under-count.
	var pub []byte
	generate := func() (sl sealer, err error) {
		priv, pub, err = s.hsm.GenerateDataKeyPair(ctx, spec)
		return s.sealPlaintext(ctx, v, priv), err
	}
	blob, err := s.seal(ctx, k, v, in.EncryptionContext, sealer{
		gcm: func(iv, aad []byte) ([]byte, error) {
			sl, err := generate()
			if err != nil {
				return nil, err
			}
			return sl.gcm(iv, aad)
		},
		portable: func(iv, header, context []byte) ([]byte, error) {
			sl, err := generate()
			if err != nil {
				return nil, err
			}
			return sl.portable(iv, header, context)
		},
	})
	if err != nil {
		return out, err
	}
	out = GenerateDataKeyPairOutput{KeyId: s.keyARN(k.ID), KeyPairSpec: in.KeyPairSpec, PrivateKeyCiphertextBlob: blob,
		PublicKey: pub, KeyMaterialId: materialID(v.Number)}
	if plain {
		out.PrivateKeyPlaintext = priv
	}
	return out, nil
}

// dataKeyPairSpec reads KeyPairSpec: one hsmkms makes, or an error saying
// whether AWS KMS knows it.
func dataKeyPairSpec(name string) (hsm.KeySpec, error) {
	if name == "" {
		return "", newErr(CodeValidation, "1 validation error detected: Value null at 'keyPairSpec' failed to satisfy constraint: Member must not be null")
	}
	if spec, ok := dataKeyPairSpecs[name]; ok {
		return spec, nil
	}
	if slices.Contains(dataKeyPairSpecValues, name) {
		return "", newErr(CodeUnsupported, "KeyPairSpec %s is not supported", name)
	}
	return "", newErr(CodeValidation, "1 validation error detected: Value '%s' at 'keyPairSpec' failed to satisfy constraint: Member must satisfy enum value set: [%s]", name, strings.Join(dataKeyPairSpecValues, ", "))
}
