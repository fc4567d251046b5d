package tests

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/hsmkms/hsmkms/softhsm/opencryptoki"
)

// TestOpenCryptoki serves from openCryptoki's software token, a second
// PKCS#11 implementation without AES-GCM, AES key wrap or EC: token info
// says so without failing, keys fall back to aes-cbc-hmac, and data keys,
// context binding, rotation and RSA signing work through the built server
// and aws-sdk-go-v2.
func TestOpenCryptoki(t *testing.T) {
	tok := opencryptoki.Start(t, "hsmkms-e2e")
	s := newSandbox(t)
	info := s.run([]string{"HSMKMS_PIN=" + tok.PIN}, "token", "info", "--pkcs11-module", tok.ModulePath, "--token-label", tok.Label)
	for _, want := range []string{"IBM Corp.", "aes-gcm       no: lacks CKM_AES_GCM", "aes-cbc-hmac  yes", "SO_PIN_TO_BE_CHANGED", "serve         ok"} {
		if info.code != 0 || !containsWords(info.stdout, want) {
			t.Errorf("token info lacks %q: %v", want, info)
		}
	}
	// Without its slot daemon the module cannot start: exit 5, naming it.
	tok.StopDaemon()
	down := s.run([]string{"HSMKMS_PIN=" + tok.PIN}, "token", "info", "--pkcs11-module", tok.ModulePath, "--token-label", tok.Label)
	if down.code != 5 || !strings.Contains(down.stderr, "CKR_FUNCTION_FAILED") || !strings.Contains(down.stderr, "pkcsslotd") {
		t.Errorf("token info with pkcsslotd down: want exit 5 naming CKR_FUNCTION_FAILED and pkcsslotd: %v", down)
	}
	if err := tok.StartDaemon(); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, s: s, tok: clusterToken{ModulePath: tok.ModulePath, Label: tok.Label, PIN: tok.PIN},
		root: aws.Credentials{AccessKeyID: "AKIAOPENCRYPTOKI0001", SecretAccessKey: "opencryptoki-root-secret-0001"}}
	r := c.launch(0)
	r.waitServing()
	ctx := ctxT(t)
	k := r.userKMS(c.root)

	out, err := k.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := out.KeyMetadata.KeyId
	encCtx := map[string]string{"tenant": "a"}
	dk, err := k.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: id, KeySpec: types.DataKeySpecAes256, EncryptionContext: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	if dk.CiphertextBlob[3] != 3 {
		t.Errorf("the blob's mechanism byte is %d, want 3 (aes-cbc-hmac: the token has no AES-GCM)", dk.CiphertextBlob[3])
	}
	if _, err := k.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id}); err != nil {
		t.Fatal(err)
	}
	enc, err := k.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("after rotation"), EncryptionContext: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	for name, blob := range map[string][]byte{"version 1": dk.CiphertextBlob, "version 2": enc.CiphertextBlob} {
		if _, err := k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: encCtx}); err != nil {
			t.Errorf("Decrypt of %s: %v", name, err)
		}
		_, err := k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: map[string]string{"tenant": "b"}})
		var invalid *types.InvalidCiphertextException
		if !errors.As(err, &invalid) {
			t.Errorf("Decrypt of %s with another context: %v, want InvalidCiphertextException", name, err)
		}
	}
	dec, err := k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: encCtx})
	if err != nil || !bytes.Equal(dec.Plaintext, dk.Plaintext) {
		t.Errorf("the data key does not come back: %v", err)
	}

	// What the token lacks is refused by name, not as an internal error.
	_, err = k.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err == nil || !strings.Contains(err.Error(), "CKM_EC_KEY_PAIR_GEN") {
		t.Errorf("CreateKey(ECC_NIST_P256) on a token without EC: %v, want an error naming CKM_EC_KEY_PAIR_GEN", err)
	}

	// RSA signing.
	rsa, err := k.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("a message"))
	for _, alg := range []types.SigningAlgorithmSpec{types.SigningAlgorithmSpecRsassaPkcs1V15Sha256, types.SigningAlgorithmSpecRsassaPssSha256} {
		sig, err := k.Sign(ctx, &kms.SignInput{KeyId: rsa.KeyMetadata.KeyId, Message: digest[:], MessageType: types.MessageTypeDigest, SigningAlgorithm: alg})
		if err != nil {
			t.Fatalf("Sign(%s): %v", alg, err)
		}
		v, err := k.Verify(ctx, &kms.VerifyInput{KeyId: rsa.KeyMetadata.KeyId, Message: digest[:], MessageType: types.MessageTypeDigest,
			Signature: sig.Signature, SigningAlgorithm: alg})
		if err != nil || !v.SignatureValid {
			t.Errorf("Verify(%s): %v", alg, err)
		}
	}

	daemonOutage(t, tok, s, r, k, id)
}

// daemonOutage stops pkcsslotd under the running server. openCryptoki
// 3.8's slot daemon only hands the library its slot table at C_Initialize:
// measured, every call of an initialised process (C_GetSlotList,
// C_GetTokenInfo, C_OpenSession, C_GenerateRandom, crypto) keeps working
// with the daemon killed. So the server stays ready and serves through the
// outage, and what fails is a process that starts meanwhile: exit 5,
// naming the daemon. Taking a server that can serve out of rotation would
// turn a daemon restart into an outage.
func daemonOutage(t *testing.T, tok *opencryptoki.Token, s *sandbox, r *replica, k *kms.Client, id *string) {
	ctx := ctxT(t)
	tok.StopDaemon()
	defer func() {
		if err := tok.StartDaemon(); err != nil {
			t.Fatal(err)
		}
		again := s.run([]string{"HSMKMS_PIN=" + tok.PIN}, "token", "info", "--pkcs11-module", tok.ModulePath, "--token-label", tok.Label)
		if again.code != 0 {
			t.Errorf("token info after pkcsslotd came back: %v", again)
		}
	}()
	if got := r.ready(); got != 200 {
		t.Errorf("/readyz with pkcsslotd down = %d, want 200: the initialised module still serves", got)
	}
	dk, err := k.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: id, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatalf("GenerateDataKey with pkcsslotd down: %v", err)
	}
	if dec, err := k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob}); err != nil || !bytes.Equal(dec.Plaintext, dk.Plaintext) {
		t.Errorf("Decrypt with pkcsslotd down: %v", err)
	}
	down := s.run([]string{"HSMKMS_PIN=" + tok.PIN}, "token", "info", "--pkcs11-module", tok.ModulePath, "--token-label", tok.Label)
	if down.code != 5 || !strings.Contains(down.stderr, "pkcsslotd") {
		t.Errorf("a process starting with pkcsslotd down: want exit 5 naming pkcsslotd: %v", down)
	}
}

// containsWords reports whether out has want's words in a row, whatever
// the spacing between them (token info aligns its columns).
func containsWords(out, want string) bool {
	return strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " "))
}
