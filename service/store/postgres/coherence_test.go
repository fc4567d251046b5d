package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/postgres/pgtest"
)

// waitFor polls cond until it holds or the deadline passes, and returns
// how long it took. It bounds a wait; it asserts no timing.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestHotReadsSkipTheDatabase: once a key, its version and an external key
// store (which every XKS request reads) are cached, a View of them begins
// no database transaction.
func TestHotReadsSkipTheDatabase(t *testing.T) {
	srv := pgtest.Start(t)
	// A long MaxStale: a follower delayed by a loaded machine must not make
	// this test read the database.
	s := openDB(t, srv, Config{MaxStale: time.Hour})
	mustUpdate(t, s, func(tx store.Tx) error {
		_, err := tx.PutKey(newKey("k1"))
		_, err2 := tx.PutXKSStore(store.XKSStore{Prefix: "x", Keys: []store.XKSKey{{ExternalID: "k1", Usage: []string{"ENCRYPT"}}}})
		return errors.Join(err, err2, tx.PutVersion(store.Version{KeyID: "k1", Number: 1, State: store.VersionActive}))
	})
	read := func() error {
		return s.View(context.Background(), func(tx store.Tx) error {
			_, err := tx.Key("k1")
			if err != nil {
				return err
			}
			if _, err := tx.XKSStore("x"); err != nil {
				return err
			}
			_, err = tx.Version("k1", 1)
			return err
		})
	}
	waitFor(t, 10*time.Second, "the cache catches up with the write", func() bool {
		_, ok := s.records.readRev()
		return ok
	})
	if err := read(); err != nil { // fills the cache
		t.Fatal(err)
	}
	before := s.began.Load()
	for range 1000 {
		if err := read(); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.began.Load() - before; n != 0 {
		t.Errorf("1000 Views of a cached key, version and external key store began %d database transactions, want 0", n)
	}
}

// TestOwnWritesSeenAtOnce: a View after an Update in the same process sees
// the write, however far the follower is behind.
func TestOwnWritesSeenAtOnce(t *testing.T) {
	srv := pgtest.Start(t)
	s := openDB(t, srv, Config{MaxStale: time.Hour})
	mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.PutKey(newKey("k1")); return err })
	for i := range 50 {
		k, err := keyOf(s, "k1")
		if err != nil {
			t.Fatal(err)
		}
		k.Description = strings.Repeat("x", i+1)
		mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.PutKey(k); return err })
		if got, err := keyOf(s, "k1"); err != nil || got.Description != k.Description {
			t.Fatalf("write %d: read back %q, %v; want %q", i, got.Description, err, k.Description)
		}
	}
}

// TestOtherReplicasWritesSeen: a change committed through one store is
// seen by another store on the same database within MaxStale, for every
// record kind the cache holds.
func TestOtherReplicasWritesSeen(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDatabase(t))
	a := openDB(t, srv, Config{URL: url})
	b := openDB(t, srv, Config{URL: url})
	mustUpdate(t, a, func(tx store.Tx) error {
		_, err := tx.PutKey(newKey("k1"))
		_, err2 := tx.PutXKSStore(store.XKSStore{Prefix: "x/1", Keys: []store.XKSKey{{ExternalID: "k1"}}})
		_, err3 := tx.PutXKSStore(store.XKSStore{Prefix: "x/2"})
		return errors.Join(err, err2, err3, tx.CreateAlias(store.Alias{Name: "alias/a", KeyID: "k1"}),
			tx.CreatePrincipal(store.Principal{AccessKeyID: "AKIA1", Name: "p"}),
			tx.PutSetting("s", []byte("1")))
	})
	type state struct {
		k          store.Key
		al         store.Alias
		perr       error
		set        []byte
		xks        store.XKSStore
		xksGoneErr error
	}
	read := func(s store.Store) (st state) {
		_ = s.View(context.Background(), func(tx store.Tx) error {
			st.k, _ = tx.Key("k1")
			st.al, _ = tx.Alias("alias/a")
			_, st.perr = tx.Principal("AKIA1")
			st.set, _ = tx.Setting("s")
			st.xks, _ = tx.XKSStore("x/1")
			_, st.xksGoneErr = tx.XKSStore("x/2")
			return nil
		})
		return
	}
	read(b) // b caches every one
	k, _ := keyOf(a, "k1")
	k.State = store.KeyDisabled
	mustUpdate(t, a, func(tx store.Tx) error {
		_, err := tx.PutKey(k)
		_, err2 := tx.PutXKSStore(store.XKSStore{Prefix: "x/1", Revision: 1, Keys: []store.XKSKey{{ExternalID: "k2"}}})
		return errors.Join(err, err2, tx.PutAlias(store.Alias{Name: "alias/a", KeyID: "k2"}),
			tx.DeletePrincipal("AKIA1"), tx.PutSetting("s", []byte("2")), tx.DeleteXKSStore("x/2"))
	})
	took := waitFor(t, 5*time.Second, "b sees a's writes", func() bool {
		st := read(b)
		return st.k.State == store.KeyDisabled && st.al.KeyID == "k2" && errors.Is(st.perr, store.ErrNotFound) &&
			string(st.set) == "2" && st.xks.Revision == 2 && len(st.xks.Keys) == 1 && st.xks.Keys[0].ExternalID == "k2" &&
			errors.Is(st.xksGoneErr, store.ErrNotFound)
	})
	t.Logf("b saw a's writes after %s", took)
}

// TestCacheExpires: a cache whose last sync is older than MaxStale is not
// read, which is what bounds how long another replica's write can go
// unseen when the change feed is lost.
func TestCacheExpires(t *testing.T) {
	const maxStale = time.Second
	c := newRecordCache(7, maxStale)
	c.put(7, "kk1", store.Key{ID: "k1"})
	if _, ok := c.readRev(); !ok {
		t.Fatal("a fresh cache is not readable")
	}
	c.apply(7, nil, false, time.Now().Add(-2*maxStale))
	if _, ok := c.readRev(); ok {
		t.Error("a cache synced 2×MaxStale ago is readable")
	}
	c.apply(8, []string{"kk1"}, false, time.Now())
	if _, ok := c.get(8, []byte("kk1")); ok {
		t.Error("an item changed by revision 8 is still cached")
	}
	c.wrote(9, nil)
	if _, ok := c.readRev(); ok {
		t.Error("the cache is readable before it has caught up with this process's own write")
	}
	c.put(8, "kk1", store.Key{ID: "k1"})
	if _, ok := c.get(8, []byte("kk1")); ok {
		t.Error("a record entered the cache while it is behind a write")
	}
	c.apply(5, nil, false, time.Now()) // a restored database: back in time
	if rev, ok := c.readRev(); !ok || rev != 5 {
		t.Errorf("after the database went back to revision 5: rev %d readable %v, want 5 true", rev, ok)
	}
}

// TestConcurrentWritersAcrossStores: writers in two stores on one database
// compare-and-set one key; every increment lands exactly once.
func TestConcurrentWritersAcrossStores(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDatabase(t))
	stores := []*Store{openDB(t, srv, Config{URL: url}), openDB(t, srv, Config{URL: url})}
	mustUpdate(t, stores[0], func(tx store.Tx) error { _, err := tx.PutKey(newKey("k1")); return err })
	const perWriter, writers = 15, 4
	var wg sync.WaitGroup
	for _, s := range stores {
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perWriter {
					err := s.Update(context.Background(), func(tx store.Tx) error {
						k, err := tx.Key("k1")
						if err != nil {
							return err
						}
						k.LatestVersion++
						_, err = tx.PutKey(k)
						return err
					})
					if err != nil {
						t.Errorf("Update: %v", err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	k, err := keyOf(stores[1], "k1")
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(1 + len(stores)*writers*perWriter); k.LatestVersion != want {
		t.Errorf("LatestVersion %d after %d increments, want %d", k.LatestVersion, want-1, want)
	}
}

// TestDatabaseDown: while PostgreSQL is stopped, reads the cache cannot
// answer and every write fail at once with store.ErrUnavailable; when it
// is back the same store works again, without reopening, and nothing
// committed before is lost.
func TestDatabaseDown(t *testing.T) {
	srv := pgtest.Start(t)
	s := openDB(t, srv, Config{})
	mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.PutKey(newKey("k1")); return err })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := s.Update(context.Background(), func(tx store.Tx) error { _, err := tx.PutKey(newKey("k2")); return err })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Update with the database down: %v, want store.ErrUnavailable", err)
	}
	_, err = keyOf(s, "k-not-cached")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("uncached View with the database down: %v, want store.ErrUnavailable", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("two refusals took %s: not failing fast", took)
	}
	if strings.Contains(err.Error(), srv.Password()) {
		t.Errorf("the error shows the database password: %v", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "writes succeed again", func() bool {
		return s.Update(context.Background(), func(tx store.Tx) error { _, err := tx.PutKey(newKey("k2")); return err }) == nil
	})
	for _, id := range []string{"k1", "k2"} {
		if _, err := keyOf(s, id); err != nil {
			t.Errorf("%s after the outage: %v", id, err)
		}
	}
	waitFor(t, 30*time.Second, "the cache is followed again", func() bool {
		_, ok := s.records.readRev()
		return ok
	})
}

// TestPasswordNeverShown: errors from a bad URL, a wrong password and an
// unreachable server do not contain the password.
func TestPasswordNeverShown(t *testing.T) {
	srv := pgtest.Start(t)
	const secret = "s3cret-Pa55word-zz"
	for _, tc := range []struct{ name, url, password string }{
		{"BadURL", "postgres://u:" + secret + "@127.0.0.1:notaport/db", ""},
		{"WrongPassword", srv.URLWithoutPassword("postgres"), secret},
		{"WrongPasswordInURL", strings.Replace(srv.URL("postgres"), srv.Password(), secret, 1), ""},
		{"Unreachable", "postgres://u:" + secret + "@127.0.0.1:1/db?connect_timeout=2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), Config{URL: tc.url, Password: tc.password})
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// TestRetryWait: the wait before another attempt is never zero, doubles
// its ceiling with each attempt and never passes maxRetryWait.
func TestRetryWait(t *testing.T) {
	tests := []struct {
		attempt int
		ceil    time.Duration
	}{
		{1, 2 * time.Millisecond},
		{2, 4 * time.Millisecond},
		{5, 32 * time.Millisecond},
		{6, maxRetryWait},
		{maxAttempts, maxRetryWait},
	}
	for _, tt := range tests {
		var longest time.Duration
		for range 2000 {
			w := retryWait(tt.attempt)
			if w <= 0 || w > tt.ceil {
				t.Fatalf("retryWait(%d) = %v, want in (0, %v]", tt.attempt, w, tt.ceil)
			}
			longest = max(longest, w)
		}
		if longest <= tt.ceil/2 {
			t.Errorf("retryWait(%d): longest of 2000 waits %v, want above %v", tt.attempt, longest, tt.ceil/2)
		}
	}
}
