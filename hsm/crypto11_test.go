package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ThalesGroup/crypto11"
)

// crypto11ChildEnv, when set to a key pair's CKA_ID in hex, makes the test
// binary sign a fixed digest with that key pair through crypto11 and print
// the signature in hex. crypto11 initialises and finalises the module
// itself, so it runs in a process of its own: in this one the Token owns
// the module.
const crypto11ChildEnv = "HSMKMS_CRYPTO11_SIGN"

// crypto11Digest is what the child signs.
var crypto11Digest = sha256.Sum256([]byte("signed by crypto11"))

// crypto11Sign is the child's work; it returns the process exit code.
func crypto11Sign(idHex string) int {
	id, err := hex.DecodeString(idHex)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, err := crypto11.Configure(&crypto11.Config{Path: env.ModulePath, TokenLabel: env.Label, Pin: env.PIN})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crypto11.Configure:", err)
		return 2
	}
	defer ctx.Close()
	signer, err := ctx.FindKeyPair(id, nil)
	if err != nil || signer == nil {
		fmt.Fprintln(os.Stderr, "crypto11.FindKeyPair:", err)
		return 2
	}
	var opts crypto.SignerOpts = crypto.SHA256
	if _, ok := signer.Public().(*rsa.PublicKey); ok {
		opts = &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}
	}
	sig, err := signer.Sign(rand.Reader, crypto11Digest[:], opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crypto11 Sign:", err)
		return 2
	}
	fmt.Println(hex.EncodeToString(sig))
	return 0
}

// TestCrypto11FindsAndSignsOurKeyPairs proves that the key pairs hsm makes
// are ordinary PKCS#11 objects to another well-known client: crypto11, in a
// separate process, finds each pair by its CKA_ID and signs with it; our
// Verify on the token and Go's crypto both accept the signature, and
// crypto11 sees the public key hsm returned.
func TestCrypto11FindsAndSignsOurKeyPairs(t *testing.T) {
	tok := openToken(t)
	for _, c := range []struct {
		spec KeySpec
		alg  SigningAlgorithm
	}{{ECP256, ECDSASHA256}, {RSA2048, RSAPSSSHA256}} {
		t.Run(string(c.spec), func(t *testing.T) {
			id, err := NewObjectID()
			if err != nil {
				t.Fatal(err)
			}
			pub, err := tok.CreateKeyPair(t.Context(), id, "hsmkms/crypto11/"+id.String(), c.spec)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tok.DestroyKey(t.Context(), id) })
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
			cmd.Env = append(append(os.Environ(), env.Env...), crypto11ChildEnv+"="+id.String(),
				"HSMKMS_TEST_MODULE="+env.ModulePath, "HSMKMS_TEST_PIN="+env.PIN)
			out, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Fatalf("crypto11 child: %v: %s", err, stderr)
			}
			sig, err := hex.DecodeString(strings.TrimSpace(string(out)))
			if err != nil {
				t.Fatalf("crypto11 child printed %q: %v", out, err)
			}
			if err := tok.Verify(t.Context(), id, c.alg, crypto11Digest[:], sig); err != nil {
				t.Fatalf("our Verify of crypto11's signature: %v", err)
			}
			switch k := pub.(type) {
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(k, crypto11Digest[:], sig) {
					t.Fatal("Go's ecdsa rejects crypto11's signature under the public key hsm returned")
				}
			case *rsa.PublicKey:
				if err := rsa.VerifyPSS(k, crypto.SHA256, crypto11Digest[:], sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
					t.Fatalf("Go's rsa rejects crypto11's signature under the public key hsm returned: %v", err)
				}
			}
			sig[len(sig)/2] ^= 1
			wantKind(t, tok.Verify(t.Context(), id, c.alg, crypto11Digest[:], sig), ErrInvalidSignature)
		})
	}
}
