package server

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/server/servertest"
)

// sdkKeys are the keys TestSDKOperations makes, by role.
type sdkKeys struct {
	sym, kw, ecc, rsa string
}

// TestSDKOperations drives every TrentService operation of the route table
// with the real aws-sdk-go-v2 KMS client and checks the results, then
// checks from the server's own metrics that each operation succeeded at
// least once, so that an operation added to the route table without a test
// here fails this test.
func TestSDKOperations(t *testing.T) {
	ts := startServer(t)
	c := ts.kmsClient(rootCreds)
	var keys sdkKeys

	t.Run("CreateKey", func(t *testing.T) {
		cases := []struct {
			name     string
			in       kms.CreateKeyInput
			dst      *string
			spec     types.KeySpec
			usage    types.KeyUsageType
			encAlgs  []types.EncryptionAlgorithmSpec
			signAlgs []types.SigningAlgorithmSpec
		}{
			{"symmetric default", kms.CreateKeyInput{Description: aws.String("sdk symmetric")}, &keys.sym,
				types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt, []types.EncryptionAlgorithmSpec{"SYMMETRIC_DEFAULT"}, nil},
			{"symmetric aes-kw by tag", kms.CreateKeyInput{Tags: []types.Tag{{TagKey: aws.String("hsmkms:mechanism"), TagValue: aws.String("aes-kw")}}}, &keys.kw,
				types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt, []types.EncryptionAlgorithmSpec{"SYMMETRIC_DEFAULT"}, nil},
			{"ECC P-256", kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify}, &keys.ecc,
				types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify, nil, []types.SigningAlgorithmSpec{"ECDSA_SHA_256"}},
			{"RSA 2048", kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify}, &keys.rsa,
				types.KeySpecRsa2048, types.KeyUsageTypeSignVerify, nil, []types.SigningAlgorithmSpec{"RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256"}},
		}
		for _, tc := range cases {
			out, err := c.CreateKey(t.Context(), &tc.in)
			if err != nil {
				t.Fatalf("%s: CreateKey: %v", tc.name, err)
			}
			m := out.KeyMetadata
			if m == nil || m.KeyId == nil || aws.ToString(m.Arn) != keyARNPre+aws.ToString(m.KeyId) ||
				m.KeySpec != tc.spec || m.KeyUsage != tc.usage || m.KeyState != types.KeyStateEnabled || !m.Enabled ||
				aws.ToString(m.AWSAccountId) != account || m.CreationDate == nil ||
				!slices.Equal(m.EncryptionAlgorithms, tc.encAlgs) || !slices.Equal(m.SigningAlgorithms, tc.signAlgs) {
				t.Fatalf("%s: CreateKey metadata = %+v", tc.name, m)
			}
			*tc.dst = *m.KeyId
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("DescribeKey", func(t *testing.T) {
		for _, id := range []string{keys.sym, keys.kw, keys.ecc, keys.rsa} {
			for _, ident := range []string{id, keyARNPre + id} {
				out, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(ident)})
				if err != nil || aws.ToString(out.KeyMetadata.KeyId) != id {
					t.Fatalf("DescribeKey(%s) = %+v, %v", ident, out, err)
				}
			}
		}
		out, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keys.sym)})
		if err != nil || aws.ToString(out.KeyMetadata.Description) != "sdk symmetric" || aws.ToString(out.KeyMetadata.CurrentKeyMaterialId) != "v1" {
			t.Fatalf("DescribeKey(sym) = %+v, %v; want its description and material v1", out.KeyMetadata, err)
		}
	})

	t.Run("ListKeys paginated", func(t *testing.T) {
		for _, limit := range []int32{1, 3, 1000} {
			p := kms.NewListKeysPaginator(c, &kms.ListKeysInput{Limit: aws.Int32(limit)})
			var got []string
			pages := 0
			for p.HasMorePages() {
				page, err := p.NextPage(t.Context())
				if err != nil {
					t.Fatalf("limit %d: page %d: %v", limit, pages+1, err)
				}
				pages++
				if len(page.Keys) > int(limit) {
					t.Fatalf("limit %d: a page of %d keys", limit, len(page.Keys))
				}
				for _, k := range page.Keys {
					if aws.ToString(k.KeyArn) != keyARNPre+aws.ToString(k.KeyId) {
						t.Fatalf("ListKeys entry %+v: ARN does not match the ID", k)
					}
					got = append(got, aws.ToString(k.KeyId))
				}
			}
			want := []string{keys.sym, keys.kw, keys.ecc, keys.rsa}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("limit %d: ListKeys over %d pages = %v, want each key once: %v", limit, pages, got, want)
			}
			if wantPages := (len(want) + int(limit) - 1) / int(limit); pages < wantPages {
				t.Fatalf("limit %d: %d pages, want at least %d", limit, pages, wantPages)
			}
		}
	})

	t.Run("aliases", func(t *testing.T) {
		ctx := t.Context()
		for _, a := range []struct{ name, target string }{{"alias/sdk-one", keys.sym}, {"alias/sdk-two", keys.sym}} {
			if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(a.name), TargetKeyId: aws.String(a.target)}); err != nil {
				t.Fatalf("CreateAlias(%s): %v", a.name, err)
			}
		}
		if _, err := c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/sdk-two"), TargetKeyId: aws.String(keys.kw)}); err != nil {
			t.Fatalf("UpdateAlias: %v", err)
		}
		targets := map[string]string{}
		p := kms.NewListAliasesPaginator(c, &kms.ListAliasesInput{Limit: aws.Int32(1)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("ListAliases: %v", err)
			}
			for _, a := range page.Aliases {
				if aws.ToString(a.AliasArn) != "arn:aws:kms:"+region+":"+account+":"+aws.ToString(a.AliasName) {
					t.Fatalf("ListAliases entry %+v: bad ARN", a)
				}
				targets[aws.ToString(a.AliasName)] = aws.ToString(a.TargetKeyId)
			}
		}
		if want := map[string]string{"alias/sdk-one": keys.sym, "alias/sdk-two": keys.kw}; !mapEqual(targets, want) {
			t.Fatalf("ListAliases = %v, want %v", targets, want)
		}
		byKey, err := c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: aws.String(keys.kw)})
		if err != nil || len(byKey.Aliases) != 1 || aws.ToString(byKey.Aliases[0].AliasName) != "alias/sdk-two" {
			t.Fatalf("ListAliases(KeyId aes-kw key) = %+v, %v; want alias/sdk-two only", byKey, err)
		}
		d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/sdk-two")})
		if err != nil || aws.ToString(d.KeyMetadata.KeyId) != keys.kw {
			t.Fatalf("DescribeKey(alias/sdk-two) = %+v, %v; want the aes-kw key", d, err)
		}
		if _, err := c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/sdk-two")}); err != nil {
			t.Fatalf("DeleteAlias: %v", err)
		}
		if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/sdk-two")}); !isA[*types.NotFoundException](err) {
			t.Fatalf("DescribeKey of a deleted alias: err = %v, want NotFoundException", err)
		}
	})

	t.Run("Encrypt Decrypt ReEncrypt", func(t *testing.T) {
		ctx := t.Context()
		encCtx := map[string]string{"purpose": "sdk-test", "a": "bc"}
		pt := []byte("attack at dawn")
		cases := []struct {
			name, keyID  string
			context      map[string]string
			decryptKeyID *string
		}{
			{"by ID with context", keys.sym, encCtx, nil},
			{"by alias, KeyId on decrypt", "alias/sdk-one", nil, aws.String("alias/sdk-one")},
			{"aes-kw key (Encrypt always seals with AES-GCM)", keys.kw, encCtx, aws.String(keyARNPre + keys.kw)},
		}
		for _, tc := range cases {
			enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(tc.keyID), Plaintext: pt, EncryptionContext: tc.context})
			if err != nil {
				t.Fatalf("%s: Encrypt: %v", tc.name, err)
			}
			if len(enc.CiphertextBlob) == 0 || bytes.Contains(enc.CiphertextBlob, pt) || enc.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
				t.Fatalf("%s: Encrypt = %+v", tc.name, enc)
			}
			dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: tc.context, KeyId: tc.decryptKeyID})
			if err != nil || !bytes.Equal(dec.Plaintext, pt) || aws.ToString(dec.KeyId) != aws.ToString(enc.KeyId) {
				t.Fatalf("%s: Decrypt = %+v, %v; want %q from %s", tc.name, dec, err, pt, aws.ToString(enc.KeyId))
			}
			if len(tc.context) > 0 {
				_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"ab": "c", "purpose": "sdk-test"}})
				if !isA[*types.InvalidCiphertextException](err) {
					t.Fatalf("%s: Decrypt with another context: err = %v, want InvalidCiphertextException", tc.name, err)
				}
			}
		}

		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.sym), Plaintext: pt, EncryptionContext: encCtx})
		if err != nil {
			t.Fatal(err)
		}
		dstCtx := map[string]string{"moved": "yes"}
		re, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: encCtx,
			DestinationKeyId: aws.String(keys.kw), DestinationEncryptionContext: dstCtx})
		if err != nil || aws.ToString(re.SourceKeyId) != keyARNPre+keys.sym || aws.ToString(re.KeyId) != keyARNPre+keys.kw {
			t.Fatalf("ReEncrypt = %+v, %v", re, err)
		}
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob, EncryptionContext: dstCtx})
		if err != nil || !bytes.Equal(dec.Plaintext, pt) || aws.ToString(dec.KeyId) != keyARNPre+keys.kw {
			t.Fatalf("Decrypt of the re-encrypted blob = %+v, %v", dec, err)
		}
	})

	t.Run("GenerateDataKey", func(t *testing.T) {
		ctx := t.Context()
		cases := []struct {
			name    string
			keyID   string
			spec    types.DataKeySpec
			n       *int32
			context map[string]string
			want    int
		}{
			{"aes-gcm AES_256 with context", keys.sym, types.DataKeySpecAes256, nil, map[string]string{"file": "x"}, 32},
			{"aes-gcm 7 bytes", keys.sym, "", aws.Int32(7), nil, 7},
			{"aes-kw AES_128", keys.kw, types.DataKeySpecAes128, nil, nil, 16},
			{"aes-kw 64 bytes", keys.kw, "", aws.Int32(64), nil, 64},
		}
		for _, tc := range cases {
			out, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(tc.keyID), KeySpec: tc.spec, NumberOfBytes: tc.n, EncryptionContext: tc.context})
			if err != nil || len(out.Plaintext) != tc.want || len(out.CiphertextBlob) == 0 || aws.ToString(out.KeyId) != keyARNPre+tc.keyID {
				t.Fatalf("%s: GenerateDataKey = %+v, %v; want a %d-byte key", tc.name, out, err, tc.want)
			}
			dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: tc.context})
			if err != nil || !bytes.Equal(dec.Plaintext, out.Plaintext) {
				t.Fatalf("%s: Decrypt of the data key = %x, %v; want %x", tc.name, dec.Plaintext, err, out.Plaintext)
			}
			wp, err := c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(tc.keyID),
				KeySpec: tc.spec, NumberOfBytes: tc.n, EncryptionContext: tc.context})
			if err != nil || len(wp.CiphertextBlob) == 0 {
				t.Fatalf("%s: GenerateDataKeyWithoutPlaintext = %+v, %v", tc.name, wp, err)
			}
			dec, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wp.CiphertextBlob, EncryptionContext: tc.context})
			if err != nil || len(dec.Plaintext) != tc.want || bytes.Equal(dec.Plaintext, out.Plaintext) {
				t.Fatalf("%s: Decrypt of a data key made without plaintext = %x, %v; want a fresh %d-byte key", tc.name, dec.Plaintext, err, tc.want)
			}
		}
	})

	t.Run("GenerateDataKeyPair", func(t *testing.T) {
		ctx := t.Context()
		encCtx := map[string]string{"file": "pair"}
		out, err := c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: aws.String(keys.sym),
			KeyPairSpec: types.DataKeyPairSpecEccNistP256, EncryptionContext: encCtx})
		if err != nil || aws.ToString(out.KeyId) != keyARNPre+keys.sym || out.KeyPairSpec != types.DataKeyPairSpecEccNistP256 ||
			aws.ToString(out.KeyMaterialId) != "v1" || len(out.PrivateKeyCiphertextBlob) == 0 {
			t.Fatalf("GenerateDataKeyPair ECC_NIST_P256 = %+v, %v", out, err)
		}
		priv := servertest.KeyPairMatches(t, out.PrivateKeyPlaintext, out.PublicKey)
		if k, ok := priv.(*ecdsa.PrivateKey); !ok || k.Curve.Params().Name != "P-256" {
			t.Fatalf("GenerateDataKeyPair ECC_NIST_P256 made a %T", priv)
		}
		if bytes.Contains(out.PrivateKeyCiphertextBlob, out.PrivateKeyPlaintext) {
			t.Fatal("the private key is in the clear in PrivateKeyCiphertextBlob")
		}
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.PrivateKeyCiphertextBlob, EncryptionContext: encCtx})
		if err != nil || !bytes.Equal(dec.Plaintext, out.PrivateKeyPlaintext) || aws.ToString(dec.KeyId) != keyARNPre+keys.sym {
			t.Fatalf("Decrypt of PrivateKeyCiphertextBlob = %+v, %v; want PrivateKeyPlaintext", dec, err)
		}
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.PrivateKeyCiphertextBlob})
		if !isA[*types.InvalidCiphertextException](err) {
			t.Fatalf("Decrypt of PrivateKeyCiphertextBlob without its context: err = %v, want InvalidCiphertextException", err)
		}

		wp, err := c.GenerateDataKeyPairWithoutPlaintext(ctx, &kms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: aws.String("alias/sdk-one"),
			KeyPairSpec: types.DataKeyPairSpecRsa2048})
		if err != nil || aws.ToString(wp.KeyId) != keyARNPre+keys.sym || wp.KeyPairSpec != types.DataKeyPairSpecRsa2048 ||
			len(wp.PrivateKeyCiphertextBlob) == 0 {
			t.Fatalf("GenerateDataKeyPairWithoutPlaintext RSA_2048 = %+v, %v", wp, err)
		}
		// The SDK's output type has no PrivateKeyPlaintext, so it would
		// drop one: the response itself must not carry it.
		raw := send(t, ts.signedRequest(t, "TrentService.GenerateDataKeyPairWithoutPlaintext",
			[]byte(`{"KeyId":"`+keys.sym+`","KeyPairSpec":"ECC_NIST_P256"}`), rootCreds, time.Now()))
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw.body, &fields); err != nil || raw.status != 200 {
			t.Fatalf("GenerateDataKeyPairWithoutPlaintext on the wire: %d %s", raw.status, raw.body)
		}
		if _, ok := fields["PrivateKeyPlaintext"]; ok || fields["PublicKey"] == nil || fields["PrivateKeyCiphertextBlob"] == nil {
			t.Fatalf("GenerateDataKeyPairWithoutPlaintext sent the fields %s", raw.body)
		}
		dec, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wp.PrivateKeyCiphertextBlob})
		if err != nil {
			t.Fatalf("Decrypt of the RSA PrivateKeyCiphertextBlob: %v", err)
		}
		priv = servertest.KeyPairMatches(t, dec.Plaintext, wp.PublicKey)
		if k, ok := priv.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
			t.Fatalf("GenerateDataKeyPairWithoutPlaintext RSA_2048 made a %T", priv)
		}

		_, err = c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: aws.String(keys.sym), KeyPairSpec: types.DataKeyPairSpecSm2})
		if !isA[*types.UnsupportedOperationException](err) || !strings.Contains(err.Error(), "KeyPairSpec SM2 is not supported") {
			t.Fatalf("GenerateDataKeyPair SM2: err = %v, want UnsupportedOperationException", err)
		}
		_, err = c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: aws.String(keys.ecc), KeyPairSpec: types.DataKeyPairSpecEccNistP256})
		if !isA[*types.InvalidKeyUsageException](err) {
			t.Fatalf("GenerateDataKeyPair under a signing key: err = %v, want InvalidKeyUsageException", err)
		}
	})

	t.Run("GenerateRandom", func(t *testing.T) {
		var prev []byte
		for _, n := range []int32{1, 64, 1024} {
			out, err := c.GenerateRandom(t.Context(), &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(n)})
			if err != nil || len(out.Plaintext) != int(n) || bytes.Equal(out.Plaintext, prev) {
				t.Fatalf("GenerateRandom(%d) = %d bytes, %v", n, len(out.Plaintext), err)
			}
			prev = out.Plaintext
		}
	})

	t.Run("Sign Verify GetPublicKey", func(t *testing.T) {
		ctx := t.Context()
		msg := []byte("a message to sign")
		digest := sha256.Sum256(msg)
		cases := []struct {
			keyID string
			alg   types.SigningAlgorithmSpec
		}{
			{keys.ecc, types.SigningAlgorithmSpecEcdsaSha256},
			{keys.rsa, types.SigningAlgorithmSpecRsassaPssSha256},
			{keys.rsa, types.SigningAlgorithmSpecRsassaPkcs1V15Sha256},
		}
		for _, tc := range cases {
			pk, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(tc.keyID)})
			if err != nil || pk.KeyUsage != types.KeyUsageTypeSignVerify || !slices.Contains(pk.SigningAlgorithms, tc.alg) {
				t.Fatalf("GetPublicKey(%s) = %+v, %v", tc.keyID, pk, err)
			}
			pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
			if err != nil {
				t.Fatalf("GetPublicKey returned no DER SubjectPublicKeyInfo: %v", err)
			}
			for _, mt := range []struct {
				typ types.MessageType
				msg []byte
			}{{types.MessageTypeRaw, msg}, {types.MessageTypeDigest, digest[:]}} {
				sig, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(tc.keyID), Message: mt.msg, MessageType: mt.typ, SigningAlgorithm: tc.alg})
				if err != nil || len(sig.Signature) == 0 || sig.SigningAlgorithm != tc.alg {
					t.Fatalf("Sign(%s, %s) = %+v, %v", tc.alg, mt.typ, sig, err)
				}
				if err := verifyLocally(pub, tc.alg, digest[:], sig.Signature); err != nil {
					t.Fatalf("the %s signature (%s) does not verify with the public key: %v", tc.alg, mt.typ, err)
				}
				v, err := c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(tc.keyID), Message: mt.msg, MessageType: mt.typ,
					Signature: sig.Signature, SigningAlgorithm: tc.alg})
				if err != nil || !v.SignatureValid {
					t.Fatalf("Verify(%s, %s) = %+v, %v", tc.alg, mt.typ, v, err)
				}
			}
		}
	})

	t.Run("GenerateMac VerifyMac", func(t *testing.T) {
		ctx := t.Context()
		ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecHmac384, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
		if err != nil || ck.KeyMetadata.KeyUsage != types.KeyUsageTypeGenerateVerifyMac ||
			!slices.Equal(ck.KeyMetadata.MacAlgorithms, []types.MacAlgorithmSpec{types.MacAlgorithmSpecHmacSha384}) {
			t.Fatalf("CreateKey HMAC_384 = %+v, %v", ck, err)
		}
		id := ck.KeyMetadata.KeyId
		msg := []byte("a message to authenticate")
		m, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: id, Message: msg, MacAlgorithm: types.MacAlgorithmSpecHmacSha384})
		if err != nil || len(m.Mac) != 48 || m.MacAlgorithm != types.MacAlgorithmSpecHmacSha384 {
			t.Fatalf("GenerateMac = %+v, %v", m, err)
		}
		v, err := c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: id, Message: msg, Mac: m.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha384})
		if err != nil || !v.MacValid {
			t.Fatalf("VerifyMac = %+v, %v", v, err)
		}
		_, err = c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: id, Message: []byte("tampered"), Mac: m.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha384})
		var invalid *types.KMSInvalidMacException
		if !errors.As(err, &invalid) {
			t.Fatalf("VerifyMac of another message: %v, want a *types.KMSInvalidMacException", err)
		}
		_, err = c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: id, Message: msg, MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
		var usage *types.InvalidKeyUsageException
		if !errors.As(err, &usage) {
			t.Fatalf("GenerateMac with the wrong algorithm: %v, want a *types.InvalidKeyUsageException", err)
		}
	})

	t.Run("UpdateKeyDescription", func(t *testing.T) {
		ctx := t.Context()
		if _, err := c.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: aws.String(keys.sym), Description: aws.String("renamed")}); err != nil {
			t.Fatalf("UpdateKeyDescription: %v", err)
		}
		d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keys.sym)})
		if err != nil || aws.ToString(d.KeyMetadata.Description) != "renamed" {
			t.Fatalf("DescribeKey after UpdateKeyDescription = %+v, %v", d, err)
		}
	})

	t.Run("key import", func(t *testing.T) {
		ctx := t.Context()
		ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
		if err != nil || ck.KeyMetadata.KeyState != types.KeyStatePendingImport || ck.KeyMetadata.Origin != types.OriginTypeExternal {
			t.Fatalf("CreateKey EXTERNAL = %+v, %v", ck, err)
		}
		id := ck.KeyMetadata.KeyId
		p, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: id,
			WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha1, WrappingKeySpec: types.WrappingKeySpecRsa2048})
		if err != nil || p.ParametersValidTo == nil || time.Until(*p.ParametersValidTo) < 23*time.Hour {
			t.Fatalf("GetParametersForImport = %+v, %v", p, err)
		}
		pub, err := x509.ParsePKIXPublicKey(p.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		material := bytes.Repeat([]byte{0x2b}, 32)
		wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub.(*rsa.PublicKey), material, nil)
		if err != nil {
			t.Fatal(err)
		}
		validTo := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
		if _, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: id, ImportToken: p.ImportToken,
			EncryptedKeyMaterial: wrapped, ExpirationModel: types.ExpirationModelTypeKeyMaterialExpires, ValidTo: &validTo}); err != nil {
			t.Fatalf("ImportKeyMaterial: %v", err)
		}
		d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
		if err != nil || d.KeyMetadata.KeyState != types.KeyStateEnabled || d.KeyMetadata.ValidTo == nil || !d.KeyMetadata.ValidTo.Equal(validTo) ||
			d.KeyMetadata.ExpirationModel != types.ExpirationModelTypeKeyMaterialExpires {
			t.Fatalf("DescribeKey after the import = %+v, %v", d, err)
		}
		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("byok")})
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: id, ImportToken: p.ImportToken,
			EncryptedKeyMaterial: wrapped, ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
		var replay *types.InvalidImportTokenException
		if !errors.As(err, &replay) {
			t.Fatalf("a replayed import token: %v, want *types.InvalidImportTokenException", err)
		}
		if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: id}); err != nil {
			t.Fatalf("DeleteImportedKeyMaterial: %v", err)
		}
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		var state *types.KMSInvalidStateException
		if !errors.As(err, &state) {
			t.Fatalf("Decrypt after DeleteImportedKeyMaterial: %v, want *types.KMSInvalidStateException", err)
		}
	})

	t.Run("grants", func(t *testing.T) {
		ctx := t.Context()
		appCreds := ts.newPrincipal(t, "grantee")
		app := ts.kmsClient(appCreds)
		arn := "arn:aws:iam::000000000000:user/" + appCreds.AccessKeyID
		_, err := app.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.sym), Plaintext: []byte("x")})
		if errorCode(err) != "AccessDeniedException" {
			t.Fatalf("Encrypt before the grant: %v", err)
		}
		g, err := c.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: aws.String(keys.sym), GranteePrincipal: aws.String(arn),
			RetiringPrincipal: aws.String(arn), Operations: []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationDecrypt},
			Constraints: &types.GrantConstraints{EncryptionContextSubset: map[string]string{"app": "billing"}}, Name: aws.String("billing")})
		if err != nil || len(aws.ToString(g.GrantId)) != 64 {
			t.Fatalf("CreateGrant = %+v, %v", g, err)
		}
		enc, err := app.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.sym), Plaintext: []byte("x"),
			EncryptionContext: map[string]string{"app": "billing"}, GrantTokens: []string{aws.ToString(g.GrantToken)}})
		if err != nil {
			t.Fatalf("Encrypt with the grant token: %v", err)
		}
		if _, err := app.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"app": "billing"}}); err != nil {
			t.Fatalf("Decrypt by the grant: %v", err)
		}
		_, err = app.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.sym), Plaintext: []byte("x"), EncryptionContext: map[string]string{"app": "other"}})
		if errorCode(err) != "AccessDeniedException" {
			t.Fatalf("Encrypt outside the constraint: %v", err)
		}
		_, err = app.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.sym), Plaintext: []byte("x"), GrantTokens: []string{"garbage"}})
		var badToken *types.InvalidGrantTokenException
		if !errors.As(err, &badToken) {
			t.Fatalf("Encrypt with a bad grant token: %v, want *types.InvalidGrantTokenException", err)
		}
		var listed []types.GrantListEntry
		for p := kms.NewListGrantsPaginator(c, &kms.ListGrantsInput{KeyId: aws.String(keys.sym), Limit: aws.Int32(1)}); p.HasMorePages(); {
			pg, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("ListGrants: %v", err)
			}
			listed = append(listed, pg.Grants...)
		}
		if len(listed) != 1 || aws.ToString(listed[0].GrantId) != aws.ToString(g.GrantId) || listed[0].Constraints == nil ||
			listed[0].Constraints.EncryptionContextSubset["app"] != "billing" || len(listed[0].Operations) != 2 {
			t.Fatalf("ListGrants: %+v", listed)
		}
		r, err := c.ListRetirableGrants(ctx, &kms.ListRetirableGrantsInput{RetiringPrincipal: aws.String(arn)})
		if err != nil || len(r.Grants) != 1 {
			t.Fatalf("ListRetirableGrants = %+v, %v", r, err)
		}
		if _, err := app.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g.GrantToken}); err != nil {
			t.Fatalf("RetireGrant by the retiring principal: %v", err)
		}
		g2, err := c.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: aws.String(keys.sym), GranteePrincipal: aws.String(arn),
			Operations: []types.GrantOperation{types.GrantOperationGenerateDataKey}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: aws.String(keys.sym), GrantId: g2.GrantId}); err != nil {
			t.Fatalf("RevokeGrant: %v", err)
		}
		_, err = app.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keys.sym), KeySpec: types.DataKeySpecAes256})
		if errorCode(err) != "AccessDeniedException" {
			t.Fatalf("GenerateDataKey after RevokeGrant: %v", err)
		}
		_, err = c.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: aws.String(keys.sym), GrantId: g2.GrantId})
		var nf *types.NotFoundException
		if !errors.As(err, &nf) {
			t.Fatalf("RevokeGrant again: %v, want *types.NotFoundException", err)
		}
	})

	t.Run("RSA Encrypt Decrypt", func(t *testing.T) {
		ctx := t.Context()
		ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
		if err != nil {
			t.Fatal(err)
		}
		id := ck.KeyMetadata.KeyId
		pk, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: id})
		if err != nil || pk.KeyUsage != types.KeyUsageTypeEncryptDecrypt || len(pk.EncryptionAlgorithms) != 2 {
			t.Fatalf("GetPublicKey = %+v, %v", pk, err)
		}
		pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		offline, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), []byte("made offline"), nil)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: id, CiphertextBlob: offline, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
		if err != nil || string(dec.Plaintext) != "made offline" || dec.EncryptionAlgorithm != types.EncryptionAlgorithmSpecRsaesOaepSha256 {
			t.Fatalf("Decrypt of an offline ciphertext = %+v, %v", dec, err)
		}
		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("on the token"), EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha1})
		if err != nil || len(enc.CiphertextBlob) != 256 {
			t.Fatalf("Encrypt = %+v, %v", enc, err)
		}
		dec, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: id, CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha1})
		if err != nil || string(dec.Plaintext) != "on the token" {
			t.Fatalf("Decrypt = %+v, %v", dec, err)
		}
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("x")})
		var usage *types.InvalidKeyUsageException
		if !errors.As(err, &usage) {
			t.Fatalf("Encrypt with the default algorithm: %v, want a *types.InvalidKeyUsageException", err)
		}
	})

	t.Run("key policy", func(t *testing.T) {
		ctx := t.Context()
		p, err := c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(keys.sym)})
		if err != nil || aws.ToString(p.PolicyName) != "default" || !strings.Contains(aws.ToString(p.Policy), `"kms:*"`) {
			t.Fatalf("GetKeyPolicy = %+v, %v; want the default key policy", p, err)
		}
		l, err := c.ListKeyPolicies(ctx, &kms.ListKeyPoliciesInput{KeyId: aws.String(keys.sym)})
		if err != nil || len(l.PolicyNames) != 1 || l.PolicyNames[0] != "default" || l.Truncated {
			t.Fatalf("ListKeyPolicies = %+v, %v", l, err)
		}
		_, err = c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(keys.sym), Policy: p.Policy})
		var unsupported *types.UnsupportedOperationException
		if !errors.As(err, &unsupported) {
			t.Fatalf("PutKeyPolicy = %v, want UnsupportedOperationException", err)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		ctx := t.Context()
		st, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(keys.sym)})
		if err != nil || st.KeyRotationEnabled {
			t.Fatalf("GetKeyRotationStatus of a new key = %+v, %v; want disabled", st, err)
		}
		if _, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(keys.sym), RotationPeriodInDays: aws.Int32(90)}); err != nil {
			t.Fatalf("EnableKeyRotation: %v", err)
		}
		st, err = c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(keys.sym)})
		if err != nil || !st.KeyRotationEnabled || aws.ToInt32(st.RotationPeriodInDays) != 90 || st.NextRotationDate == nil ||
			st.NextRotationDate.Before(time.Now().Add(89*24*time.Hour)) {
			t.Fatalf("GetKeyRotationStatus after EnableKeyRotation(90) = %+v, %v", st, err)
		}
		if _, err := c.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: aws.String(keys.sym)}); err != nil {
			t.Fatalf("DisableKeyRotation: %v", err)
		}
		st, err = c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(keys.sym)})
		if err != nil || st.KeyRotationEnabled {
			t.Fatalf("GetKeyRotationStatus after DisableKeyRotation = %+v, %v", st, err)
		}

		before, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.sym), Plaintext: []byte("before rotation")})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			out, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keys.sym)})
			if err != nil || aws.ToString(out.KeyId) != keys.sym {
				t.Fatalf("RotateKeyOnDemand #%d = %+v, %v", i+1, out, err)
			}
		}
		var materials []string
		p := kms.NewListKeyRotationsPaginator(c, &kms.ListKeyRotationsInput{KeyId: aws.String(keys.sym), Limit: aws.Int32(1)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("ListKeyRotations: %v", err)
			}
			for _, r := range page.Rotations {
				if r.RotationType != types.RotationTypeOnDemand || r.RotationDate == nil {
					t.Fatalf("ListKeyRotations entry %+v: want ON_DEMAND with a date", r)
				}
				materials = append(materials, aws.ToString(r.KeyMaterialId))
			}
		}
		if !slices.Equal(materials, []string{"v2", "v3"}) {
			t.Fatalf("ListKeyRotations = %v, want [v2 v3]", materials)
		}
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: before.CiphertextBlob})
		if err != nil || string(dec.Plaintext) != "before rotation" {
			t.Fatalf("Decrypt of a pre-rotation ciphertext = %q, %v", dec.Plaintext, err)
		}
		after, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.sym), Plaintext: []byte("after rotation")})
		if err != nil {
			t.Fatal(err)
		}
		dec, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: after.CiphertextBlob})
		if err != nil || aws.ToString(dec.KeyMaterialId) != "v3" {
			t.Fatalf("Decrypt of a post-rotation ciphertext = %+v, %v; want key material v3", dec, err)
		}
	})

	t.Run("enable disable", func(t *testing.T) {
		ctx := t.Context()
		steps := []struct {
			name  string
			call  func() error
			state types.KeyState
			// encrypt reports whether Encrypt must work in this state.
			encrypt bool
		}{
			{"DisableKey", func() error {
				_, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(keys.kw)})
				return err
			}, types.KeyStateDisabled, false},
			{"EnableKey", func() error { _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(keys.kw)}); return err }, types.KeyStateEnabled, true},
			{"ScheduleKeyDeletion", func() error {
				out, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(keys.kw), PendingWindowInDays: aws.Int32(7)})
				if err == nil && (out.KeyState != types.KeyStatePendingDeletion || aws.ToInt32(out.PendingWindowInDays) != 7 ||
					out.DeletionDate == nil || out.DeletionDate.Before(time.Now().Add(6*24*time.Hour))) {
					t.Errorf("ScheduleKeyDeletion = %+v", out)
				}
				return err
			}, types.KeyStatePendingDeletion, false},
			{"CancelKeyDeletion", func() error {
				out, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(keys.kw)})
				if err == nil && aws.ToString(out.KeyId) != keyARNPre+keys.kw {
					t.Errorf("CancelKeyDeletion = %+v", out)
				}
				return err
			}, types.KeyStateDisabled, false},
			{"EnableKey again", func() error { _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(keys.kw)}); return err }, types.KeyStateEnabled, true},
		}
		for _, s := range steps {
			if err := s.call(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keys.kw)})
			if err != nil || d.KeyMetadata.KeyState != s.state || d.KeyMetadata.Enabled != (s.state == types.KeyStateEnabled) {
				t.Fatalf("after %s: DescribeKey = %+v, %v; want %s", s.name, d.KeyMetadata, err, s.state)
			}
			_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.kw), Plaintext: []byte("x")})
			if (err == nil) != s.encrypt {
				t.Fatalf("after %s: Encrypt err = %v, want success %v", s.name, err, s.encrypt)
			}
		}
	})

	t.Run("tags", func(t *testing.T) {
		ctx := t.Context()
		tag := func(k, v string) types.Tag { return types.Tag{TagKey: aws.String(k), TagValue: aws.String(v)} }
		if _, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(keys.kw), Tags: []types.Tag{tag("team", "a"), tag("env", "test")}}); err != nil {
			t.Fatalf("TagResource: %v", err)
		}
		if _, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(keys.kw), Tags: []types.Tag{tag("team", "b")}}); err != nil {
			t.Fatalf("TagResource (replace): %v", err)
		}
		if _, err := c.UntagResource(ctx, &kms.UntagResourceInput{KeyId: aws.String(keys.kw), TagKeys: []string{"env", "absent"}}); err != nil {
			t.Fatalf("UntagResource: %v", err)
		}
		out, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(keys.kw)})
		if err != nil {
			t.Fatalf("ListResourceTags: %v", err)
		}
		got := map[string]string{}
		for _, tg := range out.Tags {
			got[aws.ToString(tg.TagKey)] = aws.ToString(tg.TagValue)
		}
		if want := map[string]string{"hsmkms:mechanism": "aes-kw", "team": "b"}; !mapEqual(got, want) || out.Truncated {
			t.Fatalf("ListResourceTags = %v (truncated %v), want %v", got, out.Truncated, want)
		}
		// The SDK's paginator, one tag a page: Limit and Marker honoured.
		var paged []string
		for p := kms.NewListResourceTagsPaginator(c, &kms.ListResourceTagsInput{KeyId: aws.String(keys.kw), Limit: aws.Int32(1)}); p.HasMorePages(); {
			pg, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("ListResourceTags page: %v", err)
			}
			if len(pg.Tags) != 1 {
				t.Fatalf("a page of Limit 1 holds %d tags", len(pg.Tags))
			}
			paged = append(paged, aws.ToString(pg.Tags[0].TagKey))
		}
		if !slices.Equal(paged, []string{"hsmkms:mechanism", "team"}) {
			t.Fatalf("pages %v", paged)
		}
	})

	t.Run("typed errors", func(t *testing.T) { sdkErrors(t, c, keys) })

	t.Run("every operation succeeded once", func(t *testing.T) {
		ops := trentOperations(t)
		metrics := string(ts.metrics(t).body)
		for _, op := range ops {
			if op == "PutKeyPolicy" {
				// Refused by design (keys' policies cannot change): driven
				// to its refusal instead.
				if !strings.Contains(metrics, `hsmkms_requests_total{operation="PutKeyPolicy",outcome="UnsupportedOperationException"}`) {
					t.Error("no PutKeyPolicy refused as UnsupportedOperationException in /metrics: the SDK test does not drive it")
				}
				continue
			}
			if !strings.Contains(metrics, `hsmkms_requests_total{operation="`+op+`",outcome="ok"}`) {
				t.Errorf("no successful %s in /metrics: the SDK test does not drive it", op)
			}
		}
	})
}

// trentOperations reads the TrentService operations of the route table.
func trentOperations(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("../api/routes.go")
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, m := range regexp.MustCompile(`kmsPrefix \+ "(\w+)"`).FindAllStringSubmatch(string(src), -1) {
		ops = append(ops, m[1])
	}
	if len(ops) < 28 {
		t.Fatalf("found %d TrentService routes in routes.go, want at least 28: %v", len(ops), ops)
	}
	return ops
}

// sdkErrors checks that the SDK decodes each error type as its modeled
// type (ValidationException, which is not modeled, by its code).
func sdkErrors(t *testing.T, c *kms.Client, keys sdkKeys) {
	ctx := t.Context()
	mk := func(in *kms.CreateKeyInput) string {
		out, err := c.CreateKey(ctx, in)
		if err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		return *out.KeyMetadata.KeyId
	}
	disabled, pending := mk(&kms.CreateKeyInput{}), mk(&kms.CreateKeyInput{})
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(disabled)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(pending), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/sdk-taken"), TargetKeyId: aws.String(keys.sym)}); err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.sym), Plaintext: []byte("secret")})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(enc.CiphertextBlob)
	tampered[len(tampered)-1] ^= 1
	sig, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(keys.ecc), Message: []byte("signed"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(keys.rsa), Message: []byte("signed"), SigningAlgorithm: types.SigningAlgorithmSpecRsassaPssSha256})
	if err != nil {
		t.Fatal(err)
	}
	badRSASig := bytes.Clone(rsaSig.Signature)
	badRSASig[10] ^= 0x80
	// A Nitro Enclaves attestation document (its content is never read:
	// the request is refused for naming one), and a check that a refused
	// call returned no plaintext beside its error.
	attested := &types.RecipientInfo{KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256, AttestationDocument: []byte("attestation")}
	noPlaintext := func(gotPlaintext bool, err error) error {
		if gotPlaintext {
			t.Errorf("a plaintext came back beside %v", err)
		}
		return err
	}

	cases := []struct {
		name string
		call func() error
		is   func(error) bool
		code string
	}{
		{"DescribeKey of an unknown key", func() error {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("6f1d3a2e-0000-4000-8000-000000000000")})
			return err
		}, isA[*types.NotFoundException], "NotFoundException"},
		{"Encrypt with an unknown alias", func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/none-such"), Plaintext: []byte("x")})
			return err
		}, isA[*types.NotFoundException], "NotFoundException"},
		{"Encrypt with a disabled key", func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(disabled), Plaintext: []byte("x")})
			return err
		}, isA[*types.DisabledException], "DisabledException"},
		{"Encrypt with a key pending deletion", func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(pending), Plaintext: []byte("x")})
			return err
		}, isA[*types.KMSInvalidStateException], "KMSInvalidStateException"},
		{"CancelKeyDeletion of a key not pending deletion", func() error {
			_, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(disabled)})
			return err
		}, isA[*types.KMSInvalidStateException], "KMSInvalidStateException"},
		{"CreateAlias of a taken name", func() error {
			_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/sdk-taken"), TargetKeyId: aws.String(keys.kw)})
			return err
		}, isA[*types.AlreadyExistsException], "AlreadyExistsException"},
		{"Decrypt as a dry run", func() error {
			out, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, DryRun: aws.Bool(true)})
			return noPlaintext(out != nil && out.Plaintext != nil, err)
		}, isA[*types.UnsupportedOperationException], "UnsupportedOperationException"},
		{"Sign as a dry run", func() error {
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(keys.ecc), Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256, DryRun: aws.Bool(true)})
			return err
		}, isA[*types.UnsupportedOperationException], "UnsupportedOperationException"},
		{"Decrypt for an enclave (Recipient)", func() error {
			out, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: attested})
			return noPlaintext(out != nil && out.Plaintext != nil, err)
		}, isA[*types.UnsupportedOperationException], "UnsupportedOperationException"},
		{"GenerateDataKey for an enclave (Recipient)", func() error {
			out, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keys.sym), KeySpec: types.DataKeySpecAes256, Recipient: attested})
			return noPlaintext(out != nil && out.Plaintext != nil, err)
		}, isA[*types.UnsupportedOperationException], "UnsupportedOperationException"},
		{"GenerateRandom for an enclave (Recipient)", func() error {
			out, err := c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32), Recipient: attested})
			return noPlaintext(out != nil && out.Plaintext != nil, err)
		}, isA[*types.UnsupportedOperationException], "UnsupportedOperationException"},
		{"Decrypt of a tampered blob", func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: tampered})
			return err
		}, isA[*types.InvalidCiphertextException], "InvalidCiphertextException"},
		{"Decrypt of bytes that are no blob", func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("not an hsmkms ciphertext at all")})
			return err
		}, isA[*types.InvalidCiphertextException], "InvalidCiphertextException"},
		{"Decrypt naming another key", func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, KeyId: aws.String(keys.kw)})
			return err
		}, isA[*types.IncorrectKeyException], "IncorrectKeyException"},
		{"Encrypt with a signing key", func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keys.ecc), Plaintext: []byte("x")})
			return err
		}, isA[*types.InvalidKeyUsageException], "InvalidKeyUsageException"},
		{"Sign with a symmetric key", func() error {
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(keys.sym), Message: []byte("x"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
			return err
		}, isA[*types.InvalidKeyUsageException], "InvalidKeyUsageException"},
		{"Sign with an algorithm the key lacks", func() error {
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(keys.ecc), Message: []byte("x"), SigningAlgorithm: types.SigningAlgorithmSpecRsassaPssSha256})
			return err
		}, isA[*types.InvalidKeyUsageException], "InvalidKeyUsageException"},
		{"Verify of another message", func() error {
			_, err := c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(keys.ecc), Message: []byte("not signed"), Signature: sig.Signature,
				SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
			return err
		}, isA[*types.KMSInvalidSignatureException], "KMSInvalidSignatureException"},
		{"Verify of an altered RSA signature", func() error {
			_, err := c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(keys.rsa), Message: []byte("signed"), Signature: badRSASig,
				SigningAlgorithm: types.SigningAlgorithmSpecRsassaPssSha256})
			return err
		}, isA[*types.KMSInvalidSignatureException], "KMSInvalidSignatureException"},
		{"CreateAlias in the reserved alias/aws/", func() error {
			_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/aws/mine"), TargetKeyId: aws.String(keys.sym)})
			return err
		}, isA[*types.InvalidAliasNameException], "InvalidAliasNameException"},
		{"CreateAlias with a bad character", func() error {
			_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/bad name!"), TargetKeyId: aws.String(keys.sym)})
			return err
		}, nil, "ValidationException"}, // AWS's pattern constraint on aliasName
		{"GenerateDataKey on an aes-kw key with a context", func() error {
			_, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keys.kw), KeySpec: types.DataKeySpecAes256,
				EncryptionContext: map[string]string{"a": "b"}})
			return err
		}, nil, "ValidationException"},
		{"GenerateRandom of 0 bytes", func() error {
			_, err := c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(0)})
			return err
		}, nil, "ValidationException"},
		{"ScheduleKeyDeletion with a 3-day window", func() error {
			_, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(keys.sym), PendingWindowInDays: aws.Int32(3)})
			return err
		}, nil, "ValidationException"},
	}
	for _, tc := range cases {
		err := tc.call()
		if err == nil {
			t.Errorf("%s: no error, want %s", tc.name, tc.code)
			continue
		}
		if tc.is != nil && !tc.is(err) {
			t.Errorf("%s: err = %v (%T), want the SDK's typed %s", tc.name, err, err, tc.code)
		}
		if got := errorCode(err); got != tc.code {
			t.Errorf("%s: ErrorCode() = %q, want %q (err %v)", tc.name, got, tc.code, err)
		}
		if s := httpStatus(err); s < 400 || s >= 500 {
			t.Errorf("%s: HTTP status %d, want 4xx", tc.name, s)
		}
	}
}

// verifyLocally checks a KMS signature of digest with Go's crypto.
func verifyLocally(pub any, alg types.SigningAlgorithmSpec, digest, sig []byte) error {
	switch alg {
	case types.SigningAlgorithmSpecEcdsaSha256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	case types.SigningAlgorithmSpecRsassaPssSha256:
		k, _ := pub.(*rsa.PublicKey)
		if k == nil {
			return errors.New("not an RSA key")
		}
		return rsa.VerifyPSS(k, crypto.SHA256, digest, sig, nil)
	case types.SigningAlgorithmSpecRsassaPkcs1V15Sha256:
		k, _ := pub.(*rsa.PublicKey)
		if k == nil {
			return errors.New("not an RSA key")
		}
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig)
	}
	return errors.New("unknown algorithm " + string(alg))
}

// mapEqual compares two string maps.
func mapEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestAdminClient drives the admin operations: a principal is created,
// listed, works with the SDK, and is deleted, after which its signature is
// no longer recognised; GetTokenInfo describes the server's token.
func TestAdminClient(t *testing.T) {
	ts := startServer(t)
	ctx := t.Context()
	admin := ts.admin(rootCreds)
	stmts := []policy.Statement{{Effect: "Allow", Actions: []string{"kms:CreateKey", "kms:DescribeKey"}, Resources: []string{"*"}}}
	p, err := admin.CreatePrincipal(ctx, service.CreatePrincipalInput{Name: "app-one", Statements: stmts})
	if err != nil || p.Name != "app-one" || p.AccessKeyId == "" || len(p.SecretAccessKey) < 16 {
		t.Fatalf("CreatePrincipal = %+v, %v", p, err)
	}
	appCreds := aws.Credentials{AccessKeyID: p.AccessKeyId, SecretAccessKey: p.SecretAccessKey}

	list, err := admin.ListPrincipals(ctx, service.ListInput{})
	if err != nil {
		t.Fatalf("ListPrincipals: %v", err)
	}
	names := map[string]string{}
	for _, e := range list.Principals {
		names[e.AccessKeyId] = e.Name
		if e.AccessKeyId == p.AccessKeyId && (len(e.Statements) != 1 || !slices.Equal(e.Statements[0].Actions, stmts[0].Actions)) {
			t.Fatalf("ListPrincipals entry %+v: want its statements", e)
		}
	}
	if want := map[string]string{rootID: "root", p.AccessKeyId: "app-one"}; !mapEqual(names, want) || list.Truncated {
		t.Fatalf("ListPrincipals = %v, want %v", names, want)
	}
	page, err := admin.ListPrincipals(ctx, service.ListInput{Limit: 1})
	if err != nil || len(page.Principals) != 1 || !page.Truncated || page.NextMarker == "" {
		t.Fatalf("ListPrincipals(Limit 1) = %+v, %v; want one and a marker", page, err)
	}

	info, err := admin.GetTokenInfo(ctx)
	if err != nil || info.Token.Label != testLabel || !info.Health.Ready || info.Pool.Size <= 0 {
		t.Fatalf("GetTokenInfo = %+v, %v; want label %s, ready", info, err, testLabel)
	}

	app := ts.kmsClient(appCreds)
	created, err := app.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("CreateKey as the new principal: %v", err)
	}
	if _, err := app.DisableKey(ctx, &kms.DisableKeyInput{KeyId: created.KeyMetadata.KeyId}); errorCode(err) != "AccessDeniedException" {
		t.Fatalf("DisableKey outside the principal's policy: err = %v, want AccessDeniedException", err)
	}
	var ae *adminclient.Error
	if _, err := ts.admin(appCreds).ListPrincipals(ctx, service.ListInput{}); !errors.As(err, &ae) || ae.Type != "AccessDeniedException" {
		t.Fatalf("ListPrincipals by a principal without the right: err = %v, want AccessDeniedException", err)
	}

	if err := admin.DeletePrincipal(ctx, p.AccessKeyId); err != nil {
		t.Fatalf("DeletePrincipal: %v", err)
	}
	if err := admin.DeletePrincipal(ctx, p.AccessKeyId); !errors.As(err, &ae) || ae.Type != "NotFoundException" || ae.Status != 400 {
		t.Fatalf("DeletePrincipal of a deleted principal: err = %v, want NotFoundException 400", err)
	}
	if err := admin.DeletePrincipal(ctx, rootID); !errors.As(err, &ae) || ae.Type != "ValidationException" {
		t.Fatalf("DeletePrincipal of oneself: err = %v, want ValidationException", err)
	}
	if _, err := app.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: created.KeyMetadata.KeyId}); errorCode(err) != "UnrecognizedClientException" {
		t.Fatalf("DescribeKey by a deleted principal: err = %v, want UnrecognizedClientException", err)
	}
	list, err = admin.ListPrincipals(ctx, service.ListInput{})
	if err != nil || len(list.Principals) != 1 || list.Principals[0].AccessKeyId != rootID {
		t.Fatalf("ListPrincipals after the deletion = %+v, %v; want root only", list, err)
	}
}
