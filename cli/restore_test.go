package cli

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/server"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/urfave/cli/v2"
	"go.etcd.io/bbolt"
)

// snapshotOf makes an embedded store holding keys (with one active
// version each) and writes its snapshot, as the server's backup does, to a
// file whose path it returns.
func snapshotOf(t *testing.T, keys []store.Key) string {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, server.BoltFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Update(context.Background(), func(tx store.Tx) error {
		for _, k := range keys {
			if _, err := tx.PutKey(k); err != nil {
				return err
			}
			v := store.Version{KeyID: k.ID, Number: 1, State: store.VersionActive, CreatedAt: k.CreatedAt}
			if err := tx.PutVersion(v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hsmkms.backup")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := st.Snapshot(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	return path
}

// restoredKeys reads every key and its first version from the store file
// at path.
func restoredKeys(t *testing.T, path string) (map[string]store.Key, map[string]store.Version) {
	t.Helper()
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, versions := map[string]store.Key{}, map[string]store.Version{}
	err = st.View(context.Background(), func(tx store.Tx) error {
		ks, err := tx.Keys("", 0)
		if err != nil {
			return err
		}
		for _, k := range ks {
			keys[k.ID] = k
			v, err := tx.Version(k.ID, 1)
			if err != nil {
				return err
			}
			versions[k.ID] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, versions
}

// TestRestorePostponesDeletion proves that restore gives every key pending
// deletion a date at least 7 days away, so that a deletion cancelled after
// the snapshot can be cancelled again before the server destroys the key;
// a later date, the expiry of imported material and other keys stay as
// they are, and seal counts are raised in the same step.
func TestRestorePostponesDeletion(t *testing.T) {
	now := time.Now().UTC()
	week := 7 * 24 * time.Hour
	tests := []struct {
		name  string
		key   store.Key
		moved bool // the deletion date must be the restore's now + 7 days
	}{
		{"passed deletion date", store.Key{State: store.KeyPendingDeletion, DeletionDate: now.Add(-time.Hour), DeletionWindowDays: 7}, true},
		{"deletion date in a day", store.Key{State: store.KeyPendingDeletion, DeletionDate: now.Add(24 * time.Hour), DeletionWindowDays: 30}, true},
		{"deletion date in 20 days", store.Key{State: store.KeyPendingDeletion, DeletionDate: now.Add(20 * 24 * time.Hour), DeletionWindowDays: 30}, false},
		{"expired imported material", store.Key{State: store.KeyEnabled, Origin: "EXTERNAL", ExpirationModel: "KEY_MATERIAL_EXPIRES", ValidTo: now.Add(-time.Hour)}, false},
		{"enabled", store.Key{State: store.KeyEnabled}, false},
	}
	var keys []store.Key
	for i, tc := range tests {
		k := tc.key
		k.ID = "00000000-0000-4000-8000-00000000000" + string(rune('0'+i))
		k.Spec, k.Usage, k.Mechanism = service.SpecSymmetric, "ENCRYPT_DECRYPT", "aes-gcm"
		k.CreatedAt, k.CurrentVersion, k.LatestVersion = now.Add(-60*24*time.Hour), 1, 1
		tests[i].key = k
		keys = append(keys, k)
	}
	snapshot := snapshotOf(t, keys)
	data := filepath.Join(t.TempDir(), "data")

	before := time.Now()
	r := run(t, "restore", "--from", snapshot, "--data-dir", data)
	after := time.Now()
	if r.code != ExitOK {
		t.Fatalf("restore: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "2 keys pending deletion now have the deletion date ") {
		t.Errorf("restore does not report the moved deletion dates:\n%s", r.stderr)
	}

	got, versions := restoredKeys(t, filepath.Join(data, server.BoltFile))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := got[tc.key.ID]
			if k.State != tc.key.State || !k.ValidTo.Equal(tc.key.ValidTo) || k.DeletionWindowDays != tc.key.DeletionWindowDays {
				t.Errorf("restored as %+v, want %+v with only the deletion date moved", k, tc.key)
			}
			if tc.moved {
				if k.DeletionDate.Before(before.Add(week)) || k.DeletionDate.After(after.Add(week)) {
					t.Errorf("deletion date %v, want 7 days after the restore, in [%v, %v]", k.DeletionDate, before.Add(week), after.Add(week))
				}
			} else if !k.DeletionDate.Equal(tc.key.DeletionDate) {
				t.Errorf("deletion date %v, want it kept as %v", k.DeletionDate, tc.key.DeletionDate)
			}
			if v := versions[tc.key.ID]; v.SealsReserved < service.DefaultRotateAfterSeals {
				t.Errorf("seal count %d, want raised to %d", v.SealsReserved, service.DefaultRotateAfterSeals)
			}
		})
	}
}

// TestRestoreFailedAdjustment proves that a restore whose adjustment of
// the restored store fails puts nothing in place: no hsmkms.db where there
// was none, the old store untouched under its name with --replace, and no
// file left behind.
func TestRestoreFailedAdjustment(t *testing.T) {
	fault := errors.New("injected adjustment failure")
	failing := prepareFunc(func(context.Context, store.Store, time.Time) (service.RestoreAdjustments, error) {
		return service.RestoreAdjustments{}, fault
	})

	const restoredID, oldID = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
	snapshot := snapshotOf(t, []store.Key{{ID: restoredID, Spec: service.SpecSymmetric,
		State: store.KeyPendingDeletion, DeletionDate: time.Now().Add(-time.Hour), CurrentVersion: 1, LatestVersion: 1}})
	old, err := os.ReadFile(snapshotOf(t, []store.Key{{ID: oldID, Spec: service.SpecSymmetric,
		State: store.KeyEnabled, CurrentVersion: 1, LatestVersion: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		existing []byte // the store in place before the restore, if any
		args     []string
	}{
		{"into an empty data directory", nil, nil},
		{"replacing a store", old, []string{"--replace"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			dst := filepath.Join(data, server.BoltFile)
			if tc.existing != nil {
				if err := os.WriteFile(dst, tc.existing, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r := runApp(t, func(a *cli.App) { a.Metadata = map[string]any{metaPrepareRestored: failing} },
				append([]string{"restore", "--from", snapshot, "--data-dir", data}, tc.args...)...)
			if r.code == ExitOK || !strings.Contains(r.stderr, fault.Error()) {
				t.Errorf("restore: exit %d, want a failure naming %q:\n%s", r.code, fault, r.stderr)
			}
			if _, err := os.Stat(dst); tc.existing == nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s after a failed restore: %v, want none", dst, err)
			}
			if tc.existing != nil {
				// Its bytes may differ: restore opens it to see that no
				// server holds it, and bbolt writes on opening.
				if keys, _ := restoredKeys(t, dst); len(keys) != 1 || keys[oldID].ID != oldID {
					t.Errorf("%s after a failed restore holds %v, want the old store's one key", dst, slices.Collect(maps.Keys(keys)))
				}
			}
			entries, err := os.ReadDir(data)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				if e.Name() != server.BoltFile {
					names = append(names, e.Name())
				}
			}
			if len(names) > 0 {
				t.Errorf("a failed restore left %v in the data directory", slices.Sorted(slices.Values(names)))
			}
		})
	}
}

// TestRestoreReplace proves that restore --replace puts the snapshot in
// place and keeps the old store beside it, leaving no temporary file.
func TestRestoreReplace(t *testing.T) {
	const restoredID, oldID = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
	snapshot := snapshotOf(t, []store.Key{{ID: restoredID, Spec: service.SpecSymmetric, State: store.KeyEnabled, CurrentVersion: 1, LatestVersion: 1}})
	data := filepath.Dir(snapshotOf(t, []store.Key{{ID: oldID, Spec: service.SpecSymmetric, State: store.KeyEnabled, CurrentVersion: 1, LatestVersion: 1}}))
	if err := os.Remove(filepath.Join(data, "hsmkms.backup")); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "restore", "--from", snapshot, "--data-dir", data, "--replace"); r.code != ExitOK {
		t.Fatalf("restore --replace: exit %d: %s", r.code, r.stderr)
	}
	if keys, _ := restoredKeys(t, filepath.Join(data, server.BoltFile)); len(keys) != 1 || keys[restoredID].ID != restoredID {
		t.Errorf("the store in place holds %v, want the snapshot's one key", slices.Collect(maps.Keys(keys)))
	}
	kept, err := filepath.Glob(filepath.Join(data, server.BoltFile+".before-restore-*"))
	if err != nil || len(kept) != 1 {
		t.Fatalf("kept stores: %v, %v; want one", kept, err)
	}
	if keys, _ := restoredKeys(t, kept[0]); len(keys) != 1 || keys[oldID].ID != oldID {
		t.Errorf("the kept store holds %v, want the old store's one key", slices.Collect(maps.Keys(keys)))
	}
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("the data directory holds %d files, want the store and the kept one", len(entries))
	}
}

// TestRestoreChecksTheCopy: restore checks the copy it puts in place, not
// only the file it read first, which may change in between (found by
// review): restoreToTemp refuses a store bbolt opens but whose records do
// not decode, before adjusting it, and leaves nothing behind.
func TestRestoreChecksTheCopy(t *testing.T) {
	damaged := snapshotOf(t, []store.Key{{ID: "00000000-0000-4000-8000-000000000003", Spec: service.SpecSymmetric,
		State: store.KeyEnabled, CurrentVersion: 1, LatestVersion: 1}})
	db, err := bbolt.Open(damaged, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("keys")).Put([]byte("00000000-0000-4000-8000-000000000004"), []byte("{not JSON"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	called := false
	prepare := prepareFunc(func(context.Context, store.Store, time.Time) (service.RestoreAdjustments, error) {
		called = true
		return service.RestoreAdjustments{}, nil
	})
	_, _, _, err = restoreToTemp(t.Context(), dir, damaged, prepare)
	if err == nil || !strings.Contains(err.Error(), "the snapshot fails its check") {
		t.Fatalf("restoreToTemp of a damaged file: %v, want the check's refusal", err)
	}
	if called {
		t.Fatal("the damaged copy was adjusted")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}
