package esdk

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DecryptOption adjusts Decrypt.
type DecryptOption func(*decryptOptions)

type decryptOptions struct {
	policy   CommitmentPolicy
	onHeader func(Header) error
}

// WithCommitmentPolicy sets which suites Decrypt accepts (default
// RequireEncryptRequireDecrypt: the committing suites only).
func WithCommitmentPolicy(p CommitmentPolicy) DecryptOption {
	return func(o *decryptOptions) { o.policy = p }
}

// WithHeaderCheck calls check with the authenticated header before any
// plaintext is written; an error from it ends Decrypt with that error.
func WithHeaderCheck(check func(Header) error) DecryptOption {
	return func(o *decryptOptions) { o.onHeader = check }
}

// maxSingleBlock is the largest non-framed content the format allows
// (message-body.md: 2^36 - 32 bytes, the AES-GCM limit).
const maxSingleBlock = 1<<36 - 32

// Decrypt reads one message from r and writes its plaintext to w,
// holding at most one frame (or, for non-framed content, 64 KiB) in
// memory. It checks, in this order: the header's form and bounds (a known
// suite of the version it belongs to, allowed by the commitment policy, 1
// to MaxEncryptedDataKeys data keys all of provider "aws-kms", frame length
// up to MaxFrameLength), the data key (KMS Decrypt of each encrypted data
// key in turn, with its ARN and the header's encryption context), the key
// commitment of a committing suite, the header authentication tag, then
// each frame's sequence number, IV and tag before any of that frame's
// plaintext is written; finally, before the last frame's plaintext, the
// signature of a signed suite and that nothing follows the message.
// Non-framed content is written as it is decrypted and its tag checked at
// its end.
//
// On error, w holds plaintext that must be discarded: of the frames
// authenticated so far, or of non-framed content not yet authenticated
// (none when the error comes before the body). The Header is returned
// once it is authenticated, with or without an error later in the body;
// before that it is the zero Header.
func Decrypt(ctx context.Context, kms KMS, r io.Reader, w io.Writer, opts ...DecryptOption) (Header, error) {
	var o decryptOptions
	for _, opt := range opts {
		opt(&o)
	}
	br := bufio.NewReaderSize(r, 32<<10)
	h, body, auth, err := readHeader(br)
	if err != nil {
		return Header{}, err
	}
	if !h.Suite.Committing() && o.policy != RequireEncryptAllowDecrypt {
		return Header{}, fmt.Errorf("%w: algorithm suite %s does not commit to its data key; decrypt it with the commitment policy %s (to read or migrate old files)",
			ErrUnsupported, h.Suite, RequireEncryptAllowDecrypt)
	}
	m := &messageReader{r: br}
	var v *verifier
	if h.Suite.Signed() {
		if v, err = newVerifier(h.Suite, h.EncryptionContext[PublicKeyContextKey]); err != nil {
			return Header{}, err
		}
		defer v.close()
		v.sum.Write(body)
		v.sum.Write(auth)
		m.sum = v.sum
	}
	k, arn, err := openDataKey(ctx, kms, h, body)
	if err != nil {
		return Header{}, err
	}
	iv, tag := make([]byte, ivLen), auth
	if h.Version == 1 {
		iv, tag = auth[:ivLen], auth[ivLen:]
	}
	if _, err := k.aead.Open(nil, iv, tag, body); err != nil {
		return Header{}, fmt.Errorf("%w: the header authentication tag does not verify", ErrAuthentication)
	}
	h.KeyARN = arn
	if o.onHeader != nil {
		if err := o.onHeader(h); err != nil {
			return h, err
		}
	}
	end := func() error { return endMessage(br, v) }
	if h.FrameLength == 0 {
		return h, decryptSingle(k, h.MessageID, m, w, end)
	}
	return h, decryptFrames(k, h.MessageID, int(h.FrameLength), m, w, end)
}

// messageReader reads the message body, adding what it reads to the
// running hash of a signed message.
type messageReader struct {
	r   *bufio.Reader
	sum *hashPipe // nil for an unsigned suite
}

// read fills b, reporting the end of the input as truncation in frame
// seq, or in non-framed content when seq is 0.
func (m *messageReader) read(b []byte, seq uint32) error {
	if _, err := io.ReadFull(m.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if seq == 0 {
				return fmt.Errorf("%w: the input ends inside the non-framed content", ErrTruncated)
			}
			return fmt.Errorf("%w: the input ends at frame %d, before the final frame", ErrTruncated, seq)
		}
		return fmt.Errorf("esdk: reading the message: %w", err)
	}
	if m.sum != nil {
		m.sum.Write(b)
	}
	return nil
}

// endMessage reads the footer of a signed message and verifies its
// signature, then checks that nothing follows.
func endMessage(r *bufio.Reader, v *verifier) error {
	if v != nil {
		var n [2]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return fmt.Errorf("%w: the input ends before the signature", ErrTruncated)
		}
		size := int(binary.BigEndian.Uint16(n[:]))
		if size == 0 || size > maxSignatureLen {
			return fmt.Errorf("%w: a %d-byte signature; an ECDSA signature is 8 to %d bytes", ErrMalformed, size, maxSignatureLen)
		}
		sig := make([]byte, size)
		if _, err := io.ReadFull(r, sig); err != nil {
			return fmt.Errorf("%w: the input ends inside the signature", ErrTruncated)
		}
		if err := v.verify(sig); err != nil {
			return err
		}
	}
	if _, err := r.ReadByte(); err == nil {
		return fmt.Errorf("%w: data follows the end of the message", ErrMalformed)
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("esdk: reading the message: %w", err)
	}
	return nil
}

// openDataKey decrypts the encrypted data keys in turn with KMS until one
// yields a data key (whose commit key, for a committing suite, matches the
// header's), and returns the derived keys and that data key's ARN. It
// zeroes the plaintext data keys.
func openDataKey(ctx context.Context, kms KMS, h Header, body []byte) (keys, string, error) {
	var errs []error
	for _, e := range h.EncryptedDataKeys {
		if !validKeyARN(e.ProviderInfo) {
			errs = append(errs, fmt.Errorf("%w: provider info %q is not a KMS key ARN", ErrMalformed, e.ProviderInfo))
			continue
		}
		dataKey, err := kms.Decrypt(ctx, e.Ciphertext, e.ProviderInfo, h.EncryptionContext)
		if err != nil {
			clear(dataKey)
			errs = append(errs, fmt.Errorf("%s: %w", e.ProviderInfo, err))
			continue
		}
		k, err := deriveKeys(h.Suite, dataKey, h.MessageID)
		clear(dataKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.ProviderInfo, err))
			continue
		}
		// Key commitment, compared in constant time.
		if h.Suite.Committing() && subtle.ConstantTimeCompare(k.commit, body[len(body)-commitLen:]) != 1 {
			return keys{}, "", fmt.Errorf("%w: the data key of %s does not match the message's key commitment", ErrAuthentication, e.ProviderInfo)
		}
		return k, e.ProviderInfo, nil
	}
	return keys{}, "", fmt.Errorf("%w: %w", ErrDataKey, errors.Join(errs...))
}

// decryptFrames reads, authenticates and writes the frames; before the
// final frame's plaintext it calls end.
func decryptFrames(k keys, messageID []byte, frameLength int, m *messageReader, w io.Writer, end func() error) error {
	buf := make([]byte, frameLength+tagLen)
	defer clear(buf)
	var (
		aad    []byte
		fields [4 + ivLen + 4]byte
	)
	for seq := uint32(1); ; seq++ {
		// A regular frame starts with its sequence number; the final frame
		// with the end marker, then its sequence number.
		if err := m.read(fields[:4], seq); err != nil {
			return err
		}
		final := binary.BigEndian.Uint32(fields[:4]) == seqEnd
		if final {
			if err := m.read(fields[:4], seq); err != nil {
				return err
			}
		}
		if got := binary.BigEndian.Uint32(fields[:4]); got != seq {
			return fmt.Errorf("%w: frame %d has sequence number %d (frames reordered, dropped or repeated)", ErrAuthentication, seq, got)
		}
		if err := m.read(fields[4:4+ivLen], seq); err != nil {
			return err
		}
		if want := frameIV(seq); [ivLen]byte(fields[4:4+ivLen]) != want {
			return fmt.Errorf("%w: frame %d has IV %x, not its sequence number", ErrMalformed, seq, fields[4:4+ivLen])
		}
		n := frameLength
		if final {
			if err := m.read(fields[4+ivLen:], seq); err != nil {
				return err
			}
			c := binary.BigEndian.Uint32(fields[4+ivLen:])
			if c > uint32(frameLength) {
				return fmt.Errorf("%w: the final frame holds %d bytes, more than the frame length %d", ErrMalformed, c, frameLength)
			}
			n = int(c)
		}
		sealed := buf[:n+tagLen]
		if err := m.read(sealed, seq); err != nil {
			return err
		}
		iv := frameIV(seq)
		aad = bodyAAD(aad, messageID, aadContent(true, final), seq, uint64(n))
		plain, err := k.aead.Open(sealed[:0], iv[:], sealed, aad)
		if err != nil {
			return fmt.Errorf("%w: frame %d does not verify", ErrAuthentication, seq)
		}
		if final {
			if err := end(); err != nil {
				return err
			}
		}
		if _, err := w.Write(plain); err != nil {
			return fmt.Errorf("esdk: writing the plaintext: %w", err)
		}
		if final {
			return nil
		}
	}
}

// decryptSingle reads non-framed content: IV, length, ciphertext and tag,
// decrypting the ciphertext 64 KiB at a time; its plaintext is written
// before the tag is checked at the end, then end is called.
func decryptSingle(k keys, messageID []byte, m *messageReader, w io.Writer, end func() error) error {
	var fields [ivLen + 8]byte
	if err := m.read(fields[:], 0); err != nil {
		return err
	}
	n := binary.BigEndian.Uint64(fields[ivLen:])
	if n > maxSingleBlock {
		return fmt.Errorf("%w: non-framed content of %d bytes; the format allows at most %d", ErrMalformed, n, uint64(maxSingleBlock))
	}
	o := newGCMOpener(k.block, fields[:ivLen], bodyAAD(nil, messageID, aadSingle, 1, n))
	buf := make([]byte, 64<<10)
	defer clear(buf)
	for rest := n; rest > 0; {
		chunk := buf[:min(uint64(len(buf)), rest)]
		if err := m.read(chunk, 0); err != nil {
			return err
		}
		o.open(chunk, chunk)
		if _, err := w.Write(chunk); err != nil {
			return fmt.Errorf("esdk: writing the plaintext: %w", err)
		}
		rest -= uint64(len(chunk))
	}
	tag := make([]byte, tagLen)
	if err := m.read(tag, 0); err != nil {
		return err
	}
	if err := o.close(tag); err != nil {
		return fmt.Errorf("%w: the non-framed content does not verify", ErrAuthentication)
	}
	return end()
}
