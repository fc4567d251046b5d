package service

import (
	"context"
	"errors"
	"strings"

	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// Caller is who asks for an operation, as the API layer authenticated it.
type Caller struct {
	// AccessKeyID names the principal in audit records, with Name.
	AccessKeyID string
	Name        string
	// Statements is the principal's policy.
	Statements []policy.Statement
	// Source is the caller's network address; RequestID ties the audit
	// record to the response.
	Source    string
	RequestID string
	// system marks the service's own work (schedulers, reconciliation).
	system bool
}

type callerKey struct{}

// WithCaller returns a context carrying the caller. An operation whose
// context carries no caller is denied.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// systemContext marks ctx as the service's own work, allowed everything.
func systemContext(ctx context.Context) context.Context {
	return WithCaller(ctx, Caller{AccessKeyID: "system", system: true})
}

// op is one audited operation in progress.
type op struct {
	s      *Service
	ctx    context.Context
	caller Caller
	known  bool
	rec    audit.Record
	// grantRefs are the grants the request's GrantTokens name, and
	// grantContext the encryption context a grant's constraints are
	// checked against (the request's; ReEncrypt's source or destination).
	grantRefs    []string
	grantContext map[string]string
	// tx is the transaction authorize runs in, for reading grants; nil
	// outside one.
	tx store.Tx
	// intended is set once intend wrote the operation's Started record.
	intended bool
	// policyOnly keeps decide from looking for a grant (authorizeByPolicy).
	policyOnly bool
}

// begin starts the audit record of an operation on behalf of ctx's caller.
func (s *Service) begin(ctx context.Context, action string) *op {
	c, ok := callerFrom(ctx)
	return &op{s: s, ctx: ctx, caller: c, known: ok, rec: audit.Record{
		Time:          s.now(),
		RequestID:     c.RequestID,
		Principal:     c.AccessKeyID,
		PrincipalName: c.Name,
		Action:        action,
		Source:        c.Source,
	}}
}

// end writes the audit record, exactly once per operation, and returns err
// (as ErrCancelled when the client abandoned the request).
func (o *op) end(err error) error {
	err = Cancelled(o.ctx, err)
	switch {
	case err == nil:
		o.rec.Outcome = audit.Allowed
	case errors.Is(err, ErrCancelled):
		o.rec.Outcome = audit.Cancelled
	case errors.Is(err, ErrAccessDenied):
		o.rec.Outcome = audit.Denied
		o.rec.ErrorType = string(CodeAccessDenied)
	default:
		o.rec.Outcome = audit.Failed
		o.rec.ErrorType = string(CodeOf(err))
	}
	if !o.caller.system {
		// With a Started record written the change is in the trail, so a
		// lost final record must not also lose what the change made.
		if aerr := o.s.writeAudit(o.rec); aerr != nil && err == nil && !o.intended {
			err = aerr
		}
	}
	return err
}

// intend writes the Started record of an operation that makes a secret
// (an access key pair, an XKS credential), just before it commits: if the
// record cannot be written nothing is changed, and once it is, the secret
// is returned even if the final record is lost. Without it, a full disk
// after the commit would keep the new secret from its only recipient: a
// rotated principal locked out, a credential no one holds.
func (o *op) intend() error {
	if o.caller.system {
		return nil
	}
	rec := o.rec
	rec.Outcome = audit.Started
	if err := o.s.writeAudit(rec); err != nil {
		return err
	}
	o.intended = true
	return nil
}

// endWith is end for an operation with a result: deferred with the
// addresses of its named results, it ends the operation and, when it
// failed (its record unwritten included), zeroes *out, so that nothing an
// operation made leaves the service with an error beside it.
func endWith[T any](o *op, out *T, err *error) {
	if *err = o.end(*err); *err != nil {
		var zero T
		*out = zero
	}
}

// ErrAuditUnwritten is the cause of the KMSInternalException that answers
// an operation whose audit record could not be written: what it made (a
// plaintext, a data key, a signature) is not returned, as Vault refuses a
// request no audit device recorded. The service logs the failure when it
// starts, so the API need not log each request it answers so.
var ErrAuditUnwritten = errors.New("service: the audit record could not be written")

// RecordRefusal writes the audit record the API layer makes of a request
// it refused before the service saw it (a failed signature, a body over
// the limit). A failed write changes no answer, since the request gets an
// error anyway, but it is counted and logged as the service's own are:
// once when writes start failing, with the records lost when they work
// again, and with the failed authentications the lost records stood for
// besides their own (their suppressed counts), so that those are not
// lost without a trace.
func (s *Service) RecordRefusal(r audit.Record) {
	if s.writeAudit(r) != nil {
		s.auditMu.Lock()
		s.auditLostSuppressed += int64(r.Suppressed + r.SuppressedID + r.SuppressedAll)
		s.auditMu.Unlock()
	}
}

// writeAudit writes r. A failed write is ErrAuditUnwritten, and the log
// says so once when writes start failing and once when they work again
// (with how many records were lost meanwhile), not once per request.
func (s *Service) writeAudit(r audit.Record) error {
	err := s.audit.Log(r)
	if err == nil {
		if s.auditFailing.Load() {
			s.auditRecovered()
		}
		return nil
	}
	s.auditFailed(err)
	return wrapErr(CodeInternal, ErrAuditUnwritten, "the audit record of this request could not be written")
}

// auditFailed counts a lost record, and logs the first of a run.
func (s *Service) auditFailed(err error) {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	s.auditLost++
	if !s.auditFailing.Load() {
		s.auditFailing.Store(true)
		s.log.Error("writing the audit trail failed: operations answer KMSInternalException until it works again", "error", err)
	}
}

// auditRecovered logs, once a run, that records are written again, with
// how many the run lost.
func (s *Service) auditRecovered() {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	if s.auditFailing.Load() {
		s.auditFailing.Store(false)
		s.log.Warn("the audit trail is written again", "records_lost", s.auditLost,
			"suppressed_failures_lost", s.auditLostSuppressed)
		s.auditLost, s.auditLostSuppressed = 0, 0
	}
}

// withContext records the encryption context of the request. The record
// shares the caller's map: it is written before the operation returns, and
// the service never changes its inputs.
func (o *op) withContext(c map[string]string) {
	if len(c) > 0 {
		o.rec.EncryptionContext = c
	}
	o.grantContext = c
}

// authorize decides whether the caller may perform the operation's action
// on k (nil for actions on no key). It records the key in the audit record
// whatever the outcome.
func (o *op) authorize(k *store.Key, alias string) error {
	return o.authorizeAs(o.rec.Action, k, alias)
}

// authorizeByPolicy decides whether the caller's policy alone allows the
// operation's action on k, grants aside. RetireGrant uses it: a grant that
// includes RetireGrant lets its grantee retire that grant only, so it must
// not count as kms:RetireGrant on the key (found by review: through
// grantFor it let the grantee retire every grant of the key).
func (o *op) authorizeByPolicy(k *store.Key) error {
	o.policyOnly = true
	defer func() { o.policyOnly = false }()
	return o.authorize(k, "")
}

// policyAllows decides whether the caller's policy alone allows action on
// k, grants aside: for a right the caller hands on to others (an external
// key store's use of a key), which a grant, constrained to an encryption
// context or revocable, must not stand in for (found by review).
func (o *op) policyAllows(action string, k *store.Key) error {
	o.policyOnly = true
	defer func() { o.policyOnly = false }()
	return o.authorizeAs(action, k, "")
}

// authorizeIn is authorizeAs within the transaction tx, which a grant
// lookup then reads with: bolt must not open a second transaction in one
// goroutine while a write transaction is open.
func (o *op) authorizeIn(tx store.Tx, action string, k *store.Key, alias string) error {
	o.tx = tx
	defer func() { o.tx = nil }()
	return o.authorizeAs(action, k, alias)
}

func (o *op) authorizeAs(action string, k *store.Key, alias string) error {
	req := policy.Request{Action: action, Resources: []string{"*"}}
	if k != nil {
		o.rec.KeyID = k.ID
		req.Resources = o.s.keyResources(k)
	}
	if alias != "" {
		o.rec.Alias = alias
	}
	return o.decide(k, req)
}

// authorizeAlias decides an alias operation: the caller needs the action
// on the alias and on the key, as AWS KMS requires.
func (o *op) authorizeAlias(k *store.Key, alias string) error {
	o.rec.KeyID, o.rec.Alias = k.ID, alias
	action := o.rec.Action
	return o.decide(k, policy.Request{Action: action, Resources: []string{alias}},
		policy.Request{Action: action, Resources: o.s.keyResources(k)})
}

func (o *op) decide(k *store.Key, reqs ...policy.Request) error {
	if !o.known {
		return newErr(CodeAccessDenied, "the request carries no authenticated principal")
	}
	if o.caller.system {
		return nil
	}
	d := policy.DecideAll(o.caller.Statements, reqs...)
	if d.Allowed {
		return nil
	}
	if !d.Denied && k != nil && len(reqs) == 1 && !o.policyOnly {
		// No statement allows or denies: a grant may allow. The copies
		// keep k and reqs, which the allowed path leaves on the stack,
		// from escaping through the grant lookup.
		g, ok, err := o.grantFor(strings.Clone(k.ID), strings.Clone(reqs[0].Action))
		if err != nil {
			return err
		}
		if ok {
			o.rec.GrantID = g.ID
			return nil
		}
	}
	target := "this resource"
	if k != nil {
		target = o.s.keyARN(k.ID)
	}
	action := reqs[0].Action
	return &Error{Code: CodeAccessDenied, Message: "User: " + o.caller.AccessKeyID +
		" is not authorized to perform: " + action + " on resource: " + target +
		" because no identity-based policy allows the " + action + " action"}
}

// keyResources are every name a policy may use for k.
func (s *Service) keyResources(k *store.Key) []string {
	r := make([]string, 0, 2+len(k.Aliases))
	r = append(r, k.ID, s.keyARN(k.ID))
	return append(r, k.Aliases...)
}
