// Package opencryptoki sets up openCryptoki's software token for tests: a
// second, independent PKCS#11 implementation beside SoftHSM2, with a
// different mechanism set (no AES-GCM, no AES key wrap, no EC), a slot
// daemon and its own error codes.
//
// openCryptoki keeps one configuration, one token store and one slot
// daemon (pkcsslotd) per machine: there is no private token per test run.
// Start therefore takes a machine-wide lock for the test's duration,
// refuses to run beside a slot daemon it did not start, resets the soft
// token to its factory state, runs its own pkcsslotd in
// the foreground and initialises the token with known PINs. It needs root
// (the token store is root:pkcs11) and the Debian package opencryptoki,
// which softhsm/deps.sh installs.
package opencryptoki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The soft token: its slot in Debian's default opencryptoki.conf, where
// it keeps its objects, and its factory SO PIN.
const (
	Slot       = 3
	storeDir   = "/var/lib/opencryptoki/swtok"
	shmFile    = "/dev/shm/var.lib.opencryptoki.swtok"
	socketPath = "/run/pkcsslotd.socket"
	lockPath   = "/run/lock/hsmkms-opencryptoki.lock"
	factorySO  = "87654321"
)

// PIN is the user PIN Start sets; openCryptoki takes 4 to 8 characters.
const PIN = "12345678"

// ModulePaths lists where distributions install the openCryptoki module.
var ModulePaths = []string{
	"/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so",
	"/usr/lib/aarch64-linux-gnu/pkcs11/libopencryptoki.so",
	"/usr/lib/s390x-linux-gnu/pkcs11/libopencryptoki.so",
	"/usr/lib64/opencryptoki/libopencryptoki.so",
	"/usr/lib/opencryptoki/libopencryptoki.so",
}

// TB is the part of testing.TB Start uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// Token is the soft token, initialised and served by a daemon Start runs.
type Token struct {
	ModulePath string
	Label      string
	PIN        string

	mu     sync.Mutex
	daemon *exec.Cmd
	exited chan struct{}
	lock   *os.File
}

// Start prepares the soft token labelled label for t and undoes it when t
// ends. It fails t, naming the cause, when it cannot.
func Start(t TB, label string) *Token {
	t.Helper()
	tok, err := New(label)
	if err != nil {
		t.Fatalf("opencryptoki: %v", err)
	}
	t.Cleanup(tok.Close)
	return tok
}

// New prepares the soft token labelled label, as Start does, for a caller
// without a testing.TB (a TestMain). Close undoes it.
func New(label string) (*Token, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the soft token's store is root:pkcs11 and the slot daemon a system service: run the tests as root")
	}
	tok := &Token{Label: label, PIN: PIN}
	for _, p := range ModulePaths {
		if _, err := os.Stat(p); err == nil {
			tok.ModulePath = p
			break
		}
	}
	if tok.ModulePath == "" {
		return nil, fmt.Errorf("the openCryptoki module is not installed (looked in %s): run softhsm/deps.sh as root, or apt-get install opencryptoki", strings.Join(ModulePaths, ", "))
	}
	for _, prog := range []string{"pkcsslotd", "pkcsconf"} {
		if _, err := lookPath(prog); err != nil {
			return nil, fmt.Errorf("%s is not installed: apt-get install opencryptoki", prog)
		}
	}
	if err := tok.takeLock(); err != nil {
		return nil, err
	}
	if err := tok.reset(); err != nil {
		tok.Close()
		return nil, err
	}
	return tok, nil
}

// lookPath finds a program in PATH or /usr/sbin, where Debian puts the
// daemon and pkcsconf (not in a non-root PATH).
func lookPath(prog string) (string, error) {
	if p, err := exec.LookPath(prog); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", prog)
	_, err := os.Stat(p)
	return p, err
}

// takeLock waits for the machine-wide lock: one test run at a time may use
// the one soft token.
func (tok *Token) takeLock() error {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return fmt.Errorf("locking %s: %w", lockPath, err)
	}
	tok.lock = f
	return nil
}

// reset checks that no other slot daemon runs, wipes the soft token to its
// factory state, starts a daemon of its own and initialises the token with
// Label and PIN.
func (tok *Token) reset() error {
	if err := refuseForeignDaemon(); err != nil {
		return err
	}
	olds, _ := filepath.Glob(filepath.Join(storeDir, "MK_*"))
	objs, _ := filepath.Glob(filepath.Join(storeDir, "TOK_OBJ", "*"))
	for _, p := range append(append(olds, objs...), filepath.Join(storeDir, "NVTOK.DAT"), shmFile) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("resetting the soft token: %w", err)
		}
	}
	if tmpfiles, err := exec.LookPath("systemd-tmpfiles"); err == nil {
		// The lock and store directories the package's tmpfiles.d makes
		// at boot; a container may never have booted with them.
		_ = exec.Command(tmpfiles, "--create", "/usr/lib/tmpfiles.d/opencryptoki.conf").Run()
	}
	if err := tok.StartDaemon(); err != nil {
		return err
	}
	if _, err := pkcsconf(tok.Label+"\n", "-I", "-c", fmt.Sprint(Slot), "-S", factorySO); err != nil {
		return fmt.Errorf("initialising the soft token: %w", err)
	}
	if _, err := pkcsconf("", "-u", "-c", fmt.Sprint(Slot), "-S", factorySO, "-n", tok.PIN); err != nil {
		return fmt.Errorf("setting the user PIN: %w", err)
	}
	return nil
}

// pkcsconf runs pkcsconf with stdin and returns its output.
func pkcsconf(stdin string, args ...string) (string, error) {
	path, err := lookPath("pkcsconf")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("pkcsconf %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// StartDaemon starts pkcsslotd in the foreground and waits for its socket.
func (tok *Token) StartDaemon() error {
	tok.mu.Lock()
	defer tok.mu.Unlock()
	if tok.daemon != nil {
		return errors.New("the slot daemon runs already")
	}
	path, err := lookPath("pkcsslotd")
	if err != nil {
		return err
	}
	_ = os.Remove(socketPath) // a killed daemon leaves it behind
	cmd := exec.Command(path, "-f")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting pkcsslotd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socketPath); err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("pkcsslotd exited at start: %s", strings.TrimSpace(out.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return errors.New("pkcsslotd made no socket within 10 s")
		}
	}
	tok.daemon, tok.exited = cmd, exited
	return nil
}

// StopDaemon kills the slot daemon, as a crash would: it ignores SIGTERM
// while any process has the library loaded.
func (tok *Token) StopDaemon() {
	tok.mu.Lock()
	defer tok.mu.Unlock()
	if tok.daemon == nil {
		return
	}
	_ = tok.daemon.Process.Kill()
	<-tok.exited
	tok.daemon = nil
}

// refuseForeignDaemon fails when a pkcsslotd this package did not start
// runs: the test would share, and reset, a token someone else uses, and a
// second daemon beside it breaks every C_Initialize. Only a daemon of our
// own is ever stopped, by its PID.
func refuseForeignDaemon() error {
	out, _ := exec.Command("pgrep", "-x", "pkcsslotd").Output()
	if pids := strings.Fields(string(out)); len(pids) > 0 {
		return fmt.Errorf("a pkcsslotd this test did not start runs (pid %s): stop it first (systemctl stop pkcsslotd, or kill -KILL %s: it ignores SIGTERM while a process has the library loaded)",
			strings.Join(pids, ", "), strings.Join(pids, " "))
	}
	return nil
}

// Close stops the daemon and releases the lock; the token's objects stay
// until the next Start resets it.
func (tok *Token) Close() {
	tok.StopDaemon()
	if tok.lock != nil {
		_ = syscall.Flock(int(tok.lock.Fd()), syscall.LOCK_UN)
		tok.lock.Close()
	}
}
