package service

import (
	"context"
	"io"

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
