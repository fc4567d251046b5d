// Package audit owns the audit trail: one structured record per key
// service operation, allowed or denied, written as a JSON line through
// go-hclog. A record names who did what to which key version from where
// and how it ended; it never holds plaintext, data keys, PINs or secrets.
package audit

import (
	"io"
	"maps"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Outcomes of an audited operation.
const (
	Allowed = "allowed" // authorised and succeeded
	Denied  = "denied"  // refused by policy or authentication
	Failed  = "failed"  // authorised but failed (bad input, key state, HSM)
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

// Log writes one record.
func (l *Logger) Log(r Record) {
	args := []any{
		"time", r.Time.UTC().Format(time.RFC3339Nano),
		"request_id", r.RequestID,
		"principal", r.Principal,
		"action", r.Action,
		"outcome", r.Outcome,
	}
	if r.KeyID != "" {
		args = append(args, "key_id", r.KeyID)
	}
	if r.KeyVersion != 0 {
		args = append(args, "key_version", r.KeyVersion)
	}
	if r.Alias != "" {
		args = append(args, "alias", r.Alias)
	}
	if len(r.EncryptionContext) > 0 {
		args = append(args, "encryption_context", maps.Clone(r.EncryptionContext))
	}
	if r.Source != "" {
		args = append(args, "source", r.Source)
	}
	if r.ErrorType != "" {
		args = append(args, "error_type", r.ErrorType)
	}
	l.l.Info("audit", args...)
}
