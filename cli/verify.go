package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
)

// verifyChildEnv, set in this executable's environment, makes it check the
// snapshot file it names and print the record counts as JSON, and nothing
// else (Main and the package's TestMain call verifyChild first).
const verifyChildEnv = "HSMKMS_VERIFY_SNAPSHOT"

// verifySnapshot checks a snapshot file (bolt.Verify) in a child process
// of this executable. A damaged file can make the check read through
// bbolt's memory map past the file's end, which is a fault that kills the
// process instead of an error (found by review: 2 of 300 random
// corruptions of a store did, and a page offset pointing a gigabyte away
// always does); a child that dies so says the file is damaged, and backup
// and restore go on to report it.
func verifySnapshot(ctx context.Context, path string) (store.Counts, error) {
	var counts store.Counts
	exe, err := os.Executable()
	if err != nil {
		return counts, fmt.Errorf("finding this executable to check the snapshot: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), verifyChildEnv+"="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return counts, errors.New(strings.TrimSpace(stderr.String()))
	case errors.As(err, &exit):
		return counts, fmt.Errorf("the check of %s crashed (%v): the file is damaged", path, exit)
	case err != nil:
		return counts, fmt.Errorf("running the snapshot check: %w", err)
	}
	if err := json.Unmarshal(stdout.Bytes(), &counts); err != nil {
		return counts, fmt.Errorf("reading the snapshot check's counts: %w", err)
	}
	return counts, nil
}

// verifyChild does the check of a child verifySnapshot started, and
// reports whether this process is one and its exit code: 0 with the counts
// on standard output, 1 with the error on standard error.
func verifyChild() (code int, child bool) {
	path, ok := os.LookupEnv(verifyChildEnv)
	if !ok {
		return 0, false
	}
	counts, err := bolt.Verify(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	if err := json.NewEncoder(os.Stdout).Encode(counts); err != nil {
		return 2, true
	}
	return 0, true
}
