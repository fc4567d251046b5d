package service

import (
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/service/store"
)

var (
	accountRE = regexp.MustCompile(`^[0-9]{12}$`)
	regionRE  = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+$`)
	// aliasRE is the AWS alias name rule: alias/ and 1 to 250 of
	// [a-zA-Z0-9/_-].
	aliasRE = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)
)

// maxKeyIDLen bounds a key identifier, in characters as AWS counts it.
const maxKeyIDLen = 2048

// tooLong reports whether s has more than limit characters, as AWS counts
// a string's length (Unicode code points; each byte of invalid UTF-8 is one).
// No byte cap is needed before counting: the request body is already
// bounded, and none of the strings counted here reach a cgo call.
func tooLong(s string, limit int) bool {
	return len(s) > limit && utf8.RuneCountInString(s) > limit
}

// lengthErr is AWS's ValidationException for a string longer than limit
// characters at member. The value is not echoed: it is long, and may hold
// what its owner would not want in error responses and audit records.
func lengthErr(member string, limit int) error {
	return newErr(CodeValidation, "1 validation error detected: Value at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", member, limit)
}

// enumErr is AWS's ValidationException for a value outside an enum: the
// values in the API model's order, comma-separated.
func enumErr(member, value string, values []string) error {
	return newErr(CodeValidation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: [%s]",
		value, member, strings.Join(values, ", "))
}

func (s *Service) keyARN(id string) string { return s.arn + "key/" + id }

func (s *Service) aliasARN(name string) string { return s.arn + name }

// keyRef is a parsed key identifier: a key ID, or an alias name.
type keyRef struct {
	id    string
	alias string
	input string
}

// parseKeyRef accepts a key ID, key ARN, alias name or alias ARN.
func (s *Service) parseKeyRef(field, in string) (keyRef, error) {
	switch {
	case in == "":
		return keyRef{}, newErr(CodeValidation, "1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", field)
	case tooLong(in, maxKeyIDLen):
		return keyRef{}, lengthErr(field, maxKeyIDLen)
	}
	ref := keyRef{input: in}
	rest := in
	if strings.HasPrefix(in, "arn:") {
		if !strings.HasPrefix(in, s.arn) {
			return ref, newErr(CodeNotFound, "Key '%s' does not exist", in)
		}
		rest = strings.TrimPrefix(in, s.arn)
		if id, ok := strings.CutPrefix(rest, "key/"); ok {
			rest = id
		} else if !strings.HasPrefix(rest, "alias/") {
			return ref, newErr(CodeInvalidArn, "%s is not a key or alias ARN", in)
		}
	}
	if strings.HasPrefix(rest, "alias/") {
		if !aliasRE.MatchString(rest) {
			return ref, newErr(CodeNotFound, "Alias %s is not found.", s.aliasARN(rest))
		}
		ref.alias = rest
		return ref, nil
	}
	if !isKeyID(rest) {
		return ref, newErr(CodeNotFound, "Invalid keyId '%s'", in)
	}
	ref.id = strings.ToLower(rest)
	return ref, nil
}

// resolve finds the key ref names. Keys being created and tombstones are
// not found.
func (s *Service) resolve(tx store.Tx, ref keyRef) (store.Key, error) {
	id := ref.id
	if ref.alias != "" {
		a, err := tx.Alias(ref.alias)
		if errors.Is(err, store.ErrNotFound) {
			return store.Key{}, newErr(CodeNotFound, "Alias %s is not found.", s.aliasARN(ref.alias))
		}
		if err != nil {
			return store.Key{}, storeErr(err)
		}
		id = a.KeyID
	}
	k, err := tx.Key(id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (k.State == store.KeyCreating || k.State == store.KeyDeleted)) {
		return store.Key{}, newErr(CodeNotFound, "Key '%s' does not exist", s.keyARN(id))
	}
	if err != nil {
		return store.Key{}, storeErr(err)
	}
	return k, nil
}

// storeErr reports a store failure as an internal error; the cause goes to
// the logs, not to the client.
func storeErr(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, store.ErrUnavailable) {
		return wrapErr(CodeDependency, err, msgStoreUnavailable)
	}
	return wrapErr(CodeInternal, err, "the key store failed")
}

// usable checks that k may be used for cryptography with usage.
func (s *Service) usable(k store.Key, usage string) error {
	switch k.State {
	case store.KeyEnabled:
	case store.KeyDisabled:
		return newErr(CodeDisabled, "%s is disabled.", s.keyARN(k.ID))
	case store.KeyPendingDeletion:
		return newErr(CodeInvalidState, "%s is pending deletion.", s.keyARN(k.ID))
	case store.KeyPendingImport:
		return newErr(CodeInvalidState, "%s is pending import.", s.keyARN(k.ID))
	default:
		return newErr(CodeInvalidState, "%s is %s.", s.keyARN(k.ID), k.State)
	}
	if s.expired(k) {
		return newErr(CodeInvalidState, "%s is pending import.", s.keyARN(k.ID))
	}
	if k.Usage != usage {
		return newErr(CodeInvalidKeyUsage, "%s key usage is %s which is not valid for this operation.", s.keyARN(k.ID), k.Usage)
	}
	return nil
}

// isKeyID reports a key ID: a UUID in its 36-character form.
func isKeyID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}
