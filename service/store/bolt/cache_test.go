package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/hsmkms/hsmkms/service/store"
)

// cacheKeyID is the key the record cache tests read and write.
const cacheKeyID = "00000001-0000-4000-8000-000000000001"

// read returns the description of cacheKeyID and version 1's state, as one
// read transaction sees them.
func read(t *testing.T, tx store.Tx) (string, store.VersionState) {
	t.Helper()
	k, err := tx.Key(cacheKeyID)
	if err != nil {
		t.Fatalf("Key: %v", err)
	}
	v, err := tx.Version(cacheKeyID, 1)
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	return k.Description, v.State
}

// seedCacheKey writes cacheKeyID, described as "old", and its version 1.
func seedCacheKey(t *testing.T, s *Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		if _, err := tx.PutKey(store.Key{ID: cacheKeyID, Description: "old", State: store.KeyEnabled, CurrentVersion: 1}); err != nil {
			return err
		}
		return tx.PutVersion(store.Version{KeyID: cacheKeyID, Number: 1, State: store.VersionActive})
	})
}

// change rewrites the key's description and the version's state.
func change(t *testing.T, s *Store, desc string, state store.VersionState) {
	mustUpdate(t, s, func(tx store.Tx) error {
		k, err := tx.Key(cacheKeyID)
		if err != nil {
			return err
		}
		k.Description = desc
		if _, err := tx.PutKey(k); err != nil {
			return err
		}
		return tx.PutVersion(store.Version{KeyID: cacheKeyID, Number: 1, State: state})
	})
}

func view(t *testing.T, s *Store, fn func(store.Tx)) {
	t.Helper()
	if err := s.View(context.Background(), func(tx store.Tx) error { fn(tx); return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestRecordCacheFollowsWrites proves that a read after a committed write
// sees the write, whether the record was cached or not, and that a
// deleted record is gone, not served from the cache.
func TestRecordCacheFollowsWrites(t *testing.T) {
	s := openTemp(t)
	seedCacheKey(t, s)
	for range 2 { // the second read is a cache hit
		view(t, s, func(tx store.Tx) {
			if d, st := read(t, tx); d != "old" || st != store.VersionActive {
				t.Fatalf("read %q %q, want old Active", d, st)
			}
		})
	}
	change(t, s, "new", store.VersionDestroyed)
	view(t, s, func(tx store.Tx) {
		if d, st := read(t, tx); d != "new" || st != store.VersionDestroyed {
			t.Fatalf("after a write, read %q %q, want new Destroyed", d, st)
		}
	})
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteVersion(cacheKeyID, 1) })
	view(t, s, func(tx store.Tx) {
		if _, err := tx.Version(cacheKeyID, 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted version: err %v, want ErrNotFound", err)
		}
	})
}

// TestRecordCacheWriteSeesOwnWrites proves that a write transaction reads
// what it wrote, not a cached record.
func TestRecordCacheWriteSeesOwnWrites(t *testing.T) {
	s := openTemp(t)
	seedCacheKey(t, s)
	view(t, s, func(tx store.Tx) { read(t, tx) }) // cache the old records
	mustUpdate(t, s, func(tx store.Tx) error {
		k, err := tx.Key(cacheKeyID)
		if err != nil {
			return err
		}
		k.Description = "mine"
		if _, err := tx.PutKey(k); err != nil {
			return err
		}
		if d, _ := read(t, tx); d != "mine" {
			t.Errorf("a write transaction read %q after writing mine", d)
		}
		return nil
	})
}

// bigMmapStore opens a store whose file never needs remapping in a test: a
// commit that grew the mapping would wait for an open reader to finish,
// which never happens when the reader itself waits for the commit.
func bigMmapStore(t *testing.T) *Store {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "kms.db"), 0o600, &bbolt.Options{InitialMmapSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(createBuckets); err != nil {
		t.Fatal(err)
	}
	s := &Store{db: db}
	t.Cleanup(func() { s.Close() })
	return s
}

// readErr is read returning the error instead of failing the test.
func readErr(tx store.Tx) (string, store.VersionState, error) {
	k, err := tx.Key(cacheKeyID)
	if err != nil {
		return "", "", err
	}
	v, err := tx.Version(cacheKeyID, 1)
	return k.Description, v.State, err
}

// TestRecordCacheKeepsSnapshot proves that a read transaction that has
// taken its bbolt snapshot keeps seeing that snapshot, cached records
// included, while a write commits and a newer reader refills the cache.
func TestRecordCacheKeepsSnapshot(t *testing.T) {
	s := bigMmapStore(t)
	seedCacheKey(t, s)
	view(t, s, func(tx store.Tx) { read(t, tx) }) // cache "old"

	runs := 0
	view(t, s, func(old store.Tx) {
		runs++
		// A setting is never cached: this read takes the snapshot.
		if _, err := old.Setting("absent"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Setting: %v", err)
		}
		if d, st := read(t, old); d != "old" || st != store.VersionActive {
			t.Fatalf("first read %q %q, want old Active", d, st)
		}
		change(t, s, "new", store.VersionDestroyed)
		view(t, s, func(tx store.Tx) {
			if d, st := read(t, tx); d != "new" || st != store.VersionDestroyed {
				t.Fatalf("a reader after the write read %q %q, want new Destroyed", d, st)
			}
		})
		if d, st := read(t, old); d != "old" || st != store.VersionActive {
			t.Errorf("the open reader read %q %q after a later write, want its snapshot: old Active", d, st)
		}
	})
	if runs != 1 {
		t.Errorf("fn ran %d times, want once: its snapshot was taken before the write", runs)
	}
	view(t, s, func(tx store.Tx) {
		if d, st := read(t, tx); d != "new" || st != store.VersionDestroyed {
			t.Errorf("a reader after the old one closed read %q %q, want new Destroyed", d, st)
		}
	})
}

// TestRecordCacheRunsAgainAfterWrite proves that a read transaction whose
// reads the cache answered, and which needs bbolt only after a write
// committed, never returns a mix of the two states: it is refused and View
// runs fn again on one snapshot.
func TestRecordCacheRunsAgainAfterWrite(t *testing.T) {
	s := bigMmapStore(t)
	seedCacheKey(t, s)
	view(t, s, func(tx store.Tx) { read(t, tx) }) // cache "old"

	var runs int
	var desc string
	var state store.VersionState
	err := s.View(context.Background(), func(tx store.Tx) error {
		runs++
		k, err := tx.Key(cacheKeyID) // answered by the cache on the first run
		if err != nil {
			return err
		}
		if runs == 1 {
			change(t, s, "new", store.VersionDestroyed) // drops key and version from the cache
		}
		v, err := tx.Version(cacheKeyID, 1) // needs bbolt after the write
		if runs == 1 && !errors.Is(err, errSnapshotMoved) {
			t.Errorf("first run: Version after a write: %v (%s), want errSnapshotMoved", err, v.State)
		}
		if err != nil {
			return err
		}
		desc, state = k.Description, v.State
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if runs != 2 || desc != "new" || state != store.VersionDestroyed {
		t.Errorf("View ran fn %d times and read %q %q, want twice and new Destroyed", runs, desc, state)
	}
}

// TestRecordCacheUncachedAfterWrite proves that a read transaction that
// had no answer from the cache yet simply reads the newer snapshot after a
// write: fn runs once.
func TestRecordCacheUncachedAfterWrite(t *testing.T) {
	s := bigMmapStore(t)
	seedCacheKey(t, s)
	runs := 0
	view(t, s, func(tx store.Tx) {
		runs++
		change(t, s, "new", store.VersionDestroyed)
		if d, st, err := readErr(tx); err != nil || d != "new" || st != store.VersionDestroyed {
			t.Errorf("read %q %q %v, want new Destroyed", d, st, err)
		}
	})
	if runs != 1 {
		t.Errorf("fn ran %d times, want once", runs)
	}
}

// TestRecordCacheReaderDuringWrite proves that a reader that starts while
// a write is in flight, and so may or may not see it, never caches what
// it read for later readers.
func TestRecordCacheReaderDuringWrite(t *testing.T) {
	s := openTemp(t)
	seedCacheKey(t, s)
	mustUpdate(t, s, func(tx store.Tx) error {
		// A reader inside the write sees the committed "old"...
		view(t, s, func(r store.Tx) { read(t, r) })
		k, err := tx.Key(cacheKeyID)
		if err != nil {
			return err
		}
		k.Description = "new"
		_, err = tx.PutKey(k)
		return err
	})
	// ...and must not have left it behind for this one.
	view(t, s, func(tx store.Tx) {
		if d, _ := read(t, tx); d != "new" {
			t.Errorf("after the write, read %q, want new", d)
		}
	})
}

// TestRecordCacheCloseDuringView proves that a View answered from the cache,
// which holds no bbolt transaction for Close to wait for, reads nothing from
// memory once the store is closed: its reads fail with ErrClosed.
func TestRecordCacheCloseDuringView(t *testing.T) {
	s := openTemp(t)
	seedCacheKey(t, s)
	view(t, s, func(tx store.Tx) { read(t, tx) }) // cache the key and version
	err := s.View(context.Background(), func(tx store.Tx) error {
		if _, err := tx.Key(cacheKeyID); err != nil {
			t.Fatalf("Key before Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := tx.Key(cacheKeyID); !errors.Is(err, store.ErrClosed) {
			t.Errorf("cached Key after Close: %v, want ErrClosed", err)
		}
		_, err := tx.Version(cacheKeyID, 1)
		return err
	})
	if !errors.Is(err, store.ErrClosed) {
		t.Errorf("View across Close: %v, want ErrClosed", err)
	}
}

// TestRecordCacheNoOpenTransactions proves that a lazily begun snapshot is
// released whatever fn does: returns an error, panics, or is run again.
func TestRecordCacheNoOpenTransactions(t *testing.T) {
	s := bigMmapStore(t)
	seedCacheKey(t, s)
	errFn := errors.New("fn failed")
	cases := []struct {
		name string
		fn   func(store.Tx) error
	}{
		{"error", func(tx store.Tx) error { _, _ = tx.Setting("absent"); return errFn }},
		{"panic", func(tx store.Tx) error { _, _ = tx.Setting("absent"); panic(errFn) }},
		{"run again", func() func(store.Tx) error {
			runs := 0
			return func(tx store.Tx) error {
				runs++
				if _, err := tx.Key(cacheKeyID); err != nil {
					return err
				}
				if runs == 1 {
					change(t, s, fmt.Sprint("d", runs), store.VersionActive)
				}
				_, err := tx.Version(cacheKeyID, 1)
				return err
			}
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			view(t, s, func(tx store.Tx) { read(t, tx) }) // cache the key and version
			func() {
				defer func() { _ = recover() }()
				_ = s.View(context.Background(), tc.fn)
			}()
			if n := s.db.Stats().OpenTxN; n != 0 {
				t.Errorf("%d bbolt read transactions left open", n)
			}
		})
	}
}

// TestRecordCacheConcurrentConsistency runs readers beside writers that
// change a key and its version together, and proves that no reader ever
// sees the key of one write with the version of another, whether the cache,
// a lazy snapshot or a second run answered it.
func TestRecordCacheConcurrentConsistency(t *testing.T) {
	s := bigMmapStore(t)
	seedCacheKey(t, s)
	const writes, readers, reads = 200, 4, 2000
	write := func(i int) {
		mustUpdate(t, s, func(tx store.Tx) error {
			k, err := tx.Key(cacheKeyID)
			if err != nil {
				return err
			}
			k.Description = fmt.Sprint("w", i)
			if _, err := tx.PutKey(k); err != nil {
				return err
			}
			return tx.PutVersion(store.Version{KeyID: cacheKeyID, Number: 1, State: store.VersionActive, RotationType: k.Description})
		})
	}
	write(0)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= writes; i++ {
			write(i)
		}
	})
	for range readers {
		wg.Go(func() {
			for range reads {
				err := s.View(context.Background(), func(tx store.Tx) error {
					k, err := tx.Key(cacheKeyID)
					if err != nil {
						return err
					}
					v, err := tx.Version(cacheKeyID, 1)
					if err != nil {
						return err
					}
					if k.Description != v.RotationType {
						t.Errorf("one read saw key %s and version %s", k.Description, v.RotationType)
					}
					return nil
				})
				if err != nil {
					t.Errorf("View: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := s.db.Stats().OpenTxN; n != 0 {
		t.Errorf("%d bbolt read transactions left open", n)
	}
}
