package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// Key import (BYOK), as AWS KMS has it: a key of Origin EXTERNAL is made
// without material (PendingImport); GetParametersForImport makes an RSA
// wrapping key pair on the token and an import token; the client wraps
// its material under the public key; ImportKeyMaterial unwraps it
// straight into the token as a sensitive, unextractable object. The
// material is clear only inside the token.

// Origins and expiration models.
const (
	originAWS           = "AWS_KMS"
	originExternal      = "EXTERNAL"
	expires             = "KEY_MATERIAL_EXPIRES"
	doesNotExpire       = "KEY_MATERIAL_DOES_NOT_EXPIRE"
	importTokenValidity = 24 * time.Hour
	maxMaterialValidity = 365 * 24 * time.Hour
	// importTokenMagic starts every import token; the key's UUID and 32
	// random bytes follow.
	importTokenMagic = "HKI1"
	importTokenLen   = len(importTokenMagic) + 16 + 32
)

var (
	// wrappingAlgorithmValues is AWS KMS's AlgorithmSpec enum, in its
	// order: the ValidationException lists it; RSAES_PKCS1_V1_5 and SM2PKE
	// are unsupported.
	wrappingAlgorithmValues = []string{"RSAES_PKCS1_V1_5", string(hsm.WrapOAEPSHA1), string(hsm.WrapOAEPSHA256),
		string(hsm.WrapRSAAESSHA1), string(hsm.WrapRSAAESSHA256), "SM2PKE"}
	wrappingAlgorithms = []string{string(hsm.WrapOAEPSHA1), string(hsm.WrapOAEPSHA256), string(hsm.WrapRSAAESSHA1), string(hsm.WrapRSAAESSHA256)}
	wrappingKeySpecs   = map[string]hsm.KeySpec{"RSA_2048": hsm.RSA2048, "RSA_3072": hsm.RSA3072, "RSA_4096": hsm.RSA4096}
)

// importable reports why keys of spec cannot take imported material ("" if
// they can): hsmkms imports symmetric (aes-gcm) and HMAC key material.
func importable(spec string, ks keySpec) string {
	switch {
	case ks.mac != "":
		return ""
	case spec == SpecSymmetric:
		return ""
	}
	return "importing key material for " + spec + " keys is not supported: hsmkms imports SYMMETRIC_DEFAULT and HMAC key material"
}

// importTarget is what a key's imported material becomes on the token.
func importTarget(k store.Key) hsm.ImportTarget {
	return hsm.ImportTarget{MAC: keySpecs[k.Spec].mac}
}

// GetParametersForImportInput is GetParametersForImport's request.
type GetParametersForImportInput struct {
	KeyId             string `json:"KeyId"`
	WrappingAlgorithm string `json:"WrappingAlgorithm"`
	WrappingKeySpec   string `json:"WrappingKeySpec"`
}

// GetParametersForImportOutput is GetParametersForImport's response.
type GetParametersForImportOutput struct {
	KeyId             string     `json:"KeyId"`
	ImportToken       []byte     `json:"ImportToken"`
	PublicKey         []byte     `json:"PublicKey"`
	ParametersValidTo *EpochTime `json:"ParametersValidTo"`
}

// ImportKeyMaterialInput is ImportKeyMaterial's request.
type ImportKeyMaterialInput struct {
	KeyId                string     `json:"KeyId"`
	ImportToken          []byte     `json:"ImportToken"`
	EncryptedKeyMaterial []byte     `json:"EncryptedKeyMaterial"`
	ValidTo              *EpochTime `json:"ValidTo"`
	ExpirationModel      string     `json:"ExpirationModel"`
	ImportType           string     `json:"ImportType"`
}

// ImportKeyMaterialOutput is ImportKeyMaterial's response.
type ImportKeyMaterialOutput struct {
	KeyId         string `json:"KeyId"`
	KeyMaterialId string `json:"KeyMaterialId"`
}

// externalKey refuses a key whose material hsmkms made.
func (s *Service) externalKey(k store.Key) error {
	if k.Origin != originExternal {
		return newErr(CodeUnsupported, "%s origin is %s which is not valid for this operation.", s.keyARN(k.ID), originAWS)
	}
	return nil
}

// GetParametersForImport makes a wrapping key pair on the token and an
// import token, valid 24 hours, for importing a key's material. A new
// call replaces the parameters an earlier one gave.
func (s *Service) GetParametersForImport(ctx context.Context, in GetParametersForImportInput) (out GetParametersForImportOutput, err error) {
	o := s.begin(ctx, "kms:GetParametersForImport")
	defer endWith(o, &out, &err)
	if !slices.Contains(wrappingAlgorithms, in.WrappingAlgorithm) {
		if in.WrappingAlgorithm == "RSAES_PKCS1_V1_5" || in.WrappingAlgorithm == "SM2PKE" {
			return out, newErr(CodeUnsupported, "WrappingAlgorithm %s is not supported; use one of %s", in.WrappingAlgorithm, strings.Join(wrappingAlgorithms, ", "))
		}
		return out, enumErr("wrappingAlgorithm", in.WrappingAlgorithm, wrappingAlgorithmValues)
	}
	spec, ok := wrappingKeySpecs[in.WrappingKeySpec]
	if !ok {
		if in.WrappingKeySpec == "SM2" {
			return out, newErr(CodeUnsupported, "WrappingKeySpec SM2 is not supported")
		}
		return out, newErr(CodeValidation, "1 validation error detected: Value '%s' at 'wrappingKeySpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, SM2]", in.WrappingKeySpec)
	}
	k, err := s.importableKey(ctx, o, in.KeyId)
	if err != nil {
		return out, err
	}
	wrapping, err := hsm.NewObjectID()
	if err != nil {
		return out, wrapErr(CodeInternal, err, "no randomness for a key material ID")
	}
	pub, err := s.hsm.CreateWrappingKeyPair(ctx, wrapping, "hsmkms/"+k.ID+"/import", spec)
	if err != nil {
		return out, s.hsmErr(err, k.ID, 0)
	}
	destroy := func() {
		if err := s.hsm.DestroyKey(context.WithoutCancel(ctx), wrapping); err != nil {
			s.log.Warn("destroying a wrapping key pair failed", "key_id", k.ID, "error", err)
		}
	}
	if err := s.hsm.CheckUnwrap(ctx, wrapping, hsm.WrappingAlgorithm(in.WrappingAlgorithm)); err != nil {
		destroy()
		return out, s.hsmErr(err, k.ID, 0)
	}
	der, err := hsm.MarshalPublicKey(pub)
	if err != nil {
		destroy()
		return out, wrapErr(CodeInternal, err, "encoding the wrapping public key")
	}
	nonce, err := s.hsm.GenerateRandom(ctx, 32)
	if err != nil {
		destroy()
		return out, s.hsmErr(err, k.ID, 0)
	}
	id := uuid.MustParse(k.ID)
	token := slices.Concat([]byte(importTokenMagic), id[:], nonce)
	hash := sha256.Sum256(token)
	validTo := s.now().UTC().Add(importTokenValidity)
	var old *store.ImportParams
	err = s.store.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.Key(k.ID)
		if err != nil {
			return err
		}
		if err := s.importState(cur); err != nil {
			return err
		}
		old = cur.Import
		cur.Import = &store.ImportParams{WrappingKey: wrapping, WrappingSpec: in.WrappingKeySpec,
			Algorithm: in.WrappingAlgorithm, TokenHash: hash[:], ValidTo: validTo}
		_, err = tx.PutKey(cur)
		return err
	})
	if err != nil {
		destroy()
		return out, storeErrOrNil(err)
	}
	if old != nil {
		s.destroyWrappingKey(ctx, k.ID, old.WrappingKey)
	}
	return GetParametersForImportOutput{KeyId: s.keyARN(k.ID), ImportToken: token, PublicKey: der, ParametersValidTo: epoch(validTo)}, nil
}

// importableKey resolves and authorises the key of an import operation,
// and refuses one whose material hsmkms made or that cannot change now.
func (s *Service) importableKey(ctx context.Context, o *op, ident string) (store.Key, error) {
	k, err := s.authorizedKey(ctx, o, ident)
	if err != nil {
		return k, err
	}
	if err := s.externalKey(k); err != nil {
		return k, err
	}
	return k, s.importState(k)
}

// importState refuses keys whose material cannot change now.
func (s *Service) importState(k store.Key) error {
	switch k.State {
	case store.KeyPendingImport, store.KeyEnabled, store.KeyDisabled:
		return nil
	case store.KeyPendingDeletion:
		return newErr(CodeInvalidState, "%s is pending deletion.", s.keyARN(k.ID))
	}
	return newErr(CodeInvalidState, "%s is %s.", s.keyARN(k.ID), k.State)
}

func (s *Service) destroyWrappingKey(ctx context.Context, keyID string, id [16]byte) {
	s.destroyUnnamed(ctx, keyID, id, "a used wrapping key pair")
}

// destroyUnnamed destroys a token object no record names (any more),
// whether or not the request goes on; a failure is logged and leaves the
// object for hsmkms doctor to list.
func (s *Service) destroyUnnamed(ctx context.Context, keyID string, id hsm.ObjectID, what string) {
	err := s.hsm.DestroyKey(context.WithoutCancel(ctx), id)
	if err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
		s.log.Warn("destroying "+what+" failed; hsmkms doctor lists it", "key_id", keyID, "error", err)
	}
}

// ImportKeyMaterial unwraps key material into the token with the wrapping
// key pair an import token names. The token is good for one import within
// 24 hours. A key's first import fixes its material: a later one (after
// DeleteImportedKeyMaterial or expiry, or to change the expiration) must
// bring the same material.
func (s *Service) ImportKeyMaterial(ctx context.Context, in ImportKeyMaterialInput) (out ImportKeyMaterialOutput, err error) {
	o := s.begin(ctx, "kms:ImportKeyMaterial")
	defer endWith(o, &out, &err)
	model, validTo, err := s.expiration(in)
	if err != nil {
		return out, err
	}
	if len(in.EncryptedKeyMaterial) == 0 || len(in.EncryptedKeyMaterial) > 6144 {
		return out, newErr(CodeValidation, "1 validation error detected: Value at 'encryptedKeyMaterial' failed to satisfy constraint: Member must have length between 1 and 6144")
	}
	if len(in.ImportToken) == 0 || len(in.ImportToken) > 6144 {
		return out, newErr(CodeValidation, "1 validation error detected: Value at 'importToken' failed to satisfy constraint: Member must have length between 1 and 6144")
	}
	k, err := s.importableKey(ctx, o, in.KeyId)
	if err != nil {
		return out, err
	}
	im, err := s.checkImportToken(k, in.ImportToken)
	if err != nil {
		return out, err
	}
	v, fresh, err := s.importVersion(ctx, k)
	if err != nil {
		return out, err
	}
	// The material goes to a new object, whose ID the commit writes into
	// the version: an import that does not commit destroys only its own
	// object. Imported again into the version's old object ID, a losing or
	// retried import destroyed the object a concurrent one had committed
	// (found by review). Material for a key that has it (a change of
	// expiration) is only compared, and its object destroyed, unless the
	// version's object is gone (adopt).
	target, err := hsm.NewObjectID()
	if err != nil {
		return out, wrapErr(CodeInternal, err, "no randomness for a key material ID")
	}
	scratch := !noMaterial(k)
	o.rec.KeyVersion = v.Number
	err = s.hsm.ImportKey(ctx, im.WrappingKey, hsm.WrappingAlgorithm(im.Algorithm), in.EncryptedKeyMaterial, target,
		versionLabel(k.ID, v.Number), importTarget(k))
	if err != nil {
		if errors.Is(err, hsm.ErrInvalidCiphertext) {
			return out, wrapErr(CodeInvalidCipher, err, "the key material could not be unwrapped with %s under the wrapping key of the import token", im.Algorithm)
		}
		if errors.Is(err, hsm.ErrInvalidInput) {
			return out, wrapErr(CodeIncorrectKeyMaterial, err, "%v", err)
		}
		return out, s.hsmErr(err, k.ID, v.Number)
	}
	undo := func() { s.destroyUnnamed(ctx, k.ID, target, "imported material no version names") }
	check, err := s.hsm.KeyCheckValue(ctx, target, importTarget(k))
	if err != nil {
		undo()
		return out, s.hsmErr(err, k.ID, v.Number)
	}
	if k.KeyCheck != nil && subtle.ConstantTimeCompare(check, k.KeyCheck) != 1 {
		undo()
		return out, newErr(CodeIncorrectKeyMaterial, "the key material is not the material imported into %s before", s.keyARN(k.ID))
	}
	// keep is whether target becomes the version's object.
	keep := !scratch
	if scratch {
		// The version's object is gone: a store restored from a backup
		// taken before the material was deleted and imported again (the
		// backup names the old object), or an object lost to an earlier
		// release's import race. The same material, as its check value
		// proves, takes its place: importing it again heals the key.
		has, err := s.hsm.HasKey(ctx, v.ObjectID)
		if err != nil {
			undo()
			return out, s.hsmErr(err, k.ID, v.Number)
		}
		keep = !has
	}
	var replaced hsm.ObjectID // deleted material's object, which target replaces
	err = s.store.Update(ctx, func(tx store.Tx) error {
		replaced = hsm.ObjectID{}
		cur, err := tx.Key(k.ID)
		if err != nil {
			return err
		}
		if cur.Import == nil || !bytes.Equal(cur.Import.TokenHash, im.TokenHash) {
			return newErr(CodeInvalidImportToken, "the import token was used or replaced meanwhile")
		}
		if noMaterial(cur) != !scratch {
			return newErr(CodeInvalidState, "the key material of %s changed meanwhile; try again", s.keyARN(k.ID))
		}
		nv := v
		if !fresh {
			if nv, err = tx.Version(k.ID, v.Number); err != nil {
				return err
			}
			if nv.ObjectID != v.ObjectID {
				return newErr(CodeInvalidState, "the key material of %s changed meanwhile; try again", s.keyARN(k.ID))
			}
		}
		if keep {
			if !scratch && !fresh {
				replaced = nv.ObjectID
			}
			nv.ObjectID = target
		}
		nv.State, nv.Owner, nv.LeaseUntil = store.VersionActive, "", time.Time{}
		if fresh {
			nv.CreatedAt = s.now().UTC()
		}
		if err := tx.PutVersion(nv); err != nil {
			return err
		}
		cur.Import, cur.KeyCheck, cur.ExpirationModel, cur.ValidTo = nil, check, model, validTo
		cur.CurrentVersion, cur.LatestVersion = nv.Number, max(cur.LatestVersion, nv.Number)
		if cur.State == store.KeyPendingImport {
			cur.State = store.KeyEnabled
		}
		_, err = tx.PutKey(cur)
		return err
	})
	switch {
	case err != nil && keep && outcomeUnknown(err):
		// The commit may have made target the key's material, and the
		// store cannot be asked reliably now (a PostgreSQL commit may
		// land after its answer was lost; a cache may hold the old
		// record): it stays. If nothing names it, hsmkms doctor lists it.
		return out, storeErrOrNil(err)
	case err != nil:
		undo()
		return out, storeErrOrNil(err)
	case !keep:
		undo()
	case replaced != (hsm.ObjectID{}):
		// A DeleteImportedKeyMaterial whose destroy failed, or that died
		// after its store update, may have left the old object.
		s.destroyUnnamed(ctx, k.ID, replaced, "deleted imported material")
	}
	s.destroyWrappingKey(ctx, k.ID, im.WrappingKey)
	return ImportKeyMaterialOutput{KeyId: s.keyARN(k.ID), KeyMaterialId: materialID(v.Number)}, nil
}

// expiration reads ImportKeyMaterial's expiration: KEY_MATERIAL_EXPIRES
// (the default) needs a ValidTo within 365 days, the other none.
func (s *Service) expiration(in ImportKeyMaterialInput) (string, time.Time, error) {
	if in.ImportType != "" && in.ImportType != "NEW_KEY_MATERIAL" && in.ImportType != "EXISTING_KEY_MATERIAL" {
		return "", time.Time{}, newErr(CodeValidation, "ImportType must be NEW_KEY_MATERIAL or EXISTING_KEY_MATERIAL")
	}
	model := in.ExpirationModel
	if model == "" {
		model = expires
	}
	switch model {
	case doesNotExpire:
		if in.ValidTo != nil {
			return "", time.Time{}, newErr(CodeValidation, "ValidTo must not be set when the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE")
		}
		return model, time.Time{}, nil
	case expires:
		if in.ValidTo == nil {
			return "", time.Time{}, newErr(CodeValidation, "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
		}
		t, now := time.Time(*in.ValidTo).UTC(), s.now()
		if !t.After(now) || t.After(now.Add(maxMaterialValidity)) {
			return "", time.Time{}, newErr(CodeValidation, "ValidTo must be in the future and at most 365 days away")
		}
		return model, t, nil
	}
	return "", time.Time{}, newErr(CodeValidation, "1 validation error detected: Value '%s' at 'expirationModel' failed to satisfy constraint: Member must satisfy enum value set: [%s, %s]", model, expires, doesNotExpire)
}

// checkImportToken matches an import token with the key's outstanding
// parameters.
func (s *Service) checkImportToken(k store.Key, token []byte) (store.ImportParams, error) {
	id := uuid.MustParse(k.ID)
	if len(token) != importTokenLen || string(token[:len(importTokenMagic)]) != importTokenMagic {
		return store.ImportParams{}, newErr(CodeInvalidImportToken, "the import token is not an hsmkms import token")
	}
	if !bytes.Equal(token[len(importTokenMagic):len(importTokenMagic)+16], id[:]) {
		return store.ImportParams{}, newErr(CodeInvalidImportToken, "the import token is for another key")
	}
	hash := sha256.Sum256(token)
	if k.Import == nil || subtle.ConstantTimeCompare(hash[:], k.Import.TokenHash) != 1 {
		return store.ImportParams{}, newErr(CodeInvalidImportToken, "the import token was used, or replaced by a later GetParametersForImport")
	}
	if !s.now().Before(k.Import.ValidTo) {
		return store.ImportParams{}, newErr(CodeExpiredImportToken, "the import token expired at %s", k.Import.ValidTo.UTC().Format(time.RFC3339))
	}
	return *k.Import, nil
}

// importVersion returns the version imported material goes into: the
// key's first, made now (fresh) or kept from an earlier import.
func (s *Service) importVersion(ctx context.Context, k store.Key) (store.Version, bool, error) {
	var v store.Version
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		v, err = tx.Version(k.ID, 1)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		// Its object ID is the import's new object's, set at the commit.
		return store.Version{KeyID: k.ID, Number: 1, State: store.VersionPending}, true, nil
	}
	if err != nil {
		return v, false, storeErr(err)
	}
	return v, false, nil
}

// noMaterial reports whether k is a key of imported material with none
// imported: never, or deleted since (ImportKeyMaterial always sets an
// expiration model, deleteMaterial clears it). Its state is PendingImport,
// or PendingDeletion when its deletion was scheduled meanwhile.
func noMaterial(k store.Key) bool {
	return k.Origin == originExternal && k.ExpirationModel == ""
}

// DeleteImportedKeyMaterial destroys a key's imported material on the
// token: the key is PendingImport until the same material is imported
// again, and its ciphertexts do not decrypt meanwhile.
func (s *Service) DeleteImportedKeyMaterial(ctx context.Context, in KeyIDInput) (err error) {
	o := s.begin(ctx, "kms:DeleteImportedKeyMaterial")
	defer func() { err = o.end(err) }()
	k, err := s.authorizedKey(ctx, o, in.KeyId)
	if err != nil {
		return err
	}
	if err := s.externalKey(k); err != nil {
		return err
	}
	return s.deleteMaterial(ctx, k.ID, false)
}

// deleteMaterial makes an imported key PendingImport and destroys its
// material: first in the store, so that nothing uses it, then on the
// token. A key pending deletion stays so. Called again after the token
// failed to destroy it, it destroys it then: the store already says
// Destroyed (found by review: the retry succeeded and left the material
// on the token; finishDeletion destroys such leftovers too). With
// expiredOnly it deletes only material whose ValidTo has passed, asked in
// its transaction: the maintenance pass chose the key from an earlier
// read, and the material may have been imported again since with a later
// ValidTo (found by review).
func (s *Service) deleteMaterial(ctx context.Context, keyID string, expiredOnly bool) error {
	var v store.Version
	var had bool
	err := s.store.Update(ctx, func(tx store.Tx) error {
		had = false
		k, err := tx.Key(keyID)
		if err != nil {
			return err
		}
		if k.CurrentVersion == 0 || expiredOnly && !s.expired(k) {
			return nil // nothing imported, or nothing expired
		}
		if v, err = tx.Version(keyID, k.CurrentVersion); err != nil {
			return err
		}
		had = v.State == store.VersionActive || v.State == store.VersionDestroyed && noMaterial(k)
		v.State = store.VersionDestroyed
		if err := tx.PutVersion(v); err != nil {
			return err
		}
		if k.State != store.KeyPendingDeletion {
			k.State = store.KeyPendingImport
		}
		k.ExpirationModel, k.ValidTo = "", time.Time{}
		_, err = tx.PutKey(k)
		return err
	})
	if err != nil || !had {
		return storeErrOrNil(err)
	}
	// The store says the material is gone: the destroy goes on if the
	// request ends meanwhile.
	if err := s.hsm.DestroyKey(context.WithoutCancel(ctx), v.ObjectID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
		return s.hsmErr(err, keyID, v.Number)
	}
	s.log.Info("deleted imported key material", "key_id", keyID)
	return nil
}

// expireImportedKeys deletes the material of imported keys whose ValidTo
// has passed (usable refuses them from that instant).
func (s *Service) expireImportedKeys(ctx context.Context) error {
	now := s.now()
	var errs []error
	err := s.eachKey(ctx, func(k store.Key) {
		if k.Origin == originExternal && !k.ValidTo.IsZero() && !k.ValidTo.After(now) &&
			(k.State == store.KeyEnabled || k.State == store.KeyDisabled) {
			errs = append(errs, s.deleteMaterial(ctx, k.ID, true))
		}
	})
	return errors.Join(append(errs, err)...)
}

// expired reports imported material whose ValidTo has passed.
func (s *Service) expired(k store.Key) bool {
	return k.Origin == originExternal && !k.ValidTo.IsZero() && !k.ValidTo.After(s.now())
}
