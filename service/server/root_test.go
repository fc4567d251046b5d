package server

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
)

// runStart starts a server on dataDir with root credentials root, runs
// check against it and shuts it down, as a subtest; the test stops if the
// subtest fails, since later starts build on it.
func runStart(t *testing.T, name, dataDir string, root aws.Credentials, check func(t *testing.T, ts *testServer)) {
	t.Helper()
	ok := t.Run(name, func(t *testing.T) {
		ts := startServer(t, func(c *Config) {
			c.DataDir, c.RootAccessKeyID, c.RootSecret = dataDir, root.AccessKeyID, root.SecretAccessKey
		})
		check(t, ts)
	})
	if !ok {
		t.FailNow()
	}
}

// recordsOf returns ts's audit records of action.
func (ts *testServer) recordsOf(t *testing.T, action string) []auditRecord {
	t.Helper()
	return ts.auditWhere(t, func(r auditRecord) bool { return r.Action == action })
}

// wantSystemRecord checks that ts audited action exactly once, as the
// service's own work on subject.
func (ts *testServer) wantSystemRecord(t *testing.T, action, subject string) {
	t.Helper()
	recs := ts.recordsOf(t, action)
	if len(recs) != 1 || recs[0].Principal != "system" || recs[0].Subject != subject || recs[0].Outcome != "allowed" {
		t.Fatalf("%s audit records %+v, want exactly one by system about %s, allowed", action, recs, subject)
	}
}

// wantNoSecrets checks that neither ts's audit trail nor its logs hold any
// of the secrets.
func (ts *testServer) wantNoSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	for where, text := range map[string]string{"audit trail": ts.audit.String(), "logs": ts.logs.String()} {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("the %s hold a secret access key", where)
			}
		}
	}
}

// TestRootSecretRotation proves that restarting with a new
// HSMKMS_ROOT_SECRET_ACCESS_KEY makes the old secret fail and the new one
// work, with the real SDK, auditing the rotation once and logging it
// without either secret; and that a restart with the same secret rotates
// nothing.
func TestRootSecretRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	rotated := aws.Credentials{AccessKeyID: rootID, SecretAccessKey: "server-test-rotated-secret-fedcba9876543210"}
	var keyID string
	runStart(t, "first start", dir, rootCreds, func(t *testing.T, ts *testServer) {
		keyID = newKey(t, ts.kmsClient(rootCreds), nil)
	})
	describe := func(t *testing.T, ts *testServer, creds aws.Credentials) error {
		_, err := ts.kmsClient(creds).DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
		return err
	}
	runStart(t, "restart with a new secret", dir, rotated, func(t *testing.T, ts *testServer) {
		if err := describe(t, ts, rootCreds); errorCode(err) != "InvalidSignatureException" {
			t.Errorf("DescribeKey signed with the old root secret: %v, want InvalidSignatureException", err)
		}
		if err := describe(t, ts, rotated); err != nil {
			t.Errorf("DescribeKey signed with the new root secret: %v", err)
		}
		if _, err := ts.admin(rotated).ListPrincipals(t.Context(), service.ListInput{}); err != nil {
			t.Errorf("ListPrincipals signed with the new root secret: %v", err)
		}
		ts.wantSystemRecord(t, "hsmkms:RotateRootSecret", rootID)
		if !strings.Contains(ts.logs.String(), `"rotated the root principal's secret"`) {
			t.Errorf("no log line says the root secret was rotated")
		}
		ts.wantNoSecrets(t, rootSecret, rotated.SecretAccessKey)
	})
	runStart(t, "restart with the same secret", dir, rotated, func(t *testing.T, ts *testServer) {
		if err := describe(t, ts, rotated); err != nil {
			t.Errorf("DescribeKey signed with the root secret: %v", err)
		}
		if err := describe(t, ts, rootCreds); errorCode(err) != "InvalidSignatureException" {
			t.Errorf("DescribeKey signed with the old root secret: %v, want InvalidSignatureException", err)
		}
		if recs := ts.recordsOf(t, "hsmkms:RotateRootSecret"); len(recs) != 0 {
			t.Errorf("a restart with the same secret audited a rotation: %+v", recs)
		}
		if strings.Contains(ts.logs.String(), "rotated the root") {
			t.Errorf("a restart with the same secret logged a rotation")
		}
		ts.wantNoSecrets(t, rootSecret, rotated.SecretAccessKey)
	})
}

// TestRootAccessKeyReplaced proves that restarting with a new
// HSMKMS_ROOT_ACCESS_KEY_ID makes a new root principal and deletes the
// previous one, so that a leaked root key pair is revoked by a restart:
// the old one is no longer recognised, the new one may do everything, and
// other principals are untouched.
func TestRootAccessKeyReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	newRoot := aws.Credentials{AccessKeyID: "AKIASERVERTESTROOT02", SecretAccessKey: "server-test-replacement-root-secret-0123"}
	var app aws.Credentials
	runStart(t, "first start", dir, rootCreds, func(t *testing.T, ts *testServer) {
		app = ts.newPrincipal(t, "app", policy.Statement{Effect: "Allow", Actions: []string{"kms:ListKeys"}, Resources: []string{"*"}})
	})
	runStart(t, "restart with a new access key ID", dir, newRoot, func(t *testing.T, ts *testServer) {
		ctx := t.Context()
		if _, err := ts.kmsClient(rootCreds).ListKeys(ctx, &kms.ListKeysInput{}); errorCode(err) != "UnrecognizedClientException" {
			t.Errorf("ListKeys signed by the previous root: %v, want UnrecognizedClientException", err)
		}
		newKey(t, ts.kmsClient(newRoot), nil)
		if _, err := ts.kmsClient(app).ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
			t.Errorf("ListKeys by a principal the previous root made: %v", err)
		}
		list, err := ts.admin(newRoot).ListPrincipals(ctx, service.ListInput{})
		if err != nil {
			t.Fatalf("ListPrincipals by the new root: %v", err)
		}
		names := map[string]string{}
		for _, p := range list.Principals {
			names[p.AccessKeyId] = p.Name
		}
		if want := map[string]string{newRoot.AccessKeyID: "root", app.AccessKeyID: "app"}; !mapEqual(names, want) {
			t.Errorf("principals %v, want %v", names, want)
		}
		ts.wantSystemRecord(t, "hsmkms:ReplaceRoot", newRoot.AccessKeyID)
		ts.wantSystemRecord(t, "hsmkms:DeletePrincipal", rootID)
		if !strings.Contains(ts.logs.String(), "replaced the root principal") {
			t.Errorf("no log line says the root principal was replaced")
		}
		ts.wantNoSecrets(t, rootSecret, newRoot.SecretAccessKey)
	})
	runStart(t, "restart with the same credentials", dir, newRoot, func(t *testing.T, ts *testServer) {
		newKey(t, ts.kmsClient(newRoot), nil)
		for _, action := range []string{"hsmkms:ReplaceRoot", "hsmkms:RotateRootSecret", "hsmkms:DeletePrincipal"} {
			if recs := ts.recordsOf(t, action); len(recs) != 0 {
				t.Errorf("a restart with the same credentials audited %s: %+v", action, recs)
			}
		}
	})
}
