package storetest

import (
	"context"
	"errors"
	"slices"
	"strconv"
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

// testXKSStores checks external key stores: the named-record contract,
// compare-and-set on revisions, that records handed in and out are copies,
// and that store.Copy carries them.
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
		// Lists carry the revision too: a caller lists, changes one and
		// puts it back.
		if got := list(t, s, xksKind, "", 0); len(got) != 1 || got[0].Revision != 3 {
			t.Errorf("listed after three writes: %+v, want one store at revision 3", got)
		}
		if rev, err := put(newXKSStore("p", 3), 0); !errors.Is(err, store.ErrExists) {
			t.Errorf("create over a replaced store: revision %d, %v; want %v", rev, err, store.ErrExists)
		}
		update(t, s, func(tx store.Tx) error { return tx.DeleteXKSStore("p") })
		for _, rev := range []uint64{3, 4} {
			if _, err := put(newXKSStore("p", 3), rev); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("replace at %d after delete: %v, want %v", rev, err, store.ErrNotFound)
			}
		}
		// A prefix deleted and made again starts over at revision 1.
		if rev, err := put(newXKSStore("p", 3), 0); err != nil || rev != 1 {
			t.Errorf("re-create: revision %d, %v; want 1", rev, err)
		}
	})
	t.Run("Copies", func(t *testing.T) {
		s := open(t)
		update(t, s, func(tx store.Tx) error { return xksKind.create(tx, newXKSStore("p", 1)) })
		for range 2 { // the second read may come from a cache the first filled
			scribbleXKS(mustGet(t, s, xksKind, "p"))
			for _, r := range list(t, s, xksKind, "", 0) {
				scribbleXKS(r)
			}
		}
		got := mustGet(t, s, xksKind, "p")
		same(t, "after changing copies", got, newXKSStore("p", 1), normXKSStore)
		if !slices.Equal(got.Keys[0].Usage, []string{"DECRYPT", "ENCRYPT"}) {
			t.Errorf("usage %v", got.Keys[0].Usage)
		}
	})
	t.Run("CopiesInTransaction", func(t *testing.T) {
		s := open(t)
		want := newXKSStore("p", 1) // with statements
		update(t, s, func(tx store.Tx) error {
			in := newXKSStore("p", 1)
			if _, err := tx.PutXKSStore(in); err != nil {
				return err
			}
			scribbleXKS(in)
			got, err := tx.XKSStore("p")
			if err != nil {
				return err
			}
			scribbleXKS(got)
			all, err := tx.XKSStores("", 0)
			for _, r := range all {
				scribbleXKS(r)
			}
			return err
		})
		view(t, s, func(tx store.Tx) error {
			// Twice in one transaction: the second read may be a cache hit
			// on what the first decoded.
			for range 2 {
				got, err := tx.XKSStore("p")
				if err != nil {
					return err
				}
				same(t, "read in a View after changing copies", got, want, normXKSStore)
				scribbleXKS(got)
			}
			return nil
		})
		same(t, "after changing copies in transactions", mustGet(t, s, xksKind, "p"), want, normXKSStore)
	})
	t.Run("Copy", func(t *testing.T) { testXKSCopy(t, open) })
}

// scribbleXKS changes everything r holds by reference, as far as it
// reaches.
func scribbleXKS(r store.XKSStore) {
	for _, c := range r.Credentials {
		for i := range c.SealedSecret {
			c.SealedSecret[i] ^= 0xff
		}
	}
	for _, k := range r.Keys {
		for i := range k.Usage {
			k.Usage[i] = "SCRIBBLED"
		}
	}
	for _, st := range r.Statements {
		for i := range st.Actions {
			st.Actions[i] = "changed"
		}
		for i := range st.Resources {
			st.Resources[i] = "changed"
		}
	}
}

// testXKSCopy checks that store.Copy carries external key stores, whole
// and with their revisions started again, and that a destination holding
// only an external key store counts as not empty.
func testXKSCopy(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	src := open(t)
	prefixes := []string{"b", "a/b", "a", "c/d/e"}
	update(t, src, func(tx store.Tx) error {
		for i, p := range prefixes {
			if err := xksKind.create(tx, newXKSStore(p, i)); err != nil {
				return err
			}
		}
		return tx.CreatePrincipal(newPrincipal("AKIA1", 0))
	})
	for range 2 { // "a/b" at revision 3 in the source
		update(t, src, func(tx store.Tx) error {
			r, err := tx.XKSStore("a/b")
			if err != nil {
				return err
			}
			r.Keys = append(r.Keys, store.XKSKey{ExternalID: "k" + strconv.FormatUint(r.Revision, 10), Usage: []string{"ENCRYPT"}})
			_, err = tx.PutXKSStore(r)
			return err
		})
	}
	want := list(t, src, xksKind, "", 0)

	dst := open(t)
	n, err := store.Copy(ctx, dst, src)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if n.XKSStores != len(prefixes) || n.Principals != 1 {
		t.Errorf("Copy counted %+v, want %d external key stores and 1 principal", n, len(prefixes))
	}
	got := list(t, dst, xksKind, "", 0)
	same(t, "copied prefixes", ids(xksKind, got), ids(xksKind, want), func(s []string) []string { return s })
	for i := range min(len(got), len(want)) {
		same(t, "copied "+want[i].Prefix, got[i], want[i], normXKSStore)
		if got[i].Revision != 1 {
			t.Errorf("copied %s at revision %d, want 1", got[i].Prefix, got[i].Revision)
		}
	}
	// The copy is a store like any other: its records take compare-and-set
	// writes at their new revisions.
	update(t, dst, func(tx store.Tx) error { return xksKind.put(tx, newXKSStore("a/b", 7)) })

	for _, tc := range []struct {
		name string
		fill func(tx store.Tx) error
	}{
		{"copied already", nil},
		{"only an external key store", func(tx store.Tx) error { return xksKind.create(tx, newXKSStore("z", 0)) }},
	} {
		t.Run("NotEmpty/"+tc.name, func(t *testing.T) {
			d := dst
			if tc.fill != nil {
				d = open(t)
				update(t, d, tc.fill)
			}
			before := list(t, d, xksKind, "", 0)
			_, err := store.Copy(ctx, d, src)
			wantErr(t, "Copy into "+tc.name, err, store.ErrNotEmpty)
			after := list(t, d, xksKind, "", 0)
			same(t, "prefixes after a refused copy", ids(xksKind, after), ids(xksKind, before), func(s []string) []string { return s })
			for i := range min(len(after), len(before)) {
				same(t, "after a refused copy", after[i], before[i], normXKSStore)
			}
		})
	}
}
