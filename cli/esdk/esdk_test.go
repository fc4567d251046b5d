package esdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// pattern returns n deterministic, non-repeating-looking bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	var x uint32 = 2463534242
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// layout locates the parts of a message this package wrote for a plaintext
// of plainLen bytes in frames of frameLen: where the header ends and where
// each frame starts (the last is the final frame).
type layout struct {
	headerEnd int
	frames    []int
	regular   int // number of regular frames
	frameLen  int
}

func layoutOf(msgLen, plainLen, frameLen int) layout {
	regular, last := plainLen/frameLen, plainLen%frameLen
	if plainLen > 0 && last == 0 {
		regular, last = regular-1, frameLen
	}
	regSize := 4 + ivLen + frameLen + tagLen
	body := regular*regSize + 4 + 4 + ivLen + 4 + last + tagLen
	l := layout{headerEnd: msgLen - body, regular: regular, frameLen: frameLen}
	for i := 0; i <= regular; i++ {
		l.frames = append(l.frames, l.headerEnd+i*regSize)
	}
	return l
}

// frameAt is the index of the frame holding byte p, or -1 in the header.
func (l layout) frameAt(p int) int {
	i := -1
	for j, start := range l.frames {
		if p >= start {
			i = j
		}
	}
	return i
}

// frameEnd is the offset just past frame i.
func (l layout) frameEnd(i, msgLen int) int {
	if i+1 < len(l.frames) {
		return l.frames[i+1]
	}
	return msgLen
}

func encryptBytes(t *testing.T, kms KMS, encCtx map[string]string, plain []byte, opts ...Option) ([]byte, Header) {
	t.Helper()
	var out bytes.Buffer
	// Unsigned unless told: the layout helpers know no footer.
	opts = append([]Option{WithSuite(SuiteUnsigned)}, opts...)
	h, err := Encrypt(t.Context(), kms, "alias/test", encCtx, bytes.NewReader(plain), &out, opts...)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out.Bytes(), h
}

// TestRoundTrip proves that every size, around frame boundaries and large,
// decrypts to the same bytes with the same header, and that the message has
// exactly the length the format gives.
func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 4095, 4096, 4097, 1<<20 + 7}
	frames := []int{1, 4096, 65536}
	encCtx := map[string]string{"purpose": "round trip", "app": "hsmkms", "ünïcode": "✓"}
	for _, frame := range frames {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("size=%d/frame=%d", size, frame), func(t *testing.T) {
				fake := newFakeKMS()
				plain := pattern(size)
				msg, eh := encryptBytes(t, fake, encCtx, plain, WithFrameLength(frame))
				l := layoutOf(len(msg), size, frame)
				if l.headerEnd <= 0 || msg[l.frames[len(l.frames)-1]] != 0xff {
					t.Fatalf("message of %d bytes does not have the expected frames (header end %d)", len(msg), l.headerEnd)
				}
				var out bytes.Buffer
				dh, err := Decrypt(t.Context(), fake, bytes.NewReader(msg), &out)
				if err != nil {
					t.Fatalf("Decrypt: %v", err)
				}
				if !bytes.Equal(out.Bytes(), plain) {
					t.Fatalf("decrypted %d bytes, want %d equal bytes", out.Len(), size)
				}
				if dh.KeyARN != testARN || eh.KeyARN != testARN || !bytes.Equal(dh.MessageID, eh.MessageID) ||
					dh.FrameLength != uint32(frame) || dh.Suite.ID != SuiteUnsigned.ID || !maps.Equal(dh.EncryptionContext, encCtx) ||
					len(dh.EncryptedDataKeys) != 1 || dh.EncryptedDataKeys[0].ProviderID != "aws-kms" || dh.EncryptedDataKeys[0].ProviderInfo != testARN {
					t.Fatalf("headers differ:\nencrypt %+v\ndecrypt %+v", eh, dh)
				}
				if !fake.allZeroed() {
					t.Fatal("a plaintext data key was not zeroed after use")
				}
			})
		}
	}
}

// TestStreamingReaders proves encryption and decryption work on readers
// that return little at a time, and that the two can run as a pipe.
func TestStreamingReaders(t *testing.T) {
	fake := newFakeKMS()
	for _, tc := range []struct {
		name  string
		size  int
		frame int
		wrap  func(io.Reader) io.Reader
	}{
		{"one byte at a time", 10000, 4096, iotest.OneByteReader},
		{"half reads", 9000, 100, iotest.HalfReader},
		{"data with EOF", 8192, 4096, iotest.DataErrReader},
		{"exact frames, one byte", 3 * 512, 512, iotest.OneByteReader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain := pattern(tc.size)
			var msg bytes.Buffer
			if _, err := Encrypt(t.Context(), fake, "k", nil, tc.wrap(bytes.NewReader(plain)), &msg, WithFrameLength(tc.frame)); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := Decrypt(t.Context(), fake, tc.wrap(bytes.NewReader(msg.Bytes())), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), plain) {
				t.Fatal("plaintext differs")
			}
		})
	}
}

// countingReader yields n pattern bytes without holding them.
type countingReader struct{ n, off int }

func (c *countingReader) Read(p []byte) (int, error) {
	if c.off >= c.n {
		return 0, io.EOF
	}
	p = p[:min(len(p), c.n-c.off)]
	for i := range p {
		p[i] = byte((c.off + i) * 7)
	}
	c.off += len(p)
	return len(p), nil
}

// TestConstantMemory proves a 64 MiB message goes through Encrypt and
// Decrypt, piped together, allocating far less than its size.
func TestConstantMemory(t *testing.T) {
	const size = 64 << 20
	fake := newFakeKMS()
	want := sha256.New()
	io.Copy(want, &countingReader{n: size})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := Encrypt(context.Background(), fake, "k", map[string]string{"a": "b"}, &countingReader{n: size}, pw)
		pw.CloseWithError(err)
		errc <- err
	}()
	got := sha256.New()
	if _, err := Decrypt(t.Context(), fake, pr, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("plaintext differs")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("allocated %d bytes for a %d-byte message; want constant memory", alloc, size)
	}
}

// recorder is a writer that keeps what was written, to check that no
// unauthenticated plaintext ever reaches the caller.
type recorder struct{ bytes.Buffer }

// checkTampered decrypts msg and checks it fails with want (when not nil)
// and that exactly the first frames plaintext bytes were written.
func checkTampered(t *testing.T, kms KMS, msg, plain []byte, want error, written int) {
	t.Helper()
	var w recorder
	_, err := Decrypt(t.Context(), kms, bytes.NewReader(msg), &w)
	if err == nil {
		t.Fatalf("tampered message decrypted")
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	if !bytes.Equal(w.Bytes(), plain[:written]) {
		t.Fatalf("wrote %d bytes, want exactly the %d bytes of the authenticated frames (error %v)", w.Len(), written, err)
	}
}

// TestTamperEveryByte flips every bit pattern of every byte of messages
// (header, encrypted data key, header tag, every frame) and cuts them at
// every length: each must fail, writing only the frames before the damage.
func TestTamperEveryByte(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size, frame int
	}{
		{"partial final frame", 40, 16},
		{"full final frame", 32, 16},
		{"empty message", 0, 16},
		{"single frame", 5, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeKMS()
			plain := pattern(tc.size)
			msg, _ := encryptBytes(t, fake, map[string]string{"purpose": "tamper"}, plain, WithFrameLength(tc.frame))
			l := layoutOf(len(msg), tc.size, tc.frame)
			for p := range msg {
				written := max(l.frameAt(p), 0) * tc.frame
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					bad := bytes.Clone(msg)
					bad[p] ^= mask
					t.Run(fmt.Sprintf("flip %d^%02x", p, mask), func(t *testing.T) {
						checkTampered(t, fake, bad, plain, nil, written)
					})
				}
			}
			for n := range len(msg) {
				complete := 0
				for i := 0; i < l.regular; i++ {
					if l.frameEnd(i, len(msg)) <= n {
						complete++
					}
				}
				t.Run(fmt.Sprintf("cut at %d", n), func(t *testing.T) {
					checkTampered(t, fake, msg[:n], plain, ErrTruncated, complete*tc.frame)
				})
			}
		})
	}
}

// headerOffsets locates the fields of a header this package wrote with one
// encrypted data key.
type headerOffsets struct {
	ecLen, ec, edkCount, providerID, providerInfo, edk, contentType, frameLength, commit, tag int
}

func offsetsOf(msg []byte) headerOffsets {
	var o headerOffsets
	u16 := func(p int) int { return int(binary.BigEndian.Uint16(msg[p:])) }
	o.ecLen = 1 + 2 + 32
	o.ec = o.ecLen + 2
	o.edkCount = o.ec + u16(o.ecLen)
	o.providerID = o.edkCount + 2 + 2
	o.providerInfo = o.providerID + u16(o.providerID-2) + 2
	o.edk = o.providerInfo + u16(o.providerInfo-2) + 2
	o.contentType = o.edk + u16(o.edk-2)
	o.frameLength = o.contentType + 1
	o.commit = o.frameLength + 4
	o.tag = o.commit + 32
	return o
}

// TestTamperCases names the ways a message can be altered and the error
// each must give, with the plaintext each may have released.
func TestTamperCases(t *testing.T) {
	const frame = 16
	fake := newFakeKMS()
	plain := pattern(3*frame + 5) // three regular frames and a final one
	msg, _ := encryptBytes(t, fake, map[string]string{"purpose": "tamper"}, plain, WithFrameLength(frame))
	other, _ := encryptBytes(t, fake, map[string]string{"purpose": "tamper"}, plain, WithFrameLength(frame))
	l := layoutOf(len(msg), len(plain), frame)
	o := offsetsOf(msg)
	if string(msg[o.providerID:o.providerID+7]) != "aws-kms" || msg[o.contentType] != 2 || o.tag+16 != l.headerEnd {
		t.Fatalf("test offsets are wrong: %+v, header end %d", o, l.headerEnd)
	}
	frameBytes := func(m []byte, i int) []byte { return m[l.frames[i]:l.frameEnd(i, len(m))] }
	flip := func(p int) func([]byte) []byte {
		return func(m []byte) []byte { m[p] ^= 0x01; return m }
	}
	set := func(p int, b ...byte) func([]byte) []byte {
		return func(m []byte) []byte { copy(m[p:], b); return m }
	}
	frames := func(order ...int) func([]byte) []byte {
		return func(m []byte) []byte {
			out := bytes.Clone(m[:l.headerEnd])
			for _, i := range order {
				out = append(out, frameBytes(m, i)...)
			}
			return out
		}
	}
	final := l.frames[3]
	for _, tc := range []struct {
		name    string
		tamper  func([]byte) []byte
		want    error
		written int // frames whose plaintext may be released
	}{
		{"version 1", set(0, 0x01), ErrMalformed, 0}, // its second byte is the type, 0x80
		{"unknown suite", set(1, 0x09, 0x99), ErrUnsupported, 0},
		{"version 1 suite", set(1, 0x03, 0x78), ErrMalformed, 0},
		{"version 3", set(0, 0x03), ErrMalformed, 0},
		{"base64", func(m []byte) []byte { return []byte("AgR4" + string(m[4:])) }, ErrMalformed, 0},
		{"signed suite 0x0578 without its key", set(1, 0x05, 0x78), ErrMalformed, 0},
		{"message ID", flip(3 + 7), ErrAuthentication, 0},
		{"encryption context value", flip(o.edkCount - 1), ErrDataKey, 0},
		{"encryption context length", set(o.ecLen, 0xff, 0xff), nil, 0},
		{"no encrypted data keys", set(o.edkCount, 0, 0), ErrMalformed, 0},
		{"too many encrypted data keys", set(o.edkCount, 0, MaxEncryptedDataKeys+1), ErrUnsupported, 0},
		{"65535 encrypted data keys", set(o.edkCount, 0xff, 0xff), ErrUnsupported, 0},
		{"provider ID", set(o.providerID, 'r', 'a', 'w'), ErrUnsupported, 0},
		{"provider info", flip(o.edk - 3), ErrDataKey, 0},
		{"provider info not an ARN", set(o.providerInfo, 'x'), ErrDataKey, 0},
		{"encrypted data key", flip(o.edk + 3), ErrDataKey, 0},
		{"non-framed with a frame length", set(o.contentType, 0x01), ErrMalformed, 0},
		{"frame length", set(o.frameLength, 0, 0, 0, 17), ErrAuthentication, 0},
		{"frame length 0", set(o.frameLength, 0, 0, 0, 0), ErrMalformed, 0},
		{"frame length 4 GiB", set(o.frameLength, 0xff, 0xff, 0xff, 0xff), ErrUnsupported, 0},
		{"commit key", flip(o.commit + 31), ErrAuthentication, 0},
		{"header tag", flip(o.tag), ErrAuthentication, 0},
		{"frame 2 sequence number", set(l.frames[1], 0, 0, 0, 3), ErrAuthentication, 1},
		{"frame 2 IV", flip(l.frames[1] + 4), ErrMalformed, 1},
		{"frame 2 content", flip(l.frames[1] + 16), ErrAuthentication, 1},
		{"frame 2 tag", flip(l.frames[2] - 1), ErrAuthentication, 1},
		{"final frame marker", flip(final), ErrAuthentication, 3},
		{"final frame sequence number", set(final+4, 0, 0, 0, 5), ErrAuthentication, 3},
		{"final frame content length longer", set(final+20, 0, 0, 0, 6), ErrTruncated, 3},
		{"final frame content length shorter", set(final+20, 0, 0, 0, 4), ErrAuthentication, 3},
		{"final frame content length past frame", set(final+20, 0, 0, 0, frame+1), ErrMalformed, 3},
		{"final frame content", flip(final + 24), ErrAuthentication, 3},
		{"final frame tag", flip(len(msg) - 1), ErrAuthentication, 3},
		{"frames 1 and 2 swapped", frames(1, 0, 2, 3), ErrAuthentication, 0},
		{"frames 2 and 3 swapped", frames(0, 2, 1, 3), ErrAuthentication, 1},
		{"frame 2 dropped", frames(0, 2, 3), ErrAuthentication, 1},
		{"frame 1 repeated", frames(0, 0, 1, 2, 3), ErrAuthentication, 1},
		{"final frame first", frames(3, 0, 1, 2), ErrAuthentication, 0},
		{"final frame dropped", frames(0, 1, 2), ErrTruncated, 3},
		{"final frame and frame 3 dropped", frames(0, 1), ErrTruncated, 2},
		{"body dropped", frames(), ErrTruncated, 0},
		{"data after the final frame", func(m []byte) []byte { return append(m, 0) }, ErrMalformed, 3},
		{"two messages", func(m []byte) []byte { return append(m, other...) }, ErrMalformed, 3},
		{"frame of another message", func(m []byte) []byte {
			return append(append(m[:l.frames[1]:l.frames[1]], frameBytes(other, 1)...), m[l.frames[2]:]...)
		}, ErrAuthentication, 1},
		{"header of another message", func(m []byte) []byte { return append(bytes.Clone(other[:l.headerEnd]), m[l.headerEnd:]...) }, ErrAuthentication, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.tamper(bytes.Clone(msg))
			checkTampered(t, fake, bad, plain, tc.want, tc.written*frame)
		})
	}
}

// TestEncryptRefuses proves Encrypt refuses bad inputs and bad KMS answers
// before it writes anything.
func TestEncryptRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		encCtx map[string]string
		opts   []Option
		fake   func(*fakeKMS)
		want   string
	}{
		{"reserved context key", map[string]string{"aws-crypto-public-key": "x"}, nil, nil, "reserved"},
		{"context key not UTF-8", map[string]string{"\xff": "x"}, nil, nil, "UTF-8"},
		{"context value not UTF-8", map[string]string{"k": "\xc3"}, nil, nil, "UTF-8"},
		{"context value too long", map[string]string{"k": strings.Repeat("v", 1<<16)}, nil, nil, "65535"},
		{"context too long", map[string]string{"a": strings.Repeat("v", 40000), "b": strings.Repeat("v", 40000)}, nil, nil, "65535"},
		{"frame length 0", nil, []Option{WithFrameLength(0)}, nil, "frame length"},
		{"frame length too large", nil, []Option{WithFrameLength(MaxFrameLength + 1)}, nil, "frame length"},
		{"KMS fails", nil, nil, func(f *fakeKMS) { f.fail = errors.New("AccessDeniedException") }, "AccessDenied"},
		{"short data key", nil, nil, func(f *fakeKMS) { f.fixed = make([]byte, 16) }, "16-byte data key"},
		{"key ID not an ARN", nil, nil, func(f *fakeKMS) { f.arn = "alias/x" }, "not a KMS key ARN"},
		{"alias ARN", nil, nil, func(f *fakeKMS) { f.arn = "arn:aws:kms:us-east-1:111122223333:alias/x" }, "not a KMS key ARN"},
		{"empty blob", nil, nil, func(f *fakeKMS) { f.blob = []byte{} }, "ciphertext blob"},
		{"blob too long", nil, nil, func(f *fakeKMS) { f.blob = make([]byte, 1<<16) }, "ciphertext blob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeKMS()
			if tc.fake != nil {
				tc.fake(fake)
			}
			var out bytes.Buffer
			_, err := Encrypt(t.Context(), fake, "k", tc.encCtx, strings.NewReader("data"), &out, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("wrote %d bytes before failing", out.Len())
			}
		})
	}
}

// failingWriter fails after n bytes.
type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

// TestIOErrors proves read and write errors come back from both
// directions.
func TestIOErrors(t *testing.T) {
	fake := newFakeKMS()
	plain := pattern(10000)
	msg, _ := encryptBytes(t, fake, nil, plain)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"encrypt read", func() error {
			_, err := Encrypt(t.Context(), fake, "k", nil, io.MultiReader(bytes.NewReader(plain), iotest.ErrReader(boom)), io.Discard)
			return err
		}},
		{"encrypt write header", func() error {
			_, err := Encrypt(t.Context(), fake, "k", nil, bytes.NewReader(plain), &failingWriter{n: 10})
			return err
		}},
		{"encrypt write body", func() error {
			_, err := Encrypt(t.Context(), fake, "k", nil, bytes.NewReader(plain), &failingWriter{n: 5000})
			return err
		}},
		{"decrypt read", func() error {
			_, err := Decrypt(t.Context(), fake, io.MultiReader(bytes.NewReader(msg[:5000]), iotest.ErrReader(boom)), io.Discard)
			return err
		}},
		{"decrypt write", func() error {
			_, err := Decrypt(t.Context(), fake, bytes.NewReader(msg), &failingWriter{n: 5000})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || (!errors.Is(err, boom) && !strings.Contains(err.Error(), "disk full")) {
				t.Fatalf("error %v, want the I/O error", err)
			}
		})
	}
}

// reseal rewrites msg's header with change applied and a fresh header tag,
// keeping the body: it makes authentic messages with headers Encrypt does
// not write.
func reseal(t *testing.T, fake *fakeKMS, msg []byte, change func(*Header)) []byte {
	t.Helper()
	var sink bytes.Buffer
	h, err := Decrypt(t.Context(), fake, bytes.NewReader(msg), &sink)
	if err != nil {
		t.Fatal(err)
	}
	l := offsetsOf(msg)
	e := fake.entries[string(h.EncryptedDataKeys[0].Ciphertext)]
	k, err := deriveKeys(SuiteUnsigned, bytes.Clone(e.key), h.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	change(&h)
	// Serialized here without Encrypt's checks, sorted by key bytes.
	aad := []byte{0, 0}
	if len(h.EncryptionContext) > 0 {
		aad = binary.BigEndian.AppendUint16(aad, uint16(len(h.EncryptionContext)))
		for _, k := range slices.Sorted(maps.Keys(h.EncryptionContext)) {
			v := h.EncryptionContext[k]
			aad = binary.BigEndian.AppendUint16(aad, uint16(len(k)))
			aad = binary.BigEndian.AppendUint16(append(aad, k...), uint16(len(v)))
			aad = append(aad, v...)
		}
		binary.BigEndian.PutUint16(aad, uint16(len(aad)-2))
	}
	body := headerBody(h, aad, k.commit)
	return append(append(body, k.headerTag(body)...), msg[l.tag+tagLen:]...)
}

// TestDecryptDataKeys proves Decrypt tries each encrypted data key until
// one opens, and fails with every reason when none does.
func TestDecryptDataKeys(t *testing.T) {
	fake := newFakeKMS()
	plain := pattern(5000)
	msg, h := encryptBytes(t, fake, nil, plain)
	good := h.EncryptedDataKeys[0]
	unknown := EncryptedDataKey{ProviderID: ProviderID, ProviderInfo: testARN, Ciphertext: []byte("not a blob")}
	notARN := EncryptedDataKey{ProviderID: ProviderID, ProviderInfo: "alias/x", Ciphertext: good.Ciphertext}
	otherKey := EncryptedDataKey{ProviderID: ProviderID, ProviderInfo: "arn:aws:kms:us-east-1:111122223333:key/other", Ciphertext: good.Ciphertext}
	for _, tc := range []struct {
		name string
		edks []EncryptedDataKey
		want error
	}{
		{"second key opens", []EncryptedDataKey{unknown, good}, nil},
		{"after a bad ARN", []EncryptedDataKey{notARN, otherKey, good}, nil},
		{"none opens", []EncryptedDataKey{unknown, notARN, otherKey}, ErrDataKey},
		{"eight keys", []EncryptedDataKey{unknown, unknown, unknown, unknown, unknown, unknown, unknown, good}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := reseal(t, fake, msg, func(h *Header) { h.EncryptedDataKeys = tc.edks })
			var out recorder
			dh, err := Decrypt(t.Context(), fake, bytes.NewReader(m), &out)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || out.Len() != 0 {
					t.Fatalf("error %v after writing %d bytes, want %v", err, out.Len(), tc.want)
				}
				for _, reason := range []string{"not a KMS key ARN", "InvalidCiphertext", "IncorrectKey"} {
					if !strings.Contains(err.Error(), reason) {
						t.Errorf("error %q does not say %q", err, reason)
					}
				}
				return
			}
			if err != nil || !bytes.Equal(out.Bytes(), plain) || dh.KeyARN != testARN || len(dh.EncryptedDataKeys) != len(tc.edks) {
				t.Fatalf("Decrypt: %v (%d bytes, header %+v)", err, out.Len(), dh)
			}
		})
	}
}

// wrongKeyKMS answers every Decrypt with a fixed wrong data key.
type wrongKeyKMS struct{ *fakeKMS }

func (w wrongKeyKMS) Decrypt(context.Context, []byte, string, map[string]string) ([]byte, error) {
	return make([]byte, 32), nil
}

// shortKeyKMS answers every Decrypt with a 16-byte key.
type shortKeyKMS struct{ *fakeKMS }

func (s shortKeyKMS) Decrypt(context.Context, []byte, string, map[string]string) ([]byte, error) {
	return make([]byte, 16), nil
}

// TestDecryptWrongDataKey proves key commitment catches a KMS that returns
// another data key, and a data key of the wrong length is refused.
func TestDecryptWrongDataKey(t *testing.T) {
	fake := newFakeKMS()
	msg, _ := encryptBytes(t, fake, nil, pattern(100))
	for _, tc := range []struct {
		name string
		kms  KMS
		want error
	}{
		{"another key", wrongKeyKMS{fake}, ErrAuthentication},
		{"short key", shortKeyKMS{fake}, ErrDataKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkTampered(t, tc.kms, msg, nil, tc.want, 0)
		})
	}
}

// TestDecryptCommitment proves a message whose header and frames are all
// authentic under its data key, but whose commit key belongs to another
// data key, is refused: the commitment is checked, not just the tags.
func TestDecryptCommitment(t *testing.T) {
	fake := newFakeKMS()
	fake.fixed = pattern(32)
	plain := pattern(100)
	msg, h := encryptBytes(t, fake, nil, plain)
	o := offsetsOf(msg)
	k, err := deriveKeys(SuiteUnsigned, fake.fixed, h.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	other, err := deriveKeys(SuiteUnsigned, pattern(33)[1:], h.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(msg)
	copy(bad[o.commit:], other.commit)
	copy(bad[o.tag:], k.headerTag(bad[:o.tag]))
	var out recorder
	_, err = Decrypt(t.Context(), fake, bytes.NewReader(bad), &out)
	if !errors.Is(err, ErrAuthentication) || !strings.Contains(err.Error(), "commitment") || out.Len() != 0 {
		t.Fatalf("error %v after %d bytes, want a key commitment failure", err, out.Len())
	}
}

// TestDecryptContextOrder proves a context written in another order than by
// key bytes (as the JavaScript SDK's localeCompare may) still decrypts, and
// that duplicate keys and a signature key are refused.
func TestDecryptContextOrder(t *testing.T) {
	fake := newFakeKMS()
	plain := pattern(100)
	encCtx := map[string]string{"B": "2", "a": "1"}
	msg, _ := encryptBytes(t, fake, encCtx, plain)
	o := offsetsOf(msg)
	// Written sorted by bytes: "B" then "a". Swap the two entries (same
	// sizes) and reseal the header.
	swapped := bytes.Clone(msg)
	ec := swapped[o.ec+2 : o.edkCount]
	copy(ec, append(bytes.Clone(ec[6:]), ec[:6]...))
	if string(ec) != "\x00\x01a\x00\x011\x00\x01B\x00\x012" {
		t.Fatalf("unexpected context bytes %q", ec)
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"locale order", func(m []byte) []byte { return m }, nil},
		{"duplicate key", func(m []byte) []byte { m[o.ec+2+6+2] = 'a'; return m }, ErrMalformed},
		{"count zero", func(m []byte) []byte { m[o.ec], m[o.ec+1] = 0, 0; return m }, ErrMalformed},
		{"count too high", func(m []byte) []byte { m[o.ec+1] = 3; return m }, ErrMalformed},
		{"count too low", func(m []byte) []byte { m[o.ec+1] = 1; return m }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.mutate(bytes.Clone(swapped))
			// Authentic headers: recompute the tag over the altered body.
			e := fake.entries[string(m[o.edk:o.contentType])]
			k, err := deriveKeys(SuiteUnsigned, bytes.Clone(e.key), m[3:35])
			if err != nil {
				t.Fatal(err)
			}
			copy(m[o.tag:], k.headerTag(m[:o.tag]))
			var out recorder
			h, err := Decrypt(t.Context(), fake, bytes.NewReader(m), &out)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || out.Len() != 0 {
					t.Fatalf("error %v after %d bytes, want %v", err, out.Len(), tc.want)
				}
				return
			}
			if err != nil || !bytes.Equal(out.Bytes(), plain) || !maps.Equal(h.EncryptionContext, encCtx) {
				t.Fatalf("Decrypt: %v, context %v", err, h.EncryptionContext)
			}
		})
	}
	t.Run("signature key in context", func(t *testing.T) {
		m := reseal(t, fake, msg, func(h *Header) { h.EncryptionContext = map[string]string{"aws-crypto-public-key": "AsG8"} })
		checkTampered(t, fake, m, plain, ErrMalformed, 0)
	})
}

// TestValidKeyARN pins the ARN rule of framework/aws-kms/aws-kms-key-arn.md
// (resource type key).
func TestValidKeyARN(t *testing.T) {
	for _, tc := range []struct {
		arn  string
		want bool
	}{
		{testARN, true},
		{"arn:aws-cn:kms:cn-north-1:1:key/mrk-1/x", true},
		{"arn:aws:kms:us-east-1:111122223333:alias/x", false},
		{"arn:aws:kms:us-east-1:111122223333:key/", false},
		{"arn:aws:kms:us-east-1:111122223333:key", false},
		{"arn:aws:s3:us-east-1:111122223333:key/x", false},
		{"arn::kms:us-east-1:111122223333:key/x", false},
		{"arn:aws:kms::111122223333:key/x", false},
		{"arn:aws:kms:us-east-1::key/x", false},
		{"00000000-0000-4000-8000-000000000001", false},
		{"", false},
	} {
		if got := validKeyARN(tc.arn); got != tc.want {
			t.Errorf("validKeyARN(%q) = %v, want %v", tc.arn, got, tc.want)
		}
	}
}
