package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

func testKeys(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CreateGet", func(t *testing.T) {
		s := open(t)
		k := newKey("k1", 0)
		if got := createKey(t, s, k); got.Revision != 1 {
			t.Errorf("revision on create = %d, want 1", got.Revision)
		}
		k.Revision = 1
		same(t, "Key", mustKey(t, s, "k1"), k, normKey)
	})
	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		createKey(t, s, newKey("k1", 0))
		err := s.View(context.Background(), func(tx store.Tx) error {
			_, err := tx.Key("k2")
			return err
		})
		wantErr(t, "Key(missing)", err, store.ErrNotFound)
	})
	t.Run("CreateExists", func(t *testing.T) {
		for _, state := range []store.KeyState{store.KeyCreating, store.KeyEnabled, store.KeyDeleted} {
			t.Run(string(state), func(t *testing.T) {
				s := open(t)
				k := newKey("k1", 0)
				k.State = state
				createKey(t, s, k)
				err := s.Update(context.Background(), func(tx store.Tx) error {
					_, err := tx.PutKey(newKey("k1", 1))
					return err
				})
				wantErr(t, "PutKey(create, taken)", err, store.ErrExists)
				k.Revision = 1
				same(t, "stored key", mustKey(t, s, "k1"), k, normKey)
			})
		}
	})
	t.Run("Replace", func(t *testing.T) {
		s := open(t)
		k := createKey(t, s, newKey("k1", 0))
		for i := 1; i <= 3; i++ {
			next := newKey("k1", i)
			next.Revision = k.Revision
			update(t, s, func(tx store.Tx) (err error) {
				next.Revision, err = tx.PutKey(next)
				return err
			})
			if next.Revision != k.Revision+1 {
				t.Fatalf("replace %d: revision %d, want %d", i, next.Revision, k.Revision+1)
			}
			same(t, "replaced key", mustKey(t, s, "k1"), next, normKey)
			k = next
		}
	})
	t.Run("ReplaceMissing", func(t *testing.T) {
		s := open(t)
		k := newKey("k1", 0)
		k.Revision = 1
		err := s.Update(context.Background(), func(tx store.Tx) error {
			_, err := tx.PutKey(k)
			return err
		})
		wantErr(t, "PutKey(replace, missing)", err, store.ErrNotFound)
		err = s.View(context.Background(), func(tx store.Tx) error {
			_, err := tx.Key("k1")
			return err
		})
		wantErr(t, "Key after failed replace", err, store.ErrNotFound)
	})
	t.Run("ReadYourWrites", func(t *testing.T) {
		s := open(t)
		update(t, s, func(tx store.Tx) error {
			k := newKey("k1", 0)
			rev, err := tx.PutKey(k)
			if err != nil {
				return err
			}
			k.Revision = rev
			got, err := tx.Key("k1")
			if err != nil {
				return err
			}
			same(t, "Key in the same Update", got, k, normKey)
			if all, err := tx.Keys("", 0); err != nil || len(all) != 1 {
				t.Errorf("Keys in the same Update = %d keys, %v; want 1", len(all), err)
			}
			return nil
		})
	})
}

func testKeyCAS(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Revisions", func(t *testing.T) {
		s := open(t)
		k := createKey(t, s, newKey("k1", 0))
		for range 2 {
			k = putKeyAt(t, s, k, k.Revision, nil)
		}
		// k is at revision 3 now.
		for _, tc := range []struct {
			name string
			rev  uint64
			want error
		}{
			{"create", 0, store.ErrExists},
			{"stale", 2, store.ErrConflict},
			{"first", 1, store.ErrConflict},
			{"future", 4, store.ErrConflict},
			{"current", 3, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := mustKey(t, s, "k1")
				putKeyAt(t, s, newKey("k1", 7), tc.rev, tc.want)
				want := before
				if tc.want == nil {
					want = newKey("k1", 7)
					want.Revision = before.Revision + 1
				}
				same(t, "key after PutKey", mustKey(t, s, "k1"), want, normKey)
			})
		}
	})
	t.Run("LostUpdate", func(t *testing.T) {
		s := open(t)
		createKey(t, s, newKey("k1", 0))
		a, b := mustKey(t, s, "k1"), mustKey(t, s, "k1")
		a.State, b.State = store.KeyDisabled, store.KeyPendingDeletion
		putKeyAt(t, s, a, a.Revision, nil)
		putKeyAt(t, s, b, b.Revision, store.ErrConflict)
		if got := mustKey(t, s, "k1"); got.State != store.KeyDisabled || got.Revision != 2 {
			t.Fatalf("after conflict: state %s revision %d, want Disabled 2", got.State, got.Revision)
		}
		b = mustKey(t, s, "k1")
		b.State = store.KeyPendingDeletion
		putKeyAt(t, s, b, b.Revision, nil)
		if got := mustKey(t, s, "k1"); got.State != store.KeyPendingDeletion || got.Revision != 3 {
			t.Errorf("after retry: state %s revision %d, want PendingDeletion 3", got.State, got.Revision)
		}
	})
	t.Run("ConcurrentInUpdate", func(t *testing.T) {
		concurrentIncrements(t, open(t), func(s store.Store) error {
			return s.Update(context.Background(), func(tx store.Tx) error {
				k, err := tx.Key("k1")
				if err != nil {
					return err
				}
				k.LatestVersion++
				_, err = tx.PutKey(k)
				return err
			})
		})
	})
	t.Run("ConcurrentReadThenUpdate", func(t *testing.T) {
		concurrentIncrements(t, open(t), func(s store.Store) error {
			var k store.Key
			err := s.View(context.Background(), func(tx store.Tx) (err error) {
				k, err = tx.Key("k1")
				return err
			})
			if err != nil {
				return err
			}
			k.LatestVersion++
			return s.Update(context.Background(), func(tx store.Tx) error {
				_, err := tx.PutKey(k)
				return err
			})
		})
	})
}

// putKeyAt offers k at revision rev in its own Update and checks the error.
// It returns k as stored when the put succeeds.
func putKeyAt(t *testing.T, s store.Store, k store.Key, rev uint64, want error) store.Key {
	t.Helper()
	k.Revision = rev
	var got uint64
	err := s.Update(context.Background(), func(tx store.Tx) (err error) {
		got, err = tx.PutKey(k)
		return err
	})
	wantErr(t, "PutKey", err, want)
	if err == nil && got != rev+1 {
		t.Errorf("PutKey at revision %d returned %d, want %d", rev, got, rev+1)
	}
	k.Revision = got
	return k
}

// concurrentIncrements runs increment from n goroutines at once, each
// retrying on ErrConflict until it succeeds once, and checks that no
// increment was lost and each took exactly one revision.
func concurrentIncrements(t *testing.T, s store.Store, increment func(store.Store) error) {
	const n, maxTries = 32, 10000
	createKey(t, s, store.Key{ID: "k1", State: store.KeyEnabled})
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range n {
		wg.Go(func() {
			<-start
			for range maxTries {
				err := increment(s)
				if !errors.Is(err, store.ErrConflict) {
					wantErr(t, "increment", err, nil)
					return
				}
			}
			t.Errorf("goroutine %d: still conflicting after %d tries", g, maxTries)
		})
	}
	close(start)
	wg.Wait()
	k := mustKey(t, s, "k1")
	if k.LatestVersion != n || k.Revision != n+1 {
		t.Errorf("after %d increments: LatestVersion %d revision %d, want %d and %d", n, k.LatestVersion, k.Revision, n, n+1)
	}
}
