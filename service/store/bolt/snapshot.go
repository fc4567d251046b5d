package bolt

import (
	"context"
	"fmt"
	"io"

	bbolt "go.etcd.io/bbolt"

	"github.com/hsmkms/hsmkms/service/store"
)

var _ store.Snapshotter = (*Store)(nil)

// Snapshot writes a consistent copy of the store file to w from one read
// transaction (bbolt's Tx.WriteTo), while writers go on. ctx is checked
// before the copy starts: bbolt cannot stop one half way.
func (s *Store) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.ready(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, closedErr(err)
}

// Verify opens the store file at path read-only, checks bbolt's page
// structure, decodes every record and counts them: what a backup must pass
// before anyone relies on it.
func Verify(path string) (store.Counts, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return store.Counts{}, fmt.Errorf("store: open %s: %w", path, err)
	}
	defer db.Close()
	var c store.Counts
	err = db.View(func(btx *bbolt.Tx) error {
		// Drain every error: Check's goroutine blocks until it is read.
		var damage error
		for err := range btx.Check() {
			if damage == nil {
				damage = err
			}
		}
		if damage != nil {
			return fmt.Errorf("store: %s is damaged: %w", path, damage)
		}
		return countRecords(&tx{btx: btx, s: &Store{db: db}, gen: noCache}, &c)
	})
	return c, err
}

func countRecords(t *tx, c *store.Counts) error {
	keys, err := t.Keys("", 0)
	if err != nil {
		return err
	}
	c.Keys = len(keys)
	for _, k := range keys {
		vs, err := t.Versions(k.ID)
		if err != nil {
			return err
		}
		c.Versions += len(vs)
	}
	aliases, err := t.Aliases("", 0)
	if err != nil {
		return err
	}
	principals, err := t.Principals("", 0)
	if err != nil {
		return err
	}
	settings, err := t.Settings()
	if err != nil {
		return err
	}
	stores, err := t.XKSStores("", 0)
	if err != nil {
		return err
	}
	grants, err := t.Grants("", 0)
	if err != nil {
		return err
	}
	c.Aliases, c.Principals, c.Settings, c.XKSStores, c.Grants = len(aliases), len(principals), len(settings), len(stores), len(grants)
	return nil
}
