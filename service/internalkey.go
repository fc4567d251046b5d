package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// The internal key is an AES key on the token that seals principals'
// secrets. Its CKA_ID is a setting; the first replica to need it records
// the ID with a claim, as for a pending version, and makes the token
// object, while the others wait for it to be ready: two replicas making
// objects with one CKA_ID would leave an ambiguous key nobody can use.

// internalKeyRecord is the internal key's setting.
type internalKeyRecord struct {
	ID    hsm.ObjectID `json:"id"`
	Ready bool         `json:"ready"`
	// Portable says the key is of the portable mechanism (a token without
	// AES-GCM made it): secrets are then sealed with AES-CBC and HMAC.
	Portable bool      `json:"portable,omitempty"`
	Owner    string    `json:"owner,omitempty"`
	Until    time.Time `json:"until,omitzero"`
}

// decodeInternalKey reads the setting; an earlier release kept the bare
// CKA_ID of a key it had made.
func decodeInternalKey(b []byte) (internalKeyRecord, error) {
	var r internalKeyRecord
	var err error
	if len(b) > 0 && b[0] == '[' {
		r.Ready = true
		err = json.Unmarshal(b, &r.ID)
	} else {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		return r, fmt.Errorf("the internal key's setting is damaged: %w", err)
	}
	return r, nil
}

// internalKeyWait is how often a replica looks whether another has made the
// internal key.
const internalKeyWait = 50 * time.Millisecond

// internalKey returns the internal key, making it the first time.
func (s *Service) internalKey(ctx context.Context) (internalKeyRecord, error) {
	if rec := s.internal.Load(); rec != nil {
		return *rec, nil
	}
	for {
		rec, mine, err := s.claimInternalKey(ctx)
		if err != nil {
			return rec, storeErr(err)
		}
		if rec.Ready || mine {
			return s.makeInternalKey(ctx, rec)
		}
		// Another replica is making it.
		select {
		case <-ctx.Done():
			return rec, wrapErr(CodeDependency, ctx.Err(), "the internal key is being made by replica %s; try again later", rec.Owner)
		case <-time.After(internalKeyWait):
		}
	}
}

// claimInternalKey records a new internal key claimed by this replica when
// there is none, or takes over one whose maker's claim ran out, and returns
// the record and whether this replica is to make the key.
func (s *Service) claimInternalKey(ctx context.Context) (rec internalKeyRecord, mine bool, err error) {
	err = s.store.Update(ctx, func(tx store.Tx) error {
		mine = false
		b, err := tx.Setting(internalKeySetting)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if rec.ID, err = hsm.NewObjectID(); err != nil {
				return err
			}
			caps, known := s.capabilities()
			rec.Portable = known && !caps.AESGCM
		case err != nil:
			return err
		default:
			if rec, err = decodeInternalKey(b); err != nil {
				return err
			}
			if rec.Ready || (rec.Owner != s.cfg.ReplicaID && time.Now().Before(rec.Until)) {
				return nil
			}
		}
		rec.Owner, rec.Until, mine = s.cfg.ReplicaID, time.Now().Add(s.cfg.ClaimTTL).UTC(), true
		return putInternalKey(tx, rec)
	})
	return rec, mine, err
}

// internalKeyLabel is the CKA_LABEL of the internal key's objects.
const internalKeyLabel = "hsmkms/internal/v1"

// makeInternalKey makes the internal key's objects unless the token has
// them, marks it ready and remembers it. A key the record says is ready is
// never made again: its objects are missing only when the token is not the
// one the store was used with (a store restored or migrated onto another
// token, a wrong --token-label), and a new key under the old CKA_ID would
// leave every sealed secret unreadable, each request then refused as an
// invalid ciphertext. A key still being made (a crash before it was marked
// ready) is made, or completed, here.
func (s *Service) makeInternalKey(ctx context.Context, rec internalKeyRecord) (internalKeyRecord, error) {
	switch {
	case rec.Ready:
		has, err := s.hsm.HasKey(ctx, rec.ID)
		if err != nil {
			return rec, s.hsmErr(err, "", 0)
		}
		if !has {
			return rec, s.internalKeyMissing(ctx, rec.ID)
		}
	case rec.Portable:
		// Makes whichever of its two objects is missing.
		if err := s.hsm.CreatePortableKey(ctx, rec.ID, internalKeyLabel); err != nil {
			return rec, s.hsmErr(err, "", 0)
		}
	default:
		has, err := s.hsm.HasKey(ctx, rec.ID)
		if err != nil {
			return rec, s.hsmErr(err, "", 0)
		}
		if !has {
			if err := s.hsm.CreateMasterKey(ctx, rec.ID, internalKeyLabel); err != nil {
				return rec, s.hsmErr(err, "", 0)
			}
		}
	}
	if !rec.Ready {
		rec.Ready, rec.Owner, rec.Until = true, "", time.Time{}
		if err := s.store.Update(ctx, func(tx store.Tx) error { return putInternalKey(tx, rec) }); err != nil {
			return rec, storeErr(err)
		}
	}
	s.internal.Store(&rec)
	return rec, nil
}

// internalKeyMissing is the error for a ready internal key whose CKA_ID
// the token does not have. It names the token by label, which is what an
// operator compares with the --token-label the store was used with.
func (s *Service) internalKeyMissing(ctx context.Context, id hsm.ObjectID) error {
	label := "(unknown)"
	if ti, ok := s.cfg.HSM.(TokenInspector); ok {
		if info, err := ti.Info(ctx); err == nil {
			label = info.Label
		}
	}
	return wrapErr(CodeInternal, ErrInternalKeyMissing,
		"the internal key %s is not on the token labelled %q: the store may belong to another token (check --token-label, or restore the store onto the token it was used with)",
		id, label)
}

// CheckInternalKey makes sure that the internal key the store records as
// ready is on the token, without making anything: the internal key is
// otherwise only read at the first authentication, and a server on the
// wrong token would start and refuse every request. It fails with
// ErrInternalKeyMissing when the key is not on the token; a store with no
// internal key yet, or one still being made, passes.
func (s *Service) CheckInternalKey(ctx context.Context) error {
	rec, err := s.internalKeyRecord(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return storeErr(err)
	}
	if !rec.Ready {
		return nil
	}
	_, err = s.makeInternalKey(ctx, rec)
	return err
}

func putInternalKey(tx store.Tx, rec internalKeyRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.PutSetting(internalKeySetting, b)
}

// internalKeyRecord reads the internal key's setting without making it;
// store.ErrNotFound says there is none yet.
func (s *Service) internalKeyRecord(ctx context.Context) (internalKeyRecord, error) {
	var rec internalKeyRecord
	err := s.store.View(ctx, func(tx store.Tx) error {
		b, err := tx.Setting(internalKeySetting)
		if err != nil {
			return err
		}
		rec, err = decodeInternalKey(b)
		return err
	})
	return rec, err
}
