package esdk

import (
	"crypto"
	"crypto/elliptic"
	"fmt"
	"strconv"
	"strings"
)

// kdf is how a suite derives its encryption key from the data key.
type kdf int

const (
	identityKDF   kdf = iota // the data key is the encryption key
	hkdfSHA256               // HKDF-SHA256, no salt, info = suite ID || message ID
	hkdfSHA384               // HKDF-SHA384, likewise
	hkdfSHA512Key            // HKDF-SHA512, salt = message ID, key commitment
)

// Suite is an algorithm suite of the AWS Encryption SDK
// (framework/algorithm-suites.md): all of them encrypt with AES-GCM, a
// 12-byte IV and a 16-byte tag.
type Suite struct {
	ID uint16
	// Name is the suite's name in the AWS Encryption SDK for Python and
	// the aws-encryption-cli (--algorithm).
	Name string
	// Version is the message format version that carries the suite: 1 for
	// the suites without key commitment, 2 for those with it.
	Version byte
	// KeyLen is the length of the data key and of the encryption key.
	KeyLen int
	kdf    kdf
	// curve and hash sign the message when curve is not nil.
	curve elliptic.Curve
	hash  crypto.Hash
}

// Committing reports whether the suite commits to its data key: a message
// of such a suite decrypts to one plaintext only, whichever data key a
// writer put in its header.
func (s Suite) Committing() bool { return s.kdf == hkdfSHA512Key }

// Signed reports whether messages of the suite end with an ECDSA signature
// over the whole message, by a key only the writer held.
func (s Suite) Signed() bool { return s.curve != nil }

// String is the suite's name and ID.
func (s Suite) String() string { return fmt.Sprintf("%s (0x%04X)", s.Name, s.ID) }

// The suites, by ID. Only the two committing ones are written; the others
// are read under CommitmentAllowDecrypt.
var suites = []Suite{
	{0x0578, "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384", 2, 32, hkdfSHA512Key, elliptic.P384(), crypto.SHA384},
	{0x0478, "AES_256_GCM_HKDF_SHA512_COMMIT_KEY", 2, 32, hkdfSHA512Key, nil, 0},
	{0x0378, "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", 1, 32, hkdfSHA384, elliptic.P384(), crypto.SHA384},
	{0x0346, "AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", 1, 24, hkdfSHA384, elliptic.P384(), crypto.SHA384},
	{0x0214, "AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256", 1, 16, hkdfSHA256, elliptic.P256(), crypto.SHA256},
	{0x0178, "AES_256_GCM_IV12_TAG16_HKDF_SHA256", 1, 32, hkdfSHA256, nil, 0},
	{0x0146, "AES_192_GCM_IV12_TAG16_HKDF_SHA256", 1, 24, hkdfSHA256, nil, 0},
	{0x0114, "AES_128_GCM_IV12_TAG16_HKDF_SHA256", 1, 16, hkdfSHA256, nil, 0},
	{0x0078, "AES_256_GCM_IV12_TAG16", 1, 32, identityKDF, nil, 0},
	{0x0046, "AES_192_GCM_IV12_TAG16", 1, 24, identityKDF, nil, 0},
	{0x0014, "AES_128_GCM_IV12_TAG16", 1, 16, identityKDF, nil, 0},
}

// The suites Encrypt writes.
var (
	// SuiteSigned is the AWS Encryption SDKs' default: key commitment and
	// an ECDSA P-384 signature.
	SuiteSigned = suites[0]
	// SuiteUnsigned commits to its key and has no signature: for readers
	// that want none (anyone who can decrypt it could also have written it).
	SuiteUnsigned = suites[1]
)

// SuiteByID returns the suite of id.
func SuiteByID(id uint16) (Suite, bool) {
	for _, s := range suites {
		if s.ID == id {
			return s, true
		}
	}
	return Suite{}, false
}

// ParseSuite returns the suite a user names, in any case: its ID in hex
// ("0x0578"), its name in the AWS Encryption SDK for Python and the
// aws-encryption-cli (AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384), the
// same with the Java and .NET SDKs' "ALG_" prefix, or the JavaScript SDK's
// (ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384).
func ParseSuite(name string) (Suite, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if hex, ok := strings.CutPrefix(n, "0X"); ok {
		if id, err := strconv.ParseUint(hex, 16, 16); err == nil {
			if s, ok := SuiteByID(uint16(id)); ok {
				return s, nil
			}
		}
	}
	for _, s := range suites {
		if suiteKey(n) == suiteKey(s.Name) {
			return s, nil
		}
	}
	return Suite{}, fmt.Errorf("esdk: unknown algorithm suite %q; give %s or %s", name, SuiteSigned.Name, SuiteUnsigned.Name)
}

// suiteKey is a suite name without what distinguishes the SDKs' spellings
// of it: the "ALG_" prefix, "AES256" for "AES_256", and the IV and tag
// lengths (12 and 16 in every suite), which only some names spell out.
func suiteKey(upper string) string {
	k := strings.TrimPrefix(upper, "ALG_")
	for _, bits := range []string{"128", "192", "256"} {
		k = strings.Replace(k, "AES"+bits, "AES_"+bits, 1)
	}
	return strings.Replace(k, "_IV12_TAG16", "", 1)
}

// CommitmentPolicy says which suites Decrypt accepts, with the AWS
// Encryption SDKs' names. Encrypt always writes a committing suite.
type CommitmentPolicy int

const (
	// RequireEncryptRequireDecrypt (the default) decrypts only messages
	// whose suite commits to its key.
	RequireEncryptRequireDecrypt CommitmentPolicy = iota
	// RequireEncryptAllowDecrypt also decrypts messages of the older
	// suites without key commitment (message format version 1), to read
	// or migrate old files.
	RequireEncryptAllowDecrypt
)

// ParseCommitmentPolicy returns the policy of its SDK name, in any case
// and with dashes or underscores.
func ParseCommitmentPolicy(name string) (CommitmentPolicy, error) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "_", "-") {
	case "require-encrypt-require-decrypt":
		return RequireEncryptRequireDecrypt, nil
	case "require-encrypt-allow-decrypt":
		return RequireEncryptAllowDecrypt, nil
	}
	return 0, fmt.Errorf("esdk: unknown commitment policy %q; give require-encrypt-require-decrypt or require-encrypt-allow-decrypt", name)
}

// String is the policy's SDK name.
func (p CommitmentPolicy) String() string {
	if p == RequireEncryptAllowDecrypt {
		return "require-encrypt-allow-decrypt"
	}
	return "require-encrypt-require-decrypt"
}
