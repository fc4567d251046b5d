package cli

import (
	"testing"

	"github.com/hsmkms/hsmkms/service/policy"
)

// TestPolicyText checks principal list's short form: what --allow takes,
// presets by name whatever the order or case of their actions.
func TestPolicyText(t *testing.T) {
	allow := func(res string, actions ...string) policy.Statement {
		return policy.Statement{Effect: policy.EffectAllow, Actions: actions, Resources: []string{res}}
	}
	tests := []struct {
		name  string
		stmts []policy.Statement
		want  string
	}{
		{"none", nil, ""},
		{"one action", []policy.Statement{allow("*", "kms:ListKeys")}, "ListKeys=*"},
		{"admin action kept whole", []policy.Statement{allow("*", "hsmkms:ListPrincipals")}, "hsmkms:ListPrincipals=*"},
		{"preset", []policy.Statement{allow("alias/app", "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt", "kms:DescribeKey")}, "encrypt-files=alias/app"},
		{"preset in another order and case", []policy.Statement{allow("k", "KMS:describekey", "kms:Decrypt")}, "decrypt-only=k"},
		{"admin preset", []policy.Statement{allow("*", "hsmkms:*", "kms:*")}, "admin=*"},
		{"not quite a preset", []policy.Statement{allow("k", "kms:Decrypt", "kms:Decrypt")}, "Decrypt,Decrypt=k"},
		{"deny and several resources", []policy.Statement{
			allow("*", "kms:Encrypt"),
			{Effect: policy.EffectDeny, Actions: []string{"kms:Decrypt"}, Resources: []string{"alias/a", "alias/b"}},
		}, "Encrypt=*; deny Decrypt=alias/a,alias/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policyText(tt.stmts); got != tt.want {
				t.Errorf("policyText = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestOneLine checks that an error message of several lines prints as one.
func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"hsmkms: plain\n", "hsmkms: plain"},
		{"hsmkms: store: failed to connect to `db`:\n\ta: refused\n\tb: refused\n", "hsmkms: store: failed to connect to `db`; a: refused; b: refused"},
		{"a\r\n\r\nb", "a; b"},
		{"", ""},
	} {
		if got := oneLine(tc.in); got != tc.want {
			t.Errorf("oneLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
