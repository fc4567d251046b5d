package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// awsCLI runs the aws CLI against one server with the given credentials
// and nothing of the machine's AWS configuration.
type awsCLI struct {
	path     string
	endpoint string
	env      []string
	dir      string
}

// newAWSCLI finds the aws CLI (failing the test, never skipping it, when
// it is missing) and prepares an environment of its own: the credentials,
// the region, and empty config and credentials files.
func newAWSCLI(t *testing.T, ts *testServer, id, secret string) *awsCLI {
	t.Helper()
	path, err := exec.LookPath("aws")
	if err != nil {
		t.Fatalf("the aws CLI is not on PATH (%v): run make deps", err)
	}
	dir := t.TempDir()
	config, creds := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	for _, f := range []string{config, creds} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID="+id,
		"AWS_SECRET_ACCESS_KEY="+secret,
		"AWS_DEFAULT_REGION="+region,
		"AWS_CONFIG_FILE="+config,
		"AWS_SHARED_CREDENTIALS_FILE="+creds,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_RETRY_MODE=standard",
		"AWS_MAX_ATTEMPTS=1",
		"AWS_PAGER=",
	)
	return &awsCLI{path: path, endpoint: ts.endpoint, env: env, dir: dir}
}

// run runs `aws kms <args>` with JSON output and returns stdout and stderr;
// err is non-nil when it exits non-zero. A minute bounds each run.
func (a *awsCLI) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.path, append([]string{"kms", "--endpoint-url", a.endpoint, "--output", "json"}, args...)...)
	cmd.Env, cmd.Dir = a.env, a.dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("aws kms %s did not finish within a minute", strings.Join(args, " "))
	}
	return out.String(), errOut.String(), err
}

// file writes b to a file of the CLI's directory and returns its fileb://
// URL.
func (a *awsCLI) file(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(a.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return "fileb://" + p
}

// cliOut is the union of the CLI outputs the scenario reads.
type cliOut struct {
	KeyMetadata struct {
		KeyId, KeyState, CurrentKeyMaterialId string
	}
	KeyId          string
	KeyState       string
	CiphertextBlob string
	Plaintext      string
	KeyMaterialId  string
}

// b64 decodes a base64 blob of the CLI's JSON output.
func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		t.Fatalf("%q is not a non-empty base64 blob: %v", s, err)
	}
	return b
}

// TestAWSCLIScenario runs the aws CLI against the server, as an operator
// would: create a key and an alias, generate a data key, encrypt and
// decrypt files (fileb://), rotate, decrypt a ciphertext made before the
// rotation, disable the key (the CLI exits non-zero naming
// DisabledException) and schedule its deletion (PendingDeletion).
func TestAWSCLIScenario(t *testing.T) {
	ts := startServer(t)
	cli := newAWSCLI(t, ts, rootID, rootSecret)
	plain := []byte("a file the aws CLI encrypts\n\x00\xff binary too")
	var keyID string
	var oldCT []byte

	steps := []struct {
		name string
		args func() []string
		// fails names the error the CLI must exit non-zero with ("" for
		// success).
		fails string
		check func(t *testing.T, out cliOut)
	}{
		{"create-key", func() []string { return []string{"create-key", "--description", "made by the aws CLI"} }, "",
			func(t *testing.T, out cliOut) {
				if out.KeyMetadata.KeyId == "" || out.KeyMetadata.KeyState != "Enabled" {
					t.Fatalf("create-key = %+v", out)
				}
				keyID = out.KeyMetadata.KeyId
			}},
		{"create-alias", func() []string {
			return []string{"create-alias", "--alias-name", "alias/cli-test", "--target-key-id", keyID}
		}, "", nil},
		{"generate-data-key and decrypt it", func() []string {
			return []string{"generate-data-key", "--key-id", "alias/cli-test", "--key-spec", "AES_256"}
		}, "", func(t *testing.T, out cliOut) {
			dk := b64(t, out.Plaintext)
			if len(dk) != 32 || out.KeyId != keyARNPre+keyID {
				t.Fatalf("generate-data-key: %d-byte key from %s, want 32 bytes from %s", len(dk), out.KeyId, keyID)
			}
			stdout, stderr, err := cli.run(t, "decrypt", "--ciphertext-blob", cli.file(t, "dk.bin", b64(t, out.CiphertextBlob)))
			if err != nil {
				t.Fatalf("decrypt of the data key: %v\n%s", err, stderr)
			}
			var dec cliOut
			if err := json.Unmarshal([]byte(stdout), &dec); err != nil || !bytes.Equal(b64(t, dec.Plaintext), dk) {
				t.Fatalf("decrypt of the data key = %s, %v; want the data key", stdout, err)
			}
		}},
		{"encrypt a file", func() []string {
			return []string{"encrypt", "--key-id", "alias/cli-test", "--plaintext", cli.file(t, "plain.bin", plain),
				"--encryption-context", "purpose=cli-test"}
		}, "", func(t *testing.T, out cliOut) {
			oldCT = b64(t, out.CiphertextBlob)
			if bytes.Contains(oldCT, plain[:10]) {
				t.Fatal("the ciphertext holds the plaintext")
			}
		}},
		{"decrypt the file", func() []string {
			return []string{"decrypt", "--ciphertext-blob", cli.file(t, "old.bin", oldCT), "--encryption-context", "purpose=cli-test"}
		}, "", func(t *testing.T, out cliOut) {
			if !bytes.Equal(b64(t, out.Plaintext), plain) || out.KeyId != keyARNPre+keyID || out.KeyMaterialId != "v1" {
				t.Fatalf("decrypt = %+v, want the file back, from key material v1", out)
			}
		}},
		{"rotate-key-on-demand", func() []string { return []string{"rotate-key-on-demand", "--key-id", keyID} }, "",
			func(t *testing.T, out cliOut) {
				if out.KeyId != keyID {
					t.Fatalf("rotate-key-on-demand = %+v", out)
				}
			}},
		{"describe-key after the rotation", func() []string { return []string{"describe-key", "--key-id", "alias/cli-test"} }, "",
			func(t *testing.T, out cliOut) {
				if out.KeyMetadata.KeyId != keyID || out.KeyMetadata.CurrentKeyMaterialId != "v2" {
					t.Fatalf("describe-key after the rotation = %+v, want current key material v2", out.KeyMetadata)
				}
			}},
		{"decrypt a ciphertext made before the rotation", func() []string {
			return []string{"decrypt", "--ciphertext-blob", cli.file(t, "old.bin", oldCT), "--encryption-context", "purpose=cli-test"}
		}, "", func(t *testing.T, out cliOut) {
			if !bytes.Equal(b64(t, out.Plaintext), plain) || out.KeyMaterialId != "v1" {
				t.Fatalf("decrypt after the rotation = %+v, want the file back, from key material v1", out)
			}
		}},
		{"disable-key", func() []string { return []string{"disable-key", "--key-id", keyID} }, "", nil},
		{"encrypt with the disabled key", func() []string {
			return []string{"encrypt", "--key-id", "alias/cli-test", "--plaintext", cli.file(t, "plain.bin", plain)}
		}, "DisabledException", nil},
		{"schedule-key-deletion", func() []string {
			return []string{"schedule-key-deletion", "--key-id", keyID, "--pending-window-in-days", "7"}
		}, "", func(t *testing.T, out cliOut) {
			if out.KeyState != "PendingDeletion" || out.KeyId != keyARNPre+keyID {
				t.Fatalf("schedule-key-deletion = %+v, want KeyState PendingDeletion", out)
			}
		}},
	}
	for _, s := range steps {
		args := s.args()
		stdout, stderr, err := cli.run(t, args...)
		if s.fails != "" {
			if err == nil || !strings.Contains(stderr, s.fails) {
				t.Fatalf("%s: aws kms %s: err %v, stderr %q; want a non-zero exit naming %s", s.name, strings.Join(args, " "), err, stderr, s.fails)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: aws kms %s: %v\n%s", s.name, strings.Join(args, " "), err, stderr)
		}
		var out cliOut
		if strings.TrimSpace(stdout) != "" {
			if err := json.Unmarshal([]byte(stdout), &out); err != nil {
				t.Fatalf("%s: output %q is not JSON: %v", s.name, stdout, err)
			}
		}
		if s.check != nil {
			s.check(t, out)
		}
	}
}
