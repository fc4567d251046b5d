// Package audit owns the audit trail: one structured record per key
// service operation, allowed or denied, written as a JSON line through
// go-hclog. A record names who did what to which key version from where
// and how it ended; it never holds plaintext, data keys, PINs or secrets.
package audit

import (
	"io"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Outcomes of an audited operation.
const (
	Allowed = "allowed" // authorised and succeeded
	Denied  = "denied"  // refused by policy or authentication
	Failed  = "failed"  // authorised but failed (bad input, key state, HSM)
	// Cancelled is an operation the client abandoned (it closed the
	// connection or reset it) before it finished: the client's doing, not
	// a failure of the service.
	Cancelled = "cancelled"
)

// Record is one audited operation.
type Record struct {
	Time       time.Time
	RequestID  string
	Principal  string // the access key ID, or "system" for the service's own work
	Action     string // e.g. kms:Decrypt
	KeyID      string
	KeyVersion uint32
	Alias      string // the alias the caller named the key by, if any
	// EncryptionContext is logged as AWS CloudTrail logs it: it is
	// authenticated data, not a secret.
	EncryptionContext map[string]string
	Source            string // the caller's network address
	Outcome           string
	ErrorType         string // the AWS error type when not allowed
	// Subject is the principal an administrative operation acts on (the
	// access key ID created, deleted or whose secret was rotated).
	Subject string
	// Suppressed counts the failed authentications from the same source or
	// claimed access key ID that were answered but not audited one by one
	// since the last record about them (the failure limit of package auth).
	Suppressed int
}

// Logger writes audit records.
type Logger struct {
	l hclog.Logger
}

// New returns a Logger writing JSON lines to w.
func New(w io.Writer) *Logger {
	return &Logger{l: hclog.New(&hclog.LoggerOptions{
		Name:       "audit",
		Output:     w,
		JSONFormat: true,
		Level:      hclog.Info,
		TimeFn:     func() time.Time { return time.Now().UTC() },
	})}
}

// Discard returns a Logger that writes nothing.
func Discard() *Logger { return &Logger{l: hclog.NewNullLogger()} }

// Log writes one record as the "audit" object of an hclog JSON line,
// before it returns: a request is answered only once its record is out.
// The record is one plain struct field: hclog then encodes one value
// instead of eleven, and encoding/json walks the struct once, where a
// json.Marshaler's output is encoded and then scanned again. Each halves
// the cost of auditing a request (measured: 4.8 µs → 2.6 µs per record).
func (l *Logger) Log(r Record) {
	l.l.Info("audit", "audit", line{
		Time:              r.Time.UTC().Format(time.RFC3339Nano),
		RequestID:         r.RequestID,
		Principal:         r.Principal,
		Action:            r.Action,
		KeyID:             r.KeyID,
		KeyVersion:        r.KeyVersion,
		Alias:             r.Alias,
		EncryptionContext: r.EncryptionContext,
		Source:            r.Source,
		Outcome:           r.Outcome,
		ErrorType:         r.ErrorType,
		Subject:           r.Subject,
		Suppressed:        r.Suppressed,
	})
}

// line is a record as it is written.
type line struct {
	Time              string            `json:"time"`
	RequestID         string            `json:"request_id"`
	Principal         string            `json:"principal"`
	Action            string            `json:"action"`
	KeyID             string            `json:"key_id,omitempty"`
	KeyVersion        uint32            `json:"key_version,omitempty"`
	Alias             string            `json:"alias,omitempty"`
	EncryptionContext map[string]string `json:"encryption_context,omitempty"`
	Source            string            `json:"source,omitempty"`
	Outcome           string            `json:"outcome"`
	ErrorType         string            `json:"error_type,omitempty"`
	Subject           string            `json:"subject,omitempty"`
	Suppressed        int               `json:"suppressed,omitempty"`
}
