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
	sts := make([]policy.Statement, 0, len(p.Statements))
	for _, s := range p.Statements {
		if len(s.Actions) == 0 {
			s.Actions = nil
		}
		if len(s.Resources) == 0 {
			s.Resources = nil
		}
		sts = append(sts, s)
	}
	if len(sts) == 0 {
		sts = nil
	}
	p.Statements, p.CreatedAt = sts, normTime(p.CreatedAt)
	return p
}

// same fails unless got equals want after norm.
func same[T any](t *testing.T, what string, got, want T, norm func(T) T) {
	t.Helper()
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}
