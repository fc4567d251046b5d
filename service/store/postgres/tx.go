package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hsmkms/hsmkms/service/store"
)

// tx is one store.Tx. A view's database transaction begins at its first
// read the cache cannot answer; an update's at once.
type tx struct {
	s      *Store
	ctx    context.Context // the caller's
	pg     pgx.Tx
	pgCtx  context.Context // ctx bounded by OpTimeout, for database calls
	cancel context.CancelFunc
	write  bool

	// Views: the cache revision read at, the snapshot's revision, and
	// whether the snapshot is newer than the cache (the View runs again).
	useCache bool
	cacheRev uint64
	snapRev  uint64
	moved    bool

	touched []string // the items an update wrote
	err     error    // the first database error; the transaction is dead after it
}

// begin starts the database transaction if it has not started.
func (t *tx) begin() error {
	if t.pg != nil || t.err != nil {
		return t.err
	}
	t.s.began.Add(1)
	t.pgCtx, t.cancel = context.WithTimeout(t.ctx, t.s.cfg.OpTimeout)
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead}
	if !t.write {
		opts.AccessMode = pgx.ReadOnly
	}
	pg, err := t.s.pool.BeginTx(t.pgCtx, opts)
	if err != nil {
		return t.fail(err)
	}
	t.pg = pg
	if t.write {
		return nil
	}
	if err := pg.QueryRow(t.pgCtx, "SELECT rev FROM hsmkms_revision").Scan(&t.snapRev); err != nil {
		return t.fail(err)
	}
	if t.useCache && t.snapRev != t.cacheRev {
		t.moved = true
	}
	return nil
}

// end rolls back a transaction that was not committed.
func (t *tx) end() {
	if t.pg != nil {
		// Rollback on a live context even when the caller's is done, so
		// that the connection goes back to the pool clean.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), t.s.cfg.OpTimeout)
		_ = t.pg.Rollback(ctx)
		cancel()
		t.pg = nil
	}
	if t.cancel != nil {
		t.cancel()
	}
}

// fail records the transaction's first database error and returns it
// classified.
func (t *tx) fail(err error) error {
	if t.err == nil {
		t.err = t.s.classify(t.ctx, err)
	}
	return t.err
}

// cacheable reports whether records this view reads from the database may
// enter the cache.
func (t *tx) cacheable() bool { return !t.write && (!t.useCache || !t.moved) }

// get reads one record: from the cache when the view may, else with query.
func get[T any](t *tx, it []byte, what func() string, clone func(T) T, decode func([]byte) (T, error), query string, args ...any) (T, error) {
	var zero T
	if t.useCache && !t.moved {
		if v, ok := t.s.records.get(t.cacheRev, it); ok {
			return clone(v.(T)), nil
		}
	}
	if err := t.begin(); err != nil {
		return zero, err
	}
	var b []byte
	err := t.pg.QueryRow(t.pgCtx, query, args...).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return zero, fmt.Errorf("%s: %w", what(), store.ErrNotFound)
	}
	if err != nil {
		return zero, t.fail(err)
	}
	rec, err := decode(b)
	if err != nil {
		return zero, fmt.Errorf("%s: decode: %w", what(), err)
	}
	if t.cacheable() {
		t.s.records.put(t.snapRev, string(it), clone(rec))
	}
	return rec, nil
}

func decodeJSON[T any](b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

func decodeBytes(b []byte) ([]byte, error) { return slices.Clone(b), nil }

// list reads records ordered by identity (never from the cache).
func list[T any](t *tx, what, query string, args ...any) ([]T, error) {
	if err := t.begin(); err != nil {
		return nil, err
	}
	rows, err := t.pg.Query(t.pgCtx, query, args...)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, t.fail(err)
		}
		rec, err := decodeJSON[T](b)
		if err != nil {
			return nil, fmt.Errorf("%s: decode: %w", what, err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(err)
	}
	return out, nil
}

// limitArg is a list's LIMIT: NULL (no limit) for limit <= 0.
func limitArg(limit int) any {
	if limit <= 0 {
		return nil
	}
	return int64(limit)
}

// exec runs a write and returns the rows it affected; it records item as
// touched when any was.
func (t *tx) exec(it string, query string, args ...any) (int64, error) {
	if !t.write {
		return 0, errors.New("store: write in a read-only transaction")
	}
	tag, err := t.pg.Exec(t.pgCtx, query, args...)
	if err != nil {
		return 0, t.fail(err)
	}
	if n := tag.RowsAffected(); n > 0 {
		t.touched = append(t.touched, it)
		return n, nil
	}
	return 0, nil
}

// publish raises the store's revision and lists the items this update
// wrote in the change feed, returning the new revision (0 when nothing was
// written). Holding the revision row until commit makes writers commit in
// revision order; a writer whose snapshot predates another's commit fails
// here with a serialisation error and runs again.
func (t *tx) publish() (uint64, error) {
	if len(t.touched) == 0 {
		return 0, nil
	}
	slices.Sort(t.touched)
	t.touched = slices.Compact(t.touched)
	var rev uint64
	if err := t.pg.QueryRow(t.pgCtx, "UPDATE hsmkms_revision SET rev = rev + 1 RETURNING rev").Scan(&rev); err != nil {
		return 0, err
	}
	if _, err := t.pg.Exec(t.pgCtx, "INSERT INTO hsmkms_changes (rev, item) SELECT $1, unnest($2::text[])", int64(rev), t.touched); err != nil {
		return 0, err
	}
	if rev%pruneEvery == 0 {
		if _, err := t.pg.Exec(t.pgCtx, `WITH gone AS (DELETE FROM hsmkms_changes WHERE at < now() - $1::interval RETURNING rev)
			UPDATE hsmkms_revision SET pruned_through = greatest(pruned_through, (SELECT max(rev) FROM gone))`,
			feedRetention.String()); err != nil {
			return 0, err
		}
	}
	if _, err := t.pg.Exec(t.pgCtx, "SELECT pg_notify('"+feedChannel+"', $1)", fmt.Sprint(rev)); err != nil {
		return 0, err
	}
	return rev, nil
}

// The change feed keeps feedRetention of changes; a process that has not
// followed it for longer drops its whole cache. Every pruneEvery-th write
// prunes it.
const (
	feedRetention = 15 * time.Minute
	pruneEvery    = 256
)

func keyWhat(id string) func() string { return func() string { return "key " + id } }

// Key returns the key with the given ID.
func (t *tx) Key(id string) (store.Key, error) {
	var buf itemBuf
	return get(t, item(buf[:0], itemKey, id), keyWhat(id), store.Key.Clone, decodeJSON[store.Key],
		"SELECT record FROM hsmkms_keys WHERE id = $1", id)
}

// Keys lists keys, tombstones included, ordered by ID.
func (t *tx) Keys(after string, limit int) ([]store.Key, error) {
	return list[store.Key](t, "key", "SELECT record FROM hsmkms_keys WHERE id > $1 ORDER BY id LIMIT $2", after, limitArg(limit))
}

// PutKey creates k (revision 0) or compare-and-sets it on its revision.
func (t *tx) PutKey(k store.Key) (uint64, error) {
	what := "key " + k.ID
	it := string(item(nil, itemKey, k.ID))
	if k.Revision == 0 {
		k.Revision = 1
		rec, err := json.Marshal(k)
		if err != nil {
			return 0, fmt.Errorf("%s: encode: %w", what, err)
		}
		n, err := t.exec(it, "INSERT INTO hsmkms_keys (id, revision, record) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING", k.ID, rec)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, fmt.Errorf("%s: %w", what, store.ErrExists)
		}
		return 1, nil
	}
	old := k.Revision
	k.Revision++
	rec, err := json.Marshal(k)
	if err != nil {
		return 0, fmt.Errorf("%s: encode: %w", what, err)
	}
	n, err := t.exec(it, "UPDATE hsmkms_keys SET revision = $2, record = $3 WHERE id = $1 AND revision = $4",
		k.ID, int64(k.Revision), rec, int64(old))
	if err != nil {
		return 0, err
	}
	if n == 1 {
		return k.Revision, nil
	}
	var stored int64
	err = t.pg.QueryRow(t.pgCtx, "SELECT revision FROM hsmkms_keys WHERE id = $1", k.ID).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return 0, t.fail(err)
	}
	return 0, fmt.Errorf("%s: revision %d, stored %d: %w", what, old, stored, store.ErrConflict)
}

func versionWhat(keyID string, number uint32) func() string {
	return func() string { return fmt.Sprintf("key %s version %d", keyID, number) }
}

// Version returns one version of a key.
func (t *tx) Version(keyID string, number uint32) (store.Version, error) {
	var buf itemBuf
	return get(t, versionItem(buf[:0], keyID, number), versionWhat(keyID, number), store.Version.Clone,
		decodeJSON[store.Version], "SELECT record FROM hsmkms_versions WHERE key_id = $1 AND number = $2", keyID, int64(number))
}

// Versions lists a key's versions by number.
func (t *tx) Versions(keyID string) ([]store.Version, error) {
	return list[store.Version](t, "key "+keyID+" version",
		"SELECT record FROM hsmkms_versions WHERE key_id = $1 ORDER BY number", keyID)
}

// VersionsOf lists the versions of several keys in one query, put in the
// order of keyIDs here rather than by the database's collation.
func (t *tx) VersionsOf(keyIDs []string) ([]store.Version, error) {
	out := []store.Version{}
	if len(keyIDs) == 0 {
		return out, nil
	}
	all, err := list[store.Version](t, "versions of several keys",
		"SELECT record FROM hsmkms_versions WHERE key_id = ANY($1) ORDER BY key_id, number", keyIDs)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string][]store.Version, len(keyIDs))
	for _, v := range all {
		byKey[v.KeyID] = append(byKey[v.KeyID], v)
	}
	for _, id := range keyIDs {
		out = append(out, byKey[id]...)
		delete(byKey, id) // a key named twice is listed once
	}
	return out, nil
}

// PutVersion creates or replaces a version.
func (t *tx) PutVersion(v store.Version) error {
	rec, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: encode: %w", versionWhat(v.KeyID, v.Number)(), err)
	}
	_, err = t.exec(string(versionItem(nil, v.KeyID, v.Number)), `INSERT INTO hsmkms_versions (key_id, number, record) VALUES ($1, $2, $3)
		ON CONFLICT (key_id, number) DO UPDATE SET record = excluded.record`, v.KeyID, int64(v.Number), rec)
	return err
}

// DeleteVersion removes a version.
func (t *tx) DeleteVersion(keyID string, number uint32) error {
	n, err := t.exec(string(versionItem(nil, keyID, number)),
		"DELETE FROM hsmkms_versions WHERE key_id = $1 AND number = $2", keyID, int64(number))
	if err == nil && n == 0 {
		err = fmt.Errorf("%s: %w", versionWhat(keyID, number)(), store.ErrNotFound)
	}
	return err
}

// named describes one kind of record kept by a name: aliases, principals.
type named struct {
	kind  byte
	table string
	col   string
	what  string
}

var (
	aliases    = named{itemAlias, "hsmkms_aliases", "name", "alias"}
	principals = named{itemPrincipal, "hsmkms_principals", "access_key_id", "principal"}
)

func getNamed[T any](t *tx, n named, name string, clone func(T) T) (T, error) {
	var buf itemBuf
	return get(t, item(buf[:0], n.kind, name), func() string { return n.what + " " + name }, clone, decodeJSON[T],
		"SELECT record FROM "+n.table+" WHERE "+n.col+" = $1", name)
}

func listNamed[T any](t *tx, n named, after string, limit int) ([]T, error) {
	return list[T](t, n.what, "SELECT record FROM "+n.table+" WHERE "+n.col+" > $1 ORDER BY "+n.col+" LIMIT $2", after, limitArg(limit))
}

func createNamed(t *tx, n named, name string, v any) error {
	rec, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s %s: encode: %w", n.what, name, err)
	}
	c, err := t.exec(string(item(nil, n.kind, name)),
		"INSERT INTO "+n.table+" ("+n.col+", record) VALUES ($1, $2) ON CONFLICT DO NOTHING", name, rec)
	if err == nil && c == 0 {
		err = fmt.Errorf("%s %s: %w", n.what, name, store.ErrExists)
	}
	return err
}

func putNamed(t *tx, n named, name string, v any) error {
	rec, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s %s: encode: %w", n.what, name, err)
	}
	c, err := t.exec(string(item(nil, n.kind, name)),
		"UPDATE "+n.table+" SET record = $2 WHERE "+n.col+" = $1", name, rec)
	if err == nil && c == 0 {
		err = fmt.Errorf("%s %s: %w", n.what, name, store.ErrNotFound)
	}
	return err
}

func deleteNamed(t *tx, n named, name string) error {
	c, err := t.exec(string(item(nil, n.kind, name)), "DELETE FROM "+n.table+" WHERE "+n.col+" = $1", name)
	if err == nil && c == 0 {
		err = fmt.Errorf("%s %s: %w", n.what, name, store.ErrNotFound)
	}
	return err
}

// Alias returns the alias with the given name.
func (t *tx) Alias(name string) (store.Alias, error) {
	return getNamed(t, aliases, name, store.Alias.Clone)
}

// Aliases lists aliases by name.
func (t *tx) Aliases(after string, limit int) ([]store.Alias, error) {
	return listNamed[store.Alias](t, aliases, after, limit)
}

// CreateAlias adds an alias.
func (t *tx) CreateAlias(a store.Alias) error { return createNamed(t, aliases, a.Name, a) }

// PutAlias replaces an alias.
func (t *tx) PutAlias(a store.Alias) error { return putNamed(t, aliases, a.Name, a) }

// DeleteAlias removes an alias.
func (t *tx) DeleteAlias(name string) error { return deleteNamed(t, aliases, name) }

// Principal returns the principal with the given access key ID.
func (t *tx) Principal(id string) (store.Principal, error) {
	return getNamed(t, principals, id, store.Principal.Clone)
}

// Principals lists principals by access key ID.
func (t *tx) Principals(after string, limit int) ([]store.Principal, error) {
	return listNamed[store.Principal](t, principals, after, limit)
}

// CreatePrincipal adds a principal.
func (t *tx) CreatePrincipal(p store.Principal) error {
	return createNamed(t, principals, p.AccessKeyID, p)
}

// PutPrincipal replaces a principal.
func (t *tx) PutPrincipal(p store.Principal) error {
	return putNamed(t, principals, p.AccessKeyID, p)
}

// DeletePrincipal removes a principal.
func (t *tx) DeletePrincipal(id string) error { return deleteNamed(t, principals, id) }

var xksStores = named{itemXKSStore, "hsmkms_xks_stores", "prefix", "external key store"}

// XKSStore returns the external key store with the given prefix.
func (t *tx) XKSStore(prefix string) (store.XKSStore, error) {
	return getNamed(t, xksStores, prefix, store.XKSStore.Clone)
}

// XKSStores lists external key stores by prefix.
func (t *tx) XKSStores(after string, limit int) ([]store.XKSStore, error) {
	return listNamed[store.XKSStore](t, xksStores, after, limit)
}

// PutXKSStore creates s, or compare-and-sets it on its revision.
func (t *tx) PutXKSStore(s store.XKSStore) (uint64, error) {
	what := "external key store " + s.Prefix
	it := string(item(nil, itemXKSStore, s.Prefix))
	old := s.Revision
	s.Revision++
	rec, err := json.Marshal(s)
	if err != nil {
		return 0, fmt.Errorf("%s: encode: %w", what, err)
	}
	if old == 0 {
		n, err := t.exec(it, "INSERT INTO hsmkms_xks_stores (prefix, revision, record) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING", s.Prefix, rec)
		if err == nil && n == 0 {
			err = fmt.Errorf("%s: %w", what, store.ErrExists)
		}
		if err != nil {
			return 0, err
		}
		return s.Revision, nil
	}
	n, err := t.exec(it, "UPDATE hsmkms_xks_stores SET revision = $2, record = $3 WHERE prefix = $1 AND revision = $4",
		s.Prefix, int64(s.Revision), rec, int64(old))
	if err != nil {
		return 0, err
	}
	if n == 1 {
		return s.Revision, nil
	}
	var stored int64
	err = t.pg.QueryRow(t.pgCtx, "SELECT revision FROM hsmkms_xks_stores WHERE prefix = $1", s.Prefix).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return 0, t.fail(err)
	}
	return 0, fmt.Errorf("%s: revision %d, stored %d: %w", what, old, stored, store.ErrConflict)
}

// DeleteXKSStore removes an external key store.
func (t *tx) DeleteXKSStore(prefix string) error { return deleteNamed(t, xksStores, prefix) }

// Setting returns a setting's value.
func (t *tx) Setting(name string) ([]byte, error) {
	var buf itemBuf
	return get(t, item(buf[:0], itemSetting, name), func() string { return "setting " + name }, slices.Clone[[]byte],
		decodeBytes, "SELECT value FROM hsmkms_settings WHERE name = $1", name)
}

// PutSetting creates or replaces a setting.
func (t *tx) PutSetting(name string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	_, err := t.exec(string(item(nil, itemSetting, name)), `INSERT INTO hsmkms_settings (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	return err
}

// Settings returns every setting by name.
func (t *tx) Settings() (map[string][]byte, error) {
	if err := t.begin(); err != nil {
		return nil, err
	}
	rows, err := t.pg.Query(t.pgCtx, "SELECT name, value FROM hsmkms_settings")
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var name string
		var value []byte
		if err := rows.Scan(&name, &value); err != nil {
			return nil, t.fail(err)
		}
		out[name] = value
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(err)
	}
	return out, nil
}

var grants = named{itemGrant, "hsmkms_grants", "ref", "grant"}

// Grant returns the grant whose Ref is ref.
func (t *tx) Grant(ref string) (store.Grant, error) {
	return getNamed(t, grants, ref, store.Grant.Clone)
}

// Grants lists grants by Ref.
func (t *tx) Grants(after string, limit int) ([]store.Grant, error) {
	return listNamed[store.Grant](t, grants, after, limit)
}

// CreateGrant adds a grant.
func (t *tx) CreateGrant(g store.Grant) error { return createNamed(t, grants, g.Ref(), g) }

// PutGrant replaces a grant.
func (t *tx) PutGrant(g store.Grant) error { return putNamed(t, grants, g.Ref(), g) }

// DeleteGrant removes a grant.
func (t *tx) DeleteGrant(ref string) error { return deleteNamed(t, grants, ref) }
