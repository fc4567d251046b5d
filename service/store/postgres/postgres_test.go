package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/postgres/pgtest"
	"github.com/hsmkms/hsmkms/service/store/storetest"
)

// openDB opens a store on a new database of srv, closed when t ends.
func openDB(t testing.TB, srv *pgtest.Server, cfg Config) *Store {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = srv.URL(srv.NewDatabase(t))
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	srv := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openDB(t, srv, Config{}) })
}

// mustUpdate runs fn in s.Update and fails t on error.
func mustUpdate(t testing.TB, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// keyOf reads a key in a View.
func keyOf(s store.Store, id string) (store.Key, error) {
	var k store.Key
	err := s.View(context.Background(), func(tx store.Tx) (err error) {
		k, err = tx.Key(id)
		return err
	})
	return k, err
}

func newKey(id string) store.Key {
	return store.Key{ID: id, Spec: "SYMMETRIC_DEFAULT", Usage: "ENCRYPT_DECRYPT", Mechanism: "aes-gcm",
		State: store.KeyEnabled, CurrentVersion: 1, LatestVersion: 1}
}

// TestMigrateConcurrently opens eight stores on one empty database at the
// same instant, as replicas starting together do: the schema is migrated
// once and every store works.
func TestMigrateConcurrently(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDatabase(t))
	const n = 8
	errs := make(chan error, n)
	stores := make(chan *Store, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			s, err := Open(context.Background(), Config{URL: url})
			errs <- err
			stores <- s
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Open: %v", err)
		}
		if s := <-stores; s != nil {
			t.Cleanup(func() { _ = s.Close() })
		}
	}
	s := openDB(t, srv, Config{URL: url})
	var rows, max int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*), max(version) FROM hsmkms_schema").Scan(&rows, &max); err != nil {
		t.Fatal(err)
	}
	if rows != SchemaVersion() || max != SchemaVersion() {
		t.Errorf("hsmkms_schema: %d rows up to version %d, want %d", rows, max, SchemaVersion())
	}
	mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.PutKey(newKey("k1")); return err })
}

// TestNewerSchemaRefused: a database migrated by a newer hsmkms is not
// touched by an older one.
func TestNewerSchemaRefused(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDatabase(t))
	s := openDB(t, srv, Config{URL: url})
	if _, err := s.pool.Exec(context.Background(), "INSERT INTO hsmkms_schema (version, name) VALUES ($1, 'future')", SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Config{URL: url})
	want := fmt.Sprintf("the database's schema is version %d, newer than this hsmkms knows (%d): run a newer hsmkms", SchemaVersion()+1, SchemaVersion())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open: %v, want an error saying %q", err, want)
	}
}

// TestPasswordFromPGPASSWORD: a URL without a password takes libpq's
// PGPASSWORD, as PostgreSQL's own tools do.
func TestPasswordFromPGPASSWORD(t *testing.T) {
	srv := pgtest.Start(t)
	t.Setenv("PGPASSWORD", srv.Password())
	s := openDB(t, srv, Config{URL: srv.URLWithoutPassword(srv.NewDatabase(t))})
	mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.PutKey(newKey("k1")); return err })
}
