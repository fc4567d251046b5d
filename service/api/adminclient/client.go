// Package adminclient calls hsmkms's admin operations (X-Amz-Target:
// HsmkmsAdmin.<Operation>, AWS JSON 1.1, SigV4-signed like every KMS
// request) — the calls the AWS SDKs do not know.
package adminclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hsmkms/hsmkms/service"
)

// Client calls the admin operations of one server.
type Client struct {
	Endpoint    string // e.g. http://127.0.0.1:8080
	Region      string
	Credentials aws.Credentials
	HTTP        *http.Client
	signer      *v4.Signer
}

// New returns a Client.
func New(endpoint, region string, creds aws.Credentials) *Client {
	return &Client{Endpoint: endpoint, Region: region, Credentials: creds,
		HTTP: &http.Client{Timeout: time.Minute}, signer: v4.NewSigner()}
}

// Error is an error response: its AWS type and message.
type Error struct {
	Status  int
	Type    string `json:"__type"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Type, e.Message) }

// CreatePrincipal makes a principal and returns its one-time secret.
func (c *Client) CreatePrincipal(ctx context.Context, in service.CreatePrincipalInput) (out service.CreatePrincipalOutput, err error) {
	return out, c.Call(ctx, "HsmkmsAdmin.CreatePrincipal", in, &out)
}

// ListPrincipals lists principals.
func (c *Client) ListPrincipals(ctx context.Context, in service.ListInput) (out service.ListPrincipalsOutput, err error) {
	return out, c.Call(ctx, "HsmkmsAdmin.ListPrincipals", in, &out)
}

// DeletePrincipal deletes a principal.
func (c *Client) DeletePrincipal(ctx context.Context, accessKeyID string) error {
	return c.Call(ctx, "HsmkmsAdmin.DeletePrincipal", service.DeletePrincipalInput{AccessKeyId: accessKeyID}, nil)
}

// UpdatePrincipal replaces a principal's policy.
func (c *Client) UpdatePrincipal(ctx context.Context, in service.UpdatePrincipalInput) error {
	return c.Call(ctx, "HsmkmsAdmin.UpdatePrincipal", in, nil)
}

// RotatePrincipalSecret gives a principal a new secret access key.
func (c *Client) RotatePrincipalSecret(ctx context.Context, accessKeyID string) (out service.RotatePrincipalSecretOutput, err error) {
	return out, c.Call(ctx, "HsmkmsAdmin.RotatePrincipalSecret", service.RotatePrincipalSecretInput{AccessKeyId: accessKeyID}, &out)
}

// GetTokenInfo describes the server's token.
func (c *Client) GetTokenInfo(ctx context.Context) (out service.GetTokenInfoOutput, err error) {
	return out, c.Call(ctx, "HsmkmsAdmin.GetTokenInfo", struct{}{}, &out)
}

// Call sends one signed JSON 1.1 request for target and decodes the
// response into out (nil to discard it).
func (c *Client) Call(ctx context.Context, target string, in, out any) error {
	resp, err := c.send(ctx, target, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// BackupStore streams a snapshot of the server's embedded store into w and
// returns its size. A transfer cut short is an error, never a short file.
func (c *Client) BackupStore(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, "HsmkmsAdmin.BackupStore", struct{}{})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

// send signs and sends one request; a response other than 200 is returned
// as an *Error.
func (c *Client) send(ctx context.Context, target string, in any) (*http.Response, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Endpoint+"/", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", target)
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, c.Credentials, req, hex.EncodeToString(sum[:]), "kms", c.Region, time.Now()); err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(data, e) != nil || e.Type == "" {
		e.Type, e.Message = http.StatusText(resp.StatusCode), string(data)
	}
	return nil, e
}
