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
	RolledBack    int // keys whose creation never made material, now tombstones
	RolledForward int // pending versions now active, of live keys and of keys being created
	Destroyed     int // tombstones whose token objects were destroyed
}

// Reconcile settles what a crash left half done, by comparing the store
// with the token by CKA_ID:
//   - a key still Creating is rolled forward if the token holds its
//     material (it may have encrypted since: see settleCreating), else it
//     becomes a tombstone;
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
			var back bool
			var n int
			if back, n, err = s.settleCreating(ctx, k); back {
				r.RolledBack++
			}
			r.RolledForward += n
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

// settleCreating settles a key whose creation never finished, once this
// replica owns its pending versions. A key with material on the token is
// rolled forward (its versions activated, the key Enabled): a store
// restored from a backup taken while the key was being made says
// Creating of a key that may have encrypted for months since, and
// destroying its material would lose every ciphertext under it; after a
// crash between the token and the store it leaves a key its caller was
// not told of, which costs an object and is listed. A key with no
// material never sealed anything: it is rolled back, whatever part of it
// exists destroyed and the key made a tombstone.
//
// It reports whether it rolled the key back and how many versions it
// rolled forward. A key another replica is still creating is left alone,
// and so is a key whose creator finished it after Reconcile read k (a page
// of keys is read at once, then settled one by one): a version that is no
// longer pending means the key was made. Once every version is taken
// over, the creator can no longer activate one (activate refuses a
// version another replica took).
func (s *Service) settleCreating(ctx context.Context, k store.Key) (rolledBack bool, rolledForward int, err error) {
	vs, err := s.versions(ctx, k.ID)
	if err != nil {
		return false, 0, err
	}
	for i, v := range vs {
		if v.State != store.VersionPending {
			return false, 0, nil
		}
		var ok bool
		if vs[i], ok, err = s.takeOver(ctx, k.ID, v.Number); err != nil || !ok {
			return false, 0, err // in flight on another replica: not ours to settle
		}
	}
	made, err := s.anyMaterial(ctx, vs)
	if err != nil {
		return false, 0, err
	}
	if made {
		for _, v := range vs {
			done, err := s.finishVersion(ctx, k, v)
			if err != nil {
				s.releaseClaim(ctx, k.ID, v.Number, v.Owner)
				return false, rolledForward, err
			}
			if !done {
				break // the key was abandoned meanwhile
			}
			rolledForward++
		}
		return false, rolledForward, nil
	}
	for _, v := range vs {
		// Nothing found under the versions' IDs; a portable version's
		// HMAC key, made second, is destroyed with its ID.
		if err := s.hsm.DestroyKey(ctx, v.ObjectID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			return false, 0, err
		}
	}
	s.abandonKey(ctx, k.ID)
	return true, 0, nil
}

// anyMaterial reports whether the token holds the object of any of vs.
func (s *Service) anyMaterial(ctx context.Context, vs []store.Version) (bool, error) {
	for _, v := range vs {
		has, err := s.hsm.HasKey(ctx, v.ObjectID)
		if err != nil || has {
			return has, err
		}
	}
	return false, nil
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
		done, err := s.finishVersion(ctx, k, v)
		if err != nil {
			s.releaseClaim(ctx, k.ID, v.Number, v.Owner)
			return n, err
		}
		if !done {
			return n, nil // the key was deleted meanwhile
		}
		n++
	}
	return n, nil
}

// finishVersion makes a pending version's token object unless it exists
// (its maker died after making it) and activates the version, reporting
// whether it did. A key whose deletion finished meanwhile (the lease
// holder deleting it while this replica settled it) gets no version: what
// was made is destroyed, and the version is left as the deletion marked
// it (found by review: the tombstone got a current version and its object
// stayed on the token).
func (s *Service) finishVersion(ctx context.Context, k store.Key, v store.Version) (bool, error) {
	// A portable version has two objects: CreatePortableKey makes
	// whichever is missing.
	made := false
	if k.Mechanism != ciphertext.AESCBCHMAC.String() {
		var err error
		if made, err = s.hsm.HasKey(ctx, v.ObjectID); err != nil {
			return false, err
		}
	}
	if !made {
		if err := s.makeMaterial(ctx, k, v); err != nil {
			return false, err
		}
	}
	err := s.store.Update(ctx, func(tx store.Tx) error { return s.activate(tx, k.ID, v.Number, v.Owner) })
	if !errors.Is(err, errKeyDeleted) {
		return err == nil, err
	}
	if err := s.hsm.DestroyKey(ctx, v.ObjectID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
		return false, s.hsmErr(err, k.ID, v.Number)
	}
	return false, nil
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
