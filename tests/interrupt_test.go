package tests

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFilesInterrupted proves that SIGINT, SIGTERM and SIGHUP during
// encrypt and decrypt (to a file, and --recursive) remove the partial
// output, plaintext included, and exit 128 + the signal's number. The
// single-file commands read from a pipe the test fills only halfway, so
// they are mid-stream, with their temporary file written, when the signal
// comes; the recursive one is in a 1 GiB file.
func TestFilesInterrupted(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files interrupted")
	plain := filesPlaintext(4 << 20)
	msg := f.encrypt(t, "big.txt", plain, "--key", key, "--algorithm", suiteUnsignedName)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		for _, tc := range []struct {
			name  string
			args  []string
			input []byte
		}{
			{"decrypt", []string{"decrypt", "--in", "-"}, msg},
			{"encrypt", []string{"encrypt", "--key", key, "--in", "-"}, plain},
		} {
			t.Run(tc.name+"/"+sig.String(), func(t *testing.T) {
				dir := t.TempDir()
				out := filepath.Join(dir, "out")
				r := interruptMidStream(t, f, append(tc.args, "--out", out), tc.input, dir, sig)
				if want := 128 + int(sig); r.code != want || !strings.Contains(r.stderr, "interrupted") {
					t.Fatalf("want exit %d saying it was interrupted: %v", want, r)
				}
				noPlaintext(t, r)
				if left, _ := os.ReadDir(dir); len(left) != 0 {
					t.Fatalf("left behind: %v", left)
				}
			})
		}
	}
	t.Run("recursive", func(t *testing.T) {
		// A large sparse file takes seconds to encrypt: the signal comes
		// while its temporary file is being written.
		in, out := filepath.Join(t.TempDir(), "in"), filepath.Join(t.TempDir(), "out")
		if err := os.MkdirAll(filepath.Join(in, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		big, err := os.Create(filepath.Join(in, "sub", "big"))
		if err != nil {
			t.Fatal(err)
		}
		if err := big.Truncate(1 << 30); err != nil {
			t.Fatal(err)
		}
		big.Close()
		r := interruptMidStream(t, f, []string{"encrypt", "--recursive", "--key", key, "--in", in, "--out", out}, nil,
			filepath.Join(out, "sub"), syscall.SIGTERM)
		if want := 128 + int(syscall.SIGTERM); r.code != want {
			t.Fatalf("want exit %d: %v", want, r)
		}
		if left, _ := os.ReadDir(filepath.Join(out, "sub")); len(left) != 0 {
			t.Fatalf("left behind: %v", left)
		}
	})
}

// interruptMidStream runs hsmkms with args, feeds it the first half of
// input through a pipe, waits until a temporary file in dir has bytes,
// sends sig, and returns how it ended.
func interruptMidStream(t *testing.T, f *filesEnv, args []string, input []byte, dir string, sig syscall.Signal) result {
	t.Helper()
	cmd := exec.Command(hsmkmsBin, args...)
	cmd.Env = append(slices.Clone(f.sandboxEnv), f.env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	go func() { stdin.Write(input[:len(input)/2]) }() // and no more: the command waits for the rest
	deadline := time.Now().Add(30 * time.Second)
	for !tempWritten(dir) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no temporary file with bytes appeared in %s; stderr: %s", dir, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%v did not end the command", sig)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	stdin.Close()
	// A process the signal killed (it did not handle it) has exit code -1.
	return result{args: args, code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// tempWritten reports whether dir holds a temporary output with bytes.
func tempWritten(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.Contains(e.Name(), ".hsmkms-") && info.Size() > 0 {
			return true
		}
	}
	return false
}
