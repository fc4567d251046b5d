package api

import (
	"net/http"
	"testing"

	"github.com/hsmkms/hsmkms/service"
)

// TestStatusOf: every error of the request is a 400, as AWS KMS answers
// it; the service's own failures are 500 and a dependency's 503, the ones
// SDKs retry.
func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		code service.Code
		want int
	}{
		{service.CodeNotFound, http.StatusBadRequest},
		{service.CodeAlreadyExists, http.StatusBadRequest},
		{service.CodeDisabled, http.StatusBadRequest},
		{service.CodeInvalidState, http.StatusBadRequest},
		{service.CodeValidation, http.StatusBadRequest},
		{service.CodeInvalidCipher, http.StatusBadRequest},
		{service.CodeInvalidMac, http.StatusBadRequest},
		{service.CodeUnsupported, http.StatusBadRequest},
		{service.CodeLimitExceeded, http.StatusBadRequest},
		{service.CodeAccessDenied, http.StatusBadRequest},
		{service.CodeInternal, http.StatusInternalServerError},
		{service.CodeDependency, http.StatusServiceUnavailable},
	} {
		if got := statusOf(tc.code); got != tc.want {
			t.Errorf("statusOf(%s) = %d, want %d", tc.code, got, tc.want)
		}
	}
}
