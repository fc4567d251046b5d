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
// and leaves the Token (and the very session it used) working. It runs on
// every data-key mechanism the token has; those it lacks are refused with
// ErrMechanismUnsupported before any input is looked at.

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

// wantOK fails unless err is nil when the token has feature, and
// ErrMechanismUnsupported (only) when it lacks it.
func wantOK(t testing.TB, tok *Token, feature string, err error) {
	t.Helper()
	if has(tok, feature) {
		if err != nil {
			t.Fatalf("the token has %s, yet: %v", feature, err)
		}
		return
	}
	wantKind(t, err, ErrMechanismUnsupported)
}

// kindOn is the kind a call of feature whose input is bad in the way want
// says must fail with: want on a token with the feature, and
// ErrMechanismUnsupported on one without, whose refusal comes first.
func kindOn(tok *Token, feature string, want error) error {
	if has(tok, feature) {
		return want
	}
	return ErrMechanismUnsupported
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
var tokenOps = []string{"EncryptInit", "DecryptInit", "SignInit", "VerifyInit", "UnwrapKey", "WrapKey", "GenerateKey", "GenerateRandom"}

// sealMech is a data-key mechanism as the bad-input and concurrency tests
// drive it: aes-gcm (Seal, SealDataKey, Unseal), or the portable
// aes-cbc-hmac (SealPortable, SealDataKeyPortable, UnsealPortable) with
// the AAD as its header and no context.
type sealMech struct {
	feature string // as Features names it
	suffix  string // of its operations' names: Seal+suffix …
	ivSize  int
	newIV   func() ([]byte, error)
	// overhead is what a seal adds to a plaintext of n bytes.
	overhead func(n int) int
	// rejects are the module calls, once each, of an unseal whose sealed
	// value has a plausible length but does not open; never those it must
	// not make (the portable mechanism decrypts nothing whose MAC fails).
	rejects, never []string
	seal           func(ctx context.Context, tok *Token, id ObjectID, iv, aad, pt []byte) ([]byte, error)
	sealDataKey    func(ctx context.Context, tok *Token, id ObjectID, n int, iv, aad []byte) ([]byte, []byte, error)
	unseal         func(ctx context.Context, tok *Token, id ObjectID, iv, aad, sealed []byte) ([]byte, error)
}

var sealMechs = []sealMech{
	{feature: "aes-gcm", ivSize: IVSize, newIV: NewIV,
		overhead: func(int) int { return TagSize },
		rejects:  []string{"DecryptInit", "Decrypt"},
		seal: func(ctx context.Context, tok *Token, id ObjectID, iv, aad, pt []byte) ([]byte, error) {
			return tok.Seal(ctx, id, iv, aad, pt)
		},
		sealDataKey: func(ctx context.Context, tok *Token, id ObjectID, n int, iv, aad []byte) ([]byte, []byte, error) {
			return tok.SealDataKey(ctx, id, n, iv, aad)
		},
		unseal: func(ctx context.Context, tok *Token, id ObjectID, iv, aad, sealed []byte) ([]byte, error) {
			return tok.Unseal(ctx, id, iv, aad, sealed)
		}},
	{feature: "aes-cbc-hmac", suffix: "Portable", ivSize: CBCIVSize, newIV: NewCBCIV,
		overhead: func(n int) int { return cbcBlock - n%cbcBlock + MACSize },
		rejects:  []string{"SignInit", "Sign"}, never: []string{"DecryptInit", "Decrypt"},
		seal: func(ctx context.Context, tok *Token, id ObjectID, iv, aad, pt []byte) ([]byte, error) {
			return tok.SealPortable(ctx, id, iv, aad, nil, pt)
		},
		sealDataKey: func(ctx context.Context, tok *Token, id ObjectID, n int, iv, aad []byte) ([]byte, []byte, error) {
			return tok.SealDataKeyPortable(ctx, id, n, iv, aad, nil)
		},
		unseal: func(ctx context.Context, tok *Token, id ObjectID, iv, aad, sealed []byte) ([]byte, error) {
			return tok.UnsealPortable(ctx, id, iv, aad, nil, sealed)
		}},
}

// iv returns a fresh IV of m's size.
func (m sealMech) iv(t testing.TB) []byte {
	t.Helper()
	iv, err := m.newIV()
	if err != nil {
		t.Fatal(err)
	}
	return iv
}

// eachSealMech runs fn in a subtest for each mechanism of sealMechs the
// token has, under a key of newVersionKey. For each it lacks, it proves
// instead that sealing, sealing a data key and unsealing are refused with
// ErrMechanismUnsupported, without a module call when f counts them.
func eachSealMech(t *testing.T, tok *Token, f *faulty, fn func(t *testing.T, m sealMech)) {
	t.Helper()
	for _, m := range sealMechs {
		if has(tok, m.feature) {
			t.Run(m.feature, func(t *testing.T) { fn(t, m) })
			continue
		}
		t.Run(m.feature+"/unsupported", func(t *testing.T) {
			ctx := t.Context()
			var before map[string]int
			if f != nil {
				before = allCounts(f)
			}
			var id ObjectID
			_, err := m.seal(ctx, tok, id, m.iv(t), []byte("aad"), []byte("pt"))
			wantKind(t, err, ErrMechanismUnsupported)
			_, _, err = m.sealDataKey(ctx, tok, id, 32, m.iv(t), []byte("aad"))
			wantKind(t, err, ErrMechanismUnsupported)
			_, err = m.unseal(ctx, tok, id, m.iv(t), []byte("aad"), make([]byte, 2*cbcBlock+MACSize))
			wantKind(t, err, ErrMechanismUnsupported)
			if f != nil && !maps.Equal(before, allCounts(f)) {
				t.Fatalf("refused calls reached the module: %v, then %v", before, allCounts(f))
			}
		})
	}
}

// newVersionKey makes a key version that every data-key mechanism the
// token has can use, and returns its CKA_ID: a portable version (an AES
// key and its HMAC key) on a token with aes-cbc-hmac, whose AES key serves
// aes-gcm and aes-kw as a master key does, otherwise a master key.
func newVersionKey(t testing.TB, tok *Token) ObjectID {
	t.Helper()
	if !has(tok, "aes-cbc-hmac") {
		return newMasterKey(t, tok)
	}
	return newPortableKey(t, tok)
}

// roundTrip proves that tok still seals and unseals under version id
// (newVersionKey's) with every data-key mechanism it has.
func roundTrip(t testing.TB, tok *Token, id ObjectID) {
	t.Helper()
	pt, aad := []byte("still works"), []byte("aad")
	for _, m := range sealMechs {
		if !has(tok, m.feature) {
			continue
		}
		iv := m.iv(t)
		sealed, err := m.seal(t.Context(), tok, id, iv, aad, pt)
		if err != nil {
			t.Fatalf("Seal%s after bad input: %v", m.suffix, err)
		}
		got, err := m.unseal(t.Context(), tok, id, iv, aad, sealed)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Unseal%s after bad input = %q, %v", m.suffix, got, err)
		}
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

// portableCovered are the bad inputs of the portable operations that
// TestPortableBadInputBeforeToken refuses already.
var portableCovered = map[string]bool{
	"SealPortable/iv-12": true, "SealPortable/aad-nil": true, "SealPortable/plaintext-nil": true,
	"SealPortable/plaintext-max+1": true, "SealDataKeyPortable/size-1025": true,
}

// TestBadInputNeverReachesToken proves that every caller-made value out of
// range (IV, AAD or header and context, plaintext, sizes, label) is refused
// with ErrInvalidInput before any PKCS#11 call: none of the fault wrapper's
// call counters (C_EncryptInit, C_DecryptInit, C_SignInit, C_UnwrapKey,
// C_WrapKey, C_GenerateKey, C_GenerateRandom, C_FindObjectsInit,
// C_OpenSession, …) moves. The operations of a data-key mechanism the token
// lacks refuse the same inputs with ErrMechanismUnsupported instead: they
// check the mechanism first. WrapDataKey checks the size first, so it
// refuses a bad one with ErrInvalidInput on every token.
func TestBadInputNeverReachesToken(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	id := newVersionKey(t, tok)
	aad, pt := []byte("aad"), []byte("plaintext")
	freshID, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}

	type tc struct {
		name string
		want error
		call func() error
	}
	var tests []tc
	type named struct {
		name string
		b    []byte
	}
	aads := []named{{"nil", nil}, {"empty", []byte{}}, {"max+1", make([]byte, MaxAAD+1)}}
	pts := []named{{"nil", nil}, {"empty", []byte{}}, {"max+1", make([]byte, MaxPlaintext+1)}}
	for _, m := range sealMechs {
		want := kindOn(tok, m.feature, ErrInvalidInput)
		goodIV := m.iv(t)
		// A sealed value that opens, so that only the IV or AAD is wrong;
		// any plausible length where the mechanism is refused anyway.
		sealed := make([]byte, 2*cbcBlock+MACSize)
		if has(tok, m.feature) {
			if sealed, err = m.seal(ctx, tok, id, goodIV, aad, pt); err != nil {
				t.Fatal(err)
			}
		}
		add := func(name string, call func() error) {
			if m.suffix == "" || !portableCovered[name] {
				tests = append(tests, tc{name, want, call})
			}
		}
		seal, sealDK, unseal := "Seal"+m.suffix, "SealDataKey"+m.suffix, "Unseal"+m.suffix
		// The wrong lengths, the other mechanism's among them.
		ivs := []named{{"nil", nil}, {"0", []byte{}}, {"12", make([]byte, 12)}, {"16", make([]byte, 16)},
			{fmt.Sprint(m.ivSize - 1), make([]byte, m.ivSize-1)}, {fmt.Sprint(m.ivSize + 1), make([]byte, m.ivSize+1)}}
		for _, v := range ivs {
			name, iv := v.name, v.b
			if len(iv) == m.ivSize {
				continue
			}
			add(seal+"/iv-"+name, func() error { _, err := m.seal(ctx, tok, id, iv, aad, pt); return err })
			add(sealDK+"/iv-"+name, func() error { _, _, err := m.sealDataKey(ctx, tok, id, 32, iv, aad); return err })
			add(unseal+"/iv-"+name, func() error { _, err := m.unseal(ctx, tok, id, iv, aad, sealed); return err })
		}
		for _, v := range aads {
			name, a := v.name, v.b
			add(seal+"/aad-"+name, func() error { _, err := m.seal(ctx, tok, id, goodIV, a, pt); return err })
			add(sealDK+"/aad-"+name, func() error { _, _, err := m.sealDataKey(ctx, tok, id, 32, goodIV, a); return err })
			add(unseal+"/aad-"+name, func() error { _, err := m.unseal(ctx, tok, id, goodIV, a, sealed); return err })
		}
		for _, v := range pts {
			name, p := v.name, v.b
			add(seal+"/plaintext-"+name, func() error { _, err := m.seal(ctx, tok, id, goodIV, aad, p); return err })
		}
		for _, n := range []int{0, -1, MaxDataKey + 1} {
			add(fmt.Sprintf("%s/size-%d", sealDK, n), func() error { _, _, err := m.sealDataKey(ctx, tok, id, n, goodIV, aad); return err })
		}
	}
	// The portable header and context are bounded together, and the
	// header must not be empty whatever the context.
	{
		want, iv, sealed := kindOn(tok, "aes-cbc-hmac", ErrInvalidInput), make([]byte, CBCIVSize), make([]byte, 2*cbcBlock+MACSize)
		for _, v := range []struct {
			name            string
			header, context []byte
		}{
			{"no-header-with-context", nil, []byte("context")},
			{"header-1+context-max", []byte{1}, make([]byte, MaxAAD)},
			{"header-max+context-1", make([]byte, MaxAAD), []byte{1}},
		} {
			tests = append(tests,
				tc{"SealPortable/" + v.name, want, func() error {
					_, err := tok.SealPortable(ctx, id, iv, v.header, v.context, pt)
					return err
				}},
				tc{"SealDataKeyPortable/" + v.name, want, func() error {
					_, _, err := tok.SealDataKeyPortable(ctx, id, 32, iv, v.header, v.context)
					return err
				}},
				tc{"UnsealPortable/" + v.name, want, func() error {
					_, err := tok.UnsealPortable(ctx, id, iv, v.header, v.context, sealed)
					return err
				}})
		}
	}
	for _, n := range []int{0, -8, 8, 15, 17, MaxDataKey + 1, MaxDataKey + 8} {
		tests = append(tests, tc{fmt.Sprintf("WrapDataKey/size-%d", n), ErrInvalidInput, func() error { _, _, err := tok.WrapDataKey(ctx, id, n); return err }})
	}
	for _, n := range []int{0, -1, MaxRandom + 1} {
		tests = append(tests, tc{fmt.Sprintf("GenerateRandom/%d", n), ErrInvalidInput, func() error { _, err := tok.GenerateRandom(ctx, n); return err }})
	}
	for _, v := range []named{{"empty", nil}, {"129", bytes.Repeat([]byte("l"), MaxLabel+1)}} {
		label := string(v.b)
		tests = append(tests,
			tc{"CreateMasterKey/label-" + v.name, ErrInvalidInput, func() error { return tok.CreateMasterKey(ctx, freshID, label) }},
			tc{"CreatePortableKey/label-" + v.name, ErrInvalidInput, func() error { return tok.CreatePortableKey(ctx, freshID, label) }})
	}
	// CreatePortableKey's HMAC key takes the label and "/hmac".
	tests = append(tests, tc{"CreatePortableKey/label-124", ErrInvalidInput, func() error {
		return tok.CreatePortableKey(ctx, freshID, strings.Repeat("l", MaxLabel-len("/hmac")+1))
	}})

	for _, c := range tests {
		runCase(t, tok, c.name, func(t *testing.T) {
			before := allCounts(f)
			err := noPanic(t, c.call)
			wantKind(t, err, c.want)
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
		t.Fatalf("HasKey(id of the refused creations) = %v, %v; want false", ok, err)
	}
	roundTrip(t, tok, id)
	healthy(t, tok, f)
}

// TestBadInputBoundariesAccepted proves that the limits refuse only what they
// must: the smallest and largest valid value of each input works, on every
// mechanism the token has. Those of a mechanism it lacks are refused with
// ErrMechanismUnsupported.
func TestBadInputBoundariesAccepted(t *testing.T) {
	tok := openToken(t)
	ctx := t.Context()
	id := newVersionKey(t, tok)
	type tc struct {
		name    string
		feature string // "" when every token must accept it
		call    func() error
	}
	var tests []tc
	for _, m := range sealMechs {
		iv := m.iv(t)
		seal := func(aad, pt []byte) error {
			sealed, err := m.seal(ctx, tok, id, iv, aad, pt)
			if err != nil {
				return err
			}
			got, err := m.unseal(ctx, tok, id, iv, aad, sealed)
			if err == nil && !bytes.Equal(got, pt) {
				err = errors.New("Unseal returned other bytes")
			}
			return err
		}
		sealDK := func(n int, aad []byte) error {
			dk, sealed, err := m.sealDataKey(ctx, tok, id, n, iv, aad)
			if err != nil {
				return err
			}
			got, err := m.unseal(ctx, tok, id, iv, aad, sealed)
			if err == nil && (len(dk) != n || !bytes.Equal(got, dk)) {
				err = fmt.Errorf("a %d-byte data key unseals to %d other bytes", len(dk), len(got))
			}
			return err
		}
		s := m.suffix
		tests = append(tests,
			tc{"Seal" + s + "+Unseal" + s + "/aad-1/plaintext-1", m.feature, func() error { return seal([]byte{1}, []byte{2}) }},
			tc{"Seal" + s + "+Unseal" + s + "/aad-max/plaintext-4096", m.feature, func() error { return seal(make([]byte, MaxAAD), make([]byte, MaxPlaintext)) }},
			tc{"SealDataKey" + s + "/1", m.feature, func() error { return sealDK(1, []byte{1}) }},
			tc{"SealDataKey" + s + "/1024", m.feature, func() error { return sealDK(MaxDataKey, make([]byte, MaxAAD)) }},
		)
	}
	// The portable header and context share MaxAAD.
	tests = append(tests, tc{"SealPortable+UnsealPortable/header-1+context-max-1", "aes-cbc-hmac", func() error {
		iv, header, context, pt := make([]byte, CBCIVSize), []byte{1}, make([]byte, MaxAAD-1), []byte{2}
		sealed, err := tok.SealPortable(ctx, id, iv, header, context, pt)
		if err != nil {
			return err
		}
		got, err := tok.UnsealPortable(ctx, id, iv, header, context, sealed)
		if err == nil && !bytes.Equal(got, pt) {
			err = errors.New("UnsealPortable returned other bytes")
		}
		return err
	}})
	tests = append(tests,
		tc{"WrapDataKey/16", "aes-kw", func() error { _, _, err := tok.WrapDataKey(ctx, id, 16); return err }},
		tc{"WrapDataKey/longest+Unwrap", "aes-kw", func() error {
			// MaxDataKey, or less where the token makes no generic
			// secret that long (TestGenericKeyMax).
			dk, w, err := tok.WrapDataKey(ctx, id, min(MaxDataKey, max(16, tok.Capabilities().GenericKeyMax)))
			if err != nil {
				return err
			}
			got, err := tok.UnwrapDataKey(ctx, id, w)
			if err == nil && !bytes.Equal(got, dk) {
				err = errors.New("UnwrapDataKey returned other bytes")
			}
			return err
		}},
		tc{"GenerateRandom/1", "", func() error { _, err := tok.GenerateRandom(ctx, 1); return err }},
		tc{"GenerateRandom/1024", "", func() error { _, err := tok.GenerateRandom(ctx, MaxRandom); return err }},
		tc{"CreateMasterKey/label-1", "", func() error { return createAndDestroy(t, tok, "l") }},
		tc{"CreateMasterKey/label-128", "", func() error { return createAndDestroy(t, tok, strings.Repeat("l", MaxLabel)) }},
		tc{"CreatePortableKey/label-123", "aes-cbc-hmac", func() error {
			id, err := NewObjectID()
			if err != nil {
				return err
			}
			if err := tok.CreatePortableKey(ctx, id, strings.Repeat("l", MaxLabel-len("/hmac"))); err != nil {
				return err
			}
			return tok.DestroyKey(ctx, id)
		}},
	)
	for _, tc := range tests {
		runCase(t, tok, tc.name, func(t *testing.T) {
			err := noPanic(t, tc.call)
			if tc.feature != "" {
				wantOK(t, tok, tc.feature, err)
			} else if err != nil {
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

// unsealCase is one bad value given to an unseal; reaches says whether the
// length is plausible, so that only the token can refuse it.
type unsealCase struct {
	name    string
	key     ObjectID
	iv, aad []byte
	sealed  []byte
	reaches bool
}

// TestTamperUnseal proves, for each data-key mechanism the token has, that
// its unseal refuses every tampered, truncated, extended, misdirected or
// oversized sealed value with ErrInvalidCiphertext: each byte flipped in
// turn, each truncation, appended bytes, a wrong IV or AAD, another key's
// value. Plausible lengths reach the token exactly once (aes-gcm's C_Decrypt
// fails; the portable mechanism's MAC, from C_Sign, does not match and nothing is decrypted),
// with no retry and no eviction; the rest never do. After each case the one
// pooled session still seals and unseals. A mechanism the token lacks is
// refused with ErrMechanismUnsupported.
func TestTamperUnseal(t *testing.T) {
	tok, f := openFaulty(t, func(c *Config) { c.PoolSize = 1 })
	eachSealMech(t, tok, f, func(t *testing.T, m sealMech) {
		ctx := t.Context()
		id, other := newVersionKey(t, tok), newVersionKey(t, tok)
		iv := m.iv(t)
		aad, pt := []byte(`{"key":"k1","v":1}`), pattern(32, 5)
		sealed, err := m.seal(ctx, tok, id, iv, aad, pt)
		if err != nil {
			t.Fatal(err)
		}
		otherSealed, err := m.seal(ctx, tok, other, iv, aad, pt)
		if err != nil {
			t.Fatal(err)
		}
		big, err := m.seal(ctx, tok, id, iv, aad, make([]byte, MaxPlaintext))
		if err != nil {
			t.Fatal(err)
		}
		with := func(b []byte, edit func([]byte) []byte) []byte { return edit(bytes.Clone(b)) }
		// plausible says whether an unseal takes a value of n bytes to
		// the token: the lengths a seal can make.
		plausible := func(n int) bool {
			for p := 1; p <= MaxPlaintext; p++ {
				if p+m.overhead(p) == n {
					return true
				}
			}
			return false
		}

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
				sealed: bytes.Clone(sealed[:n]), reaches: plausible(n),
			})
		}
		for _, n := range []int{1, 8, 16} {
			tests = append(tests, unsealCase{
				name: fmt.Sprintf("append-%d", n), key: id, iv: iv, aad: aad,
				sealed: append(bytes.Clone(sealed), make([]byte, n)...), reaches: plausible(len(sealed) + n),
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
				iv: with(iv, func(b []byte) []byte { b[m.ivSize-1] ^= 1; return b })},
			unsealCase{name: "other-keys-value", key: id, iv: iv, aad: aad, sealed: otherSealed, reaches: true},
			unsealCase{name: "opened-with-other-key", key: other, iv: iv, aad: aad, sealed: sealed, reaches: true},
			unsealCase{name: "over-max-by-1", key: id, iv: iv, aad: aad, sealed: append(bytes.Clone(big), 0)},
			unsealCase{name: "over-max-by-a-block", key: id, iv: iv, aad: aad, sealed: append(bytes.Clone(big), make([]byte, cbcBlock)...)},
			unsealCase{name: "twice-max", key: id, iv: iv, aad: aad, sealed: make([]byte, 2*MaxPlaintext)},
			unsealCase{name: "nil", key: id, iv: iv, aad: aad},
		)
		checked := append(append([]string(nil), m.rejects...), m.never...)

		for _, tc := range tests {
			runCase(t, tok, tc.name, func(t *testing.T) {
				before := allCounts(f)
				got, err := noPanic2(t, func() ([]byte, error) { return m.unseal(ctx, tok, tc.key, tc.iv, tc.aad, tc.sealed) })
				wantKind(t, err, ErrInvalidCiphertext)
				if got != nil {
					t.Fatalf("Unseal%s returned %d bytes with its error", m.suffix, len(got))
				}
				after := allCounts(f)
				for _, op := range checked {
					want := 0
					if tc.reaches && slices.Contains(m.rejects, op) {
						want = 1
					}
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
	})
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
// 1032 bytes (all refused before the token, on every token: the length is
// checked before the mechanism), each byte flipped in turn, whole-block
// truncations and extensions, and a value wrapped under another master key
// (refused by the token's RFC 3394 integrity check, once, with no
// eviction). A token without aes-kw refuses these plausible values with
// ErrMechanismUnsupported instead, before any C_UnwrapKey. After each case
// the one pooled session still works.
func TestTamperUnwrapDataKey(t *testing.T) {
	tok, f := openFaulty(t, func(c *Config) { c.PoolSize = 1 })
	ctx := t.Context()
	id, other := newVersionKey(t, tok), newVersionKey(t, tok)
	kw := has(tok, "aes-kw")
	// Wrapped values of the sizes WrapDataKey makes: the token's own where
	// it wraps, otherwise RFC 3394 wraps under a key of the test's, which
	// are just as plausible.
	wrap := func(key ObjectID, n int) (dk, w []byte) {
		t.Helper()
		if !kw {
			dk = pattern(n, byte(n))
			return dk, goKeyWrap(t, pattern(32, key[0]), dk)
		}
		dk, w, err := tok.WrapDataKey(ctx, key, n)
		if err != nil {
			t.Fatal(err)
		}
		return dk, w
	}
	dk, w := wrap(id, 32)
	// The longest wrapped key, made up to the longest length with bytes
	// of no meaning where the token makes no 1024-byte data key.
	_, bigW := wrap(id, min(MaxDataKey, max(16, tok.Capabilities().GenericKeyMax)))
	bigW = append(bigW, pattern(MaxDataKey+wrapOverhead-len(bigW), 0x5a)...)
	_, otherW := wrap(other, 32)

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
		tc{"trunc-block-1024", bytes.Clone(bigW[:MaxDataKey]), !kw || tok.Capabilities().GenericKeyMax >= MaxDataKey-wrapOverhead},
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
			want, unwraps := ErrInvalidCiphertext, 0
			switch {
			case c.reaches && kw:
				unwraps = 1
			case c.reaches:
				want = ErrMechanismUnsupported
			}
			wantKind(t, err, want)
			if got != nil {
				t.Fatalf("UnwrapDataKey returned %d bytes with its error", len(got))
			}
			var code pkcs11.Error
			if unwraps == 1 && !errors.As(err, &code) {
				t.Fatalf("error %q carries no PKCS#11 return code", err)
			}
			after := allCounts(f)
			if d := after["UnwrapKey"] - before["UnwrapKey"]; d != unwraps {
				t.Fatalf("C_UnwrapKey ran %d times, want %d", d, unwraps)
			}
			if unwraps == 0 && !maps.Equal(before, after) {
				t.Fatalf("a value refused before the token reached the module: %v, then %v", before, after)
			}
			for _, op := range []string{"OpenSession", "CloseSession", "Login", "Initialize"} {
				if after[op] != before[op] {
					t.Fatalf("C_%s ran %d times: the session or module was reset for a bad wrapped key", op, after[op]-before[op])
				}
			}
			back, err := tok.UnwrapDataKey(ctx, id, w)
			if kw && (err != nil || !bytes.Equal(back, dk)) {
				t.Fatalf("UnwrapDataKey of the good value afterwards = %x, %v", back, err)
			}
			if !kw {
				wantKind(t, err, ErrMechanismUnsupported)
			}
			roundTrip(t, tok, id)
		})
	}
	healthy(t, tok, f)
}

// testPairSpec is the key pair the token under test makes: EC P-256 where
// it has ecdsa, otherwise RSA-2048 where it has rsa. On a token with
// neither it proves both refused with ErrMechanismUnsupported, and returns
// false: the caller goes on without a key pair.
func testPairSpec(t testing.TB, tok *Token) (KeySpec, bool) {
	t.Helper()
	switch {
	case has(tok, "ecdsa"):
		return ECP256, true
	case has(tok, "rsa"):
		return RSA2048, true
	}
	for _, spec := range []KeySpec{ECP256, RSA2048} {
		id, err := NewObjectID()
		if err != nil {
			t.Fatal(err)
		}
		_, err = tok.CreateKeyPair(t.Context(), id, "hsmkms/test/refused", spec)
		wantKind(t, err, ErrMechanismUnsupported)
	}
	return "", false
}

// TestBadInputCreateMasterKeyExistingID proves that CreateMasterKey refuses a
// CKA_ID the token already holds (a key version's, or a key pair's) with
// ErrInvalidInput, generates nothing, and leaves the objects with that
// CKA_ID as they were.
func TestBadInputCreateMasterKeyExistingID(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	version := newVersionKey(t, tok)
	type existing struct {
		name string
		id   ObjectID
		want int // objects with the CKA_ID
	}
	// A portable version's HMAC key has a CKA_ID of its own.
	tests := []existing{{"key-version", version, 1}}
	if spec, ok := testPairSpec(t, tok); ok {
		pair, err := NewObjectID()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tok.CreateKeyPair(ctx, pair, "hsmkms/test/pair", spec); err != nil {
			t.Fatalf("CreateKeyPair(%s): %v", spec, err)
		}
		tests = append(tests, existing{"key-pair-" + string(spec), pair, 2})
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
	roundTrip(t, tok, version)
	healthy(t, tok, f)
}

// TestBadInputUnknownKey proves that every operation on an ObjectID the
// token does not hold gives ErrKeyNotFound, never ErrToken or a recovery:
// an ID never created, one destroyed through the API, and one destroyed
// behind the handle cache's back (a stale cached handle, made afresh for
// each operation so that each meets it). The operations of a mechanism the
// token lacks give ErrMechanismUnsupported, without a module call.
func TestBadInputUnknownKey(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	live := newVersionKey(t, tok)

	never, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	destroyed := newVersionKey(t, tok)
	roundTrip(t, tok, destroyed)
	if err := tok.DestroyKey(ctx, destroyed); err != nil {
		t.Fatal(err)
	}
	// stale makes a version, uses it so that its handles are cached, and
	// destroys its objects behind the cache.
	stale := func(t *testing.T) ObjectID {
		t.Helper()
		id := newVersionKey(t, tok)
		roundTrip(t, tok, id)
		p := raw(t, tok)
		s := session(t, tok)
		for _, ckaID := range [][]byte{id[:], macID(id)} {
			hs, err := findObjects(p, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID)}, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hs {
				if err := p.DestroyObject(s, h); err != nil {
					t.Fatal(err)
				}
			}
		}
		return id
	}

	aad := []byte("aad")
	type op struct {
		name, feature string
		call          func(ObjectID) error
	}
	var ops []op
	for _, m := range sealMechs {
		iv := m.iv(t)
		ops = append(ops,
			op{"Seal" + m.suffix, m.feature, func(id ObjectID) error { _, err := m.seal(ctx, tok, id, iv, aad, []byte("pt")); return err }},
			op{"Unseal" + m.suffix, m.feature, func(id ObjectID) error {
				_, err := m.unseal(ctx, tok, id, iv, aad, make([]byte, 2*cbcBlock+MACSize))
				return err
			}},
			op{"SealDataKey" + m.suffix, m.feature, func(id ObjectID) error { _, _, err := m.sealDataKey(ctx, tok, id, 32, iv, aad); return err }},
		)
	}
	ops = append(ops,
		op{"WrapDataKey", "aes-kw", func(id ObjectID) error { _, _, err := tok.WrapDataKey(ctx, id, 32); return err }},
		op{"UnwrapDataKey", "aes-kw", func(id ObjectID) error { _, err := tok.UnwrapDataKey(ctx, id, make([]byte, 40)); return err }},
	)
	ids := []struct {
		name string
		id   func(t *testing.T) ObjectID
	}{
		{"never-created", func(*testing.T) ObjectID { return never }},
		{"destroyed", func(*testing.T) ObjectID { return destroyed }},
		{"destroyed-behind-cache", stale},
	}
	for _, k := range ids {
		for _, op := range ops {
			runCase(t, tok, k.name+"/"+op.name, func(t *testing.T) {
				id := k.id(t)
				before := allCounts(f)
				err := noPanic(t, func() error { return op.call(id) })
				after := allCounts(f)
				if !has(tok, op.feature) {
					wantKind(t, err, ErrMechanismUnsupported)
					if !maps.Equal(before, after) {
						t.Fatalf("a refused mechanism reached the module: %v, then %v", before, after)
					}
					return
				}
				wantKind(t, err, ErrKeyNotFound)
				reached := 0
				for _, c := range tokenOps {
					d := after[c] - before[c]
					// Only the stale handle may reach the token, once, to learn it is stale.
					if d != 0 && (k.name != "destroyed-behind-cache" || d > 1) {
						t.Fatalf("C_%s ran %d times for a key that does not exist", c, d)
					}
					reached += d
				}
				if k.name == "destroyed-behind-cache" && reached == 0 {
					t.Fatalf("no call met the stale handle: the case tests nothing")
				}
			})
		}
	}
	roundTrip(t, tok, live)
	healthy(t, tok, f)
}

// TestIVFreshEachOf10000Seals proves, for each data-key mechanism the token
// has, that 10,000 seals of one plaintext with fresh IVs (NewIV, NewCBCIV)
// never repeat an IV or a sealed value, and that the output is a function
// of the IV given (sealing again with the first IV reproduces the first
// output): a token that ignored the caller's IV would either repeat
// outputs or fail the reproduction.
func TestIVFreshEachOf10000Seals(t *testing.T) {
	const n = 10000
	tok := openToken(t)
	eachSealMech(t, tok, nil, func(t *testing.T, m sealMech) {
		ctx := t.Context()
		id := newVersionKey(t, tok)
		pt, aad := []byte("the same plaintext every time"), []byte("the same aad")
		ivs := make(map[string]int, n)
		outs := make(map[string]int, n)
		var firstIV, firstOut []byte
		for i := range n {
			iv, err := m.newIV()
			if err != nil {
				t.Fatal(err)
			}
			if len(iv) != m.ivSize {
				t.Fatalf("the IV maker returned %d bytes, want %d", len(iv), m.ivSize)
			}
			sealed, err := m.seal(ctx, tok, id, iv, aad, pt)
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
		again, err := m.seal(ctx, tok, id, firstIV, aad, pt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, firstOut) {
			t.Fatalf("sealing again with the first IV gave %x, first time %x: the token does not use the caller's IV", again, firstOut)
		}
		got, err := m.unseal(ctx, tok, id, firstIV, aad, firstOut)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("unseal of the first seal = %q, %v", got, err)
		}
	})
	healthy(t, tok, nil)
}

// TestTamperVanishedObjectKeylessOps proves that an object vanishing under an
// operation that names no key by CKA_ID (CKR_OBJECT_HANDLE_INVALID, which two
// concurrent DestroyKey calls for one id produce on SoftHSM2: 3 in 300 runs)
// is retried once and succeeds: no nil-pointer panic, no leaked session.
func TestTamperVanishedObjectKeylessOps(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	live, doomed := newVersionKey(t, tok), newVersionKey(t, tok)
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
				err = errors.New("Objects does not list the live key version")
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
