package cli

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"
)

// tempFiles are the temporary files encrypt and decrypt are writing. On
// SIGINT, SIGTERM or SIGHUP they are removed before the process exits
// (128 + the signal's number, as a shell reports it): a temporary file
// holds unverified plaintext, or part of a message, and the command's
// promise is that nothing partial is left. The files are made mode 0600,
// so until then only their owner can read them.
type tempFiles struct {
	mu    sync.Mutex
	paths map[string]bool
}

// watchInterrupts starts removing c's temporary files on a signal; stop
// ends that.
func watchInterrupts(c *cli.Context) (temps *tempFiles, stop func()) {
	temps = &tempFiles{paths: map[string]bool{}}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			temps.mu.Lock() // held to the exit: no rename can follow
			for p := range temps.paths {
				os.Remove(p)
			}
			fmt.Fprintf(c.App.ErrWriter, "\nhsmkms: %s: interrupted (%v); removed the partial output\n", c.Command.Name, sig)
			os.Exit(128 + int(sig.(syscall.Signal)))
		case <-done:
		}
	}()
	return temps, func() {
		signal.Stop(sigs)
		close(done)
	}
}

// add records a temporary file being written; nil records nothing.
func (t *tempFiles) add(path string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.paths[path] = true
	t.mu.Unlock()
}

// finish runs end (the rename into place, or the removal) under the lock a
// signal takes, then forgets path: a signal comes before it or after it,
// never between the end and the forgetting.
func (t *tempFiles) finish(path string, end func() error) error {
	if t == nil {
		return end()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	err := end()
	delete(t.paths, path)
	return err
}
