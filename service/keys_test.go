package service

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// Helpers of the key service tests carry a "ks" prefix so that they never
// collide with other test files of the package.

const ksPrefix = "arn:aws:kms:us-east-1:000000000000:"

func ksARN(id string) string        { return ksPrefix + "key/" + id }
func ksAliasARN(name string) string { return ksPrefix + name }

// ksWantErr fails t unless err matches want (no error when want is nil) and,
// when msg is not empty, carries exactly that message.
func ksWantErr(t testing.TB, what string, err error, want *Error, msg string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s: unexpected error: %v", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want a %s", what, err, want.Code)
		return
	}
	var e *Error
	if errors.As(err, &e) && msg != "" && e.Message != msg {
		t.Errorf("%s: message\n %q, want\n %q", what, e.Message, msg)
	}
}

// lengthMsg is AWS's ValidationException message for a string at member
// longer than max characters, the value not echoed.
func lengthMsg(member string, max int) string {
	return fmt.Sprintf("1 validation error detected: Value at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", member, max)
}

// ksMust fails the test at once on err.
func ksMust(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// ksDescribe returns a key's metadata as the admin sees it.
func ksDescribe(t testing.TB, f *fixture, ident string) KeyMetadata {
	t.Helper()
	out, err := f.svc.DescribeKey(admin(t), KeyIDInput{KeyId: ident})
	ksMust(t, "DescribeKey "+ident, err)
	return out.KeyMetadata
}

// ksStoreKey reads a key record, tombstones included.
func ksStoreKey(t testing.TB, f *fixture, id string) store.Key {
	t.Helper()
	var k store.Key
	ksMust(t, "store key", f.svc.store.View(t.Context(), func(tx store.Tx) (err error) {
		k, err = tx.Key(id)
		return err
	}))
	return k
}

// ksVersions reads a key's versions from the store.
func ksVersions(t testing.TB, f *fixture, id string) []store.Version {
	t.Helper()
	var vs []store.Version
	ksMust(t, "store versions", f.svc.store.View(t.Context(), func(tx store.Tx) (err error) {
		vs, err = tx.Versions(id)
		return err
	}))
	return vs
}

// ksOnToken reports whether the token holds the object of every version
// (all true) or of none (all false); a mix fails the test.
func ksOnToken(t testing.TB, f *fixture, id string) bool {
	t.Helper()
	vs := ksVersions(t, f, id)
	if len(vs) == 0 {
		t.Fatalf("key %s has no versions", id)
	}
	var seen []bool
	for _, v := range vs {
		has, err := f.tok.HasKey(t.Context(), v.ObjectID)
		ksMust(t, "HasKey", err)
		seen = append(seen, has)
	}
	if slices.Contains(seen, !seen[0]) {
		t.Fatalf("key %s: token objects of its versions: %v", id, seen)
	}
	return seen[0]
}

// ksEncrypt encrypts pt under ident as the admin.
func ksEncrypt(t testing.TB, f *fixture, ident, pt string) []byte {
	t.Helper()
	out, err := f.svc.Encrypt(admin(t), EncryptInput{KeyId: ident, Plaintext: []byte(pt)})
	ksMust(t, "Encrypt", err)
	return out.CiphertextBlob
}

// ksInjectKeys writes key records in the given states straight into the
// store, with no token material: what a crash leaves (Creating) or what
// only the listing operations look at. A Creating key gets a pending
// version 1, as createKey records one.
func ksInjectKeys(t testing.TB, f *fixture, states ...store.KeyState) []string {
	t.Helper()
	var ids []string
	err := f.svc.store.Update(t.Context(), func(tx store.Tx) error {
		ids = ids[:0] // Update may run this twice (rerunStore)
		for _, st := range states {
			k := store.Key{ID: uuid.NewString(), Spec: SpecSymmetric, Usage: UsageEncrypt, Mechanism: "aes-gcm",
				State: st, CreatedAt: f.clock.Now(), LatestVersion: 1, CurrentVersion: 1}
			if st == store.KeyCreating {
				k.CurrentVersion = 0
			}
			if st == store.KeyDeleted {
				k.CurrentVersion, k.DeletedAt = 0, f.clock.Now()
			}
			if _, err := tx.PutKey(k); err != nil {
				return err
			}
			v := store.Version{KeyID: k.ID, Number: 1, State: store.VersionPending, CreatedAt: f.clock.Now()}
			if err := tx.PutVersion(v); err != nil {
				return err
			}
			ids = append(ids, k.ID)
		}
		return nil
	})
	ksMust(t, "inject keys", err)
	return ids
}

// ksForgedBlob is a well-formed aes-gcm ciphertext naming key id, version 1.
func ksForgedBlob(t testing.TB, id string) []byte {
	t.Helper()
	b, err := ciphertext.Blob{Mechanism: ciphertext.AESGCM, KeyID: uuid.MustParse(id), Version: 1,
		IV: make([]byte, 12), Sealed: make([]byte, 32)}.Marshal()
	ksMust(t, "forge blob", err)
	return b
}

// ksTime returns the time an EpochTime holds (zero for nil).
func ksTime(e *EpochTime) time.Time {
	if e == nil {
		return time.Time{}
	}
	return time.Time(*e)
}

// ksRecord is one audit record as written.
type ksRecord map[string]any

// ksMark returns where the audit trail ends now.
func ksMark(f *fixture) int { return len(f.audit.String()) }

// ksAuditSince returns the audit records written after mark.
func ksAuditSince(t testing.TB, f *fixture, mark int) []ksRecord {
	t.Helper()
	var recs []ksRecord
	for line := range strings.Lines(f.audit.String()[mark:]) {
		var l struct {
			Audit ksRecord `json:"audit"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		recs = append(recs, l.Audit)
	}
	return recs
}

// ksWantDenied checks that exactly one audit record was written since mark
// and that it is a denial of action to principal (on keyID when given).
func ksWantDenied(t testing.TB, f *fixture, mark int, what, action, principal, keyID string) {
	t.Helper()
	recs := ksAuditSince(t, f, mark)
	if len(recs) != 1 {
		t.Errorf("%s: %d audit records, want 1: %v", what, len(recs), recs)
		return
	}
	r := recs[0]
	want := ksRecord{"outcome": "denied", "error_type": "AccessDeniedException", "action": action, "principal": principal}
	if keyID != "" {
		want["key_id"] = keyID
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s: audit %s = %v, want %v (record %v)", what, k, r[k], v, r)
		}
	}
}

// TestCreateKey creates every supported kind of key and checks its
// metadata, its material on the token and what it makes.
func TestCreateKey(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	arnRE := regexp.MustCompile(`^arn:aws:kms:us-east-1:000000000000:key/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)
	maxTags := []Tag{{TagKey: strings.Repeat("k", 128), TagValue: strings.Repeat("v", 256)}}
	for i := range 49 {
		maxTags = append(maxTags, Tag{TagKey: fmt.Sprintf("tag-%02d", i), TagValue: ""})
	}
	rsaAlgs := []string{"RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256"}
	cases := []struct {
		name              string
		in                CreateKeyInput
		spec, usage, mech string
		enc, sign         []string
		pubBits           int // asymmetric: the curve's or modulus's bits
		rsa               bool
	}{
		{name: "defaults", spec: SpecSymmetric, usage: UsageEncrypt, mech: "aes-gcm", enc: []string{"SYMMETRIC_DEFAULT"}},
		{name: "explicit symmetric", in: CreateKeyInput{KeySpec: "SYMMETRIC_DEFAULT", KeyUsage: "ENCRYPT_DECRYPT", Origin: "AWS_KMS", Description: "explicit", BypassPolicyLockoutSafetyCheck: true},
			spec: SpecSymmetric, usage: UsageEncrypt, mech: "aes-gcm", enc: []string{"SYMMETRIC_DEFAULT"}},
		{name: "deprecated CustomerMasterKeySpec", in: CreateKeyInput{CustomerMasterKeySpec: "SYMMETRIC_DEFAULT"},
			spec: SpecSymmetric, usage: UsageEncrypt, mech: "aes-gcm", enc: []string{"SYMMETRIC_DEFAULT"}},
		{name: "aes-gcm by HsmkmsMechanism", in: CreateKeyInput{HsmkmsMechanism: "aes-gcm"},
			spec: SpecSymmetric, usage: UsageEncrypt, mech: "aes-gcm", enc: []string{"SYMMETRIC_DEFAULT"}},
		{name: "aes-kw by HsmkmsMechanism", in: CreateKeyInput{HsmkmsMechanism: "aes-kw"},
			spec: SpecSymmetric, usage: UsageEncrypt, mech: "aes-kw", enc: []string{"SYMMETRIC_DEFAULT"}},
		{name: "aes-kw by tag", in: CreateKeyInput{Tags: []Tag{{TagKey: "hsmkms:mechanism", TagValue: "aes-kw"}}},
			spec: SpecSymmetric, usage: UsageEncrypt, mech: "aes-kw", enc: []string{"SYMMETRIC_DEFAULT"}},
		{name: "metadata at its limits", in: CreateKeyInput{Description: strings.Repeat("d", 8192), Tags: maxTags},
			spec: SpecSymmetric, usage: UsageEncrypt, mech: "aes-gcm", enc: []string{"SYMMETRIC_DEFAULT"}},
		{name: "ECC_NIST_P256", in: CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"},
			spec: "ECC_NIST_P256", usage: UsageSign, sign: []string{"ECDSA_SHA_256"}, pubBits: 256},
		{name: "ECC_NIST_P256 usage defaults to SIGN_VERIFY", in: CreateKeyInput{CustomerMasterKeySpec: "ECC_NIST_P256"},
			spec: "ECC_NIST_P256", usage: UsageSign, sign: []string{"ECDSA_SHA_256"}, pubBits: 256},
		{name: "ECC_NIST_P384", in: CreateKeyInput{KeySpec: "ECC_NIST_P384", KeyUsage: "SIGN_VERIFY"},
			spec: "ECC_NIST_P384", usage: UsageSign, sign: []string{"ECDSA_SHA_384"}, pubBits: 384},
		{name: "RSA_2048", in: CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"},
			spec: "RSA_2048", usage: UsageSign, sign: rsaAlgs, pubBits: 2048, rsa: true},
		{name: "RSA_3072", in: CreateKeyInput{KeySpec: "RSA_3072", KeyUsage: "SIGN_VERIFY"},
			spec: "RSA_3072", usage: UsageSign, sign: rsaAlgs, pubBits: 3072, rsa: true},
		{name: "RSA_4096", in: CreateKeyInput{KeySpec: "RSA_4096", KeyUsage: "SIGN_VERIFY"},
			spec: "RSA_4096", usage: UsageSign, sign: rsaAlgs, pubBits: 4096, rsa: true},
	}
	var ids []string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.clock.Advance(time.Hour)
			created := f.clock.Now()
			mark := ksMark(f)
			out, err := f.svc.CreateKey(ctx, c.in)
			ksMust(t, "CreateKey", err)
			m := out.KeyMetadata
			match := arnRE.FindStringSubmatch(m.Arn)
			if match == nil || match[1] != m.KeyId {
				t.Fatalf("Arn %q does not name KeyId %q", m.Arn, m.KeyId)
			}
			if slices.Contains(ids, m.KeyId) {
				t.Fatalf("KeyId %s given twice", m.KeyId)
			}
			ids = append(ids, m.KeyId)
			if !m.Enabled || m.KeyState != "Enabled" || m.KeyManager != "CUSTOMER" || m.Origin != "AWS_KMS" ||
				m.AWSAccountId != "000000000000" || m.MultiRegion || m.DeletionDate != nil || m.CurrentKeyMaterialId != "v1" {
				t.Errorf("metadata %+v", m)
			}
			if m.KeySpec != c.spec || m.CustomerMasterKeySpec != c.spec || m.KeyUsage != c.usage || m.HsmkmsMechanism != c.mech {
				t.Errorf("spec %s/%s usage %s mechanism %q, want %s %s %q", m.KeySpec, m.CustomerMasterKeySpec, m.KeyUsage, m.HsmkmsMechanism, c.spec, c.usage, c.mech)
			}
			if !slices.Equal(m.EncryptionAlgorithms, c.enc) || !slices.Equal(m.SigningAlgorithms, c.sign) {
				t.Errorf("algorithms %v %v, want %v %v", m.EncryptionAlgorithms, m.SigningAlgorithms, c.enc, c.sign)
			}
			if got := ksTime(m.CreationDate); !got.Equal(created) {
				t.Errorf("CreationDate %v, want the clock's %v", got, created)
			}
			if m.Description != c.in.Description {
				t.Errorf("Description of %d bytes, want %d", len(m.Description), len(c.in.Description))
			}
			recs := ksAuditSince(t, f, mark)
			if len(recs) != 1 || recs[0]["action"] != "kms:CreateKey" || recs[0]["outcome"] != "allowed" ||
				recs[0]["key_id"] != m.KeyId || recs[0]["key_version"] != float64(1) {
				t.Errorf("audit %v", recs)
			}
			if d := ksDescribe(t, f, m.KeyId); d.KeyId != m.KeyId || d.Arn != m.Arn || d.KeyState != "Enabled" || !ksTime(d.CreationDate).Equal(created) {
				t.Errorf("DescribeKey %+v differs from CreateKey's %+v", d, m)
			}
			vs := ksVersions(t, f, m.KeyId)
			if len(vs) != 1 || vs[0].State != store.VersionActive || vs[0].Number != 1 || !ksOnToken(t, f, m.KeyId) {
				t.Errorf("versions %+v, want one active on the token", vs)
			}
			tags, err := f.svc.ListResourceTags(ctx, ListResourceTagsInput{KeyId: m.KeyId})
			ksMust(t, "ListResourceTags", err)
			if len(tags.Tags) != len(c.in.Tags) {
				t.Errorf("%d tags, want %d", len(tags.Tags), len(c.in.Tags))
			}
			if c.usage == UsageEncrypt {
				dk, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: m.KeyId, KeySpec: "AES_256"})
				ksMust(t, "GenerateDataKey", err)
				b, err := ciphertext.Parse(dk.CiphertextBlob)
				ksMust(t, "Parse", err)
				if b.Mechanism.String() != c.mech || b.Version != 1 || uuid.UUID(b.KeyID).String() != m.KeyId {
					t.Errorf("data key blob: mechanism %s version %d key %x", b.Mechanism, b.Version, b.KeyID)
				}
				return
			}
			pk, err := f.svc.GetPublicKey(ctx, KeyIDInput{KeyId: m.KeyId})
			ksMust(t, "GetPublicKey", err)
			pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
			ksMust(t, "ParsePKIXPublicKey", err)
			switch p := pub.(type) {
			case *ecdsa.PublicKey:
				if c.rsa || p.Curve.Params().BitSize != c.pubBits {
					t.Errorf("an EC key of %d bits, want %d bits (rsa %v)", p.Curve.Params().BitSize, c.pubBits, c.rsa)
				}
			case *rsa.PublicKey:
				if !c.rsa || p.N.BitLen() != c.pubBits {
					t.Errorf("an RSA key of %d bits, want %d bits (rsa %v)", p.N.BitLen(), c.pubBits, c.rsa)
				}
			default:
				t.Errorf("public key %T", pub)
			}
			sig, err := f.svc.Sign(ctx, SignInput{KeyId: m.KeyId, Message: []byte("m"), SigningAlgorithm: c.sign[0]})
			ksMust(t, "Sign", err)
			_, err = f.svc.Verify(ctx, VerifyInput{KeyId: m.KeyId, Message: []byte("m"), Signature: sig.Signature, SigningAlgorithm: c.sign[0]})
			ksMust(t, "Verify", err)
		})
	}
}

// TestCreateKeyInvalid refuses every invalid CreateKey request with its
// exact error type, before anything reaches the store or the token.
func TestCreateKeyInvalid(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	var tags51 []Tag
	for i := range 51 {
		tags51 = append(tags51, Tag{TagKey: fmt.Sprintf("t%02d", i), TagValue: "v"})
	}
	specs := "ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, HMAC_224, HMAC_256, HMAC_384, HMAC_512, RSA_2048, RSA_3072, RSA_4096, SYMMETRIC_DEFAULT"
	enum := func(member, v, set string) string {
		return "1 validation error detected: Value '" + v + "' at '" + member + "' failed to satisfy constraint: Member must satisfy enum value set: [" + set + "]"
	}
	specEnum := "RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, SYMMETRIC_DEFAULT, " +
		"HMAC_224, HMAC_256, HMAC_384, HMAC_512, SM2, ML_DSA_44, ML_DSA_65, ML_DSA_87, ECC_NIST_EDWARDS25519, ML_KEM_512, ML_KEM_768, ML_KEM_1024"
	usageEnum := "SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT, ENCAPSULATE_DECAPSULATE"
	originEnum := func(v string) string {
		return "1 validation error detected: Value '" + v + "' at 'origin' failed to satisfy constraint: Member must satisfy enum value set: [AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE]"
	}
	cases := []struct {
		name string
		in   CreateKeyInput
		want *Error
		msg  string
	}{
		{"RSA for a MAC", CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "GENERATE_VERIFY_MAC"}, ErrValidation, "KeyUsage GENERATE_VERIFY_MAC is not valid for KeySpec RSA_2048"},
		{"HMAC for ENCRYPT_DECRYPT", CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "ENCRYPT_DECRYPT"}, ErrValidation, "KeyUsage ENCRYPT_DECRYPT is not valid for KeySpec HMAC_256"},
		{"HMAC for SIGN_VERIFY", CreateKeyInput{KeySpec: "HMAC_512", KeyUsage: "SIGN_VERIFY"}, ErrValidation, "KeyUsage SIGN_VERIFY is not valid for KeySpec HMAC_512"},
		{"RSA for KEY_AGREEMENT", CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "KEY_AGREEMENT"}, ErrValidation, "KeyUsage KEY_AGREEMENT is not valid for KeySpec RSA_2048"},
		{"ECC for KEY_AGREEMENT", CreateKeyInput{KeySpec: "ECC_NIST_P384", KeyUsage: "KEY_AGREEMENT"}, ErrUnsupported, "KeyUsage KEY_AGREEMENT is not supported: hsmkms does not offer DeriveSharedSecret"},
		{"secp256k1 for KEY_AGREEMENT", CreateKeyInput{KeySpec: "ECC_SECG_P256K1", KeyUsage: "KEY_AGREEMENT"}, ErrValidation, "KeyUsage KEY_AGREEMENT is not valid for KeySpec ECC_SECG_P256K1"},
		{"unknown usage", CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "ENCRYPT"}, ErrValidation, enum("keyUsage", "ENCRYPT", usageEnum)},
		{"usage is case-sensitive", CreateKeyInput{KeyUsage: "encrypt_decrypt"}, ErrValidation, enum("keyUsage", "encrypt_decrypt", usageEnum)},
		{"ECC for ENCRYPT_DECRYPT", CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "ENCRYPT_DECRYPT"}, ErrValidation, "KeyUsage ENCRYPT_DECRYPT is not valid for KeySpec ECC_NIST_P256"},
		{"symmetric for SIGN_VERIFY", CreateKeyInput{KeyUsage: "SIGN_VERIFY"}, ErrValidation, "KeyUsage SIGN_VERIFY is not valid for KeySpec SYMMETRIC_DEFAULT"},
		{"symmetric for a MAC", CreateKeyInput{KeyUsage: "GENERATE_VERIFY_MAC"}, ErrValidation, ""},
		{"ECC for a MAC", CreateKeyInput{KeySpec: "ECC_NIST_P384", KeyUsage: "GENERATE_VERIFY_MAC"}, ErrValidation, ""},
		{"unknown spec", CreateKeyInput{KeySpec: "AES_256"}, ErrValidation, enum("keySpec", "AES_256", specEnum)},
		{"spec is case-sensitive", CreateKeyInput{KeySpec: "rsa_2048"}, ErrValidation, enum("keySpec", "rsa_2048", specEnum)},
		{"SM2 spec", CreateKeyInput{KeySpec: "SM2"}, ErrUnsupported, "KeySpec SM2 is not supported; use one of " + specs},
		{"ML-DSA spec", CreateKeyInput{KeySpec: "ML_DSA_65"}, ErrUnsupported, "KeySpec ML_DSA_65 is not supported; use one of " + specs},
		{"unknown deprecated spec", CreateKeyInput{CustomerMasterKeySpec: "ECC_NIST_P192"}, ErrValidation, enum("customerMasterKeySpec", "ECC_NIST_P192", specEnum)},
		{"Origin EXTERNAL for an ECC key", CreateKeyInput{Origin: "EXTERNAL", KeySpec: "ECC_NIST_P384"}, ErrUnsupported, "importing key material for ECC_NIST_P384 keys is not supported: hsmkms imports SYMMETRIC_DEFAULT and HMAC key material"},
		{"Origin AWS_CLOUDHSM", CreateKeyInput{Origin: "AWS_CLOUDHSM"}, ErrUnsupported, ""},
		{"Origin EXTERNAL_KEY_STORE", CreateKeyInput{Origin: "EXTERNAL_KEY_STORE"}, ErrUnsupported,
			"Origin EXTERNAL_KEY_STORE is not supported: hsmkms makes key material inside its HSM, or imports it (EXTERNAL)"},
		{"Origin FOO", CreateKeyInput{Origin: "FOO"}, ErrValidation, originEnum("FOO")},
		{"Origin is case-sensitive", CreateKeyInput{Origin: "external"}, ErrValidation, originEnum("external")},
		{"Origin FOO before an unknown spec", CreateKeyInput{Origin: "FOO", KeySpec: "AES_256"}, ErrValidation, originEnum("FOO")},
		{"MultiRegion", CreateKeyInput{MultiRegion: true}, ErrUnsupported, "multi-Region keys are not supported"},
		{"key policy", CreateKeyInput{Policy: `{"Version":"2012-10-17"}`}, ErrUnsupported, "key policies are not supported: access is granted by principals' policies"},
		{"Description of 8193", CreateKeyInput{Description: strings.Repeat("d", 8193)}, ErrValidation, lengthMsg("description", 8192)},
		{"Description of 8193 runes", CreateKeyInput{Description: strings.Repeat("é", 8193)}, ErrValidation, lengthMsg("description", 8192)},
		{"Description of 8193 before a key policy", CreateKeyInput{Description: strings.Repeat("d", 8193), Policy: "{}"}, ErrValidation, lengthMsg("description", 8192)},
		{"51 tags", CreateKeyInput{Tags: tags51}, ErrLimitExceeded, "a key has at most 50 tags"},
		{"tag key of 129", CreateKeyInput{Tags: []Tag{{TagKey: strings.Repeat("k", 129), TagValue: "v"}}}, ErrValidation, lengthMsg("tags.1.member.tagKey", 128)},
		{"tag key of 129 runes", CreateKeyInput{Tags: []Tag{{TagKey: "a", TagValue: "v"}, {TagKey: strings.Repeat("ж", 129), TagValue: "v"}}}, ErrValidation, lengthMsg("tags.2.member.tagKey", 128)},
		{"empty tag key", CreateKeyInput{Tags: []Tag{{TagKey: "", TagValue: "v"}}}, ErrValidation,
			"1 validation error detected: Value at 'tags.1.member.tagKey' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"tag value of 257", CreateKeyInput{Tags: []Tag{{TagKey: "k", TagValue: strings.Repeat("v", 257)}}}, ErrValidation, lengthMsg("tags.1.member.tagValue", 256)},
		{"tag value of 257 runes", CreateKeyInput{Tags: []Tag{{TagKey: "k", TagValue: strings.Repeat("値", 257)}}}, ErrValidation, lengthMsg("tags.1.member.tagValue", 256)},
		{"bad tag before 51 tags", CreateKeyInput{Tags: append(slices.Clone(tags51), Tag{TagKey: ""})}, ErrValidation, ""},
		{"HsmkmsMechanism on an EC key", CreateKeyInput{KeySpec: "ECC_NIST_P256", HsmkmsMechanism: "aes-gcm"}, ErrValidation, "HsmkmsMechanism applies to SYMMETRIC_DEFAULT keys only"},
		{"mechanism tag on an RSA key", CreateKeyInput{KeySpec: "RSA_2048", Tags: []Tag{{TagKey: "hsmkms:mechanism", TagValue: "aes-kw"}}}, ErrValidation, "HsmkmsMechanism applies to SYMMETRIC_DEFAULT keys only"},
		{"bad mechanism name", CreateKeyInput{HsmkmsMechanism: "aes-cbc"}, ErrValidation, `HsmkmsMechanism must be aes-gcm, aes-kw or aes-cbc-hmac, not "aes-cbc"`},
		{"mechanism name is case-sensitive", CreateKeyInput{HsmkmsMechanism: "AES-KW"}, ErrValidation, `HsmkmsMechanism must be aes-gcm, aes-kw or aes-cbc-hmac, not "AES-KW"`},
		{"bad mechanism tag", CreateKeyInput{Tags: []Tag{{TagKey: "hsmkms:mechanism", TagValue: "des"}}}, ErrValidation, `HsmkmsMechanism must be aes-gcm, aes-kw or aes-cbc-hmac, not "des"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mark := ksMark(f)
			_, err := f.svc.CreateKey(ctx, c.in)
			ksWantErr(t, "CreateKey", err, c.want, c.msg)
			recs := ksAuditSince(t, f, mark)
			if len(recs) != 1 || recs[0]["outcome"] != "failed" || recs[0]["error_type"] != string(c.want.Code) {
				t.Errorf("audit %v", recs)
			}
		})
	}
	var all []store.Key
	ksMust(t, "Keys", f.svc.store.View(t.Context(), func(tx store.Tx) (err error) {
		all, err = tx.Keys("", 0)
		return err
	}))
	if len(all) != 0 {
		t.Errorf("refused requests left %d key records", len(all))
	}
}

// TestDescribeKeyIdentifiers finds a key by every kind of identifier and
// refuses the ones that name nothing here.
func TestDescribeKeyIdentifiers(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{Description: "target"})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/describe-me", TargetKeyId: id}))
	unknown := uuid.NewString()
	cases := []struct {
		name, ident string
		want        *Error
		msg         string
	}{
		{"key ID", id, nil, ""},
		{"upper-case key ID", strings.ToUpper(id), nil, ""},
		{"key ARN", ksARN(id), nil, ""},
		{"alias name", "alias/describe-me", nil, ""},
		{"alias ARN", ksAliasARN("alias/describe-me"), nil, ""},
		{"empty", "", ErrValidation, "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"},
		{"too long", strings.Repeat("a", 2049), ErrValidation, "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length less than or equal to 2048"},
		{"2049 runes", strings.Repeat("é", 2049), ErrValidation, lengthMsg("keyId", 2048)},
		{"2048 runes", strings.Repeat("é", 2048), ErrNotFound, "Invalid keyId '" + strings.Repeat("é", 2048) + "'"},
		{"unknown key ID", unknown, ErrNotFound, "Key '" + ksARN(unknown) + "' does not exist"},
		{"unknown key ARN", ksARN(unknown), ErrNotFound, "Key '" + ksARN(unknown) + "' does not exist"},
		{"not a UUID", "not-a-uuid", ErrNotFound, "Invalid keyId 'not-a-uuid'"},
		{"UUID without dashes", strings.ReplaceAll(id, "-", ""), ErrNotFound, ""},
		{"UUID in braces", "{" + id + "}", ErrNotFound, ""},
		{"URN UUID", "urn:uuid:" + id, ErrNotFound, ""},
		{"ARN with a bad key ID", ksPrefix + "key/not-a-uuid", ErrNotFound, ""},
		{"other region", "arn:aws:kms:eu-west-1:000000000000:key/" + id, ErrNotFound, "Key 'arn:aws:kms:eu-west-1:000000000000:key/" + id + "' does not exist"},
		{"other account", "arn:aws:kms:us-east-1:111111111111:key/" + id, ErrNotFound, ""},
		{"other partition", "arn:aws-cn:kms:us-east-1:000000000000:key/" + id, ErrNotFound, ""},
		{"other region alias", "arn:aws:kms:eu-west-1:000000000000:alias/describe-me", ErrNotFound, ""},
		{"ARN of no key or alias", ksPrefix + "keys/" + id, ErrInvalidArn, ksPrefix + "keys/" + id + " is not a key or alias ARN"},
		{"unknown alias", "alias/nope", ErrNotFound, "Alias " + ksAliasARN("alias/nope") + " is not found."},
		{"unknown alias ARN", ksAliasARN("alias/nope"), ErrNotFound, ""},
		{"malformed alias", "alias/has space", ErrNotFound, ""},
		{"alias prefix only", "alias/", ErrNotFound, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: c.ident})
			ksWantErr(t, "DescribeKey", err, c.want, c.msg)
			if c.want == nil && (out.KeyMetadata.KeyId != id || out.KeyMetadata.Description != "target") {
				t.Errorf("found %+v, want key %s", out.KeyMetadata, id)
			}
		})
	}
}

// TestDescribeKeyRegionAccount makes ARNs of the configured region and
// account, and no others.
func TestDescribeKeyRegionAccount(t *testing.T) {
	f := newFixture(t, "", func(c *Config) { c.Region, c.Account = "eu-central-1", "123456789012" })
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	m := ksDescribe(t, f, "arn:aws:kms:eu-central-1:123456789012:key/"+id)
	if m.Arn != "arn:aws:kms:eu-central-1:123456789012:key/"+id || m.AWSAccountId != "123456789012" {
		t.Errorf("metadata %+v", m)
	}
	for _, ident := range []string{ksARN(id), "arn:aws:kms:eu-central-1:000000000000:key/" + id} {
		_, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: ident})
		ksWantErr(t, ident, err, ErrNotFound, "Key '"+ident+"' does not exist")
	}
}

// TestListKeysPagination walks the keys a page at a time: every live key
// once, tombstones and keys being created never.
func TestListKeysPagination(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	gone := f.createKey(t, CreateKeyInput{})
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: gone, PendingWindowInDays: 7})
	ksMust(t, "ScheduleKeyDeletion", err)
	f.clock.Advance(7 * day)
	ksMust(t, "RunMaintenance", f.svc.RunMaintenance(ctx))
	var live []string
	for range 5 {
		live = append(live, f.createKey(t, CreateKeyInput{}))
	}
	hidden := ksInjectKeys(t, f, store.KeyCreating, store.KeyDeleted)
	slices.Sort(live)

	for _, limit := range []int{1, 2, 3, 4, 5, 6, 0, 1000} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var seen []string
			marker := ""
			for pages := 1; ; pages++ {
				out, err := f.svc.ListKeys(ctx, ListInput{Limit: limit, Marker: marker})
				ksMust(t, "ListKeys", err)
				for _, e := range out.Keys {
					if e.KeyArn != ksARN(e.KeyId) {
						t.Errorf("entry %+v", e)
					}
					seen = append(seen, e.KeyId)
				}
				per := limit
				if limit == 0 {
					per = 100
				}
				left := len(live) - (pages-1)*per
				if out.Truncated != (left > per) || (out.NextMarker != "") != out.Truncated || len(out.Keys) != min(left, per) {
					t.Fatalf("page %d: %d keys, truncated %v, marker %q; %d keys were left", pages, len(out.Keys), out.Truncated, out.NextMarker, left)
				}
				if !out.Truncated {
					break
				}
				if out.NextMarker != out.Keys[len(out.Keys)-1].KeyId {
					t.Errorf("NextMarker %s is not the page's last key", out.NextMarker)
				}
				marker = out.NextMarker
			}
			if !slices.Equal(seen, live) {
				t.Errorf("listed %v, want %v (not %s, nor %v)", seen, live, gone, hidden)
			}
		})
	}
}

// TestListKeysLimits checks Limit and Marker validation and the default
// page size of 100, past many tombstones.
func TestListKeysLimits(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	states := make([]store.KeyState, 0, 401)
	for i := range 401 {
		st := store.KeyEnabled
		if i%4 != 0 {
			st = store.KeyDeleted
		}
		states = append(states, st)
	}
	ids := ksInjectKeys(t, f, states...) // 101 live keys among 300 tombstones
	cases := []struct {
		name  string
		in    ListInput
		want  *Error
		msg   string
		n     int
		trunc bool
	}{
		{name: "default limit", in: ListInput{}, n: 100, trunc: true},
		{name: "limit 1", in: ListInput{Limit: 1}, n: 1, trunc: true},
		{name: "limit 1000", in: ListInput{Limit: 1000}, n: 101},
		{name: "limit 101", in: ListInput{Limit: 101}, n: 101},
		{name: "limit 100", in: ListInput{Limit: 100}, n: 100, trunc: true},
		{name: "limit 1001", in: ListInput{Limit: 1001}, want: ErrValidation, msg: "1 validation error detected: Value '1001' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"},
		{name: "negative limit", in: ListInput{Limit: -1}, want: ErrValidation, msg: "1 validation error detected: Value '-1' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"},
		{name: "marker not a UUID", in: ListInput{Marker: "next-page"}, want: ErrInvalidMarker, msg: "Marker is not valid"},
		{name: "marker of a key ARN", in: ListInput{Marker: ksARN(ids[0])}, want: ErrInvalidMarker},
		{name: "marker in braces", in: ListInput{Marker: "{" + ids[0] + "}"}, want: ErrInvalidMarker, msg: "Marker is not valid"},
		{name: "marker as a URN", in: ListInput{Marker: "urn:uuid:" + ids[0]}, want: ErrInvalidMarker, msg: "Marker is not valid"},
		{name: "marker without hyphens", in: ListInput{Marker: strings.ReplaceAll(ids[0], "-", "")}, want: ErrInvalidMarker, msg: "Marker is not valid"},
		{name: "marker before every key", in: ListInput{Marker: "00000000-0000-0000-0000-000000000000", Limit: 1000}, n: 101},
		{name: "marker after every key", in: ListInput{Marker: "ffffffff-ffff-ffff-ffff-ffffffffffff"}, n: 0},
	}
	var live []string
	for i, id := range ids {
		if i%4 == 0 {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := f.svc.ListKeys(ctx, c.in)
			ksWantErr(t, "ListKeys", err, c.want, c.msg)
			if c.want != nil {
				return
			}
			if len(out.Keys) != c.n || out.Truncated != c.trunc || out.Keys == nil {
				t.Fatalf("%d keys, truncated %v; want %d, %v", len(out.Keys), out.Truncated, c.n, c.trunc)
			}
			for i, e := range out.Keys {
				if e.KeyId != live[i] {
					t.Fatalf("key %d is %s, want %s", i, e.KeyId, live[i])
				}
			}
		})
	}
	out, err := f.svc.ListKeys(ctx, ListInput{Marker: live[99]})
	ksMust(t, "ListKeys after the first page", err)
	if len(out.Keys) != 1 || out.Keys[0].KeyId != live[100] || out.Truncated {
		t.Errorf("second page %+v, want only %s", out, live[100])
	}
}

// TestTagResource adds, replaces, removes and lists tags within AWS's
// limits, in every state a key can be named in.
func TestTagResource(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{Tags: []Tag{{TagKey: "team", TagValue: "a"}, {TagKey: "env", TagValue: "dev"}}})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/tagged", TargetKeyId: id}))
	tagsOf := func() map[string]string {
		out, err := f.svc.ListResourceTags(ctx, ListResourceTagsInput{KeyId: id})
		ksMust(t, "ListResourceTags", err)
		m := map[string]string{}
		for i, tg := range out.Tags {
			if i > 0 && out.Tags[i-1].TagKey >= tg.TagKey {
				t.Errorf("tags not sorted by key: %v", out.Tags)
			}
			m[tg.TagKey] = tg.TagValue
		}
		return m
	}
	many := func(n int) []Tag {
		var tags []Tag
		for i := range n {
			tags = append(tags, Tag{TagKey: fmt.Sprintf("n%02d", i)})
		}
		return tags
	}
	cases := []struct {
		name  string
		op    func() error
		want  *Error
		msg   string
		after map[string]string
	}{
		{"add and replace", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: []Tag{{TagKey: "team", TagValue: "b"}, {TagKey: "cost", TagValue: "42"}}})
		}, nil, "", map[string]string{"team": "b", "env": "dev", "cost": "42"}},
		{"by alias", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: "alias/tagged", Tags: []Tag{{TagKey: "owner", TagValue: ""}}})
		}, nil, "", map[string]string{"team": "b", "env": "dev", "cost": "42", "owner": ""}},
		{"untag, missing keys ignored", func() error {
			return f.svc.UntagResource(ctx, UntagResourceInput{KeyId: ksARN(id), TagKeys: []string{"cost", "owner", "absent"}})
		}, nil, "", map[string]string{"team": "b", "env": "dev"}},
		{"tag key of 129", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: []Tag{{TagKey: "x", TagValue: "1"}, {TagKey: strings.Repeat("k", 129)}}})
		}, ErrValidation, lengthMsg("tags.2.member.tagKey", 128), map[string]string{"team": "b", "env": "dev"}},
		{"tag value of 257", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: []Tag{{TagKey: "x", TagValue: strings.Repeat("v", 257)}}})
		}, ErrValidation, lengthMsg("tags.1.member.tagValue", 256), map[string]string{"team": "b", "env": "dev"}},
		{"empty tag key", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: []Tag{{TagKey: "x", TagValue: "1"}, {TagKey: "", TagValue: "1"}}})
		}, ErrValidation, "1 validation error detected: Value at 'tags.2.member.tagKey' failed to satisfy constraint: Member must have length greater than or equal to 1",
			map[string]string{"team": "b", "env": "dev"}},
		{"tags at their limits in runes", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: []Tag{{TagKey: strings.Repeat("ключ", 32), TagValue: strings.Repeat("値", 256)}}})
		}, nil, "", nil},
		{"untag the rune tag", func() error {
			return f.svc.UntagResource(ctx, UntagResourceInput{KeyId: id, TagKeys: []string{strings.Repeat("ключ", 32)}})
		}, nil, "", map[string]string{"team": "b", "env": "dev"}},
		{"51st tag", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: many(49)})
		}, ErrLimitExceeded, "a key has at most 50 tags", map[string]string{"team": "b", "env": "dev"}},
		{"50th tag", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: many(48)})
		}, nil, "", nil},
		{"replacing at 50 tags", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: []Tag{{TagKey: "team", TagValue: "c"}}})
		}, nil, "", nil},
		{"unknown key", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{KeyId: uuid.NewString(), Tags: []Tag{{TagKey: "x"}}})
		}, ErrNotFound, "", nil},
		{"untag an unknown alias", func() error {
			return f.svc.UntagResource(ctx, UntagResourceInput{KeyId: "alias/nope", TagKeys: []string{"team"}})
		}, ErrNotFound, "", nil},
		{"no key", func() error {
			return f.svc.TagResource(ctx, TagResourceInput{Tags: []Tag{{TagKey: "x"}}})
		}, ErrValidation, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ksWantErr(t, c.name, c.op(), c.want, c.msg)
			if c.after != nil {
				if got := tagsOf(); !maps.Equal(got, c.after) {
					t.Errorf("tags %v, want %v", got, c.after)
				}
			}
		})
	}
	if got := tagsOf(); len(got) != 50 || got["team"] != "c" {
		t.Errorf("%d tags (team=%q), want 50 with team=c", len(got), got["team"])
	}
	_, err := f.svc.ListResourceTags(ctx, ListResourceTagsInput{KeyId: "not-a-key"})
	ksWantErr(t, "ListResourceTags of nothing", err, ErrNotFound, "")
}

// ksAuthzEnv is what the operations of ksOps work on: Enabled keys, each
// with an alias and a ciphertext, and an ECC key's signature.
type ksAuthzEnv struct {
	alias map[string]string // key ID → its alias
	blob  map[string][]byte // key ID → a ciphertext under it
	sig   []byte
	hmac  string // an HMAC_256 key
	mac   []byte // a MAC of "m" under it
	// grantee is a principal ARN, and grant a grant to it on key a: its
	// ID and token.
	grantee, grantID, grantToken string
}

// ksOp is one key service operation, called on a key.
type ksOp struct {
	action string
	keyed  bool // about the key passed; otherwise about no key
	call   func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error
}

// ksOps lists every operation of the key service.
var ksOps = []ksOp{
	{"kms:CreateKey", false, func(ctx context.Context, s *Service, _ string, _ *ksAuthzEnv) error {
		_, err := s.CreateKey(ctx, CreateKeyInput{})
		return err
	}},
	{"kms:ListKeys", false, func(ctx context.Context, s *Service, _ string, _ *ksAuthzEnv) error {
		_, err := s.ListKeys(ctx, ListInput{})
		return err
	}},
	{"kms:ListAliases", false, func(ctx context.Context, s *Service, _ string, _ *ksAuthzEnv) error {
		_, err := s.ListAliases(ctx, ListAliasesInput{})
		return err
	}},
	{"kms:GenerateRandom", false, func(ctx context.Context, s *Service, _ string, _ *ksAuthzEnv) error {
		_, err := s.GenerateRandom(ctx, GenerateRandomInput{NumberOfBytes: 16})
		return err
	}},
	{"kms:DescribeKey", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.DescribeKey(ctx, KeyIDInput{KeyId: id})
		return err
	}},
	{"kms:EnableKey", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.EnableKey(ctx, KeyIDInput{KeyId: id})
	}},
	{"kms:DisableKey", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.DisableKey(ctx, KeyIDInput{KeyId: id})
	}},
	{"kms:ScheduleKeyDeletion", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: id})
		return err
	}},
	{"kms:CancelKeyDeletion", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.CancelKeyDeletion(ctx, KeyIDInput{KeyId: id})
		return err
	}},
	{"kms:RotateKeyOnDemand", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: id})
		return err
	}},
	{"kms:EnableKeyRotation", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.EnableKeyRotation(ctx, EnableKeyRotationInput{KeyId: id})
	}},
	{"kms:DisableKeyRotation", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.DisableKeyRotation(ctx, KeyIDInput{KeyId: id})
	}},
	{"kms:GetKeyRotationStatus", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: id})
		return err
	}},
	{"kms:ListKeyRotations", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.ListKeyRotations(ctx, ListKeyRotationsInput{KeyId: id})
		return err
	}},
	{"kms:CreateAlias", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.CreateAlias(ctx, AliasInput{AliasName: "alias/new-" + id[:8], TargetKeyId: id})
	}},
	{"kms:UpdateAlias", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		return s.UpdateAlias(ctx, AliasInput{AliasName: e.alias[id], TargetKeyId: id})
	}},
	{"kms:DeleteAlias", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		return s.DeleteAlias(ctx, DeleteAliasInput{AliasName: e.alias[id]})
	}},
	{"kms:ListAliases", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.ListAliases(ctx, ListAliasesInput{KeyId: id})
		return err
	}},
	{"kms:UpdateKeyDescription", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.UpdateKeyDescription(ctx, UpdateKeyDescriptionInput{KeyId: id, Description: "denied"})
	}},
	{"kms:TagResource", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.TagResource(ctx, TagResourceInput{KeyId: id, Tags: []Tag{{TagKey: "denied", TagValue: "x"}}})
	}},
	{"kms:UntagResource", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.UntagResource(ctx, UntagResourceInput{KeyId: id, TagKeys: []string{"keep"}})
	}},
	{"kms:ListResourceTags", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.ListResourceTags(ctx, ListResourceTagsInput{KeyId: id})
		return err
	}},
	{"kms:Encrypt", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte("p")})
		return err
	}},
	{"kms:Decrypt", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		_, err := s.Decrypt(ctx, DecryptInput{CiphertextBlob: e.blob[id]})
		return err
	}},
	{"kms:ReEncrypt", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		_, err := s.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: e.blob[id], DestinationKeyId: id})
		return err
	}},
	{"kms:GenerateDataKey", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
		return err
	}},
	{"kms:GenerateDataKeyWithoutPlaintext", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.GenerateDataKeyWithoutPlaintext(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
		return err
	}},
	{"kms:GenerateDataKeyPair", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.GenerateDataKeyPair(ctx, GenerateDataKeyPairInput{KeyId: id, KeyPairSpec: "ECC_NIST_P256"})
		return err
	}},
	{"kms:GenerateDataKeyPairWithoutPlaintext", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.GenerateDataKeyPairWithoutPlaintext(ctx, GenerateDataKeyPairInput{KeyId: id, KeyPairSpec: "ECC_NIST_P256"})
		return err
	}},
	{"kms:Sign", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.Sign(ctx, SignInput{KeyId: id, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
		return err
	}},
	{"kms:Verify", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		_, err := s.Verify(ctx, VerifyInput{KeyId: id, Message: []byte("m"), Signature: e.sig, SigningAlgorithm: "ECDSA_SHA_256"})
		return err
	}},
	{"kms:GetPublicKey", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.GetPublicKey(ctx, KeyIDInput{KeyId: id})
		return err
	}},
	{"kms:GetParametersForImport", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.GetParametersForImport(ctx, GetParametersForImportInput{KeyId: id, WrappingAlgorithm: "RSAES_OAEP_SHA_1", WrappingKeySpec: "RSA_2048"})
		return err
	}},
	{"kms:ImportKeyMaterial", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.ImportKeyMaterial(ctx, ImportKeyMaterialInput{KeyId: id, ImportToken: []byte("t"), EncryptedKeyMaterial: []byte("m"), ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
		return err
	}},
	{"kms:DeleteImportedKeyMaterial", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		return s.DeleteImportedKeyMaterial(ctx, KeyIDInput{KeyId: id})
	}},
	{"kms:CreateGrant", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		_, err := s.CreateGrant(ctx, CreateGrantInput{KeyId: id, GranteePrincipal: e.grantee, Operations: []string{"Encrypt"}})
		return err
	}},
	{"kms:ListGrants", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.ListGrants(ctx, ListGrantsInput{KeyId: id})
		return err
	}},
	{"kms:ListRetirableGrants", false, func(ctx context.Context, s *Service, _ string, e *ksAuthzEnv) error {
		_, err := s.ListRetirableGrants(ctx, ListRetirableGrantsInput{RetiringPrincipal: e.grantee})
		return err
	}},
	{"kms:RetireGrant", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		return s.RetireGrant(ctx, RetireGrantInput{KeyId: id, GrantId: e.grantID})
	}},
	{"kms:RevokeGrant", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		return s.RevokeGrant(ctx, RevokeGrantInput{KeyId: id, GrantId: e.grantID})
	}},
	{"kms:GenerateMac", true, func(ctx context.Context, s *Service, id string, _ *ksAuthzEnv) error {
		_, err := s.GenerateMac(ctx, GenerateMacInput{KeyId: id, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_256"})
		return err
	}},
	{"kms:VerifyMac", true, func(ctx context.Context, s *Service, id string, e *ksAuthzEnv) error {
		_, err := s.VerifyMac(ctx, VerifyMacInput{KeyId: id, Message: []byte("m"), Mac: e.mac, MacAlgorithm: "HMAC_SHA_256"})
		return err
	}},
}

// ksAuthzSetup makes symmetric keys a and b and an ECC key, each Enabled,
// tagged keep=1, with an alias and (a and b) a ciphertext.
func ksAuthzSetup(t *testing.T, f *fixture) (a, b, ecc string, e *ksAuthzEnv) {
	t.Helper()
	ctx := admin(t)
	e = &ksAuthzEnv{alias: map[string]string{}, blob: map[string][]byte{}}
	keep := []Tag{{TagKey: "keep", TagValue: "1"}}
	a = f.createKey(t, CreateKeyInput{Tags: keep})
	b = f.createKey(t, CreateKeyInput{Tags: keep})
	ecc = f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256", Tags: keep})
	for n, id := range map[string]string{"a": a, "b": b, "ecc": ecc} {
		e.alias[id] = "alias/authz-" + n
		ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: e.alias[id], TargetKeyId: id}))
	}
	e.blob[a], e.blob[b] = ksEncrypt(t, f, a, "secret a"), ksEncrypt(t, f, b, "secret b")
	sig, err := f.svc.Sign(ctx, SignInput{KeyId: ecc, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
	ksMust(t, "Sign", err)
	e.sig = sig.Signature
	e.hmac = f.createKey(t, CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC", Tags: keep})
	mac, err := f.svc.GenerateMac(ctx, GenerateMacInput{KeyId: e.hmac, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_256"})
	ksMust(t, "GenerateMac", err)
	e.mac = mac.Mac
	p, err := f.svc.CreatePrincipal(systemContext(t.Context()), CreatePrincipalInput{Name: "grantee"})
	ksMust(t, "CreatePrincipal", err)
	e.grantee = p.Arn
	g, err := f.svc.CreateGrant(ctx, CreateGrantInput{KeyId: a, GranteePrincipal: e.grantee, Operations: []string{"Decrypt"}})
	ksMust(t, "CreateGrant", err)
	e.grantID, e.grantToken = g.GrantId, g.GrantToken
	return a, b, ecc, e
}

// ksUntouched checks that denied calls changed nothing about key id.
func ksUntouched(t *testing.T, f *fixture, id string, e *ksAuthzEnv) {
	t.Helper()
	k := ksStoreKey(t, f, id)
	if k.State != store.KeyEnabled || k.LatestVersion != 1 || k.RotationEnabled || len(k.Tags) != 1 ||
		!slices.Equal(k.Aliases, []string{e.alias[id]}) {
		t.Errorf("key %s changed by denied calls: %+v", id, k)
	}
}

// TestAuthzNoCaller denies every operation to a context that carries no
// caller, with one audit record each.
func TestAuthzNoCaller(t *testing.T) {
	f := newFixture(t, "")
	a, _, ecc, e := ksAuthzSetup(t, f)
	for _, op := range ksOps {
		t.Run(op.action, func(t *testing.T) {
			id := a
			switch {
			case strings.HasSuffix(op.action, "Mac"):
				id = e.hmac
			case strings.Contains(op.action, "Sign") || strings.Contains(op.action, "Verify") || strings.Contains(op.action, "PublicKey"):
				id = ecc
			}
			keyID := ""
			if op.keyed {
				keyID = id
			}
			mark := ksMark(f)
			err := op.call(t.Context(), f.svc, id, e)
			ksWantErr(t, op.action, err, ErrAccessDenied, "the request carries no authenticated principal")
			ksWantDenied(t, f, mark, op.action, op.action, "", keyID)
		})
	}
	ksUntouched(t, f, a, e)
	ksUntouched(t, f, ecc, e)
}

// TestAuthzEncryptOnly lets a principal allowed only kms:Encrypt on key A
// encrypt under A and nothing else, on A or on B.
func TestAuthzEncryptOnly(t *testing.T) {
	f := newFixture(t, "")
	a, b, _, e := ksAuthzSetup(t, f)
	const who = "AKIAENCRYPTONLY"
	ctx := as(t, who, policy.Statement{Effect: "Allow", Actions: []string{"kms:Encrypt"}, Resources: []string{ksARN(a)}})
	for _, target := range []struct{ name, id string }{{"key A", a}, {"key B", b}} {
		for _, op := range ksOps {
			t.Run(target.name+"/"+op.action, func(t *testing.T) {
				keyID := ""
				if op.keyed {
					keyID = target.id
				}
				mark := ksMark(f)
				err := op.call(ctx, f.svc, target.id, e)
				if op.action == "kms:Encrypt" && target.id == a {
					ksWantErr(t, op.action, err, nil, "")
					return
				}
				msg := ""
				if op.keyed {
					msg = "User: " + who + " is not authorized to perform: " + op.action + " on resource: " + ksARN(target.id) +
						" because no identity-based policy allows the " + op.action + " action"
					if op.action == "kms:ReEncrypt" {
						msg = strings.ReplaceAll(msg, "kms:ReEncrypt", "kms:ReEncryptFrom")
					}
				}
				ksWantErr(t, op.action, err, ErrAccessDenied, msg)
				ksWantDenied(t, f, mark, op.action, op.action, who, keyID)
			})
		}
	}
	ksUntouched(t, f, a, e)
	ksUntouched(t, f, b, e)
}

// TestAuthzAliasResource lets a statement on alias/app-* cover a key by
// every name while the key has such an alias, and no longer.
func TestAuthzAliasResource(t *testing.T) {
	f := newFixture(t, "")
	adm := admin(t)
	withApp, withOther, bare := f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(adm, AliasInput{AliasName: "alias/app-x", TargetKeyId: withApp}))
	ksMust(t, "CreateAlias", f.svc.CreateAlias(adm, AliasInput{AliasName: "alias/other-x", TargetKeyId: withOther}))
	const who = "AKIAAPP"
	ctx := as(t, who, policy.Statement{Effect: "Allow", Actions: []string{"kms:Encrypt", "kms:DescribeKey"}, Resources: []string{"alias/app-*"}})
	encrypt := func(ident string) error {
		_, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: ident, Plaintext: []byte("p")})
		return err
	}
	blob := ksEncrypt(t, f, withApp, "p")
	steps := []struct {
		name    string
		before  func()
		call    func() error
		allowed bool
	}{
		{"by key ID", nil, func() error { return encrypt(withApp) }, true},
		{"by key ARN", nil, func() error { return encrypt(ksARN(withApp)) }, true},
		{"by alias", nil, func() error { return encrypt("alias/app-x") }, true},
		{"by alias ARN", nil, func() error { return encrypt(ksAliasARN("alias/app-x")) }, true},
		{"describe by key ID", nil, func() error {
			_, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: withApp})
			return err
		}, true},
		{"decrypt is another action", nil, func() error {
			_, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: blob})
			return err
		}, false},
		{"key with another alias", nil, func() error { return encrypt(withOther) }, false},
		{"key with another alias, by alias", nil, func() error { return encrypt("alias/other-x") }, false},
		{"key without alias", nil, func() error { return encrypt(bare) }, false},
		{"alias moved away", func() {
			ksMust(t, "UpdateAlias", f.svc.UpdateAlias(adm, AliasInput{AliasName: "alias/app-x", TargetKeyId: bare}))
		}, func() error { return encrypt(withApp) }, false},
		{"alias moved here", nil, func() error { return encrypt(bare) }, true},
		{"alias deleted", func() {
			ksMust(t, "DeleteAlias", f.svc.DeleteAlias(adm, DeleteAliasInput{AliasName: "alias/app-x"}))
		}, func() error { return encrypt(bare) }, false},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		mark := ksMark(f)
		err := s.call()
		if s.allowed {
			ksWantErr(t, s.name, err, nil, "")
			continue
		}
		ksWantErr(t, s.name, err, ErrAccessDenied, "")
		if recs := ksAuditSince(t, f, mark); len(recs) != 1 || recs[0]["outcome"] != "denied" {
			t.Errorf("%s: audit %v", s.name, recs)
		}
	}
}

// TestAuthzDenyWins lets a matching Deny win over any Allow, whatever the
// statements' order and whichever name the key is called by.
func TestAuthzDenyWins(t *testing.T) {
	f := newFixture(t, "")
	adm := admin(t)
	k, other := f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(adm, AliasInput{AliasName: "alias/app-x", TargetKeyId: k}))
	blob := ksEncrypt(t, f, k, "p")
	allowAll := policy.Statement{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"*"}}
	deny := func(action string, res ...string) policy.Statement {
		return policy.Statement{Effect: "Deny", Actions: []string{action}, Resources: res}
	}
	encrypt := func(ident string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: ident, Plaintext: []byte("p")})
			return err
		}
	}
	decrypt := func(ctx context.Context) error {
		_, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: blob})
		return err
	}
	gdk := func(ctx context.Context) error {
		_, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: k, KeySpec: "AES_128"})
		return err
	}
	type call struct {
		name    string
		fn      func(context.Context) error
		allowed bool
	}
	cases := []struct {
		name  string
		stmts []policy.Statement
		calls []call
	}{
		{"deny on the key ARN", []policy.Statement{allowAll, deny("kms:Encrypt", ksARN(k))}, []call{
			{"encrypt by ID", encrypt(k), false}, {"encrypt by alias", encrypt("alias/app-x"), false},
			{"decrypt", decrypt, true}, {"other key", encrypt(other), true}}},
		{"deny first, on the alias", []policy.Statement{deny("kms:Encrypt", "alias/app-*"), allowAll}, []call{
			{"encrypt by ID", encrypt(k), false}, {"encrypt by ARN", encrypt(ksARN(k)), false},
			{"decrypt", decrypt, true}, {"other key", encrypt(other), true}}},
		{"deny everything", []policy.Statement{{Effect: "Allow", Actions: []string{"kms:Encrypt"}, Resources: []string{k}}, deny("kms:*", "*")}, []call{
			{"encrypt by ID", encrypt(k), false}, {"other key", encrypt(other), false}}},
		{"deny by action wildcard", []policy.Statement{allowAll, deny("kms:GenerateDataKey*", "*")}, []call{
			{"generate data key", gdk, false}, {"encrypt", encrypt(k), true}}},
		{"deny on the key ID, case-folded action", []policy.Statement{allowAll, deny("KMS:ENCRYPT", k)}, []call{
			{"encrypt by alias", encrypt("alias/app-x"), false}, {"decrypt", decrypt, true}}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			who := fmt.Sprintf("AKIADENY%d", i)
			ctx := as(t, who, c.stmts...)
			for _, cl := range c.calls {
				mark := ksMark(f)
				err := cl.fn(ctx)
				if cl.allowed {
					ksWantErr(t, cl.name, err, nil, "")
					continue
				}
				ksWantErr(t, cl.name, err, ErrAccessDenied, "")
				action := "kms:Encrypt"
				if cl.name == "generate data key" {
					action = "kms:GenerateDataKey"
				}
				ksWantDenied(t, f, mark, cl.name, action, who, "")
			}
		})
	}
}

// TestListResourceTagsPages pages through a key's tags with Limit and
// Marker as AWS KMS does: pages in key order without repeats, NextMarker
// while Truncated, Limit 1 to 50 (50 by default).
func TestListResourceTagsPages(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	var tags []Tag
	for i := range 45 { // a key has at most 50 tags
		tags = append(tags, Tag{TagKey: fmt.Sprintf("k%02d", i), TagValue: "v"})
	}
	id := f.createKey(t, CreateKeyInput{})
	ksMust(t, "TagResource", f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: tags}))
	for _, tc := range []struct {
		limit int
		pages []int
	}{{0, []int{45}}, {20, []int{20, 20, 5}}, {51, nil}, {1, nil}} {
		if tc.limit == 51 {
			_, err := f.svc.ListResourceTags(ctx, ListResourceTagsInput{KeyId: id, Limit: 51})
			if CodeOf(err) != CodeValidation {
				t.Fatalf("Limit 51: %v, want ValidationException", err)
			}
			continue
		}
		var got []string
		var sizes []int
		for marker := ""; ; {
			out, err := f.svc.ListResourceTags(ctx, ListResourceTagsInput{KeyId: id, Limit: tc.limit, Marker: marker})
			ksMust(t, "ListResourceTags", err)
			sizes = append(sizes, len(out.Tags))
			for _, tg := range out.Tags {
				got = append(got, tg.TagKey)
			}
			if !out.Truncated {
				if out.NextMarker != "" {
					t.Fatalf("NextMarker %q on the last page", out.NextMarker)
				}
				break
			}
			marker = out.NextMarker
		}
		if len(got) != 45 || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != 45 {
			t.Fatalf("limit %d: %d tags %v", tc.limit, len(got), got)
		}
		if tc.pages != nil && !slices.Equal(sizes, tc.pages) {
			t.Fatalf("limit %d: pages of %v, want %v", tc.limit, sizes, tc.pages)
		}
	}
}
