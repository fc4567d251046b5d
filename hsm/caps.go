package hsm

import (
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// Capabilities says which of the mechanisms hsmkms uses the token offers
// with the flags it needs.
type Capabilities struct {
	AESKeyGen     bool `json:"aes_key_gen"`     // CKM_AES_KEY_GEN: master keys
	AESGCM        bool `json:"aes_gcm"`         // CKM_AES_GCM encrypt+decrypt: aes-gcm data keys, Encrypt
	AESKeyWrap    bool `json:"aes_key_wrap"`    // CKM_AES_KEY_WRAP wrap+unwrap: aes-kw data keys
	GenericKeyGen bool `json:"generic_key_gen"` // CKM_GENERIC_SECRET_KEY_GEN: aes-kw data keys
	RNG           bool `json:"rng"`             // the token has a random number generator
	ECKeyGen      bool `json:"ec_key_gen"`      // CKM_EC_KEY_PAIR_GEN
	ECDSA         bool `json:"ecdsa"`           // CKM_ECDSA sign+verify
	RSAKeyGen     bool `json:"rsa_key_gen"`     // CKM_RSA_PKCS_KEY_PAIR_GEN
	RSAPKCS       bool `json:"rsa_pkcs"`        // CKM_RSA_PKCS sign+verify
	RSAPSS        bool `json:"rsa_pss"`         // CKM_RSA_PKCS_PSS sign+verify
}

// need is one mechanism and the flags an operation needs of it.
type need struct {
	mech  uint
	flags uint
	what  string
	set   func(*Capabilities)
	// required needs make Open fail: hsmkms cannot work without them.
	required bool
}

var needs = []need{
	{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKF_GENERATE, "generate AES master keys", func(c *Capabilities) { c.AESKeyGen = true }, true},
	{pkcs11.CKM_AES_GCM, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT, "seal data keys and encrypt data (encrypt and decrypt)", func(c *Capabilities) { c.AESGCM = true }, true},
	{pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKF_WRAP | pkcs11.CKF_UNWRAP, "wrap data keys of aes-kw keys", func(c *Capabilities) { c.AESKeyWrap = true }, false},
	{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE, "generate data keys of aes-kw keys", func(c *Capabilities) { c.GenericKeyGen = true }, false},
	{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR, "generate EC key pairs", func(c *Capabilities) { c.ECKeyGen = true }, false},
	{pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "ECDSA signing", func(c *Capabilities) { c.ECDSA = true }, false},
	{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR, "generate RSA key pairs", func(c *Capabilities) { c.RSAKeyGen = true }, false},
	{pkcs11.CKM_RSA_PKCS, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "RSA PKCS #1 v1.5 signing", func(c *Capabilities) { c.RSAPKCS = true }, false},
	{pkcs11.CKM_RSA_PKCS_PSS, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY, "RSA PSS signing", func(c *Capabilities) { c.RSAPSS = true }, false},
}

// probeCapabilities reads the token's mechanisms once, at open, and fails
// naming every required mechanism the token lacks.
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
	var missing []string
	for _, n := range needs {
		if flags, ok := have[n.mech]; ok && flags&n.flags == n.flags {
			n.set(&caps)
		} else if n.required {
			missing = append(missing, fmt.Sprintf("%s (%s)", MechanismName(n.mech), n.what))
		}
	}
	ti, err := m.p.GetTokenInfo(slot)
	if err != nil {
		return Capabilities{}, fmt.Errorf("hsm: C_GetTokenInfo: %w", err)
	}
	caps.RNG = ti.Flags&pkcs11.CKF_RNG != 0
	if !caps.RNG {
		missing = append(missing, "a random number generator (CKF_RNG)")
	}
	if len(missing) > 0 {
		return caps, newError("probe mechanisms", ErrMechanismUnsupported,
			fmt.Errorf("the token lacks %s", strings.Join(missing, "; ")))
	}
	return caps, nil
}

// requireMechanism fails with ErrMechanismUnsupported naming mech when the
// token lacks it.
func requireMechanism(op string, ok bool, mech uint) error {
	if ok {
		return nil
	}
	return newError(op, ErrMechanismUnsupported, fmt.Errorf("the token lacks %s", MechanismName(mech)))
}
