package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

// TestStoreOutcomeUnknownErrors checks what a client is told of a store
// failure: an unreachable store is CodeDependency, which AWS SDKs retry,
// but a commit whose outcome is unknown is CodeInternal saying so, even
// when the store also became unreachable, since a retry could repeat a
// change that was made. The cause never reaches the message.
func TestStoreOutcomeUnknownErrors(t *testing.T) {
	const cause = "password=hunter2"
	unknown := func(err error) error {
		return fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, err)
	}
	unavailable := fmt.Errorf("%w: %s", store.ErrUnavailable, cause)
	for _, tc := range []struct {
		name string
		err  error
		code Code
		msg  string
	}{
		{"unavailable", storeErr(unavailable), CodeDependency, msgStoreUnavailable},
		{"unavailable, unwrapped", unavailable, CodeDependency, msgStoreUnavailable},
		{"unknown, connection lost", storeErr(unknown(unavailable)), CodeInternal, msgOutcomeUnknown},
		{"unknown, deadline", storeErr(unknown(fmt.Errorf("store: %w", context.DeadlineExceeded))), CodeInternal, msgOutcomeUnknown},
		{"unknown, unwrapped", unknown(unavailable), CodeInternal, msgOutcomeUnknown},
		{"unknown, wrapped again", fmt.Errorf("creating key: %w", storeErr(unknown(unavailable))), CodeInternal, msgOutcomeUnknown},
		{"other", storeErr(errors.New(cause)), CodeInternal, "the key store failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CodeOf(tc.err); got != tc.code {
				t.Errorf("CodeOf = %s, want %s", got, tc.code)
			}
			msg := MessageOf(tc.err)
			if msg != tc.msg {
				t.Errorf("MessageOf = %q, want %q", msg, tc.msg)
			}
			if strings.Contains(msg, cause) {
				t.Errorf("MessageOf = %q shows the cause", msg)
			}
		})
	}
}
