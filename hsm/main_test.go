package hsm

import (
	"os"
	"testing"

	"github.com/hsmkms/hsmkms/softhsm"
)

// env is the package's private SoftHSM2 store, made once per test run.
var env *softhsm.Token

const testLabel = "hsm-test"

func TestMain(m *testing.M) {
	if id := os.Getenv(crypto11ChildEnv); id != "" {
		os.Exit(crypto11Child(id))
	}
	os.Exit(softhsm.RunTests(m, testLabel, func(t *softhsm.Token) { env = t }))
}

// crypto11Child runs the crypto11 signer against the parent's token: the
// parent's SOFTHSM2_CONF is in the environment.
func crypto11Child(id string) int {
	env = &softhsm.Token{Label: testLabel}
	module, err := softhsm.FindModule()
	if err != nil {
		return 2
	}
	env.ModulePath = module
	return crypto11Sign(id)
}

// testConfig is a Config for the package's token.
func testConfig() Config {
	return Config{ModulePath: env.ModulePath, TokenLabel: testLabel, PIN: NewPIN(softhsm.TestPIN)}
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
