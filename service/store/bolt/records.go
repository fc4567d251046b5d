package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/hsmkms/hsmkms/service/store"
)

// Key returns the key with the given ID.
func (t *tx) Key(id string) (store.Key, error) {
	var buf keyBuf
	return getCached(t, bucketKeys, append(buf[:0], id...), func() string { return "key " + id }, store.Key.Clone)
}

// Keys lists keys, tombstones included, ordered by ID.
func (t *tx) Keys(after string, limit int) ([]store.Key, error) {
	return list[store.Key](t, bucketKeys, after, limit, "key")
}

// PutKey creates or compare-and-sets k on its revision.
func (t *tx) PutKey(k store.Key) (uint64, error) {
	what := "key " + k.ID
	if k.Revision == 0 {
		k.Revision = 1
		return putKey(t, k, what, createOnly)
	}
	cur, err := getJSON[struct{ Revision uint64 }](t, bucketKeys, []byte(k.ID), func() string { return what })
	if err != nil {
		return 0, err
	}
	if cur.Revision != k.Revision {
		return 0, fmt.Errorf("%s: revision %d, stored %d: %w", what, k.Revision, cur.Revision, store.ErrConflict)
	}
	k.Revision++
	return putKey(t, k, what, createOrReplace)
}

// putKey writes k and returns its revision, or 0 and the error.
func putKey(t *tx, k store.Key, what string, p presence) (uint64, error) {
	if err := putJSON(t, bucketKeys, []byte(k.ID), k, what, p); err != nil {
		return 0, err
	}
	return k.Revision, nil
}

// versionKey is keyID + "/" + the number as a big-endian uint32, so that a
// key's versions sort by number.
func versionKey(keyID string, number uint32) []byte {
	return binary.BigEndian.AppendUint32(versionPrefix(keyID), number)
}

func versionPrefix(keyID string) []byte {
	return append([]byte(keyID), '/')
}

func versionName(keyID string, number uint32) string {
	return fmt.Sprintf("key %s version %d", keyID, number)
}

// Version returns one version of a key.
func (t *tx) Version(keyID string, number uint32) (store.Version, error) {
	var buf keyBuf
	k := binary.BigEndian.AppendUint32(append(append(buf[:0], keyID...), '/'), number)
	return getCached(t, bucketVersions, k, func() string { return versionName(keyID, number) }, store.Version.Clone)
}

// Versions lists a key's versions by number.
func (t *tx) Versions(keyID string) ([]store.Version, error) {
	out := []store.Version{}
	err := scanPrefix(t, bucketVersions, versionPrefix(keyID), 4, func(k, v []byte) error {
		var rec store.Version
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("key %s version %x: decode: %w", keyID, k, err)
		}
		out = append(out, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// VersionsOf lists the versions of several keys; the file is in this
// process, so it is Versions per key.
func (t *tx) VersionsOf(keyIDs []string) ([]store.Version, error) {
	out := []store.Version{}
	seen := make(map[string]bool, len(keyIDs))
	for _, id := range keyIDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		vs, err := t.Versions(id)
		if err != nil {
			return nil, err
		}
		out = append(out, vs...)
	}
	return out, nil
}

// PutVersion creates or replaces a version.
func (t *tx) PutVersion(v store.Version) error {
	return putJSON(t, bucketVersions, versionKey(v.KeyID, v.Number), v, versionName(v.KeyID, v.Number), createOrReplace)
}

// DeleteVersion removes a version.
func (t *tx) DeleteVersion(keyID string, number uint32) error {
	return del(t, bucketVersions, versionKey(keyID, number), versionName(keyID, number))
}

// Alias returns the alias with the given name.
func (t *tx) Alias(name string) (store.Alias, error) {
	var buf keyBuf
	return getCached(t, bucketAliases, append(buf[:0], name...), func() string { return "alias " + name }, store.Alias.Clone)
}

// Aliases lists aliases by name.
func (t *tx) Aliases(after string, limit int) ([]store.Alias, error) {
	return list[store.Alias](t, bucketAliases, after, limit, "alias")
}

// CreateAlias adds a new alias.
func (t *tx) CreateAlias(a store.Alias) error {
	return putJSON(t, bucketAliases, []byte(a.Name), a, "alias "+a.Name, createOnly)
}

// PutAlias replaces an existing alias.
func (t *tx) PutAlias(a store.Alias) error {
	return putJSON(t, bucketAliases, []byte(a.Name), a, "alias "+a.Name, replaceOnly)
}

// DeleteAlias removes an alias.
func (t *tx) DeleteAlias(name string) error {
	return del(t, bucketAliases, []byte(name), "alias "+name)
}

// Principal returns the principal with the given access key ID.
func (t *tx) Principal(accessKeyID string) (store.Principal, error) {
	var buf keyBuf
	return getCached(t, bucketPrincipals, append(buf[:0], accessKeyID...), func() string { return "principal " + accessKeyID }, store.Principal.Clone)
}

// Principals lists principals by access key ID.
func (t *tx) Principals(after string, limit int) ([]store.Principal, error) {
	return list[store.Principal](t, bucketPrincipals, after, limit, "principal")
}

// CreatePrincipal adds a new principal.
func (t *tx) CreatePrincipal(p store.Principal) error {
	return putJSON(t, bucketPrincipals, []byte(p.AccessKeyID), p, "principal "+p.AccessKeyID, createOnly)
}

// PutPrincipal replaces an existing principal.
func (t *tx) PutPrincipal(p store.Principal) error {
	return putJSON(t, bucketPrincipals, []byte(p.AccessKeyID), p, "principal "+p.AccessKeyID, replaceOnly)
}

// DeletePrincipal removes a principal.
func (t *tx) DeletePrincipal(accessKeyID string) error {
	return del(t, bucketPrincipals, []byte(accessKeyID), "principal "+accessKeyID)
}

// Setting returns a copy of a setting's value.
func (t *tx) Setting(name string) ([]byte, error) {
	b, err := t.bucket(bucketSettings)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("setting %s: %w", name, store.ErrNotFound)
	}
	return append([]byte{}, v...), nil
}

// PutSetting creates or replaces a setting with a copy of value.
func (t *tx) PutSetting(name string, value []byte) error {
	b, err := t.bucket(bucketSettings)
	if err != nil {
		return err
	}
	t.touch(bucketSettings, []byte(name)) // not cached today; kept coherent if it ever is
	if err := b.Put([]byte(name), append([]byte{}, value...)); err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	return nil
}

// Settings returns every setting by name.
func (t *tx) Settings() (map[string][]byte, error) {
	b, err := t.bucket(bucketSettings)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err = b.ForEach(func(k, v []byte) error {
		out[string(k)] = append([]byte{}, v...)
		return nil
	})
	return out, err
}

// XKSStore returns the external key store with the given prefix.
func (t *tx) XKSStore(prefix string) (store.XKSStore, error) {
	var buf keyBuf
	return getCached(t, bucketXKSStores, append(buf[:0], prefix...), func() string { return "external key store " + prefix }, store.XKSStore.Clone)
}

// XKSStores lists external key stores by prefix.
func (t *tx) XKSStores(after string, limit int) ([]store.XKSStore, error) {
	return list[store.XKSStore](t, bucketXKSStores, after, limit, "external key store")
}

// PutXKSStore creates or compare-and-sets s on its revision.
func (t *tx) PutXKSStore(s store.XKSStore) (uint64, error) {
	what := "external key store " + s.Prefix
	p := createOnly
	if s.Revision != 0 {
		cur, err := getJSON[struct{ Revision uint64 }](t, bucketXKSStores, []byte(s.Prefix), func() string { return what })
		if err != nil {
			return 0, err
		}
		if cur.Revision != s.Revision {
			return 0, fmt.Errorf("%s: revision %d, stored %d: %w", what, s.Revision, cur.Revision, store.ErrConflict)
		}
		p = replaceOnly
	}
	s.Revision++
	if err := putJSON(t, bucketXKSStores, []byte(s.Prefix), s, what, p); err != nil {
		return 0, err
	}
	return s.Revision, nil
}

// DeleteXKSStore removes an external key store.
func (t *tx) DeleteXKSStore(prefix string) error {
	return del(t, bucketXKSStores, []byte(prefix), "external key store "+prefix)
}

// Grant returns the grant whose Ref is ref.
func (t *tx) Grant(ref string) (store.Grant, error) {
	var buf keyBuf
	return getCached(t, bucketGrants, append(buf[:0], ref...), func() string { return "grant " + ref }, store.Grant.Clone)
}

// Grants lists grants by Ref.
func (t *tx) Grants(after string, limit int) ([]store.Grant, error) {
	return list[store.Grant](t, bucketGrants, after, limit, "grant")
}

// CreateGrant adds a new grant.
func (t *tx) CreateGrant(g store.Grant) error {
	return putJSON(t, bucketGrants, []byte(g.Ref()), g, "grant "+g.Ref(), createOnly)
}

// PutGrant replaces an existing grant.
func (t *tx) PutGrant(g store.Grant) error {
	return putJSON(t, bucketGrants, []byte(g.Ref()), g, "grant "+g.Ref(), replaceOnly)
}

// DeleteGrant removes a grant.
func (t *tx) DeleteGrant(ref string) error {
	return del(t, bucketGrants, []byte(ref), "grant "+ref)
}
