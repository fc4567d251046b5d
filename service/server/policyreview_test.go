package server

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
)

// TestPrincipalPolicyRefusedOverTheWire: CreatePrincipal and
// UpdatePrincipal refuse, with a ValidationException saying what is wrong,
// a statement with a member hsmkms does not know (an IAM-style
// "condition") and resource patterns that can never match (an upper-case
// key ID, an alias ARN); nothing is created and the policy is not
// replaced. Found by review: the condition was ignored, leaving an
// unconditional Allow, and the patterns were stored as a Deny that denied
// nothing.
func TestPrincipalPolicyRefusedOverTheWire(t *testing.T) {
	ts := startServer(t)
	ctx := t.Context()
	before := []policy.Statement{statement("Allow", []string{"kms:Decrypt"}, "alias/app")}
	app := ts.newPrincipal(t, "app", before...)
	tests := []struct {
		name, statements, inMsg string
	}{
		{"condition", `[{"effect":"Allow","actions":["kms:Decrypt"],"resources":["*"],"condition":{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}}]`,
			`member Statements/0/condition: policy: a statement has no member "condition"`},
		{"notResources", `[{"effect":"Allow","actions":["kms:Decrypt"],"resources":["*"]},{"effect":"Deny","actions":["kms:Decrypt"],"notResources":["alias/app"]}]`,
			`no member "notResources"`},
		{"upper-case key ID", `[{"effect":"Allow","actions":["kms:*"],"resources":["*"]},{"effect":"Deny","actions":["kms:Decrypt"],"resources":["arn:aws:kms:*:*:key/1234ABCD-*"]}]`,
			`statement 1: resources[0]: "arn:aws:kms:*:*:key/1234ABCD-*" never matches: key IDs are lower-case hex, so write "arn:aws:kms:*:*:key/1234abcd-*"`},
		{"alias ARN", `[{"effect":"Allow","actions":["kms:*"],"resources":["*"]},{"effect":"Deny","actions":["kms:Decrypt"],"resources":["arn:aws:kms:` + region + `:000000000000:alias/prod"]}]`,
			`a policy names an alias as "alias/<name>", so write "alias/prod"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids := ts.principalIDs(t)
			create := json.RawMessage(`{"Name":"refused","Statements":` + tc.statements + `}`)
			err := ts.admin(rootCreds).Call(ctx, "HsmkmsAdmin.CreatePrincipal", create, nil)
			if typ, msg := adminError(err); typ != "ValidationException" || !strings.Contains(msg, tc.inMsg) {
				t.Errorf("CreatePrincipal: %v, want a ValidationException saying %q", err, tc.inMsg)
			}
			if after := ts.principalIDs(t); len(after) != len(ids) {
				t.Errorf("principals %v after a refused CreatePrincipal, want %v", after, ids)
			}
			update := json.RawMessage(`{"AccessKeyId":"` + app.AccessKeyID + `","Statements":` + tc.statements + `}`)
			err = ts.admin(rootCreds).Call(ctx, "HsmkmsAdmin.UpdatePrincipal", update, nil)
			if typ, msg := adminError(err); typ != "ValidationException" || !strings.Contains(msg, tc.inMsg) {
				t.Errorf("UpdatePrincipal: %v, want a ValidationException saying %q", err, tc.inMsg)
			}
			list, err := ts.admin(rootCreds).ListPrincipals(ctx, service.ListInput{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range list.Principals {
				if p.AccessKeyId == app.AccessKeyID && !slices.EqualFunc(p.Statements, before, policy.Statement.Equal) {
					t.Errorf("policy after a refused UpdatePrincipal: %+v, want %+v", p.Statements, before)
				}
			}
		})
	}
}
