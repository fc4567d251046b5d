package tests

import (
	"bytes"
	"crypto/sha256"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/hsmkms/hsmkms/softhsm/nss"
)

// TestNSS serves from NSS's softoken, a module that reads its database
// from C_Initialize's parameters (--pkcs11-init-params, here through
// HSMKMS_PKCS11_INIT_PARAMS) and whose AES-GCM fails hsmkms's self-test
// (C_Encrypt's length query answers 0): token info says so, data keys use
// aes-cbc-hmac, and EC signing, which NSS has, works. The softoken also
// wraps keys whose CKA_EXTRACTABLE is false: serve refuses it, naming
// that, unless --insecure-token (HSMKMS_INSECURE_TOKEN) says it is for
// development.
func TestNSS(t *testing.T) {
	n, err := nss.New(t.TempDir(), "hsmkms-nss", "nss-e2e-pin")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"HSMKMS_PKCS11_INIT_PARAMS=" + n.InitParams, nss.FastPBE}
	s := newSandbox(t)

	slots := s.run(env, "slot", "list", "--pkcs11-module", n.ModulePath)
	if slots.code != 0 || !strings.Contains(slots.stdout, "hsmkms-nss") {
		t.Errorf("slot list lacks the token: %v", slots)
	}
	bare := s.run(nil, "slot", "list", "--pkcs11-module", n.ModulePath)
	if bare.code != 5 || !strings.Contains(bare.stderr, "CKR_ARGUMENTS_BAD") {
		t.Errorf("slot list without the softoken's parameters: want exit 5 naming CKR_ARGUMENTS_BAD: %v", bare)
	}
	info := s.run(append(env, "HSMKMS_PIN="+n.PIN), "token", "info", "--pkcs11-module", n.ModulePath, "--token-label", n.Label)
	for _, want := range []string{"Mozilla Foundation", "CKR_BUFFER_TOO_SMALL", "aes-cbc-hmac  yes", "ecdsa         yes",
		"unextractable-keys", "C_WrapKey with CKM_AES_KEY_WRAP wrapped a key whose CKA_EXTRACTABLE is false", "refused: hsm: probe mechanisms"} {
		if info.code != 0 || !containsWords(info.stdout, want) {
			t.Errorf("token info lacks %q: %v", want, info)
		}
	}

	// The softoken lets unextractable keys out, so serve refuses it
	// unless told it is a development token.
	dir := t.TempDir()
	refused := s.run(append(env, "HSMKMS_PIN="+n.PIN), "serve", "--pkcs11-module", n.ModulePath, "--token-label", n.Label,
		"--data-dir", dir, "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--audit-log", filepath.Join(dir, "audit.log"))
	if refused.code != 1 || !strings.Contains(refused.stderr, "keys that stay unextractable (C_WrapKey with CKM_AES_KEY_WRAP wrapped a key whose CKA_EXTRACTABLE is false") ||
		!strings.Contains(refused.stderr, "(unextractable-keys)") {
		t.Errorf("serve on the softoken without --insecure-token: want exit 1 naming unextractable-keys and the fault: %v", refused)
	}

	env = append(env, "HSMKMS_INSECURE_TOKEN=true")
	c := &cluster{t: t, s: s, tok: clusterToken{ModulePath: n.ModulePath, Label: n.Label, PIN: n.PIN, Env: env},
		root: aws.Credentials{AccessKeyID: "AKIANSSSOFTOKEN00001", SecretAccessKey: "nss-softoken-root-secret-0001"}}
	r := c.launch(0)
	r.waitServing()
	ctx := ctxT(t)
	k := r.userKMS(c.root)
	key, err := k.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	encCtx := map[string]string{"site": "b"}
	dk, err := k.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: key.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256, EncryptionContext: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	if dk.CiphertextBlob[3] != 3 {
		t.Errorf("the blob's mechanism byte is %d, want 3 (aes-cbc-hmac: the softoken's AES-GCM fails the self-test)", dk.CiphertextBlob[3])
	}
	dec, err := k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: encCtx})
	if err != nil || !bytes.Equal(dec.Plaintext, dk.Plaintext) {
		t.Errorf("the data key does not come back: %v", err)
	}

	ec, err := k.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("signed on NSS"))
	sig, err := k.Sign(ctx, &kms.SignInput{KeyId: ec.KeyMetadata.KeyId, Message: digest[:], MessageType: types.MessageTypeDigest,
		SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	if err != nil {
		t.Fatal(err)
	}
	v, err := k.Verify(ctx, &kms.VerifyInput{KeyId: ec.KeyMetadata.KeyId, Message: digest[:], MessageType: types.MessageTypeDigest,
		Signature: sig.Signature, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	if err != nil || !v.SignatureValid {
		t.Errorf("Verify: %v", err)
	}
}
