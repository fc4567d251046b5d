package service

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/service/store"
)

// Rotation periods, as AWS KMS allows them.
const (
	minRotationDays     = 90
	maxRotationDays     = 2560
	defaultRotationDays = 365
	day                 = 24 * time.Hour
)

// Rotation types of a version after the first.
const (
	rotationAutomatic = "AUTOMATIC"
	rotationOnDemand  = "ON_DEMAND"
)

// RotateKeyOnDemand adds a new version to a symmetric key now; it encrypts
// from then on and every older version still decrypts.
func (s *Service) RotateKeyOnDemand(ctx context.Context, in KeyIDInput) (out KeyIDOutput, err error) {
	o := s.begin(ctx, "kms:RotateKeyOnDemand")
	defer endWith(o, &out, &err)
	k, err := s.authorizedKey(ctx, o, in.KeyId)
	if err != nil {
		return out, err
	}
	n, err := s.rotate(ctx, k.ID, rotationOnDemand)
	o.rec.KeyVersion = n
	return KeyIDOutput{KeyId: k.ID}, err
}

// rotate adds version LatestVersion+1 to a key: pending in the store, then
// the token object, then active and current. Concurrent rotations each take
// their own number in the first transaction, so none is lost or doubled.
func (s *Service) rotate(ctx context.Context, keyID, rotationType string) (uint32, error) {
	return s.rotateIf(ctx, keyID, rotationType, nil)
}

// errNotDue is what a claim returns when the rotation it guards is no
// longer due: another scheduler run took it.
var errNotDue = errors.New("service: rotation no longer due")

// rotateIf is rotate with claim (when not nil) run on the key in the
// transaction that takes the new version number, so that deciding to
// rotate and taking the number are one atomic step.
func (s *Service) rotateIf(ctx context.Context, keyID, rotationType string, claim func(*store.Key) error) (uint32, error) {
	var v store.Version
	var k store.Key
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if k, err = tx.Key(keyID); err != nil {
			return err
		}
		if err := s.rotatable(k); err != nil {
			return err
		}
		if claim != nil {
			if err := claim(&k); err != nil {
				return err
			}
		}
		if v, err = s.newVersion(k.ID, k.LatestVersion+1, rotationType); err != nil {
			return err
		}
		k.LatestVersion = v.Number
		if _, err := tx.PutKey(k); err != nil {
			return err
		}
		return tx.PutVersion(v)
	})
	if err != nil {
		return 0, storeErr(err)
	}
	if err := s.makeMaterial(ctx, k, v); err != nil {
		// The version stays pending: Reconcile makes its material later, so
		// that version numbers never have gaps.
		s.releaseClaim(ctx, keyID, v.Number, v.Owner)
		return v.Number, err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error { return s.activate(tx, keyID, v.Number, v.Owner) })
	return v.Number, storeErrOrNil(err)
}

func (s *Service) rotatable(k store.Key) error {
	if k.Origin == originExternal {
		return newErr(CodeUnsupported, "%s origin is EXTERNAL which is not valid for this operation.", s.keyARN(k.ID))
	}
	if k.State != store.KeyEnabled {
		if err := s.usable(k, k.Usage); err != nil {
			return err
		}
	}
	if k.Spec != SpecSymmetric {
		return newErr(CodeUnsupported, "%s is a %s key; only SYMMETRIC_DEFAULT keys rotate", s.keyARN(k.ID), k.Spec)
	}
	return nil
}

// EnableKeyRotation turns on automatic rotation every RotationPeriodInDays
// (90 to 2560, default 365).
func (s *Service) EnableKeyRotation(ctx context.Context, in EnableKeyRotationInput) (err error) {
	o := s.begin(ctx, "kms:EnableKeyRotation")
	defer func() { err = o.end(err) }()
	days := in.RotationPeriodInDays
	if days == 0 {
		days = defaultRotationDays
	}
	if days < minRotationDays || days > maxRotationDays {
		return newErr(CodeValidation, "1 validation error detected: Value '%d' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between %d and %d", days, minRotationDays, maxRotationDays)
	}
	return s.updateKey(ctx, o, in.KeyId, func(k *store.Key) error {
		if err := s.rotatable(*k); err != nil {
			return err
		}
		k.RotationEnabled, k.RotationPeriodDays = true, days
		k.NextRotation = s.now().UTC().Add(time.Duration(days) * day)
		return nil
	})
}

// DisableKeyRotation turns automatic rotation off.
func (s *Service) DisableKeyRotation(ctx context.Context, in KeyIDInput) (err error) {
	o := s.begin(ctx, "kms:DisableKeyRotation")
	defer func() { err = o.end(err) }()
	return s.updateKey(ctx, o, in.KeyId, func(k *store.Key) error {
		if err := s.rotatable(*k); err != nil {
			return err
		}
		k.RotationEnabled, k.NextRotation = false, time.Time{}
		return nil
	})
}

// GetKeyRotationStatus says whether automatic rotation is on and when the
// next one is due.
func (s *Service) GetKeyRotationStatus(ctx context.Context, in KeyIDInput) (out GetKeyRotationStatusOutput, err error) {
	o := s.begin(ctx, "kms:GetKeyRotationStatus")
	defer endWith(o, &out, &err)
	k, err := s.authorizedKey(ctx, o, in.KeyId)
	if err != nil {
		return out, err
	}
	// While a key is pending deletion its rotation status is false, as in
	// AWS KMS; keys that cannot rotate (asymmetric, HMAC) are never enabled.
	enabled := k.RotationEnabled && k.State != store.KeyPendingDeletion
	out = GetKeyRotationStatusOutput{KeyRotationEnabled: enabled, KeyId: k.ID}
	if enabled {
		out.RotationPeriodInDays = k.RotationPeriodDays
		out.NextRotationDate = epoch(k.NextRotation)
	}
	return out, nil
}

// ListKeyRotations lists a key's rotations: its active versions after the
// first, oldest first.
func (s *Service) ListKeyRotations(ctx context.Context, in ListKeyRotationsInput) (out ListKeyRotationsOutput, err error) {
	o := s.begin(ctx, "kms:ListKeyRotations")
	defer endWith(o, &out, &err)
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return out, err
	}
	after, err := parseVersionMarker(in.Marker)
	if err != nil {
		return out, err
	}
	ref, err := s.parseKeyRef("keyId", in.KeyId)
	if err != nil {
		return out, err
	}
	err = s.store.View(ctx, func(tx store.Tx) error {
		out.Rotations, out.Truncated, out.NextMarker = []Rotation{}, false, ""
		k, err := s.resolve(tx, ref)
		if err != nil {
			return err
		}
		if err := o.authorize(&k, ref.alias); err != nil {
			return err
		}
		vs, err := tx.Versions(k.ID)
		if err != nil {
			return err
		}
		for _, v := range vs {
			if v.Number <= max(after, 1) || v.State != store.VersionActive {
				continue
			}
			if len(out.Rotations) == limit {
				out.Truncated = true
				out.NextMarker = materialID(out.Rotations[limit-1].number())
				break
			}
			out.Rotations = append(out.Rotations, Rotation{KeyId: k.ID, KeyMaterialId: materialID(v.Number),
				RotationDate: epoch(v.CreatedAt), RotationType: v.RotationType})
		}
		return nil
	})
	return out, storeErrOrNil(err)
}

func (r Rotation) number() uint32 {
	n, _ := strconv.ParseUint(strings.TrimPrefix(r.KeyMaterialId, "v"), 10, 32)
	return uint32(n)
}

func parseVersionMarker(m string) (uint32, error) {
	if m == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(m, "v"), 10, 32)
	if err != nil || !strings.HasPrefix(m, "v") {
		return 0, newErr(CodeInvalidMarker, "Marker is not valid")
	}
	return uint32(n), nil
}

// rotateDueKeys rotates every enabled key whose automatic rotation is due.
func (s *Service) rotateDueKeys(ctx context.Context) error {
	ctx = systemContext(ctx)
	now := s.now()
	var errs []error
	err := s.eachKey(ctx, func(k store.Key) {
		if !k.RotationEnabled || k.State != store.KeyEnabled || k.NextRotation.After(now) {
			return
		}
		// The next date moves in the transaction that takes the version
		// number: a run overlapping this one (another replica) finds the
		// key not due, and never rotates it a second time.
		_, err := s.rotateIf(ctx, k.ID, rotationAutomatic, func(k *store.Key) error {
			if !k.RotationEnabled || k.NextRotation.After(now) {
				return errNotDue
			}
			k.NextRotation = now.UTC().Add(time.Duration(k.RotationPeriodDays) * day)
			return nil
		})
		switch {
		case errors.Is(err, errNotDue):
		case err != nil:
			errs = append(errs, err)
		default:
			s.log.Info("rotated key", "key_id", k.ID, "type", rotationAutomatic)
		}
	})
	return errors.Join(append(errs, err)...)
}

// eachKey calls fn for every key record, a page at a time, outside any
// transaction so that fn may write.
func (s *Service) eachKey(ctx context.Context, fn func(store.Key)) error {
	after := ""
	for {
		var page []store.Key
		err := s.store.View(ctx, func(tx store.Tx) error {
			var err error
			page, err = tx.Keys(after, 500)
			return err
		})
		if err != nil || len(page) == 0 {
			return err
		}
		for _, k := range page {
			fn(k)
		}
		after = page[len(page)-1].ID
	}
}
