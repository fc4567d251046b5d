package esdk

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
)

// Option adjusts Encrypt.
type Option func(*options)

type options struct {
	frameLength int
	random      io.Reader // the message ID's source; tests fix it
}

// WithFrameLength sets the plaintext bytes per frame, from 1 to
// MaxFrameLength (default DefaultFrameLength).
func WithFrameLength(n int) Option { return func(o *options) { o.frameLength = n } }

// Encrypt reads plaintext from r until EOF and writes one message to w,
// encrypted under a new data key from keyID with the encryption context
// encCtx, which is bound to the message (and to the data key) and stored in
// its header in the clear. It holds one frame in memory, whatever the
// length of the input. On error, w may hold part of a message, which
// Decrypt refuses.
func Encrypt(ctx context.Context, kms KMS, keyID string, encCtx map[string]string, r io.Reader, w io.Writer, opts ...Option) (Header, error) {
	o := options{frameLength: DefaultFrameLength, random: rand.Reader}
	for _, opt := range opts {
		opt(&o)
	}
	if o.frameLength < 1 || o.frameLength > MaxFrameLength {
		return Header{}, fmt.Errorf("esdk: frame length %d: give 1 to %d", o.frameLength, MaxFrameLength)
	}
	aad, err := serializeContext(encCtx)
	if err != nil {
		return Header{}, err
	}
	h := Header{SuiteID: SuiteID, EncryptionContext: maps.Clone(encCtx), FrameLength: uint32(o.frameLength)}
	if h.EncryptionContext == nil {
		h.EncryptionContext = map[string]string{}
	}
	if _, err := io.ReadFull(o.random, h.MessageID[:]); err != nil {
		return Header{}, fmt.Errorf("esdk: no randomness for a message ID: %w", err)
	}
	dataKey, blob, arn, err := kms.GenerateDataKey(ctx, keyID, h.EncryptionContext)
	defer clear(dataKey)
	if err != nil {
		return Header{}, fmt.Errorf("esdk: generating a data key under %s: %w", keyID, err)
	}
	switch {
	case len(dataKey) != keyLen:
		return Header{}, fmt.Errorf("esdk: KMS returned a %d-byte data key; suite 0x0478 needs %d", len(dataKey), keyLen)
	case !validKeyARN(arn) || len(arn) > 0xFFFF:
		return Header{}, fmt.Errorf("esdk: KMS named the key %q, which is not a KMS key ARN", arn)
	case len(blob) == 0 || len(blob) > 0xFFFF:
		return Header{}, fmt.Errorf("esdk: KMS returned a %d-byte ciphertext blob; the format holds 1 to 65535", len(blob))
	}
	h.KeyARN = arn
	h.EncryptedDataKeys = []EncryptedDataKey{{ProviderID: ProviderID, ProviderInfo: arn, Ciphertext: blob}}
	k, err := deriveKeys(dataKey, h.MessageID[:])
	if err != nil {
		return Header{}, err
	}
	body := headerBody(h, aad, k.commit)
	if err := writeAll(w, body, k.headerTag(body)); err != nil {
		return Header{}, err
	}
	return h, encryptBody(k, h.MessageID[:], o.frameLength, r, w)
}

// headerBody serializes a version 2.0 header body: version, suite ID,
// message ID, AAD (encryption context), encrypted data keys, content type,
// frame length, and the suite data (the commit key).
func headerBody(h Header, aad, commit []byte) []byte {
	b := []byte{formatVersion}
	b = binary.BigEndian.AppendUint16(b, h.SuiteID)
	b = append(b, h.MessageID[:]...)
	b = append(b, aad...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.EncryptedDataKeys)))
	for _, e := range h.EncryptedDataKeys {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.ProviderID)))
		b = append(b, e.ProviderID...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.ProviderInfo)))
		b = append(b, e.ProviderInfo...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.Ciphertext)))
		b = append(b, e.Ciphertext...)
	}
	b = append(b, contentFramed)
	b = binary.BigEndian.AppendUint32(b, h.FrameLength)
	return append(b, commit...)
}

// encryptBody writes the frames: regular frames of frameLength bytes while
// more input follows, then one final frame with the rest (which is a full
// frame when the input is a non-zero multiple of the frame length, and empty
// only for empty input).
func encryptBody(k keys, messageID []byte, frameLength int, r io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(r, 32<<10)
	plain := make([]byte, frameLength)
	defer clear(plain)
	// The largest frame: end marker, sequence number, IV, length, content, tag.
	out := make([]byte, 0, 4+4+ivLen+4+frameLength+tagLen)
	var aad []byte
	for seq := uint32(1); ; seq++ {
		n, err := io.ReadFull(br, plain)
		final := false
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			final = true
		case err != nil:
			return fmt.Errorf("esdk: reading the plaintext: %w", err)
		default:
			if _, perr := br.Peek(1); errors.Is(perr, io.EOF) {
				final = true
			} else if perr != nil {
				return fmt.Errorf("esdk: reading the plaintext: %w", perr)
			}
		}
		if !final && seq == seqEnd {
			return errors.New("esdk: the plaintext needs more than 2^32-1 frames; use a larger frame length")
		}
		iv := frameIV(seq)
		out = out[:0]
		if final {
			out = binary.BigEndian.AppendUint32(out, seqEnd)
		}
		out = binary.BigEndian.AppendUint32(out, seq)
		out = append(out, iv[:]...)
		if final {
			out = binary.BigEndian.AppendUint32(out, uint32(n))
		}
		aad = bodyAAD(aad, messageID, final, seq, n)
		out = k.aead.Seal(out, iv[:], plain[:n], aad)
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("esdk: writing the message: %w", err)
		}
		if final {
			return nil
		}
	}
}

func writeAll(w io.Writer, parts ...[]byte) error {
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("esdk: writing the message: %w", err)
		}
	}
	return nil
}
