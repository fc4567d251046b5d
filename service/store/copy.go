package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hsmkms/hsmkms/service/policy"
)

// Counts counts a store's records by kind.
type Counts struct {
	Keys       int `json:"keys"`
	Versions   int `json:"versions"`
	Aliases    int `json:"aliases"`
	Principals int `json:"principals"`
	Settings   int `json:"settings"`
	XKSStores  int `json:"xks_stores"`
	Grants     int `json:"grants"`
}

// transientSettings are settings that describe running processes, not
// data: a copy leaves them behind.
var transientSettings = []string{"lease/maintenance"}

// ErrNotEmpty: Copy's destination holds records already.
var ErrNotEmpty = errors.New("store: the destination is not empty")

// snapshot is every record of a store.
type snapshot struct {
	keys       []Key
	versions   []Version
	aliases    []Alias
	principals []Principal
	settings   map[string][]byte
	xksStores  []XKSStore
	grants     []Grant
}

func (s *snapshot) counts() Counts {
	return Counts{Keys: len(s.keys), Versions: len(s.versions), Aliases: len(s.aliases), Principals: len(s.principals),
		Settings: len(s.settings), XKSStores: len(s.xksStores), Grants: len(s.grants)}
}

func (s *snapshot) keyIDs() []string {
	ids := make([]string, len(s.keys))
	for i, k := range s.keys {
		ids[i] = k.ID
	}
	return ids
}

// Copy copies every record of src into dst, which must be empty (else
// ErrNotEmpty), and checks that dst then holds exactly what src held. It
// reads src in one transaction and writes dst in one, so that dst ends
// with all of a consistent state of src or nothing. The check reads dst
// back in the writing transaction, before it commits: a Copy that fails
// has changed nothing, unless its error wraps ErrOutcomeUnknown, and one
// that commits has nothing left to fail. Key and external key store
// revisions start again at 1.
func Copy(ctx context.Context, dst, src Store) (Counts, error) {
	var from *snapshot
	err := src.View(ctx, func(tx Tx) (err error) {
		from, err = read(tx)
		return err
	})
	if err != nil {
		return Counts{}, fmt.Errorf("reading the source: %w", err)
	}
	var counts Counts
	err = dst.Update(ctx, func(tx Tx) error {
		empty, err := isEmpty(tx, from.keyIDs())
		if err != nil {
			return err
		}
		if !empty {
			return ErrNotEmpty
		}
		if err := write(tx, from); err != nil {
			return err
		}
		to, err := read(tx)
		if err != nil {
			return fmt.Errorf("reading the destination back: %w", err)
		}
		if err := same(from, to); err != nil {
			return fmt.Errorf("the destination differs from the source: %w", err)
		}
		counts = to.counts()
		return nil
	})
	if err != nil {
		return Counts{}, fmt.Errorf("writing the destination: %w", err)
	}
	return counts, nil
}

// read returns every record tx holds but transient settings.
func read(tx Tx) (*snapshot, error) {
	snap := &snapshot{}
	var err error
	if snap.keys, err = tx.Keys("", 0); err != nil {
		return nil, err
	}
	if snap.versions, err = tx.VersionsOf(snap.keyIDs()); err != nil {
		return nil, err
	}
	if snap.aliases, err = tx.Aliases("", 0); err != nil {
		return nil, err
	}
	if snap.principals, err = tx.Principals("", 0); err != nil {
		return nil, err
	}
	if snap.settings, err = tx.Settings(); err != nil {
		return nil, err
	}
	if snap.xksStores, err = tx.XKSStores("", 0); err != nil {
		return nil, err
	}
	if snap.grants, err = tx.Grants("", 0); err != nil {
		return nil, err
	}
	for _, name := range transientSettings {
		delete(snap.settings, name)
	}
	return snap, nil
}

// isEmpty reports whether tx holds none of the records Copy writes and
// reads back: no key, alias, principal, external key store, grant or
// setting (but transient ones, which Copy leaves alone), and no version
// of the keys keyIDs (those about to be copied). Tx lists versions only by
// key, so versions of other keys cannot be found; Copy neither writes nor
// reads them.
func isEmpty(tx Tx, keyIDs []string) (bool, error) {
	keys, err := tx.Keys("", 1)
	if err != nil {
		return false, err
	}
	versions, err := tx.VersionsOf(keyIDs)
	if err != nil {
		return false, err
	}
	aliases, err := tx.Aliases("", 1)
	if err != nil {
		return false, err
	}
	principals, err := tx.Principals("", 1)
	if err != nil {
		return false, err
	}
	stores, err := tx.XKSStores("", 1)
	if err != nil {
		return false, err
	}
	grants, err := tx.Grants("", 1)
	if err != nil {
		return false, err
	}
	settings, err := tx.Settings()
	if err != nil {
		return false, err
	}
	for _, name := range transientSettings {
		delete(settings, name)
	}
	return len(keys)+len(versions)+len(aliases)+len(principals)+len(stores)+len(grants)+len(settings) == 0, nil
}

func write(tx Tx, s *snapshot) error {
	for _, k := range s.keys {
		k.Revision = 0
		if _, err := tx.PutKey(k); err != nil {
			return err
		}
	}
	for _, v := range s.versions {
		if err := tx.PutVersion(v); err != nil {
			return err
		}
	}
	for _, a := range s.aliases {
		if err := tx.CreateAlias(a); err != nil {
			return err
		}
	}
	for _, p := range s.principals {
		if err := tx.CreatePrincipal(p); err != nil {
			return err
		}
	}
	for _, x := range s.xksStores {
		x.Revision = 0
		if _, err := tx.PutXKSStore(x); err != nil {
			return err
		}
	}
	for _, g := range s.grants {
		if err := tx.CreateGrant(g); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.settings)) {
		if err := tx.PutSetting(name, s.settings[name]); err != nil {
			return err
		}
	}
	return nil
}

// same reports the first difference between two snapshots, ignoring key
// and external key store revisions (a copy starts them again).
func same(a, b *snapshot) error {
	if a.counts() != b.counts() {
		return fmt.Errorf("counts %+v, want %+v", b.counts(), a.counts())
	}
	for i := range a.keys {
		x, y := a.keys[i], b.keys[i]
		x.Revision, y.Revision = 0, 0
		if !x.CreatedAt.Equal(y.CreatedAt) || x.ID != y.ID || x.State != y.State ||
			x.CurrentVersion != y.CurrentVersion || x.LatestVersion != y.LatestVersion {
			return fmt.Errorf("key %s", x.ID)
		}
	}
	for i := range a.versions {
		x, y := a.versions[i], b.versions[i]
		if x.KeyID != y.KeyID || x.Number != y.Number || x.ObjectID != y.ObjectID || x.State != y.State {
			return fmt.Errorf("key %s version %d", x.KeyID, x.Number)
		}
	}
	for i := range a.aliases {
		if a.aliases[i].Name != b.aliases[i].Name || a.aliases[i].KeyID != b.aliases[i].KeyID {
			return fmt.Errorf("alias %s", a.aliases[i].Name)
		}
	}
	for i := range a.principals {
		x, y := a.principals[i], b.principals[i]
		if x.AccessKeyID != y.AccessKeyID || !slices.Equal(x.SealedSecret, y.SealedSecret) ||
			!slices.EqualFunc(x.Statements, y.Statements, policy.Statement.Equal) {
			return fmt.Errorf("principal %s", x.AccessKeyID)
		}
	}
	for i := range a.xksStores {
		// Everything but the revision: the statements are its secondary
		// authorisation, and a copy that lost them would allow more.
		x, y := a.xksStores[i], b.xksStores[i]
		if x.Prefix != y.Prefix || !x.CreatedAt.Equal(y.CreatedAt) || len(x.Credentials) != len(y.Credentials) ||
			len(x.Keys) != len(y.Keys) || !slices.EqualFunc(x.Statements, y.Statements, policy.Statement.Equal) {
			return fmt.Errorf("external key store %s", x.Prefix)
		}
		for j := range x.Credentials {
			c, d := x.Credentials[j], y.Credentials[j]
			if c.AccessKeyID != d.AccessKeyID || !slices.Equal(c.SealedSecret, d.SealedSecret) || !c.CreatedAt.Equal(d.CreatedAt) {
				return fmt.Errorf("external key store %s credential %s", x.Prefix, c.AccessKeyID)
			}
		}
		for j := range x.Keys {
			if x.Keys[j].ExternalID != y.Keys[j].ExternalID || !slices.Equal(x.Keys[j].Usage, y.Keys[j].Usage) {
				return fmt.Errorf("external key store %s key %s", x.Prefix, x.Keys[j].ExternalID)
			}
		}
	}
	for i := range a.grants {
		// Everything: a copy that lost an operation or a constraint
		// (an empty ContextEquals, which maps.Equal takes for none, too)
		// would allow more or less than the grant did.
		x, y := a.grants[i], b.grants[i]
		if x.Ref() != y.Ref() || x.Name != y.Name || x.Grantee != y.Grantee || x.Retiring != y.Retiring || x.Issuer != y.Issuer ||
			!slices.Equal(x.Operations, y.Operations) || !maps.Equal(x.ContextEquals, y.ContextEquals) || (x.ContextEquals == nil) != (y.ContextEquals == nil) ||
			!maps.Equal(x.ContextSubset, y.ContextSubset) || !x.CreatedAt.Equal(y.CreatedAt) {
			return fmt.Errorf("grant %s", x.Ref())
		}
	}
	for name, v := range a.settings {
		if !slices.Equal(v, b.settings[name]) {
			return fmt.Errorf("setting %s", name)
		}
	}
	return nil
}
