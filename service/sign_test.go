package service

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"hash"
	"slices"
	"testing"
)

// signKeys makes one key pair per spec the signing tests use.
func (k blobKit) signKeys() map[string]string {
	k.t.Helper()
	keys := map[string]string{}
	for _, spec := range []string{"ECC_NIST_P256", "ECC_NIST_P384", "RSA_2048"} {
		keys[spec] = k.createKey(k.t, CreateKeyInput{KeySpec: spec, KeyUsage: "SIGN_VERIFY"})
	}
	return keys
}

// publicKey fetches and parses id's public key.
func (k blobKit) publicKey(id string) crypto.PublicKey {
	k.t.Helper()
	out, err := k.svc.GetPublicKey(admin(k.t), KeyIDInput{KeyId: id})
	if err != nil {
		k.t.Fatalf("GetPublicKey(%s): %v", id, err)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		k.t.Fatalf("GetPublicKey(%s): x509.ParsePKIXPublicKey: %v", id, err)
	}
	return pub
}

// signAlgs are the algorithm of each spec with its hash.
var signAlgs = []struct {
	spec string
	alg  string
	hash crypto.Hash
}{
	{"ECC_NIST_P256", "ECDSA_SHA_256", crypto.SHA256},
	{"ECC_NIST_P384", "ECDSA_SHA_384", crypto.SHA384},
	{"RSA_2048", "RSASSA_PSS_SHA_256", crypto.SHA256},
	{"RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256", crypto.SHA256},
}

func digestWith(h crypto.Hash, msg []byte) []byte {
	var hh hash.Hash = sha256.New()
	if h == crypto.SHA384 {
		hh = sha512.New384()
	}
	hh.Write(msg)
	return hh.Sum(nil)
}

// goVerify checks sig over digest with Go's crypto.
func goVerify(pub crypto.PublicKey, alg string, h crypto.Hash, digest, sig []byte) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			return fmt.Errorf("ecdsa.VerifyASN1 failed")
		}
		return nil
	case *rsa.PublicKey:
		if alg == "RSASSA_PSS_SHA_256" {
			return rsa.VerifyPSS(p, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
		}
		return rsa.VerifyPKCS1v15(p, h, digest, sig)
	}
	return fmt.Errorf("unexpected public key %T", pub)
}

// TestSignVerifyRoundTrip signs RAW messages and DIGESTs with each spec
// and algorithm; Go's crypto verifies every signature with the key from
// GetPublicKey, and so does the service's Verify.
func TestSignVerifyRoundTrip(t *testing.T) {
	k := newBlobKit(t)
	keys := k.signKeys()
	for _, a := range signAlgs {
		id := keys[a.spec]
		pub := k.publicKey(id)
		for _, msgType := range []string{"RAW", "DIGEST", ""} {
			for _, size := range []int{1, 4096} {
				name := fmt.Sprintf("%s/%s/%q/%d", a.spec, a.alg, msgType, size)
				raw := bytes.Repeat([]byte("sign me "), 512)[:size]
				msg := raw
				if msgType == "DIGEST" {
					msg = digestWith(a.hash, raw)
				}
				out, err := k.svc.Sign(admin(t), SignInput{KeyId: id, Message: msg, MessageType: msgType, SigningAlgorithm: a.alg})
				if err != nil {
					t.Errorf("%s: Sign: %v", name, err)
					continue
				}
				if out.KeyId != k.arn(id) || out.SigningAlgorithm != a.alg {
					t.Errorf("%s: Sign = KeyId %q, algorithm %q", name, out.KeyId, out.SigningAlgorithm)
				}
				if err := goVerify(pub, a.alg, a.hash, digestWith(a.hash, raw), out.Signature); err != nil {
					t.Errorf("%s: Go's crypto does not verify the signature: %v", name, err)
				}
				// A signature over a RAW message verifies as a DIGEST of it, and back.
				for _, vt := range []struct{ msgType string }{{"RAW"}, {"DIGEST"}} {
					vmsg := raw
					if vt.msgType == "DIGEST" {
						vmsg = digestWith(a.hash, raw)
					}
					v, err := k.svc.Verify(admin(t), VerifyInput{KeyId: id, Message: vmsg, MessageType: vt.msgType,
						Signature: out.Signature, SigningAlgorithm: a.alg})
					if err != nil || !v.SignatureValid || v.KeyId != k.arn(id) || v.SigningAlgorithm != a.alg {
						t.Errorf("%s: Verify as %s = %+v, %v", name, vt.msgType, v, err)
					}
				}
			}
		}
	}
}

// TestGetPublicKey checks the key each spec returns and that a symmetric
// key has none.
func TestGetPublicKey(t *testing.T) {
	k := newBlobKit(t)
	keys := k.signKeys()
	tests := []struct {
		spec  string
		check func(crypto.PublicKey) bool
		algs  []string
	}{
		{"ECC_NIST_P256", func(p crypto.PublicKey) bool {
			e, ok := p.(*ecdsa.PublicKey)
			return ok && e.Curve == elliptic.P256()
		}, []string{"ECDSA_SHA_256"}},
		{"ECC_NIST_P384", func(p crypto.PublicKey) bool {
			e, ok := p.(*ecdsa.PublicKey)
			return ok && e.Curve == elliptic.P384()
		}, []string{"ECDSA_SHA_384"}},
		{"RSA_2048", func(p crypto.PublicKey) bool {
			r, ok := p.(*rsa.PublicKey)
			return ok && r.N.BitLen() == 2048 && r.E == 65537
		}, []string{"RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256"}},
	}
	for _, tc := range tests {
		id := keys[tc.spec]
		out, err := k.svc.GetPublicKey(admin(t), KeyIDInput{KeyId: id})
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		if out.KeyId != k.arn(id) || out.KeySpec != tc.spec || out.CustomerMasterKeySpec != tc.spec ||
			out.KeyUsage != "SIGN_VERIFY" || !slices.Equal(out.SigningAlgorithms, tc.algs) {
			t.Errorf("%s: GetPublicKey = %+v", tc.spec, out)
		}
		if !tc.check(k.publicKey(id)) {
			t.Errorf("%s: public key %T is not the right kind", tc.spec, k.publicKey(id))
		}
	}
	for _, mech := range blobMechs {
		_, err := k.svc.GetPublicKey(admin(t), KeyIDInput{KeyId: k.key(mech)})
		wantErr(t, "GetPublicKey of an "+mech+" key", err, ErrUnsupported)
	}
}

// TestVerifyTampered verifies altered signatures, altered messages and
// another key's signatures: KMSInvalidSignature each time.
func TestVerifyTampered(t *testing.T) {
	k := newBlobKit(t)
	keys := k.signKeys()
	other := k.signKeys()
	msg := []byte("the message that was signed")
	for _, a := range signAlgs {
		id := keys[a.spec]
		sig, err := k.svc.Sign(admin(t), SignInput{KeyId: id, Message: msg, SigningAlgorithm: a.alg})
		if err != nil {
			t.Fatalf("%s/%s: Sign: %v", a.spec, a.alg, err)
		}
		otherSig, err := k.svc.Sign(admin(t), SignInput{KeyId: other[a.spec], Message: msg, SigningAlgorithm: a.alg})
		if err != nil {
			t.Fatalf("%s/%s: Sign with the other key: %v", a.spec, a.alg, err)
		}
		flip := func(i int) []byte {
			s := bytes.Clone(sig.Signature)
			s[i] ^= 0x01
			return s
		}
		n := len(sig.Signature)
		tests := []struct {
			name string
			msg  []byte
			sig  []byte
		}{
			{"last signature byte flipped", msg, flip(n - 1)},
			{"middle signature byte flipped", msg, flip(n / 2)},
			{"signature truncated", msg, sig.Signature[:n-1]},
			{"message changed", append(bytes.Clone(msg), '!'), sig.Signature},
			{"another key's signature", msg, otherSig.Signature},
		}
		for _, tc := range tests {
			name := fmt.Sprintf("%s/%s: %s", a.spec, a.alg, tc.name)
			out, err := k.svc.Verify(admin(t), VerifyInput{KeyId: id, Message: tc.msg, Signature: tc.sig, SigningAlgorithm: a.alg})
			wantErr(t, name, err, ErrInvalidSignature)
			if out.SignatureValid {
				t.Errorf("%s: SignatureValid", name)
			}
		}
		// The untouched signature still verifies.
		if _, err := k.svc.Verify(admin(t), VerifyInput{KeyId: id, Message: msg, Signature: sig.Signature, SigningAlgorithm: a.alg}); err != nil {
			t.Errorf("%s/%s: the original signature: %v", a.spec, a.alg, err)
		}
	}
	if h := k.tok.Health(); !h.Ready || h.Recoveries != 0 {
		t.Errorf("token health %+v after tampered signatures", h)
	}
}

// TestSignBadInput is the catalogue of malformed Sign and Verify requests:
// algorithms the key does not have (InvalidKeyUsage), digests of the wrong
// length, unknown message types and oversize messages (Validation).
func TestSignBadInput(t *testing.T) {
	k := newBlobKit(t)
	keys := k.signKeys()
	p256, p384, rsa2048 := keys["ECC_NIST_P256"], keys["ECC_NIST_P384"], keys["RSA_2048"]
	good, err := k.svc.Sign(admin(t), SignInput{KeyId: p256, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		keyID   string
		alg     string
		msgType string
		msg     []byte
		want    *Error
	}{
		{"ECDSA_SHA_384 on P-256", p256, "ECDSA_SHA_384", "RAW", []byte("m"), ErrInvalidKeyUsage},
		{"ECDSA_SHA_256 on P-384", p384, "ECDSA_SHA_256", "RAW", []byte("m"), ErrInvalidKeyUsage},
		{"PSS on P-256", p256, "RSASSA_PSS_SHA_256", "RAW", []byte("m"), ErrInvalidKeyUsage},
		{"PKCS1 on P-384", p384, "RSASSA_PKCS1_V1_5_SHA_256", "DIGEST", make([]byte, 32), ErrInvalidKeyUsage},
		{"ECDSA on RSA", rsa2048, "ECDSA_SHA_256", "RAW", []byte("m"), ErrInvalidKeyUsage},
		{"no algorithm", p256, "", "RAW", []byte("m"), ErrValidation},
		{"no such algorithm", p256, "FOO", "RAW", []byte("m"), ErrValidation},
		{"unknown algorithm", rsa2048, "RSASSA_PSS_SHA_512", "RAW", []byte("m"), ErrInvalidKeyUsage},
		{"DIGEST 31 bytes, SHA-256", p256, "ECDSA_SHA_256", "DIGEST", make([]byte, 31), ErrValidation},
		{"DIGEST 33 bytes, SHA-256", rsa2048, "RSASSA_PSS_SHA_256", "DIGEST", make([]byte, 33), ErrValidation},
		{"DIGEST 48 bytes, SHA-256", rsa2048, "RSASSA_PKCS1_V1_5_SHA_256", "DIGEST", make([]byte, 48), ErrValidation},
		{"DIGEST 32 bytes, SHA-384", p384, "ECDSA_SHA_384", "DIGEST", make([]byte, 32), ErrValidation},
		{"DIGEST empty", p256, "ECDSA_SHA_256", "DIGEST", nil, ErrValidation},
		{"MessageType HASH", p256, "ECDSA_SHA_256", "HASH", make([]byte, 32), ErrValidation},
		{"MessageType raw", p256, "ECDSA_SHA_256", "raw", []byte("m"), ErrValidation},
		{"RAW 4097 bytes", p256, "ECDSA_SHA_256", "RAW", make([]byte, 4097), ErrValidation},
		{"RAW 4097 bytes, RSA", rsa2048, "RSASSA_PSS_SHA_256", "RAW", make([]byte, 4097), ErrValidation},
		{"RAW empty", p384, "ECDSA_SHA_384", "RAW", nil, ErrValidation},
		{"RAW 4096 bytes", p256, "ECDSA_SHA_256", "RAW", make([]byte, 4096), nil},
		{"DIGEST 48 bytes, SHA-384", p384, "ECDSA_SHA_384", "DIGEST", make([]byte, 48), nil},
	}
	for _, tc := range tests {
		sig, err := k.svc.Sign(admin(t), SignInput{KeyId: tc.keyID, Message: tc.msg, MessageType: tc.msgType, SigningAlgorithm: tc.alg})
		wantErr(t, "Sign "+tc.name, err, tc.want)
		signature := good.Signature
		if err == nil {
			signature = sig.Signature
		}
		_, err = k.svc.Verify(admin(t), VerifyInput{KeyId: tc.keyID, Message: tc.msg, MessageType: tc.msgType, Signature: signature, SigningAlgorithm: tc.alg})
		wantErr(t, "Verify "+tc.name, err, tc.want)
	}
	// Verify's own checks: the signature's length.
	for _, tc := range []struct {
		name string
		sig  []byte
		want *Error
	}{
		{"empty signature", nil, ErrValidation},
		{"6145-byte signature", make([]byte, 6145), ErrValidation},
		{"garbage signature", []byte("not DER"), ErrInvalidSignature},
	} {
		_, err := k.svc.Verify(admin(t), VerifyInput{KeyId: p256, Message: []byte("m"), Signature: tc.sig, SigningAlgorithm: "ECDSA_SHA_256"})
		wantErr(t, "Verify "+tc.name, err, tc.want)
	}
	if h := k.tok.Health(); !h.Ready || h.Recoveries != 0 {
		t.Errorf("token health %+v after bad signing input", h)
	}
}

// TestSigningAlgorithmMessages holds a missing or unknown SigningAlgorithm
// to AWS KMS's ValidationException and its words, for Sign and Verify
// alike, before the key is looked up. (Found by review: both answered
// InvalidKeyUsageException, which AWS keeps for a known algorithm the key
// cannot use.)
func TestSigningAlgorithmMessages(t *testing.T) {
	k := newBlobKit(t)
	p256 := k.signKeys()["ECC_NIST_P256"]
	for _, tc := range []struct{ alg, msg string }{
		{"", "1 validation error detected: Value null at 'signingAlgorithm' failed to satisfy constraint: Member must not be null"},
		{"ECDSA_SHA_1", "1 validation error detected: Value 'ECDSA_SHA_1' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: " +
			"[RSASSA_PSS_SHA_256, RSASSA_PSS_SHA_384, RSASSA_PSS_SHA_512, RSASSA_PKCS1_V1_5_SHA_256, RSASSA_PKCS1_V1_5_SHA_384, RSASSA_PKCS1_V1_5_SHA_512, " +
			"ECDSA_SHA_256, ECDSA_SHA_384, ECDSA_SHA_512, SM2DSA, ML_DSA_SHAKE_256]"},
	} {
		for _, keyID := range []string{p256, "alias/no-such-key"} {
			_, err := k.svc.Sign(admin(t), SignInput{KeyId: keyID, Message: []byte("m"), SigningAlgorithm: tc.alg})
			if CodeOf(err) != CodeValidation || MessageOf(err) != tc.msg {
				t.Errorf("Sign(%s, %q) = %v, want ValidationException %q", keyID, tc.alg, err, tc.msg)
			}
			_, err = k.svc.Verify(admin(t), VerifyInput{KeyId: keyID, Message: []byte("m"), Signature: []byte("s"), SigningAlgorithm: tc.alg})
			if CodeOf(err) != CodeValidation || MessageOf(err) != tc.msg {
				t.Errorf("Verify(%s, %q) = %v, want ValidationException %q", keyID, tc.alg, err, tc.msg)
			}
		}
	}
}

// TestMessageTypeMessages holds an unknown MessageType to AWS KMS's
// ValidationException and its enum words (comma-separated, in the model's
// order), for Sign and Verify alike, before the key is looked up. (Found by
// review: hsmkms's own wording.) EXTERNAL_MU is in the enum but for ML-DSA
// keys only, which hsmkms does not make.
func TestMessageTypeMessages(t *testing.T) {
	k := newBlobKit(t)
	p256 := k.signKeys()["ECC_NIST_P256"]
	enum := func(v string) string {
		return "1 validation error detected: Value '" + v + "' at 'messageType' failed to satisfy constraint: Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]"
	}
	for _, tc := range []struct {
		keyID, msgType string
		msg            []byte
		want           *Error
		text           string
	}{
		{p256, "HASH", make([]byte, 32), ErrValidation, enum("HASH")},
		{p256, "raw", []byte("m"), ErrValidation, enum("raw")},
		{"alias/no-such-key", "HASH", []byte("m"), ErrValidation, enum("HASH")},
		{p256, "EXTERNAL_MU", make([]byte, 64), ErrValidation, "MessageType EXTERNAL_MU is valid only with the ML_DSA_SHAKE_256 signing algorithm"},
		{"alias/no-such-key", "EXTERNAL_MU", make([]byte, 64), ErrNotFound, ""},
		{p256, "", []byte("m"), nil, ""},
		{p256, "RAW", []byte("m"), nil, ""},
		{p256, "DIGEST", make([]byte, 32), nil, ""},
	} {
		name := fmt.Sprintf("(%s, %q)", tc.keyID, tc.msgType)
		out, err := k.svc.Sign(admin(t), SignInput{KeyId: tc.keyID, Message: tc.msg, MessageType: tc.msgType, SigningAlgorithm: "ECDSA_SHA_256"})
		ksWantErr(t, "Sign"+name, err, tc.want, tc.text)
		sig := []byte("s")
		if err == nil {
			sig = out.Signature
		}
		_, err = k.svc.Verify(admin(t), VerifyInput{KeyId: tc.keyID, Message: tc.msg, MessageType: tc.msgType, Signature: sig, SigningAlgorithm: "ECDSA_SHA_256"})
		ksWantErr(t, "Verify"+name, err, tc.want, tc.text)
	}
}
