package api

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// TestDecodeMessages: what a client is told of a body that is not the
// operation's JSON, kinds named in words.
func TestDecodeMessages(t *testing.T) {
	tests := []struct {
		name, body, msg string
	}{
		{"array body", `[{"KeyId":"k"}]`, "the request body must be a JSON object, not a JSON array"},
		{"string body", `"k"`, "the request body must be a JSON object, not a JSON string"},
		{"object for a string", `{"KeyId":{}}`, "member KeyId: expected a string, got a JSON object"},
		{"array for a string", `{"KeyId":["k"]}`, "member KeyId: expected a string, got a JSON array"},
		{"number for a string", `{"KeyId":5}`, "member KeyId: expected a string, got a JSON number"},
		{"duplicate member", `{"KeyId":"a","KeyId":"b"}`, "the request body names a member twice: /KeyId"},
		{"duplicate in a map", `{"KeyId":"a","EncryptionContext":{"a":"1","a":"2"}}`, "the request body names a member twice: /EncryptionContext/a"},
	}
	for _, tc := range tests {
		var in service.KeyIDInput
		err := decode([]byte(tc.body), &in)
		var se *errSerialization
		if !errors.As(err, &se) || se.msg != tc.msg {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.msg)
		}
	}
}

// TestDecodeEpochTime: a timestamp member takes epoch seconds from 0 to
// the end of the year 9999; anything else is named as such (found by
// review: 1e300 overflowed to a date in 1677, and "abc" was told it
// should be an object, the time.Time EpochTime is made of).
func TestDecodeEpochTime(t *testing.T) {
	const want = "member ValidTo: expected a number of seconds since the epoch, 0 to 253402300799, got a JSON "
	tests := []struct {
		name, body, msg string
		unix            int64 // when accepted
	}{
		{"seconds", `{"ValidTo":1700000000.5}`, "", 1700000000},
		{"last second of 9999", `{"ValidTo":253402300799}`, "", 253402300799},
		{"past 9999", `{"ValidTo":253402300800}`, want + "number", 0},
		{"huge", `{"ValidTo":1e300}`, want + "number", 0},
		{"negative", `{"ValidTo":-1}`, want + "number", 0},
		{"string", `{"ValidTo":"abc"}`, want + "string", 0},
		{"object", `{"ValidTo":{}}`, want + "object", 0},
	}
	for _, tc := range tests {
		var in service.ImportKeyMaterialInput
		err := decode([]byte(tc.body), &in)
		if tc.msg == "" {
			if err != nil || in.ValidTo == nil || time.Time(*in.ValidTo).Unix() != tc.unix {
				t.Errorf("%s: %v, %v; want %d", tc.name, err, in.ValidTo, tc.unix)
			}
			continue
		}
		var se *errSerialization
		if !errors.As(err, &se) || se.msg != tc.msg {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.msg)
		}
	}
}

// TestDecodeUnknownStatementMember: a policy statement with a member other
// than effect, actions and resources is a ValidationException naming the
// member and where it is, on every call that takes statements (found by
// review: the member was ignored, so an Allow with a "condition" was stored
// as an unconditional Allow). Elsewhere unknown members are still ignored.
func TestDecodeUnknownStatementMember(t *testing.T) {
	const stmt = `{"effect":"Allow","actions":["kms:Decrypt"],"resources":["*"],` +
		`"condition":{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}}`
	const ok = `{"effect":"Allow","actions":["kms:Decrypt"],"resources":["*"]}`
	tests := []struct {
		name string
		body string
		in   any
		msg  string
	}{
		{"CreatePrincipal", `{"Name":"app","Statements":[` + stmt + `]}`, &service.CreatePrincipalInput{},
			`member Statements/0/condition: policy: a statement has no member "condition"`},
		{"UpdatePrincipal", `{"AccessKeyId":"AKIA","Statements":[` + ok + `,{"notResources":["alias/a"]}]}`, &service.UpdatePrincipalInput{},
			`member Statements/1/notResources: policy: a statement has no member "notResources"`},
		{"SetXksPolicy", `{"Prefix":"p","Statements":[` + stmt + `]}`, &service.XKSPolicyInput{},
			`member Statements/0/condition: policy: a statement has no member "condition"`},
	}
	for _, tc := range tests {
		err := decode([]byte(tc.body), tc.in)
		var se *service.Error
		if !errors.As(err, &se) || se.Code != service.CodeValidation || !strings.HasPrefix(se.Message, tc.msg) {
			t.Errorf("%s: got %v, want a ValidationException starting %q", tc.name, err, tc.msg)
		}
	}
	var in service.CreatePrincipalInput
	if err := decode([]byte(`{"Name":"app","Tags":[],"Statements":[`+ok+`]}`), &in); err != nil || len(in.Statements) != 1 {
		t.Errorf("unknown member outside a statement: %v, %+v", err, in)
	}
}
