// Package storetest owns the conformance suite that every store.Store
// implementation runs: Run checks each Tx method, the error sentinels, the
// compare-and-set on keys and external key stores, pagination,
// transactions, copy isolation and store.Copy.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call; it should close the store in t.Cleanup and tolerate the
// store.ErrClosed that a store closed by the suite returns there.
//
// Times in records are compared as instants at microsecond precision, and
// nil and empty maps and slices are treated alike; everything else must
// round-trip exactly. Lists must be empty, not nil, when nothing matches.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Keys", func(t *testing.T) { testKeys(t, open) })
	t.Run("KeyCAS", func(t *testing.T) { testKeyCAS(t, open) })
	t.Run("Versions", func(t *testing.T) { testVersions(t, open) })
	t.Run("Aliases", func(t *testing.T) { testNamed(t, open, aliasKind) })
	t.Run("Principals", func(t *testing.T) { testNamed(t, open, principalKind) })
	t.Run("XKSStores", func(t *testing.T) { testXKSStores(t, open) })
	t.Run("Grants", func(t *testing.T) { testGrants(t, open) })
	t.Run("Pagination", func(t *testing.T) { testPagination(t, open) })
	t.Run("Settings", func(t *testing.T) { testSettings(t, open) })
	t.Run("Transactions", func(t *testing.T) { testTransactions(t, open) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, open) })
	t.Run("Context", func(t *testing.T) { testContext(t, open) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, open) })
}

// errSentinel is returned by transaction functions that must roll back.
var errSentinel = errors.New("storetest: roll back")

// base is a fixed instant at microsecond precision, which SQL stores keep.
var base = time.Date(2025, 3, 4, 5, 6, 7, 891011000, time.UTC)

func at(days int) time.Time { return base.AddDate(0, 0, days) }

// update runs fn in s.Update and fails the test on error.
func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// view runs fn in s.View and fails the test on error.
func view(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// wantErr fails unless errors.Is(err, want); want nil means success.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

// mustKey reads a key in its own View.
func mustKey(t *testing.T, s store.Store, id string) store.Key {
	t.Helper()
	var k store.Key
	view(t, s, func(tx store.Tx) (err error) {
		k, err = tx.Key(id)
		return err
	})
	return k
}

// createKey creates k in its own Update and returns it as stored.
func createKey(t *testing.T, s store.Store, k store.Key) store.Key {
	t.Helper()
	update(t, s, func(tx store.Tx) (err error) {
		k.Revision, err = tx.PutKey(k)
		return err
	})
	return k
}

// newKey is a key with every field set; variant changes the mutable ones.
func newKey(id string, variant int) store.Key {
	k := store.Key{
		ID: id, Spec: "SYMMETRIC_DEFAULT", Usage: "ENCRYPT_DECRYPT", Mechanism: "aes-gcm",
		Description: "key " + id, Tags: map[string]string{"team": "a", "v": string(rune('0' + variant))},
		State: store.KeyEnabled, CreatedAt: at(0), CurrentVersion: uint32(variant + 1), LatestVersion: uint32(variant + 2),
		DeletionDate: at(30 + variant), DeletedAt: at(60), RotationEnabled: variant%2 == 0,
		RotationPeriodDays: 365 + variant, NextRotation: at(365 + variant),
	}
	if variant%2 == 1 {
		// An imported key with an outstanding import.
		k.Origin, k.ExpirationModel, k.ValidTo = "EXTERNAL", "KEY_MATERIAL_EXPIRES", at(90+variant)
		k.KeyCheck = []byte{1, 2, byte(variant)}
		k.Import = &store.ImportParams{WrappingKey: [16]byte{9, byte(variant)}, WrappingSpec: "RSA_2048",
			Algorithm: "RSAES_OAEP_SHA_1", TokenHash: []byte{7, 7, byte(variant)}, ValidTo: at(1 + variant)}
	}
	return k
}

// newVersion is a version with every field set.
func newVersion(keyID string, number uint32, variant int) store.Version {
	v := store.Version{
		KeyID: keyID, Number: number, State: store.VersionPending, CreatedAt: at(int(number % 1000)),
		RotationType: "ON_DEMAND", SealsReserved: uint64(variant) << 32,
		Owner: fmt.Sprintf("replica-%d", variant), LeaseUntil: at(2 + variant),
	}
	for i := range v.ObjectID {
		v.ObjectID[i] = byte(int(number) + i + variant)
	}
	return v
}

// newAlias is an alias; variant changes its target.
func newAlias(name string, variant int) store.Alias {
	return store.Alias{Name: name, KeyID: "key-" + string(rune('a'+variant)), CreatedAt: at(1), UpdatedAt: at(2 + variant)}
}

// newPrincipal is a principal with statements; variant changes them.
func newPrincipal(id string, variant int) store.Principal {
	return store.Principal{
		AccessKeyID: id, Name: "p-" + id, SealedSecret: []byte{1, 2, 3, byte(variant)}, CreatedAt: at(3),
		Statements: []policy.Statement{
			{Effect: "Allow", Actions: []string{"kms:Encrypt", "kms:Decrypt"}, Resources: []string{"*"}},
			{Effect: "Deny", Actions: []string{"kms:*"}, Resources: []string{"alias/x" + string(rune('0'+variant))}},
		},
	}
}
