package postgres

import (
	"strconv"
	"sync"
	"time"
)

// recordCache keeps decoded records by item (see itemKey) as of one store
// revision, so that a View of hot records (a key, its current version, an
// alias, a principal) makes no database round trip.
//
// Coherence: the cache holds the state of revision rev. The follower moves
// rev forward from the change feed, dropping the items each revision
// wrote, and records when it last did so; a write of this process drops its
// items at once and raises target, the newest revision known to be
// committed. The cache answers only while rev >= target (this process sees
// its own writes) and the last sync is at most maxStale old (another
// replica's writes are seen within maxStale, or the cache is not used).
// Records read from the database enter the cache only from a snapshot of
// exactly revision rev.
type recordCache struct {
	maxStale time.Duration

	mu     sync.RWMutex
	rev    uint64
	target uint64
	synced time.Time
	m      map[string]any
}

// maxCached bounds the cache; when full it starts over.
const maxCached = 1 << 16

func newRecordCache(rev uint64, maxStale time.Duration) *recordCache {
	return &recordCache{maxStale: maxStale, rev: rev, target: rev, synced: time.Now(), m: map[string]any{}}
}

// readRev returns the revision a View may read the cache at, and false
// when the cache must not be used now.
func (c *recordCache) readRev() (uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev, c.rev >= c.target && time.Since(c.synced) <= c.maxStale
}

// get returns the cached record for item as of revision rev.
func (c *recordCache) get(rev uint64, item []byte) (any, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if rev != c.rev {
		return nil, false
	}
	v, ok := c.m[string(item)]
	return v, ok
}

// put caches v, read from a snapshot of revision rev.
func (c *recordCache) put(rev uint64, item string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev != c.rev || c.rev < c.target {
		return
	}
	if len(c.m) >= maxCached {
		c.m = map[string]any{}
	}
	c.m[item] = v
}

// wrote records a commit of this process at revision rev.
func (c *recordCache) wrote(rev uint64, items []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		delete(c.m, it)
	}
	c.target = max(c.target, rev)
}

// apply records a sync with the change feed: the store is at revision rev,
// and items changed since the cache's revision. flush drops everything (the
// feed no longer holds every change since the cache's revision).
func (c *recordCache) apply(rev uint64, items []string, flush bool, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev < c.rev {
		// The database went back in time: a restore. Nothing cached holds.
		flush, c.target = true, rev
	}
	if flush {
		c.m = map[string]any{}
	} else {
		for _, it := range items {
			delete(c.m, it)
		}
	}
	c.rev, c.synced = rev, at
	c.target = max(c.target, rev)
}

// revision returns the cache's revision.
func (c *recordCache) revision() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// Item kinds: the first byte of a cache item and of a change row's item.
const (
	itemKey       = 'k'
	itemVersion   = 'v'
	itemAlias     = 'a'
	itemPrincipal = 'p'
	itemSetting   = 's'
	itemXKSStore  = 'x'
	itemGrant     = 'g'
)

// itemBuf holds an item name without allocating for the usual lengths.
type itemBuf [96]byte

// item appends the item name of a record to buf: its kind, then its
// identity (a version's is "<key ID>/<number>").
func item(buf []byte, kind byte, id string) []byte {
	return append(append(buf, kind), id...)
}

func versionItem(buf []byte, keyID string, number uint32) []byte {
	buf = append(append(append(buf, itemVersion), keyID...), '/')
	return strconv.AppendUint(buf, uint64(number), 10)
}

// age is how long ago the cache last synced with the change feed.
func (c *recordCache) age() time.Duration {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return time.Since(c.synced)
}
