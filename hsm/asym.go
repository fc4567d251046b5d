package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"

	"github.com/miekg/pkcs11"
)

// KeySpec is the kind of an asymmetric key pair.
type KeySpec string

// The key pairs the token makes.
const (
	ECP256      KeySpec = "EC_P256"
	ECP384      KeySpec = "EC_P384"
	ECP521      KeySpec = "EC_P521"
	ECSecp256k1 KeySpec = "EC_SECP256K1"
	RSA2048     KeySpec = "RSA_2048"
	RSA3072     KeySpec = "RSA_3072"
	RSA4096     KeySpec = "RSA_4096"
)

// SigningAlgorithm is how a digest is signed.
type SigningAlgorithm string

// The signing algorithms, named as AWS KMS names them.
const (
	ECDSASHA256     SigningAlgorithm = "ECDSA_SHA_256"
	ECDSASHA384     SigningAlgorithm = "ECDSA_SHA_384"
	ECDSASHA512     SigningAlgorithm = "ECDSA_SHA_512"
	RSAPSSSHA256    SigningAlgorithm = "RSASSA_PSS_SHA_256"
	RSAPKCS1SHA256  SigningAlgorithm = "RSASSA_PKCS1_V1_5_SHA_256"
	maxSignatureLen                  = 512 // RSA-4096
)

var (
	oidP256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384      = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521      = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidSecp256k1 = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	oidECPublic  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	// sha256DigestInfo is the DER prefix PKCS #1 v1.5 puts before a SHA-256
	// digest; CKM_RSA_PKCS signs whatever it is given.
	sha256DigestInfo = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
)

// curve is a named curve the token may make EC key pairs on.
type curve struct {
	name string
	oid  asn1.ObjectIdentifier
	size int            // bytes of the order: each half of a raw signature
	std  elliptic.Curve // nil where Go's crypto has none (secp256k1)
}

// curves are the curves hsmkms makes keys on; the token's mechanism list
// promises P-256 and P-384 with CKM_EC_KEY_PAIR_GEN, and the self-test at
// open tries extraCurves.
var curves = []curve{
	{"P-256", oidP256, 32, elliptic.P256()},
	{"P-384", oidP384, 48, elliptic.P384()},
	{"P-521", oidP521, 66, elliptic.P521()},
	{"secp256k1", oidSecp256k1, 32, nil},
}

var extraCurves = curves[2:]

// curveOf finds the curve of DER-encoded CKA_EC_PARAMS.
func curveOf(params []byte) (curve, error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err != nil {
		return curve{}, fmt.Errorf("CKA_EC_PARAMS: %w", err)
	}
	for _, c := range curves {
		if c.oid.Equal(oid) {
			return c, nil
		}
	}
	return curve{}, fmt.Errorf("unsupported curve %v", oid)
}

// PairUsage is what a key pair's private half does.
type PairUsage int

// The usages of key pairs.
const (
	PairSign    PairUsage = iota // sign and verify
	PairEncrypt                  // encrypt and decrypt (RSA only)
	pairUnwrap                   // the private half unwraps imported key material (RSA only)
)

// CreateKeyPair generates a signing key pair of spec inside the token: the
// private half sensitive and never extractable, both halves with CKA_ID id.
func (t *Token) CreateKeyPair(ctx context.Context, id ObjectID, label string, spec KeySpec) (crypto.PublicKey, error) {
	return t.createKeyPair(ctx, id, label, spec, PairSign)
}

// CreateEncryptionKeyPair generates an RSA key pair of spec that encrypts
// and decrypts (and does nothing else) inside the token: the private half
// sensitive and never extractable, both halves with CKA_ID id.
func (t *Token) CreateEncryptionKeyPair(ctx context.Context, id ObjectID, label string, spec KeySpec) (crypto.PublicKey, error) {
	return t.createKeyPair(ctx, id, label, spec, PairEncrypt)
}

func (t *Token) createKeyPair(ctx context.Context, id ObjectID, label string, spec KeySpec, usage PairUsage) (crypto.PublicKey, error) {
	const op = "create key pair"
	if len(label) == 0 || len(label) > MaxLabel {
		return nil, invalidInput(op, "label must be 1 to %d bytes", MaxLabel)
	}
	sign, crypt, unwrap := usage == PairSign, usage == PairEncrypt, usage == pairUnwrap
	if crypt || unwrap {
		if spec != RSA2048 && spec != RSA3072 && spec != RSA4096 {
			return nil, invalidInput(op, "%s key pairs cannot encrypt", spec)
		}
		if err := requireMechanism(op, t.caps.RSAOAEP, pkcs11.CKM_RSA_PKCS_OAEP); err != nil {
			return nil, err
		}
	}
	mech, pubAttrs, err := t.pairMechanism(op, spec)
	if err != nil {
		return nil, err
	}
	common := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id[:]),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	pub := append(append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, sign),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, crypt),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
	}, common...), pubAttrs...)
	priv := append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, sign),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, crypt),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, unwrap),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
	}, common...)
	var key crypto.PublicKey
	err = t.do(ctx, op, nil, nil, func(s pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		if err := t.lockObjects(ctx); err != nil {
			return err
		}
		defer t.objectMu.Unlock()
		if err := t.refuseExisting(s, id); err != nil {
			return err
		}
		m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
		var pubH pkcs11.ObjectHandle
		err := t.withCopyable(priv, func(priv []*pkcs11.Attribute) (err error) {
			pubH, _, err = t.p.GenerateKeyPair(s, m, pub, priv)
			return err
		})
		if err != nil {
			return err
		}
		key, err = t.readPublicKey(s, pubH)
		return err
	})
	return key, err
}

func (t *Token) pairMechanism(op string, spec KeySpec) (uint, []*pkcs11.Attribute, error) {
	ec := func(c curve) (uint, []*pkcs11.Attribute, error) {
		params, _ := asn1.Marshal(c.oid)
		err := requireMechanism(op, t.caps.ECKeyGen && t.caps.ECDSA, pkcs11.CKM_EC_KEY_PAIR_GEN)
		if err == nil && slices.ContainsFunc(extraCurves, func(e curve) bool { return e.name == c.name }) && !slices.Contains(t.caps.Curves, c.name) {
			err = newError(op, ErrMechanismUnsupported, fmt.Errorf("the token makes no EC key pairs on %s", c.name))
		}
		return pkcs11.CKM_EC_KEY_PAIR_GEN, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params)}, err
	}
	rsaBits := func(bits int) (uint, []*pkcs11.Attribute, error) {
		return pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
				pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			},
			requireMechanism(op, t.caps.RSAKeyGen, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN)
	}
	switch spec {
	case ECP256:
		return ec(curves[0])
	case ECP384:
		return ec(curves[1])
	case ECP521:
		return ec(curves[2])
	case ECSecp256k1:
		return ec(curves[3])
	case RSA2048:
		return rsaBits(2048)
	case RSA3072:
		return rsaBits(3072)
	case RSA4096:
		return rsaBits(4096)
	}
	return 0, nil, invalidInput(op, "unknown key spec %q", spec)
}

// PublicKey returns the public half of the key pair id as an
// *ecdsa.PublicKey, an *rsa.PublicKey or, on curves Go's crypto lacks, an
// *ECPublicKey.
func (t *Token) PublicKey(ctx context.Context, id ObjectID) (crypto.PublicKey, error) {
	var key crypto.PublicKey
	err := t.do(ctx, "get public key", publicKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		var err error
		key, err = t.readPublicKey(s, h)
		return err
	})
	return key, err
}

func (t *Token) readPublicKey(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (crypto.PublicKey, error) {
	kt, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return nil, err
	}
	switch attrUint(kt[0].Value) {
	case pkcs11.CKK_EC:
		a, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
		})
		if err != nil {
			return nil, err
		}
		return parseECPoint(a[0].Value, a[1].Value)
	case pkcs11.CKK_RSA:
		a, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return nil, err
		}
		e := new(big.Int).SetBytes(a[1].Value)
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("public exponent out of range")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(a[0].Value), E: int(e.Int64())}, nil
	}
	return nil, fmt.Errorf("unsupported key type %d", attrUint(kt[0].Value))
}

// ECPublicKey is the public half of an EC key pair on a curve Go's crypto
// lacks (secp256k1).
type ECPublicKey struct {
	Curve string // the curve's name, as Capabilities.Curves has it
	// Params is the DER-encoded named-curve OID, Point the uncompressed
	// point (0x04 || X || Y).
	Params, Point []byte
}

// parseECPoint decodes CKA_EC_PARAMS (a named-curve OID) and CKA_EC_POINT
// (an uncompressed point, DER-wrapped in an OCTET STRING by v2.20+ tokens).
func parseECPoint(params, point []byte) (crypto.PublicKey, error) {
	c, err := curveOf(params)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if rest, err := asn1.Unmarshal(point, &raw); err != nil || len(rest) > 0 {
		raw = point // some tokens return the bare point
	}
	if c.std != nil {
		return ecdsa.ParseUncompressedPublicKey(c.std, raw)
	}
	if len(raw) != 1+2*c.size || raw[0] != 4 {
		return nil, fmt.Errorf("CKA_EC_POINT is not an uncompressed point on %s", c.name)
	}
	return &ECPublicKey{Curve: c.name, Params: params, Point: raw}, nil
}

// MarshalPublicKey encodes a public key PublicKey returned as a DER
// SubjectPublicKeyInfo, as AWS KMS's GetPublicKey returns it.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	ec, ok := pub.(*ECPublicKey)
	if !ok {
		return x509.MarshalPKIXPublicKey(pub)
	}
	// RFC 5480: the algorithm is id-ecPublicKey with the curve's OID as
	// its parameters; the key is the point as a BIT STRING.
	return asn1.Marshal(struct {
		Algorithm struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue
		}
		PublicKey asn1.BitString
	}{
		Algorithm: struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue
		}{oidECPublic, asn1.RawValue{FullBytes: ec.Params}},
		PublicKey: asn1.BitString{Bytes: ec.Point, BitLength: 8 * len(ec.Point)},
	})
}

type signParams struct {
	mech      *pkcs11.Mechanism
	digestLen int
	prefix    []byte
	ec        bool
}

func signingParams(op string, alg SigningAlgorithm, caps Capabilities) (signParams, error) {
	switch alg {
	case ECDSASHA256, ECDSASHA384, ECDSASHA512:
		n := map[SigningAlgorithm]int{ECDSASHA256: 32, ECDSASHA384: 48, ECDSASHA512: 64}[alg]
		return signParams{mech: pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digestLen: n, ec: true},
			requireMechanism(op, caps.ECDSA, pkcs11.CKM_ECDSA)
	case RSAPKCS1SHA256:
		return signParams{mech: pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), digestLen: 32, prefix: sha256DigestInfo},
			requireMechanism(op, caps.RSAPKCS, pkcs11.CKM_RSA_PKCS)
	case RSAPSSSHA256:
		params := pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, 32)
		return signParams{mech: pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, params), digestLen: 32},
			requireMechanism(op, caps.RSAPSS, pkcs11.CKM_RSA_PKCS_PSS)
	}
	return signParams{}, invalidInput(op, "unknown signing algorithm %q", alg)
}

// Sign signs a digest with the private half of key pair id. ECDSA
// signatures come back ASN.1 DER encoded, as X.509 and AWS KMS have them.
func (t *Token) Sign(ctx context.Context, id ObjectID, alg SigningAlgorithm, digest []byte) ([]byte, error) {
	const op = "sign"
	sp, err := signingParams(op, alg, t.caps)
	if err != nil {
		return nil, err
	}
	if len(digest) != sp.digestLen {
		return nil, invalidInput(op, "%s needs a %d-byte digest, got %d", alg, sp.digestLen, len(digest))
	}
	var sig []byte
	err = t.do(ctx, op, privateKey(id), nil, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := t.checkKeyType(op, s, h, alg, sp); err != nil {
			return err
		}
		if err := t.p.SignInit(s, []*pkcs11.Mechanism{sp.mech}, h); err != nil {
			return err
		}
		var err error
		sig, err = t.p.Sign(s, append(append([]byte(nil), sp.prefix...), digest...))
		return err
	})
	if err != nil || !sp.ec {
		return sig, err
	}
	half := len(sig) / 2
	return asn1.Marshal(ecdsaSig{new(big.Int).SetBytes(sig[:half]), new(big.Int).SetBytes(sig[half:])})
}

type ecdsaSig struct{ R, S *big.Int }

// Verify checks a signature over a digest with the public half of key pair
// id on the token. A signature that does not verify gives ErrInvalidSignature.
func (t *Token) Verify(ctx context.Context, id ObjectID, alg SigningAlgorithm, digest, sig []byte) error {
	const op = "verify"
	sp, err := signingParams(op, alg, t.caps)
	if err != nil {
		return err
	}
	if len(digest) != sp.digestLen {
		return invalidInput(op, "%s needs a %d-byte digest, got %d", alg, sp.digestLen, len(digest))
	}
	if len(sig) == 0 || len(sig) > maxSignatureLen {
		return newError(op, ErrInvalidSignature, fmt.Errorf("signature must be 1 to %d bytes, got %d", maxSignatureLen, len(sig)))
	}
	return t.do(ctx, op, publicKey(id), ErrInvalidSignature, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := t.checkKeyType(op, s, h, alg, sp); err != nil {
			return err
		}
		raw := sig
		if sp.ec {
			var err error
			if raw, err = t.rawECDSA(s, h, sig); err != nil {
				return err
			}
		}
		if err := t.p.VerifyInit(s, []*pkcs11.Mechanism{sp.mech}, h); err != nil {
			return err
		}
		err := t.p.Verify(s, append(append([]byte(nil), sp.prefix...), digest...), raw)
		if err == nil || isCode(err, pkcs11.CKR_SIGNATURE_INVALID) || isCode(err, pkcs11.CKR_SIGNATURE_LEN_RANGE) {
			return err
		}
		return t.witnessVerify(s, h, alg, digest, sig, err)
	})
}

// witnessVerify settles a C_Verify that failed with a code other than
// CKR_SIGNATURE_INVALID. NSS 3.87's softoken answers a PKCS#1 v1.5
// signature that does not match with whatever error code the calling
// thread last left (its RSA_CheckSign sets none): after a C_Sign on the
// same thread, CKR_DEVICE_ERROR, which would take the token out of service
// for a client's wrong signature. The public key, read from the token,
// decides: a signature Go's crypto rejects is the client's error; one it
// accepts, or a key it cannot read, leaves err as the token's failure.
// Only public data is involved.
func (t *Token) witnessVerify(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, alg SigningAlgorithm, digest, sig []byte, err error) error {
	pub, perr := t.readPublicKey(s, h)
	if perr != nil {
		return err
	}
	if valid, decided := verifyInSoftware(pub, alg, digest, sig); decided && !valid {
		return newError("verify", ErrInvalidSignature, fmt.Errorf("the public key does not verify it (the token answered %v)", err))
	}
	return err
}

// verifyInSoftware verifies sig as Verify's token would; decided is false
// for a key and algorithm it has no check for.
func verifyInSoftware(pub crypto.PublicKey, alg SigningAlgorithm, digest, sig []byte) (valid, decided bool) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case RSAPKCS1SHA256:
			return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil, true
		case RSAPSSSHA256:
			opts := &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}
			return rsa.VerifyPSS(k, crypto.SHA256, digest, sig, opts) == nil, true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case ECDSASHA256, ECDSASHA384, ECDSASHA512:
			return ecdsa.VerifyASN1(k, digest, sig), true
		}
	}
	return false, false
}

// checkKeyType refuses a key whose type does not fit alg before any
// operation starts. SoftHSM2 2.6.1 accepts C_SignInit and C_VerifyInit with
// any mechanism on any key type and then fails C_Sign with CKR_GENERAL_ERROR
// or, for CKM_RSA_PKCS_PSS on an EC key, crashes the process (SIGSEGV).
func (t *Token) checkKeyType(op string, s pkcs11.SessionHandle, h pkcs11.ObjectHandle, alg SigningAlgorithm, sp signParams) error {
	a, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return err
	}
	want, name := uint(pkcs11.CKK_RSA), "an RSA"
	if sp.ec {
		want, name = pkcs11.CKK_EC, "an EC"
	}
	if attrUint(a[0].Value) != want {
		return invalidInput(op, "%s needs %s key", alg, name)
	}
	return nil
}

// rawECDSA turns a DER signature into the r||s form PKCS#11 verifies,
// each half as wide as the curve's order.
func (t *Token) rawECDSA(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, der []byte) ([]byte, error) {
	var es ecdsaSig
	if rest, err := asn1.Unmarshal(der, &es); err != nil || len(rest) > 0 || es.R == nil || es.S == nil || es.R.Sign() <= 0 || es.S.Sign() <= 0 {
		return nil, newError("verify", ErrInvalidSignature, fmt.Errorf("not a DER ECDSA signature"))
	}
	a, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)})
	if err != nil {
		return nil, err
	}
	c, err := curveOf(a[0].Value)
	if err != nil {
		return nil, newError("verify", ErrInvalidInput, err)
	}
	size := c.size
	if es.R.BitLen() > size*8 || es.S.BitLen() > size*8 {
		return nil, newError("verify", ErrInvalidSignature, fmt.Errorf("signature values out of range"))
	}
	raw := make([]byte, 2*size)
	es.R.FillBytes(raw[:size])
	es.S.FillBytes(raw[size:])
	return raw, nil
}
