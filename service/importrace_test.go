package service

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// beforeKeyCheck runs hook once, at the first KeyCheckValue after armed:
// after ImportKey made the object, before the import commits.
type beforeKeyCheck struct {
	HSM
	armed atomic.Bool
	hook  func()
}

func (h *beforeKeyCheck) KeyCheckValue(ctx context.Context, id hsm.ObjectID, target hsm.ImportTarget) ([]byte, error) {
	if h.armed.CompareAndSwap(true, false) {
		h.hook()
	}
	return h.HSM.KeyCheckValue(ctx, id, target)
}

// hookedStore runs before ahead of the next Update once armBefore is set,
// and answers the next committed Update with store.ErrOutcomeUnknown once
// armLost is set (a COMMIT whose answer was lost).
type hookedStore struct {
	store.Store
	armBefore atomic.Bool
	before    func()
	armLost   atomic.Bool
}

func (s *hookedStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if s.armBefore.CompareAndSwap(true, false) {
		s.before()
	}
	err := s.Store.Update(ctx, fn)
	if err == nil && s.armLost.CompareAndSwap(true, false) {
		return fmt.Errorf("%w: the answer to COMMIT was lost", store.ErrOutcomeUnknown)
	}
	return err
}

// importedKey makes an EXTERNAL key and returns its import helper.
func importedKey(t *testing.T, f *fixture) importEnv {
	t.Helper()
	out, err := f.svc.CreateKey(admin(t), CreateKeyInput{Origin: "EXTERNAL"})
	ksMust(t, "CreateKey", err)
	return importEnv{t: t, f: f, key: out.KeyMetadata.KeyId}
}

// TestReimportRaceKeepsCommittedMaterial: material imported again after
// DeleteImportedKeyMaterial by two requests with one import token (a
// client's retry of a slow request): the one that commits keeps its
// object, the other is refused and destroys only its own (found by review:
// both imported into the version's old object ID, and the loser destroyed
// the object the winner had committed, so a ciphertext returned to the
// client no longer decrypted).
func TestReimportRaceKeepsCommittedMaterial(t *testing.T) {
	var h *beforeKeyCheck
	f := newFixture(t, "", func(c *Config) { h = &beforeKeyCheck{HSM: c.HSM}; c.HSM = h })
	ctx := admin(t)
	e := importedKey(t, f)
	material := bytes.Repeat([]byte{0x42}, 32)
	tok, pub := e.params("RSAES_OAEP_SHA_1")
	ksMust(t, "first import", e.importMaterial(tok, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	ksMust(t, "DeleteImportedKeyMaterial", f.svc.DeleteImportedKeyMaterial(ctx, KeyIDInput{KeyId: e.key}))
	old := objectOf(t, f.svc, e.key, 1)

	tok, pub = e.params("RSAES_OAEP_SHA_1")
	wrapped := wrapOAEP(t, pub, sha1.New(), material)
	var blob []byte
	h.hook = func() { // the first request is between ImportKey and its commit
		ksMust(t, "the retry", e.importMaterial(tok, wrapped, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
		out, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("precious")})
		ksMust(t, "Encrypt after the retry", err)
		blob = out.CiphertextBlob
	}
	h.armed.Store(true)
	ksWantErr(t, "the first request", e.importMaterial(tok, wrapped, "KEY_MATERIAL_DOES_NOT_EXPIRE", nil), ErrInvalidImportToken, "")
	if _, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: blob}); err != nil {
		t.Fatalf("a ciphertext returned to the client no longer decrypts: %v", err)
	}
	now := objectOf(t, f.svc, e.key, 1)
	if now == old {
		t.Fatal("the material went back into the object ID of the deleted material")
	}
	for name, c := range map[string]struct {
		id   hsm.ObjectID
		want bool
	}{"the committed object": {now, true}, "the deleted material's object": {old, false}} {
		if has, err := f.tok.HasKey(t.Context(), c.id); err != nil || has != c.want {
			t.Errorf("%s on the token: %v (%v), want %v", name, has, err, c.want)
		}
	}
}

// TestImportOutcomeUnknownKeepsMaterial: an import whose commit succeeded
// but whose answer was lost does not destroy the object the store now
// names (found by review: it did, and the key said Enabled with no
// material behind it); the client's retry with new parameters succeeds and
// the key encrypts.
func TestImportOutcomeUnknownKeepsMaterial(t *testing.T) {
	var hs *hookedStore
	f := newFixture(t, "", func(c *Config) { hs = &hookedStore{Store: c.Store}; c.Store = hs })
	ctx := admin(t)
	e := importedKey(t, f)
	material := bytes.Repeat([]byte{0x43}, 32)
	tok, pub := e.params("RSAES_OAEP_SHA_1")
	hs.armLost.Store(true)
	ksWantErr(t, "the import whose answer was lost", e.importMaterial(tok, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil),
		ErrInternal, "")
	if has, err := f.tok.HasKey(t.Context(), objectOf(t, f.svc, e.key, 1)); err != nil || !has {
		t.Fatalf("the object the store names is on the token: %v (%v), want true", has, err)
	}
	tok, pub = e.params("RSAES_OAEP_SHA_1")
	ksMust(t, "the retry", e.importMaterial(tok, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	out, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("x")})
	ksMust(t, "Encrypt", err)
	_, err = f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: out.CiphertextBlob})
	ksMust(t, "Decrypt", err)
}

// TestExpiryKeepsMaterialImportedMeanwhile: the maintenance pass chose an
// expired imported key; before it deletes the material, the material is
// imported again with a later ValidTo. The pass leaves it (found by
// review: it deleted it, and the key fell back to PendingImport).
func TestExpiryKeepsMaterialImportedMeanwhile(t *testing.T) {
	var hs *hookedStore
	f := newFixture(t, "", func(c *Config) { hs = &hookedStore{Store: c.Store}; c.Store = hs })
	ctx := admin(t)
	e := importedKey(t, f)
	material := bytes.Repeat([]byte{0x44}, 32)
	tok, pub := e.params("RSAES_OAEP_SHA_1")
	soon := EpochTime(f.clock.Now().Add(time.Hour))
	ksMust(t, "import", e.importMaterial(tok, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_EXPIRES", &soon))
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("precious")})
	ksMust(t, "Encrypt", err)
	f.clock.Advance(2 * time.Hour)
	tok, pub = e.params("RSAES_OAEP_SHA_1")
	wrapped := wrapOAEP(t, pub, sha1.New(), material)
	later := EpochTime(f.clock.Now().Add(30 * 24 * time.Hour))
	hs.before = func() { // after the pass read the key, before it deletes
		ksMust(t, "import with a later ValidTo", e.importMaterial(tok, wrapped, "KEY_MATERIAL_EXPIRES", &later))
	}
	hs.armBefore.Store(true)
	ksMust(t, "expireImportedKeys", f.svc.expireImportedKeys(ctx))
	if hs.armBefore.Load() {
		t.Fatal("the pass made no store change: the race was not run")
	}
	if st := e.describe().KeyState; st != "Enabled" {
		t.Fatalf("the key is %s after the pass, want Enabled: material valid for 30 more days was deleted", st)
	}
	_, err = f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	ksMust(t, "Decrypt", err)
}

// betweenRuns runs the next Update's function twice once armed, the first
// run rolled back, and between runs between: what a rerun transaction sees
// when another replica commits in the meantime.
type betweenRuns struct {
	store.Store
	armed   atomic.Bool
	between func()
}

func (s *betweenRuns) Update(ctx context.Context, fn func(store.Tx) error) error {
	if s.armed.CompareAndSwap(true, false) {
		if err := runRolledBack(ctx, s.Store, fn); err != nil {
			return err
		}
		s.between()
	}
	return s.Store.Update(ctx, fn)
}

// TestDeletionRerunKeepsWrappingKey: a key's deletion whose transaction
// runs again after the deletion was cancelled leaves the key's import
// wrapping key alone (found by review: the first run's wrapping key was
// destroyed, and the cancelled key's import token no longer worked).
func TestDeletionRerunKeepsWrappingKey(t *testing.T) {
	var bs *betweenRuns
	f := newFixture(t, "", func(c *Config) { bs = &betweenRuns{Store: c.Store}; c.Store = bs })
	ctx := admin(t)
	e := importedKey(t, f)
	e.params("RSAES_OAEP_SHA_1")
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: e.key, PendingWindowInDays: 7})
	ksMust(t, "ScheduleKeyDeletion", err)
	f.clock.Advance(8 * 24 * time.Hour)
	bs.between = func() { // the deletion is cancelled meanwhile
		ksMust(t, "cancel", f.svc.store.Update(ctx, func(tx store.Tx) error {
			k, err := tx.Key(e.key)
			if err != nil {
				return err
			}
			k.State, k.DeletionDate = store.KeyPendingImport, time.Time{}
			_, err = tx.PutKey(k)
			return err
		}))
	}
	bs.armed.Store(true)
	ksMust(t, "deleteDueKeys", f.svc.deleteDueKeys(ctx))
	if bs.armed.Load() {
		t.Fatal("the deletion made no store change: the rerun was not run")
	}
	k := ksStoreKey(t, f, e.key)
	if k.State != store.KeyPendingImport || k.Import == nil {
		t.Fatalf("the cancelled key: %s, import parameters %v", k.State, k.Import != nil)
	}
	if has, err := f.tok.HasKey(t.Context(), k.Import.WrappingKey); err != nil || !has {
		t.Fatalf("the cancelled key's wrapping key on the token: %v (%v), want true", has, err)
	}
}

// destroyCounter counts DestroyKey calls.
type destroyCounter struct {
	HSM
	n atomic.Int32
}

func (h *destroyCounter) DestroyKey(ctx context.Context, id hsm.ObjectID) error {
	h.n.Add(1)
	return h.HSM.DestroyKey(ctx, id)
}

// TestFirstImportDestroysOnlyTheWrappingKey: a key's first import destroys
// the used wrapping key and nothing else (found by review: it destroyed
// the never-made object ID its new version was first given, and the "not
// found" re-initialised the token module).
func TestFirstImportDestroysOnlyTheWrappingKey(t *testing.T) {
	var h *destroyCounter
	f := newFixture(t, "", func(c *Config) { h = &destroyCounter{HSM: c.HSM}; c.HSM = h })
	e := importedKey(t, f)
	tok, pub := e.params("RSAES_OAEP_SHA_1")
	h.n.Store(0)
	ksMust(t, "import", e.importMaterial(tok, wrapOAEP(t, pub, sha1.New(), bytes.Repeat([]byte{0x46}, 32)), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	if n := h.n.Load(); n != 1 {
		t.Fatalf("%d objects destroyed by a first import, want 1 (the wrapping key)", n)
	}
}

// TestImportAgainHealsLostMaterial: when the object a version names is
// gone from the token (a store restored from a backup taken before the
// material was deleted and imported again names the old object), importing
// the same material again puts it back under the version, and the key's
// ciphertexts decrypt again; other material is still refused.
func TestImportAgainHealsLostMaterial(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	e := importedKey(t, f)
	material := bytes.Repeat([]byte{0x47}, 32)
	tok, pub := e.params("RSAES_OAEP_SHA_1")
	ksMust(t, "import", e.importMaterial(tok, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("precious")})
	ksMust(t, "Encrypt", err)
	lost := objectOf(t, f.svc, e.key, 1)
	ksMust(t, "destroy the version's object", f.tok.DestroyKey(t.Context(), lost))
	_, err = f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	ksWantErr(t, "Decrypt without the object", err, ErrInternal, "")

	tok, pub = e.params("RSAES_OAEP_SHA_1")
	ksWantErr(t, "import of other material", e.importMaterial(tok, wrapOAEP(t, pub, sha1.New(), bytes.Repeat([]byte{0x48}, 32)), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil),
		ErrIncorrectKeyMaterial, "")
	tok, pub = e.params("RSAES_OAEP_SHA_1")
	ksMust(t, "import of the same material", e.importMaterial(tok, wrapOAEP(t, pub, sha1.New(), material), "KEY_MATERIAL_DOES_NOT_EXPIRE", nil))
	if objectOf(t, f.svc, e.key, 1) == lost {
		t.Fatal("the version still names the lost object")
	}
	_, err = f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	ksMust(t, "Decrypt after the import", err)
}
