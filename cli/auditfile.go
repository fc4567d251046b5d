package cli

import (
	"fmt"
	"os"
	"sync"
)

// auditFile is the audit trail's file, reopened by its path on SIGHUP so
// that logrotate (or an operator) can move it away and have serve write a
// new one, without a restart and without a record lost: a write goes
// either to the old file or to the new one.
type auditFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openAuditFile(path string) (*auditFile, error) {
	f, err := openAuditPath(path)
	if err != nil {
		return nil, err
	}
	return &auditFile{path: path, f: f}, nil
}

func openAuditPath(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	return f, nil
}

// Write appends p to the current file.
func (a *auditFile) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Write(p)
}

// reopen opens the path anew and closes the old file once no write uses
// it. On failure the old file stays in use.
func (a *auditFile) reopen() error {
	f, err := openAuditPath(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.f
	a.f = f
	a.mu.Unlock()
	return old.Close()
}

func (a *auditFile) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.f.Close()
}
