package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestWireBadInput sends malformed requests, correctly signed, as raw HTTP:
// each must come back promptly (the client has a timeout) as a 4xx — never
// a 5xx — with Content-Type application/x-amz-json-1.1 and a JSON body of
// exactly __type and message, and each API request must write exactly one
// audit record naming its error type.
func TestWireBadInput(t *testing.T) {
	ts := startServer(t)
	keyID := newKey(t, ts.kmsClient(rootCreds), nil)
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	cases := []struct {
		name   string
		method string // POST when empty
		path   string // "/" when empty
		target string
		body   string
		status int
		code   string
		// audited is false for requests that are not API requests.
		audited bool
	}{
		{name: "malformed JSON", target: "TrentService.Encrypt", body: `{"KeyId": "` + keyID + `", "Plaintext": `,
			status: 400, code: "SerializationException", audited: true},
		{name: "trailing garbage", target: "TrentService.DescribeKey", body: `{"KeyId": "` + keyID + `"} x`,
			status: 400, code: "SerializationException", audited: true},
		{name: "JSON array body", target: "TrentService.Encrypt", body: `[{"KeyId": "` + keyID + `"}]`,
			status: 400, code: "SerializationException", audited: true},
		{name: "JSON string body", target: "TrentService.ListKeys", body: `"ListKeys"`,
			status: 400, code: "SerializationException", audited: true},
		{name: "bad base64 in CiphertextBlob", target: "TrentService.Decrypt", body: `{"CiphertextBlob": "!!not base64!!"}`,
			status: 400, code: "SerializationException", audited: true},
		{name: "missing KeyId", target: "TrentService.Encrypt", body: `{"Plaintext": "aGVsbG8="}`,
			status: 400, code: "ValidationException", audited: true},
		{name: "empty body", target: "TrentService.Encrypt", body: ``,
			status: 400, code: "ValidationException", audited: true},
		{name: "JSON null body", target: "TrentService.GenerateRandom", body: `null`,
			status: 400, code: "ValidationException", audited: true},
		{name: "number for a string", target: "TrentService.Encrypt", body: `{"KeyId": 5, "Plaintext": "aGVsbG8="}`,
			status: 400, code: "SerializationException", audited: true},
		{name: "string for a number", target: "TrentService.GenerateRandom", body: `{"NumberOfBytes": "32"}`,
			status: 400, code: "SerializationException", audited: true},
		{name: "number out of range", target: "TrentService.GenerateRandom", body: `{"NumberOfBytes": 1e30}`,
			status: 400, code: "SerializationException", audited: true},
		{name: "negative number", target: "TrentService.GenerateRandom", body: `{"NumberOfBytes": -1}`,
			status: 400, code: "ValidationException", audited: true},
		{name: "string for a map", target: "TrentService.Encrypt", body: `{"KeyId": "` + keyID + `", "Plaintext": "aGk=", "EncryptionContext": "x"}`,
			status: 400, code: "SerializationException", audited: true},
		{name: "deeply nested value", target: "TrentService.DescribeKey", body: `{"KeyId": ` + deep + `}`,
			status: 400, code: "SerializationException", audited: true},
		{name: "oversize Encrypt body", target: "TrentService.Encrypt", body: oversize(128<<10 + 1),
			status: 413, code: "RequestEntityTooLargeException", audited: true},
		{name: "oversize DescribeKey body", target: "TrentService.DescribeKey", body: oversize(64<<10 + 1),
			status: 413, code: "RequestEntityTooLargeException", audited: true},
		{name: "bad base64 in Mac", target: "TrentService.VerifyMac", body: `{"KeyId": "` + keyID + `", "Message": "aGk=", "Mac": "%%", "MacAlgorithm": "HMAC_SHA_256"}`,
			status: 400, code: "SerializationException", audited: true},
		{name: "unknown MacAlgorithm", target: "TrentService.GenerateMac", body: `{"KeyId": "` + keyID + `", "Message": "aGk=", "MacAlgorithm": "HMAC_MD5"}`,
			status: 400, code: "ValidationException", audited: true},
		{name: "GenerateMac with a symmetric key", target: "TrentService.GenerateMac", body: `{"KeyId": "` + keyID + `", "Message": "aGk=", "MacAlgorithm": "HMAC_SHA_256"}`,
			status: 400, code: "InvalidKeyUsageException", audited: true},
		{name: "string for Operations", target: "TrentService.CreateGrant", body: `{"KeyId": "` + keyID + `", "GranteePrincipal": "x", "Operations": "Encrypt"}`,
			status: 400, code: "SerializationException", audited: true},
		{name: "grant token of another kind", target: "TrentService.Encrypt", body: `{"KeyId": "` + keyID + `", "Plaintext": "aGk=", "GrantTokens": ["AQIDBAUGBwgJCg"]}`,
			status: 400, code: "InvalidGrantTokenException", audited: true},
		{name: "bad grant ID", target: "TrentService.RevokeGrant", body: `{"KeyId": "` + keyID + `", "GrantId": "zz"}`,
			status: 400, code: "InvalidGrantIdException", audited: true},
		{name: "unknown wrapping algorithm", target: "TrentService.GetParametersForImport", body: `{"KeyId": "` + keyID + `", "WrappingAlgorithm": "AES", "WrappingKeySpec": "RSA_2048"}`,
			status: 400, code: "ValidationException", audited: true},
		{name: "import into a key hsmkms made", target: "TrentService.ImportKeyMaterial", body: `{"KeyId": "` + keyID + `", "ImportToken": "aGk=", "EncryptedKeyMaterial": "aGk=", "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}`,
			status: 400, code: "UnsupportedOperationException", audited: true},
		{name: "RSA algorithm for a symmetric key", target: "TrentService.Encrypt", body: `{"KeyId": "` + keyID + `", "Plaintext": "aGk=", "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}`,
			status: 400, code: "InvalidKeyUsageException", audited: true},
		{name: "unknown X-Amz-Target", target: "TrentService.MakeCoffee", body: `{}`,
			status: 400, code: "UnknownOperationException", audited: true},
		{name: "other service's target", target: "DynamoDB_20120810.ListTables", body: `{}`,
			status: 400, code: "UnknownOperationException", audited: true},
		{name: "no X-Amz-Target", target: "", body: `{}`,
			status: 400, code: "UnknownOperationException", audited: true},
		{name: "GET /", method: http.MethodGet, status: 404, code: "UnknownOperationException"},
		{name: "PUT /", method: http.MethodPut, target: "TrentService.ListKeys", body: `{}`, status: 404, code: "UnknownOperationException"},
		{name: "POST /other", path: "/other", target: "TrentService.ListKeys", body: `{}`, status: 404, code: "UnknownOperationException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := ts.signedRequest(t, tc.target, []byte(tc.body), rootCreds, time.Now())
			if tc.method != "" {
				req.Method = tc.method
			}
			if tc.path != "" {
				req.URL.Path = tc.path
			}
			r := send(t, req)
			if r.status >= 500 {
				t.Fatalf("status %d (%s: %s): the server must never answer bad input with a 5xx", r.status, r.typ, r.msg)
			}
			if r.status != tc.status || r.typ != tc.code {
				t.Fatalf("%d %s %q, want %d %s", r.status, r.typ, r.msg, tc.status, tc.code)
			}
			wantJSONError(t, r)
			id := r.header.Get("X-Amzn-RequestId")
			if id == "" {
				t.Fatal("no X-Amzn-RequestId")
			}
			recs := ts.auditFor(t, id)
			if !tc.audited {
				if len(recs) != 0 {
					t.Fatalf("a non-API request wrote audit records: %+v", recs)
				}
				return
			}
			if len(recs) != 1 || recs[0].ErrorType != tc.code || recs[0].Outcome == "allowed" {
				t.Fatalf("audit records of the request = %+v, want exactly one with error type %s", recs, tc.code)
			}
		})
	}
}

// oversize is a JSON object of n bytes.
func oversize(n int) string {
	head := `{"Plaintext": "`
	return head + strings.Repeat("A", n-len(head)-2) + `"}`
}

// wantJSONError checks an error response's content type and body shape:
// a JSON object of exactly __type and a non-empty message.
func wantJSONError(t *testing.T, r rawResponse) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		t.Fatalf("Content-Type %q, want application/x-amz-json-1.1", ct)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	if err := dec.Decode(&m); err != nil || dec.More() {
		t.Fatalf("body %q is not one JSON object: %v", r.body, err)
	}
	typ, _ := m["__type"].(string)
	msg, _ := m["message"].(string)
	if len(m) != 2 || typ == "" || msg == "" {
		t.Fatalf("body %s, want exactly a __type and a non-empty message", r.body)
	}
}

// TestHealthReadyMetrics checks GET /healthz and /readyz, and that
// /metrics counts requests by operation and outcome and shows the HSM call
// latency and the session pool; operations the server does not have are
// counted as "unknown", so that a client cannot make new label values.
func TestHealthReadyMetrics(t *testing.T) {
	ts := startServer(t)
	for _, p := range []struct{ path, status string }{{"/healthz", "ok"}, {"/readyz", "ready"}} {
		r := ts.get(t, p.path)
		var body map[string]string
		if r.status != http.StatusOK || json.Unmarshal(r.body, &body) != nil || body["status"] != p.status {
			t.Fatalf("GET %s = %d %s, want 200 with status %q", p.path, r.status, r.body, p.status)
		}
	}

	c := ts.kmsClient(rootCreds)
	keyID := newKey(t, c, nil)
	body := encryptBody(t, keyID)
	for range 3 {
		if r := send(t, ts.signedRequest(t, "TrentService.Encrypt", body, rootCreds, time.Now())); r.status != http.StatusOK {
			t.Fatalf("Encrypt: %d %s", r.status, r.body)
		}
	}
	if r := send(t, ts.signedRequest(t, "TrentService.DescribeKey", []byte(`{}`), rootCreds, time.Now())); r.typ != "ValidationException" {
		t.Fatalf("DescribeKey without KeyId: %d %s", r.status, r.body)
	}
	for i := range 5 {
		target := fmt.Sprintf("TrentService.Invented%d", i)
		if r := send(t, ts.signedRequest(t, target, []byte(`{}`), rootCreds, time.Now())); r.typ != "UnknownOperationException" {
			t.Fatalf("%s: %d %s", target, r.status, r.body)
		}
	}

	r := ts.metrics(t)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics = %d", r.status)
	}
	metrics := string(r.body)
	wants := []struct{ name, re string }{
		{"three successful Encrypts", `(?m)^hsmkms_requests_total\{operation="Encrypt",outcome="ok"\} 3$`},
		{"one successful CreateKey", `(?m)^hsmkms_requests_total\{operation="CreateKey",outcome="ok"\} 1$`},
		{"a DescribeKey ValidationException", `(?m)^hsmkms_requests_total\{operation="DescribeKey",outcome="ValidationException"\} 1$`},
		{"unknown operations under one label", `(?m)^hsmkms_requests_total\{operation="unknown",outcome="UnknownOperationException"\} 5$`},
		{"request latency", `(?m)^hsmkms_request_duration_seconds_count\{operation="Encrypt"\} 3$`},
		{"HSM call latency", `(?m)^hsmkms_hsm_call_duration_seconds_count\{operation="[^"]+",outcome="ok"\} [1-9]`},
		{"sessions open", `(?m)^hsmkms_hsm_sessions_open [1-9]`},
		{"pool size", `(?m)^hsmkms_hsm_sessions_max [1-9]`},
	}
	for _, w := range wants {
		if !regexp.MustCompile(w.re).MatchString(metrics) {
			t.Errorf("/metrics lacks %s (%s)", w.name, w.re)
		}
	}
	if strings.Contains(metrics, "Invented") {
		t.Errorf("/metrics has a label value a client made up:\n%s", grepLines(metrics, "Invented"))
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(metrics, "hsmkms_"))
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}
