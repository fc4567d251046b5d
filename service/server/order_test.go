package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hsmkms/hsmkms/service"
)

// answerWatcher notes the audit trail as it stood when the answer began,
// so that a test can tell whether a request's record was written before
// its client could have read the answer.
type answerWatcher struct {
	*httptest.ResponseRecorder
	audit   *syncBuffer
	started bool
	trail   string
}

func (a *answerWatcher) WriteHeader(status int) {
	if !a.started {
		a.started, a.trail = true, a.audit.String()
	}
	a.ResponseRecorder.WriteHeader(status)
}

func (a *answerWatcher) Write(p []byte) (int, error) {
	if !a.started {
		a.WriteHeader(http.StatusOK)
	}
	return a.ResponseRecorder.Write(p)
}

// TestRefusalRecordedBeforeAnswer checks that each kind of request both
// listeners refuse before the key service (which writes its own records
// first) has its audit record in the trail before the answer starts: an
// answered request's record must not be one a crash can still lose.
func TestRefusalRecordedBeforeAnswer(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.XKS = XKSConfig{Listen: "127.0.0.1:0"} })
	admin := service.WithCaller(t.Context(), service.Caller{AccessKeyID: rootID, Statements: rootStatements()})
	if _, err := ts.srv.svc.CreateXKSStore(admin, service.XKSStoreInput{Prefix: "order"}); err != nil {
		t.Fatal(err)
	}
	cred, err := ts.srv.svc.AddXKSCredential(admin, service.XKSStoreInput{Prefix: "order"})
	if err != nil {
		t.Fatal(err)
	}
	xksCreds := aws.Credentials{AccessKeyID: cred.Credential.AccessKeyID, SecretAccessKey: cred.Credential.RawSecretAccessKey}
	xksBase := "http://" + ts.srv.xksListener.Addr().String()
	xksRequest := func(path string, body []byte, creds aws.Credentials) *http.Request {
		req := httptest.NewRequest(http.MethodPost, xksBase+path, bytes.NewReader(body))
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kms-xks-proxy", region, time.Now()); err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	wrong := aws.Credentials{AccessKeyID: rootID, SecretAccessKey: "not-the-secret-of-this-access-key-id"}
	huge := bytes.Repeat([]byte("a"), 8<<20)
	cases := []struct {
		name, want string
		xks        bool
		req        func() *http.Request
	}{
		{"unknown operation", "UnknownOperationException", false, func() *http.Request {
			return ts.unsignedRequest(t, "TrentService.NoSuchOperation", []byte("{}"))
		}},
		{"body too large", "RequestEntityTooLargeException", false, func() *http.Request {
			return ts.unsignedRequest(t, "TrentService.Encrypt", huge)
		}},
		{"bad signature", "InvalidSignatureException", false, func() *http.Request {
			return ts.signedRequest(t, "TrentService.ListKeys", []byte("{}"), wrong, time.Now())
		}},
		{"body not JSON", "SerializationException", false, func() *http.Request {
			return ts.signedRequest(t, "TrentService.ListKeys", []byte("{"), rootCreds, time.Now())
		}},
		{"XKS body too large", "UnsupportedOperationException", true, func() *http.Request {
			return xksRequest("/order/kms/xks/v1/keys/k/encrypt", huge[:200<<10], xksCreds)
		}},
		{"XKS bad signature", "AuthenticationFailedException", true, func() *http.Request {
			return xksRequest("/order/kms/xks/v1/keys/k/encrypt", []byte("{}"), aws.Credentials{AccessKeyID: xksCreds.AccessKeyID, SecretAccessKey: "wrong"})
		}},
		{"XKS no store at this prefix", "InvalidUriPathException", true, func() *http.Request {
			return xksRequest("/elsewhere/kms/xks/v1/keys/k/encrypt", []byte("{}"), xksCreds)
		}},
		{"XKS body not JSON", "ValidationException", true, func() *http.Request {
			return xksRequest("/order/kms/xks/v1/keys/k/encrypt", []byte("{"), xksCreds)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, idHeader := ts.srv.http.Handler, "X-Amzn-RequestId"
			if c.xks {
				h, idHeader = ts.srv.xks.Handler, "X-Request-Id"
			}
			req := c.req()
			req.RemoteAddr = "127.0.0.1:40000"
			w := &answerWatcher{ResponseRecorder: httptest.NewRecorder(), audit: ts.audit}
			h.ServeHTTP(w, req)
			if w.Code == http.StatusOK || !strings.Contains(w.Body.String(), c.want) {
				t.Fatalf("answered %d %s, want %s", w.Code, w.Body, c.want)
			}
			id := w.Header().Get(idHeader)
			recs := ts.auditFor(t, id)
			if len(recs) != 1 || recs[0].ErrorType != c.want {
				t.Fatalf("request %s has audit records %+v, want one of error type %s", id, recs, c.want)
			}
			if !strings.Contains(w.trail, id) {
				t.Errorf("the answer to request %s began before its audit record was written", id)
			}
		})
	}
}

// TestCancelledBeforeAuthenticationNotAudited: a request whose client left
// before it was authenticated (its principal's lookup cancelled) writes no
// audit record: nothing was done, and such records escaped the budget of
// failed authentications, one per connection (found by review). A
// request that fails authentication is still audited.
func TestCancelledBeforeAuthenticationNotAudited(t *testing.T) {
	ts := startServer(t, func(*Config) {})
	nobody := aws.Credentials{AccessKeyID: "AKIANOBODYNOBODY0000", SecretAccessKey: "not-a-secret-of-anyone-here-0123456789"}
	serve := func(ctx context.Context) {
		req := ts.signedRequest(t, "TrentService.ListKeys", []byte("{}"), nobody, time.Now()).WithContext(ctx)
		req.RemoteAddr = "127.0.0.1:40000"
		ts.srv.http.Handler.ServeHTTP(httptest.NewRecorder(), req)
	}
	all := func() int { return len(ts.auditWhere(t, func(auditRecord) bool { return true })) }
	before := all()
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	serve(gone)
	if n := all() - before; n != 0 {
		t.Fatalf("%d audit records of a request cancelled before authentication, want none", n)
	}
	serve(t.Context())
	if n := all() - before; n != 1 {
		t.Fatalf("%d audit records of a failed authentication, want 1", n)
	}
}
