package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/hsmkms/hsmkms/service/server"
)

// The root principal of the servers the client command tests start.
const (
	rootKeyID  = "AKIACLITESTROOT00001"
	rootSecret = "cli-test-root-secret-0123456789abcdef"
)

// startServer makes a private token, starts a server on it that the test's
// cleanup shuts down (before the token's directory goes), and points the
// client environment at it with the root credentials: HSMKMS_ENDPOINT,
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, with every other AWS_
// variable cleared and the shared AWS files empty. One server at a time:
// the process has one PKCS#11 module.
func startServer(t *testing.T) {
	t.Helper()
	tok := setup(t)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	srv, err := server.Start(context.Background(), server.Config{
		Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		ModulePath: tok.ModulePath, TokenLabel: tok.Label, PIN: hsm.NewPIN(tok.PIN),
		Region: "us-east-1", Account: "000000000000",
		RootAccessKeyID: rootKeyID, RootSecret: rootSecret,
	})
	if err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	t.Setenv("HSMKMS_ENDPOINT", srv.Endpoint())
	t.Setenv("AWS_ACCESS_KEY_ID", rootKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", rootSecret)
}

// runIn runs the application in-process with stdin as its standard input
// (an empty file, not a terminal, when stdin is "") and returns its output
// and exit code.
func runIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var in io.Reader = strings.NewReader(stdin)
	if stdin == "" {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		in = f
	}
	return runWith(t, in, args...)
}

// terminal is standard input that says it is a terminal, answering with
// what its reader holds.
type terminal struct{ io.Reader }

func (terminal) IsTerminal() bool { return true }

// runWith runs the application with in as its standard input.
func runWith(t *testing.T, in io.Reader, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := New(&stdout, &stderr)
	app.Reader = in
	code := ExitOK
	if err := app.Run(append([]string{"hsmkms"}, args...)); err != nil {
		code = exitCode(err, &stderr)
	}
	return result{stdout.String(), stderr.String(), code}
}

// mustRun runs a command that must succeed and returns its standard output.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := runIn(t, "", args...)
	if r.code != ExitOK {
		t.Fatalf("hsmkms %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// decode parses out, the JSON a command printed, into a T.
func decode[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON for %T: %v: %q", v, err, out)
	}
	return v
}

// createKey makes a key with the CLI and returns its ID.
func createKey(t *testing.T, extra ...string) string {
	t.Helper()
	k := decode[keyView](t, mustRun(t, append([]string{"-o", "json", "key", "create"}, extra...)...))
	if k.KeyId == "" {
		t.Fatalf("created key has no ID: %+v", k)
	}
	return k.KeyId
}

// step is one command of a scenario: its arguments (made when it runs,
// from what earlier steps found), standard input, environment, the exit
// code it must end with and a check of its output.
type step struct {
	name  string
	args  func() []string
	stdin func() string
	env   func() map[string]string
	code  int
	check func(t *testing.T, r result)
}

// argv is the args of a step whose arguments are known in advance.
func argv(args ...string) func() []string { return func() []string { return args } }

// runSteps runs steps in order and stops at the first that fails, since
// later steps build on earlier ones.
func runSteps(t *testing.T, steps []step) {
	t.Helper()
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) {
			if s.env != nil {
				for k, v := range s.env() {
					t.Setenv(k, v)
				}
			}
			args := s.args()
			var stdin string
			if s.stdin != nil {
				stdin = s.stdin()
			}
			r := runIn(t, stdin, args...)
			if r.code != s.code {
				t.Fatalf("hsmkms %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, s.code, r.stdout, r.stderr)
			}
			if s.check != nil {
				s.check(t, r)
			}
		})
		if !ok {
			t.FailNow()
		}
	}
}

// contains is a check that the output (stdout and stderr) holds every one
// of want.
func contains(want ...string) func(t *testing.T, r result) {
	return func(t *testing.T, r result) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(r.stdout+r.stderr, w) {
				t.Errorf("output lacks %q:\nstdout: %s\nstderr: %s", w, r.stdout, r.stderr)
			}
		}
	}
}

// TestClientKeyCommands walks a key through its life with every key
// command: create, describe, list, disable, enable, automatic rotation,
// rotation on demand, scheduled and cancelled deletion; flags given after
// the KEY argument work as well as before it.
func TestClientKeyCommands(t *testing.T) {
	startServer(t)
	var id string
	key := func(args ...string) func() []string {
		return func() []string { return append(slices.Clone(args), id) }
	}
	keyThen := func(args []string, after ...string) func() []string {
		return func() []string { return append(append(slices.Clone(args), id), after...) }
	}
	describe := func(check func(t *testing.T, k keyView)) func(t *testing.T, r result) {
		return func(t *testing.T, r result) { check(t, decode[keyView](t, r.stdout)) }
	}
	runSteps(t, []step{
		{name: "create", args: argv("-o", "json", "key", "create", "--description", "cli test", "--mechanism", "aes-kw", "--tag", "team=ops"),
			check: describe(func(t *testing.T, k keyView) {
				id = k.KeyId
				if k.KeyState != "Enabled" || !k.Enabled || k.KeySpec != "SYMMETRIC_DEFAULT" || k.KeyUsage != "ENCRYPT_DECRYPT" ||
					k.Description != "cli test" || k.Tags[mechanismTag] != "aes-kw" || k.Tags["team"] != "ops" || !strings.Contains(k.Arn, id) {
					t.Errorf("created %+v", k)
				}
			})},
		{name: "create ECC", args: argv("-o", "json", "key", "create", "--spec", "ECC_NIST_P256"),
			check: describe(func(t *testing.T, k keyView) {
				if k.KeySpec != "ECC_NIST_P256" || k.KeyUsage != "SIGN_VERIFY" {
					t.Errorf("created %+v", k)
				}
			})},
		{name: "create HMAC", args: argv("-o", "json", "key", "create", "--spec", "HMAC_384"),
			check: describe(func(t *testing.T, k keyView) {
				if k.KeySpec != "HMAC_384" || k.KeyUsage != "GENERATE_VERIFY_MAC" {
					t.Errorf("created %+v", k)
				}
			})},
		{name: "create RSA", args: argv("-o", "json", "key", "create", "--spec", "RSA_2048"),
			check: describe(func(t *testing.T, k keyView) {
				if k.KeySpec != "RSA_2048" || k.KeyUsage != "ENCRYPT_DECRYPT" {
					t.Errorf("created %+v", k)
				}
			})},
		{name: "create RSA for a MAC", args: argv("key", "create", "--spec", "RSA_2048", "--usage", "GENERATE_VERIFY_MAC"), code: 1,
			check: contains("KeyUsage GENERATE_VERIFY_MAC is not valid for KeySpec RSA_2048")},
		{name: "create table", args: argv("key", "create", "--description", "third"), check: contains("key id", "SYMMETRIC_DEFAULT", "third")},
		{name: "create bad mechanism", args: argv("key", "create", "--mechanism", "des"), code: ExitUsage, check: contains("aes-gcm, aes-kw or aes-cbc-hmac")},
		{name: "create bad tag", args: argv("key", "create", "--tag", "novalue"), code: ExitUsage, check: contains("KEY=VALUE")},
		{name: "describe", args: key("-o", "json", "key", "describe"), check: describe(func(t *testing.T, k keyView) {
			if k.KeyId != id || k.Description != "cli test" || k.Tags[mechanismTag] != "aes-kw" || k.CreationDate == nil {
				t.Errorf("described %+v", k)
			}
		})},
		{name: "describe table", args: key("key", "describe"), check: func(t *testing.T, r result) {
			contains("hsmkms:mechanism=aes-kw", "team=ops", "Enabled")(t, r)
			if !strings.HasPrefix(r.stdout, "key id ") || !strings.Contains(r.stdout, id) {
				t.Errorf("table:\n%s", r.stdout)
			}
		}},
		{name: "list", args: argv("-o", "json", "key", "list"), check: func(t *testing.T, r result) {
			keys := decode[[]keyListEntry](t, r.stdout)
			if len(keys) != 5 || !slices.ContainsFunc(keys, func(k keyListEntry) bool { return k.KeyId == id && strings.HasSuffix(k.KeyArn, id) }) {
				t.Errorf("list: %+v", keys)
			}
		}},
		{name: "list table", args: argv("key", "list"), check: func(t *testing.T, r result) {
			if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 6 || !strings.HasPrefix(lines[0], "KEY ID") {
				t.Errorf("table:\n%s", r.stdout)
			}
			contains(id)(t, r)
		}},
		{name: "disable", args: key("key", "disable", "--yes"), check: contains("disabled")},
		{name: "disabled", args: key("-o", "json", "key", "describe"), check: describe(func(t *testing.T, k keyView) {
			if k.KeyState != "Disabled" || k.Enabled {
				t.Errorf("after disable: %+v", k)
			}
		})},
		{name: "enable", args: key("-o", "json", "key", "enable"), check: func(t *testing.T, r result) {
			if ch := decode[keyChange](t, r.stdout); ch.KeyState != "Enabled" {
				t.Errorf("enable printed %+v", ch)
			}
		}},
		{name: "enabled", args: key("-o", "json", "key", "describe"), check: describe(func(t *testing.T, k keyView) {
			if k.KeyState != "Enabled" || !k.Enabled {
				t.Errorf("after enable: %+v", k)
			}
		})},
		{name: "rotation enable, flag after KEY", args: keyThen([]string{"key", "rotation", "enable"}, "--days", "180"), check: contains("enabled", "180 days")},
		{name: "rotation status", args: key("-o", "json", "key", "rotation", "status"), check: func(t *testing.T, r result) {
			s := decode[rotationStatusView](t, r.stdout)
			if !s.KeyRotationEnabled || s.RotationPeriodInDays != 180 || s.NextRotationDate == nil || s.NextRotationDate.Before(time.Now().Add(179*24*time.Hour)) {
				t.Errorf("status %+v", s)
			}
		}},
		{name: "rotation disable", args: key("key", "rotation", "disable"), check: contains("disabled")},
		{name: "rotation status disabled", args: key("-o", "json", "key", "rotation", "status"), check: func(t *testing.T, r result) {
			if s := decode[rotationStatusView](t, r.stdout); s.KeyRotationEnabled {
				t.Errorf("status %+v", s)
			}
		}},
		{name: "no rotations yet", args: key("-o", "json", "key", "rotations"), check: func(t *testing.T, r result) {
			if strings.TrimSpace(r.stdout) != "[]" {
				t.Errorf("rotations of a new key: %s", r.stdout)
			}
		}},
		{name: "rotate", args: key("-o", "json", "key", "rotate"), check: func(t *testing.T, r result) {
			if ch := decode[keyChange](t, r.stdout); !strings.Contains(ch.KeyId, id) {
				t.Errorf("rotate printed %+v", ch)
			}
		}},
		{name: "rotations", args: key("-o", "json", "key", "rotations"), check: func(t *testing.T, r result) {
			rots := decode[[]rotationView](t, r.stdout)
			if len(rots) != 1 || rots[0].KeyMaterialId == "" || rots[0].RotationType != "ON_DEMAND" || rots[0].RotationDate == nil {
				t.Errorf("rotations %+v", rots)
			}
		}},
		{name: "rotations table", args: key("key", "rotations"), check: contains("ROTATED", "ON_DEMAND")},
		{name: "schedule deletion, flags after KEY", args: keyThen([]string{"-o", "json", "key", "schedule-deletion"}, "--days", "7", "--yes"),
			check: func(t *testing.T, r result) {
				ch := decode[keyChange](t, r.stdout)
				if ch.KeyState != "PendingDeletion" || ch.PendingWindowInDays != 7 || ch.DeletionDate == nil ||
					ch.DeletionDate.Before(time.Now().Add(6*24*time.Hour)) || ch.DeletionDate.After(time.Now().Add(8*24*time.Hour)) {
					t.Errorf("schedule-deletion printed %+v", ch)
				}
			}},
		{name: "pending deletion", args: key("-o", "json", "key", "describe"), check: describe(func(t *testing.T, k keyView) {
			if k.KeyState != "PendingDeletion" || k.DeletionDate == nil {
				t.Errorf("after schedule-deletion: %+v", k)
			}
		})},
		{name: "cancel deletion", args: key("key", "cancel-deletion"), check: contains("deletion cancelled", "hsmkms key enable")},
		{name: "disabled after cancel", args: key("-o", "json", "key", "describe"), check: describe(func(t *testing.T, k keyView) {
			if k.KeyState != "Disabled" || k.DeletionDate != nil {
				t.Errorf("after cancel-deletion: %+v", k)
			}
		})},
		{name: "help after KEY", args: keyThen([]string{"key", "describe"}, "--help"), check: contains("USAGE", "describe [command options] KEY")},
	})
}

// TestClientListsJSON proves that every list prints a JSON array with
// --output json, [] when there is nothing to list.
func TestClientListsJSON(t *testing.T) {
	startServer(t)
	var id string
	lists := []struct {
		name string
		args func() []string
		// want is the length of the list: before any key exists (-1: not
		// run), with one key, with one key and an alias.
		want [3]int
	}{
		{"key list", argv("key", "list"), [3]int{0, 1, 1}},
		{"alias list", argv("alias", "list"), [3]int{0, 0, 1}},
		{"alias list --key", func() []string { return []string{"alias", "list", "--key", id} }, [3]int{-1, 0, 1}},
		{"principal list", argv("principal", "list"), [3]int{1, 1, 1}},
		{"key rotations", func() []string { return []string{"key", "rotations", id} }, [3]int{-1, 0, 0}},
	}
	for phase, setup := range []func(){
		func() {},
		func() { id = createKey(t) },
		func() { mustRun(t, "alias", "create", "alias/listed", id) },
	} {
		setup()
		for _, l := range lists {
			if l.want[phase] < 0 {
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", l.name, phase), func(t *testing.T) {
				out := mustRun(t, append([]string{"--output", "json"}, l.args()...)...)
				items := decode[[]json.RawMessage](t, out)
				if len(items) != l.want[phase] {
					t.Errorf("%d items, want %d: %s", len(items), l.want[phase], out)
				}
				if len(items) == 0 && strings.TrimSpace(out) != "[]" {
					t.Errorf("empty list printed %q, want []", out)
				}
			})
		}
	}
}

// TestClientAliasCommands creates, lists, updates and deletes an alias.
func TestClientAliasCommands(t *testing.T) {
	startServer(t)
	a, b := createKey(t), createKey(t)
	targetOf := func(want *string) func(t *testing.T, r result) {
		return func(t *testing.T, r result) {
			if k := decode[keyView](t, r.stdout); k.KeyId != *want {
				t.Errorf("alias/app names %s, want %s", k.KeyId, *want)
			}
		}
	}
	runSteps(t, []step{
		{name: "create without prefix", args: argv("alias", "create", "app", a), check: contains("alias alias/app created for key " + a)},
		{name: "create twice", args: argv("alias", "create", "alias/app", b), code: ExitError, check: contains("hsmkms: alias alias/app: AlreadyExistsException")},
		{name: "create for unknown key", args: argv("alias", "create", "alias/other", "0b6e0c4a-5d7e-4d4e-9a57-1c2a3b4c5d6e"), code: ExitNotFound, check: contains("alias alias/other: NotFoundException")},
		{name: "names a", args: argv("-o", "json", "key", "describe", "alias/app"), check: targetOf(&a)},
		{name: "list", args: argv("-o", "json", "alias", "list"), check: func(t *testing.T, r result) {
			l := decode[[]aliasView](t, r.stdout)
			if len(l) != 1 || l[0].AliasName != "alias/app" || l[0].TargetKeyId != a || !strings.HasSuffix(l[0].AliasArn, ":alias/app") || l[0].CreationDate == nil {
				t.Errorf("list %+v", l)
			}
		}},
		{name: "list table", args: argv("alias", "list"), check: contains("ALIAS", "alias/app", a)},
		{name: "update", args: argv("-o", "json", "alias", "update", "alias/app", b), check: func(t *testing.T, r result) {
			if v := decode[aliasView](t, r.stdout); v.AliasName != "alias/app" || v.TargetKeyId != b {
				t.Errorf("update printed %+v", v)
			}
		}},
		{name: "names b", args: argv("-o", "json", "key", "describe", "alias/app"), check: targetOf(&b)},
		{name: "list --key a", args: argv("-o", "json", "alias", "list", "--key", a), check: contains("[]")},
		{name: "delete", args: argv("alias", "delete", "--yes", "alias/app"), check: contains("alias alias/app deleted")},
		{name: "gone", args: argv("key", "describe", "alias/app"), code: ExitNotFound, check: contains("hsmkms: key alias/app: NotFoundException")},
		{name: "list --key b", args: argv("-o", "json", "alias", "list", "--key", b), check: contains("[]")},
	})
}

// TestClientPrincipalCommands creates principals from --allow, from a
// policy file and from standard input, lists them, proves that a
// restricted principal's credentials are refused what its policy does not
// allow (exit 3), and deletes one, after which its access key is refused.
func TestClientPrincipalCommands(t *testing.T) {
	startServer(t)
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.json")
	const policyJSON = `[{"effect": "Allow", "actions": ["kms:Encrypt", "kms:Decrypt"], "resources": ["alias/app"]}]`
	const pipedJSON = `[{"effect": "Allow", "actions": ["kms:DescribeKey", "kms:Decrypt"], "resources": ["alias/app"]},
		{"effect": "Deny", "actions": ["kms:Decrypt"], "resources": ["alias/secret", "alias/other"]}]`
	badPolicy := filepath.Join(dir, "bad.json")
	for f, body := range map[string]string{policyFile: policyJSON, badPolicy: `[{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]`} {
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var app service.CreatePrincipalOutput
	asApp := func() map[string]string {
		return map[string]string{"AWS_ACCESS_KEY_ID": app.AccessKeyId, "AWS_SECRET_ACCESS_KEY": app.SecretAccessKey}
	}
	steps := []step{
		{name: "create with --allow", args: argv("-o", "json", "principal", "create", "app", "--allow", "kms:ListKeys=*", "--allow", "DescribeKey=*"),
			check: func(t *testing.T, r result) {
				app = decode[service.CreatePrincipalOutput](t, r.stdout)
				if app.Name != "app" || !strings.HasPrefix(app.AccessKeyId, "AKIA") || len(app.SecretAccessKey) < 16 {
					t.Errorf("created %+v", app)
				}
			}},
		{name: "create with a policy file", args: argv("principal", "create", "--policy", policyFile, "ops"),
			check: contains("access key id", "secret access key", "shown only now")},
		{name: "create with a policy on stdin", args: argv("-o", "json", "principal", "create", "piped", "--policy", "-"), stdin: func() string { return pipedJSON },
			check: contains(`"SecretAccessKey"`)},
		{name: "create with a bad policy", args: argv("principal", "create", "bad", "--policy", badPolicy), code: ExitUsage, check: contains("not a JSON array of statements")},
		{name: "create with an unknown action", args: argv("principal", "create", "bad", "--allow", "kms:Fly=*"), code: ExitUsage, check: contains("kms:Fly")},
		{name: "create without a policy", args: argv("principal", "create", "bad"), code: ExitUsage, check: contains("--policy or --allow")},
		{name: "list", args: argv("-o", "json", "principal", "list"), check: func(t *testing.T, r result) {
			l := decode[[]principalView](t, r.stdout)
			names := map[string]principalView{}
			for _, p := range l {
				names[p.Name] = p
			}
			if len(l) != 4 || names["root"].AccessKeyId != rootKeyID || names["app"].AccessKeyId != app.AccessKeyId ||
				len(names["app"].Statements) != 2 || names["app"].Statements[1].Actions[0] != "kms:DescribeKey" ||
				len(names["ops"].Statements) != 1 || names["ops"].Statements[0].Resources[0] != "alias/app" || names["ops"].CreationDate == nil {
				t.Errorf("list %+v", l)
			}
			if strings.Contains(r.stdout, app.SecretAccessKey) {
				t.Errorf("list shows a secret: %s", r.stdout)
			}
		}},
		{name: "list table", args: argv("principal", "list"), check: contains("ACCESS KEY ID",
			"ListKeys=*; DescribeKey=*", "Encrypt,Decrypt=alias/app", "decrypt-only=alias/app; deny Decrypt=alias/secret,alias/other")},
		{name: "allowed as app", args: argv("-o", "json", "key", "list"), check: contains("[]"), env: asApp},
		{name: "forbidden as app", args: argv("key", "create"), code: ExitAuth, check: contains("hsmkms: create key: AccessDeniedException"), env: asApp},
		{name: "admin forbidden as app", args: argv("principal", "list"), code: ExitAuth, check: contains("AccessDeniedException"), env: asApp},
		{name: "delete refused without --yes", args: func() []string { return []string{"principal", "delete", app.AccessKeyId} }, code: ExitUsage, check: contains("--yes")},
		{name: "still works", args: argv("key", "list"), env: asApp},
		{name: "delete", args: func() []string { return []string{"principal", "delete", app.AccessKeyId, "--yes"} }, check: contains("deleted")},
		{name: "refused after delete", args: argv("key", "list"), code: ExitAuth, check: contains("UnrecognizedClientException"), env: asApp},
		{name: "delete unknown", args: argv("principal", "delete", "--yes", "AKIANOSUCHPRINCIPAL0"), code: ExitNotFound,
			check: contains("AKIANOSUCHPRINCIPAL0")},
	}
	runSteps(t, steps)
}

// TestClientCryptoCommands round-trips data keys and small values through
// datakey, encrypt-value, re-encrypt and decrypt-value, raw and base64,
// with and without encryption context.
func TestClientCryptoCommands(t *testing.T) {
	startServer(t)
	k1, k2 := createKey(t), createKey(t, "--mechanism", "aes-kw")
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	write := func(t *testing.T, name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(file(name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(t, "big", bytes.Repeat([]byte("x"), maxPlaintext+1))
	write(t, "max", bytes.Repeat([]byte("y"), maxPlaintext))
	var dk datakeyView
	var encrypted string // raw ciphertext of encrypt-value --in -
	plaintextIs := func(want *[]byte) func(t *testing.T, r result) {
		return func(t *testing.T, r result) {
			if r.stdout != string(*want) {
				t.Errorf("plaintext %q, want %q", r.stdout, *want)
			}
		}
	}
	secret := []byte("s3cret value")
	fromStdin := []byte("from standard input\n")
	runSteps(t, []step{
		{name: "datakey", args: argv("-o", "json", "datakey", "--key", k1, "--context", "purpose=test"), check: func(t *testing.T, r result) {
			dk = decode[datakeyView](t, r.stdout)
			if len(dk.Plaintext) != 32 || len(dk.CiphertextBlob) == 0 || !strings.Contains(dk.KeyId, k1) {
				t.Fatalf("datakey %+v", dk)
			}
			write(t, "dk.bin", dk.CiphertextBlob)
		}},
		{name: "decrypt the data key", args: argv("decrypt-value", "--in", file("dk.bin"), "--context", "purpose=test"), check: plaintextIs(&dk.Plaintext)},
		{name: "decrypt the data key as JSON", args: argv("-o", "json", "decrypt-value", "--in", file("dk.bin"), "--context", "purpose=test", "--key", k1),
			check: func(t *testing.T, r result) {
				if p := decode[plainView](t, r.stdout); !bytes.Equal(p.Plaintext, dk.Plaintext) || !strings.Contains(p.KeyId, k1) {
					t.Errorf("decrypted %+v", p)
				}
			}},
		{name: "wrong context", args: argv("decrypt-value", "--in", file("dk.bin"), "--context", "purpose=other"), code: ExitError,
			check: contains("InvalidCiphertextException")},
		{name: "datakey table AES_128", args: argv("datakey", "--key", k2, "--spec", "AES_128"), check: func(t *testing.T, r result) {
			fields := map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				k, v, _ := strings.Cut(l, " ")
				fields[k] = strings.TrimSpace(v)
			}
			plain, err := base64.StdEncoding.DecodeString(fields["plaintext"])
			if err != nil || len(plain) != 16 {
				t.Errorf("plaintext %q: %v", fields["plaintext"], err)
			}
			blob, err := base64.StdEncoding.DecodeString(fields["ciphertext"])
			if err != nil || len(blob) == 0 {
				t.Errorf("ciphertext %q: %v", fields["ciphertext"], err)
			}
		}},
		{name: "datakey --bytes", args: argv("-o", "json", "datakey", "--key", k1, "--bytes", "64"), check: func(t *testing.T, r result) {
			if d := decode[datakeyView](t, r.stdout); len(d.Plaintext) != 64 {
				t.Errorf("datakey %+v", d)
			}
		}},
		{name: "datakey --no-plaintext", args: argv("-o", "json", "datakey", "--key", k1, "--no-plaintext"), check: func(t *testing.T, r result) {
			if d := decode[datakeyView](t, r.stdout); d.Plaintext != nil || len(d.CiphertextBlob) == 0 || strings.Contains(r.stdout, "Plaintext") {
				t.Errorf("datakey %s", r.stdout)
			}
		}},
		{name: "datakey-pair", args: argv("-o", "json", "datakey-pair", "--key", k1, "--context", "purpose=pair"), check: func(t *testing.T, r result) {
			v := decode[datakeyPairView](t, r.stdout)
			priv, err := x509.ParsePKCS8PrivateKey(v.PrivateKeyPlaintext)
			if err != nil || v.KeyPairSpec != "ECC_NIST_P256" || !strings.Contains(v.KeyId, k1) {
				t.Fatalf("datakey-pair %+v: %v", v, err)
			}
			if pub, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public()); err != nil || !bytes.Equal(pub, v.PublicKey) {
				t.Fatalf("the public key is not the private key's (%v)", err)
			}
			write(t, "pair.bin", v.PrivateKeyCiphertextBlob)
			dk.Plaintext = v.PrivateKeyPlaintext
		}},
		{name: "decrypt the private key", args: argv("decrypt-value", "--in", file("pair.bin"), "--context", "purpose=pair"), check: plaintextIs(&dk.Plaintext)},
		{name: "datakey-pair RSA table --no-plaintext", args: argv("datakey-pair", "--key", k2, "--spec", "RSA_2048", "--no-plaintext"), check: func(t *testing.T, r result) {
			if strings.Contains(r.stdout, "private_key") || !strings.Contains(r.stdout, "spec") || !strings.Contains(r.stdout, "RSA_2048") {
				t.Errorf("datakey-pair --no-plaintext printed:\n%s", r.stdout)
			}
		}},
		{name: "datakey-pair SM2", args: argv("datakey-pair", "--key", k1, "--spec", "SM2"), code: ExitError, check: contains("UnsupportedOperationException")},
		{name: "encrypt-value --value --base64", args: argv("encrypt-value", "--key", k1, "--value", string(secret), "--context", "app=x", "--base64"),
			check: func(t *testing.T, r result) {
				if _, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.stdout)); err != nil {
					t.Fatalf("not base64: %q", r.stdout)
				}
				write(t, "value.b64", []byte(r.stdout))
			}},
		{name: "decrypt-value --base64", args: argv("decrypt-value", "--base64", "--context", "app=x", "--in", file("value.b64")), check: plaintextIs(&secret)},
		{name: "decrypt-value --key of another key", args: argv("decrypt-value", "--base64", "--context", "app=x", "--in", file("value.b64"), "--key", k2),
			code: ExitError, check: contains("IncorrectKeyException")},
		{name: "re-encrypt", args: argv("re-encrypt", "--key", k2, "--in", file("value.b64"), "--base64", "--source-context", "app=x", "--context", "app=y"),
			check: func(t *testing.T, r result) { write(t, "re.b64", []byte(r.stdout)) }},
		{name: "decrypt re-encrypted", args: argv("-o", "json", "decrypt-value", "--base64", "--context", "app=y", "--in", file("re.b64")),
			check: func(t *testing.T, r result) {
				if p := decode[plainView](t, r.stdout); string(p.Plaintext) != string(secret) || !strings.Contains(p.KeyId, k2) {
					t.Errorf("decrypted %+v", p)
				}
			}},
		{name: "encrypt-value --in -", args: argv("encrypt-value", "--in", "-", "--key", k1), stdin: func() string { return string(fromStdin) },
			check: func(t *testing.T, r result) { encrypted = r.stdout }},
		{name: "decrypt-value --in -", args: argv("decrypt-value", "--in", "-"), stdin: func() string { return encrypted }, check: plaintextIs(&fromStdin)},
		{name: "encrypt-value as JSON", args: argv("-o", "json", "encrypt-value", "--key", k1, "--in", file("max")), check: func(t *testing.T, r result) {
			if v := decode[cipherView](t, r.stdout); len(v.CiphertextBlob) == 0 || v.EncryptionAlgorithm != "SYMMETRIC_DEFAULT" {
				t.Errorf("encrypt-value %+v", v)
			}
		}},
		{name: "encrypt-value -o text", args: argv("-o", "text", "encrypt-value", "--key", k1, "--value", "by text", "--base64"),
			check: func(t *testing.T, r result) { encrypted = r.stdout }},
		{name: "decrypt-value -o text", args: argv("decrypt-value", "-o", "text", "--base64", "--in", "-"), stdin: func() string { return encrypted },
			check: func(t *testing.T, r result) {
				if r.stdout != "by text" {
					t.Errorf("decrypt-value -o text printed %q", r.stdout)
				}
			}},
		{name: "a bad --output before any call", args: argv("-o", "yml", "key", "schedule-deletion", "--key", k1, "--yes"), code: ExitUsage,
			check: contains(`--output must be table, text or json, not "yml"`)},
		{name: "the key a bad --output left alone", args: argv("-o", "json", "key", "describe", k1),
			check: func(t *testing.T, r result) {
				if !strings.Contains(r.stdout, `"KeyState": "Enabled"`) {
					t.Errorf("the key after a refused command: %s", r.stdout)
				}
			}},
		{name: "encrypt-value too large", args: argv("encrypt-value", "--key", k1, "--in", file("big")), code: ExitUsage, check: contains("4096")},
		{name: "encrypt-value --in and --value", args: argv("encrypt-value", "--key", k1, "--in", file("max"), "--value", "v"), code: ExitUsage},
		{name: "encrypt-value unknown key", args: argv("encrypt-value", "--key", "alias/nope", "--value", "v"), code: ExitNotFound,
			check: contains("hsmkms: key alias/nope: NotFoundException")},
		{name: "datakey without --key", args: argv("datakey"), code: ExitUsage, check: contains("--key")},
		{name: "datakey --spec and --bytes", args: argv("datakey", "--key", k1, "--spec", "AES_128", "--bytes", "8"), code: ExitUsage},
		{name: "decrypt-value without --in", args: argv("decrypt-value"), code: ExitUsage, check: contains("--in")},
		{name: "decrypt-value bad base64", args: argv("decrypt-value", "--base64", "--in", file("dk.bin")), code: ExitUsage, check: contains("not base64")},
	})
}

// TestClientConfirm proves that the destructive commands refuse to act
// without --yes when standard input is not a terminal, ask on a terminal
// and act only on yes, and act with --yes; no environment variable
// (HSMKMS_YES, HSMKMS_ALIAS_DELETE_YES) confirms for them.
func TestClientConfirm(t *testing.T) {
	startServer(t)
	key := createKey(t)
	mustRun(t, "alias", "create", "alias/keep", key)
	p := decode[service.CreatePrincipalOutput](t, mustRun(t, "-o", "json", "principal", "create", "victim", "--allow", "kms:ListKeys=*"))
	state := func(t *testing.T) string {
		return decode[keyView](t, mustRun(t, "-o", "json", "key", "describe", key)).KeyState
	}
	hasAlias := func(t *testing.T) bool { return strings.Contains(mustRun(t, "alias", "list"), "alias/keep") }
	hasPrincipal := func(t *testing.T) bool { return strings.Contains(mustRun(t, "principal", "list"), p.AccessKeyId) }
	for _, tc := range []struct {
		name     string
		args     []string
		terminal bool   // whether standard input passes for a terminal
		answer   string // what the user types
		env      map[string]string
		code     int
		stderr   string
		// changed reports whether the command took effect.
		changed func(t *testing.T) bool
	}{
		{"disable, no terminal", []string{"key", "disable", key}, false, "", nil, ExitUsage, "pass --yes", func(t *testing.T) bool { return state(t) != "Enabled" }},
		{"schedule-deletion, no terminal", []string{"key", "schedule-deletion", key}, false, "y\n", nil, ExitUsage, "pass --yes", func(t *testing.T) bool { return state(t) != "Enabled" }},
		{"alias delete, no terminal", []string{"alias", "delete", "alias/keep"}, false, "", nil, ExitUsage, "pass --yes", func(t *testing.T) bool { return !hasAlias(t) }},
		{"principal delete, no terminal", []string{"principal", "delete", p.AccessKeyId}, false, "", nil, ExitUsage, "pass --yes", func(t *testing.T) bool { return !hasPrincipal(t) }},
		{"disable, answered no", []string{"key", "disable", key}, true, "n\n", nil, ExitError, "Disable key " + key + "? Nothing can encrypt", func(t *testing.T) bool { return state(t) != "Enabled" }},
		{"disable, no answer", []string{"key", "disable", key}, true, "", nil, ExitError, "[y/N]", func(t *testing.T) bool { return state(t) != "Enabled" }},
		{"alias delete, answered no", []string{"alias", "delete", "alias/keep"}, true, "no\n", nil, ExitError, "not confirmed", func(t *testing.T) bool { return !hasAlias(t) }},
		{"disable, answered yes", []string{"key", "disable", key}, true, "yes\n", nil, ExitOK, "[y/N]", func(t *testing.T) bool { return state(t) == "Disabled" }},
		{"schedule-deletion, answered y", []string{"key", "schedule-deletion", "--days", "7", key}, true, "y\n", nil, ExitOK, "in 7 days?", func(t *testing.T) bool { return state(t) == "PendingDeletion" }},
		{"alias delete, HSMKMS_YES", []string{"alias", "delete", "alias/keep"}, false, "", map[string]string{"HSMKMS_YES": "true", "HSMKMS_ALIAS_DELETE_YES": "true"}, ExitUsage, "pass --yes", func(t *testing.T) bool { return !hasAlias(t) }},
		{"alias delete, --yes", []string{"alias", "delete", "--yes", "alias/keep"}, false, "", nil, ExitOK, "", func(t *testing.T) bool { return !hasAlias(t) }},
		{"principal delete, -y", []string{"principal", "delete", "-y", p.AccessKeyId}, false, "", nil, ExitOK, "", func(t *testing.T) bool { return !hasPrincipal(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var r result
			if tc.terminal {
				r = runWith(t, terminal{strings.NewReader(tc.answer)}, tc.args...)
			} else {
				r = runIn(t, tc.answer, tc.args...)
			}
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("exit %d, want %d; stderr %q, want %q", r.code, tc.code, r.stderr, tc.stderr)
			}
			if got, want := tc.changed(t), tc.code == ExitOK; got != want {
				t.Errorf("took effect: %v, want %v", got, want)
			}
		})
	}
}

// TestClientExitCodes proves that refused credentials exit 3, unknown
// keys, aliases and principals 4, an endpoint with nothing listening 5 and
// usage errors 2, with messages that name what failed.
func TestClientExitCodes(t *testing.T) {
	startServer(t)
	key := createKey(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadEndpoint := "http://" + l.Addr().String()
	l.Close()
	wrongSecret := map[string]string{"AWS_SECRET_ACCESS_KEY": "not-the-secret-0123456789"}
	unknownID := map[string]string{"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000"}
	dead := map[string]string{"HSMKMS_ENDPOINT": deadEndpoint}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"success", nil, []string{"key", "describe", key}, ExitOK, ""},
		{"wrong secret", wrongSecret, []string{"key", "list"}, ExitAuth, "hsmkms: list keys: InvalidSignatureException"},
		{"wrong secret, admin", wrongSecret, []string{"principal", "list"}, ExitAuth, "hsmkms: list principals: InvalidSignatureException"},
		{"unknown access key", unknownID, []string{"key", "describe", key}, ExitAuth, "hsmkms: key " + key + ": UnrecognizedClientException"},
		{"unknown alias", nil, []string{"key", "describe", "alias/nope"}, ExitNotFound, "hsmkms: key alias/nope: NotFoundException"},
		{"unknown key ID", nil, []string{"key", "enable", "0b6e0c4a-5d7e-4d4e-9a57-1c2a3b4c5d6e"}, ExitNotFound, "key 0b6e0c4a-5d7e-4d4e-9a57-1c2a3b4c5d6e: NotFoundException"},
		{"unknown alias to delete", nil, []string{"alias", "delete", "--yes", "alias/nope"}, ExitNotFound, "hsmkms: alias alias/nope: NotFoundException"},
		{"unknown key's rotations", nil, []string{"key", "rotations", "alias/nope"}, ExitNotFound, "key alias/nope"},
		{"nothing listening", dead, []string{"key", "list"}, ExitUnavailable, "hsmkms: list keys: cannot reach the server"},
		{"nothing listening, admin", dead, []string{"principal", "list"}, ExitUnavailable, "cannot reach the server"},
		{"nothing listening, datakey", dead, []string{"datakey", "--key", key}, ExitUnavailable, "hsmkms: key " + key + ": cannot reach the server"},
		{"no endpoint", map[string]string{"HSMKMS_ENDPOINT": ""}, []string{"key", "list"}, ExitUsage, "--endpoint"},
		{"bad flag", nil, []string{"key", "list", "--bogus"}, ExitUsage, "bogus"},
		{"bad flag after KEY", nil, []string{"key", "describe", key, "--bogus"}, ExitUsage, "bogus"},
		{"flag after KEY without value", nil, []string{"key", "schedule-deletion", key, "--days"}, ExitUsage, "--days"},
		{"bad flag value", nil, []string{"key", "schedule-deletion", "--days", "soon", key}, ExitUsage, "soon"},
		{"missing KEY", nil, []string{"key", "describe"}, ExitUsage, "takes KEY, got 0"},
		{"extra argument", nil, []string{"key", "describe", key, "more"}, ExitUsage, "takes KEY, got 2"},
		{"argument to a list", nil, []string{"alias", "list", "x"}, ExitUsage, "takes no arguments"},
		{"days out of range", nil, []string{"key", "schedule-deletion", "--yes", "--days", "3", key}, ExitUsage, "--days must be 7 to 30"},
		{"output yaml", nil, []string{"--output", "yaml", "key", "list"}, ExitUsage, "--output must be table, text or json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			r := runIn(t, "", tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tc.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, rootSecret) || strings.Contains(r.stdout+r.stderr, "not-the-secret") {
				t.Errorf("output shows a secret:\n%s\n%s", r.stdout, r.stderr)
			}
		})
	}
	if state := decode[keyView](t, mustRun(t, "-o", "json", "key", "describe", key)).KeyState; state != "Enabled" {
		t.Errorf("a failed command changed the key: %s", state)
	}
}

// TestExitCodeMapping maps the errors the SDK and adminclient return to
// exit codes and messages, without a server.
func TestExitCodeMapping(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "msg"} }
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"not found", &callError{"key alias/foo", api("NotFoundException")}, ExitNotFound, "hsmkms: key alias/foo: NotFoundException: msg\n"},
		{"typed not found", fmt.Errorf("operation error: %w", &types.NotFoundException{Message: new("gone")}), ExitNotFound, "gone"},
		{"unrecognized client", api("UnrecognizedClientException"), ExitAuth, "UnrecognizedClientException"},
		{"invalid signature", api("InvalidSignatureException"), ExitAuth, ""},
		{"incomplete signature", api("IncompleteSignatureException"), ExitAuth, ""},
		{"access denied", &callError{"create key", api("AccessDeniedException")}, ExitAuth, "hsmkms: create key: AccessDeniedException: msg"},
		{"admin access denied", &callError{"principal x", &adminclient.Error{Status: 400, Type: "AccessDeniedException", Message: "no"}}, ExitAuth, "hsmkms: principal x: AccessDeniedException: no"},
		{"admin not found", &adminclient.Error{Status: 404, Type: "NotFoundException"}, ExitNotFound, ""},
		{"dependency timeout", &callError{"key k", &types.DependencyTimeoutException{Message: new("HSM down")}}, ExitUnavailable, "key k: DependencyTimeoutException: HSM down"},
		{"connection refused", &callError{"list keys", fmt.Errorf("send: %w", dial)}, ExitUnavailable, "list keys: cannot reach the server: dial tcp: connect: connection refused"},
		{"bare ECONNREFUSED", fmt.Errorf("x: %w", syscall.ECONNREFUSED), ExitUnavailable, ""},
		{"validation", api("ValidationException"), ExitError, "ValidationException"},
		{"other", errors.New("boom"), ExitError, "hsmkms: boom"},
		{"usage", usagef("bad"), ExitUsage, "hsmkms: bad\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := exitCode(tc.err, &stderr); got != tc.code {
				t.Errorf("exit code %d, want %d", got, tc.code)
			}
			if !strings.Contains(stderr.String(), tc.msg) {
				t.Errorf("message %q lacks %q", stderr.String(), tc.msg)
			}
		})
	}
}

// TestClientEnvScoped proves that a command's own flags read only
// variables named after it: HSMKMS_DATAKEY_SPEC sets datakey's --spec and
// leaves key create's alone, and the flat HSMKMS_SPEC sets neither.
func TestClientEnvScoped(t *testing.T) {
	startServer(t)
	key := createKey(t)
	t.Setenv("HSMKMS_SPEC", "RSA_2048")
	t.Setenv("HSMKMS_DATAKEY_SPEC", "AES_128")
	if k := decode[keyView](t, mustRun(t, "-o", "json", "key", "create")); k.KeySpec != "SYMMETRIC_DEFAULT" {
		t.Fatalf("key create took its spec from another command's variable: %+v", k)
	}
	dk := decode[struct{ Plaintext []byte }](t, mustRun(t, "-o", "json", "datakey", "--key", key))
	if len(dk.Plaintext) != 16 {
		t.Fatalf("datakey made %d bytes; HSMKMS_DATAKEY_SPEC=AES_128 asks for 16", len(dk.Plaintext))
	}
	t.Setenv("HSMKMS_KEY_CREATE_SPEC", "ECC_NIST_P256")
	if k := decode[keyView](t, mustRun(t, "-o", "json", "key", "create")); k.KeySpec != "ECC_NIST_P256" {
		t.Fatalf("HSMKMS_KEY_CREATE_SPEC was not read: %+v", k)
	}
}

// TestClientSignTagDescribe drives sign and verify (a short message, a long
// one hashed here, a tampered one), key tag, untag and update-description.
func TestClientSignTagDescribe(t *testing.T) {
	startServer(t)
	ecc := createKey(t, "--spec", "ECC_NIST_P256")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, n := range []int{10, 5000} {
		msg := write(fmt.Sprintf("msg%d", n), bytes.Repeat([]byte{'m'}, n))
		sig := write(fmt.Sprintf("sig%d", n), []byte(mustRun(t, "sign", "--key", ecc, "--algorithm", "ECDSA_SHA_256", "--in", msg)))
		if out := mustRun(t, "verify", "--key", ecc, "--algorithm", "ECDSA_SHA_256", "--in", msg, "--signature", sig); !strings.Contains(out, "signature valid") {
			t.Fatalf("verify of a %d-byte message: %q", n, out)
		}
		other := write(fmt.Sprintf("other%d", n), bytes.Repeat([]byte{'o'}, n))
		if r := run(t, "verify", "--key", ecc, "--algorithm", "ECDSA_SHA_256", "--in", other, "--signature", sig); r.code != ExitError || !strings.Contains(r.stderr, "KMSInvalidSignatureException") {
			t.Fatalf("verify of another %d-byte message: %+v", n, r)
		}
	}
	if r := run(t, "sign", "--key", ecc, "--in", write("m", []byte("m"))); r.code != ExitUsage || !strings.Contains(r.stderr, "needs --algorithm") {
		t.Fatalf("sign without --algorithm: %+v", r)
	}

	key := createKey(t)
	mustRun(t, "key", "update-description", key, "the new description")
	mustRun(t, "key", "tag", key, "--tag", "team=ops", "--tag", "env=prod")
	mustRun(t, "key", "untag", key, "--tag-key", "env")
	k := decode[keyView](t, mustRun(t, "-o", "json", "key", "describe", key))
	if k.Description != "the new description" || k.Tags["team"] != "ops" || k.Tags["env"] != "" {
		t.Fatalf("after update-description, tag and untag: %+v", k)
	}
	if r := run(t, "key", "tag", key); r.code != ExitUsage {
		t.Fatalf("key tag without --tag: %+v", r)
	}
}

// TestClientPrincipalPrintPresetsNames proves principal create --print
// credentials-file and env (and that the credentials work as written),
// the --allow presets (encrypt-files is what hsmkms encrypt needs), unique
// names, and principal delete by name.
func TestClientPrincipalPrintPresetsNames(t *testing.T) {
	startServer(t)
	key := createKey(t)
	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials")
	out := mustRun(t, "principal", "create", "files-app", "--allow", "encrypt-files="+key, "--print", "credentials-file")
	if !strings.Contains(out, "[default]\naws_access_key_id = AKIA") || !strings.Contains(out, "aws_secret_access_key = ") {
		t.Fatalf("--print credentials-file:\n%s", out)
	}
	if err := os.WriteFile(credFile, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("with the preset"), 0o600); err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(dir, "plain.enc")
	mustRun(t, "encrypt", "--key", key, "--in", plain, "--out", enc, "--credentials-file", credFile)
	mustRun(t, "decrypt", "--in", enc, "--out", filepath.Join(dir, "back"), "--credentials-file", credFile)
	if r := run(t, "key", "create", "--credentials-file", credFile); r.code != ExitAuth {
		t.Fatalf("the encrypt-files preset created a key: %+v", r)
	}

	env := mustRun(t, "principal", "create", "env-app", "--allow", "decrypt-only="+key, "--print", "env")
	if !regexp.MustCompile(`^export AWS_ACCESS_KEY_ID=AKIA[A-Z2-7]{16}\nexport AWS_SECRET_ACCESS_KEY=\S+\n$`).MatchString(env) {
		t.Fatalf("--print env:\n%s", env)
	}
	if r := run(t, "principal", "create", "env-app", "--allow", "kms:ListKeys=*"); r.code != ExitError || !strings.Contains(r.stderr, "AlreadyExistsException") {
		t.Fatalf("a second principal named env-app: %+v", r)
	}
	if r := run(t, "principal", "create", "x", "--allow", "kms:ListKeys=*", "--print", "yaml"); r.code != ExitUsage {
		t.Fatalf("--print yaml: %+v", r)
	}
	mustRun(t, "principal", "delete", "env-app", "--yes")
	if strings.Contains(mustRun(t, "principal", "list"), "env-app") {
		t.Fatal("principal delete by name left it")
	}
}

// TestClientGlobalFlagsAnywhere: --output and -o work before the command
// and after it, and HSMKMS_OUTPUT when neither is given; --output text is
// tab-separated rows without a header.
func TestClientGlobalFlagsAnywhere(t *testing.T) {
	startServer(t)
	createKey(t)
	for _, args := range [][]string{
		{"--output", "json", "key", "list"},
		{"key", "list", "--output", "json"},
		{"key", "list", "-o", "json"},
		{"-o", "table", "key", "list", "-o", "json"},
	} {
		if out := mustRun(t, args...); !strings.HasPrefix(strings.TrimSpace(out), "[") {
			t.Fatalf("%v: not JSON:\n%s", args, out)
		}
	}
	text := strings.Split(strings.TrimSpace(mustRun(t, "key", "list", "-o", "text")), "\n")
	if len(text) != 1 || len(strings.Split(text[0], "\t")) != 7 || strings.HasPrefix(text[0], "KEY ID") {
		t.Fatalf("key list -o text, want one tab-separated row of 7 fields and no header: %q", text)
	}
	t.Setenv("HSMKMS_OUTPUT", "json")
	if out := mustRun(t, "key", "list"); !strings.HasPrefix(strings.TrimSpace(out), "[") {
		t.Fatalf("HSMKMS_OUTPUT=json: not JSON:\n%s", out)
	}
	if out := mustRun(t, "key", "list", "-o", "table"); strings.HasPrefix(strings.TrimSpace(out), "[") {
		t.Fatalf("-o table after HSMKMS_OUTPUT=json: %s", out)
	}
}

// TestClientKeyListColumns: key list shows each key's aliases, state, spec,
// usage and description, and filters by state and alias prefix.
func TestClientKeyListColumns(t *testing.T) {
	startServer(t)
	app := createKey(t, "--description", "the app key", "--alias", "app-main")
	other := createKey(t, "--spec", "ECC_NIST_P256")
	mustRun(t, "key", "disable", "--yes", other)
	all := decode[[]keyListEntry](t, mustRun(t, "-o", "json", "key", "list"))
	byID := map[string]keyListEntry{}
	for _, k := range all {
		byID[k.KeyId] = k
	}
	a, o := byID[app], byID[other]
	if !slices.Equal(a.Aliases, []string{"alias/app-main"}) || a.KeyState != "Enabled" || a.KeySpec != "SYMMETRIC_DEFAULT" ||
		a.KeyUsage != "ENCRYPT_DECRYPT" || a.Description != "the app key" || a.CreationDate == nil {
		t.Fatalf("the app key in key list: %+v", a)
	}
	if o.KeyState != "Disabled" || o.KeySpec != "ECC_NIST_P256" || o.KeyUsage != "SIGN_VERIFY" {
		t.Fatalf("the other key in key list: %+v", o)
	}
	if l := decode[[]keyListEntry](t, mustRun(t, "-o", "json", "key", "list", "--state", "Disabled")); len(l) != 1 || l[0].KeyId != other {
		t.Fatalf("--state Disabled: %+v", l)
	}
	if l := decode[[]keyListEntry](t, mustRun(t, "-o", "json", "key", "list", "--alias-prefix", "alias/app")); len(l) != 1 || l[0].KeyId != app {
		t.Fatalf("--alias-prefix alias/app: %+v", l)
	}
	if al := decode[[]aliasView](t, mustRun(t, "-o", "json", "alias", "list")); len(al) != 1 || al[0].AliasName != "alias/app-main" || al[0].KeyState != "Enabled" {
		t.Fatalf("alias list: %+v", al)
	}
	table := strings.Split(strings.TrimSpace(mustRun(t, "key", "list")), "\n")
	if strings.Join(strings.Fields(table[0]), " ") != "KEY ID ALIASES STATE SPEC USAGE CREATED DESCRIPTION" || len(table) != 3 {
		t.Fatalf("key list table:\n%s", strings.Join(table, "\n"))
	}
	for _, l := range table[1:] {
		if f := strings.Fields(l); f[0] == app && (f[1] != "alias/app-main" || f[2] != "Enabled" || strings.Join(f[6:], " ") != "the app key") {
			t.Fatalf("the app key's row: %q", l)
		}
	}
}

// TestClientPrincipalUpdateRotate: principal update replaces the policy
// (the principal can then do what it could not), rotate-secret makes the
// old secret fail and the new one work.
func TestClientPrincipalUpdateRotate(t *testing.T) {
	startServer(t)
	key := createKey(t)
	dir := t.TempDir()
	old := filepath.Join(dir, "old")
	if err := os.WriteFile(old, []byte(mustRun(t, "principal", "create", "rotating", "--allow", "kms:ListKeys=*", "--print", "credentials-file")), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "datakey", "--key", key, "--credentials-file", old); r.code != ExitAuth {
		t.Fatalf("datakey before the update: %+v", r)
	}
	mustRun(t, "principal", "update", "rotating", "--allow", "encrypt-files="+key)
	mustRun(t, "datakey", "--key", key, "--credentials-file", old)
	newer := filepath.Join(dir, "new")
	if err := os.WriteFile(newer, []byte(mustRun(t, "principal", "rotate-secret", "rotating", "--yes", "--print", "credentials-file")), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "datakey", "--key", key, "--credentials-file", old); r.code != ExitAuth || !strings.Contains(r.stderr, "InvalidSignatureException") {
		t.Fatalf("the old secret after rotate-secret: %+v", r)
	}
	mustRun(t, "datakey", "--key", key, "--credentials-file", newer)
	if r := run(t, "principal", "rotate-secret", "nobody-by-that-name", "--yes"); r.code != ExitNotFound {
		t.Fatalf("rotate-secret of nobody: %+v", r)
	}
}

// TestClientKeyListDescribesMany: key list describes more keys than it
// has calls in flight, each with its own state, in ListKeys's order (by
// key ID), and --state filters after describing.
func TestClientKeyListDescribesMany(t *testing.T) {
	startServer(t)
	disabled := map[string]bool{}
	for i := range 3*describeConcurrency + 1 {
		id := createKey(t)
		if i%3 == 0 {
			mustRun(t, "key", "disable", "--yes", id)
			disabled[id] = true
		}
	}
	all := decode[[]keyListEntry](t, mustRun(t, "-o", "json", "key", "list"))
	if len(all) != 3*describeConcurrency+1 {
		t.Fatalf("key list shows %d keys, want %d", len(all), 3*describeConcurrency+1)
	}
	if !slices.IsSortedFunc(all, func(a, b keyListEntry) int { return strings.Compare(a.KeyId, b.KeyId) }) {
		t.Fatalf("key list is not in ListKeys's order: %v", all)
	}
	for _, k := range all {
		want := "Enabled"
		if disabled[k.KeyId] {
			want = "Disabled"
		}
		if k.KeyState != want || k.CreationDate == nil {
			t.Errorf("key %s listed as %+v, want state %s and a creation date", k.KeyId, k, want)
		}
	}
	if l := decode[[]keyListEntry](t, mustRun(t, "-o", "json", "key", "list", "--state", "disabled")); len(l) != len(disabled) {
		t.Fatalf("--state disabled lists %d keys, want %d", len(l), len(disabled))
	}
}

// TestClientRegionFromAWSEnvironment: with no --region or HSMKMS_REGION, a
// client command signs for AWS_REGION (else AWS_DEFAULT_REGION), as the aws
// CLI does (found by review: it signed for us-east-1 whatever they said);
// --region wins over them.
func TestClientRegionFromAWSEnvironment(t *testing.T) {
	startServer(t) // serves us-east-1
	t.Setenv("AWS_DEFAULT_REGION", "eu-west-1")
	if r := run(t, "key", "list"); r.code != ExitAuth || !strings.Contains(r.stderr, "eu-west-1") {
		t.Fatalf("key list with AWS_DEFAULT_REGION=eu-west-1: exit %d, %s; want the server's refusal of eu-west-1", r.code, r.stderr)
	}
	t.Setenv("AWS_REGION", "us-east-1") // wins over AWS_DEFAULT_REGION
	if r := run(t, "key", "list"); r.code != ExitOK {
		t.Fatalf("key list with AWS_REGION=us-east-1: exit %d, %s", r.code, r.stderr)
	}
	t.Setenv("AWS_REGION", "eu-west-1")
	if r := run(t, "key", "list", "--region", "us-east-1"); r.code != ExitOK {
		t.Fatalf("key list --region us-east-1 with AWS_REGION=eu-west-1: exit %d, %s", r.code, r.stderr)
	}
}
