package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
)

// newPrincipal creates a principal through the admin client and returns
// its credentials.
func (ts *testServer) newPrincipal(t *testing.T, name string, stmts ...policy.Statement) aws.Credentials {
	t.Helper()
	p, err := ts.admin(rootCreds).CreatePrincipal(t.Context(), service.CreatePrincipalInput{Name: name, Statements: stmts})
	if err != nil {
		t.Fatalf("CreatePrincipal(%s): %v", name, err)
	}
	return aws.Credentials{AccessKeyID: p.AccessKeyId, SecretAccessKey: p.SecretAccessKey}
}

// newKey creates a symmetric key as root and returns its ID.
func newKey(t *testing.T, c *kms.Client, in *kms.CreateKeyInput) string {
	t.Helper()
	if in == nil {
		in = &kms.CreateKeyInput{}
	}
	out, err := c.CreateKey(t.Context(), in)
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}

// TestPolicyDenials proves that a principal allowed only kms:Encrypt on key
// A can encrypt with A and do nothing else, on A or on B; that a principal
// with every right on B only cannot decrypt a ciphertext of A it holds
// (having the stored data is not having the key); and that each denial is
// an AccessDeniedException that writes exactly one "denied" audit record.
func TestPolicyDenials(t *testing.T) {
	ts := startServer(t)
	ctx := t.Context()
	root := ts.kmsClient(rootCreds)
	keyA, keyB := newKey(t, root, nil), newKey(t, root, nil)
	if _, err := root.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/key-b"), TargetKeyId: aws.String(keyB)}); err != nil {
		t.Fatal(err)
	}
	encA := ts.newPrincipal(t, "encrypt-a", policy.Statement{Effect: "Allow", Actions: []string{"kms:Encrypt"}, Resources: []string{keyARNPre + keyA}})
	allB := ts.newPrincipal(t, "all-on-b", policy.Statement{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{keyB}})
	encClient, bClient := ts.kmsClient(encA), ts.kmsClient(allB)

	ctA, err := encClient.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyA), Plaintext: []byte("data of A")})
	if err != nil {
		t.Fatalf("Encrypt on A by a principal allowed kms:Encrypt on A: %v", err)
	}
	ctB, err := bClient.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyB), Plaintext: []byte("data of B")})
	if err != nil {
		t.Fatalf("Encrypt on B by a principal allowed kms:* on B: %v", err)
	}
	if dec, err := bClient.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ctB.CiphertextBlob}); err != nil || string(dec.Plaintext) != "data of B" {
		t.Fatalf("Decrypt on B by a principal allowed kms:* on B = %q, %v", dec.Plaintext, err)
	}

	// Every call below must be denied, whatever else would be wrong with it.
	cases := []struct {
		name      string
		who       aws.Credentials
		call      func(*kms.Client) error
		principal string
	}{
		{"Decrypt on A (only Encrypt allowed)", encA, func(c *kms.Client) error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ctA.CiphertextBlob})
			return err
		}, encA.AccessKeyID},
		{"GenerateDataKey on A", encA, func(c *kms.Client) error {
			_, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyA), KeySpec: types.DataKeySpecAes256})
			return err
		}, encA.AccessKeyID},
		{"DescribeKey on A", encA, func(c *kms.Client) error {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyA)})
			return err
		}, encA.AccessKeyID},
		{"DisableKey on A", encA, func(c *kms.Client) error {
			_, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(keyA)})
			return err
		}, encA.AccessKeyID},
		{"Encrypt on B", encA, func(c *kms.Client) error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyB), Plaintext: []byte("x")})
			return err
		}, encA.AccessKeyID},
		{"Encrypt on B by alias", encA, func(c *kms.Client) error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/key-b"), Plaintext: []byte("x")})
			return err
		}, encA.AccessKeyID},
		{"Decrypt on B", encA, func(c *kms.Client) error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ctB.CiphertextBlob})
			return err
		}, encA.AccessKeyID},
		{"GenerateDataKeyWithoutPlaintext on B", encA, func(c *kms.Client) error {
			_, err := c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(keyB), KeySpec: types.DataKeySpecAes256})
			return err
		}, encA.AccessKeyID},
		{"ReEncrypt from B to A", encA, func(c *kms.Client) error {
			_, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: ctB.CiphertextBlob, DestinationKeyId: aws.String(keyA)})
			return err
		}, encA.AccessKeyID},
		{"DescribeKey on B", encA, func(c *kms.Client) error {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyB)})
			return err
		}, encA.AccessKeyID},
		{"DisableKey on B", encA, func(c *kms.Client) error {
			_, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(keyB)})
			return err
		}, encA.AccessKeyID},
		{"ScheduleKeyDeletion on B", encA, func(c *kms.Client) error {
			_, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(keyB), PendingWindowInDays: aws.Int32(7)})
			return err
		}, encA.AccessKeyID},
		{"RotateKeyOnDemand on B", encA, func(c *kms.Client) error {
			_, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyB)})
			return err
		}, encA.AccessKeyID},
		{"TagResource on B", encA, func(c *kms.Client) error {
			_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(keyB), Tags: []types.Tag{{TagKey: aws.String("k"), TagValue: aws.String("v")}}})
			return err
		}, encA.AccessKeyID},
		{"ListResourceTags on B", encA, func(c *kms.Client) error {
			_, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(keyB)})
			return err
		}, encA.AccessKeyID},
		{"CreateAlias to B", encA, func(c *kms.Client) error {
			_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/stolen"), TargetKeyId: aws.String(keyB)})
			return err
		}, encA.AccessKeyID},
		{"DeleteAlias of B", encA, func(c *kms.Client) error {
			_, err := c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/key-b")})
			return err
		}, encA.AccessKeyID},
		{"CreateKey", encA, func(c *kms.Client) error {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
			return err
		}, encA.AccessKeyID},
		{"ListKeys", encA, func(c *kms.Client) error {
			_, err := c.ListKeys(ctx, &kms.ListKeysInput{})
			return err
		}, encA.AccessKeyID},
		{"Decrypt of a ciphertext of A by a principal with rights on B only", allB, func(c *kms.Client) error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ctA.CiphertextBlob})
			return err
		}, allB.AccessKeyID},
		{"ReEncrypt of a ciphertext of A to B by a principal with rights on B only", allB, func(c *kms.Client) error {
			_, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: ctA.CiphertextBlob, DestinationKeyId: aws.String(keyB)})
			return err
		}, allB.AccessKeyID},
	}
	for _, tc := range cases {
		err := tc.call(ts.kmsClient(tc.who))
		if code := errorCode(err); code != "AccessDeniedException" || httpStatus(err) != http.StatusBadRequest {
			t.Errorf("%s: err = %v (status %d), want AccessDeniedException 400", tc.name, err, httpStatus(err))
			continue
		}
		id := requestID(t, err)
		ts.wantOneDenial(t, id, "AccessDeniedException")
		if r := ts.auditFor(t, id)[0]; r.Principal != tc.principal {
			t.Errorf("%s: audit principal %q, want %q", tc.name, r.Principal, tc.principal)
		}
	}

	// The denials changed nothing.
	for _, id := range []string{keyA, keyB} {
		d, err := root.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil || d.KeyMetadata.KeyState != types.KeyStateEnabled {
			t.Fatalf("DescribeKey(%s) after the denials = %+v, %v; want Enabled", id, d, err)
		}
	}
	tags, err := root.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(keyB)})
	if err != nil || len(tags.Tags) != 0 {
		t.Fatalf("ListResourceTags(B) after a denied TagResource = %+v, %v; want none", tags, err)
	}
	if a, err := root.ListAliases(ctx, &kms.ListAliasesInput{}); err != nil || len(a.Aliases) != 1 {
		t.Fatalf("ListAliases after denied alias changes = %+v, %v; want alias/key-b only", a, err)
	}
}

// encryptBody is a valid Encrypt request body for keyID.
func encryptBody(t *testing.T, keyID string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"KeyId": keyID, "Plaintext": []byte("hello, signer")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuthenticationFailures sends raw SigV4 requests that must not
// authenticate: a wrong secret, a body changed after signing, a signature
// more than 5 minutes old or in the future, an unknown access key, other
// scopes, a malformed or missing Authorization header. Each is refused with
// the AWS error type and status, never reaches the key service, and
// writes exactly one "denied" audit record.
func TestAuthenticationFailures(t *testing.T) {
	ts := startServer(t)
	keyID := newKey(t, ts.kmsClient(rootCreds), nil)
	const target = "TrentService.Encrypt"
	body := encryptBody(t, keyID)
	wrongSecret := aws.Credentials{AccessKeyID: rootID, SecretAccessKey: "not-the-root-secret-0123456789abcdef"}

	cases := []struct {
		name    string
		req     func() *http.Request
		status  int
		code    string
		msgHas  string
		claimed string // the access key ID the audit record names
	}{
		{"wrong secret", func() *http.Request { return ts.signedRequest(t, target, body, wrongSecret, time.Now()) },
			400, "InvalidSignatureException", "signature", rootID},
		{"body changed after signing", func() *http.Request {
			req := ts.signedRequest(t, target, body, rootCreds, time.Now())
			changed := []byte(strings.Replace(string(body), "aGVsbG8", "aGVsbG9", 1)) // same length
			if len(changed) != len(body) || string(changed) == string(body) {
				t.Fatal("the changed body must differ and have the same length")
			}
			req.Body = readCloser(changed)
			return req
		}, 400, "InvalidSignatureException", "signature", rootID},
		{"signed 6 minutes ago", func() *http.Request {
			return ts.signedRequest(t, target, body, rootCreds, time.Now().Add(-6*time.Minute))
		},
			400, "InvalidSignatureException", "Signature expired", rootID},
		{"signed 6 minutes in the future", func() *http.Request {
			return ts.signedRequest(t, target, body, rootCreds, time.Now().Add(6*time.Minute))
		}, 400, "InvalidSignatureException", "Signature expired", rootID},
		{"unknown access key", func() *http.Request {
			return ts.signedRequest(t, target, body, aws.Credentials{AccessKeyID: "AKIANOSUCHPRINCIPAL0", SecretAccessKey: rootSecret}, time.Now())
		}, 400, "UnrecognizedClientException", "security token", "AKIANOSUCHPRINCIPAL0"},
		{"credential scoped to another region", func() *http.Request {
			req := ts.signedRequest(t, target, body, rootCreds, time.Now())
			req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), "/"+region+"/", "/eu-west-1/", 1))
			return req
		}, 400, "InvalidSignatureException", "region", rootID},
		{"not SigV4", func() *http.Request {
			req := ts.unsignedRequest(t, target, body)
			req.Header.Set("Authorization", "Bearer abc")
			return req
		}, 400, "IncompleteSignatureException", "AWS4-HMAC-SHA256", ""},
		{"no Authorization header", func() *http.Request { return ts.unsignedRequest(t, target, body) },
			403, "MissingAuthenticationTokenException", "Missing Authentication Token", ""},
	}
	for _, tc := range cases {
		r := send(t, tc.req())
		if r.status != tc.status || r.typ != tc.code || !strings.Contains(r.msg, tc.msgHas) {
			t.Errorf("%s: %d %s %q, want %d %s mentioning %q", tc.name, r.status, r.typ, r.msg, tc.status, tc.code, tc.msgHas)
			continue
		}
		if strings.Contains(r.msg, rootSecret) || strings.Contains(r.msg, wrongSecret.SecretAccessKey) {
			t.Errorf("%s: the message %q holds a secret", tc.name, r.msg)
		}
		id := r.header.Get("X-Amzn-RequestId")
		ts.wantOneDenial(t, id, tc.code)
		if rec := ts.auditFor(t, id)[0]; rec.Principal != tc.claimed || rec.Action != "kms:Encrypt" {
			t.Errorf("%s: audit record %+v, want principal %q and action kms:Encrypt", tc.name, rec, tc.claimed)
		}
	}
	// Signed correctly, within the skew, the same request works: the
	// failures above were the signatures, not the request, and fewer than
	// the failure budget.
	for _, skew := range []time.Duration{-4 * time.Minute, 0, 4 * time.Minute} {
		if r := send(t, ts.signedRequest(t, target, body, rootCreds, time.Now().Add(skew))); r.status != http.StatusOK {
			t.Fatalf("a correct request signed %v from now: %d %s %s", skew, r.status, r.typ, r.msg)
		}
	}
}

// readCloser is a request body of b.
func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }
