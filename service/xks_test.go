package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/policy"
)

// xksAdmin is a caller allowed every key and administrative action.
func xksAdmin(t testing.TB) context.Context {
	return as(t, "AKIAXKSADMIN", policy.Statement{Effect: "Allow", Actions: []string{"kms:*", "hsmkms:*"}, Resources: []string{"*"}})
}

// xksCaller is AWS KMS as the XKS listener presents it.
func xksCaller(t testing.TB, id string) context.Context {
	return WithCaller(t.Context(), Caller{AccessKeyID: id, Name: "xks/p", Source: "127.0.0.1", RequestID: "r"})
}

func wantCode(t *testing.T, err error, code Code) {
	t.Helper()
	if CodeOf(err) != code {
		t.Fatalf("err = %v, want %s", err, code)
	}
}

func TestXKSStoreAdministration(t *testing.T) {
	f := newFixture(t, "")
	ctx := xksAdmin(t)
	for _, tc := range []struct {
		in, want string
		code     Code
	}{
		{"example/uri/path/prefix", "example/uri/path/prefix", ""},
		{"/a/b/", "a/b", ""},
		{"/c/kms/xks/v1", "c", ""},
		{"", "", CodeValidation},
		{"/", "", CodeValidation},
		{"a//b", "", CodeValidation},
		{"a b", "", CodeValidation},
		{"a.b", "", CodeValidation},
		{strings.Repeat("x", 116), strings.Repeat("x", 116), ""},
		{strings.Repeat("y", 117), "", CodeValidation},
	} {
		out, err := f.svc.CreateXKSStore(ctx, XKSStoreInput{Prefix: tc.in})
		if tc.code != "" {
			wantCode(t, err, tc.code)
			continue
		}
		if err != nil || out.Prefix != tc.want || out.URIPath != "/"+tc.want+"/kms/xks/v1" {
			t.Fatalf("CreateXKSStore(%q) = %+v, %v", tc.in, out, err)
		}
	}
	_, err := f.svc.CreateXKSStore(ctx, XKSStoreInput{Prefix: "a/b"})
	wantCode(t, err, CodeAlreadyExists)
	// kms:* grants no administrative action.
	_, err = f.svc.CreateXKSStore(admin(t), XKSStoreInput{Prefix: "d"})
	wantCode(t, err, CodeAccessDenied)
	_, err = f.svc.AddXKSCredential(admin(t), XKSStoreInput{Prefix: "a/b"})
	wantCode(t, err, CodeAccessDenied)

	list, err := f.svc.ListXKSStores(ctx, ListXKSStoresInput{})
	if err != nil || len(list.Stores) != 4 || list.Stores[0].Prefix != "a/b" {
		t.Fatalf("ListXKSStores = %+v, %v", list, err)
	}
	if err := f.svc.DeleteXKSStore(ctx, XKSStoreInput{Prefix: "c"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.svc.DeleteXKSStore(ctx, XKSStoreInput{Prefix: "c"}), CodeNotFound)
}

func TestXKSAllowKey(t *testing.T) {
	f := newFixture(t, "")
	ctx := xksAdmin(t)
	if _, err := f.svc.CreateXKSStore(ctx, XKSStoreInput{Prefix: "p"}); err != nil {
		t.Fatal(err)
	}
	id := f.createKey(t, CreateKeyInput{})
	ecc := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY"})
	if err := f.svc.CreateAlias(admin(t), AliasInput{AliasName: "alias/foo", TargetKeyId: id}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ext string
		usage     []string
		code      Code
	}{
		{"by ID", id, []string{"ENCRYPT", "DECRYPT"}, ""},
		{"by alias", "foo", []string{"decrypt"}, ""},
		{"no usage", id, nil, ""},
		{"unknown key", "11111111-2222-3333-4444-555555555555", nil, CodeNotFound},
		{"unknown alias", "bar", nil, CodeNotFound},
		{"bad usage", id, []string{"SIGN"}, CodeValidation},
		{"bad ID characters", "a/b", nil, CodeValidation},
		{"signing key", ecc, nil, CodeValidation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.svc.AllowXKSKey(ctx, AllowXKSKeyInput{Prefix: "p", ExternalKeyID: tc.ext, Usage: tc.usage})
			if tc.code == "" && err != nil {
				t.Fatal(err)
			}
			if tc.code != "" {
				wantCode(t, err, tc.code)
			}
		})
	}
	list, _ := f.svc.ListXKSStores(ctx, ListXKSStoresInput{})
	keys := list.Stores[0].Keys
	if len(keys) != 2 || keys[0].ExternalKeyID != id || len(keys[0].Usage) != 0 || keys[1].ExternalKeyID != "foo" ||
		len(keys[1].Usage) != 1 || keys[1].Usage[0] != "DECRYPT" {
		t.Fatalf("allow-list %+v", keys)
	}
	if err := f.svc.DenyXKSKey(ctx, XKSKeyInput{Prefix: "p", ExternalKeyID: "foo"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.svc.DenyXKSKey(ctx, XKSKeyInput{Prefix: "p", ExternalKeyID: "foo"}), CodeNotFound)
}

func TestXKSCredentials(t *testing.T) {
	f := newFixture(t, "")
	ctx := xksAdmin(t)
	if _, err := f.svc.CreateXKSStore(ctx, XKSStoreInput{Prefix: "p"}); err != nil {
		t.Fatal(err)
	}
	var made []XKSProxyCredential
	for range MaxXKSCredentials {
		c, err := f.svc.AddXKSCredential(ctx, XKSStoreInput{Prefix: "p"})
		if err != nil {
			t.Fatal(err)
		}
		id, secret := c.Credential.AccessKeyID, c.Credential.RawSecretAccessKey
		if c.URIPath != "/p/kms/xks/v1" || len(id) != 26 || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" || len(secret) != 43 {
			t.Fatalf("credential %+v", c)
		}
		made = append(made, c)
	}
	_, err := f.svc.AddXKSCredential(ctx, XKSStoreInput{Prefix: "p"})
	wantCode(t, err, CodeLimitExceeded)
	for _, c := range made {
		got, err := f.svc.XKSCredentials(t.Context(), "p", c.Credential.AccessKeyID)
		if err != nil || got.Secret != c.Credential.RawSecretAccessKey {
			t.Fatalf("XKSCredentials = %+v, %v", got, err)
		}
	}
	if _, err := f.svc.XKSCredentials(t.Context(), "q", made[0].Credential.AccessKeyID); !errors.Is(err, ErrNoXKSStore) {
		t.Fatalf("another prefix: %v", err)
	}
	if got, err := f.svc.XKSCredentialsAnywhere(t.Context(), made[1].Credential.AccessKeyID); err != nil ||
		got.Secret != made[1].Credential.RawSecretAccessKey || got.Name != "xks/p" {
		t.Fatalf("XKSCredentialsAnywhere = %+v, %v; want store p's credential", got, err)
	}
	if _, err := f.svc.XKSCredentialsAnywhere(t.Context(), strings.Repeat("A", 26)); !errors.Is(err, ErrUnknownPrincipal) {
		t.Fatalf("XKSCredentialsAnywhere of an ID no store has: %v", err)
	}
	if err := f.svc.RemoveXKSCredential(ctx, XKSCredentialInput{Prefix: "p", AccessKeyID: made[0].Credential.AccessKeyID}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.XKSCredentials(t.Context(), "p", made[0].Credential.AccessKeyID); !errors.Is(err, ErrUnknownPrincipal) {
		t.Fatalf("a removed credential: %v", err)
	}
	// Each record of an added or removed credential names it beside the
	// store: a trail that named only the store could not tell which
	// credential was made or revoked.
	var named []string
	for _, r := range f.auditOf(t, policy.ActionUpdateXksStore) {
		if r["outcome"] == "allowed" && r["subject"] == "p" {
			named = append(named, fmt.Sprint(r["credential"]))
		}
	}
	want := []string{}
	for _, c := range made {
		want = append(want, c.Credential.AccessKeyID)
	}
	want = append(want, made[0].Credential.AccessKeyID)
	if !slices.Equal(named, want) {
		t.Errorf("credentials named by the allowed UpdateXksStore records: %q, want %q (each added, then the removed one)", named, want)
	}
	for _, c := range made {
		for _, out := range []string{f.audit.String(), f.logs.String()} {
			if strings.Contains(out, c.Credential.RawSecretAccessKey) {
				t.Fatal("a credential secret reached the audit trail or the log")
			}
		}
	}
}

// xksFixture is a store "p" allowing one key by ID and one by alias.
type xksFixture struct {
	*fixture
	id, other string
}

func newXKSFixture(t *testing.T, change ...func(*Config)) xksFixture {
	f := newFixture(t, "", change...)
	ctx := xksAdmin(t)
	x := xksFixture{fixture: f, id: f.createKey(t, CreateKeyInput{}), other: f.createKey(t, CreateKeyInput{})}
	if _, err := f.svc.CreateXKSStore(ctx, XKSStoreInput{Prefix: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.CreateAlias(admin(t), AliasInput{AliasName: "alias/app", TargetKeyId: x.id}); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{x.id, "app"} {
		if err := f.svc.AllowXKSKey(ctx, AllowXKSKeyInput{Prefix: "p", ExternalKeyID: ext, Usage: []string{"ENCRYPT", "DECRYPT"}}); err != nil {
			t.Fatal(err)
		}
	}
	return x
}

func TestXKSEncryptDecrypt(t *testing.T) {
	x := newXKSFixture(t)
	ctx := xksCaller(t, "XKSCRED")
	plain, aad := []byte("thirty-two bytes of data key!!!!"), []byte("project=nile")
	req := XKSRequest{Prefix: "p", ExternalKeyID: x.id, Metadata: map[string]string{"kmsRequestId": "k-1", "kmsOperation": "Encrypt"}}
	out, err := x.svc.XKSEncrypt(ctx, req, XKSEncryptInput{Plaintext: plain, AAD: aad, CDIV: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.IV) != 12 || len(out.Tag) != 16 || len(out.Ciphertext) != len(plain) || len(out.Metadata) > 20 {
		t.Fatalf("encrypt output sizes %d %d %d %d", len(out.IV), len(out.Tag), len(out.Ciphertext), len(out.Metadata))
	}
	want := sha256.Sum256(bytes.Join([][]byte{aad, out.Metadata, out.IV, out.Ciphertext, out.Tag}, nil))
	if !bytes.Equal(out.CDIV, want[:]) {
		t.Fatalf("CDIV %x, want %x", out.CDIV, want)
	}
	dec := XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: out.Metadata, IV: out.IV, Tag: out.Tag, AAD: aad}
	got, err := x.svc.XKSDecrypt(ctx, req, dec)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("XKSDecrypt = %q, %v", got, err)
	}
	// The alias names the same key: its ciphertexts open through either.
	if got, err := x.svc.XKSDecrypt(ctx, XKSRequest{Prefix: "p", ExternalKeyID: "app"}, dec); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("through the alias: %q, %v", got, err)
	}

	// The AAD layout: metadata passed off as AAD (and none as metadata)
	// does not open, nor does any change of one byte.
	noAAD, err := x.svc.XKSEncrypt(ctx, req, XKSEncryptInput{Plaintext: plain})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte) []byte { c := bytes.Clone(b); c[len(c)-1] ^= 1; return c }
	for _, tc := range []struct {
		name string
		in   XKSDecryptInput
		code Code
	}{
		{"metadata as AAD", XKSDecryptInput{Ciphertext: noAAD.Ciphertext, IV: noAAD.IV, Tag: noAAD.Tag, AAD: noAAD.Metadata}, CodeInvalidCipher},
		{"wrong AAD", XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: out.Metadata, IV: out.IV, Tag: out.Tag, AAD: flip(aad)}, CodeInvalidCipher},
		{"no AAD", XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: out.Metadata, IV: out.IV, Tag: out.Tag}, CodeInvalidCipher},
		{"ciphertext", XKSDecryptInput{Ciphertext: flip(out.Ciphertext), Metadata: out.Metadata, IV: out.IV, Tag: out.Tag, AAD: aad}, CodeInvalidCipher},
		{"tag", XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: out.Metadata, IV: out.IV, Tag: flip(out.Tag), AAD: aad}, CodeInvalidCipher},
		{"IV", XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: out.Metadata, IV: flip(out.IV), Tag: out.Tag, AAD: aad}, CodeInvalidCipher},
		{"16-byte IV", XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: out.Metadata, IV: make([]byte, 16), Tag: out.Tag, AAD: aad}, CodeInvalidCipher},
		{"version", XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: flip(out.Metadata), IV: out.IV, Tag: out.Tag, AAD: aad}, CodeInvalidCipher},
		{"empty", XKSDecryptInput{Metadata: out.Metadata, IV: out.IV, Tag: out.Tag}, CodeValidation},
		{"oversize", XKSDecryptInput{Ciphertext: make([]byte, XKSMaxPlaintext+1), Metadata: out.Metadata, IV: out.IV, Tag: out.Tag}, CodeUnsupported},
		{"oversize AAD", XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: out.Metadata, IV: out.IV, Tag: out.Tag, AAD: make([]byte, XKSMaxAAD+1)}, CodeUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := x.svc.XKSDecrypt(ctx, req, tc.in)
			wantCode(t, err, tc.code)
		})
	}
	// The spec's sizes: 4300 bytes of plaintext, 8192 of AAD.
	big, err := x.svc.XKSEncrypt(ctx, req, XKSEncryptInput{Plaintext: make([]byte, 4300), AAD: make([]byte, 8192)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.svc.XKSDecrypt(ctx, req, XKSDecryptInput{Ciphertext: big.Ciphertext, Metadata: big.Metadata, IV: big.IV, Tag: big.Tag, AAD: make([]byte, 8192)}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(x.audit.String(), string(plain)) {
		t.Fatal("a plaintext reached the audit trail")
	}
	if !strings.Contains(x.audit.String(), `"kmsRequestId":"k-1"`) {
		t.Fatalf("no requestMetadata in the audit trail:\n%s", x.audit)
	}
}

func TestXKSKeyStatesAndRotation(t *testing.T) {
	x := newXKSFixture(t)
	ctx := xksCaller(t, "XKSCRED")
	req := XKSRequest{Prefix: "p", ExternalKeyID: x.id}
	out, err := x.svc.XKSEncrypt(ctx, req, XKSEncryptInput{Plaintext: []byte("v1")})
	if err != nil {
		t.Fatal(err)
	}
	dec := XKSDecryptInput{Ciphertext: out.Ciphertext, Metadata: out.Metadata, IV: out.IV, Tag: out.Tag}
	if _, err := x.svc.RotateKeyOnDemand(admin(t), KeyIDInput{KeyId: x.id}); err != nil {
		t.Fatal(err)
	}
	if got, err := x.svc.XKSDecrypt(ctx, req, dec); err != nil || string(got) != "v1" {
		t.Fatalf("old ciphertext after rotation: %q, %v", got, err)
	}
	out2, err := x.svc.XKSEncrypt(ctx, req, XKSEncryptInput{Plaintext: []byte("v2")})
	if err != nil || bytes.Equal(out2.Metadata, out.Metadata) {
		t.Fatalf("after rotation: metadata %x, was %x, %v", out2.Metadata, out.Metadata, err)
	}

	md, err := x.svc.XKSGetKeyMetadata(ctx, req)
	if err != nil || md.KeySpec != "AES_256" || md.KeyStatus != "ENABLED" || len(md.KeyUsage) != 2 {
		t.Fatalf("metadata %+v, %v", md, err)
	}
	if err := x.svc.DisableKey(admin(t), KeyIDInput{KeyId: x.id}); err != nil {
		t.Fatal(err)
	}
	if md, err := x.svc.XKSGetKeyMetadata(ctx, req); err != nil || md.KeyStatus != "DISABLED" {
		t.Fatalf("metadata of a disabled key %+v, %v", md, err)
	}
	_, err = x.svc.XKSDecrypt(ctx, req, dec)
	wantCode(t, err, CodeInvalidState)

	// Keys the store does not allow, or not for this use, are refused.
	_, err = x.svc.XKSGetKeyMetadata(ctx, XKSRequest{Prefix: "p", ExternalKeyID: x.other})
	wantCode(t, err, CodeNotFound)
	if err := x.svc.AllowXKSKey(xksAdmin(t), AllowXKSKeyInput{Prefix: "p", ExternalKeyID: x.other, Usage: []string{"DECRYPT"}}); err != nil {
		t.Fatal(err)
	}
	_, err = x.svc.XKSEncrypt(ctx, XKSRequest{Prefix: "p", ExternalKeyID: x.other}, XKSEncryptInput{Plaintext: []byte("x")})
	wantCode(t, err, CodeInvalidKeyUsage)
	// No caller, no answer.
	_, err = x.svc.XKSGetKeyMetadata(t.Context(), req)
	wantCode(t, err, CodeAccessDenied)
}

// sealCounter counts the token's seals under the internal key.
type sealCounter struct {
	HSM
	seals atomic.Int32
}

func (c *sealCounter) Seal(ctx context.Context, id hsm.ObjectID, iv, aad, plaintext []byte) ([]byte, error) {
	c.seals.Add(1)
	return c.HSM.Seal(ctx, id, iv, aad, plaintext)
}

func TestXKSHealthCached(t *testing.T) {
	var counter *sealCounter
	f := newFixture(t, "", func(c *Config) { counter = &sealCounter{HSM: c.HSM}; c.HSM = counter })
	ctx := xksCaller(t, "XKSCRED")
	h, err := f.svc.XKSHealth(ctx, XKSRequest{Prefix: "p"})
	if err != nil || h.Status != "ACTIVE" || h.ID == "" || h.Model == "" {
		t.Fatalf("XKSHealth = %+v, %v", h, err)
	}
	first := counter.seals.Load()
	if first == 0 {
		t.Fatal("the health check made no round trip on the token")
	}
	f.clock.Advance(5 * time.Second)
	if _, err := f.svc.XKSHealth(ctx, XKSRequest{Prefix: "p"}); err != nil || counter.seals.Load() != first {
		t.Fatalf("a check 5 s later sealed again (%d seals), %v", counter.seals.Load()-first, err)
	}
	f.clock.Advance(6 * time.Second)
	if _, err := f.svc.XKSHealth(ctx, XKSRequest{Prefix: "p"}); err != nil || counter.seals.Load() != first+1 {
		t.Fatalf("a check 11 s later made %d seals, want 1, %v", counter.seals.Load()-first, err)
	}
}

// TestXKSSecondaryAuthorisation applies a store's policy to AWS KMS's
// requestMetadata: the kmsOperation as the action, the principal ARN and
// via:<service> as the resources; the health check is never restricted.
func TestXKSSecondaryAuthorisation(t *testing.T) {
	x := newXKSFixture(t)
	ctx := xksCaller(t, "XKSCRED")
	err := x.svc.SetXKSPolicy(xksAdmin(t), XKSPolicyInput{Prefix: "p", Statements: []policy.Statement{
		{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"arn:aws:iam::111122223333:*"}},
		{Effect: "Deny", Actions: []string{"kms:Decrypt"}, Resources: []string{"via:ebs"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	md := func(op, principal, via string) map[string]string {
		m := map[string]string{"kmsOperation": op, "awsPrincipalArn": principal, "kmsRequestId": "r"}
		if via != "" {
			m["kmsViaService"] = via
		}
		return m
	}
	alice, mallory := "arn:aws:iam::111122223333:user/alice", "arn:aws:iam::444455556666:user/mallory"
	enc, err := x.svc.XKSEncrypt(ctx, XKSRequest{Prefix: "p", ExternalKeyID: x.id, Metadata: md("Encrypt", alice, "")}, XKSEncryptInput{Plaintext: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	dec := XKSDecryptInput{Ciphertext: enc.Ciphertext, Metadata: enc.Metadata, IV: enc.IV, Tag: enc.Tag}
	for _, tc := range []struct {
		name string
		md   map[string]string
		code Code
	}{
		{"allowed principal", md("Decrypt", alice, ""), ""},
		{"allowed principal via s3", md("Decrypt", alice, "s3"), ""},
		{"other account", md("Decrypt", mallory, ""), CodeAccessDenied},
		{"denied service", md("Decrypt", alice, "ebs"), CodeAccessDenied},
		{"unknown operation", md("BulkDecrypt", alice, ""), ""}, // kms:* matches it
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := x.svc.XKSDecrypt(ctx, XKSRequest{Prefix: "p", ExternalKeyID: x.id, Metadata: tc.md}, dec)
			if tc.code == "" && err != nil {
				t.Fatal(err)
			}
			if tc.code != "" {
				wantCode(t, err, tc.code)
			}
		})
	}
	if _, err := x.svc.XKSHealth(ctx, XKSRequest{Prefix: "p", Metadata: map[string]string{"kmsOperation": "KmsHealthCheck"}}); err != nil {
		t.Fatalf("health under a policy: %v", err)
	}
	for _, bad := range [][]policy.Statement{
		{{Effect: "Allow", Actions: []string{"hsmkms:*"}, Resources: []string{"*"}}},
		{{Effect: "Maybe", Actions: []string{"kms:*"}, Resources: []string{"*"}}},
	} {
		wantCode(t, x.svc.SetXKSPolicy(xksAdmin(t), XKSPolicyInput{Prefix: "p", Statements: bad}), CodeValidation)
	}
	if err := x.svc.SetXKSPolicy(xksAdmin(t), XKSPolicyInput{Prefix: "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.svc.XKSDecrypt(ctx, XKSRequest{Prefix: "p", ExternalKeyID: x.id, Metadata: md("Decrypt", mallory, "ebs")}, dec); err != nil {
		t.Fatalf("after clearing the policy: %v", err)
	}
}

// missingOnce is a token that reports key material missing on the first
// seal after each reindex is armed, as a SoftHSM2 replica that indexed
// another's new object file too early does until re-initialised.
type missingOnce struct {
	HSM
	missing   atomic.Bool
	reindexes atomic.Int32
	stuck     bool // missing even after a reindex
}

func (m *missingOnce) Seal(ctx context.Context, id hsm.ObjectID, iv, aad, plaintext []byte) ([]byte, error) {
	if m.missing.Load() {
		return nil, fmt.Errorf("seal: %w", hsm.ErrKeyNotFound)
	}
	return m.HSM.Seal(ctx, id, iv, aad, plaintext)
}

func (m *missingOnce) HasKey(ctx context.Context, id hsm.ObjectID) (bool, error) {
	if m.missing.Load() {
		return false, nil
	}
	return m.HSM.HasKey(ctx, id)
}

func (m *missingOnce) DestroyKey(ctx context.Context, id hsm.ObjectID) error {
	if m.missing.Load() {
		return fmt.Errorf("destroy key: %w", hsm.ErrKeyNotFound)
	}
	return m.HSM.DestroyKey(ctx, id)
}

func (m *missingOnce) Reindex(context.Context) error {
	m.reindexes.Add(1)
	if !m.stuck {
		m.missing.Store(false)
	}
	return nil
}

// TestReindexOnMissingKey proves that a key version the token reports
// missing is tried once more after the token re-read its objects: the
// operation succeeds when the re-reading finds it, and fails as missing
// key material, after one re-reading, when it does not.
func TestReindexOnMissingKey(t *testing.T) {
	for _, stuck := range []bool{false, true} {
		t.Run(fmt.Sprintf("stuck=%v", stuck), func(t *testing.T) {
			var m *missingOnce
			f := newFixture(t, "", func(c *Config) { m = &missingOnce{HSM: c.HSM, stuck: stuck}; c.HSM = m })
			id := f.createKey(t, CreateKeyInput{})
			m.missing.Store(true)
			_, err := f.svc.Encrypt(admin(t), EncryptInput{KeyId: id, Plaintext: []byte("x")})
			if m.reindexes.Load() != 1 {
				t.Fatalf("%d reindexes, want 1", m.reindexes.Load())
			}
			if !stuck {
				if err != nil {
					t.Fatalf("Encrypt after a reindex: %v", err)
				}
				return
			}
			wantCode(t, err, CodeInternal)
			if !strings.Contains(err.Error(), "missing from the HSM") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestReindexBeforeActingOnAbsence: HasKey and DestroyKey that find no
// object ask again after the token re-read its objects, since what is
// done next (make an object under the ID, or take the deletion as done)
// is wrong if the object exists (found by review: only crypto operations
// were asked again).
func TestReindexBeforeActingOnAbsence(t *testing.T) {
	var m *missingOnce
	f := newFixture(t, "", func(c *Config) { m = &missingOnce{HSM: c.HSM}; c.HSM = m })
	id := f.createKey(t, CreateKeyInput{})
	obj := objectOf(t, f.svc, id, 1)
	m.missing.Store(true)
	if has, err := f.svc.hsm.HasKey(t.Context(), obj); err != nil || !has {
		t.Errorf("HasKey of a key a stale view misses = %v, %v; want true after a re-read", has, err)
	}
	m.missing.Store(true)
	if err := f.svc.hsm.DestroyKey(t.Context(), obj); err != nil {
		t.Errorf("DestroyKey: %v", err)
	}
	if has, _ := f.tok.HasKey(t.Context(), obj); has {
		t.Error("DestroyKey with a stale view left the object on the token")
	}
	if n := m.reindexes.Load(); n != 2 {
		t.Errorf("%d re-reads, want 2", n)
	}
}

// TestXKSAllowKeyNeedsTheKeysUse: a caller may let an external key store
// use a key only for what it may do with the key itself, so that a Deny
// on the key is not escaped by allowing it in a store and adding a
// credential (found by review).
func TestXKSAllowKeyNeedsTheKeysUse(t *testing.T) {
	f := newFixture(t, "")
	if _, err := f.svc.CreateXKSStore(xksAdmin(t), XKSStoreInput{Prefix: "p"}); err != nil {
		t.Fatal(err)
	}
	id := f.createKey(t, CreateKeyInput{})
	storeAdmin := policy.Statement{Effect: "Allow", Actions: []string{"hsmkms:UpdateXksStore"}, Resources: []string{"*"}}
	for _, tc := range []struct {
		name  string
		stmts []policy.Statement
		usage []string
		code  Code
	}{
		{"denied the key", []policy.Statement{storeAdmin, {Effect: "Deny", Actions: []string{"kms:*"}, Resources: []string{"*"}}},
			[]string{"ENCRYPT", "DECRYPT"}, CodeAccessDenied},
		{"may encrypt only, asks for decrypt", []policy.Statement{storeAdmin, {Effect: "Allow", Actions: []string{"kms:Encrypt"}, Resources: []string{"*"}}},
			[]string{"DECRYPT"}, CodeAccessDenied},
		{"may encrypt, asks for encrypt", []policy.Statement{storeAdmin, {Effect: "Allow", Actions: []string{"kms:Encrypt"}, Resources: []string{"*"}}},
			[]string{"ENCRYPT"}, ""},
		{"no usage needs no right on the key", []policy.Statement{storeAdmin}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.svc.AllowXKSKey(as(t, "AKIASTOREADMIN", tc.stmts...), AllowXKSKeyInput{Prefix: "p", ExternalKeyID: id, Usage: tc.usage})
			if tc.code == "" && err != nil {
				t.Fatal(err)
			}
			if tc.code != "" {
				wantCode(t, err, tc.code)
			}
		})
	}
	list, _ := f.svc.ListXKSStores(xksAdmin(t), ListXKSStoresInput{})
	if keys := list.Stores[0].Keys; len(keys) != 1 || len(keys[0].Usage) != 0 {
		t.Fatalf("allow-list %+v; want the key with no usage (the last allowed change)", keys)
	}
}

// TestXKSAliasPointsOnlyAtKeysTheCallerMayUse: an alias an external key
// store allows is pointed at a key (UpdateAlias, or CreateAlias after
// DeleteAlias) only by a caller whose policy allows that key's use for the
// store's usages (found by review: allowed through an alias at a key of
// its own, a caller denied another key re-pointed the alias at it and used
// it through the store). The owner of both keys still re-points it.
func TestXKSAliasPointsOnlyAtKeysTheCallerMayUse(t *testing.T) {
	f := newFixture(t, "")
	if _, err := f.svc.CreateXKSStore(xksAdmin(t), XKSStoreInput{Prefix: "p"}); err != nil {
		t.Fatal(err)
	}
	mine, victim := f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{})
	caller := as(t, "AKIASTOREADMIN",
		policy.Statement{Effect: "Allow", Actions: []string{"kms:*", "hsmkms:UpdateXksStore"}, Resources: []string{"*"}},
		policy.Statement{Effect: "Deny", Actions: []string{"kms:Encrypt", "kms:Decrypt"}, Resources: []string{victim}})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(caller, AliasInput{AliasName: "alias/x", TargetKeyId: mine}))
	ksMust(t, "AllowXKSKey", f.svc.AllowXKSKey(caller, AllowXKSKeyInput{Prefix: "p", ExternalKeyID: "x", Usage: []string{"ENCRYPT", "DECRYPT"}}))
	wantCode(t, f.svc.UpdateAlias(caller, AliasInput{AliasName: "alias/x", TargetKeyId: victim}), CodeAccessDenied)
	ksMust(t, "DeleteAlias", f.svc.DeleteAlias(caller, DeleteAliasInput{AliasName: "alias/x"}))
	wantCode(t, f.svc.CreateAlias(caller, AliasInput{AliasName: "alias/x", TargetKeyId: victim}), CodeAccessDenied)
	if k := ksStoreKey(t, f, victim); len(k.Aliases) != 0 {
		t.Fatalf("the denied key has aliases %v", k.Aliases)
	}
	// An alias no store allows is pointed anywhere the alias rules allow.
	ksMust(t, "CreateAlias of another alias", f.svc.CreateAlias(caller, AliasInput{AliasName: "alias/y", TargetKeyId: victim}))
	ksMust(t, "CreateAlias by an administrator", f.svc.CreateAlias(admin(t), AliasInput{AliasName: "alias/x", TargetKeyId: mine}))
	ksMust(t, "UpdateAlias by an administrator", f.svc.UpdateAlias(admin(t), AliasInput{AliasName: "alias/x", TargetKeyId: victim}))
}

// TestXKSAllowKeyNotByAGrant: AllowXKSKey's right on the key is the
// caller's policy's: a grant, which may hold the caller to an encryption
// context (the store then uses the key with any) and may be revoked (the
// allowance would outlive it), does not stand in for it (found by review).
func TestXKSAllowKeyNotByAGrant(t *testing.T) {
	f := newFixture(t, "")
	if _, err := f.svc.CreateXKSStore(xksAdmin(t), XKSStoreInput{Prefix: "p"}); err != nil {
		t.Fatal(err)
	}
	id := f.createKey(t, CreateKeyInput{})
	out, err := f.svc.CreatePrincipal(systemContext(t.Context()), CreatePrincipalInput{Name: "grantee"})
	ksMust(t, "CreatePrincipal", err)
	_, err = f.svc.CreateGrant(admin(t), CreateGrantInput{KeyId: id, GranteePrincipal: out.Arn, Operations: []string{"Encrypt", "Decrypt"},
		Constraints: &GrantConstraints{EncryptionContextEquals: map[string]string{}}})
	ksMust(t, "CreateGrant", err)
	storeAdmin := policy.Statement{Effect: "Allow", Actions: []string{"hsmkms:UpdateXksStore"}, Resources: []string{"*"}}
	grantee := as(t, out.AccessKeyId, storeAdmin)
	_, err = f.svc.Encrypt(grantee, EncryptInput{KeyId: id, Plaintext: []byte("p")})
	ksMust(t, "Encrypt through the grant", err)
	wantCode(t, f.svc.AllowXKSKey(grantee, AllowXKSKeyInput{Prefix: "p", ExternalKeyID: id, Usage: []string{"DECRYPT"}}), CodeAccessDenied)
}
