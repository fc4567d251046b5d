package hsm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// Known-answer tests: the token's AES-GCM and AES key wrap, driven through
// the package's API, give exactly what Go's crypto/cipher, a Go RFC 3394
// reference and the published vectors give for the same key.

// importKey creates a session secret key object of keyType with the known
// value on session s and returns its CKA_ID and handle. This is test-only:
// the package itself never imports key values. The object is a session
// object (TOKEN=false); SoftHSM2 shows session objects to every session of
// the application (TestKnownImportVisibleToOtherSessions checks it), so the
// package's other pool sessions address it by CKA_ID while s stays
// borrowed. It is destroyed, and its cached handle forgotten, when the test
// ends.
func importKey(t testing.TB, tok *Token, s pkcs11.SessionHandle, keyType uint, value []byte) (ObjectID, pkcs11.ObjectHandle) {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	p := raw(t, tok)
	h, err := p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id[:]),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "hsmkms-test/kat/"+id.String()),
	})
	if err != nil {
		t.Fatalf("C_CreateObject of a known key: %v", err)
	}
	t.Cleanup(func() {
		tok.keys.forget(*secretKey(id))
		if err := p.DestroyObject(s, h); err != nil {
			t.Errorf("destroying the imported key: %v", err)
		}
	})
	return id, h
}

// importAES imports a known AES key and returns its CKA_ID.
func importAES(t testing.TB, tok *Token, s pkcs11.SessionHandle, value []byte) ObjectID {
	t.Helper()
	id, _ := importKey(t, tok, s, pkcs11.CKK_AES, value)
	return id
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// pattern returns n bytes that differ from position to position.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func goGCM(t testing.TB, key []byte) cipher.AEAD {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// kwIV is RFC 3394's default initial value.
var kwIV = []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// goKeyWrap is RFC 3394 §2.2.1 (index-based form), a reference independent
// of the token.
func goKeyWrap(t testing.TB, kek, p []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	n := len(p) / 8
	a := append([]byte(nil), kwIV...)
	r := append([]byte(nil), p...)
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[i*8:(i+1)*8])
			b.Encrypt(buf, buf)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(buf[:8])^uint64(n*j+i+1))
			copy(r[i*8:], buf[8:])
		}
	}
	return append(a, r...)
}

// goKeyUnwrap is RFC 3394 §2.2.2 with the §2.2.3 integrity check.
func goKeyUnwrap(t testing.TB, kek, c []byte) ([]byte, bool) {
	t.Helper()
	b, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	n := len(c)/8 - 1
	a := append([]byte(nil), c[:8]...)
	r := append([]byte(nil), c[8:]...)
	buf := make([]byte, 16)
	for j := 5; j >= 0; j-- {
		for i := n - 1; i >= 0; i-- {
			binary.BigEndian.PutUint64(buf, binary.BigEndian.Uint64(a)^uint64(n*j+i+1))
			copy(buf[8:], r[i*8:(i+1)*8])
			b.Decrypt(buf, buf)
			copy(a, buf[:8])
			copy(r[i*8:], buf[8:])
		}
	}
	return r, subtle.ConstantTimeCompare(a, kwIV) == 1
}

// TestKnownImportVisibleToOtherSessions proves the premise of the known-answer
// tests: a session object created on one pool session is found by CKA_ID on
// another session and used by the package's API on yet another one.
func TestKnownImportVisibleToOtherSessions(t *testing.T) {
	tok := openToken(t)
	s1 := session(t, tok)
	s2 := session(t, tok)
	key := pattern(32, 1)
	id, h := importKey(t, tok, s1, pkcs11.CKK_AES, key)
	got, err := findOne(tok.p, s2, *secretKey(id))
	if err != nil {
		t.Fatalf("finding the session object from another session: %v", err)
	}
	if got != h {
		t.Fatalf("another session found handle %d, the creator got %d", got, h)
	}
	// s1 and s2 are borrowed: Seal runs on a third session.
	iv, aad, pt := pattern(IVSize, 3), []byte("aad"), []byte("plaintext")
	sealed, err := tok.Seal(t.Context(), id, iv, aad, pt)
	if err != nil {
		t.Fatalf("Seal with the imported key: %v", err)
	}
	if want := goGCM(t, key).Seal(nil, iv, pt, aad); !bytes.Equal(sealed, want) {
		t.Fatalf("Seal = %x, Go GCM = %x", sealed, want)
	}
}

// TestKATSealMatchesGoGCM proves that Seal is AES-256-GCM with the caller's
// IV and AAD and a 16-byte tag, byte for byte as Go's crypto/cipher and the
// published GCM test case 16 compute it, and that Unseal opens Go's output.
func TestKATSealMatchesGoGCM(t *testing.T) {
	tok := openToken(t)
	s := session(t, tok)
	key := pattern(32, 0x40)
	id := importAES(t, tok, s, key)
	g := goGCM(t, key)

	tests := []struct {
		name        string
		pt, aad, iv []byte
		known       string // expected ciphertext||tag, when published
		key         []byte // when not the shared imported key
	}{
		{name: "pt1/aad1", pt: pattern(1, 1), aad: pattern(1, 2), iv: pattern(IVSize, 3)},
		{name: "pt16/aad16", pt: pattern(16, 4), aad: pattern(16, 5), iv: pattern(IVSize, 6)},
		{name: "pt32/aad13", pt: pattern(32, 7), aad: pattern(13, 8), iv: pattern(IVSize, 9)},
		{name: "pt32/aad-max", pt: pattern(32, 10), aad: pattern(MaxAAD, 11), iv: pattern(IVSize, 12)},
		{name: "pt4096/aad1", pt: pattern(MaxPlaintext, 13), aad: pattern(1, 14), iv: pattern(IVSize, 15)},
		{name: "pt4096/aad100", pt: pattern(MaxPlaintext, 16), aad: pattern(100, 17), iv: pattern(IVSize, 18)},
		{name: "pt4096/aad-max", pt: pattern(MaxPlaintext, 19), aad: pattern(MaxAAD, 20), iv: pattern(IVSize, 21)},
		{name: "pt17/aad-zero-bytes", pt: make([]byte, 17), aad: make([]byte, 20), iv: make([]byte, IVSize)},
		{
			// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16.
			name: "gcm-spec-test-case-16",
			key:  unhex(t, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
			pt: unhex(t, "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"+
				"1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"),
			aad: unhex(t, "feedfacedeadbeeffeedfacedeadbeefabaddad2"),
			iv:  unhex(t, "cafebabefacedbaddecaf888"),
			known: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" +
				"8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662" +
				"76fc6ece0f4e1768cddf8853bb2d551b",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kid, kg := id, g
			if tc.key != nil {
				kid, kg = importAES(t, tok, s, tc.key), goGCM(t, tc.key)
			}
			want := kg.Seal(nil, tc.iv, tc.pt, tc.aad)
			if tc.known != "" && !bytes.Equal(want, unhex(t, tc.known)) {
				t.Fatalf("Go GCM disagrees with the published vector: %x", want)
			}
			got, err := tok.Seal(t.Context(), kid, tc.iv, tc.aad, tc.pt)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(got) != len(tc.pt)+TagSize {
				t.Fatalf("Seal returned %d bytes, want %d", len(got), len(tc.pt)+TagSize)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Seal differs from Go GCM:\n got %x\nwant %x", got, want)
			}
			plain, err := tok.Unseal(t.Context(), kid, tc.iv, tc.aad, want)
			if err != nil {
				t.Fatalf("Unseal of Go's output: %v", err)
			}
			if !bytes.Equal(plain, tc.pt) {
				t.Fatalf("Unseal of Go's output = %x, want %x", plain, tc.pt)
			}
		})
	}
}

// TestKATSealDataKeyOpensWithGoGCM proves that SealDataKey returns a data
// key of the asked size and its AES-GCM seal under the master key: Go's GCM
// with the same key, IV and AAD opens the sealed value to that data key.
func TestKATSealDataKeyOpensWithGoGCM(t *testing.T) {
	tok := openToken(t)
	s := session(t, tok)
	key := pattern(32, 0x90)
	id := importAES(t, tok, s, key)
	g := goGCM(t, key)

	tests := []struct {
		name string
		n    int
		aad  []byte
	}{
		{"1-byte", 1, []byte("h")},
		{"16-byte", 16, pattern(16, 1)},
		{"32-byte", 32, []byte(`{"key":"arn:hsmkms:key/1","v":1}`)},
		{"1024-byte/aad-max", MaxDataKey, pattern(MaxAAD, 2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iv, err := NewIV()
			if err != nil {
				t.Fatal(err)
			}
			dk, sealed, err := tok.SealDataKey(t.Context(), id, tc.n, iv, tc.aad)
			if err != nil {
				t.Fatalf("SealDataKey: %v", err)
			}
			if len(dk) != tc.n {
				t.Fatalf("data key has %d bytes, want %d", len(dk), tc.n)
			}
			opened, err := g.Open(nil, iv, sealed, tc.aad)
			if err != nil {
				t.Fatalf("Go GCM cannot open the sealed data key: %v", err)
			}
			if !bytes.Equal(opened, dk) {
				t.Fatalf("Go GCM opens to %x, data key is %x", opened, dk)
			}
			plain, err := tok.Unseal(t.Context(), id, iv, tc.aad, sealed)
			if err != nil || !bytes.Equal(plain, dk) {
				t.Fatalf("Unseal = %x, %v; want the data key", plain, err)
			}
		})
	}
}

// rfc3394KEK is the 256-bit KEK of RFC 3394 §4.3, §4.5 and §4.6.
const rfc3394KEK = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"

// TestVectorAESKeyWrapRFC3394 proves that the token's CKM_AES_KEY_WRAP, as
// the package calls it (wrapObject, UnwrapDataKey), is RFC 3394: wrapping
// the RFC's key data under the RFC's 256-bit KEK gives the published
// ciphertext, and UnwrapDataKey of that ciphertext gives the key data back.
func TestVectorAESKeyWrapRFC3394(t *testing.T) {
	tok := openToken(t)
	s := session(t, tok)
	kek := unhex(t, rfc3394KEK)
	kekID := importAES(t, tok, s, kek)
	kekH, err := tok.keys.handle(tok.p, s, *secretKey(kekID))
	if err != nil {
		t.Fatalf("finding the KEK: %v", err)
	}

	tests := []struct {
		name, data, wrapped string
	}{
		{"4.3 128-bit data", "00112233445566778899AABBCCDDEEFF",
			"64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7"},
		{"4.5 192-bit data", "00112233445566778899AABBCCDDEEFF0001020304050607",
			"A8F9BC1612C68B3F F6E6F4FBE30E71E4 769C8B80A32CB895 8CD5D17D6B254DA1"},
		{"4.6 256-bit data", "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, want := unhex(t, tc.data), unhex(t, tc.wrapped)
			// The Go reference must reproduce the RFC before it judges the token.
			if ref := goKeyWrap(t, kek, data); !bytes.Equal(ref, want) {
				t.Fatalf("Go reference wrap = %x, RFC says %x", ref, want)
			}
			if ref, ok := goKeyUnwrap(t, kek, want); !ok || !bytes.Equal(ref, data) {
				t.Fatalf("Go reference unwrap = %x (integrity %v), want %x", ref, ok, data)
			}

			_, dkH := importKey(t, tok, s, pkcs11.CKK_GENERIC_SECRET, data)
			got, err := tok.wrapObject(s, kekH, dkH)
			if err != nil {
				t.Fatalf("wrapObject: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("token wrap:\n got %X\nwant %X", got, want)
			}

			unwrapped, err := tok.UnwrapDataKey(t.Context(), kekID, want)
			if err != nil {
				t.Fatalf("UnwrapDataKey of the RFC ciphertext: %v", err)
			}
			if !bytes.Equal(unwrapped, data) {
				t.Fatalf("UnwrapDataKey = %X, want %X", unwrapped, data)
			}
		})
	}
}

// TestKATWrapDataKeyUnwrapsWithGo proves that WrapDataKey returns a data key
// and its RFC 3394 wrap under the master key: the Go reference unwraps the
// value with the KEK, passes the integrity check and gives the data key, and
// UnwrapDataKey agrees.
func TestKATWrapDataKeyUnwrapsWithGo(t *testing.T) {
	tok := openToken(t)
	s := session(t, tok)
	kek := pattern(32, 0x33)
	id := importAES(t, tok, s, kek)

	for _, n := range []int{16, 24, 32, 64, MaxDataKey} {
		t.Run(fmt.Sprintf("%d-bytes", n), func(t *testing.T) {
			dk, wrapped, err := tok.WrapDataKey(t.Context(), id, n)
			if err != nil {
				t.Fatalf("WrapDataKey(%d): %v", n, err)
			}
			if len(dk) != n || len(wrapped) != n+wrapOverhead {
				t.Fatalf("data key %d bytes, wrapped %d bytes; want %d and %d", len(dk), len(wrapped), n, n+wrapOverhead)
			}
			ref, ok := goKeyUnwrap(t, kek, wrapped)
			if !ok {
				t.Fatalf("the wrapped value fails RFC 3394's integrity check under the KEK")
			}
			if !bytes.Equal(ref, dk) {
				t.Fatalf("Go unwraps to %x, data key is %x", ref, dk)
			}
			if re := goKeyWrap(t, kek, dk); !bytes.Equal(re, wrapped) {
				t.Fatalf("Go wraps the data key to %x, token gave %x", re, wrapped)
			}
			back, err := tok.UnwrapDataKey(t.Context(), id, wrapped)
			if err != nil || !bytes.Equal(back, dk) {
				t.Fatalf("UnwrapDataKey = %x, %v; want the data key", back, err)
			}
		})
	}
}

// TestKATGenerateRandom proves that GenerateRandom returns exactly the asked
// number of bytes and that repeated calls give distinct values.
func TestKATGenerateRandom(t *testing.T) {
	tok := openToken(t)
	tests := []struct {
		n, calls int
	}{
		{1, 64}, // 64 one-byte draws: all equal has probability 2^-504
		{16, 200},
		{32, 200},
		{MaxRandom, 20},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d-bytes", tc.n), func(t *testing.T) {
			seen := map[string]bool{}
			for range tc.calls {
				b, err := tok.GenerateRandom(t.Context(), tc.n)
				if err != nil {
					t.Fatalf("GenerateRandom(%d): %v", tc.n, err)
				}
				if len(b) != tc.n {
					t.Fatalf("GenerateRandom(%d) returned %d bytes", tc.n, len(b))
				}
				seen[string(b)] = true
			}
			switch {
			case tc.n == 1 && len(seen) < 2:
				t.Fatalf("%d one-byte draws were all equal", tc.calls)
			case tc.n > 1 && len(seen) != tc.calls:
				t.Fatalf("%d draws of %d bytes gave only %d distinct values", tc.calls, tc.n, len(seen))
			}
			if tc.n >= 16 {
				for v := range seen {
					if v == string(make([]byte, tc.n)) {
						t.Fatalf("GenerateRandom(%d) returned all zeros", tc.n)
					}
				}
			}
		})
	}
}
