// Package pgtest starts throwaway PostgreSQL servers for tests: initdb and
// pg_ctl from the distribution's package, a private data directory in a
// temp dir, a free loopback port, password authentication. PostgreSQL
// refuses to run as root, so as root the server runs as the postgres
// system user (runuser), in a directory that user owns.
//
// Nothing is mocked: a test gets a real server it can stop and start again
// to see what a replica does while the database is away.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// User is the database superuser of every server pgtest starts.
const User = "hsmkms"

// Server is one running PostgreSQL server.
type Server struct {
	dir      string // owned by the server's user: data/, the socket, the log
	bin      string // directory of initdb, pg_ctl, postgres
	port     int
	password string
	asUser   string // "" to run as the current user

	mu      sync.Mutex
	running bool
	dbs     int
}

// Start starts a new server for t and stops it when t ends. It fails t
// with the reason when PostgreSQL is not installed (softhsm/deps.sh
// installs it) or does not start.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, password: randomHex(16)}
	if os.Geteuid() == 0 {
		s.asUser = "postgres"
	}
	if s.dir, err = os.MkdirTemp("", "hsmkms-pg-*"); err != nil {
		return nil, err
	}
	if err := s.chown(s.dir); err != nil {
		s.removeDir()
		return nil, err
	}
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		s.removeDir()
		return nil, err
	}
	if err := s.chown(pwfile); err != nil {
		s.removeDir()
		return nil, err
	}
	if out, err := s.run("initdb", "-D", s.data(), "-U", User, "--pwfile", pwfile,
		"--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync"); err != nil {
		s.removeDir()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	_ = os.Remove(pwfile)
	if err := s.Restart(); err != nil {
		s.removeDir()
		return nil, err
	}
	return s, nil
}

// binDir finds the server's programs: Debian keeps them out of PATH under
// /usr/lib/postgresql/<major>/bin; the newest major wins.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("PostgreSQL's server programs (initdb, pg_ctl) are not installed: run softhsm/deps.sh as root, or apt-get install postgresql")
}

func major(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// Port is the server's loopback TCP port.
func (s *Server) Port() int { return s.port }

// Password is the superuser's password.
func (s *Server) Password() string { return s.password }

// URL returns a connection URL for database db with the password in it.
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(User, s.password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), Path: "/" + db,
		RawQuery: "sslmode=disable"}
	return u.String()
}

// URLWithoutPassword returns a connection URL for db that names no
// password, for tests that pass it another way (PGPASSWORD, a file).
func (s *Server) URLWithoutPassword(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(User),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), Path: "/" + db,
		RawQuery: "sslmode=disable"}
	return u.String()
}

// NewDatabase creates an empty database and returns its name.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("db%d", s.dbs)
	s.mu.Unlock()
	if out, err := s.run("psql", "-X", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", User,
		"-d", "postgres", "-c", "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v\n%s", err, out)
	}
	return name
}

// Stop stops the server (fast shutdown: sessions are closed, committed
// work is kept).
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	if out, err := s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	s.running = false
	return nil
}

// Restart starts the server again on the same port after Stop (or for the
// first time).
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	if s.port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		s.port = p
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200", s.port, s.dir)
	out, err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	s.running = true
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() {
	s.mu.Lock()
	if s.running {
		_, _ = s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "-t", "60", "stop")
		s.running = false
	}
	s.mu.Unlock()
	s.removeDir()
}

func (s *Server) removeDir() { _ = os.RemoveAll(s.dir) }

// run runs one of the server's programs as the server's user, with the
// superuser's password in the environment for psql.
func (s *Server) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, prog)
	if _, err := os.Stat(path); err != nil {
		if p, lerr := exec.LookPath(prog); lerr == nil {
			path = p
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if s.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "PGPASSWORD="+s.password, "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// chown gives path to the server's user.
func (s *Server) chown(path string) error {
	if s.asUser == "" {
		return nil
	}
	u, err := user.Lookup(s.asUser)
	if err != nil {
		return fmt.Errorf("PostgreSQL must run as a non-root user and %q does not exist (apt-get install postgresql creates it): %w", s.asUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Log returns the server's log, for a failing test to show.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	return strings.TrimSpace(string(b))
}
