package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDepsRunNeedsOnlyTheServer runs softhsm/deps.sh on a PATH that has
// SoftHSM2's tool and a C compiler and none of the test tools (nor
// apt-get, so that nothing is installed): `deps.sh run` (make run) is
// content, `deps.sh` (make test) names the test tools it lacks and fails.
func TestDepsRunNeedsOnlyTheServer(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"bash", "sort", "tr", "id", "printf"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	for _, stub := range []string{"softhsm2-util", "gcc"} {
		if err := os.WriteFile(filepath.Join(bin, stub), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs("../softhsm/deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t)
	env := []string{"PATH=" + bin}
	if r := s.exec(runOpts{env: env}, filepath.Join(bin, "bash"), script, "run"); r.code != 0 {
		t.Fatalf("deps.sh run: %v", r)
	}
	r := s.exec(runOpts{env: env}, filepath.Join(bin, "bash"), script)
	if r.code == 0 || !strings.Contains(r.stderr, "awscli") || !strings.Contains(r.stderr, "nodejs") || !strings.Contains(r.stderr, "chromium") || strings.Contains(r.stderr, "installing") {
		t.Fatalf("deps.sh (make test) without the test tools: %v", r)
	}
}
