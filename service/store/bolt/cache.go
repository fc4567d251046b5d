package bolt

import (
	"encoding/json"
	"maps"
	"slices"
	"sync"

	"github.com/hsmkms/hsmkms/service/store"
)

// decodeCache keeps decoded records by their encoded bytes. Decoding JSON
// costs microseconds on every request's hot path (a key and a version per
// request); looking the bytes up costs a hash. Keying by content needs no
// invalidation: the same bytes always decode to the same record, and a
// changed record has other bytes. Callers get clones, so the cached values
// are never shared.
type decodeCache struct {
	mu sync.RWMutex
	m  map[string]any
}

// maxCached bounds the cache; when full it starts over, which keeps memory
// bounded at the cost of a burst of decodes.
const maxCached = 1 << 16

func (c *decodeCache) get(data []byte) (any, bool) {
	c.mu.RLock()
	v, ok := c.m[string(data)]
	c.mu.RUnlock()
	return v, ok
}

func (c *decodeCache) put(data []byte, v any) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCached {
		c.m = make(map[string]any)
	}
	c.m[string(data)] = v
	c.mu.Unlock()
}

// decodeCached decodes data into a T through the cache; clone makes the
// caller's own copy.
func decodeCached[T any](c *decodeCache, data []byte, clone func(T) T) (T, error) {
	if v, ok := c.get(data); ok {
		return clone(v.(T)), nil
	}
	var rec T
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, err
	}
	c.put(data, rec)
	return clone(rec), nil
}

func cloneKey(k store.Key) store.Key {
	k.Tags = maps.Clone(k.Tags)
	k.Aliases = slices.Clone(k.Aliases)
	return k
}

func cloneVersion(v store.Version) store.Version { return v }

func clonePrincipal(p store.Principal) store.Principal {
	p.SealedSecret = slices.Clone(p.SealedSecret)
	p.Statements = slices.Clone(p.Statements)
	for i, st := range p.Statements {
		st.Actions, st.Resources = slices.Clone(st.Actions), slices.Clone(st.Resources)
		p.Statements[i] = st
	}
	return p
}
