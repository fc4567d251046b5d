package api

import (
	"errors"
	"testing"

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
