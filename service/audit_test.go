package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/hsmkms/hsmkms/softhsm"
	"github.com/miekg/pkcs11"
)

// The principals of the audit tests.
const (
	auditAdmin  = "AKIAAUDITADMIN"
	auditNobody = "AKIAAUDITNOBODY"
	auditSource = "192.0.2.7:50123"
)

var allowAll = policy.Statement{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"*"}}

// auditLines decodes every line of an audit trail or log as a JSON object.
func auditLines(t testing.TB, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(out) {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", line, err)
		}
		flattenAudit(m)
		recs = append(recs, m)
	}
	return recs
}

// countLines counts the audit records written so far.
func countLines(b *syncBuffer) int { return strings.Count(b.String(), "\n") }

// auditCase is one operation of TestAuditOneRecordPerOperation and the
// record it must leave.
type auditCase struct {
	name    string
	who     string // auditAdmin, auditNobody, or "" for a context without a caller
	call    func(ctx context.Context) error
	action  string
	outcome string
	errType Code   // the AWS error type, for denied and failed operations
	keyID   string // "" when the record names no key; newKeyID for the key CreateKey made
	version uint32
	alias   string
	ec      map[string]string
}

const newKeyID = "<the key CreateKey made>"

// serviceActions are the actions of every public Service operation.
var serviceActions = []string{
	"kms:CreateKey", "kms:DescribeKey", "kms:ListKeys", "kms:EnableKey", "kms:DisableKey",
	"kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand",
	"kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:GetKeyRotationStatus",
	"kms:ListKeyRotations", "kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias",
	"kms:ListAliases", "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt", "kms:GenerateDataKey",
	"kms:GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyPair", "kms:GenerateDataKeyPairWithoutPlaintext",
	"kms:GenerateRandom", "kms:Sign", "kms:Verify",
	"kms:GenerateMac", "kms:VerifyMac", "kms:GetPublicKey",
	"kms:GetParametersForImport", "kms:ImportKeyMaterial", "kms:DeleteImportedKeyMaterial",
	"kms:CreateGrant", "kms:ListGrants", "kms:ListRetirableGrants", "kms:RetireGrant", "kms:RevokeGrant",
	"kms:UpdateKeyDescription", "kms:TagResource", "kms:UntagResource", "kms:ListResourceTags",
	"kms:GetKeyPolicy", "kms:ListKeyPolicies",
}

// kms:PutKeyPolicy is audited too, but is never allowed to succeed: its
// cases are denied and failed only.

// TestAuditOneRecordPerOperation proves that every public operation writes
// exactly one audit record whether it is allowed, denied (a principal with
// no statements, or no principal at all) or failed, and that the record
// names the action, principal, source, request ID, key and version, the
// alias the caller used, the encryption context, the outcome and the AWS
// error type.
func TestAuditOneRecordPerOperation(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	sym := f.createKey(t, CreateKeyInput{Description: "sym"})
	kw := f.createKey(t, CreateKeyInput{HsmkmsMechanism: "aes-kw"})
	dis := f.createKey(t, CreateKeyInput{})
	pend := f.createKey(t, CreateKeyInput{})
	ecc := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
	mac := f.createKey(t, CreateKeyInput{KeySpec: "HMAC_384"})
	rsaKey := f.createKey(t, CreateKeyInput{KeySpec: "RSA_2048", KeyUsage: "ENCRYPT_DECRYPT"})
	life := f.createKey(t, CreateKeyInput{})
	rot := f.createKey(t, CreateKeyInput{})
	must(f.svc.DisableKey(ctx, KeyIDInput{KeyId: dis}))
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: pend, PendingWindowInDays: 7})
	must(err)
	for name, id := range map[string]string{"alias/audit-sym": sym, "alias/audit-kw": kw, "alias/audit-ecc": ecc} {
		must(f.svc.CreateAlias(ctx, AliasInput{AliasName: name, TargetKeyId: id}))
	}
	ec := map[string]string{"purpose": "audit-test", "tenant": "t-42"}
	ec2 := map[string]string{"purpose": "re-encrypted"}
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: sym, Plaintext: []byte("audited plaintext"), EncryptionContext: ec})
	must(err)
	blob := enc.CiphertextBlob
	msg, other := []byte("audited message"), []byte("another message")
	sig, err := f.svc.Sign(ctx, SignInput{KeyId: ecc, Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
	must(err)
	wrongSig, err := f.svc.Sign(ctx, SignInput{KeyId: ecc, Message: other, SigningAlgorithm: "ECDSA_SHA_256"})
	must(err)
	goodMac, err := f.svc.GenerateMac(ctx, GenerateMacInput{KeyId: mac, Message: msg, MacAlgorithm: "HMAC_SHA_384"})
	must(err)
	rsaCT, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: rsaKey, Plaintext: []byte("audited rsa"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	must(err)
	missing := uuid.NewString()
	var created string
	grantee, err := f.svc.CreatePrincipal(systemContext(t.Context()), CreatePrincipalInput{Name: "grantee"})
	must(err)
	newGrant := func() string {
		g, err := f.svc.CreateGrant(ctx, CreateGrantInput{KeyId: sym, GranteePrincipal: grantee.Arn, RetiringPrincipal: grantee.Arn, Operations: []string{"Decrypt"}})
		must(err)
		return g.GrantId
	}
	revokeID, retireID := newGrant(), newGrant()
	ext, err := f.svc.CreateKey(ctx, CreateKeyInput{Origin: "EXTERNAL"})
	must(err)
	byok := ext.KeyMetadata.KeyId
	var importToken []byte
	var wrapped []byte

	s := f.svc
	A, N := auditAdmin, auditNobody
	al, dn, fl := audit.Allowed, audit.Denied, audit.Failed
	cases := []auditCase{
		{name: "CreateKey", who: A, action: "kms:CreateKey", outcome: al, keyID: newKeyID, version: 1,
			call: func(c context.Context) error {
				out, err := s.CreateKey(c, CreateKeyInput{Description: "made by the audit test"})
				created = out.KeyMetadata.KeyId
				return err
			}},
		{name: "CreateKey", who: N, action: "kms:CreateKey", outcome: dn, errType: CodeAccessDenied,
			call: func(c context.Context) error { _, err := s.CreateKey(c, CreateKeyInput{}); return err }},
		{name: "CreateKey bad spec", who: A, action: "kms:CreateKey", outcome: fl, errType: CodeValidation,
			call: func(c context.Context) error {
				_, err := s.CreateKey(c, CreateKeyInput{KeySpec: "AES_512"})
				return err
			}},

		{name: "DescribeKey by alias", who: A, action: "kms:DescribeKey", outcome: al, keyID: sym, alias: "alias/audit-sym",
			call: func(c context.Context) error {
				_, err := s.DescribeKey(c, KeyIDInput{KeyId: "alias/audit-sym"})
				return err
			}},
		{name: "DescribeKey by ARN", who: N, action: "kms:DescribeKey", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.DescribeKey(c, KeyIDInput{KeyId: s.keyARN(sym)})
				return err
			}},
		{name: "DescribeKey no caller", who: "", action: "kms:DescribeKey", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error { _, err := s.DescribeKey(c, KeyIDInput{KeyId: sym}); return err }},
		{name: "DescribeKey missing", who: A, action: "kms:DescribeKey", outcome: fl, errType: CodeNotFound,
			call: func(c context.Context) error { _, err := s.DescribeKey(c, KeyIDInput{KeyId: missing}); return err }},

		{name: "ListKeys", who: A, action: "kms:ListKeys", outcome: al,
			call: func(c context.Context) error { _, err := s.ListKeys(c, ListInput{}); return err }},
		{name: "ListKeys", who: N, action: "kms:ListKeys", outcome: dn, errType: CodeAccessDenied,
			call: func(c context.Context) error { _, err := s.ListKeys(c, ListInput{}); return err }},
		{name: "ListKeys bad limit", who: A, action: "kms:ListKeys", outcome: fl, errType: CodeValidation,
			call: func(c context.Context) error { _, err := s.ListKeys(c, ListInput{Limit: 1001}); return err }},

		{name: "DisableKey", who: A, action: "kms:DisableKey", outcome: al, keyID: life,
			call: func(c context.Context) error { return s.DisableKey(c, KeyIDInput{KeyId: life}) }},
		{name: "DisableKey", who: N, action: "kms:DisableKey", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error { return s.DisableKey(c, KeyIDInput{KeyId: sym}) }},
		{name: "DisableKey pending deletion", who: A, action: "kms:DisableKey", outcome: fl, errType: CodeInvalidState, keyID: pend,
			call: func(c context.Context) error { return s.DisableKey(c, KeyIDInput{KeyId: pend}) }},

		{name: "EnableKey", who: A, action: "kms:EnableKey", outcome: al, keyID: life,
			call: func(c context.Context) error { return s.EnableKey(c, KeyIDInput{KeyId: life}) }},
		{name: "EnableKey", who: N, action: "kms:EnableKey", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error { return s.EnableKey(c, KeyIDInput{KeyId: sym}) }},
		{name: "EnableKey pending deletion", who: A, action: "kms:EnableKey", outcome: fl, errType: CodeInvalidState, keyID: pend,
			call: func(c context.Context) error { return s.EnableKey(c, KeyIDInput{KeyId: pend}) }},

		{name: "ScheduleKeyDeletion", who: A, action: "kms:ScheduleKeyDeletion", outcome: al, keyID: life,
			call: func(c context.Context) error {
				_, err := s.ScheduleKeyDeletion(c, ScheduleKeyDeletionInput{KeyId: life, PendingWindowInDays: 7})
				return err
			}},
		{name: "ScheduleKeyDeletion", who: N, action: "kms:ScheduleKeyDeletion", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.ScheduleKeyDeletion(c, ScheduleKeyDeletionInput{KeyId: sym})
				return err
			}},
		{name: "ScheduleKeyDeletion twice", who: A, action: "kms:ScheduleKeyDeletion", outcome: fl, errType: CodeInvalidState, keyID: pend,
			call: func(c context.Context) error {
				_, err := s.ScheduleKeyDeletion(c, ScheduleKeyDeletionInput{KeyId: pend})
				return err
			}},

		{name: "CancelKeyDeletion", who: A, action: "kms:CancelKeyDeletion", outcome: al, keyID: life,
			call: func(c context.Context) error { _, err := s.CancelKeyDeletion(c, KeyIDInput{KeyId: life}); return err }},
		{name: "CancelKeyDeletion", who: N, action: "kms:CancelKeyDeletion", outcome: dn, errType: CodeAccessDenied, keyID: pend,
			call: func(c context.Context) error { _, err := s.CancelKeyDeletion(c, KeyIDInput{KeyId: pend}); return err }},
		{name: "CancelKeyDeletion not pending", who: A, action: "kms:CancelKeyDeletion", outcome: fl, errType: CodeInvalidState, keyID: sym,
			call: func(c context.Context) error { _, err := s.CancelKeyDeletion(c, KeyIDInput{KeyId: sym}); return err }},

		{name: "RotateKeyOnDemand", who: A, action: "kms:RotateKeyOnDemand", outcome: al, keyID: rot, version: 2,
			call: func(c context.Context) error { _, err := s.RotateKeyOnDemand(c, KeyIDInput{KeyId: rot}); return err }},
		{name: "RotateKeyOnDemand", who: N, action: "kms:RotateKeyOnDemand", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error { _, err := s.RotateKeyOnDemand(c, KeyIDInput{KeyId: sym}); return err }},
		{name: "RotateKeyOnDemand disabled", who: A, action: "kms:RotateKeyOnDemand", outcome: fl, errType: CodeDisabled, keyID: dis,
			call: func(c context.Context) error { _, err := s.RotateKeyOnDemand(c, KeyIDInput{KeyId: dis}); return err }},

		{name: "EnableKeyRotation", who: A, action: "kms:EnableKeyRotation", outcome: al, keyID: rot,
			call: func(c context.Context) error {
				return s.EnableKeyRotation(c, EnableKeyRotationInput{KeyId: rot, RotationPeriodInDays: 90})
			}},
		{name: "EnableKeyRotation", who: N, action: "kms:EnableKeyRotation", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error { return s.EnableKeyRotation(c, EnableKeyRotationInput{KeyId: sym}) }},
		{name: "EnableKeyRotation disabled", who: A, action: "kms:EnableKeyRotation", outcome: fl, errType: CodeDisabled, keyID: dis,
			call: func(c context.Context) error { return s.EnableKeyRotation(c, EnableKeyRotationInput{KeyId: dis}) }},

		{name: "GetKeyRotationStatus by alias", who: A, action: "kms:GetKeyRotationStatus", outcome: al, keyID: sym, alias: "alias/audit-sym",
			call: func(c context.Context) error {
				_, err := s.GetKeyRotationStatus(c, KeyIDInput{KeyId: "alias/audit-sym"})
				return err
			}},
		{name: "GetKeyRotationStatus by alias", who: N, action: "kms:GetKeyRotationStatus", outcome: dn, errType: CodeAccessDenied, keyID: sym, alias: "alias/audit-sym",
			call: func(c context.Context) error {
				_, err := s.GetKeyRotationStatus(c, KeyIDInput{KeyId: "alias/audit-sym"})
				return err
			}},
		{name: "GetKeyRotationStatus missing", who: A, action: "kms:GetKeyRotationStatus", outcome: fl, errType: CodeNotFound,
			call: func(c context.Context) error {
				_, err := s.GetKeyRotationStatus(c, KeyIDInput{KeyId: missing})
				return err
			}},

		{name: "DisableKeyRotation", who: A, action: "kms:DisableKeyRotation", outcome: al, keyID: rot,
			call: func(c context.Context) error { return s.DisableKeyRotation(c, KeyIDInput{KeyId: rot}) }},
		{name: "DisableKeyRotation", who: N, action: "kms:DisableKeyRotation", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error { return s.DisableKeyRotation(c, KeyIDInput{KeyId: sym}) }},
		{name: "DisableKeyRotation asymmetric", who: A, action: "kms:DisableKeyRotation", outcome: fl, errType: CodeUnsupported, keyID: ecc,
			call: func(c context.Context) error { return s.DisableKeyRotation(c, KeyIDInput{KeyId: ecc}) }},

		{name: "ListKeyRotations", who: A, action: "kms:ListKeyRotations", outcome: al, keyID: rot,
			call: func(c context.Context) error {
				_, err := s.ListKeyRotations(c, ListKeyRotationsInput{KeyId: rot})
				return err
			}},
		{name: "ListKeyRotations", who: N, action: "kms:ListKeyRotations", outcome: dn, errType: CodeAccessDenied, keyID: rot,
			call: func(c context.Context) error {
				_, err := s.ListKeyRotations(c, ListKeyRotationsInput{KeyId: rot})
				return err
			}},
		{name: "ListKeyRotations bad marker", who: A, action: "kms:ListKeyRotations", outcome: fl, errType: CodeInvalidMarker,
			call: func(c context.Context) error {
				_, err := s.ListKeyRotations(c, ListKeyRotationsInput{KeyId: rot, Marker: "x"})
				return err
			}},

		{name: "CreateAlias", who: A, action: "kms:CreateAlias", outcome: al, keyID: sym, alias: "alias/audit-new",
			call: func(c context.Context) error {
				return s.CreateAlias(c, AliasInput{AliasName: "alias/audit-new", TargetKeyId: sym})
			}},
		{name: "CreateAlias", who: N, action: "kms:CreateAlias", outcome: dn, errType: CodeAccessDenied, keyID: sym, alias: "alias/audit-denied",
			call: func(c context.Context) error {
				return s.CreateAlias(c, AliasInput{AliasName: "alias/audit-denied", TargetKeyId: sym})
			}},
		{name: "CreateAlias taken", who: A, action: "kms:CreateAlias", outcome: fl, errType: CodeAlreadyExists, keyID: sym, alias: "alias/audit-sym",
			call: func(c context.Context) error {
				return s.CreateAlias(c, AliasInput{AliasName: "alias/audit-sym", TargetKeyId: sym})
			}},

		{name: "UpdateAlias", who: A, action: "kms:UpdateAlias", outcome: al, keyID: kw, alias: "alias/audit-new",
			call: func(c context.Context) error {
				return s.UpdateAlias(c, AliasInput{AliasName: "alias/audit-new", TargetKeyId: kw})
			}},
		{name: "UpdateAlias", who: N, action: "kms:UpdateAlias", outcome: dn, errType: CodeAccessDenied, keyID: kw, alias: "alias/audit-new",
			call: func(c context.Context) error {
				return s.UpdateAlias(c, AliasInput{AliasName: "alias/audit-new", TargetKeyId: sym})
			}},
		{name: "UpdateAlias other spec", who: A, action: "kms:UpdateAlias", outcome: fl, errType: CodeValidation, keyID: ecc, alias: "alias/audit-new",
			call: func(c context.Context) error {
				return s.UpdateAlias(c, AliasInput{AliasName: "alias/audit-new", TargetKeyId: ecc})
			}},

		{name: "DeleteAlias", who: A, action: "kms:DeleteAlias", outcome: al, keyID: kw, alias: "alias/audit-new",
			call: func(c context.Context) error { return s.DeleteAlias(c, DeleteAliasInput{AliasName: "alias/audit-new"}) }},
		{name: "DeleteAlias", who: N, action: "kms:DeleteAlias", outcome: dn, errType: CodeAccessDenied, keyID: sym, alias: "alias/audit-sym",
			call: func(c context.Context) error { return s.DeleteAlias(c, DeleteAliasInput{AliasName: "alias/audit-sym"}) }},
		{name: "DeleteAlias missing", who: A, action: "kms:DeleteAlias", outcome: fl, errType: CodeNotFound,
			call: func(c context.Context) error {
				return s.DeleteAlias(c, DeleteAliasInput{AliasName: "alias/audit-gone"})
			}},

		{name: "ListAliases", who: A, action: "kms:ListAliases", outcome: al,
			call: func(c context.Context) error { _, err := s.ListAliases(c, ListAliasesInput{}); return err }},
		{name: "ListAliases of a key by alias", who: A, action: "kms:ListAliases", outcome: al, keyID: ecc, alias: "alias/audit-ecc",
			call: func(c context.Context) error {
				_, err := s.ListAliases(c, ListAliasesInput{KeyId: "alias/audit-ecc"})
				return err
			}},
		{name: "ListAliases", who: N, action: "kms:ListAliases", outcome: dn, errType: CodeAccessDenied,
			call: func(c context.Context) error { _, err := s.ListAliases(c, ListAliasesInput{}); return err }},
		{name: "ListAliases bad limit", who: A, action: "kms:ListAliases", outcome: fl, errType: CodeValidation,
			call: func(c context.Context) error { _, err := s.ListAliases(c, ListAliasesInput{Limit: -1}); return err }},

		{name: "Encrypt by alias", who: A, action: "kms:Encrypt", outcome: al, keyID: sym, version: 1, alias: "alias/audit-sym", ec: ec,
			call: func(c context.Context) error {
				_, err := s.Encrypt(c, EncryptInput{KeyId: "alias/audit-sym", Plaintext: []byte("p"), EncryptionContext: ec})
				return err
			}},
		{name: "Encrypt", who: N, action: "kms:Encrypt", outcome: dn, errType: CodeAccessDenied, keyID: sym, ec: ec,
			call: func(c context.Context) error {
				_, err := s.Encrypt(c, EncryptInput{KeyId: sym, Plaintext: []byte("p"), EncryptionContext: ec})
				return err
			}},
		{name: "Encrypt disabled", who: A, action: "kms:Encrypt", outcome: fl, errType: CodeDisabled, keyID: dis, ec: ec,
			call: func(c context.Context) error {
				_, err := s.Encrypt(c, EncryptInput{KeyId: dis, Plaintext: []byte("p"), EncryptionContext: ec})
				return err
			}},

		{name: "Decrypt", who: A, action: "kms:Decrypt", outcome: al, keyID: sym, version: 1, ec: ec,
			call: func(c context.Context) error {
				_, err := s.Decrypt(c, DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
				return err
			}},
		{name: "Decrypt naming the key by alias", who: A, action: "kms:Decrypt", outcome: al, keyID: sym, version: 1, alias: "alias/audit-sym", ec: ec,
			call: func(c context.Context) error {
				_, err := s.Decrypt(c, DecryptInput{CiphertextBlob: blob, KeyId: "alias/audit-sym", EncryptionContext: ec})
				return err
			}},
		{name: "Decrypt", who: N, action: "kms:Decrypt", outcome: dn, errType: CodeAccessDenied, keyID: sym, version: 1, ec: ec,
			call: func(c context.Context) error {
				_, err := s.Decrypt(c, DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
				return err
			}},
		{name: "Decrypt wrong context", who: A, action: "kms:Decrypt", outcome: fl, errType: CodeInvalidCipher, keyID: sym, version: 1, ec: ec2,
			call: func(c context.Context) error {
				_, err := s.Decrypt(c, DecryptInput{CiphertextBlob: blob, EncryptionContext: ec2})
				return err
			}},

		{name: "ReEncrypt from an alias", who: A, action: "kms:ReEncrypt", outcome: al, keyID: kw, version: 1, ec: ec2,
			call: func(c context.Context) error {
				_, err := s.ReEncrypt(c, ReEncryptInput{CiphertextBlob: blob, SourceKeyId: "alias/audit-sym",
					SourceEncryptionContext: ec, DestinationKeyId: kw, DestinationEncryptionContext: ec2})
				return err
			}},
		{name: "ReEncrypt to an alias", who: A, action: "kms:ReEncrypt", outcome: al, keyID: kw, version: 1, alias: "alias/audit-kw", ec: ec2,
			call: func(c context.Context) error {
				_, err := s.ReEncrypt(c, ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec,
					DestinationKeyId: "alias/audit-kw", DestinationEncryptionContext: ec2})
				return err
			}},
		{name: "ReEncrypt", who: N, action: "kms:ReEncrypt", outcome: dn, errType: CodeAccessDenied, keyID: sym, version: 1, ec: ec2,
			call: func(c context.Context) error {
				_, err := s.ReEncrypt(c, ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec,
					DestinationKeyId: kw, DestinationEncryptionContext: ec2})
				return err
			}},
		{name: "ReEncrypt to a disabled key", who: A, action: "kms:ReEncrypt", outcome: fl, errType: CodeDisabled, keyID: dis, ec: ec2,
			call: func(c context.Context) error {
				_, err := s.ReEncrypt(c, ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ec,
					DestinationKeyId: dis, DestinationEncryptionContext: ec2})
				return err
			}},

		{name: "GenerateDataKey", who: A, action: "kms:GenerateDataKey", outcome: al, keyID: sym, version: 1, ec: ec,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKey(c, GenerateDataKeyInput{KeyId: sym, KeySpec: "AES_256", EncryptionContext: ec})
				return err
			}},
		{name: "GenerateDataKey", who: N, action: "kms:GenerateDataKey", outcome: dn, errType: CodeAccessDenied, keyID: sym, ec: ec,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKey(c, GenerateDataKeyInput{KeyId: sym, KeySpec: "AES_256", EncryptionContext: ec})
				return err
			}},
		{name: "GenerateDataKey aes-kw with a context", who: A, action: "kms:GenerateDataKey", outcome: fl, errType: CodeValidation, keyID: kw, version: 1, ec: ec,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKey(c, GenerateDataKeyInput{KeyId: kw, KeySpec: "AES_256", EncryptionContext: ec})
				return err
			}},

		{name: "GenerateDataKeyWithoutPlaintext by alias", who: A, action: "kms:GenerateDataKeyWithoutPlaintext", outcome: al, keyID: kw, version: 1, alias: "alias/audit-kw",
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyWithoutPlaintext(c, GenerateDataKeyInput{KeyId: "alias/audit-kw", KeySpec: "AES_128"})
				return err
			}},
		{name: "GenerateDataKeyWithoutPlaintext", who: N, action: "kms:GenerateDataKeyWithoutPlaintext", outcome: dn, errType: CodeAccessDenied, keyID: kw,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyWithoutPlaintext(c, GenerateDataKeyInput{KeyId: kw, KeySpec: "AES_128"})
				return err
			}},
		{name: "GenerateDataKeyWithoutPlaintext disabled", who: A, action: "kms:GenerateDataKeyWithoutPlaintext", outcome: fl, errType: CodeDisabled, keyID: dis,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyWithoutPlaintext(c, GenerateDataKeyInput{KeyId: dis, KeySpec: "AES_128"})
				return err
			}},

		{name: "GenerateDataKeyPair", who: A, action: "kms:GenerateDataKeyPair", outcome: al, keyID: sym, version: 1, ec: ec,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyPair(c, GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "ECC_NIST_P256", EncryptionContext: ec})
				return err
			}},
		{name: "GenerateDataKeyPair", who: N, action: "kms:GenerateDataKeyPair", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyPair(c, GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "ECC_NIST_P256"})
				return err
			}},
		{name: "GenerateDataKeyPair SM2", who: A, action: "kms:GenerateDataKeyPair", outcome: fl, errType: CodeUnsupported,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyPair(c, GenerateDataKeyPairInput{KeyId: sym, KeyPairSpec: "SM2"})
				return err
			}},
		{name: "GenerateDataKeyPairWithoutPlaintext by alias", who: A, action: "kms:GenerateDataKeyPairWithoutPlaintext", outcome: al, keyID: kw, version: 1, alias: "alias/audit-kw",
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyPairWithoutPlaintext(c, GenerateDataKeyPairInput{KeyId: "alias/audit-kw", KeyPairSpec: "ECC_NIST_P256"})
				return err
			}},
		{name: "GenerateDataKeyPairWithoutPlaintext", who: N, action: "kms:GenerateDataKeyPairWithoutPlaintext", outcome: dn, errType: CodeAccessDenied, keyID: kw,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyPairWithoutPlaintext(c, GenerateDataKeyPairInput{KeyId: kw, KeyPairSpec: "ECC_NIST_P256"})
				return err
			}},
		{name: "GenerateDataKeyPairWithoutPlaintext disabled", who: A, action: "kms:GenerateDataKeyPairWithoutPlaintext", outcome: fl, errType: CodeDisabled, keyID: dis,
			call: func(c context.Context) error {
				_, err := s.GenerateDataKeyPairWithoutPlaintext(c, GenerateDataKeyPairInput{KeyId: dis, KeyPairSpec: "ECC_NIST_P256"})
				return err
			}},

		{name: "GenerateRandom", who: A, action: "kms:GenerateRandom", outcome: al,
			call: func(c context.Context) error {
				_, err := s.GenerateRandom(c, GenerateRandomInput{NumberOfBytes: 32})
				return err
			}},
		{name: "GenerateRandom", who: N, action: "kms:GenerateRandom", outcome: dn, errType: CodeAccessDenied,
			call: func(c context.Context) error {
				_, err := s.GenerateRandom(c, GenerateRandomInput{NumberOfBytes: 32})
				return err
			}},
		{name: "GenerateRandom no bytes", who: A, action: "kms:GenerateRandom", outcome: fl, errType: CodeValidation,
			call: func(c context.Context) error { _, err := s.GenerateRandom(c, GenerateRandomInput{}); return err }},

		{name: "Sign by alias", who: A, action: "kms:Sign", outcome: al, keyID: ecc, version: 1, alias: "alias/audit-ecc",
			call: func(c context.Context) error {
				_, err := s.Sign(c, SignInput{KeyId: "alias/audit-ecc", Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
				return err
			}},
		{name: "Sign", who: N, action: "kms:Sign", outcome: dn, errType: CodeAccessDenied, keyID: ecc,
			call: func(c context.Context) error {
				_, err := s.Sign(c, SignInput{KeyId: ecc, Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
				return err
			}},
		{name: "Sign wrong algorithm", who: A, action: "kms:Sign", outcome: fl, errType: CodeInvalidKeyUsage, keyID: ecc,
			call: func(c context.Context) error {
				_, err := s.Sign(c, SignInput{KeyId: ecc, Message: msg, SigningAlgorithm: "RSASSA_PSS_SHA_256"})
				return err
			}},

		{name: "Verify", who: A, action: "kms:Verify", outcome: al, keyID: ecc, version: 1,
			call: func(c context.Context) error {
				_, err := s.Verify(c, VerifyInput{KeyId: ecc, Message: msg, Signature: sig.Signature, SigningAlgorithm: "ECDSA_SHA_256"})
				return err
			}},
		{name: "Verify", who: N, action: "kms:Verify", outcome: dn, errType: CodeAccessDenied, keyID: ecc,
			call: func(c context.Context) error {
				_, err := s.Verify(c, VerifyInput{KeyId: ecc, Message: msg, Signature: sig.Signature, SigningAlgorithm: "ECDSA_SHA_256"})
				return err
			}},
		{name: "Verify wrong signature", who: A, action: "kms:Verify", outcome: fl, errType: CodeInvalidSignature, keyID: ecc, version: 1,
			call: func(c context.Context) error {
				_, err := s.Verify(c, VerifyInput{KeyId: ecc, Message: msg, Signature: wrongSig.Signature, SigningAlgorithm: "ECDSA_SHA_256"})
				return err
			}},

		{name: "GenerateMac", who: A, action: "kms:GenerateMac", outcome: al, keyID: mac, version: 1,
			call: func(c context.Context) error {
				_, err := s.GenerateMac(c, GenerateMacInput{KeyId: mac, Message: msg, MacAlgorithm: "HMAC_SHA_384"})
				return err
			}},
		{name: "GenerateMac", who: N, action: "kms:GenerateMac", outcome: dn, errType: CodeAccessDenied, keyID: mac,
			call: func(c context.Context) error {
				_, err := s.GenerateMac(c, GenerateMacInput{KeyId: mac, Message: msg, MacAlgorithm: "HMAC_SHA_384"})
				return err
			}},
		{name: "GenerateMac wrong algorithm", who: A, action: "kms:GenerateMac", outcome: fl, errType: CodeInvalidKeyUsage, keyID: mac,
			call: func(c context.Context) error {
				_, err := s.GenerateMac(c, GenerateMacInput{KeyId: mac, Message: msg, MacAlgorithm: "HMAC_SHA_256"})
				return err
			}},
		{name: "VerifyMac", who: A, action: "kms:VerifyMac", outcome: al, keyID: mac, version: 1,
			call: func(c context.Context) error {
				_, err := s.VerifyMac(c, VerifyMacInput{KeyId: mac, Message: msg, Mac: goodMac.Mac, MacAlgorithm: "HMAC_SHA_384"})
				return err
			}},
		{name: "VerifyMac", who: N, action: "kms:VerifyMac", outcome: dn, errType: CodeAccessDenied, keyID: mac,
			call: func(c context.Context) error {
				_, err := s.VerifyMac(c, VerifyMacInput{KeyId: mac, Message: msg, Mac: goodMac.Mac, MacAlgorithm: "HMAC_SHA_384"})
				return err
			}},
		{name: "VerifyMac other message", who: A, action: "kms:VerifyMac", outcome: fl, errType: CodeInvalidMac, keyID: mac, version: 1,
			call: func(c context.Context) error {
				_, err := s.VerifyMac(c, VerifyMacInput{KeyId: mac, Message: other, Mac: goodMac.Mac, MacAlgorithm: "HMAC_SHA_384"})
				return err
			}},
		{name: "Encrypt RSA", who: A, action: "kms:Encrypt", outcome: al, keyID: rsaKey, version: 1,
			call: func(c context.Context) error {
				_, err := s.Encrypt(c, EncryptInput{KeyId: rsaKey, Plaintext: []byte("p"), EncryptionAlgorithm: "RSAES_OAEP_SHA_1"})
				return err
			}},
		{name: "Decrypt RSA", who: A, action: "kms:Decrypt", outcome: al, keyID: rsaKey, version: 1,
			call: func(c context.Context) error {
				_, err := s.Decrypt(c, DecryptInput{KeyId: rsaKey, CiphertextBlob: rsaCT.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
				return err
			}},
		{name: "Decrypt RSA", who: N, action: "kms:Decrypt", outcome: dn, errType: CodeAccessDenied, keyID: rsaKey,
			call: func(c context.Context) error {
				_, err := s.Decrypt(c, DecryptInput{KeyId: rsaKey, CiphertextBlob: rsaCT.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
				return err
			}},
		{name: "Decrypt RSA wrong algorithm", who: A, action: "kms:Decrypt", outcome: fl, errType: CodeInvalidCipher, keyID: rsaKey, version: 1,
			call: func(c context.Context) error {
				_, err := s.Decrypt(c, DecryptInput{KeyId: rsaKey, CiphertextBlob: rsaCT.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_1"})
				return err
			}},

		{name: "GetParametersForImport", who: A, action: "kms:GetParametersForImport", outcome: al, keyID: byok,
			call: func(c context.Context) error {
				p, err := s.GetParametersForImport(c, GetParametersForImportInput{KeyId: byok, WrappingAlgorithm: "RSAES_OAEP_SHA_1", WrappingKeySpec: "RSA_2048"})
				if err == nil {
					importToken = p.ImportToken
					pub, _ := x509.ParsePKIXPublicKey(p.PublicKey)
					wrapped, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, pub.(*rsa.PublicKey), bytes.Repeat([]byte{1}, 32), nil)
				}
				return err
			}},
		{name: "GetParametersForImport", who: N, action: "kms:GetParametersForImport", outcome: dn, errType: CodeAccessDenied, keyID: byok,
			call: func(c context.Context) error {
				_, err := s.GetParametersForImport(c, GetParametersForImportInput{KeyId: byok, WrappingAlgorithm: "RSAES_OAEP_SHA_1", WrappingKeySpec: "RSA_2048"})
				return err
			}},
		{name: "GetParametersForImport of a key hsmkms made", who: A, action: "kms:GetParametersForImport", outcome: fl, errType: CodeUnsupported, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.GetParametersForImport(c, GetParametersForImportInput{KeyId: sym, WrappingAlgorithm: "RSAES_OAEP_SHA_1", WrappingKeySpec: "RSA_2048"})
				return err
			}},
		{name: "ImportKeyMaterial", who: N, action: "kms:ImportKeyMaterial", outcome: dn, errType: CodeAccessDenied, keyID: byok,
			call: func(c context.Context) error {
				_, err := s.ImportKeyMaterial(c, ImportKeyMaterialInput{KeyId: byok, ImportToken: importToken, EncryptedKeyMaterial: wrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
				return err
			}},
		{name: "ImportKeyMaterial", who: A, action: "kms:ImportKeyMaterial", outcome: al, keyID: byok, version: 1,
			call: func(c context.Context) error {
				_, err := s.ImportKeyMaterial(c, ImportKeyMaterialInput{KeyId: byok, ImportToken: importToken, EncryptedKeyMaterial: wrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
				return err
			}},
		{name: "ImportKeyMaterial replayed token", who: A, action: "kms:ImportKeyMaterial", outcome: fl, errType: CodeInvalidImportToken, keyID: byok,
			call: func(c context.Context) error {
				_, err := s.ImportKeyMaterial(c, ImportKeyMaterialInput{KeyId: byok, ImportToken: importToken, EncryptedKeyMaterial: wrapped, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"})
				return err
			}},
		{name: "DeleteImportedKeyMaterial", who: N, action: "kms:DeleteImportedKeyMaterial", outcome: dn, errType: CodeAccessDenied, keyID: byok,
			call: func(c context.Context) error { return s.DeleteImportedKeyMaterial(c, KeyIDInput{KeyId: byok}) }},
		{name: "DeleteImportedKeyMaterial", who: A, action: "kms:DeleteImportedKeyMaterial", outcome: al, keyID: byok,
			call: func(c context.Context) error { return s.DeleteImportedKeyMaterial(c, KeyIDInput{KeyId: byok}) }},
		{name: "DeleteImportedKeyMaterial of a key hsmkms made", who: A, action: "kms:DeleteImportedKeyMaterial", outcome: fl, errType: CodeUnsupported, keyID: sym,
			call: func(c context.Context) error { return s.DeleteImportedKeyMaterial(c, KeyIDInput{KeyId: sym}) }},

		{name: "CreateGrant", who: A, action: "kms:CreateGrant", outcome: al, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.CreateGrant(c, CreateGrantInput{KeyId: sym, GranteePrincipal: grantee.Arn, Operations: []string{"Encrypt"}})
				return err
			}},
		{name: "CreateGrant", who: N, action: "kms:CreateGrant", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.CreateGrant(c, CreateGrantInput{KeyId: sym, GranteePrincipal: grantee.Arn, Operations: []string{"Encrypt"}})
				return err
			}},
		{name: "CreateGrant Sign on a symmetric key", who: A, action: "kms:CreateGrant", outcome: fl, errType: CodeValidation, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.CreateGrant(c, CreateGrantInput{KeyId: sym, GranteePrincipal: grantee.Arn, Operations: []string{"Sign"}})
				return err
			}},
		{name: "ListGrants", who: A, action: "kms:ListGrants", outcome: al, keyID: sym,
			call: func(c context.Context) error { _, err := s.ListGrants(c, ListGrantsInput{KeyId: sym}); return err }},
		{name: "ListGrants", who: N, action: "kms:ListGrants", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error { _, err := s.ListGrants(c, ListGrantsInput{KeyId: sym}); return err }},
		{name: "ListGrants Limit 0..100", who: A, action: "kms:ListGrants", outcome: fl, errType: CodeValidation,
			call: func(c context.Context) error {
				_, err := s.ListGrants(c, ListGrantsInput{KeyId: sym, Limit: 500})
				return err
			}},
		{name: "ListRetirableGrants", who: A, action: "kms:ListRetirableGrants", outcome: al,
			call: func(c context.Context) error {
				_, err := s.ListRetirableGrants(c, ListRetirableGrantsInput{RetiringPrincipal: grantee.Arn})
				return err
			}},
		{name: "ListRetirableGrants", who: N, action: "kms:ListRetirableGrants", outcome: dn, errType: CodeAccessDenied,
			call: func(c context.Context) error {
				_, err := s.ListRetirableGrants(c, ListRetirableGrantsInput{RetiringPrincipal: grantee.Arn})
				return err
			}},
		{name: "ListRetirableGrants no principal", who: A, action: "kms:ListRetirableGrants", outcome: fl, errType: CodeValidation,
			call: func(c context.Context) error {
				_, err := s.ListRetirableGrants(c, ListRetirableGrantsInput{})
				return err
			}},
		{name: "RevokeGrant", who: N, action: "kms:RevokeGrant", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				return s.RevokeGrant(c, RevokeGrantInput{KeyId: sym, GrantId: revokeID})
			}},
		{name: "RevokeGrant", who: A, action: "kms:RevokeGrant", outcome: al, keyID: sym,
			call: func(c context.Context) error {
				return s.RevokeGrant(c, RevokeGrantInput{KeyId: sym, GrantId: revokeID})
			}},
		{name: "RevokeGrant gone", who: A, action: "kms:RevokeGrant", outcome: fl, errType: CodeNotFound, keyID: sym,
			call: func(c context.Context) error {
				return s.RevokeGrant(c, RevokeGrantInput{KeyId: sym, GrantId: revokeID})
			}},
		{name: "RetireGrant", who: N, action: "kms:RetireGrant", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				return s.RetireGrant(c, RetireGrantInput{KeyId: sym, GrantId: retireID})
			}},
		{name: "RetireGrant", who: A, action: "kms:RetireGrant", outcome: al, keyID: sym,
			call: func(c context.Context) error {
				return s.RetireGrant(c, RetireGrantInput{KeyId: sym, GrantId: retireID})
			}},
		{name: "RetireGrant gone", who: A, action: "kms:RetireGrant", outcome: fl, errType: CodeNotFound, keyID: sym,
			call: func(c context.Context) error {
				return s.RetireGrant(c, RetireGrantInput{KeyId: sym, GrantId: retireID})
			}},

		{name: "GetPublicKey", who: A, action: "kms:GetPublicKey", outcome: al, keyID: ecc, version: 1,
			call: func(c context.Context) error { _, err := s.GetPublicKey(c, KeyIDInput{KeyId: ecc}); return err }},
		{name: "GetPublicKey", who: N, action: "kms:GetPublicKey", outcome: dn, errType: CodeAccessDenied, keyID: ecc,
			call: func(c context.Context) error { _, err := s.GetPublicKey(c, KeyIDInput{KeyId: ecc}); return err }},
		{name: "GetPublicKey symmetric", who: A, action: "kms:GetPublicKey", outcome: fl, errType: CodeUnsupported, keyID: sym,
			call: func(c context.Context) error { _, err := s.GetPublicKey(c, KeyIDInput{KeyId: sym}); return err }},

		{name: "UpdateKeyDescription", who: A, action: "kms:UpdateKeyDescription", outcome: al, keyID: sym,
			call: func(c context.Context) error {
				return s.UpdateKeyDescription(c, UpdateKeyDescriptionInput{KeyId: sym, Description: "audited"})
			}},
		{name: "UpdateKeyDescription", who: N, action: "kms:UpdateKeyDescription", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				return s.UpdateKeyDescription(c, UpdateKeyDescriptionInput{KeyId: sym, Description: "x"})
			}},
		{name: "UpdateKeyDescription of 8193", who: A, action: "kms:UpdateKeyDescription", outcome: fl, errType: CodeValidation,
			call: func(c context.Context) error {
				return s.UpdateKeyDescription(c, UpdateKeyDescriptionInput{KeyId: sym, Description: strings.Repeat("d", 8193)})
			}},
		{name: "TagResource", who: A, action: "kms:TagResource", outcome: al, keyID: sym,
			call: func(c context.Context) error {
				return s.TagResource(c, TagResourceInput{KeyId: sym, Tags: []Tag{{TagKey: "team", TagValue: "audit"}}})
			}},
		{name: "TagResource", who: N, action: "kms:TagResource", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				return s.TagResource(c, TagResourceInput{KeyId: sym, Tags: []Tag{{TagKey: "team", TagValue: "x"}}})
			}},
		{name: "TagResource empty tag key", who: A, action: "kms:TagResource", outcome: fl, errType: CodeValidation, keyID: sym,
			call: func(c context.Context) error {
				return s.TagResource(c, TagResourceInput{KeyId: sym, Tags: []Tag{{TagValue: "x"}}})
			}},

		{name: "UntagResource", who: A, action: "kms:UntagResource", outcome: al, keyID: sym,
			call: func(c context.Context) error {
				return s.UntagResource(c, UntagResourceInput{KeyId: sym, TagKeys: []string{"team"}})
			}},
		{name: "UntagResource", who: N, action: "kms:UntagResource", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				return s.UntagResource(c, UntagResourceInput{KeyId: sym, TagKeys: []string{"team"}})
			}},
		{name: "UntagResource missing", who: A, action: "kms:UntagResource", outcome: fl, errType: CodeNotFound,
			call: func(c context.Context) error {
				return s.UntagResource(c, UntagResourceInput{KeyId: missing, TagKeys: []string{"team"}})
			}},

		{name: "ListResourceTags by alias", who: A, action: "kms:ListResourceTags", outcome: al, keyID: sym, alias: "alias/audit-sym",
			call: func(c context.Context) error {
				_, err := s.ListResourceTags(c, ListResourceTagsInput{KeyId: "alias/audit-sym"})
				return err
			}},
		{name: "ListResourceTags", who: N, action: "kms:ListResourceTags", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.ListResourceTags(c, ListResourceTagsInput{KeyId: sym})
				return err
			}},
		{name: "ListResourceTags missing", who: A, action: "kms:ListResourceTags", outcome: fl, errType: CodeNotFound,
			call: func(c context.Context) error {
				_, err := s.ListResourceTags(c, ListResourceTagsInput{KeyId: missing})
				return err
			}},

		{name: "GetKeyPolicy by alias", who: A, action: "kms:GetKeyPolicy", outcome: al, keyID: sym, alias: "alias/audit-sym",
			call: func(c context.Context) error {
				_, err := s.GetKeyPolicy(c, GetKeyPolicyInput{KeyId: "alias/audit-sym"})
				return err
			}},
		{name: "GetKeyPolicy", who: N, action: "kms:GetKeyPolicy", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.GetKeyPolicy(c, GetKeyPolicyInput{KeyId: sym, PolicyName: "default"})
				return err
			}},
		{name: "GetKeyPolicy another name", who: A, action: "kms:GetKeyPolicy", outcome: fl, errType: CodeNotFound,
			call: func(c context.Context) error {
				_, err := s.GetKeyPolicy(c, GetKeyPolicyInput{KeyId: sym, PolicyName: "other"})
				return err
			}},
		{name: "ListKeyPolicies", who: A, action: "kms:ListKeyPolicies", outcome: al, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.ListKeyPolicies(c, ListKeyPoliciesInput{KeyId: sym})
				return err
			}},
		{name: "ListKeyPolicies", who: N, action: "kms:ListKeyPolicies", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				_, err := s.ListKeyPolicies(c, ListKeyPoliciesInput{KeyId: sym})
				return err
			}},
		{name: "ListKeyPolicies missing", who: A, action: "kms:ListKeyPolicies", outcome: fl, errType: CodeNotFound,
			call: func(c context.Context) error {
				_, err := s.ListKeyPolicies(c, ListKeyPoliciesInput{KeyId: missing})
				return err
			}},
		{name: "PutKeyPolicy", who: N, action: "kms:PutKeyPolicy", outcome: dn, errType: CodeAccessDenied, keyID: sym,
			call: func(c context.Context) error {
				return s.PutKeyPolicy(c, PutKeyPolicyInput{KeyId: sym, Policy: "{}"})
			}},
		{name: "PutKeyPolicy allowed, unsupported", who: A, action: "kms:PutKeyPolicy", outcome: fl, errType: CodeUnsupported, keyID: sym,
			call: func(c context.Context) error {
				return s.PutKeyPolicy(c, PutKeyPolicyInput{KeyId: sym, PolicyName: "default", Policy: "{}"})
			}},
	}

	covered := map[string]bool{}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%02d %s %s", i, tc.name, tc.outcome), func(t *testing.T) {
			reqID := fmt.Sprintf("req-%02d-%s", i, uuid.NewString()[:8])
			c := t.Context()
			if tc.who != "" {
				var stmts []policy.Statement
				if tc.who == auditAdmin {
					stmts = []policy.Statement{allowAll}
				}
				c = WithCaller(c, Caller{AccessKeyID: tc.who, Source: auditSource, RequestID: reqID, Statements: stmts})
			}
			before := countLines(f.audit)
			err := tc.call(c)
			switch {
			case tc.outcome == audit.Allowed && err != nil:
				t.Fatalf("want success, got %v", err)
			case tc.outcome != audit.Allowed && CodeOf(err) != tc.errType:
				t.Fatalf("want %s, got %v", tc.errType, err)
			}
			lines := auditLines(t, f.audit.String())
			if n := len(lines) - before; n != 1 {
				t.Fatalf("the operation wrote %d audit records, want 1:\n%s", n, f.audit.String())
			}
			got := lines[len(lines)-1]
			for _, k := range []string{"@level", "@message", "@module", "@timestamp"} {
				delete(got, k)
			}
			want := map[string]any{"time": f.clock.Now().UTC().Format(time.RFC3339Nano),
				"request_id": "", "principal": tc.who, "action": tc.action, "outcome": tc.outcome}
			if tc.who != "" {
				want["request_id"], want["source"] = reqID, auditSource
			}
			keyID := tc.keyID
			if keyID == newKeyID {
				if _, perr := uuid.Parse(created); perr != nil {
					t.Fatalf("CreateKey returned key ID %q", created)
				}
				keyID = created
			}
			if keyID != "" {
				want["key_id"] = keyID
			}
			if tc.version != 0 {
				want["key_version"] = json.Number(fmt.Sprint(tc.version))
			}
			if tc.alias != "" {
				want["alias"] = tc.alias
			}
			if tc.ec != nil {
				m := map[string]any{}
				for k, v := range tc.ec {
					m[k] = v
				}
				want["encryption_context"] = m
			}
			if tc.errType != "" {
				want["error_type"] = string(tc.errType)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("audit record\n got %v\nwant %v", got, want)
			}
			covered[tc.action+" "+tc.outcome] = true
		})
	}
	for _, a := range serviceActions {
		for _, o := range []string{audit.Allowed, audit.Denied, audit.Failed} {
			if !covered[a+" "+o] {
				t.Errorf("no passing case covers %s %s", a, o)
			}
		}
	}
}

// TestAuditSystemWorkWritesNoRecords proves that the service's own work —
// scheduled rotations and deletions (RunMaintenance), Reconcile, the
// rotation the seal budget starts, and any operation run on the system
// caller's behalf — writes no client audit record, while the client
// operations around it each write theirs.
func TestAuditSystemWorkWritesNoRecords(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		// setup runs as admin and returns the number of client operations
		// it made; work is the system's own; check proves work happened.
		setup func(t *testing.T, f *fixture) int
		work  func(t *testing.T, f *fixture)
		check func(t *testing.T, f *fixture)
	}{
		{
			name: "RunMaintenance rotates and deletes",
			setup: func(t *testing.T, f *fixture) int {
				rot := f.createKey(t, CreateKeyInput{Description: "rot"})
				del := f.createKey(t, CreateKeyInput{Description: "del"})
				if err := f.svc.EnableKeyRotation(admin(t), EnableKeyRotationInput{KeyId: rot, RotationPeriodInDays: 90}); err != nil {
					t.Fatal(err)
				}
				if _, err := f.svc.ScheduleKeyDeletion(admin(t), ScheduleKeyDeletionInput{KeyId: del, PendingWindowInDays: 7}); err != nil {
					t.Fatal(err)
				}
				f.clock.Advance(91 * day)
				return 4
			},
			work: func(t *testing.T, f *fixture) {
				if err := f.svc.RunMaintenance(t.Context()); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, f *fixture) {
				keys := systemTestKeys(t, f)
				if got := rotationsOf(t, f, keys["rot"].ID); got != 1 {
					t.Errorf("rot has %d rotations, want 1", got)
				}
				if keys["del"].State != store.KeyDeleted {
					t.Errorf("del is %s, want Deleted", keys["del"].State)
				}
			},
		},
		{
			name: "Reconcile rolls back and forward",
			setup: func(t *testing.T, f *fixture) int {
				live := f.createKey(t, CreateKeyInput{Description: "live"})
				err := f.svc.store.Update(t.Context(), func(tx store.Tx) error {
					k, err := tx.Key(live)
					if err != nil {
						return err
					}
					k.LatestVersion = 2
					if _, err := tx.PutKey(k); err != nil {
						return err
					}
					v2, err := f.svc.newVersion(live, 2, rotationOnDemand)
					if err != nil {
						return err
					}
					v2.Owner = "a-process-that-crashed" // as a restart finds it
					if err := tx.PutVersion(v2); err != nil {
						return err
					}
					half, err := f.svc.newKeyRecord(CreateKeyInput{Description: "half"})
					if err != nil {
						return err
					}
					half.LatestVersion = 1
					if _, err := tx.PutKey(half); err != nil {
						return err
					}
					v1, err := f.svc.newVersion(half.ID, 1, "")
					if err != nil {
						return err
					}
					v1.Owner = "a-process-that-crashed"
					return tx.PutVersion(v1)
				})
				if err != nil {
					t.Fatal(err)
				}
				return 1
			},
			work: func(t *testing.T, f *fixture) {
				r, err := f.svc.Reconcile(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if r.RolledBack != 1 || r.RolledForward != 1 {
					t.Fatalf("Reconcile: %+v, want one rolled back and one rolled forward", r)
				}
			},
			check: func(t *testing.T, f *fixture) {
				keys := systemTestKeys(t, f)
				if keys["half"].State != store.KeyDeleted {
					t.Errorf("half is %s, want Deleted", keys["half"].State)
				}
				if keys["live"].CurrentVersion != 2 {
					t.Errorf("live's current version is %d, want 2", keys["live"].CurrentVersion)
				}
			},
		},
		{
			name: "the seal budget rotates a worn key",
			change: func(c *Config) {
				c.SealBlock, c.RotateAfterSeals = 1, 2
			},
			setup: func(t *testing.T, f *fixture) int {
				id := f.createKey(t, CreateKeyInput{Description: "worn"})
				for range 2 {
					if _, err := f.svc.Encrypt(admin(t), EncryptInput{KeyId: id, Plaintext: []byte("x")}); err != nil {
						t.Fatal(err)
					}
				}
				return 3
			},
			work: func(t *testing.T, f *fixture) {
				f.svc.Close() // waits for the rotation the second seal started
			},
			check: func(t *testing.T, f *fixture) {
				if got := rotationsOf(t, f, systemTestKeys(t, f)["worn"].ID); got != 1 {
					t.Errorf("worn has %d rotations, want 1", got)
				}
			},
		},
		{
			name: "public operations on the system caller's behalf",
			setup: func(t *testing.T, f *fixture) int {
				f.createKey(t, CreateKeyInput{Description: "sys"})
				return 1
			},
			work: func(t *testing.T, f *fixture) {
				ctx := systemContext(t.Context())
				id := systemTestKeys(t, f)["sys"].ID
				if _, err := f.svc.CreateKey(ctx, CreateKeyInput{Description: "by-system"}); err != nil {
					t.Fatal(err)
				}
				if _, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte("x")}); err != nil {
					t.Fatal(err)
				}
				if _, err := f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: id}); err != nil {
					t.Fatal(err)
				}
				if _, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: uuid.NewString()}); !errors.Is(err, ErrNotFound) {
					t.Fatalf("DescribeKey of a missing key: %v", err)
				}
			},
			check: func(t *testing.T, f *fixture) {
				keys := systemTestKeys(t, f)
				if _, ok := keys["by-system"]; !ok {
					t.Error("the system's CreateKey made no key")
				}
				if got := rotationsOf(t, f, keys["sys"].ID); got != 1 {
					t.Errorf("sys has %d rotations, want 1", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var change []func(*Config)
			if tt.change != nil {
				change = append(change, tt.change)
			}
			f := newFixture(t, "", change...)
			ops := tt.setup(t, f)
			if got := countLines(f.audit); got != ops {
				t.Fatalf("%d audit records after %d client operations:\n%s", got, ops, f.audit.String())
			}
			tt.work(t, f)
			if got := countLines(f.audit); got != ops {
				t.Errorf("the system's work wrote %d audit records:\n%s", got-ops, f.audit.String())
			}
			for _, r := range auditLines(t, f.audit.String()) {
				if r["principal"] != "AKIAADMIN" {
					t.Errorf("record of principal %v: %v", r["principal"], r)
				}
			}
			tt.check(t, f)
		})
	}
}

// systemTestKeys reads every key record by description, bypassing the
// audited operations so that checking writes no record.
func systemTestKeys(t *testing.T, f *fixture) map[string]store.Key {
	t.Helper()
	keys := map[string]store.Key{}
	err := f.svc.eachKey(t.Context(), func(k store.Key) { keys[k.Description] = k })
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// rotationsOf counts a key's active versions after the first, reading the
// store directly.
func rotationsOf(t *testing.T, f *fixture, id string) int {
	t.Helper()
	vs, err := f.svc.versions(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vs {
		if v.Number > 1 && v.State == store.VersionActive {
			n++
		}
	}
	return n
}

// secretScan holds every secret a run handled and every error it returned.
type secretScan struct {
	secrets []secret
	errs    []error
	scanned int // errs already scanned
}

type secret struct {
	what string
	b    []byte
}

func (sc *secretScan) add(what string, b []byte) {
	if len(b) < 16 {
		panic(fmt.Sprintf("secret %s has %d bytes; at least 16 make a chance match impossible", what, len(b)))
	}
	sc.secrets = append(sc.secrets, secret{what, bytes.Clone(b)})
}

// fresh returns n new random bytes recorded as a secret.
func (sc *secretScan) fresh(what string, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	sc.add(what, b)
	return b
}

// encodings are the forms a secret could take in a log line: raw, base64
// (standard and URL, padded or not), hex (lower and upper case) and Go's
// %v of a byte slice, each of the whole value and of its first 15 bytes
// (which catches a truncated leak; 15 bytes keep base64 aligned).
func encodings(b []byte) map[string]string {
	out := map[string]string{}
	for _, p := range []struct {
		part string
		b    []byte
	}{{"", b}, {" prefix", b[:15]}} {
		out["raw"+p.part] = string(p.b)
		out["base64"+p.part] = base64.StdEncoding.EncodeToString(p.b)
		out["base64 raw"+p.part] = base64.RawStdEncoding.EncodeToString(p.b)
		out["base64 url"+p.part] = base64.URLEncoding.EncodeToString(p.b)
		out["base64 raw url"+p.part] = base64.RawURLEncoding.EncodeToString(p.b)
		out["hex"+p.part] = hex.EncodeToString(p.b)
		out["HEX"+p.part] = strings.ToUpper(hex.EncodeToString(p.b))
		out["decimal"+p.part] = strings.Trim(fmt.Sprint(p.b), "[]")
	}
	return out
}

// scanText reports every secret that text holds in any encoding.
func (sc *secretScan) scanText(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range sc.secrets {
		for enc, v := range encodings(s.b) {
			if strings.Contains(text, v) {
				t.Errorf("found %s (%s) in %s", s.what, enc, where)
			}
		}
	}
}

// scanJSON scans a JSON-lines output both as text and by its decoded string
// values, where raw bytes that JSON escaped appear as they were.
func (sc *secretScan) scanJSON(t *testing.T, where, out string) {
	t.Helper()
	sc.scanText(t, where, out)
	var values []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			values = append(values, v)
		case map[string]any:
			for k, e := range v {
				values = append(values, k)
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, line := range auditLines(t, out) {
		walk(line)
	}
	sc.scanText(t, where+" (decoded)", strings.Join(values, "\x00"))
}

// scanErrors scans the message of every error returned since the last
// scan and of every cause it wraps (causes reach the logs).
func (sc *secretScan) scanErrors(t *testing.T) {
	t.Helper()
	defer func() { sc.scanned = len(sc.errs) }()
	for _, err := range sc.errs[sc.scanned:] {
		var msgs []string
		var walk func(error)
		walk = func(e error) {
			if e == nil {
				return
			}
			msgs = append(msgs, e.Error(), fmt.Sprintf("%+v", e))
			switch u := e.(type) {
			case interface{ Unwrap() error }:
				walk(u.Unwrap())
			case interface{ Unwrap() []error }:
				for _, c := range u.Unwrap() {
					walk(c)
				}
			}
		}
		walk(err)
		sc.scanText(t, fmt.Sprintf("error %q", err.Error()), strings.Join(msgs, "\n"))
	}
}

// longPINToken makes a fresh token in the package's SoftHSM2 store and
// gives it a long PIN of its own, unique to this test, so that a scan for
// the PIN cannot match by chance. It returns the label and the PIN.
func longPINToken(t *testing.T) (string, string) {
	t.Helper()
	label := "audit-" + hex.EncodeToString(randomBytes(8))
	tok, err := env.AddToken(t.Context(), label)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.DeleteToken(context.Background()) })
	pin := "pin-" + hex.EncodeToString(randomBytes(24))
	setUserPIN(t, label, softhsm.TestPIN, pin)
	return label, pin
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// setUserPIN changes a token's user PIN with C_SetPIN. No Token may have
// the module open meanwhile: it initialises and finalises the module.
func setUserPIN(t *testing.T, label, oldPIN, newPIN string) {
	t.Helper()
	p := pkcs11.New(env.ModulePath)
	if p == nil {
		t.Fatalf("cannot load %s", env.ModulePath)
	}
	if err := p.Initialize(); err != nil {
		p.Destroy()
		t.Fatalf("C_Initialize: %v", err)
	}
	defer func() {
		p.Finalize()
		p.Destroy()
	}()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, slot := range slots {
		ti, err := p.GetTokenInfo(slot)
		if err != nil || strings.TrimSpace(ti.Label) != label {
			continue
		}
		s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		defer p.CloseSession(s)
		if err := p.Login(s, pkcs11.CKU_USER, oldPIN); err != nil {
			t.Fatalf("C_Login: %v", err)
		}
		defer p.Logout(s)
		if err := p.SetPIN(s, oldPIN, newPIN); err != nil {
			t.Fatalf("C_SetPIN: %v", err)
		}
		return
	}
	t.Fatalf("no token labelled %q", label)
}

// newFixtureOn is newFixture on another token of the package's store.
func newFixtureOn(t *testing.T, label, pin string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), audit: &syncBuffer{}, logs: &syncBuffer{},
		clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	logger := hclog.New(&hclog.LoggerOptions{Output: f.logs, Level: hclog.Trace, JSONFormat: true})
	tok, err := hsm.Open(t.Context(), hsm.Config{ModulePath: env.ModulePath, TokenLabel: label,
		PIN: hsm.NewPIN(pin), Logger: logger})
	if err != nil {
		t.Fatalf("hsm.Open: %v", err)
	}
	st, err := bolt.Open(filepath.Join(f.dir, "hsmkms.db"))
	if err != nil {
		tok.Close()
		t.Fatalf("bolt.Open: %v", err)
	}
	svc, err := New(Config{Store: st, HSM: tok, Logger: logger, Audit: audit.New(f.audit), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.svc, f.tok = svc, tok
	t.Cleanup(func() {
		svc.Close()
		st.Close()
		tok.Close()
	})
	return f
}

// TestSecretsNotInAuditOrLogs runs every operation that handles secret
// material — Encrypt and Decrypt of many distinct plaintexts, data keys of
// aes-gcm and aes-kw keys (with and without plaintext), data key pairs'
// private keys, ReEncrypt both
// ways, GenerateRandom, Sign and Verify of RAW messages and digests — then
// failing requests (altered and foreign ciphertexts, wrong contexts,
// oversized input, disabled keys, wrong algorithms and signatures) and
// finally requests on a closed token. The token's PIN is long and unique
// to this run. After each phase the audit trail, the logs (hsm and service,
// Trace level) and every returned error, with its causes, are scanned for
// every secret in every encoding.
func TestSecretsNotInAuditOrLogs(t *testing.T) {
	label, pin := longPINToken(t)
	f := newFixtureOn(t, label, pin)
	ctx := WithCaller(t.Context(), Caller{AccessKeyID: auditAdmin, Source: auditSource, RequestID: "secret-run",
		Statements: []policy.Statement{allowAll}})
	sc := &secretScan{}
	sc.add("the token PIN", []byte(pin))
	s := f.svc
	gcm := f.createKey(t, CreateKeyInput{Description: "gcm"})
	kw := f.createKey(t, CreateKeyInput{Description: "kw", HsmkmsMechanism: "aes-kw"})
	ecc := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
	dis := f.createKey(t, CreateKeyInput{})
	if err := s.DisableKey(ctx, KeyIDInput{KeyId: dis}); err != nil {
		t.Fatal(err)
	}
	ec := map[string]string{"app": "secret-scan"}
	type sealed struct {
		blob  []byte
		ec    map[string]string
		plain []byte
	}
	var blobs []sealed // valid ciphertexts, for the failure phases
	var msgs [][]byte  // signed messages
	var sigs [][]byte

	// decrypt checks that blob opens to want.
	decrypt := func(t *testing.T, blob []byte, encCtx map[string]string, want []byte) {
		t.Helper()
		out, err := s.Decrypt(ctx, DecryptInput{CiphertextBlob: blob, EncryptionContext: encCtx})
		if err != nil || !bytes.Equal(out.Plaintext, want) {
			t.Fatalf("Decrypt: %v (plaintext matches: %t)", err, bytes.Equal(out.Plaintext, want))
		}
	}
	// fail runs a request that must fail with one of codes.
	fail := func(t *testing.T, what string, err error, codes ...Code) {
		t.Helper()
		if err == nil || !slices.Contains(codes, CodeOf(err)) {
			t.Errorf("%s: got %v, want one of %v", what, err, codes)
		}
		if err != nil {
			sc.errs = append(sc.errs, err)
		}
	}
	down := []Code{CodeInternal, CodeDependency}

	phases := []struct {
		name string
		run  func(t *testing.T)
		// logs is text the logs must hold after the phase, proving that
		// what is scanned is not empty.
		logs string
	}{
		{name: "successful operations", logs: "token opened", run: func(t *testing.T) {
			for i := range 12 {
				for _, k := range []struct {
					id string
					ec map[string]string
				}{{gcm, ec}, {kw, nil}} {
					p := sc.fresh(fmt.Sprintf("plaintext %d", i), 16+i*8)
					out, err := s.Encrypt(ctx, EncryptInput{KeyId: k.id, Plaintext: p, EncryptionContext: k.ec})
					if err != nil {
						t.Fatal(err)
					}
					decrypt(t, out.CiphertextBlob, k.ec, p)
					blobs = append(blobs, sealed{out.CiphertextBlob, k.ec, p})
				}
			}
			big := sc.fresh("largest plaintext", maxPlaintext)
			out, err := s.Encrypt(ctx, EncryptInput{KeyId: gcm, Plaintext: big, EncryptionContext: ec})
			if err != nil {
				t.Fatal(err)
			}
			decrypt(t, out.CiphertextBlob, ec, big)
			for _, dk := range []struct {
				id   string
				ec   map[string]string
				spec string
				n    int
			}{
				{gcm, ec, "AES_256", 0}, {gcm, nil, "AES_128", 0}, {gcm, ec, "", 48}, {gcm, ec, "", maxDataKey},
				{kw, nil, "AES_256", 0}, {kw, nil, "AES_128", 0}, {kw, nil, "", 24}, {kw, nil, "", maxDataKey},
			} {
				in := GenerateDataKeyInput{KeyId: dk.id, KeySpec: dk.spec, NumberOfBytes: dk.n, EncryptionContext: dk.ec}
				out, err := s.GenerateDataKey(ctx, in)
				if err != nil {
					t.Fatal(err)
				}
				sc.add("data key of "+dk.id, out.Plaintext)
				decrypt(t, out.CiphertextBlob, dk.ec, out.Plaintext)
				blobs = append(blobs, sealed{out.CiphertextBlob, dk.ec, out.Plaintext})
				wo, err := s.GenerateDataKeyWithoutPlaintext(ctx, in)
				if err != nil {
					t.Fatal(err)
				}
				if wo.Plaintext != nil {
					t.Fatal("GenerateDataKeyWithoutPlaintext returned a plaintext")
				}
				d, err := s.Decrypt(ctx, DecryptInput{CiphertextBlob: wo.CiphertextBlob, EncryptionContext: dk.ec})
				if err != nil {
					t.Fatal(err)
				}
				sc.add("data key without plaintext of "+dk.id, d.Plaintext)
			}
			for _, spec := range []string{"ECC_NIST_P256", "RSA_2048"} {
				for _, id := range []string{gcm, kw} {
					in := GenerateDataKeyPairInput{KeyId: id, KeyPairSpec: spec, EncryptionContext: ec}
					out, err := s.GenerateDataKeyPair(ctx, in)
					if err != nil {
						t.Fatal(err)
					}
					sc.add("data key pair of "+id, out.PrivateKeyPlaintext)
					decrypt(t, out.PrivateKeyCiphertextBlob, ec, out.PrivateKeyPlaintext)
					wo, err := s.GenerateDataKeyPairWithoutPlaintext(ctx, in)
					if err != nil {
						t.Fatal(err)
					}
					d, err := s.Decrypt(ctx, DecryptInput{CiphertextBlob: wo.PrivateKeyCiphertextBlob, EncryptionContext: ec})
					if err != nil {
						t.Fatal(err)
					}
					sc.add("data key pair without plaintext of "+id, d.Plaintext)
				}
			}
			for _, b := range slices.Clone(blobs) {
				to, toEC := kw, map[string]string{"re": "encrypted"}
				if b.ec == nil {
					to = gcm
				}
				re, err := s.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: b.blob, SourceEncryptionContext: b.ec,
					DestinationKeyId: to, DestinationEncryptionContext: toEC})
				if err != nil {
					t.Fatal(err)
				}
				decrypt(t, re.CiphertextBlob, toEC, b.plain)
			}
			for _, n := range []int{16, 32, 64, 333, maxRandom} {
				out, err := s.GenerateRandom(ctx, GenerateRandomInput{NumberOfBytes: n})
				if err != nil {
					t.Fatal(err)
				}
				sc.add(fmt.Sprintf("random %d", n), out.Plaintext)
			}
			for i := range 6 {
				in := SignInput{KeyId: ecc, Message: sc.fresh(fmt.Sprintf("message %d", i), 32+i*100), SigningAlgorithm: "ECDSA_SHA_256"}
				if i%2 == 1 {
					d := sha256.Sum256(in.Message)
					in.Message, in.MessageType = d[:], "DIGEST"
					sc.add(fmt.Sprintf("digest %d", i), d[:])
				}
				out, err := s.Sign(ctx, in)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Verify(ctx, VerifyInput{KeyId: ecc, Message: in.Message, MessageType: in.MessageType,
					Signature: out.Signature, SigningAlgorithm: in.SigningAlgorithm}); err != nil {
					t.Fatal(err)
				}
				msgs, sigs = append(msgs, in.Message), append(sigs, out.Signature)
			}
		}},
		{name: "failing operations", logs: "token opened", run: func(t *testing.T) {
			for i, b := range blobs[:4] {
				altered := bytes.Clone(b.blob)
				altered[len(altered)-1] ^= 0x5a
				_, err := s.Decrypt(ctx, DecryptInput{CiphertextBlob: altered, EncryptionContext: b.ec})
				fail(t, fmt.Sprintf("Decrypt altered %d", i), err, CodeInvalidCipher)
				_, err = s.Decrypt(ctx, DecryptInput{CiphertextBlob: b.blob, EncryptionContext: map[string]string{"wrong": "context"}})
				fail(t, fmt.Sprintf("Decrypt wrong context %d", i), err, CodeInvalidCipher)
				_, err = s.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: b.blob, SourceEncryptionContext: map[string]string{"wrong": "context"},
					DestinationKeyId: gcm})
				fail(t, fmt.Sprintf("ReEncrypt wrong context %d", i), err, CodeInvalidCipher)
				_, err = s.Decrypt(ctx, DecryptInput{CiphertextBlob: b.blob, EncryptionContext: b.ec, KeyId: ecc})
				fail(t, fmt.Sprintf("Decrypt naming another key %d", i), err, CodeIncorrectKey)
			}
			foreign := sc.fresh("a plaintext sent as a ciphertext", 200)
			_, err := s.Decrypt(ctx, DecryptInput{CiphertextBlob: foreign})
			fail(t, "Decrypt foreign", err, CodeInvalidCipher)
			_, err = s.Encrypt(ctx, EncryptInput{KeyId: gcm, Plaintext: sc.fresh("oversized plaintext", maxPlaintext+1)})
			fail(t, "Encrypt oversized", err, CodeValidation)
			_, err = s.Encrypt(ctx, EncryptInput{KeyId: dis, Plaintext: sc.fresh("plaintext for a disabled key", 32)})
			fail(t, "Encrypt disabled", err, CodeDisabled)
			_, err = s.Encrypt(ctx, EncryptInput{KeyId: ecc, Plaintext: sc.fresh("plaintext for a signing key", 32)})
			fail(t, "Encrypt signing key", err, CodeInvalidKeyUsage)
			_, err = s.Sign(ctx, SignInput{KeyId: ecc, Message: sc.fresh("message, wrong algorithm", 32), SigningAlgorithm: "RSASSA_PSS_SHA_256"})
			fail(t, "Sign wrong algorithm", err, CodeInvalidKeyUsage)
			_, err = s.Sign(ctx, SignInput{KeyId: ecc, Message: sc.fresh("digest of a wrong length", 33), MessageType: "DIGEST", SigningAlgorithm: "ECDSA_SHA_256"})
			fail(t, "Sign wrong digest length", err, CodeValidation)
			_, err = s.Verify(ctx, VerifyInput{KeyId: ecc, Message: sc.fresh("message, wrong signature", 32), Signature: sigs[0], SigningAlgorithm: "ECDSA_SHA_256"})
			fail(t, "Verify wrong signature", err, CodeInvalidSignature)
			_, err = s.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: kw, NumberOfBytes: 20})
			fail(t, "GenerateDataKey aes-kw size", err, CodeValidation)
		}},
		{name: "closed token", logs: "HSM operation failed", run: func(t *testing.T) {
			if err := f.tok.Close(); err != nil {
				t.Fatal(err)
			}
			before := countLines(f.audit)
			ops := 0
			for i, b := range blobs[:4] {
				_, err := s.Decrypt(ctx, DecryptInput{CiphertextBlob: b.blob, EncryptionContext: b.ec})
				fail(t, fmt.Sprintf("Decrypt %d", i), err, down...)
				_, err = s.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: b.blob, SourceEncryptionContext: b.ec, DestinationKeyId: gcm})
				fail(t, fmt.Sprintf("ReEncrypt %d", i), err, down...)
				_, err = s.Encrypt(ctx, EncryptInput{KeyId: gcm, Plaintext: sc.fresh("plaintext, closed token", 40), EncryptionContext: ec})
				fail(t, "Encrypt", err, down...)
				ops += 3
			}
			for _, id := range []string{gcm, kw} {
				_, err := s.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
				fail(t, "GenerateDataKey", err, down...)
				_, err = s.GenerateDataKeyWithoutPlaintext(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
				fail(t, "GenerateDataKeyWithoutPlaintext", err, down...)
				ops += 2
			}
			_, err := s.GenerateRandom(ctx, GenerateRandomInput{NumberOfBytes: 64})
			fail(t, "GenerateRandom", err, down...)
			_, err = s.Sign(ctx, SignInput{KeyId: ecc, Message: sc.fresh("message, closed token", 64), SigningAlgorithm: "ECDSA_SHA_256"})
			fail(t, "Sign", err, down...)
			_, err = s.Verify(ctx, VerifyInput{KeyId: ecc, Message: msgs[0], Signature: sigs[0], SigningAlgorithm: "ECDSA_SHA_256"})
			fail(t, "Verify", err, down...)
			_, err = s.GetPublicKey(ctx, KeyIDInput{KeyId: ecc})
			fail(t, "GetPublicKey", err, down...)
			_, err = s.CreateKey(ctx, CreateKeyInput{})
			fail(t, "CreateKey", err, down...)
			_, err = s.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: gcm})
			fail(t, "RotateKeyOnDemand", err, down...)
			ops += 6
			recs := auditLines(t, f.audit.String())[before:]
			if len(recs) != ops {
				t.Fatalf("%d operations on a closed token wrote %d audit records", ops, len(recs))
			}
			for _, r := range recs {
				if r["outcome"] != audit.Failed || !slices.Contains(down, Code(fmt.Sprint(r["error_type"]))) {
					t.Errorf("record of an operation on a closed token: %v", r)
				}
			}
		}},
	}
	for _, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			ph.run(t)
			if !strings.Contains(f.logs.String(), ph.logs) {
				t.Errorf("the logs lack %q:\n%s", ph.logs, f.logs.String())
			}
			if countLines(f.audit) == 0 {
				t.Error("the audit trail is empty")
			}
			sc.scanJSON(t, "the audit trail", f.audit.String())
			sc.scanJSON(t, "the logs", f.logs.String())
			sc.scanErrors(t)
		})
	}
	t.Logf("scanned %d secrets, %d errors, %d audit records, %d log lines",
		len(sc.secrets), len(sc.errs), countLines(f.audit), countLines(f.logs))
}

// TestSecretWrongPINNotInErrorOrLogs proves that a PIN the token refuses
// appears neither in the error hsm.Open returns (nor its causes) nor in
// the logs. Each PIN is long and unique to the run, so any occurrence is a
// leak; the token is a fresh one, so failed logins cannot lock the
// package's token.
func TestSecretWrongPINNotInErrorOrLogs(t *testing.T) {
	label, pin := longPINToken(t)
	tests := []struct {
		name string
		pin  string
	}{
		{"unrelated", "wrong-" + hex.EncodeToString(randomBytes(24))},
		{"the right PIN with a suffix", pin + hex.EncodeToString(randomBytes(16))},
		{"characters JSON escapes", "\"<&>\n" + hex.EncodeToString(randomBytes(24))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace, JSONFormat: true})
			tok, err := hsm.Open(t.Context(), hsm.Config{ModulePath: env.ModulePath, TokenLabel: label,
				PIN: hsm.NewPIN(tt.pin), Logger: logger})
			if err == nil {
				tok.Close()
				t.Fatal("hsm.Open accepted a wrong PIN")
			}
			if !errors.Is(err, hsm.ErrLogin) {
				t.Errorf("hsm.Open: %v, want ErrLogin", err)
			}
			sc := &secretScan{errs: []error{err}}
			sc.add("the wrong PIN", []byte(tt.pin))
			sc.add("the right PIN", []byte(pin))
			sc.scanErrors(t)
			sc.scanJSON(t, "the logs", logs.String())
		})
	}
	// The token still opens with its PIN: the wrong ones did not lock it.
	f := newFixtureOn(t, label, pin)
	if _, err := f.svc.GenerateRandom(admin(t), GenerateRandomInput{NumberOfBytes: 16}); err != nil {
		t.Fatal(err)
	}
}

// pinNear matches a PIN-like key or label followed closely by the value.
var pinNear = regexp.MustCompile(`(?i)pin\W{0,4}` + regexp.QuoteMeta(softhsm.TestPIN))

// TestSecretTestPINNotLogged checks the logs and audit trail of a run with
// the package token's correct PIN, softhsm.TestPIN ("1234"). That PIN is
// too short to scan for as a substring (it occurs in timestamps and
// IDs), so the check is structural, on the decoded JSON of every line:
// every field whose name mentions "pin" holds "[redacted]"; no string
// value is the PIN itself; and no value or key holds "pin" followed within
// four non-word characters by the PIN (pin=1234, "PIN: 1234", …). The run
// covers opening the token, successful and failing operations, and
// operations after the token closed, which the service logs as errors.
func TestSecretTestPINNotLogged(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	steps := []struct {
		name string
		call func() error
		ok   bool
	}{
		{"Encrypt", func() error {
			_, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte(softhsm.TestPIN)})
			return err
		}, true},
		{"Decrypt garbage", func() error {
			_, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: []byte("pin " + softhsm.TestPIN)})
			return err
		}, false},
		{"close the token", f.tok.Close, true},
		{"GenerateRandom on a closed token", func() error {
			_, err := f.svc.GenerateRandom(ctx, GenerateRandomInput{NumberOfBytes: 16})
			return err
		}, false},
		{"Encrypt on a closed token", func() error {
			_, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte("x")})
			return err
		}, false},
	}
	for _, st := range steps {
		if err := st.call(); (err == nil) != st.ok {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	if !strings.Contains(f.logs.String(), "HSM operation failed") {
		t.Fatalf("the logs lack the HSM failures:\n%s", f.logs.String())
	}
	for _, out := range []struct{ name, text string }{{"logs", f.logs.String()}, {"audit trail", f.audit.String()}} {
		var walk func(key string, v any)
		walk = func(key string, v any) {
			if strings.Contains(strings.ToLower(key), "pin") && v != "[redacted]" {
				t.Errorf("%s: field %q holds %v", out.name, key, v)
			}
			if pinNear.MatchString(key) {
				t.Errorf("%s: key %q holds the PIN", out.name, key)
			}
			switch v := v.(type) {
			case string:
				if v == softhsm.TestPIN || pinNear.MatchString(v) {
					t.Errorf("%s: field %q holds the PIN: %q", out.name, key, v)
				}
			case map[string]any:
				for k, e := range v {
					walk(k, e)
				}
			case []any:
				for _, e := range v {
					walk(key, e)
				}
			}
		}
		for _, line := range auditLines(t, out.text) {
			walk("", line)
		}
	}
}

// flattenAudit lifts the fields of an audit record, which hclog writes as
// the line's "audit" object, to the top of the decoded line.
func flattenAudit(m map[string]any) {
	if rec, ok := m["audit"].(map[string]any); ok {
		delete(m, "audit")
		for k, v := range rec {
			m[k] = v
		}
	}
}

// fullDisk is an audit writer that fails, as a full disk does, while full
// is set, or for the lines refuse picks when it is set, and otherwise
// writes to b.
type fullDisk struct {
	full   atomic.Bool
	refuse func(line []byte) bool
	b      syncBuffer
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if d.full.Load() || d.refuse != nil && d.refuse(p) {
		return 0, errors.New("write audit.log: no space left on device")
	}
	return d.b.Write(p)
}

// TestAuditOfNewSecrets proves that an operation making a secret writes a
// started record before it commits: when that record cannot be written
// nothing changes (the old secret still signs, no principal or credential
// appears), and when only the final record is lost the secret is returned
// and works, rather than being committed and withheld, which would lock a
// rotated principal out.
func TestAuditOfNewSecrets(t *testing.T) {
	finalOnly := func(line []byte) bool { return bytes.Contains(line, []byte(`"outcome":"allowed"`)) }
	disk := &fullDisk{}
	f := newFixture(t, "", func(c *Config) { c.Audit = audit.New(disk) })
	ctx := as(t, "AKIAOPERATOR000001", policy.Statement{Effect: "Allow", Actions: []string{"kms:*", "hsmkms:*"}, Resources: []string{"*"}})
	app, err := f.svc.CreatePrincipal(ctx, CreatePrincipalInput{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CreateXKSStore(ctx, XKSStoreInput{Prefix: "ext"}); err != nil {
		t.Fatal(err)
	}
	works := func(id, secret string) bool {
		creds, err := f.svc.Credentials(ctx, id)
		return err == nil && creds.Secret == secret
	}
	xksWorks := func(id, secret string) bool {
		creds, err := f.svc.XKSCredentials(ctx, "ext", id)
		return err == nil && creds.Secret == secret
	}
	principals := func() int {
		out, err := f.svc.ListPrincipals(ctx, ListInput{})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Principals)
	}
	xksCredentials := func() int {
		out, err := f.svc.ListXKSStores(ctx, ListXKSStoresInput{})
		if err != nil || len(out.Stores) != 1 {
			t.Fatalf("ListXKSStores = %+v, %v; want the one store", out, err)
		}
		return len(out.Stores[0].Credentials)
	}

	t.Run("no record, no change", func(t *testing.T) {
		before, beforeXKS := principals(), xksCredentials()
		disk.full.Store(true)
		defer disk.full.Store(false)
		if _, err := f.svc.RotatePrincipalSecret(ctx, RotatePrincipalSecretInput{AccessKeyId: app.AccessKeyId}); !errors.Is(err, ErrAuditUnwritten) {
			t.Errorf("RotatePrincipalSecret: %v, want the unwritten record's error", err)
		}
		if !works(app.AccessKeyId, app.SecretAccessKey) {
			t.Error("the old secret no longer works after a rotation that failed")
		}
		if _, err := f.svc.CreatePrincipal(ctx, CreatePrincipalInput{Name: "lost"}); !errors.Is(err, ErrAuditUnwritten) {
			t.Errorf("CreatePrincipal: %v, want the unwritten record's error", err)
		}
		if _, err := f.svc.AddXKSCredential(ctx, XKSStoreInput{Prefix: "ext"}); !errors.Is(err, ErrAuditUnwritten) {
			t.Errorf("AddXKSCredential: %v, want the unwritten record's error", err)
		}
		disk.full.Store(false)
		if n, m := principals(), xksCredentials(); n != before || m != beforeXKS {
			t.Errorf("%d principals and %d XKS credentials, want %d and %d: a failed operation changed the store", n, m, before, beforeXKS)
		}
	})

	t.Run("refused before the started record", func(t *testing.T) {
		if _, err := f.svc.RotatePrincipalSecret(ctx, RotatePrincipalSecretInput{AccessKeyId: "AKIANOSUCHPRINCIPAL1"}); CodeOf(err) != CodeNotFound {
			t.Errorf("RotatePrincipalSecret of no principal: %v, want NotFoundException", err)
		}
		if _, err := f.svc.AddXKSCredential(ctx, XKSStoreInput{Prefix: "none"}); CodeOf(err) != CodeNotFound {
			t.Errorf("AddXKSCredential to no store: %v, want NotFoundException", err)
		}
		for n := xksCredentials(); n < MaxXKSCredentials; n++ {
			if _, err := f.svc.AddXKSCredential(ctx, XKSStoreInput{Prefix: "ext"}); err != nil {
				t.Fatal(err)
			}
		}
		before := strings.Count(disk.b.String(), `"outcome":"started"`)
		if _, err := f.svc.AddXKSCredential(ctx, XKSStoreInput{Prefix: "ext"}); CodeOf(err) != CodeLimitExceeded {
			t.Errorf("AddXKSCredential to a full store: %v, want LimitExceededException", err)
		}
		if n := strings.Count(disk.b.String(), `"outcome":"started"`); n != before {
			t.Errorf("a refused AddXKSCredential wrote %d started records", n-before)
		}
		for _, id := range []string{"AKIANOSUCHPRINCIPAL1", "none"} {
			if strings.Contains(disk.b.String(), `"outcome":"started","subject":"`+id+`"`) {
				t.Errorf("a refused operation on %s wrote a started record", id)
			}
		}
		// Make room again for the next subtest.
		out, err := f.svc.ListXKSStores(ctx, ListXKSStoresInput{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range out.Stores[0].Credentials[1:] {
			if err := f.svc.RemoveXKSCredential(ctx, XKSCredentialInput{Prefix: "ext", AccessKeyID: c.AccessKeyID}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("final record lost, secret kept", func(t *testing.T) {
		disk.refuse = finalOnly
		rot, err := f.svc.RotatePrincipalSecret(ctx, RotatePrincipalSecretInput{AccessKeyId: app.AccessKeyId})
		if err != nil || !works(app.AccessKeyId, rot.SecretAccessKey) {
			t.Errorf("RotatePrincipalSecret with its final record lost: %v; want its new secret returned and working", err)
		}
		made, err := f.svc.CreatePrincipal(ctx, CreatePrincipalInput{Name: "kept"})
		if err != nil || !works(made.AccessKeyId, made.SecretAccessKey) {
			t.Errorf("CreatePrincipal with its final record lost: %v; want its secret returned and working", err)
		}
		cred, err := f.svc.AddXKSCredential(ctx, XKSStoreInput{Prefix: "ext"})
		if err != nil || !xksWorks(cred.Credential.AccessKeyID, cred.Credential.RawSecretAccessKey) {
			t.Errorf("AddXKSCredential with its final record lost: %v; want its secret returned and working", err)
		}
		disk.refuse = nil
		trail := disk.b.String()
		for _, want := range []struct{ action, subject string }{
			{"hsmkms:RotatePrincipalSecret", app.AccessKeyId},
			{"hsmkms:CreatePrincipal", made.AccessKeyId},
			{"hsmkms:UpdateXksStore", "ext"},
		} {
			re := regexp.MustCompile(`"action":"` + regexp.QuoteMeta(want.action) + `".*"outcome":"started".*"subject":"` + want.subject + `"`)
			if !re.MatchString(trail) {
				t.Errorf("no started record of %s on %s in the trail:\n%s", want.action, want.subject, trail)
			}
		}
		for _, secret := range []string{rot.SecretAccessKey, made.SecretAccessKey, cred.Credential.RawSecretAccessKey} {
			if secret != "" && strings.Contains(trail, secret) {
				t.Error("a new secret is in the audit trail")
			}
		}
	})
}

// TestAuditWriteFailureFailsClosed proves that an operation whose audit
// record cannot be written answers KMSInternalException and returns
// nothing it made (no plaintext, no data key, no ciphertext); that an
// operation failing anyway keeps its own error; that the log says so once
// when writes start failing and once when they work again; and that
// operations succeed again once the writer does.
func TestAuditWriteFailureFailsClosed(t *testing.T) {
	disk := &fullDisk{}
	f := newFixture(t, "", func(c *Config) { c.Audit = audit.New(disk) })
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	dk, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
	if err != nil {
		t.Fatal(err)
	}

	disk.full.Store(true)
	unwritten := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrAuditUnwritten) || CodeOf(err) != CodeInternal {
			t.Errorf("%s with the audit trail failing: %v, want KMSInternalException for the unwritten record", what, err)
		}
	}
	gen, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
	unwritten("GenerateDataKey", err)
	if gen.Plaintext != nil || gen.CiphertextBlob != nil {
		t.Error("GenerateDataKey returned a data key whose record was lost")
	}
	dec, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: dk.CiphertextBlob})
	unwritten("Decrypt", err)
	if dec.Plaintext != nil {
		t.Error("Decrypt returned a plaintext whose record was lost")
	}
	enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte("secret")})
	unwritten("Encrypt", err)
	if enc.CiphertextBlob != nil {
		t.Error("Encrypt returned a ciphertext whose record was lost")
	}
	bad := bytes.Clone(dk.CiphertextBlob)
	bad[len(bad)-1] ^= 1
	if _, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: bad}); CodeOf(err) != CodeInvalidCipher {
		t.Errorf("Decrypt of a tampered blob with the audit trail failing: %v, want its own InvalidCiphertextException", err)
	}
	if n := strings.Count(f.logs.String(), "writing the audit trail failed"); n != 1 {
		t.Errorf("the log says %d times that the audit trail fails, want once:\n%s", n, f.logs)
	}

	disk.full.Store(false)
	for range 2 {
		out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: dk.CiphertextBlob})
		if err != nil || !bytes.Equal(out.Plaintext, dk.Plaintext) {
			t.Fatalf("Decrypt once the audit trail works again: %v", err)
		}
	}
	if n := len(regexp.MustCompile(`"@message":"the audit trail is written again".*"records_lost":4[,}]`).FindAllString(f.logs.String(), -1)); n != 1 {
		t.Errorf("the log says %d times that the audit trail works again with 4 records lost, want once:\n%s", n, f.logs)
	}
	if !strings.Contains(disk.b.String(), `"action":"kms:Decrypt"`) {
		t.Error("no Decrypt record once the audit trail works again")
	}
}

// TestAuditFailureLogConcurrent proves that with many callers and an audit
// trail that fails on and off, the log's "failed" and "written again"
// alternate, and the records_lost they report add up to exactly the
// records whose callers were told theirs was lost.
func TestAuditFailureLogConcurrent(t *testing.T) {
	var writes atomic.Int64
	disk := &fullDisk{refuse: func([]byte) bool { return writes.Add(1)/7%2 == 1 }} // runs of 7 writes
	f := newFixture(t, "", func(c *Config) { c.Audit = audit.New(disk) })
	var lost atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				if err := f.svc.writeAudit(audit.Record{RequestID: fmt.Sprintf("g%d-%d", g, i), Outcome: audit.Allowed}); err != nil {
					lost.Add(1)
				}
			}
		})
	}
	wg.Wait()
	disk.refuse = nil
	if err := f.svc.writeAudit(audit.Record{RequestID: "last", Outcome: audit.Allowed}); err != nil {
		t.Fatal(err)
	}
	var reported int64
	failing := false
	for _, line := range auditLines(t, f.logs.String()) {
		switch line["@message"] {
		case "writing the audit trail failed: operations answer KMSInternalException until it works again":
			if failing {
				t.Fatal("the log says twice in a row that the audit trail fails")
			}
			failing = true
		case "the audit trail is written again":
			if !failing {
				t.Fatal("the log says the audit trail is written again without saying it failed")
			}
			failing = false
			n, err := line["records_lost"].(json.Number).Int64()
			if err != nil {
				t.Fatalf("records_lost %v: %v", line["records_lost"], err)
			}
			reported += n
		}
	}
	if lost.Load() == 0 || reported != lost.Load() {
		t.Fatalf("the log reports %d records lost, callers were told of %d", reported, lost.Load())
	}
}

// TestRefusalCountsLostAreLogged proves that a refusal record lost to a
// failing audit trail does not lose the failures it stood for besides
// itself: the recovery line counts them as suppressed_failures_lost.
func TestRefusalCountsLostAreLogged(t *testing.T) {
	disk := &fullDisk{}
	f := newFixture(t, "", func(c *Config) { c.Audit = audit.New(disk) })
	disk.full.Store(true)
	f.svc.RecordRefusal(audit.Record{Action: "kms:Decrypt", Outcome: audit.Denied, Suppressed: 3, SuppressedID: 4, SuppressedAll: 5})
	disk.full.Store(false)
	f.svc.RecordRefusal(audit.Record{Action: "kms:Decrypt", Outcome: audit.Denied})
	if !regexp.MustCompile(`"@message":"the audit trail is written again".*"records_lost":1,"suppressed_failures_lost":12[,}]`).MatchString(f.logs.String()) {
		t.Fatalf("the recovery line does not count the lost record and its 12 failures:\n%s", f.logs)
	}
}
