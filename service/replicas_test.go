package service

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// replica makes a second Service on f's store and token, as another
// replica sharing them.
func (f *fixture) replica(t *testing.T, id string) *Service {
	t.Helper()
	cfg := f.svc.cfg
	cfg.ReplicaID, cfg.Audit, cfg.Logger = id, nil, nil
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

func shared(id string) func(*Config) {
	return func(c *Config) { c.SharedStore, c.ReplicaID = true, id }
}

// putPending stores version n of key as pending, claimed by owner until
// until, without making its token object.
func putPending(t *testing.T, f *fixture, keyID string, n uint32, owner string, until time.Time) store.Version {
	t.Helper()
	v, err := f.svc.newVersion(keyID, n, rotationOnDemand)
	if err != nil {
		t.Fatal(err)
	}
	v.Owner, v.LeaseUntil = owner, until
	err = f.svc.store.Update(t.Context(), func(tx store.Tx) error {
		k, err := tx.Key(keyID)
		if err != nil {
			return err
		}
		k.LatestVersion = n
		if _, err := tx.PutKey(k); err != nil {
			return err
		}
		return tx.PutVersion(v)
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func versionOf(t *testing.T, s *Service, keyID string, n uint32) store.Version {
	t.Helper()
	var v store.Version
	err := s.store.View(t.Context(), func(tx store.Tx) (err error) {
		v, err = tx.Version(keyID, n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReconcileLeavesLiveClaims: a pending version another live replica
// claims is not touched; once its claim has run out, Reconcile finishes it.
func TestReconcileLeavesLiveClaims(t *testing.T) {
	f := newFixture(t, "", shared("a"))
	key := f.createKey(t, CreateKeyInput{})
	v := putPending(t, f, key, 2, "b", time.Now().Add(time.Hour))

	r, err := f.svc.Reconcile(t.Context())
	if err != nil || r.RolledForward != 0 {
		t.Fatalf("Reconcile with b's claim live = %+v, %v; want nothing rolled forward", r, err)
	}
	if got := versionOf(t, f.svc, key, 2); got.State != store.VersionPending || got.Owner != "b" {
		t.Fatalf("b's pending version became %s owned by %q", got.State, got.Owner)
	}
	if has, _ := f.tok.HasKey(t.Context(), v.ObjectID); has {
		t.Fatal("Reconcile made the token object of a version b is making")
	}

	putPending(t, f, key, 2, "b", time.Now().Add(-time.Second)) // b died
	r, err = f.svc.Reconcile(t.Context())
	if err != nil || r.RolledForward != 1 {
		t.Fatalf("Reconcile after b's claim ran out = %+v, %v; want one rolled forward", r, err)
	}
	got := versionOf(t, f.svc, key, 2)
	if got.State != store.VersionActive || got.Owner != "" {
		t.Errorf("version 2 is %s owned by %q, want Active and unowned", got.State, got.Owner)
	}
}

// TestReconcileLeavesCreatingKeysOfLiveReplicas: a key another replica is
// creating is not rolled back while its claim lasts.
func TestReconcileLeavesCreatingKeysOfLiveReplicas(t *testing.T) {
	f := newFixture(t, "", shared("a"))
	half, err := f.svc.newKeyRecord(CreateKeyInput{Description: "half"})
	if err != nil {
		t.Fatal(err)
	}
	half.LatestVersion = 1
	if err := f.svc.store.Update(t.Context(), func(tx store.Tx) error { _, err := tx.PutKey(half); return err }); err != nil {
		t.Fatal(err)
	}
	putPending(t, f, half.ID, 1, "b", time.Now().Add(time.Hour))
	if r, err := f.svc.Reconcile(t.Context()); err != nil || r.RolledBack != 0 {
		t.Fatalf("Reconcile = %+v, %v; want nothing rolled back", r, err)
	}
	putPending(t, f, half.ID, 1, "b", time.Now().Add(-time.Second))
	if r, err := f.svc.Reconcile(t.Context()); err != nil || r.RolledBack != 1 {
		t.Fatalf("Reconcile after the claim ran out = %+v, %v; want one rolled back", r, err)
	}
}

// TestActivateRefusesATakenOverVersion: a maker whose claim ran out and was
// taken over does not activate the version as its own.
func TestActivateRefusesATakenOverVersion(t *testing.T) {
	f := newFixture(t, "", shared("a"))
	key := f.createKey(t, CreateKeyInput{})
	putPending(t, f, key, 2, "b", time.Now().Add(time.Hour))
	err := f.svc.store.Update(t.Context(), func(tx store.Tx) error { return f.svc.activate(tx, key, 2, f.svc.ReplicaID()) })
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("activating b's version from a: %v, want store.ErrConflict", err)
	}
}

// TestMaintenanceLease: one replica at a time holds the lease; a clean
// shutdown hands it over at once, a dead holder's lease runs out.
func TestMaintenanceLease(t *testing.T) {
	f := newFixture(t, "", shared("a"))
	a, b := f.svc, f.replica(t, "b")
	if !a.renewLease() {
		t.Fatal("a did not take a free lease")
	}
	if b.renewLease() {
		t.Fatal("b took the lease a holds")
	}
	if !a.renewLease() {
		t.Fatal("a could not renew its own lease")
	}
	a.releaseLease()
	if !b.renewLease() || a.renewLease() {
		t.Fatal("after a released it, b does not hold the lease alone")
	}
	// b dies without releasing: its lease runs out.
	err := f.svc.store.Update(t.Context(), func(tx store.Tx) error {
		return writeLease(tx, lease{Owner: "b", Until: time.Now().Add(-time.Millisecond)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !a.renewLease() || !a.HoldsLease() {
		t.Fatal("a did not take the lease of a dead b")
	}
}

// TestInternalKeySettingOfAnEarlierRelease: a store written before the
// internal key had a claim holds its bare CKA_ID, which is read as ready.
func TestInternalKeySettingOfAnEarlierRelease(t *testing.T) {
	id := hsm.ObjectID{1, 2, 3}
	legacy, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decodeInternalKey(legacy)
	if err != nil || !rec.Ready || rec.ID != id {
		t.Fatalf("decodeInternalKey(%s) = %+v, %v; want ready with the ID", legacy, rec, err)
	}
}

// TestInternalKeyWaitsForItsMaker: while another live replica claims the
// internal key, a replica needing it waits rather than making a second
// object with the same CKA_ID, and uses the key once it is ready.
func TestInternalKeyWaitsForItsMaker(t *testing.T) {
	f := newFixture(t, "", shared("a"))
	oid, err := hsm.NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	put := func(rec internalKeyRecord) {
		t.Helper()
		if err := f.svc.store.Update(t.Context(), func(tx store.Tx) error { return putInternalKey(tx, rec) }); err != nil {
			t.Fatal(err)
		}
	}
	put(internalKeyRecord{ID: oid, Owner: "b", Until: time.Now().Add(time.Hour)})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := f.svc.internalKey(ctx); !errors.Is(err, ErrDependency) {
		t.Fatalf("internalKey while b makes it: %v, want DependencyTimeoutException", err)
	}
	if has, _ := f.tok.HasKey(t.Context(), oid); has {
		t.Fatal("a made the internal key b claims")
	}
	// b makes it and marks it ready.
	if err := f.tok.CreateMasterKey(t.Context(), oid, "hsmkms/internal/v1"); err != nil {
		t.Fatal(err)
	}
	put(internalKeyRecord{ID: oid, Ready: true})
	got, err := f.svc.internalKey(t.Context())
	if err != nil || got.ID != oid {
		t.Fatalf("internalKey once ready = %x, %v; want %x", got.ID, err, oid)
	}
}

// TestSealBudgetAcrossReplicas: two replicas sealing with one key each
// reserve their own blocks, and the stored count is their sum, never less
// than the seals made.
func TestSealBudgetAcrossReplicas(t *testing.T) {
	f, _ := sealFixture(t)
	a := f.svc
	b := f.replica(t, "b")
	key := f.createKey(t, CreateKeyInput{})
	made := 0
	for i := range 5 { // a: 5 seals take 2 blocks; b: 3 seals take 1
		if _, err := sealOnce(t, a, key, i); err != nil {
			t.Fatal(err)
		}
		made++
		if i < 3 {
			if _, err := sealOnce(t, b, key, i); err != nil {
				t.Fatal(err)
			}
			made++
		}
	}
	if got, want := reserved(t, a, key, 1), uint64(3*testSealBlock); got != want || got < uint64(made) {
		t.Errorf("version 1: %d seals reserved for %d made by two replicas, want %d", got, made, want)
	}
}

// blockingDestroy holds every DestroyKey until release is closed, telling
// reached the first time.
type blockingDestroy struct {
	HSM
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *blockingDestroy) DestroyKey(ctx context.Context, id hsm.ObjectID) error {
	h.once.Do(func() { close(h.reached) })
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return h.HSM.DestroyKey(ctx, id)
}

// TestLeaseRenewedDuringALongPass: the lease holder's maintenance pass is
// held on the token (a deletion) for longer than the lease lasts. The
// holder must go on renewing its lease meanwhile, so that another replica
// cannot take it and work beside it (found by review: the pass ran in the
// loop that renews the lease, for up to MaintenanceInterval, far past
// LeaseTTL).
func TestLeaseRenewedDuringALongPass(t *testing.T) {
	const ttl = 600 * time.Millisecond
	h := &blockingDestroy{reached: make(chan struct{}), release: make(chan struct{})}
	f := newFixture(t, "", shared("a"), func(c *Config) {
		c.LeaseTTL, c.MaintenanceInterval = ttl, time.Minute
		h.HSM, c.HSM = c.HSM, h
	})
	id := f.createKey(t, CreateKeyInput{})
	if _, err := f.svc.ScheduleKeyDeletion(admin(t), ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: 7}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(7 * day)
	f.svc.Start()
	defer close(h.release) // before the fixture's Close, which waits for the pass
	<-h.reached
	held := time.Now()

	// The lease must be renewed to last past what the lease taken before
	// the pass began could: held + ttl.
	deadline := time.Now().Add(20 * ttl)
	for {
		var l lease
		if err := f.svc.store.View(t.Context(), func(tx store.Tx) (err error) { l, err = readLease(tx); return err }); err != nil {
			t.Fatal(err)
		}
		if l.Owner == "a" && l.Until.After(held.Add(ttl)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease (%s until %s) was not renewed while the pass was held", l.Owner, l.Until.Format(time.StampMilli))
		}
		time.Sleep(ttl / 10)
	}
	if f.replica(t, "b").renewLease() {
		t.Error("replica b took the lease while a's pass was running")
	}
}
