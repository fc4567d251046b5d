package policy

import (
	stdjson "encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// TestStatementUnknownMember: a statement with a member other than effect,
// actions and resources is refused, naming the member, by both JSON
// decoders that read statements: go-json-experiment/json (the server API)
// and encoding/json (store records, the admin client, the CLI's --policy).
// Found by review: the API ignored the member, so an Allow with a
// "condition" was stored as an unconditional Allow.
func TestStatementUnknownMember(t *testing.T) {
	const known = `"effect":"Allow","actions":["kms:Decrypt"],"resources":["*"]`
	tests := []struct {
		name, body, member string
	}{
		{"condition", `{` + known + `,"condition":{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}}`, "condition"},
		{"notActions", `{"effect":"Deny","notActions":["kms:Decrypt"],"resources":["*"]}`, "notActions"},
		{"notResources", `{"notResources":["alias/a"],` + known + `}`, "notResources"},
		{"IAM spelling", `{"effect":"Allow","action":"kms:*","resource":"*"}`, "action"},
		{"null member", `{` + known + `,"sid":null}`, "sid"},
		{"escaped name", `{` + known + `,"cond\u0069tion":{}}`, "condition"},
		{"empty name", `{` + known + `,"":1}`, ""},
	}
	decoders := []struct {
		name   string
		decode func([]byte, *Statement) error
	}{
		{"json/v2", func(b []byte, s *Statement) error { return json.Unmarshal(b, s) }},
		{"encoding/json", func(b []byte, s *Statement) error { return stdjson.Unmarshal(b, s) }},
		{"encoding/json, unknown fields disallowed", func(b []byte, s *Statement) error {
			dec := stdjson.NewDecoder(strings.NewReader(string(b)))
			dec.DisallowUnknownFields()
			return dec.Decode(s)
		}},
	}
	for _, d := range decoders {
		for _, tc := range tests {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				var st Statement
				err := d.decode([]byte(tc.body), &st)
				var um *UnknownMemberError
				if !errors.As(err, &um) {
					t.Fatalf("decoded %+v, err %v; want *UnknownMemberError", st, err)
				}
				if um.Member != tc.member {
					t.Errorf("Member %q, want %q", um.Member, tc.member)
				}
				if want := `no member "` + tc.member + `"`; !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name the member (%s)", err, want)
				}
			})
		}
	}
}

// TestStatementDecodes: statements with only the known members decode as
// before by both decoders, among them what encoding/json writes for a
// stored principal (what earlier versions wrote) and a list with null. The
// server API matches names exactly, so there "Effect" is an unknown member;
// encoding/json ignores case, as it always did, so a --policy file spelling
// "Effect" still works. A member named twice is refused either way.
func TestStatementDecodes(t *testing.T) {
	policy := []Statement{
		allow(l(ActionDecrypt, "kms:GenerateDataKey*"), l(arnA, "alias/app-*")),
		deny(l("hsmkms:*"), l("*")),
		{Effect: EffectAllow}, // nil lists, written as null
	}
	stored, err := stdjson.Marshal(policy)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"effect":"Allow","actions":["kms:Decrypt","kms:GenerateDataKey*"],"resources":["` + arnA +
		`","alias/app-*"]},{"effect":"Deny","actions":["hsmkms:*"],"resources":["*"]},{"effect":"Allow","actions":null,"resources":null}]`; string(stored) != want {
		t.Fatalf("encoding/json wrote %s, want %s (the stored form)", stored, want)
	}
	tests := []struct {
		name, body string
		want       []Statement // nil: refused
		wantV1     []Statement // encoding/json's, if not want
	}{
		{"stored", string(stored), policy, nil},
		{"empty list", `[]`, []Statement{}, nil},
		{"null statement", `[null]`, []Statement{{}}, nil},
		{"empty statement", `[{}]`, []Statement{{}}, nil},
		{"escaped name", `[{"\u0065ffect":"Deny","actions":["kms:*"],"resources":["*"]}]`, []Statement{deny(l("kms:*"), l("*"))}, nil},
		{"member order", `[{"resources":["*"],"actions":["kms:*"],"effect":"Deny"}]`, []Statement{deny(l("kms:*"), l("*"))}, nil},
		{"capitalised", `[{"Effect":"Deny","ACTIONS":["kms:*"],"Resources":["*"]}]`, nil, []Statement{deny(l("kms:*"), l("*"))}},
		{"named twice", `[{"effect":"Allow","actions":["kms:*"],"resources":["*"],"effect":"Deny"}]`, nil, nil},
		{"named twice in two cases", `[{"effect":"Deny","Effect":"Allow","actions":["kms:*"],"resources":["*"]}]`, nil, nil},
		{"not an object", `["Allow"]`, nil, nil},
		{"wrong type", `[{"effect":"Allow","actions":"kms:*","resources":["*"]}]`, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v2, v1 []Statement
			err2 := json.Unmarshal([]byte(tc.body), &v2)
			err1 := stdjson.Unmarshal([]byte(tc.body), &v1)
			check := func(decoder string, got, want []Statement, err error) {
				switch {
				case want == nil && err == nil:
					t.Errorf("%s decoded %+v, want an error", decoder, got)
				case want != nil && err != nil:
					t.Errorf("%s: %v", decoder, err)
				case want != nil && !slices.EqualFunc(got, want, Statement.Equal):
					t.Errorf("%s decoded %+v, want %+v", decoder, got, want)
				}
			}
			check("json/v2", v2, tc.want, err2)
			if tc.wantV1 == nil {
				tc.wantV1 = tc.want
			}
			check("encoding/json", v1, tc.wantV1, err1)
		})
	}
	var st Statement
	err = json.Unmarshal([]byte(`{"effect":"Deny","Effect":"Allow"}`), &st, json.MatchCaseInsensitiveNames(true))
	if !errors.Is(err, jsontext.ErrDuplicateName) {
		t.Errorf("effect and Effect, names matched ignoring case: %v, want jsontext.ErrDuplicateName", err)
	}
}

// BenchmarkStatementUnmarshal decodes a stored ten-statement policy as the
// store does, with encoding/json.
func BenchmarkStatementUnmarshal(b *testing.B) {
	data, err := stdjson.Marshal(benchStatements())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var stmts []Statement
		if err := stdjson.Unmarshal(data, &stmts); err != nil {
			b.Fatal(err)
		}
	}
}
