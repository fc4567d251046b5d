package service

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
)

// TestHMACKeys proves, for every HMAC key spec, that CreateKey makes a
// GENERATE_VERIFY_MAC key that DescribeKey shows with its one MacAlgorithm
// and no other algorithms, that GenerateMac gives a MAC of the hash's
// length that VerifyMac accepts, that another message, a flipped bit or
// another key's MAC is KMSInvalidMacException, and that such keys neither
// rotate nor have a public key.
func TestHMACKeys(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	specs := []struct {
		spec, alg string
		size      int
	}{
		{"HMAC_224", "HMAC_SHA_224", 28},
		{"HMAC_256", "HMAC_SHA_256", 32},
		{"HMAC_384", "HMAC_SHA_384", 48},
		{"HMAC_512", "HMAC_SHA_512", 64},
	}
	other := f.createKey(t, CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC"})
	for _, sp := range specs {
		t.Run(sp.spec, func(t *testing.T) {
			id := f.createKey(t, CreateKeyInput{KeySpec: sp.spec, KeyUsage: "GENERATE_VERIFY_MAC"})
			d, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: id})
			ksMust(t, "DescribeKey", err)
			m := d.KeyMetadata
			if m.KeySpec != sp.spec || m.KeyUsage != UsageMAC || !slices.Equal(m.MacAlgorithms, []string{sp.alg}) ||
				m.EncryptionAlgorithms != nil || m.SigningAlgorithms != nil || m.HsmkmsMechanism != "" {
				t.Fatalf("DescribeKey: %+v", m)
			}
			msg := []byte("a message to authenticate")
			out, err := f.svc.GenerateMac(ctx, GenerateMacInput{KeyId: id, Message: msg, MacAlgorithm: sp.alg})
			ksMust(t, "GenerateMac", err)
			if len(out.Mac) != sp.size || out.MacAlgorithm != sp.alg || out.KeyId != ksARN(id) {
				t.Fatalf("GenerateMac: %d-byte MAC, %+v", len(out.Mac), out)
			}
			again, err := f.svc.GenerateMac(ctx, GenerateMacInput{KeyId: id, Message: msg, MacAlgorithm: sp.alg})
			ksMust(t, "GenerateMac", err)
			if !bytes.Equal(again.Mac, out.Mac) {
				t.Fatal("two MACs of one message differ")
			}
			v, err := f.svc.VerifyMac(ctx, VerifyMacInput{KeyId: id, Message: msg, Mac: out.Mac, MacAlgorithm: sp.alg})
			ksMust(t, "VerifyMac", err)
			if !v.MacValid || v.KeyId != ksARN(id) || v.MacAlgorithm != sp.alg {
				t.Fatalf("VerifyMac: %+v", v)
			}
			flipped := bytes.Clone(out.Mac)
			flipped[3] ^= 0x10
			for name, in := range map[string]VerifyMacInput{
				"other message": {KeyId: id, Message: []byte("another message"), Mac: out.Mac, MacAlgorithm: sp.alg},
				"flipped bit":   {KeyId: id, Message: msg, Mac: flipped, MacAlgorithm: sp.alg},
				"short":         {KeyId: id, Message: msg, Mac: out.Mac[:sp.size-1], MacAlgorithm: sp.alg},
			} {
				_, err := f.svc.VerifyMac(ctx, in)
				ksWantErr(t, name, err, ErrInvalidMac, "the MAC is not valid for the message under "+ksARN(id))
			}
			if sp.spec == "HMAC_256" {
				_, err := f.svc.VerifyMac(ctx, VerifyMacInput{KeyId: other, Message: msg, Mac: out.Mac, MacAlgorithm: sp.alg})
				ksWantErr(t, "another key", err, ErrInvalidMac, "")
			}
			_, err = f.svc.GetPublicKey(ctx, KeyIDInput{KeyId: id})
			ksWantErr(t, "GetPublicKey", err, ErrUnsupported, ksARN(id)+" is a "+sp.spec+" key; it has no public key")
			_, err = f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: id})
			ksWantErr(t, "RotateKeyOnDemand", err, ErrUnsupported, ksARN(id)+" is a "+sp.spec+" key; only SYMMETRIC_DEFAULT keys rotate")
			st, err := f.svc.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: id})
			ksMust(t, "GetKeyRotationStatus", err)
			if st.KeyRotationEnabled {
				t.Error("an HMAC key's rotation is enabled")
			}
		})
	}
}

// TestHMACBadRequests: every field of GenerateMac and VerifyMac out of
// range, and keys of the wrong kind or state, get their exact AWS error
// type before the token is asked, and the key still works after.
func TestHMACBadRequests(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{KeySpec: "HMAC_256"})
	sym := f.createKey(t, CreateKeyInput{})
	ecc := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
	disabled := f.createKey(t, CreateKeyInput{KeySpec: "HMAC_256"})
	ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: disabled}))
	msg := []byte("m")
	mac := make([]byte, 32)
	tests := []struct {
		name string
		gen  GenerateMacInput
		want *Error
		msg  string
	}{
		{"empty message", GenerateMacInput{KeyId: id, MacAlgorithm: "HMAC_SHA_256"}, ErrValidation,
			"1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and 4096"},
		{"message of 4097", GenerateMacInput{KeyId: id, Message: make([]byte, 4097), MacAlgorithm: "HMAC_SHA_256"}, ErrValidation, ""},
		{"no algorithm", GenerateMacInput{KeyId: id, Message: msg}, ErrValidation,
			"1 validation error detected: Value null at 'macAlgorithm' failed to satisfy constraint: Member must not be null"},
		{"unknown algorithm", GenerateMacInput{KeyId: id, Message: msg, MacAlgorithm: "HMAC_MD5"}, ErrValidation,
			"1 validation error detected: Value 'HMAC_MD5' at 'macAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384, HMAC_SHA_512]"},
		{"unknown algorithm, unknown key", GenerateMacInput{KeyId: "alias/none", Message: msg, MacAlgorithm: "hmac_sha_256"}, ErrValidation,
			"1 validation error detected: Value 'hmac_sha_256' at 'macAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384, HMAC_SHA_512]"},
		{"algorithm of another spec", GenerateMacInput{KeyId: id, Message: msg, MacAlgorithm: "HMAC_SHA_512"}, ErrInvalidKeyUsage,
			"MacAlgorithm HMAC_SHA_512 is not valid for " + ksARN(id) + "; use HMAC_SHA_256"},
		{"symmetric key", GenerateMacInput{KeyId: sym, Message: msg, MacAlgorithm: "HMAC_SHA_256"}, ErrInvalidKeyUsage,
			ksARN(sym) + " key usage is ENCRYPT_DECRYPT which is not valid for this operation."},
		{"signing key", GenerateMacInput{KeyId: ecc, Message: msg, MacAlgorithm: "HMAC_SHA_256"}, ErrInvalidKeyUsage, ""},
		{"disabled key", GenerateMacInput{KeyId: disabled, Message: msg, MacAlgorithm: "HMAC_SHA_256"}, ErrDisabled, ksARN(disabled) + " is disabled."},
		{"no key", GenerateMacInput{Message: msg, MacAlgorithm: "HMAC_SHA_256"}, ErrValidation, ""},
		{"unknown key", GenerateMacInput{KeyId: "alias/none", Message: msg, MacAlgorithm: "HMAC_SHA_256"}, ErrNotFound, "Alias " + ksAliasARN("alias/none") + " is not found."},
	}
	for _, tc := range tests {
		_, err := f.svc.GenerateMac(ctx, tc.gen)
		ksWantErr(t, "GenerateMac "+tc.name, err, tc.want, tc.msg)
		_, err = f.svc.VerifyMac(ctx, VerifyMacInput{KeyId: tc.gen.KeyId, Message: tc.gen.Message, Mac: mac, MacAlgorithm: tc.gen.MacAlgorithm})
		ksWantErr(t, "VerifyMac "+tc.name, err, tc.want, tc.msg)
	}
	for name, m := range map[string][]byte{"empty": nil, "6145 bytes": make([]byte, 6145)} {
		_, err := f.svc.VerifyMac(ctx, VerifyMacInput{KeyId: id, Message: msg, Mac: m, MacAlgorithm: "HMAC_SHA_256"})
		ksWantErr(t, "VerifyMac "+name+" MAC", err, ErrValidation,
			"1 validation error detected: Value at 'mac' failed to satisfy constraint: Member must have length between 1 and 6144")
	}
	// A MAC key is for MACs only.
	_, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: msg})
	ksWantErr(t, "Encrypt", err, ErrInvalidKeyUsage, "")
	_, err = f.svc.Sign(ctx, SignInput{KeyId: id, Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
	ksWantErr(t, "Sign", err, ErrInvalidKeyUsage, "")
	out, err := f.svc.GenerateMac(ctx, GenerateMacInput{KeyId: id, Message: msg, MacAlgorithm: "HMAC_SHA_256"})
	ksMust(t, "GenerateMac after the bad requests", err)
	if _, err := f.svc.VerifyMac(ctx, VerifyMacInput{KeyId: id, Message: msg, Mac: out.Mac, MacAlgorithm: "HMAC_SHA_256"}); err != nil {
		t.Fatal(err)
	}
	log := f.audit.String()
	for _, enc := range []string{base64.StdEncoding.EncodeToString(out.Mac), hex.EncodeToString(out.Mac)} {
		if strings.Contains(log, enc) {
			t.Error("a MAC is in the audit log")
		}
	}
}
