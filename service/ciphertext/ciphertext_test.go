package ciphertext_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/ciphertext"
)

var testKeyID = [16]byte{
	0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
	0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
}

// seq returns n bytes counting up from start.
func seq(start byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = start + byte(i)
	}
	return p
}

func gcmBlob(sealed int) ciphertext.Blob {
	return ciphertext.Blob{
		Mechanism: ciphertext.AESGCM,
		KeyID:     testKeyID,
		Version:   7,
		IV:        seq(0xa0, 12),
		Sealed:    seq(0x10, sealed),
	}
}

func kwBlob(sealed int) ciphertext.Blob {
	return ciphertext.Blob{
		Mechanism: ciphertext.AESKW,
		KeyID:     testKeyID,
		Version:   3,
		Sealed:    seq(0x40, sealed),
	}
}

func cbcBlob(sealed int) ciphertext.Blob {
	return ciphertext.Blob{
		Mechanism: ciphertext.AESCBCHMAC,
		KeyID:     testKeyID,
		Version:   2,
		IV:        seq(0x20, 16),
		Sealed:    seq(0x50, sealed),
	}
}

func mustMarshal(t testing.TB, b ciphertext.Blob) []byte {
	t.Helper()
	out, err := b.Marshal()
	if err != nil {
		t.Fatalf("Marshal(%v): %v", b.Mechanism, err)
	}
	return out
}

// header is the expected header for gcmBlob/kwBlob, written out by hand.
func header(mech byte, version uint32) []byte {
	h := []byte{'H', 'K', 0x01, mech}
	h = append(h, testKeyID[:]...)
	return append(h, byte(version>>24), byte(version>>16), byte(version>>8), byte(version))
}

// validSealedLen is the sealed-length rule, restated independently of the
// package for the truncation test.
func validSealedLen(m ciphertext.Mechanism, n int) bool {
	switch m {
	case ciphertext.AESGCM:
		return n >= 17 && n <= 4112
	case ciphertext.AESKW:
		return n >= 24 && n <= 1032 && n%8 == 0
	case ciphertext.AESCBCHMAC: // whole 16-byte blocks (1 to 257) and a 32-byte MAC
		ct := n - 32
		return ct >= 16 && ct <= 4112 && ct%16 == 0
	}
	return false
}

func TestMechanismString(t *testing.T) {
	for _, tc := range []struct {
		m    ciphertext.Mechanism
		want string
	}{
		{ciphertext.AESGCM, "aes-gcm"},
		{ciphertext.AESKW, "aes-kw"},
		{0, "mechanism(0x00)"},
		{ciphertext.AESCBCHMAC, "aes-cbc-hmac"},
		{4, "mechanism(0x04)"},
		{0xff, "mechanism(0xff)"},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("Mechanism(%d).String() = %q, want %q", byte(tc.m), got, tc.want)
		}
	}
	if ciphertext.AESGCM != 1 || ciphertext.AESKW != 2 || ciphertext.AESCBCHMAC != 3 {
		t.Errorf("mechanism codes are %d, %d and %d, want 1, 2 and 3", ciphertext.AESGCM, ciphertext.AESKW, ciphertext.AESCBCHMAC)
	}
}

func TestParseMechanism(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ciphertext.Mechanism
		ok   bool
	}{
		{"aes-gcm", ciphertext.AESGCM, true},
		{"aes-kw", ciphertext.AESKW, true},
		{"", 0, false},
		{"AES-GCM", 0, false},
		{"aes_gcm", 0, false},
		{"aes-kw ", 0, false},
		{"aes-gcm\x00", 0, false},
		{"mechanism(0x03)", 0, false},
		{"aes-cbc-hmac", ciphertext.AESCBCHMAC, true},
	} {
		got, err := ciphertext.ParseMechanism(tc.in)
		if tc.ok {
			if err != nil || got != tc.want {
				t.Errorf("ParseMechanism(%q) = %v, %v; want %v, nil", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("ParseMechanism(%q).String() = %q", tc.in, got.String())
			}
			continue
		}
		if err == nil || !errors.Is(err, ciphertext.ErrUnknownMechanism) {
			t.Errorf("ParseMechanism(%q) = %v, %v; want ErrUnknownMechanism", tc.in, got, err)
		}
		if got != 0 {
			t.Errorf("ParseMechanism(%q) returned mechanism %v with an error", tc.in, got)
		}
	}
}

func TestHeaderBytes(t *testing.T) {
	if ciphertext.HeaderSize != 24 || ciphertext.MaxBlob != 6144 {
		t.Fatalf("HeaderSize, MaxBlob = %d, %d; want 24, 6144", ciphertext.HeaderSize, ciphertext.MaxBlob)
	}
	for _, tc := range []struct {
		name  string
		blob  ciphertext.Blob
		valid bool
		want  []byte
	}{
		{"aes-gcm", gcmBlob(20), true, []byte{
			0x48, 0x4b, 0x01, 0x01,
			0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
			0x00, 0x00, 0x00, 0x07,
		}},
		{"aes-kw", kwBlob(24), true, []byte{
			0x48, 0x4b, 0x01, 0x02,
			0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
			0x00, 0x00, 0x00, 0x03,
		}},
		{"big version", ciphertext.Blob{Mechanism: ciphertext.AESGCM, Version: 0x01020304}, false, []byte{
			0x48, 0x4b, 0x01, 0x01,
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
			0x01, 0x02, 0x03, 0x04,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.blob.Header()
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("Header() =\n% x\nwant\n% x", got, tc.want)
			}
			if !tc.valid {
				return
			}
			if enc := mustMarshal(t, tc.blob); !bytes.HasPrefix(enc, tc.want) {
				t.Fatalf("Marshal() does not start with the header:\n% x", enc)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	maxVersion := gcmBlob(100)
	maxVersion.Version = math.MaxUint32
	for _, tc := range []struct {
		name string
		blob ciphertext.Blob
	}{
		{"aes-gcm smallest", gcmBlob(17)},
		{"aes-gcm 32-byte data key", gcmBlob(32 + 16)},
		{"aes-gcm largest", gcmBlob(4096 + 16)},
		{"aes-gcm version max", maxVersion},
		{"aes-kw smallest", kwBlob(24)},
		{"aes-cbc-hmac smallest", cbcBlob(48)},
		{"aes-cbc-hmac largest", cbcBlob(32 + 4096 + 16)},
		{"aes-kw 32-byte data key", kwBlob(40)},
		{"aes-kw largest", kwBlob(1032)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := mustMarshal(t, tc.blob)
			want := append(append(tc.blob.Header(), tc.blob.IV...), tc.blob.Sealed...)
			if !bytes.Equal(enc, want) {
				t.Fatalf("Marshal() = % x\nwant % x", enc, want)
			}
			if !bytes.Equal(enc[:ciphertext.HeaderSize], header(byte(tc.blob.Mechanism), tc.blob.Version)) {
				t.Fatalf("header = % x", enc[:ciphertext.HeaderSize])
			}
			got, err := ciphertext.Parse(enc)
			if err != nil {
				t.Fatalf("Parse(Marshal()): %v", err)
			}
			if !reflect.DeepEqual(got, tc.blob) {
				t.Fatalf("Parse(Marshal(b)) = %+v\nwant %+v", got, tc.blob)
			}
			again := mustMarshal(t, got)
			if !bytes.Equal(again, enc) {
				t.Fatalf("second Marshal differs")
			}
		})
	}
}

func TestParseDoesNotAlias(t *testing.T) {
	for _, b := range []ciphertext.Blob{gcmBlob(40), kwBlob(40)} {
		enc := mustMarshal(t, b)
		orig := bytes.Clone(enc)
		got, err := ciphertext.Parse(enc)
		if err != nil {
			t.Fatal(err)
		}
		// Changing the input must not change the blob, and the other way round.
		for i := range enc {
			enc[i] ^= 0xff
		}
		if !reflect.DeepEqual(got, b) {
			t.Fatalf("%v: parsed blob changed with its input", b.Mechanism)
		}
		copy(enc, orig)
		for i := range got.IV {
			got.IV[i] ^= 0xff
		}
		for i := range got.Sealed {
			got.Sealed[i] ^= 0xff
		}
		if !bytes.Equal(enc, orig) {
			t.Fatalf("%v: input changed with the parsed blob", b.Mechanism)
		}
	}
}

func TestMarshalRejects(t *testing.T) {
	with := func(b ciphertext.Blob, f func(*ciphertext.Blob)) ciphertext.Blob {
		f(&b)
		return b
	}
	for _, tc := range []struct {
		name string
		blob ciphertext.Blob
		msg  string
	}{
		{"zero blob", ciphertext.Blob{}, "key version 0"},
		{"version 0", with(gcmBlob(20), func(b *ciphertext.Blob) { b.Version = 0 }), "key version 0"},
		{"mechanism 0", with(gcmBlob(20), func(b *ciphertext.Blob) { b.Mechanism = 0 }), "unknown mechanism 0x00"},
		{"mechanism 4", with(kwBlob(24), func(b *ciphertext.Blob) { b.Mechanism = 4 }), "unknown mechanism 0x04"},
		{"aes-cbc-hmac without IV", with(kwBlob(48), func(b *ciphertext.Blob) { b.Mechanism = ciphertext.AESCBCHMAC }), "aes-cbc-hmac IV is 0 bytes, need 16"},
		{"aes-cbc-hmac short sealed", cbcBlob(47), "aes-cbc-hmac sealed value is 47 bytes"},
		{"aes-cbc-hmac partial block", cbcBlob(32 + 17), "aes-cbc-hmac sealed value is 49 bytes"},
		{"aes-cbc-hmac too long", cbcBlob(32 + 4096 + 32), "aes-cbc-hmac sealed value is 4160 bytes"},
		{"aes-gcm no IV", with(gcmBlob(20), func(b *ciphertext.Blob) { b.IV = nil }), "aes-gcm IV is 0 bytes, need 12"},
		{"aes-gcm IV 11", with(gcmBlob(20), func(b *ciphertext.Blob) { b.IV = seq(0, 11) }), "aes-gcm IV is 11 bytes"},
		{"aes-gcm IV 13", with(gcmBlob(20), func(b *ciphertext.Blob) { b.IV = seq(0, 13) }), "aes-gcm IV is 13 bytes"},
		{"aes-gcm IV 16", with(gcmBlob(20), func(b *ciphertext.Blob) { b.IV = seq(0, 16) }), "aes-gcm IV is 16 bytes"},
		{"aes-gcm sealed empty", gcmBlob(0), "aes-gcm sealed value is 0 bytes, need 17 to 4112"},
		{"aes-gcm sealed tag only", gcmBlob(16), "aes-gcm sealed value is 16 bytes"},
		{"aes-gcm sealed too long", gcmBlob(4113), "aes-gcm sealed value is 4113 bytes"},
		{"aes-gcm sealed over MaxBlob", gcmBlob(7000), "aes-gcm sealed value is 7000 bytes"},
		{"aes-kw with IV", with(kwBlob(24), func(b *ciphertext.Blob) { b.IV = seq(0, 12) }), "aes-kw takes no IV, got 12 bytes"},
		{"aes-kw sealed empty", kwBlob(0), "aes-kw wrapped key is 0 bytes"},
		{"aes-kw sealed 16", kwBlob(16), "aes-kw wrapped key is 16 bytes, need a multiple of 8 from 24 to 1032"},
		{"aes-kw sealed 25", kwBlob(25), "aes-kw wrapped key is 25 bytes"},
		{"aes-kw sealed 1031", kwBlob(1031), "aes-kw wrapped key is 1031 bytes"},
		{"aes-kw sealed 1040", kwBlob(1040), "aes-kw wrapped key is 1040 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.blob.Marshal()
			if err == nil {
				t.Fatalf("Marshal() = % x, want an error", out)
			}
			if !errors.Is(err, ciphertext.ErrInvalid) {
				t.Fatalf("Marshal() error %v does not match ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "ciphertext: ") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Marshal() error %q, want it to contain %q", err, tc.msg)
			}
			if out != nil {
				t.Fatalf("Marshal() returned bytes with its error")
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	gcm := mustMarshal(t, gcmBlob(20))
	kw := mustMarshal(t, kwBlob(32))
	edit := func(p []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(p)) }
	set := func(p []byte, i int, v byte) []byte {
		return edit(p, func(q []byte) []byte { q[i] = v; return q })
	}
	gcmWithSealed := func(n int) []byte { return append(bytes.Clone(gcm[:36]), seq(0, n)...) }
	kwWithSealed := func(n int) []byte { return append(bytes.Clone(kw[:24]), seq(0, n)...) }
	maxGCM := mustMarshal(t, gcmBlob(4112))
	maxKW := mustMarshal(t, kwBlob(1032))

	for _, tc := range []struct {
		name string
		in   []byte
		msg  string
	}{
		{"nil", nil, "ciphertext: truncated header: 0 bytes, need 24"},
		{"empty", []byte{}, "ciphertext: truncated header: 0 bytes, need 24"},
		{"10 bytes", gcm[:10], "ciphertext: truncated header: 10 bytes, need 24"},
		{"23 bytes", gcm[:23], "ciphertext: truncated header: 23 bytes, need 24"},
		{"bad magic", set(gcm, 0, 'h'), "ciphertext: bad magic 0x684b, want 0x484b"},
		{"swapped magic", edit(gcm, func(q []byte) []byte { q[0], q[1] = 'K', 'H'; return q }), "bad magic 0x4b48"},
		{"zero magic", set(set(kw, 0, 0), 1, 0), "bad magic 0x0000"},
		{"format 0x00", set(gcm, 2, 0x00), "ciphertext: unsupported format version 0, want 1"},
		{"format 0x02", set(gcm, 2, 0x02), "ciphertext: unsupported format version 2, want 1"},
		{"format 0xff", set(kw, 2, 0xff), "unsupported format version 255"},
		{"mechanism 0", set(gcm, 3, 0), "ciphertext: unknown mechanism 0x00"},
		{"mechanism 4", set(gcm, 3, 4), "ciphertext: unknown mechanism 0x04"},
		{"mechanism 0xff", set(kw, 3, 0xff), "ciphertext: unknown mechanism 0xff"},
		{"aes-gcm version 0", edit(gcm, func(q []byte) []byte { copy(q[20:24], []byte{0, 0, 0, 0}); return q }), "ciphertext: key version 0"},
		{"aes-kw version 0", edit(kw, func(q []byte) []byte { copy(q[20:24], []byte{0, 0, 0, 0}); return q }), "ciphertext: key version 0"},
		{"aes-gcm header only", gcm[:24], "ciphertext: truncated IV: 0 bytes after the header, need 12"},
		{"aes-gcm IV cut", gcm[:35], "ciphertext: truncated IV: 11 bytes after the header, need 12"},
		{"aes-gcm no sealed", gcm[:36], "ciphertext: aes-gcm sealed value is 0 bytes, need 17 to 4112"},
		{"aes-gcm sealed 1", gcmWithSealed(1), "aes-gcm sealed value is 1 bytes"},
		{"aes-gcm sealed 16 (tag only)", gcmWithSealed(16), "aes-gcm sealed value is 16 bytes"},
		{"aes-gcm sealed 4113", gcmWithSealed(4113), "aes-gcm sealed value is 4113 bytes"},
		{"aes-gcm largest + 1 byte", append(bytes.Clone(maxGCM), 0), "aes-gcm sealed value is 4113 bytes"},
		{"aes-kw header only", kw[:24], "ciphertext: aes-kw wrapped key is 0 bytes, need a multiple of 8 from 24 to 1032"},
		{"aes-kw sealed 8", kwWithSealed(8), "aes-kw wrapped key is 8 bytes"},
		{"aes-kw sealed 16", kwWithSealed(16), "aes-kw wrapped key is 16 bytes"},
		{"aes-kw sealed 23", kwWithSealed(23), "aes-kw wrapped key is 23 bytes"},
		{"aes-kw sealed 25", kwWithSealed(25), "aes-kw wrapped key is 25 bytes"},
		{"aes-kw sealed 33", append(bytes.Clone(kw), 0), "aes-kw wrapped key is 33 bytes"},
		{"aes-kw sealed 39", kwWithSealed(39), "aes-kw wrapped key is 39 bytes"},
		{"aes-kw sealed 1031", kwWithSealed(1031), "aes-kw wrapped key is 1031 bytes"},
		{"aes-kw sealed 1040", kwWithSealed(1040), "aes-kw wrapped key is 1040 bytes"},
		{"aes-kw largest + 8 bytes", append(bytes.Clone(maxKW), seq(0, 8)...), "aes-kw wrapped key is 1040 bytes"},
		{"aes-kw largest + 1 byte", append(bytes.Clone(maxKW), 0), "aes-kw wrapped key is 1033 bytes"},
		{"aes-kw with an IV's worth", kwWithSealed(12 + 32), "aes-kw wrapped key is 44 bytes"},
		{"6145 bytes", append(bytes.Clone(gcm), make([]byte, 6145-len(gcm))...), "ciphertext: blob is 6145 bytes, max 6144"},
		{"6144 bytes", append(bytes.Clone(gcm), make([]byte, 6144-len(gcm))...), "aes-gcm sealed value is 6108 bytes"},
		{"64 KiB", append(bytes.Clone(kw), make([]byte, 64<<10)...), "ciphertext: blob is 65592 bytes, max 6144"},
		{"64 KiB of junk", bytes.Repeat([]byte{0xff}, 64<<10), "ciphertext: blob is 65536 bytes, max 6144"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ciphertext.Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse() = %+v, want an error", got)
			}
			if !errors.Is(err, ciphertext.ErrInvalid) {
				t.Fatalf("Parse() error %v does not match ErrInvalid", err)
			}
			if errors.Is(err, ciphertext.ErrInvalidContext) {
				t.Fatalf("Parse() error %v matches ErrInvalidContext", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Parse() error %q, want it to contain %q", err, tc.msg)
			}
			if !reflect.DeepEqual(got, ciphertext.Blob{}) {
				t.Fatalf("Parse() returned a non-zero blob with its error: %+v", got)
			}
		})
	}
}

// TestParseTruncations cuts valid blobs at every length. The smallest blob
// of each kind fails at every cut; for longer ones Parse must accept a cut
// exactly when the remaining sealed length is itself valid.
func TestParseTruncations(t *testing.T) {
	for _, tc := range []struct {
		name    string
		blob    ciphertext.Blob
		allFail bool
	}{
		{"aes-gcm smallest", gcmBlob(17), true},
		{"aes-kw smallest", kwBlob(24), true},
		{"aes-gcm 64", gcmBlob(64), false},
		{"aes-kw 1032", kwBlob(1032), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := mustMarshal(t, tc.blob)
			prefix := ciphertext.HeaderSize + len(tc.blob.IV)
			accepted := 0
			for n := 0; n < len(enc); n++ {
				got, err := ciphertext.Parse(enc[:n])
				wantOK := !tc.allFail && n >= prefix && validSealedLen(tc.blob.Mechanism, n-prefix)
				switch {
				case wantOK && err != nil:
					t.Fatalf("Parse(first %d bytes): %v, want success", n, err)
				case wantOK:
					accepted++
					if !bytes.Equal(got.Sealed, enc[prefix:n]) || got.Version != tc.blob.Version {
						t.Fatalf("Parse(first %d bytes) = %+v", n, got)
					}
				case err == nil:
					t.Fatalf("Parse(first %d of %d bytes) succeeded: %+v", n, len(enc), got)
				case !errors.Is(err, ciphertext.ErrInvalid):
					t.Fatalf("Parse(first %d bytes): %v does not match ErrInvalid", n, err)
				}
			}
			if !tc.allFail && accepted == 0 {
				t.Fatalf("no truncation was valid; the test checks nothing")
			}
		})
	}
}

// TestParseHeaderFieldsMatter flips every header byte of a valid blob and
// checks that Parse either rejects the result or returns a different blob.
func TestParseHeaderFieldsMatter(t *testing.T) {
	for _, b := range []ciphertext.Blob{gcmBlob(20), kwBlob(24)} {
		enc := mustMarshal(t, b)
		for i := 0; i < ciphertext.HeaderSize; i++ {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				mod := bytes.Clone(enc)
				mod[i] ^= x
				got, err := ciphertext.Parse(mod)
				if err == nil && reflect.DeepEqual(got, b) {
					t.Fatalf("%v: header byte %d ^ %#x parsed to the same blob", b.Mechanism, i, x)
				}
				if err == nil && !bytes.Equal(got.Header(), mod[:ciphertext.HeaderSize]) {
					t.Fatalf("%v: header byte %d ^ %#x: Header() = % x, input % x", b.Mechanism, i, x, got.Header(), mod[:ciphertext.HeaderSize])
				}
			}
		}
	}
}
