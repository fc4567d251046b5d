package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// clearEnv unsets every HSMKMS_ variable for the test, so that the
// caller's environment gives no setting.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "HSMKMS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// writeConfig writes body to a file called name in a new directory.
func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigKeys proves every serve flag but --config is a key of its
// flag's kind, and so is --log-level.
func TestConfigKeys(t *testing.T) {
	keys := configKeys()
	for name, want := range map[string]settingKind{
		"listen": stringSetting, "tls-cert": stringSetting, "store": stringSetting, "pkcs11-module": stringSetting,
		"insecure-http": boolSetting, "dev": boolSetting, "allow-insecure-pin-file": boolSetting,
		"pool-size": intSetting, "xks-region": listSetting, "log-level": stringSetting,
	} {
		if got, ok := keys[name]; !ok || got != want {
			t.Errorf("key %q: %v (present %v), want %v", name, got, ok, want)
		}
	}
	if _, ok := keys["config"]; ok {
		t.Error("config is a key of the config file")
	}
	if n := len(serveFlags()) + 1; len(keys) != n {
		t.Errorf("%d keys for %d serve flags and --log-level", len(keys), n)
	}
}

// TestReadConfig reads TOML and YAML files: every kind of value, and each
// way a file can be wrong, named with its line and never quoting a value.
func TestReadConfig(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	keys := configKeys()
	tests := []struct {
		name, file, body string
		want             map[string]any
		err              string // the whole error, after the file's path
	}{
		{"toml every kind", "c.toml", `# serve's settings
listen = "0.0.0.0:8443"
insecure-http = true
pool-size = 8
xks-region = ["us-east-1", "eu-west-1"]
log-level = "debug"
`, map[string]any{"listen": "0.0.0.0:8443", "insecure-http": true, "pool-size": 8,
			"xks-region": []string{"us-east-1", "eu-west-1"}, "log-level": "debug"}, ""},
		{"toml integer forms and escapes", "c.toml", "pool-size = 0x1_0\nregion = \"a\\tb\"\ndev = false\nxks-region = []\n",
			map[string]any{"pool-size": 16, "region": "a\tb", "dev": false, "xks-region": []string{}}, ""},
		{"yaml every kind", "c.yaml", `# serve's settings
listen: 0.0.0.0:8443
insecure-http: true
pool-size: 8
xks-region: [us-east-1, eu-west-1]
log-level: debug
account-id: 000000000042
metrics-listen: off
`, map[string]any{"listen": "0.0.0.0:8443", "insecure-http": true, "pool-size": 8,
			"xks-region": []string{"us-east-1", "eu-west-1"}, "log-level": "debug", "account-id": "000000000042", "metrics-listen": "off"}, ""},
		{"yml block list", "c.yml", "xks-region:\n  - us-east-1\n", map[string]any{"xks-region": []string{"us-east-1"}}, ""},
		{"empty toml", "c.toml", "", map[string]any{}, ""},
		{"empty yaml", "c.yaml", "# nothing\n", map[string]any{}, ""},

		{"toml unknown key", "c.toml", "listen = \"x\"\n\nlistn = \"y\"\n", nil,
			`line 3: unknown key "listn" (serve has no --listn flag; did you mean "listen"?)`},
		{"yaml unknown key", "c.yaml", "listen: x\nbogus-setting: y\n", nil,
			`line 2: unknown key "bogus-setting" (serve has no --bogus-setting flag)`},
		{"toml dotted key", "c.toml", "tls.cert = \"x\"\n", nil, `line 1: unknown key "tls.cert" (serve has no --tls.cert flag; did you mean "tls-cert"?)`},
		{"toml pin", "c.toml", "pin = \"" + secret + "\"\n", nil,
			`line 1: unknown key "pin" (serve has no --pin flag; the PIN goes in the file that "pin-file" names, or in HSMKMS_PIN)`},
		{"yaml config", "c.yaml", "config: other.yaml\n", nil,
			`line 1: "config" names this file: it is given as --config or HSMKMS_SERVE_CONFIG, never in the file`},
		{"toml int as string", "c.toml", "listen = \"x\"\npool-size = \"8\"\n", nil, `line 2: "pool-size" must be an integer, not a string`},
		{"yaml int as string", "c.yaml", "pool-size: \"8\"\n", nil, `line 1: "pool-size" must be an integer, not a string`},
		{"toml string as int", "c.toml", "listen = 8443\n", nil, `line 1: "listen" must be a string, not an integer`},
		{"toml bool as string", "c.toml", "dev = \"yes\"\n", nil, `line 1: "dev" must be true or false, not a string`},
		{"yaml bool as string", "c.yaml", "dev: yes\n", nil, `line 1: "dev" must be true or false, not a string`},
		{"toml float as int", "c.toml", "pool-size = 4.5\n", nil, `line 1: "pool-size" must be an integer, not a floating-point number`},
		{"toml list as string", "c.toml", "xks-region = \"us-east-1\"\n", nil, `line 1: "xks-region" must be a list of strings, not a string`},
		{"toml list of ints", "c.toml", "xks-region = [\"a\", 1]\n", nil, `line 1: "xks-region" must be a list of strings, not a list holding an integer`},
		{"toml list item with a comma", "c.toml", "xks-region = [\"us-east-1,eu-west-1\"]\n", nil, `line 1: "xks-region": item "us-east-1,eu-west-1" holds a comma; give each value as an item of its own`},
		{"yaml string as list", "c.yaml", "listen: [a, b]\n", nil, `line 1: "listen" must be a string, not a list`},
		{"yaml null", "c.yaml", "\n\ntls-cert:\n", nil, `line 3: "tls-cert" must be a string, not empty (null)`},
		{"toml date", "c.toml", "region = 2024-01-01\n", nil, `line 1: "region" must be a string, not a date or time`},
		{"toml inline table", "c.toml", "region = {a = 1}\n", nil, `line 1: "region" must be a string, not a table`},
		{"toml huge int", "c.toml", "pool-size = 99999999999999999999\n", nil, `line 1: "pool-size" must be an integer, not an integer out of range`},
		{"toml duplicate", "c.toml", "region = \"a\"\nregion = \"b\"\n", nil, `line 2: "region" again (first on line 1)`},
		{"yaml duplicate", "c.yaml", "region: a\nlisten: x\nregion: b\n", nil, `line 3: "region" again (first on line 1)`},
		{"toml table", "c.toml", "listen = \"x\"\n[xks]\nregion = \"y\"\n", nil,
			`line 2: table [xks]: serve's settings are keys at the top of the file, outside any table`},
		{"yaml not a mapping", "c.yaml", "- listen\n", nil, `line 1: the file must be a mapping of flag names to values (listen: 0.0.0.0:8443)`},
		{"yaml two documents", "c.yaml", "listen: x\n---\nlisten: y\n", nil,
			`line 2: a second YAML document: the file is one mapping of flag names to values`},
		{"bad log level", "c.toml", "log-level = \"verbose\"\n", nil, `line 1: "log-level" must be trace, debug, info, warn or error`},
		{"toml syntax", "c.toml", "listen = \"x\"\nregion = \n", nil, "line 2: not TOML: "},
		{"yaml syntax", "c.yaml", "listen: x\n  region: y\n", nil, "line 2: not YAML: "},
		{"yaml nested aliases", "c.yaml", laughs(9), nil, `line 1: unknown key "a0" (serve has no --a0 flag)`},
		{"unknown format", "c.json", `{"listen": "x"}`, nil, "unknown format: name the file .toml (TOML), .yaml or .yml (YAML)"},

		// A secret-bearing key with a bad value: the error names the key
		// and the line, never the value.
		{"secret as list", "c.toml", "store = [\"postgres://u:" + secret + "@db/kms\"]\n", nil, `line 1: "store" must be a string, not a list`},
		{"secret unquoted", "c.toml", "store = postgres://u:" + secret + "@db/kms\n", nil, "line 1: not TOML: "},
		{"secret yaml table", "c.yaml", "store:\n  url: postgres://u:" + secret + "@db\n", nil, `line 1: "store" must be a string, not a table`},
		{"secret yaml bad syntax", "c.yaml", "store: \"postgres://u:" + secret + "@db\n", nil, "line 2: not YAML: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.file, tt.body)
			f, err := readConfig(path, keys)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("no error; values %v", f.values)
				}
				if msg := err.Error(); !strings.HasPrefix(msg, "config "+path+" "+tt.err) && !strings.HasPrefix(msg, "config "+path+": "+tt.err) {
					t.Errorf("error %q, want %q after the path", msg, tt.err)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(f.values) != len(tt.want) {
				t.Errorf("values %v, want %v", f.values, tt.want)
			}
			for k, want := range tt.want {
				if got := f.values[k]; !sameSetting(got, want) {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
		})
	}
}

// laughs is a YAML file of levels lists, each of ten aliases of the one
// before: a parser that follows them all takes 10^levels steps.
func laughs(levels int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	fmt.Fprintf(&b, "xks-region: *a%d\n", levels-1)
	return b.String()
}

// loaded runs `hsmkms args…` with serve's action replaced by loadSettings
// and returns the settings it loaded.
func loaded(t *testing.T, args ...string) (*serveSettings, result) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := New(&stdout, &stderr)
	var got *serveSettings
	for _, c := range app.Commands {
		if c.Name == "serve" {
			c.Action = func(c *cli.Context) error {
				s, err := loadSettings(c)
				got = s
				return err
			}
		}
	}
	code := ExitOK
	if err := app.Run(append([]string{"hsmkms"}, args...)); err != nil {
		code = exitCode(err, &stderr)
	}
	return got, result{stdout.String(), stderr.String(), code}
}

// TestConfigPrecedence proves a flag wins over a variable, which wins over
// the file, which wins over the default, for every kind of setting.
func TestConfigPrecedence(t *testing.T) {
	toml := writeConfig(t, "hsmkms.toml", `region = "file-region"
insecure-http = true
pool-size = 7
xks-region = ["file-1", "file-2"]
log-level = "error"
`)
	yaml := writeConfig(t, "hsmkms.yaml", "region: file-region\ninsecure-http: true\npool-size: 7\nxks-region: [file-1, file-2]\nlog-level: error\n")
	tests := []struct {
		name string
		env  []string
		args []string
		want map[string]any
	}{
		{"default", nil, []string{"serve"},
			map[string]any{"region": "us-east-1", "insecure-http": false, "pool-size": 4, "xks-region": []string(nil), "log-level": "warn"}},
		{"file", nil, []string{"serve", "--config", toml},
			map[string]any{"region": "file-region", "insecure-http": true, "pool-size": 7, "xks-region": []string{"file-1", "file-2"}, "log-level": "error"}},
		{"yaml file", nil, []string{"serve", "--config", yaml},
			map[string]any{"region": "file-region", "insecure-http": true, "pool-size": 7, "xks-region": []string{"file-1", "file-2"}, "log-level": "error"}},
		{"file from the variable", []string{"HSMKMS_SERVE_CONFIG=" + toml}, []string{"serve"},
			map[string]any{"region": "file-region", "pool-size": 7}},
		{"variable over file",
			[]string{"HSMKMS_REGION=env-region", "HSMKMS_INSECURE_HTTP=false", "HSMKMS_POOL_SIZE=6", "HSMKMS_XKS_REGION=env-1", "HSMKMS_LOG_LEVEL=info"},
			[]string{"serve", "--config", toml},
			map[string]any{"region": "env-region", "insecure-http": false, "pool-size": 6, "xks-region": []string{"env-1"}, "log-level": "info"}},
		{"flag over variable",
			[]string{"HSMKMS_REGION=env-region", "HSMKMS_POOL_SIZE=6", "HSMKMS_XKS_REGION=env-1", "HSMKMS_LOG_LEVEL=info"},
			[]string{"serve", "--config", toml, "--region", "flag-region", "--insecure-http=false", "--pool-size", "5", "--xks-region", "flag-1", "--log-level", "debug"},
			map[string]any{"region": "flag-region", "insecure-http": false, "pool-size": 5, "xks-region": []string{"flag-1"}, "log-level": "debug"}},
		{"global flag before the command", nil, []string{"--log-level", "trace", "serve", "--config", toml},
			map[string]any{"log-level": "trace", "region": "file-region"}},
		{"flag over file", nil, []string{"serve", "--config", toml, "--pool-size", "3"},
			map[string]any{"pool-size": 3, "region": "file-region"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for _, kv := range tt.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			s, r := loaded(t, tt.args...)
			if r.code != ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			for k, want := range tt.want {
				if got := s.current[k]; !sameSetting(got, want) {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
		})
	}
}

// TestConfigStartErrors proves serve refuses a config file that is not
// valid with one line and exit 2, a missing one with exit 4, and never
// shows a secret the file holds.
func TestConfigStartErrors(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	tests := []struct {
		name, file, body string
		code             int
		stderr           string
	}{
		{"unknown key", "hsmkms.toml", "listen = \"127.0.0.1:0\"\n\n\n\n\n\nlistn = \"x\"\n", ExitUsage,
			`hsmkms: config %s line 7: unknown key "listn" (serve has no --listn flag; did you mean "listen"?)`},
		{"wrong type", "hsmkms.yaml", "pool-size: many\n", ExitUsage, `hsmkms: config %s line 1: "pool-size" must be an integer, not a string`},
		{"not a store URL", "hsmkms.toml", "store = \"mysql://kms:" + secret + "@db/kms\"\n", ExitUsage, "hsmkms: --store must be a URL"},
		{"store of the wrong type", "hsmkms.toml", "store = [\"postgres://kms:" + secret + "@db/kms\"]\n", ExitUsage, `"store" must be a string, not a list`},
		{"unknown format", "hsmkms.ini", "listen=x\n", ExitUsage, "hsmkms: config %s: unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			path := writeConfig(t, tt.file, tt.body)
			r := run(t, "serve", "--config", path)
			want := tt.stderr
			if strings.Contains(want, "%s") {
				want = strings.Replace(want, "%s", path, 1)
			}
			if r.code != tt.code || !strings.Contains(r.stderr, want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, tt.code, want)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stdout != "" {
				t.Errorf("more than one line:\n%s\n%s", r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("the output shows the secret:\n%s", r.stderr)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		clearEnv(t)
		path := filepath.Join(t.TempDir(), "none.toml")
		r := run(t, "serve", "--config", path)
		if r.code != ExitNotFound || !strings.Contains(r.stderr, "config "+path+": no such file or directory") {
			t.Errorf("exit %d, stderr %q; want exit 4 naming the file", r.code, r.stderr)
		}
	})
}

// TestConfigReread proves what a re-read file changes: values that differ
// from those in effect, and keys deleted from the file (back to their
// defaults), never a setting a flag or a variable gives.
func TestConfigReread(t *testing.T) {
	clearEnv(t)
	path := writeConfig(t, "hsmkms.toml", "region = \"a\"\npool-size = 8\nlog-level = \"info\"\nlisten = \"127.0.0.1:1\"\nxks-region = [\"x\"]\n")
	t.Setenv("HSMKMS_LISTEN", "127.0.0.1:2")
	s, r := loaded(t, "serve", "--config", path, "--account-id", "111111111111")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if s.current["listen"] != "127.0.0.1:2" {
		t.Fatalf("listen = %v, want the variable's", s.current["listen"])
	}
	tests := []struct {
		name, body string
		want       map[string]any
	}{
		{"unchanged", "region = \"a\"\npool-size = 8\nlog-level = \"info\"\nlisten = \"127.0.0.1:1\"\nxks-region = [\"x\"]\n", map[string]any{}},
		{"changed and deleted",
			"region = \"b\"\nlog-level = \"debug\"\nlisten = \"127.0.0.1:3\"\naccount-id = \"222222222222\"\nxks-region = [\"x\"]\n",
			map[string]any{"region": "b", "log-level": "debug", "pool-size": 4}},
		{"list emptied", "region = \"a\"\npool-size = 8\nlog-level = \"info\"\nxks-region = []\n", map[string]any{"xks-region": []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			changes, err := s.reread()
			if err != nil {
				t.Fatal(err)
			}
			if len(changes) != len(tt.want) {
				t.Errorf("changes %v, want %v", changes, tt.want)
			}
			for k, want := range tt.want {
				if got, ok := changes[k]; !ok || !sameSetting(got, want) {
					t.Errorf("change of %s = %#v, want %#v", k, got, want)
				}
			}
		})
	}
	if err := os.WriteFile(path, []byte("listn = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.reread(); err == nil || !strings.Contains(err.Error(), `line 1: unknown key "listn"`) {
		t.Errorf("reread of a bad file: %v", err)
	}
}

// TestEditDistance checks the typo measure behind "did you mean".
func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"listen", "listen", 0}, {"listn", "listen", 1}, {"tls-crt", "tls-cert", 1}, {"abc", "", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	if got := nearestKey("xks-regoin", configKeys()); got != "xks-region" {
		t.Errorf("nearestKey = %q", got)
	}
	if got := nearestKey("completely-different", configKeys()); got != "" {
		t.Errorf("nearestKey of no typo = %q", got)
	}
}

// TestREADMEConfigExample proves the README's example config file is
// valid, and complete: every key is there, its commented-out ones valid
// too once uncommented.
func TestREADMEConfigExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "<!-- config-example:begin -->\n```toml\n")
	if !ok {
		t.Fatal("README.md has no config-example block")
	}
	block, _, ok = strings.Cut(block, "```\n<!-- config-example:end -->")
	if !ok {
		t.Fatal("the config-example block does not end")
	}
	keys := configKeys()
	if _, err := readConfig(writeConfig(t, "example.toml", block), keys); err != nil {
		t.Fatalf("the example: %v", err)
	}
	var all strings.Builder
	for line := range strings.Lines(block) {
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			if k, _, ok := strings.Cut(rest, " = "); ok && !strings.Contains(k, " ") {
				line = rest
			}
		}
		all.WriteString(line)
	}
	f, err := readConfig(writeConfig(t, "all.toml", all.String()), keys)
	if err != nil {
		t.Fatalf("the example with every key uncommented: %v", err)
	}
	for k := range keys {
		if _, ok := f.values[k]; !ok {
			t.Errorf("the example lacks %q", k)
		}
	}
}

// FuzzConfigEntries proves no file makes the config parsers panic (a
// SIGHUP parses the file inside the running server) and every failure is
// a configError, with a line no further than the file's last.
func FuzzConfigEntries(f *testing.F) {
	for _, seed := range []string{
		"listen = \"x\"\npool-size = 0x10\nxks-region = [\"a\", \"b\"]\n[t]\nk = 1\n",
		"a.b.c = {x = [1, 2.5, 1979-05-27T07:32:00Z]}\n",
		"listen: x\npool-size: 8\nxks-region: [a, b]\n",
		"a: &x [1, {b: c}]\nd: *x\n<<: {e: f}\n---\n- 1\n",
		"store = postgres://u:p@h\n", "\"\"\"\n", "[[a]]\n", "? [a]\n: b\n",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	keys := configKeys()
	f.Fuzz(func(t *testing.T, data []byte, isYAML bool) {
		parse := tomlEntries
		if isYAML {
			parse = yamlEntries
		}
		entries, err := parse("f", data)
		if err == nil {
			_, err = checkEntries("f", entries, keys)
		}
		if err == nil {
			return
		}
		ce, ok := err.(*configError)
		if !ok {
			t.Fatalf("%T %v, not a configError", err, err)
		}
		// YAML also breaks lines at a lone \r.
		if lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) + 1; ce.line < 0 || ce.line > lines+1 {
			t.Fatalf("line %d in a file of %d lines: %v", ce.line, lines, err)
		}
	})
}

// TestAcceptedHostFlag proves serve takes host names, addresses and
// host:port for --accepted-host and refuses, with exit 2 before it opens
// anything, a value no Host header carries (a URL, a path, a bad port).
func TestAcceptedHostFlag(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"kms.example.com", true},
		{"kms.example.com:8443", true},
		{"192.0.2.1", true},
		{"[2001:db8::1]:8443", true},
		{"2001:db8::1", true},
		{"https://kms.example.com", false},
		{"kms.example.com/", false},
		{"kms.example.com:0", false},
		{"kms.example.com:70000", false},
		{"kms.example.com:https", false},
		{"user@kms.example.com", false},
		{"", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			clearEnv(t)
			hosts, err := acceptedHostsOf(t, tc.host)
			if tc.ok != (err == nil) {
				t.Fatalf("--accepted-host %q: %v, want accepted %v", tc.host, err, tc.ok)
			}
			if err != nil {
				want := fmt.Sprintf("hsmkms: --accepted-host %q is not a host name or host:port", tc.host)
				if !strings.HasPrefix(err.Error(), want) || exitCode(err, io.Discard) != ExitUsage {
					t.Fatalf("error %q (exit %d), want exit %d starting %q", err, exitCode(err, io.Discard), ExitUsage, want)
				}
			} else if !slices.Equal(hosts, []string{tc.host}) {
				t.Fatalf("hosts %q, want [%q]", hosts, tc.host)
			}
		})
	}
}

// acceptedHostsOf runs acceptedHosts on serve's flags given host once.
func acceptedHostsOf(t *testing.T, host string) (hosts []string, err error) {
	t.Helper()
	app := New(io.Discard, io.Discard)
	for _, cmd := range app.Commands {
		if cmd.Name == "serve" {
			cmd.Action = func(c *cli.Context) error {
				hosts, err = acceptedHosts(c)
				return nil
			}
		}
	}
	if runErr := app.Run([]string{"hsmkms", "serve", "--accepted-host", host}); runErr != nil {
		t.Fatalf("running serve's flags: %v", runErr)
	}
	return hosts, err
}
