package cli

import (
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
