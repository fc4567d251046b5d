package cli

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCheckOutputLinks: a link to a FIFO or device is written through, as
// the node itself is, with or without --force; /dev/stdout is never taken
// for a link to replace (found by review: as root, --force renamed the
// plaintext over /dev/stdout itself); other links are replaced only with
// --force.
func TestCheckOutputLinks(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	toFIFO, toNull, toRegular := filepath.Join(dir, "to-fifo"), filepath.Join(dir, "to-null"), filepath.Join(dir, "to-regular")
	for link, target := range map[string]string{toFIFO: fifo, toNull: os.DevNull, toRegular: regular} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		path  string
		force bool
		want  outputMode
		fails bool
	}{
		{toFIFO, false, outDirect, false},
		{toNull, true, outDirect, false},
		{toRegular, false, 0, true},
		{toRegular, true, outAtomic, false},
	} {
		got, err := checkOutput(c.path, c.force)
		if (err != nil) != c.fails || err == nil && got != c.want {
			t.Errorf("checkOutput(%s, force %v) = %v, %v; want %v (fails %v)", filepath.Base(c.path), c.force, got, err, c.want, c.fails)
		}
	}
	// Whatever this test's standard output is, /dev/stdout is written
	// through or refused, never replaced.
	if got, err := checkOutput("/dev/stdout", true); err == nil && got != outDirect {
		t.Errorf("checkOutput(/dev/stdout, --force) = %v: it would be replaced", got)
	}
}

// TestWriteAtomicallyKeepsAFileThatAppeared: a file that appears at --out
// while the command writes is not replaced without --force (found by
// review: checked once at the start, it was renamed over), and no
// temporary file is left; with --force it is replaced.
func TestWriteAtomicallyKeepsAFileThatAppeared(t *testing.T) {
	for _, replace := range []bool{false, true} {
		dir := t.TempDir()
		out := filepath.Join(dir, "out")
		err := writeAtomically(&tempFiles{paths: map[string]bool{}}, out, replace, func(w io.Writer) error {
			if err := os.WriteFile(out, []byte("theirs"), 0o600); err != nil {
				return err
			}
			_, err := w.Write([]byte("mine"))
			return err
		})
		got, _ := os.ReadFile(out)
		want := "theirs"
		if replace {
			want = "mine"
		}
		if string(got) != want || (err == nil) != replace {
			t.Errorf("replace %v: --out holds %q, error %v; want %q", replace, got, err, want)
		}
		if left, _ := os.ReadDir(dir); len(left) != 1 {
			t.Errorf("replace %v: the directory holds %d entries, want only --out", replace, len(left))
		}
	}
}
