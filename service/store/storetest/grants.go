package storetest

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

// grantKind runs the named-record tests on grants, identified by Ref: the
// test identity's part before its first "/" is the key ID, the rest the
// grant ID.
var grantKind = kind[store.Grant]{
	prefix: "g/",
	make:   newGrant,
	id:     store.Grant.Ref,
	get:    store.Tx.Grant,
	list:   store.Tx.Grants,
	create: store.Tx.CreateGrant,
	put:    store.Tx.PutGrant,
	del:    store.Tx.DeleteGrant,
	norm:   normGrant,
}

func newGrant(ref string, variant int) store.Grant {
	keyID, id, _ := strings.Cut(ref, "/")
	g := store.Grant{KeyID: keyID, ID: id, Grantee: "arn:aws:iam::000000000000:user/AKIAGRANTEE",
		Issuer: "AKIAISSUER", Operations: []string{"Decrypt", "Encrypt"}, CreatedAt: at(6)}
	if variant%2 == 1 {
		g.Name, g.Retiring = "n", "arn:aws:iam::000000000000:user/AKIARETIRE"
		g.Operations = []string{"GenerateDataKey"}
		g.ContextSubset = map[string]string{"tenant": "t" + string(rune('0'+variant%10))}
	} else {
		g.ContextEquals = map[string]string{"a": "b"}
	}
	return g
}

// normGrant normalises a copy of g for comparison.
func normGrant(g store.Grant) store.Grant {
	g = g.Clone()
	g.CreatedAt = normTime(g.CreatedAt)
	// ContextEquals is kept as it is: nil (no constraint) and {} (the
	// context must be empty) differ.
	if len(g.ContextSubset) == 0 {
		g.ContextSubset = nil
	}
	return g
}

// testGrants checks grants: the named-record contract, that a key's grants
// list together by Ref, and that Copy carries every field.
func testGrants(t *testing.T, open func(t *testing.T) store.Store) {
	testNamed(t, open, grantKind)
	t.Run("ByKey", func(t *testing.T) {
		s := open(t)
		refs := []string{"k1/01", "k1/02", "k10/01", "k2/01"}
		update(t, s, func(tx store.Tx) error {
			for i, r := range refs {
				if err := tx.CreateGrant(newGrant(r, i)); err != nil {
					return err
				}
			}
			return nil
		})
		var got []string
		view(t, s, func(tx store.Tx) error {
			gs, err := tx.Grants("k1/", 0)
			for _, g := range gs {
				if !strings.HasPrefix(g.Ref(), "k1/") {
					break
				}
				got = append(got, g.Ref())
			}
			return err
		})
		if strings.Join(got, " ") != "k1/01 k1/02" {
			t.Errorf("grants of k1 = %v, want k1/01 k1/02", got)
		}
	})
	t.Run("EmptyContextEquals", func(t *testing.T) { testEmptyContextEquals(t, open(t)) })
	t.Run("Copy", func(t *testing.T) {
		src, dst := open(t), open(t)
		want := newGrant("k1/ab", 1)
		update(t, src, func(tx store.Tx) error { return tx.CreateGrant(want) })
		counts, err := store.Copy(t.Context(), dst, src)
		if err != nil || counts.Grants != 1 {
			t.Fatalf("Copy = %+v, %v; want one grant", counts, err)
		}
		view(t, dst, func(tx store.Tx) error {
			got, err := tx.Grant(want.Ref())
			if err == nil && (got.Name != want.Name || got.Retiring != want.Retiring || !maps.Equal(got.ContextSubset, want.ContextSubset)) {
				t.Errorf("copied grant %+v, want %+v", got, want)
			}
			return err
		})
	})
}

// testEmptyContextEquals checks that a grant's ContextEquals {} reads back
// as {}, by Grant and by Grants, and nil as nil. (Found by review:
// omitempty dropped {}, and a grant that required an empty encryption
// context read back as one with no constraint.)
func testEmptyContextEquals(t *testing.T, s store.Store) {
	empty, unconstrained := newGrant("k1/01", 0), newGrant("k1/02", 0)
	empty.ContextEquals, unconstrained.ContextEquals = map[string]string{}, nil
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateGrant(empty); err != nil {
			return err
		}
		return tx.CreateGrant(unconstrained)
	})
	view(t, s, func(tx store.Tx) error {
		listed, err := tx.Grants("k1/", 0)
		if err != nil {
			return err
		}
		for _, want := range []store.Grant{empty, unconstrained} {
			got, err := tx.Grant(want.Ref())
			if err != nil {
				return err
			}
			i := slices.IndexFunc(listed, func(g store.Grant) bool { return g.Ref() == want.Ref() })
			if i < 0 {
				t.Fatalf("Grants lacks %s", want.Ref())
			}
			for how, g := range map[string]store.Grant{"Grant": got, "Grants": listed[i]} {
				if (g.ContextEquals == nil) != (want.ContextEquals == nil) || len(g.ContextEquals) != 0 {
					t.Errorf("%s(%s).ContextEquals = %#v, want %#v", how, g.Ref(), g.ContextEquals, want.ContextEquals)
				}
			}
		}
		return nil
	})
}
