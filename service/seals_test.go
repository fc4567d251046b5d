package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// Seal budget settings of the tests in this file.
const (
	testSealBlock   = 4
	testRotateAfter = 12
	testSealLimit   = 40
)

// sealHSM wraps the token: it counts the AES-GCM seals that reach it per
// CKA_ID, and refuses to make new versions of the keys in blocked, as a
// full token would.
type sealHSM struct {
	HSM
	mu      sync.Mutex
	seals   map[hsm.ObjectID]int
	blocked map[string]bool
}

func (h *sealHSM) count(id hsm.ObjectID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seals[id]++
}

// sealsOf returns how many seals of id reached the token.
func (h *sealHSM) sealsOf(id [16]byte) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seals[id]
}

func (h *sealHSM) block(keyID string, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.blocked[keyID] = on
}

func (h *sealHSM) Seal(ctx context.Context, id hsm.ObjectID, iv, aad, plaintext []byte) ([]byte, error) {
	h.count(id)
	return h.HSM.Seal(ctx, id, iv, aad, plaintext)
}

func (h *sealHSM) SealDataKey(ctx context.Context, id hsm.ObjectID, n int, iv, aad []byte) ([]byte, []byte, error) {
	h.count(id)
	return h.HSM.SealDataKey(ctx, id, n, iv, aad)
}

func (h *sealHSM) CreateMasterKey(ctx context.Context, id hsm.ObjectID, label string) error {
	h.mu.Lock()
	refuse := h.blocked[strings.Split(label, "/")[1]]
	h.mu.Unlock()
	if refuse {
		return errors.New("test: the token refuses new objects for this key")
	}
	return h.HSM.CreateMasterKey(ctx, id, label)
}

// sealFixture is a fixture with the small seal budget of this file (limit
// SealLimit when given) and its token wrapped in a sealHSM.
func sealFixture(t *testing.T, limit ...uint64) (*fixture, *sealHSM) {
	t.Helper()
	h := &sealHSM{seals: map[hsm.ObjectID]int{}, blocked: map[string]bool{}}
	f := newFixture(t, "", func(c *Config) {
		c.SealBlock, c.RotateAfterSeals, c.SealLimit = testSealBlock, testRotateAfter, testSealLimit
		if len(limit) > 0 {
			c.SealLimit = limit[0]
		}
		h.HSM = c.HSM
		c.HSM = h
	})
	return f, h
}

// sealOnce makes one aes-gcm ciphertext under keyID, by Encrypt or by
// GenerateDataKey as i says, and returns it.
func sealOnce(t *testing.T, svc *Service, keyID string, i int) (madeCipher, error) {
	ctx := admin(t)
	m := madeCipher{keyID: keyID, encCtx: map[string]string{"seal": fmt.Sprint(i)}}
	var err error
	if i%2 == 0 {
		m.plain = fmt.Appendf(nil, "seal %d", i)
		var out EncryptOutput
		out, err = svc.Encrypt(ctx, EncryptInput{KeyId: keyID, Plaintext: m.plain, EncryptionContext: m.encCtx})
		m.blob = out.CiphertextBlob
	} else {
		var out GenerateDataKeyOutput
		out, err = svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: keyID, KeySpec: "AES_128", EncryptionContext: m.encCtx})
		m.blob, m.plain = out.CiphertextBlob, out.Plaintext
	}
	return m, err
}

// reserved reads the stored SealsReserved of a key version.
func reserved(t *testing.T, svc *Service, keyID string, v uint32) uint64 {
	t.Helper()
	n, err := svc.Reserved(t.Context(), keyID, v)
	if err != nil {
		t.Fatalf("Reserved(%s, %d): %v", keyID, v, err)
	}
	return n
}

// waitRotations polls ListKeyRotations until keyID has want rotations, and
// fails after a deadline.
func waitRotations(t *testing.T, svc *Service, keyID string, want int) []Rotation {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := svc.ListKeyRotations(admin(t), ListKeyRotationsInput{KeyId: keyID})
		if err != nil {
			t.Fatalf("ListKeyRotations: %v", err)
		}
		if len(out.Rotations) >= want {
			if len(out.Rotations) > want {
				t.Fatalf("%s has %d rotations, want %d", keyID, len(out.Rotations), want)
			}
			return out.Rotations
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has %d rotations, want %d", keyID, len(out.Rotations), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// objectOf returns the CKA_ID of a key version.
func objectOf(t *testing.T, svc *Service, keyID string, n uint32) [16]byte {
	t.Helper()
	var v store.Version
	err := svc.store.View(t.Context(), func(tx store.Tx) error {
		var err error
		v, err = tx.Version(keyID, n)
		return err
	})
	if err != nil {
		t.Fatalf("version %d of %s: %v", n, keyID, err)
	}
	return v.ObjectID
}

// TestSealBudgetReservesBlocksAndRotates seals one at a time with a block
// of 4, rotation after 12 and a limit of 40: the stored reservation grows
// by 4 just before the seal that needs it and never trails the seals done;
// crossing 12 rotates the key once, automatically, and the next
// ciphertexts name the new version. Three versions in a row wear out so.
func TestSealBudgetReservesBlocksAndRotates(t *testing.T) {
	f, h := sealFixture(t)
	key := f.createKey(t, CreateKeyInput{Description: "seal budget"})
	var made []madeCipher
	i := 0
	for v := uint32(1); v <= 3; v++ {
		obj := objectOf(t, f.svc, key, v)
		// Seals 1..8 reserve 4 and 8; seal 9 reserves 12, which starts
		// the rotation.
		for done := 1; done <= testRotateAfter-testSealBlock+1; done++ {
			m, err := sealOnce(t, f.svc, key, i)
			if err != nil {
				t.Fatalf("version %d seal %d: %v", v, done, err)
			}
			i++
			m.version = v
			checkBlob(t, m.blob, key, v)
			made = append(made, m)
			want := uint64((done + testSealBlock - 1) / testSealBlock * testSealBlock)
			if got := reserved(t, f.svc, key, v); got != want || got < uint64(done) {
				t.Fatalf("version %d after %d seals: %d reserved, want %d", v, done, got, want)
			}
			if got := h.sealsOf(obj); got != done {
				t.Fatalf("version %d: %d seals reached the token, want %d", v, got, done)
			}
		}
		rs := waitRotations(t, f.svc, key, int(v))
		if r := rs[v-1]; r.KeyMaterialId != materialID(v+1) || r.RotationType != rotationAutomatic {
			t.Fatalf("rotation %d = %+v, want %s %s", v, r, materialID(v+1), rotationAutomatic)
		}
		if got := reserved(t, f.svc, key, v+1); got != 0 {
			t.Fatalf("the new version %d starts with %d reserved, want 0", v+1, got)
		}
	}
	// The next ciphertext names version 4; waiting for the service's
	// goroutines shows no further rotation was started.
	m, err := sealOnce(t, f.svc, key, i)
	if err != nil {
		t.Fatal(err)
	}
	m.version = 4
	checkBlob(t, m.blob, key, 4)
	made = append(made, m)
	f.svc.Close()
	if rs := waitRotations(t, f.svc, key, 3); len(rs) != 3 {
		t.Fatalf("%d rotations after Close, want 3", len(rs))
	}
	for v := uint32(1); v <= 3; v++ {
		if got := reserved(t, f.svc, key, v); got != testRotateAfter {
			t.Errorf("worn version %d: %d reserved, want %d", v, got, testRotateAfter)
		}
	}
	if got := reserved(t, f.svc, key, 4); got != testSealBlock {
		t.Errorf("version 4: %d reserved after one seal, want %d", got, testSealBlock)
	}
	checkVersions(t, f, key, 4)
	decryptAll(t, f, made)

	// aes-kw data keys are wrapped, not sealed with an IV: they take no seal.
	kw := f.createKey(t, CreateKeyInput{HsmkmsMechanism: "aes-kw"})
	for range 2 * testSealBlock {
		if _, err := f.svc.GenerateDataKey(admin(t), GenerateDataKeyInput{KeyId: kw, KeySpec: "AES_256"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := reserved(t, f.svc, kw, 1); got != 0 {
		t.Errorf("aes-kw key: %d seals reserved by wrapped data keys, want 0", got)
	}
}

// TestSealLimitRefusesWhenRotationFails uses a key whose new versions the
// token refuses: every automatic rotation fails, sealing continues up to
// the limit of 40 and then fails with KMSInvalidStateException without
// reaching the token; older ciphertexts still decrypt, and the failed
// rotations left only pending versions, which ListKeyRotations hides.
func TestSealLimitRefusesWhenRotationFails(t *testing.T) {
	f, h := sealFixture(t)
	key := f.createKey(t, CreateKeyInput{Description: "cannot rotate"})
	h.block(key, true)
	obj := objectOf(t, f.svc, key, 1)
	var made []madeCipher
	for done := 1; done <= testSealLimit; done++ {
		m, err := sealOnce(t, f.svc, key, done)
		if err != nil {
			t.Fatalf("seal %d: %v", done, err)
		}
		m.version = 1
		checkBlob(t, m.blob, key, 1)
		made = append(made, m)
		if got := reserved(t, f.svc, key, 1); got < uint64(done) || got > testSealLimit {
			t.Fatalf("after %d seals: %d reserved", done, got)
		}
	}
	for i := range 4 {
		_, err := sealOnce(t, f.svc, key, testSealLimit+1+i)
		if !errors.Is(err, ErrInvalidState) {
			t.Fatalf("seal past the limit: %v, want %s", err, CodeInvalidState)
		}
	}
	if got := h.sealsOf(obj); got != testSealLimit {
		t.Fatalf("%d seals reached the token, want %d", got, testSealLimit)
	}
	if got := reserved(t, f.svc, key, 1); got != testSealLimit {
		t.Fatalf("%d reserved at the limit, want %d", got, testSealLimit)
	}
	f.svc.Close() // waits for the failing rotations
	decryptAll(t, f, made)
	out, err := f.svc.ListKeyRotations(admin(t), ListKeyRotationsInput{KeyId: key})
	if err != nil || len(out.Rotations) != 0 {
		t.Fatalf("ListKeyRotations = %+v, %v; want none", out.Rotations, err)
	}
	k, err := f.svc.keyRecord(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if k.CurrentVersion != 1 || k.LatestVersion < 2 {
		t.Fatalf("current %d latest %d: want 1 and at least one failed rotation", k.CurrentVersion, k.LatestVersion)
	}
	vs, err := f.svc.versions(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs[1:] {
		if v.State != store.VersionPending {
			t.Errorf("version %d of a key that cannot rotate is %s, want Pending", v.Number, v.State)
		}
	}
}

// TestSealCountSurvivesRestart stops a Service with part of a block unused
// and starts a new one on the same store: it reserves on top of the stored
// count (never from 0), so crossing the threshold still rotates; a key at
// its limit stays refused, and once its token accepts new versions again
// Reconcile finishes the pending rotations and it seals under the newest.
func TestSealCountSurvivesRestart(t *testing.T) {
	f, h := sealFixture(t)
	ctx := admin(t)
	worn := f.createKey(t, CreateKeyInput{Description: "worn"})
	full := f.createKey(t, CreateKeyInput{Description: "full"})
	h.block(full, true)
	var made []madeCipher
	// worn: 5 seals reserve 8 (3 unused); full: 40 seals, then refused.
	for i := range 5 {
		m, err := sealOnce(t, f.svc, worn, i)
		if err != nil {
			t.Fatal(err)
		}
		m.version = 1
		made = append(made, m)
	}
	for i := range testSealLimit {
		m, err := sealOnce(t, f.svc, full, i)
		if err != nil {
			t.Fatal(err)
		}
		m.version = 1
		made = append(made, m)
	}
	if _, err := sealOnce(t, f.svc, full, 0); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("seal past the limit: %v", err)
	}
	if got := reserved(t, f.svc, worn, 1); got != 8 {
		t.Fatalf("worn v1: %d reserved, want 8", got)
	}
	f.svc.Close()

	// A new Service on the same store and token.
	cfg := f.svc.cfg
	cfg.Audit, cfg.Logger = nil, nil
	cfg.ReplicaID = "" // a new process
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	// Reconcile cannot finish full's pending rotations yet, and says so.
	if rep, err := svc.Reconcile(ctx); err == nil || !strings.Contains(err.Error(), full) || rep.RolledForward != 0 {
		t.Fatalf("Reconcile while the token refuses new versions = %+v, %v; want an error naming %s", rep, err, full)
	}
	m, err := sealOnce(t, svc, worn, 5)
	if err != nil {
		t.Fatal(err)
	}
	m.version = 1
	checkBlob(t, m.blob, worn, 1)
	made = append(made, m)
	if got := reserved(t, svc, worn, 1); got != 12 {
		t.Fatalf("worn v1 after a restart and one seal: %d reserved, want 12 (8 stored + a block of 4)", got)
	}
	waitRotations(t, svc, worn, 1)
	m, err = sealOnce(t, svc, worn, 6)
	if err != nil {
		t.Fatal(err)
	}
	m.version = 2
	checkBlob(t, m.blob, worn, 2)
	made = append(made, m)

	sealsBefore := h.sealsOf(objectOf(t, svc, full, 1))
	if _, err := sealOnce(t, svc, full, 1); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("seal past the limit after a restart: %v, want %s", err, CodeInvalidState)
	}
	if got := h.sealsOf(objectOf(t, svc, full, 1)); got != sealsBefore {
		t.Fatalf("a refused seal reached the token (%d → %d)", sealsBefore, got)
	}

	// The token takes new versions again: Reconcile rolls the pending
	// rotations forward and the key seals under the newest.
	h.block(full, false)
	k, err := svc.keyRecord(t.Context(), full)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := svc.Reconcile(ctx)
	if err != nil || rep.RolledForward != int(k.LatestVersion-1) {
		t.Fatalf("Reconcile = %+v, %v; want %d versions rolled forward", rep, err, k.LatestVersion-1)
	}
	m, err = sealOnce(t, svc, full, 2)
	if err != nil {
		t.Fatal(err)
	}
	m.version = k.LatestVersion
	checkBlob(t, m.blob, full, k.LatestVersion)
	made = append(made, m)
	svc.Close()
	checkVersions(t, f, full, k.LatestVersion)
	checkVersions(t, f, worn, 2)
	g := &fixture{svc: svc, tok: f.tok}
	decryptAll(t, g, made)
}

// TestSealBudgetConcurrentSealers seals from several goroutines at once
// (with a limit far above the threshold, so that sealing never waits for a
// rotation): no error, the stored count of every version covers the seals
// that reached the token with it, and only worn versions (12 reserved)
// were rotated away from.
func TestSealBudgetConcurrentSealers(t *testing.T) {
	const goroutines, each, limit = 8, 30, 8 * 30
	f, h := sealFixture(t, limit)
	key := f.createKey(t, CreateKeyInput{Description: "concurrent seals"})
	var mu sync.Mutex
	var made []madeCipher
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m, err := sealOnce(t, f.svc, key, g*each+i)
				if err != nil {
					t.Errorf("goroutine %d seal %d: %v", g, i, err)
					return
				}
				mu.Lock()
				made = append(made, m)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	f.svc.Close()
	if t.Failed() {
		t.FailNow()
	}
	k, err := f.svc.keyRecord(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	vs := checkVersions(t, f, key, k.LatestVersion)
	for _, v := range vs {
		n := h.sealsOf(v.ObjectID)
		if v.SealsReserved < uint64(n) || v.SealsReserved%testSealBlock != 0 || v.SealsReserved > limit {
			t.Errorf("version %d: %d reserved for %d seals", v.Number, v.SealsReserved, n)
		}
		if v.Number < k.LatestVersion && v.SealsReserved < testRotateAfter {
			t.Errorf("version %d was rotated away from with only %d seals reserved (threshold %d)", v.Number, v.SealsReserved, testRotateAfter)
		}
	}
	for i := range made {
		b, err := ciphertext.Parse(made[i].blob)
		if err != nil {
			t.Fatal(err)
		}
		made[i].version = b.Version
	}
	decryptAll(t, f, made)
	t.Logf("%d seals over %d versions", len(made), len(vs))
}

// pauseKey marks a context whose first store read pauses until released.
type pauseKey struct{}

// pause holds a request right after its first store read.
type pause struct {
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func newPause() *pause { return &pause{reached: make(chan struct{}), release: make(chan struct{})} }

// pausingStore pauses a request whose context carries a *pause after its
// first View: for Encrypt, after it read the key and its current version
// and before it takes a seal.
type pausingStore struct{ store.Store }

func (s *pausingStore) View(ctx context.Context, fn func(store.Tx) error) error {
	err := s.Store.View(ctx, fn)
	if p, ok := ctx.Value(pauseKey{}).(*pause); ok {
		p.once.Do(func() {
			close(p.reached)
			<-p.release
		})
	}
	return err
}

// TestSealStaleVersionDoesNotRotateAgain holds four Encrypts after they
// read version 1 as current, wears version 1 out and waits for the
// automatic rotation, then lets them seal with version 1: the last one
// reserves another block of the worn version, which must not start a
// second rotation of a key already rotated away from it.
func TestSealStaleVersionDoesNotRotateAgain(t *testing.T) {
	h := &sealHSM{seals: map[hsm.ObjectID]int{}, blocked: map[string]bool{}}
	f := newFixture(t, "", func(c *Config) {
		c.SealBlock, c.RotateAfterSeals, c.SealLimit = testSealBlock, testRotateAfter, testSealLimit
		h.HSM, c.HSM = c.HSM, h
		c.Store = &pausingStore{Store: c.Store}
	})
	key := f.createKey(t, CreateKeyInput{Description: "stale seals"})
	var made []madeCipher
	seal := func(ctx context.Context, i int) madeCipher {
		m := madeCipher{keyID: key, plain: fmt.Appendf(nil, "stale %d", i)}
		out, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: key, Plaintext: m.plain})
		if err != nil {
			t.Errorf("Encrypt %d: %v", i, err)
			return m
		}
		m.blob = out.CiphertextBlob
		return m
	}
	for i := range testRotateAfter - testSealBlock { // reserves 8, uses all
		m := seal(admin(t), i)
		m.version = 1
		made = append(made, m)
	}
	// Four requests read version 1 as current and wait.
	stale := make([]*pause, testSealBlock)
	results := make([]chan madeCipher, len(stale))
	for i := range stale {
		stale[i], results[i] = newPause(), make(chan madeCipher, 1)
		ctx := context.WithValue(admin(t), pauseKey{}, stale[i])
		go func() { results[i] <- seal(ctx, 100+i) }()
		<-stale[i].reached
	}
	// The ninth seal reserves up to 12 and starts the rotation.
	m := seal(admin(t), 8)
	m.version = 1
	made = append(made, m)
	waitRotations(t, f.svc, key, 1)
	// The stale requests use the three seals left and reserve one block more.
	for i := range stale {
		close(stale[i].release)
		m := <-results[i]
		m.version = 1
		checkBlob(t, m.blob, key, 1)
		made = append(made, m)
	}
	if got := reserved(t, f.svc, key, 1); got != testRotateAfter+testSealBlock {
		t.Fatalf("version 1: %d reserved, want %d", got, testRotateAfter+testSealBlock)
	}
	f.svc.Close() // waits for any rotation the stale seals started
	if rs := waitRotations(t, f.svc, key, 1); len(rs) != 1 {
		t.Fatalf("%d rotations, want 1", len(rs))
	}
	checkVersions(t, f, key, 2)
	decryptAll(t, f, made)
}

// TestWornVersionRotatedOnceAcrossReplicas: replica A's seals cross the
// rotation threshold of version 1 and it rotates the key to version 2;
// replica B, sharing the store, saw version 1 current when its own
// reservation crossed the threshold, and its rotation runs after A's. B
// must not rotate again (found by review: the key got versions 2 and 3,
// two automatic rotations for one threshold).
func TestWornVersionRotatedOnceAcrossReplicas(t *testing.T) {
	f, _ := sealFixture(t)
	key := f.createKey(t, CreateKeyInput{Description: "worn on two replicas"})
	if _, err := f.svc.rotate(systemContext(t.Context()), key, rotationAutomatic); err != nil { // A's
		t.Fatal(err)
	}
	f.svc.seals.rotateWorn(versionRef{keyID: key, number: 1}) // B's, late
	if rs := waitRotations(t, f.svc, key, 1); len(rs) != 1 {
		t.Fatalf("%d rotations, want 1", len(rs))
	}
	if k, _ := f.svc.keyRecord(t.Context(), key); k.LatestVersion != 2 || k.CurrentVersion != 2 {
		t.Errorf("key at latest %d, current %d; want 2, 2", k.LatestVersion, k.CurrentVersion)
	}
	// A worn version that is still the newest is rotated.
	f.svc.seals.rotateWorn(versionRef{keyID: key, number: 2})
	if k, _ := f.svc.keyRecord(t.Context(), key); k.LatestVersion != 3 || k.CurrentVersion != 3 {
		t.Errorf("after version 2 wore out: latest %d, current %d; want 3, 3", k.LatestVersion, k.CurrentVersion)
	}
}
