package store

import (
	"reflect"
	"testing"
	"time"
)

// TestCloneSharesNothing fills every field of each record kind, slices and
// maps at every depth included, and checks that Clone returns an equal
// value whose slices and maps share no memory with the original. It walks
// the types by reflection, so that a slice or map added to a record (or to
// policy.Statement, which records embed) without its Clone following fails
// here rather than as a cache corrupted by a caller.
func TestCloneSharesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clone func(any) any
		zero  any
	}{
		{"Key", func(v any) any { return v.(Key).Clone() }, Key{}},
		{"Version", func(v any) any { return v.(Version).Clone() }, Version{}},
		{"Alias", func(v any) any { return v.(Alias).Clone() }, Alias{}},
		{"Principal", func(v any) any { return v.(Principal).Clone() }, Principal{}},
		{"XKSStore", func(v any) any { return v.(XKSStore).Clone() }, XKSStore{}},
		{"Grant", func(v any) any { return v.(Grant).Clone() }, Grant{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := reflect.New(reflect.TypeOf(tc.zero)).Elem()
			fill(orig)
			got := reflect.ValueOf(tc.clone(orig.Interface()))
			if !reflect.DeepEqual(got.Interface(), orig.Interface()) {
				t.Fatalf("Clone changed the record:\n got %+v\nwant %+v", got, orig)
			}
			for _, path := range shared(orig, got, tc.name) {
				t.Errorf("%s shares memory with the original", path)
			}
		})
	}
}

// fill sets v and everything it holds to non-zero values: two elements per
// slice, one entry per map.
func fill(v reflect.Value) {
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i))
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range v.Len() {
			fill(v.Index(i))
		}
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem())
		v.Set(p)
	default:
		panic("fill: no test value for a field of kind " + v.Kind().String() + ": teach fill and Clone about it")
	}
}

// shared returns the paths at which a and b, of one type, hold the same
// slice backing array or map.
func shared(a, b reflect.Value, path string) []string {
	var out []string
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		for i := range min(a.Len(), b.Len()) {
			out = append(out, shared(a.Index(i), b.Index(i), path+"[i]")...)
		}
	case reflect.Map:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		for _, k := range a.MapKeys() {
			if e := b.MapIndex(k); e.IsValid() {
				out = append(out, shared(a.MapIndex(k), e, path+"[k]")...)
			}
		}
	case reflect.Array:
		for i := range a.Len() {
			out = append(out, shared(a.Index(i), b.Index(i), path+"[i]")...)
		}
	case reflect.Pointer:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		if !a.IsNil() && !b.IsNil() {
			out = append(out, shared(a.Elem(), b.Elem(), path+".*")...)
		}
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() {
			return nil // a value; its *Location is shared by design
		}
		for i := range a.NumField() {
			if f := a.Type().Field(i); f.IsExported() {
				out = append(out, shared(a.Field(i), b.Field(i), path+"."+f.Name)...)
			}
		}
	}
	return out
}
