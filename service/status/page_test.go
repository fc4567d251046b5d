package status

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/hsmkms/hsmkms/softhsm"
)

// clock is a test's clock, moved by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fixture is a page over a real SoftHSM2 token and a real embedded store,
// made for one test.
type fixture struct {
	page     *Page
	tok      *hsm.Token
	store    *bolt.Store
	metrics  *api.Metrics
	requests *counters
	clock    *clock
	label    string
	// pin and soPIN are the token's; the page must never show them.
	pin, soPIN string
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newFixture makes a token of the test's own, with PINs no page could
// contain by chance, opens it and a store, and makes the page.
func newFixture(t *testing.T, change ...func(*Config)) *fixture {
	t.Helper()
	f := &fixture{label: "status-" + randomHex(t, 4), pin: "pin-" + randomHex(t, 8), soPIN: "so-" + randomHex(t, 8),
		requests: newCounters(), metrics: api.NewMetrics(nil), clock: &clock{now: time.Date(2030, 3, 4, 5, 6, 0, 0, time.UTC)}}
	st, err := softhsm.New(t.Context(), softhsm.Config{Dir: t.TempDir(), Label: f.label, PIN: f.pin, SOPIN: f.soPIN})
	if err != nil {
		t.Fatalf("making a SoftHSM2 token: %v", err)
	}
	t.Setenv(softhsm.ConfEnv, st.ConfPath)
	f.tok, err = hsm.Open(t.Context(), hsm.Config{ModulePath: st.ModulePath, TokenLabel: f.label, PIN: hsm.NewPIN(f.pin), PoolSize: 3})
	if err != nil {
		t.Fatalf("hsm.Open: %v", err)
	}
	t.Cleanup(func() { f.tok.Close() })
	if f.store, err = bolt.Open(filepath.Join(t.TempDir(), "store.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	cfg := Config{Token: f.tok, Label: f.label, Store: f.store, Requests: f.requests.read, Seals: f.metrics.SealTotals,
		SealRotateAt: service.DefaultRotateAfterSeals, SealLimit: 1 << 31, Now: f.clock.Now}
	for _, c := range change {
		c(&cfg)
	}
	if f.page, err = New(cfg); err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// putKey writes a key record (and, for a symmetric key, its version 1
// with seals reserved) straight into the store.
func (f *fixture) putKey(t *testing.T, k store.Key, sealsReserved uint64) store.Key {
	t.Helper()
	if k.ID == "" {
		k.ID = uuid.NewString()
	}
	if k.Spec == "" {
		k.Spec = service.SpecSymmetric
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = f.clock.Now().Add(-time.Hour)
	}
	k.Usage, k.CurrentVersion, k.LatestVersion = "ENCRYPT_DECRYPT", 1, 1
	err := f.store.Update(t.Context(), func(tx store.Tx) error {
		if _, err := tx.PutKey(k); err != nil {
			return err
		}
		return tx.PutVersion(store.Version{KeyID: k.ID, Number: 1, State: store.VersionActive, CreatedAt: k.CreatedAt, SealsReserved: sealsReserved})
	})
	if err != nil {
		t.Fatalf("putting key %s: %v", k.ID, err)
	}
	return k
}

// get fetches the page with method through a real HTTP server.
func (f *fixture) get(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	srv := httptest.NewServer(f.page)
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s /status: %v", method, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// mustGet fetches the page and fails the test unless it is a 200 HTML page.
func (f *fixture) mustGet(t *testing.T) string {
	t.Helper()
	resp, body := f.get(t, http.MethodGet)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /status: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return body
}

func wantIn(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("the page lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
}

// TestSnapshotOfTokenAndKeys: the snapshot describes the real token and
// counts and lists the stored keys as the page promises.
func TestSnapshotOfTokenAndKeys(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	older := f.putKey(t, store.Key{State: store.KeyEnabled, CreatedAt: now.Add(-48 * time.Hour)}, 0)
	newer := f.putKey(t, store.Key{State: store.KeyEnabled, Aliases: []string{"alias/app"}, CreatedAt: now.Add(-time.Minute),
		RotationEnabled: true, RotationPeriodDays: 90, NextRotation: now.Add(90 * 24 * time.Hour)}, 1<<16)
	soon := f.putKey(t, store.Key{State: store.KeyEnabled, RotationEnabled: true, RotationPeriodDays: 365, NextRotation: now.Add(24 * time.Hour)}, 0)
	f.putKey(t, store.Key{State: store.KeyDisabled, RotationEnabled: true, NextRotation: now.Add(time.Hour)}, 0) // disabled: does not rotate
	late := f.putKey(t, store.Key{State: store.KeyPendingDeletion, DeletionDate: now.Add(20 * 24 * time.Hour), DeletionWindowDays: 20}, 0)
	early := f.putKey(t, store.Key{State: store.KeyPendingDeletion, DeletionDate: now.Add(7 * 24 * time.Hour), DeletionWindowDays: 7}, 0)
	gone := f.putKey(t, store.Key{State: store.KeyDeleted, CreatedAt: now}, 0)
	for range 3 {
		f.metrics.ObserveSeal(newer.ID, 1)
	}

	snap, err := f.page.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if len(snap.Problems) != 0 {
		t.Fatalf("problems: %v", snap.Problems)
	}
	tok := snap.Token
	if tok.Label != f.label || !tok.Answered || !tok.Health.Ready || tok.Manufacturer == "" || tok.Model == "" || tok.Pool.Size != 3 {
		t.Errorf("token %+v: want label %q, answered, ready, a manufacturer and model, a pool of 3", tok, f.label)
	}
	wantCounts := map[store.KeyState]int{store.KeyEnabled: 3, store.KeyDisabled: 1, store.KeyPendingDeletion: 2, store.KeyDeleted: 1}
	for _, c := range snap.Keys {
		if c.Count != wantCounts[c.State] {
			t.Errorf("%s: %d keys, want %d", c.State, c.Count, wantCounts[c.State])
		}
	}
	if ids := entryIDs(snap.Rotations); ids != soon.ID+" "+newer.ID {
		t.Errorf("rotations %s, want the enabled keys with rotation on, soonest first: %s %s", ids, soon.ID, newer.ID)
	}
	if ids := entryIDs(snap.Deletions); ids != early.ID+" "+late.ID || !snap.Deletions[0].Date.Equal(early.DeletionDate) {
		t.Errorf("deletions %+v, want %s (on %v) then %s", snap.Deletions, early.ID, early.DeletionDate, late.ID)
	}
	if len(snap.Newest) != 6 || snap.Newest[0].ID != newer.ID || snap.Newest[5].ID != older.ID || strings.Contains(entryIDs(snap.Newest), gone.ID) {
		t.Errorf("newest %s: want the 6 keys that are not deleted, %s first and %s last", entryIDs(snap.Newest), newer.ID, older.ID)
	}
	want := SealUse{KeyID: newer.ID, Version: 1, Current: true, Reserved: 1 << 16, Sealed: 3}
	if len(snap.Seals) != 1 || snap.Seals[0] != want {
		t.Errorf("seals %+v, want only %+v (versions that reserved none are left out)", snap.Seals, want)
	}
	if snap.SealRotateAt != service.DefaultRotateAfterSeals || snap.SealLimit != 1<<31 {
		t.Errorf("budget %d / %d", snap.SealRotateAt, snap.SealLimit)
	}
}

func entryIDs(es []KeyEntry) string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return strings.Join(ids, " ")
}

// TestSnapshotListsAreBounded: each list shows Config.Listed keys, the
// soonest ones, however many there are.
func TestSnapshotListsAreBounded(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Listed = 2 })
	now := f.clock.Now()
	var ids []string
	for i := range 5 {
		k := f.putKey(t, store.Key{State: store.KeyPendingDeletion, DeletionDate: now.Add(time.Duration(10-i) * 24 * time.Hour)}, uint64(i+1)<<16)
		ids = append(ids, k.ID)
	}
	snap, err := f.page.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := entryIDs(snap.Deletions); got != ids[4]+" "+ids[3] {
		t.Errorf("deletions %s, want the two soonest: %s %s", got, ids[4], ids[3])
	}
	if len(snap.Seals) != 4 || snap.Seals[0].KeyID != ids[4] {
		t.Errorf("seals %+v: want 4 (twice Listed), the most used first (%s)", snap.Seals, ids[4])
	}
	if snap.Keys[2].State != store.KeyPendingDeletion || snap.Keys[2].Count != 5 {
		t.Errorf("counts %+v: want all 5 pending deletion counted", snap.Keys)
	}
}

// TestPageShows: the HTML shows the token, the keys by state, the
// schedule, the rates the sampler took and the seal budget, and carries
// no script, no external asset and no secret.
func TestPageShows(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	k := f.putKey(t, store.Key{State: store.KeyEnabled, RotationEnabled: true, NextRotation: now.Add(30 * 24 * time.Hour)}, 3<<16)
	d := f.putKey(t, store.Key{State: store.KeyPendingDeletion, DeletionDate: now.Add(7 * 24 * time.Hour)}, 0)
	f.metrics.ObserveSeal(k.ID, 1)
	f.requests.add("GenerateDataKey", 40, 0)
	f.requests.add("Decrypt", 8, 2)
	f.page.Sample()

	body := f.mustGet(t)
	wantIn(t, body,
		`<code>`+f.label+`</code>`,
		`data-state="Enabled" data-count="1"`,
		`data-state="PendingDeletion" data-count="1"`,
		`data-key="`+k.ID+`"`,
		fmt.Sprintf(`data-rotation="%s" data-date="%s"`, k.ID, k.NextRotation.Format(DateLayout)),
		`in 30 days`,
		fmt.Sprintf(`data-deletion="%s" data-date="%s"`, d.ID, d.DeletionDate.Format(DateLayout)),
		`in 7 days`,
		`data-op="GenerateDataKey" data-requests="40" data-errors="0"`,
		`data-op="Decrypt" data-requests="8" data-errors="2"`,
		`25.0 %`, // Decrypt's error rate
		fmt.Sprintf(`data-seal="%s/v1" data-reserved="196608" data-sealed="1" data-limit="2147483648"`, k.ID),
		`196,608`, `1,073,741,824`, `2,147,483,648`,
		`<svg`,
	)
	for _, never := range []string{f.pin, f.soPIN, "<script", "src=", "href=", "http://", "https://", "url("} {
		if strings.Contains(body, never) {
			t.Errorf("the page contains %q", never)
		}
	}
}

// TestPageEscapes: what the store holds is text on the page, never markup.
func TestPageEscapes(t *testing.T) {
	f := newFixture(t)
	f.putKey(t, store.Key{State: store.KeyEnabled, Aliases: []string{`alias/<img src=x onerror=alert(1)>`}}, 0)
	body := f.mustGet(t)
	if strings.Contains(body, "<img") {
		t.Fatalf("an alias was written into the page as markup:\n%s", body)
	}
	wantIn(t, body, "alias/&lt;img src=x onerror=alert(1)&gt;")
}

// TestPageIsReadOnly: GET and HEAD answer, every other method is 405
// with Allow, and the page's headers forbid scripts and caching.
func TestPageIsReadOnly(t *testing.T) {
	f := newFixture(t)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		resp, body := f.get(t, m)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /status: %d, Allow %q, %q; want 405 and Allow GET, HEAD", m, resp.StatusCode, resp.Header.Get("Allow"), body)
		}
	}
	resp, body := f.get(t, http.MethodHead)
	if resp.StatusCode != http.StatusOK || body != "" {
		t.Errorf("HEAD /status: %d with a body of %d bytes, want 200 and none", resp.StatusCode, len(body))
	}
	resp, _ = f.get(t, http.MethodGet)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q, want default-src 'none'", csp)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
}

// TestPageCachesSnapshot: within CacheFor a refresh is served the same
// snapshot, reading neither store nor token; after it, a new one.
func TestPageCachesSnapshot(t *testing.T) {
	f := newFixture(t)
	count := regexp.MustCompile(`data-state="Enabled" data-count="(\d+)"`)
	enabled := func() string {
		m := count.FindStringSubmatch(f.mustGet(t))
		if m == nil {
			t.Fatal("no Enabled count on the page")
		}
		return m[1]
	}
	if n := enabled(); n != "0" {
		t.Fatalf("%s keys enabled in an empty store", n)
	}
	f.putKey(t, store.Key{State: store.KeyEnabled}, 0)
	f.clock.advance(time.Second)
	if n := enabled(); n != "0" {
		t.Errorf("a second later the page shows %s enabled: the snapshot was not reused", n)
	}
	f.clock.advance(2 * time.Second)
	if n := enabled(); n != "1" {
		t.Errorf("past CacheFor the page shows %s enabled, want 1", n)
	}
}

// TestPageWithTokenGone: a token that does not answer is named on the
// page, by its configured label, and the rest of the page is still shown.
func TestPageWithTokenGone(t *testing.T) {
	f := newFixture(t)
	k := f.putKey(t, store.Key{State: store.KeyEnabled}, 0)
	if err := f.tok.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := f.page.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Token.Answered || snap.Token.Label != f.label || len(snap.Problems) != 1 {
		t.Fatalf("token %+v, problems %v: want not answered, the configured label and one problem", snap.Token, snap.Problems)
	}
	f.clock.advance(time.Minute)
	wantIn(t, f.mustGet(t), `class="problem"`, `data-ready="false"`, `data-key="`+k.ID+`"`)
}

// TestSnapshotWaitsWithContext: a request that cannot get its turn (another
// is gathering) gives up when its context ends.
func TestSnapshotWaitsWithContext(t *testing.T) {
	f := newFixture(t)
	f.page.gate <- struct{}{} // another request is gathering
	defer func() { <-f.page.gate }()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := f.page.Snapshot(ctx); err == nil {
		t.Fatal("Snapshot with an ended context while another gathers: no error")
	}
}
