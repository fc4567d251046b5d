package esdk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

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

// readHeader parses a header of message format version 1 or 2 and returns
// it with the raw header body and the header authentication (version 1:
// IV and tag; version 2: the tag). Every length it reads is bounded
// (uint16 fields, at most MaxEncryptedDataKeys keys), so a hostile header
// cannot make it allocate more than a few MiB.
func readHeader(r *bufio.Reader) (h Header, body, auth []byte, err error) {
	hr := &headerReader{r: r}
	fail := func(e error) (Header, []byte, []byte, error) { return Header{}, nil, nil, e }
	switch v := hr.u8(); {
	case hr.err != nil:
		return fail(hr.err)
	case v == 'A':
		return fail(fmt.Errorf("%w: the input starts with %q, so it may be Base64-encoded; decode it first", ErrMalformed, 'A'))
	case v != 1 && v != 2:
		return fail(fmt.Errorf("%w: the input is not an AWS Encryption SDK message: it starts with 0x%02x, and a message starts with 0x01 or 0x02", ErrMalformed, v))
	default:
		h.Version = v
	}
	if h.Version == 1 {
		if t := hr.u8(); hr.err == nil && t != typeCustomerAEAD {
			return fail(fmt.Errorf("%w: message type 0x%02x", ErrMalformed, t))
		}
	}
	id := hr.u16()
	if hr.err != nil {
		return fail(hr.err)
	}
	s, ok := SuiteByID(id)
	switch {
	case !ok:
		return fail(fmt.Errorf("%w: algorithm suite 0x%04X", ErrUnsupported, id))
	case s.Version != h.Version:
		return fail(fmt.Errorf("%w: algorithm suite %s in a version %d message; it belongs to version %d", ErrMalformed, s, h.Version, s.Version))
	}
	h.Suite = s
	idLen := messageIDLen
	if h.Version == 1 {
		idLen = messageIDLenV1
	}
	h.MessageID = append([]byte(nil), hr.bytes(idLen)...)
	ecBytes := hr.bytes(int(hr.u16()))
	if hr.err != nil {
		return fail(hr.err)
	}
	if h.EncryptionContext, err = parseContext(ecBytes); err != nil {
		return fail(err)
	}
	// The AWS Encryption SDKs' default CMM wants the verification key of a
	// signed suite in the context, and refuses one with an unsigned suite.
	if _, has := h.EncryptionContext[PublicKeyContextKey]; has != s.Signed() {
		if has {
			return fail(fmt.Errorf("%w: the encryption context holds a signature key, but suite %s is unsigned", ErrMalformed, s))
		}
		return fail(fmt.Errorf("%w: suite %s is signed, but the encryption context holds no signature key", ErrMalformed, s))
	}
	if err := readDataKeys(hr, &h); err != nil {
		return fail(err)
	}
	contentType := hr.u8()
	if h.Version == 1 {
		if reserved := hr.bytes(4); hr.err == nil && [4]byte(reserved) != [4]byte{} {
			return fail(fmt.Errorf("%w: the reserved field is %x, not zero", ErrMalformed, reserved))
		}
		if n := hr.u8(); hr.err == nil && n != ivLen {
			return fail(fmt.Errorf("%w: IV length %d; suite %s uses %d", ErrMalformed, n, s, ivLen))
		}
	}
	frameLength := hr.u32()
	if hr.err != nil {
		return fail(hr.err)
	}
	switch {
	case contentType == contentUnframed && frameLength != 0:
		return fail(fmt.Errorf("%w: frame length %d in a non-framed message", ErrMalformed, frameLength))
	case contentType == contentUnframed:
	case contentType != contentFramed:
		return fail(fmt.Errorf("%w: content type 0x%02x", ErrMalformed, contentType))
	case frameLength == 0:
		return fail(fmt.Errorf("%w: frame length 0 in a framed message", ErrMalformed))
	case frameLength > MaxFrameLength:
		return fail(fmt.Errorf("%w: frame length %d; at most %d is accepted", ErrUnsupported, frameLength, MaxFrameLength))
	}
	h.FrameLength = frameLength
	if s.Committing() {
		hr.bytes(commitLen) // the suite data: the commit key
	}
	if hr.err != nil {
		return fail(hr.err)
	}
	body = hr.raw
	authLen := tagLen
	if h.Version == 1 {
		authLen += ivLen
	}
	auth = make([]byte, authLen)
	if _, err := io.ReadFull(r, auth); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: the input ends inside the header", ErrTruncated)
		}
		return fail(err)
	}
	return h, body, auth, nil
}

// readDataKeys reads the encrypted data keys: 1 to MaxEncryptedDataKeys,
// all of provider "aws-kms".
func readDataKeys(hr *headerReader, h *Header) error {
	switch n := hr.u16(); {
	case hr.err != nil:
		return hr.err
	case n == 0:
		return fmt.Errorf("%w: no encrypted data keys", ErrMalformed)
	case n > MaxEncryptedDataKeys:
		return fmt.Errorf("%w: %d encrypted data keys; at most %d are accepted", ErrUnsupported, n, MaxEncryptedDataKeys)
	default:
		for range n {
			id := string(hr.bytes(int(hr.u16())))
			if hr.err == nil && id != ProviderID {
				return fmt.Errorf("%w: an encrypted data key of provider %q; only %q is accepted", ErrUnsupported, id, ProviderID)
			}
			info := string(hr.bytes(int(hr.u16())))
			ct := hr.bytes(int(hr.u16()))
			if hr.err != nil {
				return hr.err
			}
			h.EncryptedDataKeys = append(h.EncryptedDataKeys, EncryptedDataKey{ProviderID: id, ProviderInfo: info, Ciphertext: append([]byte(nil), ct...)})
		}
	}
	return nil
}
