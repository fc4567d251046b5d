package service

import (
	"strings"
	"testing"
)

// TestDryRunAndRecipientRefused proves that every operation that takes
// DryRun refuses it, and every one that takes Recipient refuses that,
// with UnsupportedOperationException and nothing made: a dry run must not
// do the operation, and a result meant for an attested enclave must not
// come back in plaintext.
func TestDryRunAndRecipientRefused(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	sym := f.createKey(t, CreateKeyInput{})
	ecc := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
	mac := f.createKey(t, CreateKeyInput{KeySpec: "HMAC_256"})
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: sym, Plaintext: []byte("secret")})
	if err != nil {
		t.Fatal(err)
	}
	recipient := &RecipientInfo{KeyEncryptionAlgorithm: "RSAES_OAEP_SHA_256", AttestationDocument: []byte("doc")}
	for _, tc := range []struct {
		name string
		call func() (made bool, err error)
		msg  string
	}{
		{"Encrypt", func() (bool, error) {
			out, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: sym, Plaintext: []byte("x"), DryRun: true})
			return out.CiphertextBlob != nil, err
		}, "DryRun"},
		{"Decrypt", func() (bool, error) {
			out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob, DryRun: true})
			return out.Plaintext != nil, err
		}, "DryRun"},
		{"ReEncrypt", func() (bool, error) {
			out, err := f.svc.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: sym, DryRun: true})
			return out.CiphertextBlob != nil, err
		}, "DryRun"},
		{"GenerateDataKey", func() (bool, error) {
			out, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: sym, KeySpec: "AES_256", DryRun: true})
			return out.Plaintext != nil || out.CiphertextBlob != nil, err
		}, "DryRun"},
		{"GenerateDataKeyWithoutPlaintext", func() (bool, error) {
			out, err := f.svc.GenerateDataKeyWithoutPlaintext(ctx, GenerateDataKeyInput{KeyId: sym, KeySpec: "AES_256", DryRun: true})
			return out.CiphertextBlob != nil, err
		}, "DryRun"},
		{"GenerateDataKeyPair", func() (bool, error) {
			out, err := f.svc.GenerateDataKeyPair(ctx, GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "ECC_NIST_P256", DryRun: true})
			return out.PrivateKeyPlaintext != nil || out.PrivateKeyCiphertextBlob != nil, err
		}, "DryRun"},
		{"GenerateDataKeyPairWithoutPlaintext", func() (bool, error) {
			out, err := f.svc.GenerateDataKeyPairWithoutPlaintext(ctx, GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "ECC_NIST_P256", DryRun: true})
			return out.PrivateKeyCiphertextBlob != nil, err
		}, "DryRun"},
		{"Sign", func() (bool, error) {
			out, err := f.svc.Sign(ctx, SignInput{KeyId: ecc, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256", DryRun: true})
			return out.Signature != nil, err
		}, "DryRun"},
		{"Verify", func() (bool, error) {
			out, err := f.svc.Verify(ctx, VerifyInput{KeyId: ecc, Message: []byte("m"), Signature: []byte("s"), SigningAlgorithm: "ECDSA_SHA_256", DryRun: true})
			return out.SignatureValid, err
		}, "DryRun"},
		{"GenerateMac", func() (bool, error) {
			out, err := f.svc.GenerateMac(ctx, GenerateMacInput{KeyId: mac, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_256", DryRun: true})
			return out.Mac != nil, err
		}, "DryRun"},
		{"VerifyMac", func() (bool, error) {
			out, err := f.svc.VerifyMac(ctx, VerifyMacInput{KeyId: mac, Message: []byte("m"), Mac: make([]byte, 32), MacAlgorithm: "HMAC_SHA_256", DryRun: true})
			return out.MacValid, err
		}, "DryRun"},
		{"Decrypt to an enclave", func() (bool, error) {
			out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: recipient})
			return out.Plaintext != nil, err
		}, "Recipient"},
		{"GenerateDataKey to an enclave", func() (bool, error) {
			out, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: sym, KeySpec: "AES_256", Recipient: recipient})
			return out.Plaintext != nil || out.CiphertextBlob != nil, err
		}, "Recipient"},
		{"GenerateDataKeyPair to an enclave", func() (bool, error) {
			out, err := f.svc.GenerateDataKeyPair(ctx, GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "ECC_NIST_P256", Recipient: recipient})
			return out.PrivateKeyPlaintext != nil || out.PrivateKeyCiphertextBlob != nil, err
		}, "Recipient"},
		{"GenerateRandom to an enclave", func() (bool, error) {
			out, err := f.svc.GenerateRandom(ctx, GenerateRandomInput{NumberOfBytes: 32, Recipient: recipient})
			return out.Plaintext != nil, err
		}, "Recipient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			made, err := tc.call()
			wantCode(t, err, CodeUnsupported)
			if made {
				t.Fatal("a result came back beside the refusal")
			}
			if e := err.Error(); !strings.Contains(e, tc.msg) {
				t.Fatalf("error %q does not name %s", e, tc.msg)
			}
		})
	}
}
