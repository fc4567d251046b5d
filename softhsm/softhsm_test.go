package softhsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// tokens lists the initialised tokens of the configuration at confPath as
// softhsm2-util itself reports them: label → serials (one per token).
func tokens(t *testing.T, confPath string) map[string][]string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "softhsm2-util", "--show-slots")
	cmd.Env = append(os.Environ(), ConfEnv+"="+confPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --show-slots: %v: %s", err, out)
	}
	found := map[string][]string{}
	var serial string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch v = strings.TrimSpace(v); strings.TrimSpace(k) {
		case "Serial number":
			serial = v
		case "Label":
			if v != "" {
				found[v] = append(found[v], serial)
			}
		}
	}
	return found
}

// serialOf returns the serial of the one token labelled label, failing t
// unless there is exactly one.
func serialOf(t *testing.T, confPath, label string) string {
	t.Helper()
	all := tokens(t, confPath)
	if len(all[label]) != 1 {
		t.Fatalf("%d tokens labelled %q in %s, want 1 (all: %v)", len(all[label]), label, confPath, all)
	}
	return all[label][0]
}

// newToken makes a token in a fresh directory of t with distinctive PINs.
func newToken(t *testing.T, label string) *Token {
	t.Helper()
	tok, err := New(t.Context(), Config{Dir: t.TempDir(), Label: label, PIN: "pin-7c1e-user", SOPIN: "so-9b2f-officer"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tok
}

// TestNewKeepsExistingToken proves that New writes the configuration and a
// token, and that New on the same directory and label keeps that token
// (same serial) while a new label there adds one.
func TestNewKeepsExistingToken(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Label: "keep", PIN: "pin-7c1e-user", SOPIN: "so-9b2f-officer"}
	first, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	conf, err := os.ReadFile(first.ConfPath)
	if err != nil {
		t.Fatalf("reading the configuration: %v", err)
	}
	if first.ConfPath != filepath.Join(dir, "softhsm2.conf") || !strings.Contains(string(conf), "directories.tokendir = "+first.TokenDir()) {
		t.Errorf("configuration %s:\n%s", first.ConfPath, conf)
	}
	if first.Env() != ConfEnv+"="+first.ConfPath {
		t.Errorf("Env() = %q", first.Env())
	}
	serial := serialOf(t, first.ConfPath, "keep")

	for _, tc := range []struct {
		name   string
		label  string
		labels int // tokens in the store afterwards
	}{
		{"same label", "keep", 1},
		{"same label again", "keep", 1},
		{"other label", "other", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Label = tc.label
			again, err := New(t.Context(), c)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if again.ConfPath != first.ConfPath {
				t.Errorf("ConfPath = %q, want %q", again.ConfPath, first.ConfPath)
			}
			if got := serialOf(t, first.ConfPath, "keep"); got != serial {
				t.Errorf("token re-initialised: serial %s, was %s", got, serial)
			}
			if all := tokens(t, first.ConfPath); len(all) != tc.labels {
				t.Errorf("store holds %v, want %d labels", all, tc.labels)
			}
		})
	}
}

// TestAddToken proves that AddToken adds a token with a new label to the
// same store, leaving the others alone, and refuses a label in use.
func TestAddToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		labels  []string // added in turn; all but the last must succeed
		wantErr string   // of the last; empty: it succeeds
	}{
		{"new label", []string{"second"}, ""},
		{"two new labels", []string{"second", "third"}, ""},
		{"existing label", []string{"base"}, `"base" exists already`},
		{"added label twice", []string{"second", "second"}, `"second" exists already`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := newToken(t, "base")
			serial := serialOf(t, base.ConfPath, "base")
			for i, label := range tc.labels {
				added, err := base.AddToken(t.Context(), label)
				if i < len(tc.labels)-1 || tc.wantErr == "" {
					if err != nil {
						t.Fatalf("AddToken(%q): %v", label, err)
					}
					if added.Label != label || added.ConfPath != base.ConfPath || added.PIN != base.PIN || added.SOPIN != base.SOPIN {
						t.Errorf("AddToken(%q) = %+v", label, added)
					}
					serialOf(t, base.ConfPath, label)
					continue
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("AddToken(%q) = %v, want an error containing %q", label, err, tc.wantErr)
				}
			}
			if got := serialOf(t, base.ConfPath, "base"); got != serial {
				t.Errorf("base token re-initialised: serial %s, was %s", got, serial)
			}
		})
	}
}

// TestReinit proves that Reinit replaces the token with a new one (a new
// serial) under the same label, without touching the other tokens.
func TestReinit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		times int
	}{
		{"once", 1},
		{"twice", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := newToken(t, "reinit")
			other, err := tok.AddToken(t.Context(), "bystander")
			if err != nil {
				t.Fatal(err)
			}
			otherSerial := serialOf(t, tok.ConfPath, other.Label)
			seen := []string{serialOf(t, tok.ConfPath, "reinit")}
			for range tc.times {
				if err := tok.Reinit(t.Context()); err != nil {
					t.Fatalf("Reinit: %v", err)
				}
				s := serialOf(t, tok.ConfPath, "reinit")
				if slices.Contains(seen, s) {
					t.Errorf("serial %s after Reinit was seen before (%v)", s, seen)
				}
				seen = append(seen, s)
			}
			if got := serialOf(t, tok.ConfPath, other.Label); got != otherSerial {
				t.Errorf("the other token changed: serial %s, was %s", got, otherSerial)
			}
		})
	}
}

// TestNewRefusesBadConfig proves that New needs a label and both PINs, and
// that a New failing after it made a temporary directory removes it.
func TestNewRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no label", Config{PIN: "1234", SOPIN: "87654321"}, "label, PIN and SO PIN are required"},
		{"no PIN", Config{Label: "x", SOPIN: "87654321"}, "label, PIN and SO PIN are required"},
		{"no SO PIN", Config{Label: "x", PIN: "1234"}, "label, PIN and SO PIN are required"},
		{"label too long", Config{Label: strings.Repeat("l", 33), PIN: "1234", SOPIN: "87654321"}, "--init-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp) // where New makes its temporary directory
			tok, err := New(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.wantErr)
			}
			if tok != nil {
				t.Errorf("New returned %+v with its error", tok)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("New left %v behind", left)
			}
		})
	}
}

// TestRemove proves that Remove deletes the directory New made itself and
// never one it was given (nor the store of an added token).
func TestRemove(t *testing.T) {
	for _, tc := range []struct {
		name    string
		make    func(t *testing.T) *Token
		removed bool
	}{
		{"temporary", func(t *testing.T) *Token {
			tok, err := New(t.Context(), Config{Label: "tmp", PIN: "1234", SOPIN: "87654321"})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, true},
		{"given directory", func(t *testing.T) *Token { return newToken(t, "given") }, false},
		{"added to a temporary store", func(t *testing.T) *Token {
			tok, err := New(t.Context(), Config{Label: "tmp", PIN: "1234", SOPIN: "87654321"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tok.Remove)
			added, err := tok.AddToken(t.Context(), "added")
			if err != nil {
				t.Fatal(err)
			}
			return added
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			tok := tc.make(t)
			if _, err := os.Stat(tok.ConfPath); err != nil {
				t.Fatalf("before Remove: %v", err)
			}
			tok.Remove()
			_, err := os.Stat(tok.Dir)
			switch {
			case tc.removed && !errors.Is(err, os.ErrNotExist):
				t.Errorf("Remove left %s (stat: %v)", tok.Dir, err)
			case !tc.removed && err != nil:
				t.Errorf("Remove deleted %s: %v", tok.Dir, err)
			case !tc.removed:
				if _, err := os.Stat(tok.ConfPath); err != nil {
					t.Errorf("Remove deleted the configuration: %v", err)
				}
			}
		})
	}
}

// TestFindModule proves that FindModule searches the usual paths, that
// SOFTHSM2_MODULE wins over the search (and reaches New), and that a bad
// SOFTHSM2_MODULE is an error, not a silent fallback.
func TestFindModule(t *testing.T) {
	t.Setenv("SOFTHSM2_MODULE", "")
	found, err := FindModule()
	if err != nil {
		t.Fatalf("FindModule without SOFTHSM2_MODULE: %v", err)
	}
	link := filepath.Join(t.TempDir(), "libmy-softhsm2.so")
	if err := os.Symlink(found, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.so")
	for _, tc := range []struct {
		name, env, want, wantErr string
	}{
		{"unset", "", found, ""},
		{"set", link, link, ""},
		{"missing file", missing, "", "SOFTHSM2_MODULE=" + missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SOFTHSM2_MODULE", tc.env)
			got, err := FindModule()
			tok, newErr := New(t.Context(), Config{Dir: t.TempDir(), Label: "find", PIN: "1234", SOPIN: "87654321"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("FindModule = %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				if newErr == nil || !strings.Contains(newErr.Error(), tc.wantErr) {
					t.Errorf("New = %v, want an error containing %q", newErr, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("FindModule = %q, %v; want %q", got, err, tc.want)
			}
			if !slices.Contains(ModulePaths, found) {
				t.Errorf("FindModule found %q, which is not in ModulePaths", found)
			}
			if newErr != nil {
				t.Fatalf("New: %v", newErr)
			}
			if tok.ModulePath != tc.want {
				t.Errorf("New used module %q, want %q", tok.ModulePath, tc.want)
			}
		})
	}
}

// TestUtilErrorsHidePINs proves that errors from softhsm2-util never carry
// the PINs, even when its output contains them: each case's PINs are words
// softhsm2-util prints for that failure.
func TestUtilErrorsHidePINs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pin, sopin string
		fail       func(ctx context.Context, tok *Token) error
		want       string
	}{
		{"delete unknown label", "Could not", "using --serial", func(ctx context.Context, tok *Token) error {
			u := *tok
			u.Label = "no-such-token"
			return u.DeleteToken(ctx)
		}, "--delete-token"},
		{"reinit unknown label", "Could not", "using --serial", func(ctx context.Context, tok *Token) error {
			u := *tok
			u.Label = "no-such-token"
			return u.Reinit(ctx)
		}, "--delete-token"},
		{"add a token with a too long label", "uninitialized", "greater than", func(ctx context.Context, tok *Token) error {
			_, err := tok.AddToken(ctx, strings.Repeat("l", 33))
			return err
		}, "--init-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := New(t.Context(), Config{Dir: t.TempDir(), Label: "secret", PIN: tc.pin, SOPIN: tc.sopin})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			err = tc.fail(t.Context(), tok)
			if err == nil {
				t.Fatal("the softhsm2-util call succeeded")
			}
			msg := fmt.Sprintf("%v %+v %#v", err, err, err)
			for _, secret := range []string{tc.pin, tc.sopin} {
				if strings.Contains(msg, secret) {
					t.Errorf("error shows the PIN %q: %s", secret, msg)
				}
			}
			// The output did hold the PINs' words: they were scrubbed,
			// not absent.
			if !strings.Contains(err.Error(), "[redacted]") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks [redacted] or %q", err, tc.want)
			}
		})
	}
}

// fatalTB is a TB whose Fatalf ends the goroutine, as testing.T's does,
// but records the message instead of failing the test.
type fatalTB struct {
	*testing.T
	fatal string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestNewTest proves that NewTest makes a token with the test PINs in a
// temporary directory and points SOFTHSM2_CONF at it, and that a failure
// fails the test through Fatalf.
func TestNewTest(t *testing.T) {
	for _, tc := range []struct {
		name, label, fatal string
	}{
		{"token", "newtest", ""},
		{"no label", "", "label, PIN and SO PIN are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := &fatalTB{T: t}
			var tok *Token
			done := make(chan struct{})
			go func() {
				defer close(done)
				tok = NewTest(tb, tc.label)
			}()
			<-done
			if tc.fatal != "" {
				if !strings.Contains(tb.fatal, tc.fatal) || tok != nil {
					t.Errorf("NewTest = %+v, Fatalf(%q); want Fatalf containing %q", tok, tb.fatal, tc.fatal)
				}
				return
			}
			if tb.fatal != "" {
				t.Fatalf("NewTest failed: %s", tb.fatal)
			}
			if got := os.Getenv(ConfEnv); got != tok.ConfPath {
				t.Errorf("%s = %q, want %q", ConfEnv, got, tok.ConfPath)
			}
			if tok.Label != tc.label || tok.PIN != TestPIN || tok.SOPIN != TestSOPIN {
				t.Errorf("NewTest = %+v", tok)
			}
			serialOf(t, tok.ConfPath, tc.label)
			// pkcs11-tool, an independent client, logs in with TestPIN.
			out, err := exec.CommandContext(t.Context(), "pkcs11-tool", "--module", tok.ModulePath,
				"--token-label", tc.label, "--login", "--pin", TestPIN, "--list-objects").CombinedOutput()
			if err != nil {
				t.Errorf("pkcs11-tool --login: %v: %s", err, out)
			}
		})
	}
}
