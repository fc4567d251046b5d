package tests

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// TestAcceptedHost proves that --accepted-host binds a signed request to
// the names of the server: the aws CLI and aws-sdk-go-v2, with their
// defaults, work through the accepted name and are refused through
// another name of the same listener, however good the signature
// (InvalidSignatureException, audited as denied); the XKS listener answers
// a request signed for another host AuthenticationFailedException, and
// the same request signed for the accepted name as usual.
func TestAcceptedHost(t *testing.T) {
	requireTool(t, "aws", "awscli")
	s := newSandbox(t)
	dir := t.TempDir()
	ca, cert, key := privateCA(t, dir)
	kmsPort, xksPort := freePort(t), freePort(t)
	devDir := filepath.Join(dir, "dev")
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", devDir,
		"--listen", "127.0.0.1:"+kmsPort, "--accepted-host", "localhost",
		"--xks-listen", "127.0.0.1:"+xksPort, "--xks-tls-cert", cert, "--xks-tls-key", key)
	accepted, other := "http://localhost:"+kmsPort, "http://127.0.0.1:"+kmsPort

	// The hsmkms CLI, then the aws CLI, through each name.
	env := append(srv.clientEnv(), "HSMKMS_ENDPOINT="+accepted)
	keyID := createKey(s, env, "accepted host")
	if r := s.run(append(srv.clientEnv(), "HSMKMS_ENDPOINT="+other), "key", "list"); r.code != 3 || !strings.Contains(r.stderr, "InvalidSignatureException") {
		t.Fatalf("hsmkms key list through 127.0.0.1: %v; want exit 3 with InvalidSignatureException", r)
	}
	awsEnv := append(srv.clientEnv(), "AWS_DEFAULT_REGION="+srv.exports["AWS_REGION"])
	if r := s.exec(runOpts{env: awsEnv}, "aws", "kms", "--endpoint-url", accepted, "describe-key", "--key-id", keyID); r.code != 0 || !strings.Contains(r.stdout, keyID) {
		t.Fatalf("aws kms describe-key through localhost: %v", r)
	}
	r := s.exec(runOpts{env: awsEnv}, "aws", "kms", "--endpoint-url", other, "describe-key", "--key-id", keyID)
	if r.code == 0 || !strings.Contains(r.stderr, "(InvalidSignatureException)") || !strings.Contains(r.stderr, `signed for host "127.0.0.1:`+kmsPort+`"`) {
		t.Fatalf("aws kms describe-key through 127.0.0.1: %v; want InvalidSignatureException naming the host", r)
	}

	// aws-sdk-go-v2.
	client := func(endpoint string) *kms.Client {
		return kms.New(kms.Options{Region: srv.exports["AWS_REGION"], BaseEndpoint: aws.String(endpoint),
			Credentials: credentials.NewStaticCredentialsProvider(srv.exports["AWS_ACCESS_KEY_ID"], srv.exports["AWS_SECRET_ACCESS_KEY"], "")})
	}
	if _, err := client(accepted).Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt through localhost: %v", err)
	}
	_, err := client(other).Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("x")})
	id := sdkError(t, err, http.StatusBadRequest, "InvalidSignatureException")
	e := newSecEnv(s, srv, devDir)
	if rec := e.wantOneRefusal(t, id, "InvalidSignatureException"); rec.Outcome != "denied" || rec.Principal != e.root.AccessKeyID {
		t.Fatalf("the refusal's audit record: %+v, want denied under the root's access key ID", rec)
	}

	// The XKS listener: the certificate names 127.0.0.1, the Host header
	// the name the request was signed for.
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	x := &xksEnv{s: s, srv: srv, env: env, ca: ca, base: "https://127.0.0.1:" + xksPort, prefix: "hosts", audit: e.auditPath(),
		httpc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	s.must(env, "xks", "store", "create", x.prefix)
	x.cred = x.addCredential(t)
	s.must(env, "xks", "key", "allow", x.prefix, keyID)
	metadata := "/" + x.prefix + "/kms/xks/v1/keys/" + keyID + "/metadata"
	wantXKS(t, x.sdkCall(t, x.cred, metadata, map[string]any{"requestMetadata": meta("DescribeKey")}, time.Now()), http.StatusUnauthorized, "AuthenticationFailedException")
	x.host = "localhost:" + xksPort
	if got := x.sdkCall(t, x.cred, metadata, map[string]any{"requestMetadata": meta("DescribeKey")}, time.Now()); got.status != http.StatusOK || got.str("keySpec") != "AES_256" {
		t.Fatalf("metadata signed for localhost: %d %s", got.status, got.raw)
	}
}
