package service

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// noGCM is the package's token as a token without AES-GCM reports itself.
type noGCM struct{ HSM }

func (n noGCM) Capabilities() hsm.Capabilities {
	c := n.HSM.(interface{ Capabilities() hsm.Capabilities }).Capabilities()
	c.AESGCM = false
	return c
}

// TestPortableKeys: a key of the portable mechanism (aes-cbc-hmac) does
// what an aes-gcm key does: data keys and Encrypt bound to their context,
// ReEncrypt both ways, rotation with every version still decrypting.
func TestPortableKeys(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	key := f.createKey(t, CreateKeyInput{HsmkmsMechanism: "aes-cbc-hmac"})
	gcmKey := f.createKey(t, CreateKeyInput{})
	d, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: key})
	if err != nil || d.KeyMetadata.HsmkmsMechanism != "aes-cbc-hmac" {
		t.Fatalf("DescribeKey = %+v, %v; want mechanism aes-cbc-hmac", d.KeyMetadata, err)
	}
	encCtx := map[string]string{"bucket": "b", "object": "o"}
	dk, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: key, KeySpec: "AES_256", EncryptionContext: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := ciphertext.Parse(dk.CiphertextBlob)
	if err != nil || blob.Mechanism != ciphertext.AESCBCHMAC || len(blob.IV) != hsm.CBCIVSize {
		t.Fatalf("the blob: %+v, %v; want mechanism aes-cbc-hmac with a 16-byte IV", blob, err)
	}
	dec, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: encCtx})
	if err != nil || !bytes.Equal(dec.Plaintext, dk.Plaintext) {
		t.Fatalf("Decrypt: %v", err)
	}
	for name, c := range map[string]map[string]string{
		"no context": nil, "another value": {"bucket": "b", "object": "x"}, "an extra pair": {"bucket": "b", "object": "o", "x": "y"},
	} {
		if _, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: c}); !errors.Is(err, ErrInvalidCipher) {
			t.Errorf("Decrypt with %s: %v, want InvalidCiphertextException", name, err)
		}
	}
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: key, Plaintext: []byte("a secret"), EncryptionContext: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	// ReEncrypt to an aes-gcm key and back.
	re, err := f.svc.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: encCtx, DestinationKeyId: gcmKey})
	if err != nil {
		t.Fatal(err)
	}
	back, err := f.svc.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: re.CiphertextBlob, DestinationKeyId: key})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := ciphertext.Parse(back.CiphertextBlob); b.Mechanism != ciphertext.AESCBCHMAC {
		t.Errorf("ReEncrypt to the portable key made a %s blob", b.Mechanism)
	}
	// Rotation: version 2 is portable too, and version 1 still decrypts.
	if _, err := f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: key}); err != nil {
		t.Fatal(err)
	}
	enc2, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: key, Plaintext: []byte("after rotation")})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := ciphertext.Parse(enc2.CiphertextBlob); b.Version != 2 || b.Mechanism != ciphertext.AESCBCHMAC {
		t.Errorf("after rotation the blob names version %d, %s", b.Version, b.Mechanism)
	}
	for name, c := range map[string][]byte{"re-encrypted back": back.CiphertextBlob, "version 2": enc2.CiphertextBlob} {
		if _, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: c}); err != nil {
			t.Errorf("Decrypt of %s: %v", name, err)
		}
	}
	if out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: encCtx}); err != nil || string(out.Plaintext) != "a secret" {
		t.Errorf("version 1 after rotation: %v", err)
	}
	if got := reserved(t, f.svc, key, 1); got == 0 {
		t.Error("portable seals are not counted in the seal budget")
	}
}

// TestPortableMechanismNotMixed: a blob relabelled from one mechanism to
// the other is an invalid ciphertext, never an internal error.
func TestPortableMechanismNotMixed(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	portable := f.createKey(t, CreateKeyInput{HsmkmsMechanism: "aes-cbc-hmac"})
	gcm := f.createKey(t, CreateKeyInput{})
	for _, tc := range []struct {
		name string
		key  string
		to   ciphertext.Mechanism
	}{
		{"aes-gcm key's blob as aes-cbc-hmac", gcm, ciphertext.AESCBCHMAC},
		{"aes-cbc-hmac key's blob as aes-gcm", portable, ciphertext.AESGCM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: tc.key, Plaintext: bytes.Repeat([]byte("x"), 64)})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := ciphertext.Parse(enc.CiphertextBlob)
			b.Mechanism = tc.to
			if tc.to == ciphertext.AESCBCHMAC {
				b.IV = make([]byte, hsm.CBCIVSize)
				b.Sealed = make([]byte, 64+hsm.MACSize)
			} else {
				b.IV = make([]byte, hsm.IVSize)
			}
			forged, err := b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: forged}); !errors.Is(err, ErrInvalidCipher) {
				t.Errorf("Decrypt: %v, want InvalidCiphertextException", err)
			}
		})
	}
}

// TestTokenWithoutGCM: on a token without AES-GCM new keys are portable by
// default, and asking for aes-gcm or aes-kw names what the token lacks.
func TestTokenWithoutGCM(t *testing.T) {
	f := newFixture(t, "", func(c *Config) { c.HSM = noGCM{c.HSM} })
	ctx := admin(t)
	key := f.createKey(t, CreateKeyInput{})
	d, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: key})
	if err != nil || d.KeyMetadata.HsmkmsMechanism != "aes-cbc-hmac" {
		t.Fatalf("the default on a token without AES-GCM: %+v, %v", d.KeyMetadata.HsmkmsMechanism, err)
	}
	if _, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: key, KeySpec: "AES_256"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"aes-gcm", "aes-kw"} {
		_, err := f.svc.CreateKey(ctx, CreateKeyInput{HsmkmsMechanism: m})
		want := "UnsupportedOperationException: the token cannot make " + m + " keys: it lacks CKM_AES_GCM encrypt and decrypt"
		if err == nil || err.Error() != want {
			t.Errorf("CreateKey(%s): %v, want %q", m, err, want)
		}
	}
}

// TestReconcileCompletesPortableVersion: a portable version whose maker
// died after the AES key and before the HMAC key is completed and
// activated, and seals and opens.
func TestReconcileCompletesPortableVersion(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	key := f.createKey(t, CreateKeyInput{HsmkmsMechanism: "aes-cbc-hmac"})
	v := putPending(t, f, key, 2, "a-process-that-crashed", time.Time{})
	if err := f.tok.CreateMasterKey(t.Context(), v.ObjectID, versionLabel(key, 2)); err != nil {
		t.Fatal(err)
	}
	r, err := f.svc.Reconcile(t.Context())
	if err != nil || r.RolledForward != 1 {
		t.Fatalf("Reconcile = %+v, %v; want one rolled forward", r, err)
	}
	if got := versionOf(t, f.svc, key, 2); got.State != store.VersionActive {
		t.Fatalf("version 2 is %s", got.State)
	}
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: key, Plaintext: []byte("v2")})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil || string(out.Plaintext) != "v2" {
		t.Fatalf("Decrypt with the completed version: %v", err)
	}
}

// TestPrincipalSecretsWithoutGCM: on a token without AES-GCM the internal
// key is of the portable mechanism, and principals' secrets seal and open
// with it.
func TestPrincipalSecretsWithoutGCM(t *testing.T) {
	f := newFixture(t, "", func(c *Config) { c.HSM = noGCM{c.HSM} })
	out, err := f.svc.CreatePrincipal(systemContext(t.Context()), CreatePrincipalInput{Name: "app",
		Statements: []policy.Statement{{Effect: "Allow", Actions: []string{"kms:Encrypt"}, Resources: []string{"*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := f.svc.internalKey(t.Context())
	if err != nil || !key.Portable {
		t.Fatalf("internal key %+v, %v; want a portable one", key, err)
	}
	// A new Service (a restart) opens the sealed secret from the store.
	cfg := f.svc.cfg
	cfg.ReplicaID, cfg.Audit, cfg.Logger = "", nil, nil
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	creds, err := svc.Credentials(t.Context(), out.AccessKeyId)
	if err != nil || creds.Secret != out.SecretAccessKey {
		t.Fatalf("Credentials after a restart: %v (secret matches: %v)", err, creds.Secret == out.SecretAccessKey)
	}
}

// TestDoctorSeesAHalfPortableVersion: an active aes-cbc-hmac version with
// its AES key but no HMAC key is reported, naming the missing part.
func TestDoctorSeesAHalfPortableVersion(t *testing.T) {
	f := newFixture(t, "")
	key := f.createKey(t, CreateKeyInput{HsmkmsMechanism: "aes-cbc-hmac"})
	// The package's token is shared by every test: only this store's
	// versions are this test's to judge.
	missing := func() []Inconsistency {
		t.Helper()
		all, err := f.svc.CheckConsistency(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var out []Inconsistency
		for _, i := range all {
			if i.Kind == "missing-object" {
				out = append(out, i)
			}
		}
		return out
	}
	if got := missing(); len(got) != 0 {
		t.Fatalf("a whole key misses %+v", got)
	}
	v := putPending(t, f, key, 2, "a-process-that-crashed", time.Time{})
	if err := f.tok.CreateMasterKey(t.Context(), v.ObjectID, versionLabel(key, 2)); err != nil {
		t.Fatal(err)
	}
	v.State = store.VersionActive
	if err := f.svc.store.Update(t.Context(), func(tx store.Tx) error { return tx.PutVersion(v) }); err != nil {
		t.Fatal(err)
	}
	if got := missing(); len(got) != 1 || got[0].Part != "hmac" || got[0].Number != 2 || got[0].KeyID != key {
		t.Fatalf("missing %+v; want version 2 of %s missing its hmac key", got, key)
	}
}
