package service

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/policy"
)

// TestKeyPolicies proves that every key reads as having AWS KMS's default
// key policy for the service's account, under the one name "default",
// whatever name of the key the caller gives; that other policy names, bad
// names and bad limits get their AWS error types; that PutKeyPolicy is
// refused as unsupported once allowed; and that a caller without the
// action is denied.
func TestKeyPolicies(t *testing.T) {
	f := newFixture(t, "", func(c *Config) { c.Account = "111122223333" })
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	if err := f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/policy-test", TargetKeyId: id}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{id, "arn:aws:kms:us-east-1:111122223333:key/" + id, "alias/policy-test"} {
		out, err := f.svc.GetKeyPolicy(ctx, GetKeyPolicyInput{KeyId: ref})
		if err != nil {
			t.Fatalf("GetKeyPolicy(%s): %v", ref, err)
		}
		var doc struct {
			Version   string
			Statement []struct {
				Effect    string
				Principal struct{ AWS string }
				Action    string
				Resource  string
			}
		}
		if err := json.Unmarshal([]byte(out.Policy), &doc); err != nil {
			t.Fatalf("GetKeyPolicy(%s): the policy is not JSON: %v\n%s", ref, err, out.Policy)
		}
		st := doc.Statement
		if out.PolicyName != "default" || doc.Version != "2012-10-17" || len(st) != 1 || st[0].Effect != "Allow" ||
			st[0].Principal.AWS != "arn:aws:iam::111122223333:root" || st[0].Action != "kms:*" || st[0].Resource != "*" {
			t.Fatalf("GetKeyPolicy(%s) = %q %s, want the default key policy of account 111122223333", ref, out.PolicyName, out.Policy)
		}
	}

	for _, tc := range []struct {
		name string
		call func() error
		code Code
		msg  string
	}{
		{"Get named default", func() error {
			_, err := f.svc.GetKeyPolicy(ctx, GetKeyPolicyInput{KeyId: id, PolicyName: "default"})
			return err
		}, "", ""},
		{"Get another name", func() error {
			_, err := f.svc.GetKeyPolicy(ctx, GetKeyPolicyInput{KeyId: id, PolicyName: "other"})
			return err
		}, CodeNotFound, `Key policy "other" does not exist: the only key policy is "default"`},
		{"Get a name of no policy's form", func() error {
			_, err := f.svc.GetKeyPolicy(ctx, GetKeyPolicyInput{KeyId: id, PolicyName: "de fault"})
			return err
		}, CodeValidation, "Member must satisfy regular expression pattern: [\\w]+ and have length between 1 and 128"},
		{"Get a name too long", func() error {
			_, err := f.svc.GetKeyPolicy(ctx, GetKeyPolicyInput{KeyId: id, PolicyName: strings.Repeat("a", 129)})
			return err
		}, CodeValidation, "have length between 1 and 128"},
		{"Get without a key", func() error {
			_, err := f.svc.GetKeyPolicy(ctx, GetKeyPolicyInput{})
			return err
		}, CodeValidation, "Member must not be null"},
		{"Get a missing key", func() error {
			_, err := f.svc.GetKeyPolicy(ctx, GetKeyPolicyInput{KeyId: "00000000-0000-4000-8000-000000000000"})
			return err
		}, CodeNotFound, "does not exist"},
		{"List a bad limit", func() error {
			_, err := f.svc.ListKeyPolicies(ctx, ListKeyPoliciesInput{KeyId: id, Limit: 1001})
			return err
		}, CodeValidation, "Member must have value between 1 and 1000"},
		{"Put", func() error {
			return f.svc.PutKeyPolicy(ctx, PutKeyPolicyInput{KeyId: id, PolicyName: "default", Policy: `{"Version":"2012-10-17","Statement":[]}`})
		}, CodeUnsupported, "key policies are not supported: access is granted by principals' policies"},
		{"Put without a policy", func() error {
			return f.svc.PutKeyPolicy(ctx, PutKeyPolicyInput{KeyId: id})
		}, CodeValidation, "Value null at 'policy'"},
		{"Get denied", func() error {
			c := as(t, "AKIADESCRIBEONLY", policy.Statement{Effect: "Allow", Actions: []string{"kms:DescribeKey"}, Resources: []string{"*"}})
			_, err := f.svc.GetKeyPolicy(c, GetKeyPolicyInput{KeyId: id})
			return err
		}, CodeAccessDenied, "kms:GetKeyPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.code == "" {
				if err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			wantCode(t, err, tc.code)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q, want it to say %q", err, tc.msg)
			}
		})
	}

	for _, tc := range []struct {
		marker string
		want   []string
	}{
		{"", []string{"default"}},
		{"a", []string{"default"}},
		{"default", []string{}},
	} {
		out, err := f.svc.ListKeyPolicies(ctx, ListKeyPoliciesInput{KeyId: "alias/policy-test", Marker: tc.marker})
		if err != nil {
			t.Fatalf("ListKeyPolicies after %q: %v", tc.marker, err)
		}
		if strings.Join(out.PolicyNames, ",") != strings.Join(tc.want, ",") || out.PolicyNames == nil || out.Truncated || out.NextMarker != "" {
			t.Fatalf("ListKeyPolicies after %q = %+v, want %q on one page", tc.marker, out, tc.want)
		}
	}
}
