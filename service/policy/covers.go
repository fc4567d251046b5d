package policy

import "fmt"

// CoverageError names the first right a child policy grants that its
// parent's Allow statements do not cover (see Covers).
type CoverageError struct {
	// Statement is the index of the child's Allow statement.
	Statement int
	// Action is a known action the statement allows.
	Action string
	// Resource is the statement's resource pattern that no Allow statement
	// of the parent with that action covers.
	Resource string
}

// Error implements error.
func (e *CoverageError) Error() string {
	return fmt.Sprintf("policy: statement %d allows %s on %q, which no Allow statement of the parent covers",
		e.Statement, e.Action, e.Resource)
}

// Covers reports whether every right that child's Allow statements grant is
// also granted by parent's Allow statements, returning a *CoverageError for
// the first one that is not. It is what keeps a principal from creating a
// principal with more rights than its own; the parent's Deny statements
// are not consulted, because the child inherits them.
//
// A child Allow statement is covered when, for each known action one of its
// action patterns matches (ignoring case, as Decide does) and each of its
// resource patterns, some parent Allow statement has an action pattern
// matching that action and a resource pattern covering that resource
// pattern. Coverage is decided per action rather than per action pattern:
// a child's "kms:*" is covered by a parent listing every kms action.
//
// Resource pattern p covers r when p matches r with each "*" of r taken as
// a character that only a "*" of p may consume: then whatever strings r's
// stars stand for, p's stars can stand for them too, so every resource r
// matches, p matches (sound). The converse does not hold (conservative):
// patterns jointly covering r ("a*" and "b*" for "*") do not count.
//
// Covers is pure. Its cost is about the bytes of the parent's patterns
// times the bytes of the child's distinct resource patterns.
func Covers(parent, child []Statement) error {
	grants := allowGrants(parent)
	allowedOn := map[string][]bool{} // child resource pattern → actions granted on it
	for i, st := range child {
		if st.Effect != EffectAllow {
			continue
		}
		actions := actionSet(st.Actions)
		for _, r := range st.Resources {
			allowed, ok := allowedOn[r]
			if !ok {
				allowed = grantedOn(grants, r)
				allowedOn[r] = allowed
			}
			for a, want := range actions {
				if want && !allowed[a] {
					return &CoverageError{Statement: i, Action: knownActions[a], Resource: r}
				}
			}
		}
	}
	return nil
}

// grant is one Allow statement: the known actions it matches (indexed as
// knownActions) and its resource patterns.
type grant struct {
	actions   []bool
	resources []string
}

func allowGrants(stmts []Statement) []grant {
	var gs []grant
	for _, st := range stmts {
		if st.Effect == EffectAllow {
			gs = append(gs, grant{actions: actionSet(st.Actions), resources: st.Resources})
		}
	}
	return gs
}

// actionSet marks the known actions some pattern matches.
func actionSet(patterns []string) []bool {
	set := make([]bool, len(knownActions))
	for i, a := range knownActions {
		set[i] = matchesAction(patterns, a)
	}
	return set
}

// grantedOn marks the known actions some grant allows on every resource
// that pattern r matches.
func grantedOn(grants []grant, r string) []bool {
	set := make([]bool, len(knownActions))
	for _, g := range grants {
		if !coversAny(g.resources, r) {
			continue
		}
		for i, ok := range g.actions {
			set[i] = set[i] || ok
		}
	}
	return set
}

func coversAny(patterns []string, r string) bool {
	for _, p := range patterns {
		if coversResource(p, r) {
			return true
		}
	}
	return false
}

// coversResource reports whether resource pattern p covers resource
// pattern r. globMatch, given r as the string, already has that meaning:
// a byte of p it compares literally is never "*", so it never equals a "*"
// of r, which only a "*" of p can consume.
func coversResource(p, r string) bool { return globMatch(p, r, false) }
