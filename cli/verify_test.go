package cli

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/server"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
)

// TestMain lets this test binary stand in for hsmkms as verifySnapshot's
// child, as Main does.
func TestMain(m *testing.M) {
	if code, child := verifyChild(); child {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// faultingSnapshot writes a store whose leaf element for one key record
// points a gigabyte past its page: reading it faults in the memory map.
func faultingSnapshot(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), server.BoltFile)
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const victim = "00000000-0000-4000-8000-0000000000aa"
	err = st.Update(t.Context(), func(tx store.Tx) error {
		// Enough records that the keys bucket has leaf pages of its own.
		for i := range 100 {
			k := store.Key{ID: fmt.Sprintf("00000000-0000-4000-8000-%012x", 0x100+i), Spec: service.SpecSymmetric,
				State: store.KeyEnabled, CreatedAt: time.Now(), Description: strings.Repeat("d", 200)}
			if _, err := tx.PutKey(k); err != nil {
				return err
			}
		}
		_, err := tx.PutKey(store.Key{ID: victim, Spec: service.SpecSymmetric, State: store.KeyEnabled, CreatedAt: time.Now()})
		return err
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// bbolt's page: a 16-byte header (id, flags, count, overflow), then a
	// 16-byte element per entry (flags, pos, ksize, vsize), pos counted
	// from the element.
	const pageSize, leaf = 4096, 0x02
	for off := 0; off+pageSize <= len(b); off += pageSize {
		pg := b[off : off+pageSize]
		if binary.LittleEndian.Uint16(pg[8:])&leaf == 0 {
			continue
		}
		for i := range int(binary.LittleEndian.Uint16(pg[10:])) {
			e := pg[16+16*i:]
			k := 16 + 16*i + int(binary.LittleEndian.Uint32(e[4:]))
			if n := int(binary.LittleEndian.Uint32(e[8:])); k+n <= pageSize && string(pg[k:k+n]) == victim {
				binary.LittleEndian.PutUint32(e[4:], 1<<30)
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				return path
			}
		}
	}
	t.Fatal("no leaf element for the key record")
	return ""
}

// TestVerifySnapshotSurvivesAFault: a snapshot whose check faults (found by
// review: it killed backup and restore with "fatal error: fault") is
// reported damaged, and restore refuses it with its usual message; a good
// snapshot's counts come back from the child.
func TestVerifySnapshotSurvivesAFault(t *testing.T) {
	bad := faultingSnapshot(t)
	if _, err := verifySnapshot(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "the file is damaged") {
		t.Fatalf("verifySnapshot of a faulting file: %v, want it reported damaged", err)
	}
	err := New(os.Stdout, os.Stderr).Run([]string{"hsmkms", "restore", "--from", bad, "--data-dir", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "the snapshot fails its check") {
		t.Fatalf("restore of a faulting file: %v, want the check's refusal", err)
	}
	good := snapshotOf(t, []store.Key{{ID: "00000000-0000-4000-8000-000000000005", Spec: service.SpecSymmetric,
		State: store.KeyEnabled, CurrentVersion: 1, LatestVersion: 1}})
	counts, err := verifySnapshot(t.Context(), good)
	if want, werr := bolt.Verify(good); err != nil || werr != nil || counts != want {
		t.Fatalf("verifySnapshot of a good file: %+v, %v; want %+v, %v", counts, err, want, werr)
	}
}
