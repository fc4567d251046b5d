package service

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/policy"
)

// TestGenerateDataKeyPair proves, for every key pair spec and every
// symmetric mechanism, that GenerateDataKeyPair returns a PKCS#8 private
// key whose public key is PublicKey, and a PrivateKeyCiphertextBlob that
// Decrypt opens to that private key with the same encryption context and
// no other; that the WithoutPlaintext form returns no private key but a
// blob that opens to one matching its PublicKey; and that the output names
// the key's ARN, the spec and the version's material.
func TestGenerateDataKeyPair(t *testing.T) {
	k := newBlobKit(t)
	ctx := admin(t)
	ec := map[string]string{"purpose": "signing"}
	for _, mech := range []string{"aes-gcm", "aes-kw", "aes-cbc-hmac"} {
		id := k.key(mech)
		for _, spec := range []string{"ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "RSA_2048"} {
			t.Run(mech+"/"+spec, func(t *testing.T) {
				out, err := k.svc.GenerateDataKeyPair(ctx, GenerateDataKeyPairInput{KeyId: id, KeyPairSpec: spec, EncryptionContext: ec})
				if err != nil {
					t.Fatalf("GenerateDataKeyPair: %v", err)
				}
				if out.KeyId != k.arn(id) || out.KeyPairSpec != spec || out.KeyMaterialId == "" {
					t.Errorf("output names key %q, spec %q, material %q; want %s, %s and a material ID", out.KeyId, out.KeyPairSpec, out.KeyMaterialId, k.arn(id), spec)
				}
				wantMatchingPair(t, out.PrivateKeyPlaintext, out.PublicKey)
				dec, err := k.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: out.PrivateKeyCiphertextBlob, EncryptionContext: ec})
				if err != nil || !bytes.Equal(dec.Plaintext, out.PrivateKeyPlaintext) {
					t.Fatalf("Decrypt of PrivateKeyCiphertextBlob: %v, or not the private key", err)
				}
				if _, err := k.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: out.PrivateKeyCiphertextBlob}); CodeOf(err) != CodeInvalidCipher {
					t.Errorf("Decrypt without the encryption context: %v, want InvalidCiphertextException", err)
				}

				wo, err := k.svc.GenerateDataKeyPairWithoutPlaintext(ctx, GenerateDataKeyPairInput{KeyId: id, KeyPairSpec: spec})
				if err != nil || wo.PrivateKeyPlaintext != nil {
					t.Fatalf("GenerateDataKeyPairWithoutPlaintext: %v, private key returned %v", err, wo.PrivateKeyPlaintext != nil)
				}
				dec, err = k.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: wo.PrivateKeyCiphertextBlob})
				if err != nil {
					t.Fatalf("Decrypt of the WithoutPlaintext blob: %v", err)
				}
				wantMatchingPair(t, dec.Plaintext, wo.PublicKey)
				if bytes.Equal(wo.PublicKey, out.PublicKey) {
					t.Error("two calls returned the same key pair")
				}
			})
		}
	}
}

// wantMatchingPair checks that priv is PKCS#8 DER whose public key
// encodes to pub.
func wantMatchingPair(t *testing.T, priv, pub []byte) {
	t.Helper()
	key, err := x509.ParsePKCS8PrivateKey(priv)
	if err != nil {
		t.Fatalf("the private key is not PKCS#8: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.(crypto.Signer).Public())
	if err != nil || !bytes.Equal(der, pub) {
		t.Fatalf("PublicKey is not the private key's public key (%v)", err)
	}
}

// TestGenerateDataKeyPairRefusals proves the errors of GenerateDataKeyPair
// with AWS's types and messages, before any key pair is made: a missing or
// unknown spec, specs AWS KMS knows and hsmkms does not make, an
// asymmetric or HMAC key, a disabled key, an unknown key and none. (An
// aes-kw key takes a context here, unlike in GenerateDataKey: the private
// key is sealed as Encrypt seals, which binds it; TestGenerateDataKeyPair
// proves it.)
func TestGenerateDataKeyPairRefusals(t *testing.T) {
	k := newBlobKit(t)
	ctx := admin(t)
	sym := k.key("aes-gcm")
	signing := k.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: UsageSign})
	mac := k.createKey(t, CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: UsageMAC})
	disabled := k.key("aes-gcm")
	if err := k.svc.DisableKey(ctx, KeyIDInput{KeyId: disabled}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   GenerateDataKeyPairInput
		code Code
		msg  string
	}{
		{"no spec", GenerateDataKeyPairInput{KeyId: sym}, CodeValidation,
			"1 validation error detected: Value null at 'keyPairSpec' failed to satisfy constraint: Member must not be null"},
		{"unknown spec", GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "RSA_1024"}, CodeValidation,
			"1 validation error detected: Value 'RSA_1024' at 'keyPairSpec' failed to satisfy constraint: Member must satisfy enum value set: " +
				"[RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, SM2, ECC_NIST_EDWARDS25519, ML_KEM_512, ML_KEM_768, ML_KEM_1024]"},
		{"SM2", GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "SM2"}, CodeUnsupported, "KeyPairSpec SM2 is not supported"},
		{"Ed25519", GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "ECC_NIST_EDWARDS25519"}, CodeUnsupported, "KeyPairSpec ECC_NIST_EDWARDS25519 is not supported"},
		{"ML-KEM", GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "ML_KEM_768"}, CodeUnsupported, "KeyPairSpec ML_KEM_768 is not supported"},
		{"signing key", GenerateDataKeyPairInput{KeyId: signing, KeyPairSpec: "ECC_NIST_P256"}, CodeInvalidKeyUsage, ""},
		{"HMAC key", GenerateDataKeyPairInput{KeyId: mac, KeyPairSpec: "ECC_NIST_P256"}, CodeInvalidKeyUsage, ""},
		{"disabled key", GenerateDataKeyPairInput{KeyId: disabled, KeyPairSpec: "ECC_NIST_P256"}, CodeDisabled, ""},
		{"unknown key", GenerateDataKeyPairInput{KeyId: "alias/none", KeyPairSpec: "ECC_NIST_P256"}, CodeNotFound, ""},
		{"no key", GenerateDataKeyPairInput{KeyPairSpec: "ECC_NIST_P256"}, CodeValidation, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := k.svc.GenerateDataKeyPair(ctx, tc.in)
			if CodeOf(err) != tc.code || !strings.Contains(MessageOf(err), tc.msg) {
				t.Fatalf("GenerateDataKeyPair = %v, want %s %q", err, tc.code, tc.msg)
			}
			if out.PrivateKeyPlaintext != nil || out.PrivateKeyCiphertextBlob != nil || out.PublicKey != nil {
				t.Fatal("a refused request returned key material")
			}
		})
	}
}

// pairCounter counts the key pairs the token is asked for.
type pairCounter struct {
	HSM
	n atomic.Int32
}

func (p *pairCounter) GenerateDataKeyPair(ctx context.Context, spec hsm.KeySpec) ([]byte, []byte, error) {
	p.n.Add(1)
	return p.HSM.GenerateDataKeyPair(ctx, spec)
}

// TestGenerateDataKeyPairBadContextBeforeToken proves that a malformed
// encryption context is refused before the token makes a key pair, as
// GenerateDataKey refuses it before any token call. (Found by review: it
// was refused only in the seal, after an RSA-4096 generation of about a
// second.)
func TestGenerateDataKeyPairBadContextBeforeToken(t *testing.T) {
	var pc *pairCounter
	f := newFixture(t, "", func(c *Config) { pc = &pairCounter{HSM: c.HSM}; c.HSM = pc })
	k := blobKit{fixture: f, t: t}
	id := k.key("aes-gcm")
	for name, ec := range map[string]map[string]string{
		"empty key": {"": "v"},
		"too long":  {"k": strings.Repeat("x", 9000)},
	} {
		t.Run(name, func(t *testing.T) {
			before := pc.n.Load()
			_, err := k.svc.GenerateDataKeyPair(admin(t), GenerateDataKeyPairInput{KeyId: id, KeyPairSpec: "RSA_4096", EncryptionContext: ec})
			if CodeOf(err) != CodeValidation {
				t.Errorf("GenerateDataKeyPair = %v, want ValidationException", err)
			}
			if n := pc.n.Load() - before; n != 0 {
				t.Errorf("the token made %d key pairs before the bad context was refused", n)
			}
		})
	}
}

// TestGenerateDataKeyPairRefusedBeforeToken proves that every check that
// can refuse GenerateDataKeyPair runs before the token makes a key pair:
// a key version that has sealed its limit, a disabled key, a signing key
// and a caller the policy denies cost the token nothing. (Found by
// review: the seal budget was checked only in the seal, after an
// RSA_4096 generation of about a second.)
func TestGenerateDataKeyPairRefusedBeforeToken(t *testing.T) {
	var pc *pairCounter
	f := newFixture(t, "", func(c *Config) {
		// One seal per version, and no rotation to renew it.
		c.SealBlock, c.SealLimit = 1, 1
		pc = &pairCounter{HSM: c.HSM}
		c.HSM = pc
	})
	k := blobKit{fixture: f, t: t}
	spent := k.key("aes-gcm")
	if _, err := k.svc.Encrypt(admin(t), EncryptInput{KeyId: spent, Plaintext: []byte("the only seal")}); err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	disabled := k.key("aes-gcm")
	if err := k.svc.DisableKey(admin(t), KeyIDInput{KeyId: disabled}); err != nil {
		t.Fatal(err)
	}
	signing := k.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: UsageSign})
	usable := k.key("aes-gcm")
	denied := as(t, "AKIADENIED", policy.Statement{Effect: "Allow", Actions: []string{"kms:Encrypt"}, Resources: []string{"*"}})
	for _, tc := range []struct {
		name string
		ctx  context.Context
		key  string
		code Code
	}{
		{"seal budget spent", admin(t), spent, CodeInvalidState},
		{"disabled key", admin(t), disabled, CodeDisabled},
		{"signing key", admin(t), signing, CodeInvalidKeyUsage},
		{"denied by policy", denied, usable, CodeAccessDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := pc.n.Load()
			out, err := k.svc.GenerateDataKeyPair(tc.ctx, GenerateDataKeyPairInput{KeyId: tc.key, KeyPairSpec: "RSA_4096"})
			if CodeOf(err) != tc.code {
				t.Errorf("GenerateDataKeyPair = %v, want %s", err, tc.code)
			}
			if out.PrivateKeyPlaintext != nil || out.PublicKey != nil {
				t.Error("a refused request returned key material")
			}
			if n := pc.n.Load() - before; n != 0 {
				t.Errorf("the token made %d key pairs for a refused request", n)
			}
		})
	}
}
