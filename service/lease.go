package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/service/store"
)

// Replicas sharing a store agree on two things through it, both leases
// kept in records and taken with a transaction, so that no store needs a
// lock service:
//   - the maintenance lease (a setting): one replica at a time runs the
//     rotation and deletion schedulers and settles what dead replicas left
//     pending. Every scheduled action is also a compare-and-set on the key
//     record, so two holders at once (clocks that disagree by more than the
//     lease's margin) would do nothing twice, only work twice;
//   - a claim on each pending version (Version.Owner and LeaseUntil): the
//     replica making its token object owns it until the claim runs out,
//     and no other settles it before. Owner names the replica and the
//     claim (claimSeparator), so that a claim taken over within one
//     replica (its Reconcile settling a version its own request made past
//     the claim) is not taken for the request's.
//
// Leases compare wall clocks across replicas: keep them in step (NTP).

// leaseSetting holds the maintenance lease.
const leaseSetting = "lease/maintenance"

// lease is the maintenance lease's record.
type lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// newReplicaID names this process: host, process ID and a random suffix,
// so that a restarted process never takes its predecessor's claims for
// its own.
func newReplicaID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ReplicaID is this process's name among the replicas.
func (s *Service) ReplicaID() string { return s.cfg.ReplicaID }

// renewLease takes the maintenance lease when it is free or has run out,
// or renews it when this replica holds it, and reports whether this
// replica holds it now.
func (s *Service) renewLease() bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LeaseTTL/3)
	defer cancel()
	var held, took bool
	err := s.store.Update(ctx, func(tx store.Tx) error {
		held, took = false, false
		cur, err := readLease(tx)
		if err != nil {
			return err
		}
		now := time.Now()
		if cur.Owner != s.cfg.ReplicaID && now.Before(cur.Until) {
			return nil
		}
		took = cur.Owner != s.cfg.ReplicaID
		held = true
		return writeLease(tx, lease{Owner: s.cfg.ReplicaID, Until: now.Add(s.cfg.LeaseTTL).UTC()})
	})
	if err != nil {
		// Unrenewed, the lease runs out by itself: act as if it had.
		held = false
		s.log.Debug("renewing the maintenance lease", "error", err)
	}
	if took {
		s.log.Info("took the maintenance lease", "replica", s.cfg.ReplicaID)
	}
	s.leaseHeld.Store(held)
	return held
}

// releaseLease gives the lease up on a clean shutdown, so another replica
// takes it at its next attempt instead of after LeaseTTL.
func (s *Service) releaseLease() {
	if !s.leaseHeld.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LeaseTTL/3)
	defer cancel()
	err := s.store.Update(ctx, func(tx store.Tx) error {
		cur, err := readLease(tx)
		if err != nil || cur.Owner != s.cfg.ReplicaID {
			return err
		}
		return writeLease(tx, lease{})
	})
	if err == nil {
		s.leaseHeld.Store(false)
		s.log.Info("released the maintenance lease", "replica", s.cfg.ReplicaID)
	}
}

// HoldsLease reports whether this replica held the maintenance lease at
// its last attempt.
func (s *Service) HoldsLease() bool { return s.leaseHeld.Load() }

func readLease(tx store.Tx) (lease, error) {
	var l lease
	b, err := tx.Setting(leaseSetting)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(b) == 0) {
		return l, nil
	}
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(b, &l); err != nil {
		// A damaged lease is a free one: it must never stop maintenance.
		return lease{}, nil
	}
	return l, nil
}

func writeLease(tx store.Tx, l lease) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return tx.PutSetting(leaseSetting, b)
}

// claimSeparator ends the replica's name in a claim's owner; a random
// suffix that names the claim follows. Records of earlier releases name
// the replica alone.
const claimSeparator = "#"

// claim returns v claimed by this replica for ClaimTTL, under an owner
// that names this claim: only its holder activates the version.
func (s *Service) claim(v store.Version) store.Version {
	var b [8]byte
	_, _ = rand.Read(b[:])
	v.Owner = s.cfg.ReplicaID + claimSeparator + hex.EncodeToString(b[:])
	v.LeaseUntil = time.Now().Add(s.cfg.ClaimTTL).UTC()
	return v
}

// ownerReplica is the replica a claim's owner names.
func ownerReplica(owner string) string {
	if i := strings.LastIndex(owner, claimSeparator); i >= 0 {
		return owner[:i]
	}
	return owner
}

// abandoned reports whether a pending version may be settled by this
// replica: nobody claims it, or its claim ran out, or (with a store no
// other process uses) an earlier process claimed it.
func (s *Service) abandoned(v store.Version) bool {
	switch {
	case v.State != store.VersionPending:
		return false
	case v.Owner == "":
		return true
	case ownerReplica(v.Owner) == s.cfg.ReplicaID:
		return time.Now().After(v.LeaseUntil)
	case !s.cfg.SharedStore:
		return true
	}
	return time.Now().After(v.LeaseUntil)
}

// takeOver claims a pending version for this replica if it is abandoned,
// in one transaction, so that of several replicas settling at once only
// one goes on. It reports whether this replica now owns the version.
func (s *Service) takeOver(ctx context.Context, keyID string, n uint32) (store.Version, bool, error) {
	var v store.Version
	var ok bool
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		ok = false
		if v, err = tx.Version(keyID, n); err != nil || !s.abandoned(v) {
			return err
		}
		v, ok = s.claim(v), true
		return tx.PutVersion(v)
	})
	return v, ok, err
}

// releaseClaim ends the claim owner holds on a pending version whose
// token object it failed to make, so that the next Reconcile, here or on
// another replica, settles it without waiting for the claim to run out.
func (s *Service) releaseClaim(ctx context.Context, keyID string, n uint32, owner string) {
	err := s.store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		v, err := tx.Version(keyID, n)
		if err != nil || v.State != store.VersionPending || v.Owner != owner {
			return err
		}
		v.LeaseUntil = time.Now().UTC()
		return tx.PutVersion(v)
	})
	if err != nil {
		s.log.Warn("releasing the claim on a pending version; it is settled when the claim runs out", "key_id", keyID, "version", n, "error", err)
	}
}
