package server

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/hsmkms/hsmkms/service/policy"
)

func statement(effect string, actions []string, resources ...string) policy.Statement {
	return policy.Statement{Effect: effect, Actions: actions, Resources: resources}
}

// adminError is the AWS error type and message of an admin client error.
func adminError(err error) (typ, msg string) {
	var ae *adminclient.Error
	if errors.As(err, &ae) {
		return ae.Type, ae.Message
	}
	return "", ""
}

// principalIDs lists the access key IDs of ts's principals, as root.
func (ts *testServer) principalIDs(t *testing.T) map[string]bool {
	t.Helper()
	list, err := ts.admin(rootCreds).ListPrincipals(t.Context(), service.ListInput{})
	if err != nil {
		t.Fatalf("ListPrincipals as root: %v", err)
	}
	ids := map[string]bool{}
	for _, p := range list.Principals {
		ids[p.AccessKeyId] = true
	}
	return ids
}

// TestKMSStarIsNotAdministration proves that kms:* grants every key
// operation but none of the administrative ones, which are hsmkms: actions:
// a principal allowed kms:* on * is refused CreatePrincipal,
// ListPrincipals, DeletePrincipal, GetTokenInfo and BackupStore, each refusal audited
// under its hsmkms: action.
func TestKMSStarIsNotAdministration(t *testing.T) {
	ts := startServer(t)
	ctx := t.Context()
	victim := ts.newPrincipal(t, "victim", statement("Allow", []string{"kms:ListKeys"}, "*"))
	star := ts.newPrincipal(t, "kms-star", statement("Allow", []string{"kms:*"}, "*"))
	newKey(t, ts.kmsClient(star), nil)
	admin := ts.admin(star)
	calls := []struct {
		action string
		call   func() error
	}{
		{"hsmkms:CreatePrincipal", func() error {
			_, err := admin.CreatePrincipal(ctx, service.CreatePrincipalInput{Name: "child",
				Statements: []policy.Statement{statement("Allow", []string{"kms:Encrypt"}, "*")}})
			return err
		}},
		{"hsmkms:ListPrincipals", func() error {
			_, err := admin.ListPrincipals(ctx, service.ListInput{})
			return err
		}},
		{"hsmkms:DeletePrincipal", func() error { return admin.DeletePrincipal(ctx, victim.AccessKeyID) }},
		{"hsmkms:DeletePrincipal", func() error { return admin.DeletePrincipal(ctx, rootID) }},
		{"hsmkms:GetTokenInfo", func() error {
			_, err := admin.GetTokenInfo(ctx)
			return err
		}},
		{"hsmkms:BackupStore", func() error {
			_, err := admin.BackupStore(ctx, io.Discard)
			return err
		}},
	}
	for i, c := range calls {
		if typ, _ := adminError(c.call()); typ != "AccessDeniedException" {
			t.Errorf("%s (call %d) by a principal allowed kms:*: %q, want AccessDeniedException", c.action, i, typ)
		}
	}
	denied := 0
	for _, r := range ts.auditRecords(t) {
		if r.Principal == star.AccessKeyID && strings.HasPrefix(r.Action, "hsmkms:") && r.Outcome == "denied" {
			denied++
		}
	}
	if denied != len(calls) {
		t.Errorf("%d denied hsmkms: audit records of the kms:* principal, want %d", denied, len(calls))
	}
	if ids := ts.principalIDs(t); len(ids) != 3 || !ids[rootID] || !ids[victim.AccessKeyID] {
		t.Errorf("principals after the refusals: %v, want root, victim and kms-star", ids)
	}
}

// TestCreatePrincipalNoEscalation proves that a principal cannot create a
// principal with more rights than its own: its Deny statements bind the
// child (a principal denied kms:Decrypt makes a child allowed kms:*, whose
// Decrypt is refused and Encrypt works), and a child asking for an action
// or resource its creator lacks is refused with AccessDeniedException and
// not created.
func TestCreatePrincipalNoEscalation(t *testing.T) {
	ts := startServer(t)
	ctx := t.Context()
	root := ts.kmsClient(rootCreds)
	keyID := newKey(t, root, nil)
	ct, err := root.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("payroll")})
	if err != nil {
		t.Fatal(err)
	}
	allowAll := statement("Allow", []string{"kms:*"}, "*")

	noDecrypt := ts.newPrincipal(t, "no-decrypt", statement("Allow", []string{"kms:*", "hsmkms:*"}, "*"),
		statement("Deny", []string{"kms:Decrypt"}, "*"))
	p, err := ts.admin(noDecrypt).CreatePrincipal(ctx, service.CreatePrincipalInput{Name: "child", Statements: []policy.Statement{allowAll}})
	if err != nil {
		t.Fatalf("CreatePrincipal of a kms:* child: %v", err)
	}
	child := ts.kmsClient(aws.Credentials{AccessKeyID: p.AccessKeyId, SecretAccessKey: p.SecretAccessKey})
	if _, err := child.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("x")}); err != nil {
		t.Errorf("Encrypt by the child: %v", err)
	}
	if out, err := child.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct.CiphertextBlob}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("Decrypt by the child of a principal denied kms:Decrypt: %v (plaintext %t), want AccessDeniedException", err, out != nil)
	}
	recs := ts.recordsOf(t, "hsmkms:CreatePrincipal")
	if last := recs[len(recs)-1]; last.Principal != noDecrypt.AccessKeyID || last.Subject != p.AccessKeyId || last.Outcome != "allowed" {
		t.Errorf("audit record of the creation %+v, want principal %s, subject %s", last, noDecrypt.AccessKeyID, p.AccessKeyId)
	}

	createOnly := ts.newPrincipal(t, "create-only", statement("Allow", []string{"kms:*", "hsmkms:CreatePrincipal"}, "*"))
	appOnly := ts.newPrincipal(t, "app-only", statement("Allow", []string{"hsmkms:CreatePrincipal"}, "*"),
		statement("Allow", []string{"kms:Encrypt", "kms:Decrypt"}, "alias/app-*"))
	before := ts.principalIDs(t)
	refused := []struct {
		name    string
		creator aws.Credentials
		stmts   []policy.Statement
		inMsg   string
	}{
		{"hsmkms:* from hsmkms:CreatePrincipal", createOnly,
			[]policy.Statement{statement("Allow", []string{"hsmkms:*"}, "*")}, `allows hsmkms:ListPrincipals on "*"`},
		{"DeletePrincipal from hsmkms:CreatePrincipal", createOnly,
			[]policy.Statement{allowAll, statement("Allow", []string{"hsmkms:DeletePrincipal"}, "*")}, "statement 1 allows hsmkms:DeletePrincipal"},
		{"resource the creator lacks", appOnly,
			[]policy.Statement{statement("Allow", []string{"kms:Decrypt"}, "*")}, `allows kms:Decrypt on "*"`},
		{"wider alias pattern", appOnly,
			[]policy.Statement{statement("Allow", []string{"kms:Decrypt"}, "alias/*")}, `on "alias/*"`},
	}
	for _, tc := range refused {
		_, err := ts.admin(tc.creator).CreatePrincipal(ctx, service.CreatePrincipalInput{Name: "escalated", Statements: tc.stmts})
		if typ, msg := adminError(err); typ != "AccessDeniedException" || !strings.Contains(msg, tc.inMsg) {
			t.Errorf("%s: CreatePrincipal = %v, want AccessDeniedException saying %q", tc.name, err, tc.inMsg)
		}
	}
	if after := ts.principalIDs(t); len(after) != len(before) {
		t.Errorf("refused creations left principals: %d before, %d after", len(before), len(after))
	}
	narrow := []policy.Statement{statement("Allow", []string{"kms:Decrypt"}, "alias/app-billing")}
	if _, err := ts.admin(appOnly).CreatePrincipal(ctx, service.CreatePrincipalInput{Name: "narrow", Statements: narrow}); err != nil {
		t.Errorf("CreatePrincipal within the creator's rights: %v", err)
	}
}

// TestRootCannotBeDeleted proves that nobody deletes the root principal,
// neither a principal with every right nor root itself, and that root
// keeps working.
func TestRootCannotBeDeleted(t *testing.T) {
	ts := startServer(t)
	ctx := t.Context()
	all := ts.newPrincipal(t, "all", statement("Allow", []string{"kms:*", "hsmkms:*"}, "*"))
	for _, tc := range []struct {
		who   string
		creds aws.Credentials
		inMsg string
	}{
		{"a principal with every right", all, "the root principal cannot be deleted"},
		{"root", rootCreds, "cannot delete itself"},
	} {
		typ, msg := adminError(ts.admin(tc.creds).DeletePrincipal(ctx, rootID))
		if typ != "ValidationException" || !strings.Contains(msg, tc.inMsg) {
			t.Errorf("DeletePrincipal of root by %s: %s %q, want ValidationException saying %q", tc.who, typ, msg, tc.inMsg)
		}
	}
	newKey(t, ts.kmsClient(rootCreds), nil)
	if ids := ts.principalIDs(t); !ids[rootID] {
		t.Errorf("root is gone: %v", ids)
	}
	var subjects []string
	for _, r := range ts.recordsOf(t, "hsmkms:DeletePrincipal") {
		subjects = append(subjects, r.Subject)
	}
	if len(subjects) != 2 || subjects[0] != rootID || subjects[1] != rootID {
		t.Errorf("DeletePrincipal audit subjects %v, want root twice", subjects)
	}
}
