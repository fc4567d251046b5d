package service

import (
	"context"
	"errors"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// Deletion waiting periods, as AWS KMS allows them.
const (
	minDeletionDays     = 7
	maxDeletionDays     = 30
	defaultDeletionDays = 30
)

// ScheduleKeyDeletion puts a key in PendingDeletion for 7 to 30 days
// (default 30); at the end its key material is destroyed on the token.
func (s *Service) ScheduleKeyDeletion(ctx context.Context, in ScheduleKeyDeletionInput) (out ScheduleKeyDeletionOutput, err error) {
	o := s.begin(ctx, "kms:ScheduleKeyDeletion")
	defer endWith(o, &out, &err)
	days := in.PendingWindowInDays
	if days == 0 {
		days = defaultDeletionDays
	}
	if days < minDeletionDays || days > maxDeletionDays {
		return out, newErr(CodeValidation, "1 validation error detected: Value '%d' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between %d and %d", days, minDeletionDays, maxDeletionDays)
	}
	var k store.Key
	err = s.updateKey(ctx, o, in.KeyId, func(key *store.Key) error {
		if key.State == store.KeyPendingDeletion {
			return newErr(CodeInvalidState, "%s is pending deletion.", s.keyARN(key.ID))
		}
		key.State = store.KeyPendingDeletion
		key.DeletionDate = s.now().UTC().Add(time.Duration(days) * day)
		key.DeletionWindowDays = days
		k = *key
		return nil
	})
	if err != nil {
		return out, err
	}
	return ScheduleKeyDeletionOutput{KeyId: s.keyARN(k.ID), DeletionDate: epoch(k.DeletionDate),
		KeyState: string(k.State), PendingWindowInDays: days}, nil
}

// CancelKeyDeletion takes a key out of PendingDeletion; it is Disabled
// until enabled again, as in AWS KMS, or PendingImport when it is a key of
// imported material that has none (never imported, or deleted).
func (s *Service) CancelKeyDeletion(ctx context.Context, in KeyIDInput) (out KeyIDOutput, err error) {
	o := s.begin(ctx, "kms:CancelKeyDeletion")
	defer endWith(o, &out, &err)
	err = s.updateKey(ctx, o, in.KeyId, func(k *store.Key) error {
		if k.State != store.KeyPendingDeletion {
			return newErr(CodeInvalidState, "%s is not pending deletion (it is %s).", s.keyARN(k.ID), k.State)
		}
		// Past its date the key is as good as deleted, as in AWS KMS: the
		// executor may not have run yet, but the waiting period is over.
		if !k.DeletionDate.After(s.now()) {
			return newErr(CodeInvalidState, "%s reached its deletion date (%s); its deletion can no longer be cancelled.",
				s.keyARN(k.ID), k.DeletionDate.UTC().Format(time.RFC3339))
		}
		k.State, k.DeletionDate, k.DeletionWindowDays = store.KeyDisabled, time.Time{}, 0
		if noMaterial(*k) {
			// Disabled would let EnableKey make it Enabled with nothing
			// on the token behind it.
			k.State = store.KeyPendingImport
		}
		out.KeyId = s.keyARN(k.ID)
		return nil
	})
	return out, err
}

// deleteDueKeys destroys the key material of every key whose deletion date
// has passed and leaves a tombstone.
func (s *Service) deleteDueKeys(ctx context.Context) error {
	now := s.now()
	var errs []error
	err := s.eachKey(ctx, func(k store.Key) {
		if k.State == store.KeyPendingDeletion && !k.DeletionDate.After(now) {
			errs = append(errs, s.deleteKey(ctx, k.ID))
		}
	})
	return errors.Join(append(errs, err)...)
}

// deleteKey turns a key whose deletion date has passed into a tombstone
// (so a late CancelKeyDeletion finds nothing to cancel), then destroys its
// token objects and marks its versions destroyed. Destroying is idempotent:
// a crash in between is finished by finishDeletion at the next run.
func (s *Service) deleteKey(ctx context.Context, id string) error {
	var wrapping *store.ImportParams
	err := s.store.Update(ctx, func(tx store.Tx) error {
		// Update may run this again, finding the deletion cancelled: the
		// wrapping key of a first run is not this one's to destroy.
		wrapping = nil
		k, err := tx.Key(id)
		if err != nil {
			return err
		}
		if k.State != store.KeyPendingDeletion || k.DeletionDate.After(s.now()) {
			return nil // cancelled meanwhile
		}
		for _, a := range k.Aliases {
			if err := tx.DeleteAlias(a); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		wrapping = k.Import
		k.State, k.DeletedAt, k.Aliases, k.CurrentVersion, k.Import = store.KeyDeleted, s.now().UTC(), nil, 0, nil
		_, err = tx.PutKey(k)
		return err
	})
	if err != nil {
		return err
	}
	if wrapping != nil {
		s.destroyWrappingKey(ctx, id, wrapping.WrappingKey)
	}
	return s.finishDeletion(ctx, id)
}

// finishDeletion destroys the token objects of a tombstone's versions that
// are not destroyed yet.
func (s *Service) finishDeletion(ctx context.Context, id string) error {
	var versions []store.Version
	err := s.store.View(ctx, func(tx store.Tx) error {
		k, err := tx.Key(id)
		if err != nil || k.State != store.KeyDeleted {
			return err
		}
		versions, err = tx.Versions(id)
		return err
	})
	if err != nil {
		return err
	}
	for _, v := range versions {
		if v.State == store.VersionDestroyed {
			// A version the store marked destroyed before the token
			// destroyed it (deleteMaterial of imported material, whose
			// DestroyKey failed) may have left its object: the key's
			// deletion is the last chance to destroy it.
			if err := s.hsm.DestroyKey(ctx, v.ObjectID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
				return s.hsmErr(err, id, v.Number)
			}
			continue
		}
		if err := s.hsm.DestroyKey(ctx, v.ObjectID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			return s.hsmErr(err, id, v.Number)
		}
		v.State = store.VersionDestroyed
		if err := s.store.Update(ctx, func(tx store.Tx) error { return tx.PutVersion(v) }); err != nil {
			return err
		}
	}
	if len(versions) > 0 {
		s.log.Info("deleted key material", "key_id", id, "versions", len(versions))
	}
	return nil
}
