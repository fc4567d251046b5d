package hsm

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/miekg/pkcs11"
)

// newPortableKey makes a portable-mechanism version on tok.
func newPortableKey(t testing.TB, tok *Token) ObjectID {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.CreatePortableKey(t.Context(), id, "hsmkms/test/"+id.String()); err != nil {
		t.Fatalf("CreatePortableKey: %v", err)
	}
	return id
}

func newCBCIV(t testing.TB) []byte {
	t.Helper()
	iv, err := NewCBCIV()
	if err != nil {
		t.Fatal(err)
	}
	return iv
}

// TestPortableRoundTrip seals plaintexts and data keys of every size class
// and opens them, on SoftHSM2's real CBC-PAD and HMAC.
func TestPortableRoundTrip(t *testing.T) {
	tok := openToken(t)
	id := newPortableKey(t, tok)
	header, context := []byte("HK\x01\x03header"), []byte{0, 1, 0, 1, 'k', 0, 1, 'v'}
	for _, n := range []int{1, 15, 16, 17, 32, 1024, MaxPlaintext} {
		iv := newCBCIV(t)
		plain := bytes.Repeat([]byte{byte(n)}, n)
		sealed, err := tok.SealPortable(t.Context(), id, iv, header, context, plain)
		if err != nil {
			t.Fatalf("SealPortable(%d bytes): %v", n, err)
		}
		if want := (n/cbcBlock+1)*cbcBlock + MACSize; len(sealed) != want {
			t.Errorf("%d bytes sealed to %d, want %d", n, len(sealed), want)
		}
		got, err := tok.UnsealPortable(t.Context(), id, iv, header, context, sealed)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("UnsealPortable(%d bytes) = %d bytes, %v", n, len(got), err)
		}
	}
	for _, n := range []int{16, 32, MaxDataKey} {
		iv := newCBCIV(t)
		dk, sealed, err := tok.SealDataKeyPortable(t.Context(), id, n, iv, header, nil)
		if err != nil || len(dk) != n {
			t.Fatalf("SealDataKeyPortable(%d) = %d bytes, %v", n, len(dk), err)
		}
		got, err := tok.UnsealPortable(t.Context(), id, iv, header, nil, sealed)
		if err != nil || !bytes.Equal(got, dk) {
			t.Fatalf("UnsealPortable of a %d-byte data key: %v", n, err)
		}
	}
}

// TestPortableTamperNeverDecrypts changes each part the MAC covers, and
// the key: every change is ErrInvalidCiphertext, decided by the MAC (C_Sign on the token)
// before any C_Decrypt reaches the token.
func TestPortableTamperNeverDecrypts(t *testing.T) {
	tok, f := openFaulty(t)
	id, other := newPortableKey(t, tok), newPortableKey(t, tok)
	header, context := []byte("header"), []byte("context")
	iv := newCBCIV(t)
	sealed, err := tok.SealPortable(t.Context(), id, iv, header, context, []byte("a data key of 32 bytes, exactly."))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	for _, tc := range []struct {
		name                 string
		id                   ObjectID
		iv, hdr, ctx, sealed []byte
	}{
		{"IV", id, flip(iv, 0), header, context, sealed},
		{"header", id, iv, flip(header, 5), context, sealed},
		{"context", id, iv, header, flip(context, 0), sealed},
		{"no context", id, iv, header, nil, sealed},
		{"ciphertext", id, iv, header, context, flip(sealed, 3)},
		{"last ciphertext block", id, iv, header, context, flip(sealed, len(sealed)-MACSize-1)},
		{"MAC", id, iv, header, context, flip(sealed, len(sealed)-1)},
		{"ciphertext moved into the header", id, iv, append(bytes.Clone(header), sealed[:16]...), context, sealed[16:]},
		{"another version", other, iv, header, context, sealed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decrypts := f.count("Decrypt") + f.count("DecryptInit")
			_, err := tok.UnsealPortable(t.Context(), tc.id, tc.iv, tc.hdr, tc.ctx, tc.sealed)
			if !errors.Is(err, ErrInvalidCiphertext) {
				t.Errorf("UnsealPortable: %v, want ErrInvalidCiphertext", err)
			}
			if n := f.count("Decrypt") + f.count("DecryptInit") - decrypts; n != 0 {
				t.Errorf("a ciphertext whose MAC fails reached C_Decrypt (%d calls)", n)
			}
		})
	}
	// The session that saw the refusals still works.
	if _, err := tok.UnsealPortable(t.Context(), id, iv, header, context, sealed); err != nil {
		t.Errorf("UnsealPortable after the refusals: %v", err)
	}
}

// TestPortableBadInputBeforeToken: lengths are checked before any cgo call.
func TestPortableBadInputBeforeToken(t *testing.T) {
	tok, f := openFaulty(t)
	id := newPortableKey(t, tok)
	iv := newCBCIV(t)
	before := f.total()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"short IV", func() error {
			_, err := tok.SealPortable(t.Context(), id, iv[:12], []byte("h"), nil, []byte("p"))
			return err
		}(), ErrInvalidInput},
		{"no header", func() error { _, err := tok.SealPortable(t.Context(), id, iv, nil, nil, []byte("p")); return err }(), ErrInvalidInput},
		{"empty plaintext", func() error { _, err := tok.SealPortable(t.Context(), id, iv, []byte("h"), nil, nil); return err }(), ErrInvalidInput},
		{"plaintext too long", func() error {
			_, err := tok.SealPortable(t.Context(), id, iv, []byte("h"), nil, make([]byte, MaxPlaintext+1))
			return err
		}(), ErrInvalidInput},
		{"data key too long", func() error {
			_, _, err := tok.SealDataKeyPortable(t.Context(), id, MaxDataKey+1, iv, []byte("h"), nil)
			return err
		}(), ErrInvalidInput},
		{"sealed shorter than a block and a MAC", func() error {
			_, err := tok.UnsealPortable(t.Context(), id, iv, []byte("h"), nil, make([]byte, MACSize+15))
			return err
		}(), ErrInvalidCiphertext},
		{"sealed not whole blocks", func() error {
			_, err := tok.UnsealPortable(t.Context(), id, iv, []byte("h"), nil, make([]byte, MACSize+17))
			return err
		}(), ErrInvalidCiphertext},
		{"sealed too long", func() error {
			_, err := tok.UnsealPortable(t.Context(), id, iv, []byte("h"), nil, make([]byte, MACSize+MaxPlaintext+2*cbcBlock))
			return err
		}(), ErrInvalidCiphertext},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if n := f.total() - before; n != 0 {
		t.Errorf("bad inputs made %d PKCS#11 calls", n)
	}
}

// TestPortableKeyCompletes: CreatePortableKey makes only what is missing,
// so a version whose maker died between its two objects is completed, and
// a second call changes nothing.
func TestPortableKeyCompletes(t *testing.T) {
	tok := openToken(t)
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	// Half made: only the AES key.
	if err := tok.CreateMasterKey(t.Context(), id, "hsmkms/test/half"); err != nil {
		t.Fatal(err)
	}
	if err := tok.CreatePortableKey(t.Context(), id, "hsmkms/test/half"); err != nil {
		t.Fatalf("CreatePortableKey on a half-made version: %v", err)
	}
	iv := newCBCIV(t)
	sealed, err := tok.SealPortable(t.Context(), id, iv, []byte("h"), nil, []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.CreatePortableKey(t.Context(), id, "hsmkms/test/half"); err != nil {
		t.Fatalf("CreatePortableKey again: %v", err)
	}
	if got, err := tok.UnsealPortable(t.Context(), id, iv, []byte("h"), nil, sealed); err != nil || string(got) != "p" {
		t.Fatalf("after a second CreatePortableKey: %q, %v (the HMAC key must not change)", got, err)
	}
	ctx, s := raw(t, tok), session(t, tok)
	// The AES key has the version's CKA_ID, the HMAC key that and MACIDSuffix.
	count := func() (int, int) { return countByCKAID(t, ctx, s, id[:]), countByCKAID(t, ctx, s, macID(id)) }
	if aes, mac := count(); aes != 1 || mac != 1 {
		t.Errorf("%d AES and %d HMAC objects for the version, want 1 of each", aes, mac)
	}
	if err := tok.DestroyKey(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if aes, mac := count(); aes != 0 || mac != 0 {
		t.Errorf("%d AES and %d HMAC objects left after DestroyKey, want none", aes, mac)
	}
}

// TestExtractPortableMACKeyRefused: the HMAC key is as unreadable as a
// master key: every raw PKCS#11 way of getting it out is refused, with the
// very code the same attack on the version's AES key gets, and leaves the
// key as it was. The same reads and wraps work on an extractable key (the
// refusals come from the keys' flags, not from a broken call).
func TestExtractPortableMACKeyRefused(t *testing.T) {
	tok := openToken(t)
	if !keepsKeysIn(t, tok) {
		return
	}
	id, wrappingID := newPortableKey(t, tok), newMasterKey(t, tok)
	ctx, s := raw(t, tok), session(t, tok)
	wrapping, err := findOne(ctx, s, *secretKey(wrappingID))
	if err != nil {
		t.Fatal(err)
	}
	attacks := macAttacks(t, tok)
	mac, aes := *macKey(id), *secretKey(id)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			codes := map[string]pkcs11.Error{}
			for _, k := range []struct {
				name string
				ref  keyRef
			}{{"HMAC key", mac}, {"AES key", aes}} {
				h, err := findOne(ctx, s, k.ref)
				if err != nil {
					t.Fatal(err)
				}
				code, ok := ckr(a.run(ctx, s, h, wrapping))
				if !ok || !slices.Contains(a.want, code) {
					t.Fatalf("%s: the token answered %v; want a refusal, one of %v", k.name, code, a.want)
				}
				codes[k.name] = code
			}
			if codes["HMAC key"] != codes["AES key"] {
				t.Errorf("refused with %v, the AES key with %v: want the same refusal", codes["HMAC key"], codes["AES key"])
			}
			t.Logf("refused with %v", codes["HMAC key"])
		})
	}
	for _, ref := range []keyRef{mac, aes} {
		checkUnextractable(t, tok, ctx, s, ref)
		if n := countByCKAID(t, ctx, s, ref.ckaID()); n != 1 {
			t.Errorf("%d objects with CKA_ID %x after the attacks, want 1 (no copy)", n, ref.ckaID())
		}
	}

	// The control: an extractable, readable session key of the same kind.
	control, err := ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		t.Fatalf("generating the control key: %v", err)
	}
	t.Cleanup(func() { _ = ctx.DestroyObject(s, control) })
	for _, a := range attacks {
		if a.control {
			if err := a.run(ctx, s, control, wrapping); err != nil {
				t.Errorf("%s on the extractable control key: %v", a.name, err)
			}
		}
	}
}

// macAttack is one raw PKCS#11 way of getting a secret key out of the
// token, and the refusals PKCS#11 allows for it.
type macAttack struct {
	name string
	run  func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, wrapping pkcs11.ObjectHandle) error
	want []pkcs11.Error
	// control: the attack succeeds on an extractable, non-sensitive key.
	control bool
}

// macAttacks are the attacks on tok's secret keys: read the value; wrap it
// under a master key with every AES wrapping mechanism tok lists for
// wrapping (those it does not list are refused too, as unknown); copy it
// with new flags; set new flags on it.
func macAttacks(t *testing.T, tok *Token) []macAttack {
	t.Helper()
	mechs, err := tok.Mechanisms(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	attacks := []macAttack{{name: "read CKA_VALUE", control: true,
		want: []pkcs11.Error{pkcs11.CKR_ATTRIBUTE_SENSITIVE},
		run: func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) error {
			_, err := ctx.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
			return err
		}}}
	iv := make([]byte, 16)
	for _, w := range []struct {
		mech  uint
		param []byte
	}{
		{pkcs11.CKM_AES_KEY_WRAP, nil}, {pkcs11.CKM_AES_KEY_WRAP_PAD, nil}, {ckmAESKeyWrapKWP, nil},
		{pkcs11.CKM_AES_CBC_PAD, iv}, {pkcs11.CKM_AES_CBC, iv}, {pkcs11.CKM_AES_ECB, nil},
	} {
		listed := slices.ContainsFunc(mechs, func(m Mechanism) bool {
			return m.Type == w.mech && slices.Contains(m.Flags, "WRAP")
		})
		a := macAttack{name: "wrap with " + MechanismName(w.mech), control: listed,
			want: []pkcs11.Error{pkcs11.CKR_KEY_UNEXTRACTABLE},
			run: func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, wrapping pkcs11.ObjectHandle) error {
				_, err := ctx.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(w.mech, w.param)}, wrapping, key)
				return err
			}}
		if !listed {
			// Not a wrapping mechanism of this token: refused as such,
			// or (tokens that wrap with more than they list) as the key's.
			a.name += " (not listed for wrapping)"
			a.want = append(a.want, pkcs11.CKR_MECHANISM_INVALID)
		}
		attacks = append(attacks, a)
	}
	// PKCS#11 v2.40 refuses changes to an object that is not modifiable or
	// not copyable with CKR_ACTION_PROHIBITED; v2.20, which has neither
	// that code nor CKA_COPYABLE, with CKR_ATTRIBUTE_READ_ONLY, as it does
	// turning CKA_EXTRACTABLE on or CKA_SENSITIVE off in any version.
	changed := []pkcs11.Error{pkcs11.CKR_ACTION_PROHIBITED, pkcs11.CKR_ATTRIBUTE_READ_ONLY}
	for _, c := range []struct {
		name string
		copy bool
		attr []*pkcs11.Attribute
	}{
		{"copy with CKA_EXTRACTABLE=true", true, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}},
		{"copy as a session object with CKA_SENSITIVE=false", true, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)}},
		{"set CKA_EXTRACTABLE=true", false, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}},
		{"set CKA_SENSITIVE=false", false, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)}},
	} {
		attacks = append(attacks, macAttack{name: c.name, want: changed,
			run: func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) error {
				if c.copy {
					_, err := ctx.CopyObject(s, key, c.attr)
					return err
				}
				return ctx.SetAttributeValue(s, key, c.attr)
			}})
	}
	return attacks
}

// checkUnextractable is checkKeyFlags for the key ref names.
func checkUnextractable(t *testing.T, tok *Token, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, ref keyRef) {
	t.Helper()
	h, err := findOne(ctx, s, ref)
	if err != nil {
		t.Fatal(err)
	}
	checkKeyFlags(t, tok, ctx, s, h)
}

// TestPortableUnsupported: a token without CBC-PAD or HMAC refuses to make
// portable keys before any object is created.
func TestPortableUnsupported(t *testing.T) {
	for _, mech := range []uint{pkcs11.CKM_AES_CBC_PAD, pkcs11.CKM_SHA256_HMAC, pkcs11.CKM_GENERIC_SECRET_KEY_GEN} {
		t.Run(MechanismName(mech), func(t *testing.T) {
			tok, f, err := openFaultyErr(t, map[uint]bool{mech: true})
			if err != nil {
				t.Fatal(err)
			}
			id, _ := NewObjectID()
			gen := f.count("GenerateKey")
			wantUnsupported(t, "CreatePortableKey", tok.CreatePortableKey(t.Context(), id, "hsmkms/test/x"), MechanismName(mech))
			if n := f.count("GenerateKey") - gen; n != 0 {
				t.Errorf("CreatePortableKey made %d objects", n)
			}
		})
	}
}

// TestPortableStaleMACHandle: when the HMAC key's cached handle goes stale
// (the object was replaced), the operation finds both of the version's
// keys again and succeeds, with the new HMAC key.
func TestPortableStaleMACHandle(t *testing.T) {
	tok, f := openFaulty(t)
	id := newPortableKey(t, tok)
	iv := newCBCIV(t)
	before, err := tok.SealPortable(t.Context(), id, iv, []byte("h"), nil, []byte("p"))
	if err != nil {
		t.Fatal(err) // both handles are cached now
	}
	ctx, s := raw(t, tok), session(t, tok)
	old, err := findOne(ctx, s, *macKey(id))
	if err != nil {
		t.Fatal(err)
	}
	// Replace the HMAC key behind the cache's back. A token that gives a
	// new object the lowest free handle (openCryptoki does) would give the
	// new key the old one's number, and the cached handle would not be
	// stale but name it: a session object holds that number while the new
	// key is made, and is destroyed after, so that the old number names
	// nothing. The checks below make sure of both.
	if err := ctx.DestroyObject(s, old); err != nil {
		t.Fatal(err)
	}
	holder, err := ctx.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "hsmkms/test/handle holder"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.CreatePortableKey(t.Context(), id, "hsmkms/test/stale"); err != nil {
		t.Fatal(err)
	}
	if err := ctx.DestroyObject(s, holder); err != nil {
		t.Fatal(err)
	}
	if now, err := findOne(ctx, s, *macKey(id)); err != nil || now == old {
		t.Fatalf("the new HMAC key's handle %d, %v: the test needs one other than %d", now, err, old)
	}
	_, err = ctx.GetAttributeValue(s, old, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)})
	if code, _ := ckr(err); code != pkcs11.CKR_OBJECT_HANDLE_INVALID {
		t.Fatalf("the old handle after C_DestroyObject: %v, want CKR_OBJECT_HANDLE_INVALID", err)
	}

	finds, signs := f.count("FindObjectsInit"), f.count("SignInit")
	sealed, err := tok.SealPortable(t.Context(), id, iv, []byte("h"), nil, []byte("p"))
	if err != nil {
		t.Fatalf("SealPortable with a stale HMAC handle: %v", err)
	}
	// C_SignInit met the stale handle; the retry found both keys again.
	if n := f.count("SignInit") - signs; n != 2 {
		t.Errorf("C_SignInit called %d times, want 2 (the stale handle, then the new one)", n)
	}
	if n := f.count("FindObjectsInit") - finds; n != 2 {
		t.Errorf("C_FindObjectsInit called %d times, want 2 (the AES and the HMAC key)", n)
	}
	if got, err := tok.UnsealPortable(t.Context(), id, iv, []byte("h"), nil, sealed); err != nil || string(got) != "p" {
		t.Fatalf("UnsealPortable: %q, %v", got, err)
	}
	// The new HMAC key is in use: what the old one sealed no longer opens.
	if _, err := tok.UnsealPortable(t.Context(), id, iv, []byte("h"), nil, before); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("UnsealPortable of a value sealed under the destroyed HMAC key: %v, want ErrInvalidCiphertext", err)
	}
}
