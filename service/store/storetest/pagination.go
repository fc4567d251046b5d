package storetest

import (
	"testing"

	"github.com/hsmkms/hsmkms/service/store"
)

func testPagination(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Keys", func(t *testing.T) { paginate(t, open, keyKind) })
	t.Run("Aliases", func(t *testing.T) { paginate(t, open, aliasKind) })
	t.Run("Principals", func(t *testing.T) { paginate(t, open, principalKind) })
	t.Run("XKSStores", func(t *testing.T) { paginate(t, open, xksKind) })
	t.Run("Grants", func(t *testing.T) { paginate(t, open, grantKind) })
}

// paginate checks a kind's list: byte order of identities, after, limit,
// page walks and empty (non-nil) results.
func paginate[T any](t *testing.T, open func(t *testing.T) store.Store, k kind[T]) {
	s := open(t)
	if got := list(t, s, k, "", 0); got == nil || len(got) != 0 {
		t.Errorf("list of an empty store = %#v, want an empty slice", got)
	}
	p := k.prefix
	sorted := []string{p + "B", p + "a", p + "a/b", p + "aa", p + "b", p + "c"}
	update(t, s, func(tx store.Tx) error {
		for _, i := range []int{4, 1, 5, 0, 3, 2} {
			if err := k.create(tx, k.make(sorted[i], i)); err != nil {
				return err
			}
		}
		return nil
	})
	for i, rec := range list(t, s, k, "", 0) {
		same(t, "listed record", rec, k.make(sorted[i], i), k.norm)
	}
	for _, tc := range []struct {
		name  string
		after string
		limit int
		want  []string
	}{
		{"all", "", 0, sorted},
		{"negative limit", "", -1, sorted},
		{"limit", "", 2, sorted[:2]},
		{"limit above count", "", 100, sorted},
		{"after present", p + "a", 0, sorted[2:]},
		{"after present, limit", p + "a", 2, sorted[2:4]},
		{"after absent", p + "a0", 0, sorted[3:]},
		{"after first", p + "B", 1, sorted[1:2]},
		{"before first", p + "A", 1, sorted[:1]},
		{"after last", p + "c", 0, []string{}},
		{"after everything", p + "zzz", 3, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := list(t, s, k, tc.after, tc.limit)
			if got == nil {
				t.Errorf("list(%q, %d) = nil, want an empty slice", tc.after, tc.limit)
			}
			same(t, "list ids", ids(k, got), tc.want, func(s []string) []string { return s })
		})
	}
	for limit := 1; limit <= len(sorted)+1; limit++ {
		var walked []string
		for after, pages := "", 0; pages <= len(sorted)+1; pages++ {
			page := ids(k, list(t, s, k, after, limit))
			if len(page) > limit {
				t.Fatalf("page of %d records with limit %d", len(page), limit)
			}
			if len(page) == 0 {
				break
			}
			walked = append(walked, page...)
			after = page[len(page)-1]
		}
		same(t, "page walk", walked, sorted, func(s []string) []string { return s })
	}
}

// list runs k.list in its own View.
func list[T any](t *testing.T, s store.Store, k kind[T], after string, limit int) []T {
	t.Helper()
	var out []T
	view(t, s, func(tx store.Tx) (err error) {
		out, err = k.list(tx, after, limit)
		return err
	})
	return out
}

func ids[T any](k kind[T], recs []T) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, k.id(r))
	}
	return out
}
