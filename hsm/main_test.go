package hsm

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/softhsm"
	"github.com/hsmkms/hsmkms/softhsm/nss"
	"github.com/hsmkms/hsmkms/softhsm/opencryptoki"
)

// The package's tests run on the PKCS#11 implementation TokenEnv names:
// SoftHSM2 when it is empty (or softhsm2), openCryptoki's soft token
// (opencryptoki), or NSS's softoken (nss).
// `make test` runs the package once on each. What a token lacks is asserted
// as ErrUnsupported through the probe, never assumed from its name.
const TokenEnv = "HSMKMS_TEST_TOKEN"

// testToken is the token the tests use.
type testToken struct {
	Impl       string // softhsm2, opencryptoki or nss
	ModulePath string
	Label      string
	PIN        string
	// InitParams are the module's C_Initialize parameters (NSS's).
	InitParams string
	// Env is what a child process (pkcs11-tool, the crypto11 child) needs
	// in its environment to see the same token.
	Env []string
}

var (
	// env is the token under test.
	env *testToken
	// soft is the package's SoftHSM2 store. Tests of recovery from a token
	// that vanishes or is re-initialised make tokens of their own in it,
	// whatever the implementation under test: no other implementation
	// here can make and delete a token at will.
	soft *softhsm.Token
)

const testLabel = "hsm-test"

func TestMain(m *testing.M) {
	if id := os.Getenv(crypto11ChildEnv); id != "" {
		os.Exit(crypto11Child(id))
	}
	run := runFunc(func() int {
		tt, closeTT, err := openTestToken(os.Getenv(TokenEnv), soft)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s=%s: %v\n", TokenEnv, os.Getenv(TokenEnv), err)
			return 1
		}
		defer closeTT()
		env = tt
		return m.Run()
	})
	os.Exit(softhsm.RunTests(run, testLabel, func(t *softhsm.Token) { soft = t }))
}

// runFunc runs the tests for softhsm.RunTests, once the SoftHSM2 store
// is made, and removes the store after.
type runFunc func() int

func (f runFunc) Run() int { return f() }

// openTestToken prepares the implementation impl names.
func openTestToken(impl string, st *softhsm.Token) (*testToken, func(), error) {
	switch impl {
	case "", "softhsm2":
		return &testToken{Impl: "softhsm2", ModulePath: st.ModulePath, Label: testLabel, PIN: softhsm.TestPIN, Env: []string{st.Env()}}, func() {}, nil
	case "nss":
		name, value, _ := strings.Cut(nss.FastPBE, "=")
		if err := os.Setenv(name, value); err != nil {
			return nil, nil, err
		}
		dir, err := os.MkdirTemp("", "hsm-test-nss-")
		if err != nil {
			return nil, nil, err
		}
		n, err := nss.New(dir, testLabel, "nss-test-pin")
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		return &testToken{Impl: impl, ModulePath: n.ModulePath, InitParams: n.InitParams, Label: testLabel, PIN: n.PIN},
			func() { os.RemoveAll(dir) }, nil
	case "opencryptoki":
		oc, err := opencryptoki.New(testLabel)
		if err != nil {
			return nil, nil, err
		}
		return &testToken{Impl: impl, ModulePath: oc.ModulePath, Label: testLabel, PIN: oc.PIN}, oc.Close, nil
	default:
		return nil, nil, fmt.Errorf("unknown implementation %q: softhsm2, opencryptoki or nss", impl)
	}
}

// crypto11Child runs the crypto11 signer against the parent's token: the
// parent passes its module, label and PIN, and its SOFTHSM2_CONF, in the
// environment.
func crypto11Child(id string) int {
	env = &testToken{ModulePath: os.Getenv("HSMKMS_TEST_MODULE"), Label: testLabel, PIN: os.Getenv("HSMKMS_TEST_PIN")}
	return crypto11Sign(id)
}

// testConfig is a Config for the package's token.
func testConfig() Config {
	return Config{ModulePath: env.ModulePath, InitParams: env.InitParams, TokenLabel: env.Label, PIN: NewPIN(env.PIN)}
}

// openToken opens the package's token with cfg (testConfig when nil
// changes are given) and closes it when the test ends.
func openToken(t testing.TB, change ...func(*Config)) *Token {
	t.Helper()
	cfg := testConfig()
	for _, c := range change {
		c(&cfg)
	}
	tok, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tok.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tok
}

// newMasterKey makes a master key version and returns its CKA_ID.
func newMasterKey(t testing.TB, tok *Token) ObjectID {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.CreateMasterKey(t.Context(), id, "hsmkms/test/"+id.String()); err != nil {
		t.Fatalf("CreateMasterKey: %v", err)
	}
	return id
}

// has reports whether the token under test supports the feature named as
// Features names it (aes-gcm, aes-kw, aes-cbc-hmac, ecdsa, rsa, rsa-pss).
// Tests of a feature the token lacks assert that its operations fail with
// ErrMechanismUnsupported instead of skipping.
func has(tok *Token, feature string) bool {
	for _, f := range tok.Capabilities().Features() {
		if f.Name == feature {
			return f.Supported
		}
	}
	panic("hsm tests: no feature " + feature)
}

// newDataKeyKey makes a master key version for the token's data-key
// mechanism: aes-gcm where the token has it, otherwise aes-cbc-hmac (the
// AES key and its HMAC key), and returns its CKA_ID.
func newDataKeyKey(t testing.TB, tok *Token) ObjectID {
	t.Helper()
	if has(tok, "aes-gcm") {
		return newMasterKey(t, tok)
	}
	return newPortableKey(t, tok)
}

// sealAny seals plaintext under id with the token's data-key mechanism,
// binding aad: for tests whose subject is the session pool, recovery or
// concurrency rather than the mechanism.
func sealAny(ctx context.Context, tok *Token, id ObjectID, aad, plaintext []byte) (iv, sealed []byte, err error) {
	if has(tok, "aes-gcm") {
		if iv, err = NewIV(); err != nil {
			return nil, nil, err
		}
		sealed, err = tok.Seal(ctx, id, iv, aad, plaintext)
		return iv, sealed, err
	}
	if iv, err = NewCBCIV(); err != nil {
		return nil, nil, err
	}
	sealed, err = tok.SealPortable(ctx, id, iv, aad, nil, plaintext)
	return iv, sealed, err
}

// unsealAny opens what sealAny made.
func unsealAny(ctx context.Context, tok *Token, id ObjectID, iv, aad, sealed []byte) ([]byte, error) {
	if has(tok, "aes-gcm") {
		return tok.Unseal(ctx, id, iv, aad, sealed)
	}
	return tok.UnsealPortable(ctx, id, iv, aad, nil, sealed)
}
