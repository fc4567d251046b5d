package service

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/service/ciphertext"
)

// stillWorks checks that after a catalogue of bad input the service still
// encrypts and decrypts under id and the token never needed a recovery.
func (k blobKit) stillWorks(id string) {
	k.t.Helper()
	plain := []byte("still works")
	blob := k.encrypt(id, plain, map[string]string{"after": "bad input"})
	out, err := k.decrypt(blob, id, map[string]string{"after": "bad input"})
	if err != nil || !bytes.Equal(out.Plaintext, plain) {
		k.t.Errorf("after bad input: Decrypt = %q, %v", out.Plaintext, err)
	}
	if h := k.tok.Health(); !h.Ready || h.Recoveries != 0 {
		k.t.Errorf("after bad input: token health %+v, want ready with no recoveries", h)
	}
}

// blobRegion names the part of a blob a byte offset falls in.
func blobRegion(i int) string {
	switch {
	case i < 4:
		return "magic/format/mechanism"
	case i < 20:
		return "key ID"
	case i < 24:
		return "version"
	}
	return "IV/sealed"
}

// TestFlipEveryByte flips bits in every byte of a valid aes-gcm and aes-kw
// blob: each altered blob gives InvalidCiphertext, for the reason its
// region implies, and the token stays healthy.
func TestFlipEveryByte(t *testing.T) {
	k := newBlobKit(t)
	tests := []struct {
		mech    string
		dataKey bool
	}{
		{"aes-gcm", false},
		{"aes-gcm", true},
		{"aes-kw", true},
	}
	// What each region's error message must say.
	why := map[string]string{
		"magic/format/mechanism": "not an hsmkms ciphertext",
		"key ID":                 "names a key that does not exist",
		"version":                "version",
		"IV/sealed":              "invalid",
	}
	for _, tc := range tests {
		id := k.key(tc.mech)
		var blob []byte
		if tc.dataKey {
			_, blob = k.dataKey(id, 32)
		} else {
			blob = k.encrypt(id, []byte("flip every byte of me, please!!"), map[string]string{"flip": "test"})
		}
		var encCtx map[string]string
		if !tc.dataKey {
			encCtx = map[string]string{"flip": "test"}
		}
		if _, err := k.decrypt(blob, "", encCtx); err != nil {
			t.Fatalf("%s: the unaltered blob: %v", tc.mech, err)
		}
		for i := range blob {
			for _, mask := range []byte{0x01, 0x02, 0x80, 0xff} {
				bad := bytes.Clone(blob)
				bad[i] ^= mask
				name := fmt.Sprintf("%s datakey=%v: byte %d (%s) ^ %#02x", tc.mech, tc.dataKey, i, blobRegion(i), mask)
				_, err := k.decrypt(bad, "", encCtx)
				wantErr(t, name, err, ErrInvalidCipher)
				if err != nil && !strings.Contains(err.Error(), why[blobRegion(i)]) {
					t.Errorf("%s: message %q does not say %q", name, err, why[blobRegion(i)])
				}
			}
		}
		k.stillWorks(id)
	}
}

// TestFlipVersionToExisting rewrites a blob's version to another version
// the key really has: the header is bound (aes-gcm) or the wrap fails its
// integrity check (aes-kw), so it gives InvalidCiphertext.
func TestFlipVersionToExisting(t *testing.T) {
	k := newBlobKit(t)
	tests := []struct {
		name    string
		mech    string
		dataKey bool
		from    uint32
		to      uint32
	}{
		{"gcm-encrypt-v2-as-v1", "aes-gcm", false, 2, 1},
		{"gcm-encrypt-v1-as-v2", "aes-gcm", false, 1, 2},
		{"gcm-datakey-v2-as-v1", "aes-gcm", true, 2, 1},
		{"kw-encrypt-v2-as-v1", "aes-kw", false, 2, 1},
		{"kw-datakey-v2-as-v1", "aes-kw", true, 2, 1},
		{"kw-datakey-v1-as-v2", "aes-kw", true, 1, 2},
	}
	for _, tc := range tests {
		id := k.key(tc.mech)
		seal := func() []byte {
			if tc.dataKey {
				_, b := k.dataKey(id, 32)
				return b
			}
			return k.encrypt(id, []byte(tc.name), nil)
		}
		var blob []byte
		if tc.from == 1 {
			blob = seal()
			k.rotate(id)
		} else {
			k.rotate(id)
			blob = seal()
		}
		if v := binary.BigEndian.Uint32(blob[20:24]); v != tc.from {
			t.Fatalf("%s: blob has version %d, want %d", tc.name, v, tc.from)
		}
		if _, err := k.decrypt(blob, "", nil); err != nil {
			t.Fatalf("%s: the unaltered blob: %v", tc.name, err)
		}
		bad := bytes.Clone(blob)
		binary.BigEndian.PutUint32(bad[20:24], tc.to)
		_, err := k.decrypt(bad, "", nil)
		wantErr(t, tc.name, err, ErrInvalidCipher)
		_, err = k.decrypt(bad, id, nil)
		wantErr(t, tc.name+" with KeyId", err, ErrInvalidCipher)
		k.stillWorks(id)
	}
}

// TestTruncateBlob cuts a valid blob to every shorter length (0 is a
// validation error, the rest InvalidCiphertext), appends bytes, and sends
// blobs at and over the 6144-byte limit.
func TestTruncateBlob(t *testing.T) {
	k := newBlobKit(t)
	tests := []struct {
		mech    string
		dataKey bool
	}{
		{"aes-gcm", false},
		{"aes-gcm", true},
		{"aes-kw", true},
	}
	for _, tc := range tests {
		id := k.key(tc.mech)
		var blob []byte
		if tc.dataKey {
			_, blob = k.dataKey(id, 32)
		} else {
			blob = k.encrypt(id, []byte("truncate me"), nil)
		}
		prefix := fmt.Sprintf("%s datakey=%v", tc.mech, tc.dataKey)
		for n := range len(blob) {
			want := ErrInvalidCipher
			if n == 0 {
				want = ErrValidation
			}
			_, err := k.decrypt(blob[:n:n], "", nil)
			wantErr(t, fmt.Sprintf("%s: %d of %d bytes", prefix, n, len(blob)), err, want)
		}
		cases := []struct {
			name string
			blob []byte
			want *Error
		}{
			{"nil", nil, ErrValidation},
			{"append 1", append(bytes.Clone(blob), 0), ErrInvalidCipher},
			{"append 8", append(bytes.Clone(blob), make([]byte, 8)...), ErrInvalidCipher},
			{"append 100", append(bytes.Clone(blob), bytes.Repeat([]byte{0x5a}, 100)...), ErrInvalidCipher},
			{"6144 bytes", append(bytes.Clone(blob), make([]byte, ciphertext.MaxBlob-len(blob))...), ErrInvalidCipher},
			{"6145 bytes", append(bytes.Clone(blob), make([]byte, ciphertext.MaxBlob+1-len(blob))...), ErrValidation},
			{"1 MiB", append(bytes.Clone(blob), make([]byte, 1<<20)...), ErrValidation},
		}
		for _, c := range cases {
			_, err := k.decrypt(c.blob, "", nil)
			wantErr(t, prefix+": "+c.name, err, c.want)
		}
		k.stillWorks(id)
	}
}

// TestDecryptWrongKeyId sends a blob of key A with a KeyId naming key B
// (IncorrectKey) or nothing at all (NotFound).
func TestDecryptWrongKeyId(t *testing.T) {
	k := newBlobKit(t)
	a, b := k.key("aes-gcm"), k.key("aes-kw")
	aliasB := k.alias("wrong-key-b", b)
	blobA := k.encrypt(a, []byte("A's secret"), nil)
	_, dataKeyA := k.dataKey(a, 16)
	tests := []struct {
		name  string
		keyID string
		want  *Error
	}{
		{"B's ID", b, ErrIncorrectKey},
		{"B's ARN", k.arn(b), ErrIncorrectKey},
		{"B's alias", aliasB, ErrIncorrectKey},
		{"B's alias ARN", "arn:aws:kms:us-east-1:000000000000:" + aliasB, ErrIncorrectKey},
		{"unknown key ID", uuid.NewString(), ErrNotFound},
		{"unknown key ARN", k.arn(uuid.NewString()), ErrNotFound},
		{"unknown alias", "alias/no-such-alias", ErrNotFound},
		{"not a key ID", "not-a-key", ErrNotFound},
		{"A's ID, upper case", strings.ToUpper(a), nil},
	}
	for _, tc := range tests {
		for i, blob := range [][]byte{blobA, dataKeyA} {
			_, err := k.decrypt(blob, tc.keyID, nil)
			wantErr(t, fmt.Sprintf("%s (blob %d)", tc.name, i), err, tc.want)
		}
	}
	k.stillWorks(a)
}

// TestDecryptKeyState decrypts blobs of a key that is disabled
// (Disabled) or pending deletion (KMSInvalidState), and again once the key
// is enabled.
func TestDecryptKeyState(t *testing.T) {
	k := newBlobKit(t)
	tests := []struct {
		name  string
		mech  string
		apply func(id string) error
		undo  func(id string) error
		want  *Error
	}{
		{"disabled", "aes-gcm",
			func(id string) error { return k.svc.DisableKey(admin(t), KeyIDInput{KeyId: id}) },
			func(id string) error { return k.svc.EnableKey(admin(t), KeyIDInput{KeyId: id}) },
			ErrDisabled},
		{"disabled", "aes-kw",
			func(id string) error { return k.svc.DisableKey(admin(t), KeyIDInput{KeyId: id}) },
			func(id string) error { return k.svc.EnableKey(admin(t), KeyIDInput{KeyId: id}) },
			ErrDisabled},
		{"pending deletion", "aes-gcm",
			func(id string) error {
				_, err := k.svc.ScheduleKeyDeletion(admin(t), ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: 7})
				return err
			},
			func(id string) error {
				if _, err := k.svc.CancelKeyDeletion(admin(t), KeyIDInput{KeyId: id}); err != nil {
					return err
				}
				return k.svc.EnableKey(admin(t), KeyIDInput{KeyId: id})
			},
			ErrInvalidState},
		{"pending deletion", "aes-kw",
			func(id string) error {
				_, err := k.svc.ScheduleKeyDeletion(admin(t), ScheduleKeyDeletionInput{KeyId: id})
				return err
			},
			func(id string) error {
				if _, err := k.svc.CancelKeyDeletion(admin(t), KeyIDInput{KeyId: id}); err != nil {
					return err
				}
				return k.svc.EnableKey(admin(t), KeyIDInput{KeyId: id})
			},
			ErrInvalidState},
	}
	for _, tc := range tests {
		name := tc.name + "/" + tc.mech
		id := k.key(tc.mech)
		blob := k.encrypt(id, []byte(name), nil)
		_, dk := k.dataKey(id, 32)
		if err := tc.apply(id); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, b := range [][]byte{blob, dk} {
			_, err := k.decrypt(b, "", nil)
			wantErr(t, fmt.Sprintf("%s: Decrypt blob %d", name, i), err, tc.want)
			_, err = k.decrypt(b, id, nil)
			wantErr(t, fmt.Sprintf("%s: Decrypt blob %d with KeyId", name, i), err, tc.want)
		}
		_, err := k.svc.Encrypt(admin(t), EncryptInput{KeyId: id, Plaintext: []byte("x")})
		wantErr(t, name+": Encrypt", err, tc.want)
		if err := tc.undo(id); err != nil {
			t.Fatalf("%s: undo: %v", name, err)
		}
		for i, b := range [][]byte{blob, dk} {
			_, err := k.decrypt(b, "", nil)
			wantErr(t, fmt.Sprintf("%s: Decrypt blob %d after undo", name, i), err, nil)
		}
		k.stillWorks(id)
	}
}

// TestBadRequests is the catalogue of malformed Encrypt, Decrypt and
// GenerateDataKey requests, each a ValidationException, beside the
// boundary values that still work.
func TestBadRequests(t *testing.T) {
	k := newBlobKit(t)
	gcm, kw := k.key("aes-gcm"), k.key("aes-kw")
	blob := k.encrypt(gcm, []byte("bad requests"), nil)
	_, kwBlob := k.dataKey(kw, 32)
	ctxOfSize := func(n int) map[string]string { return map[string]string{"k": strings.Repeat("v", n-1)} }
	enc := func(in EncryptInput) func() error {
		return func() error { _, err := k.svc.Encrypt(admin(t), in); return err }
	}
	dec := func(in DecryptInput) func() error {
		return func() error { _, err := k.svc.Decrypt(admin(t), in); return err }
	}
	gdk := func(in GenerateDataKeyInput) func() error {
		return func() error {
			_, err := k.svc.GenerateDataKey(admin(t), in)
			_, err2 := k.svc.GenerateDataKeyWithoutPlaintext(admin(t), in)
			if CodeOf(err) != CodeOf(err2) {
				return fmt.Errorf("GenerateDataKey: %v but WithoutPlaintext: %v", err, err2)
			}
			return err
		}
	}
	tests := []struct {
		name string
		call func() error
		want *Error
	}{
		{"Encrypt 4097 bytes", enc(EncryptInput{KeyId: gcm, Plaintext: make([]byte, 4097)}), ErrValidation},
		{"Encrypt 4096 bytes", enc(EncryptInput{KeyId: gcm, Plaintext: make([]byte, 4096)}), nil},
		{"Encrypt empty", enc(EncryptInput{KeyId: gcm, Plaintext: []byte{}}), ErrValidation},
		{"Encrypt nil", enc(EncryptInput{KeyId: gcm}), ErrValidation},
		{"Encrypt aes-kw empty", enc(EncryptInput{KeyId: kw}), ErrValidation},
		{"Encrypt no KeyId", enc(EncryptInput{Plaintext: []byte("x")}), ErrValidation},
		{"Encrypt context 8193 bytes", enc(EncryptInput{KeyId: gcm, Plaintext: []byte("x"), EncryptionContext: ctxOfSize(8193)}), ErrValidation},
		{"Encrypt context 8192 bytes", enc(EncryptInput{KeyId: gcm, Plaintext: []byte("x"), EncryptionContext: ctxOfSize(8192)}), nil},
		{"Encrypt aes-kw context 8193 bytes", enc(EncryptInput{KeyId: kw, Plaintext: []byte("x"), EncryptionContext: ctxOfSize(8193)}), ErrValidation},
		{"Encrypt empty context key", enc(EncryptInput{KeyId: gcm, Plaintext: []byte("x"), EncryptionContext: map[string]string{"": "v"}}), ErrValidation},
		{"Encrypt RSAES_OAEP_SHA_256 with a symmetric key", enc(EncryptInput{KeyId: gcm, Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrInvalidKeyUsage},
		{"Encrypt with an unknown algorithm", enc(EncryptInput{KeyId: gcm, Plaintext: []byte("x"), EncryptionAlgorithm: "AES_GCM"}), ErrValidation},
		{"Encrypt SYMMETRIC_DEFAULT", enc(EncryptInput{KeyId: gcm, Plaintext: []byte("x"), EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}), nil},
		{"Decrypt context 8193 bytes", dec(DecryptInput{CiphertextBlob: blob, EncryptionContext: ctxOfSize(8193)}), ErrValidation},
		{"Decrypt empty context key", dec(DecryptInput{CiphertextBlob: blob, EncryptionContext: map[string]string{"": "v"}}), ErrValidation},
		// A bad context is a bad request whatever the blob: an aes-kw blob
		// binds no context, and a wrong KeyId is not looked at first.
		{"Decrypt aes-kw blob, context 8193 bytes", dec(DecryptInput{CiphertextBlob: kwBlob, EncryptionContext: ctxOfSize(8193)}), ErrValidation},
		{"Decrypt aes-kw blob, empty context key", dec(DecryptInput{CiphertextBlob: kwBlob, EncryptionContext: map[string]string{"": "v"}}), ErrValidation},
		{"Decrypt wrong KeyId, empty context key", dec(DecryptInput{CiphertextBlob: blob, KeyId: kw, EncryptionContext: map[string]string{"": "v"}}), ErrValidation},
		{"ReEncrypt aes-kw blob, empty source context key", func() error {
			_, err := k.svc.ReEncrypt(admin(t), ReEncryptInput{CiphertextBlob: kwBlob, DestinationKeyId: gcm, SourceEncryptionContext: map[string]string{"": "v"}})
			return err
		}, ErrValidation},
		{"Decrypt RSAES_OAEP_SHA_256", dec(DecryptInput{CiphertextBlob: blob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrValidation},
		{"ReEncrypt RSAES_OAEP_SHA_256 to a symmetric key", func() error {
			_, err := k.svc.ReEncrypt(admin(t), ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: gcm, DestinationEncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			return err
		}, ErrInvalidKeyUsage},
		{"ReEncrypt bad destination context", func() error {
			_, err := k.svc.ReEncrypt(admin(t), ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: gcm, DestinationEncryptionContext: map[string]string{"": "v"}})
			return err
		}, ErrValidation},
		{"GenerateDataKey KeySpec and NumberOfBytes", gdk(GenerateDataKeyInput{KeyId: gcm, KeySpec: "AES_256", NumberOfBytes: 32}), ErrValidation},
		{"GenerateDataKey neither", gdk(GenerateDataKeyInput{KeyId: gcm}), ErrValidation},
		{"GenerateDataKey AES_512", gdk(GenerateDataKeyInput{KeyId: gcm, KeySpec: "AES_512"}), ErrValidation},
		{"GenerateDataKey aes_256", gdk(GenerateDataKeyInput{KeyId: gcm, KeySpec: "aes_256"}), ErrValidation},
		{"GenerateDataKey 1025 bytes", gdk(GenerateDataKeyInput{KeyId: gcm, NumberOfBytes: 1025}), ErrValidation},
		{"GenerateDataKey -1 bytes", gdk(GenerateDataKeyInput{KeyId: gcm, NumberOfBytes: -1}), ErrValidation},
		{"GenerateDataKey aes-kw neither", gdk(GenerateDataKeyInput{KeyId: kw}), ErrValidation},
		{"GenerateDataKey aes-kw AES_512", gdk(GenerateDataKeyInput{KeyId: kw, KeySpec: "AES_512"}), ErrValidation},
		{"GenerateDataKey aes-kw 1032 bytes", gdk(GenerateDataKeyInput{KeyId: kw, NumberOfBytes: 1032}), ErrValidation},
		{"GenerateDataKey context 8193 bytes", gdk(GenerateDataKeyInput{KeyId: gcm, KeySpec: "AES_256", EncryptionContext: ctxOfSize(8193)}), ErrValidation},
		{"GenerateDataKey empty context key", gdk(GenerateDataKeyInput{KeyId: gcm, KeySpec: "AES_256", EncryptionContext: map[string]string{"": ""}}), ErrValidation},
	}
	for _, tc := range tests {
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic: %v", tc.name, r)
				}
			}()
			err = tc.call()
		}()
		wantErr(t, tc.name, err, tc.want)
	}
	k.stillWorks(gcm)
	k.stillWorks(kw)
}

// TestBlobMechanismSwap re-marshals an aes-gcm blob as aes-kw and an aes-kw
// blob as aes-gcm, with well-formed lengths: both give InvalidCiphertext.
func TestBlobMechanismSwap(t *testing.T) {
	k := newBlobKit(t)
	gcm, kw := k.key("aes-gcm"), k.key("aes-kw")
	// 32 bytes seal to 48: a length aes-kw's parser accepts.
	gcmBlob := k.parse(k.encrypt(gcm, make([]byte, 32), nil))
	gcmBlobOfKW := k.parse(k.encrypt(kw, make([]byte, 32), nil))
	_, dk := k.dataKey(gcm, 32)
	gcmDataKey := k.parse(dk)
	_, dk = k.dataKey(kw, 32)
	kwDataKey := k.parse(dk)
	asKW := func(b ciphertext.Blob) ciphertext.Blob {
		return ciphertext.Blob{Mechanism: ciphertext.AESKW, KeyID: b.KeyID, Version: b.Version, Sealed: b.Sealed}
	}
	asGCM := func(b ciphertext.Blob, iv []byte, sealed []byte) ciphertext.Blob {
		return ciphertext.Blob{Mechanism: ciphertext.AESGCM, KeyID: b.KeyID, Version: b.Version, IV: iv, Sealed: sealed}
	}
	tests := []struct {
		name string
		blob ciphertext.Blob
	}{
		{"aes-gcm key's Encrypt blob as aes-kw", asKW(gcmBlob)},
		{"aes-gcm key's data key blob as aes-kw", asKW(gcmDataKey)},
		{"aes-kw key's Encrypt blob as aes-kw", asKW(gcmBlobOfKW)},
		{"aes-kw data key blob as aes-gcm, IV from the wrap", asGCM(kwDataKey, kwDataKey.Sealed[:12], kwDataKey.Sealed[12:])},
		{"aes-kw data key blob as aes-gcm, zero IV", asGCM(kwDataKey, make([]byte, 12), kwDataKey.Sealed)},
	}
	for _, tc := range tests {
		data, err := tc.blob.Marshal()
		if err != nil {
			t.Fatalf("%s: Marshal: %v", tc.name, err)
		}
		for _, keyID := range []string{"", uuid.UUID(tc.blob.KeyID).String()} {
			_, err := k.decrypt(data, keyID, nil)
			wantErr(t, fmt.Sprintf("%s (KeyId %q)", tc.name, keyID), err, ErrInvalidCipher)
		}
	}
	k.stillWorks(gcm)
	k.stillWorks(kw)
}

// TestBadKeyUsage uses a SIGN_VERIFY key for encryption and a symmetric
// key for signing: InvalidKeyUsage each time.
func TestBadKeyUsage(t *testing.T) {
	k := newBlobKit(t)
	sym := k.key("aes-gcm")
	signer := k.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"})
	blob := k.encrypt(sym, []byte("usage"), nil)
	// A well-formed blob whose header names the signing key.
	forged := k.parse(blob)
	forged.KeyID = uuid.MustParse(signer)
	forgedBlob, err := forged.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	tests := []struct {
		name string
		call func() error
	}{
		{"Encrypt with a signing key", func() error {
			_, err := k.svc.Encrypt(admin(t), EncryptInput{KeyId: signer, Plaintext: []byte("x")})
			return err
		}},
		{"GenerateDataKey with a signing key", func() error {
			_, err := k.svc.GenerateDataKey(admin(t), GenerateDataKeyInput{KeyId: signer, KeySpec: "AES_256"})
			return err
		}},
		{"Decrypt of a blob naming a signing key", func() error {
			_, err := k.svc.Decrypt(admin(t), DecryptInput{CiphertextBlob: forgedBlob})
			return err
		}},
		{"ReEncrypt to a signing key", func() error {
			_, err := k.svc.ReEncrypt(admin(t), ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: signer})
			return err
		}},
		{"Sign with a symmetric key", func() error {
			_, err := k.svc.Sign(admin(t), SignInput{KeyId: sym, Message: digest, MessageType: "DIGEST", SigningAlgorithm: "ECDSA_SHA_256"})
			return err
		}},
		{"Verify with a symmetric key", func() error {
			_, err := k.svc.Verify(admin(t), VerifyInput{KeyId: sym, Message: digest, MessageType: "DIGEST", SigningAlgorithm: "ECDSA_SHA_256", Signature: []byte{1}})
			return err
		}},
	}
	for _, tc := range tests {
		wantErr(t, tc.name, tc.call(), ErrInvalidKeyUsage)
	}
	k.stillWorks(sym)
}

// TestLengthsInCharacters holds Description, TagKey, TagValue, KeyId and
// AliasName to AWS's limits counted in characters, not bytes: a value at
// the limit in multi-byte characters is accepted, one character more is a
// ValidationException with AWS's words. (Found by review: the limits were
// counted in bytes.)
func TestLengthsInCharacters(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	desc := func(n int) string { return strings.Repeat("é", n) } // 2 bytes each
	key := func(n int) string { return strings.Repeat("鍵", n) }  // 3 bytes each
	val := func(n int) string { return strings.Repeat("😀", n) }  // 4 bytes each
	create := func(in CreateKeyInput) func() error {
		return func() error { _, err := f.svc.CreateKey(ctx, in); return err }
	}
	tag := func(tags ...Tag) func() error {
		return func() error { return f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: tags}) }
	}
	describe := func(ident string) func() error {
		return func() error { _, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: ident}); return err }
	}
	for _, tc := range []struct {
		name string
		call func() error
		want *Error
		msg  string
	}{
		{"CreateKey Description of 8192 characters", create(CreateKeyInput{Description: desc(8192)}), nil, ""},
		{"CreateKey Description of 8193 characters", create(CreateKeyInput{Description: desc(8193)}), ErrValidation, lengthMsg("description", 8192)},
		{"UpdateKeyDescription of 8192 characters", func() error {
			return f.svc.UpdateKeyDescription(ctx, UpdateKeyDescriptionInput{KeyId: id, Description: desc(8192)})
		}, nil, ""},
		{"UpdateKeyDescription of 8193 characters", func() error {
			return f.svc.UpdateKeyDescription(ctx, UpdateKeyDescriptionInput{KeyId: id, Description: desc(8193)})
		}, ErrValidation, lengthMsg("description", 8192)},
		{"UpdateKeyDescription of 8193 ASCII", func() error {
			return f.svc.UpdateKeyDescription(ctx, UpdateKeyDescriptionInput{KeyId: id, Description: strings.Repeat("d", 8193)})
		}, ErrValidation, lengthMsg("description", 8192)},
		{"CreateKey tags at their limits", create(CreateKeyInput{Tags: []Tag{{TagKey: key(128), TagValue: val(256)}}}), nil, ""},
		{"CreateKey TagKey of 129 characters", create(CreateKeyInput{Tags: []Tag{{TagKey: key(129), TagValue: "v"}}}), ErrValidation, lengthMsg("tags.1.member.tagKey", 128)},
		{"CreateKey TagValue of 257 characters", create(CreateKeyInput{Tags: []Tag{{TagKey: "k", TagValue: val(257)}}}), ErrValidation, lengthMsg("tags.1.member.tagValue", 256)},
		{"TagResource tags at their limits", tag(Tag{TagKey: key(128), TagValue: val(256)}), nil, ""},
		{"TagResource TagKey of 129 characters", tag(Tag{TagKey: "a"}, Tag{TagKey: "b"}, Tag{TagKey: key(129)}), ErrValidation, lengthMsg("tags.3.member.tagKey", 128)},
		{"TagResource TagValue of 257 characters", tag(Tag{TagKey: "k", TagValue: val(257)}), ErrValidation, lengthMsg("tags.1.member.tagValue", 256)},
		{"KeyId of 2048 characters", describe(val(2048)), ErrNotFound, ""},
		{"KeyId of 2049 characters", describe(val(2049)), ErrValidation, lengthMsg("keyId", 2048)},
		{"AliasName of 256 characters", func() error {
			return f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/" + strings.Repeat("a", 250), TargetKeyId: id})
		}, nil, ""},
		{"AliasName of 257 characters", func() error {
			return f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/" + strings.Repeat("a", 251), TargetKeyId: id})
		}, ErrValidation, lengthMsg("aliasName", 256)},
	} {
		ksWantErr(t, tc.name, tc.call(), tc.want, tc.msg)
	}
	k := ksStoreKey(t, f, id)
	if k.Description != desc(8192) || k.Tags[key(128)] != val(256) || len(k.Tags) != 1 {
		t.Errorf("key after the refused requests: description of %d bytes, tags %d", len(k.Description), len(k.Tags))
	}
}
