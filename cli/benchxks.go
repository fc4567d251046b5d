package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/hsmkms/hsmkms/service"
	"github.com/urfave/cli/v2"
)

// xksBench sets up a run of the XKS proxy API (xksBenchStore) and returns
// the sender of the run's Encrypt or Decrypt.
func xksBench(c *cli.Context, cl *leanClient, cleanup *func() error) (sender, error) {
	op := strings.ToLower(c.String("op"))
	if op != "encrypt" && op != "decrypt" {
		return nil, cli.Exit("hsmkms: with --xks, --op must be Encrypt or Decrypt", ExitUsage)
	}
	keyID, keyARN, uriPath, creds, err := xksBenchStore(c, cl, cleanup)
	if err != nil {
		return nil, err
	}
	x := &xksClient{base: strings.TrimSuffix(c.String("xks"), "/") + uriPath + "/keys/" + keyID + "/",
		creds: creds, region: cl.region, lean: cl}
	md := map[string]string{"awsPrincipalArn": "arn:aws:iam::000000000000:user/bench", "kmsKeyArn": keyARN,
		"kmsOperation": "Encrypt", "kmsRequestId": "hsmkms-bench"}
	enc := map[string]any{"requestMetadata": md, "plaintext": base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"additionalAuthenticatedData": base64.StdEncoding.EncodeToString([]byte("hsmkms bench")), "encryptionAlgorithm": "AES_GCM"}
	body, err := json.Marshal(enc)
	if err != nil {
		return nil, err
	}
	if op == "decrypt" {
		status, data, err := x.send(c.Context, "encrypt", body, payloadHash(body))
		if err != nil || status != http.StatusOK {
			return nil, fmt.Errorf("making a ciphertext for the run: HTTP %d %v %.200s", status, err, data)
		}
		var out map[string]string
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, err
		}
		md["kmsOperation"] = "Decrypt"
		dec := map[string]any{"requestMetadata": md, "encryptionAlgorithm": "AES_GCM",
			"additionalAuthenticatedData": enc["additionalAuthenticatedData"], "ciphertext": out["ciphertext"],
			"ciphertextMetadata": out["ciphertextMetadata"], "initializationVector": out["initializationVector"],
			"authenticationTag": out["authenticationTag"]}
		if body, err = json.Marshal(dec); err != nil {
			return nil, err
		}
	}
	hash := payloadHash(body)
	return func(ctx context.Context, _ int) (int, []byte, error) { return x.send(ctx, op, body, hash) }, nil
}

// xksBenchStore returns the key, its ARN, the store's URI path and the
// credentials of a run: the ones --xks-prefix and --key-id name, or new
// ones made through the admin API (and *cleanup set to remove them).
func xksBenchStore(c *cli.Context, cl *leanClient, cleanup *func() error) (keyID, keyARN, uriPath string, creds aws.Credentials, err error) {
	if p := c.String("xks-prefix"); p != "" {
		keyID = c.String("key-id")
		if keyID == "" {
			return "", "", "", creds, cli.Exit("hsmkms: --xks-prefix needs --key-id, the external key ID to use", ExitUsage)
		}
		return keyID, "arn:aws:kms:us-east-1:000000000000:key/" + keyID, service.XKSURIPath(strings.Trim(p, "/")), cl.creds, nil
	}
	var key service.KeyOutput
	if err := cl.call(c.Context, "TrentService.CreateKey", service.CreateKeyInput{Description: "hsmkms bench --xks"}, &key); err != nil {
		return "", "", "", creds, fmt.Errorf("creating a key for the run: %w", err)
	}
	keyID = key.KeyMetadata.KeyId
	var suffix [6]byte
	rand.Read(suffix[:])
	prefix := "hsmkms-bench/" + hex.EncodeToString(suffix[:])
	*cleanup = func() error {
		ctx := context.WithoutCancel(c.Context)
		var done service.ScheduleKeyDeletionOutput
		return errors.Join(cl.call(ctx, "HsmkmsAdmin.DeleteXksStore", service.XKSStoreInput{Prefix: prefix}, &struct{}{}),
			cl.call(ctx, "TrentService.ScheduleKeyDeletion", service.ScheduleKeyDeletionInput{KeyId: keyID, PendingWindowInDays: 7}, &done))
	}
	var cred service.XKSProxyCredential
	for _, step := range []struct {
		target string
		in     any
		out    any
	}{
		{"HsmkmsAdmin.CreateXksStore", service.XKSStoreInput{Prefix: prefix}, &service.XKSStoreEntry{}},
		{"HsmkmsAdmin.AllowXksKey", service.AllowXKSKeyInput{Prefix: prefix, ExternalKeyID: keyID, Usage: []string{"ENCRYPT", "DECRYPT"}}, &struct{}{}},
		{"HsmkmsAdmin.AddXksCredential", service.XKSStoreInput{Prefix: prefix}, &cred},
	} {
		if err := cl.call(c.Context, step.target, step.in, step.out); err != nil {
			return "", "", "", creds, fmt.Errorf("setting up the run's external key store: %s: %w", step.target, err)
		}
	}
	creds = aws.Credentials{AccessKeyID: cred.Credential.AccessKeyID, SecretAccessKey: cred.Credential.RawSecretAccessKey}
	return keyID, key.KeyMetadata.Arn, cred.URIPath, creds, nil
}

// xksClient signs XKS proxy API requests as AWS KMS does: SigV4 for
// kms-xks-proxy over host and x-amz-date, Content-Type left unsigned.
type xksClient struct {
	base   string // ends in /keys/<id>/
	creds  aws.Credentials
	region string
	lean   *leanClient
}

func (x *xksClient) send(ctx context.Context, op string, body []byte, hash string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.base+op, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if err := x.lean.signer.SignHTTP(ctx, x.creds, req, hash, "kms-xks-proxy", x.region, time.Now()); err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := x.lean.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}
