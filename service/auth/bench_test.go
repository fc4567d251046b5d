package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// asServer returns r as a server reads it off the wire: Host in r.Host and
// not in the header map, Content-Length in the header map, the URL as the
// request line carries it. Verify sees requests in that form only.
func asServer(tb testing.TB, r *http.Request) *http.Request {
	tb.Helper()
	// Send a copy with a fresh body: r may be sent again.
	c := r.Clone(context.Background())
	if r.GetBody != nil {
		body, err := r.GetBody()
		if err != nil {
			tb.Fatal(err)
		}
		c.Body = body
	}
	var wire bytes.Buffer
	if err := c.Write(&wire); err != nil {
		tb.Fatal(err)
	}
	s, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		tb.Fatalf("reading back %q: %v", wire.String(), err)
	}
	return s
}

// generateDataKeyRequest is a GenerateDataKey request as aws-sdk-go-v2's KMS
// client sends it, signed by the SDK at `at`, read as the server reads it.
func generateDataKeyRequest(tb testing.TB, creds aws.Credentials, at time.Time) (*http.Request, []byte) {
	tb.Helper()
	payload := []byte(`{"KeyId":"alias/app","KeySpec":"AES_256","EncryptionContext":{"tenant":"t-0001","purpose":"session"}}`)
	r, err := http.NewRequest(http.MethodPost, "https://kms.internal.example:8443/", bytes.NewReader(payload))
	if err != nil {
		tb.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "TrentService.GenerateDataKey")
	r.Header.Set("Amz-Sdk-Invocation-Id", "4c1ef4b2-66a2-4b0d-9d1b-3f5fb0b0a0a1")
	r.Header.Set("Amz-Sdk-Request", "attempt=1; max=3")
	r.Header.Set("User-Agent", "aws-sdk-go-v2/1.48.0 ua/2.1 os/linux lang/go#1.26.8 md/GOOS#linux md/GOARCH#amd64 api/kms#1.62.5 m/E,g")
	r.Header.Set("X-Amz-User-Agent", "aws-sdk-go-v2/1.48.0 ua/2.1 api/kms#1.62.5")
	sum := sha256.Sum256(payload)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "kms", testRegion, at); err != nil {
		tb.Fatal(err)
	}
	return asServer(tb, r), payload
}

// BenchmarkVerify times Verify on a GenerateDataKey request shaped like the
// SDK's, and, in the same run, the expected-signature computation alone
// next to the SDK-signer computation it replaced, so that their ratio
// comes from one run on one machine.
func BenchmarkVerify(b *testing.B) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	c := &clock{t: at}
	v := newVerifier(c)
	r, payload := generateDataKeyRequest(b, root, at)
	ctx := context.Background()
	if _, err := v.Verify(ctx, r, payload, "192.0.2.1"); err != nil {
		b.Fatalf("the benchmark request does not verify: %v", err)
	}
	a, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	payloadHash := hex.EncodeToString(sum[:])
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, r, payload, "192.0.2.1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("expected", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if sig, err := v.expected(ctx, r, a, testSecret, payloadHash, at, len(payload)); err != nil || sig != a.signature {
				b.Fatal(sig, err)
			}
		}
	})
	b.Run("sdkExpected", func(b *testing.B) {
		b.ReportAllocs()
		signer := v4.NewSigner()
		for b.Loop() {
			if sig, err := sdkExpected(ctx, signer, r, a, testSecret, payloadHash, at, len(payload)); err != nil || sig != a.signature {
				b.Fatal(sig, err)
			}
		}
	})
}
