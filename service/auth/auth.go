// Package auth owns request authentication: it verifies AWS Signature
// Version 4 on every API request (service "kms"), as AWS applies it: a
// single, strictly formed Authorization header, every x-amz-* header and
// Content-Type signed, no session token for a long-term key, bounded clock
// skew. Configured for service "kms-xks-proxy", any region and the
// SignedHeaders as listed (Config), it verifies the calls AWS KMS makes to
// the XKS proxy API. It bounds the audit volume of failed attempts per
// source address and per claimed access key ID without ever refusing a
// valid signature.
// The expected signature is computed directly from the request, without
// re-signing it: the canonical request is built as aws-sdk-go-v2's signer
// (aws/signer/v4) builds it, with its escaping, whitespace and
// ignored-header rules, hashed into the string to sign, and signed with a
// signing key cached per secret, day and region; it is compared in
// constant time. The SDK's signer is the tests' oracle: they sign requests
// of every shape with it and check that this package computes the same
// signature, and refuses, with the same message, what signing a copy of
// the request with the SDK's signer refused.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/service"
)

// Error codes of failed authentication, as AWS names them.
const (
	CodeMissingToken    = "MissingAuthenticationTokenException"
	CodeIncomplete      = "IncompleteSignatureException"
	CodeInvalid         = "InvalidSignatureException"
	CodeUnknownClient   = "UnrecognizedClientException"
	CodeThrottled       = "ThrottlingException"
	algorithm           = "AWS4-HMAC-SHA256"
	amzDateFormat       = "20060102T150405Z"
	defaultMaxSkew      = 5 * time.Minute
	serviceName         = "kms"
	headerDate          = "X-Amz-Date"
	headerContentSHA256 = "X-Amz-Content-Sha256"
	headerSecurityToken = "X-Amz-Security-Token"
	// Malformed stands in the audit record for a claimed access key ID that
	// is not one (16 to 128 of A-Z 0-9): the claim is the client's text, up
	// to the header limit, and must not fill the audit trail.
	Malformed = "(malformed)"
)

// Error is a failed authentication. Its message never holds a secret or a
// computed signature.
type Error struct {
	Code    string
	Message string
	// AccessKeyID is the key the request claimed, for the audit record:
	// a well-formed ID, Malformed, or "" when the request claimed none.
	AccessKeyID string
	// Credential is set when the failure is the credential's: the access
	// key ID is malformed or unknown, or the signature is not its secret's.
	// Only these depend on what the store holds: a listener whose path
	// names the store may answer them all with one message, so that the
	// answer does not tell which stores know an ID.
	Credential bool
	// Unaudited is set when the failure is past its source's or ID's audit
	// budget: answer it, count it, but write no record of its own.
	Unaudited bool
	// Suppressed is, for an audited failure, how many failures of the same
	// source were left unaudited since its last record; SuppressedID how
	// many claiming the same access key ID were, from any source;
	// SuppressedAll how many only the budget of all sources left
	// unaudited since the last audited failure of any source.
	Suppressed, SuppressedID, SuppressedAll int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Credentials looks principals up by access key ID; *service.Service is the
// one implementation. It returns service.ErrUnknownPrincipal for an access
// key ID no principal has.
type Credentials interface {
	Credentials(ctx context.Context, accessKeyID string) (service.Credentials, error)
}

// Verifier checks SigV4 signatures.
type Verifier struct {
	creds   Credentials
	service string
	region  string
	regions []string
	// hosts are Config.Hosts, lowercased, IPv6 brackets dropped from
	// entries without a port.
	hosts []string
	// signedOnly: verify against the SignedHeaders listed (Config).
	signedOnly bool
	maxSkew    time.Duration
	now        func() time.Time
	keys       *signingKeys
	failures   *FailureBudget
	log        hclog.Logger
}

// Config configures a Verifier.
type Config struct {
	// Credentials is where Verify looks principals up. VerifyWith is
	// given its own lookup: a Verifier used only through it needs none.
	Credentials Credentials
	// Service is the service a credential scope must name: "kms" (the
	// default) or "kms-xks-proxy" for the XKS proxy API.
	Service string
	// Region, when set, is the only region a credential scope may name:
	// the KMS API's own region.
	Region string
	// Regions, when Region is not set, lists the regions a credential
	// scope may name. Without either, any well-formed region name will
	// do (see regionRE): AWS KMS signs its calls to an XKS proxy for the
	// region the KMS key is in, and one proxy may serve several.
	Regions []string
	// SignedHeadersOnly verifies a request against exactly the headers
	// its SignedHeaders lists (host and x-amz-date still required)
	// instead of also requiring every x-amz-* header and Content-Type to
	// be signed. The XKS proxy API needs it: AWS KMS signs host and
	// x-amz-date only and sends Content-Type: application/json unsigned.
	//
	// It is safe there because an XKS request is wholly signed without
	// its headers: the method, the path (which names the key store, the
	// key and the operation), the query and the body's hash are always
	// in the canonical request; an unsigned X-Amz-Content-Sha256 must
	// still match the body and an X-Amz-Security-Token is still refused;
	// and the XKS handler reads no other header. The KMS API must keep
	// the strict rule: its operation is the X-Amz-Target header, so a
	// DescribeKey signed over host and x-amz-date alone could be re-sent
	// as ScheduleKeyDeletion under the same signature.
	SignedHeadersOnly bool
	// Hosts, when set, are the names a request's Host header may carry:
	// the host the client signed its request for. A request signed for
	// another server is refused even when its signature is good, so that
	// a request on its way to one deployment cannot be replayed at
	// another that knows the same secret (a restored backup, a second
	// site), as Vault's AWS auth binds a signed request to its server.
	// An entry without a port accepts the name on any port; one with a
	// port, that port only. Names compare without regard to case.
	// Without Hosts any Host is accepted, as before.
	Hosts []string
	// MaxSkew bounds the difference between X-Amz-Date and the clock
	// (default 5 minutes, as AWS).
	MaxSkew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// FailureBurst failed attempts from one source, and from one claimed
	// access key ID, are audited one by one at once, then FailureRate per
	// second (defaults 20 and 1); the rest are counted (see Error).
	FailureBurst int
	FailureRate  float64
	// Failures, when set, is the failure budget to draw on instead of one
	// of the Verifier's own made from FailureBurst and FailureRate: the
	// listeners of one server share theirs.
	Failures *FailureBudget
	// Logger is told when a source or ID goes past its audit budget.
	Logger hclog.Logger
}

// New returns a Verifier.
func New(cfg Config) *Verifier {
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = defaultMaxSkew
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Service == "" {
		cfg.Service = serviceName
	}
	if cfg.Failures == nil {
		cfg.Failures = NewFailureBudget(cfg.FailureRate, cfg.FailureBurst, cfg.Now)
	}
	return &Verifier{creds: cfg.Credentials, service: cfg.Service, region: cfg.Region, regions: slices.Clone(cfg.Regions),
		hosts: normalHosts(cfg.Hosts), signedOnly: cfg.SignedHeadersOnly, maxSkew: cfg.MaxSkew, now: cfg.Now,
		keys: newSigningKeys(signingKeyCacheSize, cfg.Service), failures: cfg.Failures, log: cfg.Logger}
}

// authorization is a parsed Authorization header.
type authorization struct {
	accessKeyID   string
	date          string // the scope's yyyymmdd
	region        string
	service       string
	signedHeaders []string
	signature     string
}

// Verify authenticates r, whose body the caller has read into body, and
// returns the principal's credentials. source is the caller's address: with
// the claimed access key ID, the unit of the failure budget. A correctly
// signed request is never refused because of other requests' failures.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, body []byte, source string) (service.Credentials, error) {
	return v.VerifyWith(ctx, r, body, source, v.creds)
}

// VerifyWith is Verify with the credentials looked up in creds instead of
// the Verifier's own (Config.Credentials): the XKS proxy API looks them up
// in the external key store its request's path names. Its failures count
// against the same failure budget as Verify's, and the signing keys it
// derives go to the same cache.
func (v *Verifier) VerifyWith(ctx context.Context, r *http.Request, body []byte, source string, creds Credentials) (service.Credentials, error) {
	if creds == nil {
		// A Verifier configured without Credentials, called through
		// Verify: the server's mistake, not the client's failure.
		return service.Credentials{}, errors.New("auth: no credentials lookup to verify the request with")
	}
	found, err := v.verify(ctx, r, body, creds)
	if err == nil {
		return found, nil
	}
	// ae is declared past the success return: errors.As takes its address,
	// which would otherwise cost every verified request an allocation.
	var ae *Error
	if errors.As(err, &ae) {
		id := ae.AccessKeyID
		if id == Malformed {
			id = ""
		}
		verdict := v.failures.fail(source, id)
		ae.Unaudited, ae.Suppressed, ae.SuppressedID, ae.SuppressedAll = !verdict.audit, verdict.suppressed, verdict.suppressedID, verdict.suppressedAll
		switch {
		case verdict.started && verdict.all:
			v.log.Warn(allOverMessage)
		case verdict.started:
			v.log.Warn("failed authentications past the audit budget: answering them, counting them, auditing one a second",
				"source", source, "access_key_id", ae.AccessKeyID)
		}
	}
	return found, err
}

// allOverMessage is what the log is told once a flood of failures from
// all sources, when their budget together is spent.
const allOverMessage = "failed authentications from all sources past their audit budget: answering them, counting them into the next audited failure's suppressed_all"

// RefusedUnverified counts a request from source refused before its
// signature was looked at (an unknown operation, a body over the limit)
// against source's failure budget, like a failed authentication: it reports
// whether to audit it, and if so how many failures it stands for besides,
// of its source and of all sources (see Error).
func (v *Verifier) RefusedUnverified(source string) (audit bool, suppressed, suppressedAll int) {
	verdict := v.failures.fail(source, "")
	switch {
	case verdict.started && verdict.all:
		v.log.Warn(allOverMessage)
	case verdict.started:
		v.log.Warn("requests refused before authentication past the audit budget: answering them, counting them, auditing one a second",
			"source", source)
	}
	return verdict.audit, verdict.suppressed, verdict.suppressedAll
}

func (v *Verifier) verify(ctx context.Context, r *http.Request, body []byte, lookup Credentials) (service.Credentials, error) {
	if len(r.Header.Values("Authorization")) > 1 {
		return service.Credentials{}, &Error{Code: CodeIncomplete, Message: "the request has more than one Authorization header"}
	}
	a, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return service.Credentials{}, err
	}
	fail := func(code, format string, args ...any) (service.Credentials, error) {
		return service.Credentials{}, &Error{Code: code, Message: fmt.Sprintf(format, args...), AccessKeyID: a.accessKeyID}
	}
	// An empty query has no token: skip parsing it into a map.
	if _, ok := r.Header[headerSecurityToken]; ok || r.URL.RawQuery != "" && r.URL.Query().Has(headerSecurityToken) {
		// hsmkms has long-term keys only; AWS answers a session token
		// presented with one so.
		return fail(CodeUnknownClient, msgUnknownClient)
	}
	if a.service != v.service {
		return fail(CodeInvalid, "Credential should be scoped to correct service: '%s'.", v.service)
	}
	if refusal := v.regionRefusal(a.region); refusal != "" {
		return fail(CodeInvalid, refusal, a.region)
	}
	if !slices.Contains(a.signedHeaders, "host") || !slices.Contains(a.signedHeaders, "x-amz-date") {
		return fail(CodeIncomplete, "SignedHeaders must include host and x-amz-date.")
	}
	if !v.hostAccepted(r.Host) {
		return fail(CodeInvalid, "The request was signed for host %.255q, which is not a name of this server.", r.Host)
	}
	if !v.signedOnly {
		if unsigned := unsignedHeaders(r.Header, a.signedHeaders); unsigned != "" {
			return fail(CodeIncomplete, "Every x-amz-* header and Content-Type must be signed; not in SignedHeaders: %s.", unsigned)
		}
	}
	// time.Parse also takes fractional seconds the format does not name;
	// the length check refuses them, so that the header carries exactly
	// the text that is signed.
	date := r.Header.Get(headerDate)
	t, err := time.Parse(amzDateFormat, date)
	if err != nil || len(date) != len(amzDateFormat) {
		return fail(CodeIncomplete, "the X-Amz-Date header is missing or not in the form %s", amzDateFormat)
	}
	var day [len("20060102")]byte
	if string(t.AppendFormat(day[:0], "20060102")) != a.date {
		return fail(CodeInvalid, "the credential scope date %s does not match X-Amz-Date", a.date)
	}
	now := v.now()
	if d := now.Sub(t); d > v.maxSkew || d < -v.maxSkew {
		return fail(CodeInvalid, "Signature expired: %s is now earlier or later than %s by more than %s.",
			t.Format(amzDateFormat), now.UTC().Format(amzDateFormat), v.maxSkew)
	}
	hash := sha256.Sum256(body)
	var payloadHash [2 * sha256.Size]byte
	hex.Encode(payloadHash[:], hash[:])
	if h := r.Header.Get(headerContentSHA256); h != "" && !hmac.Equal([]byte(h), payloadHash[:]) {
		return fail(CodeInvalid, "The request signature we calculated does not match the signature you provided.")
	}
	if a.accessKeyID == Malformed {
		return credentialFailure(CodeUnknownClient, msgUnknownClient, a.accessKeyID)
	}
	creds, err := lookup.Credentials(ctx, a.accessKeyID)
	if errors.Is(err, service.ErrUnknownPrincipal) {
		return credentialFailure(CodeUnknownClient, msgUnknownClient, a.accessKeyID)
	}
	if err != nil {
		return creds, err
	}
	want, err := v.expectedSignature(ctx, r, a, creds.Secret, payloadHash[:], t, len(body))
	if err != nil {
		// Reached only with a known ID, so it is the credential's failure
		// (Error.Credential): answered apart, it would tell a known ID
		// from an unknown one.
		return credentialFailure(CodeIncomplete, err.Error(), a.accessKeyID)
	}
	if !hmac.Equal(want[:], []byte(a.signature)) {
		return credentialFailure(CodeInvalid, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.", a.accessKeyID)
	}
	return creds, nil
}

// msgUnknownClient is AWS's message for an access key ID it does not know.
const msgUnknownClient = "The security token included in the request is invalid."

// credentialFailure is a failure of the credential id (see Error.Credential).
func credentialFailure(code, msg, id string) (service.Credentials, error) {
	return service.Credentials{}, &Error{Code: code, Message: msg, AccessKeyID: id, Credential: true}
}

// regionRE is a well-formed AWS region name, up to maxRegionLen bytes:
// lower-case words joined by hyphens, the first of two letters or more,
// then a number, as every partition's name pattern has them (us-east-1,
// us-gov-west-1, cn-north-1, us-isob-east-1, eu-isoe-west-1,
// eusc-de-east-1). It only keeps text that cannot be a region out of the
// credential scope: the signature, derived with the region, is what
// proves the client meant it.
var regionRE = regexp.MustCompile(`^[a-z]{2,}(-[a-z]+)+-[0-9]+$`)

const maxRegionLen = 64

// regionRefusal returns the message format, with a %s for the region,
// refusing a credential scope that names region, or "" if the scope may
// name it. The KMS API's message is AWS's.
func (v *Verifier) regionRefusal(region string) string {
	switch {
	case v.region != "":
		if region == v.region {
			return ""
		}
		return "Credential should be scoped to a valid region, not '%s'."
	case len(v.regions) > 0:
		if slices.Contains(v.regions, region) {
			return ""
		}
		return "Credential should be scoped to an allowed region, not '%s'."
	case len(region) <= maxRegionLen && regionRE.MatchString(region):
		return ""
	}
	return "Credential should be scoped to a valid region name, not '%s'."
}

// normalHosts lowercases the accepted hosts and drops the brackets of an
// IPv6 address given without a port, so that it compares with the name
// net.SplitHostPort takes out of a Host header.
func normalHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		h = strings.ToLower(h)
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
		out = append(out, h)
	}
	return out
}

// hostAccepted reports whether host, a request's Host header, is one of
// the Verifier's hosts: by its name alone, or by name and port; any host
// when there are none.
func (v *Verifier) hostAccepted(host string) bool {
	if len(v.hosts) == 0 {
		return true
	}
	host = strings.ToLower(host)
	name := host
	if n, _, err := net.SplitHostPort(host); err == nil {
		name = n
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	for _, h := range v.hosts {
		if h == host || h == name {
			return true
		}
	}
	return false
}

// maxScannedSignedHeaders is the longest SignedHeaders list
// unsignedHeaders scans for each header.
const maxScannedSignedHeaders = 16

// unsignedHeaders names, in a comma-separated list, the headers of h that
// SigV4 as AWS applies it requires to be signed (every x-amz-* header and
// Content-Type) but signed does not list. Without this rule a request
// signed over host and x-amz-date alone could be re-sent with another
// X-Amz-Target: another operation under the same signature.
func unsignedHeaders(h http.Header, signed []string) string {
	var missing []string
	// A long list is looked up in a set: scanned for each of as many
	// headers, it cost quadratic CPU before authentication (found by
	// review: 50 ms a request). Requests list a handful; they scan.
	var set map[string]bool
	if len(signed) > maxScannedSignedHeaders {
		set = make(map[string]bool, len(signed))
		for _, s := range signed {
			set[s] = true
		}
	}
	for name := range h {
		if !isASCII(name) {
			// strings.ToLower maps more than ASCII letters: take it as
			// is. No server reads such a name off the wire.
			lower := strings.ToLower(name)
			if (strings.HasPrefix(lower, "x-amz-") || lower == "content-type") && !(set[lower] || set == nil && slices.Contains(signed, lower)) {
				missing = append(missing, lower)
			}
			continue
		}
		// The same test on the ASCII name, without lower-casing a copy of
		// every header name of every request.
		if !(len(name) >= len("x-amz-") && lowerIs(name[:len("x-amz-")], "x-amz-") || lowerIs(name, "content-type")) {
			continue
		}
		listed := set != nil && set[strings.ToLower(name)]
		for i := 0; set == nil && i < len(signed) && !listed; i++ {
			listed = lowerIs(name, signed[i])
		}
		if !listed {
			missing = append(missing, strings.ToLower(name))
		}
	}
	slices.Sort(missing)
	return strings.Join(missing, ", ")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// lowerIs reports whether strings.ToLower(name) == s for an ASCII name.
func lowerIs(name, s string) bool {
	if len(name) != len(s) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// parseAuthorization reads "AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/
// service/aws4_request, SignedHeaders=a;b, Signature=hex". Each of the three
// parts must appear exactly once and nothing else may: a lenient parser that
// took the first or the last of two Signature parts would read another
// request than a proxy in front of it does.
func parseAuthorization(h string) (authorization, error) {
	var a authorization
	if h == "" {
		return a, &Error{Code: CodeMissingToken, Message: "Missing Authentication Token"}
	}
	rest, ok := strings.CutPrefix(h, algorithm+" ")
	if !ok {
		return a, &Error{Code: CodeIncomplete, Message: "Authorization header must use " + algorithm}
	}
	incomplete := func(msg string) (authorization, error) {
		return a, &Error{Code: CodeIncomplete, Message: msg, AccessKeyID: claimed(a.accessKeyID)}
	}
	var seen [3]bool
	for part := range strings.SplitSeq(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		i := slices.Index(authParts[:], k)
		if i < 0 {
			return incomplete("Authorization header has a part other than Credential, SignedHeaders and Signature")
		}
		if seen[i] {
			return incomplete("Authorization header has more than one " + k + " part")
		}
		seen[i] = true
		switch k {
		case "Credential":
			// Exactly five parts, read without allocating a slice of them.
			id, rest, _ := strings.Cut(val, "/")
			date, rest, _ := strings.Cut(rest, "/")
			region, rest, _ := strings.Cut(rest, "/")
			svc, term, _ := strings.Cut(rest, "/")
			if strings.Count(val, "/") != 4 || term != "aws4_request" || id == "" {
				return incomplete("Credential must be AccessKeyId/date/region/service/aws4_request")
			}
			a.accessKeyID, a.date, a.region, a.service = id, date, region, svc
		case "SignedHeaders":
			a.signedHeaders = strings.Split(val, ";")
		case "Signature":
			a.signature = val
		}
	}
	if a.accessKeyID == "" || len(a.signedHeaders) == 0 || a.signature == "" {
		return incomplete("Authorization header requires Credential, SignedHeaders and Signature")
	}
	a.accessKeyID = claimed(a.accessKeyID)
	return a, nil
}

// authParts are the parts of an Authorization header.
var authParts = [...]string{"Credential", "SignedHeaders", "Signature"}

// claimed is the form of a claimed access key ID fit for an audit record
// and a lookup: the ID when it is 16 to 128 of A-Z 0-9 (the only IDs a
// principal can have), Malformed otherwise.
func claimed(id string) string {
	if id == "" {
		return ""
	}
	if len(id) < 16 || len(id) > 128 {
		return Malformed
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return Malformed
		}
	}
	return id
}
