package hsm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// Known-answer tests: the token's AES-GCM, AES key wrap and portable
// mechanism (AES-CBC-PAD then HMAC-SHA-256), driven through the package's
// API, give exactly what Go's crypto/cipher and crypto/hmac, a Go RFC 3394
// reference and the published vectors give for the same keys. On a token
// without a mechanism, its operations are refused with
// ErrMechanismUnsupported; the Go references are checked against the
// published vectors on every token.

// importKey creates a session secret key object of keyType with the known
// value on session s, for encryption and wrapping, and returns its CKA_ID
// and handle. This is test-only: the package itself never imports key
// values. The object is a session object (TOKEN=false); PKCS#11 shows
// session objects to every session of the application
// (TestKnownImportVisibleToOtherSessions checks that the token does), so
// the package's other pool sessions address it by CKA_ID while s stays
// borrowed. It is destroyed, and its cached handle forgotten, when the test
// ends.
func importKey(t testing.TB, tok *Token, s pkcs11.SessionHandle, keyType uint, value []byte) (ObjectID, pkcs11.ObjectHandle) {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	h := importObject(t, tok, s, *secretKey(id), keyType, value, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
	})
	return id, h
}

// importObject creates the session secret key object of keyType with the
// known value, the CKA_ID of ref and the usages given, on session s, and
// returns its handle. It is destroyed, and ref's cached handle forgotten,
// when the test ends.
func importObject(t testing.TB, tok *Token, s pkcs11.SessionHandle, ref keyRef, keyType uint, value []byte, usage []*pkcs11.Attribute) pkcs11.ObjectHandle {
	t.Helper()
	p := raw(t, tok)
	h, err := p.CreateObject(s, append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ref.ckaID()),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "hsmkms-test/kat/"+ref.id.String()),
	}, usage...))
	if err != nil {
		t.Fatalf("C_CreateObject of a known key: %v", err)
	}
	t.Cleanup(func() {
		tok.keys.forget(ref)
		if err := p.DestroyObject(s, h); err != nil {
			t.Errorf("destroying the imported key: %v", err)
		}
	})
	return h
}

// importAES imports a known AES key and returns its CKA_ID.
func importAES(t testing.TB, tok *Token, s pkcs11.SessionHandle, value []byte) ObjectID {
	t.Helper()
	id, _ := importKey(t, tok, s, pkcs11.CKK_AES, value)
	return id
}

// importPortable imports a portable version of known keys: the AES key,
// and the HMAC key as the portable operations find it (macKey: a generic
// secret with the version's CKA_ID followed by MACIDSuffix) that signs
// and verifies, as macKeyTemplate makes it. It returns the version's CKA_ID.
func importPortable(t testing.TB, tok *Token, s pkcs11.SessionHandle, aesKey, hmacKey []byte) ObjectID {
	t.Helper()
	id := importAES(t, tok, s, aesKey)
	importObject(t, tok, s, *macKey(id), pkcs11.CKK_GENERIC_SECRET, hmacKey, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
	})
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
func goKeyWrap(t testing.TB, kek, p []byte) []byte { return goKeyWrapIV(t, kek, kwIV, p) }

// goKeyWrapIV is RFC 3394 §2.2.1 with the initial value iv (RFC 5649 uses
// its alternative one).
func goKeyWrapIV(t testing.TB, kek, iv, p []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	n := len(p) / 8
	a := append([]byte(nil), iv...)
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

// goMACInput is what the portable mechanism's HMAC covers, written out
// from its description rather than with macInput: the header and the
// ciphertext, each after its length as 4 big-endian bytes, the IV between
// them and the context last.
func goMACInput(header, iv, ct, context []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(header)))
	b.Write(header)
	b.Write(iv)
	binary.Write(&b, binary.BigEndian, uint32(len(ct)))
	b.Write(ct)
	b.Write(context)
	return b.Bytes()
}

func goHMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// goPortableSeal is the portable mechanism in Go: AES-CBC with PKCS #7
// padding (crypto/cipher), then HMAC-SHA-256 (crypto/hmac).
func goPortableSeal(t testing.TB, aesKey, hmacKey, iv, header, context, pt []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	ct := append(bytes.Clone(pt), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, ct)
	return append(ct, goHMAC(hmacKey, goMACInput(header, iv, ct, context))...)
}

// goPortableOpen opens what goPortableSeal or the token made: it checks
// the MAC, decrypts and checks and strips the padding.
func goPortableOpen(t testing.TB, aesKey, hmacKey, iv, header, context, sealed []byte) ([]byte, error) {
	t.Helper()
	if len(sealed) < MACSize+aes.BlockSize || (len(sealed)-MACSize)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%d bytes is not whole blocks and a MAC", len(sealed))
	}
	ct, mac := sealed[:len(sealed)-MACSize], sealed[len(sealed)-MACSize:]
	if !hmac.Equal(mac, goHMAC(hmacKey, goMACInput(header, iv, ct, context))) {
		return nil, errors.New("the MAC does not match")
	}
	b, err := aes.NewCipher(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > aes.BlockSize || !bytes.Equal(pt[len(pt)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, errors.New("bad PKCS #7 padding")
	}
	return pt[:len(pt)-pad], nil
}

// TestKnownImportVisibleToOtherSessions proves the premise of the known-answer
// tests: a session object created on one pool session is found by CKA_ID on
// another session and used by the package's API on yet another one, with
// each data-key mechanism the token has (a mechanism it lacks is refused
// with ErrMechanismUnsupported).
func TestKnownImportVisibleToOtherSessions(t *testing.T) {
	tok := openToken(t)
	s1 := session(t, tok)
	s2 := session(t, tok)
	aesKey, hmacKey := pattern(32, 1), pattern(32, 2)
	id := importPortable(t, tok, s1, aesKey, hmacKey)
	for _, ref := range []keyRef{*secretKey(id), *macKey(id)} {
		h1, err := findOne(tok.p, s1, ref)
		if err != nil {
			t.Fatalf("finding the session object from its session: %v", err)
		}
		h2, err := findOne(tok.p, s2, ref)
		if err != nil {
			t.Fatalf("finding the session object from another session: %v", err)
		}
		if h2 != h1 {
			t.Fatalf("another session found handle %d, the creator's %d", h2, h1)
		}
	}
	// s1 and s2 are borrowed: the seals run on a third session.
	aad, pt := []byte("aad"), []byte("plaintext")
	goSeal := map[string]func(iv []byte) []byte{
		"aes-gcm":      func(iv []byte) []byte { return goGCM(t, aesKey).Seal(nil, iv, pt, aad) },
		"aes-cbc-hmac": func(iv []byte) []byte { return goPortableSeal(t, aesKey, hmacKey, iv, aad, nil, pt) },
	}
	for _, m := range sealMechs {
		t.Run(m.feature, func(t *testing.T) {
			iv := pattern(m.ivSize, 3)
			sealed, err := m.seal(t.Context(), tok, id, iv, aad, pt)
			if !has(tok, m.feature) {
				wantKind(t, err, ErrMechanismUnsupported)
				return
			}
			if err != nil {
				t.Fatalf("Seal%s with the imported key: %v", m.suffix, err)
			}
			if want := goSeal[m.feature](iv); !bytes.Equal(sealed, want) {
				t.Fatalf("Seal%s = %x, Go = %x", m.suffix, sealed, want)
			}
		})
	}
}

// TestKATSealMatchesGoGCM proves that Seal is AES-256-GCM with the caller's
// IV and AAD and a 16-byte tag, byte for byte as Go's crypto/cipher and the
// published GCM test case 16 compute it, and that Unseal opens Go's output.
// A token without aes-gcm refuses both with ErrMechanismUnsupported.
func TestKATSealMatchesGoGCM(t *testing.T) {
	tok := openToken(t)
	gcm := has(tok, "aes-gcm")
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
		{name: "ptmax/aad1", pt: pattern(MaxPlaintext, 13), aad: pattern(1, 14), iv: pattern(IVSize, 15)},
		{name: "ptmax/aad100", pt: pattern(MaxPlaintext, 16), aad: pattern(100, 17), iv: pattern(IVSize, 18)},
		{name: "ptmax/aad-max", pt: pattern(MaxPlaintext, 19), aad: pattern(MaxAAD, 20), iv: pattern(IVSize, 21)},
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
			if !gcm {
				wantKind(t, err, ErrMechanismUnsupported)
				_, err = tok.Unseal(t.Context(), kid, tc.iv, tc.aad, want)
				wantKind(t, err, ErrMechanismUnsupported)
				return
			}
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

// TestKATSealWithTokenIVOpensWithGoGCM proves that SealWithTokenIV seals
// under an IV it returns: Go's GCM with the same key, that IV and the AAD
// opens it. The IVs of successive seals differ, and bad input is refused
// before any PKCS#11 call.
func TestKATSealWithTokenIVOpensWithGoGCM(t *testing.T) {
	tok, f := openFaulty(t)
	s := session(t, tok)
	key := pattern(32, 0x41)
	id := importAES(t, tok, s, key)
	g := goGCM(t, key)
	if !has(tok, "aes-gcm") {
		_, _, err := tok.SealWithTokenIV(t.Context(), id, []byte("aad"), []byte("pt"))
		wantKind(t, err, ErrMechanismUnsupported)
		return
	}
	seen := map[string]bool{}
	for _, n := range []int{1, 16, 4300, MaxPlaintext} {
		pt, aad := pattern(n, 7), pattern(2+n%100+1, 8)
		iv, sealed, err := tok.SealWithTokenIV(t.Context(), id, aad, pt)
		if err != nil {
			t.Fatalf("SealWithTokenIV(%d bytes): %v", n, err)
		}
		if len(iv) != IVSize || seen[string(iv)] {
			t.Fatalf("IV %x: want %d fresh bytes", iv, IVSize)
		}
		seen[string(iv)] = true
		plain, err := g.Open(nil, iv, sealed, aad)
		if err != nil || !bytes.Equal(plain, pt) {
			t.Fatalf("Go GCM opens the %d-byte seal to %d bytes, %v", n, len(plain), err)
		}
	}
	before := f.count("GenerateRandom") + f.count("EncryptInit")
	for _, tc := range []struct {
		name    string
		aad, pt []byte
	}{
		{"aad-nil", nil, []byte("pt")},
		{"aad-max+1", make([]byte, MaxAAD+1), []byte("pt")},
		{"plaintext-empty", []byte("aad"), nil},
		{"plaintext-max+1", []byte("aad"), make([]byte, MaxPlaintext+1)},
	} {
		_, _, err := tok.SealWithTokenIV(t.Context(), id, tc.aad, tc.pt)
		if !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", tc.name, err)
		}
	}
	if after := f.count("GenerateRandom") + f.count("EncryptInit"); after != before {
		t.Fatalf("bad input reached the token: %d calls", after-before)
	}
}

// TestKATSealDataKeyOpensWithGoGCM proves that SealDataKey returns a data
// key of the asked size and its AES-GCM seal under the master key: Go's GCM
// with the same key, IV and AAD opens the sealed value to that data key. A
// token without aes-gcm refuses it with ErrMechanismUnsupported.
func TestKATSealDataKeyOpensWithGoGCM(t *testing.T) {
	tok := openToken(t)
	gcm := has(tok, "aes-gcm")
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
			if !gcm {
				wantKind(t, err, ErrMechanismUnsupported)
				return
			}
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

// TestKATSealPortableMatchesGo proves that SealPortable is AES-256-CBC with
// PKCS #7 padding under the version's AES key and the caller's IV, followed
// by HMAC-SHA-256 under its HMAC key over the header, the IV, the
// ciphertext and the context as the format lays them out: byte for byte
// what Go's crypto/cipher and crypto/hmac give, with the CBC blocks of the
// published NIST SP 800-38A F.2.5 vector. UnsealPortable opens Go's output.
// A token without aes-cbc-hmac refuses both with ErrMechanismUnsupported.
func TestKATSealPortableMatchesGo(t *testing.T) {
	tok := openToken(t)
	s := session(t, tok)
	portable := has(tok, "aes-cbc-hmac")
	aesKey, hmacKey := pattern(32, 0x50), pattern(32, 0x60)
	id := importPortable(t, tok, s, aesKey, hmacKey)

	tests := []struct {
		name                    string
		pt, header, context, iv []byte
		aesKey                  []byte // when not the shared imported key
		known                   string // the published CBC ciphertext the sealed value starts with
	}{
		{name: "pt1/header1", pt: pattern(1, 1), header: pattern(1, 2), iv: pattern(CBCIVSize, 3)},
		{name: "pt15/header16/context8", pt: pattern(15, 4), header: pattern(16, 5), context: pattern(8, 6), iv: pattern(CBCIVSize, 7)},
		// A whole block gets a whole block of padding.
		{name: "pt16/header13", pt: pattern(16, 8), header: pattern(13, 9), iv: pattern(CBCIVSize, 10)},
		{name: "pt17/header5/context3", pt: pattern(17, 11), header: pattern(5, 12), context: pattern(3, 13), iv: pattern(CBCIVSize, 14)},
		{name: "pt32-zero/iv-zero", pt: make([]byte, 32), header: make([]byte, 20), iv: make([]byte, CBCIVSize)},
		{name: "ptmax/header1/context-max-1", pt: pattern(MaxPlaintext, 15), header: pattern(1, 16), context: pattern(MaxAAD-1, 17), iv: pattern(CBCIVSize, 18)},
		{name: "ptmax/header-max", pt: pattern(MaxPlaintext, 19), header: pattern(MaxAAD, 20), iv: pattern(CBCIVSize, 21)},
		{
			// NIST SP 800-38A, F.2.5 CBC-AES256.Encrypt: four blocks, and
			// the padding block CBC-PAD adds after them.
			name:   "sp800-38a-f.2.5",
			aesKey: unhex(t, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
			iv:     unhex(t, "000102030405060708090a0b0c0d0e0f"),
			pt: unhex(t, "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"+
				"30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710"),
			header: []byte("sp800-38a"),
			known: "f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d" +
				"39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kid, key := id, aesKey
			if tc.aesKey != nil {
				kid, key = importPortable(t, tok, s, tc.aesKey, hmacKey), tc.aesKey
			}
			want := goPortableSeal(t, key, hmacKey, tc.iv, tc.header, tc.context, tc.pt)
			if tc.known != "" {
				if known := unhex(t, tc.known); !bytes.Equal(want[:len(known)], known) {
					t.Fatalf("Go AES-CBC disagrees with the published vector: %x", want[:len(known)])
				}
			}
			got, err := tok.SealPortable(t.Context(), kid, tc.iv, tc.header, tc.context, tc.pt)
			if !portable {
				wantKind(t, err, ErrMechanismUnsupported)
				_, err = tok.UnsealPortable(t.Context(), kid, tc.iv, tc.header, tc.context, want)
				wantKind(t, err, ErrMechanismUnsupported)
				return
			}
			if err != nil {
				t.Fatalf("SealPortable: %v", err)
			}
			if n := (len(tc.pt)/cbcBlock+1)*cbcBlock + MACSize; len(got) != n {
				t.Fatalf("SealPortable returned %d bytes, want %d", len(got), n)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("SealPortable differs from Go's AES-CBC and HMAC:\n got %x\nwant %x", got, want)
			}
			plain, err := tok.UnsealPortable(t.Context(), kid, tc.iv, tc.header, tc.context, want)
			if err != nil {
				t.Fatalf("UnsealPortable of Go's output: %v", err)
			}
			if !bytes.Equal(plain, tc.pt) {
				t.Fatalf("UnsealPortable of Go's output = %x, want %x", plain, tc.pt)
			}
		})
	}
}

// TestKATSealDataKeyPortableOpensWithGo proves that SealDataKeyPortable
// returns a data key of the asked size and its portable seal under the
// version: Go's HMAC-SHA-256 and AES-CBC with the same keys, IV, header and
// context verify and open the sealed value to that data key. A token
// without aes-cbc-hmac refuses it with ErrMechanismUnsupported.
func TestKATSealDataKeyPortableOpensWithGo(t *testing.T) {
	tok := openToken(t)
	s := session(t, tok)
	portable := has(tok, "aes-cbc-hmac")
	aesKey, hmacKey := pattern(32, 0xa0), pattern(32, 0xb0)
	id := importPortable(t, tok, s, aesKey, hmacKey)

	tests := []struct {
		name            string
		n               int
		header, context []byte
	}{
		{"1-byte", 1, []byte("h"), nil},
		{"16-byte", 16, pattern(16, 1), []byte("context")},
		{"32-byte", 32, []byte(`{"key":"arn:hsmkms:key/1","v":1}`), []byte{0, 1, 0, 1, 'k', 0, 1, 'v'}},
		{"1024-byte/header-max", MaxDataKey, pattern(MaxAAD, 2), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iv, err := NewCBCIV()
			if err != nil {
				t.Fatal(err)
			}
			dk, sealed, err := tok.SealDataKeyPortable(t.Context(), id, tc.n, iv, tc.header, tc.context)
			if !portable {
				wantKind(t, err, ErrMechanismUnsupported)
				return
			}
			if err != nil {
				t.Fatalf("SealDataKeyPortable: %v", err)
			}
			if len(dk) != tc.n {
				t.Fatalf("data key has %d bytes, want %d", len(dk), tc.n)
			}
			opened, err := goPortableOpen(t, aesKey, hmacKey, iv, tc.header, tc.context, sealed)
			if err != nil {
				t.Fatalf("Go cannot open the sealed data key: %v", err)
			}
			if !bytes.Equal(opened, dk) {
				t.Fatalf("Go opens to %x, data key is %x", opened, dk)
			}
			plain, err := tok.UnsealPortable(t.Context(), id, iv, tc.header, tc.context, sealed)
			if err != nil || !bytes.Equal(plain, dk) {
				t.Fatalf("UnsealPortable = %x, %v; want the data key", plain, err)
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
// A token without aes-kw refuses WrapDataKey and UnwrapDataKey of the
// published values with ErrMechanismUnsupported.
func TestVectorAESKeyWrapRFC3394(t *testing.T) {
	tok := openToken(t)
	s := session(t, tok)
	kek := unhex(t, rfc3394KEK)
	kekID := importAES(t, tok, s, kek)
	kekH, err := tok.keys.handle(tok.p, s, *secretKey(kekID))
	if err != nil {
		t.Fatalf("finding the KEK: %v", err)
	}
	kw := has(tok, "aes-kw")

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
			if !kw {
				_, _, err := tok.WrapDataKey(t.Context(), kekID, len(data))
				wantKind(t, err, ErrMechanismUnsupported)
				_, err = tok.UnwrapDataKey(t.Context(), kekID, want)
				wantKind(t, err, ErrMechanismUnsupported)
				return
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
// UnwrapDataKey agrees. A token without aes-kw refuses WrapDataKey, and
// UnwrapDataKey of the Go reference's wrap, with ErrMechanismUnsupported.
func TestKATWrapDataKeyUnwrapsWithGo(t *testing.T) {
	tok := openToken(t)
	s := session(t, tok)
	kek := pattern(32, 0x33)
	id := importAES(t, tok, s, kek)
	kw := has(tok, "aes-kw")

	for _, n := range []int{16, 24, 32, 64, MaxDataKey} {
		t.Run(fmt.Sprintf("%d-bytes", n), func(t *testing.T) {
			dk, wrapped, err := tok.WrapDataKey(t.Context(), id, n)
			if !kw {
				wantKind(t, err, ErrMechanismUnsupported)
				_, err = tok.UnwrapDataKey(t.Context(), id, goKeyWrap(t, kek, pattern(n, 0x44)))
				wantKind(t, err, ErrMechanismUnsupported)
				return
			}
			if n > tok.Capabilities().GenericKeyMax {
				// The token makes no generic secret this long
				// (TestGenericKeyMax), and unwraps none: no data
				// key of this token's is that long.
				wantKind(t, err, ErrMechanismUnsupported)
				_, err = tok.UnwrapDataKey(t.Context(), id, goKeyWrap(t, kek, pattern(n, 0x44)))
				wantKind(t, err, ErrInvalidCiphertext)
				return
			}
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
