package service

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// Principals are the identities that sign requests. Their secret access
// keys are stored sealed under the service's internal key on the token
// (AES-GCM, the access key ID bound as AAD), never in clear; a process keeps
// the unsealed secrets it has used in memory, keyed by the sealed bytes, so
// that verifying a signature costs no token call.

// CreatePrincipalInput is CreatePrincipal's request.
type CreatePrincipalInput struct {
	Name       string             `json:"Name"`
	Statements []policy.Statement `json:"Statements"`
}

// CreatePrincipalOutput is CreatePrincipal's response: the only time the
// secret access key is shown.
type CreatePrincipalOutput struct {
	AccessKeyId     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Name            string `json:"Name"`
	// Arn names the principal in grants (GranteePrincipal,
	// RetiringPrincipal).
	Arn string `json:"Arn"`
}

// PrincipalEntry describes a principal, without its secret.
type PrincipalEntry struct {
	AccessKeyId  string             `json:"AccessKeyId"`
	Name         string             `json:"Name"`
	Arn          string             `json:"Arn"`
	Statements   []policy.Statement `json:"Statements"`
	CreationDate *EpochTime         `json:"CreationDate,omitempty"`
}

// ListPrincipalsOutput is ListPrincipals' response.
type ListPrincipalsOutput struct {
	Principals []PrincipalEntry `json:"Principals"`
	NextMarker string           `json:"NextMarker,omitempty"`
	Truncated  bool             `json:"Truncated"`
}

// DeletePrincipalInput is DeletePrincipal's request.
type DeletePrincipalInput struct {
	AccessKeyId string `json:"AccessKeyId"`
}

var (
	principalNameRE = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{1,128}$`)
	accessKeyIDRE   = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)
)

// internalKeySetting names the setting that holds the internal key's CKA_ID.
const internalKeySetting = "internal-key"

// CreatePrincipal makes a principal with a new access key pair. The new
// principal can do no more than its creator: it inherits the creator's Deny
// statements, and its Allow statements must be covered by the creator's
// (policy.Covers).
func (s *Service) CreatePrincipal(ctx context.Context, in CreatePrincipalInput) (out CreatePrincipalOutput, err error) {
	o := s.begin(ctx, policy.ActionCreatePrincipal)
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	if !principalNameRE.MatchString(in.Name) {
		return out, newErr(CodeValidation, "Name must be 1 to 128 of A-Z a-z 0-9 + = , . @ _ -")
	}
	if err := policy.Validate(in.Statements); err != nil {
		return out, newErr(CodeValidation, "%v", err)
	}
	stmts, err := limitToCaller(o.caller, in.Statements)
	if err != nil {
		return out, err
	}
	id, secret, err := NewAccessKey()
	if err != nil {
		return out, err
	}
	o.rec.Subject = id
	if err := o.intend(); err != nil {
		return out, err
	}
	if err := s.putPrincipal(ctx, id, secret, in.Name, stmts, true); err != nil {
		return out, err
	}
	return CreatePrincipalOutput{AccessKeyId: id, SecretAccessKey: secret, Name: in.Name, Arn: s.principalARN(id)}, nil
}

// limitToCaller returns the statements a principal created by c gets:
// stmts, refused unless c's Allow statements cover them, followed by c's
// Deny statements that stmts do not already hold. Without the Denies, a
// principal allowed kms:* but denied kms:Decrypt could make a child allowed
// kms:* and decrypt through it. The service's own work is not limited.
func limitToCaller(c Caller, stmts []policy.Statement) ([]policy.Statement, error) {
	if c.system {
		return stmts, nil
	}
	var ce *policy.CoverageError
	if err := policy.Covers(c.Statements, stmts); errors.As(err, &ce) {
		return nil, &Error{Code: CodeAccessDenied, Err: err, Message: fmt.Sprintf(
			"User: %s may not create a principal with rights it does not have: statement %d allows %s on %q, which no Allow statement of %s covers",
			c.AccessKeyID, ce.Statement, ce.Action, ce.Resource, c.AccessKeyID)}
	} else if err != nil {
		return nil, wrapErr(CodeInternal, err, "checking the new principal's policy")
	}
	out := slices.Clip(stmts)
	for _, st := range c.Statements {
		if st.Effect == policy.EffectDeny && !slices.ContainsFunc(out, st.Equal) {
			out = append(out, st)
		}
	}
	if len(out) > policy.MaxStatements {
		return nil, newErr(CodeValidation, "the principal would have %d statements with the %d Deny statements it inherits from %s, at most %d allowed",
			len(out), len(out)-len(stmts), c.AccessKeyID, policy.MaxStatements)
	}
	return out, nil
}

// NewAccessKey returns a fresh access key ID ("AKIA" and 16 base32
// characters) and a 40-character secret access key.
func NewAccessKey() (id, secret string, err error) {
	b := make([]byte, 40)
	if _, err := rand.Read(b); err != nil {
		return "", "", wrapErr(CodeInternal, err, "no randomness for an access key")
	}
	return "AKIA" + base32.StdEncoding.EncodeToString(b[:10]), base64.StdEncoding.EncodeToString(b[10:]), nil
}

func principalAAD(accessKeyID string) []byte { return []byte("hsmkms-principal-v1|" + accessKeyID) }

// putPrincipal seals the secret under the internal key and stores the
// principal.
func (s *Service) putPrincipal(ctx context.Context, id, secret, name string, stmts []policy.Statement, uniqueName bool) error {
	sealed, err := s.sealSecret(ctx, id, secret)
	if err != nil {
		return err
	}
	p := store.Principal{AccessKeyID: id, Name: name, SealedSecret: sealed,
		Statements: stmts, CreatedAt: s.now().UTC()}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		if uniqueName {
			// Principals are few: a scan in the creating transaction keeps
			// names unique on every replica.
			all, err := tx.Principals("", 0)
			if err != nil {
				return err
			}
			for _, q := range all {
				if q.Name == name {
					return newErr(CodeAlreadyExists, "a principal named %s exists already (access key ID %s)", name, q.AccessKeyID)
				}
			}
		}
		return tx.CreatePrincipal(p)
	})
	if errors.Is(err, store.ErrExists) {
		return newErr(CodeAlreadyExists, "a principal with access key ID %s exists already", id)
	}
	return storeErrOrNil(err)
}

// sealSecret returns the secret of principal id sealed under the internal
// key, as stored: the IV, then the sealed bytes. A fresh IV makes the bytes
// differ each time, which is what tells the secret cache a secret changed.
func (s *Service) sealSecret(ctx context.Context, id, secret string) ([]byte, error) {
	return s.sealInternal(ctx, principalAAD(id), secret)
}

// sealInternal seals a secret under the internal key, bound to aad, and
// returns the IV followed by the sealed bytes.
func (s *Service) sealInternal(ctx context.Context, aad []byte, secret string) ([]byte, error) {
	key, err := s.internalKey(ctx)
	if err != nil {
		return nil, err
	}
	var iv, sealed []byte
	if key.Portable {
		if iv, err = hsm.NewCBCIV(); err == nil {
			sealed, err = s.hsm.SealPortable(ctx, key.ID, iv, aad, nil, []byte(secret))
		}
	} else if iv, err = hsm.NewIV(); err == nil {
		sealed, err = s.hsm.Seal(ctx, key.ID, iv, aad, []byte(secret))
	}
	switch {
	case err != nil && iv == nil:
		return nil, wrapErr(CodeInternal, err, "no randomness for an IV")
	case err != nil:
		return nil, s.hsmErr(err, "", 0)
	}
	return append(iv, sealed...), nil
}

// ListPrincipals lists principals by access key ID, without secrets.
func (s *Service) ListPrincipals(ctx context.Context, in ListInput) (out ListPrincipalsOutput, err error) {
	o := s.begin(ctx, policy.ActionListPrincipals)
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return out, err
	}
	err = s.store.View(ctx, func(tx store.Tx) error {
		out.Principals = []PrincipalEntry{}
		page, err := tx.Principals(in.Marker, limit+1)
		for _, p := range page {
			out.Principals = append(out.Principals, PrincipalEntry{AccessKeyId: p.AccessKeyID, Name: p.Name, Arn: s.principalARN(p.AccessKeyID),
				Statements: p.Statements, CreationDate: epoch(p.CreatedAt)})
		}
		return err
	})
	if err != nil {
		return out, storeErr(err)
	}
	out.Principals, out.Truncated, out.NextMarker = page(out.Principals, limit, func(p PrincipalEntry) string { return p.AccessKeyId })
	return out, nil
}

// DeletePrincipal removes a principal; its signatures stop verifying at once.
// Neither the caller itself nor the root principal can be deleted.
func (s *Service) DeletePrincipal(ctx context.Context, in DeletePrincipalInput) (err error) {
	o := s.begin(ctx, policy.ActionDeletePrincipal)
	defer func() { err = o.end(err) }()
	o.rec.Subject = in.AccessKeyId
	if err := o.authorize(nil, ""); err != nil {
		return err
	}
	if o.caller.AccessKeyID == in.AccessKeyId {
		return newErr(CodeValidation, "a principal cannot delete itself")
	}
	errRoot := newErr(CodeValidation, "the root principal cannot be deleted")
	err = s.store.Update(ctx, func(tx store.Tx) error {
		// Asked in the transaction that deletes, so that a root replaced
		// meanwhile is still protected.
		root, err := recordedRoot(tx)
		switch {
		case err == nil && root == in.AccessKeyId:
			return errRoot
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
		p, err := tx.Principal(in.AccessKeyId)
		if err != nil {
			return err
		}
		if err := s.manageable(tx, o.caller, p); err != nil {
			return err
		}
		return tx.DeletePrincipal(in.AccessKeyId)
	})
	switch {
	case errors.Is(err, errRoot):
		return errRoot
	case errors.Is(err, store.ErrNotFound):
		return newErr(CodeNotFound, "no principal has access key ID %s", in.AccessKeyId)
	}
	return storeErrOrNil(err)
}

// Credentials are what the API layer needs to authenticate a principal.
type Credentials struct {
	AccessKeyID string
	Name        string // the principal's name, for audit records
	Secret      string
	Statements  []policy.Statement
}

// ErrUnknownPrincipal reports an access key ID that no principal has.
var ErrUnknownPrincipal = errors.New("service: unknown access key ID")

// secretCache keeps unsealed secrets by access key ID and sealed bytes: a
// principal re-created with a new secret has other sealed bytes, and a
// deleted one is not found in the store before the cache is asked.
type secretCache struct {
	mu sync.RWMutex
	m  map[string]cachedSecret
}

type cachedSecret struct {
	sealed string
	secret string
}

// Credentials returns the secret and policy of the principal with access
// key ID id, or ErrUnknownPrincipal.
func (s *Service) Credentials(ctx context.Context, id string) (Credentials, error) {
	var p store.Principal
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		p, err = tx.Principal(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return Credentials{}, ErrUnknownPrincipal
	}
	if err != nil {
		return Credentials{}, storeErr(err)
	}
	secret, err := s.unsealSecret(ctx, p)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{AccessKeyID: id, Name: p.Name, Secret: secret, Statements: p.Statements}, nil
}

func (s *Service) unsealSecret(ctx context.Context, p store.Principal) (string, error) {
	return s.unsealInternal(ctx, p.AccessKeyID, principalAAD(p.AccessKeyID), p.SealedSecret)
}

// unsealInternal opens what sealInternal made of the secret of access key
// ID id, through the secret cache: the token is asked only for sealed bytes
// it has not opened before.
func (s *Service) unsealInternal(ctx context.Context, id string, aad, stored []byte) (string, error) {
	s.secrets.mu.RLock()
	c, ok := s.secrets.m[id]
	s.secrets.mu.RUnlock()
	if ok && c.sealed == string(stored) {
		return c.secret, nil
	}
	key, err := s.internalKey(ctx)
	if err != nil {
		return "", err
	}
	ivSize, overhead := hsm.IVSize, hsm.TagSize
	if key.Portable {
		ivSize, overhead = hsm.CBCIVSize, hsm.MACSize
	}
	if len(stored) <= ivSize+overhead {
		return "", newErr(CodeInternal, "the stored secret of %s is damaged", id)
	}
	iv, sealed := stored[:ivSize], stored[ivSize:]
	var plain []byte
	if key.Portable {
		plain, err = s.hsm.UnsealPortable(ctx, key.ID, iv, aad, nil, sealed)
	} else {
		plain, err = s.hsm.Unseal(ctx, key.ID, iv, aad, sealed)
	}
	if err != nil {
		return "", s.hsmErr(err, "", 0)
	}
	s.secrets.mu.Lock()
	if s.secrets.m == nil {
		s.secrets.m = map[string]cachedSecret{}
	}
	s.secrets.m[id] = cachedSecret{sealed: string(stored), secret: string(plain)}
	s.secrets.mu.Unlock()
	return string(plain), nil
}

// NoPrincipals reports whether the store has no principal yet: a first start.
func (s *Service) NoPrincipals(ctx context.Context) (bool, error) {
	var none bool
	err := s.store.View(ctx, func(tx store.Tx) error {
		page, err := tx.Principals("", 1)
		none = len(page) == 0
		return err
	})
	return none, storeErrOrNil(err)
}

// rootSetting names the setting that holds the root principal's access key
// ID: the root is the principal it names, whatever principals are called.
const rootSetting = "root-principal"

// The audit actions of the service's own changes to the root principal. No
// request asks for them, so they are no policy actions.
const (
	actionRotateRootSecret = policy.AdminPrefix + "RotateRootSecret"
	actionReplaceRoot      = policy.AdminPrefix + "ReplaceRoot"
)

// RootChange says what EnsureRoot changed.
type RootChange struct {
	// Created is set when no principal had the configured access key ID.
	Created bool
	// Rotated is set when the principal's secret was not the configured
	// one and was replaced by it.
	Rotated bool
	// Replaced is the access key ID of the previous root principal, which
	// was deleted, or "".
	Replaced string
	// PolicyRestored is set when an existing principal's statements were
	// not the root's and were set to them.
	PolicyRestored bool
}

// EnsureRoot makes the principal with access key ID id and secret access
// key secret the root principal, with statements stmts, as the server's
// configuration says at every start. A differing stored secret is replaced
// (so that a changed secret takes effect and the old one stops working),
// and a previous root with another access key ID is deleted (so that a
// leaked key pair is revoked by a restart with a new one); each is audited
// and logged, without secrets. Stores of earlier versions, which did not
// record the root, adopt the principal with access key ID id, or else the
// oldest principal named "root".
func (s *Service) EnsureRoot(ctx context.Context, id, secret string, stmts []policy.Statement) (RootChange, error) {
	if !accessKeyIDRE.MatchString(id) || len(secret) < 16 || len(secret) > 128 {
		return RootChange{}, newErr(CodeValidation, "an access key ID is 16 to 128 of A-Z 0-9 and a secret 16 to 128 characters")
	}
	if err := policy.Validate(stmts); err != nil {
		return RootChange{}, wrapErr(CodeInternal, err, "the root principal's policy is invalid")
	}
	ctx = systemContext(ctx)
	// Replicas starting together each plan the same change outside the
	// transaction (sealing needs the token): the ones that lose the race
	// find the store changed when they apply, and plan again from it.
	for attempt := 1; ; attempt++ {
		plan, ch, err := s.planRoot(ctx, id, secret, stmts)
		if err != nil {
			return RootChange{}, err
		}
		err = s.applyRoot(ctx, plan)
		if err == nil {
			s.reportRoot(id, ch)
			return ch, nil
		}
		raced := errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict)
		if !raced || attempt == rootAttempts {
			return RootChange{}, err
		}
	}
}

// rootAttempts bounds how often EnsureRoot plans again after losing a race
// with another replica.
const rootAttempts = 5

// planRoot works out what EnsureRoot has to write.
func (s *Service) planRoot(ctx context.Context, id, secret string, stmts []policy.Statement) (rootPlan, RootChange, error) {
	prev, recorded, err := s.currentRoot(ctx, id)
	if err != nil {
		return rootPlan{}, RootChange{}, err
	}
	p, found, err := s.principal(ctx, id)
	if err != nil {
		return rootPlan{}, RootChange{}, err
	}
	if !found {
		p = store.Principal{AccessKeyID: id, Name: "root", CreatedAt: s.now().UTC()}
	}
	same, err := s.hasSecret(ctx, p, secret)
	if err != nil {
		return rootPlan{}, RootChange{}, err
	}
	if !same {
		if p.SealedSecret, err = s.sealSecret(ctx, id, secret); err != nil {
			return rootPlan{}, RootChange{}, err
		}
	}
	restore := !slices.EqualFunc(p.Statements, stmts, policy.Statement.Equal)
	p.Statements = stmts
	plan := rootPlan{p: p, create: !found, put: found && (!same || restore), record: !recorded || prev != id}
	if prev != id {
		plan.drop = prev
	}
	ch := RootChange{Created: !found, Rotated: found && !same, Replaced: plan.drop, PolicyRestored: found && restore}
	return plan, ch, nil
}

// RestoreRoot gives the root principal the statements stmts, so that the
// root cannot lose its rights, and returns its access key ID; "" when there
// is no root principal. A store of an earlier version adopts the oldest
// principal named "root".
func (s *Service) RestoreRoot(ctx context.Context, stmts []policy.Statement) (string, error) {
	ctx = systemContext(ctx)
	id, recorded, err := s.currentRoot(ctx, "")
	if err != nil || id == "" {
		return "", err
	}
	p, found, err := s.principal(ctx, id)
	if err != nil || !found {
		return "", err
	}
	restore := !slices.EqualFunc(p.Statements, stmts, policy.Statement.Equal)
	p.Statements = stmts
	if err := s.applyRoot(ctx, rootPlan{p: p, put: restore, record: !recorded}); err != nil {
		return "", err
	}
	s.reportRoot(id, RootChange{PolicyRestored: restore})
	return id, nil
}

// rootPlan is a change to the root principal, written in one transaction
// so that there is always exactly one root.
type rootPlan struct {
	p      store.Principal // the root as it is to be
	create bool            // p is a new principal
	put    bool            // p replaces the stored principal
	record bool            // the root setting is to name p
	drop   string          // the previous root, to delete, or ""
}

func (s *Service) applyRoot(ctx context.Context, plan rootPlan) error {
	if !plan.create && !plan.put && !plan.record && plan.drop == "" {
		return nil
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		switch {
		case plan.create:
			err = tx.CreatePrincipal(plan.p)
		case plan.put:
			err = tx.PutPrincipal(plan.p)
		}
		if err == nil && plan.record {
			v, _ := json.Marshal(plan.p.AccessKeyID)
			err = tx.PutSetting(rootSetting, v)
		}
		if err == nil && plan.drop != "" {
			if err = tx.DeletePrincipal(plan.drop); errors.Is(err, store.ErrNotFound) {
				err = nil
			}
		}
		return err
	})
	return storeErrOrNil(err)
}

// reportRoot audits and logs what changed about the root principal id.
// The records name the service as the principal: no request did it.
func (s *Service) reportRoot(id string, ch RootChange) {
	record := func(action, subject string) {
		// The change is made and logged below; a failed write is logged
		// by writeAudit.
		_ = s.writeAudit(audit.Record{Time: s.now(), Principal: "system", Action: action, Subject: subject, Outcome: audit.Allowed})
	}
	if ch.Replaced != "" {
		record(actionReplaceRoot, id)
		record(policy.ActionDeletePrincipal, ch.Replaced)
		s.log.Info("replaced the root principal; the previous one is deleted", "access_key_id", id,
			"previous_access_key_id", ch.Replaced)
	}
	if ch.Rotated {
		record(actionRotateRootSecret, id)
		s.log.Info("rotated the root principal's secret", "access_key_id", id)
	}
	if ch.PolicyRestored {
		s.log.Info("restored the root principal's policy", "access_key_id", id)
	}
}

// currentRoot returns the access key ID of the root principal the store
// records. A store of an earlier version records none: it adopts the
// principal configured, if it exists, or else the oldest principal named
// "root", and reports that nothing was recorded; "" if there is none.
func (s *Service) currentRoot(ctx context.Context, configured string) (id string, recorded bool, err error) {
	err = s.store.View(ctx, func(tx store.Tx) error {
		id, recorded = "", false
		r, err := recordedRoot(tx)
		if err == nil {
			id, recorded = r, true
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		id, err = adoptRoot(tx, configured)
		return err
	})
	return id, recorded, storeErrOrNil(err)
}

// recordedRoot returns the root setting (store.ErrNotFound without one).
func recordedRoot(tx store.Tx) (string, error) {
	v, err := tx.Setting(rootSetting)
	if err != nil {
		return "", err
	}
	var id string
	if err := json.Unmarshal(v, &id); err != nil {
		return "", fmt.Errorf("the %s setting: %w", rootSetting, err)
	}
	return id, nil
}

// adoptRoot picks the root of a store that records none: the principal
// configured if it exists, or else the oldest principal named "root",
// which is how earlier versions named the root they made; "" if neither.
func adoptRoot(tx store.Tx, configured string) (string, error) {
	if configured != "" {
		_, err := tx.Principal(configured)
		if err == nil {
			return configured, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	const pageSize = 100
	var oldest store.Principal
	for after := ""; ; {
		page, err := tx.Principals(after, pageSize)
		if err != nil {
			return "", err
		}
		for _, p := range page {
			if p.Name == "root" && (oldest.AccessKeyID == "" || p.CreatedAt.Before(oldest.CreatedAt)) {
				oldest = p
			}
		}
		if len(page) < pageSize {
			return oldest.AccessKeyID, nil
		}
		after = page[len(page)-1].AccessKeyID
	}
}

// principal returns the stored principal id and whether there is one.
func (s *Service) principal(ctx context.Context, id string) (p store.Principal, found bool, err error) {
	err = s.store.View(ctx, func(tx store.Tx) (err error) {
		p, err = tx.Principal(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return store.Principal{}, false, nil
	}
	return p, err == nil, storeErrOrNil(err)
}

// hasSecret reports whether p's secret is secret (false for a principal
// not stored yet, which has none), comparing in constant time: how much of
// a guess was right must not show in how long it took.
func (s *Service) hasSecret(ctx context.Context, p store.Principal, secret string) (bool, error) {
	if p.SealedSecret == nil {
		return false, nil
	}
	stored, err := s.unsealSecret(ctx, p)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(stored), []byte(secret)) == 1, nil
}

// UpdatePrincipalInput is UpdatePrincipal's request.
type UpdatePrincipalInput struct {
	AccessKeyId string             `json:"AccessKeyId"`
	Statements  []policy.Statement `json:"Statements"`
}

// UpdatePrincipal replaces a principal's policy, within the caller's as at
// creation (policy.Covers; the caller's Deny statements are added). The
// root principal's policy does not change.
func (s *Service) UpdatePrincipal(ctx context.Context, in UpdatePrincipalInput) (err error) {
	o := s.begin(ctx, policy.ActionUpdatePrincipal)
	defer func() { err = o.end(err) }()
	o.rec.Subject = in.AccessKeyId
	if err := o.authorize(nil, ""); err != nil {
		return err
	}
	if err := policy.Validate(in.Statements); err != nil {
		return newErr(CodeValidation, "%v", err)
	}
	stmts, err := limitToCaller(o.caller, in.Statements)
	if err != nil {
		return err
	}
	return s.changePrincipal(ctx, o.caller, in.AccessKeyId, func(p *store.Principal) { p.Statements = stmts })
}

// RotatePrincipalSecretInput names the principal of RotatePrincipalSecret.
type RotatePrincipalSecretInput struct {
	AccessKeyId string `json:"AccessKeyId"`
}

// RotatePrincipalSecretOutput is the new secret, shown once.
type RotatePrincipalSecretOutput struct {
	AccessKeyId     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
}

// RotatePrincipalSecret gives a principal a new secret access key: the old
// one stops verifying at once, on every replica. Root's secret rotates with
// HSMKMS_ROOT_SECRET_ACCESS_KEY at a restart, not here.
func (s *Service) RotatePrincipalSecret(ctx context.Context, in RotatePrincipalSecretInput) (out RotatePrincipalSecretOutput, err error) {
	o := s.begin(ctx, policy.ActionRotatePrincipalSecret)
	defer endWith(o, &out, &err)
	o.rec.Subject = in.AccessKeyId
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	// Refuse what the change would refuse before the started record, so
	// that one stands only for a rotation that is going to be committed
	// (bar a concurrent delete, which the change still catches).
	if err := s.checkPrincipalChange(ctx, o.caller, in.AccessKeyId); err != nil {
		return out, err
	}
	_, secret, err := NewAccessKey()
	if err != nil {
		return out, err
	}
	sealed, err := s.sealSecret(ctx, in.AccessKeyId, secret)
	if err != nil {
		return out, err
	}
	if err := o.intend(); err != nil {
		return out, err
	}
	if err := s.changePrincipal(ctx, o.caller, in.AccessKeyId, func(p *store.Principal) { p.SealedSecret = sealed }); err != nil {
		return out, err
	}
	return RotatePrincipalSecretOutput{AccessKeyId: in.AccessKeyId, SecretAccessKey: secret}, nil
}

// changePrincipal changes a principal that is not root, and that the
// caller may manage (manageable), in one transaction.
func (s *Service) changePrincipal(ctx context.Context, c Caller, id string, change func(*store.Principal)) error {
	err := s.store.Update(ctx, func(tx store.Tx) error {
		p, err := s.changeablePrincipal(tx, c, id)
		if err != nil {
			return err
		}
		change(&p)
		return tx.PutPrincipal(p)
	})
	return principalErr(err, id)
}

// checkPrincipalChange reports what changePrincipal would refuse, without
// changing anything.
func (s *Service) checkPrincipalChange(ctx context.Context, c Caller, id string) error {
	err := s.store.View(ctx, func(tx store.Tx) error {
		_, err := s.changeablePrincipal(tx, c, id)
		return err
	})
	return principalErr(err, id)
}

// changeablePrincipal reads the principal id, which must not be root and
// must be one c may manage.
func (s *Service) changeablePrincipal(tx store.Tx, c Caller, id string) (store.Principal, error) {
	root, err := recordedRoot(tx)
	switch {
	case err == nil && root == id:
		return store.Principal{}, newErr(CodeValidation, "the root principal changes at a restart (HSMKMS_ROOT_*), not here")
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return store.Principal{}, err
	}
	p, err := tx.Principal(id)
	if err != nil {
		return p, err
	}
	return p, s.manageable(tx, c, p)
}

// manageable refuses a caller changing, rotating or deleting a principal
// that can do what the caller cannot: its Allow statements must be
// covered by the caller's (policy.Covers, as for a principal the caller
// creates), the caller's Deny statements must be among its own, and the
// caller's policy must allow what each of its grants allows
// (grantsCovered). The admin actions name no resource to scope them by,
// so without this a principal allowed only hsmkms:RotatePrincipalSecret
// took over an administrator by rotating its secret and reading the new
// one (found by review); UpdatePrincipal and DeletePrincipal are held to
// the same rule.
func (s *Service) manageable(tx store.Tx, c Caller, target store.Principal) error {
	if c.system || c.AccessKeyID == target.AccessKeyID {
		return nil
	}
	denied := func(why string) error {
		return newErr(CodeAccessDenied, "User: %s may not manage principal %s, which has rights %s does not have: %s",
			c.AccessKeyID, target.AccessKeyID, c.AccessKeyID, why)
	}
	var ce *policy.CoverageError
	if err := policy.Covers(c.Statements, target.Statements); errors.As(err, &ce) {
		return denied(fmt.Sprintf("its statement %d allows %s on %q", ce.Statement, ce.Action, ce.Resource))
	} else if err != nil {
		return wrapErr(CodeInternal, err, "checking the principal's policy")
	}
	for i, st := range c.Statements {
		if st.Effect == policy.EffectDeny && !slices.ContainsFunc(target.Statements, st.Equal) {
			return denied(fmt.Sprintf("it lacks %s's Deny statement %d", c.AccessKeyID, i))
		}
	}
	return s.grantsCovered(tx, c, target.AccessKeyID, denied)
}

// grantsCovered refuses (with denied) when a grant gives the principal id
// a right the caller's policy alone does not: an operation of a grant it
// is the grantee of, or RetireGrant of one it is the retiring principal
// of. A principal's rights come from grants as well as from its policy: a
// caller allowed only hsmkms:RotatePrincipalSecret otherwise rotated the
// secret of an application with no policy and used its grants (found by
// review). Grants of deleted keys give nothing and are passed over. The
// store keeps no index by grantee: this reads every grant, as
// ListRetirableGrants does, on these rare administrative calls.
func (s *Service) grantsCovered(tx store.Tx, c Caller, id string, denied func(string) error) error {
	arn := s.principalARN(id)
	for after := ""; ; {
		page, err := tx.Grants(after, 1000)
		if err != nil {
			return err
		}
		for _, g := range page {
			var ops []string
			if g.Grantee == arn {
				ops = g.Operations
			}
			if g.Retiring == arn {
				ops = append(slices.Clip(ops), "RetireGrant")
			}
			if len(ops) == 0 {
				continue
			}
			k, err := tx.Key(g.KeyID)
			if errors.Is(err, store.ErrNotFound) || err == nil && k.State == store.KeyDeleted {
				continue
			} else if err != nil {
				return err
			}
			resources := s.keyResources(&k)
			for _, op := range ops {
				if !policy.DecideAll(c.Statements, policy.Request{Action: "kms:" + op, Resources: resources}).Allowed {
					return denied(fmt.Sprintf("grant %s on %s lets it %s, which %s's policy does not allow", g.ID, s.keyARN(k.ID), op, c.AccessKeyID))
				}
			}
		}
		if len(page) < 1000 {
			return nil
		}
		after = page[len(page)-1].Ref()
	}
}

// principalErr maps a store error about the principal id.
func principalErr(err error, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return newErr(CodeNotFound, "no principal has access key ID %s", id)
	}
	return storeErrOrNil(err)
}
