package server

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/softhsm"
)

// TestStartOnAnotherToken: a server whose data directory was used with
// the package's token A refuses to start on token B, saying the internal key is not on
// it, rather than serving requests that would all be refused as invalid
// ciphertexts. With root credentials from the environment the first
// authentication (EnsureRoot) finds it too; without them only the
// start-up check does.
func TestStartOnAnotherToken(t *testing.T) {
	tokB := env.AddTestToken(t, "start-b")
	dir := filepath.Join(t.TempDir(), "data")
	runStart(t, "first start on token A", dir, rootCreds, func(t *testing.T, ts *testServer) {})

	for _, tc := range []struct {
		name string
		root aws.Credentials
	}{
		{"root from the environment", rootCreds},
		{"no root in the environment", aws.Credentials{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := Start(t.Context(), Config{Listen: "127.0.0.1:0", DataDir: dir, ModulePath: env.ModulePath,
				TokenLabel: tokB.Label, PIN: hsm.NewPIN(softhsm.TestPIN), Region: region, Account: account,
				RootAccessKeyID: tc.root.AccessKeyID, RootSecret: tc.root.SecretAccessKey})
			if err == nil {
				srv.Shutdown(context.Background())
				t.Fatal("Start on token B succeeded; want ErrInternalKeyMissing")
			}
			if !errors.Is(err, service.ErrInternalKeyMissing) || !strings.Contains(err.Error(), `"`+tokB.Label+`"`) {
				t.Fatalf("Start on token B: %v; want ErrInternalKeyMissing naming the token", err)
			}
		})
	}
	// The store still belongs to token A.
	runStart(t, "start on token A again", dir, rootCreds, func(t *testing.T, ts *testServer) {
		if _, err := ts.kmsClient(rootCreds).ListKeys(t.Context(), &kms.ListKeysInput{}); err != nil {
			t.Fatalf("ListKeys as root: %v", err)
		}
	})
}
