package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// ReconcileReport counts what Reconcile settled.
type ReconcileReport struct {
	RolledBack    int // keys whose creation never finished, now tombstones
	RolledForward int // pending versions now active
	Destroyed     int // tombstones whose token objects were destroyed
}

// Reconcile settles what a crash left half done, by comparing the store
// with the token by CKA_ID:
//   - a key still Creating never reached its caller: its token objects are
//     destroyed and it becomes a tombstone;
//   - a pending version of a live key is rolled forward (its token object is
//     made if it is missing), so version numbers have no gaps;
//   - a tombstone whose token objects were not all destroyed is finished.
//
// It settles only pending versions that are abandoned (see abandoned): a
// version another live replica is making is its own until its claim runs
// out, and of several replicas settling at once only the one that takes the
// version over acts. Run it at start-up, before serving; the maintenance
// loop runs it again on the lease holder.
func (s *Service) Reconcile(ctx context.Context) (ReconcileReport, error) {
	ctx = systemContext(ctx)
	var r ReconcileReport
	var errs []error
	err := s.eachKey(ctx, func(k store.Key) {
		var err error
		switch k.State {
		case store.KeyCreating:
			var done bool
			if done, err = s.rollBack(ctx, k); done {
				r.RolledBack++
			}
		case store.KeyDeleted:
			var before int
			before, err = s.undestroyed(ctx, k.ID)
			if err == nil && before > 0 {
				if err = s.finishDeletion(ctx, k.ID); err == nil {
					r.Destroyed++
				}
			}
		default:
			var n int
			n, err = s.rollForward(ctx, k)
			r.RolledForward += n
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", k.ID, err))
		}
	})
	if err := errors.Join(append(errs, err)...); err != nil {
		return r, err
	}
	if r != (ReconcileReport{}) {
		s.log.Info("reconciled store and token", "rolled_back", r.RolledBack, "rolled_forward", r.RolledForward, "destroyed", r.Destroyed)
	}
	return r, nil
}

func (s *Service) versions(ctx context.Context, keyID string) (vs []store.Version, err error) {
	err = s.store.View(ctx, func(tx store.Tx) error {
		vs, err = tx.Versions(keyID)
		return err
	})
	return vs, err
}

// rollBack destroys whatever a half-made key has on the token and turns it
// into a tombstone, once this replica owns its pending versions. It
// reports whether it did: a key another replica is still creating is left
// alone, and so is a key whose creator finished it after Reconcile read k
// (a page of keys is read at once, then settled one by one): a version
// that is no longer pending means the key was made and may already have
// encrypted. Once every version is taken over, the creator can no longer
// activate one (activate refuses a version another replica took), so what
// rollBack destroys is never a key a client was told exists.
func (s *Service) rollBack(ctx context.Context, k store.Key) (bool, error) {
	vs, err := s.versions(ctx, k.ID)
	if err != nil {
		return false, err
	}
	for i, v := range vs {
		if v.State != store.VersionPending {
			return false, nil
		}
		var ok bool
		if vs[i], ok, err = s.takeOver(ctx, k.ID, v.Number); err != nil || !ok {
			return false, err // in flight on another replica: not ours to settle
		}
	}
	for _, v := range vs {
		if err := s.hsm.DestroyKey(ctx, v.ObjectID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			return false, err
		}
	}
	s.abandonKey(ctx, k.ID)
	return true, nil
}

// rollForward finishes the pending versions of a live key.
func (s *Service) rollForward(ctx context.Context, k store.Key) (int, error) {
	vs, err := s.versions(ctx, k.ID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range vs {
		if v.State != store.VersionPending {
			continue
		}
		v, ok, err := s.takeOver(ctx, k.ID, v.Number)
		if err != nil {
			return n, err
		}
		if !ok {
			continue // in flight on another replica
		}
		if err := s.finishVersion(ctx, k, v); err != nil {
			s.releaseClaim(ctx, k.ID, v.Number)
			return n, err
		}
		n++
	}
	return n, nil
}

// finishVersion makes a pending version's token object unless it exists
// (its maker died after making it) and activates the version.
func (s *Service) finishVersion(ctx context.Context, k store.Key, v store.Version) error {
	if k.Mechanism == ciphertext.AESCBCHMAC.String() {
		// Two objects: CreatePortableKey makes whichever is missing.
		if err := s.makeMaterial(ctx, k, v); err != nil {
			return err
		}
		return s.store.Update(ctx, func(tx store.Tx) error { return s.activate(tx, k.ID, v.Number) })
	}
	has, err := s.hsm.HasKey(ctx, v.ObjectID)
	if err != nil {
		return err
	}
	if !has {
		if err := s.makeMaterial(ctx, k, v); err != nil {
			return err
		}
	}
	return s.store.Update(ctx, func(tx store.Tx) error { return s.activate(tx, k.ID, v.Number) })
}

func (s *Service) undestroyed(ctx context.Context, keyID string) (int, error) {
	vs, err := s.versions(ctx, keyID)
	n := 0
	for _, v := range vs {
		if v.State != store.VersionDestroyed {
			n++
		}
	}
	return n, err
}
