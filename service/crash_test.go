package service

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/hsmkms/hsmkms/softhsm"
)

// crashChildEnv, when set, makes the test binary act as a crash-test child
// instead of running tests.
const crashChildEnv = "HSMKMS_CRASH_CHILD"

// What the parent tells a crash-test child.
const (
	crashConfEnv   = "HSMKMS_CRASH_SOFTHSM2_CONF" // SoftHSM2 configuration
	crashModuleEnv = "HSMKMS_CRASH_MODULE"        // PKCS#11 module path
	crashLabelEnv  = "HSMKMS_CRASH_LABEL"         // token label
	crashDirEnv    = "HSMKMS_CRASH_DIR"           // directory of hsmkms.db
	crashSeedEnv   = "HSMKMS_CRASH_SEED"          // seed of the child's choices
	// crashAtEnv, when set, makes the child SIGKILL itself at a token call:
	// "before|after:master|pair:<n>" is right before or after the n-th
	// CreateMasterKey or CreateKeyPair.
	crashAtEnv = "HSMKMS_CRASH_AT"
)

// crashIterations bounds the child's loop; each iteration prints 3 or 4
// lines, far more than the parent waits for.
const crashIterations = 40

// crashChild runs the crash-test child: it opens the token and the store
// named by the environment and loops CreateKey, RotateKeyOnDemand and
// Encrypt, printing a line per completed operation, until it is killed.
func crashChild() int {
	if err := runCrashChild(); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 3
	}
	return 0
}

func runCrashChild() error {
	if err := os.Setenv(softhsm.ConfEnv, os.Getenv(crashConfEnv)); err != nil {
		return err
	}
	seed, err := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", crashSeedEnv, err)
	}
	h := &crashHSM{}
	if at := os.Getenv(crashAtEnv); at != "" {
		if _, err := fmt.Sscanf(strings.ReplaceAll(at, ":", " "), "%s %s %d", &h.when, &h.what, &h.at); err != nil {
			return fmt.Errorf("%s=%q: %w", crashAtEnv, at, err)
		}
	}
	ctx := context.Background()
	tok, err := hsm.Open(ctx, hsm.Config{ModulePath: os.Getenv(crashModuleEnv), TokenLabel: os.Getenv(crashLabelEnv),
		PIN: hsm.NewPIN(softhsm.TestPIN)})
	if err != nil {
		return err
	}
	defer tok.Close()
	st, err := bolt.Open(filepath.Join(os.Getenv(crashDirEnv), "hsmkms.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	h.HSM = tok
	svc, err := New(Config{Store: st, HSM: h})
	if err != nil {
		return err
	}
	defer svc.Close()

	ctx = WithCaller(ctx, Caller{AccessKeyID: "AKIACRASHCHILD",
		Statements: []policy.Statement{{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"*"}}}})
	out := bufio.NewWriter(os.Stdout)
	emit := func(format string, args ...any) error {
		fmt.Fprintf(out, format+"\n", args...)
		return out.Flush()
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	var keys []string // symmetric keys, which rotate and encrypt
	for i := range crashIterations {
		in := CreateKeyInput{Description: fmt.Sprintf("crash %d", i)}
		if i%2 == 1 {
			in.HsmkmsMechanism = "aes-kw"
		}
		k, err := svc.CreateKey(ctx, in)
		if err != nil {
			return err
		}
		keys = append(keys, k.KeyMetadata.KeyId)
		if err := emit("created %s", k.KeyMetadata.KeyId); err != nil {
			return err
		}
		if i%3 == 0 {
			k, err := svc.CreateKey(ctx, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
			if err != nil {
				return err
			}
			if err := emit("created %s", k.KeyMetadata.KeyId); err != nil {
				return err
			}
		}
		id := keys[rng.IntN(len(keys))]
		if _, err := svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: id}); err != nil {
			return err
		}
		kr, err := svc.keyRecord(ctx, id)
		if err != nil {
			return err
		}
		if err := emit("rotated %s %d", id, kr.CurrentVersion); err != nil {
			return err
		}
		id = keys[rng.IntN(len(keys))]
		plain := make([]byte, 1+rng.IntN(64))
		for j := range plain {
			plain[j] = byte(rng.Uint32())
		}
		enc, err := svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: plain, EncryptionContext: crashContext(id)})
		if err != nil {
			return err
		}
		if err := emit("cipher %s %s %s", id, base64.StdEncoding.EncodeToString(enc.CiphertextBlob),
			base64.StdEncoding.EncodeToString(plain)); err != nil {
			return err
		}
	}
	// Wait to be killed; the parent never closes stdin first.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return errors.New("stdin closed before the parent killed the child")
}

// crashContext is the encryption context of the child's ciphertexts.
func crashContext(keyID string) map[string]string { return map[string]string{"crash": keyID} }

// crashHSM kills its own process with SIGKILL right before or right after
// the at-th CreateMasterKey or CreateKeyPair, as chosen by when and what.
type crashHSM struct {
	HSM
	when, what     string
	at             int
	masters, pairs int // calls so far; the child makes them one at a time
}

func (h *crashHSM) maybeDie(when, what string, n int) {
	if h.when == when && h.what == what && h.at == n {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

func (h *crashHSM) CreateMasterKey(ctx context.Context, id hsm.ObjectID, label string) error {
	h.masters++
	h.maybeDie("before", "master", h.masters)
	err := h.HSM.CreateMasterKey(ctx, id, label)
	h.maybeDie("after", "master", h.masters)
	return err
}

func (h *crashHSM) CreateKeyPair(ctx context.Context, id hsm.ObjectID, label string, spec hsm.KeySpec) (crypto.PublicKey, error) {
	h.pairs++
	h.maybeDie("before", "pair", h.pairs)
	pub, err := h.HSM.CreateKeyPair(ctx, id, label, spec)
	h.maybeDie("after", "pair", h.pairs)
	return pub, err
}

// crashRun is one child run: killed by the child itself at a token call
// (at), or by the parent delay after it read lines lines.
type crashRun struct {
	at    string
	lines int
	delay time.Duration
}

// crashLedger is what the children reported, over every run.
type crashLedger struct {
	created map[string]bool
	rotated map[string]uint32 // the highest version reported per key
	ciphers []madeCipher
}

// runCrashChildProcess starts a child on dir, kills it as run says and
// records the lines it printed in l.
func runCrashChildProcess(t *testing.T, dir string, run crashRun, seed uint64, l *crashLedger) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		crashChildEnv+"=1",
		crashConfEnv+"="+env.ConfPath,
		crashModuleEnv+"="+env.ModulePath,
		crashLabelEnv+"="+testLabel,
		crashDirEnv+"="+dir,
		crashSeedEnv+"="+strconv.FormatUint(seed, 10),
		crashAtEnv+"="+run.at,
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that neither dies nor prints is killed and fails the test.
	watchdog := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()
	// The parent's kill lands after run.lines lines and a random delay of
	// up to 10ms, anywhere in the operations that follow.
	kill := func() { _ = cmd.Process.Kill() }
	if run.at == "" && run.lines == 0 {
		time.AfterFunc(run.delay, kill)
	}
	r := bufio.NewReader(stdout)
	n := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // EOF: the child is dead; a partial last line is dropped
		}
		n++
		l.record(t, strings.TrimSuffix(line, "\n"))
		if run.at == "" && n == run.lines {
			time.AfterFunc(run.delay, kill)
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child %+v: %v after %d lines, want death by SIGKILL; stderr:\n%s", run, err, n, stderr.String())
	}
	t.Logf("child %+v: killed after %d lines", run, n)
}

// record adds one line of a child's output to the ledger.
func (l *crashLedger) record(t *testing.T, line string) {
	t.Helper()
	f := strings.Fields(line)
	switch {
	case len(f) == 2 && f[0] == "created":
		l.created[f[1]] = true
	case len(f) == 3 && f[0] == "rotated":
		v, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			t.Fatalf("child line %q: %v", line, err)
		}
		l.rotated[f[1]] = max(l.rotated[f[1]], uint32(v))
	case len(f) == 4 && f[0] == "cipher":
		blob, err1 := base64.StdEncoding.DecodeString(f[2])
		plain, err2 := base64.StdEncoding.DecodeString(f[3])
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("child line %q: %v", line, err)
		}
		l.ciphers = append(l.ciphers, madeCipher{keyID: f[1], blob: blob, plain: plain, encCtx: crashContext(f[1])})
	default:
		t.Fatalf("child printed %q", line)
	}
}

// crashState is every key and version in the store.
type crashState struct {
	keys     []store.Key
	versions map[string][]store.Version
}

// readCrashState reads every key and version from f's store.
func readCrashState(t *testing.T, f *fixture) crashState {
	t.Helper()
	s := crashState{versions: map[string][]store.Version{}}
	err := f.svc.store.View(t.Context(), func(tx store.Tx) error {
		var err error
		if s.keys, err = tx.Keys("", 0); err != nil {
			return err
		}
		for _, k := range s.keys {
			if s.versions[k.ID], err = tx.Versions(k.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the store: %v", err)
	}
	return s
}

// checkAfterCrash reconciles the store left by a killed child with the
// token and checks every invariant the children's reports promise.
func checkAfterCrash(t *testing.T, f *fixture, l *crashLedger) ReconcileReport {
	t.Helper()
	ctx := admin(t)
	before := readCrashState(t, f)
	// A key being created is rolled back when the token has none of its
	// material (its versions' objects destroyed), and rolled forward,
	// like a live key's pending versions, when it has some.
	var creating []string
	var orphans []store.Version // versions of keys rolled back
	pending := 0
	for _, k := range before.keys {
		made := false
		if k.State == store.KeyCreating {
			for _, v := range before.versions[k.ID] {
				if has, err := f.tok.HasKey(t.Context(), v.ObjectID); err != nil {
					t.Fatalf("HasKey: %v", err)
				} else if has {
					made = true
				}
			}
		}
		for _, v := range before.versions[k.ID] {
			switch {
			case k.State == store.KeyCreating && !made:
				orphans = append(orphans, v)
			case v.State == store.VersionPending && k.State != store.KeyDeleted:
				pending++
			}
		}
		if k.State == store.KeyCreating && !made {
			creating = append(creating, k.ID)
		}
	}

	rep, err := f.svc.Reconcile(ctx)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if rep.RolledBack != len(creating) || rep.RolledForward != pending || rep.Destroyed != 0 {
		t.Errorf("Reconcile = %+v; the store had %d keys Creating and %d pending versions of live keys", rep, len(creating), pending)
	}

	after := readCrashState(t, f)
	for _, k := range after.keys {
		vs := after.versions[k.ID]
		switch k.State {
		case store.KeyCreating:
			t.Errorf("key %s is still Creating", k.ID)
		case store.KeyDeleted:
			for _, v := range vs {
				if v.State != store.VersionDestroyed {
					t.Errorf("tombstone %s keeps version %d in state %s", k.ID, v.Number, v.State)
				}
			}
			if l.created[k.ID] {
				t.Errorf("key %s, reported created, is a tombstone", k.ID)
			}
		default:
			if l.created[k.ID] && k.State != store.KeyEnabled {
				t.Errorf("key %s, reported created, is %s", k.ID, k.State)
			}
			if k.CurrentVersion != k.LatestVersion || len(vs) != int(k.LatestVersion) {
				t.Errorf("key %s: current %d, latest %d, %d versions", k.ID, k.CurrentVersion, k.LatestVersion, len(vs))
			}
			if r := l.rotated[k.ID]; r > k.LatestVersion {
				t.Errorf("key %s: the child rotated it to version %d, the store has %d", k.ID, r, k.LatestVersion)
			}
			for i, v := range vs {
				if v.Number != uint32(i+1) || v.State != store.VersionActive {
					t.Errorf("key %s: version %d is number %d in state %s", k.ID, i+1, v.Number, v.State)
				}
				if has, err := f.tok.HasKey(t.Context(), v.ObjectID); err != nil || !has {
					t.Errorf("key %s v%d: HasKey = %v, %v; want its object on the token", k.ID, v.Number, has, err)
				}
			}
		}
	}
	for id := range l.created {
		if findKey(after.keys, id).ID != id {
			t.Errorf("key %s, reported created, is not in the store", id)
		}
	}
	for _, id := range creating {
		if k := findKey(after.keys, id); k.State != store.KeyDeleted || len(after.versions[id]) != 0 {
			t.Errorf("rolled back key %s is %s with %d versions, want a tombstone without versions", id, k.State, len(after.versions[id]))
		}
	}
	for _, v := range orphans {
		if has, err := f.tok.HasKey(t.Context(), v.ObjectID); err != nil || has {
			t.Errorf("rolled back key %s v%d: HasKey = %v, %v; want its object destroyed", v.KeyID, v.Number, has, err)
		}
	}

	for i := range l.ciphers {
		c := &l.ciphers[i]
		out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: c.blob, EncryptionContext: c.encCtx})
		if err != nil {
			t.Errorf("ciphertext %d under %s: Decrypt: %v", i, c.keyID, err)
			continue
		}
		if !bytes.Equal(out.Plaintext, c.plain) || out.KeyId != f.svc.keyARN(c.keyID) {
			t.Errorf("ciphertext %d under %s decrypts to the wrong plaintext or key %s", i, c.keyID, out.KeyId)
		}
	}

	if again, err := f.svc.Reconcile(ctx); err != nil || again != (ReconcileReport{}) {
		t.Errorf("a second Reconcile = %+v, %v; want nothing to do", again, err)
	}
	return rep
}

// findKey returns the key with ID id, or a zero Key.
func findKey(keys []store.Key, id string) store.Key {
	for _, k := range keys {
		if k.ID == id {
			return k
		}
	}
	return store.Key{}
}

// TestCrashAtAnyPointLeavesConsistentState runs a child process that
// creates, rotates and encrypts on a shared store and token, SIGKILLs it
// twelve times (right before and right after making a master key for a new
// key and for a rotation, and a key pair, and after a random number of
// completed operations), and after every kill reconciles: no key is left
// Creating (a key being created is rolled forward if its material was
// made, else back), every reported key is Enabled, every live version is active
// with its object on the token and numbered without gaps, rolled back keys
// left no object, every reported ciphertext decrypts, and a second
// Reconcile has nothing to do.
func TestCrashAtAnyPointLeavesConsistentState(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	// In the child, CreateMasterKey call 3 makes a new key and call 4
	// rotates one; CreateKeyPair call 2 makes the fourth iteration's key.
	runs := []crashRun{
		{at: "before:master:3"}, {at: "after:master:3"},
		{at: "before:master:4"}, {at: "after:master:4"},
		{at: "before:pair:2"}, {at: "after:pair:2"},
	}
	for range 6 {
		runs = append(runs, crashRun{lines: rng.IntN(31), delay: time.Duration(rng.Int64N(int64(10 * time.Millisecond)))})
	}
	// What each deterministic kill must leave for Reconcile: a key being
	// created is rolled back when killed before the token made its
	// material, and rolled forward when killed after.
	want := map[string]ReconcileReport{
		"before:master:3": {RolledBack: 1}, "after:master:3": {RolledForward: 1},
		"before:master:4": {RolledForward: 1}, "after:master:4": {RolledForward: 1},
		"before:pair:2": {RolledBack: 1}, "after:pair:2": {RolledForward: 1},
	}

	dir := t.TempDir()
	l := &crashLedger{created: map[string]bool{}, rotated: map[string]uint32{}}
	for i, run := range runs {
		runCrashChildProcess(t, dir, run, seed+uint64(i), l)
		f := newFixture(t, dir)
		rep := checkAfterCrash(t, f, l)
		f.close()
		t.Logf("after kill %d: %+v", i, rep)
		if w, ok := want[run.at]; ok && rep != w {
			t.Errorf("kill %s: Reconcile = %+v, want %+v", run.at, rep, w)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if len(l.created) == 0 || len(l.ciphers) == 0 {
		t.Fatalf("the children reported %d keys and %d ciphertexts", len(l.created), len(l.ciphers))
	}
	t.Logf("%d keys created, %d ciphertexts over %d kills", len(l.created), len(l.ciphers), len(runs))
}
