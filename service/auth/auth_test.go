package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hsmkms/hsmkms/service"
)

const (
	testRegion = "us-east-1"
	testID     = "AKIAAUTHTEST0000001"
	testSecret = "auth-test-secret-0123456789abcdefghij"
)

// principals is a Credentials of fixed principals: the verifier's only
// dependency, which the server tests exercise with the real key service.
type principals map[string]string

func (p principals) Credentials(_ context.Context, id string) (service.Credentials, error) {
	secret, ok := p[id]
	if !ok {
		return service.Credentials{}, service.ErrUnknownPrincipal
	}
	return service.Credentials{AccessKeyID: id, Secret: secret}, nil
}

// clock is a settable clock for the failure budget.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newVerifier(c *clock) *Verifier {
	return New(Config{Credentials: principals{testID: testSecret}, Region: testRegion, Now: c.now})
}

var body = []byte(`{"KeyId":"alias/x"}`)

// request builds a KMS request with the headers the AWS SDKs send.
func request(t *testing.T, target string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		r.Header.Set("X-Amz-Target", target)
	}
	return r
}

func sign(t *testing.T, r *http.Request, creds aws.Credentials, at time.Time) {
	t.Helper()
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "kms", testRegion, at); err != nil {
		t.Fatal(err)
	}
}

var root = aws.Credentials{AccessKeyID: testID, SecretAccessKey: testSecret}

func verifyCode(t *testing.T, v *Verifier, r *http.Request) (string, *Error) {
	t.Helper()
	_, err := v.Verify(context.Background(), r, body, "192.0.2.1")
	if err == nil {
		return "", nil
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("Verify = %v, want an *auth.Error", err)
	}
	return ae.Code, ae
}

// TestSignedHeadersRule proves that every x-amz-* header and Content-Type a
// request carries must be signed: a DescribeKey signed over host and
// x-amz-date alone cannot be re-sent as ScheduleKeyDeletion.
func TestSignedHeadersRule(t *testing.T) {
	c := &clock{t: time.Now()}
	v := newVerifier(c)
	cases := []struct {
		name string
		make func(t *testing.T) *http.Request
		code string
		msg  string
	}{
		{"signed as the SDKs sign", func(t *testing.T) *http.Request {
			r := request(t, "TrentService.DescribeKey")
			sign(t, r, root, c.t)
			return r
		}, "", ""},
		{"target added after signing", func(t *testing.T) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/", bytes.NewReader(body))
			sign(t, r, root, c.t)
			r.Header.Set("X-Amz-Target", "TrentService.ScheduleKeyDeletion")
			r.Header.Set("Content-Type", "application/x-amz-json-1.1")
			return r
		}, CodeIncomplete, "not in SignedHeaders: content-type, x-amz-target."},
		{"unsigned x-amz-* header", func(t *testing.T) *http.Request {
			r := request(t, "TrentService.DescribeKey")
			sign(t, r, root, c.t)
			r.Header.Set("X-Amz-Foo", "bar")
			return r
		}, CodeIncomplete, "not in SignedHeaders: x-amz-foo."},
		{"content-type changed after signing", func(t *testing.T) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/", bytes.NewReader(body))
			r.Header.Set("X-Amz-Target", "TrentService.DescribeKey")
			sign(t, r, root, c.t)
			r.Header.Set("Content-Type", "application/x-amz-json-1.1")
			return r
		}, CodeIncomplete, "not in SignedHeaders: content-type."},
		{"security token signed", func(t *testing.T) *http.Request {
			r := request(t, "TrentService.ListKeys")
			sign(t, r, aws.Credentials{AccessKeyID: testID, SecretAccessKey: testSecret, SessionToken: "tok"}, c.t)
			return r
		}, CodeUnknownClient, "The security token included in the request is invalid."},
		{"security token unsigned", func(t *testing.T) *http.Request {
			r := request(t, "TrentService.ListKeys")
			sign(t, r, root, c.t)
			r.Header.Set("X-Amz-Security-Token", "tok")
			return r
		}, CodeUnknownClient, "The security token included in the request is invalid."},
		{"two Authorization headers", func(t *testing.T) *http.Request {
			r := request(t, "TrentService.ListKeys")
			sign(t, r, root, c.t)
			r.Header.Add("Authorization", r.Header.Get("Authorization"))
			return r
		}, CodeIncomplete, "the request has more than one Authorization header"},
		{"two Signature parts", func(t *testing.T) *http.Request {
			r := request(t, "TrentService.ListKeys")
			sign(t, r, root, c.t)
			h := r.Header.Get("Authorization")
			r.Header.Set("Authorization", h+", Signature="+strings.Repeat("0", 64))
			return r
		}, CodeIncomplete, "Authorization header has more than one Signature part"},
		{"an unknown part", func(t *testing.T) *http.Request {
			r := request(t, "TrentService.ListKeys")
			sign(t, r, root, c.t)
			r.Header.Set("Authorization", r.Header.Get("Authorization")+", Foo=bar")
			return r
		}, CodeIncomplete, "Authorization header has a part other than Credential, SignedHeaders and Signature"},
		{"X-Amz-Date with fractional seconds", func(t *testing.T) *http.Request {
			// The SDK signs the time it formats, so the header's text
			// must be exactly that form: a fraction would be carried but
			// not signed.
			r := request(t, "TrentService.ListKeys")
			sign(t, r, root, c.t)
			r.Header.Set("X-Amz-Date", r.Header.Get("X-Amz-Date")[:15]+".000Z")
			return r
		}, CodeIncomplete, "the X-Amz-Date header is missing or not in the form 20060102T150405Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, ae := verifyCode(t, v, tc.make(t))
			if code != tc.code {
				t.Fatalf("code %q (%v), want %q", code, ae, tc.code)
			}
			if ae != nil && !strings.HasSuffix(ae.Message, tc.msg) {
				t.Fatalf("message %q, want it to end %q", ae.Message, tc.msg)
			}
		})
	}
}

// TestClaimedIDIsBounded proves that the audit record's principal of a
// failed authentication is a well-formed access key ID or Malformed, never
// the client's text as sent.
func TestClaimedIDIsBounded(t *testing.T) {
	v := newVerifier(&clock{t: time.Now()})
	for _, tc := range []struct{ claim, want string }{
		{strings.Repeat("A", 60000), Malformed},
		{"AKIA" + strings.Repeat("B", 124), "AKIA" + strings.Repeat("B", 124)},
		{"AKIA" + strings.Repeat("B", 125), Malformed},
		{"akiaunknown000000", Malformed},
		{"AKIA\"}{\"x", Malformed},
		{"AKIAUNKNOWN000000", "AKIAUNKNOWN000000"},
	} {
		r := request(t, "TrentService.ListKeys")
		r.Header.Set("X-Amz-Date", time.Now().UTC().Format(amzDateFormat))
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+tc.claim+"/"+time.Now().UTC().Format("20060102")+
			"/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="+strings.Repeat("0", 64))
		code, ae := verifyCode(t, v, r)
		if code != CodeUnknownClient || ae.AccessKeyID != tc.want {
			t.Errorf("claim of %d bytes: %s, principal %.40q, want UnrecognizedClientException and %.40q", len(tc.claim), code, ae.AccessKeyID, tc.want)
		}
	}
}

// TestFailuresNeverLockOutValidRequests proves the failure budget bounds
// audit records, not traffic: after 100 failures from one source a
// correctly signed request from it verifies, each failure is answered with
// its own error, and every failure is either audited or counted into a
// later audited record exactly once.
func TestFailuresNeverLockOutValidRequests(t *testing.T) {
	c := &clock{t: time.Now()}
	v := newVerifier(c)
	bad := aws.Credentials{AccessKeyID: testID, SecretAccessKey: "guessed-secret-0123456789abcdefghijkl"}
	audited, suppressed := 0, 0
	tally := func(ae *Error) {
		if !ae.Unaudited {
			audited++
			suppressed += ae.Suppressed
		}
	}
	for i := range 100 {
		r := request(t, "TrentService.ListKeys")
		if i%2 == 0 {
			sign(t, r, bad, c.t) // a wrong secret for a real ID
		}
		code, ae := verifyCode(t, v, r)
		if code != CodeInvalid && code != CodeMissingToken {
			t.Fatalf("failure %d answered %s, want its own error", i, code)
		}
		tally(ae)
		good := request(t, "TrentService.ListKeys")
		sign(t, good, root, c.t)
		if code, ae := verifyCode(t, v, good); code != "" {
			t.Fatalf("a correctly signed request after %d failures: %v", i+1, ae)
		}
	}
	if audited != 20 {
		t.Fatalf("%d of 100 failures audited in the same instant, want the burst of 20", audited)
	}
	c.t = c.t.Add(time.Second)
	r := request(t, "TrentService.ListKeys")
	_, ae := verifyCode(t, v, r)
	if ae.Unaudited || ae.Suppressed != 80 {
		t.Fatalf("the first failure a second later: unaudited %v, suppressed %d; want audited with the 80 counted", ae.Unaudited, ae.Suppressed)
	}
	tally(ae)
	if audited+suppressed != 101 {
		t.Fatalf("audited %d + suppressed %d != 101 failures", audited, suppressed)
	}
}

// TestFailureBudgetPerClaimedID proves that one claimed access key ID is
// bounded across sources: a flood from many addresses claiming one ID is
// audited at most a burst at once.
func TestFailureBudgetPerClaimedID(t *testing.T) {
	c := &clock{t: time.Now()}
	v := newVerifier(c)
	bad := aws.Credentials{AccessKeyID: testID, SecretAccessKey: "guessed-secret-0123456789abcdefghijkl"}
	audited := 0
	for i := range 50 {
		r := request(t, "TrentService.ListKeys")
		sign(t, r, bad, c.t)
		_, err := v.Verify(context.Background(), r, body, "198.51.100."+string(rune('0'+i%10))+string(rune('0'+i/10)))
		var ae *Error
		if !errors.As(err, &ae) || ae.Code != CodeInvalid {
			t.Fatalf("failure %d: %v", i, err)
		}
		if !ae.Unaudited {
			audited++
		}
	}
	if audited != 20 {
		t.Fatalf("%d of 50 failures claiming one ID from 50 sources audited, want 20", audited)
	}
}

// TestHostAccepted proves which Host headers a Verifier with Hosts
// answers: a name on any port unless its entry names one, case aside,
// IPv6 with and without brackets; and every Host without Hosts.
func TestHostAccepted(t *testing.T) {
	v := New(Config{Hosts: []string{"KMS.example.com", "kms.internal:8443", "[2001:db8::1]", "192.0.2.1"}})
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"kms.example.com", true},
		{"kms.example.com:8443", true},
		{"Kms.Example.Com:443", true},
		{"kms.internal:8443", true},
		{"kms.internal", false},
		{"kms.internal:9443", false},
		{"[2001:db8::1]:8443", true},
		{"[2001:db8::1]", true},
		{"[2001:db8::2]:8443", false},
		{"192.0.2.1:8080", true},
		{"192.0.2.10", false},
		{"kms.example.com.evil", false},
		{"", false},
	} {
		if got := v.hostAccepted(tc.host); got != tc.want {
			t.Errorf("hostAccepted(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
	if open := New(Config{}); !open.hostAccepted("anything:1") || !open.hostAccepted("") {
		t.Error("a Verifier without Hosts refused a Host")
	}
}

// TestHostRefusedEvenSigned proves that a correctly signed request for a
// host the Verifier does not answer to is refused, and the same request
// signed for an accepted host is not.
func TestHostRefusedEvenSigned(t *testing.T) {
	c := &clock{t: time.Now()}
	v := New(Config{Credentials: principals{testID: testSecret}, Region: testRegion, Now: c.now, Hosts: []string{"kms.example.com"}})
	for _, tc := range []struct {
		url, code string
	}{
		{"http://127.0.0.1:8080/", CodeInvalid},
		{"https://kms.example.com/", ""},
		{"https://kms.example.com:8443/", ""},
	} {
		r, _ := http.NewRequest(http.MethodPost, tc.url, bytes.NewReader(body))
		r.Header.Set("X-Amz-Target", "TrentService.ListKeys")
		r.Header.Set("Content-Type", "application/x-amz-json-1.1")
		sign(t, r, root, c.t)
		code, ae := verifyCode(t, v, r)
		if code != tc.code {
			t.Fatalf("%s: code %q (%v), want %q", tc.url, code, ae, tc.code)
		}
		if ae != nil && ae.Message != `The request was signed for host "127.0.0.1:8080", which is not a name of this server.` {
			t.Fatalf("%s: message %q", tc.url, ae.Message)
		}
	}
}

// TestCredentialFailuresMarked proves which failures are marked as the
// credential's (Error.Credential): every one decided after the access key
// ID is looked up, or by the ID itself (unknown, malformed, a wrong
// secret, SignedHeaders that cannot be verified with a known ID), so that
// the XKS listener can answer them alike; and none that the request alone
// decides (a stale date), which keep their own messages.
func TestCredentialFailuresMarked(t *testing.T) {
	c := &clock{t: time.Now()}
	v := newVerifier(c)
	reorder := func(r *http.Request) {
		a := r.Header.Get("Authorization")
		i := strings.Index(a, "SignedHeaders=")
		j := strings.Index(a[i:], ",")
		headers := strings.Split(a[i+len("SignedHeaders="):i+j], ";")
		headers[0], headers[len(headers)-1] = headers[len(headers)-1], headers[0]
		r.Header.Set("Authorization", a[:i]+"SignedHeaders="+strings.Join(headers, ";")+a[i+j:])
	}
	for _, tc := range []struct {
		name       string
		creds      aws.Credentials
		at         time.Time
		change     func(*http.Request)
		credential bool
	}{
		{"unknown ID", aws.Credentials{AccessKeyID: "AKIAUNKNOWN00000001", SecretAccessKey: testSecret}, c.t, nil, true},
		{"malformed ID", aws.Credentials{AccessKeyID: "not-an-id", SecretAccessKey: testSecret}, c.t, nil, true},
		{"wrong secret", aws.Credentials{AccessKeyID: testID, SecretAccessKey: "wrong"}, c.t, nil, true},
		{"SignedHeaders out of order, known ID", root, c.t, reorder, true},
		{"SignedHeaders out of order, unknown ID", aws.Credentials{AccessKeyID: "AKIAUNKNOWN00000001", SecretAccessKey: testSecret}, c.t, reorder, true},
		{"stale date", root, c.t.Add(-time.Hour), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, "TrentService.ListKeys")
			sign(t, r, tc.creds, tc.at)
			if tc.change != nil {
				tc.change(r)
			}
			code, ae := verifyCode(t, v, r)
			if code == "" || ae.Credential != tc.credential {
				t.Fatalf("%s %q: Credential %v, want %v", code, ae.Message, ae != nil && ae.Credential, tc.credential)
			}
		})
	}
}

// TestUnsignedHeadersLongList: a SignedHeaders list too long to scan for
// each header is looked up in a set, with the same answers: a listed
// header whatever its case is signed, an unlisted x-amz-* header is named.
func TestUnsignedHeadersLongList(t *testing.T) {
	signed := []string{"content-type", "host", "x-amz-date", "x-amz-target"}
	for i := range 2 * maxScannedSignedHeaders {
		signed = append(signed, fmt.Sprintf("x-amz-meta-%03d", i))
	}
	slices.Sort(signed)
	h := http.Header{}
	h["X-Amz-Meta-007"] = []string{"v"}
	h["x-AMZ-target"] = []string{"v"}
	h["Content-Type"] = []string{"v"}
	h["X-Amz-Other"] = []string{"v"}
	h["X-Amz-Ünicode"] = []string{"v"}
	h["Accept"] = []string{"v"}
	if got, want := unsignedHeaders(h, signed), "x-amz-other, x-amz-ünicode"; got != want {
		t.Fatalf("unsignedHeaders = %q, want %q", got, want)
	}
	if got := unsignedHeaders(h, signed[:maxScannedSignedHeaders]); !strings.Contains(got, "x-amz-other") {
		t.Fatalf("unsignedHeaders of a short list = %q", got)
	}
}

// BenchmarkUnsignedHeadersFlood is the review's request: 2,000 unsigned
// X-Amz-* headers and 2,700 SignedHeaders entries, before authentication.
func BenchmarkUnsignedHeadersFlood(b *testing.B) {
	var signed []string
	for i := range 2700 {
		signed = append(signed, fmt.Sprintf("x-amz-s%04d", i))
	}
	h := http.Header{}
	for i := range 2000 {
		h[fmt.Sprintf("X-Amz-U%04d", i)] = []string{"v"}
	}
	for b.Loop() {
		unsignedHeaders(h, signed)
	}
}
