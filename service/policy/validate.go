package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on a principal's policy, enforced by Validate.
const (
	// MaxStatements is the most statements a policy may have.
	MaxStatements = 100
	// MaxPatternsPerStatement is the most actions, and separately the most
	// resources, one statement may list.
	MaxPatternsPerStatement = 100
	// MaxPatternLen is the longest action or resource pattern, in bytes.
	MaxPatternLen = 2048
)

// ValidationError says what is wrong with a policy and where.
type ValidationError struct {
	// Statement is the index of the offending statement, or -1 if the
	// problem is with the policy as a whole.
	Statement int
	// Field is the offending field, e.g. "effect", "actions", "resources[2]";
	// empty when Statement is -1.
	Field string
	// Problem describes what is wrong.
	Problem string
}

// Error implements error.
func (e *ValidationError) Error() string {
	if e.Statement < 0 {
		return "policy: " + e.Problem
	}
	return fmt.Sprintf("policy: statement %d: %s: %s", e.Statement, e.Field, e.Problem)
}

// Validate checks a policy before it is stored, returning a
// *ValidationError for the first problem found. An empty policy is valid and
// allows nothing. Each statement must have Effect exactly "Allow" or "Deny"
// and at least one action and one resource. Patterns must be non-empty, at
// most MaxPatternLen bytes of valid UTF-8 without control characters. Each
// action pattern must start with "kms:" or "hsmkms:" (any case) and match
// at least one known action, so that a misspelt action is an error rather
// than a statement that silently never applies; "kms:*" and "hsmkms:*" are
// allowed, a bare "*" is not. The administrative actions that earlier
// versions named "kms:CreatePrincipal" and so on get an error that names
// their "hsmkms:" spelling.
func Validate(stmts []Statement) error {
	if len(stmts) > MaxStatements {
		return &ValidationError{Statement: -1,
			Problem: fmt.Sprintf("%d statements, at most %d allowed", len(stmts), MaxStatements)}
	}
	for i, st := range stmts {
		bad := func(field, format string, args ...any) error {
			return &ValidationError{Statement: i, Field: field, Problem: fmt.Sprintf(format, args...)}
		}
		if st.Effect != EffectAllow && st.Effect != EffectDeny {
			return bad("effect", "%q must be exactly %q or %q", st.Effect, EffectAllow, EffectDeny)
		}
		if err := checkList(st.Actions, "actions", bad); err != nil {
			return err
		}
		for j, a := range st.Actions {
			field := fmt.Sprintf("actions[%d]", j)
			if err := checkPattern(a, field, bad); err != nil {
				return err
			}
			if !hasPrefixFold(a, KMSPrefix) && !hasPrefixFold(a, AdminPrefix) {
				return bad(field, "%q must start with %q or %q", a, KMSPrefix, AdminPrefix)
			}
			if !matchesKnownAction(a) {
				return bad(field, "%q matches no known action%s", a, adminHint(a))
			}
		}
		if err := checkList(st.Resources, "resources", bad); err != nil {
			return err
		}
		for j, r := range st.Resources {
			if err := checkPattern(r, fmt.Sprintf("resources[%d]", j), bad); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkList(list []string, field string, bad func(string, string, ...any) error) error {
	switch {
	case len(list) == 0:
		return bad(field, "at least one required")
	case len(list) > MaxPatternsPerStatement:
		return bad(field, "%d entries, at most %d allowed", len(list), MaxPatternsPerStatement)
	}
	return nil
}

func checkPattern(p, field string, bad func(string, string, ...any) error) error {
	switch {
	case p == "":
		return bad(field, "empty")
	case len(p) > MaxPatternLen:
		return bad(field, "%d bytes long, at most %d allowed", len(p), MaxPatternLen)
	case !utf8.ValidString(p):
		return bad(field, "not valid UTF-8")
	case strings.IndexFunc(p, isControl) >= 0:
		return bad(field, "%q contains a control character", p)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

// adminHint explains a "kms:" pattern that matches no action but would
// match an administrative one as "hsmkms:", such as "kms:CreatePrincipal",
// the name earlier versions used: that is a policy written for them.
func adminHint(pattern string) string {
	if !hasPrefixFold(pattern, KMSPrefix) {
		return ""
	}
	admin := AdminPrefix + pattern[len(KMSPrefix):]
	if !matchesKnownAction(admin) {
		return ""
	}
	return fmt.Sprintf("; principal management and token information are %q (the %q namespace, which %q does not cover)",
		admin, AdminPrefix, KMSPrefix+"*")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFoldASCII(s[:len(prefix)], prefix)
}

func matchesKnownAction(pattern string) bool {
	for _, a := range knownActions {
		if globMatch(pattern, a, true) {
			return true
		}
	}
	return false
}
