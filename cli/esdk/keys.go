package esdk

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
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
	// Encrypt encrypts a data key under keyID with encCtx and returns the
	// ciphertext blob and the key's ARN.
	Encrypt(ctx context.Context, keyID string, dataKey []byte, encCtx map[string]string) (blob []byte, keyARN string, err error)
}

// keys are what a message's data key yields.
type keys struct {
	aead   cipher.AEAD
	block  cipher.Block // the encryption key's cipher, for non-framed content
	commit []byte       // the commit key of a committing suite
}

// deriveKeys derives the encryption key (and, for a committing suite, the
// commit key) from a plaintext data key (client-apis/key-derivation.md
// and framework/algorithm-suites.md):
//   - committing suites: one HKDF-SHA512 extract with the message ID as
//     salt, then an expand to the key length with info = suite ID
//     (uint16 big-endian) || "DERIVEKEY" for the AES key, and an expand to
//     32 bytes with info = "COMMITKEY" for the commit key;
//   - HKDF suites of version 1: HKDF with the suite's hash, no salt, and
//     info = suite ID || message ID;
//   - identity suites: the data key is the AES key.
//
// The caller keeps ownership of dataKey; every intermediate secret is
// zeroed.
func deriveKeys(s Suite, dataKey, messageID []byte) (keys, error) {
	if len(dataKey) != s.KeyLen {
		return keys{}, fmt.Errorf("esdk: the data key is %d bytes; suite 0x%04X needs %d", len(dataKey), s.ID, s.KeyLen)
	}
	id := binary.BigEndian.AppendUint16(nil, s.ID)
	var encKey, commit []byte
	var err error
	switch s.kdf {
	case hkdfSHA512Key:
		prk, err := hkdf.Extract(sha512.New, dataKey, messageID)
		if err != nil {
			return keys{}, err
		}
		defer clear(prk)
		if encKey, err = hkdf.Expand(sha512.New, prk, string(append(id, "DERIVEKEY"...)), s.KeyLen); err != nil {
			return keys{}, err
		}
		if commit, err = hkdf.Expand(sha512.New, prk, "COMMITKEY", commitLen); err != nil {
			return keys{}, err
		}
	case hkdfSHA256:
		encKey, err = hkdf.Key(sha256.New, dataKey, nil, string(append(id, messageID...)), s.KeyLen)
	case hkdfSHA384:
		encKey, err = hkdf.Key(sha512.New384, dataKey, nil, string(append(id, messageID...)), s.KeyLen)
	default:
		encKey = bytes.Clone(dataKey)
	}
	if err != nil {
		return keys{}, err
	}
	defer clear(encKey)
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return keys{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return keys{}, err
	}
	return keys{aead: aead, block: block, commit: commit}, nil
}

// headerTag is the version 2 header authentication tag: AES-GCM over an
// empty plaintext with an all-zero IV and AAD = the serialized header body
// (the encryption context to only authenticate is always empty here).
func (k keys) headerTag(body []byte) []byte {
	var iv [ivLen]byte
	return k.aead.Seal(nil, iv[:], nil, body)
}
