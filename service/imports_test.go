package service

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"hash"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
)

// importEnv is an EXTERNAL key and what the tests import into it.
type importEnv struct {
	t   *testing.T
	f   *fixture
	key string
}

// params calls GetParametersForImport and returns the token and public key.
func (e importEnv) params(alg string) ([]byte, *rsa.PublicKey) {
	e.t.Helper()
	out, err := e.f.svc.GetParametersForImport(admin(e.t), GetParametersForImportInput{KeyId: e.key, WrappingAlgorithm: alg, WrappingKeySpec: "RSA_2048"})
	ksMust(e.t, "GetParametersForImport", err)
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		e.t.Fatalf("the wrapping public key: %v", err)
	}
	if out.KeyId != ksARN(e.key) || out.ParametersValidTo == nil ||
		!time.Time(*out.ParametersValidTo).Equal(e.f.clock.Now().Add(24*time.Hour)) {
		e.t.Fatalf("GetParametersForImport: %+v", out)
	}
	return out.ImportToken, pub.(*rsa.PublicKey)
}

// wrap wraps material under pub as a client does with RSAES-OAEP.
func wrapOAEP(t *testing.T, pub *rsa.PublicKey, h hash.Hash, material []byte) []byte {
	t.Helper()
	out, err := rsa.EncryptOAEP(h, rand.Reader, pub, material, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e importEnv) importMaterial(token, wrapped []byte, model string, validTo *EpochTime) error {
	_, err := e.f.svc.ImportKeyMaterial(admin(e.t), ImportKeyMaterialInput{KeyId: e.key, ImportToken: token,
		EncryptedKeyMaterial: wrapped, ExpirationModel: model, ValidTo: validTo})
	return err
}

func (e importEnv) describe() KeyMetadata {
	e.t.Helper()
	d, err := e.f.svc.DescribeKey(admin(e.t), KeyIDInput{KeyId: e.key})
	ksMust(e.t, "DescribeKey", err)
	return d.KeyMetadata
}

// openWithGo opens an hsmkms aes-gcm ciphertext with the material itself:
// proof that the token holds exactly what was imported.
func openWithGo(t *testing.T, material, blob []byte) []byte {
	t.Helper()
	b, err := ciphertext.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	aad, err := ciphertext.AAD(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(material)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, b.IV, b.Sealed, aad)
	if err != nil {
		t.Fatalf("Go cannot open with the imported material what the key sealed: %v", err)
	}
	return plain
}

// TestImportKeyMaterial follows a key through import as AWS KMS documents
// it: made PendingImport, material imported under a wrapping key from the
// token, used (and the material proven to be the one imported), the token
// refused a second time, the material deleted (ciphertexts fail), other
// material refused, the same material imported again (ciphertexts work).
func TestImportKeyMaterial(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	out, err := f.svc.CreateKey(ctx, CreateKeyInput{Origin: "EXTERNAL", Description: "byok"})
	ksMust(t, "CreateKey EXTERNAL", err)
	m := out.KeyMetadata
	if m.Origin != "EXTERNAL" || m.KeyState != "PendingImport" || m.Enabled || m.ExpirationModel != "" || m.CurrentKeyMaterialId != "" {
		t.Fatalf("CreateKey EXTERNAL: %+v", m)
	}
	e := importEnv{t: t, f: f, key: m.KeyId}
	_, err = f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("p")})
	ksWantErr(t, "Encrypt before the import", err, ErrInvalidState, ksARN(e.key)+" is pending import.")
	ksWantErr(t, "EnableKey before the import", f.svc.EnableKey(ctx, KeyIDInput{KeyId: e.key}), ErrInvalidState, ksARN(e.key)+" is pending import.")

	material := bytes.Repeat([]byte{0x5a}, 32)
	token, pub := e.params("RSAES_OAEP_SHA_1")
	ksMust(t, "ImportKeyMaterial", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	if m := e.describe(); m.KeyState != "Enabled" || !m.Enabled || m.ExpirationModel != "KEY_MATERIAL_DOES_NOT_EXPIRE" || m.ValidTo != nil {
		t.Fatalf("after the import: %+v", m)
	}
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("imported")})
	ksMust(t, "Encrypt", err)
	if got := openWithGo(t, material, enc.CiphertextBlob); string(got) != "imported" {
		t.Fatalf("Go opened %q", got)
	}
	ksWantErr(t, "the token again", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil), ErrInvalidImportToken, "")
	_, err = f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: e.key})
	ksWantErr(t, "RotateKeyOnDemand", err, ErrUnsupported, ksARN(e.key)+" origin is EXTERNAL which is not valid for this operation.")

	ksMust(t, "DeleteImportedKeyMaterial", f.svc.DeleteImportedKeyMaterial(ctx, KeyIDInput{KeyId: e.key}))
	if m := e.describe(); m.KeyState != "PendingImport" || m.Enabled {
		t.Fatalf("after DeleteImportedKeyMaterial: %+v", m)
	}
	_, err = f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	ksWantErr(t, "Decrypt after DeleteImportedKeyMaterial", err, ErrInvalidState, ksARN(e.key)+" is pending import.")
	ksMust(t, "DeleteImportedKeyMaterial again", f.svc.DeleteImportedKeyMaterial(ctx, KeyIDInput{KeyId: e.key}))

	token, pub = e.params("RSAES_OAEP_SHA_1")
	other := bytes.Repeat([]byte{0x11}, 32)
	ksWantErr(t, "other material", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), other), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil),
		ErrIncorrectKeyMaterial, "the key material is not the material imported into "+ksARN(e.key)+" before")
	if m := e.describe(); m.KeyState != "PendingImport" {
		t.Fatalf("after other material: %+v", m)
	}
	ksMust(t, "the same material again", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	dec, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	ksMust(t, "Decrypt after the re-import", err)
	if string(dec.Plaintext) != "imported" {
		t.Fatalf("Decrypt = %q", dec.Plaintext)
	}
}

// TestCancelDeletionWithoutMaterial: a key of imported material that has
// none (never imported, or deleted) comes back from CancelKeyDeletion
// PendingImport, not Disabled, so that EnableKey cannot make it Enabled
// with nothing on the token behind it; material imported then goes to its
// version, and the key works. (Found by review: the key became Enabled,
// Encrypt answered KMSInternalException, and an import went to a scratch
// object and was lost.)
func TestCancelDeletionWithoutMaterial(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	material := bytes.Repeat([]byte{0x3c}, 32)
	for _, tc := range []struct {
		name   string
		before func(e importEnv)
	}{
		{"never imported", func(importEnv) {}},
		{"material deleted", func(e importEnv) {
			token, pub := e.params("RSAES_OAEP_SHA_1")
			ksMust(t, "ImportKeyMaterial", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
			ksMust(t, "DeleteImportedKeyMaterial", f.svc.DeleteImportedKeyMaterial(ctx, KeyIDInput{KeyId: e.key}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := f.svc.CreateKey(ctx, CreateKeyInput{Origin: "EXTERNAL"})
			ksMust(t, "CreateKey EXTERNAL", err)
			e := importEnv{t: t, f: f, key: out.KeyMetadata.KeyId}
			tc.before(e)
			_, err = f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: e.key, PendingWindowInDays: 7})
			ksMust(t, "ScheduleKeyDeletion", err)
			_, err = f.svc.CancelKeyDeletion(ctx, KeyIDInput{KeyId: e.key})
			ksMust(t, "CancelKeyDeletion", err)
			if m := e.describe(); m.KeyState != "PendingImport" || m.Enabled {
				t.Fatalf("after CancelKeyDeletion: %s, enabled %v; want PendingImport", m.KeyState, m.Enabled)
			}
			ksWantErr(t, "EnableKey", f.svc.EnableKey(ctx, KeyIDInput{KeyId: e.key}), ErrInvalidState, ksARN(e.key)+" is pending import.")
			token, pub := e.params("RSAES_OAEP_SHA_1")
			ksMust(t, "ImportKeyMaterial", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
			enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("after")})
			ksMust(t, "Encrypt after the import", err)
			if got := openWithGo(t, material, enc.CiphertextBlob); string(got) != "after" {
				t.Fatalf("Go opened %q", got)
			}
		})
	}
}

// TestImportExpiry: material imported with KEY_MATERIAL_EXPIRES is usable
// until ValidTo, then refused at once, and deleted from the token by
// maintenance; an import token is good for 24 hours.
func TestImportExpiry(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	out, err := f.svc.CreateKey(ctx, CreateKeyInput{Origin: "EXTERNAL"})
	ksMust(t, "CreateKey", err)
	e := importEnv{t: t, f: f, key: out.KeyMetadata.KeyId}
	material := bytes.Repeat([]byte{0x33}, 32)

	token, pub := e.params("RSAES_OAEP_SHA_1")
	f.clock.Advance(24*time.Hour + time.Second)
	ksWantErr(t, "an expired import token", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil), ErrExpiredImportToken, "")

	token, pub = e.params("RSAES_OAEP_SHA_1")
	validTo := EpochTime(f.clock.Now().Add(10 * 24 * time.Hour))
	ksMust(t, "ImportKeyMaterial", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "", &validTo))
	if m := e.describe(); m.ExpirationModel != "KEY_MATERIAL_EXPIRES" || m.ValidTo == nil || !time.Time(*m.ValidTo).Equal(time.Time(validTo)) {
		t.Fatalf("after the import: %+v", m)
	}
	_, err = f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("p")})
	ksMust(t, "Encrypt before ValidTo", err)
	f.clock.Advance(10*24*time.Hour + time.Second)
	_, err = f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("p")})
	ksWantErr(t, "Encrypt after ValidTo", err, ErrInvalidState, ksARN(e.key)+" is pending import.")
	if m := e.describe(); m.KeyState != "PendingImport" {
		t.Fatalf("DescribeKey after ValidTo: %+v", m)
	}
	v := ksVersions(t, f, e.key)[0]
	ksMust(t, "RunMaintenance", f.svc.RunMaintenance(ctx))
	if has, err := f.svc.hsm.HasKey(ctx, v.ObjectID); err != nil || has {
		t.Fatalf("after maintenance the expired material is on the token: %v, %v", has, err)
	}
	token, pub = e.params("RSAES_OAEP_SHA_1")
	ksMust(t, "re-import", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	_, err = f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("p")})
	ksMust(t, "Encrypt after the re-import", err)
}

// TestImportAlgorithms imports with each wrapping algorithm the token
// unwraps with, and sees the others refused as unsupported before any
// material is sent; HMAC keys import as symmetric ones do.
func TestImportAlgorithms(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	for _, alg := range []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"} {
		t.Run(alg, func(t *testing.T) {
			out, err := f.svc.CreateKey(ctx, CreateKeyInput{Origin: "EXTERNAL", KeySpec: "HMAC_384"})
			ksMust(t, "CreateKey HMAC_384 EXTERNAL", err)
			e := importEnv{t: t, f: f, key: out.KeyMetadata.KeyId}
			p, err := f.svc.GetParametersForImport(ctx, GetParametersForImportInput{KeyId: e.key, WrappingAlgorithm: alg, WrappingKeySpec: "RSA_3072"})
			if err != nil {
				// Only a token that cannot unwrap with SHA-256 (SoftHSM2
				// 2.6.1) refuses, and only the SHA-256 algorithms.
				if !strings.HasSuffix(alg, "SHA_256") {
					t.Fatalf("GetParametersForImport(%s): %v", alg, err)
				}
				ksWantErr(t, alg, err, ErrUnsupported, "")
				return
			}
			pub, _ := x509.ParsePKIXPublicKey(p.PublicKey)
			material := bytes.Repeat([]byte{0x77}, 48)
			var h hash.Hash = sha1.New()
			if strings.HasSuffix(alg, "SHA_256") {
				h = sha256.New()
			}
			var wrapped []byte
			if strings.HasPrefix(alg, "RSA_AES") {
				aesKey := bytes.Repeat([]byte{0x42}, 32)
				wrapped = append(wrapOAEP(t, pub.(*rsa.PublicKey), h, aesKey), goKWP(t, aesKey, material)...)
			} else {
				wrapped = wrapOAEP(t, pub.(*rsa.PublicKey), h, material)
			}
			ksMust(t, "ImportKeyMaterial", e.importMaterial(p.ImportToken, wrapped, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
			mac, err := f.svc.GenerateMac(ctx, GenerateMacInput{KeyId: e.key, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_384"})
			ksMust(t, "GenerateMac", err)
			want := hmac.New(sha512.New384, material)
			want.Write([]byte("m"))
			if !bytes.Equal(mac.Mac, want.Sum(nil)) {
				t.Fatal("the imported HMAC key's MAC is not Go's under the material")
			}
		})
	}
}

// goKWP is RFC 5649 for the test, through the hsm package's reference
// being test-only: AES key wrap with padding, from the RFC.
func goKWP(t *testing.T, kek, p []byte) []byte {
	t.Helper()
	b, _ := aes.NewCipher(kek)
	aiv := []byte{0xA6, 0x59, 0x59, 0xA6, 0, 0, 0, byte(len(p))}
	r := append(bytes.Clone(p), make([]byte, (8-len(p)%8)%8)...)
	n := len(r) / 8
	a, buf := aiv, make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[i*8:(i+1)*8])
			b.Encrypt(buf, buf)
			x := uint64(n*j + i + 1)
			for k := 7; k >= 0; k-- {
				buf[k] ^= byte(x)
				x >>= 8
			}
			copy(a, buf[:8])
			copy(r[i*8:], buf[8:])
		}
	}
	return append(a, r...)
}

// TestImportBadRequests: every field of the import operations out of
// range, keys of the wrong origin, spec or state, and tokens of the wrong
// key or mangled, get their exact errors and change nothing.
func TestImportBadRequests(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	native := f.createKey(t, CreateKeyInput{})
	out, err := f.svc.CreateKey(ctx, CreateKeyInput{Origin: "EXTERNAL"})
	ksMust(t, "CreateKey", err)
	e := importEnv{t: t, f: f, key: out.KeyMetadata.KeyId}
	out2, err := f.svc.CreateKey(ctx, CreateKeyInput{Origin: "EXTERNAL"})
	ksMust(t, "CreateKey", err)
	otherKey := importEnv{t: t, f: f, key: out2.KeyMetadata.KeyId}

	for _, tc := range []struct {
		name string
		in   CreateKeyInput
		msg  string
	}{
		{"RSA", CreateKeyInput{Origin: "EXTERNAL", KeySpec: "RSA_2048"}, "importing key material for RSA_2048 keys is not supported: hsmkms imports SYMMETRIC_DEFAULT and HMAC key material"},
		{"ECC", CreateKeyInput{Origin: "EXTERNAL", KeySpec: "ECC_NIST_P256"}, ""},
		{"aes-kw", CreateKeyInput{Origin: "EXTERNAL", HsmkmsMechanism: "aes-kw"}, "imported key material is used with aes-gcm only, not aes-kw"},
		{"AWS_CLOUDHSM", CreateKeyInput{Origin: "AWS_CLOUDHSM"}, ""},
	} {
		_, err := f.svc.CreateKey(ctx, tc.in)
		ksWantErr(t, "CreateKey "+tc.name, err, ErrUnsupported, tc.msg)
	}
	for _, tc := range []struct {
		name string
		in   GetParametersForImportInput
		want *Error
		msg  string
	}{
		{"a key hsmkms made", GetParametersForImportInput{KeyId: native, WrappingAlgorithm: "RSAES_OAEP_SHA_1", WrappingKeySpec: "RSA_2048"}, ErrUnsupported,
			ksARN(native) + " origin is AWS_KMS which is not valid for this operation."},
		{"unknown algorithm", GetParametersForImportInput{KeyId: e.key, WrappingAlgorithm: "AES", WrappingKeySpec: "RSA_2048"}, ErrValidation,
			"1 validation error detected: Value 'AES' at 'wrappingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: " +
				"[RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, SM2PKE]"},
		{"PKCS #1 v1.5", GetParametersForImportInput{KeyId: e.key, WrappingAlgorithm: "RSAES_PKCS1_V1_5", WrappingKeySpec: "RSA_2048"}, ErrUnsupported,
			"WrappingAlgorithm RSAES_PKCS1_V1_5 is not supported; use one of RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256"},
		{"unknown spec", GetParametersForImportInput{KeyId: e.key, WrappingAlgorithm: "RSAES_OAEP_SHA_1", WrappingKeySpec: "RSA_1024"}, ErrValidation,
			"1 validation error detected: Value 'RSA_1024' at 'wrappingKeySpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, SM2]"},
		{"SM2", GetParametersForImportInput{KeyId: e.key, WrappingAlgorithm: "RSAES_OAEP_SHA_1", WrappingKeySpec: "SM2"}, ErrUnsupported, ""},
	} {
		_, err := f.svc.GetParametersForImport(ctx, tc.in)
		ksWantErr(t, "GetParametersForImport "+tc.name, err, tc.want, tc.msg)
	}
	ksWantErr(t, "DeleteImportedKeyMaterial of a key hsmkms made", f.svc.DeleteImportedKeyMaterial(ctx, KeyIDInput{KeyId: native}), ErrUnsupported, "")

	material := bytes.Repeat([]byte{0x44}, 32)
	token, pub := e.params("RSAES_OAEP_SHA_1")
	good := wrapOAEP(t, pub, sha1.New(), material)
	otherToken, _ := otherKey.params("RSAES_OAEP_SHA_1")
	past := EpochTime(f.clock.Now().Add(-time.Hour))
	far := EpochTime(f.clock.Now().Add(366 * 24 * time.Hour))
	soon := EpochTime(f.clock.Now().Add(time.Hour))
	flipped := bytes.Clone(good)
	flipped[5] ^= 1
	mangled := bytes.Clone(token)
	mangled[len(mangled)-1] ^= 1
	for _, tc := range []struct {
		name    string
		token   []byte
		wrapped []byte
		model   string
		validTo *EpochTime
		want    *Error
		msg     string
	}{
		{"no ValidTo", token, good, "", nil, ErrValidation, "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"},
		{"ValidTo past", token, good, "KEY_MATERIAL_EXPIRES", &past, ErrValidation, ""},
		{"ValidTo past 365 days", token, good, "KEY_MATERIAL_EXPIRES", &far, ErrValidation, ""},
		{"ValidTo that does not expire", token, good, "KEY_MATERIAL_DOES_NOT_EXPIRE", &soon, ErrValidation, ""},
		{"unknown model", token, good, "SOMETIMES", nil, ErrValidation, ""},
		{"token of another key", otherToken, good, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil, ErrInvalidImportToken, "the import token is for another key"},
		{"mangled token", mangled, good, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil, ErrInvalidImportToken, ""},
		{"garbage token", []byte("token"), good, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil, ErrInvalidImportToken, ""},
		{"no token", nil, good, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil, ErrValidation, ""},
		{"no material", token, nil, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil, ErrValidation, ""},
		{"flipped material", token, flipped, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil, ErrInvalidCipher, ""},
		{"16-byte material", token, wrapOAEP(t, pub, sha1.New(), material[:16]), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil, ErrIncorrectKeyMaterial, ""},
		{"material wrapped with SHA-256", token, wrapOAEP(t, pub, sha256.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil, ErrInvalidCipher, ""},
	} {
		err := e.importMaterial(tc.token, tc.wrapped, tc.model, tc.validTo)
		ksWantErr(t, "ImportKeyMaterial "+tc.name, err, tc.want, tc.msg)
	}
	if m := e.describe(); m.KeyState != "PendingImport" {
		t.Fatalf("after refused imports: %+v", m)
	}
	// The token survived the refusals: it still imports.
	ksMust(t, "ImportKeyMaterial", e.importMaterial(token, good, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	// A new GetParametersForImport replaces an outstanding one.
	t1, p1 := otherKey.params("RSAES_OAEP_SHA_1")
	_, _ = otherKey.params("RSAES_OAEP_SHA_1")
	ksWantErr(t, "a replaced token", otherKey.importMaterial(t1, wrapOAEP(t, p1, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil), ErrInvalidImportToken, "")
	var ierr *Error
	if !errors.As(e.importMaterial(token, good, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil), &ierr) {
		t.Fatal("a used token imported again")
	}
}

// failingDestroy fails DestroyKey while fail is set, as a token that
// drops its session would.
type failingDestroy struct {
	HSM
	fail atomic.Bool
}

func (h *failingDestroy) DestroyKey(ctx context.Context, id hsm.ObjectID) error {
	if h.fail.Load() {
		return errors.New("test: the token dropped the session")
	}
	return h.HSM.DestroyKey(ctx, id)
}

// TestDeletedMaterialLeftOnTheToken: DeleteImportedKeyMaterial whose
// DestroyKey fails has marked the material destroyed in the store. Its
// retry must destroy it on the token, and so must the key's deletion when
// nobody retries (found by review: both skipped a version the store said
// was destroyed, and the customer's material outlived both).
func TestDeletedMaterialLeftOnTheToken(t *testing.T) {
	var h *failingDestroy
	f := newFixture(t, "", func(c *Config) { h = &failingDestroy{HSM: c.HSM}; c.HSM = h })
	ctx := admin(t)
	material := bytes.Repeat([]byte{0x5a}, 32)
	for _, tc := range []struct {
		name   string
		settle func(e importEnv)
	}{
		{"retried", func(e importEnv) {
			ksMust(t, "DeleteImportedKeyMaterial again", f.svc.DeleteImportedKeyMaterial(ctx, KeyIDInput{KeyId: e.key}))
		}},
		{"key deleted", func(e importEnv) { deleteAfterWindow(t, f, e.key) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := f.svc.CreateKey(ctx, CreateKeyInput{Origin: "EXTERNAL"})
			ksMust(t, "CreateKey EXTERNAL", err)
			e := importEnv{t: t, f: f, key: out.KeyMetadata.KeyId}
			token, pub := e.params("RSAES_OAEP_SHA_1")
			ksMust(t, "ImportKeyMaterial", e.importMaterial(token, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
			obj := objectOf(t, f.svc, e.key, 1)
			h.fail.Store(true)
			if err := f.svc.DeleteImportedKeyMaterial(ctx, KeyIDInput{KeyId: e.key}); err == nil {
				t.Fatal("DeleteImportedKeyMaterial succeeded with a failing token")
			}
			h.fail.Store(false)
			if has, err := f.tok.HasKey(t.Context(), obj); err != nil || !has {
				t.Fatalf("HasKey = %v, %v: the failed destroy took the material after all", has, err)
			}
			tc.settle(e)
			if has, err := f.tok.HasKey(t.Context(), obj); err != nil || has {
				t.Errorf("HasKey = %v, %v; want the deleted material gone from the token", has, err)
			}
		})
	}
}
