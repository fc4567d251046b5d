package ciphertext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// MaxContextBytes bounds an encryption context: the sum of the lengths of
// all its keys and values, as AWS KMS counts it.
const MaxContextBytes = 8192

// aadLabel opens every AAD and names the format it belongs to.
const aadLabel = "hsmkms-v1"

// ErrInvalidContext is matched (errors.Is) by every error of Canonical and
// of AAD's context check. The key service reports it as a validation error.
var ErrInvalidContext = errors.New("ciphertext: invalid encryption context")

func invalidContext(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...), kind: ErrInvalidContext}
}

// Context is an encryption context: non-secret key-value pairs that an
// aes-gcm seal binds and that decryption must present again.
type Context map[string]string

// Canonical returns the context's unique encoding: a uint16 count, then for
// each pair in the order of its key's bytes a uint16 length, the key, a
// uint16 length and the value, all big-endian. A nil or empty context is
// two zero bytes. Keys must be non-empty and all keys and values together
// at most MaxContextBytes bytes; errors match ErrInvalidContext.
func (c Context) Canonical() ([]byte, error) { return c.appendCanonical(nil) }

// Validate reports the error Canonical would, without encoding.
func (c Context) Validate() error {
	_, err := c.size()
	return err
}

// size checks the context and returns the bytes of its keys and values.
func (c Context) size() (int, error) {
	total, emptyKey := 0, false
	for k, v := range c {
		total += len(k) + len(v)
		emptyKey = emptyKey || k == ""
	}
	switch {
	case total > MaxContextBytes:
		return 0, invalidContext("encryption context is %d bytes of keys and values, max %d", total, MaxContextBytes)
	case emptyKey:
		return 0, invalidContext("encryption context key must not be empty")
	}
	return total, nil
}

// appendCanonical appends the canonical encoding to dst. Contexts of up to
// eight pairs sort their keys on the stack: this runs on every seal and
// unseal.
func (c Context) appendCanonical(dst []byte) ([]byte, error) {
	total, err := c.size()
	if err != nil {
		return nil, err
	}
	var small [8]string
	keys := small[:0]
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys) // Go compares strings byte by byte
	// Non-empty keys and the byte limit keep the count and every length
	// within uint16.
	out := slices.Grow(dst, 2+4*len(keys)+total)
	out = binary.BigEndian.AppendUint16(out, uint16(len(keys)))
	for _, k := range keys {
		v := c[k]
		out = binary.BigEndian.AppendUint16(out, uint16(len(k)))
		out = append(out, k...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(v)))
		out = append(out, v...)
	}
	return out, nil
}

// AAD returns the additional authenticated data of an aes-gcm seal:
// "hsmkms-v1" || b.Header() || c.Canonical(). The IV and sealed bytes are
// not part of it. Errors are Canonical's.
func AAD(b Blob, c Context) ([]byte, error) {
	out := make([]byte, 0, len(aadLabel)+HeaderSize+2+4*len(c)+64)
	out = append(out, aadLabel...)
	out = b.AppendHeader(out)
	return c.appendCanonical(out)
}

// MACParts returns what an aes-cbc-hmac MAC covers besides the IV and the
// ciphertext: the header, labelled as AAD's is ("hsmkms-v1" || b.Header()),
// and c.Canonical(). Errors are Canonical's.
func MACParts(b Blob, c Context) (header, context []byte, err error) {
	header = b.AppendHeader(append(make([]byte, 0, len(aadLabel)+HeaderSize), aadLabel...))
	if context, err = c.Canonical(); err != nil {
		return nil, nil, err
	}
	return header, context, nil
}
