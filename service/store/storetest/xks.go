package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// xksKind runs the named-record tests on external key stores: create is
// PutXKSStore at revision 0, replace is PutXKSStore at revision 1 (the
// revision of a record just created).
var xksKind = kind[store.XKSStore]{
	prefix: "xks/",
	make:   newXKSStore,
	id:     func(s store.XKSStore) string { return s.Prefix },
	get:    store.Tx.XKSStore,
	list:   store.Tx.XKSStores,
	create: func(tx store.Tx, s store.XKSStore) error { s.Revision = 0; _, err := tx.PutXKSStore(s); return err },
	put:    func(tx store.Tx, s store.XKSStore) error { s.Revision = 1; _, err := tx.PutXKSStore(s); return err },
	del:    store.Tx.DeleteXKSStore,
	norm:   normXKSStore,
}

func newXKSStore(prefix string, variant int) store.XKSStore {
	s := store.XKSStore{Prefix: prefix, CreatedAt: at(4),
		Credentials: []store.XKSCredential{
			{AccessKeyID: "MUBSXM6K3KMXHN6RRCXI7TWQH4", SealedSecret: []byte{9, 8, byte(variant)}, CreatedAt: at(5)},
		},
		Keys: []store.XKSKey{
			{ExternalID: "1234abcd-12ab-34cd-56ef-1234567890ab", Usage: []string{"DECRYPT", "ENCRYPT"}},
			{ExternalID: "app", Usage: []string{}},
		},
	}
	if variant%2 == 1 {
		s.Statements = []policy.Statement{{Effect: "Allow", Actions: []string{"Encrypt"}, Resources: []string{"arn:aws:iam::*:role/x"}}}
		s.Keys = s.Keys[:1]
	}
	return s
}

func normXKSStore(s store.XKSStore) store.XKSStore {
	s = s.Clone()
	s.Revision = 0 // the CAS tests check revisions
	s.CreatedAt = normTime(s.CreatedAt)
	for i := range s.Credentials {
		s.Credentials[i].CreatedAt = normTime(s.Credentials[i].CreatedAt)
	}
	for i := range s.Keys {
		if len(s.Keys[i].Usage) == 0 {
			s.Keys[i].Usage = nil
		}
	}
	if len(s.Credentials) == 0 {
		s.Credentials = nil
	}
	if len(s.Keys) == 0 {
		s.Keys = nil
	}
	if len(s.Statements) == 0 {
		s.Statements = nil
	}
	return s
}

// testXKSStores checks external key stores: the named-record contract,
// compare-and-set on revisions, and that records handed out are copies.
func testXKSStores(t *testing.T, open func(t *testing.T) store.Store) {
	testNamed(t, open, xksKind)
	t.Run("Revisions", func(t *testing.T) {
		s := open(t)
		put := func(rec store.XKSStore, rev uint64) (uint64, error) {
			var got uint64
			err := s.Update(context.Background(), func(tx store.Tx) (err error) {
				rec.Revision = rev
				got, err = tx.PutXKSStore(rec)
				return err
			})
			return got, err
		}
		if rev, err := put(newXKSStore("p", 0), 0); err != nil || rev != 1 {
			t.Fatalf("create: revision %d, %v; want 1", rev, err)
		}
		if rev, err := put(newXKSStore("p", 1), 1); err != nil || rev != 2 {
			t.Fatalf("replace at 1: revision %d, %v; want 2", rev, err)
		}
		for _, tc := range []struct {
			name string
			rec  store.XKSStore
			rev  uint64
			want error
		}{
			{"create over one", newXKSStore("p", 2), 0, store.ErrExists},
			{"stale", newXKSStore("p", 2), 1, store.ErrConflict},
			{"future", newXKSStore("p", 2), 3, store.ErrConflict},
			{"missing", newXKSStore("q", 2), 1, store.ErrNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := put(tc.rec, tc.rev)
				wantErr(t, tc.name, err, tc.want)
				got := mustGet(t, s, xksKind, "p")
				same(t, "after a refused put", got, newXKSStore("p", 1), normXKSStore)
				if got.Revision != 2 {
					t.Errorf("revision %d after a refused put, want 2", got.Revision)
				}
			})
		}
		if rev, err := put(newXKSStore("p", 2), 2); err != nil || rev != 3 {
			t.Fatalf("replace at 2: revision %d, %v; want 3", rev, err)
		}
	})
	t.Run("Copies", func(t *testing.T) {
		s := open(t)
		update(t, s, func(tx store.Tx) error { return xksKind.create(tx, newXKSStore("p", 0)) })
		scribble := func(r store.XKSStore) {
			if len(r.Credentials) > 0 && len(r.Credentials[0].SealedSecret) > 0 {
				r.Credentials[0].SealedSecret[0] ^= 0xff
			}
			if len(r.Keys) > 0 && len(r.Keys[0].Usage) > 0 {
				r.Keys[0].Usage[0] = "SCRIBBLED"
			}
		}
		for range 2 { // the second read may come from a cache the first filled
			scribble(mustGet(t, s, xksKind, "p"))
			for _, r := range list(t, s, xksKind, "", 0) {
				scribble(r)
			}
		}
		got := mustGet(t, s, xksKind, "p")
		same(t, "after changing copies", got, newXKSStore("p", 0), normXKSStore)
		if !slices.Equal(got.Keys[0].Usage, []string{"DECRYPT", "ENCRYPT"}) {
			t.Errorf("usage %v", got.Keys[0].Usage)
		}
	})
}
