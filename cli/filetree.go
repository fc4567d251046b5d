package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Directories: encrypt and decrypt --recursive walk --in and write the same
// tree under --out, one message per regular file. Every entry is reported;
// a file that fails is reported and the walk goes on; the command fails at
// the end if any file did.

// treeResult is one entry of a recursive run, as reported.
type treeResult struct {
	In     string `json:"in"`
	Out    string `json:"out,omitempty"`
	Status string `json:"status"` // the verb (encrypted, decrypted), "failed" or "skipped"
	Bytes  int64  `json:"bytes,omitempty"`
	Error  string `json:"error,omitempty"`
}

// treeNames maps an input's path relative to --in to its output's.
type treeNames func(rel string) string

// encryptedName appends the suffix (".encrypted" unless --suffix).
func encryptedName(suffix string) treeNames {
	return func(rel string) string { return rel + suffix }
}

// decryptedName removes ".encrypted" or, without it, appends ".decrypted",
// as the aws-encryption-cli names its outputs; --suffix appends its own.
func decryptedName(suffix string, set bool) treeNames {
	return func(rel string) string {
		if set {
			return rel + suffix
		}
		if base, ok := strings.CutSuffix(rel, ".encrypted"); ok && filepath.Base(base) != "." && filepath.Base(rel) != ".encrypted" {
			return base
		}
		return rel + ".decrypted"
	}
}

// transformTree runs fn on every regular file under inDir, writing each
// output atomically under outDir at names(rel). Directories are made with
// mode 0700 (they hold plaintext on one side or the other); symbolic links
// and special files are skipped and reported.
func transformTree(c *cli.Context, verb, inDir, outDir string, names treeNames, fn func(io.Reader, io.Writer) error) error {
	if err := checkTree(inDir, outDir); err != nil {
		return err
	}
	temps, stop := watchInterrupts(c)
	defer stop()
	results := []treeResult{} // [] in JSON for an empty tree, not null
	failed := 0
	report := func(r treeResult) {
		if r.Status == "failed" {
			failed++
		}
		results = append(results, r)
		if outputFormat(c) != "json" {
			printTreeResult(c.App.Writer, r)
		}
	}
	walkErr := filepath.WalkDir(inDir, func(path string, d fs.DirEntry, err error) error {
		if cerr := c.Context.Err(); cerr != nil {
			return cerr
		}
		rel, rerr := filepath.Rel(inDir, path)
		if rerr != nil {
			return rerr
		}
		if err != nil {
			// An unreadable directory: reported, and the walk goes on.
			report(treeResult{In: path, Status: "failed", Error: err.Error()})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(filepath.Join(outDir, rel), 0o700); err != nil {
				report(treeResult{In: path, Status: "failed", Error: err.Error()})
				return fs.SkipDir
			}
			return nil
		case !d.Type().IsRegular():
			report(treeResult{In: path, Status: "skipped", Error: "not a regular file (" + d.Type().String() + ")"})
			return nil
		}
		out := filepath.Join(outDir, names(rel))
		if mode, err := checkOutput(out, c.Bool("force")); err != nil || mode != outAtomic {
			if err == nil {
				err = fmt.Errorf("%s is a device or FIFO", out)
			}
			report(treeResult{In: path, Out: out, Status: "failed", Error: err.Error()})
			return nil
		}
		n, err := transformFile(temps, path, out, c.Bool("force"), fn)
		report(treeFileResult(path, out, verb, n, err))
		return nil
	})
	if outputFormat(c) == "json" {
		if err := printOut(c, results, nil); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.App.Writer, "%d %s, %d failed, %d skipped\n", countStatus(results, verb), verb, failed, countStatus(results, "skipped"))
	}
	if walkErr != nil {
		return walkErr
	}
	if failed > 0 {
		return cli.Exit(fmt.Sprintf("hsmkms: %d of %d entries under %s failed", failed, len(results), inDir), ExitError)
	}
	return nil
}

// checkTree refuses an input that is not a directory, and an output inside
// the input (the walk would read what it writes) or the input itself.
func checkTree(inDir, outDir string) error {
	st, err := os.Stat(inDir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return usagef("--recursive needs a directory as --in; %s is not one", inDir)
	}
	// Compared with symbolic links resolved: an --out that is, or is under,
	// a link into --in is inside it.
	realIn, err := resolvePath(inDir)
	if err != nil {
		return err
	}
	realOut, err := resolvePath(outDir)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(realIn, realOut); err == nil &&
		(rel == "." || rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))) {
		return usagef("--out %s is inside --in %s: give a directory outside it", outDir, inDir)
	}
	return nil
}

// resolvePath is path made absolute (and clean, as the walk's joins make
// it) with its symbolic links resolved. A path that does not exist yet is
// its nearest existing ancestor, resolved, with the rest appended.
func resolvePath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	for {
		resolved, err := filepath.EvalSymlinks(abs)
		if err == nil {
			return filepath.Join(resolved, rest), nil
		}
		parent := filepath.Dir(abs)
		if !errors.Is(err, fs.ErrNotExist) || parent == abs {
			return "", err
		}
		rest = filepath.Join(filepath.Base(abs), rest)
		abs = parent
	}
}

// treeFileResult reports transformFile's outcome for in: an input that is
// no longer a regular file when its turn comes (replaced since the walk
// listed its directory) is skipped, as one listed so would have been.
func treeFileResult(in, out, verb string, n int64, err error) treeResult {
	var nr *notRegularError
	switch {
	case errors.As(err, &nr):
		return treeResult{In: in, Status: "skipped", Error: nr.Error()}
	case err != nil:
		return treeResult{In: in, Out: out, Status: "failed", Error: err.Error()}
	}
	return treeResult{In: in, Out: out, Status: verb, Bytes: n}
}

// notRegularError is transformFile's refusal of an input that is not a
// regular file.
type notRegularError struct{ mode fs.FileMode }

func (e *notRegularError) Error() string {
	return "not a regular file (" + e.mode.Type().String() + ")"
}

// transformFile runs fn from the file in to the file out, written
// atomically (replacing an existing out only if replace), and returns the
// input's size.
func transformFile(temps *tempFiles, in, out string, replace bool, fn func(io.Reader, io.Writer) error) (int64, error) {
	// The walk listed in as a regular file, but it may have been replaced
	// since: a symbolic link is not followed (ELOOP), a FIFO does not block
	// the open, and anything not regular once open is refused.
	f, err := os.OpenFile(in, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		if st, lerr := os.Lstat(in); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
			return 0, &notRegularError{st.Mode()}
		}
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, &notRegularError{st.Mode()}
	}
	return st.Size(), writeAtomically(temps, out, replace, func(w io.Writer) error { return fn(f, w) })
}

func printTreeResult(w io.Writer, r treeResult) {
	switch r.Status {
	case "failed":
		fmt.Fprintf(w, "failed    %s: %s\n", r.In, r.Error)
	case "skipped":
		fmt.Fprintf(w, "skipped   %s: %s\n", r.In, r.Error)
	default:
		fmt.Fprintf(w, "%-9s %s -> %s (%s)\n", r.Status, r.In, r.Out, size(r.Bytes))
	}
}

func countStatus(results []treeResult, status string) int {
	n := 0
	for _, r := range results {
		if r.Status == status {
			n++
		}
	}
	return n
}

// errNotRecursive is the usage error of a directory given without
// --recursive.
var errNotRecursive = errors.New("is a directory: give --recursive to encrypt or decrypt a whole tree")

func recursiveFlag() cli.Flag {
	return &cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, EnvVars: envVars("recursive"),
		Usage: "--in and --out are directories: every regular file under --in goes to the same path under --out (made if missing); each file is reported, and one that fails does not stop the others"}
}

func suffixFlag(value, usage string) cli.Flag {
	return &cli.StringFlag{Name: "suffix", Value: value, EnvVars: envVars("suffix"), Usage: "with --recursive, " + usage}
}

func quietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, EnvVars: envVars("quiet"),
		Usage: "no progress bar (there is one only when standard error is a terminal and the input is over 4 MiB)"}
}

// runFiles transforms --in to --out: one file (transform) or, with
// --recursive, a tree (transformTree).
func runFiles(c *cli.Context, verb string, names treeNames, fn func(io.Reader, io.Writer) error) error {
	in, out := c.String("in"), c.String("out")
	if !c.Bool("recursive") {
		if st, err := os.Stat(in); err == nil && st.IsDir() {
			return usagef("%s %v", in, errNotRecursive)
		}
		return transform(c, fn)
	}
	if in == "" || out == "" || in == "-" || out == "-" {
		return usagef("%s --recursive needs --in DIR and --out DIR", c.Command.Name)
	}
	return transformTree(c, verb, in, out, names, fn)
}
