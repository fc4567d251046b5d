package esdk

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
)

// PublicKeyContextKey is the encryption context entry in which a signed
// message carries its verification key: the curve point, compressed
// (SEC 1, 2.3.3), in standard Base64.
const PublicKeyContextKey = ReservedContextPrefix + "public-key"

// maxSignatureLen bounds the footer's signature: a DER ECDSA signature on
// P-384 is at most 104 bytes.
const maxSignatureLen = 128

// signer signs a message: a running hash of every byte written before the
// footer, and a key made for this message alone.
type signer struct {
	suite Suite
	key   *ecdsa.PrivateKey
	sum   *hashPipe
}

func newSigner(s Suite, random io.Reader) (*signer, error) {
	key, err := ecdsa.GenerateKey(s.curve, random)
	if err != nil {
		return nil, fmt.Errorf("esdk: making the message's signing key: %w", err)
	}
	return &signer{suite: s, key: key, sum: newHashPipe(s.hash.New())}, nil
}

// close ends the signer's hashing goroutine.
func (s *signer) close() { s.sum.close() }

// publicKey is the verification key as the encryption context carries it.
func (s *signer) publicKey() (string, error) {
	raw, err := s.key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return "", err
	}
	n := (len(raw) - 1) / 2
	compressed := make([]byte, 1+n)
	compressed[0] = 2 | raw[len(raw)-1]&1
	copy(compressed[1:], raw[1:1+n])
	return base64.StdEncoding.EncodeToString(compressed), nil
}

// footer signs the hash of the message so far and returns the footer:
// the signature's length (uint16) and the DER signature.
func (s *signer) footer(random io.Reader) ([]byte, error) {
	sig, err := ecdsa.SignASN1(random, s.key, s.sum.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("esdk: signing the message: %w", err)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(sig))), sig...), nil
}

// verifier checks a message's signature against the key in its header.
type verifier struct {
	key *ecdsa.PublicKey
	sum *hashPipe
}

// newVerifier parses the verification key of a signed suite's message.
func newVerifier(s Suite, encoded string) (*verifier, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("%w: the signature key in the encryption context is not Base64", ErrMalformed)
	}
	x, y := elliptic.UnmarshalCompressed(s.curve, raw)
	if x == nil {
		return nil, fmt.Errorf("%w: the signature key in the encryption context is not a compressed %s point", ErrMalformed, s.curve.Params().Name)
	}
	size := (s.curve.Params().BitSize + 7) / 8
	uncompressed := make([]byte, 1+2*size)
	uncompressed[0] = 4
	x.FillBytes(uncompressed[1 : 1+size])
	y.FillBytes(uncompressed[1+size:])
	key, err := ecdsa.ParseUncompressedPublicKey(s.curve, uncompressed)
	if err != nil {
		return nil, fmt.Errorf("%w: the signature key in the encryption context: %v", ErrMalformed, err)
	}
	return &verifier{key: key, sum: newHashPipe(s.hash.New())}, nil
}

// close ends the verifier's hashing goroutine.
func (v *verifier) close() { v.sum.close() }

// verify checks sig over the hash of the message before its footer.
func (v *verifier) verify(sig []byte) error {
	if !ecdsa.VerifyASN1(v.key, v.sum.Sum(nil), sig) {
		return fmt.Errorf("%w: the message signature does not verify", ErrAuthentication)
	}
	return nil
}
