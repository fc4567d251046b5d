package tests

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmePort is the fixed address of `make run` and the README's examples.
const readmePort = "127.0.0.1:8080"

// readmeBlock returns the one fenced code block between the README's
// <!-- name:begin --> and <!-- name:end --> markers.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	_, rest, ok := strings.Cut(text, begin)
	if !ok {
		t.Fatalf("README.md has no %s marker", begin)
	}
	section, _, ok := strings.Cut(rest, end)
	if !ok {
		t.Fatalf("README.md has no %s marker after %s", end, begin)
	}
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```") && !in:
			in, cur = true, nil
		case strings.HasPrefix(line, "```") && in:
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	if in || len(blocks) != 1 {
		t.Fatalf("want one closed fenced block between %s and %s, got %d (unclosed: %v):\n%s", begin, end, len(blocks), in, section)
	}
	return blocks[0]
}

// TestREADMEQuickstart runs the README's quickstart as written, in a
// directory laid out like a checkout after `make build`, against the
// server `make run` starts, and checks what the README says it shows: the
// plaintext back, and an audit record of the Decrypt with key version 1.
func TestREADMEQuickstart(t *testing.T) {
	block := readmeBlock(t, "quickstart")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hsmkmsBin, filepath.Join(dir, "bin", "hsmkms")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "quickstart.sh")
	if err := os.WriteFile(script, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t)
	requirePortFree(t, readmePort, "the README's quickstart (make run) listens there")
	// What `make run` runs, from the checkout.
	srv := s.startServer(dir, "./bin/hsmkms", "serve", "--dev", "--dev-dir", ".hsmkms")
	if got := srv.exports["HSMKMS_ENDPOINT"]; got != "http://"+readmePort {
		t.Fatalf("make run's server exports the endpoint %q, want http://%s", got, readmePort)
	}

	r := s.exec(runOpts{dir: dir}, "bash", "-euo", "pipefail", script)
	if r.code != 0 {
		t.Fatalf("the quickstart fails as written: %v", r)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if !containsLine(lines, "quarterly numbers") {
		t.Errorf("the quickstart does not print the decrypted file: %v", r)
	}
	var keyID string
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "key id"); ok {
			keyID = strings.TrimSpace(v)
		}
	}
	if keyID == "" {
		t.Errorf("key create printed no key id: %v", r)
	}

	var rec struct {
		Audit *struct {
			Action            string            `json:"action"`
			KeyID             string            `json:"key_id"`
			KeyVersion        int               `json:"key_version"`
			EncryptionContext map[string]string `json:"encryption_context"`
			Outcome           string            `json:"outcome"`
			Principal         string            `json:"principal"`
		} `json:"audit"`
	}
	last := lines[len(lines)-1]
	if err := json.Unmarshal([]byte(last), &rec); err != nil || rec.Audit == nil {
		t.Fatalf("the last line is not an audit record (%v): %q", err, last)
	}
	a := rec.Audit
	// The file is signed (the default suite), so its context also holds
	// the verification key, as the README says.
	if a.Action != "kms:Decrypt" || a.KeyVersion != 1 || a.Outcome != "allowed" ||
		len(a.EncryptionContext) != 2 || a.EncryptionContext["team"] != "finance" || a.EncryptionContext["aws-crypto-public-key"] == "" {
		t.Errorf("the last audit record is not the allowed kms:Decrypt of key version 1 with context team=finance and the file's verification key: %s", last)
	}
	if keyID != "" && a.KeyID != keyID {
		t.Errorf("the audit record names key %q, the quickstart created %q", a.KeyID, keyID)
	}
	if a.Principal != srv.exports["AWS_ACCESS_KEY_ID"] {
		t.Errorf("the audit record names principal %q, want the root %q", a.Principal, srv.exports["AWS_ACCESS_KEY_ID"])
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// runMyTests stands for an application's tests in the CI example: it uses
// the aws CLI with what the example exported (aws CLI v1 does not read
// AWS_ENDPOINT_URL_KMS itself, hence --endpoint-url).
const runMyTests = `#!/usr/bin/env bash
set -euo pipefail
: "${AWS_ENDPOINT_URL_KMS:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}" "${AWS_DEFAULT_REGION:?}"
key_id=$(aws kms create-key --endpoint-url "$AWS_ENDPOINT_URL_KMS" --description ci-example --query KeyMetadata.KeyId --output text)
aws kms generate-data-key --endpoint-url "$AWS_ENDPOINT_URL_KMS" --key-id "$key_id" --key-spec AES_256 --output json > datakey.json
echo "$key_id" > tests-ran
`

// TestREADMECIExample runs the README's CI example as a script with
// hsmkms on PATH and an application test that uses the aws CLI, and checks
// that the test ran against the server and that the ephemeral dev token
// and data are gone once the script has exited.
func TestREADMECIExample(t *testing.T) {
	block := readmeBlock(t, "ci-example")
	requireTool(t, "aws", "awscli")
	dir, binDir, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.Symlink(hsmkmsBin, filepath.Join(binDir, "hsmkms")); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"ci.sh": block, "run-my-tests.sh": runMyTests} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := newSandbox(t)
	requirePortFree(t, readmePort, "the README's CI example listens there")
	r := s.exec(runOpts{dir: dir, env: []string{"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"), "TMPDIR=" + tmp}}, "./ci.sh")
	if r.code != 0 {
		t.Fatalf("the CI example fails: %v", r)
	}

	keyID, err := os.ReadFile(filepath.Join(dir, "tests-ran"))
	if err != nil {
		t.Fatalf("run-my-tests.sh did not finish: %v\n%v", err, r)
	}
	var dk struct {
		KeyId, Plaintext, CiphertextBlob string
	}
	data, err := os.ReadFile(filepath.Join(dir, "datakey.json"))
	if err == nil {
		err = json.Unmarshal(data, &dk)
	}
	if err != nil {
		t.Fatalf("aws kms generate-data-key: %v: %s", err, data)
	}
	plain, err := base64.StdEncoding.DecodeString(dk.Plaintext)
	if err != nil || len(plain) != 32 || dk.CiphertextBlob == "" || !strings.HasSuffix(dk.KeyId, "key/"+strings.TrimSpace(string(keyID))) {
		t.Errorf("not a 256-bit data key of key %s: %s", keyID, data)
	}

	m := regexp.MustCompile(`the dev token and data in (\S+) are removed on exit`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("the dev server did not say where its ephemeral dev dir is: %v", r)
	}
	if !strings.HasPrefix(m[1], tmp+string(os.PathSeparator)) {
		t.Errorf("the ephemeral dev dir %s is not in TMPDIR %s", m[1], tmp)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the ephemeral dev dir %s is still there after the script exited (%v)", m[1], err)
	}
}

// TestREADMEAWSCLIBlock runs the README's aws CLI block against a dev
// server: its commands as written, its two export lines replaced by the
// server's own endpoint and credentials.
func TestREADMEAWSCLIBlock(t *testing.T) {
	requireTool(t, "aws", "awscli")
	block := readmeBlock(t, "aws-cli")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if !strings.HasPrefix(l, "export ") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 3 {
		t.Fatalf("the aws CLI block has %d commands", len(lines))
	}
	s := newSandbox(t)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	env := append(srv.clientEnv(), "AWS_ENDPOINT_URL_KMS="+srv.exports["AWS_ENDPOINT_URL_KMS"], "AWS_DEFAULT_REGION="+srv.exports["AWS_REGION"])
	r := s.exec(runOpts{env: env}, "bash", "-euo", "pipefail", "-c", strings.Join(lines, "\n"))
	if r.code != 0 || !strings.Contains(r.stdout, "CiphertextBlob") {
		t.Fatalf("the README's aws CLI block: %v", r)
	}
}
