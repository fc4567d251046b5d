package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/hsmkms/hsmkms/softhsm"
)

// env is the package's private SoftHSM2 store, made once per test run.
var env *softhsm.Token

const (
	testLabel = "server-test"
	region    = "us-east-1"
	account   = "000000000000"
	keyARNPre = "arn:aws:kms:" + region + ":" + account + ":key/"
	// rootID and rootSecret are the root principal every test server has.
	rootID     = "AKIASERVERTESTROOT01"
	rootSecret = "server-test-root-secret-0123456789abcdef"
	// callLimit bounds every client call: a hang becomes a failure.
	callLimit = 30 * time.Second
)

func TestMain(m *testing.M) {
	os.Exit(softhsm.RunTests(m, testLabel, func(t *softhsm.Token) { env = t }))
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testServer is a running server with its audit trail and logs captured.
type testServer struct {
	srv      *Server
	endpoint string
	audit    *syncBuffer
	logs     *syncBuffer
}

// rootCreds are the root principal's credentials.
var rootCreds = aws.Credentials{AccessKeyID: rootID, SecretAccessKey: rootSecret}

// startServer starts a server on 127.0.0.1:0 with a fresh data directory,
// the package's token (change may pick another) and the root credentials,
// and shuts it down when the test ends. Only one server runs at a time:
// the process has one PKCS#11 module.
func startServer(t testing.TB, change ...func(*Config)) *testServer {
	t.Helper()
	ts := &testServer{audit: &syncBuffer{}, logs: &syncBuffer{}}
	cfg := Config{
		Listen:          "127.0.0.1:0",
		DataDir:         filepath.Join(t.TempDir(), "data"),
		ModulePath:      env.ModulePath,
		TokenLabel:      testLabel,
		PIN:             hsm.NewPIN(softhsm.TestPIN),
		Region:          region,
		Account:         account,
		Audit:           ts.audit,
		Logger:          hclog.New(&hclog.LoggerOptions{Output: ts.logs, Level: hclog.Debug, JSONFormat: true}),
		RootAccessKeyID: rootID,
		RootSecret:      rootSecret,
		MetricsListen:   "127.0.0.1:0",
	}
	for _, c := range change {
		c(&cfg)
	}
	srv, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	ts.srv, ts.endpoint = srv, srv.Endpoint()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callLimit)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", ts.logs.String())
		}
	})
	if srv.RootCredentials != "" {
		t.Fatalf("Start wrote %s although root credentials were configured", srv.RootCredentials)
	}
	return ts
}

// kmsClient is a real aws-sdk-go-v2 KMS client of ts, without retries so
// that every call is exactly one request.
func (ts *testServer) kmsClient(creds aws.Credentials) *kms.Client {
	return kms.New(kms.Options{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, ""),
		BaseEndpoint: aws.String(ts.endpoint),
		HTTPClient:   &http.Client{Timeout: callLimit},
		Retryer:      aws.NopRetryer{},
	})
}

// admin is an admin client of ts signing with creds.
func (ts *testServer) admin(creds aws.Credentials) *adminclient.Client {
	c := adminclient.New(ts.endpoint, region, creds)
	c.HTTP.Timeout = callLimit
	return c
}

// errorCode is the AWS error type of an SDK error ("" if none).
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// requestID is the request ID the server answered an SDK error with.
func requestID(t *testing.T, err error) string {
	t.Helper()
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.ServiceRequestID() == "" {
		t.Fatalf("error %v carries no request ID", err)
	}
	return re.ServiceRequestID()
}

// httpStatus is the HTTP status of an SDK error (0 if none).
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isA reports whether err is (or wraps) a T.
func isA[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

// signedRequest builds a POST / for target with body, signed with creds as
// at time at by the SDK's v4 signer. An empty target sends no X-Amz-Target.
func (ts *testServer) signedRequest(t testing.TB, target string, body []byte, creds aws.Credentials, at time.Time) *http.Request {
	t.Helper()
	req := ts.unsignedRequest(t, target, body)
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), "kms", region, at); err != nil {
		t.Fatalf("SignHTTP: %v", err)
	}
	return req
}

// unsignedRequest builds a POST / for target with body and no signature.
func (ts *testServer) unsignedRequest(t testing.TB, target string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.endpoint+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	return req
}

// rawResponse is a response read in full.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
	// typ and msg are the error body's __type and message.
	typ, msg string
}

// send sends req with a client timeout, so that a hang fails the test.
func send(t *testing.T, req *http.Request) rawResponse {
	t.Helper()
	resp, err := (&http.Client{Timeout: callLimit}).Do(req)
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
		if err := json.Unmarshal(body, &e); err == nil {
			r.typ, r.msg = e.Type, e.Message
		}
	}
	return r
}

// get sends a GET of path.
func (ts *testServer) get(t *testing.T, path string) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.endpoint+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

// metrics fetches GET /metrics from the server's metrics listener.
func (ts *testServer) metrics(t *testing.T) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+ts.srv.MetricsAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

// auditRecord is the "audit" object of an audit line.
type auditRecord struct {
	RequestID string `json:"request_id"`
	Principal string `json:"principal"`
	Action    string `json:"action"`
	KeyID     string `json:"key_id"`
	Source    string `json:"source"`
	Outcome   string `json:"outcome"`
	ErrorType string `json:"error_type"`
	Subject   string `json:"subject"`
	// Suppressed, SuppressedID and SuppressedAll count failed
	// authentications of the source, of the claimed ID and of all sources
	// left unaudited before this record (package auth's failure budget).
	Suppressed    int `json:"suppressed"`
	SuppressedID  int `json:"suppressed_id"`
	SuppressedAll int `json:"suppressed_all"`
}

// auditRecords parses the captured audit trail.
func (ts *testServer) auditRecords(t *testing.T) []auditRecord {
	t.Helper()
	var out []auditRecord
	for line := range strings.Lines(ts.audit.String()) {
		var l struct {
			Audit *auditRecord `json:"audit"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", line, err)
		}
		if l.Audit == nil {
			t.Fatalf("audit line %q has no audit object", line)
		}
		out = append(out, *l.Audit)
	}
	return out
}

// auditWhere returns the audit records for which keep is true.
func (ts *testServer) auditWhere(t *testing.T, keep func(auditRecord) bool) []auditRecord {
	t.Helper()
	var out []auditRecord
	for _, r := range ts.auditRecords(t) {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// auditFor returns the audit records of one request.
func (ts *testServer) auditFor(t *testing.T, requestID string) []auditRecord {
	t.Helper()
	return ts.auditWhere(t, func(r auditRecord) bool { return r.RequestID == requestID })
}

// wantOneDenial checks that request id wrote exactly one audit record, a
// denial of type code.
func (ts *testServer) wantOneDenial(t *testing.T, id, code string) {
	t.Helper()
	recs := ts.auditFor(t, id)
	if len(recs) != 1 {
		t.Fatalf("request %s wrote %d audit records, want exactly 1: %+v", id, len(recs), recs)
	}
	if r := recs[0]; r.Outcome != "denied" || r.ErrorType != code || r.Source != "127.0.0.1" {
		t.Fatalf("audit record of request %s = %+v, want outcome denied, error type %s, source 127.0.0.1", id, r, code)
	}
}
