package ciphertext_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/ciphertext"
)

// validBlob restates the version 1 format independently of the package:
// it is the oracle FuzzParse holds Parse to, so that a parser that accepts
// one byte too many (or refuses a valid blob) fails, not only one that
// panics.
func validBlob(data []byte) bool {
	const hdr = 2 + 1 + 1 + 16 + 4
	if len(data) > 6144 || len(data) < hdr || string(data[:3]) != "HK\x01" {
		return false
	}
	if binary.BigEndian.Uint32(data[20:24]) == 0 {
		return false
	}
	switch m := ciphertext.Mechanism(data[3]); m {
	case ciphertext.AESGCM:
		return len(data) >= hdr+12 && validSealedLen(m, len(data)-hdr-12)
	case ciphertext.AESKW:
		return validSealedLen(m, len(data)-hdr)
	case ciphertext.AESCBCHMAC:
		return len(data) >= hdr+16 && validSealedLen(m, len(data)-hdr-16)
	}
	return false
}

// FuzzParse: Parse never panics, accepts exactly what validBlob accepts,
// every error matches ErrInvalid, every field of a parsed blob is within
// the format's bounds, and what Parse accepts Marshal reproduces byte for
// byte.
func FuzzParse(f *testing.F) {
	for _, b := range []ciphertext.Blob{gcmBlob(17), gcmBlob(48), gcmBlob(4112), kwBlob(24), kwBlob(40), kwBlob(1032),
		cbcBlob(48), cbcBlob(64), cbcBlob(4112 + 32)} {
		enc, err := b.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		// Each valid blob one byte short and one byte long: the length
		// checks are where an off-by-one would hide.
		f.Add(enc[:len(enc)-1])
		f.Add(append(bytes.Clone(enc), 0))
	}
	for _, seed := range [][]byte{
		{},
		[]byte("HK\x01\x03"),
		header(1, 7),                                // aes-gcm header, no IV
		append(header(1, 7), seq(0, 11)...),         // aes-gcm, IV one byte short
		append(header(1, 0), seq(0, 12+17)...),      // key version 0
		append(header(2, 3), seq(0, 25)...),         // aes-kw, not a multiple of 8
		append(header(4, 1), seq(0, 40)...),         // unknown mechanism
		append(header(3, 1), seq(0, 16+47)...),      // aes-cbc-hmac, a partial block
		append([]byte("HK\x02\x01"), seq(0, 60)...), // format version 2
		append(header(1, 1), make([]byte, ciphertext.MaxBlob)...), // over MaxBlob
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The engine's slice must not be modified: work on a copy.
		in := bytes.Clone(data)
		b, err := ciphertext.Parse(in)
		if !bytes.Equal(in, data) {
			t.Fatalf("Parse modified its input")
		}
		if want := validBlob(data); (err == nil) != want {
			t.Fatalf("Parse(% x) error = %v; the format says valid = %v", data, err, want)
		}
		if err != nil {
			if !errors.Is(err, ciphertext.ErrInvalid) {
				t.Fatalf("Parse error %v does not match ErrInvalid", err)
			}
			return
		}
		// The documented bounds of a parsed blob.
		if len(data) > ciphertext.MaxBlob || b.Version < 1 || b.KeyID != [16]byte(data[4:20]) ||
			b.Version != binary.BigEndian.Uint32(data[20:24]) || !validSealedLen(b.Mechanism, len(b.Sealed)) {
			t.Fatalf("Parse accepted a blob outside the format: %d bytes, %+v", len(data), b)
		}
		if wantIV := map[ciphertext.Mechanism]int{ciphertext.AESGCM: 12, ciphertext.AESKW: 0, ciphertext.AESCBCHMAC: 16}[b.Mechanism]; len(b.IV) != wantIV {
			t.Fatalf("%v blob with a %d-byte IV", b.Mechanism, len(b.IV))
		}
		enc, err := b.Marshal()
		if err != nil {
			t.Fatalf("Marshal(Parse(x)): %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("Marshal(Parse(x)) =\n% x\nwant\n% x", enc, data)
		}
		if !bytes.Equal(b.Header(), data[:ciphertext.HeaderSize]) {
			t.Fatalf("Header() = % x, input starts % x", b.Header(), data[:ciphertext.HeaderSize])
		}
		// The blob owns its bytes.
		for i := range in {
			in[i] ^= 0xff
		}
		if again, _ := b.Marshal(); !bytes.Equal(again, data) {
			t.Fatalf("the parsed blob aliases its input")
		}
	})
}

// fuzzPairs splits text at the cut points cuts gives (each byte a segment
// length, modulo what is left) into key, value, key, value, …; the rest of
// the text is the last segment and a key without a value gets "". A key
// seen before is skipped, so that the pairs describe one map whatever the
// order they are inserted in. Two contexts cut from one text are the
// collision cases that matter: {"a":"bc"} and {"ab":"c"} are "abc" cut at
// 1 and at 2.
func fuzzPairs(text string, cuts []byte) []pair {
	segs := make([]string, 0, len(cuts)+1)
	for _, c := range cuts {
		n := int(c) % (len(text) + 1)
		segs, text = append(segs, text[:n]), text[n:]
	}
	segs = append(segs, text)
	var out []pair
	seen := map[string]bool{}
	for i := 0; i < len(segs); i += 2 {
		p := pair{k: segs[i]}
		if i+1 < len(segs) {
			p.v = segs[i+1]
		}
		if !seen[p.k] {
			seen[p.k] = true
			out = append(out, p)
		}
	}
	return out
}

// FuzzCanonical holds the encryption-context encoding to its contract:
// deterministic and independent of how the map was built; a complete
// description of the context (it decodes back to the same map, keys in
// strictly increasing byte order, so no two contexts share an encoding);
// an error matching ErrInvalidContext exactly when a key is empty or the
// keys and values exceed MaxContextBytes (pad pushes one value past the
// limit, which the fuzzer would not reach by growing its input); and AAD
// is the label, the header and this encoding.
func FuzzCanonical(f *testing.F) {
	for _, tc := range []struct {
		text  string
		cutsA []byte
		cutsB []byte
		pad   uint16
	}{
		{text: "abc", cutsA: []byte{1}, cutsB: []byte{2}},                          // {"a":"bc"} vs {"ab":"c"}
		{text: "abcd", cutsA: []byte{1, 1, 1}, cutsB: []byte{1}},                   // {"a":"b","c":"d"} vs {"a":"bcd"}
		{text: "kv", cutsA: []byte{1}, cutsB: []byte{1, 1}},                        // {"k":"v"} vs {"k":"", "v":""}
		{text: "k\x00v", cutsA: []byte{2}, cutsB: []byte{1}},                       // NUL in key vs in value
		{text: "purposexappdb", cutsA: []byte{7, 1, 3, 2}, cutsB: []byte{3, 2, 7}}, // several pairs
		{text: "", cutsA: nil, cutsB: []byte{0}},                                   // empty key
		{text: "aws:ebs:id", cutsA: []byte{10}, cutsB: []byte{4}},
		{text: "😀～é", cutsA: []byte{4, 0, 3}, cutsB: []byte{3, 0, 4}}, // UTF-8 byte order
		{text: "k", cutsA: []byte{1}, pad: 8191},                      // exactly MaxContextBytes
		{text: "k", cutsA: []byte{1}, pad: 8192},                      // one byte over
		{text: "k", cutsA: []byte{1}, pad: 65535},                     // a value past uint16 with the key
	} {
		f.Add(tc.text, tc.cutsA, tc.cutsB, tc.pad)
	}
	f.Fuzz(func(t *testing.T, text string, cutsA, cutsB []byte, pad uint16) {
		pa, pb := fuzzPairs(text, cutsA), fuzzPairs(text, cutsB)
		if len(pa) > 0 {
			pa[0].v += strings.Repeat("p", int(pad))
		}
		a := canonicalOf(t, pa)
		b := canonicalOf(t, pb)
		if a.err == nil && b.err == nil {
			ma, mb := mapOf(pa), mapOf(pb)
			if same := maps.Equal(ma, mb); same != bytes.Equal(a.enc, b.enc) {
				t.Fatalf("contexts %q and %q (equal: %v) encode as\n% x\n% x", ma, mb, same, a.enc, b.enc)
			}
		}
	})
}

type canonicalResult struct {
	enc []byte
	err error
}

func mapOf(pairs []pair) ciphertext.Context {
	c := ciphertext.Context{}
	for _, p := range pairs {
		c[p.k] = p.v
	}
	return c
}

// canonicalOf encodes the context of pairs built three ways and checks
// every single-context property; it returns the encoding.
func canonicalOf(t *testing.T, pairs []pair) canonicalResult {
	t.Helper()
	forward := mapOf(pairs)
	// Reverse insertion, and a map that held other keys first: the
	// internal layout, and so the iteration order, differs.
	backward := ciphertext.Context{}
	for i := len(pairs) - 1; i >= 0; i-- {
		backward[pairs[i].k] = pairs[i].v
	}
	churned := ciphertext.Context{}
	for i := range 64 {
		churned[string(rune('0'+i))+"\xffjunk"] = "x"
	}
	for _, p := range pairs {
		churned[p.k] = "junk"
	}
	for i := range 64 {
		delete(churned, string(rune('0'+i))+"\xffjunk")
	}
	for _, p := range pairs {
		churned[p.k] = p.v
	}

	total, emptyKey := 0, false
	for _, p := range pairs {
		total += len(p.k) + len(p.v)
		emptyKey = emptyKey || p.k == ""
	}
	wantErr := emptyKey || total > ciphertext.MaxContextBytes

	enc, err := forward.Canonical()
	if (err != nil) != wantErr {
		t.Fatalf("Canonical of %d pairs, %d bytes, empty key %v: error %v", len(pairs), total, emptyKey, err)
	}
	if verr := forward.Validate(); (verr != nil) != wantErr {
		t.Fatalf("Validate error %v, Canonical error %v", verr, err)
	}
	blob := gcmBlob(17)
	aad, aerr := ciphertext.AAD(blob, forward)
	if (aerr != nil) != wantErr {
		t.Fatalf("AAD error %v, Canonical error %v", aerr, err)
	}
	if err != nil {
		for _, e := range []error{err, forward.Validate(), aerr} {
			if !errors.Is(e, ciphertext.ErrInvalidContext) {
				t.Fatalf("error %v does not match ErrInvalidContext", e)
			}
		}
		return canonicalResult{err: err}
	}
	for range 3 { // map iteration order is random on every range
		for _, c := range []ciphertext.Context{forward, backward, churned} {
			if again, err := c.Canonical(); err != nil || !bytes.Equal(again, enc) {
				t.Fatalf("the same context encodes as\n% x\nand\n% x (%v)", enc, again, err)
			}
		}
	}
	if len(enc) != 2+4*len(pairs)+total {
		t.Fatalf("encoding of %d pairs, %d bytes is %d bytes long", len(pairs), total, len(enc))
	}
	decoded := decodeCanonical(t, enc)
	for i := 1; i < len(decoded); i++ {
		if decoded[i-1].k >= decoded[i].k { // Go compares strings by bytes
			t.Fatalf("keys out of order: %q before %q", decoded[i-1].k, decoded[i].k)
		}
	}
	if back := mapOf(decoded); len(decoded) != len(forward) || !maps.Equal(back, forward) {
		t.Fatalf("%q decodes back as %q", forward, back)
	}
	wantAAD := append(append([]byte("hsmkms-v1"), blob.Header()...), enc...)
	if !bytes.Equal(aad, wantAAD) {
		t.Fatalf("AAD =\n% x\nwant\n% x", aad, wantAAD)
	}
	return canonicalResult{enc: enc}
}
