package service

import (
	"context"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// heldCreate holds the next CreateMasterKey until release is closed, as a
// creation queued on the token behind others is held; onDestroy, when
// set, runs at the next DestroyKey.
type heldCreate struct {
	HSM
	entered   chan store.Version // written and cleared only by the held creation
	release   chan struct{}
	onDestroy func()
}

func (h *heldCreate) CreateMasterKey(ctx context.Context, id hsm.ObjectID, label string) error {
	if h.entered != nil {
		h.entered <- store.Version{ObjectID: id}
		h.entered = nil
		<-h.release
	}
	return h.HSM.CreateMasterKey(ctx, id, label)
}

func (h *heldCreate) DestroyKey(ctx context.Context, id hsm.ObjectID) error {
	if f := h.onDestroy; f != nil {
		h.onDestroy = nil
		f()
	}
	return h.HSM.DestroyKey(ctx, id)
}

// TestCreateKeyAfterItsClaimWasTakenOver: a CreateKey held on the token
// past its version's claim, whose replica's own Reconcile takes the version
// over, finds no material and rolls the key back, does not then activate
// the key and answer success (found by review: claims compared by replica,
// so the request activated the key its Reconcile then destroyed the
// material of, and the ciphertexts made with it never decrypted). The
// claim is made to run out by writing its end into the past, not by
// waiting.
func TestCreateKeyAfterItsClaimWasTakenOver(t *testing.T) {
	var h *heldCreate
	entered := make(chan store.Version, 1)
	f := newFixture(t, "", func(c *Config) {
		h = &heldCreate{HSM: c.HSM, entered: entered, release: make(chan struct{})}
		c.HSM = h
	})
	ctx := admin(t)
	type result struct {
		out KeyOutput
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := f.svc.CreateKey(ctx, CreateKeyInput{})
		done <- result{out, err}
	}()
	<-entered
	var keyID string
	ksMust(t, "end the claim", f.svc.store.Update(ctx, func(tx store.Tx) error {
		keys, err := tx.Keys("", 0)
		if err != nil || len(keys) != 1 {
			t.Fatalf("keys: %d, %v; want the one being made", len(keys), err)
		}
		keyID = keys[0].ID
		v, err := tx.Version(keyID, 1)
		if err != nil {
			return err
		}
		v.LeaseUntil = time.Now().Add(-time.Second).UTC()
		return tx.PutVersion(v)
	}))
	var created result
	h.onDestroy = func() { // Reconcile found no material; the creation finishes first
		close(h.release)
		created = <-done
	}
	r, err := f.svc.Reconcile(ctx)
	ksMust(t, "Reconcile", err)
	if r.RolledBack != 1 {
		t.Fatalf("Reconcile = %+v, want the key rolled back", r)
	}
	if created.err == nil {
		t.Fatalf("CreateKey answered success for a key its replica's Reconcile rolled back (state %s)", ksStoreKey(t, f, keyID).State)
	}
	if k := ksStoreKey(t, f, keyID); k.State == store.KeyEnabled {
		t.Fatalf("the key is %s", k.State)
	}
}
