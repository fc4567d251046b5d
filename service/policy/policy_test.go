package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

const (
	idA  = "1234abcd-12ab-34cd-56ef-1234567890ab"
	idB  = "9876fedc-98fe-76dc-54ba-0987654321fe"
	arnA = "arn:aws:kms:us-east-1:000000000000:key/" + idA
	arnB = "arn:aws:kms:us-east-1:000000000000:key/" + idB
)

// keyA and keyB are the resources of a request about key A or key B, with
// the given aliases.
func keyA(aliases ...string) []string { return append([]string{idA, arnA}, aliases...) }
func keyB(aliases ...string) []string { return append([]string{idB, arnB}, aliases...) }

func allow(actions, resources []string) Statement {
	return Statement{Effect: EffectAllow, Actions: actions, Resources: resources}
}

func deny(actions, resources []string) Statement {
	return Statement{Effect: EffectDeny, Actions: actions, Resources: resources}
}

func l(s ...string) []string { return s }

var anyRes = l(AnyResource)

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		stmts   []Statement
		req     Request
		allowed bool
		reason  string // exact Reason, if set
		inReas  string // substring of Reason, if set
	}{
		// Exact matches.
		{name: "allow exact ARN",
			stmts: []Statement{allow(l(ActionDecrypt), l(arnA))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true, reason: "allowed by statement 0"},
		{name: "allow exact key ID",
			stmts: []Statement{allow(l(ActionDecrypt), l(idA))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true},
		{name: "allowing statement index in reason",
			stmts: []Statement{allow(l(ActionEncrypt), l(arnA)), allow(l(ActionDecrypt), l(arnA))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true, reason: "allowed by statement 1"},

		// Default deny.
		{name: "default deny, no statements",
			req:    Request{ActionDecrypt, keyA()},
			reason: "no statement allows kms:Decrypt on " + idA},
		{name: "default deny, nil statements, * request",
			stmts: nil, req: Request{ActionCreateKey, anyRes},
			reason: "no statement allows kms:CreateKey on *"},
		{name: "default deny, other action",
			stmts: []Statement{allow(l(ActionEncrypt), l("*"))},
			req:   Request{ActionDecrypt, keyA()}, inReas: "no statement allows kms:Decrypt"},
		{name: "request without resources is denied even by *",
			stmts:  []Statement{allow(l("kms:*"), l("*"))},
			req:    Request{ActionDecrypt, nil},
			reason: "no statement allows kms:Decrypt on (no resource)"},

		// Deny wins, whatever the order.
		{name: "deny after allow",
			stmts: []Statement{allow(l("kms:*"), l("*")), deny(l(ActionDecrypt), l(arnA))},
			req:   Request{ActionDecrypt, keyA()}, inReas: "denied by statement 1"},
		{name: "deny before allow",
			stmts: []Statement{deny(l(ActionDecrypt), l(arnA)), allow(l("kms:*"), l("*"))},
			req:   Request{ActionDecrypt, keyA()}, inReas: "denied by statement 0"},
		{name: "deny names resource",
			stmts:  []Statement{allow(l("kms:*"), l("*")), deny(l("kms:*"), l("alias/secret"))},
			req:    Request{ActionDecrypt, keyA("alias/secret")},
			reason: "denied by statement 1 (Deny kms:Decrypt on alias/secret)"},
		{name: "deny on other key does not deny",
			stmts: []Statement{deny(l("kms:*"), l(arnB)), allow(l(ActionDecrypt), l(arnA))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true, reason: "allowed by statement 1"},
		{name: "deny on other action does not deny",
			stmts: []Statement{allow(l(ActionDecrypt), l(arnA)), deny(l(ActionEncrypt), l("*"))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true},

		// May store data encrypted under A, but has no right on the key
		// beyond Encrypt: cannot decrypt it, cannot touch B.
		{name: "encrypt-only principal encrypts on A",
			stmts: []Statement{allow(l(ActionEncrypt), l(arnA))},
			req:   Request{ActionEncrypt, keyA()}, allowed: true},
		{name: "encrypt-only principal cannot decrypt on A",
			stmts: []Statement{allow(l(ActionEncrypt), l(arnA))},
			req:   Request{ActionDecrypt, keyA()}, reason: "no statement allows kms:Decrypt on " + idA},
		{name: "encrypt-only principal cannot encrypt on B",
			stmts: []Statement{allow(l(ActionEncrypt), l(arnA))},
			req:   Request{ActionEncrypt, keyB()}},
		{name: "encrypt-only principal cannot decrypt on B",
			stmts: []Statement{allow(l(ActionEncrypt), l(arnA))},
			req:   Request{ActionDecrypt, keyB()}},
		{name: "encrypt-only principal cannot describe A",
			stmts: []Statement{allow(l(ActionEncrypt), l(arnA))},
			req:   Request{ActionDescribeKey, keyA()}},

		// Action wildcards.
		{name: "GenerateDataKey* allows GenerateDataKey",
			stmts: []Statement{allow(l("kms:GenerateDataKey*"), l(arnA))},
			req:   Request{ActionGenerateDataKey, keyA()}, allowed: true},
		{name: "GenerateDataKey* allows GenerateDataKeyWithoutPlaintext",
			stmts: []Statement{allow(l("kms:GenerateDataKey*"), l(arnA))},
			req:   Request{ActionGenerateDataKeyWithoutPlaintext, keyA()}, allowed: true},
		{name: "GenerateDataKey* allows GenerateDataKeyPair",
			stmts: []Statement{allow(l("kms:GenerateDataKey*"), l(arnA))},
			req:   Request{"kms:GenerateDataKeyPair", keyA()}, allowed: true},
		{name: "GenerateDataKey* does not allow GenerateRandom",
			stmts: []Statement{allow(l("kms:GenerateDataKey*"), l("*"))},
			req:   Request{ActionGenerateRandom, anyRes}},
		{name: "GenerateDataKey* does not allow Decrypt",
			stmts: []Statement{allow(l("kms:GenerateDataKey*"), l(arnA))},
			req:   Request{ActionDecrypt, keyA()}},
		{name: "kms:* does not allow an admin action",
			stmts:  []Statement{allow(l("kms:*"), l("*"))},
			req:    Request{ActionCreatePrincipal, anyRes},
			reason: "no statement allows hsmkms:CreatePrincipal on *"},
		{name: "kms:* does not allow GetTokenInfo",
			stmts: []Statement{allow(l("kms:*"), l("*"))},
			req:   Request{ActionGetTokenInfo, anyRes}},
		{name: "hsmkms:* allows an admin action",
			stmts: []Statement{allow(l("hsmkms:*"), l("*"))},
			req:   Request{ActionDeletePrincipal, anyRes}, allowed: true},
		{name: "hsmkms:* does not allow a key action",
			stmts: []Statement{allow(l("hsmkms:*"), l("*"))},
			req:   Request{ActionCreateKey, anyRes}},
		{name: "old admin name matches nothing",
			stmts: []Statement{allow(l("kms:CreatePrincipal", "kms:*Principal*"), l("*"))},
			req:   Request{ActionCreatePrincipal, anyRes}},
		{name: "admin action case-insensitive",
			stmts: []Statement{allow(l("HSMKMS:listprincipals"), l("*"))},
			req:   Request{ActionListPrincipals, anyRes}, allowed: true},
		{name: "kms:*Key* allows DescribeKey, infix wildcard",
			stmts: []Statement{allow(l("kms:*Key*"), l(arnA))},
			req:   Request{ActionDescribeKey, keyA()}, allowed: true},
		{name: "kms:*Key* does not allow Encrypt",
			stmts: []Statement{allow(l("kms:*Key*"), l(arnA))},
			req:   Request{ActionEncrypt, keyA()}},
		{name: "kms:List* allows ListAliases but not Decrypt on *",
			stmts: []Statement{allow(l("kms:List*"), l("*"))},
			req:   Request{ActionListAliases, anyRes}, allowed: true},
		{name: "no partial action match (Encrypt vs ReEncryptTo)",
			stmts: []Statement{allow(l(ActionEncrypt), l(arnA))},
			req:   Request{ActionReEncryptTo, keyA()}},
		{name: "no prefix action match without *",
			stmts: []Statement{allow(l("kms:GenerateDataKey"), l(arnA))},
			req:   Request{ActionGenerateDataKeyWithoutPlaintext, keyA()}},
		{name: "? is literal in actions",
			stmts: []Statement{allow(l("kms:Si?n"), l(arnA))},
			req:   Request{ActionSign, keyA()}},

		// Resource wildcards.
		{name: "ARN wildcard region/account",
			stmts: []Statement{allow(l(ActionDecrypt), l("arn:aws:kms:*:*:key/*"))},
			req:   Request{ActionDecrypt, l(idA, "arn:aws:kms:eu-west-1:123456789012:key/"+idA)}, allowed: true},
		{name: "ARN wildcard does not match alias or ID alone",
			stmts: []Statement{allow(l(ActionDecrypt), l("arn:aws:kms:*:*:key/*"))},
			req:   Request{ActionDecrypt, l(idA, "alias/app")}},
		{name: "ARN wildcard does not match * request",
			stmts: []Statement{allow(l("kms:*"), l("arn:aws:kms:*:*:key/*"))},
			req:   Request{ActionCreateKey, anyRes}},
		{name: "key-ID prefix allows A",
			stmts: []Statement{allow(l(ActionDecrypt), l("1234abcd-*"))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true},
		{name: "key-ID prefix does not allow B",
			stmts: []Statement{allow(l(ActionDecrypt), l("1234abcd-*"))},
			req:   Request{ActionDecrypt, keyB()}},
		{name: "* spans / and :",
			stmts: []Statement{allow(l(ActionDecrypt), l("arn*"+idA[30:]))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true},
		{name: "? is literal in resources",
			stmts: []Statement{allow(l(ActionDecrypt), l("alias/ap?"))},
			req:   Request{ActionDecrypt, keyA("alias/app")}},
		{name: "? matches itself",
			stmts: []Statement{allow(l(ActionDecrypt), l("alias/ap?"))},
			req:   Request{ActionDecrypt, keyA("alias/ap?")}, allowed: true},

		// Aliases.
		{name: "alias pattern allows key with matching alias",
			stmts: []Statement{allow(l(ActionDecrypt), l("alias/app-*"))},
			req:   Request{ActionDecrypt, keyA("alias/other", "alias/app-billing")}, allowed: true},
		{name: "alias pattern does not allow key with other alias",
			stmts: []Statement{allow(l(ActionDecrypt), l("alias/app-*"))},
			req:   Request{ActionDecrypt, keyA("alias/other")}},
		{name: "alias pattern does not allow key without alias",
			stmts: []Statement{allow(l(ActionDecrypt), l("alias/app-*"))},
			req:   Request{ActionDecrypt, keyA()}},
		{name: "deny on alias overrides allow on key ARN",
			stmts: []Statement{allow(l(ActionDecrypt), l(arnA)), deny(l(ActionDecrypt), l("alias/secret-*"))},
			req:   Request{ActionDecrypt, keyA("alias/secret-db")}, inReas: "denied by statement 1"},
		{name: "deny on alias, key has other aliases too",
			stmts: []Statement{deny(l("kms:*"), l("alias/frozen")), allow(l("kms:*"), l(idA))},
			req:   Request{ActionEncrypt, keyA("alias/a", "alias/frozen", "alias/b")}, inReas: "statement 0"},

		// Case.
		{name: "action pattern case-insensitive",
			stmts: []Statement{allow(l("KMS:decrypt"), l(arnA))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true},
		{name: "request action case-insensitive",
			stmts: []Statement{allow(l(ActionDecrypt), l(arnA))},
			req:   Request{"KMS:DECRYPT", keyA()}, allowed: true},
		{name: "wildcard action case-insensitive",
			stmts: []Statement{allow(l("kms:generatedatakey*"), l(arnA))},
			req:   Request{ActionGenerateDataKeyWithoutPlaintext, keyA()}, allowed: true},
		{name: "deny action case-insensitive",
			stmts: []Statement{allow(l("kms:*"), l("*")), deny(l("kms:DECRYPT"), l("*"))},
			req:   Request{ActionDecrypt, keyA()}, inReas: "denied by statement 1"},
		{name: "resource ARN case-sensitive",
			stmts: []Statement{allow(l(ActionDecrypt), l(strings.ToUpper(arnA)))},
			req:   Request{ActionDecrypt, keyA()}},
		{name: "resource alias case-sensitive",
			stmts: []Statement{allow(l(ActionDecrypt), l("alias/App-*"))},
			req:   Request{ActionDecrypt, keyA("alias/app-billing")}},
		{name: "deny on resource case-sensitive",
			stmts: []Statement{allow(l(ActionDecrypt), l("*")), deny(l(ActionDecrypt), l("alias/Secret"))},
			req:   Request{ActionDecrypt, keyA("alias/secret")}, allowed: true},

		// Empty and malformed statements match nothing.
		{name: "empty statement",
			stmts: []Statement{{}},
			req:   Request{ActionDecrypt, keyA()}},
		{name: "allow without actions",
			stmts: []Statement{allow(nil, l("*"))},
			req:   Request{ActionDecrypt, keyA()}},
		{name: "allow without resources",
			stmts: []Statement{allow(l("kms:*"), nil)},
			req:   Request{ActionDecrypt, keyA()}},
		{name: "deny without resources does not deny",
			stmts: []Statement{deny(l("kms:*"), nil), allow(l("kms:*"), l("*"))},
			req:   Request{ActionDecrypt, keyA()}, allowed: true},
		{name: "empty-string patterns match nothing",
			stmts: []Statement{allow(l(""), l("")), deny(l(""), l(""))},
			req:   Request{ActionDecrypt, keyA()}},
		{name: "effect must be exact: allow",
			stmts: []Statement{{Effect: "allow", Actions: l("kms:*"), Resources: l("*")}},
			req:   Request{ActionDecrypt, keyA()}},
		{name: "effect must be exact: empty",
			stmts: []Statement{{Actions: l("kms:*"), Resources: l("*")}},
			req:   Request{ActionDecrypt, keyA()}},

		// Requests not about a key.
		{name: "statement on a key ARN does not allow CreateKey",
			stmts: []Statement{allow(l("kms:*"), l(arnA))},
			req:   Request{ActionCreateKey, anyRes}, reason: "no statement allows kms:CreateKey on *"},
		{name: "statement on alias/* does not allow ListKeys",
			stmts: []Statement{allow(l("kms:*"), l("alias/*"))},
			req:   Request{ActionListKeys, anyRes}},
		{name: "resource * allows CreateKey",
			stmts: []Statement{allow(l(ActionCreateKey), l("*"))},
			req:   Request{ActionCreateKey, anyRes}, allowed: true},
		{name: "resource ** allows GenerateRandom",
			stmts: []Statement{allow(l(ActionGenerateRandom), l("**"))},
			req:   Request{ActionGenerateRandom, anyRes}, allowed: true},
		{name: "deny * denies admin action",
			stmts: []Statement{allow(l("kms:*", "hsmkms:*"), l("*")), deny(l("hsmkms:*Principal*"), l("*"))},
			req:   Request{ActionDeletePrincipal, anyRes}, inReas: "denied by statement 1"},
		{name: "deny on key does not deny CreateKey",
			stmts: []Statement{allow(l("kms:*"), l("*")), deny(l("kms:*"), l("arn:*"))},
			req:   Request{ActionCreateKey, anyRes}, allowed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.stmts, tc.req)
			if d.Allowed != tc.allowed {
				t.Fatalf("Allowed = %v, want %v (reason %q)", d.Allowed, tc.allowed, d.Reason)
			}
			if d.Reason == "" {
				t.Error("empty Reason")
			}
			if tc.reason != "" && d.Reason != tc.reason {
				t.Errorf("Reason = %q, want %q", d.Reason, tc.reason)
			}
			if tc.inReas != "" && !strings.Contains(d.Reason, tc.inReas) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tc.inReas)
			}
		})
	}
}

// TestDecideOrderIndependent checks that the outcome does not depend on the
// order of statements (only the index named in the reason does).
func TestDecideOrderIndependent(t *testing.T) {
	stmts := []Statement{
		allow(l("kms:*"), l("*")),
		deny(l(ActionDecrypt), l("alias/secret")),
		allow(l(ActionEncrypt), l(arnA)),
		deny(l("kms:Schedule*"), l("*")),
	}
	reqs := []Request{
		{ActionDecrypt, keyA("alias/secret")},
		{ActionDecrypt, keyA()},
		{ActionEncrypt, keyA("alias/secret")},
		{ActionScheduleKeyDeletion, keyB()},
		{ActionCreateKey, anyRes},
	}
	want := make([]bool, len(reqs))
	for i, r := range reqs {
		want[i] = Decide(stmts, r).Allowed
	}
	if want[0] || !want[1] || !want[2] || want[3] || !want[4] {
		t.Fatalf("unexpected baseline %v", want)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		p := append([]Statement(nil), stmts...)
		rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
		for i, r := range reqs {
			if got := Decide(p, r).Allowed; got != want[i] {
				t.Fatalf("order %v: request %d Allowed = %v, want %v", p, i, got, want[i])
			}
		}
	}
}

func TestDecideAll(t *testing.T) {
	aliasReq := func(action, alias string) Request { return Request{action, l(alias)} }
	tests := []struct {
		name    string
		stmts   []Statement
		reqs    []Request
		allowed bool
		inReas  string
	}{
		{name: "no requests denies",
			stmts: []Statement{allow(l("kms:*"), l("*"))}, inReas: "no request"},
		{name: "CreateAlias allowed on alias and key",
			stmts: []Statement{allow(l(ActionCreateAlias), l("alias/app-*", arnA))},
			reqs: []Request{aliasReq(ActionCreateAlias, "alias/app-new"),
				{ActionCreateAlias, keyA()}},
			allowed: true, inReas: "allowed by statement 0; allowed by statement 0"},
		{name: "CreateAlias allowed on alias only is denied",
			stmts: []Statement{allow(l(ActionCreateAlias), l("alias/app-*"))},
			reqs: []Request{aliasReq(ActionCreateAlias, "alias/app-new"),
				{ActionCreateAlias, keyA()}},
			inReas: "no statement allows kms:CreateAlias on " + idA},
		{name: "CreateAlias allowed on key only is denied",
			stmts: []Statement{allow(l(ActionCreateAlias), l(arnA))},
			reqs: []Request{aliasReq(ActionCreateAlias, "alias/app-new"),
				{ActionCreateAlias, keyA()}},
			inReas: "on alias/app-new"},
		{name: "DeleteAlias denied on alias",
			stmts: []Statement{allow(l("kms:*"), l("*")), deny(l(ActionDeleteAlias), l("alias/prod-*"))},
			reqs: []Request{aliasReq(ActionDeleteAlias, "alias/prod-db"),
				{ActionDeleteAlias, keyA("alias/prod-db")}},
			inReas: "denied by statement 1"},
		{name: "UpdateAlias needs the new key too",
			stmts: []Statement{allow(l(ActionUpdateAlias), l("alias/*", arnA))},
			reqs: []Request{aliasReq(ActionUpdateAlias, "alias/app"),
				{ActionUpdateAlias, keyA("alias/app")}, {ActionUpdateAlias, keyB()}},
			inReas: "on " + idB},
		{name: "ReEncrypt from A to B",
			stmts:   []Statement{allow(l(ActionReEncryptFrom), l(arnA)), allow(l(ActionReEncryptTo), l(arnB))},
			reqs:    []Request{{ActionReEncryptFrom, keyA()}, {ActionReEncryptTo, keyB()}},
			allowed: true, inReas: "allowed by statement 0; allowed by statement 1"},
		{name: "ReEncrypt from B to A denied",
			stmts:  []Statement{allow(l(ActionReEncryptFrom), l(arnA)), allow(l(ActionReEncryptTo), l(arnB))},
			reqs:   []Request{{ActionReEncryptFrom, keyB()}, {ActionReEncryptTo, keyA()}},
			inReas: "kms:ReEncryptFrom on " + idB},
		{name: "ReEncrypt* covers both",
			stmts:   []Statement{allow(l("kms:ReEncrypt*"), l("*"))},
			reqs:    []Request{{ActionReEncryptFrom, keyB()}, {ActionReEncryptTo, keyA()}},
			allowed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideAll(tc.stmts, tc.reqs...)
			if d.Allowed != tc.allowed {
				t.Fatalf("Allowed = %v, want %v (reason %q)", d.Allowed, tc.allowed, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.inReas) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tc.inReas)
			}
		})
	}
}

func TestDecideAllowDoesNotAllocate(t *testing.T) {
	stmts := benchStatements()
	req := Request{ActionDecrypt, keyA("alias/app-billing")}
	if d := Decide(stmts, req); !d.Allowed {
		t.Fatalf("setup: denied: %s", d.Reason)
	}
	if n := testing.AllocsPerRun(100, func() { Decide(stmts, req) }); n != 0 {
		t.Errorf("Decide allocates %v times per allowed call, want 0", n)
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		fold, want bool
	}{
		{"", "", false, true},
		{"", "a", false, false},
		{"a", "", false, false},
		{"*", "", false, true},
		{"*", "anything/at:all", false, true},
		{"**", "*", false, true},
		{"***", "", false, true},
		{"abc", "abc", false, true},
		{"abc", "abd", false, false},
		{"abc", "abcd", false, false},
		{"abcd", "abc", false, false},
		{"a*", "a", false, true},
		{"a*", "ba", false, false},
		{"*a", "ba", false, true},
		{"*a", "ab", false, false},
		{"a*c", "abbbc", false, true},
		{"a*c", "abbbcd", false, false},
		{"a*b*c", "aXbYbZc", false, true},
		{"a*b*c", "acb", false, false},
		{"*ab*ab*", "xabyab", false, true},
		{"*aab", "aaaab", false, true},
		{"*abab", "ababab", false, true},
		{"*abac", "abababac", false, true},
		{"a*a", "a", false, false},
		{"?", "x", false, false},
		{"?", "?", false, true},
		{"ABC", "abc", false, false},
		{"ABC", "abc", true, true},
		{"kms:generate*", "KMS:GenerateRandom", true, true},
		{"KMS:*KEY", "kms:CreateKey", true, true},
		{"[", "[", false, true},
		{"é*", "élan", false, true},
		{"*é", "café", false, true},
		{"É", "é", true, false}, // folding is ASCII only
	}
	for _, tc := range tests {
		if got := globMatch(tc.pattern, tc.s, tc.fold); got != tc.want {
			t.Errorf("globMatch(%q, %q, fold=%v) = %v, want %v", tc.pattern, tc.s, tc.fold, got, tc.want)
		}
	}
}

// globRef is an obviously correct reference for globMatch.
func globRef(pattern, s string, fold bool) bool {
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	expr := "^" + strings.Join(parts, ".*") + "$"
	if fold {
		expr = "(?i)" + expr
	}
	return regexp.MustCompile("(?s)" + expr).MatchString(s)
}

func TestGlobMatchAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	gen := func(alphabet string, max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	matches := 0
	for range 20000 {
		p := gen("abA**", 8)
		s := gen("abB", 10)
		fold := rng.IntN(2) == 0
		want := globRef(p, s, fold)
		if got := globMatch(p, s, fold); got != want {
			t.Fatalf("globMatch(%q, %q, fold=%v) = %v, reference says %v", p, s, fold, got, want)
		}
		if want {
			matches++
		}
	}
	if matches < 1000 {
		t.Fatalf("only %d matching cases; generator too weak", matches)
	}
}

func FuzzGlobMatch(f *testing.F) {
	f.Add("a*a*a*b", "aaaaaaaaab", false)
	f.Add("kms:GenerateDataKey*", "kms:generatedatakeypair", true)
	f.Add("arn:aws:kms:*:*:key/*", arnA, false)
	f.Fuzz(func(t *testing.T, p, s string, fold bool) {
		if len(p) > 64 || len(s) > 256 || !utf8.ValidString(p) || !utf8.ValidString(s) {
			return // the regexp reference works on runes, globMatch on bytes
		}
		if fold {
			// The reference folds Unicode; globMatch folds ASCII only.
			p, s = strings.ToLower(p), strings.ToLower(s)
			if !isASCII(p) || !isASCII(s) {
				fold = false
			}
		}
		if got, want := globMatch(p, s, fold), globRef(p, s, fold); got != want {
			t.Fatalf("globMatch(%q, %q, fold=%v) = %v, reference says %v", p, s, fold, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// TestGlobPathological checks that patterns which make naive backtracking
// exponential cost at most O(len(pattern)·len(s)) steps here.
func TestGlobPathological(t *testing.T) {
	long := strings.Repeat("a", 5000)
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"a*a*a*a*b", strings.Repeat("a", 100), false},
		{strings.Repeat("a*", 40) + "b", long, false},
		{strings.Repeat("*a", 40) + "*b", long, false},
		{strings.Repeat("a*", 40) + "b", long + "b", true},
		{strings.Repeat("*a", 40) + "*b", long + "b", true},
		{"*" + strings.Repeat("a", 1000) + "b", long, false},
		{strings.Repeat("*", MaxPatternLen-1) + "b", long, false},
		{"kms:" + strings.Repeat("*e", 1000) + "*x", "kms:" + strings.Repeat("e", 2040), false},
	}
	for i, tc := range tests {
		got, steps := globSteps(tc.pattern, tc.s, true)
		if got != tc.want {
			t.Errorf("case %d: match = %v, want %v", i, got, tc.want)
		}
		if limit := (len(tc.pattern) + 1) * (len(tc.s) + 1); steps > limit {
			t.Errorf("case %d: %d steps, more than %d = (len(pattern)+1)·(len(s)+1)", i, steps, limit)
		}
	}
	// A plain prefix pattern stays linear in the string.
	if _, steps := globSteps("a*", long, false); steps > len(long)+1 {
		t.Errorf("a* on %d bytes took %d steps", len(long), steps)
	}
}

func TestValidate(t *testing.T) {
	ok := func() Statement { return allow(l(ActionDecrypt), l(arnA)) }
	many := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	stmts := func(n int) []Statement {
		out := make([]Statement, n)
		for i := range out {
			out[i] = ok()
		}
		return out
	}
	valid := [][]Statement{
		nil,
		{},
		{ok()},
		{deny(l("kms:*"), l("*"))},
		{allow(l("KMS:decrypt", "kms:GenerateDataKey*", "hsmkms:*Principal*"), l("*", "alias/app-*", "1234*"))},
		{allow(l("hsmkms:*", "HSMKMS:createprincipal", "HsmKms:GetTokenInfo"), l("*"))},
		{deny(l("kms:*", "hsmkms:*"), l("*"))},
		{allow(l(ActionGenerateRandom), l(strings.Repeat("x", MaxPatternLen)))},
		{allow(many(MaxPatternsPerStatement, ActionDecrypt), many(MaxPatternsPerStatement, arnA))},
		stmts(MaxStatements),
		// Patterns that may match though they hold upper case or
		// "key/": alias names are case-sensitive and may hold "/", an
		// external key store's policy names IAM principals' ARNs, and
		// four upper-case hex digits are not taken for a key ID.
		{deny(l(ActionDecrypt), l("alias/PROD", "alias/key/ABC", "*key/ABC*", "*:key/ABCD", "ABCD*", "1234abc*X"))},
		{allow(l(ActionEncrypt), l("arn:aws:iam::000000000000:role/ABCD-1234", "arn:aws:iam::*:role/key/X*", "via:EBS"))},
		{deny(l(ActionDecrypt), l("arn:aws:kms:*:*:key/*", "arn:aws:kms:us-east-1:000000000000:*", "arn:*:kms:*:*:key/1234abcd-*", idA))},
	}
	for i, p := range valid {
		if err := Validate(p); err != nil {
			t.Errorf("valid policy %d: %v", i, err)
		}
	}

	tests := []struct {
		name      string
		stmts     []Statement
		statement int
		field     string
		inErr     string
	}{
		{"too many statements", stmts(MaxStatements + 1), -1, "", "101 statements"},
		{"effect lower case", []Statement{ok(), {Effect: "allow", Actions: l(ActionDecrypt), Resources: l("*")}},
			1, "effect", `"allow" must be exactly`},
		{"effect empty", []Statement{{Actions: l(ActionDecrypt), Resources: l("*")}}, 0, "effect", `""`},
		{"effect padded", []Statement{{Effect: "Deny ", Actions: l(ActionDecrypt), Resources: l("*")}}, 0, "effect", "Deny"},
		{"no actions", []Statement{allow(nil, l("*"))}, 0, "actions", "at least one"},
		{"too many actions", []Statement{allow(many(MaxPatternsPerStatement+1, ActionDecrypt), l("*"))},
			0, "actions", "at most 100"},
		{"empty action", []Statement{ok(), ok(), allow(l(ActionDecrypt, ""), l("*"))}, 2, "actions[1]", "empty"},
		{"bare * action", []Statement{allow(l("*"), l("*"))}, 0, "actions[0]", `must start with "kms:" or "hsmkms:"`},
		{"*:* action", []Statement{allow(l("*:*"), l("*"))}, 0, "actions[0]", `must start with "kms:" or "hsmkms:"`},
		{"hsm: is not hsmkms:", []Statement{allow(l("hsm:*"), l("*"))}, 0, "actions[0]", `must start with`},
		{"old CreatePrincipal name", []Statement{allow(l("kms:CreatePrincipal"), l("*"))}, 0, "actions[0]",
			`"kms:CreatePrincipal" matches no known action; principal management and token information are "hsmkms:CreatePrincipal"`},
		{"old GetTokenInfo name, other case", []Statement{ok(), deny(l(ActionEncrypt, "KMS:gettokeninfo"), l("*"))}, 1, "actions[1]",
			`"hsmkms:gettokeninfo" (the "hsmkms:" namespace, which "kms:*" does not cover)`},
		{"old wildcard on principals", []Statement{allow(l("kms:*Principal*"), l("*"))}, 0, "actions[0]", `"hsmkms:*Principal*"`},
		{"key action in the admin namespace", []Statement{allow(l("hsmkms:Decrypt"), l("*"))}, 0, "actions[0]", `"hsmkms:Decrypt" matches no known action`},
		{"action without prefix", []Statement{allow(l("Decrypt"), l("*"))}, 0, "actions[0]", "kms:"},
		{"other service", []Statement{allow(l("s3:GetObject"), l("*"))}, 0, "actions[0]", "kms:"},
		{"misspelt action", []Statement{allow(l("kms:Decrpyt"), l("*"))}, 0, "actions[0]", "no known action"},
		{"wildcard matching nothing", []Statement{allow(l("kms:Frobnicate*"), l("*"))}, 0, "actions[0]", "no known action"},
		{"action too long", []Statement{allow(l("kms:*"+strings.Repeat("x", MaxPatternLen)), l("*"))},
			0, "actions[0]", "at most 2048"},
		{"action control char", []Statement{allow(l("kms:Decrypt\n"), l("*"))}, 0, "actions[0]", "control"},
		{"no resources", []Statement{allow(l(ActionDecrypt), nil)}, 0, "resources", "at least one"},
		{"too many resources", []Statement{allow(l(ActionDecrypt), many(MaxPatternsPerStatement+1, "*"))},
			0, "resources", "at most 100"},
		{"empty resource", []Statement{allow(l(ActionDecrypt), l(arnA, ""))}, 0, "resources[1]", "empty"},
		{"resource too long", []Statement{ok(), allow(l(ActionDecrypt), l(strings.Repeat("x", MaxPatternLen+1)))},
			1, "resources[0]", "2049 bytes"},
		{"resource control char", []Statement{allow(l(ActionDecrypt), l("alias/a\x00"))}, 0, "resources[0]", "control"},
		{"resource invalid UTF-8", []Statement{allow(l(ActionDecrypt), l("alias/\xff"))}, 0, "resources[0]", "UTF-8"},
		{"upper-case key ID in a key ARN", []Statement{ok(), deny(l(ActionDecrypt), l(arnB, "arn:aws:kms:us-east-1:000000000000:key/"+strings.ToUpper(idA)))},
			1, "resources[1]", `key IDs are lower-case hex, so write "` + arnA + `"`},
		{"upper-case key ID prefix in a key ARN", []Statement{deny(l(ActionDecrypt), l("arn:aws:kms:*:*:key/1234ABCD-*"))},
			0, "resources[0]", `write "arn:aws:kms:*:*:key/1234abcd-*"`},
		{"upper-case key ID", []Statement{deny(l(ActionDecrypt), l(strings.ToUpper(idA)))}, 0, "resources[0]", `write "` + idA + `"`},
		{"upper-case key ID after a star", []Statement{deny(l(ActionDecrypt), l("1234abcd-*-1234567890AB"))},
			0, "resources[0]", `write "1234abcd-*-1234567890ab"`},
		{"alias ARN", []Statement{deny(l(ActionDecrypt), l("arn:aws:kms:us-east-1:000000000000:alias/prod"))},
			0, "resources[0]", `is an alias ARN, which never matches: a policy names an alias as "alias/<name>", so write "alias/prod"`},
		{"alias ARN wildcard", []Statement{allow(l(ActionDecrypt), l("alias/app", "arn:*:kms:*:*:alias/app-*"))},
			0, "resources[1]", `write "alias/app-*"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.stmts)
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is %T, want *ValidationError", err, err)
			}
			if ve.Statement != tc.statement || ve.Field != tc.field {
				t.Errorf("error at statement %d field %q, want %d %q (%v)", ve.Statement, ve.Field, tc.statement, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.inErr) {
				t.Errorf("error %q does not mention %q", err, tc.inErr)
			}
			if tc.statement >= 0 && !strings.Contains(err.Error(), fmt.Sprintf("statement %d: %s: ", tc.statement, tc.field)) {
				t.Errorf("error %q does not name statement and field", err)
			}
		})
	}
}

// TestValidateRefusesPatternsThatNeverMatch: each resource pattern
// Validate refuses as never matching indeed matches none of a key's names
// (so a Deny with it denies nothing), and what the error says to write
// instead does match. Found by review: an upper-case key ID and an alias
// ARN were accepted, and such a Deny silently did nothing. Action patterns
// match ignoring case, so "KMS:DECRYPT" is accepted and denies.
func TestValidateRefusesPatternsThatNeverMatch(t *testing.T) {
	req := Request{Action: ActionDecrypt, Resources: keyA("alias/prod", "alias/app-1")}
	allowAll := allow(l("kms:*"), l("*"))
	tests := []struct{ pattern, fix string }{
		{"arn:aws:kms:us-east-1:000000000000:key/" + strings.ToUpper(idA), arnA},
		{"arn:aws:kms:*:*:key/1234ABCD-*", "arn:aws:kms:*:*:key/1234abcd-*"},
		{strings.ToUpper(idA), idA},
		{"1234abcd-*-1234567890AB", "1234abcd-*-1234567890ab"},
		{"arn:aws:kms:us-east-1:000000000000:alias/prod", "alias/prod"},
		{"arn:aws:kms:*:*:alias/app-*", "alias/app-*"},
	}
	for _, tc := range tests {
		stmts := []Statement{allowAll, deny(l(ActionDecrypt), l(tc.pattern))}
		if d := Decide(stmts, req); !d.Allowed {
			t.Errorf("test bug: Deny on %q matches %v: %s", tc.pattern, req.Resources, d.Reason)
		}
		err := Validate(stmts)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("write %q", tc.fix)) {
			t.Errorf("Validate(Deny on %q) = %v, want an error saying to write %q", tc.pattern, err, tc.fix)
		}
		fixed := []Statement{allowAll, deny(l(ActionDecrypt), l(tc.fix))}
		if err := Validate(fixed); err != nil {
			t.Errorf("Validate(Deny on %q): %v", tc.fix, err)
		}
		if d := Decide(fixed, req); !d.Denied {
			t.Errorf("Deny on %q, the fix for %q, does not deny: %s", tc.fix, tc.pattern, d.Reason)
		}
	}
	upper := []Statement{allowAll, deny(l("KMS:DECRYPT"), l(arnA))}
	if err := Validate(upper); err != nil {
		t.Errorf("Validate(Deny KMS:DECRYPT): %v", err)
	}
	if d := Decide(upper, req); !d.Denied {
		t.Errorf("Deny KMS:DECRYPT does not deny kms:Decrypt: %s", d.Reason)
	}
}

func TestKnownActions(t *testing.T) {
	all := KnownActions()
	if len(all) != 56 {
		t.Errorf("%d known actions, want 56", len(all))
	}
	seen := map[string]bool{}
	for _, a := range all {
		name, ok := strings.CutPrefix(a, "kms:")
		if !ok {
			name, ok = strings.CutPrefix(a, "hsmkms:")
		}
		if !ok || name == "" || strings.Contains(name, ":") {
			t.Errorf("action %q lacks the kms: or hsmkms: prefix or a name", a)
		}
		if admin := strings.Contains(a, "Principal") || strings.Contains(a, "TokenInfo") || strings.Contains(a, "BackupStore") || strings.Contains(a, "XksStore"); admin != strings.HasPrefix(a, "hsmkms:") {
			t.Errorf("action %q: administrative actions, and only they, are hsmkms: actions", a)
		}
		if seen[strings.ToLower(a)] {
			t.Errorf("action %q listed twice", a)
		}
		seen[strings.ToLower(a)] = true
		if !IsKnownAction(a) || !IsKnownAction(strings.ToUpper(a)) {
			t.Errorf("IsKnownAction(%q) = false", a)
		}
		if err := Validate([]Statement{allow(l(a), l("*"))}); err != nil {
			t.Errorf("Validate rejects known action %q: %v", a, err)
		}
	}
	for _, a := range []string{"kms:ReEncrypt", "kms:*", "", "kms:", "Decrypt", "kms:Decrypt "} {
		if IsKnownAction(a) {
			t.Errorf("IsKnownAction(%q) = true", a)
		}
	}
	all[0] = "mutated"
	if KnownActions()[0] == "mutated" {
		t.Error("KnownActions returns shared storage")
	}
}

// benchStatements is a ten-statement policy of the usual shape: the
// request in BenchmarkDecide is allowed by the last statement, after every
// other statement has been examined.
func benchStatements() []Statement {
	return []Statement{
		deny(l(ActionScheduleKeyDeletion, ActionDisableKey), l("*")),
		deny(l("kms:*"), l("alias/frozen-*", "arn:aws:kms:*:*:key/00000000-*")),
		allow(l(ActionEncrypt), l(arnB)),
		allow(l("kms:GenerateDataKey*"), l("alias/other-*")),
		allow(l(ActionDescribeKey, ActionListKeys, ActionListAliases), l("*")),
		deny(l("hsmkms:*Principal*"), l("*")),
		allow(l(ActionSign, ActionVerify), l("arn:aws:kms:us-east-1:000000000000:key/9876*")),
		allow(l(ActionDecrypt), l(idB)),
		deny(l(ActionDecrypt), l("alias/secret", "alias/prod-db-*")),
		allow(l(ActionEncrypt, ActionDecrypt, "kms:ReEncrypt*"), l("alias/app-*", arnA)),
	}
}

func BenchmarkDecide(b *testing.B) {
	stmts := benchStatements()
	req := Request{ActionDecrypt, keyA("alias/app-billing", "alias/legacy")}
	if d := Decide(stmts, req); !d.Allowed || d.Reason != "allowed by statement 9" {
		b.Fatalf("setup: %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		Decide(stmts, req)
	}
}
