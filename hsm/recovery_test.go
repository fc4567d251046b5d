package hsm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/softhsm"
	"github.com/miekg/pkcs11"
)

// recoverInterval is the least time between two recovery attempts in these
// tests: small, so that a test waits for recovery milliseconds, not seconds.
const recoverInterval = 10 * time.Millisecond

// hangLimit bounds how long a test waits for a state or for a call that must
// not hang. It is a guard against hangs, not a timing measurement: the
// states come within milliseconds.
const hangLimit = 10 * time.Second

// recAAD is the AAD of every seal in these tests.
var recAAD = []byte("hsmkms recovery test header")

// addOwnToken adds a SoftHSM2 token of the test's own to the package's
// store (soft.AddTestToken), whatever the implementation under test.
func addOwnToken(t *testing.T, prefix string) *softhsm.Token {
	t.Helper()
	loadEnvModuleFirst(t)
	return soft.AddTestToken(t, prefix)
}

// envModuleLoaded is done once the module under test was loaded.
var envModuleLoaded sync.Once

// loadEnvModuleFirst loads, initialises and unloads the module under test
// once, before a test loads SoftHSM2 into the process. openCryptoki 3.8.1
// needs it: its C_Initialize loads the STDLL of every configured slot, the
// TPM one (libpkcs11_tpm.so) among them, which runs a GCC transactional
// memory block (libitm) in ST_Initialize; in a process that loaded and
// unloaded SoftHSM2 (C++) before it first loaded openCryptoki, the second
// load and C_Initialize of openCryptoki dies there with SIGSEGV. Loaded
// first, it does not (C_Finalize and C_Initialize on the loaded library,
// what recovery does, never did).
func loadEnvModuleFirst(t testing.TB) {
	t.Helper()
	if env.Impl == "softhsm2" {
		return
	}
	envModuleLoaded.Do(func() {
		m, err := OpenModule(moduleConfig())
		if err != nil {
			t.Fatalf("OpenModule: %v", err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}

// ownTokenConfig points a Config at an own SoftHSM2 token, whatever the
// implementation under test, and makes recovery fast. SoftHSM2 takes no
// initialisation parameters (it refuses a non-NULL pReserved), so those of
// the implementation under test are dropped.
func ownTokenConfig(own *softhsm.Token) func(*Config) {
	return func(c *Config) {
		c.ModulePath, c.InitParams, c.TokenLabel, c.PIN = own.ModulePath, "", own.Label, NewPIN(own.PIN)
		c.RecoverInterval = recoverInterval
	}
}

// waitFor polls cond every few milliseconds until it holds, failing the
// test after hangLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", hangLimit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitReady waits until tok reports itself ready and returns its health.
func waitReady(t *testing.T, tok *Token) Health {
	t.Helper()
	waitFor(t, "the token to become ready", func() bool { return tok.Health().Ready })
	return tok.Health()
}

// returnsWithin runs fn and fails the test if it has not returned after d.
// fn must not call t's Fatal methods.
func returnsWithin(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// freshIV returns a new random IV. crypto/rand does not fail (since Go
// 1.24), so it is safe to call from any goroutine.
func freshIV() []byte {
	iv, err := NewIV()
	if err != nil {
		panic(err)
	}
	return iv
}

// sealRoundTrip seals a fresh plaintext under id with the token's data-key
// mechanism (id as newDataKeyKey makes it) and checks that it unseals.
func sealRoundTrip(t *testing.T, tok *Token, id ObjectID) {
	t.Helper()
	pt := []byte("a value sealed after the event")
	iv, sealed, err := sealAny(t.Context(), tok, id, recAAD, pt)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	got, err := unsealAny(t.Context(), tok, id, iv, recAAD, sealed)
	if err != nil {
		t.Fatalf("unseal: %v", err)
	}
	if !bytes.Equal(got, pt) {
		t.Fatalf("Unseal = %q, want %q", got, pt)
	}
}

// errorKinds are the kinds an *Error has, exactly one each.
var errorKinds = []error{ErrInvalidInput, ErrInvalidCiphertext, ErrKeyNotFound, ErrDuplicateKey, ErrUnavailable,
	ErrInvalidSignature, ErrMechanismUnsupported, ErrPoolExhausted, ErrLogin, ErrClosed, ErrToken}

// wantErrKind fails the test unless err is an *Error of kind, and of no
// other kind.
func wantErrKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	var e *Error
	if !errors.Is(err, kind) || !errors.As(err, &e) {
		t.Fatalf("%s: err = %v, want an *Error of kind %q", what, err, kind)
	}
	for _, k := range errorKinds {
		if k != kind && errors.Is(err, k) {
			t.Fatalf("%s: err = %v is of kind %q too, want %q only", what, err, k, kind)
		}
	}
}

// counts snapshots the call counts of methods.
func counts(f *faulty, methods []string) map[string]int {
	m := make(map[string]int, len(methods))
	for _, name := range methods {
		m[name] = f.count(name)
	}
	return m
}

// TestVanishedTokenRecovers proves that a token whose directory is moved
// away while in use is detected by the first call of each kind (which fails
// with ErrUnavailable, promptly), that the Token then reports itself not
// ready and fails every call without calling the module, and that once the
// directory is back it recovers by itself (no restart): data sealed and
// wrapped before the loss opens again and new seals work, Recoveries == 1.
func TestVanishedTokenRecovers(t *testing.T) {
	own := addOwnToken(t, "vanish")
	// The kinds of call that first meet the vanished token.
	detectors := []struct {
		name string
		call func(t *testing.T, tok *Token, id ObjectID, sealed []byte) error
	}{
		{"seal", func(t *testing.T, tok *Token, id ObjectID, _ []byte) error {
			_, err := tok.Seal(t.Context(), id, freshIV(), recAAD, []byte("x"))
			return err
		}},
		{"unseal", func(t *testing.T, tok *Token, id ObjectID, sealed []byte) error {
			_, err := tok.Unseal(t.Context(), id, sealIV, recAAD, sealed)
			return err
		}},
		{"has key", func(t *testing.T, tok *Token, id ObjectID, _ []byte) error {
			found, err := tok.HasKey(t.Context(), id)
			if err == nil {
				t.Errorf("HasKey on a vanished token = %v, nil; want an error, never a plain answer", found)
			}
			return err
		}},
		{"wrap data key", func(t *testing.T, tok *Token, id ObjectID, _ []byte) error {
			_, _, err := tok.WrapDataKey(t.Context(), id, 32)
			return err
		}},
	}
	for _, d := range detectors {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			tok, f := openFaulty(t, ownTokenConfig(own))
			id := newMasterKey(t, tok)
			info0, err := tok.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pt := []byte("sealed before the token vanished")
			sealed, err := tok.Seal(ctx, id, sealIV, recAAD, pt)
			if err != nil {
				t.Fatal(err)
			}
			dk, wrapped, err := tok.WrapDataKey(ctx, id, 32)
			if err != nil {
				t.Fatal(err)
			}

			back := own.MoveAway(t)
			var callErr error
			returnsWithin(t, hangLimit, "the first call after the loss", func() {
				callErr = d.call(t, tok, id, sealed)
			})
			wantErrKind(t, "first call after the loss", callErr, ErrUnavailable)
			t.Logf("first call: %v", callErr)
			h := tok.Health()
			if h.Ready || h.Reason == "" {
				t.Fatalf("Health after the loss = %+v, want not ready with a reason", h)
			}

			// While unavailable, calls fail fast and never reach the module.
			module := []string{"EncryptInit", "DecryptInit", "FindObjectsInit", "GenerateRandom", "GenerateKey", "UnwrapKey", "OpenSession"}
			before := counts(f, module)
			fastFail := []struct {
				name string
				call func() error
			}{
				{"seal", func() error { _, err := tok.Seal(ctx, id, freshIV(), recAAD, pt); return err }},
				{"unseal", func() error { _, err := tok.Unseal(ctx, id, sealIV, recAAD, sealed); return err }},
				{"seal data key", func() error { _, _, err := tok.SealDataKey(ctx, id, 32, freshIV(), recAAD); return err }},
				{"wrap data key", func() error { _, _, err := tok.WrapDataKey(ctx, id, 32); return err }},
				{"unwrap data key", func() error { _, err := tok.UnwrapDataKey(ctx, id, wrapped); return err }},
				{"generate random", func() error { _, err := tok.GenerateRandom(ctx, 16); return err }},
				{"has key", func() error { _, err := tok.HasKey(ctx, id); return err }},
				{"create master key", func() error {
					nid, _ := NewObjectID()
					return tok.CreateMasterKey(ctx, nid, "hsmkms/test/unavailable")
				}},
			}
			for _, c := range fastFail {
				wantErrKind(t, "while unavailable: "+c.name, c.call(), ErrUnavailable)
			}
			if after := counts(f, module); !mapsEqual(before, after) {
				t.Fatalf("calls made while unavailable reached the module: counts %v, then %v", before, after)
			}
			if h := tok.Health(); h.Ready {
				t.Fatalf("Health while the directory is away = %+v, want not ready", h)
			}
			t.Logf("health while away: %+v", tok.Health())

			back()
			h = waitReady(t, tok)
			if h.Recoveries != 1 || h.Reason != "" {
				t.Fatalf("Health after recovery = %+v, want ready, no reason, 1 recovery", h)
			}
			info, err := tok.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Label != info0.Label || info.Serial != info0.Serial {
				t.Fatalf("recovered onto %q/%q, want the same token %q/%q", info.Label, info.Serial, info0.Label, info0.Serial)
			}
			got, err := tok.Unseal(ctx, id, sealIV, recAAD, sealed)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("Unseal of a value sealed before the loss = %q, %v; want %q", got, err, pt)
			}
			gotDK, err := tok.UnwrapDataKey(ctx, id, wrapped)
			if err != nil || !bytes.Equal(gotDK, dk) {
				t.Fatalf("UnwrapDataKey of a key wrapped before the loss = %x, %v; want %x", gotDK, err, dk)
			}
			sealRoundTrip(t, tok, id)
			if st := tok.PoolStats(); st.InUse != 0 {
				t.Fatalf("PoolStats after recovery = %+v, want nothing in use", st)
			}
		})
	}
}

// sealIV is a fixed IV for values sealed once per test; fresh seals use freshIV.
var sealIV = bytes.Repeat([]byte{7}, IVSize)

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestReinitTokenRecovers proves that a token deleted and re-created with
// the same label by another process (softhsm2-util) makes calls fail with
// ErrUnavailable, and that the Token then recovers onto the new token (same
// label, new serial) by itself: the old key IDs are reported as
// ErrKeyNotFound (without sending the Token back into recovery), and a new
// master key works.
func TestReinitTokenRecovers(t *testing.T) {
	ctx := t.Context()
	own := addOwnToken(t, "reinit")
	tok := openToken(t, ownTokenConfig(own))
	id := newMasterKey(t, tok)
	info0, err := tok.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte("sealed under the old token")
	sealed, err := tok.Seal(ctx, id, sealIV, recAAD, pt)
	if err != nil {
		t.Fatal(err)
	}
	_, wrapped, err := tok.WrapDataKey(ctx, id, 32)
	if err != nil {
		t.Fatal(err)
	}

	if err := own.Reinit(ctx); err != nil {
		t.Fatalf("Reinit: %v", err)
	}
	var sealErr error
	returnsWithin(t, hangLimit, "Seal after the re-init", func() {
		_, sealErr = tok.Seal(ctx, id, freshIV(), recAAD, pt)
	})
	wantErrKind(t, "Seal after the re-init", sealErr, ErrUnavailable)
	t.Logf("first call after re-init: %v", sealErr)

	h := waitReady(t, tok)
	if h.Recoveries != 1 {
		t.Fatalf("Health after recovery = %+v, want 1 recovery", h)
	}
	info, err := tok.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Label != info0.Label || info.Serial == info0.Serial {
		t.Fatalf("recovered onto %q serial %q; want label %q with a new serial (old %q)", info.Label, info.Serial, info0.Label, info0.Serial)
	}

	iv := freshIV()
	oldKey := []struct {
		name string
		call func() error
	}{
		{"seal", func() error { _, err := tok.Seal(ctx, id, iv, recAAD, pt); return err }},
		{"unseal", func() error { _, err := tok.Unseal(ctx, id, sealIV, recAAD, sealed); return err }},
		{"seal data key", func() error { _, _, err := tok.SealDataKey(ctx, id, 32, iv, recAAD); return err }},
		{"wrap data key", func() error { _, _, err := tok.WrapDataKey(ctx, id, 32); return err }},
		{"unwrap data key", func() error { _, err := tok.UnwrapDataKey(ctx, id, wrapped); return err }},
		{"destroy key", func() error { return tok.DestroyKey(ctx, id) }},
	}
	for _, c := range oldKey {
		t.Run("old key/"+c.name, func(t *testing.T) {
			wantErrKind(t, c.name, c.call(), ErrKeyNotFound)
		})
	}
	if found, err := tok.HasKey(ctx, id); err != nil || found {
		t.Fatalf("HasKey(old key) = %v, %v; want false, nil", found, err)
	}
	if h := tok.Health(); !h.Ready || h.Recoveries != 1 {
		t.Fatalf("Health after old-key lookups = %+v, want still ready with 1 recovery", h)
	}
	sealRoundTrip(t, tok, newMasterKey(t, tok))
}

// dataMech is one of the mechanisms that protect data keys, as the fault
// tests drive it: how to make its key, seal and unseal, and which counted
// module calls one seal and one unseal make, in order.
type dataMech struct {
	feature string // as Features names it
	// keys is the number of token objects one operation uses (and
	// re-finds when a handle goes stale).
	keys                   int
	sealCalls, unsealCalls []string
	newKey                 func(t testing.TB, tok *Token) ObjectID
	newIV                  func() []byte
	seal                   func(ctx context.Context, tok *Token, id ObjectID, iv, pt []byte) ([]byte, error)
	unseal                 func(ctx context.Context, tok *Token, id ObjectID, iv, sealed []byte) ([]byte, error)
}

// dataMechs are aes-gcm and the portable aes-cbc-hmac; tests run each the
// token has and assert that the others are refused.
var dataMechs = []dataMech{
	{feature: "aes-gcm", keys: 1,
		sealCalls: []string{"EncryptInit", "Encrypt"}, unsealCalls: []string{"DecryptInit", "Decrypt"},
		newKey: newMasterKey, newIV: freshIV,
		seal: func(ctx context.Context, tok *Token, id ObjectID, iv, pt []byte) ([]byte, error) {
			return tok.Seal(ctx, id, iv, recAAD, pt)
		},
		unseal: func(ctx context.Context, tok *Token, id ObjectID, iv, sealed []byte) ([]byte, error) {
			return tok.Unseal(ctx, id, iv, recAAD, sealed)
		}},
	// The AES key and the HMAC key; C_Sign under the latter both ways
	// (unseal compares the MAC itself: see UnsealPortable).
	{feature: "aes-cbc-hmac", keys: 2,
		sealCalls:   []string{"EncryptInit", "Encrypt", "SignInit", "Sign"},
		unsealCalls: []string{"SignInit", "Sign", "DecryptInit", "Decrypt"},
		newKey:      newPortableKey, newIV: freshCBCIV,
		seal: func(ctx context.Context, tok *Token, id ObjectID, iv, pt []byte) ([]byte, error) {
			return tok.SealPortable(ctx, id, iv, recAAD, nil, pt)
		},
		unseal: func(ctx context.Context, tok *Token, id ObjectID, iv, sealed []byte) ([]byte, error) {
			return tok.UnsealPortable(ctx, id, iv, recAAD, nil, sealed)
		}},
}

// freshCBCIV is freshIV for the portable mechanism.
func freshCBCIV() []byte {
	iv, err := NewCBCIV()
	if err != nil {
		panic(err)
	}
	return iv
}

// eachDataMech runs fn in a subtest for each data-key mechanism the token
// under test has, after checking that those it lacks are refused with
// ErrMechanismUnsupported before any call reaches the module. The token it
// asks is closed before fn runs: a process opens a module once at a time.
func eachDataMech(t *testing.T, fn func(t *testing.T, dm dataMech)) {
	t.Helper()
	f := newFaulty(nil)
	cfg := testConfig()
	cfg.Wrap = f.wrap
	tok, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var have []dataMech
	for _, dm := range dataMechs {
		if has(tok, dm.feature) {
			have = append(have, dm)
			continue
		}
		t.Run(dm.feature+" unsupported", func(t *testing.T) {
			var id ObjectID
			before := f.total()
			_, err := dm.seal(t.Context(), tok, id, dm.newIV(), []byte("x"))
			wantErrKind(t, "seal", err, ErrMechanismUnsupported)
			_, err = dm.unseal(t.Context(), tok, id, dm.newIV(), make([]byte, 64))
			wantErrKind(t, "unseal", err, ErrMechanismUnsupported)
			if n := f.total() - before; n != 0 {
				t.Errorf("refused calls made %d module calls", n)
			}
		})
	}
	if err := tok.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, dm := range have {
		t.Run(dm.feature, func(t *testing.T) { fn(t, dm) })
	}
}

// faultCase is one fault injected in front of the real module, and what
// the Token must make of it.
type faultCase struct {
	name   string
	faults map[string][]error
	// unseal makes the call an unseal; otherwise it is a seal.
	unseal bool
	// kind is the error kind wanted, nil for success; code the PKCS#11
	// code the error must carry.
	kind error
	code uint
	// recovers: the Token goes unavailable and recovers by itself.
	recovers bool
	// attempts lists how each attempt at the operation ends: at the call
	// named (which failed), or "" for one that ran to the end. With the
	// mechanism's call sequence it gives the calls the operation makes.
	attempts []string
	// refinds is how often the operation's keys are found again by CKA_ID
	// (one C_FindObjectsInit per key each time).
	refinds int
	// calls are the exact increments of the other counted methods; those
	// not named must not be called.
	calls map[string]int
}

// faultCounted are the methods whose calls the fault cases count.
var faultCounted = []string{"EncryptInit", "Encrypt", "DecryptInit", "Decrypt", "SignInit", "Sign", "VerifyInit", "Verify",
	"FindObjectsInit", "OpenSession", "CloseSession", "Login", "GetTokenInfo", "GenerateRandom"}

// wantCalls is the exact increments of faultCounted that tc makes with dm.
func (tc faultCase) wantCalls(t *testing.T, dm dataMech) map[string]int {
	t.Helper()
	seq := dm.sealCalls
	if tc.unseal {
		seq = dm.unsealCalls
	}
	want := map[string]int{}
	for m, n := range tc.calls {
		want[m] += n
	}
	want["FindObjectsInit"] += tc.refinds * dm.keys
	for _, end := range tc.attempts {
		n := len(seq)
		if end != "" {
			if n = slices.Index(seq, end) + 1; n == 0 {
				t.Fatalf("case %q: an attempt ends at %s, which %s does not call", tc.name, end, dm.feature)
			}
		}
		for _, m := range seq[:n] {
			want[m]++
		}
	}
	return want
}

// ck is a PKCS#11 return code as the module returns it.
func ck(code uint) error { return pkcs11.Error(code) }

// faultCases apply to every data-key mechanism: each calls C_EncryptInit,
// C_Encrypt, C_DecryptInit and C_Decrypt.
var faultCases = []faultCase{
	{name: "device removed on Encrypt",
		faults: map[string][]error{"Encrypt": {ck(pkcs11.CKR_DEVICE_REMOVED)}},
		kind:   ErrUnavailable, code: pkcs11.CKR_DEVICE_REMOVED, recovers: true,
		attempts: []string{"Encrypt"}, calls: map[string]int{"CloseSession": 1}},
	{name: "token not present on Encrypt",
		faults: map[string][]error{"Encrypt": {ck(pkcs11.CKR_TOKEN_NOT_PRESENT)}},
		kind:   ErrUnavailable, code: pkcs11.CKR_TOKEN_NOT_PRESENT, recovers: true,
		attempts: []string{"Encrypt"}, calls: map[string]int{"CloseSession": 1}},
	// A broken session is closed (evicted) and the call retried on a new one.
	{name: "session handle invalid on EncryptInit",
		faults:   map[string][]error{"EncryptInit": {ck(pkcs11.CKR_SESSION_HANDLE_INVALID)}},
		attempts: []string{"EncryptInit", ""}, calls: map[string]int{"CloseSession": 1, "OpenSession": 1}},
	{name: "session closed on EncryptInit",
		faults:   map[string][]error{"EncryptInit": {ck(pkcs11.CKR_SESSION_CLOSED)}},
		attempts: []string{"EncryptInit", ""}, calls: map[string]int{"CloseSession": 1, "OpenSession": 1}},
	{name: "operation active on EncryptInit",
		faults:   map[string][]error{"EncryptInit": {ck(pkcs11.CKR_OPERATION_ACTIVE)}},
		attempts: []string{"EncryptInit", ""}, calls: map[string]int{"CloseSession": 1, "OpenSession": 1}},
	// A lost login is restored once: the software tokens, whose login
	// was never lost, answer CKR_USER_ALREADY_LOGGED_IN, taken as success.
	{name: "user not logged in on EncryptInit",
		faults:   map[string][]error{"EncryptInit": {ck(pkcs11.CKR_USER_NOT_LOGGED_IN)}},
		attempts: []string{"EncryptInit", ""}, calls: map[string]int{"Login": 1}},
	// A stale handle is re-found by CKA_ID on the same session.
	{name: "key handle invalid on EncryptInit",
		faults:   map[string][]error{"EncryptInit": {ck(pkcs11.CKR_KEY_HANDLE_INVALID)}},
		attempts: []string{"EncryptInit", ""}, refinds: 1},
	{name: "object handle invalid on EncryptInit",
		faults:   map[string][]error{"EncryptInit": {ck(pkcs11.CKR_OBJECT_HANDLE_INVALID)}},
		attempts: []string{"EncryptInit", ""}, refinds: 1},
	{name: "object handle invalid on DecryptInit",
		faults: map[string][]error{"DecryptInit": {ck(pkcs11.CKR_OBJECT_HANDLE_INVALID)}}, unseal: true,
		attempts: []string{"DecryptInit", ""}, refinds: 1},
	// The same fault twice: one retry only, a typed error, no recovery.
	{name: "session handle invalid twice",
		faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_SESSION_HANDLE_INVALID), ck(pkcs11.CKR_SESSION_HANDLE_INVALID)}},
		kind:   ErrToken, code: pkcs11.CKR_SESSION_HANDLE_INVALID,
		attempts: []string{"EncryptInit", "EncryptInit"}, calls: map[string]int{"CloseSession": 2, "OpenSession": 1}},
	{name: "key handle invalid twice",
		faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_KEY_HANDLE_INVALID), ck(pkcs11.CKR_KEY_HANDLE_INVALID)}},
		kind:   ErrToken, code: pkcs11.CKR_KEY_HANDLE_INVALID,
		attempts: []string{"EncryptInit", "EncryptInit"}, refinds: 1},
	{name: "user not logged in twice",
		faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_USER_NOT_LOGGED_IN), ck(pkcs11.CKR_USER_NOT_LOGGED_IN)}},
		kind:   ErrToken, code: pkcs11.CKR_USER_NOT_LOGGED_IN,
		attempts: []string{"EncryptInit", "EncryptInit"}, calls: map[string]int{"Login": 2}},
	// A PIN refused on re-login is reported and never retried.
	{name: "pin incorrect on re-login",
		faults: map[string][]error{
			"EncryptInit": {ck(pkcs11.CKR_USER_NOT_LOGGED_IN)},
			"Login":       {ck(pkcs11.CKR_PIN_INCORRECT)},
		},
		kind: ErrLogin, code: pkcs11.CKR_PIN_INCORRECT,
		attempts: []string{"EncryptInit"}, calls: map[string]int{"Login": 1}},
	// CKR_GENERAL_ERROR is settled by probing the token.
	{name: "general error on Decrypt, token healthy",
		faults: map[string][]error{"Decrypt": {ck(pkcs11.CKR_GENERAL_ERROR)}}, unseal: true,
		kind: ErrInvalidCiphertext, code: pkcs11.CKR_GENERAL_ERROR,
		attempts: []string{"Decrypt"}, calls: map[string]int{"GetTokenInfo": 1}},
	// A token that is gone answers every C_GetTokenInfo so; one answer
	// (another SoftHSM2 process rewriting the token file) is asked again.
	{name: "general error on Decrypt, token gone",
		faults: map[string][]error{
			"Decrypt":      {ck(pkcs11.CKR_GENERAL_ERROR)},
			"GetTokenInfo": slices.Repeat([]error{ck(pkcs11.CKR_GENERAL_ERROR)}, 1+len(tokenInfoRetries)),
		}, unseal: true,
		kind: ErrUnavailable, code: pkcs11.CKR_GENERAL_ERROR, recovers: true,
		attempts: []string{"Decrypt"}, calls: map[string]int{"GetTokenInfo": 1 + len(tokenInfoRetries), "CloseSession": 1}},
	{name: "general error on Decrypt, token busy a moment",
		faults: map[string][]error{
			"Decrypt":      {ck(pkcs11.CKR_GENERAL_ERROR)},
			"GetTokenInfo": {ck(pkcs11.CKR_GENERAL_ERROR)},
		}, unseal: true,
		kind: ErrInvalidCiphertext, code: pkcs11.CKR_GENERAL_ERROR,
		attempts: []string{"Decrypt"}, calls: map[string]int{"GetTokenInfo": 2}},
}

// macFaultCases are faults in the portable mechanism's HMAC calls, under
// its second key.
var macFaultCases = []faultCase{
	// A stale HMAC key handle drops both of the version's handles.
	{name: "key handle invalid on SignInit",
		faults:   map[string][]error{"SignInit": {ck(pkcs11.CKR_KEY_HANDLE_INVALID)}},
		attempts: []string{"SignInit", ""}, refinds: 1},
	{name: "key handle invalid on SignInit, unsealing",
		faults: map[string][]error{"SignInit": {ck(pkcs11.CKR_KEY_HANDLE_INVALID)}}, unseal: true,
		attempts: []string{"SignInit", ""}, refinds: 1},
	{name: "session handle invalid on Sign",
		faults:   map[string][]error{"Sign": {ck(pkcs11.CKR_SESSION_HANDLE_INVALID)}},
		attempts: []string{"Sign", ""}, calls: map[string]int{"CloseSession": 1, "OpenSession": 1}},
	{name: "device removed on Sign, unsealing",
		faults: map[string][]error{"Sign": {ck(pkcs11.CKR_DEVICE_REMOVED)}}, unseal: true,
		kind: ErrUnavailable, code: pkcs11.CKR_DEVICE_REMOVED, recovers: true,
		attempts: []string{"Sign"}, calls: map[string]int{"CloseSession": 1}},
	// The token is probed, and healthy, so the input is to blame.
	{name: "general error on Sign, unsealing, token healthy",
		faults: map[string][]error{"Sign": {ck(pkcs11.CKR_GENERAL_ERROR)}}, unseal: true,
		kind: ErrInvalidCiphertext, code: pkcs11.CKR_GENERAL_ERROR,
		attempts: []string{"Sign"}, calls: map[string]int{"GetTokenInfo": 1}},
}

// TestFaultInjection drives the error handling of do/settle with the
// return codes real HSMs produce and the software tokens never do,
// injected in front of the real module, for each data-key mechanism the
// token has (those it lacks are refused up front). Each case proves the
// outcome (success or the typed error and its PKCS#11 code), exactly which
// module calls the attempt made (evictions, re-logins, re-finds), whether
// the Token went into recovery (and then came back by itself, failing fast
// meanwhile), and that the Token works afterwards with no session left
// borrowed.
func TestFaultInjection(t *testing.T) {
	eachDataMech(t, func(t *testing.T, dm dataMech) {
		cases := faultCases
		if dm.keys > 1 {
			cases = append(slices.Clone(cases), macFaultCases...)
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { runFaultCase(t, dm, tc) })
		}
	})
}

// runFaultCase runs one fault case on dm.
func runFaultCase(t *testing.T, dm dataMech, tc faultCase) {
	ctx := t.Context()
	tok, f := openFaulty(t, func(c *Config) { c.RecoverInterval = recoverInterval })
	id := dm.newKey(t, tok)
	pt := []byte("fault injection plaintext")
	// Warm up: the handles are cached and one idle session is open.
	warmIV := dm.newIV()
	sealed, err := dm.seal(ctx, tok, id, warmIV, pt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dm.unseal(ctx, tok, id, warmIV, sealed); err != nil {
		t.Fatal(err)
	}
	if st := tok.PoolStats(); st.Open != 1 || st.InUse != 0 {
		t.Fatalf("PoolStats after warm-up = %+v, want 1 open, 0 in use", st)
	}
	// Recovery stops at C_Initialize until released, so the unavailable
	// state can be observed.
	gate := f.setGate("Initialize")
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	inits := f.count("Initialize")

	want := tc.wantCalls(t, dm)
	before := counts(f, faultCounted)
	for method, errs := range tc.faults {
		f.inject(method, errs...)
	}
	iv := dm.newIV()
	var out []byte
	returnsWithin(t, hangLimit, "the call", func() {
		if tc.unseal {
			out, err = dm.unseal(ctx, tok, id, warmIV, sealed)
		} else {
			out, err = dm.seal(ctx, tok, id, iv, pt)
		}
	})
	after := counts(f, faultCounted)
	for _, m := range faultCounted {
		if got := after[m] - before[m]; got != want[m] {
			t.Errorf("%s called %d times during the call, want %d", m, got, want[m])
		}
	}
	for method := range tc.faults {
		if n := f.pending(method); n != 0 {
			t.Errorf("%d injected %s faults left unused", n, method)
		}
	}

	if tc.kind == nil {
		if err != nil {
			t.Fatalf("call failed: %v; want a transparent retry", err)
		}
		if tc.unseal && !bytes.Equal(out, pt) {
			t.Fatalf("unseal = %q, want %q", out, pt)
		}
		if !tc.unseal {
			got, err := dm.unseal(ctx, tok, id, iv, out)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("unseal of the retried seal = %q, %v; want %q", got, err, pt)
			}
		}
	} else {
		wantErrKind(t, "the call", err, tc.kind)
		var code pkcs11.Error
		if !errors.As(err, &code) || uint(code) != tc.code {
			t.Fatalf("err = %v carries code %v, want %v", err, code, pkcs11.Error(tc.code))
		}
		if out != nil {
			t.Fatalf("a failed call returned %x", out)
		}
	}

	h := tok.Health()
	if tc.recovers {
		if h.Ready || h.Reason == "" {
			t.Fatalf("Health after a device error = %+v, want not ready with a reason", h)
		}
		// Counted calls only: the recovery loop calls C_Initialize meanwhile.
		calls := counts(f, faultCounted)
		_, err := dm.seal(ctx, tok, id, dm.newIV(), pt)
		wantErrKind(t, "seal while recovering", err, ErrUnavailable)
		if now := counts(f, faultCounted); !mapsEqual(calls, now) {
			t.Fatalf("seal while recovering reached the module: %v, then %v (want fail fast)", calls, now)
		}
		release()
		h = waitReady(t, tok)
		if h.Recoveries != 1 || h.Reason != "" {
			t.Fatalf("Health after recovery = %+v, want ready with 1 recovery", h)
		}
		if n := f.count("Initialize") - inits; n != 1 {
			t.Fatalf("recovery initialised the module %d times, want 1", n)
		}
	} else {
		if !h.Ready || h.Recoveries != 0 {
			t.Fatalf("Health = %+v, want ready with no recovery", h)
		}
		if n := f.count("Initialize") - inits; n != 0 {
			t.Fatalf("the module was re-initialised %d times, want 0", n)
		}
	}
	iv = dm.newIV()
	if again, err := dm.seal(ctx, tok, id, iv, pt); err != nil {
		t.Fatalf("seal afterwards: %v", err)
	} else if got, err := dm.unseal(ctx, tok, id, iv, again); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("unseal afterwards = %q, %v; want %q", got, err, pt)
	}
	if got, err := dm.unseal(ctx, tok, id, warmIV, sealed); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("unseal of the warm-up value afterwards = %q, %v; want %q", got, err, pt)
	}
	if st := tok.PoolStats(); st.InUse != 0 || st.Open > st.Size {
		t.Fatalf("PoolStats afterwards = %+v, want nothing in use", st)
	}
}

// TestOpenFailures proves that Open reports a refused PIN as ErrLogin (with
// the token's code) and a missing token as ErrUnavailable naming what was
// asked for, and that a failed Open leaves the module finalised: the next
// Open in the process succeeds.
func TestOpenFailures(t *testing.T) {
	cases := []struct {
		name    string
		change  func(*Config)
		kind    error
		code    uint // 0: no PKCS#11 code required
		mention string
	}{
		{"wrong PIN", func(c *Config) { c.PIN = NewPIN("999999") }, ErrLogin, pkcs11.CKR_PIN_INCORRECT, env.Label},
		{"unknown label", func(c *Config) { c.TokenLabel = "no-such-token-label" }, ErrUnavailable, 0, "no-such-token-label"},
		{"unknown serial", func(c *Config) { c.TokenSerial = "0000111122223333" }, ErrUnavailable, 0, "0000111122223333"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.change(&cfg)
			var tok *Token
			var err error
			returnsWithin(t, hangLimit, "Open", func() { tok, err = Open(t.Context(), cfg) })
			if err == nil {
				tok.Close()
				t.Fatal("Open succeeded")
			}
			wantErrKind(t, "Open", err, tc.kind)
			if tc.code != 0 {
				var code pkcs11.Error
				if !errors.As(err, &code) || uint(code) != tc.code {
					t.Fatalf("Open: err = %v, want code %v", err, pkcs11.Error(tc.code))
				}
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("Open: err = %q, want it to name %q", err, tc.mention)
			}
			if strings.Contains(err.Error(), env.PIN) || strings.Contains(err.Error(), "999999") {
				t.Fatalf("Open: err = %q shows a PIN", err)
			}
			// The failed Open finalised the module: opening again works.
			// (It also logs in, which resets the token's count of failed
			// logins: openCryptoki locks the PIN after three in a row.)
			good := openToken(t)
			sealRoundTrip(t, good, newDataKeyKey(t, good))
		})
	}
}

// TestCloseWhileRecovering proves that Close returns while the recovery loop
// keeps failing (the token's directory is gone), that calls made after it
// fail with ErrClosed rather than ErrUnavailable, and that a second Close is
// harmless.
func TestCloseWhileRecovering(t *testing.T) {
	ctx := t.Context()
	own := addOwnToken(t, "closerec")
	tok := openToken(t, ownTokenConfig(own))
	id := newMasterKey(t, tok)
	sealRoundTrip(t, tok, id)

	own.MoveAway(t)
	_, err := tok.Seal(ctx, id, freshIV(), recAAD, []byte("x"))
	wantErrKind(t, "Seal after the loss", err, ErrUnavailable)
	// The loop has run and failed at least once: its reason names the token.
	waitFor(t, "a failed recovery attempt", func() bool {
		return strings.Contains(tok.Health().Reason, "no token labelled")
	})

	var closeErr error
	returnsWithin(t, hangLimit, "Close while recovering", func() { closeErr = tok.Close() })
	if closeErr != nil {
		t.Fatalf("Close: %v", closeErr)
	}
	_, err = tok.Seal(ctx, id, freshIV(), recAAD, []byte("x"))
	wantErrKind(t, "Seal after Close", err, ErrClosed)
	if err := tok.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCallsAfterClose proves that every operation on a closed Token fails
// with ErrClosed, without a panic and without calling the module, and that
// Close is idempotent. An operation whose mechanism the token lacks fails
// as it did before Close, with ErrMechanismUnsupported: that is known
// without the token.
func TestCallsAfterClose(t *testing.T) {
	ctx := t.Context()
	tok, f := openFaulty(t)
	// Keys and values of each feature the token has, made before Close;
	// for the others, values of the right size that never reach a token.
	master := newMasterKey(t, tok)
	var (
		portable        ObjectID
		sealed, psealed = make([]byte, 32), make([]byte, 48)
		wrapped         = make([]byte, 40)
		err             error
	)
	if has(tok, "aes-gcm") {
		if sealed, err = tok.Seal(ctx, master, sealIV, recAAD, []byte("sealed before Close")); err != nil {
			t.Fatal(err)
		}
	}
	pIV := freshCBCIV()
	if has(tok, "aes-cbc-hmac") {
		portable = newPortableKey(t, tok)
		if psealed, err = tok.SealPortable(ctx, portable, pIV, recAAD, nil, []byte("sealed before Close")); err != nil {
			t.Fatal(err)
		}
	}
	if has(tok, "aes-kw") {
		if _, wrapped, err = tok.WrapDataKey(ctx, master, 32); err != nil {
			t.Fatal(err)
		}
	}
	// A key pair of a kind the token makes.
	spec, alg := ECP256, ECDSASHA256
	if !has(tok, "ecdsa") {
		spec, alg = RSA2048, RSAPKCS1SHA256
	}
	pair, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.CreateKeyPair(ctx, pair, "hsmkms/test/closed-pair", spec); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("signed after Close"))
	sig, err := tok.Sign(ctx, pair, alg, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	every := []string{"OpenSession", "CloseSession", "Login", "GetTokenInfo", "FindObjectsInit", "EncryptInit",
		"Encrypt", "DecryptInit", "Decrypt", "GenerateRandom", "GenerateKey", "WrapKey", "UnwrapKey", "SignInit",
		"Sign", "VerifyInit", "Verify", "Initialize", "GetMechanismList"}
	before := counts(f, every)
	nid, _ := NewObjectID()
	iv := freshIV()

	calls := []struct {
		name    string
		feature string // the feature the call needs, "" for none
		call    func() error
	}{
		{"seal", "aes-gcm", func() error { _, err := tok.Seal(ctx, master, iv, recAAD, []byte("x")); return err }},
		{"unseal", "aes-gcm", func() error { _, err := tok.Unseal(ctx, master, sealIV, recAAD, sealed); return err }},
		{"seal data key", "aes-gcm", func() error { _, _, err := tok.SealDataKey(ctx, master, 32, iv, recAAD); return err }},
		{"wrap data key", "aes-kw", func() error { _, _, err := tok.WrapDataKey(ctx, master, 32); return err }},
		{"unwrap data key", "aes-kw", func() error { _, err := tok.UnwrapDataKey(ctx, master, wrapped); return err }},
		{"create portable key", "aes-cbc-hmac", func() error { return tok.CreatePortableKey(ctx, nid, "hsmkms/test/closed") }},
		{"seal portable", "aes-cbc-hmac", func() error {
			_, err := tok.SealPortable(ctx, portable, freshCBCIV(), recAAD, nil, []byte("x"))
			return err
		}},
		{"seal data key portable", "aes-cbc-hmac", func() error {
			_, _, err := tok.SealDataKeyPortable(ctx, portable, 32, freshCBCIV(), recAAD, nil)
			return err
		}},
		{"unseal portable", "aes-cbc-hmac", func() error {
			_, err := tok.UnsealPortable(ctx, portable, pIV, recAAD, nil, psealed)
			return err
		}},
		{"generate random", "", func() error { _, err := tok.GenerateRandom(ctx, 16); return err }},
		{"has key", "", func() error { _, err := tok.HasKey(ctx, master); return err }},
		{"create master key", "", func() error { return tok.CreateMasterKey(ctx, nid, "hsmkms/test/closed") }},
		{"create EC key pair", "ecdsa", func() error { _, err := tok.CreateKeyPair(ctx, nid, "hsmkms/test/closed", ECP256); return err }},
		{"create RSA key pair", "rsa", func() error { _, err := tok.CreateKeyPair(ctx, nid, "hsmkms/test/closed", RSA2048); return err }},
		{"destroy key", "", func() error { return tok.DestroyKey(ctx, master) }},
		{"public key", "", func() error { _, err := tok.PublicKey(ctx, pair); return err }},
		{"sign", "", func() error { _, err := tok.Sign(ctx, pair, alg, digest[:]); return err }},
		{"verify", "", func() error { return tok.Verify(ctx, pair, alg, digest[:], sig) }},
		{"info", "", func() error { _, err := tok.Info(ctx); return err }},
		{"mechanisms", "", func() error { _, err := tok.Mechanisms(ctx); return err }},
		{"objects", "", func() error { _, err := tok.Objects(ctx); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			want := ErrClosed
			if c.feature != "" && !has(tok, c.feature) {
				want = ErrMechanismUnsupported
			}
			wantErrKind(t, c.name+" after Close", c.call(), want)
		})
	}
	if after := counts(f, every); !mapsEqual(before, after) {
		t.Fatalf("calls after Close reached the module: counts %v, then %v", before, after)
	}
	if st := tok.PoolStats(); st.Open != 0 || st.InUse != 0 {
		t.Fatalf("PoolStats after Close = %+v, want nothing open", st)
	}
	if err := tok.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCloseDuringFailingCall proves that a device error met by a call that
// was already in flight when Close began does not make the recovery loop
// re-initialise the module behind Close (after Close finalised and unloaded
// it, C_Initialize on the freed library would crash the process): the call
// fails with ErrUnavailable, Close returns, and C_Initialize is never called
// again. Several rounds, since the loop's start races Close.
func TestCloseDuringFailingCall(t *testing.T) {
	for round := range 20 {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			ctx := t.Context()
			tok, f := openFaulty(t, func(c *Config) { c.RecoverInterval = recoverInterval })
			id := newDataKeyKey(t, tok)
			sealRoundTrip(t, tok, id)

			// Both data-key mechanisms call C_Encrypt once.
			f.inject("Encrypt", pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED))
			gate := f.setGate("Encrypt")
			release := sync.OnceFunc(func() { close(gate) })
			t.Cleanup(release)
			encrypts, inits := f.count("Encrypt"), f.count("Initialize")
			sealErr := make(chan error, 1)
			go func() {
				_, _, err := sealAny(ctx, tok, id, recAAD, []byte("in flight"))
				sealErr <- err
			}()
			waitFor(t, "the call to reach C_Encrypt", func() bool { return f.count("Encrypt") == encrypts+1 })

			closeErr := make(chan error, 1)
			go func() { closeErr <- tok.Close() }()
			waitFor(t, "Close to begin", func() bool {
				select {
				case <-tok.closing:
					return true
				default:
					return false
				}
			})
			release()
			var err error
			returnsWithin(t, hangLimit, "the in-flight call", func() { err = <-sealErr })
			wantErrKind(t, "the in-flight call", err, ErrUnavailable)
			returnsWithin(t, hangLimit, "Close", func() { err = <-closeErr })
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			returnsWithin(t, hangLimit, "the recovery loop", tok.wg.Wait)
			if n := f.count("Initialize") - inits; n != 0 {
				t.Fatalf("C_Initialize was called %d times after Close began, want 0", n)
			}
			_, _, err = sealAny(ctx, tok, id, recAAD, []byte("x"))
			wantErrKind(t, "seal after Close", err, ErrClosed)
		})
	}
}

// TestReindex proves that Reindex re-initialises the module once per
// ReindexInterval, and that keys and operations work after it.
func TestReindex(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	id := newMasterKey(t, tok)
	inits := f.count("Initialize")
	if err := tok.Reindex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.count("Initialize"); got != inits+1 {
		t.Fatalf("C_Initialize ran %d times on Reindex, want 1", got-inits)
	}
	if err := tok.Reindex(ctx); err != nil || f.count("Initialize") != inits+1 {
		t.Fatalf("a second Reindex within the interval: %v, %d C_Initialize", err, f.count("Initialize")-inits)
	}
	if ok, err := tok.HasKey(ctx, id); !ok || err != nil {
		t.Fatalf("HasKey after Reindex = %v, %v", ok, err)
	}
	if _, err := tok.GenerateRandom(ctx, 16); err != nil {
		t.Fatalf("GenerateRandom after Reindex: %v", err)
	}
	if h := tok.Health(); !h.Ready {
		t.Fatalf("Health after Reindex = %+v", h)
	}
}

// TestReindexBehindAStalledCall: a re-read that cannot start because a
// call in flight does not return gives up when its context ends (found by
// review: it waited in RWMutex.Lock for the stalled call, and every later
// call parked behind it at RLock, whatever its deadline). Once the stalled
// call returns, a re-read runs: giving up did not spend the interval.
func TestReindexBehindAStalledCall(t *testing.T) {
	tok, f, _, release, held := holdOnlySession(t, time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	returned := make(chan struct{})
	go func() {
		// Only if Reindex waits for the stalled call (as it did) is the
		// call let go without it, so that the test ends.
		select {
		case <-returned:
		case <-time.After(10 * time.Second):
			release()
		}
	}()
	err := tok.Reindex(ctx)
	close(returned)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reindex behind a stalled call: %v, want it to give up with context.DeadlineExceeded", err)
	}
	release()
	if err := <-held; err != nil {
		t.Fatalf("the stalled call: %v", err)
	}
	inits := f.count("Initialize")
	if err := tok.Reindex(t.Context()); err != nil || f.count("Initialize") != inits+1 {
		t.Fatalf("Reindex after the stall: %v, %d C_Initialize, want one", err, f.count("Initialize")-inits)
	}
}
