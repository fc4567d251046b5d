package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	xksID     = "MUBSXM6K3KMXHN6RRCXI7TWQH4"
	xksSecret = "FYtE5EFA5FT0mCc3DrGUe2sti527BitkQ0Zr9MO9fvE"
	xksPath   = "/example/prefix/kms/xks/v1/keys/abc/encrypt"
)

var xksBody = []byte(`{"requestMetadata":{"kmsRequestId":"r","kmsOperation":"Encrypt"},"plaintext":"AA=="}`)

// xksRequest signs a POST as AWS KMS signs XKS calls: SigV4 for
// kms-xks-proxy over host and x-amz-date, Content-Type added after.
func xksRequest(t *testing.T, path, service, region string, body []byte, at time.Time) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "https://xks.example.com"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: xksID, SecretAccessKey: xksSecret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), service, region, at); err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}

// TestXKSVerify holds the XKS mode to the XKS spec: its service name, any
// region (or an allow-list), the signed headers as listed, ±5 minutes.
func TestXKSVerify(t *testing.T) {
	now := time.Now()
	store := principals{xksID: xksSecret}
	xks := New(Config{Service: "kms-xks-proxy", SignedHeadersOnly: true, Now: func() time.Time { return now }})
	listed := New(Config{Service: "kms-xks-proxy", Regions: []string{"eu-west-1"}, SignedHeadersOnly: true, Now: func() time.Time { return now }})
	kms := New(Config{Credentials: store, Region: "us-east-1", Now: func() time.Time { return now }})
	tamperBody := func(*http.Request) []byte { return append(bytes.Clone(xksBody), ' ') }
	tests := []struct {
		name    string
		v       *Verifier
		service string
		region  string
		at      time.Time
		change  func(r *http.Request) []byte // returns the body the server reads
		code    string                       // "" verifies
	}{
		{"as AWS KMS signs", xks, "kms-xks-proxy", "us-east-1", now, nil, ""},
		{"another region", xks, "kms-xks-proxy", "ap-southeast-2", now, nil, ""},
		{"GovCloud region", xks, "kms-xks-proxy", "us-gov-west-1", now, nil, ""},
		{"listed region", listed, "kms-xks-proxy", "eu-west-1", now, nil, ""},
		{"unlisted region", listed, "kms-xks-proxy", "us-east-1", now, nil, CodeInvalid},
		{"malformed region", xks, "kms-xks-proxy", "US-EAST-1", now, nil, CodeInvalid},
		{"wrong service", xks, "kms", "us-east-1", now, nil, CodeInvalid},
		{"KMS mode refuses an unsigned Content-Type", kms, "kms", "us-east-1", now, nil, CodeIncomplete},
		{"4 minutes late", xks, "kms-xks-proxy", "us-east-1", now.Add(-4 * time.Minute), nil, ""},
		{"6 minutes late", xks, "kms-xks-proxy", "us-east-1", now.Add(-6 * time.Minute), nil, CodeInvalid},
		{"6 minutes early", xks, "kms-xks-proxy", "us-east-1", now.Add(6 * time.Minute), nil, CodeInvalid},
		{"tampered body", xks, "kms-xks-proxy", "us-east-1", now, tamperBody, CodeInvalid},
		{"other path", xks, "kms-xks-proxy", "us-east-1", now, func(r *http.Request) []byte {
			r.URL.Path = "/example/prefix/kms/xks/v1/keys/abc/decrypt"
			return xksBody
		}, CodeInvalid},
		{"host not signed", xks, "kms-xks-proxy", "us-east-1", now, func(r *http.Request) []byte {
			r.Header.Set("Authorization", replaceSigned(r.Header.Get("Authorization"), "x-amz-date"))
			return xksBody
		}, CodeIncomplete},
		{"x-amz-date not signed", xks, "kms-xks-proxy", "us-east-1", now, func(r *http.Request) []byte {
			r.Header.Set("Authorization", replaceSigned(r.Header.Get("Authorization"), "host"))
			return xksBody
		}, CodeIncomplete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := xksRequest(t, xksPath, tc.service, tc.region, xksBody, tc.at)
			body := xksBody
			if tc.change != nil {
				body = tc.change(r)
			}
			got, err := tc.v.VerifyWith(context.Background(), r, body, "192.0.2.7", store)
			if tc.code == "" {
				if err != nil || got.AccessKeyID != xksID || got.Secret != xksSecret {
					t.Fatalf("VerifyWith = %+v, %v", got, err)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Code != tc.code {
				t.Fatalf("VerifyWith err = %v, want %s", err, tc.code)
			}
		})
	}
	// The lookup given is the one asked: another store knows no such key.
	r := xksRequest(t, xksPath, "kms-xks-proxy", "us-east-1", xksBody, now)
	_, err := xks.VerifyWith(context.Background(), r, xksBody, "192.0.2.7", principals{})
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != CodeUnknownClient {
		t.Fatalf("unknown credential: %v", err)
	}
}

// replaceSigned rewrites the SignedHeaders of an Authorization header.
func replaceSigned(h, signed string) string {
	const key = "SignedHeaders="
	i := bytes.Index([]byte(h), []byte(key))
	j := bytes.IndexByte([]byte(h[i:]), ',')
	return h[:i+len(key)] + signed + h[i+j:]
}
