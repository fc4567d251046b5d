package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/encoding/httpbinding"
)

// sdkRequest describes a request for the SDK's signer to sign.
type sdkRequest struct {
	method string
	url    string
	header http.Header
	body   []byte
	region string
	creds  aws.Credentials
	at     time.Time
}

// signed returns the request signed by the SDK's signer, as the client
// holds it.
func (s sdkRequest) signed(tb testing.TB) *http.Request {
	tb.Helper()
	r, err := http.NewRequest(s.method, s.url, bytes.NewReader(s.body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, vs := range s.header {
		r.Header[k] = slices.Clone(vs)
	}
	sum := sha256.Sum256(s.body)
	if err := v4.NewSigner().SignHTTP(context.Background(), s.creds, r, hex.EncodeToString(sum[:]), "kms", s.region, s.at); err != nil {
		tb.Fatal(err)
	}
	return r
}

// verifierFor is a Verifier of region whose clock reads at, knowing the
// given secrets by access key ID.
func verifierFor(region string, at time.Time, p principals) *Verifier {
	return New(Config{Credentials: p, Region: region, Now: func() time.Time { return at }})
}

// answer is Verify's answer: "" or the error code, and the message.
func answer(v *Verifier, r *http.Request, body []byte) (code, msg string) {
	_, err := v.Verify(context.Background(), r, body, "192.0.2.7")
	if err == nil {
		return "", ""
	}
	if ae, ok := err.(*Error); ok {
		return ae.Code, ae.Message
	}
	return "error", err.Error()
}

const mismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."

// TestVerifyAcceptsWhatTheSDKSigns: for requests of every shape that
// matters to SigV4 (bodies, extra signed headers, repeated values,
// whitespace, paths that need escaping, queries, dates, regions,
// secrets), what the SDK's signer signs, Verify accepts, both as the client
// holds it and as a server reads it off the wire; and changing the
// signature, a signed header, the body, the date or the path after
// signing makes Verify refuse it, with the SDK-based computation
// agreeing.
func TestVerifyAcceptsWhatTheSDKSigns(t *testing.T) {
	secrets := []string{testSecret, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "s", strings.Repeat("long-secret/+=", 20)}
	ids := []string{testID, "AKIAIOSFODNN7EXAMPLE", "AKIA0000000000000003", "AKIA0000000000000004"}
	base := func() http.Header {
		return http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amz-Target": {"TrentService.Encrypt"}}
	}
	with := func(kv ...string) http.Header {
		h := base()
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name   string
		method string
		url    string
		header http.Header
		body   string
	}{
		{"KMS request", "POST", "https://kms.example/", base(), `{"KeyId":"alias/x","Plaintext":"aGk="}`},
		{"empty body", "POST", "https://kms.example/", base(), ""},
		{"binary body", "POST", "https://kms.example/", base(), "\x00\xff\xfe binary \r\n"},
		{"no path", "POST", "https://kms.example", base(), "{}"},
		{"SDK headers", "POST", "https://kms.example:8443/", with(
			"X-Amz-User-Agent", "aws-sdk-go-v2/1.48.0 ua/2.1 api/kms#1.62.5",
			"Amz-Sdk-Invocation-Id", "4c1ef4b2-66a2-4b0d-9d1b-3f5fb0b0a0a1",
			"Amz-Sdk-Request", "attempt=1; max=3",
			"User-Agent", "aws-sdk-go-v2/1.48.0 os/linux"), "{}"},
		{"default https port", "POST", "https://kms.example:443/", base(), "{}"},
		{"http port 80", "POST", "http://kms.example:80/", base(), "{}"},
		{"IPv6 host", "POST", "https://[::1]:8443/", base(), "{}"},
		{"repeated values", "POST", "https://kms.example/", with("X-Amz-Meta-A", "one", "X-Amz-Meta-A", "two", "X-Amz-Meta-A", " three "), "{}"},
		{"spaces", "POST", "https://kms.example/", with("X-Amz-Meta-S", "  lead and   inner  spaces   and trail  "), "{}"},
		{"tabs", "POST", "https://kms.example/", with("X-Amz-Meta-T", "\t tab \t  inside\t", "Cache-Control", " no-cache ,  no-store"), "{}"},
		{"only spaces", "POST", "https://kms.example/", with("X-Amz-Meta-E", "   "), "{}"},
		{"commas and quotes", "POST", "https://kms.example/", with("X-Amz-Meta-C", `a,b, "c  d"`), "{}"},
		{"non-ASCII value", "POST", "https://kms.example/", with("X-Amz-Meta-U", "\u00a0naïve\u2003 ☃ \u00a0"), "{}"},
		{"path needs escaping", "POST", "https://kms.example/a b/ü/%2F/+/*/x;y=z/~_.-", base(), "{}"},
		{"escaped path", "POST", "https://kms.example/a%20b/c%2Fd", base(), "{}"},
		{"double slash and dots", "POST", "https://kms.example//a/./b/../c/", base(), "{}"},
		{"query", "POST", "https://kms.example/?b=2&a=1&a=0&c", base(), "{}"},
		{"query needs escaping", "POST", "https://kms.example/?k%20ey=v+al&x=%2F~&y=%E2%98%83&z=a%26b", base(), "{}"},
		{"malformed query pairs", "POST", "https://kms.example/?a=1;b=2&c=%zz&d=4&&", base(), "{}"},
		{"GET", "GET", "https://kms.example/", base(), ""},
		{"content-sha256", "POST", "https://kms.example/", with("X-Amz-Content-Sha256", "8a7c2f8ba4d5e1b2c0c1a8b8a0f6d55fbd0a4e1ea1b54b8f1d46e37ad5b5f2e0"), ""},
	}
	dates := []time.Time{
		time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC),
		time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2031, 7, 14, 12, 30, 5, 0, time.FixedZone("CEST", 2*3600)),
	}
	regions := []string{"us-east-1", "eu-central-1", "local"}
	for i, tc := range cases {
		at, region := dates[i%len(dates)], regions[i%len(regions)]
		id, secret := ids[i%len(ids)], secrets[i%len(secrets)]
		body := []byte(tc.body)
		if tc.header.Get("X-Amz-Content-Sha256") != "" {
			sum := sha256.Sum256(body)
			tc.header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
		}
		s := sdkRequest{method: tc.method, url: tc.url, header: tc.header, body: body, region: region,
			creds: aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, at: at}
		v := verifierFor(region, at, principals{id: secret})
		t.Run(tc.name, func(t *testing.T) {
			client := s.signed(t)
			for form, r := range map[string]*http.Request{"client": client, "server": asServer(t, client)} {
				if code, msg := answer(v, r, body); code != "" {
					t.Fatalf("%s form refused: %s %s\nAuthorization: %s", form, code, msg, r.Header.Get("Authorization"))
				}
				a, err := parseAuthorization(r.Header.Get("Authorization"))
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(body)
				ours, err := v.expected(context.Background(), r, a, secret, hex.EncodeToString(sum[:]), at, len(body))
				sdk, sdkErr := sdkExpected(context.Background(), v4.NewSigner(), r.Clone(context.Background()), a, secret, hex.EncodeToString(sum[:]), at, len(body))
				if err != nil || sdkErr != nil || ours != sdk || ours != a.signature {
					t.Fatalf("%s form: expected %q, %v; the SDK's %q, %v; signed %q", form, ours, err, sdk, sdkErr, a.signature)
				}
			}
			refuse := func(what, code, msg string, change func(r *http.Request) []byte) {
				t.Helper()
				r := asServer(t, client)
				b := body
				if nb := change(r); nb != nil {
					b = nb
				}
				gotCode, gotMsg := answer(v, r, b)
				if gotCode != code || gotMsg != msg {
					t.Errorf("%s: %s %q, want %s %q", what, gotCode, gotMsg, code, msg)
				}
			}
			refuse("signature byte flipped", CodeInvalid, mismatch, func(r *http.Request) []byte {
				h := r.Header.Get("Authorization")
				last := h[len(h)-1]
				flip := map[bool]string{true: "0", false: "1"}[last != '0']
				r.Header.Set("Authorization", h[:len(h)-1]+flip)
				return nil
			})
			refuse("signed header changed", CodeInvalid, mismatch, func(r *http.Request) []byte {
				r.Header.Set("X-Amz-Target", "TrentService.ScheduleKeyDeletion")
				return nil
			})
			refuse("signed header value added", CodeInvalid, mismatch, func(r *http.Request) []byte {
				r.Header.Add("Content-Type", "text/plain")
				return nil
			})
			if r := asServer(t, client); r.Header.Get("X-Amz-Content-Sha256") == "" {
				refuse("body changed", CodeInvalid, mismatch, func(*http.Request) []byte {
					return append(slices.Clone(body), ' ')
				})
			} else {
				refuse("body changed", CodeInvalid, "The request signature we calculated does not match the signature you provided.",
					func(*http.Request) []byte { return append(slices.Clone(body), ' ') })
			}
			refuse("date a second later", CodeInvalid, mismatch, func(r *http.Request) []byte {
				d, _ := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
				if d.Add(time.Second).Day() != d.Day() {
					d = d.Add(-2 * time.Second)
				}
				r.Header.Set("X-Amz-Date", d.Add(time.Second).Format(amzDateFormat))
				return nil
			})
			refuse("path changed", CodeInvalid, mismatch, func(r *http.Request) []byte {
				r.URL.Path += "x"
				r.URL.RawPath = ""
				return nil
			})
			refuse("query added", CodeInvalid, mismatch, func(r *http.Request) []byte {
				r.URL.RawQuery += "&extra=1"
				return nil
			})
			refuse("method changed", CodeInvalid, mismatch, func(r *http.Request) []byte {
				r.Method = map[bool]string{true: "PUT", false: "POST"}[r.Method == "POST"]
				return nil
			})
		})
	}
}

// TestVerifyRefusesWhatTheSignerWouldNotSign: the refusals that come from
// the signed header list, with the code and message the SDK-based
// verification gave them.
func TestVerifyRefusesWhatTheSignerWouldNotSign(t *testing.T) {
	at := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	v := verifierFor(testRegion, at, principals{testID: testSecret})
	body := []byte(`{"KeyId":"alias/x"}`)
	for _, tc := range []struct {
		name, signed, code, msg string
		header                  http.Header
		body                    []byte
	}{
		{name: "user-agent signed", signed: "content-type;host;user-agent;x-amz-date;x-amz-target",
			header: http.Header{"User-Agent": {"curl/8"}},
			code:   CodeIncomplete, msg: "SignedHeaders content-type;host;user-agent;x-amz-date;x-amz-target cannot be verified"},
		{name: "x-amzn-trace-id signed", signed: "content-type;host;x-amz-date;x-amz-target;x-amzn-trace-id",
			header: http.Header{"X-Amzn-Trace-Id": {"Root=1-0"}},
			code:   CodeIncomplete, msg: "SignedHeaders content-type;host;x-amz-date;x-amz-target;x-amzn-trace-id cannot be verified"},
		{name: "authorization signed", signed: "authorization;content-type;host;x-amz-date;x-amz-target",
			code: CodeIncomplete, msg: "SignedHeaders authorization;content-type;host;x-amz-date;x-amz-target cannot be verified"},
		{name: "not sorted", signed: "host;content-type;x-amz-date;x-amz-target",
			code: CodeIncomplete, msg: "SignedHeaders host;content-type;x-amz-date;x-amz-target cannot be verified"},
		{name: "repeated", signed: "content-type;host;host;x-amz-date;x-amz-target",
			code: CodeIncomplete, msg: "SignedHeaders content-type;host;host;x-amz-date;x-amz-target cannot be verified"},
		{name: "upper case", signed: "Content-Type;content-type;host;x-amz-date;x-amz-target",
			code: CodeIncomplete, msg: "SignedHeaders Content-Type;content-type;host;x-amz-date;x-amz-target cannot be verified"},
		{name: "content-length of an empty body", signed: "content-length;content-type;host;x-amz-date;x-amz-target", body: []byte{},
			code: CodeIncomplete, msg: "SignedHeaders content-length;content-type;host;x-amz-date;x-amz-target cannot be verified"},
		{name: "signed header missing", signed: "content-type;host;x-amz-date;x-amz-meta-gone;x-amz-target;x-amz-zzz",
			code: CodeIncomplete, msg: "signed header x-amz-meta-gone is missing from the request"},
		{name: "missing before unsorted", signed: "x-amz-target;x-amz-meta-gone;content-type;host;x-amz-date",
			code: CodeIncomplete, msg: "signed header x-amz-meta-gone is missing from the request"},
		{name: "empty name", signed: "content-type;;host;x-amz-date;x-amz-target",
			code: CodeIncomplete, msg: "signed header  is missing from the request"},
		{name: "no host", signed: "content-type;x-amz-date;x-amz-target",
			code: CodeIncomplete, msg: "SignedHeaders must include host and x-amz-date."},
		{name: "content-type not signed", signed: "host;x-amz-date;x-amz-target",
			code: CodeIncomplete, msg: "Every x-amz-* header and Content-Type must be signed; not in SignedHeaders: content-type."},
		{name: "as the SDK signs", signed: "content-length;content-type;host;x-amz-date;x-amz-target",
			code: CodeInvalid, msg: mismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := body
			if tc.body != nil {
				b = tc.body
			}
			r, err := http.NewRequest("POST", "https://kms.example/", bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Content-Type", "application/x-amz-json-1.1")
			r.Header.Set("X-Amz-Target", "TrentService.Decrypt")
			for k, vs := range tc.header {
				r.Header[k] = vs
			}
			r.Header.Set("X-Amz-Date", at.Format(amzDateFormat))
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+testID+"/20250601/"+testRegion+"/kms/aws4_request, SignedHeaders="+
				tc.signed+", Signature="+strings.Repeat("ab", 32))
			r = asServer(t, r)
			// The SDK-based computation gives the same answer.
			a, err := parseAuthorization(r.Header.Get("Authorization"))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			_, sdkErr := sdkExpected(context.Background(), v4.NewSigner(), r.Clone(context.Background()), a, testSecret, hex.EncodeToString(sum[:]), at, len(b))
			if code, msg := answer(v, r, b); code != tc.code || msg != tc.msg {
				t.Fatalf("%s %q, want %s %q (the SDK-based computation: %v)", code, msg, tc.code, tc.msg, sdkErr)
			}
			if tc.code == CodeIncomplete && strings.Contains(tc.msg, "SignedHeaders "+tc.signed) && (sdkErr == nil || sdkErr.Error() != tc.msg) {
				t.Fatalf("the SDK-based computation: %v, want %q", sdkErr, tc.msg)
			}
		})
	}
}

// randomRequest is a request made of the parts that SigV4 treats
// specially, drawn from rng: hosts with and without ports, paths and
// queries that need escaping or that url.Parse refuses, header values with
// every kind of whitespace, bodies empty or not, and a SignedHeaders list
// that is the signer's own or a corruption of it.
func randomRequest(tb testing.TB, rng *rand.Rand) (r *http.Request, a authorization, body []byte, secret string, at time.Time) {
	tb.Helper()
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	chars := func(alphabet string, max int) string {
		rs := []rune(alphabet)
		var b strings.Builder
		for range rng.IntN(max + 1) {
			b.WriteRune(rs[rng.IntN(len(rs))])
		}
		return b.String()
	}
	body = []byte(chars(`{}"abc: 0`, 3*rng.IntN(20)))
	r, err := http.NewRequest(pick("POST", "GET", "PUT"), "https://kms.example/", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	r.Host = pick("kms.example", "kms.example:443", "kms.example:8443", "KMS.Example:80", "[::1]:443", "[::1]", "127.0.0.1:443", "h:", ":443", "a b", "a@b", "[bad", "x:y:z", "")
	r.URL.Path = "/" + chars("abz/ %+é~_.-*;=?#:", 12)
	if rng.IntN(4) == 0 {
		r.URL.RawPath = "/" + chars("ab/%2F20", 10)
	}
	r.URL.RawQuery = chars("ab=&;%2F+ é~#\x01", 16)
	if rng.IntN(3) == 0 {
		r.URL.RawQuery = ""
	}
	if rng.IntN(20) == 0 {
		r.Method = pick("", "M-SEARCH", "BAD METHOD")
	}
	values := func() []string {
		vs := make([]string, 1+rng.IntN(3))
		for i := range vs {
			vs[i] = chars("a b  \t,\u00a0\u2003é\"\r\n", 10)
		}
		return vs
	}
	r.Header["Content-Type"] = values()
	r.Header["X-Amz-Target"] = []string{pick("TrentService.Encrypt", " TrentService.Decrypt ")}
	for _, h := range []string{"X-Amz-User-Agent", "X-Amz-Meta-One", "Amz-Sdk-Request", "Cache-Control", "User-Agent", "X-Amzn-Trace-Id", "Expect", "Content-Length"} {
		if rng.IntN(2) == 0 {
			r.Header[h] = values()
		}
	}
	region := pick(testRegion, "eu-west-3")
	secret = pick(testSecret, "other-secret", "")
	at = time.Date(1990+rng.IntN(60), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), 0, time.UTC)
	sum := sha256.Sum256(body)
	signedCopy := r.Clone(context.Background())
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testID, SecretAccessKey: secret},
		signedCopy, hex.EncodeToString(sum[:]), "kms", region, at); err != nil {
		tb.Fatal(err)
	}
	a, err = parseAuthorization(signedCopy.Header.Get("Authorization"))
	if err != nil {
		tb.Fatal(err)
	}
	r.Header["X-Amz-Date"] = signedCopy.Header["X-Amz-Date"]
	r.Header["Authorization"] = signedCopy.Header["Authorization"]
	list := a.signedHeaders
	switch rng.IntN(8) {
	case 0:
		list = append(list, pick("user-agent", "expect", "authorization", "x-amzn-trace-id", "x-amz-meta-gone", "Content-Type", "host", "content-length", ""))
	case 1:
		i, j := rng.IntN(len(list)), rng.IntN(len(list))
		list[i], list[j] = list[j], list[i]
	case 2:
		i := rng.IntN(len(list))
		list[i] = strings.ToUpper(list[i][:1]) + list[i][1:]
	case 3:
		list = slices.DeleteFunc(list, func(h string) bool { return h == "content-length" })
	case 4:
		list = append(list, "X-Amz-Date")
	}
	if rng.IntN(2) == 0 {
		slices.Sort(list)
	}
	a.signedHeaders = list
	return r, a, body, secret, at
}

// TestExpectedMatchesSDKSigner: over a fixed pseudo-random set of
// requests, the direct computation gives the SDK-based computation's
// signature, or its error, with the same message.
func TestExpectedMatchesSDKSigner(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	v := New(Config{Credentials: principals{}, Region: testRegion})
	outcomes := map[string]int{}
	for i := range 4000 {
		r, a, body, secret, at := randomRequest(t, rng)
		sum := sha256.Sum256(body)
		ph := hex.EncodeToString(sum[:])
		ours, err := v.expected(context.Background(), r, a, secret, ph, at, len(body))
		sdk, sdkErr := sdkExpected(context.Background(), v4.NewSigner(), r.Clone(context.Background()), a, secret, ph, at, len(body))
		if ours != sdk || fmt.Sprint(err) != fmt.Sprint(sdkErr) {
			t.Fatalf("request %d: %s %s?%s Host %q, SignedHeaders %q, header %q:\n ours %q, %v\n  SDK %q, %v",
				i, r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Host, a.signedHeaders, r.Header, ours, err, sdk, sdkErr)
		}
		switch {
		case err == nil && ours == a.signature:
			outcomes["signed"]++
		case err == nil:
			outcomes["another signature"]++
		case strings.Contains(err.Error(), "cannot be verified"):
			outcomes["cannot be verified"]++
		case strings.Contains(err.Error(), "missing"):
			outcomes["missing"]++
		default:
			outcomes["URL refused"]++
		}
	}
	t.Log(outcomes)
	// The draw covers every outcome, or the test proves less than it says.
	for _, o := range []string{"signed", "another signature", "cannot be verified", "missing", "URL refused"} {
		if outcomes[o] < 20 {
			t.Errorf("only %d requests with outcome %q", outcomes[o], o)
		}
	}
}

// TestPlainTargetIsTheRoundTrip: whenever the target is taken from the
// request as is, it is what the round trip through URL.String and
// url.Parse gives.
func TestPlainTargetIsTheRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	plain := 0
	for range 5000 {
		r, _, _, _, _ := randomRequest(t, rng)
		if rng.IntN(2) == 0 {
			r = asServerIfPossible(r)
		}
		tg, ok := plainTarget(context.Background(), r)
		if !ok {
			continue
		}
		plain++
		want, err := roundTripTarget(context.Background(), r)
		if err != nil || tg != want {
			t.Fatalf("%s %q Host %q: plain %+v, round trip %+v, %v", r.Method, r.URL, r.Host, tg, want, err)
		}
	}
	if plain < 500 {
		t.Fatalf("only %d plain targets drawn", plain)
	}
}

// asServerIfPossible is r as a server reads it, or r when it cannot be
// sent.
func asServerIfPossible(r *http.Request) *http.Request {
	var wire bytes.Buffer
	if r.Write(&wire) != nil {
		return r
	}
	s, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		return r
	}
	return s
}

// TestHeaderValuesIsHeaderValues: the lookup without allocation finds what
// http.Header.Values finds, for names of every byte and case.
func TestHeaderValuesIsHeaderValues(t *testing.T) {
	h := http.Header{}
	names := []string{"", "a", "A", "-", "x-amz-date", "X-AMZ-DATE", "x-amz-date ", "x amz", "é", "x-\xffa", "a_b", "a.b-c",
		strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("B-", 40)}
	for c := range 256 {
		names = append(names, string(rune(c)), "a"+string([]byte{byte(c)})+"b", string([]byte{byte(c)})+"-x")
	}
	for i, n := range names {
		h[n] = []string{fmt.Sprint("raw", i)}
		h[http.CanonicalHeaderKey(n)] = append(h[http.CanonicalHeaderKey(n)], fmt.Sprint("canonical", i))
	}
	for _, n := range names {
		for _, q := range []string{n, strings.ToLower(n), strings.ToUpper(n)} {
			if got, want := headerValues(h, q), h.Values(q); !slices.Equal(got, want) {
				t.Fatalf("headerValues(%q) = %q, Header.Values %q", q, got, want)
			}
		}
	}
}

// TestToLowerIdempotent backs the claim signedAsIs rests on: lower-casing
// twice is lower-casing once, for every rune and for invalid UTF-8.
func TestToLowerIdempotent(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if l := unicode.ToLower(r); unicode.ToLower(l) != l {
			t.Fatalf("unicode.ToLower(%U) = %U, lower-cased again %U", r, l, unicode.ToLower(l))
		}
	}
	for _, s := range []string{"\xff", "A\xc3", "\xed\xa0\x80", "İ", "K", "Σ"} {
		if l := strings.ToLower(s); strings.ToLower(l) != l {
			t.Fatalf("strings.ToLower(%q) = %q, lower-cased again %q", s, l, strings.ToLower(l))
		}
	}
}

// TestEscaping: the path escaping is smithy-go's httpbinding.EscapePath,
// which the SDK's signer calls, byte for byte; the canonical query sorts
// after escaping and escapes a space as %20; values collapse spaces only.
func TestEscaping(t *testing.T) {
	var all strings.Builder
	for c := range 256 {
		all.WriteByte(byte(c))
	}
	for _, p := range []string{"", "/", "/" + all.String(), "/a%2Fb/%%/é"} {
		if got, want := string(appendEscapedPath(nil, p)), httpbinding.EscapePath(p, false); got != want {
			t.Fatalf("appendEscapedPath(%q) = %q, httpbinding.EscapePath %q", p, got, want)
		}
	}
	if got, want := string(appendCanonicalQuery(nil, "b=%20+&a=2&a=1&%7E=~&c&x=a/b&x=a-b&;=1")), "a=1&a=2&b=%20%20&c=&x=a%2Fb&x=a-b&~=~"; got != want {
		t.Fatalf("canonical query %q, want %q", got, want)
	}
	if got := string(appendCollapsed(nil, "a  \xff \t  b   ")); got != "a \xff \t b " {
		t.Fatalf("appendCollapsed: %q", got)
	}
	if utf8.ValidString(string(appendCollapsed(nil, "\xff"))) {
		t.Fatal("appendCollapsed changed invalid UTF-8")
	}
}

// TestSigningKeyCache: the cache stays within its bound whatever the
// number of secrets; a secret changed for the same access key ID is used
// at once, its predecessor's signatures refused; and neither the secret
// nor a signing key shows when the Verifier is printed.
func TestSigningKeyCache(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	p := principals{}
	v := verifierFor(testRegion, at, p)
	v.keys = newSigningKeys(4, serviceName)
	for i := range 10 {
		id := fmt.Sprintf("AKIACACHE%011d", i)
		p[id] = fmt.Sprintf("secret-%d-0123456789abcdefghijklmnopq", i)
		r, body := generateDataKeyRequest(t, aws.Credentials{AccessKeyID: id, SecretAccessKey: p[id]}, at)
		if code, msg := answer(v, r, body); code != "" {
			t.Fatalf("principal %d: %s %s", i, code, msg)
		}
		if n := v.keys.len(); n < 1 || n > 4 {
			t.Fatalf("%d signing keys cached, bound 4", n)
		}
	}

	old := aws.Credentials{AccessKeyID: testID, SecretAccessKey: testSecret}
	p[testID] = old.SecretAccessKey
	r, body := generateDataKeyRequest(t, old, at)
	if code, msg := answer(v, r, body); code != "" {
		t.Fatalf("before the rotation: %s %s", code, msg)
	}
	rotated := aws.Credentials{AccessKeyID: testID, SecretAccessKey: "rotated-secret-0123456789abcdefghijkl"}
	p[testID] = rotated.SecretAccessKey
	if code, msg := answer(v, r, body); code != CodeInvalid || msg != mismatch {
		t.Fatalf("the old secret's signature after the rotation: %q %q, want %s", code, msg, CodeInvalid)
	}
	r, body = generateDataKeyRequest(t, rotated, at)
	if code, msg := answer(v, r, body); code != "" {
		t.Fatalf("the new secret's signature after the rotation: %s %s", code, msg)
	}
	p[testID] = old.SecretAccessKey
	if code, _ := answer(v, r, body); code != CodeInvalid {
		t.Fatalf("the rotated secret's signature after rotating back: %q, want %s", code, CodeInvalid)
	}

	key := deriveSigningKey(rotated.SecretAccessKey, "20250304", testRegion, serviceName)
	for _, format := range []string{"%v", "%+v", "%#v"} {
		s := fmt.Sprintf(format, v)
		for _, secret := range []string{rotated.SecretAccessKey, hex.EncodeToString(key), fmt.Sprint(key), strings.Trim(fmt.Sprint(key), "[]")} {
			if strings.Contains(s, secret) {
				t.Fatalf("fmt %s of the Verifier shows a secret or signing key: %s", format, s)
			}
		}
	}
}

// TestDeriveSigningKey: the derivation is SigV4's HMAC chain, step by
// step, cached or not.
func TestDeriveSigningKey(t *testing.T) {
	secret, date, region := "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1"
	step := func(k []byte, s string) []byte { m := hmac.New(sha256.New, k); m.Write([]byte(s)); return m.Sum(nil) }
	want := step(step(step(step([]byte("AWS4"+secret), date), region), "kms"), "aws4_request")
	if got := deriveSigningKey(secret, date, region, serviceName); !bytes.Equal(got, want) {
		t.Fatalf("deriveSigningKey = %x, want %x", got, want)
	}
	c := newSigningKeys(2, serviceName)
	for range 2 {
		k := c.get(secret, [8]byte([]byte(date)), region)
		if !bytes.Equal(k.key, want) {
			t.Fatalf("cached key = %x, want %x", k.key, want)
		}
		// A reused HMAC is keyed with the signing key, reset: the
		// second round reuses the first's.
		m := k.mac()
		m.Write([]byte("string to sign"))
		if got, wantMAC := m.Sum(nil), step(want, "string to sign"); !bytes.Equal(got, wantMAC) {
			t.Fatalf("HMAC of a cached key = %x, want %x", got, wantMAC)
		}
		k.macs.Put(m)
	}
}

// TestSigningKeyCacheConcurrent: requests of more principals than the
// cache holds, verified at once, all verify while the cache keeps
// starting over (and, under -race, without a data race).
func TestSigningKeyCacheConcurrent(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	p := principals{}
	type signedRequest struct {
		r    *http.Request
		body []byte
	}
	var reqs []signedRequest
	for i := range 8 {
		id := fmt.Sprintf("AKIACONC%012d", i)
		p[id] = fmt.Sprintf("concurrent-secret-%d", i)
		r, body := generateDataKeyRequest(t, aws.Credentials{AccessKeyID: id, SecretAccessKey: p[id]}, at)
		reqs = append(reqs, signedRequest{r, body})
	}
	v := verifierFor(testRegion, at, p)
	v.keys = newSigningKeys(3, serviceName)
	var wg sync.WaitGroup
	errs := make(chan string, 4*len(reqs))
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				s := reqs[(i+w)%len(reqs)]
				if code, msg := answer(v, s.r, s.body); code != "" {
					errs <- code + " " + msg
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := v.keys.len(); n > 3 {
		t.Fatalf("%d signing keys cached, bound 3", n)
	}
}

// TestUnsignedHeadersAsBefore: the ASCII fast path of unsignedHeaders
// names the headers the lower-casing of every name named.
func TestUnsignedHeadersAsBefore(t *testing.T) {
	before := func(h http.Header, signed []string) string {
		var missing []string
		for name := range h {
			lower := strings.ToLower(name)
			if (strings.HasPrefix(lower, "x-amz-") || lower == "content-type") && !slices.Contains(signed, lower) {
				missing = append(missing, lower)
			}
		}
		slices.Sort(missing)
		return strings.Join(missing, ", ")
	}
	names := []string{"X-Amz-Target", "x-amz-target", "X-AMZ-DATE", "X-Amz-", "x-amz", "X-Amzn-Trace-Id", "Content-Type", "content-type",
		"Content-Typo", "CONTENT-TYPE", "X-Amz-Ünï", "X-\u212amz-K", "Content-\u212aype", "Host", "X-Amz-Meta-A", ""}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		h := http.Header{}
		var signed []string
		for _, n := range names {
			if rng.IntN(2) == 0 {
				h[n] = []string{"v"}
			}
			if rng.IntN(3) == 0 {
				signed = append(signed, strings.ToLower(n))
			}
			if rng.IntN(5) == 0 {
				signed = append(signed, n)
			}
		}
		if got, want := unsignedHeaders(h, signed), before(h, signed); got != want {
			t.Fatalf("unsignedHeaders(%q, %q) = %q, was %q", h, signed, got, want)
		}
	}
}
