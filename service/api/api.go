// Package api owns hsmkms's HTTP surface: the AWS KMS JSON 1.1 protocol
// (POST / with X-Amz-Target: TrentService.<Operation>), the admin
// operations in the same protocol (X-Amz-Target: HsmkmsAdmin.<Operation>),
// GET /healthz and GET /readyz. The Prometheus metrics it counts are served
// elsewhere (Metrics.Handler, on a listener of their own): they name keys.
//
// Every KMS and admin request is read within its route's body limit,
// authenticated with SigV4 (package auth), and handed to the key service
// with the caller in its context; the service's errors are mapped to AWS
// error responses here, once.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/auth"
)

// Config wires a Handler.
type Config struct {
	// Service serves the requests, audits them, and records those refused
	// before it saw them (authentication failures, unknown operations,
	// bodies too large or not the operation's JSON) in the same trail
	// (Service.RecordRefusal).
	Service  *service.Service
	Verifier *auth.Verifier
	Logger   hclog.Logger
	// Ready reports whether the token is usable now (GET /readyz).
	Ready func() (bool, string)
	// Metrics, when set, counts requests. The handler does not serve it.
	Metrics *Metrics
}

// Handler is the server's http.Handler.
type Handler struct {
	cfg    Config
	routes map[string]route
	mux    *http.ServeMux
}

// New returns the Handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	h := &Handler{cfg: cfg, routes: routes(), mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /{$}", h.serveAPI)
	h.mux.HandleFunc("GET /healthz", h.serveHealth)
	h.mux.HandleFunc("GET /readyz", h.serveReady)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, newRequestID(), http.StatusNotFound, "UnknownOperationException",
			"send KMS requests as POST / with an X-Amz-Target header")
	})
	return h
}

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// serveAPI answers one KMS or admin operation.
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := newRequestID()
	target := r.Header.Get("X-Amz-Target")
	// Only known operations name a metric label: the target is the
	// client's, and each new label value would be a new time series.
	op := "unknown"
	if _, ok := h.routes[target]; ok {
		op = strings.TrimPrefix(strings.TrimPrefix(target, kmsPrefix), adminPrefix)
	}
	code := h.handle(w, r, id, target)
	if h.cfg.Metrics != nil {
		h.cfg.Metrics.observe(op, code, time.Since(start))
	}
}

// handle serves the request and returns the error type it answered with
// ("" for success), for the metrics. A refusal's audit record is written
// before its answer, as the service writes a served request's: no client
// holds an answer whose record a crash could still lose (net/http
// buffering the answer until the handler returns is not relied on).
func (h *Handler) handle(w http.ResponseWriter, r *http.Request, id, target string) string {
	source := sourceAddr(r)
	rt, ok := h.routes[target]
	if !ok {
		code := h.unverified(id, target, source, "UnknownOperationException")
		writeError(w, id, http.StatusBadRequest, code, "unknown operation "+quoteTarget(target))
		return code
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rt.limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			code := h.unverified(id, target, source, "RequestEntityTooLargeException")
			writeError(w, id, http.StatusRequestEntityTooLarge, code, "the request body is larger than this operation accepts")
			return code
		}
		code := h.unverified(id, target, source, "SerializationException")
		writeError(w, id, http.StatusBadRequest, code, "the request body could not be read")
		return code
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.timeout)
	defer cancel()
	creds, err := h.cfg.Verifier.Verify(ctx, r, body, source)
	if err != nil {
		return h.refuse(w, id, target, source, service.Cancelled(ctx, err))
	}
	ctx = service.WithCaller(ctx, service.Caller{AccessKeyID: creds.AccessKeyID, Name: creds.Name, Statements: creds.Statements,
		Source: source, RequestID: id})
	out, err := rt.call(ctx, h.cfg.Service, body)
	if err != nil {
		a := h.answerOf(id, err)
		var un *errUnserved
		if errors.As(err, &un) {
			// The body never reached the service, which audits the rest.
			h.unserved(id, target, source, creds.AccessKeyID, a.code)
		}
		return a.write(w, id)
	}
	if sn, ok := out.(*service.Snapshot); ok {
		h.stream(w, id, sn, rt.timeout)
		return ""
	}
	writeJSON(w, id, http.StatusOK, out)
	return ""
}

// stream writes a store snapshot as the response body. A failure half way
// aborts the connection, so that the client sees a truncated transfer
// rather than a short file that looks whole.
func (h *Handler) stream(w http.ResponseWriter, id string, sn *service.Snapshot, timeout time.Duration) {
	// The server's write timeout suits JSON answers, not a whole store.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Amzn-RequestId", id)
	w.WriteHeader(http.StatusOK)
	if n, err := sn.WriteTo(w); err != nil {
		h.cfg.Logger.Error("store snapshot failed half way; aborting the response", "request_id", id, "written", n, "error", err)
		panic(http.ErrAbortHandler)
	}
}

// refuse answers a request that failed authentication, and audits it
// unless the failure is past its audit budget (package auth counts those
// into the next record of the same source or claimed ID).
func (h *Handler) refuse(w http.ResponseWriter, id, target, source string, err error) string {
	var ae *auth.Error
	if !errors.As(err, &ae) {
		// The principal could not be looked up: audit it as the service
		// would, then answer as it would.
		a := h.answerOf(id, err)
		if a.metric == cancelled {
			// The client left before it was authenticated: nothing was
			// done, and no one is known to audit. Recorded, such requests
			// wrote records past the budget of failed authentications at
			// the cost of a connection each (found by review).
			return a.write(w, id)
		}
		h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Action: actionOf(target), Source: source,
			Outcome: audit.Failed, ErrorType: a.code})
		return a.write(w, id)
	}
	status := http.StatusBadRequest
	if ae.Code == auth.CodeMissingToken {
		status = http.StatusForbidden
	}
	if !ae.Unaudited {
		h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Principal: ae.AccessKeyID,
			Action: actionOf(target), Source: source, Outcome: audit.Denied, ErrorType: ae.Code,
			Suppressed: ae.Suppressed, SuppressedID: ae.SuppressedID, SuppressedAll: ae.SuppressedAll})
	}
	writeError(w, id, status, ae.Code, ae.Message)
	return ae.Code
}

// unverified audits a request refused before its signature was checked,
// within its source's failure budget (as failed authentications are):
// anyone can send these, and each must not cost an audit record.
func (h *Handler) unverified(id, target, source, code string) string {
	audited, suppressed, suppressedAll := h.cfg.Verifier.RefusedUnverified(source)
	if audited {
		h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Action: actionOf(target), Source: source,
			Outcome: audit.Failed, ErrorType: code, Suppressed: suppressed, SuppressedAll: suppressedAll})
	}
	return code
}

// unserved audits a request answered before it reached the key service
// for a reason other than authentication (refuse audits those, the service
// the rest), so that every API request writes one record; it returns code.
func (h *Handler) unserved(id, target, source, principal, code string) string {
	h.cfg.Service.RecordRefusal(audit.Record{Time: time.Now(), RequestID: id, Principal: principal,
		Action: actionOf(target), Source: source, Outcome: audit.Failed, ErrorType: code})
	return code
}

// answer is how a failed request is answered.
type answer struct {
	status    int
	code, msg string
	// metric is the request's outcome for the metrics: code, or
	// cancelled.
	metric string
}

// write sends a and returns its metrics outcome.
func (a answer) write(w http.ResponseWriter, id string) string {
	writeError(w, id, a.status, a.code, a.msg)
	return a.metric
}

// answerOf is the AWS type and status a service error is answered with; it
// logs the server's own failures.
func (h *Handler) answerOf(id string, err error) answer {
	var se *errSerialization
	if errors.As(err, &se) {
		return answer{status: http.StatusBadRequest, code: "SerializationException", msg: se.msg, metric: "SerializationException"}
	}
	code := service.CodeOf(err)
	switch code {
	case service.CodeInternal:
		if !errors.Is(err, service.ErrAuditUnwritten) { // logged by the service, once
			h.cfg.Logger.Error("request failed", "request_id", id, "error", err)
		}
	case service.CodeCancelled:
		// Nobody reads this answer; the client's doing is no server error.
		h.cfg.Logger.Debug("request cancelled by the client", "request_id", id)
		return answer{status: statusClientClosed, code: string(code), msg: messageOf(err), metric: cancelled}
	}
	return answer{status: statusOf(code), code: string(code), msg: messageOf(err), metric: string(code)}
}

// cancelled is the metrics outcome of a request its client abandoned, and
// statusClientClosed the status it is answered with (nginx's 499, for a
// proxy's logs; the client is gone).
const (
	cancelled          = "cancelled"
	statusClientClosed = 499
)

// statusOf is the HTTP status of each AWS error type, as AWS KMS answers
// it: 400 for every error of the request (the Smithy model's 404 and 409
// for NotFoundException and AlreadyExistsException are not what the
// service sends), 500 for its own failures and 503 for a dependency that
// timed out. SDKs retry the 5xx ones.
func statusOf(c service.Code) int {
	switch c {
	case service.CodeInternal:
		return http.StatusInternalServerError
	case service.CodeDependency:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

func messageOf(err error) string { return service.MessageOf(err) }

// actionOf names the action a target asks for, for audit records.
func actionOf(target string) string {
	if len(target) > 128 {
		target = target[:128]
	}
	if op, ok := strings.CutPrefix(target, kmsPrefix); ok {
		return "kms:" + op
	}
	if op, ok := strings.CutPrefix(target, adminPrefix); ok {
		return "hsmkms:" + op
	}
	return ""
}

func quoteTarget(t string) string {
	if len(t) > 128 {
		t = t[:128]
	}
	b, _ := json.Marshal(t)
	return string(b)
}

const contentType = "application/x-amz-json-1.1"

// contentTypeValue is the header value of every JSON response; nothing
// writes to it.
var contentTypeValue = []string{contentType}

func writeJSON(w http.ResponseWriter, id string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"__type":"KMSInternalException","message":"encoding the response failed"}`)
	}
	// Assigned rather than Set: the names are canonical already, and the
	// content type's value is shared, not a new slice per response.
	h := w.Header()
	h["Content-Type"] = contentTypeValue
	h["X-Amzn-Requestid"] = []string{id}
	w.WriteHeader(status)
	w.Write(body)
}

type errorBody struct {
	Type    string `json:"__type"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, id string, status int, code, msg string) {
	w.Header().Set("X-Amzn-ErrorType", code)
	writeJSON(w, id, status, errorBody{Type: code, Message: msg})
}

// newRequestID returns a random request ID in the UUID form AWS uses.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	hex.Encode(s[9:13], b[4:6])
	hex.Encode(s[14:18], b[6:8])
	hex.Encode(s[19:23], b[8:10])
	hex.Encode(s[24:], b[10:])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return string(s[:])
}

// sourceAddr is the client's IP address, the unit of the failure limit.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) serveHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, newRequestID(), http.StatusOK, map[string]string{"status": "ok"})
}

// serveReady says whether the token is usable right now.
func (h *Handler) serveReady(w http.ResponseWriter, _ *http.Request) {
	ready, reason := true, ""
	if h.cfg.Ready != nil {
		ready, reason = h.cfg.Ready()
	}
	if !ready {
		writeJSON(w, newRequestID(), http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": reason})
		return
	}
	writeJSON(w, newRequestID(), http.StatusOK, map[string]string{"status": "ready"})
}
