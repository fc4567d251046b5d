package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/store"
)

// testContext checks that a done context stops a transaction: before it
// starts (fn is not run) and while fn runs (nothing is committed).
func testContext(t *testing.T, open func(t *testing.T) store.Store) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"Cancelled", cancelled, context.Canceled},
		{"DeadlineExceeded", expired, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			ran := false
			fn := func(tx store.Tx) error {
				ran = true
				_, err := tx.PutKey(newKey("k1", 0))
				return err
			}
			wantErr(t, "View", s.View(tc.ctx, fn), tc.want)
			wantErr(t, "Update", s.Update(tc.ctx, fn), tc.want)
			if ran {
				t.Error("fn ran under a done context")
			}
			checkGetErr(t, s, keyKind, "k1", store.ErrNotFound)
		})
	}
	t.Run("CancelledDuringUpdate", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(context.Background())
		err := s.Update(ctx, func(tx store.Tx) error {
			_, err := tx.PutKey(newKey("k1", 0))
			cancel()
			return err
		})
		if err == nil {
			t.Error("Update whose context was cancelled while fn ran: no error")
		}
		checkGetErr(t, s, keyKind, "k1", store.ErrNotFound)
	})
}

// testClosed checks that every call after Close returns ErrClosed.
func testClosed(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	seed(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ran := false
	fn := func(store.Tx) error { ran = true; return nil }
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"View", func() error { return s.View(context.Background(), fn) }},
		{"Update", func() error { return s.Update(context.Background(), fn) }},
		{"Close", s.Close},
	} {
		if err := tc.call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", tc.name, err)
		}
	}
	if ran {
		t.Error("fn ran on a closed store")
	}
}
