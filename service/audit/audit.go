// Package audit owns the audit trail: one structured record per key
// service operation, allowed or denied, written as a JSON line in go-hclog's
// JSON line format. A record names who did what to which key version from
// where and how it ended; it never holds plaintext, data keys, PINs or
// secrets.
//
// Log returns only once its record has been handed to the writer (for a
// file, written to it: the same durability as a log line), so a request is
// answered only after its record is out; it returns the write's error, so
// that a request whose record was lost is not answered as if it were. Records of concurrent requests
// are written together (group commit): while one caller writes a batch,
// the records that arrive meanwhile gather in the next, which the first
// of their callers writes as soon as the writer is free.
package audit

import (
	"fmt"
	"io"
	"sync"
	"time"
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
	// Started is the record an operation that makes a secret writes
	// before it commits the change: its final record, with the same
	// request ID, follows. Should that one be lost, the trail still shows
	// the change, and the secret is returned rather than lost with it.
	Started = "started"
)

// Record is one audited operation.
type Record struct {
	Time      time.Time
	RequestID string
	Principal string // the access key ID, or "system" for the service's own work
	// PrincipalName is the principal's name (principal create NAME), when
	// the request was authenticated: easier to read than its key ID.
	PrincipalName string
	Action        string // e.g. kms:Decrypt
	KeyID         string
	KeyVersion    uint32
	Alias         string // the alias the caller named the key by, if any
	// GrantID is the grant that allowed the operation, when a grant did
	// (the principal's policy did not).
	GrantID string
	// EncryptionContext is logged as AWS CloudTrail logs it: it is
	// authenticated data, not a secret.
	EncryptionContext map[string]string
	// RequestMetadata is, for a call of the XKS proxy API, the
	// requestMetadata AWS KMS sent (awsPrincipalArn, kmsKeyArn,
	// kmsOperation, kmsRequestId, kmsViaService, …): it ties the record to
	// the AWS CloudTrail entry of the KMS call behind it.
	RequestMetadata map[string]string
	Source          string // the caller's network address
	Outcome         string
	ErrorType       string // the AWS error type when not allowed
	// Subject is the principal an administrative operation acts on (the
	// access key ID created, deleted or whose secret was rotated).
	Subject string
	// Credential is the access key ID of the external key store
	// credential an administrative operation adds or removes; Subject
	// then names the store's path prefix.
	Credential string
	// Suppressed counts the failed authentications from the same source
	// that were answered but not audited one by one since its last record
	// (the failure limit of package auth); SuppressedID those that claimed
	// the same access key ID, from any source; SuppressedAll those that
	// only the budget of all sources together left unaudited since the
	// last audited failure of any source.
	Suppressed, SuppressedID, SuppressedAll int
}

// Logger writes audit records. Its methods are safe for concurrent use;
// it never calls the writer's Write from two goroutines at once.
type Logger struct {
	w io.Writer // nil: Discard

	mu      sync.Mutex
	done    *sync.Cond // broadcast when a batch has been written
	pending []byte     // the records of the batch being gathered
	spare   []byte     // the buffer of the last batch written, for reuse
	batch   *batch     // the batch being gathered
	writing bool       // a caller is writing a batch
	// broken is set when a failed write left part of a line in the
	// trail (a disk filling mid-write): the next batch starts on a new
	// line, so that its first record is not glued to the broken one.
	broken bool
}

// batch is one write of records: its callers learn from it when it is
// written and whether the write failed.
type batch struct {
	written bool
	err     error
}

// New returns a Logger writing JSON lines to w.
func New(w io.Writer) *Logger {
	l := &Logger{w: w, batch: &batch{}}
	l.done = sync.NewCond(&l.mu)
	return l
}

// Discard returns a Logger that writes nothing.
func Discard() *Logger { return &Logger{} }

// Log writes one record as the "audit" object of a JSON line, before it
// returns. It returns the writer's error when the write of the record
// failed (a full disk, a closed pipe): the record is then lost, and the
// caller must not answer as if it were written.
func (l *Logger) Log(r Record) error {
	if l.w == nil {
		return nil
	}
	// Encoding under the lock, straight into the batch, costs well under
	// a microsecond (BenchmarkLine) and saves a buffer per caller.
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = appendLine(l.pending, time.Now(), r)
	mine := l.batch
	for !mine.written {
		if l.writing {
			l.done.Wait()
			continue
		}
		l.writeBatch()
	}
	return mine.err
}

// writeBatch writes the batch being gathered, without holding l.mu while
// it writes, and wakes its callers. l.mu is held on entry and on return.
func (l *Logger) writeBatch() {
	out, b, broken := l.pending, l.batch, l.broken
	l.pending, l.spare = l.spare[:0], nil
	l.batch = &batch{}
	l.writing = true
	l.mu.Unlock()
	broken, err := l.write(out, broken)
	l.mu.Lock()
	l.writing, l.broken = false, broken
	b.written, b.err = true, err
	if cap(out) <= maxSpare {
		l.spare = out[:0]
	}
	l.done.Broadcast()
}

// newline ends a line a failed write left broken.
var newline = []byte{'\n'}

// write writes out, after a newline if the trail ends in a broken line,
// and reports whether it ends in one now. A panicking writer is a failed
// write: its batch's callers fail closed instead of waiting forever on a
// batch never marked written, and l.mu, which Log unlocks when it
// returns, is not unlocked twice.
func (l *Logger) write(out []byte, broken bool) (brokenAfter bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			brokenAfter, err = true, fmt.Errorf("audit: the writer panicked: %v", r)
		}
	}()
	if broken {
		if n, err := l.w.Write(newline); err != nil {
			return n == 0, err
		}
	}
	n, err := l.w.Write(out)
	return n > 0 && out[n-1] != '\n', err
}

// maxSpare bounds the buffer kept between batches: a burst of large
// records does not pin its memory.
const maxSpare = 256 << 10
