package server

import (
	"bufio"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/server/servertest"
)

// testCA is the shared test CA with what these tests ask of it.
type testCA struct{ *servertest.CA }

func newTestCA(t *testing.T) testCA { return testCA{servertest.NewCA(t)} }

// issue writes a key pair with serial for 127.0.0.1 to files.
func (ca testCA) issue(t *testing.T, serial int64, files TLSFiles) {
	t.Helper()
	ca.Issue(t, serial, files.Cert, files.Key)
}

// servedSerial makes a new TLS handshake with addr and returns the serial
// of the certificate it was shown.
func (ca testCA) servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestReloadTLS proves ReloadTLS and ReloadXKSTLS put a renewed key pair
// in effect for new handshakes while an established connection keeps
// serving with its own, that a pair that does not load leaves the one in
// effect, and that handshakes during reloads never fail.
func TestReloadTLS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	kms := TLSFiles{Cert: filepath.Join(dir, "kms.pem"), Key: filepath.Join(dir, "kms.key")}
	xks := TLSFiles{Cert: filepath.Join(dir, "xks.pem"), Key: filepath.Join(dir, "xks.key")}
	ca.issue(t, 10, kms)
	ca.issue(t, 20, xks)
	ts := startServer(t, func(c *Config) {
		c.TLSCert, c.TLSKey = kms.Cert, kms.Key
		c.XKS = XKSConfig{Listen: "127.0.0.1:0", TLSCert: xks.Cert, TLSKey: xks.Key}
	})
	addr := ts.srv.Addr()
	xksAddr := strings.TrimPrefix(ts.srv.XKSEndpoint(), "https://")
	if got := ca.servedSerial(t, addr); got != 10 {
		t.Fatalf("serial %d at start, want 10", got)
	}

	// A connection made before the reload, kept alive across it.
	old, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	healthz := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/healthz", nil)
		if err := req.Write(old); err != nil {
			t.Fatalf("request on the old connection: %v", err)
		}
		old.SetReadDeadline(time.Now().Add(callLimit))
		resp, err := http.ReadResponse(bufio.NewReader(old), req)
		if err != nil {
			t.Fatalf("response on the old connection: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz on the old connection: %d", resp.StatusCode)
		}
	}
	healthz()

	if err := ts.srv.ReloadTLS(kms); err != nil {
		t.Fatalf("ReloadTLS of the same pair: %v", err)
	}
	if !strings.Contains(ts.logs.String(), "TLS certificate unchanged") {
		t.Errorf("no debug line for an unchanged pair:\n%s", ts.logs)
	}
	ca.issue(t, 11, kms)
	if err := ts.srv.ReloadTLS(kms); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	if got := ca.servedSerial(t, addr); got != 11 {
		t.Errorf("serial %d after the reload, want 11", got)
	}
	healthz()
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 10 {
		t.Errorf("the old connection's serial is %d, want 10", got)
	}
	if !strings.Contains(ts.logs.String(), `"serial":"11"`) {
		t.Errorf("no log of the new certificate:\n%s", ts.logs)
	}

	// Pairs that do not load: nothing changes.
	if err := os.WriteFile(kms.Cert, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.ReloadTLS(kms); err == nil || !strings.Contains(err.Error(), "kms listener") {
		t.Errorf("ReloadTLS of a bad certificate: %v", err)
	}
	other := TLSFiles{Cert: filepath.Join(dir, "other.pem"), Key: filepath.Join(dir, "other.key")}
	ca.issue(t, 12, other)
	if err := ts.srv.ReloadTLS(TLSFiles{Cert: other.Cert, Key: xks.Key}); err == nil {
		t.Error("ReloadTLS took a key that does not match the certificate")
	}
	if err := ts.srv.ReloadTLS(TLSFiles{Cert: other.Cert}); err == nil {
		t.Error("ReloadTLS took a certificate without its key")
	}
	if got := ca.servedSerial(t, addr); got != 11 {
		t.Errorf("serial %d after failed reloads, want 11 still", got)
	}

	// The XKS listener, on its own.
	if got := ca.servedSerial(t, xksAddr); got != 20 {
		t.Fatalf("XKS serial %d, want 20", got)
	}
	ca.issue(t, 21, xks)
	if err := ts.srv.ReloadXKSTLS(xks); err != nil {
		t.Fatalf("ReloadXKSTLS: %v", err)
	}
	if got := ca.servedSerial(t, xksAddr); got != 21 {
		t.Errorf("XKS serial %d after the reload, want 21", got)
	}

	// Handshakes while the pair changes under them: none fails.
	var wg sync.WaitGroup
	var handshakes atomic.Int64
	stop := make(chan struct{})
	failures := make(chan error, 1)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"})
				if err != nil {
					select {
					case failures <- err:
					default:
					}
					return
				}
				c.Close()
				handshakes.Add(1)
			}
		}()
	}
	pairs := []TLSFiles{other, {Cert: filepath.Join(dir, "kms2.pem"), Key: filepath.Join(dir, "kms2.key")}}
	ca.issue(t, 13, pairs[1])
	// At least 20 reloads, and until 100 handshakes have been made.
	for i := 0; i < 20 || (handshakes.Load() < 100 && len(failures) == 0 && i < 100000); i++ {
		if err := ts.srv.ReloadTLS(pairs[i%2]); err != nil {
			t.Fatalf("ReloadTLS %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-failures:
		t.Errorf("a handshake failed during reloads: %v", err)
	default:
	}
}

// TestReloadTLSPlainHTTP proves a listener without TLS refuses a key
// pair: TLS is turned on only at a start.
func TestReloadTLSPlainHTTP(t *testing.T) {
	ts := startServer(t)
	if err := ts.srv.ReloadTLS(TLSFiles{Cert: "c.pem", Key: "k.pem"}); err == nil || !strings.Contains(err.Error(), "serves no TLS") {
		t.Errorf("ReloadTLS on plain HTTP: %v", err)
	}
	if err := ts.srv.ReloadXKSTLS(TLSFiles{Cert: "c.pem", Key: "k.pem"}); err == nil || !strings.Contains(err.Error(), "serves no TLS") {
		t.Errorf("ReloadXKSTLS without an XKS listener: %v", err)
	}
}
