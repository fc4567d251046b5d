package service

import (
	"context"
	"encoding/json"
	"regexp"
)

// Key policies. hsmkms decides access by principals' policies, its
// equivalent of IAM, never by a policy attached to a key. Every key reads
// as having the one policy AWS KMS gives a key created without one, which
// hands every decision to IAM: that is what holds here, and tools that
// read a key's policy after making it (Terraform's aws_kms_key does, on
// every refresh) get a true answer instead of an unknown operation.
// Setting a key policy is not supported.

// defaultPolicyName is the only key policy name AWS KMS knows.
const defaultPolicyName = "default"

// policyNameRE is AWS KMS's constraint on a PolicyName, checked for its
// length apart (1 to 128).
var policyNameRE = regexp.MustCompile(`^\w+$`)

// keyPolicy is a key policy document, its members in AWS KMS's order.
type keyPolicy struct {
	Version   string               `json:"Version"`
	Id        string               `json:"Id"`
	Statement []keyPolicyStatement `json:"Statement"`
}

type keyPolicyStatement struct {
	Sid       string            `json:"Sid"`
	Effect    string            `json:"Effect"`
	Principal map[string]string `json:"Principal"`
	Action    string            `json:"Action"`
	Resource  string            `json:"Resource"`
}

// defaultKeyPolicy is the policy every key reads as having: AWS KMS's
// default key policy for this account, which allows the account, and so
// leaves each request to the caller's own (IAM, here principal) policy.
func (s *Service) defaultKeyPolicy() string {
	doc, _ := json.MarshalIndent(keyPolicy{Version: "2012-10-17", Id: "key-default-1", Statement: []keyPolicyStatement{{
		Sid: "Enable IAM User Permissions", Effect: "Allow",
		Principal: map[string]string{"AWS": "arn:aws:iam::" + s.cfg.Account + ":root"},
		Action:    "kms:*", Resource: "*",
	}}}, "", "  ")
	return string(doc)
}

// checkPolicyName validates a request's PolicyName: absent or "default".
func checkPolicyName(name string, required bool) error {
	switch {
	case name == "" && !required:
		return nil
	case name == "":
		return newErr(CodeValidation, "1 validation error detected: Value null at 'policyName' failed to satisfy constraint: Member must not be null")
	case len(name) > 128 || !policyNameRE.MatchString(name):
		return newErr(CodeValidation, "1 validation error detected: Value at 'policyName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w]+ and have length between 1 and 128")
	case name != defaultPolicyName:
		return newErr(CodeNotFound, "Key policy %q does not exist: the only key policy is %q", name, defaultPolicyName)
	}
	return nil
}

// GetKeyPolicy returns a key's policy: AWS KMS's default key policy for
// every key (see defaultKeyPolicy).
func (s *Service) GetKeyPolicy(ctx context.Context, in GetKeyPolicyInput) (out GetKeyPolicyOutput, err error) {
	o := s.begin(ctx, "kms:GetKeyPolicy")
	defer endWith(o, &out, &err)
	if err := checkPolicyName(in.PolicyName, false); err != nil {
		return out, err
	}
	if _, err := s.authorizedKey(ctx, o, in.KeyId); err != nil {
		return out, err
	}
	return GetKeyPolicyOutput{Policy: s.defaultKeyPolicy(), PolicyName: defaultPolicyName}, nil
}

// ListKeyPolicies names a key's policies: "default", the only one.
func (s *Service) ListKeyPolicies(ctx context.Context, in ListKeyPoliciesInput) (out ListKeyPoliciesOutput, err error) {
	o := s.begin(ctx, "kms:ListKeyPolicies")
	defer endWith(o, &out, &err)
	if _, err := pageLimit(in.Limit); err != nil {
		return out, err
	}
	if _, err := s.authorizedKey(ctx, o, in.KeyId); err != nil {
		return out, err
	}
	out.PolicyNames = []string{}
	if in.Marker < defaultPolicyName {
		out.PolicyNames = append(out.PolicyNames, defaultPolicyName)
	}
	return out, nil
}

// PutKeyPolicy is refused once the request is valid and allowed: a key's
// policy cannot change, since access is decided by principals' policies.
func (s *Service) PutKeyPolicy(ctx context.Context, in PutKeyPolicyInput) (err error) {
	o := s.begin(ctx, "kms:PutKeyPolicy")
	defer func() { err = o.end(err) }()
	if err := checkPolicyName(in.PolicyName, false); err != nil {
		return err
	}
	if in.Policy == "" {
		return newErr(CodeValidation, "1 validation error detected: Value null at 'policy' failed to satisfy constraint: Member must not be null")
	}
	if _, err := s.authorizedKey(ctx, o, in.KeyId); err != nil {
		return err
	}
	return newErr(CodeUnsupported, "key policies are not supported: access is granted by principals' policies")
}
