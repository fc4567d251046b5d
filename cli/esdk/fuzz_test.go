package esdk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"runtime/metrics"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// The fixed data key, ciphertext blob and message ID of the known-answer
// message (kat_test.go): fuzzing runs deterministic, and every seed made
// here decrypts under fuzzKMS.
var (
	fuzzDataKey = countUp(0x40, 32)
	fuzzBlob    = countUp(0xa0, 16)
	fuzzMsgID   = countUp(0x00, messageIDLen)
)

func countUp(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// fuzzKMS is a key provider with one data key: it answers every Decrypt
// with it, whatever the blob, ARN and context, so that a fuzzed message
// gets past the data key to the commitment, the header tag and the body.
// It counts its calls and the largest blob it was handed, which the
// header's bounds must keep small.
type fuzzKMS struct {
	calls, maxBlob int
}

func (k *fuzzKMS) GenerateDataKey(context.Context, string, map[string]string) ([]byte, []byte, string, error) {
	return bytes.Clone(fuzzDataKey), bytes.Clone(fuzzBlob), testARN, nil
}

func (k *fuzzKMS) Encrypt(context.Context, string, []byte, map[string]string) ([]byte, string, error) {
	return bytes.Clone(fuzzBlob), testARN, nil
}

func (k *fuzzKMS) Decrypt(_ context.Context, blob []byte, _ string, _ map[string]string) ([]byte, error) {
	k.calls++
	k.maxBlob = max(k.maxBlob, len(blob))
	return bytes.Clone(fuzzDataKey), nil
}

// fuzzEncrypt encrypts plain as Encrypt does under fuzzKMS, with the fixed
// message ID.
func fuzzEncrypt(encCtx map[string]string, plain []byte, frame int) ([]byte, error) {
	var out bytes.Buffer
	fixed := func(o *options) { o.random = bytes.NewReader(fuzzMsgID) }
	_, err := Encrypt(context.Background(), &fuzzKMS{}, "alias/fuzz", encCtx, bytes.NewReader(plain), &out, WithFrameLength(frame), WithSuite(SuiteUnsigned), fixed)
	return out.Bytes(), err
}

// fuzzRawContext serializes pairs in the order given, without Encrypt's
// checks or sorting: headers Encrypt would not write, but other SDKs may.
func fuzzRawContext(pairs ...string) []byte {
	if len(pairs) == 0 {
		return []byte{0, 0}
	}
	b := []byte{0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(len(pairs)/2))
	for _, s := range pairs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	return b
}

// fuzzHeader writes an authentic header (body and tag) under the fixed
// data key and message ID, with any fields: Decrypt's checks, not the
// header tag, must be what refuses the bad ones.
func fuzzHeader(edks []EncryptedDataKey, rawCtx []byte, frame uint32) []byte {
	k, err := deriveKeys(SuiteUnsigned, fuzzDataKey, fuzzMsgID)
	if err != nil {
		panic(err) // only a data key of another length fails, and this one is 32 bytes
	}
	h := Header{Version: 2, Suite: SuiteUnsigned, MessageID: fuzzMsgID, EncryptedDataKeys: edks, FrameLength: frame}
	body := headerBody(h, rawCtx, k.commit)
	return append(body, k.headerTag(body)...)
}

// fuzzSeeds are whole messages and headers for both parser fuzz targets:
// what Encrypt writes, and authentic headers at and past every bound.
func fuzzSeeds(f *testing.F) [][]byte {
	f.Helper()
	var seeds [][]byte
	for _, tc := range []struct {
		ctx   map[string]string
		size  int
		frame int
	}{
		{map[string]string{"purpose": "kat", "app": "hsmkms"}, 5, 4}, // the known answer
		{nil, 0, 16},
		{map[string]string{"a": "b"}, 33, 16},
		{map[string]string{"ünïcode": "✓", "k": ""}, 100, 1},
		{nil, 4097, DefaultFrameLength},
	} {
		msg, err := fuzzEncrypt(tc.ctx, pattern(tc.size), tc.frame)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, msg)
	}
	kat := seeds[0]
	katBody := kat[len(fuzzHeader([]EncryptedDataKey{{ProviderID, testARN, fuzzBlob}}, fuzzRawContext("app", "hsmkms", "purpose", "kat"), 4)):]
	good := EncryptedDataKey{ProviderID, testARN, fuzzBlob}
	notARN := EncryptedDataKey{ProviderID, "alias/x", fuzzBlob}
	big := EncryptedDataKey{ProviderID, testARN, bytes.Repeat([]byte{0xee}, 0xFFFF)}
	for _, hdr := range [][]byte{
		// The known answer's body behind authentic headers that differ.
		fuzzHeader([]EncryptedDataKey{notARN, notARN, notARN, notARN, notARN, notARN, notARN, good}, fuzzRawContext("app", "hsmkms", "purpose", "kat"), 4),
		fuzzHeader([]EncryptedDataKey{good}, fuzzRawContext("purpose", "kat", "app", "hsmkms"), 4), // pairs not sorted
		fuzzHeader([]EncryptedDataKey{good, good, good, good, good, good, good, good, good}, fuzzRawContext(), 4),
		fuzzHeader([]EncryptedDataKey{}, fuzzRawContext(), 4),
		fuzzHeader([]EncryptedDataKey{{"raw", "k", fuzzBlob}}, fuzzRawContext(), 4),
		fuzzHeader([]EncryptedDataKey{big}, fuzzRawContext(), 4),
		fuzzHeader([]EncryptedDataKey{good}, fuzzRawContext("a", "1", "a", "2"), 4),
		fuzzHeader([]EncryptedDataKey{good}, fuzzRawContext("aws-crypto-public-key", "x"), 4),
		fuzzHeader([]EncryptedDataKey{good}, fuzzRawContext("\xff", "x"), 4),
		fuzzHeader([]EncryptedDataKey{good}, []byte{0, 2, 0, 0}, 4), // a length, no pairs
		fuzzHeader([]EncryptedDataKey{good}, fuzzRawContext(), 0),
		fuzzHeader([]EncryptedDataKey{good}, fuzzRawContext(), MaxFrameLength),
		fuzzHeader([]EncryptedDataKey{good}, fuzzRawContext(), MaxFrameLength+1),
		fuzzHeader([]EncryptedDataKey{good}, fuzzRawContext(), 0xFFFFFFFF),
	} {
		seeds = append(seeds, append(hdr, katBody...))
	}
	unframed := bytes.Clone(kat)
	unframed[len(kat)-len(katBody)-tagLen-commitLen-4-1] = contentUnframed
	seeds = append(seeds, unframed, []byte{}, []byte{0x01}, []byte("AgR4"), kat[:1], kat[:3], append([]byte{2, 0x01, 0x78}, kat[3:]...))
	return seeds
}

// heapAllocated is the bytes allocated so far by the whole process.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// allocatedWithin reports whether run allocates at most limit bytes, and
// the least it was seen to allocate. The counter is process-wide and kept
// per span, and the fuzzing engine allocates beside the fuzz function, so
// one reading can be high by a megabyte; an input that allocates in
// proportion to what it claims does so on every run, so run is measured
// up to three times and fails only if no run stays within the limit.
func allocatedWithin(limit uint64, run func()) (uint64, bool) {
	least := ^uint64(0)
	for range 3 {
		before := heapAllocated()
		run()
		least = min(least, heapAllocated()-before)
		if least <= limit {
			return least, true
		}
	}
	return least, false
}

// The largest header body: version, suite, message ID, context, eight
// keys of three uint16-prefixed fields, content type, frame length,
// commit key.
const maxHeaderBody = 1 + 2 + messageIDLen + 2 + 0xFFFF + 2 + MaxEncryptedDataKeys*3*(2+0xFFFF) + 1 + 4 + commitLen

// allocSlack covers allocation not proportional to the input: one field
// of up to 64 KiB claimed but not present, and the per-span granularity
// of the heap counter.
const allocSlack = 1 << 20

// FuzzReadHeader: the header parser never panics; it fails only with
// ErrMalformed, ErrUnsupported or ErrTruncated; what it accepts is within
// the documented bounds (1 to 8 "aws-kms" keys, frame length 1 to 16 MiB,
// UTF-8 context without a signature key), is a prefix of the input that
// the returned fields re-serialize to byte for byte, and it reads no
// further than the header tag; and it allocates in proportion to the
// bytes actually present, not to the lengths a header claims.
func FuzzReadHeader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		br := bufio.NewReader(src)
		h, body, tag, err := readHeader(br)
		if alloc, ok := allocatedWithin(64*uint64(len(data))+allocSlack, func() {
			readHeader(bufio.NewReader(bytes.NewReader(data)))
		}); !ok {
			t.Fatalf("readHeader allocated %d bytes for a %d-byte input", alloc, len(data))
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("readHeader error %v is none of ErrMalformed, ErrUnsupported, ErrTruncated", err)
			}
			return
		}
		if n := len(h.EncryptedDataKeys); n < 1 || n > MaxEncryptedDataKeys {
			t.Fatalf("readHeader accepted %d encrypted data keys", n)
		}
		for _, e := range h.EncryptedDataKeys {
			if e.ProviderID != ProviderID || len(e.ProviderInfo) > 0xFFFF || len(e.Ciphertext) > 0xFFFF {
				t.Fatalf("readHeader accepted the data key %q, %d-byte info, %d-byte blob", e.ProviderID, len(e.ProviderInfo), len(e.Ciphertext))
			}
		}
		s, known := SuiteByID(h.Suite.ID)
		if h.FrameLength > MaxFrameLength || !known || s != h.Suite || s.Version != h.Version {
			t.Fatalf("readHeader accepted frame length %d, suite 0x%04x in version %d", h.FrameLength, h.Suite.ID, h.Version)
		}
		for k, v := range h.EncryptionContext {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("readHeader accepted the context pair %q=%q", k, v)
			}
		}
		if _, has := h.EncryptionContext[PublicKeyContextKey]; has != s.Signed() {
			t.Fatalf("readHeader accepted suite %s with a signature key in the context: %v", s, has)
		}
		authLen := tagLen
		if h.Version == 1 {
			authLen += ivLen
		}
		if len(body) > maxHeaderBody || len(tag) != authLen || !bytes.HasPrefix(data, append(bytes.Clone(body), tag...)) {
			t.Fatalf("readHeader returned a %d-byte body and %d-byte authentication that are not the input's start", len(body), len(tag))
		}
		if rest := src.Len() + br.Buffered(); rest != len(data)-len(body)-authLen {
			t.Fatalf("readHeader consumed %d bytes of a %d-byte header", len(data)-rest, len(body)+authLen)
		}
		if h.Version != 2 {
			return
		}
		// Nothing of a version 2 header is lost: its fields, with the
		// context's bytes as written (their order is the writer's), are
		// the body.
		ecEnd := 1 + 2 + messageIDLen + 2 + int(binary.BigEndian.Uint16(body[1+2+messageIDLen:]))
		again := headerBody(h, body[1+2+messageIDLen:ecEnd], body[len(body)-commitLen:])
		if !bytes.Equal(again, body) {
			t.Fatalf("the parsed header re-serializes as\n% x\nnot\n% x", again, body)
		}
	})
}

// FuzzDecrypt runs Decrypt on whole messages with fuzzKMS. Properties: no
// panic; errors are Decrypt's sentinels; at most MaxEncryptedDataKeys KMS
// calls, none with a blob over 64 KiB; allocation in proportion to the
// input until the header authenticates, then at most one frame more; on
// error, nothing written before the header authenticates and only whole
// regular frames after; on success, the header is within bounds and the
// message is exactly its header and the frames of the plaintext written.
func FuzzDecrypt(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		kms := &fuzzKMS{}
		var out bytes.Buffer
		// The permissive policy reaches the version 1 parsers too.
		h, err := Decrypt(context.Background(), kms, bytes.NewReader(msg), &out, WithCommitmentPolicy(RequireEncryptAllowDecrypt))
		// The output buffer grows with the plaintext, itself bounded by
		// the input.
		limit := 64*uint64(len(msg)) + allocSlack + 32<<10 // bufio's buffer
		if h.FrameLength > 0 {
			limit += uint64(h.FrameLength) + tagLen
		}
		if alloc, ok := allocatedWithin(limit, func() {
			Decrypt(context.Background(), &fuzzKMS{}, bytes.NewReader(msg), io.Discard, WithCommitmentPolicy(RequireEncryptAllowDecrypt))
		}); !ok {
			t.Fatalf("Decrypt allocated %d bytes for a %d-byte message of frame length %d", alloc, len(msg), h.FrameLength)
		}
		if kms.calls > MaxEncryptedDataKeys || kms.maxBlob > 0xFFFF {
			t.Fatalf("Decrypt made %d KMS calls, the largest blob %d bytes", kms.calls, kms.maxBlob)
		}
		if h.FrameLength > MaxFrameLength || len(h.EncryptedDataKeys) > MaxEncryptedDataKeys {
			t.Fatalf("Decrypt returned frame length %d, %d data keys", h.FrameLength, len(h.EncryptedDataKeys))
		}
		if err != nil {
			sentinel := false
			for _, s := range []error{ErrMalformed, ErrUnsupported, ErrAuthentication, ErrTruncated, ErrDataKey} {
				sentinel = sentinel || errors.Is(err, s)
			}
			if !sentinel {
				t.Fatalf("Decrypt error %v is none of the package's errors", err)
			}
			switch {
			case h.Version == 0 && out.Len() != 0:
				t.Fatalf("Decrypt wrote %d bytes before the header authenticated (%v)", out.Len(), err)
			case h.FrameLength != 0 && out.Len()%int(h.FrameLength) != 0:
				t.Fatalf("Decrypt wrote %d bytes, not whole frames of %d (%v)", out.Len(), h.FrameLength, err)
			}
			return
		}
		if len(h.EncryptedDataKeys) < 1 || !validKeyARN(h.KeyARN) || kms.calls < 1 {
			t.Fatalf("Decrypt succeeded with header %+v after %d KMS calls", h, kms.calls)
		}
		if h.FrameLength == 0 || h.Suite != SuiteUnsigned {
			return // the layout below is that of framed, unsigned messages
		}
		_, body, _, err := readHeader(bufio.NewReader(bytes.NewReader(msg)))
		if err != nil {
			t.Fatalf("Decrypt accepted a message whose header readHeader refuses: %v", err)
		}
		if l := layoutOf(len(msg), out.Len(), int(h.FrameLength)); l.headerEnd != len(body)+tagLen {
			t.Fatalf("a %d-byte message with a %d-byte header decrypted to %d bytes in frames of %d",
				len(msg), len(body)+tagLen, out.Len(), h.FrameLength)
		}
	})
}

// FuzzRoundTrip encrypts a fuzzed plaintext under a fuzzed context and
// frame length. Encrypt refuses exactly the contexts the format forbids;
// what it writes decrypts to the same plaintext and header, read whole or
// in pieces; the message is exactly header and frames; a byte changed at
// a fuzzed place makes Decrypt fail after writing only the frames before
// it; and a message cut short fails as truncated after writing only the
// complete frames before the cut.
func FuzzRoundTrip(f *testing.F) {
	for _, tc := range []struct {
		plain      []byte
		frame      uint16
		key, value string
		flip       uint32
		mask       byte
		cut        uint32
	}{
		{[]byte("hello"), 3, "purpose", "kat", 0, 0, 0},
		{nil, 15, "", "", 100, 0xff, 50},
		{pattern(64), 15, "a", "b", 140, 0x01, 200},
		{pattern(64), 63, "ünïcode", "✓", 300, 0x80, 10},
		{pattern(1000), 0, "k", "", 999, 0x10, 1500},
		{pattern(100), 9, "aws-crypto-public-key", "x", 0, 0, 0},
		{pattern(100), 9, "\xff", "x", 0, 0, 0},
		{pattern(100), 9, "k", "\xc3", 0, 0, 0},
		{pattern(5000), 4095, "k", "v", 4000, 0x04, 5000},
	} {
		f.Add(tc.plain, tc.frame, tc.key, tc.value, tc.flip, tc.mask, tc.cut)
	}
	f.Fuzz(func(t *testing.T, plain []byte, frame uint16, key, value string, flip uint32, mask byte, cut uint32) {
		frameLen := 1 + int(frame)
		var encCtx map[string]string
		if key != "" || value != "" {
			encCtx = map[string]string{key: value}
		}
		msg, err := fuzzEncrypt(encCtx, plain, frameLen)
		forbidden := strings.HasPrefix(key, ReservedContextPrefix) || !utf8.ValidString(key) || !utf8.ValidString(value) ||
			2+2+len(key)+2+len(value) > 0xFFFF
		if (err != nil) != (forbidden && encCtx != nil) {
			t.Fatalf("Encrypt with context %q: %v", encCtx, err)
		}
		if err != nil {
			return
		}
		for _, read := range []string{"whole", "half reads"} {
			r := iotest.HalfReader(bytes.NewReader(msg))
			if read == "whole" {
				r = bytes.NewReader(msg)
			}
			var out bytes.Buffer
			h, err := Decrypt(context.Background(), &fuzzKMS{}, r, &out)
			if err != nil || !bytes.Equal(out.Bytes(), plain) {
				t.Fatalf("%s: %d bytes decrypted to %d bytes (%v)", read, len(plain), out.Len(), err)
			}
			if h.FrameLength != uint32(frameLen) || h.KeyARN != testARN || !bytes.Equal(h.MessageID, fuzzMsgID) ||
				(len(encCtx) > 0 || len(h.EncryptionContext) > 0) && !maps.Equal(h.EncryptionContext, encCtx) {
				t.Fatalf("%s: the header came back as %+v", read, h)
			}
		}
		_, body, _, err := readHeader(bufio.NewReader(bytes.NewReader(msg)))
		if err != nil {
			t.Fatal(err)
		}
		l := layoutOf(len(msg), len(plain), frameLen)
		if l.headerEnd != len(body)+tagLen {
			t.Fatalf("a %d-byte message of %d bytes in frames of %d has a %d-byte header, want %d",
				len(msg), len(plain), frameLen, len(body)+tagLen, l.headerEnd)
		}
		if mask != 0 {
			p := int(flip % uint32(len(msg)))
			bad := bytes.Clone(msg)
			bad[p] ^= mask
			t.Logf("byte %d ^ %02x", p, mask)
			checkTampered(t, &fuzzKMS{}, bad, plain, nil, max(l.frameAt(p), 0)*frameLen)
		}
		n := int(cut % uint32(len(msg)))
		complete := 0
		for i := 0; i < l.regular; i++ {
			if l.frameEnd(i, len(msg)) <= n {
				complete++
			}
		}
		t.Logf("cut at %d", n)
		checkTampered(t, &fuzzKMS{}, msg[:n], plain, ErrTruncated, complete*frameLen)
	})
}
