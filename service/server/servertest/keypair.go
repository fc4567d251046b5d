package servertest

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"testing"
)

// KeyPairMatches parses a data key pair's PKCS#8 private key, as
// GenerateDataKeyPair returns it, and fails t unless its public key is
// exactly the DER SubjectPublicKeyInfo pub. It returns the private key.
func KeyPairMatches(t testing.TB, priv, pub []byte) crypto.PrivateKey {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(priv)
	if err != nil {
		t.Fatalf("the private key is not PKCS#8: %v", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		t.Fatalf("a %T private key", k)
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil || !bytes.Equal(der, pub) {
		t.Fatalf("the private key's public key is %x (%v), PublicKey %x", der, err, pub)
	}
	return k
}
