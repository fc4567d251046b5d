package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// normTime makes equal instants compare equal with reflect.DeepEqual.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Round(0)
}

func normKey(k store.Key) store.Key {
	if len(k.Tags) == 0 {
		k.Tags = nil
	}
	k.CreatedAt, k.DeletionDate = normTime(k.CreatedAt), normTime(k.DeletionDate)
	k.DeletedAt, k.NextRotation = normTime(k.DeletedAt), normTime(k.NextRotation)
	k.ValidTo = normTime(k.ValidTo)
	if len(k.KeyCheck) == 0 {
		k.KeyCheck = nil
	}
	if k.Import != nil {
		im := *k.Import
		im.ValidTo = normTime(im.ValidTo)
		k.Import = &im
	}
	return k
}

func normVersion(v store.Version) store.Version {
	v.CreatedAt, v.LeaseUntil = normTime(v.CreatedAt), normTime(v.LeaseUntil)
	return v
}

func normAlias(a store.Alias) store.Alias {
	a.CreatedAt, a.UpdatedAt = normTime(a.CreatedAt), normTime(a.UpdatedAt)
	return a
}

func normPrincipal(p store.Principal) store.Principal {
	if len(p.SealedSecret) == 0 {
		p.SealedSecret = nil
	}
	p.Statements, p.CreatedAt = normStatements(p.Statements), normTime(p.CreatedAt)
	return p
}

// normStatements returns a normalised copy of sts; it never changes sts.
func normStatements(sts []policy.Statement) []policy.Statement {
	if len(sts) == 0 {
		return nil
	}
	out := make([]policy.Statement, 0, len(sts))
	for _, s := range sts {
		if len(s.Actions) == 0 {
			s.Actions = nil
		}
		if len(s.Resources) == 0 {
			s.Resources = nil
		}
		out = append(out, s)
	}
	return out
}

// normXKSStore normalises a copy of s, revision left out: the tests that
// care check it on its own.
func normXKSStore(s store.XKSStore) store.XKSStore {
	s = s.Clone()
	s.Revision = 0
	s.CreatedAt = normTime(s.CreatedAt)
	for i, c := range s.Credentials {
		if len(c.SealedSecret) == 0 {
			c.SealedSecret = nil
		}
		c.CreatedAt = normTime(c.CreatedAt)
		s.Credentials[i] = c
	}
	for i := range s.Keys {
		if len(s.Keys[i].Usage) == 0 {
			s.Keys[i].Usage = nil
		}
	}
	if len(s.Credentials) == 0 {
		s.Credentials = nil
	}
	if len(s.Keys) == 0 {
		s.Keys = nil
	}
	s.Statements = normStatements(s.Statements)
	return s
}

// same fails unless got equals want after norm.
func same[T any](t *testing.T, what string, got, want T, norm func(T) T) {
	t.Helper()
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}
