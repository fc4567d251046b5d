package hsm

import (
	"context"
	"errors"
	"testing"
)

// TestLockObjectsHonoursContext: a creation that waited on objectMu past
// its caller's deadline does not go on; the lock is given back. Whether the
// waiter reached the lock before the cancellation or after, the outcome is
// the same, so the test does not depend on timing.
func TestLockObjectsHonoursContext(t *testing.T) {
	var tok Token
	tok.objectMu.Lock()
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan error, 1)
	go func() { got <- tok.lockObjects(ctx) }()
	cancel()
	tok.objectMu.Unlock()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("lockObjects after its context ended: %v, want context.Canceled", err)
	}
	if !tok.objectMu.TryLock() {
		t.Fatal("lockObjects kept the lock it refused")
	}
	tok.objectMu.Unlock()
	if err := tok.lockObjects(t.Context()); err != nil {
		t.Fatalf("lockObjects with a live context: %v", err)
	}
	tok.objectMu.Unlock()
}
