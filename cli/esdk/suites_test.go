package esdk

// Tests of what the algorithm suites brought: suite and policy names, every
// suite of format versions 1 and 2 framed and not, the commitment policy,
// ECDSA signatures and their footer, non-framed content through
// gcmOpener, messages under several keys, and WithHeaderCheck.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// More key ARNs beside testARN, for messages under several keys.
const (
	suiteARN2 = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000002"
	suiteARN3 = "arn:aws:kms:eu-west-1:444455556666:key/00000000-0000-4000-8000-000000000003"
)

// suiteSpec is a row of the table of framework/algorithm-suites.md,
// written out here rather than taken from suites.
type suiteSpec struct {
	id         uint16
	name       string
	version    byte
	keyLen     int
	committing bool
	curve      elliptic.Curve // nil for an unsigned suite
	hash       crypto.Hash
	kdf        string // "identity", or HKDF's hash: "sha256", "sha384", "sha512" (with key commitment)
}

var suiteSpecs = []suiteSpec{
	{0x0578, "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384", 2, 32, true, elliptic.P384(), crypto.SHA384, "sha512"},
	{0x0478, "AES_256_GCM_HKDF_SHA512_COMMIT_KEY", 2, 32, true, nil, 0, "sha512"},
	{0x0378, "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", 1, 32, false, elliptic.P384(), crypto.SHA384, "sha384"},
	{0x0346, "AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", 1, 24, false, elliptic.P384(), crypto.SHA384, "sha384"},
	{0x0214, "AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256", 1, 16, false, elliptic.P256(), crypto.SHA256, "sha256"},
	{0x0178, "AES_256_GCM_IV12_TAG16_HKDF_SHA256", 1, 32, false, nil, 0, "sha256"},
	{0x0146, "AES_192_GCM_IV12_TAG16_HKDF_SHA256", 1, 24, false, nil, 0, "sha256"},
	{0x0114, "AES_128_GCM_IV12_TAG16_HKDF_SHA256", 1, 16, false, nil, 0, "sha256"},
	{0x0078, "AES_256_GCM_IV12_TAG16", 1, 32, false, nil, 0, "identity"},
	{0x0046, "AES_192_GCM_IV12_TAG16", 1, 24, false, nil, 0, "identity"},
	{0x0014, "AES_128_GCM_IV12_TAG16", 1, 16, false, nil, 0, "identity"},
}

// specOf is the table row of id.
func specOf(t testing.TB, id uint16) suiteSpec {
	t.Helper()
	for _, s := range suiteSpecs {
		if s.id == id {
			return s
		}
	}
	t.Fatalf("no suite 0x%04X in the specification's table", id)
	return suiteSpec{}
}

// mustSuite is the suite of id.
func mustSuite(t testing.TB, id uint16) Suite {
	t.Helper()
	s, ok := SuiteByID(id)
	if !ok {
		t.Fatalf("SuiteByID(0x%04X): no suite", id)
	}
	return s
}

// ---------------------------------------------------------------------
// Helpers: locating the parts of a message, decrypting, re-sealing.

// messageParts locates the parts of a message of a known plaintext length.
type messageParts struct {
	header    Header
	headerEnd int   // just past the header authentication
	frames    []int // framed: where each frame starts; the last is the final frame
	footer    int   // where the footer starts; len(msg) for an unsigned suite
	sigLen    int   // the footer's signature length
}

// regularFrames is the number of frames before the final one.
func (p messageParts) regularFrames() int { return max(len(p.frames)-1, 0) }

// partsOf locates the parts of msg, which holds plainLen bytes of
// plaintext in frames that are full but for the final one (as Encrypt and
// writeTestMessage write them). It fails unless the message is exactly
// as long as the format makes it: header, body, and for a signed suite a
// footer whose length field gives the rest of the message.
func partsOf(t testing.TB, msg []byte, plainLen int) messageParts {
	t.Helper()
	h, body, auth, err := readHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatalf("reading the header: %v", err)
	}
	p := messageParts{header: h, headerEnd: len(body) + len(auth)}
	pos := p.headerEnd
	if h.FrameLength == 0 {
		pos += ivLen + 8 + plainLen + tagLen
	} else {
		frame := int(h.FrameLength)
		regular := 0
		if plainLen > 0 {
			regular = (plainLen - 1) / frame
		}
		for range regular {
			p.frames = append(p.frames, pos)
			pos += 4 + ivLen + frame + tagLen
		}
		p.frames = append(p.frames, pos)
		pos += 4 + 4 + ivLen + 4 + (plainLen - regular*frame) + tagLen
	}
	p.footer = pos
	if !h.Suite.Signed() {
		if pos != len(msg) {
			t.Fatalf("unsigned message of %d bytes; header and body make %d", len(msg), pos)
		}
		return p
	}
	if pos+2 > len(msg) {
		t.Fatalf("signed message of %d bytes has no room for a footer after %d", len(msg), pos)
	}
	p.sigLen = int(binary.BigEndian.Uint16(msg[pos:]))
	if pos+2+p.sigLen != len(msg) {
		t.Fatalf("footer at %d gives a %d-byte signature, but %d bytes follow the length", pos, p.sigLen, len(msg)-pos-2)
	}
	return p
}

// decryptMsg decrypts msg, returning what Decrypt wrote.
func decryptMsg(t testing.TB, kms KMS, msg []byte, opts ...DecryptOption) (Header, []byte, error) {
	t.Helper()
	var out bytes.Buffer
	h, err := Decrypt(t.Context(), kms, bytes.NewReader(msg), &out, opts...)
	return h, out.Bytes(), err
}

var allowV1 = WithCommitmentPolicy(RequireEncryptAllowDecrypt)

// encryptMsg encrypts plain with Encrypt under testARN.
func encryptMsg(t testing.TB, kms KMS, encCtx map[string]string, plain []byte, opts ...Option) ([]byte, Header) {
	t.Helper()
	var out bytes.Buffer
	h, err := Encrypt(t.Context(), kms, testARN, encCtx, bytes.NewReader(plain), &out, opts...)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out.Bytes(), h
}

// headerBodyOf serializes a header body of version 1 or 2, written out
// here from data-format/message-header.md.
func headerBodyOf(t testing.TB, h Header, commit []byte) []byte {
	t.Helper()
	aad, err := serializeContext(h.EncryptionContext, true)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{h.Version}
	if h.Version == 1 {
		b = append(b, typeCustomerAEAD)
	}
	b = binary.BigEndian.AppendUint16(b, h.Suite.ID)
	b = append(b, h.MessageID...)
	b = append(b, aad...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.EncryptedDataKeys)))
	for _, e := range h.EncryptedDataKeys {
		for _, f := range [][]byte{[]byte(e.ProviderID), []byte(e.ProviderInfo), e.Ciphertext} {
			b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
			b = append(b, f...)
		}
	}
	if h.FrameLength == 0 {
		b = append(b, contentUnframed)
	} else {
		b = append(b, contentFramed)
	}
	if h.Version == 1 {
		b = append(b, 0, 0, 0, 0, ivLen)
	}
	b = binary.BigEndian.AppendUint32(b, h.FrameLength)
	if h.Suite.Committing() {
		b = append(b, commit...)
	}
	return b
}

// resealHeader rewrites the header of msg (any version, from fake) with
// change applied, as a writer holding the data key can: the data key is
// encrypted anew under each key ARN with the new encryption context, and
// the header authenticated anew (version 1 keeps its header IV). The body
// and footer are kept as they are.
func resealHeader(t testing.TB, fake *fakeKMS, msg []byte, change func(*Header)) []byte {
	t.Helper()
	h, body, auth, err := readHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := fake.entries[string(h.EncryptedDataKeys[0].Ciphertext)]
	if !ok {
		t.Fatal("the fake KMS does not know the message's data key")
	}
	dataKey := bytes.Clone(e.key)
	change(&h)
	for i, e := range h.EncryptedDataKeys {
		blob, arn, err := fake.Encrypt(t.Context(), e.ProviderInfo, dataKey, h.EncryptionContext)
		if err != nil {
			t.Fatal(err)
		}
		h.EncryptedDataKeys[i] = EncryptedDataKey{ProviderID, arn, blob}
	}
	k, err := deriveKeys(h.Suite, dataKey, h.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	newBody := headerBodyOf(t, h, k.commit)
	iv := make([]byte, ivLen)
	if h.Version == 1 {
		copy(iv, auth[:ivLen])
	}
	out := bytes.Clone(newBody)
	if h.Version == 1 {
		out = append(out, iv...)
	}
	out = k.aead.Seal(out, iv, nil, newBody)
	return append(out, msg[len(body)+len(auth):]...)
}

// resign replaces the footer of a signed message with one by sign over
// every byte before it.
func resign(t testing.TB, msg []byte, plainLen int, sign *signer) []byte {
	t.Helper()
	p := partsOf(t, msg, plainLen)
	sign.sum.Write(msg[:p.footer])
	footer, err := sign.footer(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(msg[:p.footer]), footer...)
}

// newPublicKey makes a signing key for s and returns it with its public
// key as the encryption context carries it.
func newPublicKey(t testing.TB, s Suite) (*signer, string) {
	t.Helper()
	sign, err := newSigner(s, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.publicKey()
	if err != nil {
		t.Fatal(err)
	}
	return sign, pub
}

// checkPublicKey checks that encoded is standard Base64 of a compressed
// point of the suite's curve, and returns the key.
func checkPublicKey(t testing.TB, spec suiteSpec, encoded string) *ecdsa.PublicKey {
	t.Helper()
	raw, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil {
		t.Fatalf("public key %q is not Base64: %v", encoded, err)
	}
	size := (spec.curve.Params().BitSize + 7) / 8
	if len(raw) != 1+size || (raw[0] != 2 && raw[0] != 3) {
		t.Fatalf("public key is %d bytes starting %x; want a %d-byte compressed %s point", len(raw), raw[:min(1, len(raw))], 1+size, spec.curve.Params().Name)
	}
	x, y := elliptic.UnmarshalCompressed(spec.curve, raw)
	if x == nil {
		t.Fatalf("public key %q is not a point of %s", encoded, spec.curve.Params().Name)
	}
	uncompressed := make([]byte, 1+2*size)
	uncompressed[0] = 4
	x.FillBytes(uncompressed[1 : 1+size])
	y.FillBytes(uncompressed[1+size:])
	key, err := ecdsa.ParseUncompressedPublicKey(spec.curve, uncompressed)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// checkSignature verifies the footer of a signed message with crypto/ecdsa
// directly: the suite's hash of every byte before the footer, signed by
// the key of the header's encryption context.
func checkSignature(t testing.TB, spec suiteSpec, msg []byte, p messageParts) {
	t.Helper()
	key := checkPublicKey(t, spec, p.header.EncryptionContext[PublicKeyContextKey])
	sum := spec.hash.New()
	sum.Write(msg[:p.footer])
	if !ecdsa.VerifyASN1(key, sum.Sum(nil), msg[p.footer+2:]) {
		t.Fatal("the footer's signature does not verify under the header's key")
	}
}

// gateKMS is a fakeKMS whose Decrypt fails for the ARNs in refuse and
// whose Encrypt fails for the key IDs in refuseEncrypt; it records the
// ARNs Decrypt was asked for.
type gateKMS struct {
	*fakeKMS
	refuse        map[string]bool
	refuseEncrypt map[string]bool
	asked         []string
}

var errGate = errors.New("gate KMS: AccessDeniedException")

func (g *gateKMS) Decrypt(ctx context.Context, blob []byte, keyARN string, encCtx map[string]string) ([]byte, error) {
	g.asked = append(g.asked, keyARN)
	if g.refuse[keyARN] {
		return nil, fmt.Errorf("%w for %s", errGate, keyARN)
	}
	return g.fakeKMS.Decrypt(ctx, blob, keyARN, encCtx)
}

func (g *gateKMS) Encrypt(ctx context.Context, keyID string, dataKey []byte, encCtx map[string]string) ([]byte, string, error) {
	if g.refuseEncrypt[keyID] {
		return nil, "", errGate
	}
	return g.fakeKMS.Encrypt(ctx, keyID, dataKey, encCtx)
}

// zeroKeyKMS answers every Decrypt with an all-zero data key of n bytes:
// another data key than the message's, of the right length.
type zeroKeyKMS struct {
	*fakeKMS
	n int
}

func (z zeroKeyKMS) Decrypt(context.Context, []byte, string, map[string]string) ([]byte, error) {
	return make([]byte, z.n), nil
}

// ---------------------------------------------------------------------
// Suite and policy lookup.

// TestSuiteByID proves every suite of the specification's table is known
// with its name, format version (2 exactly for the committing suites), key
// length, key commitment, and signature curve and hash; that nothing else
// is; and which two Encrypt writes.
func TestSuiteByID(t *testing.T) {
	if len(suites) != len(suiteSpecs) {
		t.Errorf("%d suites, the specification has %d", len(suites), len(suiteSpecs))
	}
	for _, want := range suiteSpecs {
		t.Run(fmt.Sprintf("0x%04X", want.id), func(t *testing.T) {
			s, ok := SuiteByID(want.id)
			if !ok {
				t.Fatal("not found")
			}
			if s.ID != want.id || s.Name != want.name || s.Version != want.version || s.KeyLen != want.keyLen {
				t.Errorf("got %d %q version %d key %d; want %d %q version %d key %d", s.ID, s.Name, s.Version, s.KeyLen, want.id, want.name, want.version, want.keyLen)
			}
			if s.Committing() != want.committing {
				t.Errorf("Committing() = %v, want %v", s.Committing(), want.committing)
			}
			if s.Signed() != (want.curve != nil) {
				t.Errorf("Signed() = %v, want %v", s.Signed(), want.curve != nil)
			}
			if (s.Version == 2) != want.committing {
				t.Errorf("version %d for a suite with committing=%v", s.Version, want.committing)
			}
			if want.curve != nil && (s.curve != want.curve || s.hash != want.hash) {
				t.Errorf("signs with %v and %v; want %s and %v", s.curve, s.hash, want.curve.Params().Name, want.hash)
			}
			if got := s.String(); got != fmt.Sprintf("%s (0x%04X)", want.name, want.id) {
				t.Errorf("String() = %q", got)
			}
		})
	}
	for _, id := range []uint16{0x0000, 0x0001, 0x0477, 0x0479, 0x0578 + 0x1000, 0x0070, 0xFFFF} {
		if s, ok := SuiteByID(id); ok || s != (Suite{}) {
			t.Errorf("SuiteByID(0x%04X) = %v, %v; want no suite", id, s, ok)
		}
	}
	if SuiteSigned.ID != 0x0578 || SuiteUnsigned.ID != 0x0478 {
		t.Errorf("SuiteSigned 0x%04X, SuiteUnsigned 0x%04X; want 0x0578 and 0x0478", SuiteSigned.ID, SuiteUnsigned.ID)
	}
}

// rfcHKDF is HKDF (RFC 5869) written out on crypto/hmac; a nil salt is
// HashLen zero bytes.
func rfcHKDF(h func() hash.Hash, ikm, salt, info []byte, n int) []byte {
	if salt == nil {
		salt = make([]byte, h().Size())
	}
	m := hmac.New(h, salt)
	m.Write(ikm)
	prk := m.Sum(nil)
	var out, block []byte
	for i := byte(1); len(out) < n; i++ {
		m = hmac.New(h, prk)
		m.Write(block)
		m.Write(info)
		m.Write([]byte{i})
		block = m.Sum(nil)
		out = append(out, block...)
	}
	return out[:n]
}

// TestDeriveKeysPerSuite proves each suite derives its AES key as
// client-apis/key-derivation.md and the suite table say, computed here
// with rfcHKDF: the data key itself (no KDF); HKDF with SHA-256 or
// SHA-384, no salt, info = suite ID || message ID (version 1); HKDF-SHA512
// with the message ID as salt, info = suite ID || "DERIVEKEY", and the
// commit key with info "COMMITKEY" (version 2). Messages written and read
// by this package's own derivation would not notice a wrong one.
func TestDeriveKeysPerSuite(t *testing.T) {
	hashes := map[string]func() hash.Hash{"sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New}
	for _, spec := range suiteSpecs {
		t.Run(fmt.Sprintf("0x%04X", spec.id), func(t *testing.T) {
			s := mustSuite(t, spec.id)
			dataKey := pattern(spec.keyLen + 3)[3:]
			msgID := pattern(map[byte]int{1: 16, 2: 32}[spec.version] + 1)[1:]
			id := binary.BigEndian.AppendUint16(nil, spec.id)
			var encKey, commit []byte
			switch spec.kdf {
			case "identity":
				encKey = dataKey
			case "sha256", "sha384":
				encKey = rfcHKDF(hashes[spec.kdf], dataKey, nil, append(id, msgID...), spec.keyLen)
			case "sha512":
				encKey = rfcHKDF(sha512.New, dataKey, msgID, append(id, "DERIVEKEY"...), spec.keyLen)
				commit = rfcHKDF(sha512.New, dataKey, msgID, []byte("COMMITKEY"), commitLen)
			}
			k, err := deriveKeys(s, bytes.Clone(dataKey), msgID)
			if err != nil {
				t.Fatal(err)
			}
			block, err := aes.NewCipher(encKey)
			if err != nil {
				t.Fatal(err)
			}
			aead, _ := cipher.NewGCM(block)
			iv, probe := pattern(ivLen), []byte("a probe of the derived key")
			if !bytes.Equal(k.aead.Seal(nil, iv, probe, id), aead.Seal(nil, iv, probe, id)) {
				t.Error("the AEAD is not under the specified key")
			}
			var got, want [16]byte
			k.block.Encrypt(got[:], probe[:16])
			block.Encrypt(want[:], probe[:16])
			if got != want {
				t.Error("the block cipher is not under the specified key")
			}
			if !bytes.Equal(k.commit, commit) {
				t.Errorf("commit key %x, want %x", k.commit, commit)
			}
			if _, err := deriveKeys(s, make([]byte, spec.keyLen+8), msgID); err == nil {
				t.Error("a data key of the wrong length was accepted")
			}
		})
	}
}

// TestParseSuite proves every suite is found by its name in any case,
// with the "ALG_" prefix, and by its ID in hex with 0x or 0X; and that
// anything else is refused with an error naming the input and both suites
// Encrypt writes.
func TestParseSuite(t *testing.T) {
	mixed := func(s string) string { // aLtErNaTiNg case
		b := []byte(strings.ToLower(s))
		for i := 0; i < len(b); i += 2 {
			b[i] = strings.ToUpper(string(b[i]))[0]
		}
		return string(b)
	}
	for _, spec := range suiteSpecs {
		for _, name := range []string{
			spec.name,
			strings.ToLower(spec.name),
			mixed(spec.name),
			"ALG_" + spec.name,
			"alg_" + strings.ToLower(spec.name),
			"  " + spec.name + "\t",
			fmt.Sprintf("0x%04X", spec.id),
			fmt.Sprintf("0x%04x", spec.id),
			fmt.Sprintf("0X%04X", spec.id),
			fmt.Sprintf("0x%X", spec.id),
		} {
			s, err := ParseSuite(name)
			if err != nil || s.ID != spec.id {
				t.Errorf("ParseSuite(%q) = 0x%04X, %v; want 0x%04X", name, s.ID, err, spec.id)
			}
		}
	}
	for name, id := range map[string]uint16{"0x0578": 0x0578, "0X0478": 0x0478, "0x0214": 0x0214} {
		if s, err := ParseSuite(name); err != nil || s.ID != id {
			t.Errorf("ParseSuite(%q) = 0x%04X, %v; want 0x%04X", name, s.ID, err, id)
		}
	}
	for _, name := range []string{
		"", " ", "AES", "ALG_", "0x", "0x0", "0X9999", "0x0479", "0x10578", "0xZZ", "0578", "1400",
		"AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P521",
		"AES_256_GCM_HKDF_SHA512_COMMIT_KEY_",
		"ALG_ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
		"AES-256-GCM-HKDF-SHA512-COMMIT-KEY",
	} {
		s, err := ParseSuite(name)
		if err == nil {
			t.Errorf("ParseSuite(%q) = %v; want an error", name, s)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("%q", name)) || !strings.Contains(msg, SuiteSigned.Name) || !strings.Contains(msg, SuiteUnsigned.Name) {
			t.Errorf("ParseSuite(%q): error %q does not name the input and both %s and %s", name, msg, SuiteSigned.Name, SuiteUnsigned.Name)
		}
	}
}

// TestParseSuiteJavaScriptNames proves the names of the AWS Encryption SDK
// for JavaScript's AlgorithmSuiteIdentifier enum are accepted: it spells
// "AES256" without an underscore and "IV12_TAG16" in every name (see
// @aws-crypto/material-management), unlike "ALG_" + the Python name, the
// Java and .NET SDKs' spelling.
func TestParseSuiteJavaScriptNames(t *testing.T) {
	for name, id := range map[string]uint16{
		"ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384": 0x0578,
		"ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY":            0x0478,
		"ALG_AES256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384":            0x0378,
		"ALG_AES192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384":            0x0346,
		"ALG_AES128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256":            0x0214,
		"ALG_AES256_GCM_IV12_TAG16_HKDF_SHA256":                       0x0178,
		"ALG_AES192_GCM_IV12_TAG16_HKDF_SHA256":                       0x0146,
		"ALG_AES128_GCM_IV12_TAG16_HKDF_SHA256":                       0x0114,
		"ALG_AES256_GCM_IV12_TAG16":                                   0x0078,
		"ALG_AES192_GCM_IV12_TAG16":                                   0x0046,
		"ALG_AES128_GCM_IV12_TAG16":                                   0x0014,
	} {
		if s, err := ParseSuite(name); err != nil || s.ID != id {
			t.Errorf("ParseSuite(%q) = 0x%04X, %v; want 0x%04X (the JavaScript SDK's name)", name, s.ID, err, id)
		}
	}
}

// TestParseCommitmentPolicy proves both policies are found by their SDK
// names with dashes or underscores in any case, that String gives the
// dashed name back, and that anything else is refused naming both.
func TestParseCommitmentPolicy(t *testing.T) {
	for _, tc := range []struct {
		name string
		want CommitmentPolicy
	}{
		{"require-encrypt-require-decrypt", RequireEncryptRequireDecrypt},
		{"REQUIRE_ENCRYPT_REQUIRE_DECRYPT", RequireEncryptRequireDecrypt},
		{"Require_Encrypt-Require_Decrypt", RequireEncryptRequireDecrypt},
		{" require-encrypt-require-decrypt\n", RequireEncryptRequireDecrypt},
		{"require-encrypt-allow-decrypt", RequireEncryptAllowDecrypt},
		{"REQUIRE_ENCRYPT_ALLOW_DECRYPT", RequireEncryptAllowDecrypt},
		{"require_encrypt_allow_decrypt", RequireEncryptAllowDecrypt},
		{"Require-Encrypt_ALLOW-decrypt", RequireEncryptAllowDecrypt},
	} {
		got, err := ParseCommitmentPolicy(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("ParseCommitmentPolicy(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		p    CommitmentPolicy
		name string
	}{
		{RequireEncryptRequireDecrypt, "require-encrypt-require-decrypt"},
		{RequireEncryptAllowDecrypt, "require-encrypt-allow-decrypt"},
	} {
		if got := tc.p.String(); got != tc.name {
			t.Errorf("String() = %q, want %q", got, tc.name)
		}
		if back, err := ParseCommitmentPolicy(tc.p.String()); err != nil || back != tc.p {
			t.Errorf("ParseCommitmentPolicy(%q) = %v, %v", tc.p.String(), back, err)
		}
	}
	for _, name := range []string{"", "forbid-encrypt-allow-decrypt", "FORBID_ENCRYPT_ALLOW_DECRYPT", "require-encrypt", "allow-decrypt",
		"require encrypt allow decrypt", "requireencryptallowdecrypt", "require-encrypt-allow-decrypt-", "0", "1"} {
		p, err := ParseCommitmentPolicy(name)
		if err == nil {
			t.Errorf("ParseCommitmentPolicy(%q) = %v; want an error", name, p)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "require-encrypt-require-decrypt") || !strings.Contains(msg, "require-encrypt-allow-decrypt") {
			t.Errorf("ParseCommitmentPolicy(%q): error %q does not name both policies", name, msg)
		}
	}
}

// ---------------------------------------------------------------------
// Every suite, framed and not, and the commitment policy.

// roundTripSizes are the plaintext sizes around frame (0: non-framed, where
// the sizes are around Decrypt's 64 KiB pieces).
func roundTripSizes(frame int) []int {
	if frame == 0 {
		return []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 100_000}
	}
	sizes := []int{0, 1, frame - 1, frame, frame + 1, 3 * frame}
	if frame >= 7 {
		sizes = append(sizes, 100_000)
	}
	slices.Sort(sizes)
	return slices.Compact(sizes)
}

// TestSuitesRoundTrip proves that a message of every suite, framed (frame
// lengths 1, 7, 4096) or not, of every size around the frame boundaries,
// under three keys, decrypts under RequireEncryptAllowDecrypt to its
// plaintext with the header it was written with: suite, version, frame
// length, message ID of 16 bytes (version 1) or 32 (version 2), the
// encryption context with, for a signed suite, its public key (a
// compressed point of the suite's curve, whose signature verifies), and
// the three keys; and that every data key handed out is zeroed. Under the
// default policy, and RequireEncryptRequireDecrypt given, each message of
// a suite without key commitment fails with ErrUnsupported naming the
// policy to use, writing nothing and asking KMS for nothing; the
// committing ones decrypt.
func TestSuitesRoundTrip(t *testing.T) {
	encCtx := map[string]string{"purpose": "suites", "ünïcode": "✓"}
	for _, spec := range suiteSpecs {
		s := mustSuite(t, spec.id)
		for _, frame := range []int{0, 1, 7, 4096} {
			for _, size := range roundTripSizes(frame) {
				t.Run(fmt.Sprintf("0x%04X/frame=%d/size=%d", spec.id, frame, size), func(t *testing.T) {
					fake := newFakeKMS()
					kms := &gateKMS{fakeKMS: fake}
					plain := pattern(size)
					msg := writeTestMessage(t, fake, testARN, s, encCtx, plain, frame, suiteARN2, suiteARN3)
					p := partsOf(t, msg, size)

					h, out, err := decryptMsg(t, kms, msg, allowV1)
					if err != nil {
						t.Fatalf("Decrypt: %v", err)
					}
					if !bytes.Equal(out, plain) {
						t.Fatalf("decrypted %d bytes, want %d equal bytes", len(out), size)
					}
					if h.Suite != s || h.Suite.ID != spec.id || h.Version != spec.version || h.FrameLength != uint32(frame) {
						t.Errorf("header: suite %v (0x%04X), version %d, frame length %d; want 0x%04X, %d, %d", h.Suite, h.Suite.ID, h.Version, h.FrameLength, spec.id, spec.version, frame)
					}
					if wantID := map[byte]int{1: 16, 2: 32}[spec.version]; len(h.MessageID) != wantID || !bytes.Equal(h.MessageID, p.header.MessageID) {
						t.Errorf("message ID of %d bytes, want %d", len(h.MessageID), wantID)
					}
					wantCtx := maps.Clone(encCtx)
					pub, hasKey := h.EncryptionContext[PublicKeyContextKey]
					if spec.curve != nil {
						if !hasKey {
							t.Fatalf("signed suite without %s in its context %v", PublicKeyContextKey, h.EncryptionContext)
						}
						wantCtx[PublicKeyContextKey] = p.header.EncryptionContext[PublicKeyContextKey]
						checkPublicKey(t, spec, pub)
						checkSignature(t, spec, msg, p)
					}
					if !maps.Equal(h.EncryptionContext, wantCtx) {
						t.Errorf("encryption context %v, want %v (with a public key for a signed suite)", h.EncryptionContext, wantCtx)
					}
					var arns []string
					for _, e := range h.EncryptedDataKeys {
						arns = append(arns, e.ProviderInfo)
						if e.ProviderID != ProviderID {
							t.Errorf("provider %q", e.ProviderID)
						}
					}
					if !slices.Equal(arns, []string{testARN, suiteARN2, suiteARN3}) || h.KeyARN != testARN {
						t.Errorf("keys %v, opened with %s; want %s, %s, %s opened with the first", arns, h.KeyARN, testARN, suiteARN2, suiteARN3)
					}
					if !fake.allZeroed() {
						t.Error("a plaintext data key was not zeroed")
					}

					for _, opts := range [][]DecryptOption{nil, {WithCommitmentPolicy(RequireEncryptRequireDecrypt)}} {
						kms.asked = nil
						h, out, err := decryptMsg(t, kms, msg, opts...)
						if spec.committing {
							if err != nil || !bytes.Equal(out, plain) {
								t.Errorf("committing suite under the default policy: %v, %d bytes", err, len(out))
							}
							continue
						}
						if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "require-encrypt-allow-decrypt") {
							t.Errorf("suite without commitment under the default policy: error %v, want ErrUnsupported naming require-encrypt-allow-decrypt", err)
						}
						if len(out) != 0 || len(kms.asked) != 0 || h.KeyARN != "" || h.Suite.ID != 0 {
							t.Errorf("refused message wrote %d bytes, asked KMS for %v and returned header %+v", len(out), kms.asked, h)
						}
					}
				})
			}
		}
	}
}

// ---------------------------------------------------------------------
// What Encrypt writes.

// TestEncryptSuites proves Encrypt writes 0x0578 by default: its header
// names the suite, its context holds aws-crypto-public-key, Base64 of a
// 49-byte compressed P-384 point (a new one per message, and not added to
// the caller's map), and it ends with a footer whose length field gives
// the rest of the message and whose signature verifies with crypto/ecdsa;
// and that WithSuite(SuiteUnsigned) writes 0x0478 without footer or key.
// Both decrypt, with the header Encrypt returned.
func TestEncryptSuites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []Option
		suite uint16
	}{
		{"default", nil, 0x0578},
		{"WithSuite(SuiteSigned)", []Option{WithSuite(SuiteSigned)}, 0x0578},
		{"WithSuite(SuiteUnsigned)", []Option{WithSuite(SuiteUnsigned)}, 0x0478},
		{"ParseSuite unsigned", []Option{WithSuite(func() Suite { s, _ := ParseSuite("0x0478"); return s }())}, 0x0478},
	} {
		for _, size := range []int{0, 5, 4096, 10_000} {
			t.Run(fmt.Sprintf("%s/size=%d", tc.name, size), func(t *testing.T) {
				fake := newFakeKMS()
				spec := specOf(t, tc.suite)
				encCtx := map[string]string{"app": "hsmkms"}
				plain := pattern(size)
				msg, eh := encryptMsg(t, fake, encCtx, plain, tc.opts...)
				if len(encCtx) != 1 {
					t.Errorf("Encrypt changed the caller's context: %v", encCtx)
				}
				if msg[0] != 2 || binary.BigEndian.Uint16(msg[1:]) != tc.suite || eh.Suite.ID != tc.suite || eh.Version != 2 {
					t.Fatalf("message starts %x, header suite 0x%04X version %d; want version 2 and suite 0x%04X", msg[:3], eh.Suite.ID, eh.Version, tc.suite)
				}
				p := partsOf(t, msg, size) // fails unless the footer is exactly the rest
				pub, has := eh.EncryptionContext[PublicKeyContextKey]
				if spec.curve != nil {
					if !has || p.header.EncryptionContext[PublicKeyContextKey] != pub {
						t.Fatalf("context %v of the signed suite lacks %s, or the message's differs", eh.EncryptionContext, PublicKeyContextKey)
					}
					if raw, _ := base64.StdEncoding.DecodeString(pub); len(raw) != 49 {
						t.Fatalf("public key is %d bytes, want 49", len(raw))
					}
					checkSignature(t, spec, msg, p)
					if p.sigLen < 8 || p.sigLen > 104 || len(msg) != p.footer+2+p.sigLen {
						t.Fatalf("footer of a %d-byte signature", p.sigLen)
					}
					again, eh2 := encryptMsg(t, fake, encCtx, plain, tc.opts...)
					if eh2.EncryptionContext[PublicKeyContextKey] == pub || bytes.Equal(again, msg) {
						t.Fatal("two messages share a signing key")
					}
				} else if has || p.footer != len(msg) {
					t.Fatalf("unsigned message has a public key (%v) or %d bytes after its body", has, len(msg)-p.footer)
				}
				wantCtx := maps.Clone(encCtx)
				if has {
					wantCtx[PublicKeyContextKey] = pub
				}
				if !maps.Equal(eh.EncryptionContext, wantCtx) {
					t.Errorf("context %v, want %v", eh.EncryptionContext, wantCtx)
				}
				dh, out, err := decryptMsg(t, fake, msg)
				if err != nil || !bytes.Equal(out, plain) {
					t.Fatalf("Decrypt: %v (%d bytes)", err, len(out))
				}
				if !reflect.DeepEqual(dh, eh) {
					t.Errorf("headers differ:\nencrypt %+v\ndecrypt %+v", eh, dh)
				}
				if !fake.allZeroed() {
					t.Error("a plaintext data key was not zeroed")
				}
			})
		}
	}
}

// TestEncryptRefusesSuites proves Encrypt refuses every suite without key
// commitment (and a zero Suite), and a caller's context key with the
// reserved "aws-crypto-" prefix under both suites it writes, before asking
// KMS for a data key or writing a byte.
func TestEncryptRefusesSuites(t *testing.T) {
	type refusal struct {
		name   string
		encCtx map[string]string
		opts   []Option
		want   []string
	}
	var cases []refusal
	for _, spec := range suiteSpecs {
		if !spec.committing {
			cases = append(cases, refusal{fmt.Sprintf("suite 0x%04X", spec.id), nil, []Option{WithSuite(mustSuite(t, spec.id))},
				[]string{"does not commit", SuiteSigned.Name, SuiteUnsigned.Name}})
		}
	}
	cases = append(cases, refusal{"zero suite", nil, []Option{WithSuite(Suite{})}, []string{"does not commit"}})
	for _, s := range []Suite{SuiteSigned, SuiteUnsigned} {
		for _, key := range []string{PublicKeyContextKey, "aws-crypto-", "aws-crypto-other"} {
			cases = append(cases, refusal{fmt.Sprintf("0x%04X context key %s", s.ID, key),
				map[string]string{"app": "x", key: "AkJD"}, []Option{WithSuite(s)}, []string{"reserved", key}})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeKMS()
			var out bytes.Buffer
			_, err := Encrypt(t.Context(), fake, testARN, tc.encCtx, strings.NewReader("data"), &out, tc.opts...)
			if err == nil {
				t.Fatal("Encrypt succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if out.Len() != 0 || len(fake.handed) != 0 {
				t.Errorf("wrote %d bytes and asked KMS for %d data keys before refusing", out.Len(), len(fake.handed))
			}
		})
	}
}

// ---------------------------------------------------------------------
// Signatures.

// TestSignatureTamper proves the signature of a signed message (Encrypt's
// 0x0578, writeTestMessage's 0x0378 and 0x0214, of several frames and of
// one) authenticates every byte before it with the key of the header: a
// flipped bit in the header, header tag, a frame, the footer length or the
// signature fails; a public key replaced by another (the header
// re-authenticated) fails on the signature alone, as the same change
// re-signed with the new key decrypts; a footer cut, dropped or followed
// by a byte fails. On every failure, the plaintext written is exactly that
// of the frames before the damage, never the final frame's.
func TestSignatureTamper(t *testing.T) {
	const frame = 16
	type message struct {
		name  string
		suite uint16
		size  int
		write func(t *testing.T, fake *fakeKMS, plain []byte) []byte
	}
	encrypted := func(t *testing.T, fake *fakeKMS, plain []byte) []byte {
		msg, _ := encryptMsg(t, fake, map[string]string{"purpose": "sign"}, plain, WithFrameLength(frame))
		return msg
	}
	written := func(id uint16) func(t *testing.T, fake *fakeKMS, plain []byte) []byte {
		return func(t *testing.T, fake *fakeKMS, plain []byte) []byte {
			return writeTestMessage(t, fake, testARN, mustSuite(t, id), map[string]string{"purpose": "sign"}, plain, frame)
		}
	}
	var messages []message
	for _, size := range []int{3*frame + 5, 2 * frame, 5} {
		messages = append(messages,
			message{fmt.Sprintf("Encrypt 0x0578 size=%d", size), 0x0578, size, encrypted},
			message{fmt.Sprintf("writeTestMessage 0x0378 size=%d", size), 0x0378, size, written(0x0378)},
			message{fmt.Sprintf("writeTestMessage 0x0214 size=%d", size), 0x0214, size, written(0x0214)})
	}

	// A case alters a message; want is its error (nil: it decrypts) and
	// frames the number of frames whose plaintext Decrypt may write.
	type tamper struct {
		name   string
		alter  func(msg []byte) []byte
		want   error
		frames int
	}
	flip := func(p int, mask byte) func([]byte) []byte {
		return func(m []byte) []byte { m[p] ^= mask; return m }
	}
	for _, mc := range messages {
		t.Run(mc.name, func(t *testing.T) {
			fake := newFakeKMS()
			s := mustSuite(t, mc.suite)
			plain := pattern(mc.size)
			msg := mc.write(t, fake, plain)
			p := partsOf(t, msg, mc.size)
			regular := p.regularFrames()
			final := p.frames[regular]
			msgID := 3 // version, suite ID
			frameLengthEnd := p.headerEnd - tagLen
			if s.Version == 1 {
				msgID = 4 // and the message type
				frameLengthEnd -= ivLen
			}
			if s.Committing() {
				frameLengthEnd -= commitLen
			}
			if got := binary.BigEndian.Uint32(msg[frameLengthEnd-4:]); got != frame {
				t.Fatalf("frame length field at %d holds %d", frameLengthEnd-4, got)
			}
			withKey := func(key string) func([]byte) []byte {
				return func(m []byte) []byte {
					return resealHeader(t, fake, m, func(h *Header) { h.EncryptionContext[PublicKeyContextKey] = key })
				}
			}
			cases := []tamper{
				{"intact", func(m []byte) []byte { return m }, nil, regular + 1},
				{"header byte (message ID)", flip(msgID+5, 0x01), ErrAuthentication, 0},
				{"header byte (frame length)", flip(frameLengthEnd-1, 0x01), ErrAuthentication, 0},
				{"header tag", flip(p.headerEnd-1, 0x01), ErrAuthentication, 0},
				{"final frame content", flip(final+4+4+ivLen+4, 0x80), ErrAuthentication, regular},
				{"final frame tag", flip(p.footer-1, 0x01), ErrAuthentication, regular},
				{"footer dropped", func(m []byte) []byte { return m[:p.footer] }, ErrTruncated, regular},
				{"cut inside the footer length", func(m []byte) []byte { return m[:p.footer+1] }, ErrTruncated, regular},
				{"cut after the footer length", func(m []byte) []byte { return m[:p.footer+2] }, ErrTruncated, regular},
				{"cut inside the signature", func(m []byte) []byte { return m[:len(m)-1] }, ErrTruncated, regular},
				{"byte after the footer", func(m []byte) []byte { return append(m, 0) }, ErrMalformed, regular},
				{"footer repeated", func(m []byte) []byte { return append(m, m[p.footer:]...) }, ErrMalformed, regular},
				{"signature length 0", func(m []byte) []byte { m[p.footer], m[p.footer+1] = 0, 0; return m }, ErrMalformed, regular},
				{"signature by another key", func(m []byte) []byte { other, _ := newPublicKey(t, s); return resign(t, m, mc.size, other) }, ErrAuthentication, regular},
				{"public key replaced", func(m []byte) []byte { _, key := newPublicKey(t, s); return withKey(key)(m) }, ErrAuthentication, regular},
				{"public key replaced and re-signed", func(m []byte) []byte {
					sign, key := newPublicKey(t, s)
					return resign(t, withKey(key)(m), mc.size, sign)
				}, nil, regular + 1},
				{"public key not Base64", withKey("not Base64!"), ErrMalformed, 0},
				{"public key not a point", withKey(base64.StdEncoding.EncodeToString(append([]byte{2}, bytes.Repeat([]byte{0xff}, (s.curve.Params().BitSize+7)/8)...))), ErrMalformed, 0},
				{"public key of another curve", func(m []byte) []byte {
					other := SuiteSigned
					if s.curve == elliptic.P384() {
						other = mustSuite(t, 0x0214)
					}
					_, key := newPublicKey(t, other)
					return withKey(key)(m)
				}, ErrMalformed, 0},
				{"public key uncompressed", func(m []byte) []byte {
					sign, _ := newPublicKey(t, s)
					raw, _ := sign.key.PublicKey.Bytes()
					return withKey(base64.StdEncoding.EncodeToString(raw))(m)
				}, ErrMalformed, 0},
			}
			if regular > 0 {
				cases = append(cases,
					tamper{"regular frame 1 content", flip(p.frames[0]+4+ivLen, 0x01), ErrAuthentication, 0},
					tamper{"last regular frame tag", flip(final-1, 0x40), ErrAuthentication, regular - 1})
			}
			for _, mask := range []uint16{0x0001, 0x0002, 0x0004, 0x0080, 0x0100, 0x8000} {
				n := p.sigLen ^ int(mask)
				want := ErrAuthentication // a shorter signature does not parse
				switch {
				case n == 0 || n > maxSignatureLen:
					want = ErrMalformed
				case n > p.sigLen:
					want = ErrTruncated
				}
				cases = append(cases, tamper{fmt.Sprintf("footer length ^ %#04x", mask), func(m []byte) []byte {
					binary.BigEndian.PutUint16(m[p.footer:], uint16(n))
					return m
				}, want, regular})
			}
			for _, i := range []int{0, 1, 2, 3, 5, p.sigLen / 2, p.sigLen - 2, p.sigLen - 1} {
				cases = append(cases, tamper{fmt.Sprintf("signature byte %d", i), flip(p.footer+2+i, 0x01), ErrAuthentication, regular})
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					bad := tc.alter(bytes.Clone(msg))
					_, out, err := decryptMsg(t, fake, bad, allowV1)
					if tc.want == nil {
						if err != nil || !bytes.Equal(out, plain) {
							t.Fatalf("Decrypt: %v, %d bytes", err, len(out))
						}
						return
					}
					if !errors.Is(err, tc.want) {
						t.Fatalf("error %v, want %v", err, tc.want)
					}
					if !bytes.Equal(out, plain[:tc.frames*frame]) {
						t.Fatalf("wrote %d bytes; want the %d bytes of the %d frames before the damage", len(out), tc.frames*frame, tc.frames)
					}
					// Never the final frame, whatever the damage.
					if len(p.frames) > 1 && len(out) >= len(plain) || len(p.frames) == 1 && len(out) != 0 {
						t.Fatalf("wrote %d of %d bytes of a message of %d frames", len(out), len(plain), len(p.frames))
					}
				})
			}
		})
	}
}

// ---------------------------------------------------------------------
// Non-framed content.

// TestNonFramed proves non-framed content of unsigned and signed suites of
// both versions is authenticated by its tag and, when signed, its
// signature: a flipped bit in the IV, the content or the tag fails with
// ErrAuthentication; a content length above 2^36-32 with ErrMalformed
// before any plaintext (2^36-32 itself is accepted and the input found
// short); a message cut anywhere in its body, or of a content length one
// longer, with ErrTruncated; data after it with ErrMalformed. (Plaintext
// is written before the tag is checked, so only the failures before the
// content are checked to write none.)
func TestNonFramed(t *testing.T) {
	const size = 100_000 // two 64 KiB pieces
	for _, id := range []uint16{0x0478, 0x0578, 0x0378, 0x0214, 0x0178, 0x0014} {
		t.Run(fmt.Sprintf("0x%04X", id), func(t *testing.T) {
			fake := newFakeKMS()
			s := mustSuite(t, id)
			plain := pattern(size)
			msg := writeTestMessage(t, fake, testARN, s, map[string]string{"k": "v"}, plain, 0)
			p := partsOf(t, msg, size)
			iv, length := p.headerEnd, p.headerEnd+ivLen
			content := length + 8
			tag := content + size
			setLength := func(n uint64) func([]byte) []byte {
				return func(m []byte) []byte { binary.BigEndian.PutUint64(m[length:], n); return m }
			}
			flip := func(at int) func([]byte) []byte {
				return func(m []byte) []byte { m[at] ^= 0x01; return m }
			}
			cut := func(n int) func([]byte) []byte { return func(m []byte) []byte { return m[:n] } }
			cases := []struct {
				name    string
				alter   func([]byte) []byte
				want    error
				nothing bool // no plaintext may be written
			}{
				{"intact", func(m []byte) []byte { return m }, nil, false},
				{"IV", flip(iv + 3), ErrAuthentication, false},
				{"first content byte", flip(content), ErrAuthentication, false},
				{"content byte in the second piece", flip(content + 64<<10 + 1), ErrAuthentication, false},
				{"last content byte", flip(tag - 1), ErrAuthentication, false},
				{"tag first byte", flip(tag), ErrAuthentication, false},
				{"tag last byte", flip(tag + tagLen - 1), ErrAuthentication, false},
				{"length 2^36-31", setLength(maxSingleBlock + 1), ErrMalformed, true},
				{"length 2^40", setLength(1 << 40), ErrMalformed, true},
				{"length 2^64-1", setLength(^uint64(0)), ErrMalformed, true},
				{"length 2^36-32, input short", setLength(maxSingleBlock), ErrTruncated, false},
				// One byte longer: the tag is read one byte late, into the
				// footer of a signed message, past the end of another.
				{"length one longer", setLength(size + 1), map[bool]error{false: ErrTruncated, true: ErrAuthentication}[s.Signed()], false},
				{"length one shorter", setLength(size - 1), ErrAuthentication, false},
				{"length 0", setLength(0), ErrAuthentication, false},
				{"cut before the length", cut(length + 3), ErrTruncated, true},
				{"cut in the first piece", cut(content + 1000), ErrTruncated, false},
				{"cut in the second piece", cut(content + 70_000), ErrTruncated, false},
				{"cut before the tag", cut(tag), ErrTruncated, false},
				{"cut in the tag", cut(tag + 5), ErrTruncated, false},
				{"byte after the message", func(m []byte) []byte { return append(m, 0) }, ErrMalformed, false},
			}
			if s.Signed() {
				cases = append(cases, []struct {
					name    string
					alter   func([]byte) []byte
					want    error
					nothing bool
				}{
					{"signature byte", flip(p.footer + 2 + p.sigLen/2), ErrAuthentication, false},
					{"footer dropped", cut(p.footer), ErrTruncated, false},
					{"cut in the signature", cut(len(msg) - 1), ErrTruncated, false},
				}...)
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					h, out, err := decryptMsg(t, fake, tc.alter(bytes.Clone(msg)), allowV1)
					if tc.want == nil {
						if err != nil || !bytes.Equal(out, plain) || h.FrameLength != 0 || h.Suite.ID != id {
							t.Fatalf("Decrypt: %v, %d bytes, header %+v", err, len(out), h)
						}
						return
					}
					if !errors.Is(err, tc.want) {
						t.Fatalf("error %v, want %v", err, tc.want)
					}
					if tc.nothing && len(out) != 0 {
						t.Fatalf("wrote %d bytes", len(out))
					}
				})
			}
		})
	}
}

// gfElement is an element of GCM's field GF(2^128): hi holds the first 8
// bytes of a block, big-endian; the first bit is the coefficient of x^0.
type gfElement struct{ hi, lo uint64 }

func gfLoad(b []byte) gfElement {
	return gfElement{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16])}
}

func gfXor(x, y gfElement) gfElement { return gfElement{x.hi ^ y.hi, x.lo ^ y.lo} }

// gfMul is x·y by NIST SP 800-38D, algorithm 1, bit by bit: independent
// of gcmOpener's table method.
func gfMul(x, y gfElement) gfElement {
	var z gfElement
	v := y
	for i := range 128 {
		var bit uint64
		if i < 64 {
			bit = x.hi >> (63 - i) & 1
		} else {
			bit = x.lo >> (127 - i) & 1
		}
		if bit == 1 {
			z = gfXor(z, v)
		}
		lsb := v.lo & 1
		v.lo = v.lo>>1 | v.hi<<63
		v.hi >>= 1
		if lsb == 1 {
			v.hi ^= 0xe1 << 56
		}
	}
	return z
}

// gfPow is x^e by squaring.
func gfPow(x gfElement, e uint64) gfElement {
	r := gfElement{hi: 1 << 63} // 1
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = gfMul(r, x)
		}
		x = gfMul(x, x)
	}
	return r
}

// zeroCiphertextTag is the AES-GCM tag of n bytes of ciphertext that are
// all zero (the plaintext is then the key stream), under block with a
// 12-byte iv and aad: GHASH of zero blocks only multiplies by H, so the
// tag of a ciphertext of any length takes a power of H, not a pass over
// it.
func zeroCiphertextTag(block cipher.Block, iv, aad []byte, n uint64) []byte {
	var hb [16]byte
	block.Encrypt(hb[:], hb[:])
	h := gfLoad(hb[:])
	var y gfElement
	for off := 0; off < len(aad); off += 16 {
		var b [16]byte
		copy(b[:], aad[off:])
		y = gfMul(gfXor(y, gfLoad(b[:])), h)
	}
	y = gfMul(y, gfPow(h, (n+15)/16))
	y = gfMul(gfXor(y, gfElement{uint64(len(aad)) * 8, n * 8}), h)
	var j0, mask [16]byte
	copy(j0[:], iv)
	j0[15] = 1
	block.Encrypt(mask[:], j0[:])
	tag := make([]byte, 16)
	binary.BigEndian.PutUint64(tag[:8], y.hi)
	binary.BigEndian.PutUint64(tag[8:], y.lo)
	for i := range tag {
		tag[i] ^= mask[i]
	}
	return tag
}

// zeroReader yields n zero bytes without holding them.
type zeroReader struct{ n uint64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	k := min(uint64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// keyStream writes n bytes of the AES-CTR key stream of GCM's content (the
// counter block iv || 2) to w.
func keyStream(block cipher.Block, iv []byte, n uint64, w io.Writer) {
	ctr := make([]byte, 16)
	copy(ctr, iv)
	ctr[15] = 2
	stream := cipher.NewCTR(block, ctr)
	buf := make([]byte, 64<<10)
	for n > 0 {
		chunk := buf[:min(uint64(len(buf)), n)]
		clear(chunk)
		stream.XORKeyStream(chunk, chunk)
		w.Write(chunk)
		n -= uint64(len(chunk))
	}
}

// TestNonFramedLarge proves a 64 MiB non-framed message (and an 8 MiB one
// of version 1), streamed (its ciphertext all zeros, its tag computed
// apart by zeroCiphertextTag, which is first checked against
// cipher.NewGCM), decrypts to the key stream, reading it in pieces:
// Decrypt allocates at most 1 MiB, whatever the content's length; the
// same stream with a flipped tag bit fails.
func TestNonFramedLarge(t *testing.T) {
	t.Run("tag helper matches cipher.NewGCM", func(t *testing.T) {
		k, err := deriveKeys(SuiteUnsigned, pattern(32), pattern(32))
		if err != nil {
			t.Fatal(err)
		}
		aead, _ := cipher.NewGCM(k.block)
		for _, n := range []int{0, 1, 15, 16, 17, 100, 4096, 70_001} {
			for _, aadLen := range []int{0, 13, 16, 67, 90} {
				iv, aad := pattern(ivLen + n%7)[n%7:], pattern(aadLen)
				var ks bytes.Buffer
				keyStream(k.block, iv, uint64(n), &ks)
				sealed := aead.Seal(nil, iv, ks.Bytes(), aad)
				if !bytes.Equal(sealed[:n], make([]byte, n)) {
					t.Fatalf("n=%d: the key stream does not encrypt to zeros", n)
				}
				if got := zeroCiphertextTag(k.block, iv, aad, uint64(n)); !bytes.Equal(got, sealed[n:]) {
					t.Fatalf("n=%d aad=%d: tag %x, cipher.NewGCM %x", n, aadLen, got, sealed[n:])
				}
			}
		}
	})
	for _, tc := range []struct {
		id   uint16
		size uint64
	}{
		{0x0478, 64 << 20},
		{0x0178, 8 << 20}, // version 1: its 16-byte message ID in the AAD
	} {
		id, size := tc.id, tc.size
		t.Run(fmt.Sprintf("0x%04X/%d MiB", id, size>>20), func(t *testing.T) {
			fake := newFakeKMS()
			s := mustSuite(t, id)
			empty := writeTestMessage(t, fake, testARN, s, map[string]string{"size": "64 MiB"}, nil, 0)
			p := partsOf(t, empty, 0)
			header := empty[:p.headerEnd]
			dataKey := fake.entries[string(p.header.EncryptedDataKeys[0].Ciphertext)].key
			k, err := deriveKeys(s, dataKey, p.header.MessageID)
			if err != nil {
				t.Fatal(err)
			}
			iv := pattern(ivLen)
			fields := binary.BigEndian.AppendUint64(bytes.Clone(iv), size)
			tag := zeroCiphertextTag(k.block, iv, bodyAADFor(p.header.MessageID, aadSingle, 1, int(size)), size)
			want := sha256.New()
			keyStream(k.block, iv, size, want)

			var got []byte
			var derr error
			alloc, ok := allocatedWithin(1<<20, func() { // 1/64 of 64 MiB
				sum := sha256.New()
				r := io.MultiReader(bytes.NewReader(header), bytes.NewReader(fields), &zeroReader{size}, bytes.NewReader(tag))
				_, derr = Decrypt(t.Context(), fake, r, sum, allowV1)
				got = sum.Sum(nil)
			})
			if derr != nil {
				t.Fatalf("Decrypt: %v", derr)
			}
			if !bytes.Equal(got, want.Sum(nil)) {
				t.Fatal("plaintext differs")
			}
			if !ok {
				t.Fatalf("allocated %d bytes for a %d-byte non-framed message; want at most 1 MiB", alloc, size)
			}
			t.Logf("Decrypt allocated %d bytes for %d bytes of non-framed content", alloc, size)
			// The same stream with its last tag byte flipped fails.
			bad := bytes.Clone(tag)
			bad[15] ^= 1
			r := io.MultiReader(bytes.NewReader(header), bytes.NewReader(fields), &zeroReader{size}, bytes.NewReader(bad))
			if _, err := Decrypt(t.Context(), fake, r, io.Discard, allowV1); !errors.Is(err, ErrAuthentication) {
				t.Fatalf("flipped tag: error %v, want ErrAuthentication", err)
			}
		})
	}
}

// ---------------------------------------------------------------------
// Several keys.

// TestAdditionalKeys proves Encrypt with WithAdditionalKeys writes the
// data key under every key, in order, each with its ARN (the options
// adding up); that Decrypt tries them in order and opens the message with
// the first KMS accepts, naming it in Header.KeyARN, and fails with
// ErrDataKey naming every key when KMS accepts none; and that every
// plaintext data key handed out is zeroed.
func TestAdditionalKeys(t *testing.T) {
	for _, s := range []Suite{SuiteSigned, SuiteUnsigned} {
		for _, tc := range []struct {
			name string
			opts []Option
		}{
			{"one option", []Option{WithAdditionalKeys(suiteARN2, suiteARN3)}},
			{"two options", []Option{WithAdditionalKeys(suiteARN2), WithAdditionalKeys(suiteARN3)}},
		} {
			t.Run(fmt.Sprintf("0x%04X/%s", s.ID, tc.name), func(t *testing.T) {
				fake := newFakeKMS()
				plain := pattern(10_000)
				msg, eh := encryptMsg(t, fake, map[string]string{"a": "b"}, plain, append([]Option{WithSuite(s)}, tc.opts...)...)
				want := []string{testARN, suiteARN2, suiteARN3}
				for _, h := range []Header{eh, partsOf(t, msg, len(plain)).header} {
					var arns []string
					for _, e := range h.EncryptedDataKeys {
						arns = append(arns, e.ProviderInfo)
						if e.ProviderID != ProviderID || len(e.Ciphertext) == 0 {
							t.Errorf("encrypted data key %+v", e)
						}
					}
					if !slices.Equal(arns, want) {
						t.Fatalf("keys %v, want %v", arns, want)
					}
				}
				if eh.KeyARN != testARN {
					t.Errorf("Encrypt's KeyARN %s, want %s", eh.KeyARN, testARN)
				}
				for _, dc := range []struct {
					refuse []string
					arn    string // the key that opens it; "" for none
				}{
					{nil, testARN},
					{[]string{testARN}, suiteARN2},
					{[]string{testARN, suiteARN2}, suiteARN3},
					{[]string{testARN, suiteARN3}, suiteARN2},
					{[]string{testARN, suiteARN2, suiteARN3}, ""},
				} {
					g := &gateKMS{fakeKMS: fake, refuse: map[string]bool{}}
					for _, a := range dc.refuse {
						g.refuse[a] = true
					}
					h, out, err := decryptMsg(t, g, msg)
					if dc.arn == "" {
						if !errors.Is(err, ErrDataKey) || !errors.Is(err, errGate) || len(out) != 0 {
							t.Fatalf("refusing all: error %v after %d bytes, want ErrDataKey", err, len(out))
						}
						for _, a := range want {
							if !strings.Contains(err.Error(), a) {
								t.Errorf("error %q does not name %s", err, a)
							}
						}
						continue
					}
					if err != nil || !bytes.Equal(out, plain) || h.KeyARN != dc.arn {
						t.Fatalf("refusing %v: %v, %d bytes, opened with %s; want %s", dc.refuse, err, len(out), h.KeyARN, dc.arn)
					}
					if wantAsked := want[:slices.Index(want, dc.arn)+1]; !slices.Equal(g.asked, wantAsked) {
						t.Errorf("KMS asked for %v, want %v in order", g.asked, wantAsked)
					}
				}
				if !fake.allZeroed() {
					t.Error("a plaintext data key was not zeroed")
				}
			})
		}
	}
}

// TestAdditionalKeysLimits proves Encrypt writes MaxEncryptedDataKeys keys
// (Decrypt opening the message with the last), refuses one more before
// asking KMS anything or writing a byte, and returns KMS's Encrypt error
// naming the key, with nothing written and the data key zeroed.
func TestAdditionalKeysLimits(t *testing.T) {
	arn := func(i int) string { return fmt.Sprintf("arn:aws:kms:us-east-1:111122223333:key/limit-%d", i) }
	var more []string
	for i := range MaxEncryptedDataKeys {
		more = append(more, arn(i+2))
	}
	plain := pattern(100)

	t.Run("eight keys", func(t *testing.T) {
		fake := newFakeKMS()
		msg, eh := encryptMsg(t, fake, nil, plain, WithAdditionalKeys(more[:MaxEncryptedDataKeys-1]...))
		if len(eh.EncryptedDataKeys) != MaxEncryptedDataKeys {
			t.Fatalf("%d keys, want %d", len(eh.EncryptedDataKeys), MaxEncryptedDataKeys)
		}
		g := &gateKMS{fakeKMS: fake, refuse: map[string]bool{testARN: true}}
		for _, a := range more[:MaxEncryptedDataKeys-2] {
			g.refuse[a] = true
		}
		h, out, err := decryptMsg(t, g, msg)
		if last := more[MaxEncryptedDataKeys-2]; err != nil || !bytes.Equal(out, plain) || h.KeyARN != last {
			t.Fatalf("Decrypt: %v, opened with %s, want %s", err, h.KeyARN, last)
		}
	})
	t.Run("nine keys", func(t *testing.T) {
		fake := newFakeKMS()
		var out bytes.Buffer
		_, err := Encrypt(t.Context(), fake, testARN, nil, bytes.NewReader(plain), &out, WithAdditionalKeys(more...))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(MaxEncryptedDataKeys)) || out.Len() != 0 || len(fake.handed) != 0 {
			t.Fatalf("error %v, %d bytes written, %d data keys asked for; want a refusal first", err, out.Len(), len(fake.handed))
		}
	})
	for _, failing := range []string{suiteARN2, suiteARN3} {
		t.Run("KMS Encrypt fails for "+failing, func(t *testing.T) {
			fake := newFakeKMS()
			g := &gateKMS{fakeKMS: fake, refuseEncrypt: map[string]bool{failing: true}}
			var out bytes.Buffer
			_, err := Encrypt(t.Context(), g, testARN, nil, bytes.NewReader(plain), &out, WithAdditionalKeys(suiteARN2, suiteARN3))
			if !errors.Is(err, errGate) || !strings.Contains(err.Error(), failing) {
				t.Fatalf("error %v, want the KMS error naming %s", err, failing)
			}
			if out.Len() != 0 {
				t.Errorf("wrote %d bytes", out.Len())
			}
			if !fake.allZeroed() {
				t.Error("the data key was not zeroed after the failure")
			}
		})
	}
}

// ---------------------------------------------------------------------
// WithHeaderCheck.

// TestHeaderCheck proves WithHeaderCheck's function is called once, with
// the authenticated header (KeyARN set) that Decrypt returns, before any
// plaintext is written (framed or not, signed or not, version 1 or 2);
// that its error ends Decrypt as it is with nothing written; and that it
// is not called for a header that does not authenticate, a data key that
// does not open, or a suite the policy refuses.
func TestHeaderCheck(t *testing.T) {
	plain := pattern(3*16 + 5)
	type message struct {
		name  string
		write func(t *testing.T, fake *fakeKMS) []byte
	}
	messages := []message{
		{"Encrypt 0x0578", func(t *testing.T, fake *fakeKMS) []byte {
			m, _ := encryptMsg(t, fake, map[string]string{"a": "b"}, plain, WithFrameLength(16), WithAdditionalKeys(suiteARN2))
			return m
		}},
		{"Encrypt 0x0478", func(t *testing.T, fake *fakeKMS) []byte {
			m, _ := encryptMsg(t, fake, map[string]string{"a": "b"}, plain, WithFrameLength(16), WithSuite(SuiteUnsigned), WithAdditionalKeys(suiteARN2))
			return m
		}},
	}
	for _, id := range []uint16{0x0578, 0x0378, 0x0014} {
		for _, frame := range []int{0, 16} {
			messages = append(messages, message{fmt.Sprintf("writeTestMessage 0x%04X frame=%d", id, frame), func(t *testing.T, fake *fakeKMS) []byte {
				return writeTestMessage(t, fake, testARN, mustSuite(t, id), map[string]string{"a": "b"}, plain, frame, suiteARN2)
			}})
		}
	}
	for _, mc := range messages {
		t.Run(mc.name, func(t *testing.T) {
			fake := newFakeKMS()
			msg := mc.write(t, fake)
			p := partsOf(t, msg, len(plain))
			// The first key refused: KeyARN must be the second's.
			kms := &gateKMS{fakeKMS: fake, refuse: map[string]bool{testARN: true}}
			stop := errors.New("caller: not this one")
			for _, tc := range []struct {
				name   string
				msg    []byte
				kms    KMS
				opts   []DecryptOption
				result error // what the check returns
				want   error // what Decrypt returns
				calls  int
			}{
				{"check passes", msg, kms, []DecryptOption{allowV1}, nil, nil, 1},
				{"check fails", msg, kms, []DecryptOption{allowV1}, stop, stop, 1},
				{"check fails with a wrapped error", msg, kms, []DecryptOption{allowV1}, fmt.Errorf("wrapped: %w", stop), stop, 1},
				{"header tag flipped", func() []byte { m := bytes.Clone(msg); m[p.headerEnd-1] ^= 1; return m }(), kms, []DecryptOption{allowV1}, nil, ErrAuthentication, 0},
				{"no data key opens", msg, &gateKMS{fakeKMS: fake, refuse: map[string]bool{testARN: true, suiteARN2: true}}, []DecryptOption{allowV1}, nil, ErrDataKey, 0},
				{"another data key", msg, zeroKeyKMS{fake, p.header.Suite.KeyLen}, []DecryptOption{allowV1}, nil, ErrAuthentication, 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var out bytes.Buffer
					var seen []Header
					writtenBefore := -1
					check := WithHeaderCheck(func(h Header) error {
						seen = append(seen, h)
						writtenBefore = out.Len()
						return tc.result
					})
					h, err := Decrypt(t.Context(), tc.kms, bytes.NewReader(tc.msg), &out, append(tc.opts, check)...)
					if len(seen) != tc.calls {
						t.Fatalf("check called %d times, want %d", len(seen), tc.calls)
					}
					if tc.want == nil {
						if err != nil || !bytes.Equal(out.Bytes(), plain) {
							t.Fatalf("Decrypt: %v, %d bytes", err, out.Len())
						}
					} else {
						if !errors.Is(err, tc.want) {
							t.Fatalf("error %v, want %v", err, tc.want)
						}
						if out.Len() != 0 {
							t.Fatalf("wrote %d bytes", out.Len())
						}
					}
					if tc.calls == 0 {
						return
					}
					if tc.result != nil && err != tc.result {
						t.Errorf("error %v is not the check's own error %v", err, tc.result)
					}
					got := seen[0]
					if writtenBefore != 0 {
						t.Errorf("%d plaintext bytes written before the check", writtenBefore)
					}
					if got.KeyARN != suiteARN2 || got.Suite.ID != p.header.Suite.ID || got.FrameLength != p.header.FrameLength ||
						!maps.Equal(got.EncryptionContext, p.header.EncryptionContext) || !bytes.Equal(got.MessageID, p.header.MessageID) {
						t.Errorf("check saw %+v; want the message's header opened with %s", got, suiteARN2)
					}
					if !reflect.DeepEqual(h, got) {
						t.Errorf("Decrypt returned %+v, the check saw %+v", h, got)
					}
				})
			}
			if s := p.header.Suite; !s.Committing() {
				called := false
				_, out, err := decryptMsg(t, kms, msg, WithHeaderCheck(func(Header) error { called = true; return nil }))
				if !errors.Is(err, ErrUnsupported) || called || len(out) != 0 {
					t.Errorf("default policy: error %v, check called %v, %d bytes", err, called, len(out))
				}
			}
		})
	}
}
