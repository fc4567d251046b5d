package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/hsmkms/hsmkms/hsm"
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
// Run it at start-up, before serving. With several replicas on one shared
// store, only one replica may run it at a time, and only while no key is
// being created or rotated elsewhere (a pending version is indistinguishable
// from one in flight).
func (s *Service) Reconcile(ctx context.Context) (ReconcileReport, error) {
	ctx = systemContext(ctx)
	var r ReconcileReport
	var errs []error
	err := s.eachKey(ctx, func(k store.Key) {
		var err error
		switch k.State {
		case store.KeyCreating:
			if err = s.rollBack(ctx, k); err == nil {
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
// into a tombstone.
func (s *Service) rollBack(ctx context.Context, k store.Key) error {
	vs, err := s.versions(ctx, k.ID)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if err := s.hsm.DestroyKey(ctx, v.ObjectID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			return err
		}
	}
	s.abandonKey(ctx, k.ID)
	return nil
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
		has, err := s.hsm.HasKey(ctx, v.ObjectID)
		if err != nil {
			return n, err
		}
		if !has {
			if err := s.makeMaterial(ctx, k, v); err != nil {
				return n, err
			}
		}
		if err := s.store.Update(ctx, func(tx store.Tx) error { return s.activate(tx, k.ID, v.Number) }); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
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
