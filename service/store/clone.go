package store

import (
	"maps"
	"slices"
)

// Clone returns a copy of k that shares no memory with it, for stores
// that cache records and must hand each caller its own.
func (k Key) Clone() Key {
	k.Tags = maps.Clone(k.Tags)
	k.Aliases = slices.Clone(k.Aliases)
	k.KeyCheck = slices.Clone(k.KeyCheck)
	if k.Import != nil {
		im := *k.Import
		im.TokenHash = slices.Clone(im.TokenHash)
		k.Import = &im
	}
	return k
}

// Clone returns a copy of v (a version holds no references).
func (v Version) Clone() Version { return v }

// Clone returns a copy of a (an alias holds no references).
func (a Alias) Clone() Alias { return a }

// Clone returns a copy of p that shares no memory with it.
func (p Principal) Clone() Principal {
	p.SealedSecret = slices.Clone(p.SealedSecret)
	p.Statements = slices.Clone(p.Statements)
	for i, st := range p.Statements {
		st.Actions, st.Resources = slices.Clone(st.Actions), slices.Clone(st.Resources)
		p.Statements[i] = st
	}
	return p
}

// Clone returns a copy of s that shares no memory with it.
func (s XKSStore) Clone() XKSStore {
	s.Credentials = slices.Clone(s.Credentials)
	for i, c := range s.Credentials {
		c.SealedSecret = slices.Clone(c.SealedSecret)
		s.Credentials[i] = c
	}
	s.Keys = slices.Clone(s.Keys)
	for i, k := range s.Keys {
		k.Usage = slices.Clone(k.Usage)
		s.Keys[i] = k
	}
	s.Statements = slices.Clone(s.Statements)
	for i, st := range s.Statements {
		st.Actions, st.Resources = slices.Clone(st.Actions), slices.Clone(st.Resources)
		s.Statements[i] = st
	}
	return s
}

// Clone returns a copy of g that shares no memory with it.
func (g Grant) Clone() Grant {
	g.Operations = slices.Clone(g.Operations)
	g.ContextEquals = maps.Clone(g.ContextEquals)
	g.ContextSubset = maps.Clone(g.ContextSubset)
	return g
}
