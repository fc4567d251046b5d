// Package esdk owns hsmkms's file encryption format: the AWS Encryption SDK
// message format. It writes version 2 messages with a committing suite,
// 0x0578 (AES-256-GCM, HKDF-SHA512, key commitment, ECDSA P-384
// signature; the SDKs' default) or 0x0478 (the same without a signature),
// framed and streamed in constant memory. It reads what the SDKs write:
// versions 1 and 2, every suite (those without key commitment only under
// RequireEncryptAllowDecrypt), framed and non-framed content. Every
// encrypted data key is of provider "aws-kms": the ciphertext blob of a
// KMS GenerateDataKey or Encrypt call, with the key's ARN as provider
// information. Files it writes decrypt with the AWS Encryption SDKs pointed
// at hsmkms, and the other way round.
//
// The normative reference is the AWS Encryption SDK specification
// (github.com/awslabs/aws-encryption-sdk-specification): data-format/
// message-header.md, message-body.md, message-body-aad.md and
// message-footer.md, framework/algorithm-suites.md,
// client-apis/key-derivation.md, encrypt.md and decrypt.md.
package esdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Format constants.
const (
	// ProviderID is the key provider ID of AWS KMS encrypted data keys.
	ProviderID = "aws-kms"
	// DefaultFrameLength is the frame length the specification sets as
	// the default.
	DefaultFrameLength = 4096
	// MaxFrameLength bounds the frame length this package writes and
	// accepts (the format allows 2^32-1): a frame is held in memory.
	MaxFrameLength = 1 << 24
	// MaxEncryptedDataKeys bounds the encrypted data keys a message may
	// carry before Decrypt refuses it.
	MaxEncryptedDataKeys = 8
	// ReservedContextPrefix starts encryption context keys that belong to
	// the AWS Encryption SDK itself; Encrypt refuses them.
	ReservedContextPrefix = "aws-crypto-"

	formatVersion    = 0x02
	typeCustomerAEAD = 0x80 // the message type of version 1
	contentFramed    = 0x02
	contentUnframed  = 0x01
	messageIDLen     = 32 // version 2
	messageIDLenV1   = 16
	commitLen        = 32
	ivLen            = 12
	tagLen           = 16
	seqEnd           = 0xFFFFFFFF

	aadFrame      = "AWSKMSEncryptionClient Frame"
	aadFinalFrame = "AWSKMSEncryptionClient Final Frame"
	aadSingle     = "AWSKMSEncryptionClient Single Block"
)

// Errors that Decrypt wraps; test them with errors.Is.
var (
	// ErrMalformed: the input is not a well-formed message of the
	// supported kind.
	ErrMalformed = errors.New("esdk: malformed message")
	// ErrUnsupported: a well-formed message this package does not accept
	// (another version, suite, content type, key provider, or too many
	// data keys).
	ErrUnsupported = errors.New("esdk: unsupported message")
	// ErrAuthentication: an authentication tag or the key commitment does
	// not verify; the message was altered or the data key is wrong.
	ErrAuthentication = errors.New("esdk: message authentication failed")
	// ErrTruncated: the message ends before its final frame.
	ErrTruncated = errors.New("esdk: message truncated")
	// ErrDataKey: no encrypted data key of the message could be decrypted.
	ErrDataKey = errors.New("esdk: no data key could be decrypted")
)

// EncryptedDataKey is one encrypted data key of a message header.
type EncryptedDataKey struct {
	ProviderID   string // "aws-kms"
	ProviderInfo string // the KMS key ARN
	Ciphertext   []byte // the KMS ciphertext blob
}

// Header is the authenticated part of a message that callers may use.
type Header struct {
	Version byte // message format version, 1 or 2
	Suite   Suite
	// MessageID is 32 bytes in version 2, 16 in version 1.
	MessageID []byte
	// EncryptionContext holds, for a signed suite, the verification key
	// (PublicKeyContextKey) beside the writer's pairs.
	EncryptionContext map[string]string
	EncryptedDataKeys []EncryptedDataKey
	// FrameLength is 0 for non-framed content.
	FrameLength uint32
	// KeyARN is the KMS key whose data key encrypted the message: the one
	// GenerateDataKey used, or the one whose encrypted data key Decrypt
	// opened.
	KeyARN string
}

// serializeContext returns the header AAD field of ctx: the key-value pairs
// length, then (when ctx is not empty) the pair count and the pairs sorted by
// the keys' UTF-8 bytes, each key and value prefixed by its uint16 length.
//
// The reserved prefix is refused unless reserved, which Encrypt sets once
// it has added its own entry.
func serializeContext(ctx map[string]string, reserved bool) ([]byte, error) {
	if len(ctx) == 0 {
		return []byte{0, 0}, nil
	}
	if len(ctx) > 0xFFFF {
		return nil, fmt.Errorf("esdk: %d encryption context pairs; at most 65535", len(ctx))
	}
	pairs := []byte{0, 0}
	pairs = binary.BigEndian.AppendUint16(pairs, uint16(len(ctx)))
	for _, k := range slices.Sorted(maps.Keys(ctx)) {
		v := ctx[k]
		if !reserved && strings.HasPrefix(k, ReservedContextPrefix) {
			return nil, fmt.Errorf("esdk: encryption context key %q: the prefix %q is reserved for the AWS Encryption SDK", k, ReservedContextPrefix)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("esdk: encryption context key %q: keys and values must be UTF-8", k)
		}
		if len(k) > 0xFFFF || len(v) > 0xFFFF {
			return nil, fmt.Errorf("esdk: encryption context key %q: keys and values are at most 65535 bytes", k)
		}
		pairs = binary.BigEndian.AppendUint16(pairs, uint16(len(k)))
		pairs = append(pairs, k...)
		pairs = binary.BigEndian.AppendUint16(pairs, uint16(len(v)))
		pairs = append(pairs, v...)
	}
	if len(pairs)-2 > 0xFFFF {
		return nil, fmt.Errorf("esdk: the serialized encryption context is %d bytes; at most 65535", len(pairs)-2)
	}
	binary.BigEndian.PutUint16(pairs, uint16(len(pairs)-2))
	return pairs, nil
}

// parseContext parses the key-value pairs of a header AAD field (without
// its length prefix). Pairs are taken in the order written: the header
// bytes are authenticated as they are, and the AWS Encryption SDK for
// JavaScript sorts keys with localeCompare, not by UTF-8 bytes.
func parseContext(b []byte) (map[string]string, error) {
	ctx := map[string]string{}
	if len(b) == 0 {
		return ctx, nil
	}
	p := parser{b: b}
	count := p.u16()
	if p.err == nil && count == 0 {
		return nil, fmt.Errorf("%w: encryption context has a length but no pairs", ErrMalformed)
	}
	for i := 0; i < int(count) && p.err == nil; i++ {
		k := string(p.bytes(int(p.u16())))
		v := string(p.bytes(int(p.u16())))
		if p.err != nil {
			break
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: encryption context is not UTF-8", ErrMalformed)
		}
		if _, dup := ctx[k]; dup {
			return nil, fmt.Errorf("%w: encryption context key %q appears twice", ErrMalformed, k)
		}
		ctx[k] = v
	}
	if p.err != nil {
		return nil, fmt.Errorf("%w: encryption context: %v", ErrMalformed, p.err)
	}
	if len(p.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the encryption context pairs", ErrMalformed, len(p.b))
	}
	return ctx, nil
}

// parser reads big-endian fields from a byte slice, remembering the first
// shortfall.
type parser struct {
	b   []byte
	err error
}

func (p *parser) bytes(n int) []byte {
	if p.err != nil {
		return nil
	}
	if n > len(p.b) {
		p.err = errors.New("field runs past its section")
		return nil
	}
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) u16() uint16 {
	if b := p.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

// validKeyARN reports whether s is a KMS key ARN as the specification's
// framework/aws-kms/aws-kms-key-arn.md defines a valid AWS KMS ARN with
// resource type "key": arn:<partition>:kms:<region>:<account>:key/<id>.
func validKeyARN(s string) bool {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[2] != "kms" || parts[3] == "" || parts[4] == "" {
		return false
	}
	typ, id, ok := strings.Cut(parts[5], "/")
	return ok && typ == "key" && id != ""
}

// frameIV is the IV of frame seq: the sequence number, big-endian, padded on
// the left with zeros to the IV length.
func frameIV(seq uint32) [ivLen]byte {
	var iv [ivLen]byte
	binary.BigEndian.PutUint32(iv[ivLen-4:], seq)
	return iv
}

// aadContent is the body AAD content string of a frame or of non-framed
// content.
func aadContent(framed, final bool) string {
	switch {
	case !framed:
		return aadSingle
	case final:
		return aadFinalFrame
	}
	return aadFrame
}

// bodyAAD is the message body AAD: message ID, body AAD content string,
// sequence number (uint32) and plaintext length (uint64).
func bodyAAD(dst []byte, messageID []byte, content string, seq uint32, n uint64) []byte {
	dst = append(dst[:0], messageID...)
	dst = append(dst, content...)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return binary.BigEndian.AppendUint64(dst, n)
}
