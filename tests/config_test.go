package tests

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/service/server/servertest"
)

// tlsConfig trusts ca; seen, when set, is told each handshake's
// certificate serial.
func tlsConfig(ca *servertest.CA, seen func(int64)) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", VerifyConnection: func(cs tls.ConnectionState) error {
		if seen != nil {
			seen(cs.PeerCertificates[0].SerialNumber.Int64())
		}
		return nil
	}}
}

// serveConfigTOML is a dev server's config file: token, data and listener
// all from the file, with TLS.
func serveConfigTOML(dir, port, cert, key, level string) string {
	return fmt.Sprintf(`# hsmkms serve --config: every key is a flag's name
dev = true
dev-dir = %s
listen = "127.0.0.1:%s"
tls-cert = %s
tls-key = %s
log-level = %q
audit-log = %s
metrics-listen = "off"
`, strconv.Quote(filepath.Join(dir, "dev")), port, strconv.Quote(cert), strconv.Quote(key), level, strconv.Quote(filepath.Join(dir, "audit.log")))
}

// requestLoop sends GenerateRandom requests, each on a new connection (so
// each makes a TLS handshake), until stopped; it counts successes and
// keeps every failure and every certificate serial its handshakes saw.
type requestLoop struct {
	mu       sync.Mutex
	ok       int
	failures []error
	serials  map[int64]int // requests that succeeded, by the serial of their handshake
	stop     chan struct{}
	done     chan struct{}
}

func startRequestLoop(ca *servertest.CA, endpoint string, creds aws.Credentials) *requestLoop {
	l := &requestLoop{serials: map[int64]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	var mu sync.Mutex
	var last int64 // the serial of the handshake of the request in flight
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConfig(ca, func(s int64) { mu.Lock(); last = s; mu.Unlock() })}
	client := kms.New(kms.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, ""),
		BaseEndpoint: aws.String(endpoint),
		HTTPClient:   &http.Client{Transport: tr, Timeout: 30 * time.Second},
		// No retries: a request that failed must be seen failing.
		Retryer: aws.NopRetryer{},
	})
	go func() {
		defer close(l.done)
		// Bounded in count and time, whatever the test does.
		deadline := time.Now().Add(3 * time.Minute)
		for i := 0; i < 50000 && time.Now().Before(deadline); i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			_, err := client.GenerateRandom(context.Background(), &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32)})
			mu.Lock()
			serial := last
			mu.Unlock()
			l.mu.Lock()
			if err != nil {
				l.failures = append(l.failures, err)
			} else {
				l.ok++
				l.serials[serial]++
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// waitFor waits until cond holds for the loop, failing after timeout.
func (l *requestLoop) waitFor(t *testing.T, what string, cond func(l *requestLoop) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l.mu.Lock()
		ok := cond(l)
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-l.done:
			t.Fatalf("the request loop ended before %s: %d ok, failures %v", what, l.ok, l.failures)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request loop never saw %s: %d ok, serials %v", what, l.ok, l.serials)
		}
	}
}

// waitStderr waits until the server's standard error, from offset on,
// holds want, and returns it from offset.
func waitStderr(t *testing.T, srv *server, offset int, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out := srv.stderr.String()[offset:]; strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never logged %q; stderr:\n%s", want, srv.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServeConfigReload starts serve from a TOML config file alone, with
// TLS, and sends it SIGHUP after replacing the certificate and key files
// and raising the log level in the file, while a client loops requests,
// each on a new TLS connection. The reload is seen done in the log and by
// systemd's notify protocol; then new handshakes get the new certificate,
// a connection made before keeps its own and keeps serving, no request
// failed, debug lines appear, and the setting that needs a restart is
// named in a warning.
func TestServeConfigReload(t *testing.T) {
	sock, notified := notifySocket(t)
	s := newSandbox(t)
	s.env = append(s.env, "NOTIFY_SOCKET="+sock)
	dir := t.TempDir()
	ca := servertest.NewCA(t)
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.Issue(t, 100, cert, key)
	port := freePort(t)
	config := filepath.Join(dir, "hsmkms.toml")
	if err := os.WriteFile(config, []byte(serveConfigTOML(dir, port, cert, key, "info")), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := s.startServer("", hsmkmsBin, "serve", "--config", config)
	endpoint := "https://127.0.0.1:" + port
	if got := srv.exports["HSMKMS_ENDPOINT"]; got != endpoint {
		t.Fatalf("endpoint %s, want %s from the config file", got, endpoint)
	}
	if msg := notified(); msg != "READY=1" {
		t.Fatalf("first message %q, want READY=1", msg)
	}

	loop := startRequestLoop(ca, endpoint, aws.Credentials{AccessKeyID: srv.exports["AWS_ACCESS_KEY_ID"], SecretAccessKey: srv.exports["AWS_SECRET_ACCESS_KEY"]})
	defer func() {
		close(loop.stop)
		<-loop.done
	}()
	loop.waitFor(t, "10 requests with the first certificate", func(l *requestLoop) bool { return l.serials[100] >= 10 })

	// A keep-alive connection made before the reload.
	old, err := tls.Dial("tcp", "127.0.0.1:"+port, tlsConfig(ca, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldReader := bufio.NewReader(old)
	healthz := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, endpoint+"/healthz", nil)
		if err := req.Write(old); err != nil {
			t.Fatalf("request on the connection made before the reload: %v", err)
		}
		old.SetReadDeadline(time.Now().Add(cmdTimeout))
		resp, err := http.ReadResponse(oldReader, req)
		if err != nil {
			t.Fatalf("response on the connection made before the reload: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz: %d", resp.StatusCode)
		}
	}
	healthz()

	mark := len(srv.stderr.String())
	if strings.Contains(srv.stderr.String(), "[DEBUG]") {
		t.Fatalf("debug lines at log level info:\n%s", srv.stderr)
	}
	ca.Issue(t, 101, cert, key)
	changed := serveConfigTOML(dir, port, cert, key, "debug") + "pool-size = 8\n"
	if err := os.WriteFile(config, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if msg := notified(); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`).MatchString(msg) {
		t.Errorf("message on SIGHUP %q, want RELOADING=1 with MONOTONIC_USEC", msg)
	}
	if msg := notified(); msg != "READY=1" {
		t.Errorf("message after the reload %q, want READY=1", msg)
	}
	after := waitStderr(t, srv, mark, "hsmkms.reload: reloaded")

	c, err := tls.Dial("tcp", "127.0.0.1:"+port, tlsConfig(ca, nil))
	if err != nil {
		t.Fatalf("a handshake after the reload: %v", err)
	}
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 101 {
		t.Errorf("a new handshake got the certificate with serial %d, want the new one, 101", got)
	}
	c.Close()
	healthz()
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 100 {
		t.Errorf("the connection made before the reload has serial %d, want 100", got)
	}
	loop.waitFor(t, "10 requests with the new certificate", func(l *requestLoop) bool { return l.serials[101] >= 10 })

	loop.mu.Lock()
	failures, ok, serials := loop.failures, loop.ok, fmt.Sprint(loop.serials)
	loop.mu.Unlock()
	if len(failures) != 0 {
		t.Errorf("%d of %d requests failed across the SIGHUP; the first: %v", len(failures), len(failures)+ok, failures[0])
	}
	t.Logf("%d requests across the reload, by certificate serial: %s", ok, serials)

	for _, want := range []string{
		"[DEBUG] hsmkms.reload: read the config file",
		"[INFO]  hsmkms: TLS certificate reloaded: new handshakes use it: listener=kms",
		"serial=101",
		`[WARN]  hsmkms.reload: the config file changes a setting that takes effect only at a restart: still serving with the one in effect: key=pool-size`,
		`applied=["log-level"] need_restart=["pool-size"]`,
	} {
		if !strings.Contains(after, want) {
			t.Errorf("the log after SIGHUP lacks %q:\n%s", want, after)
		}
	}
}

// TestServeConfigErrors proves the built binary refuses a config file that
// is not valid before opening anything, with one line naming the file and
// the line, and exit 2; and takes the file from HSMKMS_SERVE_CONFIG.
func TestServeConfigErrors(t *testing.T) {
	s := newSandbox(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	toml := write("hsmkms.toml", "# hsmkms\nlisten = \"127.0.0.1:0\"\n\ndata-dir = \"/nonexistent\"\n\n\nlistn = \"127.0.0.1:1\"\n")
	yaml := write("hsmkms.yaml", "listen: 127.0.0.1:0\npool-size: four\n")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"toml unknown key", nil, []string{"serve", "--config", toml},
			"hsmkms: config " + toml + ` line 7: unknown key "listn" (serve has no --listn flag; did you mean "listen"?)`},
		{"yaml wrong type", nil, []string{"serve", "--config", yaml},
			"hsmkms: config " + yaml + ` line 2: "pool-size" must be an integer, not a string`},
		{"from the variable", []string{"HSMKMS_SERVE_CONFIG=" + toml}, []string{"serve"},
			"hsmkms: config " + toml + " line 7: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(tc.env, tc.args...)
			if r.code != 2 || !strings.HasPrefix(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("want exit 2 and one line %q: %v", tc.want, r)
			}
		})
	}
}

// TestServiceUnitConfig proves the shipped unit reads the config file and
// reloads with SIGHUP, which TestServeConfigReload proves serve handles.
func TestServiceUnitConfig(t *testing.T) {
	unit, err := os.ReadFile("../cmd/hsmkms/hsmkms.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nExecStart=/usr/local/bin/hsmkms serve --config /etc/hsmkms/hsmkms.toml\n", "\nExecReload=/bin/kill -HUP $MAINPID\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
}
