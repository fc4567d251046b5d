package status

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api"
	"github.com/hsmkms/hsmkms/service/store"
)

// Snapshot is what the status page shows, as of Taken. It holds no secret:
// nothing it is made from (token description, key records, counters) has
// one.
type Snapshot struct {
	Taken time.Time
	Token Token
	// Keys counts the key records by state, in KeyStates' order.
	Keys []StateCount
	// Newest are the most recently created keys (not deleted), newest
	// first; Date is the creation's.
	Newest []KeyEntry
	// Rotations are the next automatic rotations, soonest first, and
	// Deletions the keys pending deletion, soonest first; Date is when.
	Rotations, Deletions []KeyEntry
	// Requests are the operations with requests in the last Window, in
	// buckets of Bucket; the samples so far cover Covered of it.
	Requests                []OperationRate
	Window, Bucket, Covered time.Duration
	// Seals are the key versions that have sealed, most used first, and
	// the budget every version has (service.Service.SealThresholds).
	Seals                   []SealUse
	SealRotateAt, SealLimit uint64
	// Problems says what could not be read; the rest is still shown.
	Problems []string
}

// Token describes the token and its use now.
type Token struct {
	Label, Manufacturer, Model, Serial string
	// Answered says the token answered a call just now (C_GetTokenInfo).
	Answered bool
	Health   hsm.Health
	Pool     hsm.PoolStats
}

// StateCount is how many keys are in a state.
type StateCount struct {
	State store.KeyState
	Count int
}

// KeyStates are the states the page counts, in its order.
func KeyStates() []store.KeyState {
	return []store.KeyState{store.KeyEnabled, store.KeyDisabled, store.KeyPendingDeletion,
		store.KeyPendingImport, store.KeyCreating, store.KeyDeleted}
}

// KeyEntry is a key in one of the page's lists.
type KeyEntry struct {
	ID      string
	Aliases []string
	Spec    string
	State   store.KeyState
	Date    time.Time
}

// SealUse is how much of its seal budget a key version has used.
type SealUse struct {
	KeyID   string
	Version uint32
	// Current says the version encrypts now.
	Current bool
	// Reserved is the stored count the budget is kept against: seals are
	// reserved in blocks before use, so it runs ahead of Sealed by at most
	// a block per process.
	Reserved uint64
	// Sealed counts the seals this process made since it started.
	Sealed uint64
}

// pageSize is how many key records one read transaction lists.
const pageSize = 500

// gather reads everything the page shows. What fails is named in
// Problems, and the rest is still gathered.
func (p *Page) gather(ctx context.Context, now time.Time) Snapshot {
	snap := Snapshot{Taken: now, Window: p.cfg.Bucket * time.Duration(p.cfg.Buckets), Bucket: p.cfg.Bucket,
		SealRotateAt: p.cfg.SealRotateAt, SealLimit: p.cfg.SealLimit}
	var err error
	if snap.Token, err = p.token(ctx); err != nil {
		snap.Problems = append(snap.Problems, err.Error())
	}
	scan, err := p.scanKeys(ctx, p.sealTotals())
	if err != nil {
		snap.Problems = append(snap.Problems, err.Error())
	}
	snap.Keys = scan.stateCounts()
	snap.Newest, snap.Rotations, snap.Deletions, snap.Seals = scan.newest, scan.rotations, scan.deletions, scan.seals
	snap.Requests, snap.Covered = p.sampler.Rates()
	for _, problem := range snap.Problems {
		p.log.Warn("status page: part of the page is missing", "error", problem)
	}
	return snap
}

// token describes the token: from a call to it (C_GetTokenInfo, which is
// cheap), its health as the token layer last saw it, and the session pool.
func (p *Page) token(ctx context.Context) (Token, error) {
	tok := p.cfg.Token
	t := Token{Label: p.cfg.Label, Health: tok.Health(), Pool: tok.PoolStats()}
	info, err := tok.Info(ctx)
	if err != nil {
		return t, fmt.Errorf("status: the token did not describe itself: %w", err)
	}
	t.Answered = true
	t.Label, t.Manufacturer, t.Model, t.Serial = info.Label, info.Manufacturer, info.Model, info.Serial
	return t, nil
}

func (p *Page) sealTotals() map[api.SealRef]uint64 {
	if p.cfg.Seals == nil {
		return nil
	}
	return p.cfg.Seals()
}

// keyScan accumulates what the page shows of the key records, keeping each
// list at its shown length as pages of records go by.
type keyScan struct {
	limit, sealLimit int
	counts           map[store.KeyState]int
	newest           []KeyEntry
	rotations        []KeyEntry
	deletions        []KeyEntry
	seals            []SealUse
}

// scanKeys reads every key record, a page per read transaction, and the
// versions of the keys that seal. sealed are this process's seal counts.
func (p *Page) scanKeys(ctx context.Context, sealed map[api.SealRef]uint64) (*keyScan, error) {
	scan := &keyScan{limit: p.cfg.Listed, sealLimit: 2 * p.cfg.Listed, counts: map[store.KeyState]int{}}
	after := ""
	for {
		var keys []store.Key
		var seals []SealUse
		// View may run fn more than once: it starts afresh each time.
		err := p.cfg.Store.View(ctx, func(tx store.Tx) error {
			var err error
			if keys, err = tx.Keys(after, pageSize); err != nil {
				return err
			}
			seals, err = versionSeals(tx, keys, sealed)
			return err
		})
		if err != nil {
			return scan, fmt.Errorf("status: reading the keys from the store: %w", err)
		}
		if len(keys) == 0 {
			return scan, nil
		}
		for _, k := range keys {
			scan.add(k)
		}
		scan.seals = topN(append(scan.seals, seals...), scan.sealLimit, bySealUse)
		after = keys[len(keys)-1].ID
	}
}

// add counts k and puts it in the lists it belongs to.
func (s *keyScan) add(k store.Key) {
	s.counts[k.State]++
	e := KeyEntry{ID: k.ID, Aliases: k.Aliases, Spec: k.Spec, State: k.State}
	if k.State != store.KeyDeleted && k.State != store.KeyCreating {
		e.Date = k.CreatedAt
		s.newest = topN(append(s.newest, e), s.limit, func(a, b KeyEntry) int { return b.Date.Compare(a.Date) })
	}
	if k.State == store.KeyEnabled && k.RotationEnabled && !k.NextRotation.IsZero() {
		e.Date = k.NextRotation
		s.rotations = topN(append(s.rotations, e), s.limit, soonest)
	}
	if k.State == store.KeyPendingDeletion {
		e.Date = k.DeletionDate
		s.deletions = topN(append(s.deletions, e), s.limit, soonest)
	}
}

func (s *keyScan) stateCounts() []StateCount {
	states := KeyStates()
	out := make([]StateCount, 0, len(states))
	for _, st := range states {
		out = append(out, StateCount{State: st, Count: s.counts[st]})
	}
	return out
}

// versionSeals lists the seal use of the active versions of the keys that
// seal (symmetric keys with material).
func versionSeals(tx store.Tx, keys []store.Key, sealed map[api.SealRef]uint64) ([]SealUse, error) {
	current := map[string]uint32{}
	var ids []string
	for _, k := range keys {
		if k.Spec != service.SpecSymmetric || k.State == store.KeyDeleted || k.State == store.KeyCreating {
			continue
		}
		current[k.ID] = k.CurrentVersion
		ids = append(ids, k.ID)
	}
	// One read for the page of keys: a round trip each on PostgreSQL.
	vs, err := tx.VersionsOf(ids)
	if err != nil {
		return nil, err
	}
	var out []SealUse
	for _, v := range vs {
		if v.State != store.VersionActive || v.SealsReserved == 0 {
			continue
		}
		out = append(out, SealUse{KeyID: v.KeyID, Version: v.Number, Current: v.Number == current[v.KeyID],
			Reserved: v.SealsReserved, Sealed: sealed[api.SealRef{KeyID: v.KeyID, Version: v.Number}]})
	}
	return out, nil
}

func soonest(a, b KeyEntry) int { return cmp.Or(a.Date.Compare(b.Date), strings.Compare(a.ID, b.ID)) }

func bySealUse(a, b SealUse) int {
	return cmp.Or(cmp.Compare(b.Reserved, a.Reserved), cmp.Compare(b.Sealed, a.Sealed),
		strings.Compare(a.KeyID, b.KeyID), cmp.Compare(a.Version, b.Version))
}

// topN sorts s by order and keeps its first n.
func topN[T any](s []T, n int, order func(a, b T) int) []T {
	slices.SortStableFunc(s, order)
	return s[:min(len(s), n)]
}
