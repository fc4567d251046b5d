package hsm

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"hash"
	"math/big"
	"testing"
)

var oaepAlgs = []struct {
	alg     EncryptionAlgorithm
	newHash func() hash.Hash
}{
	{RSAOAEPSHA1, sha1.New},
	{RSAOAEPSHA256, sha256.New},
}

// newEncryptionPair makes an RSA encryption key pair of spec and returns its
// CKA_ID and public key; it is destroyed when the test ends.
func newEncryptionPair(t *testing.T, tok *Token, spec KeySpec) (ObjectID, *rsa.PublicKey) {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tok.CreateEncryptionKeyPair(t.Context(), id, "hsmkms/test/oaep/"+id.String(), spec)
	if err != nil {
		t.Fatalf("CreateEncryptionKeyPair(%s): %v", spec, err)
	}
	t.Cleanup(func() { _ = tok.DestroyKey(t.Context(), id) })
	return id, pub.(*rsa.PublicKey)
}

// TestOAEPRoundTrips proves, for RSA-2048 and RSA-3072 and both
// algorithms, that what the token encrypts it decrypts, that what Go's
// crypto encrypts under the public key the token gives decrypts on the
// token (a ciphertext made offline), that what the token encrypts Go's
// crypto cannot tell from its own (it decrypts with the right algorithm
// only), that the longest plaintext AWS allows passes and one byte more is
// refused before the token encrypts, and that malformed ciphertexts give
// ErrInvalidCiphertext and leave the token ready.
func TestOAEPRoundTrips(t *testing.T) {
	tok, f := openFaulty(t)
	if !has(tok, "rsa-oaep") {
		id, _ := NewObjectID()
		_, err := tok.CreateEncryptionKeyPair(t.Context(), id, "hsmkms/test/oaep", RSA2048)
		wantLacking(t, err, pkcs11CKMOAEPNeeds()...)
		return
	}
	for _, spec := range []KeySpec{RSA2048, RSA3072} {
		id, pub := newEncryptionPair(t, tok, spec)
		k := pub.Size()
		for _, a := range oaepAlgs {
			t.Run(string(spec)+"/"+string(a.alg), func(t *testing.T) {
				ctx := t.Context()
				max := k - 2*a.newHash().Size() - 2
				if got := MaxOAEPPlaintext(a.alg, k); got != max {
					t.Fatalf("MaxOAEPPlaintext = %d, want %d", got, max)
				}
				for _, n := range []int{1, 32, max} {
					pt := pattern(n, byte(n))
					ct, err := tok.EncryptOAEP(ctx, id, a.alg, pt)
					if err != nil {
						t.Fatalf("EncryptOAEP(%d bytes): %v", n, err)
					}
					if len(ct) != k {
						t.Fatalf("ciphertext %d bytes, want %d", len(ct), k)
					}
					got, err := tok.DecryptOAEP(ctx, id, a.alg, ct)
					if err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("DecryptOAEP(EncryptOAEP(%d bytes)) = %d bytes, %v", n, len(got), err)
					}
					offline, err := rsa.EncryptOAEP(a.newHash(), rand.Reader, pub, pt, nil)
					if err != nil {
						t.Fatal(err)
					}
					got, err = tok.DecryptOAEP(ctx, id, a.alg, offline)
					if err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("DecryptOAEP of Go's ciphertext (%d bytes) = %d bytes, %v", n, len(got), err)
					}
				}
				before := f.count("EncryptInit")
				_, err := tok.EncryptOAEP(ctx, id, a.alg, make([]byte, max+1))
				wantKind(t, err, ErrInvalidInput)
				_, err = tok.EncryptOAEP(ctx, id, a.alg, nil)
				wantKind(t, err, ErrInvalidInput)
				if n := f.count("EncryptInit") - before; n != 0 {
					t.Errorf("a refused plaintext reached C_EncryptInit %d times", n)
				}

				ct, err := tok.EncryptOAEP(ctx, id, a.alg, []byte("secret"))
				if err != nil {
					t.Fatal(err)
				}
				other := RSAOAEPSHA256
				if a.alg == RSAOAEPSHA256 {
					other = RSAOAEPSHA1
				}
				flipped := bytes.Clone(ct)
				flipped[k/2] ^= 1
				for _, tc := range []struct {
					name string
					alg  EncryptionAlgorithm
					ct   []byte
				}{
					{"other algorithm", other, ct},
					{"flipped bit", a.alg, flipped},
					{"short", a.alg, ct[1:]},
					{"long", a.alg, append(bytes.Clone(ct), 0)},
					{"empty", a.alg, nil},
					{"all ones", a.alg, bytes.Repeat([]byte{0xff}, k)},
				} {
					_, err := tok.DecryptOAEP(ctx, id, tc.alg, tc.ct)
					if err == nil {
						t.Fatalf("%s: DecryptOAEP succeeded", tc.name)
					}
					wantKind(t, err, ErrInvalidCiphertext)
				}
			})
		}
	}
	if h := tok.Health(); !h.Ready {
		t.Errorf("token not ready after bad ciphertexts: %+v", h)
	}
}

func pkcs11CKMOAEPNeeds() []uint { return featureMechs("rsa-oaep") }

// featureMechs are the mechanisms the test's table says feature needs.
func featureMechs(feature string) []uint {
	var out []uint
	for _, n := range featureNeeds[feature] {
		out = append(out, n.mech)
	}
	return out
}

// TestOAEPKeyUse proves that an encryption key pair's private half stays
// in the token, that it cannot sign and a signing pair cannot decrypt,
// that EC keys and unknown algorithms are refused as bad input, and that
// EC specs cannot make encryption pairs.
func TestOAEPKeyUse(t *testing.T) {
	tok := openToken(t)
	if !has(tok, "rsa-oaep") {
		t.Log("the token lacks RSA OAEP: TestOAEPRoundTrips proves the refusal")
		return
	}
	ctx := t.Context()
	id, _ := newEncryptionPair(t, tok, RSA2048)
	objs, err := tok.Objects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if bytes.Equal(o.ID, id[:]) && o.Class == "private" && (!o.Sensitive || o.Extractable || !o.NeverExtractable) {
			t.Errorf("the private half: %+v; want sensitive and never extractable", o)
		}
	}
	digest := sha256.Sum256([]byte("m"))
	if _, err := tok.Sign(ctx, id, RSAPKCS1SHA256, digest[:]); err == nil {
		t.Error("an encryption key pair signed")
	}
	if has(tok, "rsa") {
		signer := newKeyPair(t, tok, RSA2048)
		ct, err := tok.EncryptOAEP(ctx, id, RSAOAEPSHA1, []byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = tok.DecryptOAEP(ctx, signer, RSAOAEPSHA1, ct)
		if err == nil {
			t.Error("a signing key pair decrypted")
		}
		_, err = tok.EncryptOAEP(ctx, signer, RSAOAEPSHA1, []byte("m"))
		if err == nil {
			t.Error("a signing key pair encrypted")
		}
	}
	_, err = tok.EncryptOAEP(ctx, id, "RSAES_PKCS1_V1_5", []byte("m"))
	wantKind(t, err, ErrInvalidInput)
	other, _ := NewObjectID()
	_, err = tok.CreateEncryptionKeyPair(ctx, other, "hsmkms/test/oaep/ec", ECP256)
	wantKind(t, err, ErrInvalidInput)
	if has(tok, "ecdsa") {
		ec := newKeyPair(t, tok, ECP256)
		_, err = tok.DecryptOAEP(ctx, ec, RSAOAEPSHA1, make([]byte, 256))
		wantKind(t, err, ErrInvalidInput)
	}
}

// TestDecodeOAEP proves the software OAEP decoding against Go's crypto:
// the encoding Go makes (recovered with a raw RSA operation on a Go key)
// decodes to the message, and any change to it fails with the one error.
func TestDecodeOAEP(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := key.Size()
	rawDecrypt := func(ct []byte) []byte {
		m := new(big.Int).Exp(new(big.Int).SetBytes(ct), key.D, key.N)
		return m.FillBytes(make([]byte, k))
	}
	for _, a := range oaepAlgs {
		p, _ := a.alg.params("test")
		for _, n := range []int{0, 1, 100, k - 2*p.hash.Size() - 2} {
			msg := pattern(n, 9)
			ct, err := rsa.EncryptOAEP(a.newHash(), rand.Reader, &key.PublicKey, msg, nil)
			if err != nil {
				t.Fatal(err)
			}
			em := rawDecrypt(ct)
			got, err := decodeOAEP(p, em)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%s: decodeOAEP of a %d-byte message = %d bytes, %v", a.alg, n, len(got), err)
			}
			for _, i := range []int{0, 1, p.hash.Size(), p.hash.Size() + 1, k - n - 1, k - 1} {
				bad := bytes.Clone(em)
				bad[i] ^= 0x01
				if got, err := decodeOAEP(p, bad); err != errOAEP {
					if n > 0 && i == k-1 && err == nil && !bytes.Equal(got, msg) {
						continue // a changed message byte decodes to another message
					}
					t.Errorf("%s: byte %d changed: %x, %v; want errOAEP", a.alg, i, got, err)
				}
			}
			labelled, _ := rsa.EncryptOAEP(a.newHash(), rand.Reader, &key.PublicKey, msg, []byte("label"))
			if _, err := decodeOAEP(p, rawDecrypt(labelled)); err != errOAEP {
				t.Errorf("%s: a ciphertext with a label decoded: %v", a.alg, err)
			}
		}
	}
	if _, err := decodeOAEP(oaepParams{hash: 5}, nil); err != errOAEP {
		t.Errorf("an empty encoding: %v", err)
	}
}
