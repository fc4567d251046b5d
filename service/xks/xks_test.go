package xks

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service"
)

func TestParsePath(t *testing.T) {
	long := "/" + strings.Repeat("p", 240) + "/kms/xks/v1/health"
	tests := []struct {
		path string
		want target
		ok   bool
	}{
		{"/example/uri/path/prefix/kms/xks/v1/health", target{prefix: "example/uri/path/prefix", op: opHealth}, true},
		{"/p/kms/xks/v1/keys/abc-1.2_3/metadata", target{prefix: "p", keyID: "abc-1.2_3", op: opMetadata}, true},
		{"/p/kms/xks/v1/keys/k/encrypt", target{prefix: "p", keyID: "k", op: opEncrypt}, true},
		{"/p/kms/xks/v1/keys/k/decrypt", target{prefix: "p", keyID: "k", op: opDecrypt}, true},
		// A prefix may itself hold the tail; the last one counts.
		{"/a/kms/xks/v1/b/kms/xks/v1/health", target{prefix: "a/kms/xks/v1/b", op: opHealth}, true},
		{"/kms/xks/v1/health", target{}, false}, // no prefix: no store has it
		{"/p/kms/xks/v1/keys/k/sign", target{}, false},
		{"/p/kms/xks/v1/keys/k", target{}, false},
		{"/p/kms/xks/v1/keys//encrypt", target{}, false},
		{"/p/kms/xks/v1/keys/a b/encrypt", target{}, false},
		{"/p/kms/xks/v1/keys/" + strings.Repeat("k", 129) + "/encrypt", target{}, false},
		{"/p/kms/xks/v1/keys/k/encrypt/more", target{}, false},
		{"/p/kms/xks/v2/health", target{}, false},
		{"/ping", target{}, false},
		{"", target{}, false},
		{long, target{}, false},
	}
	for _, tc := range tests {
		got, ok := parsePath(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parsePath(%.60q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

// TestErrorNames holds each key service error to the XKS name and HTTP
// status the spec gives it.
func TestErrorNames(t *testing.T) {
	tests := []struct {
		code   service.Code
		name   string
		status int
	}{
		{service.CodeValidation, ErrValidation, http.StatusBadRequest},
		{service.CodeDisabled, ErrInvalidState, http.StatusBadRequest},
		{service.CodeInvalidState, ErrInvalidState, http.StatusBadRequest},
		{service.CodeInvalidCipher, ErrInvalidCiphertext, http.StatusBadRequest},
		{service.CodeInvalidKeyUsage, ErrInvalidKeyUsage, http.StatusBadRequest},
		{service.CodeAccessDenied, ErrAccessDenied, http.StatusForbidden},
		{service.CodeNotFound, ErrKeyNotFound, http.StatusNotFound},
		{service.CodeUnsupported, ErrUnsupported, http.StatusNotImplemented},
		{service.CodeLimitExceeded, ErrThrottling, http.StatusTooManyRequests},
		{service.CodeDependency, ErrDependencyTimeout, http.StatusServiceUnavailable},
		{service.CodeInternal, ErrInternal, http.StatusInternalServerError},
	}
	for _, tc := range tests {
		err := &service.Error{Code: tc.code, Message: "m"}
		if name := nameOf(err); name != tc.name || statusOf(name) != tc.status {
			t.Errorf("%s: %s %d, want %s %d", tc.code, name, statusOf(name), tc.name, tc.status)
		}
	}
	if nameOf(errors.New("plain")) != ErrInternal {
		t.Error("an error of no code is not an InternalException")
	}
	for name, status := range map[string]int{ErrAuthenticationFail: 401, ErrInvalidURIPath: 404} {
		if statusOf(name) != status {
			t.Errorf("%s: status %d, want %d", name, statusOf(name), status)
		}
	}
}

func TestPrintable(t *testing.T) {
	got := printable("bad\nkey \xff\u00e9" + strings.Repeat("x", 600))
	if len(got) != maxMessage || !strings.HasPrefix(got, "bad?key ???") {
		t.Fatalf("printable = %q (%d)", got[:16], len(got))
	}
	for _, c := range []byte(got) {
		if c < 0x20 || c > 0x7e {
			t.Fatalf("byte %#x is not printable ASCII", c)
		}
	}
}

func TestRequestMetadata(t *testing.T) {
	tests := []struct {
		name  string
		raw   string
		keyOp bool
		ok    bool
	}{
		{"health", `{"kmsRequestId":"r","kmsOperation":"KmsHealthCheck"}`, false, true},
		{"key op", `{"kmsRequestId":"r","kmsOperation":"Encrypt","awsPrincipalArn":"arn:aws:iam::1:user/a","future":{"x":1}}`, true, true},
		{"unknown operation accepted", `{"kmsRequestId":"r","kmsOperation":"BulkEncrypt","awsPrincipalArn":"a"}`, true, true},
		{"no principal", `{"kmsRequestId":"r","kmsOperation":"Encrypt"}`, true, false},
		{"no request ID", `{"kmsOperation":"Encrypt","awsPrincipalArn":"a"}`, true, false},
		{"absent", ``, false, false},
		{"null", `null`, false, false},
		{"not an object", `[1]`, false, false},
		{"oversize ARN", `{"kmsRequestId":"r","kmsOperation":"E","awsPrincipalArn":"` + strings.Repeat("a", 2049) + `"}`, true, false},
	}
	for _, tc := range tests {
		md, err := requestMetadata([]byte(tc.raw), tc.keyOp)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		var ie *inputError
		if err != nil && (!errors.As(err, &ie) || ie.name != ErrValidation) {
			t.Errorf("%s: %v is not a ValidationException", tc.name, err)
		}
		if err == nil && md["kmsRequestId"] != "r" {
			t.Errorf("%s: metadata %v", tc.name, md)
		}
	}
}

// TestDecodeBody: request bodies are read as the KMS API reads them:
// member names match exactly, a name given twice is refused at any depth
// (a proxy in front could read the other one), text must be UTF-8, and
// every refusal is a ValidationException naming the member, never a Go
// type.
func TestDecodeBody(t *testing.T) {
	const md = `"requestMetadata":{"kmsRequestId":"r","kmsOperation":"Encrypt","awsPrincipalArn":"a"}`
	tests := []struct {
		name, body, msg string
	}{
		{"valid", `{` + md + `,"plaintext":"AA==","encryptionAlgorithm":"AES_GCM","future":[1]}`, ""},
		{"duplicate member", `{` + md + `,"plaintext":"AA==","plaintext":"AQ=="}`,
			"the request body names a member twice: /plaintext"},
		{"duplicate in requestMetadata", `{"requestMetadata":{"kmsRequestId":"r","kmsRequestId":"s"}}`,
			"the request body names a member twice: /requestMetadata/kmsRequestId"},
		{"wrong type", `{` + md + `,"plaintext":7}`,
			"member plaintext of the request body is a JSON number, which it cannot be"},
		{"not an object", `["plaintext"]`, "the request body must be a JSON object, not a JSON array"},
		{"invalid UTF-8", "{" + md + ",\"plaintext\":\"\xff\"}", "the request body is not valid JSON"},
		{"trailing data", `{` + md + `} {}`, "the request body is not valid JSON"},
	}
	for _, tc := range tests {
		var in encryptRequest
		err := decodeBody([]byte(tc.body), &in)
		if tc.msg == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var ie *inputError
		if !errors.As(err, &ie) || ie.name != ErrValidation || ie.msg != tc.msg {
			t.Errorf("%s: got %v, want ValidationException %q", tc.name, err, tc.msg)
		}
	}

	// A member named in another case is not the member: Encrypt then
	// finds no plaintext, as AWS's reference proxy would.
	var in encryptRequest
	if err := decodeBody([]byte(`{`+md+`,"Plaintext":"AA=="}`), &in); err != nil {
		t.Fatal(err)
	}
	if _, err := field("plaintext", in.Plaintext); err == nil || err.Error() != "ValidationException: plaintext is required" {
		t.Errorf("a Plaintext member was read as plaintext: %v", err)
	}
}
