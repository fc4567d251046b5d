package service

import (
	"context"
	"errors"
	"sync"

	"github.com/hsmkms/hsmkms/service/store"
)

// sealBudget counts AES-GCM seals per key version. A version may seal about
// 2^32 times with random 96-bit IVs before an IV collision becomes likely;
// the budget rotates the key well before that and refuses to seal past a
// hard limit.
//
// Counting in the store on every seal would cost a write per request, so a
// process reserves seals in blocks: the stored count is raised by a block
// before any seal of it is used. Several processes each reserve their own
// blocks, and a crash loses only unused reservations, so the stored count
// never under-states.
type sealBudget struct {
	s *Service
	// mu guards left and rotating, and serialises reservations (one store
	// write per block).
	mu       sync.Mutex
	left     map[versionRef]uint64
	rotating map[string]bool
}

type versionRef struct {
	keyID  string
	number uint32
}

func newSealBudget(s *Service) *sealBudget {
	return &sealBudget{s: s, left: map[versionRef]uint64{}, rotating: map[string]bool{}}
}

// take uses one seal of version v, reserving a new block when none is left.
func (b *sealBudget) take(ctx context.Context, k store.Key, v store.Version) error {
	ref := versionRef{k.ID, v.Number}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left[ref] == 0 {
		if err := b.reserve(ctx, ref); err != nil {
			return err
		}
	}
	b.left[ref]--
	return nil
}

// reserve raises the version's stored count by a block. Past
// RotateAfterSeals it starts a rotation if the version is still current;
// past SealLimit it refuses.
func (b *sealBudget) reserve(ctx context.Context, ref versionRef) error {
	cfg := b.s.cfg
	var reserved uint64
	var current bool
	err := b.s.store.Update(ctx, func(tx store.Tx) error {
		k, err := tx.Key(ref.keyID)
		if err != nil {
			return err
		}
		// A request that read the key before a rotation finished still
		// seals with the old version; that must not rotate the key again.
		current = k.CurrentVersion == ref.number
		v, err := tx.Version(ref.keyID, ref.number)
		if err != nil {
			return err
		}
		if v.SealsReserved+cfg.SealBlock > cfg.SealLimit {
			return newErr(CodeInvalidState, "%s version %d has sealed its limit of %d times; rotate the key",
				b.s.keyARN(ref.keyID), ref.number, cfg.SealLimit)
		}
		v.SealsReserved += cfg.SealBlock
		reserved = v.SealsReserved
		return tx.PutVersion(v)
	})
	if err != nil {
		return storeErr(err)
	}
	b.left[ref] = cfg.SealBlock
	if reserved >= cfg.RotateAfterSeals && current && !b.rotating[ref.keyID] {
		// b.mu is held: rotateWorn cannot clear the flag before it is set.
		b.rotating[ref.keyID] = b.s.background(func() { b.rotateWorn(ref) })
	}
	return nil
}

// rotateWorn rotates a key whose current version is worn out, unless a
// version newer than it was taken meanwhile: b.rotating guards one
// process, and a replica sharing the store may have rotated the key since
// this one saw ref current (found by review: two replicas crossing the
// threshold one after the other made two versions).
func (b *sealBudget) rotateWorn(ref versionRef) {
	ctx := systemContext(context.Background())
	n, err := b.s.rotateIf(ctx, ref.keyID, rotationAutomatic, func(k *store.Key) error {
		if k.LatestVersion != ref.number {
			return errNotDue
		}
		return nil
	})
	switch {
	case errors.Is(err, errNotDue):
		b.s.log.Debug("a key whose version reached its seal threshold was rotated meanwhile", "key_id", ref.keyID, "version", ref.number)
	case err != nil:
		b.s.log.Error("rotating a key whose version reached its seal threshold", "key_id", ref.keyID, "version", ref.number, "error", err)
	default:
		b.s.log.Info("rotated a key whose version reached its seal threshold", "key_id", ref.keyID, "old_version", ref.number, "new_version", n)
	}
	b.mu.Lock()
	delete(b.rotating, ref.keyID)
	b.mu.Unlock()
}

// SealThresholds are the seal budget of every key version: a key whose
// current version has rotateAfter seals reserved rotates, and no version
// seals past limit (Config.RotateAfterSeals and Config.SealLimit).
func (s *Service) SealThresholds() (rotateAfter, limit uint64) {
	return s.cfg.RotateAfterSeals, s.cfg.SealLimit
}

// Reserved returns how many seals are reserved for a key version in the
// store (for metrics and tests).
func (s *Service) Reserved(ctx context.Context, keyID string, version uint32) (uint64, error) {
	var n uint64
	err := s.store.View(ctx, func(tx store.Tx) error {
		v, err := tx.Version(keyID, version)
		n = v.SealsReserved
		return err
	})
	return n, storeErrOrNil(err)
}

// raiseSealCounts raises the stored seal count of every active version of
// every live symmetric key to at least atLeast, within tx, and returns how
// many it raised. A store restored from a backup holds the counts of the
// backup's time, lower than the seals made since: raised to the rotation
// threshold (DefaultRotateAfterSeals), each key rotates at its next seal,
// and no version seals past its limit for want of a true count
// (PrepareRestoredStore).
func raiseSealCounts(tx store.Tx, atLeast uint64) (int, error) {
	n := 0
	keys, err := tx.Keys("", 0)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if k.Spec != SpecSymmetric || k.State == store.KeyDeleted || k.State == store.KeyCreating || k.State == store.KeyPendingImport {
			continue
		}
		vs, err := tx.Versions(k.ID)
		if err != nil {
			return 0, err
		}
		for _, v := range vs {
			if v.State != store.VersionActive || v.SealsReserved >= atLeast {
				continue
			}
			v.SealsReserved = atLeast
			if err := tx.PutVersion(v); err != nil {
				return 0, err
			}
			n++
		}
	}
	return n, nil
}
