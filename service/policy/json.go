package policy

import (
	"bytes"
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

// Bits of the members a statement has named, to refuse a repeated one.
const (
	seenEffect = 1 << iota
	seenActions
	seenResources
)

// UnmarshalJSONFrom decodes a statement for go-json-experiment/json (the
// server API). It refuses a member other than effect, actions and resources
// with an *UnknownMemberError, and a member named twice. Names match
// exactly unless the decoder's options say json.MatchCaseInsensitiveNames
// (then ASCII case is ignored, and "effect" and "Effect" are the same member
// named twice). JSON null decodes as the zero Statement, which Validate
// refuses.
//
// It reads the statement in one pass without buffering it: statements are
// decoded on every principal and XKS policy admin call and whenever a
// principal record is read from the store.
func (s *Statement) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	switch k := dec.PeekKind(); k {
	case 'n':
		*s = Statement{}
		_, err := dec.ReadToken()
		return err
	case '{':
	case 0: // a syntax error or the end of the input: ReadToken reports it
		_, err := dec.ReadToken()
		return err
	default:
		if err := dec.SkipValue(); err != nil {
			return err
		}
		return &json.SemanticError{JSONKind: k, Err: errors.New("a statement must be a JSON object")}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	fold, _ := json.GetOption(dec.Options(), json.MatchCaseInsensitiveNames)
	*s = Statement{}
	seen := 0
	for dec.PeekKind() != '}' {
		raw, err := dec.ReadValue() // the member name, quoted
		if err != nil {
			return err
		}
		name := []byte(raw[1 : len(raw)-1])
		if bytes.IndexByte(name, '\\') >= 0 {
			if name, err = jsontext.AppendUnquote(nil, raw); err != nil {
				return err
			}
		}
		var bit int
		var field any
		switch {
		case nameIs(name, "effect", fold):
			bit, field = seenEffect, &s.Effect
		case nameIs(name, "actions", fold):
			bit, field = seenActions, &s.Actions
		case nameIs(name, "resources", fold):
			bit, field = seenResources, &s.Resources
		default:
			return &UnknownMemberError{Member: string(name)}
		}
		if seen&bit != 0 {
			return fmt.Errorf("policy: statement member %q: %w", name, jsontext.ErrDuplicateName)
		}
		seen |= bit
		if err := json.UnmarshalDecode(dec, field); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
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

// nameIs reports whether member name is want, ignoring ASCII case if fold.
func nameIs(name []byte, want string, fold bool) bool {
	if !fold {
		return string(name) == want
	}
	if len(name) != len(want) {
		return false
	}
	for i := range name {
		if !byteEq(name[i], want[i], true) {
			return false
		}
	}
	return true
}
