package hsm

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// The kinds of failure callers act on. Every error this package returns
// matches exactly one of them with errors.Is; the PKCS#11 return code, when
// there is one, is reachable with errors.As(err, new(pkcs11.Error)).
var (
	// ErrInvalidInput: a caller-supplied value has the wrong length or form.
	// Nothing reached the token.
	ErrInvalidInput = errors.New("invalid input")
	// ErrInvalidCiphertext: the token refused to open a ciphertext (wrong
	// tag, IV, AAD or key) while the token itself was healthy.
	ErrInvalidCiphertext = errors.New("invalid ciphertext")
	// ErrKeyNotFound: no object on the token has the CKA_ID asked for.
	ErrKeyNotFound = errors.New("key not found on the token")
	// ErrDuplicateKey: two objects of one class share a CKA_ID; the token
	// was changed behind the service's back and no guess is made.
	ErrDuplicateKey = errors.New("more than one object on the token has this CKA_ID")
	// ErrUnavailable: the token or module cannot be used right now; the
	// Token recovers in the background.
	ErrUnavailable = errors.New("token unavailable")
	// ErrInvalidSignature: the signature does not verify under the key.
	ErrInvalidSignature = errors.New("invalid signature")
	// ErrMechanismUnsupported: the token lacks a mechanism the operation needs.
	ErrMechanismUnsupported = errors.New("mechanism not supported by the token")
	// ErrPoolExhausted: no session became free within the wait timeout.
	ErrPoolExhausted = errors.New("no free session within the wait timeout")
	// ErrLogin: the token refused the PIN. It is never retried.
	ErrLogin = errors.New("login refused")
	// ErrClosed: the Token was closed.
	ErrClosed = errors.New("token closed")
	// ErrToken: any other failure reported by the token.
	ErrToken = errors.New("token error")
)

// Error is a failed operation: which one, its kind (one of the Err values
// above) and the cause, often a pkcs11.Error.
type Error struct {
	Op   string // the operation, e.g. "seal" or "wrap data key"
	Kind error  // one of the Err… sentinels
	Err  error  // the cause, or nil
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("hsm: %s: %v", e.Op, e.Kind)
	}
	return fmt.Sprintf("hsm: %s: %v: %v", e.Op, e.Kind, e.Err)
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// loadError is a PKCS#11 module that cannot be loaded: the HSM is
// unavailable (exit 5 in the CLI), as a lost token is.
type loadError struct{ path string }

func (e loadError) Error() string {
	return "hsm: cannot load PKCS#11 module " + e.path + " (missing file, wrong architecture or unresolved dependencies)"
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e loadError) Is(target error) bool { return target == ErrUnavailable }

func newError(op string, kind, cause error) *Error { return &Error{Op: op, Kind: kind, Err: cause} }

func invalidInput(op, format string, args ...any) *Error {
	return newError(op, ErrInvalidInput, fmt.Errorf(format, args...))
}

// class is what the token's return code asks the caller of the module to do.
type class int

const (
	classOK        class = iota
	classFatal           // report as is (ErrToken, or a kind set by the caller)
	classStale           // object handle stale: re-find by CKA_ID and retry once
	classSession         // session broken: evict it and retry once on another
	classLogin           // not logged in: log in again and retry once
	classDevice          // token or module lost: go unavailable and recover
	classAmbiguous       // CKR_GENERAL_ERROR and kin: probe the token to decide
	classPIN             // PIN refused: never retry
	classMechanism       // mechanism or parameters not supported
)

func classify(err error) class {
	if err == nil {
		return classOK
	}
	var code pkcs11.Error
	if !errors.As(err, &code) {
		return classFatal
	}
	switch code {
	case pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_WRAPPING_KEY_HANDLE_INVALID, pkcs11.CKR_UNWRAPPING_KEY_HANDLE_INVALID:
		return classStale
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_OPERATION_ACTIVE, pkcs11.CKR_OPERATION_NOT_INITIALIZED:
		return classSession
	case pkcs11.CKR_USER_NOT_LOGGED_IN:
		return classLogin
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_SLOT_ID_INVALID, pkcs11.CKR_SESSION_COUNT:
		return classDevice
	case pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_DEVICE_MEMORY:
		return classAmbiguous
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE,
		pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED:
		return classPIN
	case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID:
		return classMechanism
	}
	return classFatal
}

// isCode reports whether err carries the PKCS#11 return code want.
func isCode(err error, want pkcs11.Error) bool {
	var code pkcs11.Error
	return errors.As(err, &code) && code == want
}
