package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

// snapshot is everything a store holds that the suite writes.
type snapshot struct {
	Keys       []store.Key
	Versions   map[string][]store.Version
	Aliases    []store.Alias
	Principals []store.Principal
	XKSStores  []store.XKSStore
	Grants     []store.Grant
	Settings   map[string]string
}

// seed stores one record of each kind and returns the store's snapshot.
func seed(t *testing.T, s store.Store) snapshot {
	t.Helper()
	update(t, s, func(tx store.Tx) error {
		_, err := tx.PutKey(newKey("k0", 0))
		_, err2 := tx.PutXKSStore(newXKSStore("xks/old", 0))
		return errors.Join(err, err2,
			tx.PutVersion(newVersion("k0", 1, 0)),
			tx.CreateAlias(newAlias("alias/old", 0)),
			tx.CreatePrincipal(newPrincipal("AKIAOLD", 0)),
			tx.CreateGrant(newGrant("k0/old", 0)),
			tx.PutSetting("s", []byte("old")))
	})
	return take(t, s)
}

// take reads the snapshot of s.
func take(t *testing.T, s store.Store) snapshot {
	t.Helper()
	snap := snapshot{Versions: map[string][]store.Version{}, Settings: map[string]string{}}
	view(t, s, func(tx store.Tx) (err error) {
		if snap.Keys, err = tx.Keys("", 0); err != nil {
			return err
		}
		for _, id := range []string{"k0", "k1"} {
			if snap.Versions[id], err = tx.Versions(id); err != nil {
				return err
			}
		}
		if snap.Aliases, err = tx.Aliases("", 0); err != nil {
			return err
		}
		if snap.Principals, err = tx.Principals("", 0); err != nil {
			return err
		}
		if snap.XKSStores, err = tx.XKSStores("", 0); err != nil {
			return err
		}
		if snap.Grants, err = tx.Grants("", 0); err != nil {
			return err
		}
		for _, name := range []string{"s", "t"} {
			if v, err := tx.Setting(name); err == nil {
				snap.Settings[name] = string(v)
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	return snap
}

// writes are one of each write a Tx offers, against the seeded records.
var writes = []struct {
	name string
	fn   func(store.Tx) error
}{
	{"PutKey(create)", func(tx store.Tx) error { _, err := tx.PutKey(newKey("k1", 0)); return err }},
	{"PutKey(replace)", func(tx store.Tx) error {
		k := newKey("k0", 1)
		k.Revision = 1
		_, err := tx.PutKey(k)
		return err
	}},
	{"PutVersion", func(tx store.Tx) error { return tx.PutVersion(newVersion("k1", 1, 0)) }},
	{"DeleteVersion", func(tx store.Tx) error { return tx.DeleteVersion("k0", 1) }},
	{"CreateAlias", func(tx store.Tx) error { return tx.CreateAlias(newAlias("alias/new", 0)) }},
	{"PutAlias", func(tx store.Tx) error { return tx.PutAlias(newAlias("alias/old", 1)) }},
	{"DeleteAlias", func(tx store.Tx) error { return tx.DeleteAlias("alias/old") }},
	{"CreatePrincipal", func(tx store.Tx) error { return tx.CreatePrincipal(newPrincipal("AKIANEW", 0)) }},
	{"PutPrincipal", func(tx store.Tx) error { return tx.PutPrincipal(newPrincipal("AKIAOLD", 1)) }},
	{"DeletePrincipal", func(tx store.Tx) error { return tx.DeletePrincipal("AKIAOLD") }},
	{"PutXKSStore(create)", func(tx store.Tx) error { _, err := tx.PutXKSStore(newXKSStore("xks/new", 0)); return err }},
	{"PutXKSStore(replace)", func(tx store.Tx) error {
		s := newXKSStore("xks/old", 1)
		s.Revision = 1
		_, err := tx.PutXKSStore(s)
		return err
	}},
	{"DeleteXKSStore", func(tx store.Tx) error { return tx.DeleteXKSStore("xks/old") }},
	{"CreateGrant", func(tx store.Tx) error { return tx.CreateGrant(newGrant("k0/new", 0)) }},
	{"PutGrant", func(tx store.Tx) error { return tx.PutGrant(newGrant("k0/old", 1)) }},
	{"DeleteGrant", func(tx store.Tx) error { return tx.DeleteGrant("k0/old") }},
	{"PutSetting(replace)", func(tx store.Tx) error { return tx.PutSetting("s", []byte("new")) }},
	{"PutSetting(create)", func(tx store.Tx) error { return tx.PutSetting("t", []byte("new")) }},
}

func testTransactions(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("EachWriteCommits", func(t *testing.T) {
		for _, w := range writes {
			t.Run(w.name, func(t *testing.T) {
				s := open(t)
				before := seed(t, s)
				update(t, s, w.fn)
				if reflect.DeepEqual(take(t, s), before) {
					t.Errorf("%s in Update changed nothing", w.name)
				}
			})
		}
	})
	t.Run("RollbackOnError", func(t *testing.T) {
		s := open(t)
		before := seed(t, s)
		err := s.Update(context.Background(), func(tx store.Tx) error {
			for _, w := range writes {
				if err := w.fn(tx); err != nil {
					t.Errorf("%s: %v", w.name, err)
				}
			}
			return errSentinel
		})
		wantErr(t, "Update returning an error", err, errSentinel)
		if after := take(t, s); !reflect.DeepEqual(after, before) {
			t.Errorf("rolled-back Update changed the store:\n got %+v\nwant %+v", after, before)
		}
	})
	t.Run("ViewRefusesWrites", func(t *testing.T) {
		for _, w := range writes {
			t.Run(w.name, func(t *testing.T) {
				s := open(t)
				before := seed(t, s)
				if err := s.View(context.Background(), w.fn); err == nil {
					t.Errorf("%s in View: no error", w.name)
				}
				if after := take(t, s); !reflect.DeepEqual(after, before) {
					t.Errorf("%s in View changed the store", w.name)
				}
			})
		}
	})
}
