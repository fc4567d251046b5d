package storetest

import (
	"bytes"
	"context"
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

func testSettings(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		putSetting(t, s, "a", []byte("1"))
		err := s.View(context.Background(), func(tx store.Tx) error {
			_, err := tx.Setting("b")
			return err
		})
		wantErr(t, "Setting(missing)", err, store.ErrNotFound)
	})
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"text", []byte("schema-1")},
		{"binary", []byte{0, 255, 0, 1}},
		{"empty", []byte{}},
	} {
		t.Run("PutGet/"+tc.name, func(t *testing.T) {
			s := open(t)
			putSetting(t, s, "other", []byte("x"))
			putSetting(t, s, "name", tc.value)
			checkSetting(t, s, "name", tc.value)
			checkSetting(t, s, "other", []byte("x"))
		})
	}
	t.Run("All", func(t *testing.T) {
		s := open(t)
		var got map[string][]byte
		view(t, s, func(tx store.Tx) (err error) {
			got, err = tx.Settings()
			return err
		})
		if len(got) != 0 {
			t.Errorf("Settings of an empty store = %q, want none", got)
		}
		want := map[string][]byte{"a": []byte("1"), "b/c": {0, 255}, "empty": {}}
		for name, v := range want {
			putSetting(t, s, name, v)
		}
		view(t, s, func(tx store.Tx) (err error) {
			got, err = tx.Settings()
			return err
		})
		if len(got) != len(want) {
			t.Errorf("Settings = %q, want %q", got, want)
		}
		for name, v := range want {
			if !bytes.Equal(got[name], v) {
				t.Errorf("Settings()[%q] = %q, want %q", name, got[name], v)
			}
		}
	})
	t.Run("Replace", func(t *testing.T) {
		s := open(t)
		putSetting(t, s, "name", []byte("first value"))
		putSetting(t, s, "name", []byte("2"))
		checkSetting(t, s, "name", []byte("2"))
	})
}

func putSetting(t *testing.T, s store.Store, name string, value []byte) {
	t.Helper()
	update(t, s, func(tx store.Tx) error { return tx.PutSetting(name, value) })
}

// checkSetting fails unless the setting holds want.
func checkSetting(t *testing.T, s store.Store, name string, want []byte) {
	t.Helper()
	var got []byte
	view(t, s, func(tx store.Tx) (err error) {
		got, err = tx.Setting(name)
		return err
	})
	if !bytes.Equal(got, want) {
		t.Errorf("Setting(%q) = %q, want %q", name, got, want)
	}
}
