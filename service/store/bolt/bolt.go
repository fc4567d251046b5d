// Package bolt owns the embedded store: a store.Store kept in one bbolt
// file, with a bucket per record kind and records encoded as JSON.
package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hsmkms/hsmkms/service/store"
)

// lockTimeout bounds the wait for the file lock that another process holds.
const lockTimeout = 2 * time.Second

// Bucket names, one per record kind.
var (
	bucketKeys       = []byte("keys")
	bucketVersions   = []byte("versions")
	bucketAliases    = []byte("aliases")
	bucketPrincipals = []byte("principals")
	bucketSettings   = []byte("settings")
	// bucketXKSStores holds the external key stores by prefix. Open
	// creates it in files made before it existed.
	bucketXKSStores = []byte("xks_stores")
	// bucketGrants holds grants by Ref. Open makes it in files that
	// predate it.
	bucketGrants = []byte("grants")
	allBuckets   = [][]byte{bucketKeys, bucketVersions, bucketAliases, bucketPrincipals, bucketSettings, bucketXKSStores, bucketGrants}
)

// Store is a store.Store backed by a bbolt file. It is safe for concurrent
// use; bbolt runs one writer at a time beside any number of readers.
type Store struct {
	db      *bbolt.DB
	closed  atomic.Bool
	records recordCache
}

var _ store.Store = (*Store)(nil)

// Open opens the store file at path, creating it (mode 0600) and its parent
// directory (mode 0700) if needed. It fails after a short wait if another
// process holds the file.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, NoStatistics: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: store file is locked by another process (waited %s): %w", path, lockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := db.Update(createBuckets); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

func createBuckets(tx *bbolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return nil
}

// View runs fn in a read-only transaction. It opens a bbolt transaction
// only if the record cache cannot answer every read (tx.begin), which
// saves a request ~0.5 µs and a lock shared by all readers. fn runs a
// second time, on a bbolt snapshot taken at once, in the rare case that a
// write commits between a cached read and an uncached one.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	// The generation is read before any snapshot is taken (see recordCache).
	if gen := s.records.readGen(); gen != noCache {
		t := &tx{s: s, gen: gen}
		err := s.viewLazily(t, fn)
		if !t.moved {
			return closedErr(err)
		}
	}
	t := &tx{s: s, gen: noCache}
	return closedErr(s.db.View(func(btx *bbolt.Tx) error {
		return run(btx, t, fn)
	}))
}

// viewLazily runs fn with t, which begins a bbolt snapshot when it needs
// one.
func (s *Store) viewLazily(t *tx, fn func(store.Tx) error) error {
	defer func() {
		if t.btx != nil {
			_ = t.btx.Rollback()
		}
	}()
	return run(nil, t, fn)
}

// Update runs fn in a read-write transaction, committed when fn returns nil
// and ctx is still live, rolled back otherwise.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	t := &tx{s: s, gen: noCache}
	// The write counts as in flight from when bbolt gives it the writer
	// lock, not while it queues for it: readers keep the cache meanwhile.
	started := false
	defer func() {
		if started {
			s.records.endWrite(t.wrote)
		}
	}()
	return closedErr(s.db.Update(func(btx *bbolt.Tx) error {
		s.records.startWrite()
		started = true
		if err := run(btx, t, fn); err != nil {
			return err
		}
		return ctx.Err()
	}))
}

// Close releases the file. Later calls return store.ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return store.ErrClosed
	}
	// A View answered from the cache holds no bbolt transaction for Close
	// to wait for; from here on it reads the file, and finds it closed.
	s.records.close()
	return s.db.Close()
}

// ready reports why a transaction must not start.
func (s *Store) ready(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// closedErr maps bbolt's "not open" (a Close that raced the check in ready)
// to store.ErrClosed.
func closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}
