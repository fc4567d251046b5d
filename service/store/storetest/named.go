package storetest

import (
	"context"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

// kind is what the generic tests need of one record kind. put and del are
// nil for keys, which have their own tests.
type kind[T any] struct {
	prefix string // makes test identities look like the kind's
	make   func(id string, variant int) T
	id     func(T) string
	get    func(store.Tx, string) (T, error)
	list   func(store.Tx, string, int) ([]T, error)
	create func(store.Tx, T) error
	put    func(store.Tx, T) error
	del    func(store.Tx, string) error
	norm   func(T) T
}

var keyKind = kind[store.Key]{
	make:   newKey,
	id:     func(k store.Key) string { return k.ID },
	get:    store.Tx.Key,
	list:   store.Tx.Keys,
	create: func(tx store.Tx, k store.Key) error { _, err := tx.PutKey(k); return err },
	norm: func(k store.Key) store.Key {
		k.Revision = 0 // lists are compared with the records as created
		return normKey(k)
	},
}

var aliasKind = kind[store.Alias]{
	prefix: "alias/",
	make:   newAlias,
	id:     func(a store.Alias) string { return a.Name },
	get:    store.Tx.Alias,
	list:   store.Tx.Aliases,
	create: store.Tx.CreateAlias,
	put:    store.Tx.PutAlias,
	del:    store.Tx.DeleteAlias,
	norm:   normAlias,
}

var principalKind = kind[store.Principal]{
	prefix: "AKIA",
	make:   newPrincipal,
	id:     func(p store.Principal) string { return p.AccessKeyID },
	get:    store.Tx.Principal,
	list:   store.Tx.Principals,
	create: store.Tx.CreatePrincipal,
	put:    store.Tx.PutPrincipal,
	del:    store.Tx.DeletePrincipal,
	norm:   normPrincipal,
}

// testNamed checks create, get, replace and delete of aliases or principals.
func testNamed[T any](t *testing.T, open func(t *testing.T) store.Store, k kind[T]) {
	id, other := k.prefix+"one", k.prefix+"two"
	setup := func(t *testing.T) store.Store {
		s := open(t)
		update(t, s, func(tx store.Tx) error { return k.create(tx, k.make(id, 0)) })
		return s
	}
	t.Run("CreateGet", func(t *testing.T) {
		s := setup(t)
		same(t, "get", mustGet(t, s, k, id), k.make(id, 0), k.norm)
		checkGetErr(t, s, k, other, store.ErrNotFound)
	})
	t.Run("CreateExists", func(t *testing.T) {
		s := setup(t)
		err := s.Update(context.Background(), func(tx store.Tx) error { return k.create(tx, k.make(id, 1)) })
		wantErr(t, "create(taken)", err, store.ErrExists)
		same(t, "after refused create", mustGet(t, s, k, id), k.make(id, 0), k.norm)
	})
	t.Run("Replace", func(t *testing.T) {
		s := setup(t)
		update(t, s, func(tx store.Tx) error { return k.put(tx, k.make(id, 1)) })
		same(t, "after replace", mustGet(t, s, k, id), k.make(id, 1), k.norm)
	})
	t.Run("ReplaceMissing", func(t *testing.T) {
		s := setup(t)
		err := s.Update(context.Background(), func(tx store.Tx) error { return k.put(tx, k.make(other, 1)) })
		wantErr(t, "put(missing)", err, store.ErrNotFound)
		checkGetErr(t, s, k, other, store.ErrNotFound)
	})
	t.Run("Delete", func(t *testing.T) {
		s := setup(t)
		update(t, s, func(tx store.Tx) error { return k.create(tx, k.make(other, 0)) })
		update(t, s, func(tx store.Tx) error { return k.del(tx, id) })
		checkGetErr(t, s, k, id, store.ErrNotFound)
		checkGetErr(t, s, k, other, nil)
		for _, missing := range []string{id, k.prefix + "three"} {
			err := s.Update(context.Background(), func(tx store.Tx) error { return k.del(tx, missing) })
			wantErr(t, "delete(missing)", err, store.ErrNotFound)
		}
		update(t, s, func(tx store.Tx) error { return k.create(tx, k.make(id, 2)) })
		same(t, "re-created", mustGet(t, s, k, id), k.make(id, 2), k.norm)
	})
}

// mustGet reads one record in its own View.
func mustGet[T any](t *testing.T, s store.Store, k kind[T], id string) T {
	t.Helper()
	var rec T
	view(t, s, func(tx store.Tx) (err error) {
		rec, err = k.get(tx, id)
		return err
	})
	return rec
}

// checkGetErr fails unless reading id gives want.
func checkGetErr[T any](t *testing.T, s store.Store, k kind[T], id string, want error) {
	t.Helper()
	err := s.View(context.Background(), func(tx store.Tx) error {
		_, err := k.get(tx, id)
		return err
	})
	wantErr(t, "get("+id+")", err, want)
}
