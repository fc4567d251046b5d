package policy

import "strconv"

// Effects of a Statement.
const (
	// EffectAllow grants the statement's actions on its resources.
	EffectAllow = "Allow"
	// EffectDeny forbids the statement's actions on its resources, whatever
	// any Allow says.
	EffectDeny = "Deny"
)

// AnyResource is the single resource of a request that is not about a key
// (CreateKey, ListKeys, ListAliases, GenerateRandom, the principal
// administration actions). Only resource patterns that match "*" itself,
// such as "*", match it.
const AnyResource = "*"

// Request is what is being asked: one action on one key, named by all its
// names.
type Request struct {
	// Action is the action, e.g. ActionDecrypt ("kms:Decrypt").
	Action string
	// Resources are every name of the key the request is about: its ID, its
	// ARN, "alias/<name>" for every alias currently pointing at it, and the
	// alias named in the request, if any. For requests not about a key it
	// is []string{AnyResource}. The caller must list every alias of the key:
	// a Deny on an alias must not be escaped by naming the key by its ID.
	//
	// An operation that needs several permissions is several requests,
	// decided together by DecideAll: CreateAlias, UpdateAlias and
	// DeleteAlias are checked once against the alias ("alias/<name>") and
	// once against each key involved; ReEncrypt is ReEncryptFrom on the
	// source key and ReEncryptTo on the destination key.
	Resources []string
}

// Decision is the outcome of Decide.
type Decision struct {
	// Allowed is true only if some statement allows the request and none
	// denies it.
	Allowed bool
	// Denied is true when a Deny statement matched: nothing else (a
	// grant) may then allow the request.
	Denied bool
	// Reason says why, naming the deciding statement by its index, for
	// audit records and error messages.
	Reason string
}

// Decide applies the statements to the request. A statement matches when
// its Effect is exactly Allow or Deny, one of its action patterns matches
// the action (ignoring ASCII case) and one of its resource patterns matches
// one of the request's resources (case-sensitive). Patterns are literal
// except for "*", which matches any run of characters, "/" and ":"
// included. Any matching Deny denies; otherwise any matching Allow allows;
// otherwise the request is denied by default. Decide is pure and safe for
// concurrent use; it allocates only to explain a denial.
func Decide(stmts []Statement, req Request) Decision {
	allow := -1
	for i := range stmts {
		st := &stmts[i]
		switch st.Effect {
		case EffectDeny:
			if !matchesAction(st.Actions, req.Action) {
				continue
			}
			if r, ok := matchesResource(st.Resources, req.Resources); ok {
				return Decision{Denied: true, Reason: "denied by statement " + strconv.Itoa(i) +
					" (Deny " + req.Action + " on " + r + ")"}
			}
		case EffectAllow:
			if allow >= 0 || !matchesAction(st.Actions, req.Action) {
				continue
			}
			if _, ok := matchesResource(st.Resources, req.Resources); ok {
				allow = i
			}
		}
	}
	if allow >= 0 {
		return Decision{Allowed: true, Reason: allowReason(allow)}
	}
	first := "(no resource)"
	if len(req.Resources) > 0 {
		first = req.Resources[0]
	}
	return Decision{Reason: "no statement allows " + req.Action + " on " + first}
}

// DecideAll allows only if Decide allows every one of reqs; otherwise it
// returns the first denial. With no requests it denies.
func DecideAll(stmts []Statement, reqs ...Request) Decision {
	if len(reqs) == 0 {
		return Decision{Reason: "no request to decide"}
	}
	reason := ""
	for i, req := range reqs {
		d := Decide(stmts, req)
		if !d.Allowed {
			return d
		}
		if i > 0 {
			reason += "; "
		}
		reason += d.Reason
	}
	return Decision{Allowed: true, Reason: reason}
}

// allowReasons holds the Reason of an allowed request for each index a valid
// policy can have, so that the common path does not allocate.
var allowReasons = func() (r [MaxStatements]string) {
	for i := range r {
		r[i] = "allowed by statement " + strconv.Itoa(i)
	}
	return r
}()

func allowReason(i int) string {
	if i < len(allowReasons) {
		return allowReasons[i]
	}
	return "allowed by statement " + strconv.Itoa(i)
}

func matchesAction(patterns []string, action string) bool {
	for _, p := range patterns {
		if globMatch(p, action, true) {
			return true
		}
	}
	return false
}

// matchesResource returns the first resource some pattern matches.
func matchesResource(patterns, resources []string) (string, bool) {
	for _, p := range patterns {
		for _, r := range resources {
			if globMatch(p, r, false) {
				return r, true
			}
		}
	}
	return "", false
}

// globMatch reports whether s matches pattern, in which "*" matches any run
// of bytes and every other byte matches itself (ASCII letters in either case
// if fold). It runs in O(len(pattern)·len(s)) time at worst, without
// recursion.
func globMatch(pattern, s string, fold bool) bool {
	ok, _ := globSteps(pattern, s, fold)
	return ok
}

// globSteps is globMatch that also counts loop iterations, for tests.
//
// It keeps only the most recent "*": when a later literal segment fails, it
// retries with that star absorbing one more byte. Earlier stars never need
// revisiting, because whatever the later star can reach from an earlier
// split it can also reach from the later one.
func globSteps(pattern, s string, fold bool) (ok bool, steps int) {
	if pattern == "*" {
		return true, 1
	}
	p, i := 0, 0
	star, mark := -1, 0 // index of the last "*" seen; where its run ends in s
	for i < len(s) {
		steps++
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && byteEq(pattern[p], s[i], fold):
			p++
			i++
		case star >= 0:
			mark++
			p, i = star+1, mark
		default:
			return false, steps
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern), steps
}

func byteEq(a, b byte, fold bool) bool {
	if a == b {
		return true
	}
	return fold && lowerASCII(a) == lowerASCII(b)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if !byteEq(a[i], b[i], true) {
			return false
		}
	}
	return true
}
