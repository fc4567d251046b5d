package esdk

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// unhex decodes hex written in annotated lines: everything after "|" on a
// line is a comment, and spaces are ignored.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "|")
		clean.WriteString(strings.ReplaceAll(strings.TrimSpace(line), " ", ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatalf("bad expected hex: %v", err)
	}
	return b
}

// katMessage is a whole message assembled by hand from the field tables of
// data-format/message-header.md (header body version 2.0, header
// authentication version 2.0) and data-format/message-body.md (regular and
// final frame), for: message ID 00..1f, data key 40..5f, encryption context
// {purpose: kat, app: hsmkms}, frame length 4, plaintext "hello".
//
// The derived values (commit key, header tag, frame ciphertexts and tags)
// were computed once with an independent implementation, Node.js crypto
// (OpenSSL): hkdfSync('sha512', dataKey, messageID, 0x0478||"DERIVEKEY", 32)
// for the encryption key = 1d920dfe8c74a58e73826a4ec9980ec06463760879abaf055f50d813e2b94fbc,
// hkdfSync('sha512', dataKey, messageID, "COMMITKEY", 32) for the commit key
// (both cross-checked with an RFC 5869 HKDF written on Python's hmac), and
// aes-256-gcm with the IVs and AADs of client-apis/encrypt.md and
// data-format/message-body-aad.md.
const katMessage = `
02                                          | version 2.0
0478                                        | algorithm suite ID
000102030405060708090a0b0c0d0e0f            | message ID (32 bytes)
101112131415161718191a1b1c1d1e1f
001d                                        | AAD: key value pairs length (29)
0002                                        | key value pair count (2), sorted by key bytes:
0003 617070                                 | key "app"
0006 68736d6b6d73                           | value "hsmkms"
0007 707572706f7365                         | key "purpose"
0003 6b6174                                 | value "kat"
0001                                        | encrypted data key count (1)
0007 6177732d6b6d73                         | key provider ID "aws-kms"
004b                                        | key provider information length (75): the key ARN
61726e3a6177733a6b6d733a75732d656173742d313a3131313132323232333333333a6b65792f
30303030303030302d303030302d343030302d383030302d303030303030303030303031
0010 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf       | encrypted data key (the KMS ciphertext blob)
02                                          | content type: framed
00000004                                    | frame length (4)
c184a4c2737a5ef833e42292cf4c1059            | algorithm suite data: the commit key
fe91bf0c447f110bf778586ce5838004
434cba0329a03a2c9fdb810512834421            | header authentication tag (IV 0, AAD = header body)
00000001                                    | frame 1: sequence number
000000000000000000000001                    | frame 1: IV = sequence number, padded
b1cb8ca5                                    | frame 1: encrypted "hell"
9079785905ba8e34f4a1ffb44ad8937d            | frame 1: tag
ffffffff                                    | final frame: sequence number end
00000002                                    | final frame: sequence number
000000000000000000000002                    | final frame: IV
00000001                                    | final frame: encrypted content length (1)
8a                                          | final frame: encrypted "o"
85d83af9914178510a0fbbe6056c3d0a            | final frame: tag
`

// TestKnownAnswer proves the bytes Encrypt writes for fixed inputs equal a
// message assembled by hand from the specification, and that Decrypt
// reads that message back.
func TestKnownAnswer(t *testing.T) {
	want := unhex(t, katMessage)
	msgID := make([]byte, 32)
	dataKey := make([]byte, 32)
	blob := make([]byte, 16)
	for i := range 32 {
		msgID[i] = byte(i)
		dataKey[i] = 0x40 + byte(i)
	}
	for i := range blob {
		blob[i] = 0xa0 + byte(i)
	}
	fake := newFakeKMS()
	fake.fixed, fake.blob = dataKey, blob
	encCtx := map[string]string{"purpose": "kat", "app": "hsmkms"}
	var out bytes.Buffer
	fixed := func(o *options) { o.random = bytes.NewReader(msgID) }
	if _, err := Encrypt(t.Context(), fake, "alias/kat", encCtx, strings.NewReader("hello"), &out, WithFrameLength(4), WithSuite(SuiteUnsigned), fixed); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("message differs from the known answer:\n got %x\nwant %x", out.Bytes(), want)
	}
	var plain bytes.Buffer
	h, err := Decrypt(t.Context(), fake, bytes.NewReader(want), &plain)
	if err != nil {
		t.Fatal(err)
	}
	if plain.String() != "hello" || h.KeyARN != testARN || h.FrameLength != 4 || !bytes.Equal(msgID, h.MessageID) {
		t.Fatalf("decrypted %q with header %+v", plain.String(), h)
	}
}
