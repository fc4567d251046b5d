package esdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"maps"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// writeTestMessage writes a whole message of any suite, framed
// (frameLength > 0) or not (frameLength 0): what the AWS Encryption SDKs
// write and Encrypt does not (version 1, the suites without key
// commitment, non-framed content). It serializes on its own, beside
// Encrypt's code, and the JavaScript SDK decrypts what it writes
// (TestInteropJavaScript), so that it stands for the SDKs that write
// such messages. The data key comes from kms.GenerateDataKey (the fake
// makes one of any length given in keyLen of its entries) and is encrypted
// under more keys with kms.Encrypt.
func writeTestMessage(t testing.TB, kms KMS, keyID string, s Suite, encCtx map[string]string, plain []byte, frameLength int, more ...string) []byte {
	t.Helper()
	ctx := maps.Clone(encCtx)
	if ctx == nil {
		ctx = map[string]string{}
	}
	var sign *signer
	if s.Signed() {
		var err error
		if sign, err = newSigner(s, rand.Reader); err != nil {
			t.Fatal(err)
		}
		if ctx[PublicKeyContextKey], err = sign.publicKey(); err != nil {
			t.Fatal(err)
		}
	}
	aad, err := serializeContext(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	idLen := messageIDLen
	if s.Version == 1 {
		idLen = messageIDLenV1
	}
	msgID := make([]byte, idLen)
	rand.Read(msgID)
	dataKey, blob, arn, err := keyOfLength(t, kms, keyID, ctx, s.KeyLen)
	if err != nil {
		t.Fatalf("GenerateDataKey: %v", err)
	}
	edks := []EncryptedDataKey{{ProviderID, arn, blob}}
	for _, id := range more {
		b, a, err := kms.Encrypt(t.Context(), id, dataKey, ctx)
		if err != nil {
			t.Fatalf("Encrypt under %s: %v", id, err)
		}
		edks = append(edks, EncryptedDataKey{ProviderID, a, b})
	}
	k, err := deriveKeys(s, dataKey, msgID)
	if err != nil {
		t.Fatal(err)
	}

	// Header body.
	var b []byte
	b = append(b, s.Version)
	if s.Version == 1 {
		b = append(b, typeCustomerAEAD)
	}
	b = binary.BigEndian.AppendUint16(b, s.ID)
	b = append(b, msgID...)
	b = append(b, aad...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(edks)))
	for _, e := range edks {
		for _, f := range [][]byte{[]byte(e.ProviderID), []byte(e.ProviderInfo), e.Ciphertext} {
			b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
			b = append(b, f...)
		}
	}
	if frameLength > 0 {
		b = append(b, contentFramed)
	} else {
		b = append(b, contentUnframed)
	}
	if s.Version == 1 {
		b = append(b, 0, 0, 0, 0, ivLen)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(frameLength))
	if s.Committing() {
		b = append(b, k.commit...)
	}
	// Header authentication: version 1 writes its IV (random here, as the
	// specification's example has one), version 2 uses zeros.
	iv := make([]byte, ivLen)
	if s.Version == 1 {
		rand.Read(iv)
	}
	tag := k.aead.Seal(nil, iv, nil, b)
	if s.Version == 1 {
		b = append(b, iv...)
	}
	b = append(b, tag...)

	// Body.
	if frameLength == 0 {
		rand.Read(iv)
		b = append(b, iv...)
		b = binary.BigEndian.AppendUint64(b, uint64(len(plain)))
		b = k.aead.Seal(b, iv, plain, bodyAADFor(msgID, aadSingle, 1, len(plain)))
	} else {
		seq := uint32(1)
		for rest := plain; ; seq++ {
			n := min(frameLength, len(rest))
			final := len(rest) <= frameLength
			fiv := frameIV(seq)
			if final {
				b = binary.BigEndian.AppendUint32(b, seqEnd)
			}
			b = binary.BigEndian.AppendUint32(b, seq)
			b = append(b, fiv[:]...)
			if final {
				b = binary.BigEndian.AppendUint32(b, uint32(n))
			}
			content := aadFrame
			if final {
				content = aadFinalFrame
			}
			b = k.aead.Seal(b, fiv[:], rest[:n], bodyAADFor(msgID, content, seq, n))
			rest = rest[n:]
			if final {
				break
			}
		}
	}
	if sign != nil {
		sign.sum.Write(b)
		footer, err := sign.footer(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, footer...)
	}
	return b
}

// bodyAADFor is the message body AAD, written out here rather than with
// bodyAAD: message ID, content string, sequence number, length.
func bodyAADFor(msgID []byte, content string, seq uint32, n int) []byte {
	a := bytes.Clone(msgID)
	a = append(a, content...)
	a = binary.BigEndian.AppendUint32(a, seq)
	return binary.BigEndian.AppendUint64(a, uint64(n))
}

// keyLengther is a KMS that makes data keys of a given length, as the
// SDKs' keyrings ask for the suites of 16 and 24-byte keys.
type keyLengther interface {
	GenerateDataKeyOfLength(t testing.TB, keyID string, encCtx map[string]string, n int) ([]byte, []byte, string, error)
}

// keyOfLength makes an n-byte data key: GenerateDataKey for 32 bytes,
// the KMS's own way for others.
func keyOfLength(t testing.TB, kms KMS, keyID string, encCtx map[string]string, n int) ([]byte, []byte, string, error) {
	if kl, ok := kms.(keyLengther); ok {
		return kl.GenerateDataKeyOfLength(t, keyID, encCtx, n)
	}
	if n != 32 {
		t.Fatalf("%T makes 32-byte data keys only", kms)
	}
	return kms.GenerateDataKey(t.Context(), keyID, encCtx)
}

// GenerateDataKeyOfLength makes an n-byte data key in the fake.
func (f *fakeKMS) GenerateDataKeyOfLength(_ testing.TB, keyID string, encCtx map[string]string, n int) ([]byte, []byte, string, error) {
	key := make([]byte, n)
	rand.Read(key)
	blob, arn, err := f.Encrypt(context.Background(), keyID, key, encCtx)
	return key, blob, arn, err
}

// sdkLengthKMS is SDKKMS with data keys of any length, through
// GenerateDataKey's NumberOfBytes, as the SDKs' KMS keyrings ask.
type sdkLengthKMS struct{ SDKKMS }

func (s sdkLengthKMS) GenerateDataKeyOfLength(t testing.TB, keyID string, encCtx map[string]string, n int) ([]byte, []byte, string, error) {
	out, err := s.Client.GenerateDataKey(context.Background(), &kms.GenerateDataKeyInput{
		KeyId: aws.String(keyID), NumberOfBytes: aws.Int32(int32(n)), EncryptionContext: encCtx})
	if err != nil {
		return nil, nil, "", err
	}
	return out.Plaintext, out.CiphertextBlob, aws.ToString(out.KeyId), nil
}
