package hsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/softhsm"
	"github.com/miekg/pkcs11"
)

// moduleConfig is the ModuleConfig of the package's module.
func moduleConfig() ModuleConfig {
	return ModuleConfig{Path: env.ModulePath, InitParams: env.InitParams}
}

// openTestModule opens the package's module and closes it when the test ends
// (unless the test closed it itself).
func openTestModule(t *testing.T) *Module {
	t.Helper()
	m, err := OpenModule(moduleConfig())
	if err != nil {
		t.Fatalf("OpenModule: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// rawModule is the miekg/pkcs11 context under m: tests ask it what the
// module itself says, to compare with what Module makes of it.
func rawModule(t *testing.T, m *Module) *pkcs11.Ctx {
	t.Helper()
	ctx, ok := m.p.(*pkcs11.Ctx)
	if !ok {
		t.Fatalf("module is a %T, not *pkcs11.Ctx", m.p)
	}
	return ctx
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
		if s.Token != nil && s.Token.Label == env.Label {
			return s
		}
	}
	t.Fatalf("no slot holds a token labelled %q: %+v", env.Label, slots)
	return Slot{}
}

// testSerial returns the serial of the package's token, read with a module
// that is closed again before it returns.
func testSerial(t *testing.T) string {
	t.Helper()
	m, err := OpenModule(moduleConfig())
	if err != nil {
		t.Fatalf("OpenModule: %v", err)
	}
	defer m.Close()
	return testSlot(t, m).Token.Serial
}

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

// version formats a PKCS#11 version as Module does.
func version(v pkcs11.Version) string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// TestModuleSlotsAndMechanisms proves that OpenModule, Slots, Mechanisms and
// Info describe the package's token as the module itself does: every field
// is what the raw C_GetInfo, C_GetSlotInfo, C_GetTokenInfo,
// C_GetMechanismList and C_GetMechanismInfo answer, blank padding trimmed,
// in the module's order. Beyond that it asserts only what PKCS#11 and the
// test harness guarantee (a serial and a manufacturer, an initialised token
// with a user PIN), never one implementation's strings: the implementations
// tested differ in all of them.
func TestModuleSlotsAndMechanisms(t *testing.T) {
	m := openTestModule(t)
	ctx := rawModule(t, m)
	s := testSlot(t, m)
	tok := s.Token
	rawSlot, err := ctx.GetSlotInfo(s.ID)
	if err != nil {
		t.Fatalf("C_GetSlotInfo: %v", err)
	}
	rawTok, err := ctx.GetTokenInfo(s.ID)
	if err != nil {
		t.Fatalf("C_GetTokenInfo: %v", err)
	}

	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"slot ID of the token", tok.SlotID, s.ID},
		{"slot description", s.Description, unpad(rawSlot.SlotDescription)},
		{"slot manufacturer", s.Manufacturer, unpad(rawSlot.ManufacturerID)},
		{"slot flags", s.Flags, flagNames(rawSlot.Flags, slotFlagNames)},
		{"label", tok.Label, unpad(rawTok.Label)},
		{"serial", tok.Serial, unpad(rawTok.SerialNumber)},
		{"manufacturer", tok.Manufacturer, unpad(rawTok.ManufacturerID)},
		{"model", tok.Model, unpad(rawTok.Model)},
		{"token flags", tok.Flags, flagNames(rawTok.Flags, tokenFlagNames)},
		{"initialized", tok.Initialized, rawTok.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0},
		{"max sessions", tok.MaxSessionCount, rawTok.MaxSessionCount},
		{"max read-write sessions", tok.MaxRwSessionCount, rawTok.MaxRwSessionCount},
		{"total private memory", tok.TotalPrivateMemory, rawTok.TotalPrivateMemory},
		{"hardware version", tok.HardwareVersion, version(rawTok.HardwareVersion)},
		{"firmware version", tok.FirmwareVersion, version(rawTok.FirmwareVersion)},
	} {
		if fmt.Sprint(f.got) != fmt.Sprint(f.want) {
			t.Errorf("%s = %v, the module says %v", f.name, f.got, f.want)
		}
	}
	// PKCS#11 gives every token a serial number and a manufacturer ID.
	if tok.Serial == "" || tok.Manufacturer == "" {
		t.Errorf("serial %q, manufacturer %q: want both non-empty", tok.Serial, tok.Manufacturer)
	}
	// The harness initialised the token and its user PIN.
	for _, flag := range []string{"TOKEN_INITIALIZED", "USER_PIN_INITIALIZED"} {
		if !slices.Contains(tok.Flags, flag) {
			t.Errorf("token flags %v lack %s", tok.Flags, flag)
		}
	}
	if !slices.Contains(s.Flags, "TOKEN_PRESENT") {
		t.Errorf("slot flags %v lack TOKEN_PRESENT", s.Flags)
	}

	list, err := ctx.GetMechanismList(s.ID)
	if err != nil {
		t.Fatalf("C_GetMechanismList: %v", err)
	}
	mechs, err := m.Mechanisms(s.ID)
	if err != nil {
		t.Fatalf("Mechanisms: %v", err)
	}
	if len(mechs) != len(list) {
		t.Fatalf("Mechanisms lists %d mechanisms, C_GetMechanismList %d", len(mechs), len(list))
	}
	for i, raw := range list {
		info, err := ctx.GetMechanismInfo(s.ID, []*pkcs11.Mechanism{raw})
		if err != nil {
			t.Fatalf("C_GetMechanismInfo(%#x): %v", raw.Mechanism, err)
		}
		want := Mechanism{Type: raw.Mechanism, Name: MechanismName(raw.Mechanism), MinKeySize: info.MinKeySize,
			MaxKeySize: info.MaxKeySize, Flags: flagNames(info.Flags, mechanismFlagNames), flags: info.Flags}
		if got := mechs[i]; fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("mechanism %d = %+v, the module says %+v", i, got, want)
		}
	}
	// hsmkms cannot serve without making AES keys: the one mechanism
	// every token it runs on has, found under its CKM_ name.
	if i := slices.IndexFunc(mechs, func(m Mechanism) bool { return m.Name == "CKM_AES_KEY_GEN" }); i < 0 ||
		mechs[i].Type != pkcs11.CKM_AES_KEY_GEN || !slices.Contains(mechs[i].Flags, "GENERATE") {
		t.Errorf("Mechanisms lists no CKM_AES_KEY_GEN of type %#x with GENERATE: %+v", pkcs11.CKM_AES_KEY_GEN, mechs)
	}

	info, err := m.Info()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	rawInfo, err := ctx.GetInfo()
	if err != nil {
		t.Fatalf("C_GetInfo: %v", err)
	}
	want := ModuleInfo{Path: env.ModulePath, CryptokiVersion: version(rawInfo.CryptokiVersion),
		Manufacturer: unpad(rawInfo.ManufacturerID), LibraryDescription: unpad(rawInfo.LibraryDescription),
		LibraryVersion: version(rawInfo.LibraryVersion)}
	if info != want {
		t.Errorf("Info() = %+v, the module says %+v", info, want)
	}
	if m.Path() != env.ModulePath {
		t.Errorf("Path() = %q, want %q", m.Path(), env.ModulePath)
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
			m, err := OpenModule(moduleConfig())
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
			first, err := OpenModule(moduleConfig())
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
			again, err := OpenModule(moduleConfig())
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
		{"wrong PIN", func(c *Config) { c.PIN = NewPIN("wrong-pin") }, ErrLogin, env.Label},
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

// mechNeed is a mechanism and the flags a feature needs of it.
type mechNeed struct {
	mech, flags uint
}

// featureNeeds is the test's own account of what each feature Features
// reports needs of the token, from PKCS#11 and hsmkms's design, kept apart
// from the table Open probes with so that each checks the other. The rng
// feature needs the token's CKF_RNG flag, no mechanism.
var featureNeeds = map[string][]mechNeed{
	"master-keys":        {{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKF_GENERATE}},
	"unextractable-keys": nil,
	"rng":                nil,
	"aes-gcm":            {{pkcs11.CKM_AES_GCM, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT}},
	"aes-kw": {{pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKF_WRAP | pkcs11.CKF_UNWRAP},
		{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE}},
	"aes-cbc-hmac": {{pkcs11.CKM_AES_CBC_PAD, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT},
		{pkcs11.CKM_SHA256_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY},
		{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE}},
	"ecdsa": {{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR},
		{pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY}},
	"rsa": {{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR},
		{pkcs11.CKM_RSA_PKCS, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY}},
	"rsa-pss": {{pkcs11.CKM_RSA_PKCS_PSS, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY}},
	"rsa-oaep": {{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR},
		{pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT}},
	"hmac": {{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE},
		{pkcs11.CKM_SHA224_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY},
		{pkcs11.CKM_SHA256_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY},
		{pkcs11.CKM_SHA384_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY},
		{pkcs11.CKM_SHA512_HMAC, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY}},
	// The curve features also need the self-test to make a key pair on
	// their curve (listing.curves): the list cannot tell.
	"ecdsa-p521": {{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR},
		{pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY}},
	"ecdsa-secp256k1": {{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR},
		{pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY}},
}

// featureCurve is the curve a curve feature needs the self-test to have made.
var featureCurve = map[string]string{"ecdsa-p521": "P-521", "ecdsa-secp256k1": "secp256k1"}

// listing is what a token says of itself through the raw module: its
// mechanisms with their flags (less those a test hides) and its RNG flag.
type listing struct {
	mechs map[uint]uint
	rng   bool
	// gcmFault is the self-test's verdict on a listed AES-GCM: the one
	// capability the list cannot tell.
	gcmFault string
	// extractFault is the self-test's verdict on whether the token keeps
	// keys in; TestExtractSelfTestAgrees checks it against attacks.
	extractFault string
	// genericMax is the self-test's longest generic secret;
	// TestGenericKeyMax checks it against the token.
	genericMax int
	// kwpFault is the self-test's verdict on a listed AES key wrap with
	// padding: whether it is RFC 5649.
	kwpFault string
	// curves are the self-test's extra curves; TestCurvesSelfTestAgrees
	// checks them against the token.
	curves []string
}

// listed reads tok's listing through the raw module, beneath any faulty
// wrapper, and drops the mechanisms in hide.
func listed(t *testing.T, tok *Token, hide map[uint]bool) listing {
	t.Helper()
	ctx := raw(t, tok)
	list, err := ctx.GetMechanismList(tok.slot)
	if err != nil {
		t.Fatalf("C_GetMechanismList: %v", err)
	}
	caps := tok.Capabilities()
	l := listing{mechs: map[uint]uint{}, gcmFault: caps.GCMFault, extractFault: caps.ExtractFault, genericMax: caps.GenericKeyMax, curves: caps.Curves, kwpFault: caps.KWPFault}
	for _, m := range list {
		if hide[m.Mechanism] {
			continue
		}
		info, err := ctx.GetMechanismInfo(tok.slot, []*pkcs11.Mechanism{m})
		if err != nil {
			t.Fatalf("C_GetMechanismInfo(%s): %v", MechanismName(m.Mechanism), err)
		}
		l.mechs[m.Mechanism] = info.Flags
	}
	ti, err := ctx.GetTokenInfo(tok.slot)
	if err != nil {
		t.Fatalf("C_GetTokenInfo: %v", err)
	}
	l.rng = ti.Flags&pkcs11.CKF_RNG != 0
	return l
}

// has reports whether the listing has mech with every one of flags.
func (l listing) has(n mechNeed) bool {
	f, ok := l.mechs[n.mech]
	return ok && f&n.flags == n.flags && !(n.mech == pkcs11.CKM_AES_GCM && l.gcmFault != "") &&
		!(n.mech == pkcs11.CKM_AES_KEY_WRAP_PAD && l.kwpFault != "")
}

// lacks returns the names of the mechanisms feature needs that l lacks
// ("CKF_RNG" for rng).
func (l listing) lacks(feature string) []string {
	var out []string
	for _, n := range featureNeeds[feature] {
		if !l.has(n) {
			out = append(out, MechanismName(n.mech))
		}
	}
	if feature == "rng" && !l.rng {
		out = append(out, "CKF_RNG")
	}
	if feature == "unextractable-keys" && l.extractFault != "" {
		out = append(out, lackNames(l.extractFault)...)
	}
	return out
}

// capabilities is what the listing implies, field by field.
func (l listing) capabilities() Capabilities {
	h := func(mech, flags uint) bool { return l.has(mechNeed{mech, flags}) }
	return Capabilities{
		AESKeyGen:     h(pkcs11.CKM_AES_KEY_GEN, pkcs11.CKF_GENERATE),
		AESGCM:        h(pkcs11.CKM_AES_GCM, pkcs11.CKF_ENCRYPT|pkcs11.CKF_DECRYPT),
		AESKeyWrap:    h(pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKF_WRAP|pkcs11.CKF_UNWRAP),
		GenericKeyGen: h(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE),
		RNG:           l.rng,
		ECKeyGen:      h(pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR),
		ECDSA:         h(pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY),
		RSAKeyGen:     h(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR),
		RSAPKCS:       h(pkcs11.CKM_RSA_PKCS, pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY),
		RSAPSS:        h(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY),
		AESCBCPad:     h(pkcs11.CKM_AES_CBC_PAD, pkcs11.CKF_ENCRYPT|pkcs11.CKF_DECRYPT),
		HMACSHA256:    h(pkcs11.CKM_SHA256_HMAC, pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY),
		HMACSHA224:    h(pkcs11.CKM_SHA224_HMAC, pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY),
		HMACSHA384:    h(pkcs11.CKM_SHA384_HMAC, pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY),
		HMACSHA512:    h(pkcs11.CKM_SHA512_HMAC, pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY),
		RSAOAEP:       h(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKF_ENCRYPT|pkcs11.CKF_DECRYPT),
		RSAX509:       h(pkcs11.CKM_RSA_X_509, pkcs11.CKF_DECRYPT),
		RSAAESKeyWrap: h(pkcs11.CKM_RSA_AES_KEY_WRAP, pkcs11.CKF_UNWRAP),
		AESKeyWrapPad: h(pkcs11.CKM_AES_KEY_WRAP_PAD, pkcs11.CKF_WRAP|pkcs11.CKF_UNWRAP),
		Curves:        l.ecCurves(),
		GCMFault:      l.gcmFault,
		KWPFault:      l.kwpFault,
		ExtractFault:  l.extractFault,
		GenericKeyMax: l.genericKeyMax(),
	}
}

// ecCurves are the extra curves the token has with EC key generation
// and ECDSA listed (none when a test hides either).
func (l listing) ecCurves() []string {
	if !l.has(mechNeed{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR}) || !l.has(mechNeed{pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY}) {
		return nil
	}
	return l.curves
}

// genericKeyMax is the longest data key WrapDataKey can make: 0 without
// CKM_GENERIC_SECRET_KEY_GEN, else the longest of genericSizes the token
// makes (the raw module tells, in the test).
func (l listing) genericKeyMax() int {
	if !l.has(mechNeed{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE}) {
		return 0
	}
	return l.genericMax
}

// lackNames finds the mechanism and flag names s mentions, sorted, once each.
func lackNames(s string) []string {
	names := regexp.MustCompile(`CK[MFA]_[A-Z0-9_]+`).FindAllString(s, -1)
	slices.Sort(names)
	return slices.Compact(names)
}

// sorted returns names sorted, once each.
func sorted(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

// checkFeatures checks that Features reports each feature of the test's
// table, supported exactly when the listing has what it needs, naming in
// Lacks exactly the mechanisms it lacks; and that Serviceable fails,
// naming them, exactly when a required feature or both data-key mechanisms
// are missing.
func checkFeatures(t *testing.T, caps Capabilities, l listing) {
	t.Helper()
	seen := map[string]bool{}
	for _, f := range caps.Features() {
		if _, ok := featureNeeds[f.Name]; !ok {
			t.Errorf("feature %q is not in the test's table", f.Name)
			continue
		}
		seen[f.Name] = true
		lacks := sorted(l.lacks(f.Name))
		curveOK := featureCurve[f.Name] == "" || slices.Contains(l.ecCurves(), featureCurve[f.Name])
		if f.Supported != (len(lacks) == 0 && curveOK) {
			t.Errorf("feature %+v: supported = %v, but the token lacks %v", f, f.Supported, lacks)
		}
		if got := lackNames(f.Lacks); !slices.Equal(got, lacks) {
			t.Errorf("feature %s: Lacks %q names %v, want %v", f.Name, f.Lacks, got, lacks)
		}
		if want := f.Name == "master-keys" || f.Name == "rng" || f.Name == "unextractable-keys"; f.Required != want {
			t.Errorf("feature %s: Required = %v, want %v", f.Name, f.Required, want)
		}
	}
	for name := range featureNeeds {
		if !seen[name] {
			t.Errorf("Features() lacks %s", name)
		}
	}
	var missing []string
	for _, name := range []string{"master-keys", "unextractable-keys", "rng"} {
		missing = append(missing, l.lacks(name)...)
	}
	if gcm, portable := l.lacks("aes-gcm"), l.lacks("aes-cbc-hmac"); len(gcm) > 0 && len(portable) > 0 {
		missing = append(append(missing, gcm...), portable...)
	}
	err := caps.Serviceable()
	if len(missing) == 0 {
		if err != nil {
			t.Errorf("Serviceable() = %v, want nil: the token has what hsmkms needs", err)
		}
		return
	}
	if !errors.Is(err, ErrMechanismUnsupported) {
		t.Fatalf("Serviceable() = %v, want ErrMechanismUnsupported naming %v", err, missing)
	}
	if got := lackNames(err.Error()); !slices.Equal(got, sorted(missing)) {
		t.Errorf("Serviceable() = %q names %v, want %v", err, got, sorted(missing))
	}
}

// featureUses run, for each feature, the operations it enables and return
// the error of the first one it gates.
var featureUses = map[string]func(t *testing.T, tok *Token) error{
	"unextractable-keys": func(t *testing.T, tok *Token) error {
		id := newMasterKey(t, tok)
		ctx, s := raw(t, tok), session(t, tok)
		return extractOut(t, ctx, s, rawHandle(t, ctx, s, id, pkcs11.CKO_SECRET_KEY))
	},
	"master-keys": func(t *testing.T, tok *Token) error {
		id, _ := NewObjectID()
		return tok.CreateMasterKey(t.Context(), id, "hsmkms/test/features")
	},
	"rng": func(t *testing.T, tok *Token) error {
		_, err := tok.GenerateRandom(t.Context(), 32)
		return err
	},
	"aes-gcm": func(t *testing.T, tok *Token) error {
		id := newMasterKey(t, tok)
		iv, _ := NewIV()
		sealed, err := tok.Seal(t.Context(), id, iv, []byte("aad"), []byte("plaintext"))
		if err != nil {
			return err
		}
		if got, err := tok.Unseal(t.Context(), id, iv, []byte("aad"), sealed); err != nil || string(got) != "plaintext" {
			t.Errorf("Unseal = %q, %v", got, err)
		}
		return nil
	},
	"aes-kw": func(t *testing.T, tok *Token) error {
		id := newMasterKey(t, tok)
		dk, wrapped, err := tok.WrapDataKey(t.Context(), id, 32)
		if err != nil {
			return err
		}
		if got, err := tok.UnwrapDataKey(t.Context(), id, wrapped); err != nil || !bytes.Equal(got, dk) {
			t.Errorf("UnwrapDataKey = %x, %v; want %x", got, err, dk)
		}
		return nil
	},
	"aes-cbc-hmac": func(t *testing.T, tok *Token) error {
		id, _ := NewObjectID()
		if err := tok.CreatePortableKey(t.Context(), id, "hsmkms/test/features"); err != nil {
			return err
		}
		iv, _ := NewCBCIV()
		sealed, err := tok.SealPortable(t.Context(), id, iv, []byte("header"), nil, []byte("plaintext"))
		if err != nil {
			return err
		}
		if got, err := tok.UnsealPortable(t.Context(), id, iv, []byte("header"), nil, sealed); err != nil || string(got) != "plaintext" {
			t.Errorf("UnsealPortable = %q, %v", got, err)
		}
		return nil
	},
	"ecdsa": func(t *testing.T, tok *Token) error { return signWith(t, tok, ECP256, ECDSASHA256) },
	"rsa":   func(t *testing.T, tok *Token) error { return signWith(t, tok, RSA2048, RSAPKCS1SHA256) },
	"rsa-pss": func(t *testing.T, tok *Token) error {
		if !has(tok, "rsa") {
			// No RSA key can be made; the algorithm is checked before
			// the key is looked for.
			id, _ := NewObjectID()
			digest := sha256.Sum256([]byte("features"))
			_, err := tok.Sign(t.Context(), id, RSAPSSSHA256, digest[:])
			if errors.Is(err, ErrKeyNotFound) {
				return nil
			}
			return err
		}
		return signWith(t, tok, RSA2048, RSAPSSSHA256)
	},
	"ecdsa-p521":      func(t *testing.T, tok *Token) error { return signWith(t, tok, ECP521, ECDSASHA512) },
	"ecdsa-secp256k1": func(t *testing.T, tok *Token) error { return signWith(t, tok, ECSecp256k1, ECDSASHA256) },
	"rsa-oaep": func(t *testing.T, tok *Token) error {
		id, _ := NewObjectID()
		if _, err := tok.CreateEncryptionKeyPair(t.Context(), id, "hsmkms/test/features", RSA2048); err != nil {
			return err
		}
		ct, err := tok.EncryptOAEP(t.Context(), id, RSAOAEPSHA1, []byte("plaintext"))
		if err != nil {
			return err
		}
		if got, err := tok.DecryptOAEP(t.Context(), id, RSAOAEPSHA1, ct); err != nil || string(got) != "plaintext" {
			t.Errorf("DecryptOAEP = %q, %v", got, err)
		}
		return nil
	},
	"hmac": func(t *testing.T, tok *Token) error {
		for _, alg := range []MACAlgorithm{HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512} {
			id, _ := NewObjectID()
			if err := tok.CreateHMACKey(t.Context(), id, "hsmkms/test/features", alg); err != nil {
				return err
			}
			mac, err := tok.GenerateMAC(t.Context(), id, alg, []byte("message"))
			if err != nil {
				return err
			}
			if err := tok.VerifyMAC(t.Context(), id, alg, []byte("message"), mac); err != nil {
				t.Errorf("VerifyMAC(%s): %v", alg, err)
			}
		}
		return nil
	},
}

// errExtracted: a key whose CKA_EXTRACTABLE is false came out.
var errExtracted = errors.New("an unextractable key came out of the token")

// extractOut tries what the self-test tries, on key: wrap it under a
// session AES key with CKM_AES_KEY_WRAP and CKM_AES_CBC_PAD, and set its
// CKA_EXTRACTABLE to true. It returns errExtracted if any of it worked.
func extractOut(t *testing.T, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
	t.Helper()
	wrapper, err := ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		selfTestKeyTemplate(pkcs11.NewAttribute(pkcs11.CKA_WRAP, true)))
	if err != nil {
		t.Fatalf("a session wrapping key: %v", err)
	}
	defer ctx.DestroyObject(s, wrapper)
	var out []string
	for _, m := range []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil), pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, make([]byte, 16))} {
		if _, err := ctx.WrapKey(s, []*pkcs11.Mechanism{m}, wrapper, key); err == nil {
			out = append(out, "wrapped with "+MechanismName(m.Mechanism))
		}
	}
	if err := ctx.SetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}); err == nil {
		out = append(out, "CKA_EXTRACTABLE set to true")
	}
	if len(out) > 0 {
		return fmt.Errorf("%w: %s", errExtracted, strings.Join(out, ", "))
	}
	return nil
}

// signWith makes a key pair of spec and signs and verifies with alg.
func signWith(t *testing.T, tok *Token, spec KeySpec, alg SigningAlgorithm) error {
	id, _ := NewObjectID()
	if _, err := tok.CreateKeyPair(t.Context(), id, "hsmkms/test/features", spec); err != nil {
		return err
	}
	digest := asymCase{alg: alg}.digest("features")
	sig, err := tok.Sign(t.Context(), id, alg, digest)
	if err != nil {
		return err
	}
	if err := tok.Verify(t.Context(), id, alg, digest, sig); err != nil {
		t.Errorf("Verify(%s): %v", alg, err)
	}
	return nil
}

// TestCapabilities proves that Capabilities are what the flags of the
// mechanisms the token lists imply, and Features and Serviceable what they
// mean, on the token as it is and with mechanisms hidden: a token lacking a
// required mechanism opens (diagnostics work on any token) but is not
// serviceable, naming what it lacks; one lacking an optional mechanism
// refuses the operations needing it with ErrMechanismUnsupported before
// any call reaches the token, and serves the rest.
func TestCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hide  []uint
		check func(t *testing.T, tok *Token, f *faulty, l listing)
	}{
		{name: "as listed", check: func(t *testing.T, tok *Token, f *faulty, l listing) {
			// Every feature works, or is refused naming what it lacks.
			for _, feat := range tok.Capabilities().Features() {
				t.Run(feat.Name, func(t *testing.T) {
					err := featureUses[feat.Name](t, tok)
					if feat.Name == "unextractable-keys" && !feat.Supported {
						// The self-test's verdict holds for a master key.
						if !errors.Is(err, errExtracted) {
							t.Errorf("the self-test found %q, yet a master key stayed in: %v", tok.Capabilities().ExtractFault, err)
						}
						return
					}
					if c := featureCurve[feat.Name]; c != "" && len(l.lacks(feat.Name)) == 0 && !slices.Contains(l.ecCurves(), c) {
						// The mechanisms are there, the curve is not.
						if !errors.Is(err, ErrMechanismUnsupported) || !strings.Contains(err.Error(), c) {
							t.Errorf("%s: the token makes no key pairs on %s, yet: %v", feat.Name, c, err)
						}
						return
					}
					if lacks := l.lacks(feat.Name); len(lacks) == 0 {
						if err != nil {
							t.Errorf("%s is supported, but: %v", feat.Name, err)
						}
					} else {
						wantUnsupportedOneOf(t, feat.Name, err, lacks)
					}
				})
			}
		}},
		{name: "no AES-GCM", hide: []uint{pkcs11.CKM_AES_GCM}, check: func(t *testing.T, tok *Token, f *faulty, l listing) {
			id := newDataKeyKey(t, tok)
			enc := f.count("EncryptInit")
			_, err := tok.Seal(t.Context(), id, make([]byte, IVSize), []byte("aad"), []byte("x"))
			wantUnsupported(t, "Seal", err, "CKM_AES_GCM")
			if n := f.count("EncryptInit") - enc; n != 0 {
				t.Errorf("Seal called C_EncryptInit %d times", n)
			}
			// The portable mechanism takes over: the token still serves.
			iv, sealed, err := sealAny(t.Context(), tok, id, []byte("aad"), []byte("x"))
			if err != nil {
				t.Fatalf("sealing with the portable mechanism: %v", err)
			}
			if got, err := unsealAny(t.Context(), tok, id, iv, []byte("aad"), sealed); err != nil || string(got) != "x" {
				t.Errorf("unsealing = %q, %v", got, err)
			}
		}},
		{name: "no AES key generation", hide: []uint{pkcs11.CKM_AES_KEY_GEN}},
		{name: "no AES key wrap", hide: []uint{pkcs11.CKM_AES_KEY_WRAP}, check: func(t *testing.T, tok *Token, f *faulty, l listing) {
			id := newDataKeyKey(t, tok)
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
			// The token's data-key mechanism still works.
			iv, sealed, err := sealAny(t.Context(), tok, id, []byte("aad"), []byte("x"))
			if err != nil {
				t.Fatalf("sealing: %v", err)
			}
			if got, err := unsealAny(t.Context(), tok, id, iv, []byte("aad"), sealed); err != nil || string(got) != "x" {
				t.Errorf("unsealing = %q, %v", got, err)
			}
		}},
		{name: "no EC key pair generation", hide: []uint{pkcs11.CKM_EC_KEY_PAIR_GEN}, check: func(t *testing.T, tok *Token, f *faulty, l listing) {
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
		{name: "no AES-GCM and no CBC-PAD", hide: []uint{pkcs11.CKM_AES_GCM, pkcs11.CKM_AES_CBC_PAD}},
		{name: "no HMAC", hide: []uint{pkcs11.CKM_SHA256_HMAC}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hide := map[uint]bool{}
			for _, m := range tc.hide {
				hide[m] = true
			}
			tok, f, err := openFaultyErr(t, hide)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			l := listed(t, tok, hide)
			if got, want := tok.Capabilities(), l.capabilities(); !reflect.DeepEqual(got, want) {
				t.Errorf("Capabilities() = %+v, the listing implies %+v", got, want)
			}
			checkFeatures(t, tok.Capabilities(), l)
			if tc.check != nil {
				tc.check(t, tok, f, l)
			}
		})
	}
}

// TestGenericKeyMax proves the self-test's GenericKeyMax right on the token
// under test: WrapDataKey makes a data key that long; every longer size it
// may be asked for is refused as ErrMechanismUnsupported before any call
// reaches the token; and the token itself refuses the next longer size.
func TestGenericKeyMax(t *testing.T) {
	tok, f := openFaulty(t)
	max := tok.Capabilities().GenericKeyMax
	if !has(tok, "aes-kw") {
		_, _, err := tok.WrapDataKey(t.Context(), newMasterKey(t, tok), 32)
		wantUnsupportedOneOf(t, "WrapDataKey", err, []string{"CKM_AES_KEY_WRAP", "CKM_GENERIC_SECRET_KEY_GEN"})
		return
	}
	if !slices.Contains(genericSizes, max) {
		t.Fatalf("GenericKeyMax = %d, not one of %v", max, genericSizes)
	}
	id := newMasterKey(t, tok)
	if _, _, err := tok.WrapDataKey(t.Context(), id, max); err != nil {
		t.Fatalf("WrapDataKey(%d), the longest the self-test found: %v", max, err)
	}
	for _, n := range genericSizes {
		if n <= max {
			continue
		}
		gen := f.count("GenerateKey")
		_, _, err := tok.WrapDataKey(t.Context(), id, n)
		wantUnsupported(t, fmt.Sprintf("WrapDataKey(%d)", n), err, fmt.Sprintf("at most %d bytes", max))
		if got := f.count("GenerateKey") - gen; got != 0 {
			t.Errorf("WrapDataKey(%d) called C_GenerateKey %d times", n, got)
		}
	}
	if max < MaxDataKey {
		next := genericSizes[slices.Index(genericSizes, max)-1]
		ctx, s := raw(t, tok), session(t, tok)
		h, err := ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, dataKeyTemplate(next))
		if err == nil {
			ctx.DestroyObject(s, h)
			t.Errorf("the token made a %d-byte generic secret, yet GenericKeyMax = %d", next, max)
		}
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

// wantUnsupportedOneOf fails t unless err is ErrMechanismUnsupported
// naming one of mechs: an operation needing several names the first it
// finds missing.
func wantUnsupportedOneOf(t *testing.T, op string, err error, mechs []string) {
	t.Helper()
	if !errors.Is(err, ErrMechanismUnsupported) {
		t.Errorf("%s: error %v is not ErrMechanismUnsupported (the token lacks %v)", op, err, mechs)
		return
	}
	for _, name := range lackNames(err.Error()) {
		if slices.Contains(mechs, name) {
			return
		}
	}
	t.Errorf("%s: error %q names none of %v", op, err, mechs)
}

// TestPINNeverLeaks proves that a PIN's value reaches no formatted string,
// config dump, JSON, error or log line, including those of a real login
// with it, a re-login and a failed login.
func TestPINNeverLeaks(t *testing.T) {
	const secret = "s3cr3t-pin-4711"
	pin := NewPIN(secret)
	// A real login with this PIN fails on the token under test.
	cfg := Config{ModulePath: env.ModulePath, InitParams: env.InitParams, TokenLabel: env.Label, PIN: pin}
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
			// A good login resets the token's count of failed ones:
			// openCryptoki locks the PIN after three in a row.
			openToken(t)
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

// useTokenWithPIN makes a private SoftHSM2 store whose token's PIN is pin,
// opens it with a trace-level JSON logger, runs operations including a
// re-login, closes it, and returns the Token printed every way and the
// logs. It runs on SoftHSM2 whatever the implementation under test: only
// SoftHSM2 makes a token with a PIN of the test's choosing at will (the
// others have one token, with their own PIN rules).
func useTokenWithPIN(t *testing.T, pin string) string {
	t.Helper()
	const label = "pin-leak"
	loadEnvModuleFirst(t)
	store, err := softhsm.New(t.Context(), softhsm.Config{Dir: t.TempDir(), Label: label, PIN: pin, SOPIN: "so-" + pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(softhsm.ConfEnv, store.ConfPath)
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Name: "leak", Output: &logs, Level: hclog.Trace, JSONFormat: true})
	f := newFaulty(nil)
	cfg := Config{ModulePath: store.ModulePath, TokenLabel: label, PIN: NewPIN(pin), Logger: log, Wrap: f.wrap}
	tok, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx := t.Context()
	id := newDataKeyKey(t, tok)
	aad := []byte("aad")
	// The token drops the login once: the seal logs in again with the PIN.
	f.inject("EncryptInit", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN))
	iv, sealed, err := sealAny(ctx, tok, id, aad, []byte("plaintext"))
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	if n := f.count("Login"); n < 2 {
		t.Errorf("C_Login called %d times, want a re-login", n)
	}
	if _, err := unsealAny(ctx, tok, id, iv, aad, sealed); err != nil {
		t.Errorf("unseal: %v", err)
	}
	sealed[0] ^= 1
	if _, err := unsealAny(ctx, tok, id, iv, aad, sealed); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("unseal of a changed ciphertext: %v", err)
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

// TestNULPaddedTokenStrings: a module that pads its fixed-length strings
// with NULs instead of blanks still has its token found by label, and the
// label, serial and descriptions are reported without the padding.
func TestNULPaddedTokenStrings(t *testing.T) {
	f := newFaulty(nil)
	f.nulPad = true
	tok := openToken(t, func(c *Config) { c.Wrap = f.wrap })
	info, err := tok.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"label": info.Label, "serial": info.Serial, "manufacturer": info.Manufacturer, "model": info.Model} {
		if strings.ContainsRune(v, 0) || v == "" {
			t.Errorf("token %s %q keeps the padding or is empty", name, v)
		}
	}
	if info.Label != env.Label {
		t.Errorf("label %q, want %q", info.Label, env.Label)
	}
	slots, err := tok.m.Slots()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range slots {
		if strings.ContainsRune(s.Description, 0) || strings.ContainsRune(s.Manufacturer, 0) {
			t.Errorf("slot %d: description %q, manufacturer %q keep NULs", s.ID, s.Description, s.Manufacturer)
		}
		if s.Token != nil && strings.ContainsRune(s.Token.Label, 0) {
			t.Errorf("slot %d: token label %q keeps NULs", s.ID, s.Token.Label)
		}
		found = found || (s.Token != nil && s.Token.Label == env.Label)
	}
	if !found {
		t.Errorf("Slots lists no token labelled %q: %+v", env.Label, slots)
	}
}
