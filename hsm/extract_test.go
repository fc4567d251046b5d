package hsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// The refusals PKCS#11 allows each attack below, and why. Tokens differ
// in which one they pick; measured:
//
//	                           SoftHSM2 2.6.1           openCryptoki 3.8.1
//	read a secret attribute    CKR_ATTRIBUTE_SENSITIVE  CKR_ATTRIBUTE_SENSITIVE
//	wrap, listed mechanism     CKR_KEY_UNEXTRACTABLE    CKR_KEY_UNEXTRACTABLE
//	wrap, unlisted mechanism   CKR_MECHANISM_INVALID    CKR_MECHANISM_INVALID
//	copy or set new flags      CKR_ACTION_PROHIBITED    CKR_ATTRIBUTE_READ_ONLY
//	copy with a new label      CKR_ACTION_PROHIBITED    allowed (no CKA_COPYABLE)
//
// SoftHSM2 checks CKA_MODIFIABLE=false and CKA_COPYABLE=false before the
// attribute. openCryptoki 3.8.1 predates CKA_COPYABLE, and answers
// CKR_ATTRIBUTE_READ_ONLY to CKA_EXTRACTABLE=true or CKA_SENSITIVE=false
// in any C_CopyObject or C_SetAttributeValue template, even on an
// extractable, non-sensitive session key where they change nothing (the
// other way, to false and to true, it allows).
var (
	// readRefusals: an attribute that "cannot be revealed because the
	// object is sensitive or unextractable" (C_GetAttributeValue) has
	// exactly this code.
	readRefusals = []pkcs11.Error{pkcs11.CKR_ATTRIBUTE_SENSITIVE}
	// wrapRefusals: C_WrapKey of a key whose CKA_EXTRACTABLE is false
	// fails with exactly this code.
	wrapRefusals = []pkcs11.Error{pkcs11.CKR_KEY_UNEXTRACTABLE}
	// unlistedWrapRefusals: with a mechanism the token does not list for
	// wrapping, CKR_MECHANISM_INVALID; PKCS#11 orders no check before
	// another, so the key's own CKR_KEY_UNEXTRACTABLE is a refusal too.
	unlistedWrapRefusals = []pkcs11.Error{pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_KEY_UNEXTRACTABLE}
	// copyRefusals: C_CopyObject of a key with CKA_COPYABLE false is
	// CKR_ACTION_PROHIBITED (v2.40); a template turning CKA_EXTRACTABLE on
	// or CKA_SENSITIVE off asks what a copy may change only the other way,
	// CKR_ATTRIBUTE_READ_ONLY (v2.20 has nothing else), or contradicts the
	// key's CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE, which
	// C_CopyObject refuses with CKR_TEMPLATE_INCONSISTENT.
	copyRefusals = []pkcs11.Error{pkcs11.CKR_ACTION_PROHIBITED, pkcs11.CKR_ATTRIBUTE_READ_ONLY, pkcs11.CKR_TEMPLATE_INCONSISTENT}
	// setRefusals: C_SetAttributeValue on a key with CKA_MODIFIABLE false
	// is CKR_ACTION_PROHIBITED (v2.40); turning CKA_EXTRACTABLE on or
	// CKA_SENSITIVE off is never allowed, CKR_ATTRIBUTE_READ_ONLY.
	setRefusals = []pkcs11.Error{pkcs11.CKR_ACTION_PROHIBITED, pkcs11.CKR_ATTRIBUTE_READ_ONLY}
	// copyUnchangedRefusals: a copy asking for nothing new is refused only
	// for CKA_COPYABLE false.
	copyUnchangedRefusals = []pkcs11.Error{pkcs11.CKR_ACTION_PROHIBITED}
)

// ckrNames names the return codes of the refusals (miekg/pkcs11 has no
// name for CKR_ACTION_PROHIBITED).
var ckrNames = map[pkcs11.Error]string{
	pkcs11.CKR_ATTRIBUTE_SENSITIVE:    "CKR_ATTRIBUTE_SENSITIVE",
	pkcs11.CKR_KEY_UNEXTRACTABLE:      "CKR_KEY_UNEXTRACTABLE",
	pkcs11.CKR_MECHANISM_INVALID:      "CKR_MECHANISM_INVALID",
	pkcs11.CKR_ACTION_PROHIBITED:      "CKR_ACTION_PROHIBITED",
	pkcs11.CKR_ATTRIBUTE_READ_ONLY:    "CKR_ATTRIBUTE_READ_ONLY",
	pkcs11.CKR_TEMPLATE_INCONSISTENT:  "CKR_TEMPLATE_INCONSISTENT",
	pkcs11.CKR_ATTRIBUTE_TYPE_INVALID: "CKR_ATTRIBUTE_TYPE_INVALID",
}

func ckrName(code pkcs11.Error) string {
	if n, ok := ckrNames[code]; ok {
		return fmt.Sprintf("%s (%#x)", n, uint(code))
	}
	return code.Error()
}

func ckrList(codes []pkcs11.Error) string {
	names := make([]string, len(codes))
	for i, c := range codes {
		names[i] = ckrName(c)
	}
	return strings.Join(names, ", ")
}

// ckr returns the PKCS#11 return code err carries, and whether it has one.
func ckr(err error) (pkcs11.Error, bool) {
	var code pkcs11.Error
	return code, errors.As(err, &code)
}

// wantRefused fails unless err carries one of the return codes want and
// nothing came out of the token.
func wantRefused(t *testing.T, out []byte, err error, want []pkcs11.Error) {
	t.Helper()
	if len(out) > 0 {
		t.Errorf("%d bytes of key material came out of the token", len(out))
	}
	code, ok := ckr(err)
	switch {
	case err == nil:
		t.Fatalf("the token allowed it; want a refusal: one of %s", ckrList(want))
	case !ok:
		t.Fatalf("error %v carries no PKCS#11 code; want one of %s", err, ckrList(want))
	case !slices.Contains(want, code):
		t.Fatalf("the token answered %s; want a refusal: one of %s", ckrName(code), ckrList(want))
	}
	t.Logf("refused with %s", ckrName(code))
}

// toolObject is one object as `pkcs11-tool --list-objects` prints it: a
// header line ("Secret Key Object; AES length 32") and indented
// "Name: value" lines.
type toolObject struct {
	header string
	attrs  map[string]string
}

// listObjectsWithTool runs pkcs11-tool, an independent PKCS#11 client in
// another process, logged in to the package's token, and parses its object
// list. A missing pkcs11-tool fails the test.
func listObjectsWithTool(t *testing.T) []toolObject {
	t.Helper()
	tool, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		t.Fatalf("pkcs11-tool (OpenSC) is needed as an independent witness and was not found: run `make deps` (%v)", err)
	}
	cmd := exec.CommandContext(t.Context(), tool, "--module", env.ModulePath, "--login", "--pin", env.PIN,
		"--token-label", env.Label, "--list-objects")
	cmd.Env = append(os.Environ(), env.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, stderr.String())
	}
	var objs []toolObject
	for line := range strings.Lines(stdout.String()) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			objs = append(objs, toolObject{header: strings.TrimSpace(line), attrs: map[string]string{}})
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || len(objs) == 0 {
			t.Fatalf("pkcs11-tool printed a line this test cannot parse: %q\n%s", line, stdout.String())
		}
		objs[len(objs)-1].attrs[k] = strings.TrimSpace(v)
	}
	return objs
}

// toolObjectFor returns the one object of the tool's list whose header
// starts with kind ("Secret Key Object") and whose ID is ckaID.
func toolObjectFor(t *testing.T, objs []toolObject, kind string, ckaID []byte) toolObject {
	t.Helper()
	var found []toolObject
	for _, o := range objs {
		if strings.HasPrefix(o.header, kind) && o.attrs["ID"] == hex.EncodeToString(ckaID) {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("pkcs11-tool lists %d objects %q with ID %x, want 1: %+v", len(found), kind, ckaID, objs)
	}
	return found[0]
}

// words splits a pkcs11-tool list ("sensitive, always sensitive, local").
func words(s string) []string {
	var out []string
	for w := range strings.SplitSeq(s, ",") {
		if w = strings.TrimSpace(w); w != "" {
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return out
}

// rawHandle finds the object of class with CKA_ID id through the raw
// module, independently of tok's handle cache.
func rawHandle(t *testing.T, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, id ObjectID, class uint) pkcs11.ObjectHandle {
	t.Helper()
	h, err := findOne(ctx, s, keyRef{id: id, class: class, keyType: anyKeyType})
	if err != nil {
		t.Fatalf("finding %s of class %d: %v", id, class, err)
	}
	return h
}

// rawCount counts the objects with CKA_ID id through the raw module.
func rawCount(t *testing.T, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, id ObjectID) int {
	t.Helper()
	return countByCKAID(t, ctx, s, id[:])
}

// newKeyPair makes a key pair of spec and returns its CKA_ID.
func newKeyPair(t *testing.T, tok *Token, spec KeySpec) ObjectID {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.CreateKeyPair(t.Context(), id, "hsmkms/test/"+string(spec)+"/"+id.String(), spec); err != nil {
		t.Fatalf("CreateKeyPair(%s): %v", spec, err)
	}
	return id
}

// keepsKeysIn reports whether the token refuses to let an unextractable
// key out, as its self-test found. When it does not (NSS's softoken wraps
// such keys), the refusals the extraction tests assert cannot hold:
// instead they assert here that the self-test's verdict is true of a
// master key and that Serviceable refuses the token for it.
func keepsKeysIn(t *testing.T, tok *Token) bool {
	t.Helper()
	fault := tok.Capabilities().ExtractFault
	if fault == "" {
		return true
	}
	ctx, s := raw(t, tok), session(t, tok)
	if err := extractOut(t, ctx, s, rawHandle(t, ctx, s, newMasterKey(t, tok), pkcs11.CKO_SECRET_KEY)); !errors.Is(err, errExtracted) {
		t.Errorf("the self-test found %q, yet a master key stayed in: %v", fault, err)
	}
	if err := tok.Capabilities().Serviceable(); !errors.Is(err, ErrMechanismUnsupported) || !strings.Contains(err.Error(), "unextractable-keys") {
		t.Errorf("Serviceable() = %v, want a refusal naming unextractable-keys", err)
	}
	return false
}

// TestNonExtractableSeenByPkcs11Tool proves, through pkcs11-tool in another
// process, that master keys, the HMAC keys of portable versions and the
// private halves of EC and RSA key pairs are sensitive, always sensitive,
// never extractable and generated on the token, with only the usages the
// service needs. A key type the token lacks is refused at creation.
func TestNonExtractableSeenByPkcs11Tool(t *testing.T) {
	tok := openToken(t)
	if !keepsKeysIn(t, tok) {
		return
	}
	secret := []string{"always sensitive", "local", "never extractable", "sensitive"}
	type row struct {
		name   string
		ckaID  []byte
		kind   string
		header string // the header's first words after kind
		usage  []string
		access []string
	}
	master := newMasterKey(t, tok)
	tests := []row{
		{"master key", master[:], "Secret Key Object", "Secret Key Object; AES length 32",
			[]string{"decrypt", "encrypt", "unwrap", "wrap"}, secret},
	}
	if portable, ok := portableKeyOrLacking(t, tok); ok {
		// pkcs11-tool (OpenSC 0.23) prints no "sign" for a secret key,
		// whatever its CKA_SIGN: "verify" stands for both.
		tests = append(tests, row{"portable HMAC key", macID(portable), "Secret Key Object", "Secret Key Object; Generic secret length 32",
			[]string{"verify"}, secret})
	}
	if ecPair, ok := keyPairOrLacking(t, tok, ECP256); ok {
		tests = append(tests,
			row{"EC P-256 private key", ecPair[:], "Private Key Object", "Private Key Object; EC", []string{"sign"}, secret},
			// Public halves: verify only, never encrypt or wrap.
			row{"EC P-256 public key", ecPair[:], "Public Key Object", "Public Key Object; EC", []string{"verify"}, []string{"local"}})
	}
	if rsaPair, ok := keyPairOrLacking(t, tok, RSA2048); ok {
		tests = append(tests,
			row{"RSA 2048 private key", rsaPair[:], "Private Key Object", "Private Key Object; RSA", []string{"sign"}, secret},
			row{"RSA 2048 public key", rsaPair[:], "Public Key Object", "Public Key Object; RSA 2048 bits", []string{"verify"}, []string{"local"}})
	}
	objs := listObjectsWithTool(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := toolObjectFor(t, objs, tc.kind, tc.ckaID)
			if !strings.HasPrefix(o.header, tc.header) {
				t.Errorf("header %q, want it to start with %q", o.header, tc.header)
			}
			access := words(o.attrs["Access"])
			if !slices.Equal(access, tc.access) {
				t.Errorf("Access: %q, want exactly %q", o.attrs["Access"], tc.access)
			}
			if slices.Contains(access, "extractable") {
				t.Errorf("Access %q shows the key as extractable", o.attrs["Access"])
			}
			if usage := words(o.attrs["Usage"]); !slices.Equal(usage, tc.usage) {
				t.Errorf("Usage: %q, want exactly %q", o.attrs["Usage"], tc.usage)
			}
		})
	}
}

// portableKeyOrLacking makes a portable version (an AES key and an HMAC
// key) and returns its id and true when the token has aes-cbc-hmac; on a
// token without it, it proves CreatePortableKey refused with
// ErrMechanismUnsupported and returns false.
func portableKeyOrLacking(t *testing.T, tok *Token) (ObjectID, bool) {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	err = tok.CreatePortableKey(t.Context(), id, "hsmkms/test/"+id.String())
	if !has(tok, "aes-cbc-hmac") {
		wantLacking(t, err, pkcs11.CKM_AES_CBC_PAD, pkcs11.CKM_SHA256_HMAC, pkcs11.CKM_GENERIC_SECRET_KEY_GEN)
		return id, false
	}
	if err != nil {
		t.Fatalf("CreatePortableKey: %v", err)
	}
	return id, true
}

// attack is one way of getting key material out of the token, made with
// raw PKCS#11 calls the hsm package itself never makes, and the refusals
// PKCS#11 allows for it.
type attack struct {
	name string
	// run makes the attempt and returns the key material it got out: an
	// attribute's value or a wrapped key (nil when refused).
	run  func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, wrapping pkcs11.ObjectHandle) ([]byte, error)
	want []pkcs11.Error
}

func readAttack(name string, attr uint) attack {
	return attack{name, func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) ([]byte, error) {
		attrs, err := ctx.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
		if len(attrs) == 0 {
			return nil, err
		}
		return attrs[0].Value, err
	}, readRefusals}
}

// wrapMech is an AES mechanism C_WrapKey may take, with its parameter and
// what it makes of a 32-byte AES key.
type wrapMech struct {
	mech    uint
	param   []byte
	wrapped int // bytes
}

var wrapMechs = []wrapMech{
	{pkcs11.CKM_AES_KEY_WRAP, nil, 40},
	{pkcs11.CKM_AES_KEY_WRAP_PAD, nil, 40},
	{ckmAESKeyWrapKWP, nil, 40},
	{pkcs11.CKM_AES_CBC_PAD, make([]byte, 16), 48},
	{pkcs11.CKM_AES_CBC, make([]byte, 16), 32},
	{pkcs11.CKM_AES_ECB, nil, 32},
}

// wrapMechsOf splits wrapMechs into those the token lists for wrapping
// (CKF_WRAP) and the others. A token that lists none fails the test: the
// wrap attacks would only show that it cannot wrap at all. SoftHSM2 lists
// CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD and CKM_AES_CBC; openCryptoki
// CKM_AES_CBC_PAD, CKM_AES_CBC and CKM_AES_ECB.
func wrapMechsOf(t *testing.T, tok *Token) (listed, unlisted []wrapMech) {
	t.Helper()
	mechs, err := tok.Mechanisms(t.Context())
	if err != nil {
		t.Fatalf("Mechanisms: %v", err)
	}
	for _, w := range wrapMechs {
		if slices.ContainsFunc(mechs, func(m Mechanism) bool { return m.Type == w.mech && m.flags&pkcs11.CKF_WRAP != 0 }) {
			listed = append(listed, w)
		} else {
			unlisted = append(unlisted, w)
		}
	}
	if len(listed) == 0 {
		t.Fatal("the token lists none of the AES mechanisms for wrapping: the wrap attacks would prove nothing")
	}
	return listed, unlisted
}

// wrapAttacks wrap the key under a master key with every mechanism of
// wrapMechs: those the token lists for wrapping must refuse the key, the
// others the mechanism (or the key).
func wrapAttacks(t *testing.T, tok *Token) []attack {
	t.Helper()
	listed, unlisted := wrapMechsOf(t, tok)
	var out []attack
	add := func(w wrapMech, suffix string, want []pkcs11.Error) {
		out = append(out, attack{"wrap under a master key with " + MechanismName(w.mech) + suffix,
			func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, wrapping pkcs11.ObjectHandle) ([]byte, error) {
				return ctx.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(w.mech, w.param)}, wrapping, key)
			}, want})
	}
	for _, w := range listed {
		add(w, "", wrapRefusals)
	}
	for _, w := range unlisted {
		add(w, " (not listed for wrapping)", unlistedWrapRefusals)
	}
	return out
}

// changeAttacks try to make the key extractable: by copying it with new
// flags, or by setting them on the key itself.
var changeAttacks = []attack{
	{"copy with CKA_EXTRACTABLE=true", func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) ([]byte, error) {
		_, err := ctx.CopyObject(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
		return nil, err
	}, copyRefusals},
	{"copy as a session object with CKA_SENSITIVE=false", func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) ([]byte, error) {
		_, err := ctx.CopyObject(s, key, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		})
		return nil, err
	}, copyRefusals},
	{"set CKA_EXTRACTABLE=true", func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) ([]byte, error) {
		return nil, ctx.SetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
	}, setRefusals},
	{"set CKA_SENSITIVE=false", func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) ([]byte, error) {
		return nil, ctx.SetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)})
	}, setRefusals},
}

// runAttacks runs each attack on key and checks that it is refused, with
// a code PKCS#11 allows for it, and that nothing came out; then that a
// plain copy is refused or (on a token without CKA_COPYABLE) as protected
// as the key, that the key is unchanged and that no copy of it is left.
func runAttacks(t *testing.T, tok *Token, ref keyRef, wrappingID ObjectID, attacks []attack) {
	t.Helper()
	ctx, s := raw(t, tok), session(t, tok)
	key, err := findOne(ctx, s, ref)
	if err != nil {
		t.Fatalf("finding the key: %v", err)
	}
	wrapping := rawHandle(t, ctx, s, wrappingID, pkcs11.CKO_SECRET_KEY)
	before := countByCKAID(t, ctx, s, ref.ckaID())
	attackAll := func(t *testing.T, key pkcs11.ObjectHandle) {
		for _, a := range attacks {
			t.Run(a.name, func(t *testing.T) {
				out, err := a.run(ctx, s, key, wrapping)
				wantRefused(t, out, err, a.want)
			})
		}
	}
	attackAll(t, key)
	t.Run("copy unchanged", func(t *testing.T) {
		c, err := ctx.CopyObject(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "hsmkms/test/copy")})
		if err == nil {
			defer func() {
				if err := ctx.DestroyObject(s, c); err != nil {
					t.Errorf("destroying the copy: %v", err)
				}
			}()
		}
		if err != nil || !tok.Capabilities().CopyableRefused {
			wantRefused(t, nil, err, copyUnchangedRefusals)
			return
		}
		// The token refused CKA_COPYABLE=false in the key's template
		// (openCryptoki 3.8.1 predates it) and so copies the key: the
		// copy must keep every protection of the key.
		t.Log("the token knows no CKA_COPYABLE and copied the key: checking the copy")
		attackAll(t, c)
		checkKeyFlags(t, tok, ctx, s, c)
	})
	checkKeyFlags(t, tok, ctx, s, key)
	if after := countByCKAID(t, ctx, s, ref.ckaID()); after != before {
		t.Errorf("%d objects with the key's CKA_ID after the attacks, %d before", after, before)
	}
}

// checkKeyFlags checks that key h is sensitive, always was, never was
// extractable, and cannot be modified or copied. A token that refused
// CKA_COPYABLE in the key's template (CopyableRefused) does not know the
// attribute: asked for it, it must answer CKR_ATTRIBUTE_TYPE_INVALID.
// Each attribute is read alone: one the token does not know fails the
// whole call.
func checkKeyFlags(t *testing.T, tok *Token, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle) {
	t.Helper()
	for _, w := range []struct {
		name string
		attr uint
		want bool
	}{
		{"CKA_SENSITIVE", pkcs11.CKA_SENSITIVE, true},
		{"CKA_EXTRACTABLE", pkcs11.CKA_EXTRACTABLE, false},
		{"CKA_ALWAYS_SENSITIVE", pkcs11.CKA_ALWAYS_SENSITIVE, true},
		{"CKA_NEVER_EXTRACTABLE", pkcs11.CKA_NEVER_EXTRACTABLE, true},
		{"CKA_MODIFIABLE", pkcs11.CKA_MODIFIABLE, false},
		{"CKA_COPYABLE", pkcs11.CKA_COPYABLE, false},
	} {
		attrs, err := ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(w.attr, nil)})
		if w.attr == pkcs11.CKA_COPYABLE && tok.Capabilities().CopyableRefused {
			if code, _ := ckr(err); code != pkcs11.CKR_ATTRIBUTE_TYPE_INVALID {
				t.Errorf("%s on a token that refused it in the key's template: %v, want %s", w.name, err,
					ckrName(pkcs11.CKR_ATTRIBUTE_TYPE_INVALID))
			}
			continue
		}
		if err != nil {
			t.Errorf("reading %s: %v", w.name, err)
			continue
		}
		if got := attrBool(attrs[0].Value); got != w.want {
			t.Errorf("%s is %v, want %v", w.name, got, w.want)
		}
	}
}

// countByCKAID counts the objects, token and session, with CKA_ID ckaID.
func countByCKAID(t *testing.T, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, ckaID []byte) int {
	t.Helper()
	hs, err := findObjects(ctx, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID)}, 0)
	if err != nil {
		t.Fatalf("searching CKA_ID %x: %v", ckaID, err)
	}
	return len(hs)
}

// TestExtractMasterKeyRefused proves that the token refuses every raw
// PKCS#11 way of getting a master key out: reading CKA_VALUE, wrapping it
// under another master key with every AES wrapping mechanism, copying it
// with new flags and setting EXTRACTABLE or clearing SENSITIVE.
func TestExtractMasterKeyRefused(t *testing.T) {
	tok := openToken(t)
	if !keepsKeysIn(t, tok) {
		return
	}
	master, other := newMasterKey(t, tok), newMasterKey(t, tok)
	attacks := append([]attack{readAttack("read CKA_VALUE", pkcs11.CKA_VALUE)}, wrapAttacks(t, tok)...)
	runAttacks(t, tok, *secretKey(master), other, append(attacks, changeAttacks...))
}

// TestExtractControlKeySucceeds proves that the reads, wraps (with every
// mechanism the token lists for wrapping) and copies refused above work on
// an extractable, non-sensitive session key with the same wrapping key and
// session: the refusals come from the master key's flags, not from a
// broken call.
func TestExtractControlKeySucceeds(t *testing.T) {
	tok := openToken(t)
	if !keepsKeysIn(t, tok) {
		return
	}
	listed, _ := wrapMechsOf(t, tok)
	wrappingID := newMasterKey(t, tok)
	ctx, s := raw(t, tok), session(t, tok)
	wrapping := rawHandle(t, ctx, s, wrappingID, pkcs11.CKO_SECRET_KEY)
	key, err := ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, selfTestKeyTemplate(
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	))
	if err != nil {
		t.Fatalf("generating the control key: %v", err)
	}
	t.Cleanup(func() { _ = ctx.DestroyObject(s, key) })

	a, err := ctx.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil || len(a[0].Value) != 32 {
		t.Fatalf("reading the control key's CKA_VALUE: %v", err)
	}
	for _, w := range listed {
		wrapped, err := ctx.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(w.mech, w.param)}, wrapping, key)
		if err != nil || len(wrapped) != w.wrapped {
			t.Errorf("wrapping the control key with %s: %d bytes, %v; want %d bytes", MechanismName(w.mech), len(wrapped), err, w.wrapped)
		}
	}
	c, err := ctx.CopyObject(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "control copy")})
	if err != nil {
		t.Fatalf("copying the control key: %v", err)
	}
	if err := ctx.DestroyObject(s, c); err != nil {
		t.Fatalf("destroying the copy: %v", err)
	}
}

// TestExtractPrivateKeyRefused proves the same refusals for the private
// half of EC and RSA key pairs: its secret components (CKA_VALUE for EC,
// CKA_PRIVATE_EXPONENT and the CRT values for RSA) cannot be read, it
// cannot be wrapped under a master key, copied or made extractable. A key
// type the token lacks is refused at creation.
func TestExtractPrivateKeyRefused(t *testing.T) {
	tok := openToken(t)
	if !keepsKeysIn(t, tok) {
		return
	}
	wrapping := newMasterKey(t, tok)
	tests := []struct {
		spec    KeySpec
		secrets map[string]uint
	}{
		{ECP256, map[string]uint{"CKA_VALUE": pkcs11.CKA_VALUE}},
		{RSA2048, map[string]uint{
			"CKA_PRIVATE_EXPONENT": pkcs11.CKA_PRIVATE_EXPONENT,
			"CKA_PRIME_1":          pkcs11.CKA_PRIME_1,
			"CKA_PRIME_2":          pkcs11.CKA_PRIME_2,
			"CKA_EXPONENT_1":       pkcs11.CKA_EXPONENT_1,
			"CKA_EXPONENT_2":       pkcs11.CKA_EXPONENT_2,
			"CKA_COEFFICIENT":      pkcs11.CKA_COEFFICIENT,
		}},
	}
	for _, tc := range tests {
		t.Run(string(tc.spec), func(t *testing.T) {
			id, ok := keyPairOrLacking(t, tok, tc.spec)
			if !ok {
				return
			}
			var attacks []attack
			for name, attr := range tc.secrets {
				attacks = append(attacks, readAttack("read "+name, attr))
			}
			slices.SortFunc(attacks, func(a, b attack) int { return strings.Compare(a.name, b.name) })
			attacks = append(attacks, wrapAttacks(t, tok)...)
			runAttacks(t, tok, *privateKey(id), wrapping, append(attacks, changeAttacks...))
		})
	}
}

// TestExtractableFlagsInObjects proves that tok.Objects, what `doctor`
// shows, reports master keys, the HMAC keys of portable versions and
// private keys as sensitive, always sensitive, never extractable and not
// extractable, and lists each of our objects exactly once with its class.
// The key pair is EC where the token has EC, else RSA.
func TestExtractableFlagsInObjects(t *testing.T) {
	tok := openToken(t)
	master := newMasterKey(t, tok)
	spec := ECP256
	if !has(tok, "ecdsa") {
		spec = RSA2048
	}
	pair := newKeyPair(t, tok, spec)
	protected := Object{Sensitive: true, AlwaysSensitive: true, NeverExtractable: true}
	type row struct {
		name  string
		id    ObjectID
		class string
		mac   bool
		want  Object // flags only
	}
	tests := []row{
		{"master key", master, "secret", false, protected},
		{"private key", pair, "private", false, protected},
		// Objects reads no flags of public keys.
		{"public key", pair, "public", false, Object{}},
	}
	if portable, ok := portableKeyOrLacking(t, tok); ok {
		tests = append(tests, row{"portable AES key", portable, "secret", false, protected},
			row{"portable HMAC key", portable, "secret", true, protected})
	}
	objs, err := tok.Objects(t.Context())
	if err != nil {
		t.Fatalf("Objects: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var found []Object
			for _, o := range objs {
				if bytes.Equal(o.ID, tc.id[:]) && o.Class == tc.class && o.MAC == tc.mac {
					found = append(found, o)
				}
			}
			if len(found) != 1 {
				t.Fatalf("Objects lists %d %s objects (MAC %v) with CKA_ID %s, want 1", len(found), tc.class, tc.mac, tc.id)
			}
			o := found[0]
			if o.Sensitive != tc.want.Sensitive || o.Extractable != tc.want.Extractable ||
				o.AlwaysSensitive != tc.want.AlwaysSensitive || o.NeverExtractable != tc.want.NeverExtractable {
				t.Errorf("flags: %+v, want sensitive=%v extractable=%v always_sensitive=%v never_extractable=%v", o,
					tc.want.Sensitive, tc.want.Extractable, tc.want.AlwaysSensitive, tc.want.NeverExtractable)
			}
			if !strings.HasPrefix(o.Label, "hsmkms/test/") {
				t.Errorf("label %q, want the one it was created with", o.Label)
			}
		})
	}
}
