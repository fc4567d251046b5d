package hsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/softhsm"
	"github.com/miekg/pkcs11"
)

// openTestModule opens the package's module and closes it when the test ends
// (unless the test closed it itself).
func openTestModule(t *testing.T) *Module {
	t.Helper()
	m, err := OpenModule(ModuleConfig{Path: env.ModulePath})
	if err != nil {
		t.Fatalf("OpenModule: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// testSlot returns the slot and token of the package's token as the module
// lists them.
func testSlot(t *testing.T, m *Module) Slot {
	t.Helper()
	slots, err := m.Slots()
	if err != nil {
		t.Fatalf("Slots: %v", err)
	}
	for _, s := range slots {
		if s.Token != nil && s.Token.Label == testLabel {
			return s
		}
	}
	t.Fatalf("no slot holds a token labelled %q: %+v", testLabel, slots)
	return Slot{}
}

// testSerial returns the serial of the package's token, read with a module
// that is closed again before it returns.
func testSerial(t *testing.T) string {
	t.Helper()
	m, err := OpenModule(ModuleConfig{Path: env.ModulePath})
	if err != nil {
		t.Fatalf("OpenModule: %v", err)
	}
	defer m.Close()
	return testSlot(t, m).Token.Serial
}

// newFaulty returns a faulty wrapper hiding the mechanisms in hide; its
// wrap method goes in Config.Wrap.
func newFaulty(hide map[uint]bool) *faulty {
	return &faulty{faults: map[string][]error{}, calls: map[string]int{}, hide: hide, gate: map[string]chan struct{}{}}
}

func (f *faulty) wrap(p PKCS11) PKCS11 { f.PKCS11 = p; return f }

// openFaultyErr is openFaulty, with the mechanisms in hide hidden from the
// start, that returns Open's error instead of failing the test, for tests
// of Open itself. The token, when there is one, is closed when the test ends.
func openFaultyErr(t *testing.T, hide map[uint]bool, change ...func(*Config)) (*Token, *faulty, error) {
	t.Helper()
	f := newFaulty(hide)
	cfg := testConfig()
	cfg.Wrap = f.wrap
	for _, c := range change {
		c(&cfg)
	}
	tok, err := Open(t.Context(), cfg)
	if err == nil {
		t.Cleanup(func() {
			if err := tok.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	return tok, f, err
}

// TestModuleSlotsAndMechanisms proves that OpenModule, Slots, Mechanisms and
// Info describe the package's SoftHSM2 token as SoftHSM2 itself does.
func TestModuleSlotsAndMechanisms(t *testing.T) {
	m := openTestModule(t)
	s := testSlot(t, m)
	tok := s.Token

	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(tok.Serial) {
		t.Errorf("serial = %q, want 16 hex digits", tok.Serial)
	}
	if tok.Manufacturer != "SoftHSM project" {
		t.Errorf("manufacturer = %q, want %q", tok.Manufacturer, "SoftHSM project")
	}
	if !tok.Initialized {
		t.Error("Initialized = false for an initialised token")
	}
	if tok.SlotID != s.ID {
		t.Errorf("token slot %d != slot %d", tok.SlotID, s.ID)
	}
	for _, flag := range []string{"TOKEN_INITIALIZED", "RNG", "LOGIN_REQUIRED", "USER_PIN_INITIALIZED"} {
		if !slices.Contains(tok.Flags, flag) {
			t.Errorf("token flags %v lack %s", tok.Flags, flag)
		}
	}
	if !slices.Contains(s.Flags, "TOKEN_PRESENT") {
		t.Errorf("slot flags %v lack TOKEN_PRESENT", s.Flags)
	}

	mechs, err := m.Mechanisms(s.ID)
	if err != nil {
		t.Fatalf("Mechanisms: %v", err)
	}
	byName := map[string]Mechanism{}
	for _, mech := range mechs {
		byName[mech.Name] = mech
	}
	for _, tc := range []struct {
		name  string
		typ   uint
		flags []string
	}{
		{"CKM_AES_GCM", pkcs11.CKM_AES_GCM, []string{"ENCRYPT", "DECRYPT"}},
		{"CKM_AES_KEY_WRAP", pkcs11.CKM_AES_KEY_WRAP, []string{"WRAP", "UNWRAP"}},
		{"CKM_AES_KEY_GEN", pkcs11.CKM_AES_KEY_GEN, []string{"GENERATE"}},
		{"CKM_EC_KEY_PAIR_GEN", pkcs11.CKM_EC_KEY_PAIR_GEN, []string{"GENERATE_KEY_PAIR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mech, ok := byName[tc.name]
			if !ok {
				t.Fatalf("Mechanisms lacks %s", tc.name)
			}
			if mech.Type != tc.typ {
				t.Errorf("type = %#x, want %#x", mech.Type, tc.typ)
			}
			for _, f := range tc.flags {
				if !slices.Contains(mech.Flags, f) {
					t.Errorf("flags %v lack %s", mech.Flags, f)
				}
			}
		})
	}

	info, err := m.Info()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Path != env.ModulePath || m.Path() != env.ModulePath {
		t.Errorf("Info().Path = %q, Path() = %q, want %q", info.Path, m.Path(), env.ModulePath)
	}
	if !regexp.MustCompile(`^[2-9]\.[0-9]+$`).MatchString(info.CryptokiVersion) {
		t.Errorf("CryptokiVersion = %q, want a version 2.x or later", info.CryptokiVersion)
	}
	if info.Manufacturer == "" {
		t.Error("Info().Manufacturer is empty")
	}
}

// TestModuleOneOwner proves that a library has one owner in a process: a
// second OpenModule (or a Token's Open) fails while the first is open, leaves
// the first working, and works again once the first is closed.
func TestModuleOneOwner(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second func(t *testing.T) error
	}{
		{"OpenModule", func(t *testing.T) error {
			m, err := OpenModule(ModuleConfig{Path: env.ModulePath})
			if err == nil {
				m.Close()
			}
			return err
		}},
		{"Open", func(t *testing.T) error {
			tok, err := Open(t.Context(), testConfig())
			if err == nil {
				tok.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, err := OpenModule(ModuleConfig{Path: env.ModulePath})
			if err != nil {
				t.Fatalf("first OpenModule: %v", err)
			}
			err = tc.second(t)
			if err == nil || !strings.Contains(err.Error(), "already initialised") {
				first.Close()
				t.Fatalf("second open while the first is open: err = %v, want 'already initialised'", err)
			}
			// The refused owner must not have finalised the library under
			// the first one.
			if _, err := first.Slots(); err != nil {
				t.Errorf("first module after the refused open: %v", err)
			}
			if err := first.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			again, err := OpenModule(ModuleConfig{Path: env.ModulePath})
			if err != nil {
				t.Fatalf("OpenModule after Close: %v", err)
			}
			if _, err := again.Slots(); err != nil {
				t.Errorf("Slots after reopening: %v", err)
			}
			if err := again.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// TestOpenModuleBadPath proves that paths which are not a PKCS#11 library
// give clear errors, not panics.
func TestOpenModuleBadPath(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "libnotpkcs11.so")
	if err := os.WriteFile(text, []byte("this is not a shared library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"empty", "", "no PKCS#11 module path"},
		{"nonexistent", filepath.Join(dir, "nonexistent.so"), "cannot load PKCS#11 module " + filepath.Join(dir, "nonexistent.so")},
		{"text file", text, "cannot load PKCS#11 module " + text},
		{"directory", dir, "cannot load PKCS#11 module " + dir},
		// A real shared library without C_GetFunctionList.
		{"not PKCS#11", "libc.so.6", "cannot load PKCS#11 module libc.so.6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := OpenModule(ModuleConfig{Path: tc.path})
			if err == nil {
				m.Close()
				t.Fatalf("OpenModule(%q) succeeded", tc.path)
			}
			if m != nil {
				t.Errorf("OpenModule returned a module with the error %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestOpenTokenSelection proves that Open selects the token by label and
// serial, refuses a wrong PIN as ErrLogin, needs a PIN, and closes the module
// on every failure (the next Open works).
func TestOpenTokenSelection(t *testing.T) {
	serial := testSerial(t)
	for _, tc := range []struct {
		name   string
		change func(*Config)
		kind   error // nil: Open must succeed
		want   string
	}{
		{"label and serial", func(c *Config) { c.TokenSerial = serial }, nil, ""},
		{"unknown label", func(c *Config) { c.TokenLabel = "no-such-token" }, ErrUnavailable, `"no-such-token"`},
		{"wrong serial", func(c *Config) { c.TokenSerial = "0123456789abcdef" }, ErrUnavailable, `"0123456789abcdef"`},
		{"wrong PIN", func(c *Config) { c.PIN = NewPIN("wrong-pin") }, ErrLogin, testLabel},
		{"zero PIN", func(c *Config) { c.PIN = PIN{} }, errNoPIN, "no PIN"},
		{"empty PIN", func(c *Config) { c.PIN = NewPIN("") }, errNoPIN, "no PIN"},
		{"no label", func(c *Config) { c.TokenLabel = "" }, nil, "no token label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.change(&cfg)
			tok, err := Open(t.Context(), cfg)
			switch {
			case tc.kind == nil && tc.want == "":
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if got := tok.info.Serial; got != serial {
					t.Errorf("serial = %q, want %q", got, serial)
				}
				if err := tok.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			case err == nil:
				tok.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tc.want)
			default:
				if tok != nil {
					t.Errorf("Open returned a token with the error %v", err)
				}
				if tc.kind != nil && !errors.Is(err, tc.kind) {
					t.Errorf("error %v is not %v", err, tc.kind)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not contain %q", err, tc.want)
				}
				if tc.kind != ErrLogin && errors.Is(err, ErrLogin) {
					t.Errorf("error %v is ErrLogin", err)
				}
			}
			// A failed Open must have finalised the module.
			tok, err = Open(t.Context(), testConfig())
			if err != nil {
				t.Fatalf("Open after the case: %v", err)
			}
			if err := tok.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// TestCapabilities proves that a token lacking a required mechanism opens
// (diagnostics work on any token) but is not serviceable, naming what it
// lacks, and that one lacking an optional mechanism refuses the operations
// needing it before any call reaches the token.
func TestCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hide    uint // 0: hide nothing
		hide2   uint // a second mechanism to hide
		openErr string
		check   func(t *testing.T, tok *Token, f *faulty)
	}{
		{name: "all present", check: func(t *testing.T, tok *Token, f *faulty) {
			want := Capabilities{AESKeyGen: true, AESGCM: true, AESKeyWrap: true, GenericKeyGen: true, RNG: true,
				ECKeyGen: true, ECDSA: true, RSAKeyGen: true, RSAPKCS: true, RSAPSS: true, AESCBCPad: true, HMACSHA256: true}
			if err := tok.Capabilities().Serviceable(); err != nil {
				t.Errorf("Serviceable() = %v", err)
			}
			for _, f := range tok.Capabilities().Features() {
				if !f.Supported || f.Lacks != "" {
					t.Errorf("feature %+v: SoftHSM2 has it", f)
				}
			}
			if got := tok.Capabilities(); got != want {
				t.Errorf("Capabilities() = %+v, want %+v", got, want)
			}
			id := newMasterKey(t, tok)
			dk, wrapped, err := tok.WrapDataKey(t.Context(), id, 32)
			if err != nil {
				t.Fatalf("WrapDataKey: %v", err)
			}
			got, err := tok.UnwrapDataKey(t.Context(), id, wrapped)
			if err != nil || !bytes.Equal(got, dk) {
				t.Errorf("UnwrapDataKey = %x, %v; want %x", got, err, dk)
			}
		}},
		{name: "no AES-GCM", hide: pkcs11.CKM_AES_GCM, check: func(t *testing.T, tok *Token, f *faulty) {
			// The portable mechanism takes over: the token still serves.
			caps := tok.Capabilities()
			if err := caps.Serviceable(); err != nil || caps.AESGCM {
				t.Errorf("without AES-GCM but with CBC-PAD and HMAC: Serviceable() = %v, AESGCM %v; want nil, false", err, caps.AESGCM)
			}
		}},
		{name: "no AES key generation", hide: pkcs11.CKM_AES_KEY_GEN, openErr: "CKM_AES_KEY_GEN"},
		{name: "no AES key wrap", hide: pkcs11.CKM_AES_KEY_WRAP, check: func(t *testing.T, tok *Token, f *faulty) {
			caps := tok.Capabilities()
			if caps.AESKeyWrap {
				t.Error("Capabilities().AESKeyWrap = true with CKM_AES_KEY_WRAP hidden")
			}
			if !caps.AESGCM || !caps.GenericKeyGen {
				t.Errorf("hiding CKM_AES_KEY_WRAP changed other capabilities: %+v", caps)
			}
			id := newMasterKey(t, tok)
			gen, unwrap := f.count("GenerateKey"), f.count("UnwrapKey")
			_, _, err := tok.WrapDataKey(t.Context(), id, 32)
			wantUnsupported(t, "WrapDataKey", err, "CKM_AES_KEY_WRAP")
			_, err = tok.UnwrapDataKey(t.Context(), id, make([]byte, 40))
			wantUnsupported(t, "UnwrapDataKey", err, "CKM_AES_KEY_WRAP")
			if n := f.count("GenerateKey") - gen; n != 0 {
				t.Errorf("WrapDataKey called C_GenerateKey %d times", n)
			}
			if n := f.count("UnwrapKey") - unwrap; n != 0 {
				t.Errorf("UnwrapDataKey called C_UnwrapKey %d times", n)
			}
			// AES-GCM data keys still work.
			iv, _ := NewIV()
			if _, _, err := tok.SealDataKey(t.Context(), id, 32, iv, []byte("aad")); err != nil {
				t.Errorf("SealDataKey: %v", err)
			}
		}},
		{name: "no EC key pair generation", hide: pkcs11.CKM_EC_KEY_PAIR_GEN, check: func(t *testing.T, tok *Token, f *faulty) {
			if tok.Capabilities().ECKeyGen {
				t.Error("Capabilities().ECKeyGen = true with CKM_EC_KEY_PAIR_GEN hidden")
			}
			id, err := NewObjectID()
			if err != nil {
				t.Fatal(err)
			}
			find := f.count("FindObjectsInit")
			_, err = tok.CreateKeyPair(t.Context(), id, "hsmkms/test/ec", ECP256)
			wantUnsupported(t, "CreateKeyPair(ECP256)", err, "CKM_EC_KEY_PAIR_GEN")
			if n := f.count("FindObjectsInit") - find; n != 0 {
				t.Errorf("CreateKeyPair reached the token (%d C_FindObjectsInit)", n)
			}
			if has, err := tok.HasKey(t.Context(), id); err != nil || has {
				t.Errorf("HasKey after the refused CreateKeyPair = %v, %v", has, err)
			}
		}},
		{name: "no AES-GCM and no CBC-PAD", hide: pkcs11.CKM_AES_GCM, hide2: pkcs11.CKM_AES_CBC_PAD, openErr: "CKM_AES_GCM encrypt and decrypt (aes-gcm), or CKM_AES_CBC_PAD encrypt and decrypt (aes-cbc-hmac)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hide := map[uint]bool{}
			if tc.hide != 0 {
				hide[tc.hide] = true
			}
			if tc.hide2 != 0 {
				hide[tc.hide2] = true
			}
			tok, f, err := openFaultyErr(t, hide)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if tc.openErr != "" {
				wantUnsupported(t, "Serviceable", tok.Capabilities().Serviceable(), tc.openErr)
				if tc.hide2 == 0 {
					lacking := 0
					for _, f := range tok.Capabilities().Features() {
						if !f.Supported {
							lacking++
							if !f.Required || !strings.Contains(f.Lacks, tc.openErr) {
								t.Errorf("feature %+v: only the required feature needing %s is missing", f, tc.openErr)
							}
						}
					}
					if lacking != 1 {
						t.Errorf("%d features missing with only %s hidden, want 1", lacking, tc.openErr)
					}
				}
				return
			}
			tc.check(t, tok, f)
		})
	}
}

// wantUnsupported fails t unless err is ErrMechanismUnsupported naming mech.
func wantUnsupported(t *testing.T, op string, err error, mech string) {
	t.Helper()
	if !errors.Is(err, ErrMechanismUnsupported) {
		t.Errorf("%s: error %v is not ErrMechanismUnsupported", op, err)
		return
	}
	if !strings.Contains(err.Error(), mech) {
		t.Errorf("%s: error %q does not name %s", op, err, mech)
	}
}

// TestPINNeverLeaks proves that a PIN's value reaches no formatted string,
// config dump, JSON, error or log line, including those of a real login
// with it, a re-login and a failed login.
func TestPINNeverLeaks(t *testing.T) {
	const secret = "s3cr3t-pin-4711"
	pin := NewPIN(secret)
	cfg := Config{ModulePath: env.ModulePath, TokenLabel: testLabel, PIN: pin}
	// holder keeps a Config in an unexported field, as Token does: fmt
	// cannot call PIN's Format there.
	type holder struct{ cfg Config }

	for _, tc := range []struct {
		name     string
		out      func(t *testing.T) string
		redacted bool // the output must show "[redacted]"
	}{
		{"%v", func(*testing.T) string { return fmt.Sprintf("%v", pin) }, true},
		{"%s", func(*testing.T) string { return fmt.Sprintf("%s", pin) }, true},
		{"%+v", func(*testing.T) string { return fmt.Sprintf("%+v", pin) }, true},
		{"%#v", func(*testing.T) string { return fmt.Sprintf("%#v", pin) }, true},
		{"%q", func(*testing.T) string { return fmt.Sprintf("%q", pin) }, true},
		{"%x", func(*testing.T) string { return fmt.Sprintf("%x", pin) }, true},
		{"String", func(*testing.T) string { return pin.String() + pin.GoString() }, true},
		{"pointer %+v", func(*testing.T) string { return fmt.Sprintf("%+v", &pin) }, true},
		{"Config %+v", func(*testing.T) string { return fmt.Sprintf("%+v", cfg) }, true},
		{"Config %#v", func(*testing.T) string { return fmt.Sprintf("%#v", cfg) }, true},
		{"Config in an unexported field %+v", func(*testing.T) string { return fmt.Sprintf("%+v", holder{cfg}) }, false},
		{"Config in an unexported field %#v", func(*testing.T) string { return fmt.Sprintf("%#v", &holder{cfg}) }, false},
		{"json", func(t *testing.T) string {
			b, err := json.Marshal(struct {
				PIN  PIN            `json:"pin"`
				Ptr  *PIN           `json:"ptr"`
				List []PIN          `json:"list"`
				Map  map[string]PIN `json:"map"`
			}{pin, &pin, []PIN{pin}, map[string]PIN{"pin": pin}})
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			return string(b)
		}, true},
		{"hclog arguments", func(t *testing.T) string {
			var buf bytes.Buffer
			for _, jsonFormat := range []bool{true, false} {
				l := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace, JSONFormat: jsonFormat})
				l.Info("config", "pin", pin, "config", cfg)
			}
			return buf.String()
		}, true},
		{"failed login", func(t *testing.T) string {
			tok, err := Open(t.Context(), cfg)
			if err == nil {
				tok.Close()
				t.Fatal("Open with a wrong PIN succeeded")
			}
			if !errors.Is(err, ErrLogin) {
				t.Errorf("error %v is not ErrLogin", err)
			}
			return fmt.Sprintf("%v\n%+v\n%#v", err, err, err)
		}, false},
		{"token and logs of a real login", func(t *testing.T) string {
			return useTokenWithPIN(t, secret)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.out(t)
			if strings.Contains(out, secret) {
				t.Errorf("the PIN leaked: %s", out)
			}
			if tc.redacted && !strings.Contains(out, "[redacted]") {
				t.Errorf("output does not say [redacted]: %s", out)
			}
		})
	}
}

// useTokenWithPIN makes a private store whose token's PIN is pin, opens it
// with a trace-level JSON logger, runs operations including a re-login,
// closes it, and returns the Token printed every way and the logs.
func useTokenWithPIN(t *testing.T, pin string) string {
	t.Helper()
	const label = "pin-leak"
	store, err := softhsm.New(t.Context(), softhsm.Config{Dir: t.TempDir(), Label: label, PIN: pin, SOPIN: "so-" + pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(softhsm.ConfEnv, store.ConfPath)
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Name: "leak", Output: &logs, Level: hclog.Trace, JSONFormat: true})
	f := newFaulty(map[uint]bool{})
	cfg := Config{ModulePath: env.ModulePath, TokenLabel: label, PIN: NewPIN(pin), Logger: log, Wrap: f.wrap}
	tok, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx := t.Context()
	id := newMasterKey(t, tok)
	iv, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("aad")
	// The token drops the login once: Seal logs in again with the PIN.
	f.inject("EncryptInit", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN))
	sealed, err := tok.Seal(ctx, id, iv, aad, []byte("plaintext"))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if n := f.count("Login"); n < 2 {
		t.Errorf("C_Login called %d times, want a re-login", n)
	}
	if _, err := tok.Unseal(ctx, id, iv, aad, sealed); err != nil {
		t.Errorf("Unseal: %v", err)
	}
	sealed[0] ^= 1
	if _, err := tok.Unseal(ctx, id, iv, aad, sealed); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("Unseal of a changed ciphertext: %v", err)
	}
	if _, err := tok.Info(ctx); err != nil {
		t.Errorf("Info: %v", err)
	}
	if _, err := tok.Mechanisms(ctx); err != nil {
		t.Errorf("Mechanisms: %v", err)
	}
	log.Info("opened", "token", tok, "config", cfg, "pin", cfg.PIN)
	printed := fmt.Sprintf("%v\n%+v\n%#v\n", tok, tok, tok)
	if err := tok.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// The logs must be real, or their check proves nothing.
	if !strings.Contains(logs.String(), "token opened") || !strings.Contains(logs.String(), label) {
		t.Errorf("the logs lack the open event: %s", logs.String())
	}
	return printed + logs.String()
}

// TestPINFromFile proves that a PIN file's first line is the PIN, without
// its line ending, and that empty or missing files are errors.
func TestPINFromFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content *string // nil: no file
		want    string
		wantErr string
	}{
		{name: "newline", content: ptr("1234\n"), want: "1234"},
		{name: "CRLF", content: ptr("1234\r\n"), want: "1234"},
		{name: "no line ending", content: ptr("1234"), want: "1234"},
		{name: "first line only", content: ptr("1234\nsecond\n"), want: "1234"},
		{name: "inner spaces kept", content: ptr(" 12 34\n"), want: " 12 34"},
		{name: "empty", content: ptr(""), wantErr: "is empty"},
		{name: "empty line", content: ptr("\n"), wantErr: "is empty"},
		{name: "CRLF only", content: ptr("\r\n"), wantErr: "is empty"},
		{name: "missing", wantErr: "reading PIN file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			pin, err := PINFromFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("PINFromFile = %v, want an error containing %q", err, tc.wantErr)
				}
				if !pin.IsZero() {
					t.Error("PIN not zero with the error")
				}
				return
			}
			if err != nil {
				t.Fatalf("PINFromFile: %v", err)
			}
			if got := pin.Reveal(); got != tc.want {
				t.Errorf("PIN = %q, want %q", got, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestPINFromEnv proves that PINFromEnv reads the variable and refuses an
// unset or empty one.
func TestPINFromEnv(t *testing.T) {
	const name = "HSMKMS_TEST_PIN_FROM_ENV"
	for _, tc := range []struct {
		name  string
		value *string // nil: unset
		want  string
	}{
		{"set", ptr("4711"), "4711"},
		{"unset", nil, ""},
		{"empty", ptr(""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(name, "")
			if tc.value == nil {
				os.Unsetenv(name)
			} else {
				os.Setenv(name, *tc.value)
			}
			pin, err := PINFromEnv(name)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), name) {
					t.Fatalf("PINFromEnv = %v, want an error naming %s", err, name)
				}
				if !pin.IsZero() {
					t.Error("PIN not zero with the error")
				}
				return
			}
			if err != nil {
				t.Fatalf("PINFromEnv: %v", err)
			}
			if got := pin.Reveal(); got != tc.want {
				t.Errorf("PIN = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestMechanismName proves that known mechanisms get their CKM_ names and
// unknown ones their hex value.
func TestMechanismName(t *testing.T) {
	for _, tc := range []struct {
		mech uint
		want string
	}{
		{pkcs11.CKM_AES_GCM, "CKM_AES_GCM"},
		{pkcs11.CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP"},
		{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN"}, // 0
		{ckmAESKeyWrapKWP, "CKM_AES_KEY_WRAP_KWP"},
		{pkcs11.CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"},
		{0x80000001, "0x80000001"}, // vendor-defined
		{0x1234, "0x00001234"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := MechanismName(tc.mech); got != tc.want {
				t.Errorf("MechanismName(%#x) = %q, want %q", tc.mech, got, tc.want)
			}
		})
	}
}

// TestFlagNames proves that flagNames names the set bits in table order,
// shows unknown bits in hex (a flag a token sets never goes unseen) and
// returns an empty, non-nil list for none.
func TestFlagNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags uint
		names []flagName
		want  []string
	}{
		{"none", 0, mechanismFlagNames, []string{}},
		{"encrypt decrypt", pkcs11.CKF_DECRYPT | pkcs11.CKF_ENCRYPT, mechanismFlagNames, []string{"ENCRYPT", "DECRYPT"}},
		{"wrap unwrap", pkcs11.CKF_WRAP | pkcs11.CKF_UNWRAP, mechanismFlagNames, []string{"WRAP", "UNWRAP"}},
		{"unknown bit", 1 << 40, mechanismFlagNames, []string{"0x10000000000"}},
		{"openCryptoki's fresh token", 0x80044D, tokenFlagNames, []string{"RNG", "LOGIN_REQUIRED", "USER_PIN_INITIALIZED", "CLOCK_ON_TOKEN", "TOKEN_INITIALIZED", "SO_PIN_TO_BE_CHANGED"}},
		{"token", pkcs11.CKF_RNG | pkcs11.CKF_TOKEN_INITIALIZED | pkcs11.CKF_LOGIN_REQUIRED, tokenFlagNames, []string{"RNG", "LOGIN_REQUIRED", "TOKEN_INITIALIZED"}},
		{"slot", pkcs11.CKF_TOKEN_PRESENT | pkcs11.CKF_HW_SLOT, slotFlagNames, []string{"TOKEN_PRESENT", "HW_SLOT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := flagNames(tc.flags, tc.names)
			if got == nil || !slices.Equal(got, tc.want) {
				t.Errorf("flagNames(%#x) = %#v, want %#v", tc.flags, got, tc.want)
			}
		})
	}
}
