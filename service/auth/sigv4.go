package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file computes the SigV4 signature a request should carry, directly
// from the request, in the form aws-sdk-go-v2's signer (aws/signer/v4 and
// aws/signer/internal/v4) gives it for the Verifier's service ("kms" or
// "kms-xks-proxy") with URI path escaping on. Verify used to sign a copy
// of the request with that signer; the tests keep that computation as the
// oracle this one must equal, on every input, including the ones it
// refuses.

// ignored reports whether h, lower case, names a header the SDK's signer
// never signs (v4Internal.IgnoredHeaders). A client that lists one in
// SignedHeaders signed a string the signer cannot produce, and such a
// request is refused as "cannot be verified", as it was when the signer
// computed the expected signature.
func ignored(h string) bool {
	switch h {
	case "authorization", "user-agent", "x-amzn-trace-id", "expect", "transfer-encoding":
		return true
	}
	return false
}

// signingKeyCacheSize bounds the signing-key cache: one entry per secret,
// day and region in use, so the bound is only reached with thousands of
// active principals.
const signingKeyCacheSize = 4096

// expectedSignature returns, hex-encoded, the signature of r under secret,
// or the error that says why none can be computed: a malformed request
// target, a signed header r does not carry, or a SignedHeaders list the
// SDK's signer would not have produced (not sorted, not lower case,
// repeated names, an ignored header, content-length of an empty body),
// whose signature can therefore never match.
//
// n is the length of the body the caller read: content-length is signed
// with it, as with the signer, whatever the header says.
func (v *Verifier) expectedSignature(ctx context.Context, r *http.Request, a authorization, secret string, payloadHash []byte, t time.Time, n int) (sig [2 * sha256.Size]byte, err error) {
	// A KMS request canonicalizes to some 400 bytes; a larger one grows
	// onto the heap.
	var stack [1024]byte
	req, err := appendCanonicalRequest(ctx, stack[:0], r, a.signedHeaders, payloadHash, t, n)
	if err != nil {
		return sig, err
	}
	digest := sha256.Sum256(req)

	// The scope and the signing key are the signing time's day, as with
	// the signer; Verify has checked that the client's scope names it.
	t = t.UTC()
	var key *signingKey
	var date []byte
	if y := t.Year(); 0 <= y && y <= 9999 {
		var day [8]byte
		t.AppendFormat(day[:0], "20060102")
		key, date = v.keys.get(secret, day, a.region), day[:]
	} else {
		// Not a time X-Amz-Date can carry; signed as the signer
		// would, without an entry in the cache.
		date = t.AppendFormat(nil, "20060102")
		key = &signingKey{key: deriveSigningKey(secret, string(date), a.region, v.service)}
	}

	// The string to sign goes to the HMAC through an interface, so it
	// escapes: it has its own small buffer rather than stack, and the
	// MAC is summed into it once written.
	sts := make([]byte, 0, len(algorithm)+len(amzDateFormat)+len(date)+len(a.region)+len(v.service)+hex.EncodedLen(sha256.Size)+len("\n\n//\n/aws4_request"))
	sts = append(sts, algorithm...)
	sts = append(sts, '\n')
	sts = t.AppendFormat(sts, amzDateFormat)
	sts = append(sts, '\n')
	sts = appendScope(sts, date, a.region, v.service)
	sts = append(sts, '\n')
	sts = hex.AppendEncode(sts, digest[:])

	mac := key.mac()
	mac.Write(sts)
	hex.Encode(sig[:], mac.Sum(sts[:0]))
	key.macs.Put(mac)
	return sig, nil
}

// appendScope appends the credential scope date/region/service/aws4_request.
func appendScope(b, date []byte, region, service string) []byte {
	b = append(b, date...)
	b = append(b, '/')
	b = append(b, region...)
	b = append(b, '/')
	b = append(b, service...)
	return append(b, "/aws4_request"...)
}

// appendCanonicalRequest appends the SigV4 canonical request of r:
//
//	method \n canonical URI \n canonical query \n canonical headers \n
//	signed headers \n payload hash
//
// The signer derives its SignedHeaders list from the request (every header
// not ignored, lower-cased, sorted, host always, content-length when the
// body is not empty); the client's list must be that list exactly, or the
// signatures cannot match. Rather than derive the list and compare, it is
// checked in place: it is that list exactly when it holds host and
// x-amz-date, is strictly sorted, and every name in it is one the signer
// signs under that very name (see signedAsIs). Signed headers missing from
// r are reported first, in the client's order, as the signer-based code
// did before it signed.
func appendCanonicalRequest(ctx context.Context, b []byte, r *http.Request, signed []string, payloadHash []byte, t time.Time, n int) ([]byte, error) {
	tg, err := targetOf(ctx, r)
	if err != nil {
		return nil, err
	}
	asSigned := true
	var host, date bool
	for i, h := range signed {
		if i > 0 && signed[i-1] >= h {
			asSigned = false
		}
		switch h {
		case "host":
			host = true
		case "x-amz-date":
			date = true
		case "content-length":
			// The signer signs the length only when it is not zero.
			asSigned = asSigned && n > 0
		default:
			if len(headerValues(r.Header, h)) == 0 {
				return nil, fmt.Errorf("signed header %s is missing from the request", h)
			}
			asSigned = asSigned && signedAsIs(h)
		}
	}
	if !asSigned || !host || !date {
		return nil, fmt.Errorf("SignedHeaders %s cannot be verified", strings.Join(signed, ";"))
	}

	b = append(b, tg.method...)
	b = append(b, '\n')
	b = appendEscapedPath(b, tg.path)
	b = append(b, '\n')
	b = appendCanonicalQuery(b, tg.rawQuery)
	b = append(b, '\n')
	for _, h := range signed {
		b = append(b, h...)
		b = append(b, ':')
		switch h {
		case "host":
			// The signer collapses the host's spaces
			// (StripExcessSpaces) but, unlike other values, does not
			// strings.TrimSpace it.
			b = appendCollapsed(b, strings.Trim(tg.host, " "))
		case "x-amz-date":
			// The signer signs the time it is given, formatted: a
			// header with fractional seconds, which time.Parse takes,
			// signs another string than it carries.
			b = t.UTC().AppendFormat(b, amzDateFormat)
		case "content-length":
			b = strconv.AppendInt(b, int64(n), 10)
		default:
			for j, val := range headerValues(r.Header, h) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendCollapsed(b, strings.TrimSpace(val))
			}
		}
		b = append(b, '\n')
	}
	b = append(b, '\n')
	for i, h := range signed {
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, h...)
	}
	b = append(b, '\n')
	return append(b, payloadHash...), nil
}

// signedAsIs reports whether the signer, given a request header named h (h
// is none of host, x-amz-date and content-length), signs it, and lists it
// as h. It signs every header but the ignored ones and Content-Length
// under the lower-case form of its canonical key, and the canonical key
// only changes the case of ASCII letters, so the listed name is
// strings.ToLower(h): h must be that already. Since strings.ToLower is
// idempotent (TestToLowerIdempotent), a list in which some name is not
// signed as is can never equal the signer's, which is why checking each
// name suffices.
func signedAsIs(h string) bool {
	return strings.ToLower(h) == h && !ignored(h) && !strings.EqualFold(h, "content-length")
}

// target is what SigV4 signs of the request line and the Host header.
type target struct {
	method   string
	path     string // escaped as in the URL, before SigV4's own escaping
	rawQuery string
	host     string
}

// targetOf returns the target the signer saw when the Verifier signed a
// copy of r built with http.NewRequestWithContext from r.URL with scheme
// https and host r.Host: that round trip through URL.String and url.Parse
// decided which requests failed, with what message, and what path, query
// and host were signed. For the requests a server reads (a plain method,
// host and query, the URL in origin form) the round trip is the identity
// and is skipped; any other goes through it.
func targetOf(ctx context.Context, r *http.Request) (target, error) {
	if tg, ok := plainTarget(ctx, r); ok {
		return tg, nil
	}
	return roundTripTarget(ctx, r)
}

// plainTarget is targetOf(ctx, r) when r is plain enough for the round
// trip to change nothing, without it; ok is false for any other r.
func plainTarget(ctx context.Context, r *http.Request) (tg target, ok bool) {
	if ctx == nil || !plainMethod(r.Method) || !plainHost(r.Host) || !plainQuery(r.URL.RawQuery) ||
		r.URL.Opaque != "" || r.URL.User != nil {
		return tg, false
	}
	p := r.URL.EscapedPath()
	switch {
	case p == "":
		p = "/"
	case p[0] != '/':
		return tg, false // "*": URL.String would write "/*"
	}
	return target{method: r.Method, path: p, rawQuery: r.URL.RawQuery, host: sdkHost(r.Host, "")}, true
}

// roundTripTarget is targetOf(ctx, r) the way the signer-based code got it.
func roundTripTarget(ctx context.Context, r *http.Request) (target, error) {
	u := *r.URL
	u.Scheme, u.Host = "https", r.Host
	c, err := http.NewRequestWithContext(ctx, r.Method, u.String(), nil)
	if err != nil {
		return target{}, err
	}
	return target{method: c.Method, path: uriPath(c.URL), rawQuery: c.URL.RawQuery, host: sdkHost(r.Host, c.URL.Host)}, nil
}

// plainMethod: upper-case letters, a token http.NewRequest keeps as is.
func plainMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return true
}

// plainHost: a name of letters, digits, dots and hyphens with an optional
// :port of digits, which url.Parse takes and URL.String writes unchanged.
func plainHost(h string) bool {
	name, port, _ := strings.Cut(h, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

// plainQuery: a query url.Parse gives back unchanged after URL.String,
// which writes it verbatim: no fragment mark, no control character.
func plainQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c == '#' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// sdkHost is the host the signer signs (v4Internal.SanitizeHostForHeader,
// then Request.Host or else URL.Host) for a request with Host reqHost and
// URL host urlHost and scheme https: the default port 443 is dropped.
func sdkHost(reqHost, urlHost string) string {
	h := reqHost
	if h == "" {
		h = urlHost
	}
	if portOnly(h) == "443" {
		reqHost = stripPort(h)
	}
	if reqHost != "" {
		return reqHost
	}
	return urlHost
}

// portOnly is the SDK's (Go 1.8's url.URL.Port) port of hostport.
func portOnly(hostport string) string {
	colon := strings.IndexByte(hostport, ':')
	if colon == -1 {
		return ""
	}
	if i := strings.Index(hostport, "]:"); i != -1 {
		return hostport[i+len("]:"):]
	}
	if strings.Contains(hostport, "]") {
		return ""
	}
	return hostport[colon+len(":"):]
}

// stripPort is the SDK's (Go 1.8's url.URL.Hostname) host of hostport.
func stripPort(hostport string) string {
	colon := strings.IndexByte(hostport, ':')
	if colon == -1 {
		return hostport
	}
	if i := strings.IndexByte(hostport, ']'); i != -1 {
		return strings.TrimPrefix(hostport[:i], "[")
	}
	return hostport[:colon]
}

// uriPath is the SDK's v4Internal.GetURIPath: the escaped path, from an
// opaque URL's opaque part if it has one, "/" when empty.
func uriPath(u *url.URL) string {
	var p string
	if u.Opaque != "" {
		opaque, _, _ := strings.Cut(u.Opaque, "?")
		opaque = strings.TrimPrefix(opaque, "//")
		if i := strings.IndexByte(opaque, '/'); i >= 0 {
			p = opaque[i:]
		}
	} else {
		p = u.EscapedPath()
	}
	if p == "" {
		return "/"
	}
	return p
}

// appendEscapedPath appends p escaped as smithy-go's
// httpbinding.EscapePath(p, false) does: every byte but the RFC 3986
// unreserved ones and "/" percent-encoded, so an escape already in p is
// escaped again, as SigV4 wants for every service but S3.
func appendEscapedPath(b []byte, p string) []byte {
	for i := 0; i < len(p); i++ {
		if c := p[i]; unreserved(c) || c == '/' {
			b = append(b, c)
		} else {
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return b
}

const upperHex = "0123456789ABCDEF"

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// appendCanonicalQuery appends the SDK's canonical form of a raw query
// (v4Internal.EncodeQuery of URL.Query()): the pairs url.ParseQuery keeps,
// names and values each escaped by url.QueryEscape with "%20" for a space,
// sorted by escaped name, then escaped value.
func appendCanonicalQuery(b []byte, raw string) []byte {
	if raw == "" {
		return b
	}
	query, _ := url.ParseQuery(raw) // URL.Query drops the malformed pairs too
	type pair struct{ k, v string }
	var pairs []pair
	for k, vs := range query {
		ek := queryEscape(k)
		for _, v := range vs {
			pairs = append(pairs, pair{ek, queryEscape(v)})
		}
	}
	slices.SortFunc(pairs, func(x, y pair) int {
		if c := strings.Compare(x.k, y.k); c != 0 {
			return c
		}
		return strings.Compare(x.v, y.v)
	})
	for i, p := range pairs {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, p.k...)
		b = append(b, '=')
		b = append(b, p.v...)
	}
	return b
}

// queryEscape escapes s as a SigV4 query component: url.QueryEscape, whose
// only "+" stand for spaces, with "%20" for them.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// appendCollapsed appends s with every run of spaces made one space, as
// the SDK's StripExcessSpaces does (only ' ', not tabs). The signer signs
// strings.TrimSpace(StripExcessSpaces(v)) of a header value v, which is
// appendCollapsed of strings.TrimSpace(v): trimming first removes the same
// ends, and a run of spaces inside the trimmed value collapses the same.
func appendCollapsed(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' && i > 0 && s[i-1] == ' ' {
			continue
		}
		b = append(b, s[i])
	}
	return b
}

// headerValues is h.Values(name). http.CanonicalHeaderKey allocates for
// every name not already canonical, which the lower-case names of
// SignedHeaders never are: a name of lower-case letters, digits and
// hyphens (every name a client signs in practice) is canonicalized in a
// stack buffer instead, which saves 8 of 15 allocations and ≈ 0.7 µs of
// Verify (BenchmarkVerify). Any other name goes to h.Values.
func headerValues(h http.Header, name string) []string {
	var buf [64]byte
	if len(name) > len(buf) {
		return h.Values(name)
	}
	k := buf[:len(name)]
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case '0' <= c && c <= '9' || c == '-':
		default:
			return h.Values(name)
		}
		k[i] = c
		upper = c == '-'
	}
	return h[string(k)]
}

// signingKeys caches SigV4 signing keys, each derived by four HMACs from a
// secret, a day and a region (the service is the Verifier's, the same for
// every key of a cache). An entry is found by the SHA-256 of the secret,
// never the secret: a new secret for the same access key ID (a principal
// re-created, a root secret changed) is a new entry, honoured at once, and
// the old secret's signing key is never used again. The cache starts over when full: re-deriving is four
// HMACs, nothing to preserve at any cost.
//
// It is reached through a pointer from the Verifier so that printing a
// Verifier prints an address, not keys.
type signingKeys struct {
	size    int
	service string // every key is for this service
	mu      sync.RWMutex
	m       map[signingKeyID]*signingKey
}

// signingKey is a derived signing key with the HMACs keyed with it, for
// reuse: keying an HMAC costs two SHA-256 blocks and five allocations,
// a reset one neither (BenchmarkVerify).
type signingKey struct {
	key  []byte
	macs sync.Pool // of hash.Hash, HMAC-SHA256 keyed with key
}

// mac returns an HMAC keyed with k, reset; give it back to k.macs.
func (k *signingKey) mac() hash.Hash {
	if m, ok := k.macs.Get().(hash.Hash); ok {
		m.Reset()
		return m
	}
	return hmac.New(sha256.New, k.key)
}

type signingKeyID struct {
	secret [sha256.Size]byte // SHA-256 of the secret
	date   [8]byte           // yyyymmdd
	region string
}

func newSigningKeys(size int, service string) *signingKeys {
	return &signingKeys{size: size, service: service, m: make(map[signingKeyID]*signingKey)}
}

// get returns the signing key of secret for date (yyyymmdd) and region.
// The key is shared: read it, never write it.
func (c *signingKeys) get(secret string, date [8]byte, region string) *signingKey {
	id := signingKeyID{date: date, region: region}
	// Hash a secret of a usual length from a stack copy: converting it to
	// a []byte would allocate.
	var buf [128]byte
	if len(secret) <= len(buf) {
		id.secret = sha256.Sum256(buf[:copy(buf[:], secret)])
	} else {
		id.secret = sha256.Sum256([]byte(secret))
	}
	c.mu.RLock()
	key, ok := c.m[id]
	c.mu.RUnlock()
	if ok {
		return key
	}
	key = &signingKey{key: deriveSigningKey(secret, string(date[:]), region, c.service)}
	// The region is the client's text, a slice of its Authorization
	// header: keep a copy, not the header.
	id.region = strings.Clone(region)
	c.mu.Lock()
	if len(c.m) >= c.size {
		clear(c.m)
	}
	c.m[id] = key
	c.mu.Unlock()
	return key
}

// deriveSigningKey is SigV4's kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret,
// date), region), service), "aws4_request").
func deriveSigningKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(data))
	return mac.Sum(nil)
}
