package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/hsmkms/hsmkms/service/store"
)

// TestOpenFileWithoutXKSBucket opens a file as the release before external
// key stores wrote it: Verify reads it as it is (read-only, so without the
// bucket), Open adds the bucket and keeps every record, and the external
// key stores written then survive a reopen.
func TestOpenFileWithoutXKSBucket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	when := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	principal := store.Principal{AccessKeyID: "AKIA1", Name: "p", SealedSecret: []byte{9}, CreatedAt: when}
	writeOldFile(t, path, principal)

	c, err := Verify(path)
	if err != nil {
		t.Fatalf("Verify of the old file: %v", err)
	}
	if want := (store.Counts{Principals: 1}); c != want {
		t.Errorf("Verify of the old file = %+v, want %+v", c, want)
	}

	s := mustOpen(t, path)
	xks := store.XKSStore{Prefix: "a/b", CreatedAt: when,
		Credentials: []store.XKSCredential{{AccessKeyID: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", SealedSecret: []byte{1, 2}, CreatedAt: when}},
		Keys:        []store.XKSKey{{ExternalID: "k1", Usage: []string{"ENCRYPT"}}}}
	mustView(t, s, func(tx store.Tx) error {
		got, err := tx.Principal("AKIA1")
		if err == nil && !reflect.DeepEqual(got, principal) {
			t.Errorf("principal after the upgrade: %+v, want %+v", got, principal)
		}
		stores, err2 := tx.XKSStores("", 0)
		if err2 == nil && (stores == nil || len(stores) != 0) {
			t.Errorf("external key stores of an old file: %#v, want an empty list", stores)
		}
		_, err3 := tx.XKSStore("a/b")
		if !errors.Is(err3, store.ErrNotFound) {
			t.Errorf("XKSStore of an old file: %v, want %v", err3, store.ErrNotFound)
		}
		return errors.Join(err, err2)
	})
	mustUpdate(t, s, func(tx store.Tx) (err error) {
		xks.Revision, err = tx.PutXKSStore(xks)
		return err
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, path)
	defer s.Close()
	mustView(t, s, func(tx store.Tx) error {
		got, err := tx.XKSStore("a/b")
		if err == nil && !reflect.DeepEqual(got, xks) {
			t.Errorf("external key store after reopen: %+v, want %+v", got, xks)
		}
		return err
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := Verify(path); err != nil || c != (store.Counts{Principals: 1, XKSStores: 1}) {
		t.Errorf("Verify after the upgrade = %+v, %v", c, err)
	}
}

// writeOldFile writes a store file with the buckets of the release before
// external key stores, holding p.
func writeOldFile(t *testing.T, path string, p store.Principal) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(btx *bbolt.Tx) error {
		for _, name := range []string{"keys", "versions", "aliases", "principals", "settings"} {
			if _, err := btx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		rec, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return btx.Bucket([]byte("principals")).Put([]byte(p.AccessKeyID), rec)
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestXKSStoreCacheFollowsWrites: an external key store read into the
// record cache is dropped from it by a write, so the next View reads the
// new record, not the one cached.
func TestXKSStoreCacheFollowsWrites(t *testing.T) {
	s := openTemp(t)
	read := func() store.XKSStore {
		var r store.XKSStore
		mustView(t, s, func(tx store.Tx) (err error) {
			r, err = tx.XKSStore("p")
			return err
		})
		return r
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		_, err := tx.PutXKSStore(store.XKSStore{Prefix: "p", Keys: []store.XKSKey{{ExternalID: "k1"}}})
		return err
	})
	for i := range 3 {
		r := read()
		read() // a hit on what the first read cached
		r.Keys = append(r.Keys, store.XKSKey{ExternalID: "k" + string(rune('2'+i))})
		mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.PutXKSStore(r); return err })
		if got := read(); got.Revision != r.Revision+1 || len(got.Keys) != len(r.Keys) {
			t.Fatalf("write %d: read back revision %d with %d keys, want %d with %d", i, got.Revision, len(got.Keys), r.Revision+1, len(r.Keys))
		}
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteXKSStore("p") })
	err := s.View(context.Background(), func(tx store.Tx) error { _, err := tx.XKSStore("p"); return err })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("read after delete: %v, want %v", err, store.ErrNotFound)
	}
}
