package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/hsmkms/hsmkms/service/store/postgres"
	"github.com/hsmkms/hsmkms/service/store/postgres/pgtest"
)

// backends are the stores Copy is tested against. start readies one for
// a test (the PostgreSQL backend starts a server) and returns how to open
// a new, empty store, closed when its test ends.
var backends = []struct {
	name  string
	start func(t *testing.T) func(t *testing.T) store.Store
}{
	{"bolt", func(*testing.T) func(t *testing.T) store.Store {
		return func(t *testing.T) store.Store {
			s, err := bolt.Open(filepath.Join(t.TempDir(), "hsmkms.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	}},
	{"postgres", func(t *testing.T) func(t *testing.T) store.Store {
		srv := pgtest.Start(t)
		return func(t *testing.T) store.Store {
			s, err := postgres.Open(context.Background(), postgres.Config{URL: srv.URL(srv.NewDatabase(t))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	}},
}

// TestCopyDestination copies a store holding every kind of record into
// destinations holding a little already. A destination holding any record
// Copy would write or read back, settings and versions included, is
// refused with ErrNotEmpty and left as it was; one holding only transient
// settings, which Copy leaves alone, takes the copy. A Copy that reports
// an error has committed nothing, and one that commits reports none, even
// when dst cannot be read after the commit.
func TestCopyDestination(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	fillSource := func(tx store.Tx) error {
		if _, err := tx.PutKey(store.Key{ID: "k1", Spec: "SYMMETRIC_DEFAULT", Usage: "ENCRYPT_DECRYPT",
			State: store.KeyEnabled, CreatedAt: when, CurrentVersion: 2, LatestVersion: 2}); err != nil {
			return err
		}
		for n := uint32(1); n <= 2; n++ {
			if err := tx.PutVersion(store.Version{KeyID: "k1", Number: n, ObjectID: [16]byte{byte(n)},
				State: store.VersionActive, CreatedAt: when}); err != nil {
				return err
			}
		}
		_, err := tx.PutXKSStore(store.XKSStore{Prefix: "a/b", CreatedAt: when})
		return errors.Join(err,
			tx.CreateAlias(store.Alias{Name: "alias/a", KeyID: "k1", CreatedAt: when}),
			tx.CreatePrincipal(store.Principal{AccessKeyID: "AKIA1", Name: "p", SealedSecret: []byte{1}, CreatedAt: when}),
			tx.CreateGrant(store.Grant{KeyID: "k1", ID: "g1", Grantee: "arn:g", Issuer: "AKIA1",
				Operations: []string{"Encrypt"}, CreatedAt: when}),
			tx.PutSetting("internal-key", []byte(`{"ready":true}`)),
			tx.PutSetting("lease/maintenance", []byte(`{"owner":"src"}`)))
	}
	wantCounts := store.Counts{Keys: 1, Versions: 2, Aliases: 1, Principals: 1, Settings: 1, XKSStores: 1, Grants: 1}

	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			open := b.start(t)
			src := open(t)
			if err := src.Update(context.Background(), fillSource); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name string
				fill func(tx store.Tx) error           // the destination's records; nil for none
				wrap func(dst store.Store) store.Store // what Copy is given; nil for dst itself
				want error                             // nil: the copy succeeds
			}{
				{name: "empty"},
				{name: "a transient setting only",
					fill: func(tx store.Tx) error { return tx.PutSetting("lease/maintenance", []byte(`{"owner":"dst"}`)) }},
				{name: "a setting the source has",
					fill: func(tx store.Tx) error { return tx.PutSetting("internal-key", []byte(`{"ready":false}`)) },
					want: store.ErrNotEmpty},
				{name: "a setting the source lacks",
					fill: func(tx store.Tx) error { return tx.PutSetting("root", []byte(`{}`)) },
					want: store.ErrNotEmpty},
				{name: "a version of a copied key",
					fill: func(tx store.Tx) error {
						return tx.PutVersion(store.Version{KeyID: "k1", Number: 7, State: store.VersionPending, CreatedAt: when})
					},
					want: store.ErrNotEmpty},
				{name: "a version the source has",
					fill: func(tx store.Tx) error {
						return tx.PutVersion(store.Version{KeyID: "k1", Number: 1, State: store.VersionPending, CreatedAt: when})
					},
					want: store.ErrNotEmpty},
				{name: "unreadable after the commit",
					wrap: func(dst store.Store) store.Store { return viewFails{dst} }},
			} {
				t.Run(tc.name, func(t *testing.T) {
					dst := open(t)
					if tc.fill != nil {
						if err := dst.Update(context.Background(), tc.fill); err != nil {
							t.Fatal(err)
						}
					}
					before := dump(t, dst)
					into := dst
					if tc.wrap != nil {
						into = tc.wrap(dst)
					}
					n, err := store.Copy(context.Background(), into, src)
					after := dump(t, dst)
					if tc.want != nil {
						if !errors.Is(err, tc.want) {
							t.Errorf("Copy: %v, want %v", err, tc.want)
						}
					} else if err != nil {
						t.Errorf("Copy: %v", err)
					}
					switch {
					case err != nil && after != before:
						t.Errorf("Copy failed (%v) but changed the destination:\nbefore %s\n after %s", err, before, after)
					case err == nil && n != wantCounts:
						t.Errorf("Copy = %+v, want %+v", n, wantCounts)
					case err == nil && after != dump(t, src):
						t.Errorf("the copy differs from the source:\n got %s\nwant %s", after, dump(t, src))
					}
					if lease := setting(t, dst, "lease/maintenance"); tc.fill != nil && tc.want == nil && lease != `{"owner":"dst"}` {
						t.Errorf("the destination's lease is %q after the copy, want its own", lease)
					}
				})
			}
		})
	}
}

// viewFails is a store whose reads fail, as a database lost right after
// a commit does.
type viewFails struct{ store.Store }

func (viewFails) View(context.Context, func(store.Tx) error) error {
	return fmt.Errorf("%w: the connection broke", store.ErrUnavailable)
}

// dump lists what s holds but transient settings, with the versions of
// the source's key, for comparing stores.
func dump(t *testing.T, s store.Store) string {
	t.Helper()
	var b strings.Builder
	err := s.View(context.Background(), func(tx store.Tx) error {
		b.Reset()
		keys, err := tx.Keys("", 0)
		if err != nil {
			return err
		}
		versions, err := tx.VersionsOf([]string{"k1"})
		if err != nil {
			return err
		}
		aliases, err := tx.Aliases("", 0)
		if err != nil {
			return err
		}
		principals, err := tx.Principals("", 0)
		if err != nil {
			return err
		}
		xks, err := tx.XKSStores("", 0)
		if err != nil {
			return err
		}
		grants, err := tx.Grants("", 0)
		if err != nil {
			return err
		}
		settings, err := tx.Settings()
		if err != nil {
			return err
		}
		for _, k := range keys {
			fmt.Fprintf(&b, "key %s %s; ", k.ID, k.State)
		}
		for _, v := range versions {
			fmt.Fprintf(&b, "version %s/%d %s; ", v.KeyID, v.Number, v.State)
		}
		for _, a := range aliases {
			fmt.Fprintf(&b, "alias %s; ", a.Name)
		}
		for _, p := range principals {
			fmt.Fprintf(&b, "principal %s; ", p.AccessKeyID)
		}
		for _, x := range xks {
			fmt.Fprintf(&b, "xks %s; ", x.Prefix)
		}
		for _, g := range grants {
			fmt.Fprintf(&b, "grant %s; ", g.Ref())
		}
		for _, name := range slices.Sorted(maps.Keys(settings)) {
			if name != "lease/maintenance" {
				fmt.Fprintf(&b, "setting %s=%s; ", name, settings[name])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// setting reads one setting ("" without one).
func setting(t *testing.T, s store.Store, name string) string {
	t.Helper()
	var v []byte
	err := s.View(context.Background(), func(tx store.Tx) (err error) {
		v, err = tx.Setting(name)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return string(v)
}
