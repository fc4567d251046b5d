package ciphertext_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/ciphertext"
)

type pair struct{ k, v string }

// decodeCanonical reads an encoding back, failing the test on any
// structural error, and returns the pairs in encoded order.
func decodeCanonical(t *testing.T, p []byte) []pair {
	t.Helper()
	u16 := func() int {
		t.Helper()
		if len(p) < 2 {
			t.Fatalf("canonical context truncated")
		}
		n := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		return n
	}
	str := func() string {
		t.Helper()
		n := u16()
		if len(p) < n {
			t.Fatalf("canonical context truncated")
		}
		s := string(p[:n])
		p = p[n:]
		return s
	}
	count := u16()
	out := make([]pair, 0, count)
	for range count {
		k := str()
		out = append(out, pair{k, str()})
	}
	if len(p) != 0 {
		t.Fatalf("%d bytes left after the canonical context", len(p))
	}
	return out
}

func mustCanonical(t *testing.T, c ciphertext.Context) []byte {
	t.Helper()
	out, err := c.Canonical()
	if err != nil {
		t.Fatalf("Canonical(%v): %v", c, err)
	}
	return out
}

func TestCanonicalExactBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  ciphertext.Context
		want []byte
	}{
		{"nil", nil, []byte{0x00, 0x00}},
		{"empty", ciphertext.Context{}, []byte{0x00, 0x00}},
		{"k=v", ciphertext.Context{"k": "v"}, []byte{0x00, 0x01, 0x00, 0x01, 0x6b, 0x00, 0x01, 0x76}},
		{"empty value", ciphertext.Context{"k": ""}, []byte{0x00, 0x01, 0x00, 0x01, 0x6b, 0x00, 0x00}},
		{"two pairs sorted", ciphertext.Context{"purpose": "x", "app": "db"}, []byte{
			0x00, 0x02,
			0x00, 0x03, 'a', 'p', 'p', 0x00, 0x02, 'd', 'b',
			0x00, 0x07, 'p', 'u', 'r', 'p', 'o', 's', 'e', 0x00, 0x01, 'x',
		}},
		{"prefix key first", ciphertext.Context{"ab": "1", "abc": "2", "a": "3"}, []byte{
			0x00, 0x03,
			0x00, 0x01, 'a', 0x00, 0x01, '3',
			0x00, 0x02, 'a', 'b', 0x00, 0x01, '1',
			0x00, 0x03, 'a', 'b', 'c', 0x00, 0x01, '2',
		}},
		{"300-byte value", ciphertext.Context{"k": strings.Repeat("v", 300)},
			append([]byte{0x00, 0x01, 0x00, 0x01, 'k', 0x01, 0x2c}, bytes.Repeat([]byte("v"), 300)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustCanonical(t, tc.ctx); !bytes.Equal(got, tc.want) {
				t.Fatalf("Canonical() =\n% x\nwant\n% x", got, tc.want)
			}
		})
	}
}

func TestCanonicalNilEqualsEmpty(t *testing.T) {
	var nilCtx ciphertext.Context
	a, b := mustCanonical(t, nilCtx), mustCanonical(t, ciphertext.Context{})
	if !bytes.Equal(a, b) || !bytes.Equal(a, []byte{0, 0}) {
		t.Fatalf("nil → % x, empty → % x; want 00 00 for both", a, b)
	}
	blob := gcmBlob(20)
	x, err := ciphertext.AAD(blob, nil)
	if err != nil {
		t.Fatal(err)
	}
	y, err := ciphertext.AAD(blob, ciphertext.Context{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("AAD with nil context % x, with empty % x", x, y)
	}
}

// TestCanonicalNoCollisions: contexts that differ, however the bytes of
// their keys and values line up, encode differently.
func TestCanonicalNoCollisions(t *testing.T) {
	for _, tc := range []struct{ a, b ciphertext.Context }{
		{ciphertext.Context{"a": "bc"}, ciphertext.Context{"ab": "c"}},
		{ciphertext.Context{"a": "b", "c": "d"}, ciphertext.Context{"a": "bcd"}},
		{ciphertext.Context{"a": "b", "c": "d"}, ciphertext.Context{"a": "b\x00\x01c\x00\x01d"}},
		{ciphertext.Context{"k": ""}, ciphertext.Context{}},
		{ciphertext.Context{"k": "v"}, ciphertext.Context{"v": "k"}},
		{ciphertext.Context{"k": "v"}, ciphertext.Context{"k": "v "}},
		{ciphertext.Context{"k": "v"}, ciphertext.Context{"K": "v"}},
		{ciphertext.Context{"k\x00": "v"}, ciphertext.Context{"k": "\x00v"}},
	} {
		ea, eb := mustCanonical(t, tc.a), mustCanonical(t, tc.b)
		if bytes.Equal(ea, eb) {
			t.Errorf("%q and %q both encode as % x", tc.a, tc.b, ea)
		}
		// The encoding is a complete description: it decodes back to the map.
		for _, c := range []ciphertext.Context{tc.a, tc.b} {
			back := ciphertext.Context{}
			for _, p := range decodeCanonical(t, mustCanonical(t, c)) {
				back[p.k] = p.v
			}
			if len(c) != len(back) || (len(c) > 0 && !reflect.DeepEqual(back, c)) {
				t.Errorf("%q decodes back as %q", c, back)
			}
		}
	}
}

// TestCanonicalOrderIndependent builds the same context in many insertion
// orders (and with deletions in between) and expects one encoding.
func TestCanonicalOrderIndependent(t *testing.T) {
	keys := []string{"a", "ab", "abc", "b", "B", "z", "é", "日本", "k\x00", "k", "~", "0", "aws:ebs:id", "x"}
	want := func() []byte {
		c := ciphertext.Context{}
		for i, k := range keys {
			c[k] = fmt.Sprintf("v%d", i)
		}
		return mustCanonical(t, c)
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		order := rng.Perm(len(keys))
		c := make(ciphertext.Context, rng.IntN(len(keys)+1))
		for _, i := range order {
			c[keys[i]] = "junk"
		}
		for _, i := range rng.Perm(len(keys))[:rng.IntN(len(keys))] {
			delete(c, keys[i])
		}
		for _, i := range order {
			c[keys[i]] = fmt.Sprintf("v%d", i)
		}
		if got := mustCanonical(t, c); !bytes.Equal(got, want) {
			t.Fatalf("round %d, order %v: got\n% x\nwant\n% x", round, order, got, want)
		}
	}
	// The pairs come out sorted by key bytes, each with its own value.
	got := decodeCanonical(t, want)
	for i := 1; i < len(got); i++ {
		if got[i-1].k >= got[i].k {
			t.Fatalf("keys out of order: %q before %q", got[i-1].k, got[i].k)
		}
	}
	for _, p := range got {
		i := indexOf(keys, p.k)
		if i < 0 || p.v != fmt.Sprintf("v%d", i) {
			t.Fatalf("pair %q=%q is not in the context", p.k, p.v)
		}
	}
}

func indexOf(s []string, x string) int {
	for i, y := range s {
		if y == x {
			return i
		}
	}
	return -1
}

// TestCanonicalUnicodeByteOrder: keys sort by their UTF-8 bytes, not by
// code unit (UTF-16 would put U+1F600 before U+FF5E) nor by case folding.
func TestCanonicalUnicodeByteOrder(t *testing.T) {
	c := ciphertext.Context{
		"😀": "1", // F0 9F 98 80
		"～": "2", // EF BD 9E
		"é": "3", // C3 A9
		"z": "4",
		"Z": "5",
		"e": "6",
		"ÿ": "7", // C3 BF
		"€": "8", // E2 82 AC
	}
	want := []string{"Z", "e", "z", "é", "ÿ", "€", "～", "😀"}
	got := decodeCanonical(t, mustCanonical(t, c))
	var gotKeys []string
	for _, p := range got {
		gotKeys = append(gotKeys, p.k)
		if c[p.k] != p.v {
			t.Errorf("key %q has value %q, want %q", p.k, p.v, c[p.k])
		}
	}
	if !reflect.DeepEqual(gotKeys, want) {
		t.Fatalf("key order %q, want %q", gotKeys, want)
	}
}

func TestCanonicalLimits(t *testing.T) {
	many := func(pairs int, valueLen int) ciphertext.Context {
		c := ciphertext.Context{}
		for i := range pairs {
			c[fmt.Sprintf("%04d", i)] = strings.Repeat("v", valueLen)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		ctx  ciphertext.Context
		msg  string // empty: accepted
	}{
		{"8192 in one value", ciphertext.Context{"k": strings.Repeat("v", 8191)}, ""},
		{"8192 in one key", ciphertext.Context{strings.Repeat("k", 8192): ""}, ""},
		{"8192 over 1024 pairs", many(1024, 4), ""},
		{"8192 over 2048 keys", many(2048, 0), ""},
		{"8193 in one value", ciphertext.Context{"k": strings.Repeat("v", 8192)},
			"ciphertext: encryption context is 8193 bytes of keys and values, max 8192"},
		{"8193 over pairs", func() ciphertext.Context { c := many(1024, 4); c["x"] = ""; return c }(),
			"encryption context is 8193 bytes"},
		{"64 KiB value", ciphertext.Context{"k": strings.Repeat("v", 64<<10)},
			"encryption context is 65537 bytes"},
		{"empty key", ciphertext.Context{"": "v"}, "ciphertext: encryption context key must not be empty"},
		{"empty key among others", ciphertext.Context{"a": "1", "": "", "b": "2"}, "key must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.ctx.Canonical()
			if verr := tc.ctx.Validate(); fmt.Sprint(verr) != fmt.Sprint(err) {
				t.Fatalf("Validate() = %v, Canonical's error %v: they must agree", verr, err)
			}
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("Canonical(): %v", err)
				}
				if len(decodeCanonical(t, got)) != len(tc.ctx) {
					t.Fatalf("wrong pair count")
				}
				return
			}
			if err == nil {
				t.Fatalf("Canonical() = %d bytes, want an error", len(got))
			}
			if !errors.Is(err, ciphertext.ErrInvalidContext) || errors.Is(err, ciphertext.ErrInvalid) {
				t.Fatalf("Canonical() error %v: want ErrInvalidContext only", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Canonical() error %q, want it to contain %q", err, tc.msg)
			}
			if aad, aerr := ciphertext.AAD(gcmBlob(20), tc.ctx); aerr == nil || !errors.Is(aerr, ciphertext.ErrInvalidContext) || aad != nil {
				t.Fatalf("AAD() = %d bytes, %v; want ErrInvalidContext", len(aad), aerr)
			}
		})
	}
}

func TestAADLayout(t *testing.T) {
	b := kwBlob(24)
	got, err := ciphertext.AAD(b, ciphertext.Context{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("hsmkms-v1")
	want = append(want,
		0x48, 0x4b, 0x01, 0x02,
		0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
		0x00, 0x00, 0x00, 0x03,
		0x00, 0x01, 0x00, 0x01, 0x6b, 0x00, 0x01, 0x76)
	if !bytes.Equal(got, want) {
		t.Fatalf("AAD =\n% x\nwant\n% x", got, want)
	}
}

// TestAADBindsHeader: changing any header field changes the AAD; the IV and
// sealed bytes are not part of it.
func TestAADBindsHeader(t *testing.T) {
	ctx := ciphertext.Context{"purpose": "test"}
	base := gcmBlob(20)
	variants := map[string]ciphertext.Blob{"base": base}
	add := func(name string, f func(*ciphertext.Blob)) {
		b := base
		f(&b)
		variants[name] = b
	}
	add("mechanism aes-kw", func(b *ciphertext.Blob) { b.Mechanism = ciphertext.AESKW })
	add("mechanism 0", func(b *ciphertext.Blob) { b.Mechanism = 0 })
	for i := range 16 {
		add(fmt.Sprintf("key ID byte %d", i), func(b *ciphertext.Blob) { b.KeyID[i] ^= 0x01 })
	}
	add("key ID zero", func(b *ciphertext.Blob) { b.KeyID = [16]byte{} })
	for _, v := range []uint32{1, 6, 8, 7 << 8, 7 << 16, 7 << 24, 7 | 1<<8, 1<<32 - 1} {
		add(fmt.Sprintf("version %d", v), func(b *ciphertext.Blob) { b.Version = v })
	}
	seen := map[string]string{}
	for name, b := range variants {
		aad, err := ciphertext.AAD(b, ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if other, ok := seen[string(aad)]; ok {
			t.Fatalf("%s and %s have the same AAD % x", name, other, aad)
		}
		seen[string(aad)] = name
	}
	if len(seen) != 2+16+1+8+1 {
		t.Fatalf("%d distinct AADs, want %d", len(seen), 2+16+1+8+1)
	}

	// A different context also changes it.
	a1, _ := ciphertext.AAD(base, ctx)
	a2, _ := ciphertext.AAD(base, ciphertext.Context{"purpose": "Test"})
	if bytes.Equal(a1, a2) {
		t.Fatalf("AAD ignores the context")
	}

	// IV and sealed bytes do not enter the AAD: they are what it protects.
	other := base
	other.IV = seq(0x00, 12)
	other.Sealed = seq(0x99, 40)
	a3, err := ciphertext.AAD(other, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a1, a3) {
		t.Fatalf("AAD depends on the IV or sealed bytes")
	}
}
