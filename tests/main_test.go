package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/softhsm"
)

// hsmkmsBin is the binary TestMain built, the one every test runs.
var hsmkmsBin string

const (
	// cmdTimeout bounds one command; a hung command fails its test.
	cmdTimeout = 90 * time.Second
	// startTimeout bounds how long a server may take to print its exports.
	startTimeout = 60 * time.Second
	// stopTimeout bounds how long a server may take to exit on SIGTERM.
	stopTimeout = 30 * time.Second
	// The dev token's label and PIN (cli/dev.go).
	devLabel = "hsmkms-dev"
	devPIN   = "1234"
)

// TestMain builds cmd/hsmkms once and runs the tests against that binary.
func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hsmkms-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: making the build directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	hsmkmsBin = filepath.Join(dir, "hsmkms")
	build := exec.Command("go", "build", "-o", hsmkmsBin, "../cmd/hsmkms")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: go build -o %s ../cmd/hsmkms: %v\n%s\n", hsmkmsBin, err, out)
		return 1
	}
	return m.Run()
}

// sandbox is a test's environment for the processes it starts: the
// inherited environment without AWS_*, HSMKMS_* and SOFTHSM2_CONF, with
// HOME a fresh directory and the AWS configuration and credentials files
// empty, so that nothing on the machine leaks into a test.
type sandbox struct {
	t   testing.TB
	env []string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	home, awsDir := t.TempDir(), t.TempDir()
	config, creds := filepath.Join(awsDir, "config"), filepath.Join(awsDir, "credentials")
	for _, f := range []string{config, creds} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "HSMKMS_") || k == "HOME" || k == softhsm.ConfEnv {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "AWS_CONFIG_FILE="+config, "AWS_SHARED_CREDENTIALS_FILE="+creds)
	return &sandbox{t: t, env: env}
}

// result is what a finished command left behind.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("%q exited %d\nstdout:\n%s\nstderr:\n%s", r.args, r.code, r.stdout, r.stderr)
}

// runOpts are the optional settings of a command: its working directory,
// environment entries added to (and overriding) the sandbox's, and its
// standard input, which is never a terminal.
type runOpts struct {
	dir   string
	env   []string
	stdin string
}

// exec runs name with args to completion and returns its output and exit
// code. A command that cannot start or outlives cmdTimeout fails the test;
// its whole process group is killed.
func (s *sandbox) exec(o runOpts, name string, args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = o.dir
	cmd.Env = append(slices.Clone(s.env), o.env...)
	cmd.Stdin = strings.NewReader(o.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := result{args: append([]string{name}, args...), stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		s.t.Fatalf("timed out after %v: %v", cmdTimeout, r)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		s.t.Fatalf("cannot run %q: %v", r.args, err)
	}
	r.code = cmd.ProcessState.ExitCode()
	return r
}

// run runs the hsmkms binary with env added to the sandbox's.
func (s *sandbox) run(env []string, args ...string) result {
	s.t.Helper()
	return s.exec(runOpts{env: env}, hsmkmsBin, args...)
}

// must runs the hsmkms binary and fails the test unless it exits 0.
func (s *sandbox) must(env []string, args ...string) result {
	s.t.Helper()
	r := s.run(env, args...)
	if r.code != 0 {
		s.t.Fatalf("want exit 0: %v", r)
	}
	return r
}

// lockedBuffer collects a running process's output for polling.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is a running `hsmkms serve --dev`.
type server struct {
	t              testing.TB
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	exited         chan struct{}
	// exports are the variables of the export lines it printed.
	exports map[string]string
	stopped bool
}

// startServer starts name with args in dir, waits until its standard
// output holds the dev export lines, and stops it when the test ends.
func (s *sandbox) startServer(dir, name string, args ...string) *server {
	s.t.Helper()
	srv := &server{t: s.t, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	srv.cmd = exec.Command(name, args...)
	srv.cmd.Dir = dir
	srv.cmd.Env = slices.Clone(s.env)
	srv.cmd.Stdin = strings.NewReader("")
	srv.cmd.Stdout, srv.cmd.Stderr = srv.stdout, srv.stderr
	if err := srv.cmd.Start(); err != nil {
		s.t.Fatalf("starting %s %q: %v", name, args, err)
	}
	go func() {
		_ = srv.cmd.Wait()
		close(srv.exited)
	}()
	s.t.Cleanup(srv.Stop)
	if err := srv.waitExports(); err != nil {
		s.t.Fatalf("%s %q: %v\nstdout:\n%s\nstderr:\n%s", name, args, err, srv.stdout, srv.stderr)
	}
	return srv
}

// startDev starts a dev server keeping its token and data in devDir, on a
// free loopback port.
func (s *sandbox) startDev(devDir string) *server {
	s.t.Helper()
	port := freePort(s.t)
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", devDir, "--listen", "127.0.0.1:"+port)
	if want := "http://127.0.0.1:" + port; srv.exports["HSMKMS_ENDPOINT"] != want || srv.exports["AWS_ENDPOINT_URL_KMS"] != want {
		s.t.Fatalf("exports %v: want the endpoint %s", srv.exports, want)
	}
	return srv
}

// waitExports polls standard output until the last export line
// (AWS_REGION) is complete, and parses the export lines.
func (srv *server) waitExports() error {
	deadline := time.Now().Add(startTimeout)
	for {
		out := srv.stdout.String()
		if i := strings.Index(out, "export AWS_REGION="); i >= 0 && strings.Contains(out[i:], "\n") {
			srv.exports = parseExports(out)
			for _, k := range []string{"AWS_ENDPOINT_URL_KMS", "HSMKMS_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"} {
				if srv.exports[k] == "" {
					return fmt.Errorf("no export of %s", k)
				}
			}
			return nil
		}
		select {
		case <-srv.exited:
			return fmt.Errorf("exited (%v) before printing its export lines", srv.cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no export lines after %v", startTimeout)
		}
	}
}

// parseExports reads `export K=V [K2=V2 …]` lines.
func parseExports(out string) map[string]string {
	vars := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "export ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				vars[k] = v
			}
		}
	}
	return vars
}

// clientEnv is the environment of the client commands: the endpoint and
// root credentials the server exported.
func (srv *server) clientEnv() []string {
	var env []string
	for _, k := range []string{"HSMKMS_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		env = append(env, k+"="+srv.exports[k])
	}
	return env
}

// Stop sends SIGTERM and waits for the server to exit; it must exit 0.
func (srv *server) Stop() {
	srv.t.Helper()
	if srv.stopped {
		return
	}
	srv.stopped = true
	select {
	case <-srv.exited:
		srv.t.Errorf("the server exited before it was stopped (%v)\nstderr:\n%s", srv.cmd.ProcessState, srv.stderr)
		return
	default:
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		srv.t.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-srv.exited:
	case <-time.After(stopTimeout):
		_ = srv.cmd.Process.Kill()
		<-srv.exited
		srv.t.Errorf("the server did not exit within %v of SIGTERM\nstderr:\n%s", stopTimeout, srv.stderr)
		return
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		srv.t.Errorf("the server exited %d on SIGTERM\nstderr:\n%s", code, srv.stderr)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// requirePortFree fails the test when addr is taken: the README's commands
// use a fixed port, and the test runs them as written.
func requirePortFree(t *testing.T, addr, why string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s is taken on this machine (%v), and %s: stop whatever listens there", addr, err, why)
	}
	l.Close()
}

// requireTool returns the path of an external program the tests need.
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (package %s): run make deps", name, pkg)
	}
	return p
}

// softhsmModule returns the SoftHSM2 PKCS#11 module.
func softhsmModule(t testing.TB) string {
	t.Helper()
	m, err := softhsm.FindModule()
	if err != nil {
		t.Fatalf("%v: run make deps", err)
	}
	return m
}

// devTokenEnv points SoftHSM2 at the token of devDir and gives its PIN.
func devTokenEnv(devDir string) []string {
	return []string{softhsm.ConfEnv + "=" + filepath.Join(devDir, "softhsm", "softhsm2.conf"), "HSMKMS_PIN=" + devPIN}
}

// decode parses the JSON output of r, which must have exited 0.
func decode[T any](t testing.TB, r result) T {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("want exit 0: %v", r)
	}
	return parseJSON[T](t, r)
}

// parseJSON parses the JSON output of r, whatever its exit code.
func parseJSON[T any](t testing.TB, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("not the JSON of a %T: %v\n%v", v, err, r)
	}
	return v
}

// keyView is the part of `--output json key create|describe` the tests read.
type keyView struct {
	KeyId        string     `json:"KeyId"`
	Arn          string     `json:"Arn"`
	KeyState     string     `json:"KeyState"`
	DeletionDate *time.Time `json:"DeletionDate"`
}

// createKey creates a key through the server and returns its ID.
func createKey(s *sandbox, env []string, description string) string {
	s.t.Helper()
	k := decode[keyView](s.t, s.run(env, "--output", "json", "key", "create", "--description", description))
	if k.KeyId == "" || k.KeyState != "Enabled" {
		s.t.Fatalf("key create: %+v", k)
	}
	return k.KeyId
}

// describeKey returns the key as `key describe` shows it.
func describeKey(s *sandbox, env []string, key string) keyView {
	s.t.Helper()
	return decode[keyView](s.t, s.run(env, "--output", "json", "key", "describe", key))
}
