package hsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
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

// ownTokenConfig points a Config at an own token and makes recovery fast.
func ownTokenConfig(own *softhsm.Token) func(*Config) {
	return func(c *Config) {
		c.ModulePath, c.TokenLabel, c.PIN = own.ModulePath, own.Label, NewPIN(softhsm.TestPIN)
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

// sealRoundTrip seals a fresh plaintext under id and checks that it unseals.
func sealRoundTrip(t *testing.T, tok *Token, id ObjectID) {
	t.Helper()
	pt := []byte("a value sealed after the event")
	iv := freshIV()
	sealed, err := tok.Seal(t.Context(), id, iv, recAAD, pt)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	got, err := tok.Unseal(t.Context(), id, iv, recAAD, sealed)
	if err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if !bytes.Equal(got, pt) {
		t.Fatalf("Unseal = %q, want %q", got, pt)
	}
}

// wantErrKind fails the test unless err is an *Error of kind.
func wantErrKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	var e *Error
	if !errors.Is(err, kind) || !errors.As(err, &e) {
		t.Fatalf("%s: err = %v, want an *Error of kind %q", what, err, kind)
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
	own := soft.AddTestToken(t, "vanish")
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

// sealIV is a fixed IV for values sealed once per test; fresh seals use mustIV.
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
	own := soft.AddTestToken(t, "reinit")
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

// TestFaultInjection drives the error handling of do/settle with the
// return codes real HSMs produce and SoftHSM2 never does, injected in front
// of the real module. Each case proves the outcome (success or the typed
// error and its PKCS#11 code), exactly which module calls the attempt made
// (evictions, re-logins, re-finds), whether the Token went into recovery
// (and then came back by itself, failing fast meanwhile), and that the
// Token works afterwards with no session left borrowed.
func TestFaultInjection(t *testing.T) {
	ck := func(code uint) error { return pkcs11.Error(code) }
	type faultCase struct {
		name   string
		faults map[string][]error
		// unseal makes the call an Unseal; otherwise it is a Seal.
		unseal bool
		// kind is the error kind wanted, nil for success; code the PKCS#11
		// code the error must carry.
		kind error
		code uint
		// recovers: the Token goes unavailable and recovers by itself.
		recovers bool
		// calls are the exact increments of the counted methods during the
		// call; methods not named must not be called.
		calls map[string]int
	}
	cases := []faultCase{
		{name: "device removed on Encrypt",
			faults: map[string][]error{"Encrypt": {ck(pkcs11.CKR_DEVICE_REMOVED)}},
			kind:   ErrUnavailable, code: pkcs11.CKR_DEVICE_REMOVED, recovers: true,
			calls: map[string]int{"EncryptInit": 1, "Encrypt": 1, "CloseSession": 1}},
		{name: "token not present on Encrypt",
			faults: map[string][]error{"Encrypt": {ck(pkcs11.CKR_TOKEN_NOT_PRESENT)}},
			kind:   ErrUnavailable, code: pkcs11.CKR_TOKEN_NOT_PRESENT, recovers: true,
			calls: map[string]int{"EncryptInit": 1, "Encrypt": 1, "CloseSession": 1}},
		// A broken session is closed (evicted) and the call retried on a new one.
		{name: "session handle invalid on EncryptInit",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_SESSION_HANDLE_INVALID)}},
			calls:  map[string]int{"EncryptInit": 2, "Encrypt": 1, "CloseSession": 1, "OpenSession": 1}},
		{name: "session closed on EncryptInit",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_SESSION_CLOSED)}},
			calls:  map[string]int{"EncryptInit": 2, "Encrypt": 1, "CloseSession": 1, "OpenSession": 1}},
		{name: "operation active on EncryptInit",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_OPERATION_ACTIVE)}},
			calls:  map[string]int{"EncryptInit": 2, "Encrypt": 1, "CloseSession": 1, "OpenSession": 1}},
		// A lost login is restored once (SoftHSM2 answers ALREADY_LOGGED_IN).
		{name: "user not logged in on EncryptInit",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_USER_NOT_LOGGED_IN)}},
			calls:  map[string]int{"EncryptInit": 2, "Encrypt": 1, "Login": 1}},
		// A stale handle is re-found by CKA_ID on the same session.
		{name: "key handle invalid on EncryptInit",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_KEY_HANDLE_INVALID)}},
			calls:  map[string]int{"EncryptInit": 2, "Encrypt": 1, "FindObjectsInit": 1}},
		{name: "object handle invalid on EncryptInit",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_OBJECT_HANDLE_INVALID)}},
			calls:  map[string]int{"EncryptInit": 2, "Encrypt": 1, "FindObjectsInit": 1}},
		{name: "object handle invalid on DecryptInit",
			faults: map[string][]error{"DecryptInit": {ck(pkcs11.CKR_OBJECT_HANDLE_INVALID)}}, unseal: true,
			calls: map[string]int{"DecryptInit": 2, "Decrypt": 1, "FindObjectsInit": 1}},
		// The same fault twice: one retry only, a typed error, no recovery.
		{name: "session handle invalid twice",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_SESSION_HANDLE_INVALID), ck(pkcs11.CKR_SESSION_HANDLE_INVALID)}},
			kind:   ErrToken, code: pkcs11.CKR_SESSION_HANDLE_INVALID,
			calls: map[string]int{"EncryptInit": 2, "CloseSession": 2, "OpenSession": 1}},
		{name: "key handle invalid twice",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_KEY_HANDLE_INVALID), ck(pkcs11.CKR_KEY_HANDLE_INVALID)}},
			kind:   ErrToken, code: pkcs11.CKR_KEY_HANDLE_INVALID,
			calls: map[string]int{"EncryptInit": 2, "FindObjectsInit": 1}},
		{name: "user not logged in twice",
			faults: map[string][]error{"EncryptInit": {ck(pkcs11.CKR_USER_NOT_LOGGED_IN), ck(pkcs11.CKR_USER_NOT_LOGGED_IN)}},
			kind:   ErrToken, code: pkcs11.CKR_USER_NOT_LOGGED_IN,
			calls: map[string]int{"EncryptInit": 2, "Login": 2}},
		// A PIN refused on re-login is reported and never retried.
		{name: "pin incorrect on re-login",
			faults: map[string][]error{
				"EncryptInit": {ck(pkcs11.CKR_USER_NOT_LOGGED_IN)},
				"Login":       {ck(pkcs11.CKR_PIN_INCORRECT)},
			},
			kind: ErrLogin, code: pkcs11.CKR_PIN_INCORRECT,
			calls: map[string]int{"EncryptInit": 1, "Login": 1}},
		// CKR_GENERAL_ERROR is settled by probing the token.
		{name: "general error on Decrypt, token healthy",
			faults: map[string][]error{"Decrypt": {ck(pkcs11.CKR_GENERAL_ERROR)}}, unseal: true,
			kind: ErrInvalidCiphertext, code: pkcs11.CKR_GENERAL_ERROR,
			calls: map[string]int{"DecryptInit": 1, "Decrypt": 1, "GetTokenInfo": 1}},
		{name: "general error on Decrypt, token gone",
			faults: map[string][]error{
				"Decrypt":      {ck(pkcs11.CKR_GENERAL_ERROR)},
				"GetTokenInfo": {ck(pkcs11.CKR_GENERAL_ERROR)},
			}, unseal: true,
			kind: ErrUnavailable, code: pkcs11.CKR_GENERAL_ERROR, recovers: true,
			calls: map[string]int{"DecryptInit": 1, "Decrypt": 1, "GetTokenInfo": 1, "CloseSession": 1}},
	}
	counted := []string{"EncryptInit", "Encrypt", "DecryptInit", "Decrypt", "FindObjectsInit",
		"OpenSession", "CloseSession", "Login", "GetTokenInfo", "GenerateRandom"}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			tok, f := openFaulty(t, func(c *Config) { c.RecoverInterval = recoverInterval })
			id := newMasterKey(t, tok)
			pt := []byte("fault injection plaintext")
			// Warm up: the handle is cached and one idle session is open.
			sealed, err := tok.Seal(ctx, id, sealIV, recAAD, pt)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tok.Unseal(ctx, id, sealIV, recAAD, sealed); err != nil {
				t.Fatal(err)
			}
			if st := tok.PoolStats(); st.Open != 1 || st.InUse != 0 {
				t.Fatalf("PoolStats after warm-up = %+v, want 1 open, 0 in use", st)
			}
			// Recovery stops at C_Initialize until released, so the
			// unavailable state can be observed.
			gate := f.setGate("Initialize")
			release := sync.OnceFunc(func() { close(gate) })
			t.Cleanup(release)
			inits := f.count("Initialize")

			before := counts(f, counted)
			for method, errs := range tc.faults {
				f.inject(method, errs...)
			}
			iv := freshIV()
			var out []byte
			returnsWithin(t, hangLimit, "the call", func() {
				if tc.unseal {
					out, err = tok.Unseal(ctx, id, sealIV, recAAD, sealed)
				} else {
					out, err = tok.Seal(ctx, id, iv, recAAD, pt)
				}
			})
			after := counts(f, counted)
			for _, m := range counted {
				if got := after[m] - before[m]; got != tc.calls[m] {
					t.Errorf("%s called %d times during the call, want %d", m, got, tc.calls[m])
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
					t.Fatalf("Unseal = %q, want %q", out, pt)
				}
				if !tc.unseal {
					got, err := tok.Unseal(ctx, id, iv, recAAD, out)
					if err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("Unseal of the retried seal = %q, %v; want %q", got, err, pt)
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
				enc := f.count("EncryptInit")
				_, err := tok.Seal(ctx, id, freshIV(), recAAD, pt)
				wantErrKind(t, "Seal while recovering", err, ErrUnavailable)
				if n := f.count("EncryptInit") - enc; n != 0 {
					t.Fatalf("Seal while recovering called EncryptInit %d times, want 0 (fail fast)", n)
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
			sealRoundTrip(t, tok, id)
			if got, err := tok.Unseal(ctx, id, sealIV, recAAD, sealed); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("Unseal of the warm-up value afterwards = %q, %v; want %q", got, err, pt)
			}
			if st := tok.PoolStats(); st.InUse != 0 || st.Open > st.Size {
				t.Fatalf("PoolStats afterwards = %+v, want nothing in use", st)
			}
		})
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
		{"wrong PIN", func(c *Config) { c.PIN = NewPIN("999999") }, ErrLogin, pkcs11.CKR_PIN_INCORRECT, testLabel},
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
			if strings.Contains(err.Error(), softhsm.TestPIN) || strings.Contains(err.Error(), "999999") {
				t.Fatalf("Open: err = %q shows a PIN", err)
			}
			// The failed Open finalised the module: opening again works.
			good := openToken(t)
			sealRoundTrip(t, good, newMasterKey(t, good))
		})
	}
}

// TestCloseWhileRecovering proves that Close returns while the recovery loop
// keeps failing (the token's directory is gone), that calls made after it
// fail with ErrClosed rather than ErrUnavailable, and that a second Close is
// harmless.
func TestCloseWhileRecovering(t *testing.T) {
	ctx := t.Context()
	own := soft.AddTestToken(t, "closerec")
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
// Close is idempotent.
func TestCallsAfterClose(t *testing.T) {
	ctx := t.Context()
	tok, f := openFaulty(t)
	id := newMasterKey(t, tok)
	pair, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.CreateKeyPair(ctx, pair, "hsmkms/test/closed-ec", ECP256); err != nil {
		t.Fatal(err)
	}
	sealed, err := tok.Seal(ctx, id, sealIV, recAAD, []byte("sealed before Close"))
	if err != nil {
		t.Fatal(err)
	}
	_, wrapped, err := tok.WrapDataKey(ctx, id, 32)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("signed after Close"))
	sig, err := tok.Sign(ctx, pair, ECDSASHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	every := []string{"OpenSession", "CloseSession", "Login", "GetTokenInfo", "FindObjectsInit", "EncryptInit",
		"Encrypt", "DecryptInit", "Decrypt", "GenerateRandom", "GenerateKey", "WrapKey", "UnwrapKey", "SignInit", "VerifyInit", "Initialize"}
	before := counts(f, every)
	nid, _ := NewObjectID()
	iv := freshIV()

	calls := []struct {
		name string
		call func() error
	}{
		{"seal", func() error { _, err := tok.Seal(ctx, id, iv, recAAD, []byte("x")); return err }},
		{"unseal", func() error { _, err := tok.Unseal(ctx, id, sealIV, recAAD, sealed); return err }},
		{"seal data key", func() error { _, _, err := tok.SealDataKey(ctx, id, 32, iv, recAAD); return err }},
		{"wrap data key", func() error { _, _, err := tok.WrapDataKey(ctx, id, 32); return err }},
		{"unwrap data key", func() error { _, err := tok.UnwrapDataKey(ctx, id, wrapped); return err }},
		{"generate random", func() error { _, err := tok.GenerateRandom(ctx, 16); return err }},
		{"has key", func() error { _, err := tok.HasKey(ctx, id); return err }},
		{"create master key", func() error { return tok.CreateMasterKey(ctx, nid, "hsmkms/test/closed") }},
		{"create key pair", func() error { _, err := tok.CreateKeyPair(ctx, nid, "hsmkms/test/closed", ECP256); return err }},
		{"destroy key", func() error { return tok.DestroyKey(ctx, id) }},
		{"public key", func() error { _, err := tok.PublicKey(ctx, pair); return err }},
		{"sign", func() error { _, err := tok.Sign(ctx, pair, ECDSASHA256, digest[:]); return err }},
		{"verify", func() error { return tok.Verify(ctx, pair, ECDSASHA256, digest[:], sig) }},
		{"info", func() error { _, err := tok.Info(ctx); return err }},
		{"mechanisms", func() error { _, err := tok.Mechanisms(ctx); return err }},
		{"objects", func() error { _, err := tok.Objects(ctx); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			wantErrKind(t, c.name+" after Close", c.call(), ErrClosed)
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
			id := newMasterKey(t, tok)
			sealRoundTrip(t, tok, id)

			f.inject("Encrypt", pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED))
			gate := f.setGate("Encrypt")
			release := sync.OnceFunc(func() { close(gate) })
			t.Cleanup(release)
			encrypts, inits := f.count("Encrypt"), f.count("Initialize")
			sealErr := make(chan error, 1)
			iv := freshIV()
			go func() {
				_, err := tok.Seal(ctx, id, iv, recAAD, []byte("in flight"))
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
			_, err = tok.Seal(ctx, id, freshIV(), recAAD, []byte("x"))
			wantErrKind(t, "Seal after Close", err, ErrClosed)
		})
	}
}
