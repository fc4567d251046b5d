// Package policy owns access decisions: which principal may perform which
// action on which key. Decide is a pure function of the statements and the
// request.
package policy

import "slices"

// Statement is one policy statement. Deny wins over Allow; nothing is
// allowed by default.
type Statement struct {
	Effect    string   `json:"effect"`    // Allow or Deny
	Actions   []string `json:"actions"`   // kms:Encrypt, kms:GenerateDataKey*, kms:*, hsmkms:CreatePrincipal, hsmkms:*, …
	Resources []string `json:"resources"` // *, a key ARN or ID, alias/<name>, with * wildcards
}

// Equal reports whether s and o are the same statement, pattern for
// pattern in the same order.
func (s Statement) Equal(o Statement) bool {
	return s.Effect == o.Effect && slices.Equal(s.Actions, o.Actions) && slices.Equal(s.Resources, o.Resources)
}
