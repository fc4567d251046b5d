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

// Decrypt reads one message from r and writes its plaintext to w, frame by
// frame, holding one frame in memory. It checks, in this order: the header's
// form and bounds (version 2, suite 0x0478, framed, 1 to
// MaxEncryptedDataKeys data keys all of provider "aws-kms", frame length up
// to MaxFrameLength), the data key (KMS Decrypt of each encrypted data key
// in turn, with its ARN and the header's encryption context), the key
// commitment, the header authentication tag, then each frame's sequence
// number, IV and tag before any of that frame's plaintext is written, and
// finally that the final frame ends the input.
//
// On error, w holds the plaintext of the frames authenticated so far (none
// when the error comes before the body); a caller must discard it. The
// Header is returned once it is authenticated, with or without an error
// later in the body; before that it is the zero Header.
func Decrypt(ctx context.Context, kms KMS, r io.Reader, w io.Writer) (Header, error) {
	br := bufio.NewReaderSize(r, 32<<10)
	h, body, tag, err := readHeader(br)
	if err != nil {
		return Header{}, err
	}
	k, arn, err := openDataKey(ctx, kms, h, body)
	if err != nil {
		return Header{}, err
	}
	// The header authentication tag: AES-GCM with an all-zero IV over an
	// empty ciphertext, AAD = the header body.
	var iv [ivLen]byte
	if _, err := k.aead.Open(nil, iv[:], tag, body); err != nil {
		return Header{}, fmt.Errorf("%w: the header authentication tag does not verify", ErrAuthentication)
	}
	h.KeyARN = arn
	return h, decryptBody(k, h.MessageID[:], int(h.FrameLength), br, w)
}

// headerReader reads header fields from the input and keeps the bytes of
// the header body, which the header tag authenticates.
type headerReader struct {
	r   *bufio.Reader
	raw []byte
	err error
}

func (hr *headerReader) bytes(n int) []byte {
	if hr.err != nil {
		return nil
	}
	start := len(hr.raw)
	hr.raw = append(hr.raw, make([]byte, n)...)
	if _, err := io.ReadFull(hr.r, hr.raw[start:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: the input ends inside the header", ErrTruncated)
		}
		hr.err = err
		return nil
	}
	return hr.raw[start:]
}

func (hr *headerReader) u8() byte {
	if b := hr.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (hr *headerReader) u16() uint16 {
	if b := hr.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (hr *headerReader) u32() uint32 {
	if b := hr.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// readHeader parses a version 2.0 header and returns it with the raw header
// body and the header authentication tag. Every length it reads is bounded
// (uint16 fields, at most MaxEncryptedDataKeys keys), so a hostile header
// cannot make it allocate more than a few MiB.
func readHeader(r *bufio.Reader) (h Header, body, tag []byte, err error) {
	hr := &headerReader{r: r}
	fail := func(e error) (Header, []byte, []byte, error) { return Header{}, nil, nil, e }
	switch v := hr.u8(); {
	case hr.err != nil:
		return fail(hr.err)
	case v == 'A':
		return fail(fmt.Errorf("%w: the input starts with %q, so it may be Base64-encoded; decode it first", ErrMalformed, 'A'))
	case v == 0x01:
		return fail(fmt.Errorf("%w: message format version 1; only version 2 (suite 0x0478) is accepted", ErrUnsupported))
	case v != formatVersion:
		return fail(fmt.Errorf("%w: message format version 0x%02x", ErrMalformed, v))
	}
	switch s := hr.u16(); {
	case hr.err != nil:
		return fail(hr.err)
	case s != SuiteID:
		return fail(fmt.Errorf("%w: algorithm suite 0x%04x; only 0x%04x (AES-256-GCM, HKDF-SHA512, key commitment, no signature) is accepted", ErrUnsupported, s, SuiteID))
	}
	h.SuiteID = SuiteID
	copy(h.MessageID[:], hr.bytes(messageIDLen))
	ecBytes := hr.bytes(int(hr.u16()))
	if hr.err != nil {
		return fail(hr.err)
	}
	if h.EncryptionContext, err = parseContext(ecBytes); err != nil {
		return fail(err)
	}
	// The AWS Encryption SDK's default CMM refuses a verification key in
	// the context of an unsigned suite.
	if _, ok := h.EncryptionContext[ReservedContextPrefix+"public-key"]; ok {
		return fail(fmt.Errorf("%w: the encryption context holds a signature key, but suite 0x0478 is unsigned", ErrMalformed))
	}
	switch n := hr.u16(); {
	case hr.err != nil:
		return fail(hr.err)
	case n == 0:
		return fail(fmt.Errorf("%w: no encrypted data keys", ErrMalformed))
	case n > MaxEncryptedDataKeys:
		return fail(fmt.Errorf("%w: %d encrypted data keys; at most %d are accepted", ErrUnsupported, n, MaxEncryptedDataKeys))
	default:
		for range n {
			id := string(hr.bytes(int(hr.u16())))
			if hr.err == nil && id != ProviderID {
				return fail(fmt.Errorf("%w: an encrypted data key of provider %q; only %q is accepted", ErrUnsupported, id, ProviderID))
			}
			info := string(hr.bytes(int(hr.u16())))
			ct := hr.bytes(int(hr.u16()))
			if hr.err != nil {
				return fail(hr.err)
			}
			h.EncryptedDataKeys = append(h.EncryptedDataKeys, EncryptedDataKey{ProviderID: id, ProviderInfo: info, Ciphertext: append([]byte(nil), ct...)})
		}
	}
	switch ct := hr.u8(); {
	case hr.err != nil:
		return fail(hr.err)
	case ct == contentUnframed:
		return fail(fmt.Errorf("%w: non-framed content; only framed messages are accepted", ErrUnsupported))
	case ct != contentFramed:
		return fail(fmt.Errorf("%w: content type 0x%02x", ErrMalformed, ct))
	}
	switch fl := hr.u32(); {
	case hr.err != nil:
		return fail(hr.err)
	case fl == 0:
		return fail(fmt.Errorf("%w: frame length 0 in a framed message", ErrMalformed))
	case fl > MaxFrameLength:
		return fail(fmt.Errorf("%w: frame length %d; at most %d is accepted", ErrUnsupported, fl, MaxFrameLength))
	default:
		h.FrameLength = fl
	}
	hr.bytes(keyLen) // the suite data: the commit key
	if hr.err != nil {
		return fail(hr.err)
	}
	body = hr.raw
	tag = make([]byte, tagLen)
	if _, err := io.ReadFull(r, tag); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: the input ends inside the header", ErrTruncated)
		}
		return fail(err)
	}
	return h, body, tag, nil
}

// openDataKey decrypts the encrypted data keys in turn with KMS until one
// yields a data key whose commit key matches the header's, and returns the
// derived keys and that data key's ARN. It zeroes the plaintext data keys.
func openDataKey(ctx context.Context, kms KMS, h Header, body []byte) (keys, string, error) {
	commit := body[len(body)-keyLen:]
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
		k, err := deriveKeys(dataKey, h.MessageID[:])
		clear(dataKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.ProviderInfo, err))
			continue
		}
		// Key commitment, compared in constant time.
		if subtle.ConstantTimeCompare(k.commit, commit) != 1 {
			return keys{}, "", fmt.Errorf("%w: the data key of %s does not match the message's key commitment", ErrAuthentication, e.ProviderInfo)
		}
		return k, e.ProviderInfo, nil
	}
	return keys{}, "", fmt.Errorf("%w: %w", ErrDataKey, errors.Join(errs...))
}

// decryptBody reads, authenticates and writes the frames, then checks that
// nothing follows the final frame.
func decryptBody(k keys, messageID []byte, frameLength int, r *bufio.Reader, w io.Writer) error {
	buf := make([]byte, frameLength+tagLen)
	defer clear(buf)
	var (
		aad    []byte
		fields [4 + ivLen + 4]byte
	)
	for seq := uint32(1); ; seq++ {
		// A regular frame starts with its sequence number; the final frame
		// with the end marker, then its sequence number.
		if err := readBody(r, fields[:4], seq); err != nil {
			return err
		}
		final := binary.BigEndian.Uint32(fields[:4]) == seqEnd
		if final {
			if err := readBody(r, fields[:4], seq); err != nil {
				return err
			}
		}
		if got := binary.BigEndian.Uint32(fields[:4]); got != seq {
			return fmt.Errorf("%w: frame %d has sequence number %d (frames reordered, dropped or repeated)", ErrAuthentication, seq, got)
		}
		if err := readBody(r, fields[4:4+ivLen], seq); err != nil {
			return err
		}
		if want := frameIV(seq); [ivLen]byte(fields[4:4+ivLen]) != want {
			return fmt.Errorf("%w: frame %d has IV %x, not its sequence number", ErrMalformed, seq, fields[4:4+ivLen])
		}
		n := frameLength
		if final {
			if err := readBody(r, fields[4+ivLen:], seq); err != nil {
				return err
			}
			c := binary.BigEndian.Uint32(fields[4+ivLen:])
			if c > uint32(frameLength) {
				return fmt.Errorf("%w: the final frame holds %d bytes, more than the frame length %d", ErrMalformed, c, frameLength)
			}
			n = int(c)
		}
		sealed := buf[:n+tagLen]
		if err := readBody(r, sealed, seq); err != nil {
			return err
		}
		iv := frameIV(seq)
		aad = bodyAAD(aad, messageID, final, seq, n)
		plain, err := k.aead.Open(sealed[:0], iv[:], sealed, aad)
		if err != nil {
			return fmt.Errorf("%w: frame %d does not verify", ErrAuthentication, seq)
		}
		if final {
			if _, err := r.ReadByte(); err == nil {
				return fmt.Errorf("%w: data follows the final frame", ErrMalformed)
			} else if !errors.Is(err, io.EOF) {
				return fmt.Errorf("esdk: reading the message: %w", err)
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

// readBody fills b from the body of a message, reporting the end of the
// input as truncation.
func readBody(r io.Reader, b []byte, seq uint32) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the input ends at frame %d, before the final frame", ErrTruncated, seq)
		}
		return fmt.Errorf("esdk: reading the message: %w", err)
	}
	return nil
}
