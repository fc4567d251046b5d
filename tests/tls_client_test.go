package tests

import (
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/server/servertest"
)

// privateCA writes, under dir, a CA certificate (ca.pem) and a server key
// pair for 127.0.0.1 signed by it (cert.pem, key.pem).
func privateCA(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	authority := servertest.NewCA(t)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	authority.WriteCert(t, ca)
	authority.Issue(t, 2, cert, key)
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
