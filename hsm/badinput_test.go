package hsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// The bad-input catalogue: every malformed, tampered or misdirected value a
// client can send gets a typed error, never a panic, never a token recovery,
// and leaves the Token (and the very session it used) working.

var sentinels = []error{
	ErrInvalidInput, ErrInvalidCiphertext, ErrKeyNotFound, ErrDuplicateKey,
	ErrUnavailable, ErrInvalidSignature, ErrMechanismUnsupported,
	ErrPoolExhausted, ErrLogin, ErrClosed, ErrToken,
}

// wantKind fails unless err matches want and no other sentinel.
func wantKind(t testing.TB, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	for _, s := range sentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Fatalf("error %q: errors.Is(%v) = %v, want kind %v only", err, s, got, want)
		}
	}
}

// noPanic runs fn and turns a panic (miekg/pkcs11 panics on some empty
// inputs) into a test failure.
func noPanic(t testing.TB, fn func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panicked: %v", r)
		}
	}()
	return fn()
}

// runCase runs one case as a subtest and stops the test if the case left a
// pool session borrowed: an operation that panics leaks its session, and
// every later case would wait for the pool instead of failing.
func runCase(t *testing.T, tok *Token, name string, fn func(t *testing.T)) {
	t.Helper()
	inUse := tok.PoolStats().InUse
	if !t.Run(name, fn) && tok.PoolStats().InUse > inUse {
		t.Fatalf("case %s leaked a pool session; stopping", name)
	}
}

// allCounts is a copy of the faulty wrapper's call counters.
func allCounts(f *faulty) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.calls)
}

// tokenOps are the calls that do cryptography on the token.
var tokenOps = []string{"EncryptInit", "DecryptInit", "UnwrapKey", "WrapKey", "GenerateKey", "GenerateRandom"}

// roundTrip proves that tok still seals and unseals under master key id.
func roundTrip(t testing.TB, tok *Token, id ObjectID) {
	t.Helper()
	iv, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	pt, aad := []byte("still works"), []byte("aad")
	sealed, err := tok.Seal(t.Context(), id, iv, aad, pt)
	if err != nil {
		t.Fatalf("Seal after bad input: %v", err)
	}
	got, err := tok.Unseal(t.Context(), id, iv, aad, sealed)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unseal after bad input = %q, %v", got, err)
	}
}

// healthy proves that tok is ready and that no recovery ever ran: neither
// Health's counter nor a second C_Initialize shows one.
func healthy(t testing.TB, tok *Token, f *faulty) {
	t.Helper()
	h := tok.Health()
	if !h.Ready || h.Recoveries != 0 {
		t.Fatalf("Health = %+v, want ready with 0 recoveries", h)
	}
	if f != nil && f.count("Initialize") != 1 {
		t.Fatalf("C_Initialize ran %d times: bad input triggered a module reset", f.count("Initialize"))
	}
}

// TestBadInputNeverReachesToken proves that every caller-made value out of
// range (IV, AAD, plaintext, sizes, label) is refused with ErrInvalidInput
// before any PKCS#11 call: none of the fault wrapper's call counters
// (C_EncryptInit, C_DecryptInit, C_UnwrapKey, C_WrapKey, C_GenerateKey,
// C_GenerateRandom, C_FindObjectsInit, C_OpenSession, …) moves.
func TestBadInputNeverReachesToken(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	id := newMasterKey(t, tok)
	goodIV, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	aad, pt := []byte("aad"), []byte("plaintext")
	sealed, err := tok.Seal(ctx, id, goodIV, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	freshID, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}

	type tc struct {
		name string
		call func() error
	}
	var tests []tc
	type named struct {
		name string
		b    []byte
	}
	ivs := []named{{"nil", nil}, {"0", []byte{}}, {"11", make([]byte, 11)}, {"13", make([]byte, 13)}, {"16", make([]byte, 16)}}
	aads := []named{{"nil", nil}, {"empty", []byte{}}, {"max+1", make([]byte, MaxAAD+1)}}
	pts := []named{{"nil", nil}, {"empty", []byte{}}, {"4097", make([]byte, MaxPlaintext+1)}}
	for _, v := range ivs {
		name, iv := v.name, v.b
		tests = append(tests,
			tc{"Seal/iv-" + name, func() error { _, err := tok.Seal(ctx, id, iv, aad, pt); return err }},
			tc{"SealDataKey/iv-" + name, func() error { _, _, err := tok.SealDataKey(ctx, id, 32, iv, aad); return err }},
			tc{"Unseal/iv-" + name, func() error { _, err := tok.Unseal(ctx, id, iv, aad, sealed); return err }},
		)
	}
	for _, v := range aads {
		name, a := v.name, v.b
		tests = append(tests,
			tc{"Seal/aad-" + name, func() error { _, err := tok.Seal(ctx, id, goodIV, a, pt); return err }},
			tc{"SealDataKey/aad-" + name, func() error { _, _, err := tok.SealDataKey(ctx, id, 32, goodIV, a); return err }},
			tc{"Unseal/aad-" + name, func() error { _, err := tok.Unseal(ctx, id, goodIV, a, sealed); return err }},
		)
	}
	for _, v := range pts {
		name, p := v.name, v.b
		tests = append(tests, tc{"Seal/plaintext-" + name, func() error { _, err := tok.Seal(ctx, id, goodIV, aad, p); return err }})
	}
	for _, n := range []int{0, -1, MaxDataKey + 1} {
		tests = append(tests, tc{fmt.Sprintf("SealDataKey/size-%d", n), func() error { _, _, err := tok.SealDataKey(ctx, id, n, goodIV, aad); return err }})
	}
	for _, n := range []int{0, -8, 8, 15, 17, MaxDataKey + 1, MaxDataKey + 8} {
		tests = append(tests, tc{fmt.Sprintf("WrapDataKey/size-%d", n), func() error { _, _, err := tok.WrapDataKey(ctx, id, n); return err }})
	}
	for _, n := range []int{0, -1, MaxRandom + 1} {
		tests = append(tests, tc{fmt.Sprintf("GenerateRandom/%d", n), func() error { _, err := tok.GenerateRandom(ctx, n); return err }})
	}
	for _, v := range []named{{"empty", nil}, {"129", bytes.Repeat([]byte("l"), MaxLabel+1)}} {
		label := string(v.b)
		tests = append(tests, tc{"CreateMasterKey/label-" + v.name, func() error { return tok.CreateMasterKey(ctx, freshID, label) }})
	}

	for _, c := range tests {
		runCase(t, tok, c.name, func(t *testing.T) {
			before := allCounts(f)
			err := noPanic(t, c.call)
			wantKind(t, err, ErrInvalidInput)
			after := allCounts(f)
			for _, op := range tokenOps {
				if after[op] != before[op] {
					t.Errorf("C_%s ran %d times for a refused input", op, after[op]-before[op])
				}
			}
			if !maps.Equal(before, after) {
				t.Errorf("the module was called: counts %v -> %v", before, after)
			}
		})
	}
	if ok, err := tok.HasKey(ctx, freshID); err != nil || ok {
		t.Fatalf("HasKey(id of the refused CreateMasterKey) = %v, %v; want false", ok, err)
	}
	roundTrip(t, tok, id)
	healthy(t, tok, f)
}

// TestBadInputBoundariesAccepted proves that the limits refuse only what they
// must: the smallest and largest valid value of each input works.
func TestBadInputBoundariesAccepted(t *testing.T) {
	tok := openToken(t)
	ctx := t.Context()
	id := newMasterKey(t, tok)
	iv, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	seal := func(aad, pt []byte) error {
		sealed, err := tok.Seal(ctx, id, iv, aad, pt)
		if err != nil {
			return err
		}
		got, err := tok.Unseal(ctx, id, iv, aad, sealed)
		if err == nil && !bytes.Equal(got, pt) {
			err = errors.New("Unseal returned other bytes")
		}
		return err
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"Seal+Unseal/aad-1/plaintext-1", func() error { return seal([]byte{1}, []byte{2}) }},
		{"Seal+Unseal/aad-max/plaintext-4096", func() error { return seal(make([]byte, MaxAAD), make([]byte, MaxPlaintext)) }},
		{"SealDataKey/1", func() error { _, _, err := tok.SealDataKey(ctx, id, 1, iv, []byte{1}); return err }},
		{"SealDataKey/1024", func() error { _, _, err := tok.SealDataKey(ctx, id, MaxDataKey, iv, make([]byte, MaxAAD)); return err }},
		{"WrapDataKey/16", func() error { _, _, err := tok.WrapDataKey(ctx, id, 16); return err }},
		{"WrapDataKey/1024+Unwrap", func() error {
			dk, w, err := tok.WrapDataKey(ctx, id, MaxDataKey)
			if err != nil {
				return err
			}
			got, err := tok.UnwrapDataKey(ctx, id, w)
			if err == nil && !bytes.Equal(got, dk) {
				err = errors.New("UnwrapDataKey returned other bytes")
			}
			return err
		}},
		{"GenerateRandom/1", func() error { _, err := tok.GenerateRandom(ctx, 1); return err }},
		{"GenerateRandom/1024", func() error { _, err := tok.GenerateRandom(ctx, MaxRandom); return err }},
		{"CreateMasterKey/label-1", func() error { return createAndDestroy(t, tok, "l") }},
		{"CreateMasterKey/label-128", func() error { return createAndDestroy(t, tok, strings.Repeat("l", MaxLabel)) }},
	}
	for _, tc := range tests {
		runCase(t, tok, tc.name, func(t *testing.T) {
			if err := noPanic(t, tc.call); err != nil {
				t.Fatalf("a valid boundary value was refused: %v", err)
			}
		})
	}
	healthy(t, tok, nil)
}

func createAndDestroy(t testing.TB, tok *Token, label string) error {
	id, err := NewObjectID()
	if err != nil {
		return err
	}
	if err := tok.CreateMasterKey(t.Context(), id, label); err != nil {
		return err
	}
	return tok.DestroyKey(t.Context(), id)
}

// unsealCase is one bad value given to Unseal; reaches says whether the
// length is plausible, so that only the token can refuse it.
type unsealCase struct {
	name    string
	key     ObjectID
	iv, aad []byte
	sealed  []byte
	reaches bool
}

// TestTamperUnseal proves that Unseal refuses every tampered, truncated,
// extended, misdirected or oversized sealed value with ErrInvalidCiphertext:
// each byte flipped in turn, each truncation, appended bytes, a wrong IV or
// AAD, another master key's value. Plausible lengths reach the token exactly
// once (C_Decrypt fails, no retry, no eviction), the rest never do; after
// each case the one pooled session still seals and unseals.
func TestTamperUnseal(t *testing.T) {
	tok, f := openFaulty(t, func(c *Config) { c.PoolSize = 1 })
	ctx := t.Context()
	id, other := newMasterKey(t, tok), newMasterKey(t, tok)
	iv, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	aad, pt := []byte(`{"key":"k1","v":1}`), pattern(32, 5)
	sealed, err := tok.Seal(ctx, id, iv, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	otherSealed, err := tok.Seal(ctx, other, iv, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	big, err := tok.Seal(ctx, id, iv, aad, make([]byte, MaxPlaintext))
	if err != nil {
		t.Fatal(err)
	}
	with := func(b []byte, edit func([]byte) []byte) []byte { return edit(bytes.Clone(b)) }

	var tests []unsealCase
	for pos := range sealed {
		for _, mask := range []byte{0x01, 0x80} {
			tests = append(tests, unsealCase{
				name: fmt.Sprintf("flip-%02d-%#02x", pos, mask), key: id, iv: iv, aad: aad,
				sealed: with(sealed, func(b []byte) []byte { b[pos] ^= mask; return b }), reaches: true,
			})
		}
	}
	for n := range len(sealed) {
		tests = append(tests, unsealCase{
			name: fmt.Sprintf("trunc-%02d", n), key: id, iv: iv, aad: aad,
			sealed: bytes.Clone(sealed[:n]), reaches: n > TagSize,
		})
	}
	for _, n := range []int{1, 8, 16} {
		tests = append(tests, unsealCase{
			name: fmt.Sprintf("append-%d", n), key: id, iv: iv, aad: aad,
			sealed: append(bytes.Clone(sealed), make([]byte, n)...), reaches: true,
		})
	}
	tests = append(tests,
		unsealCase{name: "wrong-aad-flipped", key: id, iv: iv, sealed: sealed, reaches: true,
			aad: with(aad, func(b []byte) []byte { b[0] ^= 1; return b })},
		unsealCase{name: "wrong-aad-extended", key: id, iv: iv, sealed: sealed, reaches: true,
			aad: append(bytes.Clone(aad), ' ')},
		unsealCase{name: "wrong-aad-truncated", key: id, iv: iv, sealed: sealed, reaches: true,
			aad: aad[:len(aad)-1]},
		unsealCase{name: "wrong-iv", key: id, aad: aad, sealed: sealed, reaches: true,
			iv: with(iv, func(b []byte) []byte { b[IVSize-1] ^= 1; return b })},
		unsealCase{name: "other-masters-value", key: id, iv: iv, aad: aad, sealed: otherSealed, reaches: true},
		unsealCase{name: "opened-with-other-master", key: other, iv: iv, aad: aad, sealed: sealed, reaches: true},
		unsealCase{name: "over-4112-bytes", key: id, iv: iv, aad: aad, sealed: append(bytes.Clone(big), 0)},
		unsealCase{name: "8192-bytes", key: id, iv: iv, aad: aad, sealed: make([]byte, 8192)},
		unsealCase{name: "nil", key: id, iv: iv, aad: aad},
	)

	for _, tc := range tests {
		runCase(t, tok, tc.name, func(t *testing.T) {
			before := allCounts(f)
			got, err := noPanic2(t, func() ([]byte, error) { return tok.Unseal(ctx, tc.key, tc.iv, tc.aad, tc.sealed) })
			wantKind(t, err, ErrInvalidCiphertext)
			if got != nil {
				t.Fatalf("Unseal returned %d bytes with its error", len(got))
			}
			after := allCounts(f)
			want := 0
			if tc.reaches {
				want = 1
			}
			for _, op := range []string{"DecryptInit", "Decrypt"} {
				if d := after[op] - before[op]; d != want {
					t.Fatalf("C_%s ran %d times, want %d", op, d, want)
				}
			}
			for _, op := range []string{"OpenSession", "CloseSession", "Login", "Initialize"} {
				if after[op] != before[op] {
					t.Fatalf("C_%s ran %d times: the session or module was reset for a bad ciphertext", op, after[op]-before[op])
				}
			}
			roundTrip(t, tok, id)
		})
	}
	healthy(t, tok, f)
}

// noPanic2 is noPanic for calls that return a value.
func noPanic2(t testing.TB, fn func() ([]byte, error)) (out []byte, err error) {
	t.Helper()
	err = noPanic(t, func() error {
		var e error
		out, e = fn()
		return e
	})
	return out, err
}

// TestTamperUnwrapDataKey proves that UnwrapDataKey refuses every bad
// wrapped value with ErrInvalidCiphertext and never panics: empty (on which
// miekg/pkcs11 panics), 1 to 23 bytes, lengths not a multiple of 8, over
// 1032 bytes (all refused before the token), each byte flipped in turn,
// whole-block truncations and extensions, and a value wrapped under another
// master key (refused by the token's RFC 3394 integrity check, once, with
// no eviction). After each case the one pooled session still works.
func TestTamperUnwrapDataKey(t *testing.T) {
	tok, f := openFaulty(t, func(c *Config) { c.PoolSize = 1 })
	ctx := t.Context()
	id, other := newMasterKey(t, tok), newMasterKey(t, tok)
	dk, w, err := tok.WrapDataKey(ctx, id, 32)
	if err != nil {
		t.Fatal(err)
	}
	_, bigW, err := tok.WrapDataKey(ctx, id, MaxDataKey)
	if err != nil {
		t.Fatal(err)
	}
	_, otherW, err := tok.WrapDataKey(ctx, other, 32)
	if err != nil {
		t.Fatal(err)
	}

	type tc struct {
		name    string
		wrapped []byte
		reaches bool
	}
	tests := []tc{{"nil", nil, false}, {"empty", []byte{}, false}}
	for n := 1; n <= 23; n++ {
		tests = append(tests, tc{fmt.Sprintf("len-%02d", n), bytes.Clone(w[:n]), false})
	}
	for _, n := range []int{25, 31, 33, 39} {
		tests = append(tests, tc{fmt.Sprintf("len-%02d-not-blocks", n), bytes.Clone(w[:n]), false})
	}
	tests = append(tests,
		tc{"len-41-not-blocks", append(bytes.Clone(w), 0), false},
		tc{"len-1031-not-blocks", bytes.Clone(bigW[:MaxDataKey+wrapOverhead-1]), false},
		tc{"len-1033", append(bytes.Clone(bigW), 0), false},
		tc{"len-1040", append(bytes.Clone(bigW), make([]byte, 8)...), false},
		tc{"len-4096", make([]byte, 4096), false},
		tc{"trunc-block-24", bytes.Clone(w[:24]), true},
		tc{"trunc-block-32", bytes.Clone(w[:32]), true},
		tc{"trunc-block-1024", bytes.Clone(bigW[:MaxDataKey]), true},
		tc{"append-block-48", append(bytes.Clone(w), make([]byte, 8)...), true},
		tc{"wrapped-under-other-master", otherW, true},
		tc{"zeros-40", make([]byte, 40), true},
	)
	for pos := range w {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(w)
			b[pos] ^= mask
			tests = append(tests, tc{fmt.Sprintf("flip-%02d-%#02x", pos, mask), b, true})
		}
	}

	for _, c := range tests {
		runCase(t, tok, c.name, func(t *testing.T) {
			before := allCounts(f)
			got, err := noPanic2(t, func() ([]byte, error) { return tok.UnwrapDataKey(ctx, id, c.wrapped) })
			wantKind(t, err, ErrInvalidCiphertext)
			if got != nil {
				t.Fatalf("UnwrapDataKey returned %d bytes with its error", len(got))
			}
			var code pkcs11.Error
			if c.reaches && !errors.As(err, &code) {
				t.Fatalf("error %q carries no PKCS#11 return code", err)
			}
			after := allCounts(f)
			want := 0
			if c.reaches {
				want = 1
			}
			if d := after["UnwrapKey"] - before["UnwrapKey"]; d != want {
				t.Fatalf("C_UnwrapKey ran %d times, want %d", d, want)
			}
			for _, op := range []string{"OpenSession", "CloseSession", "Login", "Initialize"} {
				if after[op] != before[op] {
					t.Fatalf("C_%s ran %d times: the session or module was reset for a bad wrapped key", op, after[op]-before[op])
				}
			}
			if back, err := tok.UnwrapDataKey(ctx, id, w); err != nil || !bytes.Equal(back, dk) {
				t.Fatalf("UnwrapDataKey of the good value afterwards = %x, %v", back, err)
			}
			roundTrip(t, tok, id)
		})
	}
	healthy(t, tok, f)
}

// TestBadInputCreateMasterKeyExistingID proves that CreateMasterKey refuses a
// CKA_ID the token already holds (a master key, or a key pair's) with
// ErrInvalidInput, generates nothing, and leaves the objects with that
// CKA_ID as they were.
func TestBadInputCreateMasterKeyExistingID(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	master := newMasterKey(t, tok)
	pair, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.CreateKeyPair(ctx, pair, "hsmkms/test/pair", ECP256); err != nil {
		t.Fatalf("CreateKeyPair: %v", err)
	}
	s := session(t, tok)
	objects := func(id ObjectID) int {
		t.Helper()
		hs, err := findObjects(raw(t, tok), s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id[:])}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(hs)
	}

	tests := []struct {
		name string
		id   ObjectID
		want int // objects with the CKA_ID
	}{
		{"master-key", master, 1},
		{"key-pair", pair, 2},
	}
	for _, tc := range tests {
		runCase(t, tok, tc.name, func(t *testing.T) {
			if n := objects(tc.id); n != tc.want {
				t.Fatalf("%d objects before, want %d", n, tc.want)
			}
			gen := f.count("GenerateKey")
			err := noPanic(t, func() error { return tok.CreateMasterKey(ctx, tc.id, "hsmkms/test/again") })
			wantKind(t, err, ErrInvalidInput)
			if d := f.count("GenerateKey") - gen; d != 0 {
				t.Fatalf("C_GenerateKey ran %d times for an existing CKA_ID", d)
			}
			if n := objects(tc.id); n != tc.want {
				t.Fatalf("%d objects with the CKA_ID after the refused create, want %d", n, tc.want)
			}
		})
	}
	roundTrip(t, tok, master)
	healthy(t, tok, f)
}

// TestBadInputUnknownKey proves that every operation on an ObjectID the
// token does not hold gives ErrKeyNotFound, never ErrToken or a recovery:
// an ID never created, one destroyed through the API, and one destroyed
// behind the handle cache's back (a stale cached handle).
func TestBadInputUnknownKey(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	live := newMasterKey(t, tok)

	never, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	destroyed := newMasterKey(t, tok)
	roundTrip(t, tok, destroyed)
	if err := tok.DestroyKey(ctx, destroyed); err != nil {
		t.Fatal(err)
	}
	stale := newMasterKey(t, tok)
	roundTrip(t, tok, stale) // caches its handle
	{
		s := session(t, tok)
		h, err := findOne(tok.p, s, *secretKey(stale))
		if err != nil {
			t.Fatal(err)
		}
		if err := raw(t, tok).DestroyObject(s, h); err != nil {
			t.Fatal(err)
		}
	}

	iv, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("aad")
	ops := []struct {
		name string
		call func(ObjectID) error
	}{
		{"Seal", func(id ObjectID) error { _, err := tok.Seal(ctx, id, iv, aad, []byte("pt")); return err }},
		{"Unseal", func(id ObjectID) error { _, err := tok.Unseal(ctx, id, iv, aad, make([]byte, 48)); return err }},
		{"SealDataKey", func(id ObjectID) error { _, _, err := tok.SealDataKey(ctx, id, 32, iv, aad); return err }},
		{"WrapDataKey", func(id ObjectID) error { _, _, err := tok.WrapDataKey(ctx, id, 32); return err }},
		{"UnwrapDataKey", func(id ObjectID) error { _, err := tok.UnwrapDataKey(ctx, id, make([]byte, 40)); return err }},
	}
	ids := []struct {
		name string
		id   ObjectID
	}{{"never-created", never}, {"destroyed", destroyed}, {"destroyed-behind-cache", stale}}
	for _, k := range ids {
		for _, op := range ops {
			runCase(t, tok, k.name+"/"+op.name, func(t *testing.T) {
				before := allCounts(f)
				wantKind(t, noPanic(t, func() error { return op.call(k.id) }), ErrKeyNotFound)
				after := allCounts(f)
				for _, c := range tokenOps {
					// Only the stale handle may reach the token, once, to learn it is stale.
					if d := after[c] - before[c]; d != 0 && (k.id != stale || d > 1) {
						t.Fatalf("C_%s ran %d times for a key that does not exist", c, d)
					}
				}
			})
		}
	}
	roundTrip(t, tok, live)
	healthy(t, tok, f)
}

// TestIVFreshEachOf10000Seals proves that 10,000 seals of one plaintext with
// fresh NewIV values never repeat an IV or a sealed value, and that the
// output is a function of the IV given (sealing again with the first IV
// reproduces the first output): a token that ignored the caller's IV would
// either repeat outputs or fail the reproduction.
func TestIVFreshEachOf10000Seals(t *testing.T) {
	const n = 10000
	tok := openToken(t)
	ctx := t.Context()
	id := newMasterKey(t, tok)
	pt, aad := []byte("the same plaintext every time"), []byte("the same aad")
	ivs := make(map[string]int, n)
	outs := make(map[string]int, n)
	var firstIV, firstOut []byte
	for i := range n {
		iv, err := NewIV()
		if err != nil {
			t.Fatal(err)
		}
		if len(iv) != IVSize {
			t.Fatalf("NewIV returned %d bytes", len(iv))
		}
		sealed, err := tok.Seal(ctx, id, iv, aad, pt)
		if err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
		if j, dup := ivs[string(iv)]; dup {
			t.Fatalf("seal %d repeats the IV of seal %d", i, j)
		}
		if j, dup := outs[string(sealed)]; dup {
			t.Fatalf("seal %d repeats the output of seal %d", i, j)
		}
		ivs[string(iv)], outs[string(sealed)] = i, i
		if i == 0 {
			firstIV, firstOut = iv, sealed
		}
	}
	again, err := tok.Seal(ctx, id, firstIV, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, firstOut) {
		t.Fatalf("sealing again with the first IV gave %x, first time %x: the token does not use the caller's IV", again, firstOut)
	}
	got, err := tok.Unseal(ctx, id, firstIV, aad, firstOut)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unseal of the first seal = %q, %v", got, err)
	}
	healthy(t, tok, nil)
}

// TestTamperVanishedObjectKeylessOps proves that an object vanishing under an
// operation that names no key by CKA_ID (CKR_OBJECT_HANDLE_INVALID, which two
// concurrent DestroyKey calls for one id produce on SoftHSM2: 3 in 300 runs)
// is retried once and succeeds: no nil-pointer panic, no leaked session.
func TestTamperVanishedObjectKeylessOps(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	live, doomed := newMasterKey(t, tok), newMasterKey(t, tok)
	fresh, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		call  func() error
		check func() error // state afterwards
	}{
		{"DestroyKey", func() error { return tok.DestroyKey(ctx, doomed) }, func() error { return wantHas(ctx, tok, doomed, false) }},
		{"HasKey", func() error { return wantHas(ctx, tok, live, true) }, nil},
		{"Objects", func() error {
			objs, err := tok.Objects(ctx)
			if err == nil && !slices.ContainsFunc(objs, func(o Object) bool { return bytes.Equal(o.ID, live[:]) }) {
				err = errors.New("Objects does not list the live master key")
			}
			return err
		}, nil},
		{"CreateMasterKey", func() error { return tok.CreateMasterKey(ctx, fresh, "hsmkms/test/fresh") }, func() error { return wantHas(ctx, tok, fresh, true) }},
	}
	for _, tc := range tests {
		runCase(t, tok, tc.name, func(t *testing.T) {
			inUse, finds := tok.PoolStats().InUse, f.count("FindObjectsInit")
			f.inject("FindObjectsInit", pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID))
			if err := noPanic(t, tc.call); err != nil {
				t.Fatalf("after one CKR_OBJECT_HANDLE_INVALID: %v", err)
			}
			if f.pending("FindObjectsInit") != 0 || f.count("FindObjectsInit")-finds < 2 {
				t.Fatalf("the injected fault was not hit and retried")
			}
			if got := tok.PoolStats().InUse; got != inUse {
				t.Fatalf("%d sessions borrowed afterwards, %d before", got, inUse)
			}
			if tc.check != nil {
				if err := tc.check(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	roundTrip(t, tok, live)
	healthy(t, tok, f)
}

func wantHas(ctx context.Context, tok *Token, id ObjectID, want bool) error {
	got, err := tok.HasKey(ctx, id)
	if err == nil && got != want {
		err = fmt.Errorf("HasKey(%s) = %v, want %v", id, got, want)
	}
	return err
}
