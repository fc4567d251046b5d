package tests

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/server/servertest"
)

// TestDataKeyPair follows AWS's flow for data key pairs with the aws CLI:
// generate-data-key-pair ECC_NIST_P384 under an alias with an encryption
// context gives a PKCS#8 private key matching its SubjectPublicKeyInfo
// public key, and decrypt of PrivateKeyCiphertextBlob with the same context
// gives the private key back; generate-data-key-pair-without-plaintext
// RSA_2048 sends no PrivateKeyPlaintext and its blob decrypts to the
// private key of its public key. openssl reads both pairs, and a
// ECC_SECG_P256K1 pair, which Go's x509 cannot parse. SM2 is refused as
// UnsupportedOperationException and a signing key as
// InvalidKeyUsageException, with the aws CLI's exit code for a service
// error.
func TestDataKeyPair(t *testing.T) {
	requireTool(t, "aws", "awscli")
	requireTool(t, "openssl", "openssl")
	s := newSandbox(t)
	srv := s.startDev(t.TempDir())
	a := awsCLI{s: s, srv: srv, dir: t.TempDir()}
	meta := a.must("create-key")["KeyMetadata"].(map[string]any)
	id, arn := meta["KeyId"].(string), meta["Arn"].(string)
	if r := a.run("create-alias", "--alias-name", "alias/pairs", "--target-key-id", id); r.code != 0 {
		t.Fatalf("create-alias: %v", r)
	}
	// opensslPublic has openssl read the PKCS#8 private key in file and
	// returns the DER SubjectPublicKeyInfo of its public key.
	opensslPublic := func(file string) []byte {
		t.Helper()
		r := s.exec(runOpts{dir: a.dir}, "openssl", "pkey", "-inform", "DER", "-in", file, "-pubout", "-outform", "DER", "-out", file+".pub")
		if r.code != 0 {
			t.Fatalf("openssl pkey of %s: %v", file, r)
		}
		b, err := os.ReadFile(file + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	out := a.must("generate-data-key-pair", "--key-id", "alias/pairs", "--key-pair-spec", "ECC_NIST_P384", "--encryption-context", "k=v")
	if out["KeyPairSpec"] != "ECC_NIST_P384" || out["KeyId"] != arn || !strings.HasSuffix(arn, ":key/"+id) {
		t.Fatalf("generate-data-key-pair: KeyId %v, KeyPairSpec %v; want %s and ECC_NIST_P384", out["KeyId"], out["KeyPairSpec"], arn)
	}
	priv, pub := b64(t, out["PrivateKeyPlaintext"]), b64(t, out["PublicKey"])
	if k, ok := servertest.KeyPairMatches(t, priv, pub).(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P384() {
		t.Fatalf("generate-data-key-pair ECC_NIST_P384 made a %T", k)
	}
	if got := opensslPublic(a.write("p384.der", priv)); !bytes.Equal(got, pub) {
		t.Fatalf("openssl reads the private key's public key as %x, PublicKey %x", got, pub)
	}
	blob := a.write("p384.blob", b64(t, out["PrivateKeyCiphertextBlob"]))
	dec := a.must("decrypt", "--ciphertext-blob", "fileb://"+blob, "--encryption-context", "k=v")
	if got := b64(t, dec["Plaintext"]); !bytes.Equal(got, priv) || dec["KeyId"] != arn {
		t.Fatalf("decrypt of PrivateKeyCiphertextBlob: KeyId %v, the plaintext is the private key: %v", dec["KeyId"], bytes.Equal(got, priv))
	}
	a.fails("InvalidCiphertextException", "decrypt", "--ciphertext-blob", "fileb://"+blob, "--encryption-context", "k=other")

	wp := a.must("generate-data-key-pair-without-plaintext", "--key-id", id, "--key-pair-spec", "RSA_2048")
	if _, ok := wp["PrivateKeyPlaintext"]; ok || wp["KeyPairSpec"] != "RSA_2048" || wp["KeyId"] != arn {
		t.Fatalf("generate-data-key-pair-without-plaintext: %v", wp)
	}
	pub = b64(t, wp["PublicKey"])
	blob = a.write("rsa.blob", b64(t, wp["PrivateKeyCiphertextBlob"]))
	priv = b64(t, a.must("decrypt", "--ciphertext-blob", "fileb://"+blob)["Plaintext"])
	if k, ok := servertest.KeyPairMatches(t, priv, pub).(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Fatalf("generate-data-key-pair-without-plaintext RSA_2048 made a %T", k)
	}
	if got := opensslPublic(a.write("rsa.der", priv)); !bytes.Equal(got, pub) {
		t.Fatalf("openssl reads the RSA private key's public key as %x, PublicKey %x", got, pub)
	}

	k1 := a.must("generate-data-key-pair", "--key-id", id, "--key-pair-spec", "ECC_SECG_P256K1")
	if got := opensslPublic(a.write("k1.der", b64(t, k1["PrivateKeyPlaintext"]))); !bytes.Equal(got, b64(t, k1["PublicKey"])) {
		t.Fatalf("ECC_SECG_P256K1: openssl reads the private key's public key as %x, PublicKey %x", got, b64(t, k1["PublicKey"]))
	}
	r := s.exec(runOpts{dir: a.dir}, "openssl", "pkey", "-inform", "DER", "-in", filepath.Join(a.dir, "k1.der"), "-noout", "-text")
	if r.code != 0 || !strings.Contains(r.stdout, "secp256k1") {
		t.Fatalf("openssl pkey -text of the ECC_SECG_P256K1 private key: %v", r)
	}

	// serviceError runs the command and wants the aws CLI to report
	// errType from the server: exit code 255 (aws CLI v1) or 254 (v2).
	serviceError := func(errType string, args ...string) {
		t.Helper()
		r := a.run(args...)
		if (r.code != 254 && r.code != 255) || !strings.Contains(r.stderr, "("+errType+")") {
			t.Fatalf("aws kms %s: %v; want a %s", strings.Join(args, " "), r, errType)
		}
	}
	serviceError("UnsupportedOperationException", "generate-data-key-pair", "--key-id", id, "--key-pair-spec", "SM2")
	serviceError("UnsupportedOperationException", "generate-data-key-pair-without-plaintext", "--key-id", id, "--key-pair-spec", "SM2")
	sign := a.must("create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY")["KeyMetadata"].(map[string]any)["KeyId"].(string)
	serviceError("InvalidKeyUsageException", "generate-data-key-pair", "--key-id", sign, "--key-pair-spec", "ECC_NIST_P256")
	serviceError("InvalidKeyUsageException", "generate-data-key-pair-without-plaintext", "--key-id", sign, "--key-pair-spec", "RSA_2048")
}
