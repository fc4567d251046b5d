// Package policy owns access decisions: which principal may perform which
// action on which key. Decide is a pure function of the statements and the
// request.
package policy

// Statement is one policy statement. Deny wins over Allow; nothing is
// allowed by default.
type Statement struct {
	Effect    string   `json:"effect"`    // Allow or Deny
	Actions   []string `json:"actions"`   // kms:Encrypt, kms:GenerateDataKey*, kms:*, …
	Resources []string `json:"resources"` // *, a key ARN or ID, alias/<name>, with * wildcards
}
