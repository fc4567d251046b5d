package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/softhsm"
)

// The PINs of privateToken, unlike softhsm.TestPIN, are strings no path,
// serial or number in the output can contain by chance, so that finding
// them in the output means that the output shows a PIN.
const (
	privatePIN   = "pin-7c3e9a51-never-shown"
	wrongPIN     = "pin-w2d8f0b4-never-shown"
	privateSOPIN = "so-pin-8d2f61c9-never-shown"
)

// privateToken clears every HSMKMS_ variable the caller's environment may
// hold and makes a private token whose user PIN is privatePIN.
func privateToken(t *testing.T) *softhsm.Token {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "HSMKMS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	tok, err := softhsm.New(t.Context(), softhsm.Config{Dir: t.TempDir(), Label: "cli-private", PIN: privatePIN, SOPIN: privateSOPIN})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(softhsm.ConfEnv, tok.ConfPath)
	return tok
}

// writeSecret writes body to path and gives it mode, which the umask does
// not narrow as it would os.WriteFile's.
func writeSecret(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// secretFile writes body to a new file of the given mode in dir and
// returns its path, or, with link, the path of a symlink to it.
func secretFile(t *testing.T, dir, body string, mode os.FileMode, link bool) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "secret-")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeSecret(t, f.Name(), body, mode)
	if !link {
		return f.Name()
	}
	l := f.Name() + "-link"
	if err := os.Symlink(f.Name(), l); err != nil {
		t.Fatal(err)
	}
	return l
}

// refusal is the message a refused file of mode in octal gets.
func refusal(what, path, mode, flag string) string {
	return fmt.Sprintf("hsmkms: the %s file %s is readable by group or others (mode %s); run chmod 600 %s, or pass --%s\n",
		what, path, mode, path, flag)
}

// TestPINFilePermissions proves that `token info` refuses, with exit 2 and
// a message naming the file, its mode and the two ways out, a PIN file
// that group or others can access, a symlink to one included, and reads
// it with --allow-insecure-pin-file or HSMKMS_ALLOW_INSECURE_PIN_FILE; and
// that no output shows the PIN.
func TestPINFilePermissions(t *testing.T) {
	tok := privateToken(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		link    bool     // pass a symlink to the file
		env     bool     // pass the file in HSMKMS_PIN_FILE, not --pin-file
		extra   []string // more flags
		allow   string   // HSMKMS_ALLOW_INSECURE_PIN_FILE
		refused string   // the mode the message shows; "": accepted
	}{
		{name: "0600", mode: 0o600},
		{name: "0400", mode: 0o400},
		{name: "0644", mode: 0o644, refused: "0644"},
		{name: "0640", mode: 0o640, refused: "0640"},
		{name: "0604", mode: 0o604, refused: "0604"},
		{name: "0660", mode: 0o660, refused: "0660"},
		{name: "0602, writable by others", mode: 0o602, refused: "0602"},
		{name: "0644 in HSMKMS_PIN_FILE", mode: 0o644, env: true, refused: "0644"},
		{name: "symlink to 0644", mode: 0o644, link: true, refused: "0644"},
		{name: "symlink to 0600", mode: 0o600, link: true},
		{name: "0644 with the flag", mode: 0o644, extra: []string{"--allow-insecure-pin-file"}},
		{name: "0644 with the environment", mode: 0o644, allow: "true"},
		{name: "0644 with the environment false", mode: 0o644, allow: "false", refused: "0644"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := secretFile(t, dir, privatePIN+"\n", tc.mode, tc.link)
			args := append([]string{"token", "info"}, tokenArgs(tok, tc.extra...)...)
			if tc.env {
				t.Setenv("HSMKMS_PIN_FILE", path)
			} else {
				args = append(args, "--pin-file", path)
			}
			if tc.allow != "" {
				t.Setenv("HSMKMS_ALLOW_INSECURE_PIN_FILE", tc.allow)
			}
			r := run(t, args...)
			if tc.refused == "" {
				if r.code != ExitOK || !strings.Contains(r.stdout, tok.Label) {
					t.Errorf("exit %d, want %d; stdout %q; stderr %q", r.code, ExitOK, r.stdout, r.stderr)
				}
			} else if want := refusal("PIN", path, tc.refused, "allow-insecure-pin-file"); r.code != ExitUsage || r.stderr != want {
				t.Errorf("exit %d, want %d; stderr %q, want %q", r.code, ExitUsage, r.stderr, want)
			}
			if strings.Contains(r.stdout+r.stderr, privatePIN) {
				t.Errorf("output shows the PIN:\n%s\n%s", r.stdout, r.stderr)
			}
		})
	}
}

// TestPINFileCommands proves that every command with a --pin-file refuses
// a world-readable one before reading it, and with
// --allow-insecure-pin-file reads it: its (wrong) PIN reaches the token,
// which refuses the login, or, for softhsm init, makes a token with it.
func TestPINFileCommands(t *testing.T) {
	tok := privateToken(t)
	dir := t.TempDir()
	insecure := secretFile(t, dir, wrongPIN+"\n", 0o644, false)
	for _, tc := range []struct {
		name     string
		args     []string
		accepted int    // exit code with --allow-insecure-pin-file
		stderr   string // what stderr holds then
	}{
		{"token info", append([]string{"token", "info"}, tokenArgs(tok)...), ExitAuth, "login refused"},
		{"token mechanisms", append([]string{"token", "mechanisms"}, tokenArgs(tok)...), ExitAuth, "login refused"},
		{"doctor", append([]string{"doctor", "--data-dir", t.TempDir()}, tokenArgs(tok)...), ExitAuth, "login refused"},
		{"serve", append([]string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, tokenArgs(tok)...), ExitAuth, "login refused"},
		{"bench-target", append([]string{"bench-target", "--mode", "token"}, tokenArgs(tok)...), ExitAuth, "login refused"},
		{"softhsm init", []string{"softhsm", "init", "--dir", t.TempDir(), "--label", "cli-private-init"}, ExitOK, ""},
	} {
		t.Run(tc.name+", refused", func(t *testing.T) {
			r := run(t, append(tc.args, "--pin-file", insecure)...)
			if want := refusal("PIN", insecure, "0644", "allow-insecure-pin-file"); r.code != ExitUsage || r.stderr != want {
				t.Errorf("exit %d, want %d; stderr %q, want %q", r.code, ExitUsage, r.stderr, want)
			}
			if strings.Contains(r.stdout+r.stderr, wrongPIN) {
				t.Errorf("output shows the PIN:\n%s\n%s", r.stdout, r.stderr)
			}
		})
		t.Run(tc.name+", allowed", func(t *testing.T) {
			r := run(t, append(tc.args, "--pin-file", insecure, "--allow-insecure-pin-file")...)
			if r.code != tc.accepted || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("exit %d, want %d; stderr %q, want %q in it", r.code, tc.accepted, r.stderr, tc.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, wrongPIN) {
				t.Errorf("output shows the PIN:\n%s\n%s", r.stdout, r.stderr)
			}
		})
	}
}

// TestSoftHSMInitSOPINFile proves that softhsm init writes the SO PIN it
// makes up with mode 0600, and refuses the kept file once group or others
// can access it, unless --allow-insecure-pin-file.
func TestSoftHSMInitSOPINFile(t *testing.T) {
	privateToken(t)
	dir := filepath.Join(t.TempDir(), "softhsm")
	soPINFile := filepath.Join(dir, "so-pin")
	pinFile := secretFile(t, t.TempDir(), privatePIN+"\n", 0o600, false)
	args := []string{"softhsm", "init", "--dir", dir, "--label", "cli-private-so", "--pin-file", pinFile}
	for _, tc := range []struct {
		name    string
		mode    os.FileMode // so-pin's mode before the run; 0: as the last run left it
		extra   []string
		refused bool
	}{
		{name: "first run writes so-pin"},
		{name: "0600 kept", mode: 0o600},
		{name: "0644 refused", mode: 0o644, refused: true},
		{name: "0644 with the flag", mode: 0o644, extra: []string{"--allow-insecure-pin-file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mode != 0 {
				if err := os.Chmod(soPINFile, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			r := run(t, append(args, tc.extra...)...)
			if tc.refused {
				if want := refusal("SO PIN", soPINFile, "0644", "allow-insecure-pin-file"); r.code != ExitUsage || r.stderr != want {
					t.Errorf("exit %d, want %d; stderr %q, want %q", r.code, ExitUsage, r.stderr, want)
				}
			} else if r.code != ExitOK || !strings.Contains(r.stdout, "export HSMKMS_TOKEN_LABEL=cli-private-so") {
				t.Errorf("exit %d, want %d; stdout %q; stderr %q", r.code, ExitOK, r.stdout, r.stderr)
			}
			if tc.mode == 0 {
				fi, err := os.Stat(soPINFile)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("so-pin has mode %04o, want 0600", fi.Mode().Perm())
				}
			}
			if b, err := os.ReadFile(soPINFile); err != nil || strings.Contains(r.stdout+r.stderr, strings.TrimSpace(string(b))) ||
				strings.Contains(r.stdout+r.stderr, privatePIN) {
				t.Errorf("output shows a PIN (or so-pin unreadable: %v):\n%s\n%s", err, r.stdout, r.stderr)
			}
		})
	}
}

// TestCredentialsFilePermissions proves that client commands refuse a
// --credentials-file that group or others can access, with exit 2 and a
// message naming the file, its mode and the two ways out, before any
// request (the endpoint of those runs has nothing listening, which would
// exit 5); and that with --allow-insecure-credentials-file, its alias
// --allow-insecure-pin-file or HSMKMS_ALLOW_INSECURE_CREDENTIALS_FILE, the
// server accepts the credentials the file holds. No output shows the
// secret.
func TestCredentialsFilePermissions(t *testing.T) {
	startServer(t)
	// Only the file may provide credentials.
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadEndpoint := "http://" + l.Addr().String()
	l.Close()
	dir := t.TempDir()
	body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", rootKeyID, rootSecret)
	for _, tc := range []struct {
		name    string
		command []string
		mode    os.FileMode
		link    bool     // pass a symlink to the file
		env     bool     // pass the file in HSMKMS_CREDENTIALS_FILE
		extra   []string // more flags
		allow   bool     // set HSMKMS_ALLOW_INSECURE_CREDENTIALS_FILE
		refused string   // the mode the message shows; "": accepted
	}{
		{name: "0600", command: []string{"key", "list"}, mode: 0o600},
		{name: "0600, admin", command: []string{"principal", "list"}, mode: 0o600},
		{name: "0644", command: []string{"key", "list"}, mode: 0o644, refused: "0644"},
		{name: "0640", command: []string{"key", "list"}, mode: 0o640, refused: "0640"},
		{name: "0604", command: []string{"key", "list"}, mode: 0o604, refused: "0604"},
		{name: "0660", command: []string{"key", "list"}, mode: 0o660, refused: "0660"},
		{name: "0644, admin", command: []string{"principal", "list"}, mode: 0o644, refused: "0644"},
		{name: "0644, bench", command: []string{"bench", "--key-id", "k", "--duration", "1ms"}, mode: 0o644, refused: "0644"},
		{name: "0644 in HSMKMS_CREDENTIALS_FILE", command: []string{"key", "list"}, mode: 0o644, env: true, refused: "0644"},
		{name: "symlink to 0644", command: []string{"key", "list"}, mode: 0o644, link: true, refused: "0644"},
		{name: "symlink to 0600", command: []string{"key", "list"}, mode: 0o600, link: true},
		{name: "0644 with the flag", command: []string{"key", "list"}, mode: 0o644, extra: []string{"--allow-insecure-credentials-file"}},
		{name: "0644 with the PIN flag's name", command: []string{"principal", "list"}, mode: 0o644, extra: []string{"--allow-insecure-pin-file"}},
		{name: "0644 with the environment", command: []string{"key", "list"}, mode: 0o644, allow: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := secretFile(t, dir, body, tc.mode, tc.link)
			args := append(append([]string{}, tc.command...), tc.extra...)
			if tc.env {
				t.Setenv("HSMKMS_CREDENTIALS_FILE", path)
			} else {
				args = append(args, "--credentials-file", path)
			}
			if tc.allow {
				t.Setenv("HSMKMS_ALLOW_INSECURE_CREDENTIALS_FILE", "1")
			}
			if tc.refused != "" {
				args = append(args, "--endpoint", deadEndpoint)
			}
			r := runIn(t, "", args...)
			if tc.refused == "" {
				if r.code != ExitOK {
					t.Errorf("exit %d, want %d; stderr %q", r.code, ExitOK, r.stderr)
				}
			} else if want := refusal("credentials", path, tc.refused, "allow-insecure-credentials-file"); r.code != ExitUsage || r.stderr != want {
				t.Errorf("exit %d, want %d; stderr %q, want %q", r.code, ExitUsage, r.stderr, want)
			}
			if strings.Contains(r.stdout+r.stderr, rootSecret) {
				t.Errorf("output shows the secret:\n%s\n%s", r.stdout, r.stderr)
			}
		})
	}
}
