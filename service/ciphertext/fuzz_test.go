package ciphertext_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hsmkms/hsmkms/service/ciphertext"
)

// FuzzParse: Parse never panics, every error matches ErrInvalid, and what
// Parse accepts Marshal reproduces byte for byte.
func FuzzParse(f *testing.F) {
	for _, b := range []ciphertext.Blob{gcmBlob(17), gcmBlob(48), gcmBlob(4112), kwBlob(24), kwBlob(40), kwBlob(1032)} {
		enc, err := b.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add([]byte{})
	f.Add([]byte("HK\x01\x03"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The engine's slice must not be modified: work on a copy.
		in := bytes.Clone(data)
		b, err := ciphertext.Parse(in)
		if !bytes.Equal(in, data) {
			t.Fatalf("Parse modified its input")
		}
		if err != nil {
			if !errors.Is(err, ciphertext.ErrInvalid) {
				t.Fatalf("Parse error %v does not match ErrInvalid", err)
			}
			return
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
