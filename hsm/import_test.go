package hsm

import (
	"bytes"
	"crypto/aes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"hash"
	"testing"
)

// goKeyWrapPad is RFC 5649 (AES key wrap with padding), written from the
// RFC as a reference independent of the token.
func goKeyWrapPad(t testing.TB, kek, p []byte) []byte {
	t.Helper()
	aiv := make([]byte, 8)
	copy(aiv, []byte{0xA6, 0x59, 0x59, 0xA6})
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(p)))
	padded := append(bytes.Clone(p), make([]byte, (8-len(p)%8)%8)...)
	if len(padded) == 8 {
		b, err := aes.NewCipher(kek)
		if err != nil {
			t.Fatal(err)
		}
		out := append(aiv, padded...)
		b.Encrypt(out, out)
		return out
	}
	return goKeyWrapIV(t, kek, aiv, padded)
}

// wrapForImport wraps material as a client does for alg under pub.
func wrapForImport(t testing.TB, pub *rsa.PublicKey, alg WrappingAlgorithm, material []byte) []byte {
	t.Helper()
	var h hash.Hash = sha1.New()
	if alg == WrapOAEPSHA256 || alg == WrapRSAAESSHA256 {
		h = sha256.New()
	}
	if alg == WrapOAEPSHA1 || alg == WrapOAEPSHA256 {
		out, err := rsa.EncryptOAEP(h, rand.Reader, pub, material, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	aesKey := make([]byte, 32)
	rand.Read(aesKey)
	wrappedKey, err := rsa.EncryptOAEP(h, rand.Reader, pub, aesKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(wrappedKey, goKeyWrapPad(t, aesKey, material)...)
}

// newWrappingPair makes a wrapping key pair and returns its ID and
// public key; it is destroyed when the test ends.
func newWrappingPair(t *testing.T, tok *Token) (ObjectID, *rsa.PublicKey) {
	t.Helper()
	id, _ := NewObjectID()
	pub, err := tok.CreateWrappingKeyPair(t.Context(), id, "hsmkms/test/wrapping", RSA2048)
	if err != nil {
		t.Fatalf("CreateWrappingKeyPair: %v", err)
	}
	t.Cleanup(func() { _ = tok.DestroyKey(t.Context(), id) })
	return id, pub.(*rsa.PublicKey)
}

// TestImportKeyKAT imports known material with every wrapping algorithm
// the token can unwrap with, as AES-256 master keys and as HMAC keys, and
// proves the token holds exactly that material: what it seals under the
// imported key Go opens with the material, and its HMAC is Go's. An
// algorithm CheckUnwrap refuses, ImportKey refuses the same way, and
// nothing is left on the token.
func TestImportKeyKAT(t *testing.T) {
	tok := openToken(t)
	if !has(tok, "rsa-oaep") {
		t.Log("the token lacks RSA OAEP: key import is refused at CheckUnwrap")
		return
	}
	ctx := t.Context()
	wrapping, pub := newWrappingPair(t, tok)
	for _, alg := range []WrappingAlgorithm{WrapOAEPSHA1, WrapOAEPSHA256, WrapRSAAESSHA1, WrapRSAAESSHA256} {
		t.Run(string(alg), func(t *testing.T) {
			material := pattern(32, 0x21)
			id, _ := NewObjectID()
			checkErr := tok.CheckUnwrap(ctx, wrapping, alg)
			err := tok.ImportKey(ctx, wrapping, alg, wrapForImport(t, pub, alg, material), id, "hsmkms/test/import", ImportTarget{})
			if checkErr != nil {
				wantKind(t, checkErr, ErrMechanismUnsupported)
				wantKind(t, err, ErrMechanismUnsupported)
				if has, _ := tok.HasKey(ctx, id); has {
					t.Fatal("a refused import left an object")
				}
				return
			}
			if err != nil {
				t.Fatalf("ImportKey: %v", err)
			}
			t.Cleanup(func() { _ = tok.DestroyKey(ctx, id) })
			if has(tok, "aes-gcm") {
				iv, _ := NewIV()
				sealed, err := tok.Seal(ctx, id, iv, []byte("aad"), []byte("imported"))
				if err != nil {
					t.Fatal(err)
				}
				plain, err := goGCM(t, material).Open(nil, iv, sealed, []byte("aad"))
				if err != nil || string(plain) != "imported" {
					t.Fatalf("Go cannot open with the material what the token sealed under the imported key: %v", err)
				}
			}

			// HMAC material, longer than the hash as AWS allows.
			hmacMaterial := pattern(64, 0x42)
			hid, _ := NewObjectID()
			if err := tok.ImportKey(ctx, wrapping, alg, wrapForImport(t, pub, alg, hmacMaterial), hid, "hsmkms/test/import-hmac", ImportTarget{MAC: HMACSHA384}); err != nil {
				t.Fatalf("ImportKey HMAC: %v", err)
			}
			t.Cleanup(func() { _ = tok.DestroyKey(ctx, hid) })
			mac, err := tok.GenerateMAC(ctx, hid, HMACSHA384, []byte("message"))
			if err != nil {
				t.Fatal(err)
			}
			h := hmac.New(sha512.New384, hmacMaterial)
			h.Write([]byte("message"))
			if !bytes.Equal(mac, h.Sum(nil)) {
				t.Fatal("the token's HMAC under the imported key is not Go's under the material")
			}
		})
	}
}

// TestImportKeyRefuses: blobs that do not unwrap, material of the wrong
// length and a CKA_ID in use are refused, with nothing left on the token;
// imported keys stay sensitive and unextractable; KeyCheckValue tells the
// same material from other material.
func TestImportKeyRefuses(t *testing.T) {
	tok := openToken(t)
	if !has(tok, "rsa-oaep") {
		t.Log("the token lacks RSA OAEP: key import is refused at CheckUnwrap")
		return
	}
	ctx := t.Context()
	wrapping, pub := newWrappingPair(t, tok)
	alg := WrapOAEPSHA1
	if err := tok.CheckUnwrap(ctx, wrapping, alg); err != nil {
		t.Fatalf("CheckUnwrap(%s): %v", alg, err)
	}
	good := wrapForImport(t, pub, alg, pattern(32, 1))
	flipped := bytes.Clone(good)
	flipped[10] ^= 1
	for _, tc := range []struct {
		name    string
		alg     WrappingAlgorithm
		wrapped []byte
		target  ImportTarget
		want    error
	}{
		{"flipped bit", alg, flipped, ImportTarget{}, ErrInvalidCiphertext},
		{"short", alg, good[1:], ImportTarget{}, ErrInvalidCiphertext},
		{"empty", alg, nil, ImportTarget{}, ErrInvalidCiphertext},
		{"16-byte AES material", alg, wrapForImport(t, pub, alg, pattern(16, 2)), ImportTarget{}, ErrInvalidInput},
		{"HMAC_SHA_256 material of 31 bytes", alg, wrapForImport(t, pub, alg, pattern(31, 3)), ImportTarget{MAC: HMACSHA256}, ErrInvalidInput},
		{"HMAC_SHA_256 material of 65 bytes", alg, wrapForImport(t, pub, alg, pattern(65, 3)), ImportTarget{MAC: HMACSHA256}, ErrInvalidInput},
		{"unknown algorithm", "RSAES_PKCS1_V1_5", good, ImportTarget{}, ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, _ := NewObjectID()
			wantKind(t, tok.ImportKey(ctx, wrapping, tc.alg, tc.wrapped, id, "hsmkms/test/refused", tc.target), tc.want)
			if has, err := tok.HasKey(ctx, id); err != nil || has {
				t.Fatalf("after a refused import: HasKey = %v, %v", has, err)
			}
		})
	}

	a, b, other := newObjectIDOrFail(t), newObjectIDOrFail(t), newObjectIDOrFail(t)
	for _, x := range []struct {
		id       ObjectID
		material []byte
	}{{a, pattern(32, 9)}, {b, pattern(32, 9)}, {other, pattern(32, 10)}} {
		if err := tok.ImportKey(ctx, wrapping, alg, wrapForImport(t, pub, alg, x.material), x.id, "hsmkms/test/kcv", ImportTarget{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tok.DestroyKey(ctx, x.id) })
	}
	wantKind(t, tok.ImportKey(ctx, wrapping, alg, good, a, "hsmkms/test/again", ImportTarget{}), ErrInvalidInput)
	if has(tok, "aes-gcm") {
		ka, err := tok.KeyCheckValue(ctx, a, ImportTarget{})
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := tok.KeyCheckValue(ctx, b, ImportTarget{})
		ko, _ := tok.KeyCheckValue(ctx, other, ImportTarget{})
		if !bytes.Equal(ka, kb) || bytes.Equal(ka, ko) || len(ka) < 16 {
			t.Fatalf("key check values: same material %x %x, other %x", ka, kb, ko)
		}
	}
	objs, err := tok.Objects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, o := range objs {
		if bytes.Equal(o.ID, a[:]) || bytes.Equal(o.ID, wrapping[:]) && o.Class == "private" {
			seen++
			if !o.Sensitive || o.Extractable {
				t.Errorf("object %+v is not sensitive and unextractable", o)
			}
		}
	}
	if seen != 2 {
		t.Errorf("found %d of the imported key and the wrapping private key", seen)
	}
	// The wrapping key pair unwraps and does nothing else.
	digest := sha256.Sum256([]byte("m"))
	if _, err := tok.Sign(ctx, wrapping, RSAPKCS1SHA256, digest[:]); err == nil {
		t.Error("a wrapping key pair signed")
	}
	if _, err := tok.DecryptOAEP(ctx, wrapping, RSAOAEPSHA1, good); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("a wrapping key pair decrypted: %v", err)
	}
}

// newObjectIDOrFail is NewObjectID for tests.
func newObjectIDOrFail(t testing.TB) ObjectID {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
