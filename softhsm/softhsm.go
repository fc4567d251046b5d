// Package softhsm makes private SoftHSM2 tokens for development and tests.
//
// A token lives in its own directory with its own softhsm2.conf, so that a
// test run or a developer's `make run` never touches the machine's shared
// token store. SoftHSM2 reads SOFTHSM2_CONF when the module is initialised:
// a process that loads the module itself must call Activate (or set the
// variable from Env) before it opens the module.
package softhsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// ConfEnv is the environment variable SoftHSM2 reads its configuration from.
const ConfEnv = "SOFTHSM2_CONF"

// ModulePaths lists where Debian/Ubuntu, Fedora/RHEL, Alpine and Homebrew
// install the SoftHSM2 PKCS#11 module, most common first.
var ModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/lib/pkcs11/libsofthsm2.so",
	"/usr/lib64/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
	"/usr/local/opt/softhsm/lib/softhsm/libsofthsm2.so",
}

// ErrNotInstalled reports that SoftHSM2 (module or softhsm2-util) is missing.
var ErrNotInstalled = errors.New("softhsm: SoftHSM2 is not installed (Debian/Ubuntu: apt-get install softhsm2; Fedora: dnf install softhsm; macOS: brew install softhsm)")

// FindModule returns the path of the SoftHSM2 PKCS#11 module. The
// environment variable SOFTHSM2_MODULE, when set, wins over the search.
func FindModule() (string, error) {
	if p := os.Getenv("SOFTHSM2_MODULE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("softhsm: SOFTHSM2_MODULE=%s: %w", p, err)
		}
		return p, nil
	}
	for _, p := range ModulePaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no module in %s (%s)", ErrNotInstalled, strings.Join(ModulePaths, ", "), runtime.GOOS)
}

// Config describes a token to make.
type Config struct {
	// Dir holds the configuration file and the token store. Empty means a
	// new temporary directory, removed by Token.Remove.
	Dir string
	// Label names the token; tokens are always selected by label.
	Label string
	// PIN is the user PIN, SOPIN the security officer PIN.
	PIN, SOPIN string
}

// Token is a SoftHSM2 token in a private directory.
type Token struct {
	Dir string // the directory holding ConfPath and the token store
	// StoreDir is the token's own directory inside TokenDir, set by
	// AddToken: moving it away makes the token vanish, as a pulled HSM would.
	StoreDir   string
	ConfPath   string // the softhsm2.conf to put in SOFTHSM2_CONF
	ModulePath string // the PKCS#11 module to load
	Label      string
	PIN        string
	SOPIN      string
	temp       bool
}

// New makes the directory and configuration of cfg (if they are not there
// yet) and initialises a token labelled cfg.Label in it unless one with
// that label exists already. It never re-initialises an existing token.
func New(ctx context.Context, cfg Config) (*Token, error) {
	if cfg.Label == "" || cfg.PIN == "" || cfg.SOPIN == "" {
		return nil, errors.New("softhsm: label, PIN and SO PIN are required")
	}
	module, err := FindModule()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return nil, fmt.Errorf("%w: softhsm2-util not on PATH", ErrNotInstalled)
	}
	t := &Token{Dir: cfg.Dir, ModulePath: module, Label: cfg.Label, PIN: cfg.PIN, SOPIN: cfg.SOPIN}
	if t.Dir == "" {
		if t.Dir, err = os.MkdirTemp("", "hsmkms-softhsm-"); err != nil {
			return nil, fmt.Errorf("softhsm: %w", err)
		}
		t.temp = true
	}
	if t.Dir, err = filepath.Abs(t.Dir); err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	if err := t.writeConf(); err != nil {
		t.Remove()
		return nil, err
	}
	exists, err := t.exists(ctx)
	if err != nil {
		t.Remove()
		return nil, err
	}
	if !exists {
		if err := t.initToken(ctx); err != nil {
			t.Remove()
			return nil, err
		}
	}
	return t, nil
}

// TokenDir is the directory SoftHSM2 keeps this configuration's tokens in.
func (t *Token) TokenDir() string { return filepath.Join(t.Dir, "tokens") }

func (t *Token) writeConf() error {
	if err := os.MkdirAll(t.TokenDir(), 0o700); err != nil {
		return fmt.Errorf("softhsm: %w", err)
	}
	t.ConfPath = filepath.Join(t.Dir, "softhsm2.conf")
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", t.TokenDir())
	if err := os.WriteFile(t.ConfPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("softhsm: %w", err)
	}
	return nil
}

// Env is the environment entry that points SoftHSM2 at this token's
// configuration, for a child process.
func (t *Token) Env() string { return ConfEnv + "=" + t.ConfPath }

// Activate points this process's SoftHSM2 at the token's configuration. It
// must run before the module is initialised.
func (t *Token) Activate() error { return os.Setenv(ConfEnv, t.ConfPath) }

// Remove deletes the directory if New made it as a temporary one.
func (t *Token) Remove() {
	if t.temp {
		os.RemoveAll(t.Dir)
	}
}

// AddToken initialises one more token, labelled label, in the same
// directory and configuration, with the same PINs.
func (t *Token) AddToken(ctx context.Context, label string) (*Token, error) {
	u := *t
	u.Label, u.temp = label, false
	before, err := subdirs(t.TokenDir())
	if err != nil {
		return nil, err
	}
	exists, err := u.exists(ctx)
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, fmt.Errorf("softhsm: a token labelled %q exists already in %s", label, t.Dir)
	}
	if err := u.initToken(ctx); err != nil {
		return nil, err
	}
	after, err := subdirs(t.TokenDir())
	if err != nil {
		return nil, err
	}
	for d := range after {
		if !before[d] {
			u.StoreDir = filepath.Join(t.TokenDir(), d)
		}
	}
	return &u, nil
}

// subdirs lists the directories in dir.
func subdirs(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() {
			out[e.Name()] = true
		}
	}
	return out, nil
}

// DeleteToken deletes the token from the store (softhsm2-util
// --delete-token), as an administrator on another process would.
func (t *Token) DeleteToken(ctx context.Context) error {
	_, err := t.util(ctx, "--delete-token", "--token", t.Label)
	return err
}

// Reinit deletes the token and initialises a new, empty one with the same
// label, as an administrator on another process would.
func (t *Token) Reinit(ctx context.Context) error {
	if err := t.DeleteToken(ctx); err != nil {
		return err
	}
	return t.initToken(ctx)
}

func (t *Token) initToken(ctx context.Context) error {
	_, err := t.util(ctx, "--init-token", "--free", "--label", t.Label, "--so-pin", t.SOPIN, "--pin", t.PIN)
	return err
}

func (t *Token) exists(ctx context.Context) (bool, error) {
	out, err := t.util(ctx, "--show-slots")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && strings.TrimSpace(k) == "Label" && strings.TrimSpace(v) == t.Label {
			return true, nil
		}
	}
	return false, nil
}

// util runs softhsm2-util on this configuration. PINs are passed as
// arguments because softhsm2-util has no other way to take them; they are
// scrubbed from any error it returns.
func (t *Token) util(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "softhsm2-util", append(args, "--module", t.ModulePath)...)
	cmd.Env = append(os.Environ(), t.Env())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		for _, secret := range []string{t.PIN, t.SOPIN} {
			msg = strings.ReplaceAll(msg, secret, "[redacted]")
		}
		return "", fmt.Errorf("softhsm: softhsm2-util %s: %w: %s", args[0], err, msg)
	}
	return out.String(), nil
}

// MoveAway moves the token's StoreDir out of the store, as an administrator
// unmounting or restoring it would: to the module the token has vanished.
// It returns a function that moves it back, which also runs when the test
// ends if the token is still away.
func (t *Token) MoveAway(tb TB) (back func()) {
	tb.Helper()
	if t.StoreDir == "" {
		tb.Fatalf("token %q has no StoreDir: make it with AddTestToken", t.Label)
	}
	away := filepath.Join(t.Dir, "away-"+filepath.Base(t.StoreDir))
	if err := os.Rename(t.StoreDir, away); err != nil {
		tb.Fatalf("moving the token directory away: %v", err)
	}
	var once sync.Once
	back = func() {
		once.Do(func() {
			if err := os.Rename(away, t.StoreDir); err != nil {
				tb.Errorf("moving the token directory back: %v", err)
			}
		})
	}
	tb.Cleanup(back)
	return back
}

// RunTests is the body of a test package's TestMain: it makes a token
// labelled label in a temporary directory, points this process's SoftHSM2
// at it, hands it to use, runs the tests and removes the token. m is the
// *testing.M. A missing SoftHSM2 fails the run, naming what to install.
func RunTests(m interface{ Run() int }, label string, use func(*Token)) int {
	t, err := New(context.Background(), Config{Label: label, PIN: TestPIN, SOPIN: TestSOPIN})
	if err != nil {
		fmt.Fprintln(os.Stderr, "these tests need SoftHSM2 (run make deps):", err)
		return 1
	}
	defer t.Remove()
	if err := t.Activate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	use(t)
	return m.Run()
}

// TB is the part of testing.TB that NewTest needs; it keeps the testing
// package out of this package's importers.
type TB interface {
	Helper()
	TempDir() string
	Setenv(key, value string)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Context() context.Context
}

// AddTestToken adds a token of the test's own, labelled prefix and a random
// suffix, to t's store, so that a test that removes or re-creates it never
// disturbs the package's shared token. The token is deleted when the test
// ends, after whatever the test opened on it was closed (cleanups run
// last-registered first). Its StoreDir is set.
func (t *Token) AddTestToken(tb TB, prefix string) *Token {
	tb.Helper()
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		tb.Fatalf("%v", err)
	}
	label := prefix + "-" + hex.EncodeToString(suffix)
	own, err := t.AddToken(tb.Context(), label)
	if err != nil {
		tb.Fatalf("AddToken: %v", err)
	}
	if own.StoreDir == "" {
		tb.Fatalf("AddToken %q: no new directory appeared in %s", label, t.TokenDir())
	}
	tb.Cleanup(func() {
		if err := own.DeleteToken(context.Background()); err != nil {
			tb.Logf("deleting token %q: %v", label, err)
		}
	})
	return own
}

// NewTest makes a token labelled label in a fresh temporary directory of tb,
// with PIN "1234" and SO PIN "87654321", and points this process's SoftHSM2
// at it for the rest of the test. A missing SoftHSM2 fails the test.
func NewTest(tb TB, label string) *Token {
	tb.Helper()
	t, err := New(tb.Context(), Config{Dir: tb.TempDir(), Label: label, PIN: TestPIN, SOPIN: TestSOPIN})
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Setenv(ConfEnv, t.ConfPath)
	return t
}

// The PINs NewTest uses. They protect nothing but throw-away test tokens.
const (
	TestPIN   = "1234"
	TestSOPIN = "87654321"
)
