package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hsmkms/hsmkms/service"
)

// fromSource is an HTTP client whose connections leave from ip (an
// address of 127.0.0.0/8, which Linux's loopback answers on whole), so
// that the server sees each as a source of its own.
func fromSource(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: callLimit, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// sendFrom sends req from ip and returns its status and the error type:
// __type for the KMS API, errorName for the XKS proxy API.
func sendFrom(t *testing.T, ip string, req *http.Request) (int, string) {
	t.Helper()
	resp, err := fromSource(ip).Do(req)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", req.Method, req.URL.Path, ip, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Type string `json:"__type"`
		Name string `json:"errorName"`
	}
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Type + e.Name
}

// TestFailureBudgetSharedByListeners proves that the KMS and XKS
// listeners draw on one budget of audited authentication failures, so
// that its bound for all sources (200 at once, then 20 a second) is the
// process's, as documented, not each listener's: once a flood of bad
// signatures on the KMS listener has spent it, a failure on the XKS
// listener is answered but not audited, and it is counted in the next
// audited failure's suppressed_all once the budget has refilled. The
// budget's clock stands still unless the test moves it, so nothing here
// depends on how fast the requests go.
func TestFailureBudgetSharedByListeners(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC).UnixNano())
	ts := startServer(t, func(c *Config) {
		c.XKS = XKSConfig{Listen: "127.0.0.1:0"}
		c.failureClock = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	admin := service.WithCaller(t.Context(), service.Caller{AccessKeyID: rootID, Statements: rootStatements()})
	if _, err := ts.srv.svc.CreateXKSStore(admin, service.XKSStoreInput{Prefix: "ext"}); err != nil {
		t.Fatal(err)
	}
	// Each failure claims an access key ID of its own, so that only the
	// budgets of its source and of all sources apply.
	n := 0
	guess := func() aws.Credentials {
		n++
		return aws.Credentials{AccessKeyID: fmt.Sprintf("AKIAFLOOD%011d", n), SecretAccessKey: "a-guessed-secret-0123456789abcdefghij"}
	}
	kmsFailure := func(ip string) {
		t.Helper()
		req := ts.signedRequest(t, "TrentService.ListKeys", []byte(`{}`), guess(), time.Now())
		if status, typ := sendFrom(t, ip, req); status != http.StatusBadRequest || typ != "UnrecognizedClientException" {
			t.Fatalf("KMS failure from %s: %d %s, want 400 UnrecognizedClientException", ip, status, typ)
		}
	}
	xksFailure := func(ip string) {
		t.Helper()
		body := []byte(`{"requestMetadata":{"awsPrincipalArn":"arn:aws:iam::111122223333:user/x","kmsOperation":"DescribeKey"}}`)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.srv.XKSEndpoint()+"/ext/kms/xks/v1/keys/k/metadata", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), guess(), req, hex.EncodeToString(sum[:]), "kms-xks-proxy", region, time.Now()); err != nil {
			t.Fatal(err)
		}
		if status, typ := sendFrom(t, ip, req); status != http.StatusUnauthorized || typ != "AuthenticationFailedException" {
			t.Fatalf("XKS failure from %s: %d %s, want 401 AuthenticationFailedException", ip, status, typ)
		}
	}
	denied := func() []auditRecord {
		return ts.auditWhere(t, func(r auditRecord) bool { return r.Outcome == "denied" })
	}

	// 10 sources × 20: each within its own burst, all of them the whole
	// burst of all sources.
	for s := 2; s < 12; s++ {
		for range 20 {
			kmsFailure(fmt.Sprintf("127.0.0.%d", s))
		}
	}
	if got := len(denied()); got != 200 {
		t.Fatalf("%d of 200 failures audited, want all: each source stayed within its budget", got)
	}
	// A fresh source, within its own budget: only the budget of all
	// sources, which the KMS listener spent, leaves these unaudited.
	xksFailure("127.0.0.12")
	kmsFailure("127.0.0.12")
	if got := len(denied()); got != 200 {
		t.Fatalf("%d failures audited after the budget of all sources was spent on the KMS listener, want 200: the XKS listener has a budget of its own", got)
	}
	// One second later the budget of all sources has 20 again: the next
	// failure is audited and carries the two left unaudited.
	clock.Add(int64(time.Second))
	xksFailure("127.0.0.13")
	recs := denied()
	if len(recs) != 201 {
		t.Fatalf("%d failures audited after the refill, want 201", len(recs))
	}
	if last := recs[200]; last.Source != "127.0.0.13" || last.SuppressedAll != 2 || last.Suppressed != 0 || last.SuppressedID != 0 {
		t.Fatalf("the audited failure after the refill: %+v, want the XKS failure from 127.0.0.13 with suppressed_all 2 and nothing else suppressed", last)
	}
}
