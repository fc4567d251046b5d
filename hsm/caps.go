package hsm

import (
	"bytes"
	"encoding/asn1"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// Capabilities says which of the mechanisms hsmkms uses the token offers
// with the flags it needs.
type Capabilities struct {
	AESKeyGen     bool `json:"aes_key_gen"`      // CKM_AES_KEY_GEN: master keys
	AESGCM        bool `json:"aes_gcm"`          // CKM_AES_GCM encrypt+decrypt: aes-gcm data keys, Encrypt
	AESKeyWrap    bool `json:"aes_key_wrap"`     // CKM_AES_KEY_WRAP wrap+unwrap: aes-kw data keys
	GenericKeyGen bool `json:"generic_key_gen"`  // CKM_GENERIC_SECRET_KEY_GEN: aes-kw data keys
	RNG           bool `json:"rng"`              // the token has a random number generator
	ECKeyGen      bool `json:"ec_key_gen"`       // CKM_EC_KEY_PAIR_GEN
	ECDSA         bool `json:"ecdsa"`            // CKM_ECDSA sign+verify
	RSAKeyGen     bool `json:"rsa_key_gen"`      // CKM_RSA_PKCS_KEY_PAIR_GEN
	RSAPKCS       bool `json:"rsa_pkcs"`         // CKM_RSA_PKCS sign+verify
	RSAPSS        bool `json:"rsa_pss"`          // CKM_RSA_PKCS_PSS sign+verify
	AESCBCPad     bool `json:"aes_cbc_pad"`      // CKM_AES_CBC_PAD encrypt+decrypt: the portable mechanism
	HMACSHA256    bool `json:"hmac_sha256"`      // CKM_SHA256_HMAC sign+verify: the portable mechanism's MAC, HMAC_256 keys
	HMACSHA224    bool `json:"hmac_sha224"`      // CKM_SHA224_HMAC sign+verify: HMAC_224 keys
	HMACSHA384    bool `json:"hmac_sha384"`      // CKM_SHA384_HMAC sign+verify: HMAC_384 keys
	HMACSHA512    bool `json:"hmac_sha512"`      // CKM_SHA512_HMAC sign+verify: HMAC_512 keys
	RSAOAEP       bool `json:"rsa_oaep"`         // CKM_RSA_PKCS_OAEP encrypt+decrypt: RSA encryption keys
	RSAX509       bool `json:"rsa_x509"`         // CKM_RSA_X_509 decrypt: RSAES_OAEP_SHA_256 where OAEP takes only SHA-1
	RSAAESKeyWrap bool `json:"rsa_aes_key_wrap"` // CKM_RSA_AES_KEY_WRAP unwrap: RSA_AES key import in one call
	AESKeyWrapPad bool `json:"aes_key_wrap_pad"` // CKM_AES_KEY_WRAP_PAD wrap+unwrap: RSA_AES key import in two calls, imported HMAC keys' length
	// Curves lists the named curves, beyond P-256 and P-384, the token
	// made a key pair on in the self-test: "P-521", "secp256k1".
	Curves []string `json:"curves,omitempty"`
	// GCMFault says why a listed CKM_AES_GCM is not used: its self-test
	// through C_Encrypt and C_Decrypt failed (AESGCM is then false).
	GCMFault string `json:"aes_gcm_fault,omitempty"`
	// KWPFault says why a listed CKM_AES_KEY_WRAP_PAD is not used: it
	// is not RFC 5649 (AESKeyWrapPad is then false).
	KWPFault string `json:"aes_key_wrap_pad_fault,omitempty"`
	// ExtractFault says how the token let a sensitive, unextractable key
	// out in the self-test at open ("" when it refused every attempt).
	// hsmkms serve refuses such a token unless told it is for development.
	ExtractFault string `json:"extract_fault,omitempty"`
	// GenericKeyMax is the longest generic secret, in bytes, the token
	// made in the self-test (of 16 to 1024): the longest aes-kw data key.
	GenericKeyMax int `json:"generic_key_max,omitempty"`
	// CopyableRefused is set once the token refused CKA_COPYABLE in a key
	// template: keys are made without it from then on.
	CopyableRefused bool `json:"copyable_refused,omitempty"`
	// OAEPSHA1Only is set once the token refused CKM_RSA_PKCS_OAEP with
	// SHA-256: RSAES_OAEP_SHA_256 then decrypts with CKM_RSA_X_509.
	OAEPSHA1Only bool `json:"oaep_sha1_only,omitempty"`
}

// need is one mechanism and the flags an operation needs of it.
type need struct {
	mech  uint
	flags uint
	what  string
	set   func(*Capabilities)
}

var needs = []need{
	{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKF_GENERATE, "generate AES master keys", func(c *Capabilities) { c.AESKeyGen = true }},
	{pkcs11.CKM_AES_GCM, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT, "seal data keys and encrypt data (encrypt and decrypt)", func(c *Capabilities) { c.AESGCM = true }},
	{pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKF_WRAP | pkcs11.CKF_UNWRAP, "wrap data keys of aes-kw keys", func(c *Capabilities) { c.AESKeyWrap = true }},
	{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE, "generate data keys of aes-kw keys", func(c *Capabilities) { c.GenericKeyGen = true }},
	{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR, "generate EC key pairs", func(c *Capabilities) { c.ECKeyGen = true }},
	{pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "ECDSA signing", func(c *Capabilities) { c.ECDSA = true }},
	{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR, "generate RSA key pairs", func(c *Capabilities) { c.RSAKeyGen = true }},
	{pkcs11.CKM_RSA_PKCS, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "RSA PKCS #1 v1.5 signing", func(c *Capabilities) { c.RSAPKCS = true }},
	{pkcs11.CKM_RSA_PKCS_PSS, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "RSA PSS signing", func(c *Capabilities) { c.RSAPSS = true }},
	{pkcs11.CKM_AES_CBC_PAD, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT, "AES-CBC encryption", func(c *Capabilities) { c.AESCBCPad = true }},
	{pkcs11.CKM_SHA256_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "HMAC-SHA-256", func(c *Capabilities) { c.HMACSHA256 = true }},
	{pkcs11.CKM_SHA224_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "HMAC-SHA-224", func(c *Capabilities) { c.HMACSHA224 = true }},
	{pkcs11.CKM_SHA384_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "HMAC-SHA-384", func(c *Capabilities) { c.HMACSHA384 = true }},
	{pkcs11.CKM_SHA512_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "HMAC-SHA-512", func(c *Capabilities) { c.HMACSHA512 = true }},
	{pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT, "RSA OAEP encryption", func(c *Capabilities) { c.RSAOAEP = true }},
	{pkcs11.CKM_RSA_X_509, pkcs11.CKF_DECRYPT, "raw RSA decryption", func(c *Capabilities) { c.RSAX509 = true }},
	{pkcs11.CKM_RSA_AES_KEY_WRAP, pkcs11.CKF_UNWRAP, "RSA-AES key unwrap", func(c *Capabilities) { c.RSAAESKeyWrap = true }},
	{pkcs11.CKM_AES_KEY_WRAP_PAD, pkcs11.CKF_WRAP | pkcs11.CKF_UNWRAP, "AES key wrap with padding", func(c *Capabilities) { c.AESKeyWrapPad = true }},
}

// probeCapabilities reads the token's mechanisms once, at open. It fails
// only when the token cannot be asked: what the token lacks is for
// Serviceable and Features to say, so that diagnostics work on any token
// that logs in.
func probeCapabilities(m *Module, slot uint) (Capabilities, error) {
	mechs, err := m.Mechanisms(slot)
	if err != nil {
		return Capabilities{}, err
	}
	have := make(map[uint]uint, len(mechs))
	for _, mech := range mechs {
		have[mech.Type] = mech.flags
	}
	var caps Capabilities
	for _, n := range needs {
		if flags, ok := have[n.mech]; ok && flags&n.flags == n.flags {
			n.set(&caps)
		}
	}
	ti, err := getTokenInfo(m.p, slot)
	if err != nil {
		return Capabilities{}, fmt.Errorf("hsm: C_GetTokenInfo: %w", err)
	}
	caps.RNG = ti.Flags&pkcs11.CKF_RNG != 0
	return caps, nil
}

// Feature is something hsmkms does with a token, and whether this token
// lets it.
type Feature struct {
	// Name is short: master-keys, unextractable-keys (the token keeps
	// them in), rng, aes-gcm (data keys and Encrypt),
	// aes-kw, aes-cbc-hmac (data keys on tokens without AES-GCM), ecdsa,
	// rsa, rsa-pss (signing keys).
	Name      string `json:"name"`
	Supported bool   `json:"supported"`
	// Lacks names what the token lacks for it ("" when supported).
	Lacks string `json:"lacks,omitempty"`
	// Required features must be there for hsmkms to serve.
	Required bool `json:"required"`
}

// Features lists what hsmkms does with a token and whether this one lets
// it, naming what it lacks.
func (c Capabilities) Features() []Feature {
	type part struct {
		ok   bool
		name string
	}
	feature := func(name string, required bool, parts ...part) Feature {
		f := Feature{Name: name, Required: required, Supported: true}
		var lacks []string
		for _, p := range parts {
			if !p.ok {
				f.Supported = false
				lacks = append(lacks, p.name)
			}
		}
		f.Lacks = strings.Join(lacks, ", ")
		return f
	}
	return []Feature{
		feature("master-keys", true, part{c.AESKeyGen, MechanismName(pkcs11.CKM_AES_KEY_GEN)}),
		feature("unextractable-keys", true, part{c.ExtractFault == "", "keys that stay unextractable (" + c.ExtractFault + ")"}),
		feature("rng", true, part{c.RNG, "a random number generator (CKF_RNG)"}),
		feature("aes-gcm", false, part{c.AESGCM, c.gcmLack()}),
		feature("aes-kw", false, part{c.AESKeyWrap, MechanismName(pkcs11.CKM_AES_KEY_WRAP) + " wrap and unwrap"},
			part{c.GenericKeyGen, MechanismName(pkcs11.CKM_GENERIC_SECRET_KEY_GEN)}),
		feature("aes-cbc-hmac", false,
			part{c.AESCBCPad, MechanismName(pkcs11.CKM_AES_CBC_PAD) + " encrypt and decrypt"},
			part{c.HMACSHA256, MechanismName(pkcs11.CKM_SHA256_HMAC) + " sign and verify"},
			part{c.GenericKeyGen, MechanismName(pkcs11.CKM_GENERIC_SECRET_KEY_GEN)}),
		feature("ecdsa", false, part{c.ECKeyGen, MechanismName(pkcs11.CKM_EC_KEY_PAIR_GEN)},
			part{c.ECDSA, MechanismName(pkcs11.CKM_ECDSA) + " sign and verify"}),
		feature("rsa", false, part{c.RSAKeyGen, MechanismName(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN)},
			part{c.RSAPKCS, MechanismName(pkcs11.CKM_RSA_PKCS) + " sign and verify"}),
		feature("rsa-pss", false, part{c.RSAPSS, MechanismName(pkcs11.CKM_RSA_PKCS_PSS) + " sign and verify"}),
		feature("rsa-oaep", false, part{c.RSAKeyGen, MechanismName(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN)},
			part{c.RSAOAEP, MechanismName(pkcs11.CKM_RSA_PKCS_OAEP) + " encrypt and decrypt"}),
		feature("hmac", false, part{c.GenericKeyGen, MechanismName(pkcs11.CKM_GENERIC_SECRET_KEY_GEN)},
			part{c.HMACSHA224, MechanismName(pkcs11.CKM_SHA224_HMAC) + " sign and verify"},
			part{c.HMACSHA256, MechanismName(pkcs11.CKM_SHA256_HMAC) + " sign and verify"},
			part{c.HMACSHA384, MechanismName(pkcs11.CKM_SHA384_HMAC) + " sign and verify"},
			part{c.HMACSHA512, MechanismName(pkcs11.CKM_SHA512_HMAC) + " sign and verify"}),
		c.curveFeature("ecdsa-p521", "P-521"),
		c.curveFeature("ecdsa-secp256k1", "secp256k1"),
	}
}

// curveFeature is ECDSA signing on an extra curve: the self-test made a
// key pair on it.
func (c Capabilities) curveFeature(name, curve string) Feature {
	f := Feature{Name: name, Supported: true}
	var lacks []string
	if !c.ECKeyGen {
		lacks = append(lacks, MechanismName(pkcs11.CKM_EC_KEY_PAIR_GEN))
	}
	if !c.ECDSA {
		lacks = append(lacks, MechanismName(pkcs11.CKM_ECDSA)+" sign and verify")
	}
	if len(lacks) == 0 && !slices.Contains(c.Curves, curve) {
		lacks = append(lacks, "EC key pairs on "+curve)
	}
	f.Supported = len(lacks) == 0
	f.Lacks = strings.Join(lacks, ", ")
	return f
}

// gcmLack names what the aes-gcm feature lacks: the mechanism, or a
// working one.
func (c Capabilities) gcmLack() string {
	if c.GCMFault != "" {
		return MechanismName(pkcs11.CKM_AES_GCM) + " that works through C_Encrypt (listed, but " + c.GCMFault + ")"
	}
	return MechanismName(pkcs11.CKM_AES_GCM) + " encrypt and decrypt"
}

// selfTest tries, on a session of its own, what the mechanism list cannot
// tell: whether the token keeps a key unextractable, whether its AES-GCM
// works through C_Encrypt, and how long a generic secret it makes. A token
// whose AES-GCM fails is treated as one without AES-GCM; one that lets an
// unextractable key out gets ExtractFault, and hsmkms serve refuses it.
func (t *Token) selfTest() error {
	s, err := t.p.OpenSession(t.slot, sessionFlags)
	if err != nil {
		return newError("self-test", ErrUnavailable, fmt.Errorf("C_OpenSession: %w", err))
	}
	// Closing the session ends whatever operation a failure left active,
	// and destroys the session keys.
	defer t.p.CloseSession(s)
	t.caps.Curves = t.selfTestCurves(s)
	if !t.caps.AESKeyGen {
		return nil
	}
	key, err := t.p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, selfTestKeyTemplate(
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
	))
	if err != nil {
		// A token that makes no AES key fails its first master key
		// with its own error; Serviceable names a missing mechanism.
		t.log.Warn("self-test: no session AES key could be made", "error", err)
		return nil
	}
	if fault := t.selfTestExtract(s, key); fault != "" {
		t.caps.ExtractFault = fault
		t.log.Error("the token lets an unextractable key out: master keys on it are not protected", "fault", fault)
	}
	if t.caps.AESGCM {
		if fault := t.selfTestGCM(s, key); fault != "" {
			t.caps.AESGCM, t.caps.GCMFault = false, fault
			t.log.Warn("the token lists CKM_AES_GCM but it fails a self-test: keys use aes-cbc-hmac", "fault", fault)
		}
	}
	if t.caps.GenericKeyGen {
		t.caps.GenericKeyMax = t.selfTestGenericMax(s)
	}
	if t.caps.AESKeyWrapPad {
		if fault := t.selfTestKWP(s); fault != "" {
			t.caps.AESKeyWrapPad, t.caps.KWPFault = false, fault
			t.log.Warn("the token's CKM_AES_KEY_WRAP_PAD is not RFC 5649: RSA_AES key import needs CKM_RSA_AES_KEY_WRAP", "fault", fault)
		}
	}
	return nil
}

// The RFC 5649 test vector (section 6, 20 octets of key data).
var (
	kwpVectorKEK     = []byte{0x58, 0x40, 0xdf, 0x6e, 0x29, 0xb0, 0x2a, 0xf1, 0xab, 0x49, 0x3b, 0x70, 0x5b, 0xf1, 0x6e, 0xa1, 0xae, 0x83, 0x38, 0xf4, 0xdc, 0xc1, 0x76, 0xa8}
	kwpVectorKey     = []byte{0xc3, 0x7b, 0x7e, 0x64, 0x92, 0x58, 0x43, 0x40, 0xbe, 0xd1, 0x22, 0x07, 0x80, 0x89, 0x41, 0x15, 0x50, 0x68, 0xf7, 0x38}
	kwpVectorWrapped = []byte{0x13, 0x8b, 0xde, 0xaa, 0x9b, 0x8f, 0xa7, 0xfc, 0x61, 0xf9, 0x77, 0x42, 0xe7, 0x22, 0x48, 0xee,
		0x5a, 0xe6, 0xae, 0x53, 0x60, 0xd1, 0xae, 0x6a, 0x5f, 0x54, 0xf3, 0x73, 0xfa, 0x54, 0x3b, 0x6a}
)

// selfTestKWP unwraps RFC 5649's test vector under its KEK with
// CKM_AES_KEY_WRAP_PAD, as session objects, and returns what differs from
// the RFC's key ("" when nothing). Import unwraps what clients (openssl's
// id-aes256-wrap-pad) wrap; NSS's softoken pads with PKCS #7 and wraps
// with RFC 3394 under the same mechanism number. (SoftHSM2 2.6.1 unwraps
// the RFC's vector, though its own C_WrapKey zero-pads the key first and
// gives another blob.)
func (t *Token) selfTestKWP(s pkcs11.SessionHandle) string {
	kek, err := t.p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, kwpVectorKEK),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
	})
	if err != nil {
		return "C_CreateObject of the test KEK: " + err.Error()
	}
	defer t.destroySessionKey(s, kek)
	key, err := t.p.UnwrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, kek, kwpVectorWrapped,
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		})
	if err != nil {
		return "C_UnwrapKey of the RFC 5649 test vector: " + err.Error()
	}
	defer t.destroySessionKey(s, key)
	a, err := t.p.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return "reading the unwrapped test key: " + err.Error()
	}
	if !bytes.Equal(a[0].Value, kwpVectorKey) {
		return fmt.Sprintf("C_UnwrapKey of the RFC 5649 test vector gave %x, not %x", a[0].Value, kwpVectorKey)
	}
	return ""
}

// selfTestCurves returns the extra curves (extraCurves) the token makes a
// session key pair on. Mechanism info cannot tell: it gives only a range
// of key sizes, and SoftHSM2's depends on its OpenSSL build.
func (t *Token) selfTestCurves(s pkcs11.SessionHandle) []string {
	if !t.caps.ECKeyGen || !t.caps.ECDSA {
		return nil
	}
	var out []string
	for _, c := range extraCurves {
		params, _ := asn1.Marshal(c.oid)
		pub, priv, err := t.p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
				pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
				pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
			},
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			})
		if err != nil {
			continue
		}
		t.destroySessionKey(s, pub)
		t.destroySessionKey(s, priv)
		out = append(out, c.name)
	}
	return out
}

// selfTestKeyTemplate is a 32-byte AES session key with attrs.
func selfTestKeyTemplate(attrs ...*pkcs11.Attribute) []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
	}, attrs...)
}

// selfTestExtract makes a session key the way master keys are made
// (sensitive, unextractable) and tries to get it out: wrap it under
// wrapper with each wrapping mechanism the token lists, and turn
// CKA_EXTRACTABLE back on. It returns what succeeded, or "". PKCS#11 says
// a token must refuse all of it; NSS's softoken (3.87) wraps such a key
// with CKM_AES_KEY_WRAP or CKM_AES_CBC_PAD (it refuses the rest).
func (t *Token) selfTestExtract(s pkcs11.SessionHandle, wrapper pkcs11.ObjectHandle) string {
	key, err := t.p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, selfTestKeyTemplate(
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	))
	if err != nil {
		t.log.Warn("self-test: no unextractable session AES key could be made", "error", err)
		return ""
	}
	var faults []string
	wraps := []struct {
		ok   bool
		mech *pkcs11.Mechanism
	}{
		{t.caps.AESKeyWrap, pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)},
		{t.caps.AESCBCPad, pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, make([]byte, cbcBlock))},
	}
	for _, w := range wraps {
		if !w.ok {
			continue
		}
		if _, err := t.p.WrapKey(s, []*pkcs11.Mechanism{w.mech}, wrapper, key); err == nil {
			faults = append(faults, "C_WrapKey with "+MechanismName(w.mech.Mechanism)+" wrapped a key whose CKA_EXTRACTABLE is false")
		}
	}
	if _, err := t.p.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil {
		faults = append(faults, "C_GetAttributeValue read CKA_VALUE of a sensitive key")
	}
	if err := t.p.SetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}); err == nil {
		faults = append(faults, "C_SetAttributeValue set CKA_EXTRACTABLE back to true")
	}
	return strings.Join(faults, "; ")
}

// genericSizes are the data key lengths WrapDataKey may be asked for that
// selfTestGenericMax tries, longest first.
var genericSizes = []int{MaxDataKey, 512, 256, 128, 64, 32, 16}

// selfTestGenericMax returns the longest of genericSizes the token makes
// as a generic secret session key, or 0. Mechanism info cannot tell it:
// NSS's softoken lists CKM_GENERIC_SECRET_KEY_GEN with a maximum of 32 yet
// makes 256 bytes, and refuses 512 with CKR_TEMPLATE_INCONSISTENT.
func (t *Token) selfTestGenericMax(s pkcs11.SessionHandle) int {
	for _, n := range genericSizes {
		h, err := t.p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, dataKeyTemplate(n))
		if err == nil {
			t.destroySessionKey(s, h)
			return n
		}
	}
	return 0
}

// selfTestGCM seals and opens 32 bytes under key with CKM_AES_GCM and
// returns why that failed, or "". Tokens list mechanisms their C_Encrypt cannot do: NSS's softoken
// lists AES-GCM but answers C_Encrypt's length query with 0, so the call
// that follows fails with CKR_BUFFER_TOO_SMALL. Such a token gets the
// portable mechanism instead of failing every seal.
func (t *Token) selfTestGCM(s pkcs11.SessionHandle, key pkcs11.ObjectHandle) string {
	plain := make([]byte, 32)
	iv, err := NewIV()
	if err != nil {
		return err.Error()
	}
	aad := []byte("hsmkms aes-gcm self-test")
	sealed, err := t.gcmEncrypt(s, key, iv, aad, plain)
	if err != nil {
		return "its C_Encrypt failed: " + err.Error()
	}
	if len(sealed) != len(plain)+TagSize {
		return fmt.Sprintf("its C_Encrypt of %d bytes gave %d, not %d", len(plain), len(sealed), len(plain)+TagSize)
	}
	params := pkcs11.NewGCMParams(iv, aad, TagSize*8)
	defer params.Free()
	if err := t.p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return "its C_DecryptInit failed: " + err.Error()
	}
	opened, err := t.p.Decrypt(s, sealed)
	if err != nil {
		return "its C_Decrypt failed: " + err.Error()
	}
	if string(opened) != string(plain) {
		return "its C_Decrypt did not give back what C_Encrypt sealed"
	}
	return ""
}

// Serviceable returns nil when hsmkms can serve from the token: it makes
// master keys and random numbers, and protects data keys with aes-gcm or,
// failing that, the portable aes-cbc-hmac. Otherwise it returns an
// ErrMechanismUnsupported error naming every mechanism it lacks and what
// each is for.
func (c Capabilities) Serviceable() error {
	var missing []string
	byName := map[string]Feature{}
	for _, f := range c.Features() {
		byName[f.Name] = f
		if f.Required && !f.Supported {
			missing = append(missing, fmt.Sprintf("%s (%s)", f.Lacks, f.Name))
		}
	}
	if gcm, portable := byName["aes-gcm"], byName["aes-cbc-hmac"]; !gcm.Supported && !portable.Supported {
		missing = append(missing, fmt.Sprintf("%s (aes-gcm), or %s (aes-cbc-hmac)", gcm.Lacks, portable.Lacks))
	}
	if len(missing) == 0 {
		return nil
	}
	return newError("probe mechanisms", ErrMechanismUnsupported,
		fmt.Errorf("the token lacks %s", strings.Join(missing, "; ")))
}

// requireMechanism fails with ErrMechanismUnsupported naming mech when the
// token lacks it.
func requireMechanism(op string, ok bool, mech uint) error {
	if ok {
		return nil
	}
	return newError(op, ErrMechanismUnsupported, fmt.Errorf("the token lacks %s", MechanismName(mech)))
}
