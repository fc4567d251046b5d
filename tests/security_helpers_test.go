package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/hsmkms/hsmkms/service/policy"
)

// The security tests' own helpers: a dev server with its root credentials
// and audit file, real SDK and admin clients bound to a chosen loopback
// source address, and raw SigV4-signed requests built with the SDK's
// signer for the attacks.

const (
	// secCallLimit bounds every request a security test sends.
	secCallLimit = 30 * time.Second
	// jsonType is the Content-Type of every KMS request and response.
	jsonType = "application/x-amz-json-1.1"
	// auditWait bounds how long a test polls the audit file for a record
	// written after the response (a cancelled request's).
	auditWait = 30 * time.Second
)

// nextSource hands out loopback source addresses 127.0.0.10, .11, …: each
// group of requests whose audit records a test counts gets its own, so the
// server's per-address failure budget of one group never touches another.
var nextSource atomic.Int32

func freshSource() string {
	n := nextSource.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 1+n/200, 10+n%200)
}

// secEnv is one running dev server under attack.
type secEnv struct {
	s        *sandbox
	srv      *server
	devDir   string
	endpoint string
	region   string
	root     aws.Credentials
}

// startSecDev starts a dev server in a fresh dev dir.
func startSecDev(t *testing.T) *secEnv {
	t.Helper()
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	return newSecEnv(s, s.startDev(devDir), devDir)
}

// startSecDevMetrics is startSecDev with a metrics listener; it returns
// the metrics URL beside the environment.
func startSecDevMetrics(t *testing.T) (*secEnv, string) {
	t.Helper()
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	port, mport := freePort(t), freePort(t)
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", devDir, "--listen", "127.0.0.1:"+port,
		"--metrics-listen", "127.0.0.1:"+mport)
	return newSecEnv(s, srv, devDir), "http://127.0.0.1:" + mport + "/metrics"
}

func newSecEnv(s *sandbox, srv *server, devDir string) *secEnv {
	return &secEnv{s: s, srv: srv, devDir: devDir, endpoint: srv.exports["HSMKMS_ENDPOINT"], region: srv.exports["AWS_REGION"],
		root: aws.Credentials{AccessKeyID: srv.exports["AWS_ACCESS_KEY_ID"], SecretAccessKey: srv.exports["AWS_SECRET_ACCESS_KEY"]}}
}

// auditPath is the dev server's audit trail (cli/dev.go).
func (e *secEnv) auditPath() string { return filepath.Join(e.devDir, "audit.log") }

// httpFrom is an HTTP client whose connections come from source (a
// loopback address; "" lets the kernel choose 127.0.0.1).
func httpFrom(source string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	return &http.Client{Timeout: secCallLimit, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// kms is the real aws-sdk-go-v2 KMS client, one request per call (no
// retries), connecting from source.
func (e *secEnv) kms(creds aws.Credentials, source string) *kms.Client {
	return kms.New(kms.Options{
		Region:       e.region,
		Credentials:  credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
		BaseEndpoint: aws.String(e.endpoint),
		HTTPClient:   httpFrom(source),
		Retryer:      aws.NopRetryer{},
	})
}

// admin is the admin client signing with creds, connecting from source.
func (e *secEnv) admin(creds aws.Credentials, source string) *adminclient.Client {
	c := adminclient.New(e.endpoint, e.region, creds)
	c.HTTP = httpFrom(source)
	return c
}

// principal creates a principal as root and returns its credentials.
func (e *secEnv) principal(t *testing.T, name string, stmts ...policy.Statement) aws.Credentials {
	t.Helper()
	p, err := e.admin(e.root, "").CreatePrincipal(t.Context(), service.CreatePrincipalInput{Name: name, Statements: stmts})
	if err != nil {
		t.Fatalf("CreatePrincipal(%s) as root: %v", name, err)
	}
	return aws.Credentials{AccessKeyID: p.AccessKeyId, SecretAccessKey: p.SecretAccessKey}
}

// allowAll is a statement allowing every KMS action on every key.
var allowAll = policy.Statement{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"*"}}

// newKey creates a symmetric key as root and returns its ID and ARN.
func (e *secEnv) newKey(t *testing.T) (id, arn string) {
	t.Helper()
	out, err := e.kms(e.root, "").CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("CreateKey as root: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId), aws.ToString(out.KeyMetadata.Arn)
}

// keyState is the key's state as root sees it through the SDK.
func (e *secEnv) keyState(t *testing.T, keyID string) string {
	t.Helper()
	out, err := e.kms(e.root, "").DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		t.Fatalf("DescribeKey(%s) as root: %v", keyID, err)
	}
	return string(out.KeyMetadata.KeyState)
}

// rawRequest builds POST / with body; target "" sends no X-Amz-Target and
// withType false no Content-Type.
func (e *secEnv) rawRequest(t *testing.T, target string, body []byte, withType bool) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.endpoint+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if withType {
		req.Header.Set("Content-Type", jsonType)
	}
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	return req
}

// sign signs req (whose body is body) with the SDK's v4 signer as at time
// at, for the service and region given ("" for kms and the server's).
func (e *secEnv) sign(t *testing.T, req *http.Request, body []byte, creds aws.Credentials, at time.Time, svc, region string) {
	t.Helper()
	if svc == "" {
		svc = "kms"
	}
	if region == "" {
		region = e.region
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), svc, region, at); err != nil {
		t.Fatalf("SignHTTP: %v", err)
	}
}

// signed is POST / for target with body, correctly signed with creds now.
func (e *secEnv) signed(t *testing.T, target string, body []byte, creds aws.Credentials) *http.Request {
	t.Helper()
	req := e.rawRequest(t, target, body, true)
	e.sign(t, req, body, creds, time.Now(), "", "")
	return req
}

// rawResponse is a response read in full.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
	// typ and msg are an error body's __type and message.
	typ, msg string
}

func (r rawResponse) id() string { return r.header.Get("X-Amzn-RequestId") }

func (r rawResponse) String() string {
	b := r.body
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

// sendFrom sends req from source and reads the whole response.
func sendFrom(t *testing.T, source string, req *http.Request) rawResponse {
	t.Helper()
	resp, err := httpFrom(source).Do(req)
	if err != nil {
		t.Fatalf("%s %s (target %q): %v", req.Method, req.URL.Path, req.Header.Get("X-Amz-Target"), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	r := rawResponse{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &e) == nil {
			r.typ, r.msg = e.Type, e.Message
		}
	}
	return r
}

// wantErrorShape checks what every error response must be: not a 5xx,
// Content-Type application/x-amz-json-1.1, one JSON object with a
// non-empty __type and message, and a request ID.
func wantErrorShape(t *testing.T, r rawResponse) {
	t.Helper()
	if r.status >= 500 {
		t.Fatalf("%v: the server must never answer a client's request with a 5xx", r)
	}
	if ct := r.header.Get("Content-Type"); ct != jsonType {
		t.Errorf("error response Content-Type %q, want %s (%v)", ct, jsonType, r)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	if err := dec.Decode(&m); err != nil || dec.More() {
		t.Fatalf("error body %q is not one JSON object: %v", r.body, err)
	}
	if typ, _ := m["__type"].(string); typ == "" {
		t.Errorf("error body %s has no __type", r.body)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Errorf("error body %s has no message", r.body)
	}
	if r.id() == "" {
		t.Errorf("error response %v has no X-Amzn-RequestId", r)
	}
}

// wantError checks an error response's status, type and shape.
func wantError(t *testing.T, r rawResponse, status int, code string) {
	t.Helper()
	if r.status != status || r.typ != code {
		t.Fatalf("got %v, want %d %s", r, status, code)
	}
	wantErrorShape(t, r)
}

// wantOK checks a 200 with a JSON body and returns the body decoded.
func wantOK(t *testing.T, r rawResponse) map[string]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("got %v, want 200", r)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("200 body %q is not JSON: %v", r.body, err)
	}
	return m
}

// sdkError checks an SDK call's error: an API error of type code with
// status, the JSON content type, a message, a request ID; it returns the
// request ID.
func sdkError(t *testing.T, err error, status int, code string) string {
	t.Helper()
	var ae smithy.APIError
	var re *awshttp.ResponseError
	if !errors.As(err, &ae) || !errors.As(err, &re) {
		t.Fatalf("err = %v, want a %s API error", err, code)
	}
	if ae.ErrorCode() != code || re.HTTPStatusCode() != status {
		t.Fatalf("err = %v (status %d), want %d %s", err, re.HTTPStatusCode(), status, code)
	}
	if ae.ErrorMessage() == "" {
		t.Errorf("%s has no message", code)
	}
	if ct := re.Response.Header.Get("Content-Type"); ct != jsonType {
		t.Errorf("%s: Content-Type %q, want %s", code, ct, jsonType)
	}
	if re.ServiceRequestID() == "" {
		t.Fatalf("%s carries no request ID", code)
	}
	return re.ServiceRequestID()
}

// adminError checks an admin client call's error.
func adminError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *adminclient.Error
	if !errors.As(err, &ae) || ae.Status != status || ae.Type != code || ae.Message == "" {
		t.Fatalf("err = %v (%#v), want %d %s with a message", err, ae, status, code)
	}
}

// auditRec is the "audit" object of an audit line.
type auditRec struct {
	Time              time.Time         `json:"time"`
	RequestID         string            `json:"request_id"`
	Principal         string            `json:"principal"`
	Action            string            `json:"action"`
	KeyID             string            `json:"key_id"`
	KeyVersion        uint32            `json:"key_version"`
	Alias             string            `json:"alias"`
	EncryptionContext map[string]string `json:"encryption_context"`
	Source            string            `json:"source"`
	Outcome           string            `json:"outcome"`
	ErrorType         string            `json:"error_type"`
	Subject           string            `json:"subject"`
	Suppressed        int               `json:"suppressed"`
	SuppressedID      int               `json:"suppressed_id"`
	SuppressedAll     int               `json:"suppressed_all"`
}

// auditLines reads the audit file of a dev dir: its raw lines and each
// line's record. Every complete line must be an audit record; a last line
// still being written is left for the next read.
func auditLines(t *testing.T, path string) ([]string, []auditRec) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the audit trail: %v", err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	var lines []string
	var recs []auditRec
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var l struct {
			Message string    `json:"@message"`
			Module  string    `json:"@module"`
			Audit   *auditRec `json:"audit"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Audit == nil || l.Message != "audit" || l.Module != "audit" {
			t.Fatalf("audit line %.300q is not an audit record: %v", line, err)
		}
		lines = append(lines, line)
		recs = append(recs, *l.Audit)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the audit trail: %v", err)
	}
	return lines, recs
}

// audit returns every record of the server's audit trail.
func (e *secEnv) audit(t *testing.T) []auditRec {
	t.Helper()
	_, recs := auditLines(t, e.auditPath())
	return recs
}

// auditFor returns the records of one request.
func (e *secEnv) auditFor(t *testing.T, id string) []auditRec {
	t.Helper()
	var out []auditRec
	for _, r := range e.audit(t) {
		if r.RequestID == id {
			out = append(out, r)
		}
	}
	return out
}

// wantOneRefusal checks that request id wrote exactly one audit record, a
// refusal ("denied" or "failed") of type code, and returns it.
func (e *secEnv) wantOneRefusal(t *testing.T, id, code string) auditRec {
	t.Helper()
	if id == "" {
		t.Fatal("no request ID to find the audit record by")
	}
	recs := e.auditFor(t, id)
	if len(recs) != 1 {
		t.Fatalf("request %s wrote %d audit records, want exactly 1: %+v", id, len(recs), recs)
	}
	r := recs[0]
	if (r.Outcome != "denied" && r.Outcome != "failed") || r.ErrorType != code {
		t.Fatalf("audit record of request %s = %+v, want outcome denied or failed with error type %s", id, r, code)
	}
	return r
}

// pollAudit polls the audit trail until pick finds something, or fails
// the test after auditWait.
func pollAudit[T any](t *testing.T, e *secEnv, what string, pick func([]auditRec) (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(auditWait)
	for {
		if v, ok := pick(e.audit(t)); ok {
			return v
		}
		if time.Now().After(deadline) {
			lines, _ := auditLines(t, e.auditPath())
			t.Fatalf("no %s in the audit trail after %v; its last lines:\n%s", what, auditWait, strings.Join(lines[max(0, len(lines)-5):], "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jsonBody marshals v.
func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signedHeadersOf is the SignedHeaders of an Authorization header.
func signedHeadersOf(auth string) string {
	for part := range strings.SplitSeq(auth, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "SignedHeaders="); ok {
			return v
		}
	}
	return ""
}

// signatureOf is the Signature of an Authorization header.
func signatureOf(auth string) string {
	for part := range strings.SplitSeq(auth, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "Signature="); ok {
			return v
		}
	}
	return ""
}

// cancelAfterSend is a transport that cancels the request's context d
// after the request has been handed to the network.
type cancelAfterSend struct {
	base   http.RoundTripper
	cancel context.CancelFunc
	d      time.Duration
	sent   atomic.Bool
}

func (c *cancelAfterSend) RoundTrip(req *http.Request) (*http.Response, error) {
	c.sent.Store(true)
	time.AfterFunc(c.d, c.cancel)
	return c.base.RoundTrip(req)
}

// grepLines returns the lines of s that contain any of subs.
func grepLines(s string, subs ...string) []string {
	var out []string
	for line := range strings.Lines(s) {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				out = append(out, strings.TrimRight(line, "\n"))
				break
			}
		}
	}
	return out
}
