package auth

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sdkExpected is how the Verifier computed the expected signature before it
// canonicalized requests itself: sign a copy of r that carries exactly the
// headers the client signed with the AWS SDK's signer, and read the
// signature back from the Authorization header the signer wrote. It is kept
// as the oracle the direct computation is tested against.
//
// signer must be new for every secret an access key ID has: the SDK's
// signer caches the signing key it derives by access key ID, region,
// service and day, not by secret, so a shared signer would go on signing
// with a rotated secret.
//
// Like the code it replaces, it writes the SDK's X-Amz-Date and
// Authorization values into r's own header slices when the client listed
// those headers under another spelling; callers compare with it after the
// direct computation has read r.
func sdkExpected(ctx context.Context, signer *v4.Signer, r *http.Request, a authorization, secret, payloadHash string, t time.Time, n int) (string, error) {
	u := *r.URL
	u.Scheme, u.Host = "https", r.Host
	c, err := http.NewRequestWithContext(ctx, r.Method, u.String(), nil)
	if err != nil {
		return "", err
	}
	c.Host = r.Host
	for _, h := range a.signedHeaders {
		switch h {
		case "host", "x-amz-date":
		case "content-length":
			c.ContentLength = int64(n)
		default:
			vals := r.Header.Values(h)
			if len(vals) == 0 {
				return "", fmt.Errorf("signed header %s is missing from the request", h)
			}
			c.Header[http.CanonicalHeaderKey(h)] = vals
		}
	}
	err = signer.SignHTTP(ctx, aws.Credentials{AccessKeyID: a.accessKeyID, SecretAccessKey: secret},
		c, payloadHash, serviceName, a.region, t, func(o *v4.SignerOptions) { o.DisableURIPathEscaping = false })
	if err != nil {
		return "", err
	}
	got, err := parseAuthorization(c.Header.Get("Authorization"))
	if err != nil {
		return "", err
	}
	if !slices.Equal(got.signedHeaders, a.signedHeaders) {
		return "", fmt.Errorf("SignedHeaders %s cannot be verified", strings.Join(a.signedHeaders, ";"))
	}
	return got.signature, nil
}

// expected is Verifier.expectedSignature as a string, the form
// sdkExpected gives.
func (v *Verifier) expected(ctx context.Context, r *http.Request, a authorization, secret, payloadHash string, t time.Time, n int) (string, error) {
	sig, err := v.expectedSignature(ctx, r, a, secret, []byte(payloadHash), t, n)
	if err != nil {
		return "", err
	}
	return string(sig[:]), nil
}

// len is the number of cached signing keys.
func (c *signingKeys) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
