package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// certAuthority issues server certificates for 127.0.0.1, all trusted
// through one pool.
type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCertAuthority(t *testing.T) *certAuthority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hsmkms reload test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &certAuthority{cert: cert, key: key, pool: pool}
}

// issue writes a certificate with serial for 127.0.0.1 to certFile and its
// key to keyFile, replacing them.
func (ca *certAuthority) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// privateCA writes, under dir, a CA certificate (ca.pem) and a server key
// pair for 127.0.0.1 signed by it (cert.pem, key.pem).
func privateCA(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	authority := newCertAuthority(t)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authority.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	authority.issue(t, 2, cert, key)
	return ca, cert, key
}

// TestClientPrivateCA proves the client commands, the KMS ones and the
// admin ones, trust a private CA with --ca-bundle (or HSMKMS_CA_BUNDLE),
// and without it fail at once (no retries) with one line naming the flag
// and exit 5 (issue 18).
func TestClientPrivateCA(t *testing.T) {
	s := newSandbox(t)
	dir := t.TempDir()
	ca, cert, key := privateCA(t, dir)
	port := freePort(t)
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", filepath.Join(dir, "dev"), "--listen", "127.0.0.1:"+port,
		"--tls-cert", cert, "--tls-key", key)
	env := slices.DeleteFunc(srv.clientEnv(), func(e string) bool { return strings.HasPrefix(e, "HSMKMS_ENDPOINT=") })
	env = append(env, "HSMKMS_ENDPOINT=https://127.0.0.1:"+port, "AWS_CA_BUNDLE=")

	start := time.Now()
	r := s.run(env, "key", "list")
	if r.code != 5 || !strings.Contains(r.stderr, "--ca-bundle") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("want exit 5 and one line naming --ca-bundle: %v", r)
	}
	if strings.Contains(r.stderr, "attempts") {
		t.Errorf("a certificate error was retried: %v", r)
	}
	t.Logf("refused in %v", time.Since(start))
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag", nil, []string{"--ca-bundle", ca}},
		{"environment", []string{"HSMKMS_CA_BUNDLE=" + ca}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(append(slices.Clone(env), tc.env...), append([]string{"key", "list"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("want exit 0 trusting the CA: %v", r)
			}
			// The admin operations use their own client: same trust.
			r = s.run(append(slices.Clone(env), tc.env...), append([]string{"principal", "list"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("principal list: want exit 0 trusting the CA: %v", r)
			}
		})
	}
}

// TestClientEndpointForms proves --endpoint without a scheme works on
// loopback (taken as http://) and a malformed one is a usage error saying
// what to give.
func TestClientEndpointForms(t *testing.T) {
	s := newSandbox(t)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	env := srv.clientEnv()
	hostPort := strings.TrimPrefix(srv.exports["HSMKMS_ENDPOINT"], "http://")
	if r := s.run(env, "key", "list", "--endpoint", hostPort); r.code != 0 {
		t.Fatalf("--endpoint %s: %v", hostPort, r)
	}
	for _, bad := range []string{"ftp://" + hostPort, "http://", "https:///x"} {
		if r := s.run(env, "key", "list", "--endpoint", bad); r.code != 2 || !strings.Contains(r.stderr, "is not a server URL") {
			t.Errorf("--endpoint %s: want exit 2 saying it is not a server URL: %v", bad, r)
		}
	}
}

// TestClientNotKMS proves that an endpoint which is not a KMS server (a
// web server answering HTML) is named as such, exit 5, instead of the
// SDK's "UnknownError: UnknownError" (issue 18).
func TestClientNotKMS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("<html>not here</html>"))
	})}
	go web.Serve(l)
	t.Cleanup(func() { web.Close() })
	s := newSandbox(t)
	env := []string{"AWS_ACCESS_KEY_ID=AKIAEXAMPLEEXAMPLE00", "AWS_SECRET_ACCESS_KEY=example-secret-example-secret-example00"}
	r := s.run(env, "key", "list", "--endpoint", "http://"+l.Addr().String())
	if r.code != 5 || !strings.Contains(r.stderr, "did not answer as a KMS server (HTTP 404, text/html)") || strings.Contains(r.stderr, "UnknownError") {
		t.Fatalf("want exit 5 saying the endpoint is not a KMS: %v", r)
	}
}
