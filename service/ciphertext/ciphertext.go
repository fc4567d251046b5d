// Package ciphertext owns the bytes that hsmkms hands out as a
// CiphertextBlob (format version 1) and the additional authenticated data
// bound into every aes-gcm seal: the blob's layout, its parser and
// serialiser, and the canonical encoding of encryption contexts.
//
// A blob is
//
//	"HK" | 0x01 format | mechanism | key ID (16) | version (uint32 BE) |
//	IV (12, aes-gcm only) | sealed bytes
//
// Parse checks every length and field before anything reaches the HSM. The
// package uses only the standard library; its limits mirror those of
// package hsm, which it must not import.
package ciphertext

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes of the format.
const (
	// MaxBlob is the largest blob Parse accepts and Marshal produces.
	MaxBlob = 6144
	// HeaderSize is the length of Blob.Header: magic, format, mechanism,
	// key ID and version, everything before the IV.
	HeaderSize = len(magic) + 1 + 1 + 16 + 4
)

const (
	magic         = "HK"
	formatVersion = 0x01

	// The limits below mirror package hsm (hsm.IVSize, hsm.TagSize,
	// hsm.MaxPlaintext, hsm.MaxDataKey and RFC 3394's 8-byte overhead).
	ivSize       = 12
	tagSize      = 16
	maxPlaintext = 4096
	minWrapped   = 16 + 8   // smallest aes-kw data key (16) + integrity block
	maxWrapped   = 1024 + 8 // largest aes-kw data key (1024) + integrity block

	offMechanism = 3
	offKeyID     = 4
	offVersion   = 20
)

// ErrInvalid is matched (errors.Is) by every error of Parse and Marshal: the
// bytes are not a well-formed version 1 blob. The key service reports it as
// InvalidCiphertextException.
var ErrInvalid = errors.New("ciphertext: invalid blob")

// ErrUnknownMechanism is matched by ParseMechanism's errors.
var ErrUnknownMechanism = errors.New("ciphertext: unknown mechanism")

// formatError carries a precise message and unwraps to a package sentinel.
type formatError struct {
	msg  string
	kind error
}

func (e *formatError) Error() string { return "ciphertext: " + e.msg }
func (e *formatError) Unwrap() error { return e.kind }

func invalid(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...), kind: ErrInvalid}
}

// Mechanism names how a blob's sealed bytes were made on the token.
type Mechanism byte

// The mechanisms of format version 1.
const (
	// AESGCM: C_Encrypt with CKM_AES_GCM, a 12-byte IV and a 16-byte tag.
	AESGCM Mechanism = 1
	// AESKW: C_WrapKey with CKM_AES_KEY_WRAP (RFC 3394), no IV.
	AESKW Mechanism = 2
	// AESCBCHMAC: the portable mechanism for tokens without AES-GCM:
	// C_Encrypt with CKM_AES_CBC_PAD and a 16-byte IV, then C_Sign with
	// CKM_SHA256_HMAC under the version's HMAC key over the header, IV,
	// ciphertext and context; Sealed is ciphertext || 32-byte MAC.
	AESCBCHMAC Mechanism = 3
)

// Sizes of the aes-cbc-hmac mechanism.
const (
	cbcIVSize = 16
	cbcBlock  = 16
	macSize   = 32
)

// String returns "aes-gcm", "aes-kw" or "aes-cbc-hmac", and
// "mechanism(0xNN)" for any other value.
func (m Mechanism) String() string {
	switch m {
	case AESGCM:
		return "aes-gcm"
	case AESKW:
		return "aes-kw"
	case AESCBCHMAC:
		return "aes-cbc-hmac"
	}
	return fmt.Sprintf("mechanism(0x%02x)", byte(m))
}

// ParseMechanism returns the mechanism named exactly "aes-gcm", "aes-kw"
// or "aes-cbc-hmac"; any other name gives an error matching
// ErrUnknownMechanism.
func ParseMechanism(s string) (Mechanism, error) {
	switch s {
	case "aes-gcm":
		return AESGCM, nil
	case "aes-kw":
		return AESKW, nil
	case "aes-cbc-hmac":
		return AESCBCHMAC, nil
	}
	return 0, fmt.Errorf("%w %q: want aes-gcm, aes-kw or aes-cbc-hmac", ErrUnknownMechanism, s)
}

// ivSizeOf is the IV length a mechanism's blobs carry.
func ivSizeOf(m Mechanism) int {
	switch m {
	case AESGCM:
		return ivSize
	case AESCBCHMAC:
		return cbcIVSize
	}
	return 0
}

// Blob is a parsed ciphertext blob.
type Blob struct {
	// Mechanism is how Sealed was made.
	Mechanism Mechanism
	// KeyID is the key's UUID as 16 bytes.
	KeyID [16]byte
	// Version is the key version (1, 2, …) that sealed the data.
	Version uint32
	// IV is the 12-byte GCM IV for aes-gcm, the 16-byte CBC IV for
	// aes-cbc-hmac, and empty for aes-kw.
	IV []byte
	// Sealed is ciphertext || tag (aes-gcm), the wrapped data key (aes-kw),
	// or ciphertext || MAC (aes-cbc-hmac).
	Sealed []byte
}

// Header returns the HeaderSize bytes that precede the IV: magic, format
// version, mechanism, key ID and version. It is what AAD binds; it does not
// validate b.
func (b Blob) Header() []byte { return b.AppendHeader(nil) }

// AppendHeader appends the header to dst.
func (b Blob) AppendHeader(dst []byte) []byte {
	dst = append(dst, magic...)
	dst = append(dst, formatVersion, byte(b.Mechanism))
	dst = append(dst, b.KeyID[:]...)
	return binary.BigEndian.AppendUint32(dst, b.Version)
}

// Marshal validates b and returns its encoding. The IV must be 12 bytes for
// aes-gcm, 16 for aes-cbc-hmac and empty for aes-kw; Sealed must be 17 to
// 4112 bytes for aes-gcm, a multiple of 8 from 24 to 1032 bytes for
// aes-kw, and 16 to 4112 bytes of whole blocks and a 32-byte MAC for
// aes-cbc-hmac; Version must be at least 1. Errors match ErrInvalid.
func (b Blob) Marshal() ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	out := make([]byte, 0, HeaderSize+len(b.IV)+len(b.Sealed))
	out = b.AppendHeader(out)
	out = append(out, b.IV...)
	out = append(out, b.Sealed...)
	if len(out) > MaxBlob { // unreachable with the sealed limits; kept as the format's bound
		return nil, invalid("blob is %d bytes, max %d", len(out), MaxBlob)
	}
	return out, nil
}

// validate checks the fields that Parse and Marshal share.
func (b Blob) validate() error {
	if b.Version < 1 {
		return invalid("key version 0: versions start at 1")
	}
	switch b.Mechanism {
	case AESGCM:
		if len(b.IV) != ivSize {
			return invalid("aes-gcm IV is %d bytes, need %d", len(b.IV), ivSize)
		}
		if n := len(b.Sealed); n < tagSize+1 || n > maxPlaintext+tagSize {
			return invalid("aes-gcm sealed value is %d bytes, need %d to %d", n, tagSize+1, maxPlaintext+tagSize)
		}
	case AESKW:
		if len(b.IV) != 0 {
			return invalid("aes-kw takes no IV, got %d bytes", len(b.IV))
		}
		if n := len(b.Sealed); n < minWrapped || n > maxWrapped || n%8 != 0 {
			return invalid("aes-kw wrapped key is %d bytes, need a multiple of 8 from %d to %d", n, minWrapped, maxWrapped)
		}
	case AESCBCHMAC:
		if len(b.IV) != cbcIVSize {
			return invalid("aes-cbc-hmac IV is %d bytes, need %d", len(b.IV), cbcIVSize)
		}
		ct := len(b.Sealed) - macSize
		if ct < cbcBlock || ct > maxPlaintext+cbcBlock || ct%cbcBlock != 0 {
			return invalid("aes-cbc-hmac sealed value is %d bytes, need whole %d-byte blocks from %d to %d and a %d-byte MAC",
				len(b.Sealed), cbcBlock, cbcBlock, maxPlaintext+cbcBlock, macSize)
		}
	default:
		return invalid("unknown mechanism 0x%02x", byte(b.Mechanism))
	}
	return nil
}

// Parse decodes a version 1 blob, checking the total length, magic, format
// version, mechanism, key version, IV length and sealed length before it
// returns. Every error matches ErrInvalid; no input makes it panic. The
// returned IV and Sealed are copies and never alias data.
func Parse(data []byte) (Blob, error) {
	if len(data) > MaxBlob {
		return Blob{}, invalid("blob is %d bytes, max %d", len(data), MaxBlob)
	}
	if len(data) < HeaderSize {
		return Blob{}, invalid("truncated header: %d bytes, need %d", len(data), HeaderSize)
	}
	if string(data[:len(magic)]) != magic {
		return Blob{}, invalid("bad magic 0x%x, want 0x%x", data[:len(magic)], magic)
	}
	if data[2] != formatVersion {
		return Blob{}, invalid("unsupported format version %d, want %d", data[2], formatVersion)
	}
	b := Blob{
		Mechanism: Mechanism(data[offMechanism]),
		Version:   binary.BigEndian.Uint32(data[offVersion:HeaderSize]),
	}
	copy(b.KeyID[:], data[offKeyID:offVersion])
	if b.Mechanism != AESGCM && b.Mechanism != AESKW && b.Mechanism != AESCBCHMAC {
		return Blob{}, invalid("unknown mechanism 0x%02x", byte(b.Mechanism))
	}
	rest := data[HeaderSize:]
	if n := ivSizeOf(b.Mechanism); n > 0 {
		if len(rest) < n {
			return Blob{}, invalid("truncated IV: %d bytes after the header, need %d", len(rest), n)
		}
		b.IV = clone(rest[:n])
		rest = rest[n:]
	}
	b.Sealed = clone(rest)
	if err := b.validate(); err != nil {
		return Blob{}, err
	}
	return b, nil
}

// clone returns a copy of p that shares no memory with it (nil for empty).
func clone(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}
