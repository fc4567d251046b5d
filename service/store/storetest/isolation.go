package storetest

import (
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

// testIsolation checks that records handed in and out are copies: changing
// them, in the transaction or after it, does not change the store.
func testIsolation(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Key", func(t *testing.T) {
		s := open(t)
		want := newKey("k1", 0)
		update(t, s, func(tx store.Tx) error {
			k := newKey("k1", 0)
			rev, err := tx.PutKey(k)
			if err != nil {
				return err
			}
			want.Revision = rev
			k.Tags["team"] = "changed in"
			got, err := tx.Key("k1")
			if err == nil && got.Tags != nil {
				got.Tags["team"] = "changed out"
			}
			return err
		})
		if got := mustKey(t, s, "k1"); got.Tags != nil {
			got.Tags["v"] = "changed after"
		}
		if all := list(t, s, keyKind, "", 0); len(all) == 1 && all[0].Tags != nil {
			all[0].Tags["team"] = "changed in list"
		}
		same(t, "Key after changing copies", mustKey(t, s, "k1"), want, normKey)
	})
	t.Run("Principal", func(t *testing.T) {
		s := open(t)
		update(t, s, func(tx store.Tx) error {
			p := newPrincipal("AKIA1", 0)
			if err := tx.CreatePrincipal(p); err != nil {
				return err
			}
			p.SealedSecret[0], p.Statements[0].Actions[0] = 99, "changed in"
			got, err := tx.Principal("AKIA1")
			if err == nil {
				scribble(got)
			}
			return err
		})
		scribble(mustGet(t, s, principalKind, "AKIA1"))
		same(t, "Principal after changing copies", mustGet(t, s, principalKind, "AKIA1"), newPrincipal("AKIA1", 0), normPrincipal)
	})
	t.Run("Setting", func(t *testing.T) {
		s := open(t)
		update(t, s, func(tx store.Tx) error {
			v := []byte("value")
			err := tx.PutSetting("s", v)
			v[0] = 'X'
			got, _ := tx.Setting("s")
			if len(got) > 1 {
				got[1] = 'Y'
			}
			return err
		})
		var got []byte
		view(t, s, func(tx store.Tx) (err error) {
			got, err = tx.Setting("s")
			return err
		})
		if len(got) > 2 {
			got[2] = 'Z'
		}
		checkSetting(t, s, "s", []byte("value"))
	})
}

// scribble changes the secret and statements of p in place, as far as they
// reach.
func scribble(p store.Principal) {
	for i := range p.SealedSecret {
		p.SealedSecret[i] = 99
	}
	for _, st := range p.Statements {
		for i := range st.Actions {
			st.Actions[i] = "changed"
		}
		for i := range st.Resources {
			st.Resources[i] = "changed"
		}
	}
}
