package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

// outputMode is how a file command writes --out.
type outputMode int

const (
	// outAtomic writes a temporary file beside the target and renames it
	// into place once everything is verified.
	outAtomic outputMode = iota
	// outDirect writes into an existing character device or FIFO, as to
	// standard output: such a node is never replaced.
	outDirect
)

// forceFlag lets a file command replace an existing --out file. It has no
// environment variable: replacing a file is decided per command.
func forceFlag() cli.Flag {
	return &cli.BoolFlag{Name: "force", Usage: "replace an existing --out file or symbolic link (a device or FIFO is written to, never replaced)"}
}

// checkOutput decides how path is written: atomically where it is absent,
// or a regular file or symbolic link --force lets hsmkms replace (the
// link itself, not its target); directly into a character device or FIFO
// (/dev/null, a pipe). Anything else is refused, and nothing is replaced
// without --force.
func checkOutput(path string, force bool) (outputMode, error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return outAtomic, nil
	}
	if err != nil {
		return 0, fmt.Errorf("--out %s: %w", path, unwrapPath(err))
	}
	switch m := st.Mode(); {
	case m.IsRegular():
		if !force {
			return 0, usagef("--out %s exists; give --force to replace it", path)
		}
		return outAtomic, nil
	case m&fs.ModeSymlink != 0:
		// /dev/stdout and its like: a link to a device or FIFO is written
		// through, as the device itself is; one under /dev or /proc is
		// never replaced (found by review: /dev/stdout counted as a link
		// to replace, and as root --force renamed the plaintext over it).
		if t, err := os.Stat(path); err == nil && t.Mode()&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0 {
			return outDirect, nil
		}
		if systemPath(path) {
			return 0, usagef("--out %s is a link hsmkms does not replace; give - for standard output", path)
		}
		if !force {
			return 0, usagef("--out %s is a symbolic link; give --force to replace the link (its target is left alone)", path)
		}
		return outAtomic, nil
	case m&fs.ModeCharDevice != 0, m&fs.ModeNamedPipe != 0:
		return outDirect, nil
	case m.IsDir():
		return 0, usagef("--out %s is a directory; give a file, or --recursive for a tree", path)
	}
	return 0, usagef("--out %s is a %s, not a regular file, character device or FIFO", path, st.Mode().Type())
}

// systemPath reports whether path is under /dev or /proc, whose links
// belong to the system.
func systemPath(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return true
	}
	return strings.HasPrefix(abs, "/dev/") || strings.HasPrefix(abs, "/proc/")
}

// streams reports whether --out path takes plaintext as it comes, before
// the message's end is verified: standard output, a device or a FIFO.
func streams(path string) bool {
	if path == "-" {
		return true
	}
	mode, err := checkOutput(path, true)
	return err == nil && mode == outDirect
}

// writeDirect writes into an existing device or FIFO, without creating,
// truncating or replacing it.
func writeDirect(path string, write func(f *os.File) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, unwrapPath(err))
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
