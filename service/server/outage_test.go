package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// recoveryLimit bounds the wait for the server to see its token again. It
// is a guard against hangs, not a timing measurement: recovery is attempted
// once a second.
const recoveryLimit = 30 * time.Second

// readiness is GET /readyz: its status and reason.
func (ts *testServer) readiness(t *testing.T) (int, string) {
	t.Helper()
	r := ts.get(t, "/readyz")
	var body struct{ Status, Reason string }
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("/readyz body %q: %v", r.body, err)
	}
	return r.status, body.Reason
}

// TestTokenOutage proves that when the server's token disappears while it
// runs, requests that need the token fail fast with 503
// DependencyTimeoutException (typed by the SDK, without retries), requests
// that need only the store still work, and /readyz answers 503 with a
// reason; and that once the token is back, /readyz turns 200 and an old
// ciphertext decrypts and new keys and ciphertexts work, with no restart.
func TestTokenOutage(t *testing.T) {
	own := env.AddTestToken(t, "server-outage")
	ts := startServer(t, func(c *Config) { c.TokenLabel = own.Label })
	c := ts.kmsClient(rootCreds)
	ctx := t.Context()
	keyID := newKey(t, c, nil)
	kwKey := newKey(t, c, &kms.CreateKeyInput{Tags: []types.Tag{{TagKey: aws.String("hsmkms:mechanism"), TagValue: aws.String("aes-kw")}}})
	old, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("sealed before the outage")})
	if err != nil {
		t.Fatal(err)
	}
	oldDK, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(kwKey), KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := ts.readiness(t); status != http.StatusOK {
		t.Fatalf("/readyz before the outage = %d, want 200", status)
	}

	back := own.MoveAway(t)
	needToken := []struct {
		name string
		call func(context.Context) error
	}{
		{"Encrypt", func(ctx context.Context) error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("x")})
			return err
		}},
		{"Decrypt", func(ctx context.Context) error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old.CiphertextBlob})
			return err
		}},
		{"GenerateDataKey aes-gcm", func(ctx context.Context) error {
			_, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256})
			return err
		}},
		{"GenerateDataKey aes-kw", func(ctx context.Context) error {
			_, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(kwKey), KeySpec: types.DataKeySpecAes256})
			return err
		}},
		{"GenerateRandom", func(ctx context.Context) error {
			_, err := c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(16)})
			return err
		}},
		{"CreateKey", func(ctx context.Context) error {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
			return err
		}},
		{"RotateKeyOnDemand", func(ctx context.Context) error {
			_, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)})
			return err
		}},
	}
	for _, tc := range needToken {
		// The deadline turns a hang into a failure: a call that waited it
		// out ends with a context error, not DependencyTimeoutException.
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := tc.call(cctx)
		cancel()
		if !isA[*types.DependencyTimeoutException](err) || httpStatus(err) != http.StatusServiceUnavailable {
			t.Fatalf("%s while the token is away: err = %v (status %d), want a 503 DependencyTimeoutException", tc.name, err, httpStatus(err))
		}
		recs := ts.auditFor(t, requestID(t, err))
		if len(recs) != 1 || recs[0].Outcome != "failed" || recs[0].ErrorType != "DependencyTimeoutException" {
			t.Fatalf("%s while the token is away: audit records %+v, want one failed with DependencyTimeoutException", tc.name, recs)
		}
	}
	status, reason := ts.readiness(t)
	if status != http.StatusServiceUnavailable || reason != ReasonTokenUnavailable {
		t.Fatalf("/readyz while the token is away = %d, reason %q; want 503 with %q (no PKCS#11 detail or token label to anyone who asks)",
			status, reason, ReasonTokenUnavailable)
	}
	t.Logf("/readyz while away: %d %s", status, reason)
	if r := ts.get(t, "/healthz"); r.status != http.StatusOK {
		t.Fatalf("/healthz while the token is away = %d, want 200 (the process is alive)", r.status)
	}
	if d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)}); err != nil || d.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Fatalf("DescribeKey (store only) while the token is away = %+v, %v; want the key, Enabled", d, err)
	}

	back()
	deadline := time.Now().Add(recoveryLimit)
	for {
		status, reason := ts.readiness(t)
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d (%s) %v after the token came back", status, reason, recoveryLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}

	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "sealed before the outage" {
		t.Fatalf("Decrypt of a ciphertext made before the outage = %q, %v", dec.Plaintext, err)
	}
	dk, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: oldDK.CiphertextBlob})
	if err != nil || !bytes.Equal(dk.Plaintext, oldDK.Plaintext) {
		t.Fatalf("Decrypt of an aes-kw data key made before the outage = %x, %v; want %x", dk.Plaintext, err, oldDK.Plaintext)
	}
	newKeyID := newKey(t, c, nil)
	for _, id := range []string{keyID, newKeyID} {
		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("after the outage")})
		if err != nil {
			t.Fatalf("Encrypt after recovery: %v", err)
		}
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		if err != nil || string(dec.Plaintext) != "after the outage" {
			t.Fatalf("Decrypt after recovery = %q, %v", dec.Plaintext, err)
		}
	}
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("RotateKeyOnDemand after recovery: %v", err)
	}
	// The CreateKey that failed during the outage left no key behind.
	list, err := c.ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil || len(list.Keys) != 3 {
		t.Fatalf("ListKeys after recovery = %+v, %v; want the 3 keys made while the token was there", list, err)
	}
	info, err := ts.admin(rootCreds).GetTokenInfo(ctx)
	if err != nil || !info.Health.Ready || info.Health.Recoveries != 1 || info.Token.Label != own.Label {
		t.Fatalf("GetTokenInfo after recovery = %+v, %v; want ready on %s after one recovery", info, err, own.Label)
	}
}
