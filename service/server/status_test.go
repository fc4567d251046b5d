package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/status"
	"github.com/hsmkms/hsmkms/softhsm"
)

// ownToken makes a SoftHSM2 token of the test's own, labelled and
// PIN-protected with random strings that no page could contain by chance,
// and points this process's SoftHSM2 at it for the test.
func ownToken(t *testing.T) *softhsm.Token {
	t.Helper()
	suffix := make([]byte, 8)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	s := hex.EncodeToString(suffix)
	tok, err := softhsm.New(t.Context(), softhsm.Config{Dir: t.TempDir(), Label: "status-" + s[:8], PIN: "pin-" + s, SOPIN: "so-" + s})
	if err != nil {
		t.Fatalf("making a SoftHSM2 token: %v", err)
	}
	t.Setenv(softhsm.ConfEnv, tok.ConfPath)
	return tok
}

// statusPage fetches the status page with method from the metrics listener.
func (ts *testServer) statusPage(t *testing.T, method string) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+ts.srv.MetricsAddr()+"/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

// TestStatusPage drives a real server on its own token: keys made, rotated
// on a schedule, scheduled for deletion, data keys sealed, decryptions that
// fail; one sample of the request counters (taken by hand, not waited
// for); then the page on the metrics listener shows all of it, and nothing
// secret.
func TestStatusPage(t *testing.T) {
	tok := ownToken(t)
	ts := startServer(t, func(c *Config) { c.TokenLabel, c.PIN = tok.Label, hsm.NewPIN(tok.PIN) })
	c := ts.kmsClient(rootCreds)
	ctx := t.Context()
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("status page")})
	if err != nil {
		t.Fatal(err)
	}
	keyID := aws.ToString(k.KeyMetadata.KeyId)
	if _, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: &keyID, RotationPeriodInDays: aws.Int32(90)}); err != nil {
		t.Fatal(err)
	}
	rot, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: &keyID})
	if err != nil || rot.NextRotationDate == nil {
		t.Fatalf("GetKeyRotationStatus: %+v, %v", rot, err)
	}
	for range 3 {
		if _, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("not a ciphertext")}); !isA[*types.InvalidCiphertextException](err) {
			t.Fatalf("Decrypt of garbage: %v, want InvalidCiphertextException", err)
		}
	}
	d, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	doomedID := aws.ToString(d.KeyMetadata.KeyId)
	del, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &doomedID, PendingWindowInDays: aws.Int32(7)})
	if err != nil {
		t.Fatal(err)
	}
	ts.srv.status.Sample()

	r := ts.statusPage(t, http.MethodGet)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /status: %d %q\n%s", r.status, r.header.Get("Content-Type"), r.body)
	}
	page := string(r.body)
	limit := uint64(1) << 31
	if service.DefaultRotateAfterSeals != 1<<30 {
		t.Fatalf("the default rotation point is %d; update the expected text below", service.DefaultRotateAfterSeals)
	}
	for _, want := range []string{
		"<code>" + tok.Label + "</code>",
		`data-ready="true"`,
		`data-key="` + keyID + `"`,
		`data-state="Enabled" data-count="1"`,
		`data-state="PendingDeletion" data-count="1"`,
		fmt.Sprintf(`data-rotation="%s" data-date="%s"`, keyID, rot.NextRotationDate.UTC().Format(status.DateLayout)),
		fmt.Sprintf(`data-deletion="%s" data-date="%s"`, doomedID, del.DeletionDate.UTC().Format(status.DateLayout)),
		`data-op="GenerateDataKey" data-requests="3" data-errors="0"`,
		`data-op="Decrypt" data-requests="2" data-errors="2"`,
		`data-op="CreateKey" data-requests="2" data-errors="0"`,
		// One block of seals reserved in the store, three made.
		fmt.Sprintf(`data-seal="%s/v1" data-reserved="65536" data-sealed="3" data-limit="%d"`, keyID, limit),
		"rotates at 1,073,741,824 seals",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	for _, secret := range []string{tok.PIN, tok.SOPIN, rootSecret} {
		if strings.Contains(page, secret) {
			t.Errorf("the page contains a secret, %q", secret)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", page)
	}
}

// TestStatusPageOnlyOnMetricsListener: the page is read-only there (other
// methods 405), and the API listener does not serve it at all.
func TestStatusPageOnlyOnMetricsListener(t *testing.T) {
	ts := startServer(t)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if r := ts.statusPage(t, m); r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s /status on the metrics listener: %d, want 405", m, r.status)
		}
	}
	if r := ts.statusPage(t, http.MethodGet); r.status != http.StatusOK {
		t.Errorf("GET /status on the metrics listener: %d, want 200", r.status)
	}
	if r := ts.get(t, "/status"); r.status != http.StatusNotFound || strings.Contains(string(r.body), "hsmkms status") {
		t.Errorf("GET /status on the API listener: %d %s, want 404 and no page", r.status, r.body)
	}
}
