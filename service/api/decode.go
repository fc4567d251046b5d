package api

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
)

// errSerialization is a body that is not the JSON the operation takes.
type errSerialization struct{ msg string }

func (e *errSerialization) Error() string { return e.msg }

// decode reads a JSON 1.1 request body into v.
//
// Member names match exactly and a name may appear once per object, at
// every depth: with case-insensitive matching or "last duplicate wins", a
// proxy or WAF in front of the server could read another KeyId than the
// server uses. Unknown members are ignored, as newer SDKs may send members
// this server does not know (a case variant such as "keyid" is one of
// them). Policy statements are the exception: a statement with an unknown
// member (an IAM-style "condition", say) is a ValidationException naming
// it, since ignoring the member would store a wider grant than its author
// wrote (found by review; policy.Statement refuses it). Every string must
// be valid UTF-8 without lone UTF-16 surrogate escapes, so that two
// different encryption contexts can never compare equal after a
// replacement character stands in for bad bytes.
//
// A body that is not JSON, has a duplicate member, or a member of the wrong
// type or bad base64 is a SerializationException; bad text is a
// ValidationException. The decoder is go-json-experiment/json (the
// encoding/json/v2 candidate), whose defaults are exactly these rules.
func decode(body []byte, v any) error {
	if len(body) == 0 {
		return nil
	}
	if err := checkText(body); err != nil {
		return err
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var se *json.SemanticError
	var um *policy.UnknownMemberError
	switch {
	case errors.As(err, &um) && jsontext.Value(body).IsValid():
		// Only in a well-formed body: a statement's decoder sees an
		// unknown name before the decoder sees the body end too soon.
		msg := um.Error()
		if errors.As(err, &se) && se.JSONPointer != "" {
			msg = "member " + string(se.JSONPointer[1:]) + ": " + msg
		}
		return &service.Error{Code: service.CodeValidation, Message: msg, Err: um}
	case errors.Is(err, jsontext.ErrDuplicateName):
		return &errSerialization{"the request body names a member twice" + where(err)}
	case errors.As(err, &se) && se.JSONPointer != "":
		return &errSerialization{fmt.Sprintf("member %s: expected %s, got a JSON %s", se.JSONPointer[1:], goType(se), kindName(se.JSONKind))}
	case errors.As(err, &se):
		return &errSerialization{fmt.Sprintf("the request body must be a JSON object, not a JSON %s", kindName(se.JSONKind))}
	}
	return &errSerialization{"the request body is not valid JSON: " + err.Error()}
}

// kindName names a JSON kind in words: Kind.String gives "[" for an array.
func kindName(k jsontext.Kind) string {
	return strings.NewReplacer("{", "object", "[", "array").Replace(k.String())
}

// where names a duplicate member by its JSON pointer, from the decoder's
// error: the pointer is the member's, not the object's it is in.
func where(err error) string {
	var sy *jsontext.SyntacticError
	if errors.As(err, &sy) && sy.JSONPointer != "" {
		return ": " + string(sy.JSONPointer)
	}
	return ""
}

// goType describes the Go type a member wanted in the wire's words.
func goType(se *json.SemanticError) string {
	if se.GoType == nil {
		return "another type"
	}
	if t := se.GoType; t.Name() == "EpochTime" || t.Kind().String() == "ptr" && t.Elem().Name() == "EpochTime" {
		return "a number of seconds since the epoch, 0 to 253402300799" // not the time.Time it is made of
	}
	switch se.GoType.Kind().String() {
	case "string":
		return "a string"
	case "slice":
		if se.GoType.Elem().Kind().String() == "uint8" {
			return "base64 text"
		}
		return "a list"
	case "map", "struct":
		return "an object"
	case "bool":
		return "a boolean"
	case "ptr":
		return "a " + se.GoType.Elem().Kind().String()
	}
	return "a " + se.GoType.Kind().String()
}

// checkText refuses a body that is not valid UTF-8 or holds a \u escape of
// a lone surrogate. Outside strings a backslash is a syntax error anyway,
// so every escape in a body the decoder accepts lies in a string.
func checkText(body []byte) error {
	if !utf8.Valid(body) {
		return validation("the request holds text that is not valid UTF-8")
	}
	for i := 0; ; {
		j := bytes.IndexByte(body[i:], '\\')
		if j < 0 || i+j+1 >= len(body) {
			return nil
		}
		i += j
		r, ok := rune(0), false
		if body[i+1] == 'u' {
			r, ok = hex4(body[i+2:])
		}
		switch {
		case !ok: // another escape, or a malformed one the decoder reports
			i += 2
		case isLowSurrogate(r):
			return loneSurrogate()
		case isHighSurrogate(r):
			if i+12 > len(body) || body[i+6] != '\\' || body[i+7] != 'u' {
				return loneSurrogate()
			}
			if lo, ok := hex4(body[i+8:]); !ok || !isLowSurrogate(lo) {
				return loneSurrogate()
			}
			i += 12
		default:
			i += 6
		}
	}
}

func isHighSurrogate(r rune) bool { return r >= 0xd800 && r <= 0xdbff }
func isLowSurrogate(r rune) bool  { return r >= 0xdc00 && r <= 0xdfff }

func validation(msg string) error { return &service.Error{Code: service.CodeValidation, Message: msg} }

func loneSurrogate() error {
	return validation("the request holds a \\u escape of a lone UTF-16 surrogate, which is not text")
}

// hex4 reads four hex digits.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
