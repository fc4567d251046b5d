package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/hsmkms/hsmkms/service/store"
)

// Code is an AWS KMS error type, the "__type" of a KMS error response.
type Code string

// The error types the key service returns. The API layer maps each to its
// HTTP status once; nothing else in the service knows about HTTP.
const (
	CodeNotFound             Code = "NotFoundException"
	CodeDisabled             Code = "DisabledException"
	CodeInvalidState         Code = "KMSInvalidStateException"
	CodeAlreadyExists        Code = "AlreadyExistsException"
	CodeInvalidCipher        Code = "InvalidCiphertextException"
	CodeIncorrectKey         Code = "IncorrectKeyException"
	CodeInvalidKeyUsage      Code = "InvalidKeyUsageException"
	CodeInvalidSignature     Code = "KMSInvalidSignatureException"
	CodeInvalidMac           Code = "KMSInvalidMacException"
	CodeInvalidGrantToken    Code = "InvalidGrantTokenException"
	CodeInvalidGrantID       Code = "InvalidGrantIdException"
	CodeInvalidImportToken   Code = "InvalidImportTokenException"
	CodeExpiredImportToken   Code = "ExpiredImportTokenException"
	CodeIncorrectKeyMaterial Code = "IncorrectKeyMaterialException"
	CodeValidation           Code = "ValidationException"
	CodeAccessDenied         Code = "AccessDeniedException"
	CodeInvalidAliasName     Code = "InvalidAliasNameException"
	CodeInvalidArn           Code = "InvalidArnException"
	CodeLimitExceeded        Code = "LimitExceededException"
	CodeInvalidMarker        Code = "InvalidMarkerException"
	CodeUnsupported          Code = "UnsupportedOperationException"
	CodeInternal             Code = "KMSInternalException"
	// CodeDependency is what hsmkms answers while the HSM is unavailable:
	// AWS SDKs model it and retry it.
	CodeDependency Code = "DependencyTimeoutException"
	// CodeCancelled is no AWS error type: it marks a request its client
	// abandoned, whose answer nobody reads. It is the client's doing, never
	// recorded as a failure of the service.
	CodeCancelled Code = "RequestCancelled"
)

// Error is a failed key service operation: an AWS error type and a message
// that names what failed and never holds secret material.
type Error struct {
	Code    Code
	Message string
	Err     error // the cause, for logs; never shown to clients
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches another *Error with the same Code, so that
// errors.Is(err, service.ErrNotFound) works for any message.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code && t.Message == ""
}

// Sentinels for errors.Is; each matches every Error of its Code.
var (
	ErrNotFound             = &Error{Code: CodeNotFound}
	ErrDisabled             = &Error{Code: CodeDisabled}
	ErrInvalidState         = &Error{Code: CodeInvalidState}
	ErrAlreadyExists        = &Error{Code: CodeAlreadyExists}
	ErrInvalidCipher        = &Error{Code: CodeInvalidCipher}
	ErrIncorrectKey         = &Error{Code: CodeIncorrectKey}
	ErrInvalidKeyUsage      = &Error{Code: CodeInvalidKeyUsage}
	ErrInvalidSignature     = &Error{Code: CodeInvalidSignature}
	ErrInvalidMac           = &Error{Code: CodeInvalidMac}
	ErrInvalidGrantToken    = &Error{Code: CodeInvalidGrantToken}
	ErrInvalidGrantID       = &Error{Code: CodeInvalidGrantID}
	ErrInvalidImportToken   = &Error{Code: CodeInvalidImportToken}
	ErrExpiredImportToken   = &Error{Code: CodeExpiredImportToken}
	ErrIncorrectKeyMaterial = &Error{Code: CodeIncorrectKeyMaterial}
	ErrValidation           = &Error{Code: CodeValidation}
	ErrAccessDenied         = &Error{Code: CodeAccessDenied}
	ErrInvalidAliasName     = &Error{Code: CodeInvalidAliasName}
	ErrInvalidArn           = &Error{Code: CodeInvalidArn}
	ErrLimitExceeded        = &Error{Code: CodeLimitExceeded}
	ErrInvalidMarker        = &Error{Code: CodeInvalidMarker}
	ErrUnsupported          = &Error{Code: CodeUnsupported}
	ErrInternal             = &Error{Code: CodeInternal}
	ErrDependency           = &Error{Code: CodeDependency}
	ErrCancelled            = &Error{Code: CodeCancelled}
)

// ErrInternalKeyMissing is the cause (errors.Is) of the KMSInternalException
// for an internal key the store records as made but the token does not
// have: the store and the token do not belong together.
var ErrInternalKeyMissing = errors.New("service: the internal key is not on the token")

func newErr(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func wrapErr(code Code, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// CodeOf returns the Code of err, or CodeInternal when err is not an
// *Error. An internal error caused by a store that cannot be reached is
// CodeDependency, wherever it was wrapped: the client should retry it.
// A store failure whose commit outcome is unknown is CodeInternal, even
// when the store was also unreachable: AWS SDKs retry CodeDependency on
// their own, and a retry could repeat a change that was made.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) && e.Code != CodeInternal && (e.Code != CodeDependency || !outcomeUnknown(err)) {
		return e.Code
	}
	if errors.Is(err, store.ErrUnavailable) && !outcomeUnknown(err) {
		return CodeDependency
	}
	return CodeInternal
}

// outcomeUnknown reports a store failure after which the change may or
// may not have been made.
func outcomeUnknown(err error) bool { return errors.Is(err, store.ErrOutcomeUnknown) }

// MessageOf returns the message a client is shown for err.
func MessageOf(err error) string {
	var e *Error
	switch {
	case CodeOf(err) == CodeInternal && outcomeUnknown(err):
		return msgOutcomeUnknown
	case CodeOf(err) == CodeDependency && (!errors.As(err, &e) || e.Code == CodeInternal):
		return msgStoreUnavailable
	case errors.As(err, &e):
		return e.Message
	}
	return "an internal error occurred"
}

// msgStoreUnavailable is what a client is told while the key store (a
// shared database) cannot be reached; AWS SDKs retry the error type.
const msgStoreUnavailable = "The key store is unavailable. Retry the request."

// msgOutcomeUnknown is what a client is told when the key store lost the
// answer to a commit: whether the request took effect is unknown.
const msgOutcomeUnknown = "The key store did not confirm the change: it may or may not have been made. Check before retrying the request."

// Cancelled reports err as a cancelled request (CodeCancelled) when the
// client cancelled ctx (closed or reset its connection) and err is a failure
// of the store or the HSM, which the cancellation explains; otherwise it
// returns err. A deadline is not the client's doing: a request that ran out
// of time stays an error of the service.
func Cancelled(ctx context.Context, err error) error {
	if err == nil || !errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	if c := CodeOf(err); c != CodeInternal && c != CodeDependency {
		return err
	}
	return &Error{Code: CodeCancelled, Message: "the client cancelled the request", Err: err}
}
