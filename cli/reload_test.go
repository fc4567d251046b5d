package cli

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
)

// lockedLog is a log buffer safe for the reloader's goroutine.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// reloadingMessage is the state a reload starts with (sd_notify(3)).
var reloadingMessage = regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`)

// TestReload proves what SIGHUP does with each kind of change to the
// config file: the log level is applied, a setting for a restart is left
// with a warning naming it, turning TLS on is for a restart, a file that
// is not valid changes nothing; the audit log is reopened every time and
// systemd told RELOADING=1 then READY=1. No server is needed: no listener
// has TLS here, so none is reloaded.
func TestReload(t *testing.T) {
	clearEnv(t)
	const start = "log-level = \"warn\"\nregion = \"a\"\n"
	path := writeConfig(t, "hsmkms.toml", start)
	tests := []struct {
		name, body string
		level      hclog.Level
		logs       []string // each in the log
		notLogs    []string
	}{
		{"level", "log-level = \"debug\"\nregion = \"a\"\n", hclog.Debug,
			[]string{"[DEBUG] hsmkms.reload: read the config file", "[INFO]  hsmkms.reload: reloaded: config=" + path + " applied=[\"log-level\"] need_restart=[]"}, []string{"[WARN]"}},
		{"restart", "log-level = \"warn\"\nregion = \"b\"\npool-size = 2\n", hclog.Warn,
			[]string{"takes effect only at a restart: still serving with the one in effect: key=pool-size", "key=region"}, []string{"[DEBUG]"}},
		{"TLS on", "tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\n", hclog.Warn,
			[]string{"turns TLS on or off, which takes effect only at a restart", "listener=kms"}, nil},
		{"not valid", "log-level = \"debug\"\nlog-levl = \"x\"\n", hclog.Warn,
			[]string{"[ERROR] hsmkms.reload: the config file is not valid: nothing in it is applied", `line 2: unknown key \"log-levl\"`}, []string{"[DEBUG]"}},
		{"deleted", "", hclog.Warn, []string{"key=region"}, []string{"key=log-level"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(start), 0o600); err != nil {
				t.Fatal(err)
			}
			s, r := loaded(t, "serve", "--config", path)
			if r.code != ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var logs lockedLog
			log := hclog.New(&hclog.LoggerOptions{Name: "hsmkms", Level: hclog.Warn, Output: &logs})
			// A component's logger, made at start as the server makes them.
			component := log.Named("api")
			reopened := 0
			var states []string
			rl := &reloader{log: log, settings: s, notify: func(st string) { states = append(states, st) },
				trail: &auditTrail{path: "audit.log", close: func() {}, reopen: func() error { reopened++; return nil }}}
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			rl.reload()
			out := logs.String()
			if got := log.GetLevel(); got != tt.level {
				t.Errorf("level %v, want %v", got, tt.level)
			}
			if got := component.GetLevel(); got != tt.level {
				t.Errorf("a component's level %v, want %v", got, tt.level)
			}
			for _, w := range tt.logs {
				if !strings.Contains(out, w) {
					t.Errorf("the log lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notLogs {
				if strings.Contains(out, w) {
					t.Errorf("the log has %q:\n%s", w, out)
				}
			}
			if reopened != 1 {
				t.Errorf("the audit log was reopened %d times, want 1", reopened)
			}
			if len(states) != 2 || !reloadingMessage.MatchString(states[0]) || states[1] != daemon.SdNotifyReady {
				t.Errorf("told systemd %q, want RELOADING=1 with MONOTONIC_USEC, then %q", states, daemon.SdNotifyReady)
			}
		})
	}
}

// TestReloadKeepsFailedSettings proves a setting that could not be applied
// is tried again at the next SIGHUP, and a restart-only one is warned of
// every time, the running value being unchanged.
func TestReloadKeepsFailedSettings(t *testing.T) {
	clearEnv(t)
	path := writeConfig(t, "hsmkms.yml", "region: a\n")
	s, r := loaded(t, "serve", "--config", path)
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var logs lockedLog
	rl := &reloader{log: hclog.New(&hclog.LoggerOptions{Output: &logs}), settings: s, notify: func(string) {},
		trail: &auditTrail{reopen: func() error { return errors.New("disk full") }}}
	if err := os.WriteFile(path, []byte("region: b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rl.reload()
	rl.reload()
	if n := strings.Count(logs.String(), "key=region"); n != 2 {
		t.Errorf("warned of region %d times, want 2:\n%s", n, logs.String())
	}
	if s.current["region"] != "a" {
		t.Errorf("region in effect %v, want a", s.current["region"])
	}
	if !strings.Contains(logs.String(), "could not reopen the audit log: still writing the old one") {
		t.Errorf("no word of the failed reopen:\n%s", logs.String())
	}
}
