package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/service"
)

// benchOps are the operations the throughput issue measures, each with a
// request body for a key of the bench server's.
func benchOps(b *testing.B, ts *testServer) map[string][]byte {
	b.Helper()
	k := ts.kmsClient(rootCreds)
	key, err := k.CreateKey(b.Context(), &kms.CreateKeyInput{})
	if err != nil {
		b.Fatal(err)
	}
	id := *key.KeyMetadata.KeyId
	dk, err := k.GenerateDataKey(b.Context(), &kms.GenerateDataKeyInput{KeyId: &id, NumberOfBytes: ptr(int32(32)),
		EncryptionContext: map[string]string{"bench": "server"}})
	if err != nil {
		b.Fatal(err)
	}
	gdk, _ := json.Marshal(map[string]any{"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": map[string]string{"bench": "server"}})
	dec, _ := json.Marshal(map[string]any{"CiphertextBlob": dk.CiphertextBlob, "EncryptionContext": map[string]string{"bench": "server"}})
	return map[string][]byte{"GenerateDataKey": gdk, "Decrypt": dec}
}

func ptr[T any](v T) *T { return &v }

// BenchmarkServer measures the server's cost per request with its audit
// trail on (to a file, as hsmkms serve writes it):
//
//   - op=…/http: requests over loopback HTTP from 16 goroutines (of a
//     lean client signing each, as hsmkms bench does), in this process:
//     allocs/op counts the client's allocations too;
//   - op=…/handler: the server's http.Handler alone, one request at a
//     time, signed before the clock starts: allocs/op is what the server
//     allocates per request (net/http's connection handling aside).
func BenchmarkServer(b *testing.B) {
	auditFile, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer auditFile.Close()
	ts := startServer(b, func(c *Config) { c.Audit = auditFile; c.Logger = nil; c.MetricsListen = "" })
	ops := benchOps(b, ts)
	for _, op := range []string{"GenerateDataKey", "Decrypt"} {
		target := "TrentService." + op
		body := ops[op]
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:])
		b.Run("op="+op+"/http", func(b *testing.B) {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.MaxIdleConnsPerHost = 64
			client := &http.Client{Transport: tr, Timeout: callLimit}
			signer := v4.NewSigner()
			b.ReportAllocs()
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, ts.endpoint+"/", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/x-amz-json-1.1")
					req.Header.Set("X-Amz-Target", target)
					if err := signer.SignHTTP(context.Background(), rootCreds, req, hash, "kms", region, time.Now()); err != nil {
						b.Error(err)
						return
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("HTTP %d", resp.StatusCode)
						return
					}
				}
			})
		})
		b.Run("op="+op+"/handler", func(b *testing.B) {
			h := ts.srv.http.Handler
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				reqs[i] = ts.signedRequest(b, target, body, rootCreds, time.Now())
				reqs[i].RemoteAddr = "127.0.0.1:40000"
			}
			serveEach(b, h, reqs)
		})
	}
}

// serveEach times h answering each of reqs, signed before the clock
// starts, one at a time; every answer must be 200.
func serveEach(b *testing.B, h http.Handler, reqs []*http.Request) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, reqs[i])
		if w.Code != http.StatusOK {
			b.Fatalf("HTTP %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkXKSHandler is op=…/handler of BenchmarkServer for the XKS
// proxy API: its http.Handler alone, one request at a time, signed as AWS
// KMS signs (host and x-amz-date) before the clock starts. allocs/op is
// what the XKS listener allocates per request, beside the KMS API's.
func BenchmarkXKSHandler(b *testing.B) {
	auditFile, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer auditFile.Close()
	ts := startServer(b, func(c *Config) {
		c.Audit = auditFile
		c.Logger = nil
		c.MetricsListen = ""
		c.XKS = XKSConfig{Listen: "127.0.0.1:0"}
	})
	admin := service.WithCaller(b.Context(), service.Caller{AccessKeyID: rootID, Statements: rootStatements()})
	key, err := ts.srv.svc.CreateKey(admin, service.CreateKeyInput{})
	if err != nil {
		b.Fatal(err)
	}
	id := key.KeyMetadata.KeyId
	if _, err := ts.srv.svc.CreateXKSStore(admin, service.XKSStoreInput{Prefix: "bench"}); err != nil {
		b.Fatal(err)
	}
	if err := ts.srv.svc.AllowXKSKey(admin, service.AllowXKSKeyInput{Prefix: "bench", ExternalKeyID: id, Usage: []string{"ENCRYPT", "DECRYPT"}}); err != nil {
		b.Fatal(err)
	}
	cred, err := ts.srv.svc.AddXKSCredential(admin, service.XKSStoreInput{Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	creds := aws.Credentials{AccessKeyID: cred.Credential.AccessKeyID, SecretAccessKey: cred.Credential.RawSecretAccessKey}
	h := ts.srv.xks.Handler
	base := "http://" + ts.srv.xksListener.Addr().String() + "/bench/kms/xks/v1/keys/" + id + "/"
	signed := func(op string, body []byte) *http.Request {
		req := httptest.NewRequest(http.MethodPost, base+op, bytes.NewReader(body))
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kms-xks-proxy", region, time.Now()); err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = "127.0.0.1:40000"
		return req
	}
	md := map[string]string{"awsPrincipalArn": "arn:aws:iam::111122223333:user/bench", "kmsKeyArn": key.KeyMetadata.Arn,
		"kmsOperation": "Encrypt", "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae"}
	enc, _ := json.Marshal(map[string]any{"requestMetadata": md, "plaintext": base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"additionalAuthenticatedData": "YmVuY2g=", "encryptionAlgorithm": "AES_GCM"})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, signed("encrypt", enc))
	var out map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || w.Code != http.StatusOK {
		b.Fatalf("encrypt: %d %s", w.Code, w.Body)
	}
	md["kmsOperation"] = "Decrypt"
	dec, _ := json.Marshal(map[string]any{"requestMetadata": md, "ciphertext": out["ciphertext"], "ciphertextMetadata": out["ciphertextMetadata"],
		"initializationVector": out["initializationVector"], "authenticationTag": out["authenticationTag"],
		"additionalAuthenticatedData": "YmVuY2g=", "encryptionAlgorithm": "AES_GCM"})
	for _, op := range []struct {
		name string
		body []byte
	}{{"encrypt", enc}, {"decrypt", dec}} {
		b.Run("op="+op.name, func(b *testing.B) {
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				reqs[i] = signed(op.name, op.body)
			}
			serveEach(b, h, reqs)
		})
	}
}
