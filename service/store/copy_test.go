package store

import (
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/policy"
)

// TestSameXKSStores checks that Copy's read-back finds every difference in
// an external key store that changes what it authorises, and ignores the
// revision, which a copy starts again.
func TestSameXKSStores(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	rec := func() XKSStore {
		return XKSStore{Prefix: "a/b", Revision: 4, CreatedAt: when,
			Credentials: []XKSCredential{{AccessKeyID: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", SealedSecret: []byte{1, 2}, CreatedAt: when}},
			Keys:        []XKSKey{{ExternalID: "k1", Usage: []string{"DECRYPT", "ENCRYPT"}}},
			Statements:  []policy.Statement{{Effect: "Allow", Actions: []string{"Encrypt"}, Resources: []string{"arn:aws:iam::*:role/x"}}},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*XKSStore)
		differ bool
	}{
		{"identical", func(*XKSStore) {}, false},
		{"revision", func(s *XKSStore) { s.Revision = 1 }, false},
		{"same instant elsewhere", func(s *XKSStore) { s.CreatedAt = when.In(time.FixedZone("x", 3600)) }, false},
		{"prefix", func(s *XKSStore) { s.Prefix = "a/c" }, true},
		{"created", func(s *XKSStore) { s.CreatedAt = when.Add(time.Second) }, true},
		{"credential dropped", func(s *XKSStore) { s.Credentials = nil }, true},
		{"credential ID", func(s *XKSStore) { s.Credentials[0].AccessKeyID = "Z" }, true},
		{"credential secret", func(s *XKSStore) { s.Credentials[0].SealedSecret[1] = 9 }, true},
		{"credential created", func(s *XKSStore) { s.Credentials[0].CreatedAt = when.Add(time.Second) }, true},
		{"key dropped", func(s *XKSStore) { s.Keys = nil }, true},
		{"key ID", func(s *XKSStore) { s.Keys[0].ExternalID = "k2" }, true},
		{"key usage", func(s *XKSStore) { s.Keys[0].Usage = s.Keys[0].Usage[:1] }, true},
		{"statements dropped", func(s *XKSStore) { s.Statements = nil }, true},
		{"statement effect", func(s *XKSStore) { s.Statements[0].Effect = "Deny" }, true},
		{"statement action", func(s *XKSStore) { s.Statements[0].Actions[0] = "Decrypt" }, true},
		{"statement resource", func(s *XKSStore) { s.Statements[0].Resources[0] = "*" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := rec()
			tc.change(&b)
			err := same(&snapshot{xksStores: []XKSStore{rec()}}, &snapshot{xksStores: []XKSStore{b}})
			if differ := err != nil; differ != tc.differ {
				t.Errorf("same = %v, want a difference: %v", err, tc.differ)
			}
		})
	}
}
