package postgres

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/hsmkms/hsmkms/service/store/postgres/pgtest"
)

// TestCopyFromBolt copies a bolt store holding every kind of record into
// PostgreSQL and reads it back; a second copy into the same database is
// refused and changes nothing.
func TestCopyFromBolt(t *testing.T) {
	src, err := bolt.Open(filepath.Join(t.TempDir(), "hsmkms.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	when := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	mustUpdate(t, src, func(tx store.Tx) error {
		for _, id := range []string{"k1", "k2"} {
			k := newKey(id)
			k.CreatedAt, k.LatestVersion, k.CurrentVersion, k.Tags = when, 2, 2, map[string]string{"a": "b"}
			if _, err := tx.PutKey(k); err != nil {
				return err
			}
			for n := uint32(1); n <= 2; n++ {
				if err := tx.PutVersion(store.Version{KeyID: id, Number: n, ObjectID: [16]byte{byte(n), id[1]}, State: store.VersionActive, CreatedAt: when}); err != nil {
					return err
				}
			}
		}
		return errors.Join(tx.CreateAlias(store.Alias{Name: "alias/a", KeyID: "k1", CreatedAt: when}),
			tx.CreatePrincipal(store.Principal{AccessKeyID: "AKIA1", Name: "p", SealedSecret: []byte{1, 2},
				Statements: []policy.Statement{{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"*"}}}}),
			putXKS(tx, store.XKSStore{Prefix: "a/b", CreatedAt: when,
				Credentials: []store.XKSCredential{{AccessKeyID: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", SealedSecret: []byte{3, 4}, CreatedAt: when}},
				Keys:        []store.XKSKey{{ExternalID: "k1", Usage: []string{"DECRYPT", "ENCRYPT"}}}}),
			tx.PutSetting("internal-key", []byte(`{"id":[1],"ready":true}`)),
			tx.PutSetting("lease/maintenance", []byte(`{"owner":"x"}`)))
	})
	dst := openDB(t, pgtest.Start(t), Config{})
	n, err := store.Copy(context.Background(), dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Counts{Keys: 2, Versions: 4, Aliases: 1, Principals: 1, Settings: 1, XKSStores: 1}); n != want {
		t.Errorf("Copy = %+v, want %+v (the lease is not data)", n, want)
	}
	k, err := keyOf(dst, "k2")
	if err != nil || k.Tags["a"] != "b" || k.LatestVersion != 2 || !k.CreatedAt.Equal(when) {
		t.Errorf("k2 in the copy: %+v, %v", k, err)
	}
	if _, err := store.Copy(context.Background(), dst, src); !errors.Is(err, store.ErrNotEmpty) {
		t.Errorf("a second Copy into the same store: %v, want store.ErrNotEmpty", err)
	}
}

func putXKS(tx store.Tx, s store.XKSStore) error {
	_, err := tx.PutXKSStore(s)
	return err
}
