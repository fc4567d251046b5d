package tests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// p11Object is one object of `pkcs11-tool --list-objects`: its heading
// line and its indented "name: value" attributes.
type p11Object struct {
	heading string
	attrs   map[string]string
}

func parseObjects(out string) []p11Object {
	var objs []p11Object
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			objs = append(objs, p11Object{heading: line, attrs: map[string]string{}})
			continue
		}
		if len(objs) == 0 {
			continue
		}
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			objs[len(objs)-1].attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return objs
}

// pkcs11Tool runs OpenSC's pkcs11-tool, logged in, on the dev token of
// devDir, and fails the test unless it exits 0.
func pkcs11Tool(s *sandbox, devDir string, args ...string) result {
	s.t.Helper()
	tool := requireTool(s.t, "pkcs11-tool", "opensc")
	args = append([]string{"--module", softhsmModule(s.t), "--login", "--pin", devPIN, "--token-label", devLabel}, args...)
	r := s.exec(runOpts{env: devTokenEnv(devDir)}, tool, args...)
	if r.code != 0 {
		s.t.Fatalf("pkcs11-tool: %v", r)
	}
	return r
}

// TestKeyIsNonExtractableOnToken proves, with OpenSC's pkcs11-tool as an
// independent witness, that a key created through the server is an object
// on the token that is sensitive, always sensitive and never extractable.
func TestKeyIsNonExtractableOnToken(t *testing.T) {
	requireTool(t, "pkcs11-tool", "opensc")
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	srv := s.startDev(devDir)
	key := createKey(s, srv.clientEnv(), "non-extractable")
	srv.Stop()

	r := pkcs11Tool(s, devDir, "--list-objects")
	label := "hsmkms/" + key + "/v1"
	var obj *p11Object
	for _, o := range parseObjects(r.stdout) {
		if o.attrs["label"] == label {
			obj = &o
		}
	}
	if obj == nil {
		t.Fatalf("no object labelled %s on the token: %v", label, r)
	}
	if !strings.HasPrefix(obj.heading, "Secret Key Object; AES length 32") {
		t.Errorf("%s is not a 256-bit AES secret key: %q", label, obj.heading)
	}
	access := strings.Split(obj.attrs["Access"], ", ")
	for _, want := range []string{"sensitive", "always sensitive", "never extractable"} {
		if !slices.Contains(access, want) {
			t.Errorf("%s is not %q: Access: %s", label, want, obj.attrs["Access"])
		}
	}
	if slices.Contains(access, "extractable") {
		t.Errorf("%s is extractable: Access: %s", label, obj.attrs["Access"])
	}
}

// doctorReport is the part of `--output json doctor` the tests read.
type doctorReport struct {
	OK              bool `json:"ok"`
	Inconsistencies []struct {
		Kind    string `json:"kind"`
		KeyID   string `json:"key_id"`
		Version int    `json:"version"`
	} `json:"inconsistencies"`
}

// TestDoctorFindsInconsistencies proves that doctor finds the store and
// the token consistent after a rotation, and reports the missing object
// of version 2 (exit 1) once pkcs11-tool has deleted it from the token.
func TestDoctorFindsInconsistencies(t *testing.T) {
	requireTool(t, "pkcs11-tool", "opensc")
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	srv := s.startDev(devDir)
	env := srv.clientEnv()
	key := createKey(s, env, "doctor")
	s.must(env, "key", "rotate", key)
	srv.Stop()

	doctor := func() result {
		t.Helper()
		return s.run(devTokenEnv(devDir), "--output", "json", "doctor", "--pkcs11-module", softhsmModule(t),
			"--token-label", devLabel, "--data-dir", filepath.Join(devDir, "data"))
	}
	if rep := decode[doctorReport](t, doctor()); !rep.OK || len(rep.Inconsistencies) != 0 {
		t.Fatalf("doctor finds a fresh store and token inconsistent: %+v", rep)
	}

	pkcs11Tool(s, devDir, "--delete-object", "--type", "secrkey", "--label", "hsmkms/"+key+"/v2")
	r := doctor()
	if r.code != 1 {
		t.Fatalf("want exit 1 after deleting version 2's object: %v", r)
	}
	rep := parseJSON[doctorReport](t, r)
	if rep.OK || len(rep.Inconsistencies) != 1 {
		t.Fatalf("want one inconsistency: %+v\n%v", rep, r)
	}
	if i := rep.Inconsistencies[0]; i.Kind != "missing-object" || i.KeyID != key || i.Version != 2 {
		t.Errorf("want the missing object of key %s version 2: %+v", key, i)
	}
}

// openscModules are where distributions install OpenSC's PKCS#11 module.
var openscModules = []string{
	"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
	"/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
	"/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so",
	"/usr/lib/aarch64-linux-gnu/pkcs11/opensc-pkcs11.so",
	"/usr/lib64/opensc-pkcs11.so",
	"/usr/lib64/pkcs11/opensc-pkcs11.so",
	"/usr/lib/opensc-pkcs11.so",
	"/usr/local/lib/opensc-pkcs11.so",
	"/opt/homebrew/lib/opensc-pkcs11.so",
}

// slotSerials returns the serials of the tokens labelled label that
// `slot list` shows with SoftHSM2 configured by conf.
func slotSerials(s *sandbox, conf, module, label string) []string {
	s.t.Helper()
	var serials []string
	for _, slot := range jsonArray(s.t, s.run([]string{"SOFTHSM2_CONF=" + conf}, "--output", "json", "slot", "list", "--pkcs11-module", module)) {
		if tok, ok := slot["token"].(map[string]any); ok && tok["label"] == label {
			serial, _ := tok["serial"].(string)
			serials = append(serials, serial)
		}
	}
	return serials
}

// TestSoftHSMInitRefusesOtherModules proves that softhsm init refuses
// OpenSC's module (exit 2, naming it, touching nothing), and that with
// SoftHSM2 it prints the exports and a second run keeps the token.
func TestSoftHSMInitRefusesOtherModules(t *testing.T) {
	s := newSandbox(t)
	var opensc string
	for _, p := range openscModules {
		if _, err := os.Stat(p); err == nil {
			opensc = p
			break
		}
	}
	if opensc == "" {
		t.Fatalf("OpenSC's PKCS#11 module is in none of %q: run make deps", openscModules)
	}
	env := []string{"HSMKMS_PIN=" + devPIN}
	dir := filepath.Join(t.TempDir(), "token")
	const label = "e2e-init"

	r := s.run(env, "softhsm", "init", "--dir", dir, "--label", label, "--pkcs11-module", opensc)
	if r.code != 2 || !strings.Contains(r.stderr, opensc) || !strings.Contains(r.stderr, "not SoftHSM2") {
		t.Errorf("want exit 2 naming %s as not SoftHSM2: %v", opensc, r)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("softhsm init with OpenSC's module made %s (%v)", dir, err)
	}

	module := softhsmModule(t)
	want := map[string]string{"SOFTHSM2_CONF": filepath.Join(dir, "softhsm2.conf"), "HSMKMS_PKCS11_MODULE": module, "HSMKMS_TOKEN_LABEL": label}
	var serial string
	for run := 1; run <= 2; run++ {
		r := s.must(env, "softhsm", "init", "--dir", dir, "--label", label, "--pkcs11-module", module)
		got := parseExports(r.stdout)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("run %d: export %s=%q, want %q: %v", run, k, got[k], v, r)
			}
		}
		serials := slotSerials(s, want["SOFTHSM2_CONF"], module, label)
		if len(serials) != 1 || serials[0] == "" {
			t.Fatalf("run %d: want one token labelled %s, serials %q", run, label, serials)
		}
		if run == 1 {
			serial = serials[0]
		} else if serials[0] != serial {
			t.Errorf("the second softhsm init replaced the token: serial %s, was %s", serials[0], serial)
		}
	}
	s.must(append(env, "SOFTHSM2_CONF="+want["SOFTHSM2_CONF"]), "token", "info", "--pkcs11-module", module, "--token-label", label)
}
