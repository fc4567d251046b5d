package tests

import (
	"bytes"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// TestFilesProgressOnTerminal proves the progress bar (issue 13, and the
// line left uncleared of issue 18): with standard error a terminal (a
// pty), encrypting an 8 MiB file draws a bar that reaches 100% and ends
// its line; with --quiet nothing is drawn.
func TestFilesProgressOnTerminal(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files progress")
	in := f.write(t, "big.bin", filesPlaintext(8<<20))
	run := func(t *testing.T, args ...string) (int, string) {
		t.Helper()
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatalf("no pty: %v", err)
		}
		defer ptmx.Close()
		cmd := exec.Command(hsmkmsBin, args...)
		cmd.Env = append(slices.Clone(f.sandboxEnv), f.env...)
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, tty
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tty.Close() // the child holds its own
		var drawn bytes.Buffer
		copied := make(chan struct{})
		go func() { io.Copy(&drawn, ptmx); close(copied) }() // ends with EIO once the child is gone
		cmd.Wait()
		<-copied
		if stdout.Len() != 0 {
			t.Errorf("standard output: %q", stdout.String())
		}
		return cmd.ProcessState.ExitCode(), drawn.String()
	}
	code, drawn := run(t, "encrypt", "--key", key, "--in", in, "--out", f.path("big.enc"))
	if code != 0 || !strings.Contains(drawn, "big.bin") || !strings.Contains(drawn, "100%") || !strings.Contains(drawn, "8.0 MiB") {
		t.Fatalf("exit %d; the terminal got %q: want a bar for big.bin reaching 100%% of 8.0 MiB", code, drawn)
	}
	if last := drawn[strings.LastIndex(drawn, "100%"):]; !strings.HasSuffix(strings.TrimRight(last, " "), "\n") {
		t.Errorf("the bar's line is not ended: %q", last)
	}
	code, drawn = run(t, "encrypt", "--quiet", "--key", key, "--in", in, "--out", f.path("quiet.enc"))
	if code != 0 || drawn != "" {
		t.Fatalf("--quiet: exit %d, the terminal got %q", code, drawn)
	}
}
