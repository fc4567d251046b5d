package xks

import (
	"strings"
)

// Operations of the XKS proxy API, by the last element of their path.
const (
	opMetadata = "metadata"
	opEncrypt  = "encrypt"
	opDecrypt  = "decrypt"
	opHealth   = "health"
)

// maxPath bounds the URI path: the spec's URIs are at most 256 characters.
const maxPath = 256

// target is a parsed XKS request path:
// /<prefix>/kms/xks/v1/keys/<externalKeyId>/<op> or /<prefix>/kms/xks/v1/health.
type target struct {
	prefix string
	keyID  string // "" for health
	op     string
}

// action names the operation in audit records and metrics.
func (t target) action() string {
	switch t.op {
	case opMetadata:
		return "xks:GetKeyMetadata"
	case opEncrypt:
		return "xks:Encrypt"
	case opDecrypt:
		return "xks:Decrypt"
	case opHealth:
		return "xks:GetHealthStatus"
	}
	return ""
}

// parsePath parses an XKS path, or reports false for any other path. The
// prefix is whatever comes before the last "/kms/xks/v1/"; the key ID has
// the spec's characters (letters, digits, '-', '.', '_', up to 128).
func parsePath(p string) (target, bool) {
	const tail = "/kms/xks/v1/"
	if len(p) > maxPath || !strings.HasPrefix(p, "/") {
		return target{}, false
	}
	i := strings.LastIndex(p, tail)
	if i < 1 {
		return target{}, false
	}
	t := target{prefix: p[1:i]}
	rest := p[i+len(tail):]
	if rest == opHealth {
		t.op = opHealth
		return t, true
	}
	key, ok := strings.CutPrefix(rest, "keys/")
	if !ok {
		return target{}, false
	}
	j := strings.IndexByte(key, '/')
	if j < 0 {
		return target{}, false
	}
	t.keyID, t.op = key[:j], key[j+1:]
	if !validKeyID(t.keyID) {
		return target{}, false
	}
	switch t.op {
	case opMetadata, opEncrypt, opDecrypt:
		return t, true
	}
	return target{}, false
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
