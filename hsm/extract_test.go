package hsm

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// The return codes SoftHSM2 2.6.1 gives the attacks below, as measured.
// CKR_ACTION_PROHIBITED (0x1B) comes from CKA_MODIFIABLE=false and
// CKA_COPYABLE=false on our keys: SoftHSM2 checks those before the
// attribute, so C_SetAttributeValue never gets as far as
// CKR_ATTRIBUTE_READ_ONLY (0x10), which is what a modifiable but
// non-extractable key answers.
const (
	ckrSensitive     = pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE) // 0x11
	ckrUnextractable = pkcs11.Error(pkcs11.CKR_KEY_UNEXTRACTABLE)   // 0x6A
	ckrProhibited    = pkcs11.Error(pkcs11.CKR_ACTION_PROHIBITED)   // 0x1B
)

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
// starts with kind ("Secret Key Object") and whose ID is id.
func toolObjectFor(t *testing.T, objs []toolObject, kind string, id ObjectID) toolObject {
	t.Helper()
	var found []toolObject
	for _, o := range objs {
		if strings.HasPrefix(o.header, kind) && o.attrs["ID"] == id.String() {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("pkcs11-tool lists %d objects %q with ID %s, want 1: %+v", len(found), kind, id, objs)
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

// wantCKR fails unless err carries exactly the PKCS#11 return code want.
func wantCKR(t *testing.T, err error, want pkcs11.Error) {
	t.Helper()
	var got pkcs11.Error
	switch {
	case err == nil:
		t.Fatalf("the token allowed it; want %#x (%v)", uint(want), want)
	case !errors.As(err, &got):
		t.Fatalf("error %v carries no PKCS#11 code; want %#x", err, uint(want))
	case !errors.Is(err, want):
		t.Fatalf("got %#x (%v), want %#x (%v)", uint(got), got, uint(want), want)
	}
}

// rawHandle finds the object of class with CKA_ID id through the raw
// module, independently of tok's handle cache.
func rawHandle(t *testing.T, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, id ObjectID, class uint) pkcs11.ObjectHandle {
	t.Helper()
	h, err := findOne(ctx, s, keyRef{id, class, anyKeyType})
	if err != nil {
		t.Fatalf("finding %s of class %d: %v", id, class, err)
	}
	return h
}

// rawCount counts the objects with CKA_ID id through the raw module.
func rawCount(t *testing.T, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, id ObjectID) int {
	t.Helper()
	hs, err := findObjects(ctx, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id[:])}, 0)
	if err != nil {
		t.Fatalf("searching CKA_ID %s: %v", id, err)
	}
	return len(hs)
}

// boolAttrs reads boolean attributes of h through the raw module.
func boolAttrs(t *testing.T, ctx *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle, types ...uint) map[uint]bool {
	t.Helper()
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, ty := range types {
		tmpl[i] = pkcs11.NewAttribute(ty, nil)
	}
	attrs, err := ctx.GetAttributeValue(s, h, tmpl)
	if err != nil {
		t.Fatalf("GetAttributeValue: %v", err)
	}
	out := map[uint]bool{}
	for _, a := range attrs {
		out[a.Type] = attrBool(a.Value)
	}
	return out
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

// TestNonExtractableSeenByPkcs11Tool proves, through pkcs11-tool in another
// process, that master keys and the private halves of EC and RSA key pairs
// are sensitive, always sensitive, never extractable and generated on the
// token, with only the usages the service needs.
func TestNonExtractableSeenByPkcs11Tool(t *testing.T) {
	tok := openToken(t)
	master := newMasterKey(t, tok)
	ecPair := newKeyPair(t, tok, ECP256)
	rsaPair := newKeyPair(t, tok, RSA2048)
	objs := listObjectsWithTool(t)

	tests := []struct {
		name   string
		id     ObjectID
		kind   string
		header string // the header's first words after kind
		usage  []string
		access []string
	}{
		{"master key", master, "Secret Key Object", "Secret Key Object; AES length 32",
			[]string{"decrypt", "encrypt", "unwrap", "wrap"},
			[]string{"always sensitive", "local", "never extractable", "sensitive"}},
		{"EC P-256 private key", ecPair, "Private Key Object", "Private Key Object; EC",
			[]string{"sign"},
			[]string{"always sensitive", "local", "never extractable", "sensitive"}},
		{"RSA 2048 private key", rsaPair, "Private Key Object", "Private Key Object; RSA",
			[]string{"sign"},
			[]string{"always sensitive", "local", "never extractable", "sensitive"}},
		// Public halves: verify only, never encrypt or wrap.
		{"EC P-256 public key", ecPair, "Public Key Object", "Public Key Object; EC",
			[]string{"verify"}, []string{"local"}},
		{"RSA 2048 public key", rsaPair, "Public Key Object", "Public Key Object; RSA 2048 bits",
			[]string{"verify"}, []string{"local"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := toolObjectFor(t, objs, tc.kind, tc.id)
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

// attack is one way of getting key material out of the token, made with
// raw PKCS#11 calls the hsm package itself never makes.
type attack struct {
	name string
	run  func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, wrapping pkcs11.ObjectHandle) error
	want pkcs11.Error
}

func readAttack(name string, attr uint) attack {
	return attack{name, func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) error {
		_, err := ctx.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
		return err
	}, ckrSensitive}
}

func wrapAttack(name string, mech uint) attack {
	return attack{name, func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, wrapping pkcs11.ObjectHandle) error {
		_, err := ctx.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, wrapping, key)
		return err
	}, ckrUnextractable}
}

// changeAttacks try to make the key extractable: by copying it with new
// flags, or by setting them on the key itself.
var changeAttacks = []attack{
	{"copy with CKA_EXTRACTABLE=true", func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) error {
		_, err := ctx.CopyObject(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
		return err
	}, ckrProhibited},
	{"copy as a session object with CKA_SENSITIVE=false", func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) error {
		_, err := ctx.CopyObject(s, key, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		})
		return err
	}, ckrProhibited},
	{"set CKA_EXTRACTABLE=true", func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) error {
		return ctx.SetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
	}, ckrProhibited},
	{"set CKA_SENSITIVE=false", func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, key, _ pkcs11.ObjectHandle) error {
		return ctx.SetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)})
	}, ckrProhibited},
}

// runAttacks runs each attack on key and checks the exact refusal, then
// that the key is unchanged and that no copy of it appeared.
func runAttacks(t *testing.T, tok *Token, ref keyRef, wrappingID ObjectID, attacks []attack) {
	t.Helper()
	id := ref.id
	ctx, s := raw(t, tok), session(t, tok)
	key, err := findOne(ctx, s, ref)
	if err != nil {
		t.Fatalf("finding the key: %v", err)
	}
	wrapping := rawHandle(t, ctx, s, wrappingID, pkcs11.CKO_SECRET_KEY)
	before := rawCount(t, ctx, s, id)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			wantCKR(t, a.run(ctx, s, key, wrapping), a.want)
		})
	}
	want := []struct {
		name string
		attr uint
		want bool
	}{
		{"CKA_SENSITIVE", pkcs11.CKA_SENSITIVE, true},
		{"CKA_EXTRACTABLE", pkcs11.CKA_EXTRACTABLE, false},
		{"CKA_ALWAYS_SENSITIVE", pkcs11.CKA_ALWAYS_SENSITIVE, true},
		{"CKA_NEVER_EXTRACTABLE", pkcs11.CKA_NEVER_EXTRACTABLE, true},
		// These two make SoftHSM2 answer CKR_ACTION_PROHIBITED above.
		{"CKA_MODIFIABLE", pkcs11.CKA_MODIFIABLE, false},
		{"CKA_COPYABLE", pkcs11.CKA_COPYABLE, false},
	}
	types := make([]uint, len(want))
	for i, w := range want {
		types[i] = w.attr
	}
	flags := boolAttrs(t, ctx, s, key, types...)
	for _, w := range want {
		if flags[w.attr] != w.want {
			t.Errorf("after the attacks, %s is %v, want %v", w.name, flags[w.attr], w.want)
		}
	}
	if after := rawCount(t, ctx, s, id); after != before {
		t.Errorf("%d objects with the key's CKA_ID after the attacks, %d before", after, before)
	}
}

// TestExtractMasterKeyRefused proves that the token refuses, with the exact
// return codes, every raw PKCS#11 way of getting a master key out: reading
// CKA_VALUE, wrapping it under another master key, copying it with new
// flags and setting EXTRACTABLE or clearing SENSITIVE.
func TestExtractMasterKeyRefused(t *testing.T) {
	tok := openToken(t)
	master, other := newMasterKey(t, tok), newMasterKey(t, tok)
	attacks := append([]attack{
		readAttack("read CKA_VALUE", pkcs11.CKA_VALUE),
		wrapAttack("wrap under another master key with CKM_AES_KEY_WRAP", pkcs11.CKM_AES_KEY_WRAP),
		wrapAttack("wrap under another master key with CKM_AES_KEY_WRAP_PAD", pkcs11.CKM_AES_KEY_WRAP_PAD),
	}, changeAttacks...)
	runAttacks(t, tok, *secretKey(master), other, attacks)
}

// TestExtractControlKeySucceeds proves that the reads, wraps and copies
// refused above work on an extractable, non-sensitive session key with the
// same wrapping key and session: the refusals come from the master key's
// flags, not from a broken call.
func TestExtractControlKeySucceeds(t *testing.T) {
	tok := openToken(t)
	wrappingID := newMasterKey(t, tok)
	ctx, s := raw(t, tok), session(t, tok)
	wrapping := rawHandle(t, ctx, s, wrappingID, pkcs11.CKO_SECRET_KEY)
	key, err := ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		t.Fatalf("generating the control key: %v", err)
	}
	t.Cleanup(func() { _ = ctx.DestroyObject(s, key) })

	a, err := ctx.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil || len(a[0].Value) != 32 {
		t.Fatalf("reading the control key's CKA_VALUE: %v", err)
	}
	for _, mech := range []uint{pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKM_AES_KEY_WRAP_PAD} {
		wrapped, err := ctx.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, wrapping, key)
		if err != nil || len(wrapped) != 40 {
			t.Fatalf("wrapping the control key with %s: %d bytes, %v", MechanismName(mech), len(wrapped), err)
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
// cannot be wrapped under a master key, copied or made extractable.
func TestExtractPrivateKeyRefused(t *testing.T) {
	tok := openToken(t)
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
			id := newKeyPair(t, tok, tc.spec)
			var attacks []attack
			for name, attr := range tc.secrets {
				attacks = append(attacks, readAttack("read "+name, attr))
			}
			slices.SortFunc(attacks, func(a, b attack) int { return strings.Compare(a.name, b.name) })
			attacks = append(attacks,
				wrapAttack("wrap under a master key with CKM_AES_KEY_WRAP", pkcs11.CKM_AES_KEY_WRAP),
				wrapAttack("wrap under a master key with CKM_AES_KEY_WRAP_PAD", pkcs11.CKM_AES_KEY_WRAP_PAD))
			attacks = append(attacks, changeAttacks...)
			runAttacks(t, tok, *privateKey(id), wrapping, attacks)
		})
	}
}

// TestExtractableFlagsInObjects proves that tok.Objects, what `doctor`
// shows, reports master keys and private keys as sensitive, always
// sensitive, never extractable and not extractable, and lists each of our
// objects exactly once with its class.
func TestExtractableFlagsInObjects(t *testing.T) {
	tok := openToken(t)
	master := newMasterKey(t, tok)
	pair := newKeyPair(t, tok, ECP256)
	objs, err := tok.Objects(t.Context())
	if err != nil {
		t.Fatalf("Objects: %v", err)
	}
	tests := []struct {
		name  string
		id    ObjectID
		class string
		want  Object // flags only
	}{
		{"master key", master, "secret", Object{Sensitive: true, AlwaysSensitive: true, NeverExtractable: true}},
		{"private key", pair, "private", Object{Sensitive: true, AlwaysSensitive: true, NeverExtractable: true}},
		// Objects reads no flags of public keys.
		{"public key", pair, "public", Object{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var found []Object
			for _, o := range objs {
				if bytes.Equal(o.ID, tc.id[:]) && o.Class == tc.class {
					found = append(found, o)
				}
			}
			if len(found) != 1 {
				t.Fatalf("Objects lists %d %s objects with CKA_ID %s, want 1", len(found), tc.class, tc.id)
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
