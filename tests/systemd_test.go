package tests

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeNotifiesReadiness starts serve as systemd would for a
// Type=notify unit (NOTIFY_SOCKET) and proves that its first message is
// READY=1, sent when the token is open and the server ready (/readyz
// answers 200 at once), and that it says STOPPING=1 on SIGTERM.
func TestServeNotifiesReadiness(t *testing.T) {
	sock, read := notifySocket(t)
	s := newSandbox(t)
	s.env = append(s.env, "NOTIFY_SOCKET="+sock)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	if msg := read(); msg != "READY=1" {
		t.Fatalf("first message %q, want READY=1", msg)
	}
	resp, err := http.Get(srv.exports["HSMKMS_ENDPOINT"] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz after READY=1 = %d, want 200", resp.StatusCode)
	}
	srv.Stop()
	if msg := read(); msg != "STOPPING=1" {
		t.Fatalf("message on SIGTERM %q, want STOPPING=1", msg)
	}
}

// notifySocket listens where systemd would (NOTIFY_SOCKET) and returns its
// path and a reader of the next message, which fails the test when none
// comes within startTimeout.
func notifySocket(t *testing.T) (path string, read func() string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return path, func() string {
		t.Helper()
		buf := make([]byte, 512)
		conn.SetReadDeadline(time.Now().Add(startTimeout))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no message on NOTIFY_SOCKET: %v", err)
		}
		return string(buf[:n])
	}
}

// TestServiceUnitVerifies runs systemd-analyze verify on the unit shipped
// in cmd/hsmkms, its ExecStart pointed at the built binary.
func TestServiceUnitVerifies(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile("../cmd/hsmkms/hsmkms.service")
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	for _, want := range []string{"Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "User=hsmkms"} {
		if !strings.Contains(text, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "hsmkms.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/hsmkms", hsmkmsBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
