package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// aliasEntry and principalEntry are the parts of the list outputs the
// tests read.
type aliasEntry struct {
	AliasName   string `json:"AliasName"`
	TargetKeyId string `json:"TargetKeyId"`
}

type principalEntry struct {
	AccessKeyId string `json:"AccessKeyId"`
	Name        string `json:"Name"`
}

func aliasNames(s *sandbox, env []string) []string {
	s.t.Helper()
	var names []string
	for _, a := range decode[[]aliasEntry](s.t, s.run(env, "--output", "json", "alias", "list")) {
		names = append(names, a.AliasName)
	}
	return names
}

func principalIDs(s *sandbox, env []string) []string {
	s.t.Helper()
	var ids []string
	for _, p := range decode[[]principalEntry](s.t, s.run(env, "--output", "json", "principal", "list")) {
		ids = append(ids, p.AccessKeyId)
	}
	return ids
}

// TestDestructiveCommandsRefuseWithoutYes proves that key disable, key
// schedule-deletion, alias delete and principal delete, with standard
// input not a terminal (even one that says "yes"), refuse without --yes,
// exit 2 naming --yes and change nothing, and that with --yes they work.
func TestDestructiveCommandsRefuseWithoutYes(t *testing.T) {
	s := newSandbox(t)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	env := srv.clientEnv()
	toDisable, toDelete := createKey(s, env, "to disable"), createKey(s, env, "to delete")
	const alias = "alias/e2e-destructive"
	s.must(env, "alias", "create", alias, toDisable)
	p := decode[principalEntry](t, s.run(env, "--output", "json", "principal", "create", "e2e-app", "--allow", "kms:Encrypt="+alias))
	if p.AccessKeyId == "" {
		t.Fatalf("principal create printed no access key ID")
	}

	cmds := [][]string{
		{"key", "disable", toDisable},
		{"key", "schedule-deletion", toDelete},
		{"alias", "delete", alias},
		{"principal", "delete", p.AccessKeyId},
	}
	for _, args := range cmds {
		r := s.exec(runOpts{env: env, stdin: "yes\n"}, hsmkmsBin, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "--yes") {
			t.Errorf("want exit 2 and a message naming --yes: %v", r)
		}
	}
	if k := describeKey(s, env, toDisable); k.KeyState != "Enabled" {
		t.Errorf("key disable without --yes changed the key: %+v", k)
	}
	if k := describeKey(s, env, toDelete); k.KeyState != "Enabled" || k.DeletionDate != nil {
		t.Errorf("key schedule-deletion without --yes changed the key: %+v", k)
	}
	if names := aliasNames(s, env); !slices.Contains(names, alias) {
		t.Errorf("alias delete without --yes deleted the alias: %q", names)
	}
	if ids := principalIDs(s, env); !slices.Contains(ids, p.AccessKeyId) {
		t.Errorf("principal delete without --yes deleted the principal: %q", ids)
	}

	// --yes before and after the argument.
	s.must(env, "key", "disable", "--yes", toDisable)
	s.must(env, "key", "schedule-deletion", toDelete, "--yes")
	s.must(env, "alias", "delete", "--yes", alias)
	s.must(env, "principal", "delete", p.AccessKeyId, "--yes")
	if k := describeKey(s, env, toDisable); k.KeyState != "Disabled" {
		t.Errorf("key disable --yes: %+v", k)
	}
	if k := describeKey(s, env, toDelete); k.KeyState != "PendingDeletion" || k.DeletionDate == nil {
		t.Errorf("key schedule-deletion --yes: %+v", k)
	}
	if names := aliasNames(s, env); slices.Contains(names, alias) {
		t.Errorf("alias delete --yes left the alias: %q", names)
	}
	if ids := principalIDs(s, env); slices.Contains(ids, p.AccessKeyId) {
		t.Errorf("principal delete --yes left the principal: %q", ids)
	}
}

// jsonArray checks that r printed a JSON array (not null, not an object)
// and returns its elements.
func jsonArray(t testing.TB, r result) []map[string]any {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("want exit 0: %v", r)
	}
	if !strings.HasPrefix(strings.TrimSpace(r.stdout), "[") {
		t.Fatalf("not a JSON array: %v", r)
	}
	var v []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("not a JSON array of objects: %v\n%v", err, r)
	}
	return v
}

// TestListsAreJSON proves that with --output json every list command
// prints a JSON array: [] when there is nothing to list, the items
// otherwise.
func TestListsAreJSON(t *testing.T) {
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	srv := s.startDev(devDir)
	env := srv.clientEnv()
	list := func(args ...string) []map[string]any {
		t.Helper()
		return jsonArray(t, s.run(env, append([]string{"--output", "json"}, args...)...))
	}
	empty := func(args ...string) {
		t.Helper()
		r := s.run(env, append([]string{"--output", "json"}, args...)...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
			t.Errorf("want [] from a fresh server: %v", r)
		}
	}
	empty("key", "list")
	empty("alias", "list")
	key := createKey(s, env, "lists")
	empty("alias", "list", "--key", key)
	empty("key", "rotations", key)

	s.must(env, "alias", "create", "alias/e2e-lists", key)
	s.must(env, "key", "rotate", key)
	if l := list("key", "list"); len(l) != 1 || l[0]["KeyId"] != key {
		t.Errorf("key list: %v", l)
	}
	for _, args := range [][]string{{"alias", "list"}, {"alias", "list", "--key", key}} {
		if l := list(args...); len(l) != 1 || l[0]["AliasName"] != "alias/e2e-lists" || l[0]["TargetKeyId"] != key {
			t.Errorf("%q: %v", args, l)
		}
	}
	if l := list("principal", "list"); len(l) != 1 || l[0]["Name"] != "root" {
		t.Errorf("principal list: %v", l)
	}
	if l := list("key", "rotations", key); len(l) != 1 || l[0]["KeyId"] != key {
		t.Errorf("key rotations: %v", l)
	}

	srv.Stop()
	tokEnv := devTokenEnv(devDir)
	module := softhsmModule(t)
	found := false
	for _, slot := range jsonArray(t, s.run(tokEnv, "--output", "json", "slot", "list", "--pkcs11-module", module)) {
		if tok, ok := slot["token"].(map[string]any); ok && tok["label"] == devLabel {
			found = true
		}
	}
	if !found {
		t.Errorf("slot list does not show the token %q", devLabel)
	}
	mechs := jsonArray(t, s.run(tokEnv, "--output", "json", "token", "mechanisms", "--pkcs11-module", module, "--token-label", devLabel))
	if !slices.ContainsFunc(mechs, func(m map[string]any) bool { return m["name"] == "CKM_AES_GCM" }) {
		t.Errorf("token mechanisms lacks CKM_AES_GCM: %v", mechs)
	}
}

// TestExitCodes proves the exit codes the README documents: 2 usage, 3
// credentials or permission refused, 4 not found, 5 HSM or server
// unavailable (an unknown token label is an unavailable HSM), and that
// every failure says itself in one line.
func TestExitCodes(t *testing.T) {
	s := newSandbox(t)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	env := srv.clientEnv()
	key := createKey(s, env, "exit codes")
	limited := decode[struct{ AccessKeyId, SecretAccessKey string }](t,
		s.run(env, "--output", "json", "principal", "create", "limited", "--allow", "kms:Encrypt="+key))

	tokDir := t.TempDir()
	exports := parseExports(s.must([]string{"HSMKMS_PIN=" + devPIN, "HSMKMS_SO_PIN=87654321"},
		"softhsm", "init", "--dir", tokDir, "--label", "e2e-exit").stdout)
	tok := []string{"SOFTHSM2_CONF=" + exports["SOFTHSM2_CONF"]}
	tokArgs := func(label string) []string {
		return []string{"token", "info", "--pkcs11-module", exports["HSMKMS_PKCS11_MODULE"], "--token-label", label}
	}

	files := t.TempDir()
	missing, outFile, plainFile := filepath.Join(files, "missing"), filepath.Join(files, "out"), filepath.Join(files, "plain")
	if err := os.WriteFile(plainFile, []byte("not a ciphertext"), 0o600); err != nil {
		t.Fatal(err)
	}
	disabled := createKey(s, env, "disabled")
	s.must(env, "key", "disable", "--yes", disabled)

	with := func(base []string, extra ...string) []string { return append(slices.Clone(base), extra...) }
	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		code   int
		stderr string
	}{
		{"ok", env, []string{"key", "describe", key}, 0, ""},
		{"bad flag", env, []string{"key", "list", "--no-such-flag"}, 2, "no-such-flag"},
		{"bad global flag", env, []string{"--no-such-flag", "key", "list"}, 2, "no-such-flag"},
		{"missing argument", env, []string{"key", "describe"}, 2, "KEY"},
		{"extra argument", env, []string{"key", "list", "extra"}, 2, "no arguments"},
		{"output yaml", env, []string{"--output", "yaml", "key", "list"}, 2, "yaml"},
		{"no endpoint", with(env, "HSMKMS_ENDPOINT="), []string{"key", "list"}, 2, "HSMKMS_ENDPOINT"},
		{"wrong secret", with(env, "AWS_SECRET_ACCESS_KEY=not-the-secret"), []string{"key", "list"}, 3, "InvalidSignatureException"},
		{"unknown access key", with(env, "AWS_ACCESS_KEY_ID=AKIANOSUCHPRINCIPAL0"), []string{"key", "list"}, 3, "UnrecognizedClientException"},
		{"permission refused", with(env, "AWS_ACCESS_KEY_ID="+limited.AccessKeyId, "AWS_SECRET_ACCESS_KEY="+limited.SecretAccessKey),
			[]string{"key", "list"}, 3, "AccessDeniedException"},
		{"unknown key", env, []string{"key", "describe", "0b6e0c4a-5d7e-4d4e-9a57-1c2a3b4c5d6e"}, 4, "NotFoundException"},
		{"unknown alias", env, []string{"key", "describe", "alias/no-such-alias"}, 4, "NotFoundException"},
		{"nothing listening", with(env, "HSMKMS_ENDPOINT=http://127.0.0.1:"+freePort(t)), []string{"key", "list"}, 5, "cannot reach the server"},
		{"token ok", with(tok, "HSMKMS_PIN="+devPIN), tokArgs("e2e-exit"), 0, ""},
		{"no PIN", tok, tokArgs("e2e-exit"), 2, "HSMKMS_PIN"},
		{"wrong PIN", with(tok, "HSMKMS_PIN=4321"), tokArgs("e2e-exit"), 3, "CKR_PIN_INCORRECT"},
		{"unknown token label", with(tok, "HSMKMS_PIN="+devPIN), tokArgs("no-such-token"), 5, `"no-such-token"`},
		{"store unreachable", with(tok, "HSMKMS_PIN="+devPIN),
			[]string{"doctor", "--pkcs11-module", exports["HSMKMS_PKCS11_MODULE"], "--token-label", "e2e-exit",
				"--store", "postgres://u:pw-not-shown@127.0.0.1:" + freePort(t) + "/db"}, 5, "store: unavailable"},
		{"store not a URL", env, []string{"serve", "--store", "mysql://u:pw-not-shown@h/db"}, 2, "--store must be"},
		{"unknown command", env, []string{"keys", "list"}, 2, `no command "keys"`},
		{"no such module", with(tok, "HSMKMS_PIN="+devPIN), []string{"token", "info", "--pkcs11-module", "/nonexistent/libpkcs11.so", "--token-label", "x"}, 5, "/nonexistent/libpkcs11.so"},
		{"no input file", env, []string{"encrypt", "--key", key, "--in", missing, "--out", outFile}, 4, missing},
		{"out exists", env, []string{"encrypt", "--key", key, "--in", plainFile, "--out", plainFile}, 2, "--force"},
		{"not an hsmkms file", env, []string{"decrypt", "--in", plainFile, "--out", outFile}, 1, plainFile},
		{"bad ciphertext", env, []string{"decrypt-value", "--in", plainFile}, 1, "InvalidCiphertextException"},
		{"wrong key usage", env, []string{"sign", "--key-id", key, "--algorithm", "ECDSA_SHA_256", "--in", plainFile}, 1, "InvalidKeyUsageException"},
		{"disabled key", env, []string{"encrypt-value", "--key-id", disabled, "--in", plainFile}, 1, "DisabledException"},
	} {
		r := s.run(tc.env, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%s: want exit %d and %q on stderr: %v", tc.name, tc.code, tc.stderr, r)
		}
		// The one-line rule: a failure says itself in one line, ending in a
		// newline (more only with --log-level debug).
		if tc.code != 0 && (strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n")) {
			t.Errorf("%s: want one line on stderr: %q", tc.name, r.stderr)
		}
		if strings.Contains(r.stdout+r.stderr, "pw-not-shown") {
			t.Errorf("%s: a password in the store URL was shown: %v", tc.name, r)
		}
	}
}

// TestBenchLeavesNoKey proves that hsmkms bench, when it creates a key for
// its run, schedules that key's deletion at the end (issue 18), and that
// with --key-id it creates none.
func TestBenchLeavesNoKey(t *testing.T) {
	s := newSandbox(t)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	env := srv.clientEnv()
	mine := createKey(s, env, "bench's own")
	s.must(env, "bench", "--op", "GenerateDataKey", "--concurrency", "2", "--duration", "300ms", "--key-id", mine)
	s.must(env, "bench", "--op", "Decrypt", "--concurrency", "2", "--duration", "300ms")
	keys := decode[[]keyView](t, s.run(env, "--output", "json", "key", "list"))
	if len(keys) != 2 {
		t.Fatalf("want the given key and one the second run made, got %d keys", len(keys))
	}
	for _, k := range keys {
		d := describeKey(s, env, k.KeyId)
		switch {
		case k.KeyId == mine && d.KeyState != "Enabled":
			t.Errorf("the key given with --key-id is %s", d.KeyState)
		case k.KeyId != mine && (d.KeyState != "PendingDeletion" || d.DeletionDate == nil):
			t.Errorf("the run's own key %s is %s, want PendingDeletion", k.KeyId, d.KeyState)
		}
	}
}

// TestBenchEndpoints proves bench takes several comma-separated endpoints
// (replicas without a balancer, as tests/bench-replicas.sh gives them),
// each as --endpoint takes one (here one without its scheme, after a
// space), and refuses the list when one of them is not a server URL or is
// empty.
func TestBenchEndpoints(t *testing.T) {
	s := newSandbox(t)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	env := srv.clientEnv()
	key := createKey(s, env, "bench endpoints")
	endpoint := srv.exports["HSMKMS_ENDPOINT"]
	both := endpoint + ", " + strings.TrimPrefix(endpoint, "http://")
	res := decode[struct{ Requests, Errors int }](t, s.run(env, "--output", "json", "bench", "--endpoint", both,
		"--op", "GenerateDataKey", "--concurrency", "2", "--duration", "300ms", "--key-id", key))
	if res.Requests == 0 || res.Errors != 0 {
		t.Errorf("bench over two endpoints: %d requests, %d errors", res.Requests, res.Errors)
	}
	r := s.run(env, "bench", "--endpoint", endpoint+",ftp://127.0.0.1:1", "--key-id", key, "--duration", "300ms")
	if r.code != 2 || !strings.Contains(r.stderr, `--endpoint "ftp://127.0.0.1:1" is not a server URL`) {
		t.Errorf("an endpoint that is not a server URL: want exit 2 naming it, got %v", r)
	}
	r = s.run(env, "bench", "--endpoint", endpoint+",", "--key-id", key, "--duration", "300ms")
	if r.code != 2 || !strings.Contains(r.stderr, `has an empty entry`) {
		t.Errorf("an endpoint list with an empty entry: want exit 2 saying so, got %v", r)
	}
}

// TestCredentialsFileWins proves an explicit --credentials-file wins over
// the caller's own AWS settings (issue 18): with AWS_PROFILE naming a
// profile that exists nowhere and other keys in AWS_ACCESS_KEY_ID, the
// file's [default] (or --profile's) section is used; a profile missing
// from the file is an authentication error naming it.
func TestCredentialsFileWins(t *testing.T) {
	s := newSandbox(t)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	env := srv.clientEnv()
	root := fmt.Sprintf("aws_access_key_id = %s\naws_secret_access_key = %s\n", srv.exports["AWS_ACCESS_KEY_ID"], srv.exports["AWS_SECRET_ACCESS_KEY"])
	f := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(f, []byte("[default]\n"+root+"[ops]\n"+root), 0o600); err != nil {
		t.Fatal(err)
	}
	theirs := append(slices.Clone(env), "AWS_PROFILE=prod",
		"AWS_ACCESS_KEY_ID=AKIAOTHERPERSONSKEY0", "AWS_SECRET_ACCESS_KEY=not-the-servers-secret-at-all-000000000")
	if r := s.run(theirs, "key", "list"); r.code == 0 {
		t.Fatalf("the caller's own settings reached the server as valid credentials: %v", r)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"default section", nil, 0, ""},
		{"named profile", []string{"--profile", "ops"}, 0, ""},
		{"missing profile", []string{"--profile", "nope"}, 3, "profile nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(theirs, append([]string{"key", "list", "--credentials-file", f}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("want exit %d and %q: %v", tc.code, tc.want, r)
			}
		})
	}
}

// TestCLIMissingCredentials: without credentials, or with a credentials
// file that is not there, a command that needs the server exits 3 at once
// and says what is missing; it never asks EC2 instance metadata, nor
// blames the server.
func TestCLIMissingCredentials(t *testing.T) {
	s := newSandbox(t)
	dir := t.TempDir()
	endpoint := "http://127.0.0.1:" + freePort(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no credentials", []string{"key", "list", "--endpoint", endpoint},
			"hsmkms: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --credentials-file or --profile"},
		{"a credentials file that is not there", []string{"key", "list", "--endpoint", endpoint, "--credentials-file", ".hsmkms/credentials"},
			"hsmkms: --credentials-file .hsmkms/credentials: no such file or directory (a relative path is read from the current directory, " + dir + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.exec(runOpts{dir: dir}, hsmkmsBin, tc.args...)
			if r.code != 3 || strings.TrimSpace(r.stderr) != tc.want {
				t.Fatalf("%v; want exit 3 and %q", r, tc.want)
			}
			if strings.Contains(r.stderr, "IMDS") || strings.Contains(r.stderr, "169.254") {
				t.Fatalf("the CLI asked EC2 instance metadata: %v", r)
			}
		})
	}
}

// TestDoctorNeverCreatesAStore: doctor pointed at a directory that holds
// no store, or at none, says so (exit 4) and creates nothing.
func TestDoctorNeverCreatesAStore(t *testing.T) {
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	srv := s.startDev(devDir)
	srv.Stop()
	missing := filepath.Join(t.TempDir(), "missing")
	for _, dir := range []string{missing, t.TempDir()} {
		r := s.run(devTokenEnv(devDir), "doctor", "--pkcs11-module", softhsmModule(t), "--token-label", devLabel, "--data-dir", dir)
		if r.code != 4 || !strings.Contains(r.stderr, "no store at "+filepath.Join(dir, "hsmkms.db")) {
			t.Fatalf("doctor --data-dir %s: %v", dir, r)
		}
		if _, err := os.Stat(filepath.Join(dir, "hsmkms.db")); !os.IsNotExist(err) {
			t.Fatalf("doctor made %s/hsmkms.db (%v)", dir, err)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("doctor made the missing directory (%v)", err)
	}
}

// TestDoctorDevDir: serve --dev says where its token, module, PIN file and
// SoftHSM2 configuration are, and doctor --dev-dir checks that token and
// store with no other flag or variable.
func TestDoctorDevDir(t *testing.T) {
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	srv := s.startDev(devDir)
	createKey(s, srv.clientEnv(), "dev-dir")
	srv.Stop()
	notes := srv.stderr.String()
	for _, want := range []string{`dev token "hsmkms-dev"`, "PIN file " + filepath.Join(devDir, "pin"),
		"SOFTHSM2_CONF=" + filepath.Join(devDir, "softhsm", "softhsm2.conf"), "hsmkms doctor --dev-dir " + devDir} {
		if !strings.Contains(notes, want) {
			t.Errorf("serve --dev does not say %q:\n%s", want, notes)
		}
	}
	rep := decode[doctorReport](t, s.run(nil, "--output", "json", "doctor", "--dev-dir", devDir))
	if !rep.OK || len(rep.Inconsistencies) != 0 {
		t.Fatalf("doctor --dev-dir: %+v", rep)
	}
	if r := s.run(nil, "doctor", "--dev-dir", filepath.Join(t.TempDir(), "nothing")); r.code != 4 || !strings.Contains(r.stderr, "no dev token in") {
		t.Fatalf("doctor --dev-dir of no dev dir: %v", r)
	}
}

// TestVersion: --version and version name the build and the Go version,
// and version --pkcs11-module describes the module.
func TestVersion(t *testing.T) {
	s := newSandbox(t)
	r := s.must(nil, "--version")
	if !strings.HasPrefix(r.stdout, "hsmkms version ") || !strings.Contains(r.stdout, runtime.Version()) {
		t.Fatalf("--version: %v", r)
	}
	v := decode[struct {
		Version, Go string
		Module      struct {
			CryptokiVersion    string `json:"cryptoki_version"`
			LibraryDescription string `json:"library_description"`
		} `json:"pkcs11_module"`
	}](t, s.run(nil, "--output", "json", "version", "--pkcs11-module", softhsmModule(t)))
	if v.Go != runtime.Version() || v.Version == "" || v.Module.CryptokiVersion != "2.40" || v.Module.LibraryDescription == "" {
		t.Fatalf("version --pkcs11-module: %+v", v)
	}
}

// TestCompletionAndMan: the bash completion script completes hsmkms's own
// command tree (run in bash as the shell would), and man is a troff page
// of the commands.
func TestCompletionAndMan(t *testing.T) {
	s := newSandbox(t)
	binDir := t.TempDir()
	if err := os.Symlink(hsmkmsBin, filepath.Join(binDir, "hsmkms")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "hsmkms.bash")
	if err := os.WriteFile(script, []byte(s.must(nil, "completion", "bash").stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		prog := fmt.Sprintf(`source %q; COMP_WORDS=(%s); COMP_CWORD=%d; _hsmkms_complete; printf '%%s\n' "${COMPREPLY[@]}"`,
			script, strings.Join(words, " "), len(words)-1)
		r := s.exec(runOpts{env: []string{"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH")}}, "bash", "-c", prog)
		if r.code != 0 {
			t.Fatalf("bash completion: %v", r)
		}
		return strings.Fields(r.stdout)
	}
	if got := complete("hsmkms", "ke"); !slices.Equal(got, []string{"key"}) {
		t.Fatalf("hsmkms ke<TAB> = %v, want [key]", got)
	}
	if got := complete("hsmkms", "key", "rot"); !slices.Contains(got, "rotate") || !slices.Contains(got, "rotation") {
		t.Fatalf("hsmkms key rot<TAB> = %v", got)
	}
	if r := s.run(nil, "completion", "tcsh"); r.code != 2 {
		t.Fatalf("completion tcsh: %v", r)
	}
	man := s.must(nil, "man").stdout
	if !strings.HasPrefix(man, ".nh\n.TH hsmkms 1") || !strings.Contains(man, "update-description") {
		t.Fatalf("man page:\n%.400s", man)
	}
}

// TestCLIConnectionFlagsBeforeCommand: --endpoint and --credentials-file
// work before the command as after it, and the one after wins.
func TestCLIConnectionFlagsBeforeCommand(t *testing.T) {
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	srv := s.startDev(devDir)
	creds := filepath.Join(devDir, "credentials")
	endpoint := srv.exports["HSMKMS_ENDPOINT"]
	key := createKey(s, srv.clientEnv(), "flags before")
	for _, args := range [][]string{
		{"--endpoint", endpoint, "--credentials-file", creds, "-o", "json", "key", "list"},
		{"-o", "json", "key", "list", "--endpoint", endpoint, "--credentials-file", creds},
		{"--endpoint", "http://127.0.0.1:1", "-o", "json", "key", "list", "--endpoint", endpoint, "--credentials-file", creds},
	} {
		r := s.run(nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, key) {
			t.Fatalf("%v: %v", args, r)
		}
	}
}
