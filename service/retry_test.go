package service

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

// errRolledBack ends the first run of a transaction that rerunStore runs
// twice.
var errRolledBack = errors.New("test: the first run of the transaction is rolled back")

// rerunStore runs every Update's function twice: once to its end and then
// rolled back, and again to commit. The PostgreSQL store does this on a
// serialization failure (40001), which concurrent writers get routinely, so
// a function must be safe to run again: no state carried from the first
// run, no token call or other effect outside the transaction that the
// rollback does not undo.
type rerunStore struct{ store.Store }

func (s rerunStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := runRolledBack(ctx, s.Store, fn); err != nil {
		return err
	}
	return s.Store.Update(ctx, fn)
}

// runRolledBack runs fn in a transaction of st to its end and rolls it
// back; it returns fn's own error, if any.
func runRolledBack(ctx context.Context, st store.Store, fn func(store.Tx) error) error {
	err := st.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errRolledBack
	})
	if errors.Is(err, errRolledBack) {
		return nil
	}
	return err
}

// rerunUpdates is set by HSMKMS_TEST_RERUN_UPDATES: make test runs this
// package's tests once more with every fixture's store a rerunStore.
var rerunUpdates = os.Getenv("HSMKMS_TEST_RERUN_UPDATES") != ""

// TestCreateKeyRerunUpdate: CreateKey succeeds when its first transaction
// runs twice (found by review: the first run's revision made the second's
// PutKey a replacement of a record that was not there, and on PostgreSQL
// one to three of 80 concurrent CreateKey calls failed).
func TestCreateKeyRerunUpdate(t *testing.T) {
	f := newFixture(t, "", func(c *Config) { c.Store = rerunStore{c.Store} })
	out, err := f.svc.CreateKey(admin(t), CreateKeyInput{})
	if err != nil {
		t.Fatalf("CreateKey whose transactions each ran twice: %v", err)
	}
	ct, err := f.svc.Encrypt(admin(t), EncryptInput{KeyId: out.KeyMetadata.KeyId, Plaintext: []byte("p")})
	ksMust(t, "Encrypt", err)
	_, err = f.svc.Decrypt(admin(t), DecryptInput{CiphertextBlob: ct.CiphertextBlob})
	ksMust(t, "Decrypt", err)
}
