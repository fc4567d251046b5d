package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sdkVerdict is the answer the SDK-based verification gave a request that
// passed every check before the signature: the computation's error as an
// IncompleteSignature, a signature other than the client's as an
// InvalidSignature.
func sdkVerdict(r *http.Request, a authorization, secret string, body []byte, at time.Time) (code, msg string) {
	sum := sha256.Sum256(body)
	sig, err := sdkExpected(context.Background(), v4.NewSigner(), r.Clone(context.Background()), a, secret, hex.EncodeToString(sum[:]), at, len(body))
	switch {
	case err != nil:
		return CodeIncomplete, err.Error()
	case sig != a.signature:
		return CodeInvalid, mismatch
	}
	return "", ""
}

// FuzzVerifyMatchesSDK: a request of any path, query, header values and
// body that the SDK's signer signs, Verify answers as the SDK-based
// verification did: it accepts it whenever its query is one a server
// passes on unchanged (always, for the requests a server reads), and
// otherwise gives the same code and message. Whatever the SignedHeaders
// list and the header values, the direct computation never panics and
// agrees with the SDK-based one, signature or error message.
func FuzzVerifyMatchesSDK(f *testing.F) {
	f.Add("", "", "TrentService.Encrypt", "", []byte(`{"KeyId":"alias/x"}`), "")
	f.Add("a b/ü/%2F", "b=2&a=1&a=0", "  lead  inner   trail  ", "\tx\t", []byte{}, "")
	f.Add("x", "a=1;b=2&c=%zz", "v", "w", []byte("body"), "content-length;content-type;host;user-agent;x-amz-date")
	f.Add("", "#frag", "\u00a0nbsp\u00a0", "\r\n", []byte("{}"), "host;x-amz-date;X-Amz-Date")
	f.Add("*", "a=\x01", "", "", []byte(nil), ";;host;x-amz-date")
	f.Add("", "", "a", "b", []byte("{}"), "cache-control;content-length;content-type;host;x-amz-date;x-amz-meta-fuzz;x-amz-target")
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: testID, SecretAccessKey: testSecret}
	v := verifierFor(testRegion, at, principals{testID: testSecret})
	f.Fuzz(func(t *testing.T, path, query, v1, v2 string, body []byte, list string) {
		r, err := http.NewRequest(http.MethodPost, "https://kms.example/", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.URL.Path, r.URL.RawQuery = "/"+path, query
		r.Header["Content-Type"] = []string{"application/x-amz-json-1.1"}
		r.Header["X-Amz-Target"] = []string{v1}
		r.Header["X-Amz-Meta-Fuzz"] = []string{v1, v2}
		r.Header["Cache-Control"] = []string{v2}
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "kms", testRegion, at); err != nil {
			t.Fatal(err)
		}
		a, err := parseAuthorization(r.Header.Get("Authorization"))
		if err != nil {
			t.Fatal(err)
		}

		wantCode, wantMsg := sdkVerdict(r, a, testSecret, body, at)
		code, msg := answer(v, r, body)
		if code != wantCode || msg != wantMsg {
			t.Fatalf("path %q query %q values %q %q: Verify %s %q, the SDK-based verification %s %q", path, query, v1, v2, code, msg, wantCode, wantMsg)
		}
		if plainQuery(query) && code != "" {
			t.Fatalf("path %q query %q values %q %q: a request as the SDK signs it refused: %s %s", path, query, v1, v2, code, msg)
		}
		if s := asServerIfPossible(r); s != r {
			wantCode, wantMsg := sdkVerdict(s, a, testSecret, body, at)
			if code, msg := answer(v, s, body); code != wantCode || msg != wantMsg {
				t.Fatalf("server form of path %q query %q values %q %q: Verify %s %q, the SDK-based verification %s %q", path, query, v1, v2, code, msg, wantCode, wantMsg)
			}
		}

		if list == "" {
			return
		}
		// Another SignedHeaders list under the same signature: never a
		// panic, the SDK-based computation's answer, never accepted unless
		// it is the signed list.
		a.signedHeaders = strings.Split(list, ";")
		ours, err := v.expected(context.Background(), r, a, testSecret, hex.EncodeToString(sum[:]), at, len(body))
		sdk, sdkErr := sdkExpected(context.Background(), v4.NewSigner(), r.Clone(context.Background()), a, testSecret, hex.EncodeToString(sum[:]), at, len(body))
		if ours != sdk || (err == nil) != (sdkErr == nil) || err != nil && err.Error() != sdkErr.Error() {
			t.Fatalf("SignedHeaders %q: ours %q, %v; the SDK's %q, %v", list, ours, err, sdk, sdkErr)
		}
		h := r.Header.Get("Authorization")
		i, j := strings.Index(h, "SignedHeaders="), strings.Index(h, ", Signature=")
		r.Header.Set("Authorization", h[:i]+"SignedHeaders="+list+h[j:])
		if code, _ := answer(v, r, body); code == "" && ours != a.signature {
			t.Fatalf("SignedHeaders %q accepted under another list's signature", list)
		}
	})
}
