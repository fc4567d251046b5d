package esdk

import (
	"bytes"
	"crypto/sha512"
	"testing"
)

// TestHashPipe checks that the pipelined hash equals the plain one for
// writes that straddle, fill and miss chunk boundaries, and for a Sum
// taken in the middle of a stream.
func TestHashPipe(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 3*hashChunk/16+7)
	tests := []struct {
		name   string
		writes []int // sizes written in turn, cycling until data is used up
		upTo   int   // how much of data is hashed
	}{
		{"empty", []int{1}, 0},
		{"one byte", []int{1}, 1},
		{"one chunk less one", []int{hashChunk - 1}, hashChunk - 1},
		{"one chunk", []int{hashChunk}, hashChunk},
		{"one chunk more one", []int{hashChunk + 1}, hashChunk + 1},
		{"all in one write", []int{len(data)}, len(data)},
		{"odd writes", []int{7, 4096, 65536 + 3, 1}, len(data)},
		{"frames", []int{4096 + 32}, len(data)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := sha512.Sum384(data[:tt.upTo])
			p := newHashPipe(sha512.New384())
			defer p.close()
			in := data[:tt.upTo]
			for i := 0; len(in) > 0; i++ {
				n := min(tt.writes[i%len(tt.writes)], len(in))
				if k, err := p.Write(in[:n]); k != n || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", n, k, err)
				}
				in = in[n:]
			}
			if got := p.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Fatalf("Sum = %x, want %x", got, want)
			}
		})
	}
	t.Run("sum then more", func(t *testing.T) {
		p := newHashPipe(sha512.New384())
		defer p.close()
		p.Write(data[:hashChunk+5])
		first := sha512.Sum384(data[:hashChunk+5])
		if got := p.Sum(nil); !bytes.Equal(got, first[:]) {
			t.Fatalf("first Sum = %x, want %x", got, first)
		}
		p.Write(data[hashChunk+5:])
		all := sha512.Sum384(data)
		if got := p.Sum(nil); !bytes.Equal(got, all[:]) {
			t.Fatalf("second Sum = %x, want %x", got, all)
		}
	})
}
