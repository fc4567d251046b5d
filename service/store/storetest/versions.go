package storetest

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

func testVersions(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CreateGetReplace", func(t *testing.T) {
		s := open(t)
		for variant, state := range []store.VersionState{store.VersionPending, store.VersionActive, store.VersionDestroyed} {
			v := newVersion("k1", 1, variant)
			v.State = state
			putVersions(t, s, v)
			same(t, "Version", mustVersion(t, s, "k1", 1), v, normVersion)
			checkVersions(t, s, "k1", 1)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		putVersions(t, s, newVersion("k1", 1, 0))
		for _, tc := range []struct {
			key string
			n   uint32
		}{{"k1", 0}, {"k1", 2}, {"k2", 1}, {"k", 1}, {"k10", 1}} {
			err := s.View(context.Background(), func(tx store.Tx) error {
				_, err := tx.Version(tc.key, tc.n)
				return err
			})
			wantErr(t, "Version("+tc.key+")", err, store.ErrNotFound)
		}
	})
	t.Run("OrderByNumber", func(t *testing.T) {
		s := open(t)
		for _, n := range []uint32{65536, 2, 256, 1, math.MaxUint32, 255, 10, 0} {
			putVersions(t, s, newVersion("k1", n, 0))
		}
		checkVersions(t, s, "k1", 0, 1, 2, 10, 255, 256, 65536, math.MaxUint32)
	})
	t.Run("CommonPrefixes", func(t *testing.T) {
		s := open(t)
		want := map[string][]uint32{"a": {1, 2, 3, 300}, "ab": {1, 2}, "a/b": {1}, "a/": {5}, "b": nil}
		for id, ns := range want {
			for _, n := range ns {
				putVersions(t, s, newVersion(id, n, len(id)))
			}
		}
		for id, ns := range want {
			checkVersions(t, s, id, ns...)
			for _, n := range ns {
				same(t, "Version("+id+")", mustVersion(t, s, id, n), newVersion(id, n, len(id)), normVersion)
			}
		}
	})
	t.Run("VersionsOf", func(t *testing.T) {
		s := open(t)
		// Prefixes of one another, and an order that is not sorted: the
		// answer follows the IDs given, not a collation.
		putVersions(t, s, newVersion("a", 2, 0), newVersion("a", 1, 0), newVersion("a/", 1, 0),
			newVersion("ab", 3, 0), newVersion("ab", 1, 0), newVersion("b", 7, 0))
		for _, tc := range []struct {
			ids  []string
			want []string // key/number
		}{
			{nil, []string{}},
			{[]string{"missing"}, []string{}},
			{[]string{"b", "a"}, []string{"b/7", "a/1", "a/2"}},
			{[]string{"ab", "missing", "a/", "ab"}, []string{"ab/1", "ab/3", "a//1"}},
		} {
			var vs []store.Version
			view(t, s, func(tx store.Tx) (err error) {
				vs, err = tx.VersionsOf(tc.ids)
				return err
			})
			if vs == nil {
				t.Errorf("VersionsOf(%q) = nil, want an empty slice", tc.ids)
			}
			got := []string{}
			for _, v := range vs {
				got = append(got, fmt.Sprintf("%s/%d", v.KeyID, v.Number))
			}
			same(t, fmt.Sprintf("VersionsOf(%q)", tc.ids), got, tc.want, func(s []string) []string { return s })
		}
	})
	t.Run("Delete", func(t *testing.T) {
		s := open(t)
		putVersions(t, s, newVersion("k1", 1, 0), newVersion("k1", 2, 0), newVersion("k1", 3, 0), newVersion("k2", 2, 0))
		update(t, s, func(tx store.Tx) error { return tx.DeleteVersion("k1", 2) })
		checkVersions(t, s, "k1", 1, 3)
		checkVersions(t, s, "k2", 2)
		for _, tc := range []struct {
			key string
			n   uint32
		}{{"k1", 2}, {"k1", 4}, {"k3", 1}} {
			err := s.Update(context.Background(), func(tx store.Tx) error { return tx.DeleteVersion(tc.key, tc.n) })
			wantErr(t, "DeleteVersion(missing)", err, store.ErrNotFound)
		}
		checkVersions(t, s, "k1", 1, 3)
	})
}

// putVersions stores vs in one Update.
func putVersions(t *testing.T, s store.Store, vs ...store.Version) {
	t.Helper()
	update(t, s, func(tx store.Tx) error {
		for _, v := range vs {
			if err := tx.PutVersion(v); err != nil {
				return err
			}
		}
		return nil
	})
}

// mustVersion reads one version in its own View.
func mustVersion(t *testing.T, s store.Store, keyID string, n uint32) store.Version {
	t.Helper()
	var v store.Version
	view(t, s, func(tx store.Tx) (err error) {
		v, err = tx.Version(keyID, n)
		return err
	})
	return v
}

// checkVersions fails unless Versions(keyID) is non-nil and lists exactly
// the given numbers of that key, in that order.
func checkVersions(t *testing.T, s store.Store, keyID string, want ...uint32) {
	t.Helper()
	var vs []store.Version
	view(t, s, func(tx store.Tx) (err error) {
		vs, err = tx.Versions(keyID)
		return err
	})
	if vs == nil {
		t.Errorf("Versions(%q) = nil, want an empty slice", keyID)
	}
	got := make([]uint32, 0, len(vs))
	for _, v := range vs {
		if v.KeyID != keyID {
			t.Errorf("Versions(%q) holds a version of key %q", keyID, v.KeyID)
		}
		got = append(got, v.Number)
	}
	if len(want) == 0 {
		want = []uint32{}
	}
	same(t, "Versions("+keyID+") numbers", got, want, func(n []uint32) []uint32 { return n })
}
