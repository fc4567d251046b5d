// Package xks owns the XKS proxy API listener's HTTP surface: the four
// operations of AWS KMS's External Key Store proxy API v1 (GetKeyMetadata,
// Encrypt, Decrypt, GetHealthStatus), all POSTs under
// /<prefix>/kms/xks/v1/, and GET /ping for load balancers.
//
// Each prefix is a logical external key store of the key service, with
// its own SigV4 credentials (service "kms-xks-proxy") and allow-list of
// keys. A request is routed by its path, read within a body limit,
// authenticated against the credentials of its path's store, decoded, and
// handed to the key service; the service's errors are mapped to the
// spec's error names here, once. Every call is audited, with the
// requestMetadata AWS KMS sent.
package xks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/auth"
)

// Limits of a request: the body holds at most 8 KiB of plaintext and
// 16 KiB of AAD in Base64 and a few ARNs; every call must answer well
// within AWS KMS's 250 ms.
const (
	maxBody = 96 << 10
	timeout = 10 * time.Second
)

// Config wires a Handler.
type Config struct {
	// Service serves the requests, audits them, and records those refused
	// before it saw them in the same trail (Service.RecordRefusal).
	Service *service.Service
	// Verifier checks SigV4 for service kms-xks-proxy, with the signed
	// headers as listed (auth.Config.Service, SignedHeadersOnly).
	Verifier *auth.Verifier
	Logger   hclog.Logger
	// Model is the xksProxyModel GetHealthStatus reports ("hsmkms 1.2.3").
	Model string
}

// Handler serves the XKS proxy API.
type Handler struct {
	cfg Config
}

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Model == "" {
		cfg.Model = "hsmkms"
	}
	return &Handler{cfg: cfg}
}

// ServeHTTP answers one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := newRequestID()
	if r.URL.Path == "/ping" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "ok\n")
		return
	}
	t, ok := parsePath(r.URL.Path)
	if !ok {
		writeError(w, id, ErrInvalidURIPath, "the URI path is not one of the XKS proxy API's")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeErrorStatus(w, id, http.StatusMethodNotAllowed, ErrValidation, "XKS proxy API operations are POST requests")
		return
	}
	h.serve(w, r, id, t)
}

// serve answers a POST to an XKS operation.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, id string, t target) {
	source := sourceAddr(r)
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.unverified(id, t, source, ErrUnsupported)
			writeError(w, id, ErrUnsupported, "the request body is larger than hsmkms accepts")
			return
		}
		h.unverified(id, t, source, ErrValidation)
		writeError(w, id, ErrValidation, "the request body could not be read")
		return
	}
	// The store is found with the credential: one read. A path prefix no
	// store has is told apart only to a request signed with a credential
	// of some store (AWS KMS configured with a wrong path); to anyone else
	// it fails as a wrong credential would, so that the prefixes in use
	// cannot be probed.
	sc := &storeCredentials{svc: h.cfg.Service, prefix: t.prefix}
	creds, err := h.cfg.Verifier.VerifyWith(ctx, r, body, source, sc)
	if err != nil {
		h.refuse(w, id, t, source, service.Cancelled(ctx, err))
		return
	}
	if sc.noStore {
		h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Principal: creds.AccessKeyID, PrincipalName: creds.Name,
			Action: t.action(), Source: source, Outcome: audit.Failed, ErrorType: ErrInvalidURIPath})
		writeError(w, id, ErrInvalidURIPath, "no external key store has this URI path")
		return
	}
	ctx = service.WithCaller(ctx, service.Caller{AccessKeyID: creds.AccessKeyID, Name: creds.Name, Source: source, RequestID: id})
	out, err := h.call(ctx, t, body)
	if err != nil {
		var ie *inputError
		if errors.As(err, &ie) {
			// Refused before the service, which audits the rest.
			h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Principal: creds.AccessKeyID, PrincipalName: creds.Name,
				Action: t.action(), Source: source, Outcome: audit.Failed, ErrorType: ie.name})
			writeError(w, id, ie.name, ie.msg)
			return
		}
		h.fail(w, id, err)
		return
	}
	writeJSON(w, id, http.StatusOK, out)
}

// call decodes the body of t's operation and calls the key service.
func (h *Handler) call(ctx context.Context, t target, body []byte) (any, error) {
	switch t.op {
	case opMetadata:
		var in metadataRequest
		if err := decodeBody(body, &in); err != nil {
			return nil, err
		}
		md, err := requestMetadata(in.RequestMetadata, true)
		if err != nil {
			return nil, err
		}
		out, err := h.cfg.Service.XKSGetKeyMetadata(ctx, service.XKSRequest{Prefix: t.prefix, ExternalKeyID: t.keyID, Metadata: md})
		if err != nil {
			return nil, err
		}
		return keyMetadataResponse{KeySpec: out.KeySpec, KeyUsage: out.KeyUsage, KeyStatus: out.KeyStatus}, nil
	case opEncrypt:
		return h.encrypt(ctx, t, body)
	case opDecrypt:
		return h.decrypt(ctx, t, body)
	default: // opHealth
		var in metadataRequest
		if err := decodeBody(body, &in); err != nil {
			return nil, err
		}
		md, err := requestMetadata(in.RequestMetadata, false)
		if err != nil {
			return nil, err
		}
		hh, err := h.cfg.Service.XKSHealth(ctx, service.XKSRequest{Prefix: t.prefix, Metadata: md})
		if err != nil {
			return nil, err
		}
		return healthResponse{FleetSize: 1, ProxyVendor: "hsmkms", ProxyModel: h.cfg.Model, EKMVendor: hh.Vendor,
			EKMFleet: []ekmFleetHSM{{ID: hh.ID, Model: hh.Model, HealthStatus: hh.Status}}}, nil
	}
}

func (h *Handler) encrypt(ctx context.Context, t target, body []byte) (any, error) {
	var in encryptRequest
	md, err := decodeCrypto(body, &in)
	if err != nil {
		return nil, err
	}
	cdiv := false
	if in.CDIVAlgorithm != nil {
		if *in.CDIVAlgorithm != "SHA_256" {
			return nil, unsupported("ciphertextDataIntegrityValueAlgorithm %q is not supported; use SHA_256", truncate(*in.CDIVAlgorithm))
		}
		cdiv = true
	}
	plain, err := field("plaintext", in.Plaintext)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	aad, err := optional("additionalAuthenticatedData", in.AAD)
	if err != nil {
		return nil, err
	}
	out, err := h.cfg.Service.XKSEncrypt(ctx, service.XKSRequest{Prefix: t.prefix, ExternalKeyID: t.keyID, Metadata: md},
		service.XKSEncryptInput{Plaintext: plain, AAD: aad, CDIV: cdiv})
	if err != nil {
		return nil, err
	}
	resp := encryptResponse{Ciphertext: b64(out.Ciphertext), Metadata: b64(out.Metadata), IV: b64(out.IV), Tag: b64(out.Tag)}
	if cdiv {
		resp.CDIV = b64(out.CDIV)
	}
	return resp, nil
}

func (h *Handler) decrypt(ctx context.Context, t target, body []byte) (any, error) {
	var in decryptRequest
	md, err := decodeCrypto(body, &in)
	if err != nil {
		return nil, err
	}
	var dec service.XKSDecryptInput
	for _, f := range []struct {
		name     string
		v        *string
		dst      *[]byte
		required bool
	}{
		{"ciphertext", in.Ciphertext, &dec.Ciphertext, true},
		{"initializationVector", in.IV, &dec.IV, true},
		{"authenticationTag", in.Tag, &dec.Tag, true},
		{"ciphertextMetadata", in.Metadata, &dec.Metadata, false},
		{"additionalAuthenticatedData", in.AAD, &dec.AAD, false},
	} {
		var err error
		if f.required {
			*f.dst, err = field(f.name, f.v)
		} else {
			*f.dst, err = optional(f.name, f.v)
		}
		if err != nil {
			return nil, err
		}
	}
	plain, err := h.cfg.Service.XKSDecrypt(ctx, service.XKSRequest{Prefix: t.prefix, ExternalKeyID: t.keyID, Metadata: md}, dec)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	return decryptResponse{Plaintext: b64(plain)}, nil
}

// storeCredentials looks up credentials within the external key store of
// a prefix; when no store has it, in whichever store has the ID, noting
// that the prefix is unknown.
type storeCredentials struct {
	svc     *service.Service
	prefix  string
	noStore bool
}

func (c *storeCredentials) Credentials(ctx context.Context, id string) (service.Credentials, error) {
	creds, err := c.svc.XKSCredentials(ctx, c.prefix, id)
	if !errors.Is(err, service.ErrNoXKSStore) {
		return creds, err
	}
	c.noStore = true
	return c.svc.XKSCredentialsAnywhere(ctx, id)
}

// refuse answers a request that failed authentication with 401
// AuthenticationFailedException, auditing it within the failure budget.
func (h *Handler) refuse(w http.ResponseWriter, id string, t target, source string, err error) {
	var ae *auth.Error
	if !errors.As(err, &ae) {
		a := h.answerOf(id, err)
		// A client that left before it was authenticated is not audited
		// (see api.Handler.refuse): nothing was done.
		if service.CodeOf(err) != service.CodeCancelled {
			h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Action: t.action(), Source: source,
				Outcome: audit.Failed, ErrorType: a.name})
		}
		a.write(w, id)
		return
	}
	if !ae.Unaudited {
		h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Principal: ae.AccessKeyID, Action: t.action(),
			Source: source, Outcome: audit.Denied, ErrorType: ErrAuthenticationFail, Suppressed: ae.Suppressed, SuppressedID: ae.SuppressedID,
			SuppressedAll: ae.SuppressedAll})
	}
	msg := ae.Message
	if ae.Credential {
		// One message for an unknown ID and a wrong signature: the two
		// differ by which store holds the ID, and a path prefix no store
		// has looks the ID up in every store (storeCredentials), so
		// telling them apart would tell a prober holding another store's
		// access key ID, without its secret, which prefixes are in use.
		msg = msgCredentialFailed
	}
	writeError(w, id, ErrAuthenticationFail, msg)
}

// msgCredentialFailed answers every request whose credential does not
// authenticate it (see auth.Error.Credential).
const msgCredentialFailed = "The request's signature could not be verified with a credential of this external key store."

// unverified audits a request refused before its signature was checked,
// within its source's failure budget: anyone can send these.
func (h *Handler) unverified(id string, t target, source, name string) {
	if audited, suppressed, suppressedAll := h.cfg.Verifier.RefusedUnverified(source); audited {
		h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Action: t.action(), Source: source,
			Outcome: audit.Failed, ErrorType: name, Suppressed: suppressed, SuppressedAll: suppressedAll})
	}
}

// fail answers a key service error with its XKS name and status, and
// returns the name.
func (h *Handler) fail(w http.ResponseWriter, id string, err error) string {
	return h.answerOf(id, err).write(w, id)
}

// answer is how a failed request is answered.
type answer struct {
	status    int
	name, msg string
}

// write sends a and returns its name.
func (a answer) write(w http.ResponseWriter, id string) string {
	writeErrorStatus(w, id, a.status, a.name, a.msg)
	return a.name
}

// answerOf is the XKS error name and status a key service error is
// answered with; it logs the server's own failures.
func (h *Handler) answerOf(id string, err error) answer {
	if service.CodeOf(err) == service.CodeCancelled {
		h.cfg.Logger.Debug("XKS request cancelled by the client", "request_id", id)
		return answer{status: statusClientClosed, name: ErrInternal, msg: "the request was cancelled"}
	}
	name := nameOf(err)
	if name == ErrInternal && !errors.Is(err, service.ErrAuditUnwritten) { // that one is logged by the service, once
		h.cfg.Logger.Error("XKS request failed", "request_id", id, "error", err)
	}
	return answer{status: statusOf(name), name: name, msg: service.MessageOf(err)}
}

// statusClientClosed answers a request its client abandoned (nginx's 499,
// for a proxy's logs; nobody reads it).
const statusClientClosed = 499

func writeJSON(w http.ResponseWriter, id string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"errorName":"InternalException","errorMessage":"encoding the response failed"}`)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Request-Id", id)
	w.WriteHeader(status)
	w.Write(body)
}

func writeError(w http.ResponseWriter, id, name, msg string) {
	writeErrorStatus(w, id, statusOf(name), name, msg)
}

func writeErrorStatus(w http.ResponseWriter, id string, status int, name, msg string) {
	writeJSON(w, id, status, errorResponse{Name: name, Message: printable(msg)})
}

// newRequestID returns a random request ID.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sourceAddr is the client's IP address, the unit of the failure budget.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
