package policy

import (
	"errors"
	"fmt"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// UnknownMemberError is a JSON statement with a member other than
// "effect", "actions" and "resources". Found by review: such members were
// ignored, so a statement written with an IAM-style "condition" (or
// "notActions", "notResources") was stored as an unconditional Allow while
// its author believed it restricted; a statement hsmkms cannot honour in
// full is refused instead.
type UnknownMemberError struct {
	// Member is the unknown member's name, as written.
	Member string
}

// Error implements error. It names the member, which the server reports
// to the caller in a ValidationException.
func (e *UnknownMemberError) Error() string {
	return fmt.Sprintf("policy: a statement has no member %q: its only members are "+
		`"effect", "actions" and "resources" (conditions, notActions and notResources are not supported)`, e.Member)
}

// statementFields is Statement without its decoding methods.
type statementFields Statement

// UnmarshalJSONFrom decodes a statement for go-json-experiment/json (the
// server API), as the struct decodes by default (names matched as the
// decoder's options say; a name given twice refused), but refusing a
// member other than effect, actions and resources with an
// *UnknownMemberError. JSON null decodes as the zero Statement, which
// Validate refuses.
func (s *Statement) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	var v statementFields
	err := json.UnmarshalDecode(dec, &v, json.RejectUnknownMembers(true))
	var se *json.SemanticError
	if errors.As(err, &se) && errors.Is(se.Err, json.ErrUnknownName) {
		return &UnknownMemberError{Member: se.JSONPointer.LastToken()}
	}
	*s = Statement(v)
	return err
}

// UnmarshalJSON decodes a statement for encoding/json: the store's records,
// the admin client and the CLI's --policy file. It is UnmarshalJSONFrom
// with names matched ignoring case, as encoding/json matches them, so every
// record and file that decoded before decodes the same, save one with an
// unknown member, which is refused. Records written by earlier versions
// have only the three members, spelt as the struct tags spell them.
func (s *Statement) UnmarshalJSON(b []byte) error {
	err := json.Unmarshal(b, s, json.MatchCaseInsensitiveNames(true))
	if um := (*UnknownMemberError)(nil); errors.As(err, &um) {
		return um // without the wrapping, which names only the Go type
	}
	return err
}
