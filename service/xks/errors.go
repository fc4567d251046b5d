package xks

import (
	"net/http"
	"strings"

	"github.com/hsmkms/hsmkms/service"
)

// The XKS proxy API's error names (spec v1.0, "Error Codes").
const (
	ErrValidation         = "ValidationException"
	ErrInvalidState       = "InvalidStateException"
	ErrInvalidCiphertext  = "InvalidCiphertextException"
	ErrInvalidKeyUsage    = "InvalidKeyUsageException"
	ErrAuthenticationFail = "AuthenticationFailedException"
	ErrAccessDenied       = "AccessDeniedException"
	ErrKeyNotFound        = "KeyNotFoundException"
	ErrInvalidURIPath     = "InvalidUriPathException"
	ErrThrottling         = "ThrottlingException"
	ErrUnsupported        = "UnsupportedOperationException"
	ErrDependencyTimeout  = "DependencyTimeoutException"
	ErrInternal           = "InternalException"
)

// statusOf is the HTTP status the spec gives each error name.
func statusOf(name string) int {
	switch name {
	case ErrAuthenticationFail:
		return http.StatusUnauthorized
	case ErrAccessDenied:
		return http.StatusForbidden
	case ErrKeyNotFound, ErrInvalidURIPath:
		return http.StatusNotFound
	case ErrThrottling:
		return http.StatusTooManyRequests
	case ErrUnsupported:
		return http.StatusNotImplemented
	case ErrDependencyTimeout:
		return http.StatusServiceUnavailable
	case ErrInternal:
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// nameOf maps a key service error to its XKS error name: the one place
// the service's (AWS KMS) codes meet the XKS names.
func nameOf(err error) string {
	switch service.CodeOf(err) {
	case service.CodeValidation:
		return ErrValidation
	case service.CodeDisabled, service.CodeInvalidState:
		return ErrInvalidState
	case service.CodeInvalidCipher:
		return ErrInvalidCiphertext
	case service.CodeInvalidKeyUsage:
		return ErrInvalidKeyUsage
	case service.CodeAccessDenied:
		return ErrAccessDenied
	case service.CodeNotFound:
		return ErrKeyNotFound
	case service.CodeUnsupported:
		return ErrUnsupported
	case service.CodeLimitExceeded:
		return ErrThrottling
	case service.CodeDependency:
		return ErrDependencyTimeout
	}
	return ErrInternal
}

// maxMessage bounds errorMessage: the spec wants under 512 characters.
const maxMessage = 511

// printable makes msg what the spec allows in errorMessage: printable
// ASCII (0x20 to 0x7e), under 512 characters.
func printable(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg) && b.Len() < maxMessage; i++ {
		if c := msg[i]; c >= 0x20 && c <= 0x7e {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
