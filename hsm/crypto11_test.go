package hsm

import (
	"context"
	"crypto"
	"crypto/rand"
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
// the module. crypto11AlgEnv names the SigningAlgorithm to sign with.
const (
	crypto11ChildEnv = "HSMKMS_CRYPTO11_SIGN"
	crypto11AlgEnv   = "HSMKMS_CRYPTO11_ALG"
)

// crypto11Digest is what the child signs.
var crypto11Digest = sha256.Sum256([]byte("signed by crypto11"))

// crypto11Opts are the crypto.SignerOpts that make crypto11 sign with alg:
// a bare hash is ECDSA on an EC key and PKCS #1 v1.5 on an RSA key.
func crypto11Opts(alg SigningAlgorithm) (crypto.SignerOpts, error) {
	switch alg {
	case ECDSASHA256, RSAPKCS1SHA256:
		return crypto.SHA256, nil
	case RSAPSSSHA256:
		return pssOptions, nil
	}
	return nil, fmt.Errorf("no crypto11 options for %q", alg)
}

// crypto11Sign is the child's work; it returns the process exit code.
func crypto11Sign(idHex string) int {
	id, err := hex.DecodeString(idHex)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	opts, err := crypto11Opts(SigningAlgorithm(os.Getenv(crypto11AlgEnv)))
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
// separate process, finds each pair by its CKA_ID and signs with it with
// each algorithm; our Verify on the token and Go's crypto, under the public
// key hsm returned, both accept the signature, and our Verify refuses it
// with a flipped byte. A key type or algorithm the token lacks (openCryptoki
// has no EC) is refused with ErrMechanismUnsupported instead. A module
// that needs C_Initialize parameters (NSS) refuses crypto11, which has no
// way to pass them, with CKR_ARGUMENTS_BAD.
func TestCrypto11FindsAndSignsOurKeyPairs(t *testing.T) {
	tok := openToken(t)
	for _, c := range []asymCase{asymCases[0], asymCases[2], asymCases[3]} {
		t.Run(c.name(), func(t *testing.T) {
			if !has(tok, keyFeature(c.spec)) {
				keyPairOrLacking(t, tok, c.spec)
				return
			}
			id, err := NewObjectID()
			if err != nil {
				t.Fatal(err)
			}
			pub, err := tok.CreateKeyPair(t.Context(), id, "hsmkms/crypto11/"+id.String(), c.spec)
			if err != nil {
				t.Fatal(err)
			}
			// t.Context is done by the time cleanups run.
			t.Cleanup(func() {
				if err := tok.DestroyKey(context.Background(), id); err != nil {
					t.Errorf("DestroyKey: %v", err)
				}
			})
			if !has(tok, algFeature(c.alg)) {
				wantAlgLacking(t, tok, nil, id, c)
				return
			}
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
			cmd.Env = append(append(os.Environ(), env.Env...), crypto11ChildEnv+"="+id.String(),
				crypto11AlgEnv+"="+string(c.alg), "HSMKMS_TEST_MODULE="+env.ModulePath, "HSMKMS_TEST_PIN="+env.PIN)
			out, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				if env.InitParams != "" && strings.Contains(stderr, "CKR_ARGUMENTS_BAD") {
					// crypto11 passes no C_Initialize parameters, so a
					// module that needs them (NSS) refuses it: that is
					// the outcome here, and the test's only one.
					return
				}
				t.Fatalf("crypto11 child: %v: %s", err, stderr)
			}
			if env.InitParams != "" {
				t.Fatalf("crypto11 loaded a module that needs C_Initialize parameters without them")
			}
			sig, err := hex.DecodeString(strings.TrimSpace(string(out)))
			if err != nil {
				t.Fatalf("crypto11 child printed %q: %v", out, err)
			}
			if err := tok.Verify(t.Context(), id, c.alg, crypto11Digest[:], sig); err != nil {
				t.Fatalf("our Verify of crypto11's signature: %v", err)
			}
			if err := c.goVerify(pub, crypto11Digest[:], sig); err != nil {
				t.Fatalf("Go's crypto rejects crypto11's signature under the public key hsm returned: %v", err)
			}
			sig[len(sig)/2] ^= 1
			wantKind(t, tok.Verify(t.Context(), id, c.alg, crypto11Digest[:], sig), ErrInvalidSignature)
		})
	}
}
