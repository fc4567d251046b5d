package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// Key specs, usages and the algorithms each allows.
const (
	SpecSymmetric = "SYMMETRIC_DEFAULT"
	UsageEncrypt  = "ENCRYPT_DECRYPT"
	UsageSign     = "SIGN_VERIFY"
	UsageMAC      = "GENERATE_VERIFY_MAC"
	// mechanismTag lets clients that cannot send HsmkmsMechanism choose the
	// data key mechanism with a tag.
	mechanismTag = "hsmkms:mechanism"
)

// keySpec says what the token makes for a KeySpec, and what keys of it do.
type keySpec struct {
	pair hsm.KeySpec      // key pairs; "" for secret keys
	mac  hsm.MACAlgorithm // HMAC keys; "" for the others
	// usages are the KeyUsages keys of the spec may have, the default
	// (AWS KMS's ENCRYPT_DECRYPT where allowed) first.
	usages     []string
	signing    []string // for SIGN_VERIFY keys
	encryption []string // for ENCRYPT_DECRYPT keys
}

var (
	rsaSigning    = []string{string(hsm.RSAPSSSHA256), string(hsm.RSAPKCS1SHA256)}
	rsaEncryption = []string{string(hsm.RSAOAEPSHA1), string(hsm.RSAOAEPSHA256)}
	rsaUsages     = []string{UsageEncrypt, UsageSign}
)

var keySpecs = map[string]keySpec{
	SpecSymmetric:     {usages: []string{UsageEncrypt}, encryption: []string{SpecSymmetric}},
	"ECC_NIST_P256":   {pair: hsm.ECP256, usages: []string{UsageSign}, signing: []string{string(hsm.ECDSASHA256)}},
	"ECC_NIST_P384":   {pair: hsm.ECP384, usages: []string{UsageSign}, signing: []string{string(hsm.ECDSASHA384)}},
	"ECC_NIST_P521":   {pair: hsm.ECP521, usages: []string{UsageSign}, signing: []string{string(hsm.ECDSASHA512)}},
	"ECC_SECG_P256K1": {pair: hsm.ECSecp256k1, usages: []string{UsageSign}, signing: []string{string(hsm.ECDSASHA256)}},
	"RSA_2048":        {pair: hsm.RSA2048, usages: rsaUsages, signing: rsaSigning, encryption: rsaEncryption},
	"RSA_3072":        {pair: hsm.RSA3072, usages: rsaUsages, signing: rsaSigning, encryption: rsaEncryption},
	"RSA_4096":        {pair: hsm.RSA4096, usages: rsaUsages, signing: rsaSigning, encryption: rsaEncryption},
	"HMAC_224":        {mac: hsm.HMACSHA224, usages: []string{UsageMAC}},
	"HMAC_256":        {mac: hsm.HMACSHA256, usages: []string{UsageMAC}},
	"HMAC_384":        {mac: hsm.HMACSHA384, usages: []string{UsageMAC}},
	"HMAC_512":        {mac: hsm.HMACSHA512, usages: []string{UsageMAC}},
}

// algorithms returns the encryption, signing and MAC algorithms of a key
// of the spec with usage: only those of its usage, as DescribeKey shows.
func (ks keySpec) algorithms(usage string) (encryption, signing, mac []string) {
	switch usage {
	case UsageEncrypt:
		return ks.encryption, nil, nil
	case UsageSign:
		return nil, ks.signing, nil
	case UsageMAC:
		return nil, nil, []string{string(ks.mac)}
	}
	return nil, nil, nil
}

// asymmetric reports whether keys of the spec are key pairs.
func (ks keySpec) asymmetric() bool { return ks.pair != "" }

// originValues is AWS KMS's OriginType enum, in its order: a value outside
// it is a ValidationException, one inside it that hsmkms does not offer
// (AWS_CLOUDHSM, EXTERNAL_KEY_STORE) an UnsupportedOperationException.
var originValues = []string{originAWS, originExternal, "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"}

// keySpecValues is AWS KMS's KeySpec enum, in its order: a value outside
// it is a ValidationException, one inside it that keySpecs lacks (SM2,
// ML-DSA, Ed25519, ML-KEM) an UnsupportedOperationException.
var keySpecValues = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
	"ECC_SECG_P256K1", SpecSymmetric, "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2", "ML_DSA_44", "ML_DSA_65",
	"ML_DSA_87", "ECC_NIST_EDWARDS25519", "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024"}

// keyUsageValues is AWS KMS's KeyUsageType enum, in its order.
var keyUsageValues = []string{UsageSign, UsageEncrypt, UsageMAC, usageKeyAgreement, "ENCAPSULATE_DECAPSULATE"}

// usageKeyAgreement is the usage AWS KMS gives NIST elliptic curve keys
// for DeriveSharedSecret, which hsmkms does not offer.
const usageKeyAgreement = "KEY_AGREEMENT"

// Limits on key metadata, as AWS KMS has them, in characters.
const (
	maxDescription = 8192
	maxTags        = 50
	maxTagKey      = 128
	maxTagValue    = 256
)

// CreateKey makes a key and its first version on the token.
func (s *Service) CreateKey(ctx context.Context, in CreateKeyInput) (out KeyOutput, err error) {
	o := s.begin(ctx, "kms:CreateKey")
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	k, err := s.newKeyRecord(in)
	if err != nil {
		return out, err
	}
	o.rec.KeyID = k.ID
	if k.Origin == originExternal {
		// No material until ImportKeyMaterial brings it.
		err := s.store.Update(ctx, func(tx store.Tx) error { _, err := tx.PutKey(k); return err })
		if err != nil {
			return out, storeErr(err)
		}
		return KeyOutput{KeyMetadata: s.metadata(k)}, nil
	}
	if k, err = s.createKey(ctx, k); err != nil {
		return out, err
	}
	o.rec.KeyVersion = 1
	return KeyOutput{KeyMetadata: s.metadata(k)}, nil
}

// newKeyRecord validates a CreateKey request into a key record.
func (s *Service) newKeyRecord(in CreateKeyInput) (store.Key, error) {
	spec := in.KeySpec
	if spec == "" {
		spec = in.CustomerMasterKeySpec
	}
	if spec == "" {
		spec = SpecSymmetric
	}
	// AWS checks the request's shape (lengths, enums) before its meaning.
	if tooLong(in.Description, maxDescription) {
		return store.Key{}, lengthErr("description", maxDescription)
	}
	if in.Origin != "" && !slices.Contains(originValues, in.Origin) {
		return store.Key{}, enumErr("origin", in.Origin, originValues)
	}
	if err := checkTags(in.Tags); err != nil {
		return store.Key{}, err
	}
	if !slices.Contains(keySpecValues, spec) {
		member := "keySpec"
		if in.KeySpec == "" {
			member = "customerMasterKeySpec"
		}
		return store.Key{}, enumErr(member, spec, keySpecValues)
	}
	if in.KeyUsage != "" && !slices.Contains(keyUsageValues, in.KeyUsage) {
		return store.Key{}, enumErr("keyUsage", in.KeyUsage, keyUsageValues)
	}
	ks, ok := keySpecs[spec]
	if !ok {
		return store.Key{}, newErr(CodeUnsupported, "KeySpec %s is not supported; use one of %s", spec, specNames())
	}
	usage := in.KeyUsage
	if usage == "" {
		usage = ks.usages[0]
	}
	if !slices.Contains(ks.usages, usage) {
		if usage == usageKeyAgreement && strings.HasPrefix(spec, "ECC_NIST_P") {
			return store.Key{}, newErr(CodeUnsupported, "KeyUsage KEY_AGREEMENT is not supported: hsmkms does not offer DeriveSharedSecret")
		}
		return store.Key{}, newErr(CodeValidation, "KeyUsage %s is not valid for KeySpec %s", usage, spec)
	}
	switch {
	case in.Origin == originExternal:
		if why := importable(spec, ks); why != "" {
			return store.Key{}, newErr(CodeUnsupported, "%s", why)
		}
	case in.Origin != "" && in.Origin != originAWS:
		return store.Key{}, newErr(CodeUnsupported, "Origin %s is not supported: hsmkms makes key material inside its HSM, or imports it (EXTERNAL)", in.Origin)
	case in.MultiRegion:
		return store.Key{}, newErr(CodeUnsupported, "multi-Region keys are not supported")
	case in.Policy != "":
		return store.Key{}, newErr(CodeUnsupported, "key policies are not supported: access is granted by principals' policies")
	}
	tags, err := validTags(in.Tags, nil)
	if err != nil {
		return store.Key{}, err
	}
	mech, err := s.chooseMechanism(ks, in.HsmkmsMechanism, tags[mechanismTag])
	if err != nil {
		return store.Key{}, err
	}
	k := store.Key{
		ID:          uuid.NewString(),
		Spec:        spec,
		Usage:       usage,
		Mechanism:   mech,
		Description: in.Description,
		Tags:        tags,
		State:       store.KeyCreating,
		CreatedAt:   s.now().UTC(),
	}
	if in.Origin == originExternal {
		if spec == SpecSymmetric && mech != ciphertext.AESGCM.String() {
			return store.Key{}, newErr(CodeUnsupported, "imported key material is used with aes-gcm only, not %s", mech)
		}
		k.Origin, k.State = originExternal, store.KeyPendingImport
	}
	return k, nil
}

func specNames() string {
	return strings.Join(slices.Sorted(maps.Keys(keySpecs)), ", ")
}

// chooseMechanism picks how a symmetric key protects data keys: as asked,
// or else aes-gcm when the token has it and the portable aes-cbc-hmac when
// it has not. A mechanism the token lacks is refused here, not at the
// first data key.
func (s *Service) chooseMechanism(ks keySpec, field, tag string) (string, error) {
	m := field
	if m == "" {
		m = tag
	}
	if ks.pair != "" || ks.mac != "" {
		if m != "" {
			return "", newErr(CodeValidation, "HsmkmsMechanism applies to SYMMETRIC_DEFAULT keys only")
		}
		return "", nil
	}
	caps, known := s.capabilities()
	if m == "" {
		m = ciphertext.AESGCM.String()
		if known && !caps.AESGCM {
			m = ciphertext.AESCBCHMAC.String()
		}
	}
	if _, err := ciphertext.ParseMechanism(m); err != nil {
		return "", newErr(CodeValidation, "HsmkmsMechanism must be aes-gcm, aes-kw or aes-cbc-hmac, not %q", m)
	}
	if known {
		if lacks := mechanismLacks(caps, m); lacks != "" {
			return "", newErr(CodeUnsupported, "the token cannot make %s keys: it lacks %s", m, lacks)
		}
	}
	return m, nil
}

// capabilities returns the token's capabilities when the HSM reports them.
func (s *Service) capabilities() (hsm.Capabilities, bool) {
	ti, ok := s.cfg.HSM.(interface{ Capabilities() hsm.Capabilities })
	if !ok {
		return hsm.Capabilities{}, false
	}
	return ti.Capabilities(), true
}

// mechanismLacks names what the token lacks for keys of mechanism m ("" if
// nothing). aes-kw keys also Encrypt with aes-gcm.
func mechanismLacks(caps hsm.Capabilities, m string) string {
	feature := map[string][]string{
		"aes-gcm": {"aes-gcm"}, "aes-kw": {"aes-kw", "aes-gcm"}, "aes-cbc-hmac": {"aes-cbc-hmac"},
	}[m]
	var lacks []string
	for _, f := range caps.Features() {
		if slices.Contains(feature, f.Name) && !f.Supported {
			lacks = append(lacks, f.Lacks)
		}
	}
	return strings.Join(lacks, ", ")
}

// validTags merges tags into existing (nil for none), checking AWS's limits.
func validTags(tags []Tag, existing map[string]string) (map[string]string, error) {
	out := maps.Clone(existing)
	if out == nil {
		out = map[string]string{}
	}
	if err := checkTags(tags); err != nil {
		return nil, err
	}
	for _, t := range tags {
		out[t.TagKey] = t.TagValue
	}
	if len(out) > maxTags {
		return nil, newErr(CodeLimitExceeded, "a key has at most %d tags", maxTags)
	}
	return out, nil
}

// checkTags holds each tag to AWS's length constraints, in characters,
// naming the first that fails as AWS does (tags.N.member.tagKey, N from 1).
func checkTags(tags []Tag) error {
	for i, t := range tags {
		switch {
		case t.TagKey == "":
			return newErr(CodeValidation, "1 validation error detected: Value at 'tags.%d.member.tagKey' failed to satisfy constraint: Member must have length greater than or equal to 1", i+1)
		case tooLong(t.TagKey, maxTagKey):
			return lengthErr(fmt.Sprintf("tags.%d.member.tagKey", i+1), maxTagKey)
		case tooLong(t.TagValue, maxTagValue):
			return lengthErr(fmt.Sprintf("tags.%d.member.tagValue", i+1), maxTagValue)
		}
	}
	return nil
}

// createKey records k as Creating with a pending first version, makes the
// key material on the token, then makes both visible. A failure on the
// token turns the record into a tombstone; a crash leaves it Creating for
// Reconcile to settle.
func (s *Service) createKey(ctx context.Context, k store.Key) (store.Key, error) {
	v, err := s.newVersion(k.ID, 1, "")
	if err != nil {
		return k, err
	}
	k.LatestVersion = 1
	var rev uint64
	err = s.store.Update(ctx, func(tx store.Tx) error {
		// k stays as it came: Update may run this again after a rollback
		// (PostgreSQL's serialization failures), and k.Revision set by a
		// first run made the second's PutKey a replacement of a record
		// that is not there (found by review).
		var err error
		if rev, err = tx.PutKey(k); err != nil {
			return err
		}
		return tx.PutVersion(v)
	})
	if err != nil {
		return k, storeErr(err)
	}
	k.Revision = rev
	if err := s.makeMaterial(ctx, k, v); err != nil {
		s.abandonKey(ctx, k.ID)
		return k, err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		return s.activate(tx, k.ID, v.Number, v.Owner)
	})
	if err != nil {
		return k, storeErr(err)
	}
	return s.keyRecord(ctx, k.ID)
}

// newVersion returns a pending version with a fresh CKA_ID.
func (s *Service) newVersion(keyID string, n uint32, rotationType string) (store.Version, error) {
	oid, err := hsm.NewObjectID()
	if err != nil {
		return store.Version{}, wrapErr(CodeInternal, err, "no randomness for a key material ID")
	}
	return s.claim(store.Version{KeyID: keyID, Number: n, ObjectID: oid, State: store.VersionPending,
		CreatedAt: s.now().UTC(), RotationType: rotationType}), nil
}

func versionLabel(keyID string, n uint32) string { return fmt.Sprintf("hsmkms/%s/v%d", keyID, n) }

// makeMaterial creates a version's object on the token, within half of
// the version's claim, so that no other replica settles the version while
// this one may still be making its object.
func (s *Service) makeMaterial(ctx context.Context, k store.Key, v store.Version) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ClaimTTL/2)
	defer cancel()
	label := versionLabel(k.ID, v.Number)
	ks := keySpecs[k.Spec]
	switch {
	case ks.pair != "" && k.Usage == UsageEncrypt:
		_, err := s.hsm.CreateEncryptionKeyPair(ctx, v.ObjectID, label, ks.pair)
		return s.hsmErr(err, k.ID, v.Number)
	case ks.pair != "":
		_, err := s.hsm.CreateKeyPair(ctx, v.ObjectID, label, ks.pair)
		return s.hsmErr(err, k.ID, v.Number)
	case ks.mac != "":
		return s.hsmErr(s.hsm.CreateHMACKey(ctx, v.ObjectID, label, ks.mac), k.ID, v.Number)
	}
	if k.Mechanism == ciphertext.AESCBCHMAC.String() {
		return s.hsmErr(s.hsm.CreatePortableKey(ctx, v.ObjectID, label), k.ID, v.Number)
	}
	return s.hsmErr(s.hsm.CreateMasterKey(ctx, v.ObjectID, label), k.ID, v.Number)
}

// activate marks a pending version active and makes it current when it is
// the newest; a Creating key becomes Enabled. owner is the claim the
// caller made the version's object under: a version claimed since by
// another (another replica, or this one's Reconcile) is refused.
func (s *Service) activate(tx store.Tx, keyID string, n uint32, owner string) error {
	k, err := tx.Key(keyID)
	if err != nil {
		return err
	}
	if k.State == store.KeyDeleted {
		// Its deletion finished while this replica made the version's
		// object (Reconcile settling an abandoned version): the caller
		// destroys the object instead.
		return fmt.Errorf("key %s version %d: %w", keyID, n, errKeyDeleted)
	}
	v, err := tx.Version(keyID, n)
	if err != nil {
		return err
	}
	if v.State == store.VersionPending {
		if v.Owner != owner {
			// Another claim took the version over: this one ran out
			// while its holder made the token object (found by review:
			// compared by replica, a request's activation passed after
			// its own replica's Reconcile had taken the version over and
			// was destroying the object it had not found).
			return fmt.Errorf("key %s version %d: settled by %s meanwhile: %w", keyID, n, v.Owner, store.ErrConflict)
		}
		v.State, v.Owner, v.LeaseUntil = store.VersionActive, "", time.Time{}
		if err := tx.PutVersion(v); err != nil {
			return err
		}
	}
	if k.State == store.KeyCreating {
		k.State = store.KeyEnabled
	}
	if n > k.CurrentVersion {
		k.CurrentVersion = n
	}
	_, err = tx.PutKey(k)
	return err
}

// errKeyDeleted is what activate returns for a key deleted meanwhile.
var errKeyDeleted = errors.New("service: the key was deleted meanwhile")

// abandonKey turns a key whose material could not be made into a
// tombstone, so that its ID is never used again. A key no longer being
// created is left as it is: only a Creating key is anyone's to abandon.
func (s *Service) abandonKey(ctx context.Context, id string) {
	err := s.store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		k, err := tx.Key(id)
		if err != nil || k.State != store.KeyCreating {
			return err
		}
		vs, err := tx.Versions(id)
		if err != nil {
			return err
		}
		for _, v := range vs {
			if err := tx.DeleteVersion(id, v.Number); err != nil {
				return err
			}
		}
		k.State, k.DeletedAt, k.CurrentVersion = store.KeyDeleted, s.now().UTC(), 0
		_, err = tx.PutKey(k)
		return err
	})
	if err != nil {
		s.log.Error("abandoning a key whose creation failed; Reconcile will retry", "key_id", id, "error", err)
	}
}

// keyRecord reads a key by ID.
func (s *Service) keyRecord(ctx context.Context, id string) (k store.Key, err error) {
	err = s.store.View(ctx, func(tx store.Tx) error {
		k, err = tx.Key(id)
		return err
	})
	return k, storeErrOrNil(err)
}

func storeErrOrNil(err error) error {
	if err == nil {
		return nil
	}
	return storeErr(err)
}

// metadata describes k as AWS KMS does.
func (s *Service) metadata(k store.Key) KeyMetadata {
	enc, sign, mac := keySpecs[k.Spec].algorithms(k.Usage)
	m := KeyMetadata{
		AWSAccountId:          s.cfg.Account,
		KeyId:                 k.ID,
		Arn:                   s.keyARN(k.ID),
		CreationDate:          epoch(k.CreatedAt),
		Enabled:               k.State == store.KeyEnabled,
		Description:           k.Description,
		KeyUsage:              k.Usage,
		KeyState:              string(k.State),
		Origin:                originAWS,
		KeyManager:            "CUSTOMER",
		CustomerMasterKeySpec: k.Spec,
		KeySpec:               k.Spec,
		EncryptionAlgorithms:  enc,
		SigningAlgorithms:     sign,
		MacAlgorithms:         mac,
		HsmkmsMechanism:       k.Mechanism,
	}
	if k.Origin == originExternal {
		m.Origin, m.ExpirationModel = originExternal, k.ExpirationModel
		if k.ExpirationModel == expires {
			m.ValidTo = epoch(k.ValidTo)
		}
		if s.expired(k) && k.State != store.KeyPendingDeletion {
			m.KeyState, m.Enabled = string(store.KeyPendingImport), false
		}
	}
	if k.State == store.KeyPendingDeletion {
		m.DeletionDate = epoch(k.DeletionDate)
		m.PendingDeletionWindowInDays = k.DeletionWindowDays
	}
	if k.CurrentVersion > 0 {
		m.CurrentKeyMaterialId = materialID(k.CurrentVersion)
	}
	return m
}

// materialID names a version in responses, in place of AWS's opaque IDs.
func materialID(n uint32) string { return "v" + strconv.FormatUint(uint64(n), 10) }

// DescribeKey returns a key's metadata.
func (s *Service) DescribeKey(ctx context.Context, in KeyIDInput) (out KeyOutput, err error) {
	o := s.begin(ctx, "kms:DescribeKey")
	defer endWith(o, &out, &err)
	k, err := s.authorizedKey(ctx, o, in.KeyId)
	if err != nil {
		return out, err
	}
	return KeyOutput{KeyMetadata: s.metadata(k)}, nil
}

// authorizedKey resolves a key identifier and authorises the operation's
// action on the key.
func (s *Service) authorizedKey(ctx context.Context, o *op, ident string) (store.Key, error) {
	k, alias, err := s.lookup(ctx, "keyId", ident)
	if err != nil {
		return k, err
	}
	return k, o.authorize(&k, alias)
}

// lookup resolves a key identifier in a read transaction.
func (s *Service) lookup(ctx context.Context, field, ident string) (k store.Key, alias string, err error) {
	ref, err := s.parseKeyRef(field, ident)
	if err != nil {
		return k, "", err
	}
	err = s.store.View(ctx, func(tx store.Tx) error {
		k, err = s.resolve(tx, ref)
		return err
	})
	return k, ref.alias, err
}

// Pagination limits, as AWS KMS has them.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// page cuts a list read with limit+1 entries to limit, and says whether
// more follow and from which marker.
func page[T any](items []T, limit int, marker func(T) string) ([]T, bool, string) {
	if len(items) <= limit {
		return items, false, ""
	}
	return items[:limit], true, marker(items[limit-1])
}

func pageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return defaultLimit, nil
	case limit < 1 || limit > maxLimit:
		return 0, newErr(CodeValidation, "1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and %d", limit, maxLimit)
	}
	return limit, nil
}

// ListKeys lists visible keys by ID, a page at a time.
func (s *Service) ListKeys(ctx context.Context, in ListInput) (out ListKeysOutput, err error) {
	o := s.begin(ctx, "kms:ListKeys")
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return out, err
	}
	if in.Marker != "" {
		// Only the form NextMarker has: uuid.Parse also takes {…},
		// urn:uuid: and 32 bare hex digits, which sort elsewhere.
		if !isKeyID(in.Marker) {
			return out, newErr(CodeInvalidMarker, "Marker is not valid")
		}
	}
	err = s.store.View(ctx, func(tx store.Tx) error {
		out.Keys = []KeyListEntry{}
		after := in.Marker
		for len(out.Keys) <= limit {
			page, err := tx.Keys(after, limit+1)
			if err != nil || len(page) == 0 {
				return err
			}
			for _, k := range page {
				after = k.ID
				if k.State != store.KeyCreating && k.State != store.KeyDeleted {
					out.Keys = append(out.Keys, KeyListEntry{KeyId: k.ID, KeyArn: s.keyARN(k.ID)})
				}
			}
		}
		return nil
	})
	if err != nil {
		return out, storeErr(err)
	}
	out.Keys, out.Truncated, out.NextMarker = page(out.Keys, limit, func(e KeyListEntry) string { return e.KeyId })
	return out, nil
}

// EnableKey makes a disabled key usable again.
func (s *Service) EnableKey(ctx context.Context, in KeyIDInput) error {
	return s.setEnabled(ctx, "kms:EnableKey", in.KeyId, store.KeyEnabled)
}

// DisableKey stops a key from being used until it is enabled again.
func (s *Service) DisableKey(ctx context.Context, in KeyIDInput) error {
	return s.setEnabled(ctx, "kms:DisableKey", in.KeyId, store.KeyDisabled)
}

func (s *Service) setEnabled(ctx context.Context, action, ident string, to store.KeyState) (err error) {
	o := s.begin(ctx, action)
	defer func() { err = o.end(err) }()
	return s.updateKey(ctx, o, ident, func(k *store.Key) error {
		switch k.State {
		case store.KeyPendingDeletion:
			return newErr(CodeInvalidState, "%s is pending deletion.", s.keyARN(k.ID))
		case store.KeyPendingImport:
			return newErr(CodeInvalidState, "%s is pending import.", s.keyARN(k.ID))
		}
		if noMaterial(*k) {
			return newErr(CodeInvalidState, "%s is pending import.", s.keyARN(k.ID))
		}
		k.State = to
		return nil
	})
}

// updateKey resolves, authorises and changes a key in one transaction;
// the revision check makes concurrent changes safe on a shared store.
func (s *Service) updateKey(ctx context.Context, o *op, ident string, change func(*store.Key) error) error {
	ref, err := s.parseKeyRef("keyId", ident)
	if err != nil {
		return err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		k, err := s.resolve(tx, ref)
		if err != nil {
			return err
		}
		if err := o.authorize(&k, ref.alias); err != nil {
			return err
		}
		if err := change(&k); err != nil {
			return err
		}
		_, err = tx.PutKey(k)
		return err
	})
	return storeErrOrNil(err)
}

// taggable refuses to change the tags or the description of a key pending
// deletion, as AWS KMS does (its key state table): ListResourceTags and
// DescribeKey still read them.
func (s *Service) taggable(k store.Key) error {
	if k.State == store.KeyPendingDeletion {
		return newErr(CodeInvalidState, "%s is pending deletion.", s.keyARN(k.ID))
	}
	return nil
}

// UpdateKeyDescriptionInput is UpdateKeyDescription's request.
type UpdateKeyDescriptionInput struct {
	KeyId       string `json:"KeyId"`
	Description string `json:"Description"`
}

// UpdateKeyDescription replaces a key's description (empty clears it).
// AWS KMS refuses it for a key pending deletion, as it refuses tagging
// (its key state table).
func (s *Service) UpdateKeyDescription(ctx context.Context, in UpdateKeyDescriptionInput) (err error) {
	o := s.begin(ctx, "kms:UpdateKeyDescription")
	defer func() { err = o.end(err) }()
	if tooLong(in.Description, maxDescription) {
		return lengthErr("description", maxDescription)
	}
	return s.updateKey(ctx, o, in.KeyId, func(k *store.Key) error {
		if err := s.taggable(*k); err != nil {
			return err
		}
		k.Description = in.Description
		return nil
	})
}

// TagResource adds or replaces tags of a key.
func (s *Service) TagResource(ctx context.Context, in TagResourceInput) (err error) {
	o := s.begin(ctx, "kms:TagResource")
	defer func() { err = o.end(err) }()
	return s.updateKey(ctx, o, in.KeyId, func(k *store.Key) error {
		if err := s.taggable(*k); err != nil {
			return err
		}
		tags, err := validTags(in.Tags, k.Tags)
		k.Tags = tags
		return err
	})
}

// UntagResource removes tags from a key.
func (s *Service) UntagResource(ctx context.Context, in UntagResourceInput) (err error) {
	o := s.begin(ctx, "kms:UntagResource")
	defer func() { err = o.end(err) }()
	return s.updateKey(ctx, o, in.KeyId, func(k *store.Key) error {
		if err := s.taggable(*k); err != nil {
			return err
		}
		for _, t := range in.TagKeys {
			delete(k.Tags, t)
		}
		return nil
	})
}

// ListResourceTags lists a key's tags by tag key.
func (s *Service) ListResourceTags(ctx context.Context, in ListResourceTagsInput) (out ListResourceTagsOutput, err error) {
	o := s.begin(ctx, "kms:ListResourceTags")
	defer endWith(o, &out, &err)
	limit := in.Limit
	switch {
	case limit == 0:
		limit = maxTagsPage
	case limit < 1 || limit > maxTagsPage:
		return out, newErr(CodeValidation, "1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and %d", limit, maxTagsPage)
	}
	k, err := s.authorizedKey(ctx, o, in.KeyId)
	if err != nil {
		return out, err
	}
	out.Tags = []Tag{}
	for _, key := range slices.Sorted(maps.Keys(k.Tags)) {
		if in.Marker == "" || key > in.Marker {
			out.Tags = append(out.Tags, Tag{TagKey: key, TagValue: k.Tags[key]})
		}
	}
	out.Tags, out.Truncated, out.NextMarker = page(out.Tags, limit, func(t Tag) string { return t.TagKey })
	return out, nil
}

// maxTagsPage is ListResourceTags' largest and default Limit, as AWS KMS
// has it.
const maxTagsPage = 50

// hsmErr maps a token failure to the error a client sees.
func (s *Service) hsmErr(err error, keyID string, version uint32) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hsm.ErrUnavailable), errors.Is(err, hsm.ErrPoolExhausted), errors.Is(err, hsm.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The token logs the outage once; each refused request only at Debug.
		s.log.Debug("HSM operation failed", "key_id", keyID, "version", version, "error", err)
		return wrapErr(CodeDependency, err, "the HSM is unavailable; try again later")
	case errors.Is(err, hsm.ErrInvalidCiphertext):
		return wrapErr(CodeInvalidCipher, err, "the ciphertext is invalid, was altered, or does not match the encryption context")
	case errors.Is(err, hsm.ErrInvalidSignature):
		return wrapErr(CodeInvalidSignature, err, "the signature is not valid")
	case errors.Is(err, hsm.ErrKeyNotFound):
		return wrapErr(CodeInternal, err, "the key material of %s version %d is missing from the HSM", s.keyARN(keyID), version)
	case errors.Is(err, hsm.ErrMechanismUnsupported):
		return wrapErr(CodeUnsupported, err, "%v", err)
	case errors.Is(err, hsm.ErrInvalidInput):
		return wrapErr(CodeValidation, err, "%v", err)
	}
	s.log.Error("HSM operation failed", "key_id", keyID, "version", version, "error", err)
	return wrapErr(CodeInternal, err, "the HSM failed")
}
