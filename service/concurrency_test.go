package service

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// TestConcurrentRotateEncryptDecryptAlias runs rotations of one key from
// several goroutines beside Encrypt, GenerateDataKey, Decrypt of each
// ciphertext as soon as it is made, and UpdateAlias flipping an alias
// between two keys, and expects no error; afterwards every ciphertext
// decrypts, the rotated key's versions are exactly 1..N+1 for N successful
// rotations with one version per request, and the alias and the keys'
// alias lists agree.
func TestConcurrentRotateEncryptDecryptAlias(t *testing.T) {
	const (
		rotators     = 3
		rotationsPer = 12
		encryptors   = 2
		ops          = 25
		alias        = "alias/concurrency-flip"
	)
	f := newFixture(t, "")
	ctx := admin(t)
	rot := f.createKey(t, CreateKeyInput{Description: "rotated concurrently"})
	keyA := f.createKey(t, CreateKeyInput{Description: "alias target A"})
	keyB := f.createKey(t, CreateKeyInput{Description: "alias target B"})
	if err := f.svc.CreateAlias(ctx, AliasInput{AliasName: alias, TargetKeyId: keyA}); err != nil {
		t.Fatal(err)
	}

	var (
		mu        sync.Mutex
		made      []madeCipher
		rotations atomic.Int64
		wg        sync.WaitGroup
	)
	fresh := make(chan madeCipher, encryptors*ops+ops)
	add := func(m madeCipher) {
		mu.Lock()
		made = append(made, m)
		mu.Unlock()
		fresh <- m
	}
	// versionOf reads the key and version a blob names.
	versionOf := func(blob []byte) (string, uint32, error) {
		b, err := ciphertext.Parse(blob)
		return uuid.UUID(b.KeyID).String(), b.Version, err
	}
	// keyIDOf turns a key ARN from a response into a key ID.
	keyIDOf := func(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }
	run := func(name string, n int, op func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := op(i); err != nil {
					t.Errorf("%s op %d: %v", name, i, err)
				}
			}
		}()
	}

	for g := range rotators {
		run(fmt.Sprintf("rotator %d", g), rotationsPer, func(int) error {
			_, err := f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: rot})
			if err == nil {
				rotations.Add(1)
			}
			return err
		})
	}
	for g := range encryptors {
		run(fmt.Sprintf("encryptor %d", g), ops, func(i int) error {
			target := []string{rot, alias}[i%2]
			encCtx := map[string]string{"g": fmt.Sprint(g), "i": fmt.Sprint(i)}
			plain := fmt.Appendf(nil, "encryptor %d op %d", g, i)
			out, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: target, Plaintext: plain, EncryptionContext: encCtx})
			if err != nil {
				return err
			}
			id, v, err := versionOf(out.CiphertextBlob)
			if err != nil || id != keyIDOf(out.KeyId) {
				return fmt.Errorf("blob names %s (%v), response %s", id, err, out.KeyId)
			}
			add(madeCipher{keyID: id, version: v, blob: out.CiphertextBlob, plain: plain, encCtx: encCtx})
			return nil
		})
	}
	run("data keys", ops, func(i int) error {
		target := []string{alias, rot}[i%2]
		encCtx := map[string]string{"datakey": fmt.Sprint(i)}
		out, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: target, NumberOfBytes: 32, EncryptionContext: encCtx})
		if err != nil {
			return err
		}
		id, v, err := versionOf(out.CiphertextBlob)
		if err != nil || id != keyIDOf(out.KeyId) || out.KeyMaterialId != materialID(v) {
			return fmt.Errorf("blob names %s v%d (%v), response %s %s", id, v, err, out.KeyId, out.KeyMaterialId)
		}
		add(madeCipher{keyID: id, version: v, blob: out.CiphertextBlob, plain: out.Plaintext, encCtx: encCtx})
		return nil
	})
	// Two decryptors open every ciphertext as soon as it is made.
	var decrypted atomic.Int64
	var dwg sync.WaitGroup
	for range 2 {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for m := range fresh {
				out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: m.blob, EncryptionContext: m.encCtx})
				switch {
				case err != nil:
					t.Errorf("Decrypt %s v%d: %v", m.keyID, m.version, err)
				case string(out.Plaintext) != string(m.plain) || out.KeyMaterialId != materialID(m.version):
					t.Errorf("%s v%d decrypted wrongly (%s)", m.keyID, m.version, out.KeyMaterialId)
				default:
					decrypted.Add(1)
				}
			}
		}()
	}
	run("alias flipper", ops, func(i int) error {
		return f.svc.UpdateAlias(ctx, AliasInput{AliasName: alias, TargetKeyId: []string{keyB, keyA}[i%2]})
	})
	wg.Wait()
	close(fresh)
	dwg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if want := encryptors*ops + ops; len(made) != want {
		t.Fatalf("%d ciphertexts made, want %d", len(made), want)
	}
	if d := decrypted.Load(); d != int64(len(made)) {
		t.Fatalf("the decryptors opened %d ciphertexts, want %d", d, len(made))
	}
	decryptAll(t, f, made)

	// Versions: exactly 1..N+1, each rotation request one of them.
	n := uint32(rotations.Load())
	if n != rotators*rotationsPer {
		t.Errorf("%d rotations succeeded, want %d", n, rotators*rotationsPer)
	}
	checkVersions(t, f, rot, n+1)
	var got []uint32
	for _, line := range strings.Split(strings.TrimSpace(f.audit.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		flattenAudit(rec)
		if rec["action"] == "kms:RotateKeyOnDemand" {
			v, _ := rec["key_version"].(float64)
			if rec["outcome"] != audit.Allowed || rec["key_id"] != rot {
				t.Errorf("rotation audit record %s", line)
			}
			got = append(got, uint32(v))
		}
	}
	slices.Sort(got)
	if len(got) != int(n) {
		t.Fatalf("%d rotation audit records, want %d", len(got), n)
	}
	for i, v := range got {
		if v != uint32(i+2) {
			t.Fatalf("rotation requests produced versions %v, want 2..%d once each", got, n+1)
		}
	}
	rs, err := f.svc.ListKeyRotations(ctx, ListKeyRotationsInput{KeyId: rot})
	if err != nil || len(rs.Rotations) != int(n) {
		t.Fatalf("ListKeyRotations: %d rotations, %v; want %d", len(rs.Rotations), err, n)
	}

	// The alias points at A or B, and exactly that key lists it.
	err = f.svc.store.View(t.Context(), func(tx store.Tx) error {
		a, err := tx.Alias(alias)
		if err != nil {
			return err
		}
		if a.KeyID != keyA && a.KeyID != keyB {
			t.Errorf("%s points at %s, neither A nor B", alias, a.KeyID)
		}
		for _, id := range []string{keyA, keyB} {
			k, err := tx.Key(id)
			if err != nil {
				return err
			}
			want := 0
			if id == a.KeyID {
				want = 1
			}
			if c := countOf(k.Aliases, alias); c != want {
				t.Errorf("key %s lists %s %d times (%v), want %d; the alias points at %s", id, alias, c, k.Aliases, want, a.KeyID)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// ListAliases by key agrees with the alias record.
	for _, id := range []string{keyA, keyB} {
		out, err := f.svc.ListAliases(ctx, ListAliasesInput{KeyId: id})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range out.Aliases {
			if e.TargetKeyId != id {
				t.Errorf("ListAliases(%s) lists %s, which points at %s", id, e.AliasName, e.TargetKeyId)
			}
		}
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
