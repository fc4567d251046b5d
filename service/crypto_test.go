package service

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/service/ciphertext"
)

// blobMechs are the two data key mechanisms every success path runs with.
var blobMechs = []string{"aes-gcm", "aes-kw"}

// blobKit wraps a fixture with the helpers the crypto, bad-input and
// signing tests share.
type blobKit struct {
	*fixture
	t *testing.T
}

func newBlobKit(t *testing.T) blobKit { return blobKit{fixture: newFixture(t, ""), t: t} }

// key creates a symmetric key with mechanism mech.
func (k blobKit) key(mech string) string {
	k.t.Helper()
	return k.createKey(k.t, CreateKeyInput{HsmkmsMechanism: mech})
}

// arn is the key ARN of id.
func (k blobKit) arn(id string) string { return "arn:aws:kms:us-east-1:000000000000:key/" + id }

// alias points a new alias/<name> at id and returns its name.
func (k blobKit) alias(name, id string) string {
	k.t.Helper()
	a := "alias/" + name
	if err := k.svc.CreateAlias(admin(k.t), AliasInput{AliasName: a, TargetKeyId: id}); err != nil {
		k.t.Fatalf("CreateAlias(%s): %v", a, err)
	}
	return a
}

// forms returns id as key ID, key ARN, alias and alias ARN; the alias is
// created as alias/<name>.
func (k blobKit) forms(name, id string) []struct{ form, ident string } {
	k.t.Helper()
	a := k.alias(name, id)
	return []struct{ form, ident string }{
		{"id", id},
		{"arn", k.arn(id)},
		{"alias", a},
		{"alias-arn", "arn:aws:kms:us-east-1:000000000000:" + a},
	}
}

// rotate adds a version to id.
func (k blobKit) rotate(id string) {
	k.t.Helper()
	if _, err := k.svc.RotateKeyOnDemand(admin(k.t), KeyIDInput{KeyId: id}); err != nil {
		k.t.Fatalf("RotateKeyOnDemand(%s): %v", id, err)
	}
}

// encrypt seals plain under id with encCtx.
func (k blobKit) encrypt(id string, plain []byte, encCtx map[string]string) []byte {
	k.t.Helper()
	out, err := k.svc.Encrypt(admin(k.t), EncryptInput{KeyId: id, Plaintext: plain, EncryptionContext: encCtx})
	if err != nil {
		k.t.Fatalf("Encrypt(%s, %d bytes): %v", id, len(plain), err)
	}
	return out.CiphertextBlob
}

// dataKey makes an n-byte data key under id and returns plaintext and blob.
func (k blobKit) dataKey(id string, n int) (plain, blob []byte) {
	k.t.Helper()
	out, err := k.svc.GenerateDataKey(admin(k.t), GenerateDataKeyInput{KeyId: id, NumberOfBytes: n})
	if err != nil {
		k.t.Fatalf("GenerateDataKey(%s, %d): %v", id, n, err)
	}
	return out.Plaintext, out.CiphertextBlob
}

// decrypt opens blob with the given KeyId and context, turning a panic
// into a test failure so that one bad case does not hide the others.
func (k blobKit) decrypt(blob []byte, keyID string, encCtx map[string]string) (out DecryptOutput, err error) {
	defer func() {
		if r := recover(); r != nil {
			k.t.Errorf("Decrypt panicked on a %d-byte blob: %v", len(blob), r)
			err = errors.New("panic")
		}
	}()
	return k.svc.Decrypt(admin(k.t), DecryptInput{CiphertextBlob: blob, KeyId: keyID, EncryptionContext: encCtx})
}

// parse parses a blob the service made.
func (k blobKit) parse(blob []byte) ciphertext.Blob {
	k.t.Helper()
	b, err := ciphertext.Parse(blob)
	if err != nil {
		k.t.Fatalf("ciphertext.Parse: %v", err)
	}
	return b
}

// wantErr checks that err is exactly of want's type (nil for success).
func wantErr(t *testing.T, what string, err error, want *Error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: %v, want success", what, err)
	case want != nil && err == nil:
		t.Errorf("%s: success, want %s", what, want.Code)
	case want != nil && (!errors.Is(err, want) || CodeOf(err) != want.Code):
		t.Errorf("%s: %v, want %s", what, err, want.Code)
	}
}

// TestEncryptDecryptRoundTrip encrypts 1 and 4096 bytes under both
// mechanisms with the key named in each of its four forms, and decrypts
// without a KeyId and with the right KeyId in each form.
func TestEncryptDecryptRoundTrip(t *testing.T) {
	k := newBlobKit(t)
	for _, mech := range blobMechs {
		id := k.key(mech)
		forms := k.forms("rt-"+mech, id)
		for _, size := range []int{1, 4096} {
			for _, enc := range forms {
				name := fmt.Sprintf("%s/%d/%s", mech, size, enc.form)
				plain := bytes.Repeat([]byte{byte(size), 0xa5}, size)[:size]
				out, err := k.svc.Encrypt(admin(t), EncryptInput{KeyId: enc.ident, Plaintext: plain})
				if err != nil {
					t.Fatalf("%s: Encrypt: %v", name, err)
				}
				if out.KeyId != k.arn(id) || out.EncryptionAlgorithm != "SYMMETRIC_DEFAULT" {
					t.Errorf("%s: Encrypt = KeyId %q, algorithm %q; want %q, SYMMETRIC_DEFAULT", name, out.KeyId, out.EncryptionAlgorithm, k.arn(id))
				}
				for _, dec := range append([]struct{ form, ident string }{{"none", ""}}, forms...) {
					got, err := k.decrypt(out.CiphertextBlob, dec.ident, nil)
					if err != nil {
						t.Errorf("%s: Decrypt with KeyId %s: %v", name, dec.form, err)
						continue
					}
					if !bytes.Equal(got.Plaintext, plain) || got.KeyId != k.arn(id) || got.KeyMaterialId != "v1" ||
						got.EncryptionAlgorithm != "SYMMETRIC_DEFAULT" {
						t.Errorf("%s: Decrypt with KeyId %s = %d bytes, KeyId %q, material %q, algorithm %q",
							name, dec.form, len(got.Plaintext), got.KeyId, got.KeyMaterialId, got.EncryptionAlgorithm)
					}
				}
			}
		}
	}
}

// TestGenerateDataKeySizes covers KeySpec and NumberOfBytes for both
// mechanisms: aes-gcm takes any size from 1 to 1024, aes-kw only
// multiples of 8 from 16; every key made decrypts from its blob.
func TestGenerateDataKeySizes(t *testing.T) {
	k := newBlobKit(t)
	keys := map[string]string{"aes-gcm": k.key("aes-gcm"), "aes-kw": k.key("aes-kw")}
	tests := []struct {
		mech    string
		spec    string
		n       int
		wantLen int
		want    *Error
	}{
		{"aes-gcm", "AES_128", 0, 16, nil},
		{"aes-gcm", "AES_256", 0, 32, nil},
		{"aes-gcm", "", 1, 1, nil},
		{"aes-gcm", "", 64, 64, nil},
		{"aes-gcm", "", 1024, 1024, nil},
		{"aes-kw", "AES_128", 0, 16, nil},
		{"aes-kw", "AES_256", 0, 32, nil},
		{"aes-kw", "", 16, 16, nil},
		{"aes-kw", "", 24, 24, nil},
		{"aes-kw", "", 32, 32, nil},
		{"aes-kw", "", 1024, 1024, nil},
		{"aes-kw", "", 1, 0, ErrValidation},
		{"aes-kw", "", 20, 0, ErrValidation},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%s/%s/%d", tc.mech, tc.spec, tc.n)
		id := keys[tc.mech]
		out, err := k.svc.GenerateDataKey(admin(t), GenerateDataKeyInput{KeyId: id, KeySpec: tc.spec, NumberOfBytes: tc.n})
		wantErr(t, name, err, tc.want)
		if err != nil {
			continue
		}
		if len(out.Plaintext) != tc.wantLen || out.KeyId != k.arn(id) || out.KeyMaterialId != "v1" {
			t.Errorf("%s: %d bytes, KeyId %q, material %q; want %d bytes of %s v1", name, len(out.Plaintext), out.KeyId, out.KeyMaterialId, tc.wantLen, id)
		}
		if m := k.parse(out.CiphertextBlob).Mechanism.String(); m != tc.mech {
			t.Errorf("%s: blob mechanism %s", name, m)
		}
		dec, err := k.decrypt(out.CiphertextBlob, "", nil)
		if err != nil || !bytes.Equal(dec.Plaintext, out.Plaintext) {
			t.Errorf("%s: Decrypt = %d bytes, %v; want the data key", name, len(dec.Plaintext), err)
		}
	}
}

// TestGenerateDataKeyAESKWContext checks that an aes-kw key refuses a
// non-empty encryption context (it cannot bind one) and accepts an empty
// map, while an aes-gcm key binds the same context.
func TestGenerateDataKeyAESKWContext(t *testing.T) {
	k := newBlobKit(t)
	tests := []struct {
		mech   string
		encCtx map[string]string
		want   *Error
	}{
		{"aes-kw", map[string]string{"purpose": "test"}, ErrValidation},
		{"aes-kw", map[string]string{"": ""}, ErrValidation},
		{"aes-kw", map[string]string{}, nil},
		{"aes-kw", nil, nil},
		{"aes-gcm", map[string]string{"purpose": "test"}, nil},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%s/%v", tc.mech, tc.encCtx)
		for _, action := range []string{"GenerateDataKey", "GenerateDataKeyWithoutPlaintext"} {
			gen := k.svc.GenerateDataKey
			if action == "GenerateDataKeyWithoutPlaintext" {
				gen = k.svc.GenerateDataKeyWithoutPlaintext
			}
			out, err := gen(admin(t), GenerateDataKeyInput{KeyId: k.key(tc.mech), KeySpec: "AES_256", EncryptionContext: tc.encCtx})
			wantErr(t, action+" "+name, err, tc.want)
			if tc.want != nil && err != nil && !strings.Contains(err.Error(), "key wrap, which cannot bind an encryption context") {
				t.Errorf("%s %s: message %q does not say that key wrap cannot bind the context", action, name, err)
			}
			if err == nil {
				if _, err := k.decrypt(out.CiphertextBlob, "", tc.encCtx); err != nil {
					t.Errorf("%s %s: Decrypt: %v", action, name, err)
				}
			}
		}
	}
}

// TestGenerateDataKeyWithoutPlaintext checks that no plaintext comes back
// and that the blob decrypts to a data key of the asked size.
func TestGenerateDataKeyWithoutPlaintext(t *testing.T) {
	k := newBlobKit(t)
	tests := []struct {
		mech    string
		spec    string
		n       int
		wantLen int
	}{
		{"aes-gcm", "AES_256", 0, 32},
		{"aes-gcm", "AES_128", 0, 16},
		{"aes-gcm", "", 7, 7},
		{"aes-kw", "AES_256", 0, 32},
		{"aes-kw", "", 1024, 1024},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%s/%s/%d", tc.mech, tc.spec, tc.n)
		id := k.key(tc.mech)
		out, err := k.svc.GenerateDataKeyWithoutPlaintext(admin(t), GenerateDataKeyInput{KeyId: id, KeySpec: tc.spec, NumberOfBytes: tc.n})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out.Plaintext != nil || out.KeyId != k.arn(id) {
			t.Errorf("%s: Plaintext %d bytes, KeyId %q; want none and %s", name, len(out.Plaintext), out.KeyId, k.arn(id))
		}
		dec, err := k.decrypt(out.CiphertextBlob, id, nil)
		if err != nil || len(dec.Plaintext) != tc.wantLen {
			t.Errorf("%s: Decrypt = %d bytes, %v; want %d", name, len(dec.Plaintext), err, tc.wantLen)
		}
	}
}

// TestReEncrypt moves ciphertexts between keys of both mechanisms and to
// the newest version of the same key after a rotation; the result is bound
// to the destination context only, and the source still decrypts.
func TestReEncrypt(t *testing.T) {
	k := newBlobKit(t)
	srcCtx := map[string]string{"stage": "source"}
	dstCtx := map[string]string{"stage": "destination", "extra": "1"}
	tests := []struct {
		name         string
		srcMech      string
		dstMech      string // "" for the source key itself, after a rotation
		dataKey      bool   // source blob from GenerateDataKey (aes-kw: no context)
		wantVersion  uint32
		wantMaterial string
	}{
		{"gcm-to-gcm", "aes-gcm", "aes-gcm", false, 1, "v1"},
		{"gcm-to-kw", "aes-gcm", "aes-kw", false, 1, "v1"},
		{"kw-to-gcm", "aes-kw", "aes-gcm", false, 1, "v1"},
		{"kw-datakey-to-gcm", "aes-kw", "aes-gcm", true, 1, "v1"},
		{"kw-datakey-to-kw", "aes-kw", "aes-kw", true, 1, "v1"},
		{"gcm-same-key-rotated", "aes-gcm", "", false, 2, "v2"},
		{"kw-same-key-rotated", "aes-kw", "", true, 2, "v2"},
	}
	for _, tc := range tests {
		src := k.key(tc.srcMech)
		sctx := srcCtx
		var plain, blob []byte
		if tc.dataKey {
			sctx = nil
			plain, blob = k.dataKey(src, 32)
		} else {
			plain = []byte("re-encrypt me: " + tc.name)
			blob = k.encrypt(src, plain, sctx)
		}
		dst := src
		if tc.dstMech == "" {
			k.rotate(src)
		} else {
			dst = k.key(tc.dstMech)
		}
		out, err := k.svc.ReEncrypt(admin(t), ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: sctx,
			DestinationKeyId: dst, DestinationEncryptionContext: dstCtx})
		if err != nil {
			t.Errorf("%s: ReEncrypt: %v", tc.name, err)
			continue
		}
		if out.SourceKeyId != k.arn(src) || out.KeyId != k.arn(dst) ||
			out.SourceEncryptionAlgorithm != "SYMMETRIC_DEFAULT" || out.DestinationEncryptionAlgorithm != "SYMMETRIC_DEFAULT" {
			t.Errorf("%s: ReEncrypt = %+v", tc.name, out)
		}
		b := k.parse(out.CiphertextBlob)
		if b.KeyID != uuid.MustParse(dst) || b.Version != tc.wantVersion || b.Mechanism != ciphertext.AESGCM {
			t.Errorf("%s: new blob names %x v%d %s; want %s v%d aes-gcm", tc.name, b.KeyID, b.Version, b.Mechanism, dst, tc.wantVersion)
		}
		dec, err := k.decrypt(out.CiphertextBlob, dst, dstCtx)
		if err != nil || !bytes.Equal(dec.Plaintext, plain) || dec.KeyMaterialId != tc.wantMaterial {
			t.Errorf("%s: Decrypt of the new blob = %q (%s), %v", tc.name, dec.Plaintext, dec.KeyMaterialId, err)
		}
		_, err = k.decrypt(out.CiphertextBlob, "", sctx)
		wantErr(t, tc.name+": new blob with the source context", err, ErrInvalidCipher)
		dec, err = k.decrypt(blob, "", sctx)
		if err != nil || !bytes.Equal(dec.Plaintext, plain) || dec.KeyMaterialId != "v1" {
			t.Errorf("%s: the source blob no longer decrypts: %v", tc.name, err)
		}
	}
}

// TestGenerateRandom asks for 1 and 1024 bytes and refuses 0 and 1025.
func TestGenerateRandom(t *testing.T) {
	k := newBlobKit(t)
	tests := []struct {
		n    int
		want *Error
	}{{1, nil}, {1024, nil}, {0, ErrValidation}, {1025, ErrValidation}, {-1, ErrValidation}}
	var prev []byte
	for _, tc := range tests {
		out, err := k.svc.GenerateRandom(admin(t), GenerateRandomInput{NumberOfBytes: tc.n})
		wantErr(t, fmt.Sprintf("GenerateRandom(%d)", tc.n), err, tc.want)
		if err == nil && len(out.Plaintext) != tc.n {
			t.Errorf("GenerateRandom(%d) = %d bytes", tc.n, len(out.Plaintext))
		}
		if tc.n == 1024 {
			if prev != nil && bytes.Equal(prev, out.Plaintext) {
				t.Error("two GenerateRandom(1024) returned the same bytes")
			}
			prev = out.Plaintext
		}
	}
	again, err := k.svc.GenerateRandom(admin(t), GenerateRandomInput{NumberOfBytes: 1024})
	if err != nil || bytes.Equal(again.Plaintext, prev) {
		t.Errorf("second GenerateRandom(1024): %v, equal to the first: %v", err, bytes.Equal(again.Plaintext, prev))
	}
}

// TestEncryptionContextBinding decrypts ciphertexts bound to a context with
// the same context in any insertion order, and fails with
// InvalidCiphertext for every other context; nil and empty are the same.
func TestEncryptionContextBinding(t *testing.T) {
	k := newBlobKit(t)
	pairs := [][2]string{{"purpose", "backup"}, {"tenant", "Acme"}, {"region", "eu-west-1"}, {"z", ""}}
	build := func(order ...int) map[string]string {
		m := make(map[string]string, len(order))
		for _, i := range order {
			m[pairs[i][0]] = pairs[i][1]
		}
		return m
	}
	with := func(change func(map[string]string)) map[string]string {
		m := build(0, 1, 2, 3)
		change(m)
		return m
	}
	bound := build(0, 1, 2, 3)
	tests := []struct {
		name string
		enc  map[string]string
		dec  map[string]string
		want *Error
	}{
		{"same", bound, build(0, 1, 2, 3), nil},
		{"reordered-1", bound, build(3, 2, 1, 0), nil},
		{"reordered-2", bound, build(2, 0, 3, 1), nil},
		{"reordered-3", bound, build(1, 3, 0, 2), nil},
		{"missing-context", bound, nil, ErrInvalidCipher},
		{"missing-pair", bound, build(0, 1, 2), ErrInvalidCipher},
		{"missing-empty-value-pair", bound, build(0, 1, 3), ErrInvalidCipher},
		{"extra-pair", bound, with(func(m map[string]string) { m["extra"] = "x" }), ErrInvalidCipher},
		{"changed-value", bound, with(func(m map[string]string) { m["tenant"] = "Acme2" }), ErrInvalidCipher},
		{"empty-value-set", bound, with(func(m map[string]string) { m["z"] = " " }), ErrInvalidCipher},
		{"key-case", bound, with(func(m map[string]string) { delete(m, "tenant"); m["Tenant"] = "Acme" }), ErrInvalidCipher},
		{"value-case", bound, with(func(m map[string]string) { m["tenant"] = "acme" }), ErrInvalidCipher},
		{"nil-vs-empty", nil, map[string]string{}, nil},
		{"empty-vs-nil", map[string]string{}, nil, nil},
		{"nil-vs-pair", nil, map[string]string{"a": "b"}, ErrInvalidCipher},
		{"a:bc-vs-ab:c", map[string]string{"a": "bc"}, map[string]string{"ab": "c"}, ErrInvalidCipher},
		{"ab:c-vs-a:bc", map[string]string{"ab": "c"}, map[string]string{"a": "bc"}, ErrInvalidCipher},
		{"two-pairs-vs-one", map[string]string{"a": "", "b": ""}, map[string]string{"a": "b"}, ErrInvalidCipher},
	}
	for _, mech := range blobMechs {
		id := k.key(mech)
		for _, tc := range tests {
			// Encrypt always seals with AES-GCM, for aes-kw keys too.
			blob := k.encrypt(id, []byte("context "+tc.name), maps.Clone(tc.enc))
			dec, err := k.decrypt(blob, "", tc.dec)
			wantErr(t, mech+"/Encrypt/"+tc.name, err, tc.want)
			if err == nil && string(dec.Plaintext) != "context "+tc.name {
				t.Errorf("%s/Encrypt/%s: wrong plaintext %q", mech, tc.name, dec.Plaintext)
			}
			if mech == "aes-kw" {
				continue
			}
			out, err := k.svc.GenerateDataKey(admin(t), GenerateDataKeyInput{KeyId: id, KeySpec: "AES_128", EncryptionContext: tc.enc})
			if err != nil {
				t.Fatalf("%s/GenerateDataKey/%s: %v", mech, tc.name, err)
			}
			dec, err = k.decrypt(out.CiphertextBlob, "", tc.dec)
			wantErr(t, mech+"/GenerateDataKey/"+tc.name, err, tc.want)
			if err == nil && !bytes.Equal(dec.Plaintext, out.Plaintext) {
				t.Errorf("%s/GenerateDataKey/%s: wrong data key", mech, tc.name)
			}
		}
	}
	// An aes-kw data key was made without a context and opens only without one.
	kw := k.key("aes-kw")
	_, blob := k.dataKey(kw, 32)
	for _, tc := range []struct {
		name string
		dec  map[string]string
		want *Error
	}{{"nil", nil, nil}, {"empty", map[string]string{}, nil}, {"pair", map[string]string{"a": "b"}, ErrInvalidCipher}} {
		_, err := k.decrypt(blob, "", tc.dec)
		wantErr(t, "aes-kw/GenerateDataKey/"+tc.name, err, tc.want)
	}
}

// TestBlobLayout compares blob bytes with the design: magic, format,
// mechanism, the key's UUID bytes, the big-endian version, a 12-byte IV
// for aes-gcm, the sealed length; and two seals of one plaintext differ.
func TestBlobLayout(t *testing.T) {
	k := newBlobKit(t)
	plain := []byte("the same plaintext twice")
	tests := []struct {
		name      string
		mech      string
		rotations int
		dataKey   bool
		wantMech  ciphertext.Mechanism
	}{
		{"gcm-encrypt", "aes-gcm", 0, false, ciphertext.AESGCM},
		{"gcm-encrypt-v3", "aes-gcm", 2, false, ciphertext.AESGCM},
		{"gcm-datakey", "aes-gcm", 0, true, ciphertext.AESGCM},
		{"kw-encrypt", "aes-kw", 0, false, ciphertext.AESGCM},
		{"kw-datakey", "aes-kw", 0, true, ciphertext.AESKW},
		{"kw-datakey-v2", "aes-kw", 1, true, ciphertext.AESKW},
	}
	for _, tc := range tests {
		id := k.key(tc.mech)
		for range tc.rotations {
			k.rotate(id)
		}
		wantVersion := uint32(tc.rotations + 1)
		var blobs [2][]byte
		var dataKeys [2][]byte
		for i := range blobs {
			if tc.dataKey {
				dataKeys[i], blobs[i] = k.dataKey(id, 32)
			} else {
				blobs[i] = k.encrypt(id, plain, nil)
			}
		}
		if bytes.Equal(blobs[0], blobs[1]) || (tc.dataKey && bytes.Equal(dataKeys[0], dataKeys[1])) {
			t.Errorf("%s: two seals made the same blob or data key", tc.name)
		}
		uid := uuid.MustParse(id)
		for i, blob := range blobs {
			name := fmt.Sprintf("%s/%d", tc.name, i)
			if len(blob) < ciphertext.HeaderSize {
				t.Fatalf("%s: blob is %d bytes", name, len(blob))
			}
			if string(blob[:2]) != "HK" || blob[2] != 1 || blob[3] != byte(tc.wantMech) {
				t.Errorf("%s: header starts % x", name, blob[:4])
			}
			if !bytes.Equal(blob[4:20], uid[:]) {
				t.Errorf("%s: key ID bytes % x, want % x", name, blob[4:20], uid[:])
			}
			if v := binary.BigEndian.Uint32(blob[20:24]); v != wantVersion {
				t.Errorf("%s: version %d, want %d", name, v, wantVersion)
			}
			b := k.parse(blob)
			payload := len(plain)
			if tc.dataKey {
				payload = 32
			}
			switch tc.wantMech {
			case ciphertext.AESGCM:
				if len(b.IV) != 12 || !bytes.Equal(blob[24:36], b.IV) || len(b.Sealed) != payload+16 || len(blob) != 24+12+payload+16 {
					t.Errorf("%s: IV %d bytes, sealed %d, blob %d; want 12, %d, %d", name, len(b.IV), len(b.Sealed), len(blob), payload+16, 24+12+payload+16)
				}
			case ciphertext.AESKW:
				if len(b.IV) != 0 || len(b.Sealed) != payload+8 || len(blob) != 24+payload+8 {
					t.Errorf("%s: IV %d bytes, wrapped %d, blob %d; want 0, %d, %d", name, len(b.IV), len(b.Sealed), len(blob), payload+8, 24+payload+8)
				}
			}
		}
		if tc.wantMech == ciphertext.AESGCM && bytes.Equal(k.parse(blobs[0]).IV, k.parse(blobs[1]).IV) {
			t.Errorf("%s: two seals used the same IV", tc.name)
		}
	}
}
