package cli

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTransformFileRefusesNonRegular: an entry the walk listed as a regular
// file but that became a symbolic link or a FIFO before its turn is refused
// at once, reported as skipped, and nothing is read through it or written.
func TestTransformFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "secret")
	if err := os.WriteFile(target, []byte("not for the link"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in string
		mode     fs.FileMode
	}{
		{"symlink", link, fs.ModeSymlink},
		{"fifo", fifo, fs.ModeNamedPipe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".out")
			read := false
			fn := func(r io.Reader, w io.Writer) error {
				read = true
				_, err := io.Copy(w, r)
				return err
			}
			type result struct {
				n   int64
				err error
			}
			done := make(chan result, 1)
			go func() {
				n, err := transformFile(&tempFiles{paths: map[string]bool{}}, tc.in, out, false, fn)
				done <- result{n, err}
			}()
			var res result
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				// Blocked opening the FIFO: a writer releases it.
				if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				t.Fatalf("transformFile(%s) blocked", tc.in)
			}
			var nr *notRegularError
			if !errors.As(res.err, &nr) || nr.mode.Type() != tc.mode {
				t.Fatalf("transformFile(%s) = %d, %v; want a not-regular-file (%v) refusal", tc.in, res.n, res.err, tc.mode)
			}
			if read {
				t.Errorf("transformFile(%s) read its input", tc.in)
			}
			if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("transformFile(%s) wrote %s (%v)", tc.in, out, err)
			}
			r := treeFileResult(tc.in, out, "encrypted", res.n, res.err)
			if r.Status != "skipped" || !strings.Contains(r.Error, "not a regular file") {
				t.Errorf("reported as %+v, want skipped: not a regular file", r)
			}
		})
	}
	// A regular file still goes through, and failures stay failures.
	out := filepath.Join(dir, "secret.out")
	n, err := transformFile(&tempFiles{paths: map[string]bool{}}, target, out, false, func(r io.Reader, w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
	if got, _ := os.ReadFile(out); err != nil || n != 16 || string(got) != "not for the link" {
		t.Fatalf("transformFile(regular) = %d, %v, wrote %q", n, err, got)
	}
	if r := treeFileResult(target, out, "encrypted", n, nil); r.Status != "encrypted" || r.Bytes != 16 {
		t.Errorf("success reported as %+v", r)
	}
	if r := treeFileResult(target, out, "encrypted", 0, errors.New("boom")); r.Status != "failed" || r.Error != "boom" {
		t.Errorf("failure reported as %+v", r)
	}
}
