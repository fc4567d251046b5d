package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
)

// TestRetargetedRequestIsRefused signs a DescribeKey over host,
// content-length and x-amz-date only, then re-sends it as ScheduleKeyDeletion and DisableKey:
// both are refused with IncompleteSignatureException and the key stays
// Enabled, because SigV4 as AWS applies it requires every x-amz-* header
// and Content-Type to be signed.
func TestRetargetedRequestIsRefused(t *testing.T) {
	ts := startServer(t)
	c := ts.kmsClient(rootCreds)
	keyID := newKey(t, c, nil)
	body := []byte(`{"KeyId":"` + keyID + `"}`)
	for _, target := range []string{"TrentService.ScheduleKeyDeletion", "TrentService.DisableKey"} {
		req := ts.unsignedRequest(t, "", body)
		req.Header.Del("Content-Type")
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(t.Context(), rootCreds, req, hex.EncodeToString(sum[:]), "kms", region, time.Now()); err != nil {
			t.Fatal(err)
		}
		if sh := req.Header.Get("Authorization"); strings.Contains(sh, "x-amz-target") || strings.Contains(sh, "content-type") {
			t.Fatalf("the request signs its target or content type: %s", sh)
		}
		req.Header.Set("X-Amz-Target", target)
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		r := send(t, req)
		if r.status != http.StatusBadRequest || r.typ != "IncompleteSignatureException" {
			t.Fatalf("%s re-targeted: %d %s %q, want 400 IncompleteSignatureException", target, r.status, r.typ, r.msg)
		}
		ts.wantOneDenial(t, r.header.Get("X-Amzn-RequestId"), "IncompleteSignatureException")
	}
	out, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		t.Fatal(err)
	}
	if out.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Fatalf("key state %s after the refused requests, want Enabled", out.KeyMetadata.KeyState)
	}
}

// TestFailedAuthenticationNeverLocksOut sends 60 failed authentications
// from 127.0.0.1, unsigned and with a guessed secret, each followed by a
// correctly signed request from the same address: every correct request
// succeeds (behind a NAT every client shares the address), every failure
// gets its own error type, and the failures' audit records are bounded by
// the budget (20 at once, then 1 a second) with the rest counted.
func TestFailedAuthenticationNeverLocksOut(t *testing.T) {
	ts := startServer(t)
	keyID := newKey(t, ts.kmsClient(rootCreds), nil)
	body := encryptBody(t, keyID)
	bad := aws.Credentials{AccessKeyID: rootID, SecretAccessKey: "a-guessed-secret-0123456789abcdefghij"}
	before := len(ts.auditRecords(t))
	start := time.Now()
	const failures = 60
	for i := range failures {
		var r rawResponse
		want := "MissingAuthenticationTokenException"
		if i%2 == 0 {
			r = send(t, ts.unsignedRequest(t, "TrentService.ListKeys", []byte(`{}`)))
		} else {
			r = send(t, ts.signedRequest(t, "TrentService.Encrypt", body, bad, time.Now()))
			want = "InvalidSignatureException"
		}
		if r.typ != want {
			t.Fatalf("failure %d: %d %s %q, want %s", i, r.status, r.typ, r.msg, want)
		}
		if r := send(t, ts.signedRequest(t, "TrentService.Encrypt", body, rootCreds, time.Now())); r.status != http.StatusOK {
			t.Fatalf("a correct request after %d failures from its address: %d %s %q", i+1, r.status, r.typ, r.msg)
		}
	}
	elapsed := time.Since(start)
	denied, counted := 0, 0
	for _, rec := range ts.auditRecords(t)[before:] {
		if rec.Outcome == "denied" {
			denied++
			counted += rec.Suppressed + rec.SuppressedID + rec.SuppressedAll
		}
	}
	if limit := 20 + int(elapsed/time.Second) + 1; denied > limit {
		t.Fatalf("%d failures audited one by one in %v, want at most %d", denied, elapsed, limit)
	}
	if denied+counted > failures {
		t.Fatalf("%d records + %d counted > %d failures: a failure was counted twice", denied, counted, failures)
	}
	if !strings.Contains(ts.logs.String(), "past the audit budget") {
		t.Fatal("no log line says the failures went past the audit budget")
	}
}

// abortingHSM is the real token, except that its next SealDataKey waits
// until the request's context ends, as a token call would when the client
// goes away mid-request, and fails with the context's error.
type abortingHSM struct {
	service.HSM
	once    sync.Once
	reached chan struct{}
}

func (h *abortingHSM) SealDataKey(ctx context.Context, id hsm.ObjectID, n int, iv, aad []byte) ([]byte, []byte, error) {
	first := false
	h.once.Do(func() { first = true })
	if !first {
		return h.HSM.SealDataKey(ctx, id, n, iv, aad)
	}
	close(h.reached)
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

// TestClientAbortIsNotAFailure resets a GenerateDataKey's connection while
// the service is in the token call: the request is recorded as cancelled
// in the audit trail and the metrics, with no error type, and nothing is
// logged as an error.
func TestClientAbortIsNotAFailure(t *testing.T) {
	h := &abortingHSM{reached: make(chan struct{})}
	ts := startServer(t, func(c *Config) { c.wrapHSM = func(s service.HSM) service.HSM { h.HSM = s; return h } })
	keyID := newKey(t, ts.kmsClient(rootCreds), nil)
	ctx, cancel := context.WithCancel(t.Context())
	req := ts.signedRequest(t, "TrentService.GenerateDataKey", []byte(`{"KeyId":"`+keyID+`","KeySpec":"AES_256"}`), rootCreds, time.Now())
	req = req.WithContext(ctx)
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: callLimit}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-h.reached:
	case <-time.After(callLimit):
		t.Fatal("the request never reached the token")
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	rec := waitFor(t, "an audit record of the GenerateDataKey", func() (auditRecord, bool) {
		recs := ts.recordsOf(t, "kms:GenerateDataKey")
		if len(recs) == 0 {
			return auditRecord{}, false
		}
		return recs[0], true
	})
	if rec.Outcome != "cancelled" || rec.ErrorType != "" {
		t.Fatalf("audit record %+v, want outcome cancelled and no error type", rec)
	}
	waitFor(t, "the cancelled request in the metrics", func() (string, bool) {
		m := string(ts.metrics(t).body)
		return m, strings.Contains(m, `hsmkms_requests_total{operation="GenerateDataKey",outcome="cancelled"} 1`)
	})
	if m := string(ts.metrics(t).body); strings.Contains(m, "KMSInternalException") || strings.Contains(m, "DependencyTimeoutException") {
		t.Fatalf("the metrics count a failure of the server:\n%s", grepLines(m, "hsmkms_requests_total"))
	}
	if logs := ts.logs.String(); strings.Contains(logs, `"@level":"error"`) {
		t.Fatalf("an ERROR line for a request the client abandoned:\n%s", logs)
	}
}

// waitFor polls f until it reports done, failing the test after callLimit.
func waitFor[T any](t *testing.T, what string, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(callLimit)
	for {
		v, ok := f()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, callLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsOnlyOnTheirListener proves /metrics, which names keys and
// counts their seals, is not served on the API listener, and that the
// metrics listener serves nothing else.
func TestMetricsOnlyOnTheirListener(t *testing.T) {
	ts := startServer(t)
	if r := ts.get(t, "/metrics"); r.status != http.StatusNotFound {
		t.Fatalf("GET /metrics on the API listener = %d, want 404", r.status)
	}
	if r := ts.metrics(t); r.status != http.StatusOK || !bytes.Contains(r.body, []byte("hsmkms_hsm_sessions_max")) {
		t.Fatalf("GET /metrics on the metrics listener = %d", r.status)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+ts.srv.MetricsAddr()+"/", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	if r := send(t, req); r.status != http.StatusNotFound {
		t.Fatalf("an API request to the metrics listener = %d, want 404", r.status)
	}
}

// TestStrictRequestText sends correctly signed requests whose JSON a
// lenient decoder would read differently from a proxy in front: member
// names match exactly (a case variant is an unknown member, ignored), a
// member named twice at any depth is refused, and text that is not valid
// UTF-8 or holds a lone surrogate escape is refused; a session token is
// refused for a long-term key.
func TestStrictRequestText(t *testing.T) {
	ts := startServer(t)
	c := ts.kmsClient(rootCreds)
	keyA, keyB := newKey(t, c, nil), newKey(t, c, nil)
	pt := base64.StdEncoding.EncodeToString([]byte("hi"))
	cases := []struct {
		name, body, code string
	}{
		{"case variant ignored", `{"KeyId":"` + keyA + `","keyid":"` + keyB + `","Plaintext":"` + pt + `"}`, ""},
		{"member twice", `{"KeyId":"` + keyA + `","KeyId":"` + keyB + `","Plaintext":"` + pt + `"}`, "SerializationException"},
		{"context key twice", `{"KeyId":"` + keyA + `","Plaintext":"` + pt + `","EncryptionContext":{"a":"1","a":"2"}}`, "SerializationException"},
		{"invalid UTF-8 in context", "{\"KeyId\":\"" + keyA + "\",\"Plaintext\":\"" + pt + "\",\"EncryptionContext\":{\"a\":\"\xff\"}}", "ValidationException"},
		{"lone high surrogate", `{"KeyId":"` + keyA + `","Plaintext":"` + pt + `","EncryptionContext":{"a":"\ud800"}}`, "ValidationException"},
		{"lone low surrogate", `{"KeyId":"` + keyA + `","Plaintext":"` + pt + `","EncryptionContext":{"a":"\udc00x"}}`, "ValidationException"},
		{"surrogate pair", `{"KeyId":"` + keyA + `","Plaintext":"` + pt + `","EncryptionContext":{"a":"\ud83d\ude00"}}`, ""},
		{"escaped backslash before u", `{"KeyId":"` + keyA + `","Plaintext":"` + pt + `","EncryptionContext":{"a":"\\ud800"}}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, ts.signedRequest(t, "TrentService.Encrypt", []byte(tc.body), rootCreds, time.Now()))
			if tc.code == "" {
				if r.status != http.StatusOK {
					t.Fatalf("%d %s %q, want 200", r.status, r.typ, r.msg)
				}
				if !bytes.Contains(r.body, []byte(keyA)) {
					t.Fatalf("encrypted under another key than KeyId names: %s", r.body)
				}
				return
			}
			if r.status != http.StatusBadRequest || r.typ != tc.code {
				t.Fatalf("%d %s %q, want 400 %s", r.status, r.typ, r.msg, tc.code)
			}
			if recs := ts.auditFor(t, r.header.Get("X-Amzn-RequestId")); len(recs) != 1 || recs[0].ErrorType != tc.code {
				t.Fatalf("audit records %+v, want one with error type %s", recs, tc.code)
			}
		})
	}
	t.Run("session token", func(t *testing.T) {
		withToken := aws.Credentials{AccessKeyID: rootID, SecretAccessKey: rootSecret, SessionToken: "a-session-token"}
		r := send(t, ts.signedRequest(t, "TrentService.ListKeys", []byte(`{}`), withToken, time.Now()))
		if r.status != http.StatusBadRequest || r.typ != "UnrecognizedClientException" {
			t.Fatalf("%d %s %q, want 400 UnrecognizedClientException", r.status, r.typ, r.msg)
		}
		ts.wantOneDenial(t, r.header.Get("X-Amzn-RequestId"), "UnrecognizedClientException")
	})
}

// TestUnverifiedRefusalsAreBounded sends 60 requests that are refused
// before any signature is checked (an unknown operation, a body over the
// limit): each is answered with its own error, a correct request still
// succeeds, and their audit records stay within the source's budget.
func TestUnverifiedRefusalsAreBounded(t *testing.T) {
	ts := startServer(t)
	before := len(ts.auditRecords(t))
	start := time.Now()
	const refused = 60
	for i := range refused {
		target, body, want := "TrentService.MakeCoffee", []byte(`{}`), "UnknownOperationException"
		if i%2 == 1 {
			target, body, want = "TrentService.DescribeKey", []byte(oversize(64<<10+1)), "RequestEntityTooLargeException"
		}
		if r := send(t, ts.unsignedRequest(t, target, body)); r.typ != want {
			t.Fatalf("request %d: %d %s %q, want %s", i, r.status, r.typ, r.msg, want)
		}
	}
	if r := send(t, ts.signedRequest(t, "TrentService.ListKeys", []byte(`{}`), rootCreds, time.Now())); r.status != http.StatusOK {
		t.Fatalf("a correct request after the refusals: %d %s %q", r.status, r.typ, r.msg)
	}
	elapsed := time.Since(start)
	recs := ts.auditRecords(t)[before:]
	failed, counted := 0, 0
	for _, r := range recs {
		if r.Outcome == "failed" {
			failed++
			counted += r.Suppressed + r.SuppressedID + r.SuppressedAll
		}
	}
	if limit := 20 + int(elapsed/time.Second) + 1; failed > limit || failed == 0 {
		t.Fatalf("%d of %d refusals audited in %v, want 1 to %d", failed, refused, elapsed, limit)
	}
	if failed+counted > refused {
		t.Fatalf("%d records + %d counted > %d refusals", failed, counted, refused)
	}
}

// switchedWriter fails every write, as a full disk does, while full is
// set, and otherwise writes to w.
type switchedWriter struct {
	full atomic.Bool
	w    io.Writer
}

func (s *switchedWriter) Write(p []byte) (int, error) {
	if s.full.Load() {
		return 0, errors.New("write audit.log: no space left on device")
	}
	return s.w.Write(p)
}

// TestRefusalRecordsLostAreCounted proves that the records of requests
// refused before the service (a wrong signature, an unknown operation)
// go through the service's audit trail: while it cannot be written they
// are answered with their own errors, and the log counts them among the
// records lost once it works again.
func TestRefusalRecordsLostAreCounted(t *testing.T) {
	disk := &switchedWriter{}
	ts := startServer(t, func(c *Config) { disk.w = c.Audit; c.Audit = disk })
	bad := aws.Credentials{AccessKeyID: rootID, SecretAccessKey: "a-guessed-secret-0123456789abcdefghij"}
	disk.full.Store(true)
	for range 3 {
		if r := send(t, ts.signedRequest(t, "TrentService.ListKeys", []byte(`{}`), bad, time.Now())); r.typ != "InvalidSignatureException" {
			t.Fatalf("a wrong signature with the audit trail failing: %d %s %q, want InvalidSignatureException", r.status, r.typ, r.msg)
		}
	}
	if r := send(t, ts.signedRequest(t, "TrentService.NoSuchOperation", []byte(`{}`), rootCreds, time.Now())); r.typ != "UnknownOperationException" {
		t.Fatalf("an unknown operation with the audit trail failing: %d %s %q", r.status, r.typ, r.msg)
	}
	disk.full.Store(false)
	if r := send(t, ts.signedRequest(t, "TrentService.ListKeys", []byte(`{}`), rootCreds, time.Now())); r.status != http.StatusOK {
		t.Fatalf("ListKeys once the audit trail works again: %d %s %q", r.status, r.typ, r.msg)
	}
	logs := ts.logs.String()
	if n := strings.Count(logs, "writing the audit trail failed"); n != 1 {
		t.Errorf("the log says %d times that the audit trail fails, want once:\n%s", n, logs)
	}
	if !regexp.MustCompile(`"@message":"the audit trail is written again".*"records_lost":4[,}]`).MatchString(logs) {
		t.Errorf("the log does not count the 4 refusals' records as lost:\n%s", logs)
	}
}
