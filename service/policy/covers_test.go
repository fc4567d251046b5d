package policy

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCoversResource(t *testing.T) {
	tests := []struct {
		p, r string
		want bool
	}{
		{"*", "*", true},
		{"*", "anything", true},
		{"*", "key/*", true},
		{"*", "", true},
		{"**", "*", true},
		{"key/A*", "key/*", false}, // key/B… is matched by the child only
		{"key/*", "key/A*", true},
		{"key/A*", "key/A*", true},
		{"key/A*", "key/AB*", true},
		{"alias/x*", "alias/xy*", true},
		{"alias/xy*", "alias/x*", false},
		{"alias/x*", "alias/x", true},
		{"alias/x", "alias/x*", false},
		{"alias/x", "alias/x", true},
		{"alias/x", "alias/X", false}, // resources are case-sensitive
		{"*b", "*", false},
		{"*b", "*b", true},
		{"*b", "a*b", true},
		{"*b", "*ab", true},
		{"a*", "*a", false},
		{"*a*", "*a", true},
		{"*a*", "*", false},
		{"arn:aws:kms:*:*:key/*", "arn:aws:kms:us-east-1:*:key/*", true},
		{"arn:aws:kms:*:*:key/*", "arn:*", false},
		{"arn:aws:kms:us-east-1:*:key/*", "arn:aws:kms:*:*:key/*", false},
		{"alias/app", "*", false},
	}
	for _, tc := range tests {
		if got := coversResource(tc.p, tc.r); got != tc.want {
			t.Errorf("coversResource(%q, %q) = %v, want %v", tc.p, tc.r, got, tc.want)
		}
	}
}

// TestCoversResourceSound checks on random patterns that whenever p covers
// r, p matches every string r matches: r with each "*" replaced by random
// strings (which may hold "*" themselves, as AnyResource is "*").
func TestCoversResourceSound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	gen := func(alphabet string, max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	covered := 0
	for range 20000 {
		p, r := gen("ab**", 6), gen("ab**", 6)
		if !coversResource(p, r) {
			continue
		}
		covered++
		for range 20 {
			var s strings.Builder
			for _, c := range []byte(r) {
				if c == '*' {
					s.WriteString(gen("ab*", 4))
				} else {
					s.WriteByte(c)
				}
			}
			if !globMatch(r, s.String(), false) {
				t.Fatalf("test bug: %q does not match its instance %q", r, s.String())
			}
			if !globMatch(p, s.String(), false) {
				t.Fatalf("coversResource(%q, %q) but %q does not match %q, which %q matches", p, r, p, s.String(), r)
			}
		}
	}
	if covered < 1000 {
		t.Fatalf("only %d covered pairs; generator too weak", covered)
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		name          string
		parent, child []Statement
		// the uncovered statement, action and resource; statement -1 if covered
		statement        int
		action, resource string
	}{
		{name: "empty child", parent: nil, child: nil, statement: -1},
		{name: "child of only Denies needs nothing",
			child: []Statement{deny(l("kms:*", "hsmkms:*"), l("*"))}, statement: -1},
		{name: "root covers everything",
			parent: []Statement{allow(l("kms:*", "hsmkms:*"), l("*"))},
			child: []Statement{allow(l("kms:*", "hsmkms:*"), l("*")),
				allow(l(ActionDecrypt), l("alias/app-*", arnA))},
			statement: -1},
		{name: "same policy",
			parent:    []Statement{allow(l(ActionEncrypt, ActionDecrypt), l("alias/app"))},
			child:     []Statement{allow(l(ActionEncrypt, ActionDecrypt), l("alias/app"))},
			statement: -1},
		{name: "narrower action and resource",
			parent:    []Statement{allow(l("kms:*"), l("alias/app-*"))},
			child:     []Statement{allow(l(ActionDecrypt), l("alias/app-billing", "alias/app-x*"))},
			statement: -1},
		{name: "kms:* does not give hsmkms:CreatePrincipal",
			parent:    []Statement{allow(l("kms:*"), l("*"))},
			child:     []Statement{allow(l(ActionCreatePrincipal), l("*"))},
			statement: 0, action: ActionCreatePrincipal, resource: "*"},
		{name: "hsmkms:* not covered by hsmkms:CreatePrincipal",
			parent:    []Statement{allow(l("kms:*", ActionCreatePrincipal), l("*"))},
			child:     []Statement{allow(l(ActionEncrypt), l("*")), allow(l("hsmkms:*"), l("*"))},
			statement: 1, action: ActionListPrincipals, resource: "*"},
		{name: "wider resource refused",
			parent:    []Statement{allow(l("kms:*"), l("key/A*"))},
			child:     []Statement{allow(l(ActionDecrypt), l("key/*"))},
			statement: 0, action: ActionDecrypt, resource: "key/*"},
		{name: "second resource uncovered",
			parent:    []Statement{allow(l(ActionDecrypt), l(arnA))},
			child:     []Statement{allow(l(ActionDecrypt), l(arnA, arnB))},
			statement: 0, action: ActionDecrypt, resource: arnB},
		{name: "action allowed only on another resource",
			parent:    []Statement{allow(l(ActionEncrypt), l("*")), allow(l(ActionDecrypt), l(arnA))},
			child:     []Statement{allow(l(ActionEncrypt, ActionDecrypt), l(arnB))},
			statement: 0, action: ActionDecrypt, resource: arnB},
		{name: "actions of one child statement from two parent statements",
			parent:    []Statement{allow(l(ActionEncrypt), l("alias/*")), allow(l(ActionDecrypt), l("*"))},
			child:     []Statement{allow(l(ActionEncrypt, ActionDecrypt), l("alias/app"))},
			statement: -1},
		{name: "wildcard child action covered action by action",
			parent: []Statement{allow(l(ActionGenerateDataKey), l("*")),
				allow(l(ActionGenerateDataKeyWithoutPlaintext), l("*")),
				allow(l(ActionGenerateDataKeyPair, ActionGenerateDataKeyPairWithoutPlaintext), l("*"))},
			child:     []Statement{allow(l("kms:generatedatakey*"), l("alias/x"))},
			statement: -1},
		{name: "wildcard child action with one action missing",
			parent:    []Statement{allow(l(ActionGenerateDataKey), l("*"))},
			child:     []Statement{allow(l("kms:GenerateDataKey*"), l("alias/x"))},
			statement: 0, action: ActionGenerateDataKeyWithoutPlaintext, resource: "alias/x"},
		{name: "parent Deny is no Allow",
			parent:    []Statement{deny(l("kms:*"), l("*"))},
			child:     []Statement{allow(l(ActionEncrypt), l(arnA))},
			statement: 0, action: ActionEncrypt, resource: arnA},
		{name: "parent effect must be exact",
			parent:    []Statement{{Effect: "allow", Actions: l("kms:*"), Resources: l("*")}},
			child:     []Statement{allow(l(ActionEncrypt), l(arnA))},
			statement: 0, action: ActionEncrypt, resource: arnA},
		{name: "resources are not joined across parent patterns",
			parent:    []Statement{allow(l(ActionDecrypt), l("a*", "b*", "alias/*"))},
			child:     []Statement{allow(l(ActionDecrypt), l("*"))},
			statement: 0, action: ActionDecrypt, resource: "*"},
		{name: "action pattern case ignored",
			parent:    []Statement{allow(l("KMS:DECRYPT"), l("*"))},
			child:     []Statement{allow(l("kms:decrypt"), l(arnA))},
			statement: -1},
		{name: "child Deny ignored, later Allow checked",
			parent:    []Statement{allow(l(ActionDecrypt), l(arnA))},
			child:     []Statement{deny(l("kms:*"), l("*")), allow(l(ActionDecrypt), l(arnA)), allow(l(ActionSign), l(arnA))},
			statement: 2, action: ActionSign, resource: arnA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Covers(tc.parent, tc.child)
			if tc.statement < 0 {
				if err != nil {
					t.Fatalf("Covers = %v, want covered", err)
				}
				return
			}
			var ce *CoverageError
			if !errors.As(err, &ce) {
				t.Fatalf("Covers = %v (%T), want a *CoverageError", err, err)
			}
			if ce.Statement != tc.statement || ce.Action != tc.action || ce.Resource != tc.resource {
				t.Errorf("Covers = %+v, want statement %d, %s on %q", ce, tc.statement, tc.action, tc.resource)
			}
			if !strings.Contains(err.Error(), tc.action) || !strings.Contains(err.Error(), tc.resource) {
				t.Errorf("error %q does not name the action and the resource", err)
			}
		})
	}
}

// TestCoversDecides checks Covers against Decide: whenever Covers accepts a
// random child, every request the child is allowed is allowed to the
// parent.
func TestCoversDecides(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	actions := l("kms:*", "hsmkms:*", ActionEncrypt, ActionDecrypt, "kms:GenerateDataKey*", ActionCreatePrincipal)
	resources := l("*", "alias/*", "alias/a*", "alias/ab", arnA, "arn:*", idA[:4]+"*")
	pick := func(from []string) []string {
		out := []string{from[rng.IntN(len(from))]}
		if rng.IntN(2) == 0 {
			out = append(out, from[rng.IntN(len(from))])
		}
		return out
	}
	randomPolicy := func() []Statement {
		out := make([]Statement, 1+rng.IntN(3))
		for i := range out {
			out[i] = allow(pick(actions), pick(resources))
		}
		return out
	}
	requests := []Request{{ActionCreatePrincipal, anyRes}, {ActionListPrincipals, anyRes}, {ActionCreateKey, anyRes}}
	for _, a := range KnownActions()[:20] {
		requests = append(requests, Request{a, keyA("alias/ab")}, Request{a, keyB("alias/ac")}, Request{a, keyB()})
	}
	accepted := 0
	for range 3000 {
		parent, child := randomPolicy(), randomPolicy()
		if Covers(parent, child) != nil {
			continue
		}
		accepted++
		for _, req := range requests {
			if Decide(child, req).Allowed && !Decide(parent, req).Allowed {
				t.Fatalf("Covers(%v, %v) accepted, but the child is allowed %v and the parent not", parent, child, req)
			}
		}
	}
	if accepted < 300 {
		t.Fatalf("only %d children accepted; generator too weak", accepted)
	}
}
