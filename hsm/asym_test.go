package hsm

import (
	"bytes"
	"context"
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
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
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
	{ECP521, ECDSASHA512, "P-521", 0},
}

func (c asymCase) name() string { return string(c.spec) + "/" + string(c.alg) }

// digest returns the hash of msg that c's algorithm signs.
func (c asymCase) digest(msg string) []byte {
	switch c.alg {
	case ECDSASHA384:
		d := sha512.Sum384([]byte(msg))
		return d[:]
	case ECDSASHA512:
		d := sha512.Sum512([]byte(msg))
		return d[:]
	}
	d := sha256.Sum256([]byte(msg))
	return d[:]
}

// goVerify checks sig with Go's crypto, independently of the token.
func (c asymCase) goVerify(pub crypto.PublicKey, digest, sig []byte) error {
	switch c.alg {
	case ECDSASHA256, ECDSASHA384, ECDSASHA512:
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
	case ECDSASHA256, ECDSASHA384, ECDSASHA512:
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[c.curve]
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

// keyFeature names the feature (as Features names it) a token needs to
// make key pairs of spec.
func keyFeature(spec KeySpec) string {
	switch spec {
	case ECP521:
		return "ecdsa-p521"
	case ECSecp256k1:
		return "ecdsa-secp256k1"
	}
	if strings.HasPrefix(string(spec), "EC_") {
		return "ecdsa"
	}
	return "rsa"
}

// keyMechs are the mechanisms the error of a refused CreateKeyPair(spec)
// may name: what keyFeature(spec) needs.
func keyMechs(spec KeySpec) []uint {
	if strings.HasPrefix(keyFeature(spec), "ecdsa") {
		return []uint{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA}
	}
	return []uint{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS}
}

// algFeature names the feature a token needs to sign and verify with alg,
// and algMech the mechanism a refusal names.
func algFeature(alg SigningAlgorithm) string {
	switch alg {
	case ECDSASHA256, ECDSASHA384, ECDSASHA512:
		return "ecdsa"
	case RSAPSSSHA256:
		return "rsa-pss"
	}
	return "rsa"
}

func algMech(alg SigningAlgorithm) uint {
	switch alg {
	case ECDSASHA256, ECDSASHA384, ECDSASHA512:
		return pkcs11.CKM_ECDSA
	case RSAPSSSHA256:
		return pkcs11.CKM_RSA_PKCS_PSS
	}
	return pkcs11.CKM_RSA_PKCS
}

// wantLacking fails unless err is ErrMechanismUnsupported, and only that,
// naming one of mechs: what a token without a feature must answer, so that
// the caller learns what the token lacks.
func wantLacking(t testing.TB, err error, mechs ...uint) {
	t.Helper()
	wantKind(t, err, ErrMechanismUnsupported)
	names := make([]string, len(mechs))
	for i, m := range mechs {
		if names[i] = MechanismName(m); strings.Contains(err.Error(), names[i]) {
			return
		}
	}
	t.Fatalf("error %q names none of %v, the mechanisms the token lacks", err, names)
}

// keyPairOrLacking makes a key pair of spec and returns its CKA_ID and
// true when the token has keyFeature(spec). On a token without it, it
// proves that CreateKeyPair is refused with ErrMechanismUnsupported naming
// what the token lacks and leaves no object, and returns false: the caller
// goes on with what the token has.
func keyPairOrLacking(t *testing.T, tok *Token, spec KeySpec) (ObjectID, bool) {
	t.Helper()
	if has(tok, keyFeature(spec)) {
		return newKeyPair(t, tok, spec), true
	}
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	_, err = tok.CreateKeyPair(t.Context(), id, "hsmkms/test/lacking", spec)
	wantLacking(t, err, keyMechs(spec)...)
	if found, err := tok.HasKey(t.Context(), id); err != nil || found {
		t.Fatalf("after the refused CreateKeyPair(%s), HasKey: %v, %v; want false, nil", spec, found, err)
	}
	return id, false
}

// wantAlgLacking proves that Sign and Verify with c.alg, which the token
// lacks, are refused with ErrMechanismUnsupported before a C_SignInit or
// C_VerifyInit reaches the token (f, when not nil, counts them).
func wantAlgLacking(t *testing.T, tok *Token, f *faulty, id ObjectID, c asymCase) {
	t.Helper()
	ctx := t.Context()
	digest := c.digest("refused")
	calls := func() int {
		if f == nil {
			return 0
		}
		return f.count("SignInit") + f.count("VerifyInit")
	}
	before := calls()
	_, err := tok.Sign(ctx, id, c.alg, digest)
	wantLacking(t, err, algMech(c.alg))
	wantLacking(t, tok.Verify(ctx, id, c.alg, digest, c.goSign(t, digest)), algMech(c.alg))
	if n := calls() - before; n != 0 {
		t.Errorf("the refused %s reached the token: %d *Init calls", c.alg, n)
	}
}

// TestAsymSignVerify proves, for every key spec and algorithm, that a key
// pair generated on the token has a public key of the right type and size,
// that PublicKey returns the same key, that its signatures verify with Go's
// crypto and with tok.Verify, and that tok.Verify refuses a signature with
// a flipped byte, over another digest or by an unrelated key, having asked
// the token each time. On a token without the key type or the algorithm
// (openCryptoki has no EC), CreateKeyPair, Sign and Verify are refused
// with ErrMechanismUnsupported before anything reaches the token.
func TestAsymSignVerify(t *testing.T) {
	tok, f := openFaulty(t)
	for _, c := range asymCases {
		t.Run(c.name(), func(t *testing.T) {
			ctx := t.Context()
			if !has(tok, keyFeature(c.spec)) {
				id, _ := keyPairOrLacking(t, tok, c.spec)
				if !has(tok, algFeature(c.alg)) {
					wantAlgLacking(t, tok, f, id, c)
				}
				return
			}
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
			if !has(tok, algFeature(c.alg)) {
				wantAlgLacking(t, tok, f, id, c)
				return
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
// package lets it through. On a token without EC the key that is not RSA
// is a DH key pair, and the rows with an algorithm the token lacks are
// refused with ErrMechanismUnsupported instead, as early.
func TestAsymSignVerifyInvalidInput(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	other, kind := nonRSAKeyPair(t, tok)
	rsaKey := newKeyPair(t, tok, RSA2048)
	d32 := sha256.Sum256([]byte("x"))
	// ecSig is the token's when it has ECDSA, else a well-formed one by Go.
	ecSig := asymCases[0].goSign(t, d32[:])
	if has(tok, "ecdsa") {
		var err error
		if ecSig, err = tok.Sign(ctx, other, ECDSASHA256, d32[:]); err != nil {
			t.Fatal(err)
		}
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
		// needs is the feature the row's algorithm needs: a token
		// without it refuses the row with ErrMechanismUnsupported.
		needs string
		call  func() error
	}{
		{"sign ECDSA_SHA_256 with a 31-byte digest", "ecdsa", sign(other, ECDSASHA256, d32[:31])},
		{"sign ECDSA_SHA_256 with a 48-byte digest", "ecdsa", sign(other, ECDSASHA256, make([]byte, 48))},
		{"sign ECDSA_SHA_384 with a 32-byte digest", "ecdsa", sign(other, ECDSASHA384, d32[:])},
		{"sign RSASSA_PKCS1 with an empty digest", "rsa", sign(rsaKey, RSAPKCS1SHA256, nil)},
		{"sign RSASSA_PSS with a 33-byte digest", "rsa-pss", sign(rsaKey, RSAPSSSHA256, make([]byte, 33))},
		{"verify ECDSA_SHA_256 with a 31-byte digest", "ecdsa", verify(other, ECDSASHA256, d32[:31], ecSig)},
		{"verify RSASSA_PKCS1 with a 64-byte digest", "rsa", verify(rsaKey, RSAPKCS1SHA256, make([]byte, 64), rsaSig)},
		{"sign with an unknown algorithm", "", sign(other, "ECDSA_SHA_224", make([]byte, 28))},
		{"sign with an empty algorithm", "", sign(rsaKey, "", d32[:])},
		{"verify with an unknown algorithm", "", verify(rsaKey, "RSASSA_PSS_SHA_512", d32[:], rsaSig)},
		{"create an unknown key spec", "", create("x", "EC_P192")},
		{"create an empty key spec", "", create("x", "")},
		{"create RSA_1024", "", create("x", "RSA_1024")},
		// The label is checked first, whatever the spec.
		{"create with an empty label", "", create("", ECP256)},
		{"create with a 129-byte label", "", create(string(make([]byte, MaxLabel+1)), ECP256)},
		// An algorithm of the wrong key type: SoftHSM2 accepts the
		// *Init call and fails C_Sign with CKR_GENERAL_ERROR or crashes.
		{"sign ECDSA_SHA_256 with an RSA key", "ecdsa", sign(rsaKey, ECDSASHA256, d32[:])},
		{"sign RSASSA_PKCS1 with " + kind, "rsa", sign(other, RSAPKCS1SHA256, d32[:])},
		{"sign RSASSA_PSS with " + kind, "rsa-pss", sign(other, RSAPSSSHA256, d32[:])},
		{"verify ECDSA_SHA_256 with an RSA key", "ecdsa", verify(rsaKey, ECDSASHA256, d32[:], ecSig)},
		{"verify RSASSA_PKCS1 with " + kind, "rsa", verify(other, RSAPKCS1SHA256, d32[:], rsaSig)},
		{"verify RSASSA_PSS with " + kind, "rsa-pss", verify(other, RSAPSSSHA256, d32[:], rsaSig)},
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
			want := ErrInvalidInput
			if tc.needs != "" && !has(tok, tc.needs) {
				want = ErrMechanismUnsupported
			}
			wantKind(t, tc.call(), want)
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
	if has(tok, "ecdsa") {
		if err := tok.Verify(ctx, other, ECDSASHA256, d32[:], ecSig); err != nil {
			t.Errorf("Verify after the refusals: %v", err)
		}
	}
	if err := tok.Verify(ctx, rsaKey, RSAPKCS1SHA256, d32[:], rsaSig); err != nil {
		t.Errorf("Verify after the refusals: %v", err)
	}
}

// nonRSAKeyPair makes a key pair that is not RSA, for the rows that give an
// RSA algorithm the wrong key type, and says what it is: an EC P-256 pair
// where the token has EC, else a DH pair (RFC 3526 group 14) made with raw
// calls, which the token destroys when the test ends. A token with neither
// fails the test: the key type check would go untested.
func nonRSAKeyPair(t *testing.T, tok *Token) (ObjectID, string) {
	t.Helper()
	if has(tok, "ecdsa") {
		return newKeyPair(t, tok, ECP256), "an EC key"
	}
	mechs, err := tok.Mechanisms(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(mechs, func(m Mechanism) bool {
		return m.Type == pkcs11.CKM_DH_PKCS_KEY_PAIR_GEN && m.flags&pkcs11.CKF_GENERATE_KEY_PAIR != 0
	}) {
		t.Fatalf("the token has neither EC nor %s: no key pair that is not RSA to test the key type check with",
			MechanismName(pkcs11.CKM_DH_PKCS_KEY_PAIR_GEN))
	}
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	prime, _ := new(big.Int).SetString(modp2048, 16)
	common := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id[:]),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "hsmkms/test/dh/"+id.String()),
	}
	ctx, s := raw(t, tok), session(t, tok)
	_, _, err = ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_DH_PKCS_KEY_PAIR_GEN, nil)},
		append([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_PRIME, prime.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_BASE, []byte{2}),
		}, common...),
		append([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true),
		}, common...))
	if err != nil {
		t.Fatalf("generating a DH key pair: %v", err)
	}
	t.Cleanup(func() {
		if err := tok.DestroyKey(context.Background(), id); err != nil {
			t.Errorf("destroying the DH key pair: %v", err)
		}
	})
	return id, "a DH key"
}

// modp2048 is the prime of RFC 3526's 2048-bit MODP group (group 14).
const modp2048 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
	"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
	"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
	"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05" +
	"98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB" +
	"9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
	"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718" +
	"3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"

// TestAsymUnknownKey proves that Sign, Verify and PublicKey with a CKA_ID
// the token does not have, or with the CKA_ID of a master key (a secret
// key, not a key pair), give ErrKeyNotFound; with an algorithm the token
// lacks, ErrMechanismUnsupported comes first, whatever the key.
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
			for _, alg := range []SigningAlgorithm{ECDSASHA256, RSAPSSSHA256, RSAPKCS1SHA256} {
				want := ErrKeyNotFound
				if !has(tok, algFeature(alg)) {
					want = ErrMechanismUnsupported
				}
				_, err := tok.Sign(ctx, id, alg, digest[:])
				wantKind(t, err, want)
				wantKind(t, tok.Verify(ctx, id, alg, digest[:], sig), want)
			}
			_, err := tok.PublicKey(ctx, id)
			wantKind(t, err, ErrKeyNotFound)
		})
	}
}

// TestAsymCreateKeyPairExistingID proves that CreateKeyPair refuses a
// CKA_ID the token already has (a key pair's or a master key's) with
// ErrInvalidInput, and leaves the existing objects as they were. The specs
// are EC and RSA where the token has EC, else two RSA sizes; a spec the
// token lacks is refused with ErrMechanismUnsupported, as early.
func TestAsymCreateKeyPairExistingID(t *testing.T) {
	tok := openToken(t)
	ctx := t.Context()
	pairID, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	spec, otherSpec := ECP256, RSA2048
	if !has(tok, "ecdsa") {
		spec, otherSpec = RSA2048, RSA3072
	}
	first, err := tok.CreateKeyPair(ctx, pairID, "first", spec)
	if err != nil {
		t.Fatal(err)
	}
	master := newMasterKey(t, tok)
	type row struct {
		name    string
		id      ObjectID
		spec    KeySpec
		objects int
		want    error
	}
	tests := []row{
		{"same id, same spec", pairID, spec, 2, ErrInvalidInput},
		{"same id, other spec", pairID, otherSpec, 2, ErrInvalidInput},
		{"id of a master key", master, spec, 1, ErrInvalidInput},
	}
	if !has(tok, "ecdsa") {
		tests = append(tests, row{"same id, a spec the token lacks", pairID, ECP256, 2, ErrMechanismUnsupported})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tok.CreateKeyPair(ctx, tc.id, "second", tc.spec)
			wantKind(t, err, tc.want)
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
	if !first.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Error("the first key pair's public key changed")
	}
}

// TestAsymDestroyKeyPair proves that DestroyKey removes both halves of a
// key pair, even with their handles cached: HasKey is false after, Sign,
// Verify and PublicKey give ErrKeyNotFound, no object with the CKA_ID is
// left, and a second DestroyKey gives ErrKeyNotFound. A key type the token
// lacks is refused at creation, and DestroyKey finds nothing of it.
func TestAsymDestroyKeyPair(t *testing.T) {
	tok := openToken(t)
	ctx := t.Context()
	for _, c := range []asymCase{asymCases[0], asymCases[2]} {
		t.Run(c.name(), func(t *testing.T) {
			id, ok := keyPairOrLacking(t, tok, c.spec)
			if !ok {
				wantKind(t, tok.DestroyKey(ctx, id), ErrKeyNotFound)
				return
			}
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
// reach the token, and that the token stays healthy. EC cases on a token
// without EC prove the refusal of the key instead.
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
			id, ok := keyPairOrLacking(t, tok, c.spec)
			if !ok {
				return
			}
			if !has(tok, algFeature(c.alg)) {
				wantAlgLacking(t, tok, f, id, c)
				return
			}
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

// TestSecp256k1VerifiesWithOpenSSL proves, where the token has secp256k1
// (Go's crypto has not), that its public key encodes as a SubjectPublicKeyInfo
// OpenSSL reads as secp256k1, that OpenSSL verifies the token's signature
// with it and rejects a flipped one, and that tok.Verify agrees. A token
// without the curve refuses the key pair, naming it.
func TestSecp256k1VerifiesWithOpenSSL(t *testing.T) {
	tok := openToken(t)
	ctx := t.Context()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tok.CreateKeyPair(ctx, id, "hsmkms/test/secp256k1", ECSecp256k1)
	if !has(tok, "ecdsa-secp256k1") {
		wantKind(t, err, ErrMechanismUnsupported)
		return
	}
	if err != nil {
		t.Fatalf("CreateKeyPair: %v", err)
	}
	t.Cleanup(func() { _ = tok.DestroyKey(ctx, id) })
	ec, ok := pub.(*ECPublicKey)
	if !ok || ec.Curve != "secp256k1" || len(ec.Point) != 65 {
		t.Fatalf("public key %#v, want a secp256k1 *ECPublicKey", pub)
	}
	der, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pubFile := write("pub.der", der)
	text, err := exec.Command("openssl", "pkey", "-pubin", "-inform", "DER", "-in", pubFile, "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(text), "secp256k1") {
		t.Fatalf("openssl pkey: %v\n%s", err, text)
	}
	digest := sha256.Sum256([]byte("signed on secp256k1"))
	sig, err := tok.Sign(ctx, id, ECDSASHA256, digest[:])
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := tok.Verify(ctx, id, ECDSASHA256, digest[:], sig); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	verify := func(sig []byte) (string, error) {
		out, err := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", pubFile,
			"-in", write("digest", digest[:]), "-sigfile", write("sig", sig)).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(sig); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		t.Fatalf("openssl rejects the token's signature: %v\n%s", err, out)
	}
	flipped := bytes.Clone(sig)
	flipped[len(flipped)-1] ^= 1
	if out, err := verify(flipped); err == nil {
		t.Fatalf("openssl accepts a flipped signature:\n%s", out)
	}
	wantKind(t, tok.Verify(ctx, id, ECDSASHA256, digest[:], flipped), ErrInvalidSignature)
}

// TestVerifyWrongDigestAfterSign signs and then verifies against another
// digest on one OS thread, for each signing algorithm the token has. On NSS
// 3.87's softoken that C_Verify answers the PKCS#1 v1.5 mismatch with the
// thread's stale error code, CKR_DEVICE_ERROR: Verify must still say
// ErrInvalidSignature and leave the token in service.
func TestVerifyWrongDigestAfterSign(t *testing.T) {
	tok := openToken(t)
	for _, c := range asymCases {
		if !has(tok, keyFeature(c.spec)) || !has(tok, algFeature(c.alg)) {
			continue // TestAsymSignVerify proves these are refused
		}
		t.Run(c.name(), func(t *testing.T) {
			id := newKeyPair(t, tok, c.spec)
			digest := c.digest("signed")
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			sig, err := tok.Sign(t.Context(), id, c.alg, digest)
			if err != nil {
				t.Fatal(err)
			}
			wantKind(t, tok.Verify(t.Context(), id, c.alg, c.digest("not signed"), sig), ErrInvalidSignature)
			if h := tok.Health(); !h.Ready {
				t.Fatalf("token out of service after a wrong digest: %+v", h)
			}
		})
	}
}

// TestVerifyWitness proves how Verify settles a C_Verify failing with a code
// that is not CKR_SIGNATURE_INVALID: a signature the public key does not
// verify is the caller's error and the token stays in service; a valid one
// is the token's failure, which takes it out of service.
func TestVerifyWitness(t *testing.T) {
	tok, f := openFaulty(t)
	ctx := t.Context()
	id := newKeyPair(t, tok, RSA2048)
	digest := sha256.Sum256([]byte("signed"))
	sig, err := tok.Sign(ctx, id, RSAPKCS1SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	other := sha256.Sum256([]byte("not signed"))
	f.inject("Verify", pkcs11.Error(pkcs11.CKR_DEVICE_ERROR))
	wantKind(t, tok.Verify(ctx, id, RSAPKCS1SHA256, other[:], sig), ErrInvalidSignature)
	if h := tok.Health(); !h.Ready {
		t.Fatalf("token out of service after a wrong signature: %+v", h)
	}
	if err := tok.Verify(ctx, id, RSAPKCS1SHA256, digest[:], sig); err != nil {
		t.Fatalf("Verify of a good signature after the witness: %v", err)
	}
	f.inject("Verify", pkcs11.Error(pkcs11.CKR_DEVICE_ERROR))
	wantKind(t, tok.Verify(ctx, id, RSAPKCS1SHA256, digest[:], sig), ErrUnavailable)
	if h := tok.Health(); h.Ready {
		t.Fatal("token in service after failing to verify a good signature")
	}
}
