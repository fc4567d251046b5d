package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilesRecursive proves encrypt and decrypt --recursive: the tree is
// kept (directories made 0700), every entry is reported (a symbolic link
// is skipped, not followed, and said so), the names get and lose
// ".encrypted", each file decrypts byte for byte, one file that fails is
// reported while the others are done and the command exits 1, and bad
// directory arguments are usage errors.
func TestFilesRecursive(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files recursive")
	in := f.path("in")
	files := map[string][]byte{
		"a.txt":            filesPlaintext(100),
		"sub/b.bin":        filesPlaintext(3*frameLen + 1),
		"sub/deeper/empty": {},
	}
	for name, data := range files {
		p := filepath.Join(in, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(in, "link")); err != nil {
		t.Fatal(err)
	}

	enc := f.path("enc")
	r := f.must(t, "encrypt", "--recursive", "--key", key, "--in", in, "--out", enc)
	noPlaintext(t, r)
	for _, want := range []string{
		"encrypted " + filepath.Join(in, "a.txt") + " -> " + filepath.Join(enc, "a.txt.encrypted"),
		"skipped   " + filepath.Join(in, "link") + ": not a regular file",
		"3 encrypted, 0 failed, 1 skipped",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("encrypt --recursive printed\n%s\nwithout %q", r.stdout, want)
		}
	}
	for name := range files {
		msg := f.read(t, filepath.Join(enc, name+".encrypted"))
		if v, id := suiteOf(msg); v != 2 || id != suiteSigned {
			t.Errorf("%s: suite 0x%04X in version %d", name, id, v)
		}
	}
	if st, err := os.Stat(filepath.Join(enc, "sub", "deeper")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the output directory: %v, %v; want mode 0700", st, err)
	}
	if _, err := os.Lstat(filepath.Join(enc, "link.encrypted")); !os.IsNotExist(err) {
		t.Errorf("the symbolic link was encrypted: %v", err)
	}

	dec := f.path("dec")
	r = f.must(t, "decrypt", "--recursive", "--in", enc, "--out", dec)
	noPlaintext(t, r)
	if !strings.Contains(r.stdout, "3 decrypted, 0 failed, 0 skipped") {
		t.Errorf("decrypt --recursive printed\n%s", r.stdout)
	}
	for name, data := range files {
		if got := f.read(t, filepath.Join(dec, name)); !bytes.Equal(got, data) {
			t.Errorf("%s decrypted to %d bytes, want %d", name, len(got), len(data))
		}
	}

	// One bad file among good ones: reported, the others done, exit 1,
	// nothing left of the bad one.
	junk := filepath.Join(enc, "sub", "junk.encrypted")
	if err := os.WriteFile(junk, []byte("not a message "+filesMarker), 0o600); err != nil {
		t.Fatal(err)
	}
	dec2 := f.path("dec2")
	r = f.run(t, nil, "--output", "json", "decrypt", "--recursive", "--in", enc, "--out", dec2)
	if r.code != 1 {
		t.Fatalf("want exit 1 with a file failing: %v", r)
	}
	noPlaintext(t, r)
	var results []struct{ In, Out, Status, Error string }
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
		t.Fatalf("--output json printed %q: %v", r.stdout, err)
	}
	statuses := map[string]string{}
	for _, res := range results {
		statuses[strings.TrimPrefix(res.In, enc+"/")] = res.Status
	}
	want := map[string]string{"a.txt.encrypted": "decrypted", "sub/b.bin.encrypted": "decrypted",
		"sub/deeper/empty.encrypted": "decrypted", "sub/junk.encrypted": "failed"}
	for name, status := range want {
		if statuses[name] != status {
			t.Errorf("%s: %q, want %q (all: %v)", name, statuses[name], status, statuses)
		}
	}
	if got := f.read(t, filepath.Join(dec2, "sub", "b.bin")); !bytes.Equal(got, files["sub/b.bin"]) {
		t.Errorf("a good file beside the bad one was not decrypted")
	}
	noOutput(t, filepath.Join(dec2, "sub", "junk"))
	noTempFiles(t, filepath.Join(dec2, "sub", "junk"))

	// An empty tree is an empty list in JSON, not null.
	empty := f.path("empty-tree")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if r := f.run(t, nil, "--output", "json", "encrypt", "--recursive", "--key", key, "--in", empty, "--out", f.path("empty-out")); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("encrypt --recursive of an empty tree, --output json: %v; want [] and exit 0", r)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"directory without --recursive", []string{"encrypt", "--key", key, "--in", in, "--out", f.path("x")}, "--recursive"},
		{"output inside the input", []string{"encrypt", "--recursive", "--key", key, "--in", in, "--out", filepath.Join(in, "out")}, "inside"},
		{"output is the input", []string{"decrypt", "--recursive", "--in", enc, "--out", enc}, "inside"},
		{"file as input", []string{"encrypt", "--recursive", "--key", key, "--in", filepath.Join(in, "a.txt"), "--out", f.path("y")}, "directory"},
		{"standard output", []string{"decrypt", "--recursive", "--in", enc, "--out", "-"}, "--out DIR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.run(t, nil, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("want exit 2 naming %q: %v", tc.want, r)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(in, "out")); !os.IsNotExist(err) {
		t.Errorf("a refused run made %s: %v", filepath.Join(in, "out"), err)
	}
}

// TestFilesCheckedBeforePlaintext proves that decrypt --context is checked
// before any plaintext reaches standard output, and that encrypt's bad
// frame length and reserved context keys are usage errors (exit 2), not
// failures blamed on the key.
func TestFilesCheckedBeforePlaintext(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files context")
	plain := filesPlaintext(3 * frameLen)
	msg := f.encrypt(t, "ctx.txt", plain, "--key", key, "--algorithm", suiteUnsignedName, "--context", "team=a")
	p := f.write(t, "ctx.enc", msg)
	r := f.run(t, nil, "decrypt", "--in", p, "--out", "-", "--context", "team=b")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "lacks team=b") {
		t.Fatalf("want exit 1, nothing on standard output, naming team=b: %v", r)
	}
	noPlaintext(t, r)
	in := f.write(t, "plain.txt", plain)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"frame length 0", []string{"--frame-length", "0"}, "--frame-length 0"},
		{"frame length too large", []string{"--frame-length", "16777217"}, "--frame-length"},
		{"reserved context key", []string{"--context", "aws-crypto-public-key=x"}, "aws-crypto-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := f.path("out-" + strings.ReplaceAll(tc.name, " ", "-"))
			r := f.run(t, nil, append([]string{"encrypt", "--key", key, "--in", in, "--out", out}, tc.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "key "+key) {
				t.Fatalf("want exit 2 naming %q, not blaming the key: %v", tc.want, r)
			}
			noOutput(t, out)
		})
	}
}

// TestFilesPlainErrors proves the errors of two common slips name what is
// wrong (issue 18): decrypting a file that is not encrypted, and writing
// into a directory that does not exist (named by the target, not by a
// temporary file; exit 4, a path not found, as for a missing input).
func TestFilesPlainErrors(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files errors")
	notMsg := f.write(t, "notes.txt", []byte("quarterly "+filesMarker))
	r := f.run(t, nil, "decrypt", "--in", notMsg, "--out", f.path("notes.out"))
	if r.code != 1 || !strings.Contains(r.stderr, "is not an AWS Encryption SDK message") {
		t.Fatalf("want exit 1 saying the file is not an encrypted message: %v", r)
	}
	noPlaintext(t, r)
	target := filepath.Join(f.path("missing-dir"), "out.enc")
	r = f.run(t, nil, "encrypt", "--key", key, "--in", notMsg, "--out", target)
	if r.code != 4 || !strings.Contains(r.stderr, "writing "+target+": ") || strings.Contains(r.stderr, ".hsmkms-") {
		t.Fatalf("want exit 4 naming %s, not a temporary file: %v", target, r)
	}
}
