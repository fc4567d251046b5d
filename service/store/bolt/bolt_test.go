package bolt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/storetest"
)

// openTemp opens a store in a new file that is closed when t ends.
func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "kms.db"))
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
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func TestDurability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	when := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	key := store.Key{ID: "k1", Spec: "SYMMETRIC_DEFAULT", State: store.KeyEnabled, CreatedAt: when,
		Tags: map[string]string{"a": "b"}, LatestVersion: 2, CurrentVersion: 2}
	versions := []store.Version{
		{KeyID: "k1", Number: 1, ObjectID: [16]byte{1}, State: store.VersionActive, CreatedAt: when},
		{KeyID: "k1", Number: 2, ObjectID: [16]byte{2}, State: store.VersionPending, CreatedAt: when, SealsReserved: 1 << 20},
	}
	alias := store.Alias{Name: "alias/a", KeyID: "k1", CreatedAt: when, UpdatedAt: when}
	principal := store.Principal{AccessKeyID: "AKIA1", Name: "p", SealedSecret: []byte{9}, CreatedAt: when,
		Statements: []policy.Statement{{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"*"}}}}

	s := mustOpen(t, path)
	mustUpdate(t, s, func(tx store.Tx) error {
		rev, err := tx.PutKey(key)
		key.Revision = rev
		return errors.Join(err, tx.PutVersion(versions[0]), tx.PutVersion(versions[1]),
			tx.CreateAlias(alias), tx.CreatePrincipal(principal), tx.PutSetting("schema", []byte("1")))
	})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = mustOpen(t, path)
	defer s.Close()
	err := s.View(context.Background(), func(tx store.Tx) error {
		k, err1 := tx.Key("k1")
		vs, err2 := tx.Versions("k1")
		a, err3 := tx.Alias("alias/a")
		p, err4 := tx.Principal("AKIA1")
		v, err5 := tx.Setting("schema")
		got := []any{k, vs, a, p, string(v)}
		want := []any{key, versions, alias, principal, "1"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("after reopen:\n got %+v\nwant %+v", got, want)
		}
		return errors.Join(err1, err2, err3, err4, err5)
	})
	if err != nil {
		t.Fatalf("View after reopen: %v", err)
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		rev, err := tx.PutKey(key)
		if err == nil && rev != 2 {
			t.Errorf("PutKey after reopen: revision %d, want 2", rev)
		}
		return err
	})
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kms.db")
	s := mustOpen(t, path)
	// bbolt's flock belongs to the open file, so a second Open in this
	// process contends for it exactly as another process would.
	done := make(chan error, 1)
	go func() {
		s2, err := Open(path)
		if err == nil {
			s2.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "store file is locked by another process") {
			t.Errorf("second Open: %v, want a locked-file error", err)
		}
	case <-time.After(lockTimeout + 10*time.Second):
		t.Fatal("second Open hangs")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = mustOpen(t, path)
	s.Close()
}

func TestOpenCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing", "dir")
	path := filepath.Join(dir, "kms.db")
	s := mustOpen(t, path)
	defer s.Close()
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{{dir, os.ModeDir | 0o700}, {path, 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}
}

func TestOpenFails(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "not-a-db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a bbolt file ", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"not a database", notDB},
		{"parent is a file", filepath.Join(notDB, "kms.db")},
		{"path is a directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", tc.path)
			}
			if !strings.Contains(err.Error(), tc.path) && !strings.Contains(err.Error(), filepath.Dir(tc.path)) {
				t.Errorf("error %q does not name the path", err)
			}
		})
	}
}

func TestErrorsNameIdentity(t *testing.T) {
	s := openTemp(t)
	putXKS := func(prefix string, rev uint64) func(store.Tx) error {
		return func(tx store.Tx) error {
			_, err := tx.PutXKSStore(store.XKSStore{Prefix: prefix, Revision: rev})
			return err
		}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		_, err := tx.PutKey(store.Key{ID: "key-1"})
		_, err2 := tx.PutXKSStore(store.XKSStore{Prefix: "xks/taken"})
		return errors.Join(err, err2, tx.CreateAlias(store.Alias{Name: "alias/taken"}))
	})
	for _, tc := range []struct {
		fn       func(store.Tx) error
		want     error
		identity string
	}{
		{func(tx store.Tx) error { _, err := tx.Key("key-2"); return err }, store.ErrNotFound, "key-2"},
		{func(tx store.Tx) error { _, err := tx.PutKey(store.Key{ID: "key-1"}); return err }, store.ErrExists, "key-1"},
		{func(tx store.Tx) error { _, err := tx.PutKey(store.Key{ID: "key-1", Revision: 7}); return err }, store.ErrConflict, "key-1"},
		{func(tx store.Tx) error { _, err := tx.Version("key-1", 42); return err }, store.ErrNotFound, "key-1 version 42"},
		{func(tx store.Tx) error { return tx.DeleteVersion("key-1", 43) }, store.ErrNotFound, "key-1 version 43"},
		{func(tx store.Tx) error { return tx.CreateAlias(store.Alias{Name: "alias/taken"}) }, store.ErrExists, "alias/taken"},
		{func(tx store.Tx) error { return tx.PutAlias(store.Alias{Name: "alias/none"}) }, store.ErrNotFound, "alias/none"},
		{func(tx store.Tx) error { return tx.DeletePrincipal("AKIANONE") }, store.ErrNotFound, "AKIANONE"},
		{func(tx store.Tx) error { _, err := tx.Setting("nothing"); return err }, store.ErrNotFound, "nothing"},
		{func(tx store.Tx) error { _, err := tx.XKSStore("xks/none"); return err }, store.ErrNotFound, "external key store xks/none"},
		{putXKS("xks/taken", 0), store.ErrExists, "xks/taken"},
		{putXKS("xks/taken", 7), store.ErrConflict, "xks/taken"},
		{putXKS("xks/none", 1), store.ErrNotFound, "xks/none"},
		{func(tx store.Tx) error { return tx.DeleteXKSStore("xks/none") }, store.ErrNotFound, "xks/none"},
	} {
		err := s.Update(context.Background(), tc.fn)
		if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.identity) {
			t.Errorf("error %v, want %v naming %q", err, tc.want, tc.identity)
		}
	}
}

// TestTxAfterEnd proves that a Tx kept past its transaction function
// refuses use, a View's too, even for a record in the record cache.
func TestTxAfterEnd(t *testing.T) {
	s := openTemp(t)
	seedCacheKey(t, s)
	view(t, s, func(tx store.Tx) { read(t, tx) }) // the key is cached now
	var escaped store.Tx
	mustUpdate(t, s, func(tx store.Tx) error { escaped = tx; return nil })
	if _, err := escaped.Key("k1"); !errors.Is(err, errTxEnded) {
		t.Errorf("Key on an ended Tx: %v, want %v", err, errTxEnded)
	}
	if err := escaped.PutSetting("s", nil); !errors.Is(err, errTxEnded) {
		t.Errorf("PutSetting on an ended Tx: %v, want %v", err, errTxEnded)
	}
	view(t, s, func(tx store.Tx) { escaped = tx })
	if _, err := escaped.Key(cacheKeyID); !errors.Is(err, errTxEnded) {
		t.Errorf("Key of a cached record on an ended View Tx: %v, want %v", err, errTxEnded)
	}
}

func mustOpen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func mustUpdate(t testing.TB, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// benchKeyID is a UUID-shaped ID for key i.
func benchKeyID(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }

// populate stores n keys, each with versions versions.
func populate(b *testing.B, n, versions int) *Store {
	s := openTemp(b)
	mustUpdate(b, s, func(tx store.Tx) error {
		for i := range n {
			k := store.Key{ID: benchKeyID(i), Spec: "SYMMETRIC_DEFAULT", Usage: "ENCRYPT_DECRYPT",
				Mechanism: "aes-gcm", State: store.KeyEnabled, CreatedAt: time.Now(),
				CurrentVersion: uint32(versions), LatestVersion: uint32(versions)}
			if _, err := tx.PutKey(k); err != nil {
				return err
			}
			for v := 1; v <= versions; v++ {
				if err := tx.PutVersion(store.Version{KeyID: k.ID, Number: uint32(v), State: store.VersionActive, CreatedAt: k.CreatedAt}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return s
}

// BenchmarkView measures the hot path's read: a key and its current
// version in one View, the key picked at random among n.
func BenchmarkView(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := populate(b, n, 5)
			ids := make([]string, n)
			for i := range ids {
				ids[i] = benchKeyID(i)
			}
			r := rand.New(rand.NewPCG(1, 2))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				id := ids[r.IntN(n)]
				err := s.View(ctx, func(tx store.Tx) error {
					k, err := tx.Key(id)
					if err != nil {
						return err
					}
					_, err = tx.Version(id, k.CurrentVersion)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUpdate measures PutVersion in Update, one commit per operation.
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := populate(b, n, 5)
			id := benchKeyID(n / 2)
			ctx := context.Background()
			number := uint32(5)
			for b.Loop() {
				number++
				v := store.Version{KeyID: id, Number: number, State: store.VersionPending, CreatedAt: time.Now()}
				if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutVersion(v) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSnapshotWhileWriting takes snapshots while writers commit; each is a
// store Verify accepts and Open reads, holding a prefix of the writes.
func TestSnapshotWhileWriting(t *testing.T) {
	s := openTemp(t)
	done := make(chan struct{})
	writerErr := make(chan error, 1)
	go func() {
		defer close(writerErr)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			err := s.Update(context.Background(), func(tx store.Tx) error {
				_, err := tx.PutKey(store.Key{ID: fmt.Sprintf("k%06d", i), State: store.KeyEnabled})
				return err
			})
			if err != nil {
				writerErr <- err
				return
			}
		}
	}()
	for i := range 5 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("snap%d.db", i))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Snapshot(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := Verify(path)
		if err != nil {
			t.Fatalf("Verify(snapshot %d): %v", i, err)
		}
		snap := mustOpen(t, path)
		keys := 0
		mustView(t, snap, func(tx store.Tx) error {
			ks, err := tx.Keys("", 0)
			keys = len(ks)
			for j, k := range ks {
				if want := fmt.Sprintf("k%06d", j); k.ID != want {
					return fmt.Errorf("key %d is %s, want %s: not a prefix of the writes", j, k.ID, want)
				}
			}
			return err
		})
		if keys != c.Keys {
			t.Errorf("snapshot %d: Verify counts %d keys, Open reads %d", i, c.Keys, keys)
		}
		snap.Close()
	}
	close(done)
	if err := <-writerErr; err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusesDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bbolt file ", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(path); err == nil {
		t.Fatal("Verify accepted a file that is not a store")
	}
}

func mustView(t testing.TB, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}
