package service

import (
	"context"
	"io"
	"time"

	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// BackupStoreInput is BackupStore's request: it has no fields.
type BackupStoreInput struct{}

// Snapshot is a store snapshot to be written once BackupStore allowed it:
// the API layer streams it to the client.
type Snapshot struct {
	write func(w io.Writer) (int64, error)
}

// WriteTo writes the snapshot.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) { return s.write(w) }

// BackupStore allows and audits a snapshot of the store, which the caller
// then writes with WriteTo. Only the embedded store takes snapshots; a
// PostgreSQL store is backed up with PostgreSQL's own tools.
func (s *Service) BackupStore(ctx context.Context, _ BackupStoreInput) (out *Snapshot, err error) {
	o := s.begin(ctx, policy.ActionBackupStore)
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return nil, err
	}
	sn, ok := s.store.(store.Snapshotter)
	if !ok {
		return nil, newErr(CodeUnsupported, "this store takes no snapshots: back up a PostgreSQL store with pg_dump or pg_basebackup")
	}
	// Written after the request's context may have ended: the API layer
	// bounds the copy with its own deadline.
	return &Snapshot{write: func(w io.Writer) (int64, error) {
		return sn.Snapshot(context.WithoutCancel(ctx), w)
	}}, nil
}

// RestoreAdjustments is what PrepareRestoredStore changed in a restored
// store.
type RestoreAdjustments struct {
	// SealCountsRaised counts the key versions whose seal counts were
	// raised to the rotation threshold.
	SealCountsRaised int
	// DeletionsPostponed counts the PendingDeletion keys whose deletion
	// date was moved to DeletionNotBefore.
	DeletionsPostponed int
	// DeletionNotBefore is the earliest deletion date a PendingDeletion key
	// has after the restore: its minimum waiting period from now.
	DeletionNotBefore time.Time
}

// PrepareRestoredStore makes a store just restored from a backup safe to
// serve, in one transaction: nothing of it is changed if it fails.
//
// Seal counts are raised to DefaultRotateAfterSeals (raiseSealCounts),
// since the backup's are lower than the seals made since.
//
// Every PendingDeletion key whose deletion date is earlier than now plus
// the minimum waiting period (7 days) gets that date. The backup may hold
// a deletion that was cancelled after it was taken, of a key that went on
// encrypting: left as it is, a date that passed meanwhile has the server's
// first maintenance run destroy the key's material, and CancelKeyDeletion
// refuses a passed date. The waiting period lets an operator cancel it. A
// later date is kept; the expiry of imported material (ValidTo) is not a
// deletion and is left alone.
//
// The store must not be in use.
func PrepareRestoredStore(ctx context.Context, st store.Store, now time.Time) (RestoreAdjustments, error) {
	notBefore := now.UTC().Add(minDeletionDays * day)
	var a RestoreAdjustments
	err := st.Update(ctx, func(tx store.Tx) error {
		// Update may run fn again: start afresh.
		a = RestoreAdjustments{DeletionNotBefore: notBefore}
		var err error
		if a.SealCountsRaised, err = raiseSealCounts(tx, DefaultRotateAfterSeals); err != nil {
			return err
		}
		keys, err := tx.Keys("", 0)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.State != store.KeyPendingDeletion || !k.DeletionDate.Before(notBefore) {
				continue
			}
			k.DeletionDate = notBefore
			if _, err := tx.PutKey(k); err != nil {
				return err
			}
			a.DeletionsPostponed++
		}
		return nil
	})
	if err != nil {
		return RestoreAdjustments{}, err
	}
	return a, nil
}
