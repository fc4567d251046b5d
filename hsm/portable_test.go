package hsm

import (
	"bytes"
	"errors"
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
// the key: every change is ErrInvalidCiphertext, decided by C_Verify
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
	if n := rawCount(t, ctx, s, id); n != 2 {
		t.Errorf("%d objects with the version's CKA_ID, want 2 (AES and HMAC)", n)
	}
	if err := tok.DestroyKey(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if n := rawCount(t, ctx, s, id); n != 0 {
		t.Errorf("%d objects left after DestroyKey, want 0", n)
	}
}

// TestExtractPortableMACKeyRefused: the HMAC key is as unreadable as a
// master key: the same attacks get the same refusals.
func TestExtractPortableMACKeyRefused(t *testing.T) {
	tok := openToken(t)
	id, other := newPortableKey(t, tok), newMasterKey(t, tok)
	attacks := append([]attack{
		readAttack("read CKA_VALUE", pkcs11.CKA_VALUE),
		wrapAttack("wrap under a master key with CKM_AES_KEY_WRAP_PAD", pkcs11.CKM_AES_KEY_WRAP_PAD),
	}, changeAttacks...)
	runAttacks(t, tok, *macKey(id), other, attacks)
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
// (the object was replaced), the operation re-finds it and succeeds.
func TestPortableStaleMACHandle(t *testing.T) {
	tok := openToken(t)
	id := newPortableKey(t, tok)
	iv := newCBCIV(t)
	if _, err := tok.SealPortable(t.Context(), id, iv, []byte("h"), nil, []byte("p")); err != nil {
		t.Fatal(err) // both handles are cached now
	}
	ctx, s := raw(t, tok), session(t, tok)
	old, err := findOne(ctx, s, *macKey(id))
	if err != nil {
		t.Fatal(err)
	}
	// Replace the HMAC key behind the cache's back; the check below makes
	// sure the new object did not get the old handle number.
	if err := ctx.DestroyObject(s, old); err != nil {
		t.Fatal(err)
	}
	if err := tok.CreatePortableKey(t.Context(), id, "hsmkms/test/stale"); err != nil {
		t.Fatal(err)
	}
	if now, err := findOne(ctx, s, *macKey(id)); err != nil || now == old {
		t.Fatalf("the new HMAC key's handle %d, %v: the test needs one other than %d", now, err, old)
	}
	sealed, err := tok.SealPortable(t.Context(), id, iv, []byte("h"), nil, []byte("p"))
	if err != nil {
		t.Fatalf("SealPortable with a stale HMAC handle: %v", err)
	}
	if got, err := tok.UnsealPortable(t.Context(), id, iv, []byte("h"), nil, sealed); err != nil || string(got) != "p" {
		t.Fatalf("UnsealPortable: %q, %v", got, err)
	}
}
