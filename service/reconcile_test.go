package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// hookHSM runs hook once, on the first HasKey.
type hookHSM struct {
	HSM
	once sync.Once
	hook func()
}

func (h *hookHSM) HasKey(ctx context.Context, id hsm.ObjectID) (bool, error) {
	if h.hook != nil {
		h.once.Do(h.hook)
	}
	return h.HSM.HasKey(ctx, id)
}

// TestReconcileKeepsAKeyCreatedDuringItsPass: Reconcile reads a page of
// keys in which B is Creating (its maker, this process, is in flight).
// While Reconcile settles an earlier key of the page, B's maker activates
// it: CreateKey succeeds. Reconcile then reaches B with the old record and
// must leave it be: B stays Enabled and its token object stays. (Found by
// review: B was rolled back, its material destroyed.)
func TestReconcileKeepsAKeyCreatedDuringItsPass(t *testing.T) {
	var hh *hookHSM
	f := newFixture(t, "", shared("a"), func(c *Config) { hh = &hookHSM{HSM: c.HSM}; c.HSM = hh })
	a := f.createKey(t, CreateKeyInput{})
	putPending(t, f, a, 2, "dead-replica", time.Now().Add(-time.Second)) // left by a dead replica

	// B, as createKey leaves it between its first Update and activate.
	b, err := f.svc.newKeyRecord(CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	b.ID = "ffffffff-ffff-4fff-bfff-ffffffffffff" // after a in the page
	b.LatestVersion = 1
	v, err := f.svc.newVersion(b.ID, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.store.Update(t.Context(), func(tx store.Tx) error {
		if _, err := tx.PutKey(b); err != nil {
			return err
		}
		return tx.PutVersion(v)
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.makeMaterial(t.Context(), b, v); err != nil {
		t.Fatal(err)
	}
	hh.hook = func() { // B's maker finishes while Reconcile works on a
		if err := f.svc.store.Update(context.Background(), func(tx store.Tx) error { return f.svc.activate(tx, b.ID, 1, v.Owner) }); err != nil {
			t.Errorf("activate: %v", err)
		}
	}
	r, err := f.svc.Reconcile(t.Context())
	if err != nil || r.RolledBack != 0 {
		t.Errorf("Reconcile = %+v, %v; want nothing rolled back", r, err)
	}
	k, _ := f.svc.keyRecord(t.Context(), b.ID)
	if k.State != store.KeyEnabled {
		t.Errorf("key B, created successfully, is now %s", k.State)
	}
	if has, _ := f.tok.HasKey(t.Context(), v.ObjectID); !has {
		t.Error("B's key material was destroyed")
	}
}

// TestRollBackOfAKeyActivatedMeanwhile: Reconcile's eachKey read a page
// in which key K was still Creating; before settleCreating reached K, its
// creator activated it (CreateKey returned success to its client).
// settleCreating must leave K alone, and a ciphertext made under it
// decrypts.
func TestRollBackOfAKeyActivatedMeanwhile(t *testing.T) {
	f := newFixture(t, "", shared("a"))
	id := f.createKey(t, CreateKeyInput{})
	out, err := f.svc.Encrypt(admin(t), EncryptInput{KeyId: id, Plaintext: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	k, err := f.svc.keyRecord(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var v1 store.Version
	if err := f.svc.store.View(t.Context(), func(tx store.Tx) (err error) { v1, err = tx.Version(id, 1); return err }); err != nil {
		t.Fatal(err)
	}
	stale := k
	stale.State = store.KeyCreating // as the page read before activate committed
	if back, n, err := f.svc.settleCreating(t.Context(), stale); back || n != 0 || err != nil {
		t.Errorf("settleCreating of a key activated meanwhile = %v, %d, %v; want false, 0, nil", back, n, err)
	}
	k2, _ := f.svc.keyRecord(t.Context(), id)
	if k2.State != store.KeyEnabled {
		t.Errorf("an Enabled key became %s", k2.State)
	}
	if has, _ := f.tok.HasKey(t.Context(), v1.ObjectID); !has {
		t.Errorf("the token object of version 1 (state %s) was destroyed", v1.State)
	}
	if _, err := f.svc.Decrypt(admin(t), DecryptInput{CiphertextBlob: out.CiphertextBlob}); err != nil {
		t.Errorf("Decrypt of a ciphertext made before: %v", err)
	}
}

// TestReconcileKeepsTheMaterialOfACreatingKey: a store restored from a
// backup taken while key K was being created says K is Creating, its
// version pending under a replica long gone; K was finished on the live
// system and encrypted since. Reconcile must roll K forward, not destroy
// its material (found by review: every ciphertext under K was lost). A
// Creating key with no material on the token is still rolled back.
func TestReconcileKeepsTheMaterialOfACreatingKey(t *testing.T) {
	f := newFixture(t, "", shared("a"))
	id := f.createKey(t, CreateKeyInput{})
	out, err := f.svc.Encrypt(admin(t), EncryptInput{KeyId: id, Plaintext: []byte("made after the backup")})
	if err != nil {
		t.Fatal(err)
	}
	restored := restoreAsCreating(t, f, id)

	// Beside it, a key whose creation died before the token made anything.
	bare, err := f.svc.newKeyRecord(CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	bare.LatestVersion = 1
	bv, err := f.svc.newVersion(bare.ID, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	bv.Owner, bv.LeaseUntil = "gone", time.Now().Add(-time.Hour)
	if err := f.svc.store.Update(t.Context(), func(tx store.Tx) error {
		if _, err := tx.PutKey(bare); err != nil {
			return err
		}
		return tx.PutVersion(bv)
	}); err != nil {
		t.Fatal(err)
	}

	r, err := f.svc.Reconcile(t.Context())
	if err != nil || r != (ReconcileReport{RolledBack: 1, RolledForward: 1}) {
		t.Errorf("Reconcile = %+v, %v; want one key rolled back, one version rolled forward", r, err)
	}
	k, _ := f.svc.keyRecord(t.Context(), id)
	if k.State != store.KeyEnabled || k.CurrentVersion != 1 {
		t.Errorf("the restored key is %s at version %d; want Enabled at 1", k.State, k.CurrentVersion)
	}
	if has, _ := f.tok.HasKey(t.Context(), restored.ObjectID); !has {
		t.Fatal("the restored key's material was destroyed")
	}
	got, err := f.svc.Decrypt(admin(t), DecryptInput{CiphertextBlob: out.CiphertextBlob})
	if err != nil || string(got.Plaintext) != "made after the backup" {
		t.Errorf("Decrypt of a ciphertext made under the restored key = %q, %v", got.Plaintext, err)
	}
	if b, _ := f.svc.keyRecord(t.Context(), bare.ID); b.State != store.KeyDeleted {
		t.Errorf("the key without material is %s, want a tombstone", b.State)
	}
}

// restoreAsCreating rewrites key id and its version 1 as a backup taken
// during its creation holds them: Creating, the version pending under a
// replica whose claim ran out long ago.
func restoreAsCreating(t *testing.T, f *fixture, id string) store.Version {
	t.Helper()
	var v store.Version
	err := f.svc.store.Update(t.Context(), func(tx store.Tx) error {
		k, err := tx.Key(id)
		if err != nil {
			return err
		}
		k.State, k.CurrentVersion = store.KeyCreating, 0
		if _, err := tx.PutKey(k); err != nil {
			return err
		}
		if v, err = tx.Version(id, 1); err != nil {
			return err
		}
		v.State, v.Owner, v.LeaseUntil = store.VersionPending, "replica-of-the-backup", time.Now().Add(-time.Hour)
		return tx.PutVersion(v)
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReconcileOfAKeyDeletedMeanwhile: a replica settles an abandoned
// pending version of key K, pending deletion; while it does, the lease
// holder's maintenance finishes K's deletion. The settling replica must
// not give the tombstone a version, and must destroy the object it made
// (found by review: the tombstone got current version 2 and a live
// object of a deleted key stayed on the token).
func TestReconcileOfAKeyDeletedMeanwhile(t *testing.T) {
	var hh *hookHSM
	f := newFixture(t, "", shared("a"), func(c *Config) { hh = &hookHSM{HSM: c.HSM}; c.HSM = hh })
	id := f.createKey(t, CreateKeyInput{})
	if _, err := f.svc.ScheduleKeyDeletion(admin(t), ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: 7}); err != nil {
		t.Fatal(err)
	}
	v2 := putPending(t, f, id, 2, "dead-replica", time.Now().Add(-time.Second))
	f.clock.Advance(7 * day)
	hh.hook = func() { // the lease holder deletes K while this replica settles v2
		if err := f.svc.deleteKey(context.Background(), id); err != nil {
			t.Errorf("deleteKey: %v", err)
		}
	}
	r, err := f.svc.Reconcile(t.Context())
	if err != nil || r.RolledForward != 0 {
		t.Errorf("Reconcile = %+v, %v; want nothing rolled forward", r, err)
	}
	k := ksStoreKey(t, f, id)
	if k.State != store.KeyDeleted || k.CurrentVersion > 1 {
		t.Errorf("the key is %s at version %d; want a tombstone that did not move to version 2", k.State, k.CurrentVersion)
	}
	if has, err := f.tok.HasKey(t.Context(), v2.ObjectID); err != nil || has {
		t.Errorf("version 2's object: HasKey = %v, %v; want none on the token", has, err)
	}
}
