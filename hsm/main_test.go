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
	os.Exit(softhsm.RunTests(m, testLabel, func(t *softhsm.Token) { env = t }))
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
