package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hsmkms/hsmkms/service/policy"
)

// grantEnv is a key, an administrator and principals that exist in the
// store (grants name principals that exist).
type grantEnv struct {
	f        *fixture
	key      string
	app      string // access key ID of a principal with an empty policy
	app2     string
	appCtx   context.Context
	app2Ctx  context.Context
	adminCtx context.Context
}

func newGrantEnv(t *testing.T) *grantEnv {
	t.Helper()
	f := newFixture(t, "")
	e := &grantEnv{f: f, adminCtx: admin(t)}
	e.key = f.createKey(t, CreateKeyInput{})
	sys := systemContext(t.Context())
	for i, id := range []*string{&e.app, &e.app2} {
		out, err := f.svc.CreatePrincipal(sys, CreatePrincipalInput{Name: fmt.Sprintf("app%d", i)})
		ksMust(t, "CreatePrincipal", err)
		*id = out.AccessKeyId
		if out.Arn != f.svc.principalARN(out.AccessKeyId) || !strings.HasPrefix(out.Arn, "arn:aws:iam::000000000000:user/AKIA") {
			t.Fatalf("CreatePrincipal: Arn %q", out.Arn)
		}
	}
	e.appCtx, e.app2Ctx = as(t, e.app), as(t, e.app2)
	return e
}

func (e *grantEnv) arn(id string) string { return e.f.svc.principalARN(id) }

func (e *grantEnv) grant(t *testing.T, in CreateGrantInput) CreateGrantOutput {
	t.Helper()
	if in.KeyId == "" {
		in.KeyId = e.key
	}
	out, err := e.f.svc.CreateGrant(e.adminCtx, in)
	ksMust(t, "CreateGrant", err)
	if len(out.GrantId) != 64 || !strings.HasPrefix(out.GrantToken, grantTokenPrefix) {
		t.Fatalf("CreateGrant = %+v", out)
	}
	return out
}

func (e *grantEnv) encrypt(ctx context.Context, ec map[string]string, tokens ...string) error {
	_, err := e.f.svc.Encrypt(ctx, EncryptInput{KeyId: e.key, Plaintext: []byte("p"), EncryptionContext: ec, GrantTokens: tokens})
	return err
}

// TestGrantAllows: a principal whose policy allows nothing may use a key
// for exactly the operations a grant gives it, each use audited with the
// grant's ID; another principal may not; once the grant is revoked the
// principal is denied again.
func TestGrantAllows(t *testing.T) {
	e := newGrantEnv(t)
	f := e.f
	ksWantErr(t, "Encrypt before the grant", e.encrypt(e.appCtx, nil), ErrAccessDenied, "")
	g := e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app), Operations: []string{"Encrypt", "Decrypt", "DescribeKey"}})

	mark := ksMark(f)
	enc, err := f.svc.Encrypt(e.appCtx, EncryptInput{KeyId: e.key, Plaintext: []byte("granted")})
	ksMust(t, "Encrypt by grant", err)
	recs := ksAuditSince(t, f, mark)
	if len(recs) != 1 || recs[0]["outcome"] != "allowed" || recs[0]["grant_id"] != g.GrantId || recs[0]["principal"] != e.app {
		t.Fatalf("audit of a use by grant: %v", recs)
	}
	dec, err := f.svc.Decrypt(e.appCtx, DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	ksMust(t, "Decrypt by grant", err)
	if string(dec.Plaintext) != "granted" {
		t.Fatalf("Decrypt = %q", dec.Plaintext)
	}
	_, err = f.svc.DescribeKey(e.appCtx, KeyIDInput{KeyId: e.key})
	ksMust(t, "DescribeKey by grant", err)
	_, err = f.svc.GenerateDataKey(e.appCtx, GenerateDataKeyInput{KeyId: e.key, KeySpec: "AES_256"})
	ksWantErr(t, "GenerateDataKey, not granted", err, ErrAccessDenied, "")
	ksWantErr(t, "DisableKey, not grantable", f.svc.DisableKey(e.appCtx, KeyIDInput{KeyId: e.key}), ErrAccessDenied, "")
	ksWantErr(t, "Encrypt by another principal", e.encrypt(e.app2Ctx, nil), ErrAccessDenied, "")
	other := f.createKey(t, CreateKeyInput{})
	_, err = f.svc.Encrypt(e.appCtx, EncryptInput{KeyId: other, Plaintext: []byte("p")})
	ksWantErr(t, "Encrypt under another key", err, ErrAccessDenied, "")

	// A Deny in the principal's policy wins over the grant.
	denied := as(t, e.app, policy.Statement{Effect: "Deny", Actions: []string{"kms:Encrypt"}, Resources: []string{"*"}})
	ksWantErr(t, "Encrypt denied by policy", e.encrypt(denied, nil), ErrAccessDenied, "")

	ksMust(t, "RevokeGrant", f.svc.RevokeGrant(e.adminCtx, RevokeGrantInput{KeyId: e.key, GrantId: g.GrantId}))
	ksWantErr(t, "Encrypt after RevokeGrant", e.encrypt(e.appCtx, nil), ErrAccessDenied, "")
	ksWantErr(t, "RevokeGrant again", f.svc.RevokeGrant(e.adminCtx, RevokeGrantInput{KeyId: e.key, GrantId: g.GrantId}), ErrNotFound, "Grant ID "+g.GrantId+" not found")
}

// TestGrantConstraints: EncryptionContextSubset and EncryptionContextEquals
// hold the grant to requests whose context fits, for Encrypt, Decrypt and
// both sides of ReEncrypt.
func TestGrantConstraints(t *testing.T) {
	e := newGrantEnv(t)
	f := e.f
	e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app), Operations: []string{"Encrypt", "Decrypt"},
		Constraints: &GrantConstraints{EncryptionContextSubset: map[string]string{"tenant": "a"}}})
	e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app2), Operations: []string{"Encrypt", "ReEncryptFrom", "ReEncryptTo"},
		Constraints: &GrantConstraints{EncryptionContextEquals: map[string]string{"tenant": "b"}}})
	for _, tc := range []struct {
		name string
		ctx  context.Context
		ec   map[string]string
		ok   bool
	}{
		{"subset: exact", e.appCtx, map[string]string{"tenant": "a"}, true},
		{"subset: more pairs", e.appCtx, map[string]string{"tenant": "a", "x": "y"}, true},
		{"subset: other value", e.appCtx, map[string]string{"tenant": "b"}, false},
		{"subset: none", e.appCtx, nil, false},
		{"subset: key case differs", e.appCtx, map[string]string{"Tenant": "a"}, false},
		{"equals: exact", e.app2Ctx, map[string]string{"tenant": "b"}, true},
		{"equals: more pairs", e.app2Ctx, map[string]string{"tenant": "b", "x": "y"}, false},
		{"equals: none", e.app2Ctx, nil, false},
	} {
		err := e.encrypt(tc.ctx, tc.ec)
		if tc.ok {
			ksMust(t, tc.name, err)
		} else {
			ksWantErr(t, tc.name, err, ErrAccessDenied, "")
		}
	}
	blob := ksEncryptCtx(t, f, e.key, "p", map[string]string{"tenant": "b"})
	re := func(src, dst map[string]string) error {
		_, err := f.svc.ReEncrypt(e.app2Ctx, ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: src, DestinationKeyId: e.key, DestinationEncryptionContext: dst})
		return err
	}
	ksMust(t, "ReEncrypt within the constraint", re(map[string]string{"tenant": "b"}, map[string]string{"tenant": "b"}))
	ksWantErr(t, "ReEncrypt to another context", re(map[string]string{"tenant": "b"}, map[string]string{"tenant": "c"}), ErrAccessDenied, "")
}

func ksEncryptCtx(t *testing.T, f *fixture, key, plain string, ec map[string]string) []byte {
	t.Helper()
	out, err := f.svc.Encrypt(admin(t), EncryptInput{KeyId: key, Plaintext: []byte(plain), EncryptionContext: ec})
	ksMust(t, "Encrypt", err)
	return out.CiphertextBlob
}

// TestGrantLifecycle: Name makes CreateGrant idempotent, ListGrants pages
// and filters, ListRetirableGrants finds a retiring principal's grants
// across keys, RetireGrant works for the retiring principal (by token) and
// for a grantee whose grant includes RetireGrant, and for nobody else.
func TestGrantLifecycle(t *testing.T) {
	e := newGrantEnv(t)
	f := e.f
	in := CreateGrantInput{Name: "app-decrypt", GranteePrincipal: e.arn(e.app), RetiringPrincipal: e.arn(e.app2), Operations: []string{"Decrypt", "Encrypt"}}
	g1 := e.grant(t, in)
	again := e.grant(t, in)
	if again.GrantId != g1.GrantId {
		t.Fatalf("CreateGrant with the same name and parameters made grant %s, want %s", again.GrantId, g1.GrantId)
	}
	in.Operations = []string{"Decrypt"}
	g2 := e.grant(t, in)
	if g2.GrantId == g1.GrantId {
		t.Fatal("CreateGrant with the same name and other operations returned the old grant")
	}
	g3 := e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app2), Operations: []string{"Encrypt", "RetireGrant"}})

	all, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key})
	ksMust(t, "ListGrants", err)
	if len(all.Grants) != 3 || all.Truncated {
		t.Fatalf("ListGrants: %+v", all)
	}
	for _, gr := range all.Grants {
		if gr.KeyId != ksARN(e.key) || gr.IssuingAccount != "arn:aws:iam::000000000000:root" || gr.CreationDate == nil {
			t.Errorf("grant entry %+v", gr)
		}
	}
	var paged []string
	for marker := ""; ; {
		p, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key, Limit: 1, Marker: marker})
		ksMust(t, "ListGrants page", err)
		for _, gr := range p.Grants {
			paged = append(paged, gr.GrantId)
		}
		if !p.Truncated {
			break
		}
		marker = p.NextMarker
	}
	if len(paged) != 3 {
		t.Fatalf("pages of 1 gave %v", paged)
	}
	one, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key, GrantId: g3.GrantId})
	ksMust(t, "ListGrants by GrantId", err)
	if len(one.Grants) != 1 || one.Grants[0].GrantId != g3.GrantId || one.Grants[0].GranteePrincipal != e.arn(e.app2) {
		t.Fatalf("ListGrants by GrantId: %+v", one)
	}
	byGrantee, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key, GranteePrincipal: e.arn(e.app)})
	ksMust(t, "ListGrants by grantee", err)
	if len(byGrantee.Grants) != 2 {
		t.Fatalf("ListGrants by grantee: %+v", byGrantee)
	}
	_, err = f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key, Marker: "nonsense"})
	ksWantErr(t, "ListGrants bad marker", err, ErrInvalidMarker, "")

	retirable, err := f.svc.ListRetirableGrants(e.adminCtx, ListRetirableGrantsInput{RetiringPrincipal: e.arn(e.app2)})
	ksMust(t, "ListRetirableGrants", err)
	if len(retirable.Grants) != 2 {
		t.Fatalf("ListRetirableGrants: %+v", retirable)
	}

	// The grantee of g1 is not its retiring principal.
	ksWantErr(t, "RetireGrant by the grantee", f.svc.RetireGrant(e.appCtx, RetireGrantInput{GrantToken: g1.GrantToken}), ErrAccessDenied, "")
	mark := ksMark(f)
	ksMust(t, "RetireGrant by the retiring principal", f.svc.RetireGrant(e.app2Ctx, RetireGrantInput{GrantToken: g1.GrantToken}))
	if recs := ksAuditSince(t, f, mark); len(recs) != 1 || recs[0]["grant_id"] != g1.GrantId || recs[0]["key_id"] != e.key {
		t.Fatalf("audit of RetireGrant: %v", recs)
	}
	ksMust(t, "RetireGrant by a grantee with RetireGrant", f.svc.RetireGrant(e.app2Ctx, RetireGrantInput{KeyId: e.key, GrantId: g3.GrantId}))
	// Only a caller with a right on the key learns that a grant is gone.
	ksWantErr(t, "RetireGrant of a retired grant by its retiring principal", f.svc.RetireGrant(e.app2Ctx, RetireGrantInput{GrantToken: g1.GrantToken}), ErrAccessDenied, "")
	ksWantErr(t, "RetireGrant of a retired grant by an administrator", f.svc.RetireGrant(e.adminCtx, RetireGrantInput{GrantToken: g1.GrantToken}), ErrNotFound, "Grant ID "+g1.GrantId+" not found")
	left, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key})
	ksMust(t, "ListGrants", err)
	if len(left.Grants) != 1 || left.Grants[0].GrantId != g2.GrantId {
		t.Fatalf("after retiring: %+v", left)
	}
}

// TestGrantCreateGrant: a grant with CreateGrant lets its grantee give
// what it has, and no more; the grant tokens of a request are checked.
func TestGrantCreateGrant(t *testing.T) {
	e := newGrantEnv(t)
	f := e.f
	parent := e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app), Operations: []string{"CreateGrant", "Encrypt"}})
	_, err := f.svc.CreateGrant(e.appCtx, CreateGrantInput{KeyId: e.key, GranteePrincipal: e.arn(e.app2), Operations: []string{"Encrypt"}, GrantTokens: []string{parent.GrantToken}})
	ksMust(t, "CreateGrant under a grant", err)
	ksMust(t, "Encrypt by the child grant", e.encrypt(e.app2Ctx, nil))
	_, err = f.svc.CreateGrant(e.appCtx, CreateGrantInput{KeyId: e.key, GranteePrincipal: e.arn(e.app2), Operations: []string{"Decrypt"}})
	ksWantErr(t, "CreateGrant of more than the grant has", err, ErrAccessDenied, "")
	ksWantErr(t, "a malformed grant token", e.encrypt(e.appCtx, nil, "not-a-token"), ErrInvalidGrantToken, "The grant token is not valid")
	ksWantErr(t, "eleven grant tokens", e.encrypt(e.appCtx, nil, make([]string, 11)...), ErrValidation, "")
	ksMust(t, "Encrypt with the grant's token", e.encrypt(e.appCtx, nil, parent.GrantToken))
}

// TestGrantBadRequests: every CreateGrant field out of range, and keys in
// the wrong state, get their exact error and store no grant.
func TestGrantBadRequests(t *testing.T) {
	e := newGrantEnv(t)
	f := e.f
	disabled := f.createKey(t, CreateKeyInput{})
	ksMust(t, "DisableKey", f.svc.DisableKey(e.adminCtx, KeyIDInput{KeyId: disabled}))
	ecc := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
	grantee := e.arn(e.app)
	for _, tc := range []struct {
		name string
		in   CreateGrantInput
		want *Error
		msg  string
	}{
		{"no grantee", CreateGrantInput{KeyId: e.key, Operations: []string{"Encrypt"}}, ErrValidation, ""},
		{"no operations", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee}, ErrValidation, ""},
		{"unknown operation", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"Encrypt", "Destroy"}}, ErrValidation,
			"1 validation error detected: Value '[Encrypt, Destroy]' at 'operations' failed to satisfy constraint: Member must satisfy constraint: " +
				"[Member must satisfy enum value set: [Decrypt, Encrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, ReEncryptFrom, ReEncryptTo, " +
				"Sign, Verify, GetPublicKey, CreateGrant, RetireGrant, DescribeKey, GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext, " +
				"GenerateMac, VerifyMac, DeriveSharedSecret, Encapsulate, Decapsulate]]"},
		{"DeriveSharedSecret on a symmetric key", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"DeriveSharedSecret"}}, ErrValidation,
			"a grant on " + ksARN(e.key) + " (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) cannot allow DeriveSharedSecret"},
		{"Sign on a symmetric key", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"Sign"}}, ErrValidation,
			"a grant on " + ksARN(e.key) + " (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) cannot allow Sign"},
		{"Encrypt on a signing key", CreateGrantInput{KeyId: ecc, GranteePrincipal: grantee, Operations: []string{"Encrypt"}}, ErrValidation, ""},
		{"grantee not an ARN", CreateGrantInput{KeyId: e.key, GranteePrincipal: e.app, Operations: []string{"Encrypt"}}, ErrValidation, ""},
		{"unknown grantee", CreateGrantInput{KeyId: e.key, GranteePrincipal: e.arn("AKIANOBODY"), Operations: []string{"Encrypt"}}, ErrValidation,
			"GranteePrincipal " + e.arn("AKIANOBODY") + " names no principal"},
		{"unknown retiring principal", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, RetiringPrincipal: "arn:aws:iam::111111111111:user/x", Operations: []string{"Encrypt"}}, ErrValidation, ""},
		{"bad name", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"Encrypt"}, Name: "a b"}, ErrValidation,
			"1 validation error detected: Value 'a b' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"},
		{"long name", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"Encrypt"}, Name: strings.Repeat("n", 257)}, ErrValidation,
			"1 validation error detected: Value at 'name' failed to satisfy constraint: Member must have length less than or equal to 256"},
		{"constraint with DescribeKey", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"Encrypt", "DescribeKey"},
			Constraints: &GrantConstraints{EncryptionContextSubset: map[string]string{"a": "b"}}}, ErrValidation, ""},
		{"constraint with an empty key", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"Encrypt"},
			Constraints: &GrantConstraints{EncryptionContextEquals: map[string]string{"": "b"}}}, ErrValidation, ""},
		{"DryRun", CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"Encrypt"}, DryRun: true}, ErrUnsupported, "DryRun is not supported"},
		{"disabled key", CreateGrantInput{KeyId: disabled, GranteePrincipal: grantee, Operations: []string{"Encrypt"}}, ErrDisabled, ksARN(disabled) + " is disabled."},
		{"unknown key", CreateGrantInput{KeyId: "alias/none", GranteePrincipal: grantee, Operations: []string{"Encrypt"}}, ErrNotFound, ""},
	} {
		_, err := f.svc.CreateGrant(e.adminCtx, tc.in)
		ksWantErr(t, tc.name, err, tc.want, tc.msg)
	}
	for _, key := range []string{e.key, disabled, ecc} {
		out, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: key})
		ksMust(t, "ListGrants", err)
		if len(out.Grants) != 0 {
			t.Errorf("refused CreateGrants left %d grants on %s", len(out.Grants), key)
		}
	}
	ksWantErr(t, "RevokeGrant with a bad ID", f.svc.RevokeGrant(e.adminCtx, RevokeGrantInput{KeyId: e.key, GrantId: "xyz"}), ErrInvalidGrantID, "")
	ksWantErr(t, "RetireGrant with nothing", f.svc.RetireGrant(e.adminCtx, RetireGrantInput{}), ErrValidation, "")
	ksWantErr(t, "RetireGrant with a bad token", f.svc.RetireGrant(e.adminCtx, RetireGrantInput{GrantToken: "hsmkms-grant-v1:!!"}), ErrInvalidGrantToken, "")
	_, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key, Limit: 101})
	ksWantErr(t, "ListGrants Limit 101", err, ErrValidation, "")
	_, err = f.svc.CreateGrant(e.appCtx, CreateGrantInput{KeyId: e.key, GranteePrincipal: grantee, Operations: []string{"Encrypt"}})
	ksWantErr(t, "CreateGrant without the right", err, ErrAccessDenied, "")
}

// TestGrantIdLength: a GrantId over AWS's 128 characters is a
// ValidationException with AWS's words in RevokeGrant, RetireGrant and
// ListGrants; a shorter one that is no grant ID stays an
// InvalidGrantIdException. (Found by review: all were InvalidGrantId.)
func TestGrantIdLength(t *testing.T) {
	e := newGrantEnv(t)
	f := e.f
	long := lengthMsg("grantId", 128)
	revoke := func(id string) func() error {
		return func() error { return f.svc.RevokeGrant(e.adminCtx, RevokeGrantInput{KeyId: e.key, GrantId: id}) }
	}
	retire := func(in RetireGrantInput) func() error {
		return func() error { return f.svc.RetireGrant(e.adminCtx, in) }
	}
	list := func(id string) func() error {
		return func() error {
			_, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key, GrantId: id})
			return err
		}
	}
	for _, tc := range []struct {
		name string
		call func() error
		want *Error
		msg  string
	}{
		{"RevokeGrant 129 characters", revoke(strings.Repeat("a", 129)), ErrValidation, long},
		{"RevokeGrant 129 multi-byte characters", revoke(strings.Repeat("é", 129)), ErrValidation, long},
		{"RevokeGrant 128 characters", revoke(strings.Repeat("a", 128)), ErrInvalidGrantID, ""},
		{"RevokeGrant 128 multi-byte characters", revoke(strings.Repeat("é", 128)), ErrInvalidGrantID, ""},
		{"RevokeGrant 129 characters on an unknown key", func() error {
			return f.svc.RevokeGrant(e.adminCtx, RevokeGrantInput{KeyId: "alias/none", GrantId: strings.Repeat("a", 129)})
		}, ErrValidation, long},
		{"RetireGrant 129 characters", retire(RetireGrantInput{KeyId: e.key, GrantId: strings.Repeat("a", 129)}), ErrValidation, long},
		{"RetireGrant 129 characters beside a token", retire(RetireGrantInput{GrantToken: "hsmkms-grant-v1:!!", GrantId: strings.Repeat("a", 129)}), ErrValidation, long},
		{"RetireGrant 128 characters", retire(RetireGrantInput{KeyId: e.key, GrantId: strings.Repeat("a", 128)}), ErrInvalidGrantID, ""},
		{"ListGrants 129 characters", list(strings.Repeat("a", 129)), ErrValidation, long},
		{"ListGrants 128 characters", list(strings.Repeat("a", 128)), ErrInvalidGrantID, ""},
	} {
		ksWantErr(t, tc.name, tc.call(), tc.want, tc.msg)
	}
}

// TestGrantEmptyContextEquals: EncryptionContextEquals {} holds a grant to
// requests with no encryption context, through the store and in
// ListGrants, while EncryptionContextSubset {} constrains nothing, as in
// AWS KMS. (Found by review: the empty map was dropped on store, read back
// as no constraint, and the grantee decrypted under any context.)
func TestGrantEmptyContextEquals(t *testing.T) {
	e := newGrantEnv(t)
	f := e.f
	equals := e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app), Operations: []string{"Decrypt", "Encrypt", "CreateGrant"},
		Constraints: &GrantConstraints{EncryptionContextEquals: map[string]string{}}})
	e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app2), Operations: []string{"Decrypt"},
		Constraints: &GrantConstraints{EncryptionContextSubset: map[string]string{}}})
	none := ksEncryptCtx(t, f, e.key, "none", nil)
	other := ksEncryptCtx(t, f, e.key, "other", map[string]string{"tenant": "other"})
	decrypt := func(ctx context.Context, blob []byte, ec map[string]string) error {
		_, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
		return err
	}
	for _, tc := range []struct {
		name string
		call func() error
		want *Error
	}{
		{"equals {}: Decrypt with no context", func() error { return decrypt(e.appCtx, none, nil) }, nil},
		{"equals {}: Decrypt with an empty context", func() error { return decrypt(e.appCtx, none, map[string]string{}) }, nil},
		{"equals {}: Decrypt with a context", func() error { return decrypt(e.appCtx, other, map[string]string{"tenant": "other"}) }, ErrAccessDenied},
		{"equals {}: Encrypt with no context", func() error { return e.encrypt(e.appCtx, nil) }, nil},
		{"equals {}: Encrypt with a context", func() error { return e.encrypt(e.appCtx, map[string]string{"tenant": "other"}) }, ErrAccessDenied},
		{"subset {}: Decrypt with no context", func() error { return decrypt(e.app2Ctx, none, nil) }, nil},
		{"subset {}: Decrypt with a context", func() error { return decrypt(e.app2Ctx, other, map[string]string{"tenant": "other"}) }, nil},
		{"equals {}: a child grant without the constraint", func() error {
			_, err := f.svc.CreateGrant(e.appCtx, CreateGrantInput{KeyId: e.key, GranteePrincipal: e.arn(e.app2), Operations: []string{"Decrypt"},
				GrantTokens: []string{equals.GrantToken}})
			return err
		}, ErrAccessDenied},
		{"equals {}: a child grant that keeps it", func() error {
			_, err := f.svc.CreateGrant(e.appCtx, CreateGrantInput{KeyId: e.key, GranteePrincipal: e.arn(e.app2), Operations: []string{"Decrypt"},
				Constraints: &GrantConstraints{EncryptionContextEquals: map[string]string{}}, GrantTokens: []string{equals.GrantToken}})
			return err
		}, nil},
		{"equals {} with DescribeKey", func() error {
			_, err := f.svc.CreateGrant(e.adminCtx, CreateGrantInput{KeyId: e.key, GranteePrincipal: e.arn(e.app), Operations: []string{"DescribeKey"},
				Constraints: &GrantConstraints{EncryptionContextEquals: map[string]string{}}})
			return err
		}, ErrValidation},
	} {
		ksWantErr(t, tc.name, tc.call(), tc.want, "")
	}

	// The same name and operations without the constraint is another grant.
	named := CreateGrantInput{Name: "n", GranteePrincipal: e.arn(e.app), Operations: []string{"Decrypt"},
		Constraints: &GrantConstraints{EncryptionContextEquals: map[string]string{}}}
	first := e.grant(t, named)
	named.Constraints = nil
	if e.grant(t, named).GrantId == first.GrantId {
		t.Error("CreateGrant without EncryptionContextEquals {} returned the grant with it")
	}

	listed, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key, GrantId: equals.GrantId})
	ksMust(t, "ListGrants", err)
	if len(listed.Grants) != 1 {
		t.Fatalf("ListGrants: %+v", listed)
	}
	b, err := json.Marshal(listed.Grants[0])
	ksMust(t, "json.Marshal", err)
	if !strings.Contains(string(b), `"Constraints":{"EncryptionContextEquals":{}}`) {
		t.Errorf("ListGrants entry %s lacks the constraint", b)
	}
}

// TestGrantRetireGrantOnlyItsOwn: a grant that includes RetireGrant lets
// its grantee retire that grant, not the key's other grants; RevokeGrant is
// never grantable. (Found by review: the grantee's own grant authorized
// kms:RetireGrant on the whole key.)
func TestGrantRetireGrantOnlyItsOwn(t *testing.T) {
	e := newGrantEnv(t)
	f := e.f
	g1 := e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app), Operations: []string{"DescribeKey", "RetireGrant"}})
	g2 := e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app2), Operations: []string{"Decrypt", "Encrypt"}})
	denied := func(action string) string {
		return "User: " + e.app + " is not authorized to perform: " + action + " on resource: " + ksARN(e.key) +
			" because no identity-based policy allows the " + action + " action"
	}
	for _, tc := range []struct {
		name string
		call func() error
		msg  string
	}{
		{"RetireGrant of another's grant by key and ID", func() error {
			return f.svc.RetireGrant(e.appCtx, RetireGrantInput{KeyId: e.key, GrantId: g2.GrantId})
		}, denied("kms:RetireGrant")},
		{"RetireGrant of another's grant by token", func() error {
			return f.svc.RetireGrant(e.appCtx, RetireGrantInput{GrantToken: g2.GrantToken})
		}, denied("kms:RetireGrant")},
		{"RevokeGrant of another's grant", func() error {
			return f.svc.RevokeGrant(e.appCtx, RevokeGrantInput{KeyId: e.key, GrantId: g2.GrantId})
		}, denied("kms:RevokeGrant")},
	} {
		ksWantErr(t, tc.name, tc.call(), ErrAccessDenied, tc.msg)
	}
	ksMust(t, "Encrypt by the grant not retired", e.encrypt(e.app2Ctx, nil))
	ksMust(t, "RetireGrant of its own grant", f.svc.RetireGrant(e.appCtx, RetireGrantInput{KeyId: e.key, GrantId: g1.GrantId}))
	left, err := f.svc.ListGrants(e.adminCtx, ListGrantsInput{KeyId: e.key})
	ksMust(t, "ListGrants", err)
	if len(left.Grants) != 1 || left.Grants[0].GrantId != g2.GrantId {
		t.Fatalf("after retiring: %+v", left)
	}
}
