package hsm

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/miekg/pkcs11"
)

// ckmAESKeyWrapKWP is CKM_AES_KEY_WRAP_KWP (PKCS#11 v3, RFC 5649), which
// miekg/pkcs11 does not define.
const ckmAESKeyWrapKWP = 0x210B

type flagName struct {
	bit  uint
	name string
}

var slotFlagNames = []flagName{
	{pkcs11.CKF_TOKEN_PRESENT, "TOKEN_PRESENT"},
	{pkcs11.CKF_REMOVABLE_DEVICE, "REMOVABLE_DEVICE"},
	{pkcs11.CKF_HW_SLOT, "HW_SLOT"},
}

var tokenFlagNames = []flagName{
	{pkcs11.CKF_RNG, "RNG"},
	{pkcs11.CKF_WRITE_PROTECTED, "WRITE_PROTECTED"},
	{pkcs11.CKF_LOGIN_REQUIRED, "LOGIN_REQUIRED"},
	{pkcs11.CKF_USER_PIN_INITIALIZED, "USER_PIN_INITIALIZED"},
	{pkcs11.CKF_RESTORE_KEY_NOT_NEEDED, "RESTORE_KEY_NOT_NEEDED"},
	{pkcs11.CKF_CLOCK_ON_TOKEN, "CLOCK_ON_TOKEN"},
	{pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH, "PROTECTED_AUTHENTICATION_PATH"},
	{pkcs11.CKF_DUAL_CRYPTO_OPERATIONS, "DUAL_CRYPTO_OPERATIONS"},
	{pkcs11.CKF_TOKEN_INITIALIZED, "TOKEN_INITIALIZED"},
	{pkcs11.CKF_USER_PIN_COUNT_LOW, "USER_PIN_COUNT_LOW"},
	{pkcs11.CKF_USER_PIN_FINAL_TRY, "USER_PIN_FINAL_TRY"},
	{pkcs11.CKF_USER_PIN_LOCKED, "USER_PIN_LOCKED"},
	{pkcs11.CKF_USER_PIN_TO_BE_CHANGED, "USER_PIN_TO_BE_CHANGED"},
	{pkcs11.CKF_SO_PIN_COUNT_LOW, "SO_PIN_COUNT_LOW"},
	{pkcs11.CKF_SO_PIN_FINAL_TRY, "SO_PIN_FINAL_TRY"},
	{pkcs11.CKF_SO_PIN_LOCKED, "SO_PIN_LOCKED"},
	{pkcs11.CKF_SO_PIN_TO_BE_CHANGED, "SO_PIN_TO_BE_CHANGED"},
	{pkcs11.CKF_ERROR_STATE, "ERROR_STATE"},
	{pkcs11.CKF_SECONDARY_AUTHENTICATION, "SECONDARY_AUTHENTICATION"},
}

var mechanismFlagNames = []flagName{
	{pkcs11.CKF_HW, "HW"},
	{pkcs11.CKF_ENCRYPT, "ENCRYPT"},
	{pkcs11.CKF_DECRYPT, "DECRYPT"},
	{pkcs11.CKF_DIGEST, "DIGEST"},
	{pkcs11.CKF_SIGN, "SIGN"},
	{pkcs11.CKF_SIGN_RECOVER, "SIGN_RECOVER"},
	{pkcs11.CKF_VERIFY, "VERIFY"},
	{pkcs11.CKF_VERIFY_RECOVER, "VERIFY_RECOVER"},
	{pkcs11.CKF_GENERATE, "GENERATE"},
	{pkcs11.CKF_GENERATE_KEY_PAIR, "GENERATE_KEY_PAIR"},
	{pkcs11.CKF_WRAP, "WRAP"},
	{pkcs11.CKF_UNWRAP, "UNWRAP"},
	{pkcs11.CKF_DERIVE, "DERIVE"},
	{pkcs11.CKF_EC_F_P, "EC_F_P"},
	{pkcs11.CKF_EC_NAMEDCURVE, "EC_NAMEDCURVE"},
	{pkcs11.CKF_EC_UNCOMPRESS, "EC_UNCOMPRESS"},
	{pkcs11.CKF_EC_COMPRESS, "EC_COMPRESS"},
}

// flagNames names the set bits of flags; bits with no name are shown in
// hex, so that no flag a token sets goes unseen.
func flagNames(flags uint, names []flagName) []string {
	out := []string{}
	for _, n := range names {
		if flags&n.bit != 0 {
			out = append(out, n.name)
			flags &^= n.bit
		}
	}
	if flags != 0 {
		out = append(out, fmt.Sprintf("0x%x", flags))
	}
	return out
}

var mechanismNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN:  "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:               "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_X_509:              "CKM_RSA_X_509",
	pkcs11.CKM_RSA_PKCS_OAEP:          "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_RSA_PKCS_PSS:           "CKM_RSA_PKCS_PSS",
	pkcs11.CKM_SHA1_RSA_PKCS:          "CKM_SHA1_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS:        "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_SHA384_RSA_PKCS:        "CKM_SHA384_RSA_PKCS",
	pkcs11.CKM_SHA512_RSA_PKCS:        "CKM_SHA512_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS_PSS:    "CKM_SHA256_RSA_PKCS_PSS",
	pkcs11.CKM_SHA384_RSA_PKCS_PSS:    "CKM_SHA384_RSA_PKCS_PSS",
	pkcs11.CKM_SHA512_RSA_PKCS_PSS:    "CKM_SHA512_RSA_PKCS_PSS",
	pkcs11.CKM_SHA_1:                  "CKM_SHA_1",
	pkcs11.CKM_SHA256:                 "CKM_SHA256",
	pkcs11.CKM_SHA384:                 "CKM_SHA384",
	pkcs11.CKM_SHA512:                 "CKM_SHA512",
	pkcs11.CKM_SHA224_HMAC:            "CKM_SHA224_HMAC",
	pkcs11.CKM_SHA256_HMAC:            "CKM_SHA256_HMAC",
	pkcs11.CKM_SHA384_HMAC:            "CKM_SHA384_HMAC",
	pkcs11.CKM_SHA512_HMAC:            "CKM_SHA512_HMAC",
	pkcs11.CKM_GENERIC_SECRET_KEY_GEN: "CKM_GENERIC_SECRET_KEY_GEN",
	pkcs11.CKM_EC_KEY_PAIR_GEN:        "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDSA:                  "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA256:           "CKM_ECDSA_SHA256",
	pkcs11.CKM_ECDSA_SHA384:           "CKM_ECDSA_SHA384",
	pkcs11.CKM_ECDH1_DERIVE:           "CKM_ECDH1_DERIVE",
	pkcs11.CKM_AES_KEY_GEN:            "CKM_AES_KEY_GEN",
	pkcs11.CKM_AES_ECB:                "CKM_AES_ECB",
	pkcs11.CKM_AES_CBC:                "CKM_AES_CBC",
	pkcs11.CKM_AES_CBC_PAD:            "CKM_AES_CBC_PAD",
	pkcs11.CKM_AES_CTR:                "CKM_AES_CTR",
	pkcs11.CKM_AES_GCM:                "CKM_AES_GCM",
	pkcs11.CKM_AES_CMAC:               "CKM_AES_CMAC",
	pkcs11.CKM_AES_KEY_WRAP:           "CKM_AES_KEY_WRAP",
	pkcs11.CKM_AES_KEY_WRAP_PAD:       "CKM_AES_KEY_WRAP_PAD",
	pkcs11.CKM_RSA_AES_KEY_WRAP:       "CKM_RSA_AES_KEY_WRAP",
	ckmAESKeyWrapKWP:                  "CKM_AES_KEY_WRAP_KWP",
}

// MechanismName returns the CKM_ name of a mechanism, or its hex value for
// one this package has no name for.
func MechanismName(m uint) string {
	if n, ok := mechanismNames[m]; ok {
		return n
	}
	return fmt.Sprintf("0x%08X", m)
}

// unpad removes the padding of a PKCS#11 fixed-length string (a label,
// serial, manufacturer or description): blanks, as the standard says, and
// NULs, which some modules pad with instead.
func unpad(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r == 0 || unicode.IsSpace(r) })
}
