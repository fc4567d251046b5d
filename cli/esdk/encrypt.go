package esdk

import (
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
	suite       Suite
	more        []string  // keys the data key is also encrypted under
	random      io.Reader // the message ID's and signing key's source; tests fix it
}

// WithFrameLength sets the plaintext bytes per frame, from 1 to
// MaxFrameLength (default DefaultFrameLength).
func WithFrameLength(n int) Option { return func(o *options) { o.frameLength = n } }

// WithSuite sets the algorithm suite: SuiteSigned (the default, as in the
// AWS Encryption SDKs) or SuiteUnsigned.
func WithSuite(s Suite) Option { return func(o *options) { o.suite = s } }

// WithAdditionalKeys encrypts the data key under each of keyIDs as well,
// as the SDKs' KMS keyrings do with their key IDs beside the generator: the
// message then decrypts through any one of the keys.
func WithAdditionalKeys(keyIDs ...string) Option {
	return func(o *options) { o.more = append(o.more, keyIDs...) }
}

// Encrypt reads plaintext from r until EOF and writes one message to w,
// encrypted under a new data key from keyID (and under the keys of
// WithAdditionalKeys) with the encryption context encCtx, which is bound to
// the message (and to the data keys) and stored in its header in the clear.
// A signed suite adds its verification key to the context. It holds one
// frame in memory, whatever the length of the input. On error, w may hold
// part of a message, which Decrypt refuses.
func Encrypt(ctx context.Context, kms KMS, keyID string, encCtx map[string]string, r io.Reader, w io.Writer, opts ...Option) (Header, error) {
	o := options{frameLength: DefaultFrameLength, suite: SuiteSigned, random: rand.Reader}
	for _, opt := range opts {
		opt(&o)
	}
	if o.frameLength < 1 || o.frameLength > MaxFrameLength {
		return Header{}, fmt.Errorf("esdk: frame length %d: give 1 to %d", o.frameLength, MaxFrameLength)
	}
	if !o.suite.Committing() {
		return Header{}, fmt.Errorf("esdk: suite %s does not commit to its key; encrypt with %s or %s", o.suite, SuiteSigned.Name, SuiteUnsigned.Name)
	}
	if 1+len(o.more) > MaxEncryptedDataKeys {
		return Header{}, fmt.Errorf("esdk: %d keys; a message carries at most %d", 1+len(o.more), MaxEncryptedDataKeys)
	}
	// The context is checked before the signature key joins it: the
	// reserved prefix is the SDK's, not the caller's.
	if _, err := serializeContext(encCtx, false); err != nil {
		return Header{}, err
	}
	h := Header{Version: formatVersion, Suite: o.suite, EncryptionContext: maps.Clone(encCtx),
		FrameLength: uint32(o.frameLength), MessageID: make([]byte, messageIDLen)}
	if h.EncryptionContext == nil {
		h.EncryptionContext = map[string]string{}
	}
	var sign *signer
	if o.suite.Signed() {
		var err error
		if sign, err = newSigner(o.suite, o.random); err != nil {
			return Header{}, err
		}
		defer sign.close()
		if h.EncryptionContext[PublicKeyContextKey], err = sign.publicKey(); err != nil {
			return Header{}, err
		}
	}
	aad, err := serializeContext(h.EncryptionContext, true)
	if err != nil {
		return Header{}, err
	}
	if _, err := io.ReadFull(o.random, h.MessageID); err != nil {
		return Header{}, fmt.Errorf("esdk: no randomness for a message ID: %w", err)
	}
	dataKey, err := encryptDataKey(ctx, kms, keyID, o.more, &h)
	defer clear(dataKey)
	if err != nil {
		return Header{}, err
	}
	k, err := deriveKeys(o.suite, dataKey, h.MessageID)
	if err != nil {
		return Header{}, err
	}
	out := w
	if sign != nil {
		out = io.MultiWriter(w, sign.sum)
	}
	body := headerBody(h, aad, k.commit)
	if err := writeAll(out, body, k.headerTag(body)); err != nil {
		return Header{}, err
	}
	if err := encryptBody(k, h.MessageID, o.frameLength, r, out); err != nil {
		return Header{}, err
	}
	if sign != nil {
		footer, err := sign.footer(o.random)
		if err != nil {
			return Header{}, err
		}
		if err := writeAll(w, footer); err != nil {
			return Header{}, err
		}
	}
	return h, nil
}

// encryptDataKey makes the data key with GenerateDataKey under keyID and
// encrypts it under each of more, filling h's encrypted data keys and key
// ARN. The caller clears the data key.
func encryptDataKey(ctx context.Context, kms KMS, keyID string, more []string, h *Header) ([]byte, error) {
	dataKey, blob, arn, err := kms.GenerateDataKey(ctx, keyID, h.EncryptionContext)
	if err != nil {
		return dataKey, fmt.Errorf("esdk: generating a data key under %s: %w", keyID, err)
	}
	if len(dataKey) != h.Suite.KeyLen {
		return dataKey, fmt.Errorf("esdk: KMS returned a %d-byte data key; suite 0x%04X needs %d", len(dataKey), h.Suite.ID, h.Suite.KeyLen)
	}
	if err := addDataKey(h, arn, blob); err != nil {
		return dataKey, err
	}
	h.KeyARN = arn
	for _, id := range more {
		blob, arn, err := kms.Encrypt(ctx, id, dataKey, h.EncryptionContext)
		if err != nil {
			return dataKey, fmt.Errorf("esdk: encrypting the data key under %s: %w", id, err)
		}
		if err := addDataKey(h, arn, blob); err != nil {
			return dataKey, err
		}
	}
	return dataKey, nil
}

// addDataKey appends an encrypted data key, checking what KMS returned.
func addDataKey(h *Header, arn string, blob []byte) error {
	switch {
	case !validKeyARN(arn) || len(arn) > 0xFFFF:
		return fmt.Errorf("esdk: KMS named the key %q, which is not a KMS key ARN", arn)
	case len(blob) == 0 || len(blob) > 0xFFFF:
		return fmt.Errorf("esdk: KMS returned a %d-byte ciphertext blob; the format holds 1 to 65535", len(blob))
	}
	h.EncryptedDataKeys = append(h.EncryptedDataKeys, EncryptedDataKey{ProviderID: ProviderID, ProviderInfo: arn, Ciphertext: blob})
	return nil
}

// headerBody serializes a version 2.0 header body: version, suite ID,
// message ID, AAD (encryption context), encrypted data keys, content type,
// frame length, and the suite data (the commit key).
func headerBody(h Header, aad, commit []byte) []byte {
	b := []byte{h.Version}
	b = binary.BigEndian.AppendUint16(b, h.Suite.ID)
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
	if h.FrameLength == 0 {
		b = append(b, contentUnframed)
	} else {
		b = append(b, contentFramed)
	}
	b = binary.BigEndian.AppendUint32(b, h.FrameLength)
	return append(b, commit...)
}

// encryptBody writes the frames: regular frames of frameLength bytes while
// more input follows, then one final frame with the rest (which is a full
// frame when the input is a non-zero multiple of the frame length, and empty
// only for empty input).
func encryptBody(k keys, messageID []byte, frameLength int, r io.Reader, w io.Writer) error {
	// Two frame buffers, read straight from r: the next frame is read before
	// the current one is sealed, which tells whether the current one is the
	// final frame without a bufio copy of every byte.
	cur, next := make([]byte, frameLength), make([]byte, frameLength)
	defer clear(cur)
	defer clear(next)
	// The largest frame: end marker, sequence number, IV, length, content, tag.
	out := make([]byte, 0, 4+4+ivLen+4+frameLength+tagLen)
	var aad []byte
	n, eof, err := readFrame(r, cur)
	if err != nil {
		return err
	}
	for seq := uint32(1); ; seq++ {
		final := eof
		var m int
		if !final {
			if m, eof, err = readFrame(r, next); err != nil {
				return err
			}
			final = m == 0 && eof
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
		aad = bodyAAD(aad, messageID, aadContent(true, final), seq, uint64(n))
		out = k.aead.Seal(out, iv[:], cur[:n], aad)
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("esdk: writing the message: %w", err)
		}
		if final {
			return nil
		}
		cur, next, n = next, cur, m
	}
}

// readFrame fills buf from r; eof reports that r has nothing after what
// was read (a short read means the end).
func readFrame(r io.Reader, buf []byte) (n int, eof bool, err error) {
	n, err = io.ReadFull(r, buf)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return n, true, nil
	case err != nil:
		return n, false, fmt.Errorf("esdk: reading the plaintext: %w", err)
	}
	return n, false, nil
}

func writeAll(w io.Writer, parts ...[]byte) error {
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("esdk: writing the message: %w", err)
		}
	}
	return nil
}
