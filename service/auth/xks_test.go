package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hsmkms/hsmkms/service"
)

const (
	xksService = "kms-xks-proxy"
	// An XKS access key ID is 20 to 30 of A-Z 2-7, its secret 43 to 64
	// Base64 characters.
	xksID     = "MUBSXM6K3KMXHN6RRCXI7TWQH4"
	xksSecret = "FYtE5EFA5FT0mCc3DrGUe2sti527BitkQ0Zr9MO9fvE"
	xksPath   = "/example/prefix/kms/xks/v1/keys/abc/encrypt"
)

var (
	xksBody  = []byte(`{"requestMetadata":{"kmsRequestId":"r","kmsOperation":"Encrypt"},"plaintext":"AA=="}`)
	xksCreds = aws.Credentials{AccessKeyID: xksID, SecretAccessKey: xksSecret}
)

// xksCall is an XKS request for the SDK's signer to sign.
type xksCall struct {
	path, service, region string
	creds                 aws.Credentials
	at                    time.Time
	// signed lists what the signer signs besides host and x-amz-date:
	// "content-type" (as curl signs it with -H) or "content-length" (as
	// the SDK's signer signs a body by default). AWS KMS signs neither.
	signed []string
}

// xksCallAt is xksCall as AWS KMS makes it, from us-east-1 at `at`.
func xksCallAt(at time.Time) xksCall {
	return xksCall{path: xksPath, service: xksService, region: "us-east-1", creds: xksCreds, at: at}
}

// request returns c POSTing body, signed as AWS KMS signs XKS calls unless
// c.signed says otherwise: SigV4 over host and x-amz-date alone,
// Content-Type: application/json sent unsigned. It is read as a server
// reads it off the wire.
func (c xksCall) request(tb testing.TB, body []byte) *http.Request {
	tb.Helper()
	r, err := http.NewRequest(http.MethodPost, "https://xks.example.com"+c.path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	// The signer signs content-length whenever the length is known: hide
	// it from the signer unless it is to be signed.
	n := r.ContentLength
	if !slices.Contains(c.signed, "content-length") {
		r.ContentLength = 0
	}
	if slices.Contains(c.signed, "content-type") {
		r.Header.Set("Content-Type", "application/json")
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), c.creds, r, hex.EncodeToString(sum[:]), c.service, c.region, c.at); err != nil {
		tb.Fatal(err)
	}
	r.ContentLength = n
	r.Header.Set("Content-Type", "application/json")
	want := strings.Join(slices.Concat(c.signed, []string{"host", "x-amz-date"}), ";")
	if a, err := parseAuthorization(r.Header.Get("Authorization")); err != nil || strings.Join(a.signedHeaders, ";") != want {
		tb.Fatalf("the signer signed %v (%v), want SignedHeaders=%s", a.signedHeaders, err, want)
	}
	return asServer(tb, r)
}

// xksVerifier is a Verifier as the XKS listener makes it, with the clock
// at now and the given regions allowed (any, without).
func xksVerifier(now time.Time, regions ...string) *Verifier {
	return New(Config{Service: xksService, Regions: regions, SignedHeadersOnly: true, Now: func() time.Time { return now }})
}

// verifyWith is VerifyWith's answer: "" or the error code, and the message
// ("error" and the error's text for an error other than an *Error).
func verifyWith(v *Verifier, r *http.Request, body []byte, creds Credentials) (service.Credentials, string, string) {
	found, err := v.VerifyWith(context.Background(), r, body, "192.0.2.7", creds)
	var ae *Error
	switch {
	case err == nil:
		return found, "", ""
	case errors.As(err, &ae):
		return found, ae.Code, ae.Message
	}
	return found, "error", err.Error()
}

// TestXKSVerify holds the XKS mode to the XKS proxy API's SigV4 rules: its
// service name, any well-formed region (or one of a list), the signed
// headers as listed, host and x-amz-date signed, ±5 minutes; and shows
// that the KMS mode still refuses what AWS KMS sends an XKS proxy.
func TestXKSVerify(t *testing.T) {
	now := time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)
	store := principals{xksID: xksSecret}
	xks := xksVerifier(now)
	listed := xksVerifier(now, "eu-west-1", "eu-central-1")
	single := New(Config{Service: xksService, Region: "eu-west-1", Regions: []string{"us-east-1"}, SignedHeadersOnly: true,
		Now: func() time.Time { return now }})
	kms := New(Config{Credentials: store, Region: "us-east-1", Now: func() time.Time { return now }})
	region := func(r string) func(*xksCall) { return func(c *xksCall) { c.region = r } }
	tests := []struct {
		name   string
		v      *Verifier
		call   func(*xksCall)                            // changes the call before signing
		change func(r *http.Request, body []byte) []byte // changes the request after; returns the body the server reads
		code   string                                    // "" verifies
		msg    string                                    // the message's end
	}{
		{name: "as AWS KMS signs", v: xks},
		{name: "region eu-west-3", v: xks, call: region("eu-west-3")},
		{name: "region us-gov-west-1", v: xks, call: region("us-gov-west-1")},
		{name: "region cn-north-1", v: xks, call: region("cn-north-1")},
		{name: "region ap-southeast-2", v: xks, call: region("ap-southeast-2")},
		{name: "region us-isob-east-1", v: xks, call: region("us-isob-east-1")},
		{name: "region eu-isoe-west-1", v: xks, call: region("eu-isoe-west-1")},
		{name: "region eusc-de-east-1", v: xks, call: region("eusc-de-east-1")},
		{name: "region of 64 bytes", v: xks, call: region("us-" + strings.Repeat("x", 59) + "-1")},

		{name: "region of 65 bytes", v: xks, call: region("us-" + strings.Repeat("x", 60) + "-1"),
			code: CodeInvalid, msg: "Credential should be scoped to a valid region name, not 'us-" + strings.Repeat("x", 60) + "-1'."},
		{name: "upper-case region", v: xks, call: region("US-EAST-1"),
			code: CodeInvalid, msg: "Credential should be scoped to a valid region name, not 'US-EAST-1'."},
		{name: "empty region", v: xks, call: region(""),
			code: CodeInvalid, msg: "Credential should be scoped to a valid region name, not ''."},
		{name: "region with a space", v: xks, call: region("us east-1"), code: CodeInvalid, msg: "not 'us east-1'."},
		{name: "region with a trailing space", v: xks, call: region("us-east-1 "), code: CodeInvalid, msg: "not 'us-east-1 '."},
		{name: "region without a number", v: xks, call: region("us-east"), code: CodeInvalid, msg: "not 'us-east'."},
		{name: "region of one word", v: xks, call: region("useast1"), code: CodeInvalid, msg: "not 'useast1'."},
		{name: "region with an empty word", v: xks, call: region("us--east-1"), code: CodeInvalid, msg: "not 'us--east-1'."},
		{name: "region ending in a hyphen", v: xks, call: region("us-east-1-"), code: CodeInvalid, msg: "not 'us-east-1-'."},
		{name: "region of one letter", v: xks, call: region("u-east-1"), code: CodeInvalid, msg: "not 'u-east-1'."},
		{name: "region with a tab", v: xks, call: region("us-east-1\t"), code: CodeInvalid, msg: "not 'us-east-1\t'."},

		{name: "listed region", v: listed, call: region("eu-west-1")},
		{name: "another listed region", v: listed, call: region("eu-central-1")},
		{name: "unlisted region", v: listed, code: CodeInvalid,
			msg: "Credential should be scoped to an allowed region, not 'us-east-1'."},
		{name: "unlisted well-formed region", v: listed, call: region("eu-west-2"), code: CodeInvalid, msg: "not 'eu-west-2'."},
		{name: "Region over Regions", v: single, call: region("eu-west-1")},
		{name: "Regions ignored with Region", v: single, code: CodeInvalid,
			msg: "Credential should be scoped to a valid region, not 'us-east-1'."},

		{name: "service kms", v: xks, call: func(c *xksCall) { c.service = "kms" },
			code: CodeInvalid, msg: "Credential should be scoped to correct service: 'kms-xks-proxy'."},
		{name: "service kms-xks", v: xks, call: func(c *xksCall) { c.service = "kms-xks" },
			code: CodeInvalid, msg: "Credential should be scoped to correct service: 'kms-xks-proxy'."},
		{name: "KMS mode refuses the XKS service", v: kms, code: CodeInvalid,
			msg: "Credential should be scoped to correct service: 'kms'."},
		{name: "KMS mode refuses an unsigned Content-Type", v: kms, call: func(c *xksCall) { c.service = "kms" },
			code: CodeIncomplete, msg: "Every x-amz-* header and Content-Type must be signed; not in SignedHeaders: content-type."},
		{name: "KMS mode takes a signed Content-Type", v: kms, call: func(c *xksCall) {
			c.service, c.signed = "kms", []string{"content-type"}
		}},

		{name: "Content-Type signed, as curl signs it", v: xks, call: func(c *xksCall) { c.signed = []string{"content-type"} }},
		{name: "content-length signed, as the SDK signs it", v: xks, call: func(c *xksCall) { c.signed = []string{"content-length"} }},
		{name: "signed Content-Type changed", v: xks, call: func(c *xksCall) { c.signed = []string{"content-type"} },
			change: func(r *http.Request, body []byte) []byte {
				r.Header.Set("Content-Type", "text/plain")
				return body
			}, code: CodeInvalid, msg: mismatch},
		{name: "unsigned Content-Type changed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Header.Set("Content-Type", "text/plain")
			return body
		}},
		{name: "unsigned x-amz-* header", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Header.Set("X-Amz-Target", "TrentService.ScheduleKeyDeletion")
			return body
		}},
		{name: "unsigned X-Amz-Content-Sha256 of the body", v: xks, change: func(r *http.Request, body []byte) []byte {
			sum := sha256.Sum256(body)
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			return body
		}},
		{name: "unsigned X-Amz-Content-Sha256 of another body", v: xks, change: func(r *http.Request, body []byte) []byte {
			sum := sha256.Sum256([]byte("{}"))
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			return body
		}, code: CodeInvalid, msg: "The request signature we calculated does not match the signature you provided."},
		{name: "unsigned session token", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Header.Set("X-Amz-Security-Token", "tok")
			return body
		}, code: CodeUnknownClient, msg: "The security token included in the request is invalid."},

		{name: "4 minutes late", v: xks, call: func(c *xksCall) { c.at = c.at.Add(-4 * time.Minute) }},
		{name: "4 minutes early", v: xks, call: func(c *xksCall) { c.at = c.at.Add(4 * time.Minute) }},
		{name: "5 minutes late", v: xks, call: func(c *xksCall) { c.at = c.at.Add(-5 * time.Minute) }},
		{name: "6 minutes late", v: xks, call: func(c *xksCall) { c.at = c.at.Add(-6 * time.Minute) },
			code: CodeInvalid, msg: "Signature expired: 20261204T105400Z is now earlier or later than 20261204T110000Z by more than 5m0s."},
		{name: "6 minutes early", v: xks, call: func(c *xksCall) { c.at = c.at.Add(6 * time.Minute) },
			code: CodeInvalid, msg: "Signature expired: 20261204T110600Z is now earlier or later than 20261204T110000Z by more than 5m0s."},
		{name: "X-Amz-Date changed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Header.Set("X-Amz-Date", now.Add(time.Second).Format(amzDateFormat))
			return body
		}, code: CodeInvalid, msg: mismatch},

		{name: "body changed", v: xks, change: func(_ *http.Request, body []byte) []byte {
			return bytes.Replace(body, []byte("AA=="), []byte("AQ=="), 1)
		}, code: CodeInvalid, msg: mismatch},
		{name: "body extended", v: xks, change: func(_ *http.Request, body []byte) []byte {
			return append(bytes.Clone(body), ' ')
		}, code: CodeInvalid, msg: mismatch},
		{name: "operation changed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.URL.Path = strings.Replace(r.URL.Path, "/encrypt", "/decrypt", 1)
			return body
		}, code: CodeInvalid, msg: mismatch},
		{name: "key changed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.URL.Path = strings.Replace(r.URL.Path, "/keys/abc/", "/keys/abd/", 1)
			return body
		}, code: CodeInvalid, msg: mismatch},
		{name: "key store changed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.URL.Path = strings.Replace(r.URL.Path, "/example/prefix/", "/example/other/", 1)
			return body
		}, code: CodeInvalid, msg: mismatch},
		{name: "query added", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.URL.RawQuery = "a=b"
			return body
		}, code: CodeInvalid, msg: mismatch},
		{name: "host changed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Host = "xks2.example.com"
			return body
		}, code: CodeInvalid, msg: mismatch},
		{name: "other secret", v: xks, call: func(c *xksCall) {
			c.creds.SecretAccessKey = "GYtE5EFA5FT0mCc3DrGUe2sti527BitkQ0Zr9MO9fvE"
		}, code: CodeInvalid, msg: mismatch},

		{name: "host not signed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Header.Set("Authorization", replaceSigned(r.Header.Get("Authorization"), "x-amz-date"))
			return body
		}, code: CodeIncomplete, msg: "SignedHeaders must include host and x-amz-date."},
		{name: "x-amz-date not signed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Header.Set("Authorization", replaceSigned(r.Header.Get("Authorization"), "host"))
			return body
		}, code: CodeIncomplete, msg: "SignedHeaders must include host and x-amz-date."},
		{name: "unsigned Content-Type listed as signed", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Header.Set("Authorization", replaceSigned(r.Header.Get("Authorization"), "content-type;host;x-amz-date"))
			return body
		}, code: CodeInvalid, msg: mismatch},
		{name: "a signed header missing", v: xks, change: func(r *http.Request, body []byte) []byte {
			r.Header.Set("Authorization", replaceSigned(r.Header.Get("Authorization"), "host;x-amz-date;x-amz-target"))
			return body
		}, code: CodeIncomplete, msg: "signed header x-amz-target is missing from the request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := xksCallAt(now)
			if tc.call != nil {
				tc.call(&c)
			}
			r := c.request(t, xksBody)
			body := xksBody
			if tc.change != nil {
				body = tc.change(r, bytes.Clone(xksBody))
			}
			got, code, msg := verifyWith(tc.v, r, body, store)
			if tc.code == "" {
				if code != "" || got.AccessKeyID != xksID || got.Secret != xksSecret {
					t.Fatalf("VerifyWith = %+v, %s %q; want it verified", got, code, msg)
				}
				return
			}
			if code != tc.code || !strings.HasSuffix(msg, tc.msg) {
				t.Fatalf("VerifyWith: %s %q, want %s ending %q", code, msg, tc.code, tc.msg)
			}
		})
	}
}

// replaceSigned rewrites the SignedHeaders of an Authorization header.
func replaceSigned(h, signed string) string {
	const key = "SignedHeaders="
	i := strings.Index(h, key)
	j := strings.IndexByte(h[i:], ',')
	return h[:i+len(key)] + signed + h[i+j:]
}

// failingCredentials fails every lookup with err.
type failingCredentials struct{ err error }

func (f failingCredentials) Credentials(context.Context, string) (service.Credentials, error) {
	return service.Credentials{}, f.err
}

// TestXKSVerifyWith: VerifyWith looks the claimed access key ID up in the
// lookup it is given, never in the Verifier's own, and answers an ID the
// lookup does not know as AWS answers an unknown ID; Verify and VerifyWith
// share the failure budget and the signing-key cache.
func TestXKSVerifyWith(t *testing.T) {
	now := time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)
	own := principals{xksID: "the-verifier-s-own-secret-for-this-key-id-0"}
	v := New(Config{Credentials: own, Service: xksService, SignedHeadersOnly: true, FailureBurst: 1,
		Now: func() time.Time { return now }})
	r := xksCallAt(now).request(t, xksBody)

	if got, code, msg := verifyWith(v, r, xksBody, principals{xksID: xksSecret}); code != "" || got.Secret != xksSecret {
		t.Fatalf("VerifyWith the request's store: %+v, %s %q", got, code, msg)
	}
	if n := v.keys.len(); n != 1 {
		t.Fatalf("%d signing keys cached after one verified request, want 1", n)
	}

	for _, tc := range []struct {
		name      string
		creds     Credentials
		code, msg string
	}{
		{"another store", principals{"AAAAAAAAAAAAAAAAAAAA": xksSecret}, CodeUnknownClient, "The security token included in the request is invalid."},
		{"an empty store", principals{}, CodeUnknownClient, "The security token included in the request is invalid."},
		{"another secret", principals{xksID: "HYtE5EFA5FT0mCc3DrGUe2sti527BitkQ0Zr9MO9fvE"}, CodeInvalid, mismatch},
		{"a failing lookup", failingCredentials{errors.New("store unavailable")}, "error", "store unavailable"},
		{"no lookup", nil, "error", "auth: no credentials lookup to verify the request with"},
	} {
		got, code, msg := verifyWith(v, r, xksBody, tc.creds)
		if code != tc.code || msg != tc.msg || got.Secret != "" {
			t.Errorf("VerifyWith %s: %+v, %s %q; want %s %q", tc.name, got, code, msg, tc.code, tc.msg)
		}
	}

	// Verify looks in the Verifier's own Credentials, whose secret for
	// the ID is not the one the request was signed with; its failure
	// comes after VerifyWith's, from the same source, past the burst of 1.
	_, err := v.Verify(context.Background(), r, xksBody, "192.0.2.7")
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != CodeInvalid || !ae.Unaudited {
		t.Fatalf("Verify with the Verifier's own credentials: %v (%+v), want an unaudited %s", err, ae, CodeInvalid)
	}
	if got, err := New(Config{Credentials: principals{xksID: xksSecret}, Service: xksService, SignedHeadersOnly: true,
		Now: func() time.Time { return now }}).Verify(context.Background(), r, xksBody, "192.0.2.7"); err != nil || got.Secret != xksSecret {
		t.Fatalf("Verify with the Verifier's own credentials holding the secret: %+v, %v", got, err)
	}
	if _, err := xksVerifier(now).Verify(context.Background(), r, xksBody, "192.0.2.7"); err == nil || errors.As(err, &ae) {
		t.Fatalf("Verify without Credentials: %v, want an error that is no *auth.Error", err)
	}
}

// TestXKSAccessKeyIDs: XKS access key IDs (20 to 30 of A-Z 2-7) are within
// the IDs a request may claim (16 to 128 of A-Z 0-9), and verify, with
// secrets of 43 to 64 Base64 characters.
func TestXKSAccessKeyIDs(t *testing.T) {
	now := time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)
	v := xksVerifier(now)
	const base32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	secrets := []string{xksSecret, "abc/+DEF" + strings.Repeat("0123456789+/", 4) + "xyz=", strings.Repeat("Zm9v", 16)}
	for n := 20; n <= 30; n++ {
		id := (base32 + base32)[n : 2*n]
		if got := claimed(id); got != id {
			t.Fatalf("claimed(%q) = %q", id, got)
		}
		secret := secrets[n%len(secrets)]
		c := xksCallAt(now)
		c.creds = aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}
		if got, code, msg := verifyWith(v, c.request(t, xksBody), xksBody, principals{id: secret}); code != "" || got.AccessKeyID != id {
			t.Fatalf("ID %q, secret of %d: %+v, %s %q", id, len(secret), got, code, msg)
		}
	}
}

// TestXKSCurl: curl's --aws-sigv4 "aws:amz:<region>:kms-xks-proxy", the
// other client the XKS API is used with, is verified, whether it signs
// Content-Type (given with -H) or sends curl's own unsigned; the KMS mode
// refuses the unsigned one.
func TestXKSCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is not installed (run make deps, which installs it): %v", err)
	}
	store := principals{xksID: xksSecret}
	verifiers := map[string]*Verifier{
		"/xks": New(Config{Service: xksService, SignedHeadersOnly: true}),
		"/kms": New(Config{Credentials: store, Service: xksService}),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mode, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if _, err := verifiers["/"+mode].VerifyWith(r.Context(), r, body, r.RemoteAddr, store); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		io.WriteString(w, "verified")
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, mode, region string
		args               []string
		want               string
	}{
		{"Content-Type signed", "xks", "us-east-1", []string{"-H", "Content-Type: application/json"}, "verified"},
		{"Content-Type unsigned", "xks", "eu-west-3", nil, "verified"},
		{"KMS mode, Content-Type unsigned", "kms", "us-east-1", nil, CodeIncomplete},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-sS", "--noproxy", "*", "--aws-sigv4", "aws:amz:" + tc.region + ":" + xksService,
				"--user", xksID + ":" + xksSecret, "--data-binary", string(xksBody)}, tc.args...)
			out, err := exec.Command(curl, append(args, srv.URL+"/"+tc.mode+xksPath)...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			if !strings.HasPrefix(string(out), tc.want) {
				t.Fatalf("curl's request answered %q, want %s", out, tc.want)
			}
		})
	}
}

// wellFormedRegion restates regionRE: at most 64 bytes of hyphen-joined
// words, the first two or more lower-case letters, then one or more words
// of lower-case letters, the last one or more digits.
func wellFormedRegion(s string) bool {
	words := strings.Split(s, "-")
	if len(s) > 64 || len(words) < 3 {
		return false
	}
	for i, w := range words {
		set := "abcdefghijklmnopqrstuvwxyz"
		if i == len(words)-1 {
			set = "0123456789"
		}
		if w == "" || strings.Trim(w, set) != "" || i == 0 && len(w) < 2 {
			return false
		}
	}
	return true
}

// FuzzXKSVerify: an XKS request the SDK's signer signed as AWS KMS signs
// them, for any region, path and body, is verified without an allow-list
// exactly when its region is well formed, whatever unsigned Content-Type
// and x-amz-* header it carries; with its body or path changed it never is.
func FuzzXKSVerify(f *testing.F) {
	f.Add("us-east-1", "example/prefix/kms/xks/v1/keys/abc/encrypt", xksBody, "application/json", "")
	f.Add("eusc-de-east-1", "a b/ü/%2F", []byte{}, "", "TrentService.Decrypt")
	f.Add("US-EAST-1", "", []byte("{}"), "text/plain", "x")
	f.Add("us-east-1/x", "x", []byte("{}"), "", "")
	f.Add("us-east-1, Signature=00", "x", []byte("{}"), "", "")
	f.Add("a-b-1", "x", []byte("{}"), "\x00", "\u00a0")
	at := time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)
	v := xksVerifier(at)
	store := principals{xksID: xksSecret}
	f.Fuzz(func(t *testing.T, region, path string, body []byte, contentType, amz string) {
		r, err := http.NewRequest(http.MethodPost, "https://xks.example.com/", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.URL.Path, r.ContentLength = "/"+path, 0
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), xksCreds, r, hex.EncodeToString(sum[:]), xksService, region, at); err != nil {
			t.Fatal(err)
		}
		r.ContentLength = int64(len(body))
		r.Header["Content-Type"] = []string{contentType}
		r.Header["X-Amz-Target"] = []string{amz}
		_, code, msg := verifyWith(v, r, body, store)
		if (code == "") != wellFormedRegion(region) {
			t.Fatalf("region %q, path %q: %s %q", region, path, code, msg)
		}
		if code != "" {
			return
		}
		if _, code, _ := verifyWith(v, r, append(bytes.Clone(body), '\n'), store); code != CodeInvalid {
			t.Fatalf("region %q, path %q: a changed body answered %q", region, path, code)
		}
		r.URL.Path += "x"
		if _, code, _ := verifyWith(v, r, body, store); code != CodeInvalid {
			t.Fatalf("region %q, path %q: a changed path answered %q", region, path, code)
		}
	})
}

// BenchmarkVerifyXKS times VerifyWith on an Encrypt call as AWS KMS makes
// it, in a region checked by form (no allow-list).
func BenchmarkVerifyXKS(b *testing.B) {
	at := time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)
	v := xksVerifier(at)
	c := xksCallAt(at)
	c.region = "ap-southeast-2"
	r := c.request(b, xksBody)
	store := principals{xksID: xksSecret}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyWith(ctx, r, xksBody, "192.0.2.7", store); err != nil {
			b.Fatal(err)
		}
	}
}
