package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestGenerateDataKeyPair proves, for every key spec, that a data key pair
// comes out as PKCS#8 and SubjectPublicKeyInfo DER whose halves belong
// together (a signature by the private half verifies under the public
// one; for secp256k1, which Go's crypto lacks, OpenSSL derives the same
// public key from the private one), that two pairs differ, and that the
// token keeps nothing of them: both session objects are destroyed. A
// token without a spec's mechanism refuses it as unsupported.
func TestGenerateDataKeyPair(t *testing.T) {
	tok, f := openFaulty(t)
	for _, spec := range []KeySpec{ECP256, ECP384, ECP521, ECSecp256k1, RSA2048, RSA3072, RSA4096} {
		t.Run(string(spec), func(t *testing.T) {
			gens, destroys := f.count("GenerateKeyPair"), f.count("DestroyObject")
			priv, pub, err := tok.GenerateDataKeyPair(t.Context(), spec)
			if !has(tok, keyFeature(spec)) {
				wantKind(t, err, ErrMechanismUnsupported)
				return
			}
			if err != nil {
				t.Fatalf("GenerateDataKeyPair: %v", err)
			}
			if n, d := f.count("GenerateKeyPair")-gens, f.count("DestroyObject")-destroys; n != 1 || d != 2 {
				t.Fatalf("%d key pairs generated and %d objects destroyed, want 1 and 2", n, d)
			}
			if spec == ECSecp256k1 {
				wantOpenSSLPair(t, priv, pub)
			} else {
				wantPair(t, priv, pub)
			}
			again, _, err := tok.GenerateDataKeyPair(t.Context(), spec)
			if err != nil || bytes.Equal(again, priv) {
				t.Fatalf("a second pair: %v, or the same private key", err)
			}
		})
	}
}

// wantPair checks that priv (PKCS#8) signs what pub (SPKI) verifies.
func wantPair(t *testing.T, priv, pub []byte) {
	t.Helper()
	key, err := x509.ParsePKCS8PrivateKey(priv)
	if err != nil {
		t.Fatalf("the private key is not PKCS#8: %v", err)
	}
	pk, err := x509.ParsePKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("the public key is not a SubjectPublicKeyInfo: %v", err)
	}
	digest := sha256.Sum256([]byte("a data key pair signs"))
	switch k := key.(type) {
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(pk.(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
			t.Fatalf("the public key does not verify the private key's signature: %v", err)
		}
	case *ecdsa.PrivateKey:
		sig, err := ecdsa.SignASN1(nil, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), digest[:], sig) {
			t.Fatal("the public key does not verify the private key's signature")
		}
	default:
		t.Fatalf("private key of type %T", key)
	}
}

// wantOpenSSLPair checks with OpenSSL that priv (PKCS#8) is a secp256k1
// key whose public half is pub (SPKI).
func wantOpenSSLPair(t *testing.T, priv, pub []byte) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "priv.der")
	if err := os.WriteFile(in, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := exec.Command("openssl", "pkey", "-inform", "DER", "-in", in, "-noout", "-text").CombinedOutput()
	if err != nil || !bytes.Contains(text, []byte("secp256k1")) {
		t.Fatalf("openssl reads no secp256k1 private key: %v\n%s", err, text)
	}
	derived, err := exec.Command("openssl", "pkey", "-inform", "DER", "-in", in, "-pubout", "-outform", "DER").Output()
	if err != nil || !bytes.Equal(derived, pub) {
		t.Fatalf("the public key OpenSSL derives from the private one differs from the pair's: %v", err)
	}
}

// TestGenerateDataKeyPairFaults proves that the pair's session objects are
// destroyed when reading them fails, and that a token refusing
// extractable private keys is reported as unsupported.
func TestGenerateDataKeyPairFaults(t *testing.T) {
	tok, f := openFaulty(t)
	spec := ECP256
	if !has(tok, keyFeature(spec)) { // openCryptoki's soft token has no EC
		spec = RSA2048
	}
	destroys := f.count("DestroyObject")
	f.inject("GetAttributeValue", pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE))
	if _, _, err := tok.GenerateDataKeyPair(t.Context(), spec); err == nil {
		t.Fatal("GenerateDataKeyPair with its attributes unreadable: no error")
	}
	if d := f.count("DestroyObject") - destroys; d != 2 {
		t.Fatalf("%d objects destroyed after a failed read, want both halves", d)
	}
	f.inject("GenerateKeyPair", pkcs11.Error(pkcs11.CKR_TEMPLATE_INCONSISTENT))
	_, _, err := tok.GenerateDataKeyPair(t.Context(), spec)
	wantKind(t, err, ErrMechanismUnsupported)
	if _, _, err := tok.GenerateDataKeyPair(t.Context(), spec); err != nil {
		t.Fatalf("GenerateDataKeyPair after the faults: %v", err)
	}
}
