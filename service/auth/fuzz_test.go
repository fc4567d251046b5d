package auth

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// fuzzSDKHeader is the Authorization header the AWS SDK's signer writes for
// a KMS request at a fixed time: the one shape every client sends.
func fuzzSDKHeader(f *testing.F) string {
	f.Helper()
	r, err := http.NewRequest(http.MethodPost, "https://127.0.0.1:8080/", strings.NewReader(`{"KeyId":"alias/x"}`))
	if err != nil {
		f.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "TrentService.DescribeKey")
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: "AKIAFUZZ000000000001", SecretAccessKey: "fuzz-secret"}
	const emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, emptySHA, "kms", "us-east-1", at); err != nil {
		f.Fatal(err)
	}
	return r.Header.Get("Authorization")
}

// fuzzAuthCodes are the codes an *Error may carry.
var fuzzAuthCodes = []string{CodeMissingToken, CodeIncomplete, CodeInvalid, CodeUnknownClient, CodeThrottled}

// fuzzWellFormedID restates the documented forms of Error.AccessKeyID and
// of a parsed claim: 16 to 128 of A-Z 0-9, or Malformed. Anything else
// would let a client write its own text, of any length, into the audit
// trail.
func fuzzWellFormedID(id string) bool {
	if id == Malformed {
		return true
	}
	if len(id) < 16 || len(id) > 128 {
		return false
	}
	return strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == ""
}

// FuzzParseAuthorization: parseAuthorization never panics; it fails only
// with an *Error whose Code is one of the package's codes and whose
// AccessKeyID is "", Malformed or a well-formed ID (so at most 128
// bytes); and what it accepts has every part exactly once, no other part,
// a non-empty access key ID, signature and signed header list, and reads
// back the same from the header the SDK would write for it.
func FuzzParseAuthorization(f *testing.F) {
	sdk := fuzzSDKHeader(f)
	if _, err := parseAuthorization(sdk); err != nil {
		f.Fatalf("the SDK's own header %q: %v", sdk, err)
	}
	const (
		cred = "Credential=AKIAFUZZ000000000001/20240102/us-east-1/kms/aws4_request"
		sh   = "SignedHeaders=content-type;host;x-amz-date;x-amz-target"
		sig  = "Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	)
	long := strings.Repeat("A", 200)
	for _, h := range []string{
		sdk,
		"",
		"AWS4-HMAC-SHA256",
		"AWS4-HMAC-SHA256 ",
		"AWS4-HMAC-SHA1 " + cred + ", " + sh + ", " + sig,
		"aws4-hmac-sha256 " + cred + ", " + sh + ", " + sig,
		"AWS4-HMAC-SHA256 " + cred + ", " + sh + ", " + sig,
		"AWS4-HMAC-SHA256 " + cred + "," + sh + "," + sig,
		"AWS4-HMAC-SHA256 " + sig + ", " + sh + ", " + cred,
		"AWS4-HMAC-SHA256 " + cred + ", " + sh,                                                // no signature
		"AWS4-HMAC-SHA256 " + cred + ", " + sig,                                               // no signed headers
		"AWS4-HMAC-SHA256 " + sh + ", " + sig,                                                 // no credential
		"AWS4-HMAC-SHA256 " + cred + ", " + cred + ", " + sh + ", " + sig,                     // duplicate
		"AWS4-HMAC-SHA256 " + cred + ", " + sh + ", " + sh + ", " + sig,                       // duplicate
		"AWS4-HMAC-SHA256 " + cred + ", " + sh + ", " + sig + ", " + sig,                      // duplicate
		"AWS4-HMAC-SHA256 " + cred + ", " + sh + ", " + sig + ", Expires=1",                   // unknown part
		"AWS4-HMAC-SHA256 " + cred + ", " + sh + ", " + sig + ",",                             // empty part
		"AWS4-HMAC-SHA256 Credential=" + long + "/20240102/us-east-1/kms/aws4_request, " + sh, // long ID, then a failure
		"AWS4-HMAC-SHA256 Credential=" + long + "/20240102/us-east-1/kms/aws4_request, " + sh + ", " + sig,
		"AWS4-HMAC-SHA256 Credential=akia lower/20240102/us-east-1/kms/aws4_request, " + sh + ", " + sig,
		"AWS4-HMAC-SHA256 Credential=AKIAFUZZ000000000001/20240102/us-east-1/kms, " + sh + ", " + sig,
		"AWS4-HMAC-SHA256 Credential=/20240102/us-east-1/kms/aws4_request, " + sh + ", " + sig,
		"AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=, " + sig,
		"AWS4-HMAC-SHA256 " + cred + ", " + sh + ", Signature=",
		"AWS4-HMAC-SHA256 " + cred + ", " + sh + ", Signature==",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		a, err := parseAuthorization(h)
		if err != nil {
			ae, ok := err.(*Error)
			if !ok {
				t.Fatalf("parseAuthorization(%q) = %T %v, want an *auth.Error", h, err, err)
			}
			if !slices.Contains(fuzzAuthCodes, ae.Code) {
				t.Fatalf("parseAuthorization(%q): code %q is not one of %v", h, ae.Code, fuzzAuthCodes)
			}
			if len(ae.AccessKeyID) > 128 || (ae.AccessKeyID != "" && !fuzzWellFormedID(ae.AccessKeyID)) {
				t.Fatalf("parseAuthorization(%q): the error claims access key ID %q (%d bytes)", h, ae.AccessKeyID, len(ae.AccessKeyID))
			}
			if h == "" && ae.Code != CodeMissingToken {
				t.Fatalf("no Authorization header gave %s, want %s", ae.Code, CodeMissingToken)
			}
			return
		}
		if a.accessKeyID == "" || a.signature == "" || len(a.signedHeaders) == 0 {
			t.Fatalf("parseAuthorization(%q) accepted %+v: an empty access key ID, signature or signed header list", h, a)
		}
		if !fuzzWellFormedID(a.accessKeyID) {
			t.Fatalf("parseAuthorization(%q) accepted access key ID %q", h, a.accessKeyID)
		}
		rest, ok := strings.CutPrefix(h, algorithm+" ")
		if !ok {
			t.Fatalf("parseAuthorization(%q) accepted a header of another algorithm", h)
		}
		// Each part exactly once and nothing else: with a repeated part a
		// proxy and the server could each read a different one.
		count := map[string]int{}
		for part := range strings.SplitSeq(rest, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			count[name]++
		}
		if len(count) != 3 || count["Credential"] != 1 || count["SignedHeaders"] != 1 || count["Signature"] != 1 {
			t.Fatalf("parseAuthorization(%q) accepted parts %v", h, count)
		}
		// The parse is a function of the fields alone: the header the SDK
		// would write for them parses to the same fields.
		again := algorithm + " Credential=" + strings.Join([]string{a.accessKeyID, a.date, a.region, a.service, "aws4_request"}, "/") +
			", SignedHeaders=" + strings.Join(a.signedHeaders, ";") + ", Signature=" + a.signature
		b, err := parseAuthorization(again)
		if err != nil || b.accessKeyID != a.accessKeyID || b.date != a.date || b.region != a.region ||
			b.service != a.service || b.signature != a.signature || !slices.Equal(b.signedHeaders, a.signedHeaders) {
			t.Fatalf("parseAuthorization(%q) = %+v, but its SDK form %q gives %+v, %v", h, a, again, b, err)
		}
	})
}
