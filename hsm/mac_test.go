package hsm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"testing"

	"github.com/miekg/pkcs11"
)

var macAlgs = []struct {
	alg     MACAlgorithm
	newHash func() hash.Hash
}{
	{HMACSHA224, sha256.New224},
	{HMACSHA256, sha256.New},
	{HMACSHA384, sha512.New384},
	{HMACSHA512, sha512.New},
}

// importHMAC imports a known HMAC key as CreateHMACKey makes one (a generic
// secret under the version's CKA_ID that signs and verifies).
func importHMAC(t *testing.T, tok *Token, s pkcs11.SessionHandle, value []byte) ObjectID {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	importObject(t, tok, s, *hmacKey(id), pkcs11.CKK_GENERIC_SECRET, value, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
	})
	return id
}

// TestKATGenerateMACMatchesGo proves, for every algorithm, that the token's
// MAC under a known key is Go's crypto/hmac's, that VerifyMAC accepts Go's
// MAC and refuses it with a flipped bit, cut short or over another
// message, each time having asked the token or, for a wrong length, not.
// An algorithm whose mechanism the token lacks (openCryptoki 3.8 has no
// CKM_SHA224_HMAC) is refused, naming it, before anything reaches the token.
func TestKATGenerateMACMatchesGo(t *testing.T) {
	tok, f := openFaulty(t)
	s := session(t, tok)
	for _, a := range macAlgs {
		t.Run(string(a.alg), func(t *testing.T) {
			ctx := t.Context()
			if _, err := a.alg.params("test", tok.Capabilities()); err != nil || !tok.Capabilities().GenericKeyGen {
				id, _ := NewObjectID()
				before := f.count("GenerateKey")
				wantKind(t, tok.CreateHMACKey(ctx, id, "hsmkms/test/hmac", a.alg), ErrMechanismUnsupported)
				_, err := tok.GenerateMAC(ctx, id, a.alg, []byte("m"))
				if tok.Capabilities().GenericKeyGen {
					wantKind(t, err, ErrMechanismUnsupported)
				}
				if f.count("GenerateKey") != before {
					t.Error("a refused CreateHMACKey reached C_GenerateKey")
				}
				return
			}
			key := pattern(a.alg.Size(), 0x33)
			id := importHMAC(t, tok, s, key)
			for _, msg := range [][]byte{{0}, []byte("the quick brown fox"), pattern(MaxMACMessage, 7)} {
				h := hmac.New(a.newHash, key)
				h.Write(msg)
				want := h.Sum(nil)
				got, err := tok.GenerateMAC(ctx, id, a.alg, msg)
				if err != nil {
					t.Fatalf("GenerateMAC(%d bytes): %v", len(msg), err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("GenerateMAC(%d bytes) = %x, Go's HMAC %x", len(msg), got, want)
				}
				if err := tok.VerifyMAC(ctx, id, a.alg, msg, want); err != nil {
					t.Fatalf("VerifyMAC of Go's MAC: %v", err)
				}
			}
			msg := []byte("message")
			mac, err := tok.GenerateMAC(ctx, id, a.alg, msg)
			if err != nil {
				t.Fatal(err)
			}
			flipped := bytes.Clone(mac)
			flipped[0] ^= 0x80
			for _, tc := range []struct {
				name     string
				msg, mac []byte
				asks     bool
			}{
				{"flipped bit", msg, flipped, true},
				{"other message", []byte("massage"), mac, true},
				{"short", msg, mac[:len(mac)-1], false},
				{"long", msg, append(bytes.Clone(mac), 0), false},
			} {
				before := f.count("SignInit")
				wantKind(t, tok.VerifyMAC(ctx, id, a.alg, tc.msg, tc.mac), ErrInvalidSignature)
				if asked := f.count("SignInit") > before; asked != tc.asks {
					t.Errorf("%s: the token asked %v, want %v", tc.name, asked, tc.asks)
				}
			}
		})
	}
	if h := tok.Health(); !h.Ready {
		t.Errorf("token not ready after bad MACs: %+v", h)
	}
}

// TestHMACKeyStaysIn proves that CreateHMACKey makes, for every algorithm,
// a key as long as its MAC that the token keeps sensitive and
// unextractable, whose MACs verify and differ from another key's; and that
// a bad message, an algorithm that does not fit the key, an unknown
// algorithm or a CKA_ID in use are refused before they reach the token.
func TestHMACKeyStaysIn(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	ids := map[MACAlgorithm]ObjectID{}
	for _, a := range macAlgs {
		if _, err := a.alg.params("test", tok.Capabilities()); err != nil {
			continue // TestKATGenerateMACMatchesGo proves the refusal
		}
		id, _ := NewObjectID()
		if err := tok.CreateHMACKey(ctx, id, "hsmkms/test/hmac/"+string(a.alg), a.alg); err != nil {
			t.Fatalf("CreateHMACKey(%s): %v", a.alg, err)
		}
		t.Cleanup(func() { _ = tok.DestroyKey(ctx, id) })
		ids[a.alg] = id
		mac, err := tok.GenerateMAC(ctx, id, a.alg, []byte("message"))
		if err != nil || len(mac) != a.alg.Size() {
			t.Fatalf("GenerateMAC(%s) = %d bytes, %v; want %d", a.alg, len(mac), err, a.alg.Size())
		}
		if err := tok.VerifyMAC(ctx, id, a.alg, []byte("message"), mac); err != nil {
			t.Fatalf("VerifyMAC(%s): %v", a.alg, err)
		}
	}
	other, _ := NewObjectID()
	if err := tok.CreateHMACKey(ctx, other, "hsmkms/test/hmac/other", HMACSHA256); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tok.DestroyKey(ctx, other) })
	m1, _ := tok.GenerateMAC(ctx, ids[HMACSHA256], HMACSHA256, []byte("message"))
	m2, _ := tok.GenerateMAC(ctx, other, HMACSHA256, []byte("message"))
	if bytes.Equal(m1, m2) {
		t.Error("two HMAC keys give one MAC")
	}
	wantKind(t, tok.VerifyMAC(ctx, other, HMACSHA256, []byte("message"), m1), ErrInvalidSignature)

	objs, err := tok.Objects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range macAlgs {
		id, ok := ids[a.alg]
		if !ok {
			continue
		}
		found := false
		for _, o := range objs {
			if bytes.Equal(o.ID, id[:]) {
				found = true
				if o.Class != "secret" || !o.Sensitive || o.Extractable || !o.NeverExtractable {
					t.Errorf("%s key: %+v; want a sensitive, never extractable secret", a.alg, o)
				}
			}
		}
		if !found {
			t.Errorf("%s key not among the token's objects", a.alg)
		}
	}

	for _, tc := range []struct {
		name string
		alg  MACAlgorithm
		id   ObjectID
		msg  []byte
		want error
	}{
		{"empty message", HMACSHA256, ids[HMACSHA256], nil, ErrInvalidInput},
		{"message too long", HMACSHA256, ids[HMACSHA256], make([]byte, MaxMACMessage+1), ErrInvalidInput},
		{"unknown algorithm", "HMAC_MD5", ids[HMACSHA256], []byte("m"), ErrInvalidInput},
		{"SHA-512 on a 256-bit key", HMACSHA512, ids[HMACSHA256], []byte("m"), ErrInvalidInput},
		{"SHA-512 on a 384-bit key", HMACSHA512, ids[HMACSHA384], []byte("m"), ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.count("SignInit") + f.count("VerifyInit")
			_, err := tok.GenerateMAC(ctx, tc.id, tc.alg, tc.msg)
			wantKind(t, err, tc.want)
			wantKind(t, tok.VerifyMAC(ctx, tc.id, tc.alg, tc.msg, make([]byte, tc.alg.Size())), tc.want)
			if n := f.count("SignInit") + f.count("VerifyInit") - before; n != 0 {
				t.Errorf("%d *Init calls reached the token", n)
			}
		})
	}
	wantKind(t, tok.CreateHMACKey(ctx, ids[HMACSHA256], "hsmkms/test/hmac/again", HMACSHA256), ErrInvalidInput)
	wantKind(t, tok.CreateHMACKey(ctx, other, "", HMACSHA256), ErrInvalidInput)
	missing, _ := NewObjectID()
	_, err = tok.GenerateMAC(ctx, missing, HMACSHA256, []byte("m"))
	wantKind(t, err, ErrKeyNotFound)
	// An AES master key under the ID is not an HMAC key.
	aes := newMasterKey(t, tok)
	_, err = tok.GenerateMAC(ctx, aes, HMACSHA256, []byte("m"))
	wantKind(t, err, ErrKeyNotFound)
}
