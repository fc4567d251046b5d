package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/softhsm"
	"github.com/urfave/cli/v2"
)

const cliLabel = "cli-test"

// result is what one in-process run of the application left behind.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the application in-process as Main does and returns its output
// and exit code.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return runApp(t, func(*cli.App) {}, args...)
}

// runApp is run with the application changed first (a test's hooks in
// its Metadata).
func runApp(t *testing.T, change func(*cli.App), args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := ExitOK
	app := New(&stdout, &stderr)
	change(app)
	if err := app.Run(append([]string{"hsmkms"}, args...)); err != nil {
		code = exitCode(err, &stderr)
	}
	return result{stdout.String(), stderr.String(), code}
}

// setup makes a private token, clears every HSMKMS_ variable the caller's
// environment may hold, and returns the token.
func setup(t *testing.T) *softhsm.Token {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "HSMKMS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	return softhsm.NewTest(t, cliLabel)
}

// tokenArgs are the flags that select the private token.
func tokenArgs(tok *softhsm.Token, extra ...string) []string {
	return append([]string{"--pkcs11-module", tok.ModulePath, "--token-label", tok.Label}, extra...)
}

// TestCLISlotList proves that `slot list` shows the token in a table and as
// a JSON array of slots.
func TestCLISlotList(t *testing.T) {
	tok := setup(t)
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"table", []string{"slot", "list", "--pkcs11-module", tok.ModulePath}, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) < 2 || !strings.HasPrefix(lines[0], "SLOT") {
				t.Fatalf("no table: %q", out)
			}
			var row string
			for _, l := range lines[1:] {
				if strings.Contains(l, cliLabel) {
					row = l
				}
			}
			if !strings.Contains(row, "SoftHSM project") || !strings.Contains(row, "TOKEN_INITIALIZED") {
				t.Errorf("no row for %q with manufacturer and flags: %q", cliLabel, out)
			}
		}},
		{"json", []string{"--output", "json", "slot", "list", "--pkcs11-module", tok.ModulePath}, func(t *testing.T, out string) {
			var slots []struct {
				ID    uint `json:"slot_id"`
				Token *struct {
					Label       string `json:"label"`
					Serial      string `json:"serial"`
					Initialized bool   `json:"initialized"`
				} `json:"token"`
			}
			if err := json.Unmarshal([]byte(out), &slots); err != nil {
				t.Fatalf("not a JSON array of slots: %v: %q", err, out)
			}
			n := 0
			for _, s := range slots {
				if s.Token != nil && s.Token.Label == cliLabel {
					n++
					if !s.Token.Initialized || len(s.Token.Serial) != 16 {
						t.Errorf("token %+v", *s.Token)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d slots hold %q: %s", n, cliLabel, out)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			if r.code != ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			tc.check(t, r.stdout)
		})
	}
}

// TestCLITokenInfo proves that `token info` logs in with HSMKMS_PIN and
// describes the token and its capabilities as a table and as JSON.
func TestCLITokenInfo(t *testing.T) {
	tok := setup(t)
	t.Setenv("HSMKMS_PIN", tok.PIN)
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"table", append([]string{"token", "info"}, tokenArgs(tok)...), func(t *testing.T, out string) {
			fields := map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				k, v, _ := strings.Cut(l, " ")
				fields[k] = strings.TrimSpace(v)
			}
			for k, want := range map[string]string{"label": cliLabel, "module": tok.ModulePath, "manufacturer": "SoftHSM project", "aes-gcm": "yes", "aes-kw": "yes", "aes-cbc-hmac": "yes", "serve": "ok"} {
				if fields[k] != want {
					t.Errorf("%s = %q, want %q in:\n%s", k, fields[k], want, out)
				}
			}
		}},
		{"json", append([]string{"--output", "json", "token", "info"}, tokenArgs(tok)...), func(t *testing.T, out string) {
			var r struct {
				Module struct {
					Path     string `json:"path"`
					Cryptoki string `json:"cryptoki_version"`
				} `json:"module"`
				Token struct {
					Label string `json:"label"`
				} `json:"token"`
				Capabilities map[string]any `json:"capabilities"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("not JSON: %v: %q", err, out)
			}
			if r.Token.Label != cliLabel || r.Module.Path != tok.ModulePath || r.Module.Cryptoki == "" {
				t.Errorf("report %+v", r)
			}
			for _, c := range []string{"aes_gcm", "aes_key_wrap", "rng"} {
				if r.Capabilities[c] != true {
					t.Errorf("capabilities %v: %s is not true", r.Capabilities, c)
				}
			}
			// SoftHSM2 makes generic secrets of any length hsmkms asks.
			if r.Capabilities["generic_key_max"] != float64(hsm.MaxDataKey) {
				t.Errorf("capabilities %v: generic_key_max is not %d", r.Capabilities, hsm.MaxDataKey)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			if r.code != ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			tc.check(t, r.stdout)
		})
	}
}

// TestCLITokenMechanisms proves that `token mechanisms` lists the token's
// mechanisms with their flags, as JSON and as a table.
func TestCLITokenMechanisms(t *testing.T) {
	tok := setup(t)
	t.Setenv("HSMKMS_PIN", tok.PIN)
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"json", append([]string{"--output", "json", "token", "mechanisms"}, tokenArgs(tok)...), func(t *testing.T, out string) {
			var mechs []struct {
				Name  string   `json:"name"`
				Type  uint     `json:"type"`
				Flags []string `json:"flags"`
			}
			if err := json.Unmarshal([]byte(out), &mechs); err != nil {
				t.Fatalf("not JSON: %v: %q", err, out)
			}
			i := slices.IndexFunc(mechs, func(m struct {
				Name  string   `json:"name"`
				Type  uint     `json:"type"`
				Flags []string `json:"flags"`
			}) bool {
				return m.Name == "CKM_AES_GCM"
			})
			if i < 0 {
				t.Fatalf("no CKM_AES_GCM in %s", out)
			}
			if m := mechs[i]; m.Type != 0x1087 || !slices.Contains(m.Flags, "ENCRYPT") || !slices.Contains(m.Flags, "DECRYPT") {
				t.Errorf("CKM_AES_GCM = %+v", m)
			}
		}},
		{"table", append([]string{"token", "mechanisms"}, tokenArgs(tok)...), func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "MECHANISM") || !strings.Contains(out, "CKM_AES_KEY_WRAP ") || !strings.Contains(out, "0x00001087") {
				t.Errorf("table lacks the header or mechanisms:\n%s", out)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			if r.code != ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			tc.check(t, r.stdout)
		})
	}
}

// TestCLIExitCodes proves that failures map to the documented exit codes,
// with a message on stderr, and that no output (trace logs included) shows
// a refused PIN.
func TestCLIExitCodes(t *testing.T) {
	tok := setup(t)
	const wrongPIN = "w7r0ng-p1n-0815"
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		pin    string // HSMKMS_PIN; empty: unset
		args   []string
		code   int
		stderr string
	}{
		{"success", tok.PIN, append([]string{"token", "info"}, tokenArgs(tok)...), ExitOK, ""},
		{"PIN file", "", append([]string{"token", "info"}, tokenArgs(tok, "--pin-file", pinFile)...), ExitOK, ""},
		{"wrong PIN", wrongPIN, append([]string{"--log-level", "trace", "token", "info"}, tokenArgs(tok)...), ExitAuth, "login refused"},
		{"unknown label", tok.PIN, []string{"token", "info", "--pkcs11-module", tok.ModulePath, "--token-label", "no-such-token"}, ExitUnavailable, `"no-such-token"`},
		{"missing PIN", "", append([]string{"token", "mechanisms"}, tokenArgs(tok)...), ExitUsage, "no PIN"},
		{"output yaml, token info", tok.PIN, append([]string{"--output", "yaml", "token", "info"}, tokenArgs(tok)...), ExitUsage, "--output must be table, text or json"},
		{"output yaml, slot list", "", []string{"--output", "yaml", "slot", "list", "--pkcs11-module", tok.ModulePath}, ExitUsage, "--output must be table, text or json"},
		{"unknown global flag", "", []string{"--bogus", "slot", "list", "--pkcs11-module", tok.ModulePath}, ExitUsage, "bogus"},
		{"unknown command flag", "", []string{"slot", "list", "--pkcs11-module", tok.ModulePath, "--bogus"}, ExitUsage, "bogus"},
		{"unknown subcommand flag", tok.PIN, append([]string{"token", "info", "--bogus"}, tokenArgs(tok)...), ExitUsage, "bogus"},
		{"bad module", "", []string{"slot", "list", "--pkcs11-module", filepath.Join(t.TempDir(), "missing.so")}, ExitUnavailable, "cannot load PKCS#11 module"},
		{"unknown command", "", []string{"keys", "list"}, ExitUsage, `hsmkms: hsmkms has no command "keys"; run hsmkms --help`},
		{"unknown subcommand", "", []string{"key", "lsit"}, ExitUsage, `hsmkms: hsmkms key has no command "lsit"; run hsmkms key --help`},
		{"missing required flags", "", []string{"softhsm", "init"}, ExitUsage, "hsmkms: hsmkms softhsm init: missing --dir, --label; run hsmkms softhsm init --help"},
		{"missing module", "", []string{"slot", "list"}, ExitUsage, "hsmkms: hsmkms slot list: missing --pkcs11-module"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HSMKMS_PIN", tc.pin)
			if tc.pin == "" {
				os.Unsetenv("HSMKMS_PIN")
			}
			r := run(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, wrongPIN) {
				t.Errorf("output shows the PIN:\n%s\n%s", r.stdout, r.stderr)
			}
			if tc.code == ExitUsage && (r.stdout != "" || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0) {
				t.Errorf("a usage error prints more than one line:\n%s\n%s", r.stdout, r.stderr)
			}
		})
	}
}

// TestEveryCommandHasAnExample walks the command tree: every command
// without subcommands shows an example in its help.
func TestEveryCommandHasAnExample(t *testing.T) {
	app := New(io.Discard, io.Discard)
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			path := strings.TrimSpace(prefix + " " + c.Name)
			if len(c.Subcommands) == 0 {
				r := run(t, append(strings.Fields(path), "--help")...)
				if !strings.Contains(r.stdout, "Example:\n") {
					t.Errorf("hsmkms %s --help has no example", path)
				}
			}
			walk(path, c.Subcommands)
		}
	}
	walk("", app.Commands)
}
