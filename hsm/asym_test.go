package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
)

// pssOptions are the PSS parameters RSAPSSSHA256 signs with.
var pssOptions = &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}

// asymCase is a key spec and an algorithm that fits it.
type asymCase struct {
	spec  KeySpec
	alg   SigningAlgorithm
	curve string // EC: the curve's name
	bits  int    // RSA: the modulus size
}

var asymCases = []asymCase{
	{ECP256, ECDSASHA256, "P-256", 0},
	{ECP384, ECDSASHA384, "P-384", 0},
	{RSA2048, RSAPKCS1SHA256, "", 2048},
	{RSA2048, RSAPSSSHA256, "", 2048},
	{RSA3072, RSAPSSSHA256, "", 3072},
	{RSA4096, RSAPKCS1SHA256, "", 4096},
}

func (c asymCase) name() string { return string(c.spec) + "/" + string(c.alg) }

// digest returns the hash of msg that c's algorithm signs.
func (c asymCase) digest(msg string) []byte {
	if c.alg == ECDSASHA384 {
		d := sha512.Sum384([]byte(msg))
		return d[:]
	}
	d := sha256.Sum256([]byte(msg))
	return d[:]
}

// goVerify checks sig with Go's crypto, independently of the token.
func (c asymCase) goVerify(pub crypto.PublicKey, digest, sig []byte) error {
	switch c.alg {
	case ECDSASHA256, ECDSASHA384:
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest, sig) {
			return errors.New("ecdsa.VerifyASN1 rejected the signature")
		}
		return nil
	case RSAPKCS1SHA256:
		return rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, digest, sig)
	case RSAPSSSHA256:
		return rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, digest, sig, pssOptions)
	}
	return errors.New("no Go verifier")
}

// goSign signs digest with a fresh Go key of the same type and size: a
// well-formed signature by an unrelated key.
func (c asymCase) goSign(t *testing.T, digest []byte) []byte {
	t.Helper()
	var sig []byte
	var err error
	switch c.alg {
	case ECDSASHA256, ECDSASHA384:
		curve := elliptic.P256()
		if c.curve == "P-384" {
			curve = elliptic.P384()
		}
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(curve, rand.Reader); err == nil {
			sig, err = ecdsa.SignASN1(rand.Reader, k, digest)
		}
	default:
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rand.Reader, c.bits); err != nil {
			break
		}
		if c.alg == RSAPSSSHA256 {
			sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, digest, pssOptions)
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest)
		}
	}
	if err != nil {
		t.Fatalf("signing with Go: %v", err)
	}
	return sig
}

// checkPublicKey fails unless pub is a key of c's type and size.
func (c asymCase) checkPublicKey(t *testing.T, pub crypto.PublicKey) {
	t.Helper()
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if c.curve == "" || k.Curve.Params().Name != c.curve {
			t.Fatalf("got an EC key on %s, want %s", k.Curve.Params().Name, c.spec)
		}
	case *rsa.PublicKey:
		if c.bits == 0 || k.N.BitLen() != c.bits || k.E != 65537 {
			t.Fatalf("got an RSA key of %d bits, e=%d; want %s with e=65537", k.N.BitLen(), k.E, c.spec)
		}
	default:
		t.Fatalf("got a %T, want a key of %s", pub, c.spec)
	}
}

// TestAsymSignVerify proves, for every key spec and algorithm, that a key
// pair generated on the token has a public key of the right type and size,
// that PublicKey returns the same key, that its signatures verify with Go's
// crypto and with tok.Verify, and that tok.Verify refuses a signature with
// a flipped byte, over another digest or by an unrelated key, having asked
// the token each time.
func TestAsymSignVerify(t *testing.T) {
	tok, f := openFaulty(t)
	for _, c := range asymCases {
		t.Run(c.name(), func(t *testing.T) {
			ctx := t.Context()
			id, err := NewObjectID()
			if err != nil {
				t.Fatal(err)
			}
			pub, err := tok.CreateKeyPair(ctx, id, "hsmkms/test/"+c.name(), c.spec)
			if err != nil {
				t.Fatalf("CreateKeyPair: %v", err)
			}
			c.checkPublicKey(t, pub)
			again, err := tok.PublicKey(ctx, id)
			if err != nil {
				t.Fatalf("PublicKey: %v", err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(again) {
				t.Fatal("PublicKey differs from the key CreateKeyPair returned")
			}

			digest := c.digest("message signed by " + c.name())
			sig, err := tok.Sign(ctx, id, c.alg, digest)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := c.goVerify(pub, digest, sig); err != nil {
				t.Fatalf("Go's crypto rejects the token's signature: %v", err)
			}
			if err := tok.Verify(ctx, id, c.alg, digest, sig); err != nil {
				t.Fatalf("Verify of the token's own signature: %v", err)
			}

			flipped := bytes.Clone(sig)
			flipped[len(flipped)-1] ^= 0x01 // the last byte of s: still valid DER
			bad := []struct {
				name   string
				digest []byte
				sig    []byte
			}{
				{"flipped byte", digest, flipped},
				{"other digest", c.digest("another message"), sig},
				{"unrelated key", digest, c.goSign(t, digest)},
			}
			for _, b := range bad {
				t.Run(b.name, func(t *testing.T) {
					calls := f.count("VerifyInit")
					wantKind(t, tok.Verify(ctx, id, c.alg, b.digest, b.sig), ErrInvalidSignature)
					if f.count("VerifyInit") != calls+1 {
						t.Errorf("the token was not asked: VerifyInit ran %d times", f.count("VerifyInit")-calls)
					}
				})
			}
		})
	}
	if h := tok.Health(); !h.Ready {
		t.Errorf("token not ready after bad signatures: %+v", h)
	}
}

// TestAsymSignVerifyInvalidInput proves that wrong digest lengths, unknown
// algorithms and key specs, empty labels and an algorithm that does not fit
// the key's type are refused with ErrInvalidInput before any sign, verify
// or key generation call reaches the token. CKM_RSA_PKCS_PSS on an EC key
// crashes SoftHSM2 2.6.1 (SIGSEGV in C_Sign), so this test dies if the
// package lets it through.
func TestAsymSignVerifyInvalidInput(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	ec := newKeyPair(t, tok, ECP256)
	rsaKey := newKeyPair(t, tok, RSA2048)
	d32 := sha256.Sum256([]byte("x"))
	ecSig, err := tok.Sign(ctx, ec, ECDSASHA256, d32[:])
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, err := tok.Sign(ctx, rsaKey, RSAPKCS1SHA256, d32[:])
	if err != nil {
		t.Fatal(err)
	}
	sign := func(id ObjectID, alg SigningAlgorithm, digest []byte) func() error {
		return func() error { _, err := tok.Sign(ctx, id, alg, digest); return err }
	}
	verify := func(id ObjectID, alg SigningAlgorithm, digest, sig []byte) func() error {
		return func() error { return tok.Verify(ctx, id, alg, digest, sig) }
	}
	// create's rows must not even search the token (its first call).
	create := func(label string, spec KeySpec) func() error {
		return func() error {
			id, err := NewObjectID()
			if err != nil {
				t.Fatal(err)
			}
			_, err = tok.CreateKeyPair(ctx, id, label, spec)
			return err
		}
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"sign ECDSA_SHA_256 with a 31-byte digest", sign(ec, ECDSASHA256, d32[:31])},
		{"sign ECDSA_SHA_256 with a 48-byte digest", sign(ec, ECDSASHA256, make([]byte, 48))},
		{"sign ECDSA_SHA_384 with a 32-byte digest", sign(ec, ECDSASHA384, d32[:])},
		{"sign RSASSA_PKCS1 with an empty digest", sign(rsaKey, RSAPKCS1SHA256, nil)},
		{"sign RSASSA_PSS with a 33-byte digest", sign(rsaKey, RSAPSSSHA256, make([]byte, 33))},
		{"verify ECDSA_SHA_256 with a 31-byte digest", verify(ec, ECDSASHA256, d32[:31], ecSig)},
		{"verify RSASSA_PKCS1 with a 64-byte digest", verify(rsaKey, RSAPKCS1SHA256, make([]byte, 64), rsaSig)},
		{"sign with an unknown algorithm", sign(ec, "ECDSA_SHA_512", make([]byte, 64))},
		{"sign with an empty algorithm", sign(rsaKey, "", d32[:])},
		{"verify with an unknown algorithm", verify(rsaKey, "RSASSA_PSS_SHA_512", d32[:], rsaSig)},
		{"create an unknown key spec", create("x", "EC_P521")},
		{"create an empty key spec", create("x", "")},
		{"create RSA_1024", create("x", "RSA_1024")},
		{"create with an empty label", create("", ECP256)},
		{"create with a 129-byte label", create(string(make([]byte, MaxLabel+1)), ECP256)},
		// An algorithm of the wrong key type: SoftHSM2 accepts the
		// *Init call and fails C_Sign with CKR_GENERAL_ERROR or crashes.
		{"sign ECDSA_SHA_256 with an RSA key", sign(rsaKey, ECDSASHA256, d32[:])},
		{"sign RSASSA_PKCS1 with an EC key", sign(ec, RSAPKCS1SHA256, d32[:])},
		{"sign RSASSA_PSS with an EC key", sign(ec, RSAPSSSHA256, d32[:])},
		{"verify ECDSA_SHA_256 with an RSA key", verify(rsaKey, ECDSASHA256, d32[:], ecSig)},
		{"verify RSASSA_PKCS1 with an EC key", verify(ec, RSAPKCS1SHA256, d32[:], rsaSig)},
		{"verify RSASSA_PSS with an EC key", verify(ec, RSAPSSSHA256, d32[:], rsaSig)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counted := []string{"SignInit", "VerifyInit"}
			if strings.HasPrefix(tc.name, "create") {
				counted = []string{"FindObjectsInit"}
			}
			before := map[string]int{}
			for _, m := range counted {
				before[m] = f.count(m)
			}
			wantKind(t, tc.call(), ErrInvalidInput)
			for _, m := range counted {
				if n := f.count(m) - before[m]; n != 0 {
					t.Errorf("%s reached the token %d times", m, n)
				}
			}
		})
	}
	// The token is healthy and the keys still work.
	if h := tok.Health(); !h.Ready {
		t.Fatalf("token not ready: %+v", h)
	}
	if err := tok.Verify(ctx, ec, ECDSASHA256, d32[:], ecSig); err != nil {
		t.Errorf("Verify after the refusals: %v", err)
	}
	if err := tok.Verify(ctx, rsaKey, RSAPKCS1SHA256, d32[:], rsaSig); err != nil {
		t.Errorf("Verify after the refusals: %v", err)
	}
}

// TestAsymUnknownKey proves that Sign, Verify and PublicKey with a CKA_ID
// the token does not have, or with the CKA_ID of a master key (a secret
// key, not a key pair), give ErrKeyNotFound.
func TestAsymUnknownKey(t *testing.T) {
	tok := openToken(t)
	ctx := t.Context()
	unknown, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	master := newMasterKey(t, tok)
	digest := sha256.Sum256([]byte("x"))
	sig := bytes.Repeat([]byte{1}, 256)
	for name, id := range map[string]ObjectID{"unknown id": unknown, "master key id": master} {
		t.Run(name, func(t *testing.T) {
			_, err := tok.Sign(ctx, id, ECDSASHA256, digest[:])
			wantKind(t, err, ErrKeyNotFound)
			_, err = tok.Sign(ctx, id, RSAPSSSHA256, digest[:])
			wantKind(t, err, ErrKeyNotFound)
			wantKind(t, tok.Verify(ctx, id, RSAPKCS1SHA256, digest[:], sig), ErrKeyNotFound)
			_, err = tok.PublicKey(ctx, id)
			wantKind(t, err, ErrKeyNotFound)
		})
	}
}

// TestAsymCreateKeyPairExistingID proves that CreateKeyPair refuses a
// CKA_ID the token already has (a key pair's or a master key's) with
// ErrInvalidInput, and leaves the existing objects as they were.
func TestAsymCreateKeyPairExistingID(t *testing.T) {
	tok := openToken(t)
	ctx := t.Context()
	pairID, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	first, err := tok.CreateKeyPair(ctx, pairID, "first", ECP256)
	if err != nil {
		t.Fatal(err)
	}
	master := newMasterKey(t, tok)
	tests := []struct {
		name    string
		id      ObjectID
		spec    KeySpec
		objects int
	}{
		{"same id, same spec", pairID, ECP256, 2},
		{"same id, other spec", pairID, RSA2048, 2},
		{"id of a master key", master, ECP256, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tok.CreateKeyPair(ctx, tc.id, "second", tc.spec)
			wantKind(t, err, ErrInvalidInput)
			ctx, s := raw(t, tok), session(t, tok)
			if n := rawCount(t, ctx, s, tc.id); n != tc.objects {
				t.Errorf("%d objects with the CKA_ID, want %d", n, tc.objects)
			}
		})
	}
	pub, err := tok.PublicKey(ctx, pairID)
	if err != nil {
		t.Fatal(err)
	}
	if !first.(*ecdsa.PublicKey).Equal(pub) {
		t.Error("the first key pair's public key changed")
	}
}

// TestAsymDestroyKeyPair proves that DestroyKey removes both halves of a
// key pair, even with their handles cached: HasKey is false after, Sign,
// Verify and PublicKey give ErrKeyNotFound, no object with the CKA_ID is
// left, and a second DestroyKey gives ErrKeyNotFound.
func TestAsymDestroyKeyPair(t *testing.T) {
	tok := openToken(t)
	ctx := t.Context()
	for _, c := range []asymCase{asymCases[0], asymCases[2]} {
		t.Run(c.name(), func(t *testing.T) {
			id := newKeyPair(t, tok, c.spec)
			digest := c.digest("x")
			// Cache both handles.
			sig, err := tok.Sign(ctx, id, c.alg, digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.Verify(ctx, id, c.alg, digest, sig); err != nil {
				t.Fatal(err)
			}
			rctx, s := raw(t, tok), session(t, tok)
			if n := rawCount(t, rctx, s, id); n != 2 {
				t.Fatalf("%d objects with the CKA_ID before DestroyKey, want 2", n)
			}
			if err := tok.DestroyKey(ctx, id); err != nil {
				t.Fatalf("DestroyKey: %v", err)
			}
			if n := rawCount(t, rctx, s, id); n != 0 {
				t.Errorf("%d objects with the CKA_ID after DestroyKey, want 0", n)
			}
			has, err := tok.HasKey(ctx, id)
			if err != nil || has {
				t.Errorf("HasKey after DestroyKey: %v, %v; want false, nil", has, err)
			}
			_, err = tok.PublicKey(ctx, id)
			wantKind(t, err, ErrKeyNotFound)
			_, err = tok.Sign(ctx, id, c.alg, digest)
			wantKind(t, err, ErrKeyNotFound)
			wantKind(t, tok.Verify(ctx, id, c.alg, digest, sig), ErrKeyNotFound)
			wantKind(t, tok.DestroyKey(ctx, id), ErrKeyNotFound)
		})
	}
}

// TestAsymVerifyMalformedSignature proves that empty, garbage, truncated,
// padded and oversize signatures give ErrInvalidSignature and never a
// panic or another kind, that oversize ones (more than 512 bytes) never
// reach the token, and that the token stays healthy.
func TestAsymVerifyMalformedSignature(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	der := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	one, big257 := big.NewInt(1), new(big.Int).Lsh(big.NewInt(1), 256)
	random := func(n int) []byte {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []asymCase{asymCases[0], asymCases[1], asymCases[2], asymCases[3]} {
		t.Run(c.name(), func(t *testing.T) {
			id := newKeyPair(t, tok, c.spec)
			digest := c.digest("x")
			good, err := tok.Sign(ctx, id, c.alg, digest)
			if err != nil {
				t.Fatal(err)
			}
			size := len(good) // RSA: the modulus size
			tests := []struct {
				name      string
				sig       []byte
				tokenCall bool // whether the token may be asked
			}{
				{"nil", nil, false},
				{"empty", []byte{}, false},
				{"one byte", []byte{0x30}, true},
				{"random 64 bytes", random(64), true},
				{"random, the signature's size", random(size), true},
				{"zeros, the signature's size", make([]byte, size), true},
				{"0xff, the signature's size", bytes.Repeat([]byte{0xff}, size), true},
				{"truncated", good[:len(good)-1], true},
				{"a byte appended", append(bytes.Clone(good), 0), true},
				{"512 bytes", random(512), true},
				{"513 bytes", random(513), false},
				{"64 KiB", random(64 << 10), false},
				{"DER r=0", der(ecdsaSig{big.NewInt(0), one}), true},
				{"DER s negative", der(ecdsaSig{one, big.NewInt(-1)}), true},
				{"DER r of 257 bits", der(ecdsaSig{big257, one}), true},
				{"DER with one integer", der(struct{ R *big.Int }{one}), true},
				{"DER with trailing data", append(der(ecdsaSig{one, one}), 0), true},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					calls := f.count("VerifyInit")
					wantKind(t, tok.Verify(ctx, id, c.alg, digest, tc.sig), ErrInvalidSignature)
					if !tc.tokenCall && f.count("VerifyInit") != calls {
						t.Errorf("a %d-byte signature reached the token", len(tc.sig))
					}
				})
			}
			if err := tok.Verify(ctx, id, c.alg, digest, good); err != nil {
				t.Errorf("Verify of a good signature after the bad ones: %v", err)
			}
		})
	}
	if h := tok.Health(); !h.Ready {
		t.Errorf("token not ready after malformed signatures: %+v", h)
	}
}
