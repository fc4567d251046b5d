package service

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// close shuts the fixture's Service, store and token down now, so that a
// new fixture can open the module again in this process (one Module per
// process). The Cleanup newFixture registered closes them again later,
// which is harmless.
func (f *fixture) close() {
	f.svc.Close()
	_ = f.svc.store.Close()
	_ = f.tok.Close()
}

// madeCipher is a ciphertext a test made and what it must decrypt to.
type madeCipher struct {
	keyID   string
	version uint32
	blob    []byte
	plain   []byte
	encCtx  map[string]string
}

// checkBlob checks that blob names keyID and version.
func checkBlob(t testing.TB, blob []byte, keyID string, version uint32) {
	t.Helper()
	b, err := ciphertext.Parse(blob)
	if err != nil {
		t.Fatalf("ciphertext.Parse: %v", err)
	}
	if got := uuid.UUID(b.KeyID).String(); got != keyID || b.Version != version {
		t.Fatalf("blob names %s v%d, want %s v%d", got, b.Version, keyID, version)
	}
}

// decryptAll decrypts every ciphertext with f's Service and checks the
// plaintext, the key and the version each names.
func decryptAll(t testing.TB, f *fixture, made []madeCipher) {
	t.Helper()
	ctx := admin(t)
	for i, m := range made {
		out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: m.blob, EncryptionContext: m.encCtx})
		if err != nil {
			t.Fatalf("ciphertext %d (%s v%d): Decrypt: %v", i, m.keyID, m.version, err)
		}
		if !bytes.Equal(out.Plaintext, m.plain) {
			t.Fatalf("ciphertext %d (%s v%d): wrong plaintext", i, m.keyID, m.version)
		}
		if out.KeyId != f.svc.keyARN(m.keyID) || out.KeyMaterialId != materialID(m.version) {
			t.Fatalf("ciphertext %d: Decrypt says %s %s, want %s v%d", i, out.KeyId, out.KeyMaterialId, m.keyID, m.version)
		}
	}
}

// checkVersions reads a key and its versions from the store and checks
// that the versions are exactly 1..want, all active, the last current.
func checkVersions(t testing.TB, f *fixture, keyID string, want uint32) []store.Version {
	t.Helper()
	var k store.Key
	var vs []store.Version
	err := f.svc.store.View(t.Context(), func(tx store.Tx) error {
		var err error
		if k, err = tx.Key(keyID); err != nil {
			return err
		}
		vs, err = tx.Versions(keyID)
		return err
	})
	if err != nil {
		t.Fatalf("reading key %s: %v", keyID, err)
	}
	if k.LatestVersion != want || k.CurrentVersion != want {
		t.Errorf("key %s: LatestVersion %d, CurrentVersion %d, want both %d", keyID, k.LatestVersion, k.CurrentVersion, want)
	}
	if len(vs) != int(want) {
		t.Fatalf("key %s has %d versions, want %d", keyID, len(vs), want)
	}
	for i, v := range vs {
		if v.Number != uint32(i+1) || v.State != store.VersionActive {
			t.Errorf("key %s: version %d is number %d in state %s, want number %d Active", keyID, i, v.Number, v.State, i+1)
		}
	}
	return vs
}

// TestRestartDecryptsEveryCiphertext makes 1,000 ciphertexts (Encrypt and
// GenerateDataKey, an aes-gcm key with encryption contexts and an aes-kw
// key) across 20 rotations of each key, closes everything, reopens the
// same store and token, and decrypts them all; ListKeyRotations and the
// stored versions show 20 rotations numbered without gaps.
func TestRestartDecryptsEveryCiphertext(t *testing.T) {
	const rotations, total = 20, 1000
	dir := t.TempDir()
	f := newFixture(t, dir)
	ctx := admin(t)
	gcm := f.createKey(t, CreateKeyInput{Description: "restart aes-gcm"})
	kw := f.createKey(t, CreateKeyInput{Description: "restart aes-kw", HsmkmsMechanism: "aes-kw"})

	made := make([]madeCipher, 0, total)
	version := uint32(1)
	for i := range total {
		if want := uint32(i*(rotations+1)/total) + 1; want > version {
			for _, id := range []string{gcm, kw} {
				if _, err := f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: id}); err != nil {
					t.Fatalf("RotateKeyOnDemand(%s): %v", id, err)
				}
			}
			version = want
		}
		encCtx := map[string]string{"n": fmt.Sprint(i), "purpose": "restart"}
		m := madeCipher{version: version}
		switch i % 4 {
		case 0: // Encrypt under the aes-gcm key, with a context
			m.keyID, m.encCtx, m.plain = gcm, encCtx, fmt.Appendf(nil, "secret %d", i)
			out, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: gcm, Plaintext: m.plain, EncryptionContext: encCtx})
			if err != nil {
				t.Fatalf("Encrypt %d: %v", i, err)
			}
			m.blob = out.CiphertextBlob
		case 1: // GenerateDataKey under the aes-gcm key, with a context
			m.keyID, m.encCtx = gcm, encCtx
			out, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: gcm, KeySpec: "AES_256", EncryptionContext: encCtx})
			if err != nil {
				t.Fatalf("GenerateDataKey %d: %v", i, err)
			}
			m.blob, m.plain = out.CiphertextBlob, out.Plaintext
		case 2: // GenerateDataKey under the aes-kw key: wrapped, no context
			m.keyID = kw
			out, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: kw, NumberOfBytes: 16 + 8*(i%3)})
			if err != nil {
				t.Fatalf("GenerateDataKey (aes-kw) %d: %v", i, err)
			}
			m.blob, m.plain = out.CiphertextBlob, out.Plaintext
		case 3: // Encrypt under the aes-kw key: sealed with AES-GCM, context bound
			m.keyID, m.encCtx, m.plain = kw, encCtx, fmt.Appendf(nil, "kw secret %d", i)
			out, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: kw, Plaintext: m.plain, EncryptionContext: encCtx})
			if err != nil {
				t.Fatalf("Encrypt (aes-kw key) %d: %v", i, err)
			}
			m.blob = out.CiphertextBlob
		}
		checkBlob(t, m.blob, m.keyID, m.version)
		made = append(made, m)
	}
	if version != rotations+1 {
		t.Fatalf("made ciphertexts up to version %d, want %d", version, rotations+1)
	}

	f.close()
	g := newFixture(t, dir)
	rep, err := g.svc.Reconcile(ctx)
	if err != nil || rep != (ReconcileReport{}) {
		t.Fatalf("Reconcile after a clean restart = %+v, %v; want nothing to do", rep, err)
	}
	decryptAll(t, g, made)

	for _, id := range []string{gcm, kw} {
		out, err := g.svc.ListKeyRotations(ctx, ListKeyRotationsInput{KeyId: id})
		if err != nil {
			t.Fatalf("ListKeyRotations(%s): %v", id, err)
		}
		if len(out.Rotations) != rotations || out.Truncated {
			t.Fatalf("ListKeyRotations(%s): %d rotations (truncated %v), want %d", id, len(out.Rotations), out.Truncated, rotations)
		}
		for i, r := range out.Rotations {
			if r.KeyMaterialId != materialID(uint32(i+2)) || r.RotationType != rotationOnDemand || r.KeyId != id {
				t.Errorf("rotation %d of %s = %+v, want %s %s", i, id, r, materialID(uint32(i+2)), rotationOnDemand)
			}
		}
		for _, v := range checkVersions(t, g, id, rotations+1) {
			if has, err := g.tok.HasKey(t.Context(), v.ObjectID); err != nil || !has {
				t.Errorf("%s v%d: HasKey = %v, %v; want its object on the token", id, v.Number, has, err)
			}
		}
	}
}
