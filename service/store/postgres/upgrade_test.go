package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/postgres/pgtest"
)

// TestUpgradeFromSchema1 opens a database that the release before external
// key stores made (schema version 1, with a record in it): Open applies
// the later migrations, the old record is kept, external key stores work,
// and a second replica opening it migrates nothing more.
func TestUpgradeFromSchema1(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDatabase(t))
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if applied, err := migrateTo(ctx, pool, ms[:1]); err != nil || !slices.Equal(applied, []string{"1_records"}) {
		t.Fatalf("schema 1: applied %v, %v", applied, err)
	}
	if exists(t, pool, "hsmkms_xks_stores") {
		t.Fatal("schema 1 has the external key stores' table")
	}
	when := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	principal := store.Principal{AccessKeyID: "AKIA1", Name: "p", SealedSecret: []byte{9}, CreatedAt: when}
	rec, err := json.Marshal(principal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO hsmkms_principals (access_key_id, record) VALUES ($1, $2)", principal.AccessKeyID, rec); err != nil {
		t.Fatal(err)
	}

	s := openDB(t, srv, Config{URL: url})
	if got := schemaRows(t, pool); len(got) != SchemaVersion() || got[len(got)-1] != SchemaVersion() {
		t.Errorf("hsmkms_schema after the upgrade: versions %v, want 1…%d", got, SchemaVersion())
	}
	xks := store.XKSStore{Prefix: "a/b", CreatedAt: when,
		Credentials: []store.XKSCredential{{AccessKeyID: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", SealedSecret: []byte{1, 2}, CreatedAt: when}},
		Keys:        []store.XKSKey{{ExternalID: "k1", Usage: []string{"ENCRYPT"}}}}
	mustUpdate(t, s, func(tx store.Tx) (err error) {
		xks.Revision, err = tx.PutXKSStore(xks)
		return err
	})
	// A second replica, as after a rolling upgrade: nothing to migrate,
	// and it reads what the first wrote.
	s2 := openDB(t, srv, Config{URL: url})
	if got := schemaRows(t, pool); len(got) != SchemaVersion() {
		t.Errorf("hsmkms_schema after a second Open: versions %v", got)
	}
	for _, st := range []*Store{s, s2} {
		err := st.View(ctx, func(tx store.Tx) error {
			p, err := tx.Principal("AKIA1")
			if err == nil && !reflect.DeepEqual(p, principal) {
				t.Errorf("principal after the upgrade: %+v, want %+v", p, principal)
			}
			x, err2 := tx.XKSStore("a/b")
			if err2 == nil && !reflect.DeepEqual(x, xks) {
				t.Errorf("external key store: %+v, want %+v", x, xks)
			}
			return errors.Join(err, err2)
		})
		if err != nil {
			t.Fatalf("View: %v", err)
		}
	}
}

// exists reports whether the database has a table of that name.
func exists(t *testing.T, pool *pgxpool.Pool, table string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// schemaRows returns the versions hsmkms_schema lists, in order.
func schemaRows(t *testing.T, pool *pgxpool.Pool) []int {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT version FROM hsmkms_schema ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
