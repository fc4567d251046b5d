package service

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"hash"
	"slices"
	"testing"
)

var oaepHashes = []struct {
	alg     string
	newHash func() hash.Hash
	hLen    int
}{
	{"RSAES_OAEP_SHA_1", sha1.New, 20},
	{"RSAES_OAEP_SHA_256", sha256.New, 32},
}

// TestRSAEncryptionKeys proves, for RSA_2048 and RSA_3072, that an
// ENCRYPT_DECRYPT key pair (the default usage for RSA, as in AWS KMS)
// shows its encryption algorithms, that what Encrypt makes Decrypt opens
// with the same algorithm and the key named, that a ciphertext made
// offline with the public key GetPublicKey returns decrypts, that the
// plaintext limit is AWS's (k - 2·hLen - 2) to the byte, and that
// ReEncrypt moves data between RSA and symmetric keys both ways.
func TestRSAEncryptionKeys(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	sym := f.createKey(t, CreateKeyInput{})
	for _, spec := range []struct {
		name string
		k    int
	}{{"RSA_2048", 256}, {"RSA_3072", 384}} {
		t.Run(spec.name, func(t *testing.T) {
			id := f.createKey(t, CreateKeyInput{KeySpec: spec.name})
			d, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: id})
			ksMust(t, "DescribeKey", err)
			if m := d.KeyMetadata; m.KeyUsage != UsageEncrypt || !slices.Equal(m.EncryptionAlgorithms, []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}) ||
				m.SigningAlgorithms != nil || m.MacAlgorithms != nil {
				t.Fatalf("DescribeKey: %+v", m)
			}
			pk, err := f.svc.GetPublicKey(ctx, KeyIDInput{KeyId: id})
			ksMust(t, "GetPublicKey", err)
			if pk.KeyUsage != UsageEncrypt || !slices.Equal(pk.EncryptionAlgorithms, d.KeyMetadata.EncryptionAlgorithms) || pk.SigningAlgorithms != nil {
				t.Fatalf("GetPublicKey: %+v", pk)
			}
			parsed, err := x509.ParsePKIXPublicKey(pk.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			pub := parsed.(*rsa.PublicKey)
			if pub.Size() != spec.k {
				t.Fatalf("public key of %d bytes, want %d", pub.Size(), spec.k)
			}
			for _, h := range oaepHashes {
				max := spec.k - 2*h.hLen - 2
				for _, n := range []int{1, max} {
					pt := bytes.Repeat([]byte{byte(n)}, n)
					enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: pt, EncryptionAlgorithm: h.alg})
					ksMust(t, "Encrypt", err)
					if len(enc.CiphertextBlob) != spec.k || enc.EncryptionAlgorithm != h.alg || enc.KeyId != ksARN(id) {
						t.Fatalf("Encrypt: %d-byte ciphertext, %+v", len(enc.CiphertextBlob), enc.EncryptionAlgorithm)
					}
					dec, err := f.svc.Decrypt(ctx, DecryptInput{KeyId: id, CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: h.alg})
					ksMust(t, "Decrypt", err)
					if !bytes.Equal(dec.Plaintext, pt) || dec.EncryptionAlgorithm != h.alg || dec.KeyId != ksARN(id) {
						t.Fatalf("Decrypt: %+v", dec)
					}
					offline, err := rsa.EncryptOAEP(h.newHash(), rand.Reader, pub, pt, nil)
					if err != nil {
						t.Fatal(err)
					}
					dec, err = f.svc.Decrypt(ctx, DecryptInput{KeyId: id, CiphertextBlob: offline, EncryptionAlgorithm: h.alg})
					ksMust(t, "Decrypt of an offline ciphertext", err)
					if !bytes.Equal(dec.Plaintext, pt) {
						t.Fatal("an offline ciphertext decrypts to another plaintext")
					}
				}
				_, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: make([]byte, max+1), EncryptionAlgorithm: h.alg})
				ksWantErr(t, "Encrypt of max+1 bytes", err, ErrValidation, "")

				// ReEncrypt: RSA → symmetric → RSA.
				enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte("moving"), EncryptionAlgorithm: h.alg})
				ksMust(t, "Encrypt", err)
				toSym, err := f.svc.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceKeyId: id, SourceEncryptionAlgorithm: h.alg, DestinationKeyId: sym})
				ksMust(t, "ReEncrypt to a symmetric key", err)
				if toSym.SourceEncryptionAlgorithm != h.alg || toSym.DestinationEncryptionAlgorithm != symmetricAlg || toSym.SourceKeyId != ksARN(id) {
					t.Fatalf("ReEncrypt: %+v", toSym)
				}
				back, err := f.svc.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: toSym.CiphertextBlob, DestinationKeyId: id, DestinationEncryptionAlgorithm: h.alg})
				ksMust(t, "ReEncrypt to the RSA key", err)
				dec, err := f.svc.Decrypt(ctx, DecryptInput{KeyId: id, CiphertextBlob: back.CiphertextBlob, EncryptionAlgorithm: h.alg})
				ksMust(t, "Decrypt", err)
				if string(dec.Plaintext) != "moving" || back.DestinationEncryptionAlgorithm != h.alg {
					t.Fatalf("after two ReEncrypts: %q, %+v", dec.Plaintext, back)
				}
			}
		})
	}
}

// TestRSAEncryptionBadRequests: the wrong algorithm for the key, a missing
// KeyId, an encryption context, a ciphertext of another algorithm, length
// or key, and data keys under an RSA key get their exact AWS errors.
func TestRSAEncryptionBadRequests(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "ENCRYPT_DECRYPT"})
	other := f.createKey(t, CreateKeyInput{KeySpec: "RSA_2048"})
	signer := f.createKey(t, CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"})
	sym := f.createKey(t, CreateKeyInput{})
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte("p"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	ksMust(t, "Encrypt", err)
	ct := enc.CiphertextBlob
	symBlob := ksEncrypt(t, f, sym, "s")
	flipped := bytes.Clone(ct)
	flipped[100] ^= 1
	decrypt := func(in DecryptInput) func() error {
		return func() error { _, err := f.svc.Decrypt(ctx, in); return err }
	}
	encrypt := func(in EncryptInput) func() error {
		return func() error { _, err := f.svc.Encrypt(ctx, in); return err }
	}
	tests := []struct {
		name string
		call func() error
		want *Error
		msg  string
	}{
		{"Encrypt without an algorithm", encrypt(EncryptInput{KeyId: id, Plaintext: []byte("p")}), ErrInvalidKeyUsage,
			"Algorithm SYMMETRIC_DEFAULT is incompatible with key spec RSA_2048."},
		{"Encrypt with an unknown algorithm", encrypt(EncryptInput{KeyId: id, Plaintext: []byte("p"), EncryptionAlgorithm: "RSAES_PKCS1_V1_5"}), ErrValidation, ""},
		{"Encrypt with SM2PKE", encrypt(EncryptInput{KeyId: id, Plaintext: []byte("p"), EncryptionAlgorithm: "SM2PKE"}), ErrInvalidKeyUsage,
			"Algorithm SM2PKE is incompatible with key spec RSA_2048."},
		{"Encrypt with a context", encrypt(EncryptInput{KeyId: id, Plaintext: []byte("p"), EncryptionAlgorithm: "RSAES_OAEP_SHA_1", EncryptionContext: map[string]string{"a": "b"}}), ErrValidation,
			"EncryptionContext is not supported with asymmetric KMS keys"},
		{"Encrypt 191 bytes with SHA-256", encrypt(EncryptInput{KeyId: id, Plaintext: make([]byte, 191), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrValidation,
			"Plaintext is 191 bytes; RSA_2048 with RSAES_OAEP_SHA_256 encrypts at most 190"},
		{"Encrypt with a signing key", encrypt(EncryptInput{KeyId: signer, Plaintext: []byte("p"), EncryptionAlgorithm: "RSAES_OAEP_SHA_1"}), ErrInvalidKeyUsage,
			ksARN(signer) + " key usage is SIGN_VERIFY which is not valid for this operation."},
		{"Decrypt without KeyId", decrypt(DecryptInput{CiphertextBlob: ct, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrValidation,
			"KeyId is required to decrypt with RSAES_OAEP_SHA_256"},
		{"Decrypt with the other algorithm", decrypt(DecryptInput{KeyId: id, CiphertextBlob: ct, EncryptionAlgorithm: "RSAES_OAEP_SHA_1"}), ErrInvalidCipher, ""},
		{"Decrypt without an algorithm", decrypt(DecryptInput{KeyId: id, CiphertextBlob: ct}), ErrInvalidCipher, ""},
		{"Decrypt a flipped ciphertext", decrypt(DecryptInput{KeyId: id, CiphertextBlob: flipped, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrInvalidCipher, ""},
		{"Decrypt under another key", decrypt(DecryptInput{KeyId: other, CiphertextBlob: ct, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrInvalidCipher, ""},
		{"Decrypt a short ciphertext", decrypt(DecryptInput{KeyId: id, CiphertextBlob: ct[1:], EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrInvalidCipher,
			"the ciphertext is not a RSAES_OAEP_SHA_256 ciphertext of " + ksARN(id)},
		{"Decrypt a symmetric blob as RSA", decrypt(DecryptInput{KeyId: id, CiphertextBlob: symBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrInvalidCipher, ""},
		{"Decrypt RSA with a symmetric key", decrypt(DecryptInput{KeyId: sym, CiphertextBlob: ct, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrInvalidKeyUsage,
			"Algorithm RSAES_OAEP_SHA_256 is incompatible with key spec SYMMETRIC_DEFAULT."},
		{"Decrypt with a context", decrypt(DecryptInput{KeyId: id, CiphertextBlob: ct, EncryptionAlgorithm: "RSAES_OAEP_SHA_256", EncryptionContext: map[string]string{"a": "b"}}), ErrValidation, ""},
		{"Decrypt 6145 bytes", decrypt(DecryptInput{KeyId: id, CiphertextBlob: make([]byte, 6145), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}), ErrValidation, ""},
		{"GenerateDataKey", func() error {
			_, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
			return err
		}, ErrInvalidKeyUsage, ksARN(id) + " key KeySpec is RSA_2048 which is not valid for GenerateDataKey."},
		{"GenerateDataKeyWithoutPlaintext", func() error {
			_, err := f.svc.GenerateDataKeyWithoutPlaintext(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
			return err
		}, ErrInvalidKeyUsage, ksARN(id) + " key KeySpec is RSA_2048 which is not valid for GenerateDataKeyWithoutPlaintext."},
		{"ReEncrypt from RSA without SourceKeyId", func() error {
			_, err := f.svc.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: ct, SourceEncryptionAlgorithm: "RSAES_OAEP_SHA_256", DestinationKeyId: sym})
			return err
		}, ErrValidation, ""},
		{"ReEncrypt to RSA without an algorithm", func() error {
			_, err := f.svc.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: symBlob, DestinationKeyId: id})
			return err
		}, ErrInvalidKeyUsage, "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec RSA_2048."},
	}
	for _, tc := range tests {
		ksWantErr(t, tc.name, tc.call(), tc.want, tc.msg)
	}
	dec, err := f.svc.Decrypt(ctx, DecryptInput{KeyId: id, CiphertextBlob: ct, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	ksMust(t, "Decrypt after the bad requests", err)
	if string(dec.Plaintext) != "p" {
		t.Fatalf("Decrypt = %q", dec.Plaintext)
	}
}

// TestNewSigningCurves signs and verifies with ECC_NIST_P521 (checked with
// Go's crypto) and ECC_SECG_P256K1 (checked by the token, Go has no such
// curve), where the token has them.
func TestNewSigningCurves(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	for _, c := range []struct{ spec, alg string }{{"ECC_NIST_P521", "ECDSA_SHA_512"}, {"ECC_SECG_P256K1", "ECDSA_SHA_256"}} {
		t.Run(c.spec, func(t *testing.T) {
			id := f.createKey(t, CreateKeyInput{KeySpec: c.spec, KeyUsage: "SIGN_VERIFY"})
			d, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: id})
			ksMust(t, "DescribeKey", err)
			if !slices.Equal(d.KeyMetadata.SigningAlgorithms, []string{c.alg}) {
				t.Fatalf("SigningAlgorithms %v", d.KeyMetadata.SigningAlgorithms)
			}
			msg := []byte("signed on " + c.spec)
			sig, err := f.svc.Sign(ctx, SignInput{KeyId: id, Message: msg, SigningAlgorithm: c.alg})
			ksMust(t, "Sign", err)
			v, err := f.svc.Verify(ctx, VerifyInput{KeyId: id, Message: msg, Signature: sig.Signature, SigningAlgorithm: c.alg})
			ksMust(t, "Verify", err)
			if !v.SignatureValid {
				t.Fatal("Verify: not valid")
			}
			_, err = f.svc.Verify(ctx, VerifyInput{KeyId: id, Message: []byte("other"), Signature: sig.Signature, SigningAlgorithm: c.alg})
			ksWantErr(t, "Verify of another message", err, ErrInvalidSignature, "")
			pk, err := f.svc.GetPublicKey(ctx, KeyIDInput{KeyId: id})
			ksMust(t, "GetPublicKey", err)
			if c.spec == "ECC_NIST_P521" {
				pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				d := sha512.Sum512(msg)
				if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig.Signature) {
					t.Fatal("Go's crypto rejects the P-521 signature")
				}
				_, err = f.svc.Sign(ctx, SignInput{KeyId: id, Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
				ksWantErr(t, "Sign with SHA-256", err, ErrInvalidKeyUsage, "")
			}
			_, err = f.svc.Sign(ctx, SignInput{KeyId: id, Message: make([]byte, 32), MessageType: "DIGEST", SigningAlgorithm: c.alg})
			if c.alg == "ECDSA_SHA_512" {
				ksWantErr(t, "Sign a 32-byte digest", err, ErrValidation, "")
			} else {
				ksMust(t, "Sign a 32-byte digest", err)
			}
		})
	}
}

// TestKeyStateConformance: DescribeKey reports the deletion window of a key
// pending deletion, whose rotation status is then false and whose tags
// cannot change; after CancelKeyDeletion the window is gone.
func TestKeyStateConformance(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	ksMust(t, "EnableKeyRotation", f.svc.EnableKeyRotation(ctx, EnableKeyRotationInput{KeyId: id}))
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: 9})
	ksMust(t, "ScheduleKeyDeletion", err)
	d, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: id})
	ksMust(t, "DescribeKey", err)
	if d.KeyMetadata.PendingDeletionWindowInDays != 9 || d.KeyMetadata.DeletionDate == nil {
		t.Fatalf("pending deletion: %+v", d.KeyMetadata)
	}
	st, err := f.svc.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: id})
	ksMust(t, "GetKeyRotationStatus", err)
	if st.KeyRotationEnabled || st.NextRotationDate != nil {
		t.Fatalf("rotation status while pending deletion: %+v", st)
	}
	err = f.svc.TagResource(ctx, TagResourceInput{KeyId: id, Tags: []Tag{{TagKey: "k", TagValue: "v"}}})
	ksWantErr(t, "TagResource", err, ErrInvalidState, ksARN(id)+" is pending deletion.")
	_, err = f.svc.CancelKeyDeletion(ctx, KeyIDInput{KeyId: id})
	ksMust(t, "CancelKeyDeletion", err)
	d, err = f.svc.DescribeKey(ctx, KeyIDInput{KeyId: id})
	ksMust(t, "DescribeKey", err)
	if d.KeyMetadata.PendingDeletionWindowInDays != 0 || d.KeyMetadata.DeletionDate != nil {
		t.Fatalf("after CancelKeyDeletion: %+v", d.KeyMetadata)
	}
	st, err = f.svc.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: id})
	ksMust(t, "GetKeyRotationStatus", err)
	if !st.KeyRotationEnabled {
		t.Fatal("rotation is off after CancelKeyDeletion")
	}
}
