package esdk

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
)

// KMS is what this package needs of a key management service.
type KMS interface {
	// GenerateDataKey returns a new 256-bit data key in plaintext and as a
	// ciphertext blob bound to encCtx, and the ARN of the key that
	// protects it (keyID may be a key ID, an ARN or an alias).
	GenerateDataKey(ctx context.Context, keyID string, encCtx map[string]string) (plaintext, blob []byte, keyARN string, err error)
	// Decrypt opens a blob made by GenerateDataKey under keyARN with
	// encCtx and returns the plaintext data key.
	Decrypt(ctx context.Context, blob []byte, keyARN string, encCtx map[string]string) ([]byte, error)
}

// keys are what a message's data key yields.
type keys struct {
	aead   cipher.AEAD
	commit []byte // the commit key, stored in the header as suite data
}

// deriveKeys derives the encryption key and the commit key from a plaintext
// data key (client-apis/key-derivation.md): one HKDF-SHA512 extract with
// the message ID as salt, then an expand to 32 bytes with info = suite ID
// (uint16 big-endian) || "DERIVEKEY" for the AES-256-GCM key, and an
// expand to 32 bytes with info = "COMMITKEY" for the commit key. The caller
// keeps ownership of dataKey; every intermediate secret is zeroed.
func deriveKeys(dataKey, messageID []byte) (keys, error) {
	if len(dataKey) != keyLen {
		return keys{}, fmt.Errorf("esdk: the data key is %d bytes; suite 0x0478 needs %d", len(dataKey), keyLen)
	}
	prk, err := hkdf.Extract(sha512.New, dataKey, messageID)
	if err != nil {
		return keys{}, err
	}
	defer clear(prk)
	info := binary.BigEndian.AppendUint16(nil, SuiteID)
	info = append(info, "DERIVEKEY"...)
	encKey, err := hkdf.Expand(sha512.New, prk, string(info), keyLen)
	if err != nil {
		return keys{}, err
	}
	defer clear(encKey)
	commit, err := hkdf.Expand(sha512.New, prk, "COMMITKEY", keyLen)
	if err != nil {
		return keys{}, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return keys{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return keys{}, err
	}
	return keys{aead: aead, commit: commit}, nil
}

// headerTag is the header authentication tag: AES-GCM over an empty
// plaintext with an all-zero IV and AAD = the serialized header body (the
// encryption context to only authenticate is always empty here).
func (k keys) headerTag(body []byte) []byte {
	var iv [ivLen]byte
	return k.aead.Seal(nil, iv[:], nil, body)
}
