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
//
// Resource patterns match case-sensitively against a key's lower-case ID,
// its ARN and "alias/<name>" for each of its aliases, never against an
// alias ARN. So, found by review, a pattern that can only ever match a key
// ID or key ARN but holds an upper-case letter in the key ID
// ("arn:aws:kms:…:key/1234ABCD-…"), and an alias ARN
// ("arn:aws:kms:…:alias/prod"), are refused: such a Deny would silently
// deny nothing. The error says what to write instead; Validate does not
// rewrite the pattern, so what is stored is what its author wrote. Action
// patterns need no such check: they match ignoring ASCII case, and one
// that matches no known action is refused above.
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
			field := fmt.Sprintf("resources[%d]", j)
			if err := checkPattern(r, field, bad); err != nil {
				return err
			}
			if problem := neverMatches(r); problem != "" {
				return bad(field, "%s", problem)
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

// neverMatches explains why resource pattern p can match no resource a
// request names, or returns "" when it may match one. It is conservative:
// it speaks only of patterns that are literally a key ID or KMS ARN up to
// the part it objects to, so that a "*" cannot let them match an alias
// (whose names may hold upper case and "key/"), an IAM principal's ARN or a
// "via:" service, the resources of an external key store's policy.
func neverMatches(p string) string {
	if rest, ok := kmsARNRest(p); ok {
		// A KMS ARN pattern can match only a key ARN:
		// "arn:aws:kms:<region>:<account>:key/<lower-case key ID>".
		if i := strings.Index(rest, "alias/"); i >= 0 {
			return fmt.Sprintf("%q is an alias ARN, which never matches: a policy names an alias as %q, so write %q",
				p, "alias/<name>", rest[i:])
		}
		if i := strings.LastIndex(p, "key/"); i >= 0 && hasUpperASCII(p[i:]) {
			return fmt.Sprintf("%q never matches: key IDs are lower-case hex, so write %q", p, p[:i]+strings.ToLower(p[i:]))
		}
		return ""
	}
	// A pattern starting with the eight hex digits a key ID starts with can
	// match only a key ID: no other resource starts with them.
	if len(p) >= 8 && strings.IndexFunc(p[:8], isNotHex) < 0 && hasUpperASCII(p) {
		return fmt.Sprintf("%q never matches: key IDs are lower-case hex, so write %q", p, strings.ToLower(p))
	}
	return ""
}

// kmsARNRest returns what follows "arn:<partition>:kms:" in p, if p starts
// so; the partition may hold "*" but no ":".
func kmsARNRest(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "arn:")
	if !ok {
		return "", false
	}
	i := strings.IndexByte(rest, ':')
	if i < 0 {
		return "", false
	}
	return strings.CutPrefix(rest[i+1:], "kms:")
}

func hasUpperASCII(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' }) >= 0
}

func isNotHex(r rune) bool {
	return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F')
}
