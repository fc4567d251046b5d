package api

import (
	"regexp"
	"testing"
)

// TestNewRequestID: request IDs have the UUID form AWS uses (lower-case
// hex, dashes at 8, 13, 18 and 23) and do not repeat.
func TestNewRequestID(t *testing.T) {
	shape := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !shape.MatchString(id) {
			t.Fatalf("request ID %q is not a lower-case UUID", id)
		}
		if seen[id] {
			t.Fatalf("request ID %q repeated", id)
		}
		seen[id] = true
	}
}
