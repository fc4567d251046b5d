package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hsmkms/hsmkms/service/store"
)

// errTxEnded is returned by a Tx used after its transaction function
// returned.
var errTxEnded = errors.New("store: transaction has ended")

// errSnapshotMoved is returned by every read of a View's Tx once a write
// committed between a read the record cache answered and the first read it
// could not: no bbolt snapshot holds both. View then runs fn again.
var errSnapshotMoved = errors.New("store: a write committed during the read; reading again")

// tx implements store.Tx over one bbolt transaction. A View's tx takes its
// bbolt snapshot only at the first read the record cache cannot answer: a
// request whose records are all cached never opens one.
type tx struct {
	btx   *bbolt.Tx
	s     *Store
	gen   uint64      // the record cache's generation, or noCache
	hit   bool        // the cache answered a read
	moved bool        // see errSnapshotMoved
	wrote []recordKey // the records a write transaction touched
	ended bool
}

var _ store.Tx = (*tx)(nil)

// run calls fn with t over btx; t refuses use once fn has returned.
func run(btx *bbolt.Tx, t *tx, fn func(store.Tx) error) error {
	t.btx = btx
	defer func() { t.ended = true }()
	return fn(t)
}

// bucket returns the bucket of a record kind.
func (t *tx) bucket(name []byte) (*bbolt.Bucket, error) {
	if t.ended {
		return nil, errTxEnded
	}
	if t.btx == nil {
		if err := t.begin(); err != nil {
			return nil, err
		}
	}
	return t.btx.Bucket(name), nil
}

// begin takes a View's bbolt snapshot. With no write since the view began
// it holds what the cache answered; after a write it is newer, which is
// fine only if the cache has answered nothing yet. The snapshot is taken
// before the check and with no lock held: bbolt's Close holds its meta
// lock while it waits for open transactions, which may be waiting for the
// cache's lock.
func (t *tx) begin() error {
	if t.moved {
		return errSnapshotMoved
	}
	btx, err := t.s.db.Begin(false)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	if err != nil {
		return err
	}
	switch {
	case t.s.records.current(t.gen):
	case t.hit:
		_ = btx.Rollback()
		t.moved = true
		return errSnapshotMoved
	default:
		t.gen = noCache
	}
	t.btx = btx
	return nil
}

// get returns the encoded record at k, or ErrNotFound naming what.
// what names the record in errors; it is called only for one, so that a
// hit builds no name.
func get(t *tx, bucket, k []byte, what func() string) ([]byte, error) {
	b, err := t.bucket(bucket)
	if err != nil {
		return nil, err
	}
	var data []byte
	if b != nil { // nil: a read-only file older than the bucket
		data = b.Get(k)
	}
	if data == nil {
		return nil, fmt.Errorf("%s: %w", what(), store.ErrNotFound)
	}
	return data, nil
}

// getJSON decodes the record at k into a fresh value.
func getJSON[T any](t *tx, bucket, k []byte, what func() string) (T, error) {
	var rec T
	data, err := get(t, bucket, k, what)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("%s: decode: %w", what(), err)
	}
	return rec, nil
}

// keyBuf holds a record's key on the stack: a cache hit then allocates
// nothing for it.
type keyBuf [80]byte

// getCached is getJSON through the record cache, for the records every
// request reads. k is not kept: it may be a keyBuf.
func getCached[T any](t *tx, bucket, k []byte, what func() string, clone func(T) T) (T, error) {
	if t.ended {
		var zero T
		return zero, errTxEnded
	}
	if v, ok := t.s.records.get(t.gen, bucket, k); ok {
		t.hit = true
		return clone(v.(T)), nil
	}
	k = bytes.Clone(k)
	rec, err := getJSON[T](t, bucket, k, what)
	if err != nil {
		return rec, err
	}
	t.s.records.put(t.gen, bucket, k, rec)
	return clone(rec), nil
}

// touch notes that the transaction writes the record at k.
func (t *tx) touch(bucket, k []byte) {
	t.wrote = append(t.wrote, recordKey{string(bucket), string(k)})
}

// presence is what a put requires of the record it overwrites.
type presence int

const (
	createOrReplace presence = iota
	createOnly               // ErrExists if the record exists
	replaceOnly              // ErrNotFound if it does not
)

// putJSON encodes rec at k if the record there is as p requires.
func putJSON(t *tx, bucket, k []byte, rec any, what string, p presence) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	switch found := b.Get(k) != nil; {
	case found && p == createOnly:
		return fmt.Errorf("%s: %w", what, store.ErrExists)
	case !found && p == replaceOnly:
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%s: encode: %w", what, err)
	}
	t.touch(bucket, k)
	if err := b.Put(k, data); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// del removes the record at k, or returns ErrNotFound naming what.
func del(t *tx, bucket, k []byte, what string) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	if b.Get(k) == nil {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	t.touch(bucket, k)
	if err := b.Delete(k); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// list decodes at most limit records (limit <= 0: all) whose keys sort
// after `after`, in key order. It never returns a nil slice.
func list[T any](t *tx, bucket []byte, after string, limit int, what string) ([]T, error) {
	b, err := t.bucket(bucket)
	if err != nil {
		return nil, err
	}
	out := []T{}
	if b == nil { // a read-only file older than the bucket
		return out, nil
	}
	c := b.Cursor()
	k, v := c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	for ; k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
		var rec T
		if err := json.Unmarshal(v, &rec); err != nil {
			return nil, fmt.Errorf("%s %s: decode: %w", what, k, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// scanPrefix calls fn for each record whose key is prefix followed by
// exactly n more bytes, in key order.
func scanPrefix(t *tx, bucket, prefix []byte, n int, fn func(k, v []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != len(prefix)+n {
			continue // another key's version whose ID extends this one
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}
