package service

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// Grants let a principal use one key for some operations without a
// statement in its policy, as AWS KMS grants do. A grant only adds: a Deny
// in the principal's policy still wins, and grants are looked for only
// when the policy neither allows nor denies, so that principals whose
// policy allows pay nothing for them.

// Limits on grants. AWS KMS allows 50,000 grants per key; hsmkms reads a
// key's grants whenever a policy does not allow a request on it, so it
// keeps them to a number one read handles.
const (
	maxGrantsPerKey = 500
	maxGrantName    = 256
	maxGrantTokens  = 10
	maxGrantToken   = 8192
	maxGrantsPage   = 100
	defaultGrants   = 50
	grantIDLen      = 64 // hex digits, as AWS KMS's
	// maxGrantID is AWS KMS's GrantIdType length limit: a longer GrantId
	// is a ValidationException, a shorter one that is no grant ID of ours
	// an InvalidGrantIdException.
	maxGrantID = 128
	// grantTokenPrefix starts every grant token hsmkms gives out.
	grantTokenPrefix = "hsmkms-grant-v1:"
)

// grantOps are the operations a grant may name (AWS KMS's GrantOperation
// enum), and whether each takes an encryption context (and so obeys a
// grant's constraints). A grant for DeriveSharedSecret, Encapsulate or
// Decapsulate is refused by checkGrant: no key hsmkms makes has their usage.
var grantOps = map[string]bool{
	"Decrypt": true, "Encrypt": true, "GenerateDataKey": true, "GenerateDataKeyWithoutPlaintext": true,
	"GenerateDataKeyPair": true, "GenerateDataKeyPairWithoutPlaintext": true,
	"ReEncryptFrom": true, "ReEncryptTo": true, "CreateGrant": true, "RetireGrant": true,
	"DescribeKey": false, "GetPublicKey": false, "Sign": false, "Verify": false,
	"GenerateMac": false, "VerifyMac": false,
	"DeriveSharedSecret": false, "Encapsulate": false, "Decapsulate": false,
}

// grantOperationValues are grantOps' names in the API model's order, for
// the ValidationException of a name outside them.
var grantOperationValues = []string{"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
	"ReEncryptFrom", "ReEncryptTo", "Sign", "Verify", "GetPublicKey", "CreateGrant", "RetireGrant", "DescribeKey",
	"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac", "DeriveSharedSecret",
	"Encapsulate", "Decapsulate"}

// grantOpsFor are the operations a grant on a key of usage may allow.
func grantOpsFor(usage string, asymmetric bool) []string {
	common := []string{"CreateGrant", "DescribeKey", "RetireGrant"}
	switch {
	case usage == UsageEncrypt && asymmetric:
		return append(common, "Decrypt", "Encrypt", "GetPublicKey", "ReEncryptFrom", "ReEncryptTo")
	case usage == UsageEncrypt:
		return append(common, "Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
			"GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo")
	case usage == UsageSign:
		return append(common, "GetPublicKey", "Sign", "Verify")
	case usage == UsageMAC:
		return append(common, "GenerateMac", "VerifyMac")
	}
	return common
}

var grantNameRE = regexp.MustCompile(`^[a-zA-Z0-9:/_-]+$`)

// principalARN is the ARN that names an hsmkms principal in grants.
func (s *Service) principalARN(accessKeyID string) string {
	return "arn:aws:iam::" + s.cfg.Account + ":user/" + accessKeyID
}

// principalOf checks that arn names a principal of this service and
// returns its access key ID.
func (s *Service) principalOf(tx store.Tx, field, arn string) (string, error) {
	id, ok := strings.CutPrefix(arn, "arn:aws:iam::"+s.cfg.Account+":user/")
	if !ok || id == "" || len(arn) > 256 {
		return "", newErr(CodeValidation, "%s must be a principal ARN, arn:aws:iam::%s:user/<access key ID>, not %q", field, s.cfg.Account, arn)
	}
	if _, err := tx.Principal(id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", newErr(CodeValidation, "%s %s names no principal", field, arn)
		}
		return "", err
	}
	return id, nil
}

// grantToken is the token of a grant: it names the grant, so that a
// request carrying it finds the grant at once. It grants nothing by
// itself: the grant must still name the caller.
func grantToken(g store.Grant) string {
	return grantTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(g.Ref()))
}

// parseGrantTokens checks a request's GrantTokens and returns the grant
// references they carry.
func parseGrantTokens(tokens []string) ([]string, error) {
	if len(tokens) > maxGrantTokens {
		return nil, newErr(CodeValidation, "1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to %d", maxGrantTokens)
	}
	var refs []string
	for _, t := range tokens {
		ref, err := parseGrantToken(t)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

func parseGrantToken(t string) (string, error) {
	if len(t) == 0 || len(t) > maxGrantToken {
		return "", newErr(CodeValidation, "1 validation error detected: Value at 'grantToken' failed to satisfy constraint: Member must have length between 1 and %d", maxGrantToken)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(t, grantTokenPrefix))
	keyID, id, ok := strings.Cut(string(b), "/")
	if !strings.HasPrefix(t, grantTokenPrefix) || err != nil || !ok || validGrantID(id) != nil || !isKeyID(keyID) {
		return "", newErr(CodeInvalidGrantToken, "The grant token is not valid")
	}
	return string(b), nil
}

// requestGrantID checks a request's GrantId: AWS's length constraint,
// then the form of the IDs hsmkms gives out.
func requestGrantID(id string) error {
	if tooLong(id, maxGrantID) {
		return lengthErr("grantId", maxGrantID)
	}
	return validGrantID(id)
}

func validGrantID(id string) error {
	if len(id) != grantIDLen {
		return newErr(CodeInvalidGrantID, "GrantId must be %d hexadecimal digits", grantIDLen)
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return newErr(CodeInvalidGrantID, "GrantId must be %d hexadecimal digits", grantIDLen)
	}
	return nil
}

// withGrantTokens records the grants a request's tokens name; an invalid
// token fails the request, as in AWS KMS.
func (o *op) withGrantTokens(tokens []string) error {
	refs, err := parseGrantTokens(tokens)
	o.grantRefs = refs
	return err
}

// grantFor finds a grant that lets the caller perform action on k, with
// the request's encryption context: first among the grants the request's
// tokens name, then among the key's. It reads with o.tx when the caller
// runs in a transaction, else in a read transaction of its own.
func (o *op) grantFor(keyID, action string) (store.Grant, bool, error) {
	name, ok := strings.CutPrefix(action, "kms:")
	if _, grantable := grantOps[name]; !ok || !grantable {
		return store.Grant{}, false, nil
	}
	var found store.Grant
	var hit bool
	find := func(tx store.Tx) error {
		g, ok, err := o.searchGrants(tx, keyID, name)
		found, hit = g, ok
		return err
	}
	var err error
	if o.tx != nil {
		err = find(o.tx)
	} else {
		err = o.s.store.View(o.ctx, find)
	}
	return found, hit, err
}

func (o *op) searchGrants(tx store.Tx, keyID, name string) (store.Grant, bool, error) {
	grantee := o.s.principalARN(o.caller.AccessKeyID)
	for _, ref := range o.grantRefs {
		if !strings.HasPrefix(ref, keyID+"/") {
			continue
		}
		g, err := tx.Grant(ref)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return g, false, err
		}
		if o.grantAllows(g, grantee, name) {
			return g, true, nil
		}
	}
	gs, err := keyGrants(tx, keyID)
	if err != nil {
		return store.Grant{}, false, err
	}
	for _, g := range gs {
		if o.grantAllows(g, grantee, name) {
			return g, true, nil
		}
	}
	return store.Grant{}, false, nil
}

// keyGrants lists the grants of one key.
func keyGrants(tx store.Tx, keyID string) ([]store.Grant, error) {
	gs, err := tx.Grants(keyID+"/", maxGrantsPerKey+1)
	if err != nil {
		return nil, err
	}
	for i, g := range gs {
		if g.KeyID != keyID {
			return gs[:i], nil
		}
	}
	return gs, nil
}

// grantAllows reports whether g lets grantee perform operation name with
// the request's encryption context.
func (o *op) grantAllows(g store.Grant, grantee, name string) bool {
	if g.Grantee != grantee || !slices.Contains(g.Operations, name) {
		return false
	}
	if !grantOps[name] {
		return true
	}
	ec := o.grantContext
	if g.ContextEquals != nil && !maps.Equal(ec, g.ContextEquals) {
		return false
	}
	for k, v := range g.ContextSubset {
		if got, ok := ec[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// GrantConstraints limit the encryption context of the operations a grant
// allows. An empty EncryptionContextEquals is a constraint (the context
// must be empty), so omitzero keeps it in ListGrants as AWS KMS shows it;
// an empty EncryptionContextSubset is none (CreateGrant stores it as nil),
// and omitzero on it too keeps a decoded request the same when encoded
// again (FuzzDecodeInput's round trip).
type GrantConstraints struct {
	EncryptionContextSubset map[string]string `json:"EncryptionContextSubset,omitzero"`
	EncryptionContextEquals map[string]string `json:"EncryptionContextEquals,omitzero"`
}

// CreateGrantInput is CreateGrant's request.
type CreateGrantInput struct {
	KeyId             string            `json:"KeyId"`
	GranteePrincipal  string            `json:"GranteePrincipal"`
	RetiringPrincipal string            `json:"RetiringPrincipal"`
	Operations        []string          `json:"Operations"`
	Constraints       *GrantConstraints `json:"Constraints"`
	GrantTokens       []string          `json:"GrantTokens"`
	Name              string            `json:"Name"`
	DryRun            bool              `json:"DryRun"`
}

// CreateGrantOutput is CreateGrant's response.
type CreateGrantOutput struct {
	GrantToken string `json:"GrantToken"`
	GrantId    string `json:"GrantId"`
}

// CreateGrant lets a principal use a key for some operations. The caller
// needs kms:CreateGrant on the key, or a grant that includes CreateGrant
// and every operation the new grant gives, with the same constraints. A
// Name makes retries idempotent: a grant with the same name and the same
// parameters is returned instead of a new one.
func (s *Service) CreateGrant(ctx context.Context, in CreateGrantInput) (out CreateGrantOutput, err error) {
	o := s.begin(ctx, "kms:CreateGrant")
	defer endWith(o, &out, &err)
	if err := o.withGrantTokens(in.GrantTokens); err != nil {
		return out, err
	}
	if err := validGrantRequest(in); err != nil {
		return out, err
	}
	ref, err := s.parseKeyRef("keyId", in.KeyId)
	if err != nil {
		return out, err
	}
	g := store.Grant{Name: in.Name, Issuer: o.caller.AccessKeyID, CreatedAt: s.now().UTC(),
		Operations: slices.Sorted(slices.Values(slices.Compact(slices.Sorted(slices.Values(in.Operations)))))}
	if c := in.Constraints; c != nil {
		// EncryptionContextEquals {} stays non-nil: it requires an empty
		// context (found by review: it was taken for no constraint). An
		// empty EncryptionContextSubset is included in any context, so it
		// is stored as none, and compares equal to none.
		g.ContextEquals = c.EncryptionContextEquals
		if len(c.EncryptionContextSubset) > 0 {
			g.ContextSubset = c.EncryptionContextSubset
		}
	}
	id, err := s.hsm.GenerateRandom(ctx, grantIDLen/2)
	if err != nil {
		return out, s.hsmErr(err, "", 0)
	}
	g.ID = hex.EncodeToString(id)
	err = s.store.Update(ctx, func(tx store.Tx) error {
		o.tx = tx
		defer func() { o.tx = nil }()
		k, err := s.resolve(tx, ref)
		if err != nil {
			return err
		}
		if err := o.authorize(&k, ref.alias); err != nil {
			return err
		}
		if err := s.usable(k, k.Usage); err != nil {
			return err
		}
		g.KeyID = k.ID
		if err := s.checkGrant(tx, o, k, &g, in); err != nil {
			return err
		}
		existing, err := keyGrants(tx, k.ID)
		if err != nil {
			return err
		}
		if g.Name != "" {
			for _, e := range existing {
				if sameGrant(e, g) {
					g = e
					return nil
				}
			}
		}
		if len(existing) >= maxGrantsPerKey {
			return newErr(CodeLimitExceeded, "%s has %d grants, the most a key may have", s.keyARN(k.ID), maxGrantsPerKey)
		}
		return tx.CreateGrant(g)
	})
	if err != nil {
		return out, storeErrOrNil(err)
	}
	return CreateGrantOutput{GrantToken: grantToken(g), GrantId: g.ID}, nil
}

// validGrantRequest checks a CreateGrant request's own fields.
func validGrantRequest(in CreateGrantInput) error {
	switch {
	case in.DryRun:
		return dryRunRefused()
	case in.GranteePrincipal == "":
		return newErr(CodeValidation, "1 validation error detected: Value null at 'granteePrincipal' failed to satisfy constraint: Member must not be null")
	case len(in.Operations) == 0:
		return newErr(CodeValidation, "1 validation error detected: Value null at 'operations' failed to satisfy constraint: Member must not be null")
	case len(in.Name) > maxGrantName:
		return lengthErr("name", maxGrantName)
	case in.Name != "" && !grantNameRE.MatchString(in.Name):
		return newErr(CodeValidation, "1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", in.Name, grantNameRE)
	}
	for _, op := range in.Operations {
		if _, ok := grantOps[op]; !ok {
			return newErr(CodeValidation, "1 validation error detected: Value '[%s]' at 'operations' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [%s]]", strings.Join(in.Operations, ", "), strings.Join(grantOperationValues, ", "))
		}
	}
	if c := in.Constraints; c != nil {
		for _, ec := range []map[string]string{c.EncryptionContextEquals, c.EncryptionContextSubset} {
			if err := ciphertext.Context(ec).Validate(); err != nil {
				return newErr(CodeValidation, "Constraints: %v", err)
			}
		}
		// EncryptionContextEquals {} is a constraint too (found by review).
		if c.EncryptionContextEquals != nil || len(c.EncryptionContextSubset) > 0 {
			for _, op := range in.Operations {
				if !grantOps[op] {
					return newErr(CodeValidation, "a grant with encryption context constraints cannot allow %s, which takes no encryption context", op)
				}
			}
		}
	}
	return nil
}

// checkGrant checks a new grant against its key and its principals, and,
// when a grant let the caller create it, against that grant.
func (s *Service) checkGrant(tx store.Tx, o *op, k store.Key, g *store.Grant, in CreateGrantInput) error {
	allowed := grantOpsFor(k.Usage, keySpecs[k.Spec].asymmetric())
	for _, op := range g.Operations {
		if !slices.Contains(allowed, op) {
			return newErr(CodeValidation, "a grant on %s (%s, %s) cannot allow %s", s.keyARN(k.ID), k.Spec, k.Usage, op)
		}
	}
	var err error
	if _, err = s.principalOf(tx, "GranteePrincipal", in.GranteePrincipal); err != nil {
		return err
	}
	g.Grantee = in.GranteePrincipal
	if in.RetiringPrincipal != "" {
		if _, err = s.principalOf(tx, "RetiringPrincipal", in.RetiringPrincipal); err != nil {
			return err
		}
		g.Retiring = in.RetiringPrincipal
	}
	if o.rec.GrantID == "" {
		return nil
	}
	// A grant allowed this: the new one may give no more than it has.
	parent, err := tx.Grant(k.ID + "/" + o.rec.GrantID)
	if err != nil {
		return err
	}
	for _, op := range g.Operations {
		if !slices.Contains(parent.Operations, op) {
			return newErr(CodeAccessDenied, "grant %s does not allow %s, so a grant it allows cannot either", parent.ID, op)
		}
	}
	if !sameContextEquals(parent.ContextEquals, g.ContextEquals) || !maps.Equal(parent.ContextSubset, g.ContextSubset) {
		return newErr(CodeAccessDenied, "grant %s has encryption context constraints a grant it allows must keep", parent.ID)
	}
	return nil
}

// sameGrant reports whether two grants of a key have one name and the same
// parameters (CreateGrant's idempotence).
func sameGrant(a, b store.Grant) bool {
	return a.Name == b.Name && a.Grantee == b.Grantee && a.Retiring == b.Retiring &&
		slices.Equal(a.Operations, b.Operations) && sameContextEquals(a.ContextEquals, b.ContextEquals) &&
		maps.Equal(a.ContextSubset, b.ContextSubset)
}

// sameContextEquals reports whether two EncryptionContextEquals constraints
// are the same. maps.Equal alone takes {} (the context must be empty) for
// nil (no constraint): a grant with {} and CreateGrant could then give a
// grant without it, and a named CreateGrant return one (found by review).
func sameContextEquals(a, b map[string]string) bool {
	return (a == nil) == (b == nil) && maps.Equal(a, b)
}

// ListGrantsInput is ListGrants' request.
type ListGrantsInput struct {
	KeyId            string `json:"KeyId"`
	Limit            int    `json:"Limit"`
	Marker           string `json:"Marker"`
	GrantId          string `json:"GrantId"`
	GranteePrincipal string `json:"GranteePrincipal"`
}

// ListRetirableGrantsInput is ListRetirableGrants' request.
type ListRetirableGrantsInput struct {
	RetiringPrincipal string `json:"RetiringPrincipal"`
	Limit             int    `json:"Limit"`
	Marker            string `json:"Marker"`
}

// GrantListEntry is one grant in ListGrants and ListRetirableGrants.
type GrantListEntry struct {
	KeyId             string            `json:"KeyId"`
	GrantId           string            `json:"GrantId"`
	Name              string            `json:"Name,omitempty"`
	CreationDate      *EpochTime        `json:"CreationDate,omitempty"`
	GranteePrincipal  string            `json:"GranteePrincipal"`
	RetiringPrincipal string            `json:"RetiringPrincipal,omitempty"`
	IssuingAccount    string            `json:"IssuingAccount"`
	Operations        []string          `json:"Operations"`
	Constraints       *GrantConstraints `json:"Constraints,omitempty"`
}

// ListGrantsOutput is the response of ListGrants and ListRetirableGrants.
type ListGrantsOutput struct {
	Grants     []GrantListEntry `json:"Grants"`
	NextMarker string           `json:"NextMarker,omitempty"`
	Truncated  bool             `json:"Truncated"`
}

func (s *Service) grantEntry(g store.Grant) GrantListEntry {
	e := GrantListEntry{KeyId: s.keyARN(g.KeyID), GrantId: g.ID, Name: g.Name, CreationDate: epoch(g.CreatedAt),
		GranteePrincipal: g.Grantee, RetiringPrincipal: g.Retiring, IssuingAccount: "arn:aws:iam::" + s.cfg.Account + ":root",
		Operations: g.Operations}
	if g.ContextEquals != nil || g.ContextSubset != nil {
		e.Constraints = &GrantConstraints{EncryptionContextEquals: g.ContextEquals, EncryptionContextSubset: g.ContextSubset}
	}
	return e
}

func grantsLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return defaultGrants, nil
	case limit < 1 || limit > maxGrantsPage:
		return 0, newErr(CodeValidation, "1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and %d", limit, maxGrantsPage)
	}
	return limit, nil
}

// page cuts a list of grants after marker (a Ref) to limit entries.
func (s *Service) page(gs []store.Grant, marker string, limit int) (out ListGrantsOutput) {
	out.Grants = []GrantListEntry{}
	for _, g := range gs {
		if marker != "" && g.Ref() <= marker {
			continue
		}
		if len(out.Grants) == limit {
			out.Truncated = true
			break
		}
		out.Grants = append(out.Grants, s.grantEntry(g))
		out.NextMarker = g.Ref()
	}
	if !out.Truncated {
		out.NextMarker = ""
	}
	return out
}

func parseGrantMarker(m string) (string, error) {
	if m == "" {
		return "", nil
	}
	keyID, id, ok := strings.Cut(m, "/")
	if !ok || !isKeyID(keyID) || validGrantID(id) != nil {
		return "", newErr(CodeInvalidMarker, "Marker is not valid")
	}
	return m, nil
}

// ListGrants lists a key's grants, optionally only one grant or one
// grantee's.
func (s *Service) ListGrants(ctx context.Context, in ListGrantsInput) (out ListGrantsOutput, err error) {
	o := s.begin(ctx, "kms:ListGrants")
	defer endWith(o, &out, &err)
	limit, err := grantsLimit(in.Limit)
	if err != nil {
		return out, err
	}
	marker, err := parseGrantMarker(in.Marker)
	if err != nil {
		return out, err
	}
	if in.GrantId != "" {
		if err := requestGrantID(in.GrantId); err != nil {
			return out, err
		}
	}
	k, err := s.authorizedKey(ctx, o, in.KeyId)
	if err != nil {
		return out, err
	}
	var gs []store.Grant
	err = s.store.View(ctx, func(tx store.Tx) (err error) {
		gs, err = keyGrants(tx, k.ID)
		return err
	})
	if err != nil {
		return out, storeErr(err)
	}
	gs = slices.DeleteFunc(gs, func(g store.Grant) bool {
		return in.GrantId != "" && g.ID != in.GrantId || in.GranteePrincipal != "" && g.Grantee != in.GranteePrincipal
	})
	return s.page(gs, marker, limit), nil
}

// ListRetirableGrants lists, across keys, the grants a principal may
// retire. It needs kms:ListRetirableGrants (on "*": it names no key).
func (s *Service) ListRetirableGrants(ctx context.Context, in ListRetirableGrantsInput) (out ListGrantsOutput, err error) {
	o := s.begin(ctx, "kms:ListRetirableGrants")
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	limit, err := grantsLimit(in.Limit)
	if err != nil {
		return out, err
	}
	marker, err := parseGrantMarker(in.Marker)
	if err != nil {
		return out, err
	}
	if in.RetiringPrincipal == "" {
		return out, newErr(CodeValidation, "1 validation error detected: Value null at 'retiringPrincipal' failed to satisfy constraint: Member must not be null")
	}
	var gs []store.Grant
	err = s.store.View(ctx, func(tx store.Tx) error {
		for after := marker; ; {
			page, err := tx.Grants(after, 1000)
			if err != nil {
				return err
			}
			for _, g := range page {
				if g.Retiring == in.RetiringPrincipal {
					gs = append(gs, g)
				}
			}
			if len(page) < 1000 || len(gs) > limit {
				return nil
			}
			after = page[len(page)-1].Ref()
		}
	})
	if err != nil {
		return out, storeErr(err)
	}
	return s.page(gs, marker, limit), nil
}

// RetireGrantInput is RetireGrant's request: a grant token, or a key and a
// grant ID.
type RetireGrantInput struct {
	GrantToken string `json:"GrantToken"`
	KeyId      string `json:"KeyId"`
	GrantId    string `json:"GrantId"`
	DryRun     bool   `json:"DryRun"`
}

// RevokeGrantInput is RevokeGrant's request.
type RevokeGrantInput struct {
	KeyId   string `json:"KeyId"`
	GrantId string `json:"GrantId"`
	DryRun  bool   `json:"DryRun"`
}

// RetireGrant deletes a grant, by its retiring principal, by its grantee
// when the grant includes RetireGrant, or by a principal whose policy
// allows kms:RetireGrant on the key.
func (s *Service) RetireGrant(ctx context.Context, in RetireGrantInput) (err error) {
	o := s.begin(ctx, "kms:RetireGrant")
	defer func() { err = o.end(err) }()
	if in.DryRun {
		return dryRunRefused()
	}
	if tooLong(in.GrantId, maxGrantID) {
		return lengthErr("grantId", maxGrantID)
	}
	var ref string
	switch {
	case in.GrantToken != "":
		if ref, err = parseGrantToken(in.GrantToken); err != nil {
			return err
		}
	case in.KeyId != "" && in.GrantId != "":
		if err := validGrantID(in.GrantId); err != nil {
			return err
		}
		kr, err := s.parseKeyRef("keyId", in.KeyId)
		if err != nil {
			return err
		}
		k, _, err := s.lookup(ctx, "keyId", kr.input)
		if err != nil {
			return err
		}
		ref = k.ID + "/" + in.GrantId
	default:
		return newErr(CodeValidation, "give GrantToken, or KeyId and GrantId")
	}
	caller := s.principalARN(o.caller.AccessKeyID)
	err = s.store.Update(ctx, func(tx store.Tx) error {
		o.tx = tx
		defer func() { o.tx = nil }()
		g, err := tx.Grant(ref)
		if errors.Is(err, store.ErrNotFound) {
			// Only a caller with a right on the key learns that it has
			// no such grant.
			keyID, id, _ := strings.Cut(ref, "/")
			if k, kerr := tx.Key(keyID); kerr == nil {
				if err := o.authorizeByPolicy(&k); err != nil {
					return err
				}
			}
			return newErr(CodeNotFound, "Grant ID %s not found", id)
		}
		if err != nil {
			return err
		}
		k, err := tx.Key(g.KeyID)
		if err != nil {
			return err
		}
		o.rec.KeyID, o.rec.GrantID = k.ID, g.ID
		if !o.known || !(g.Retiring != "" && g.Retiring == caller || g.Grantee == caller && slices.Contains(g.Operations, "RetireGrant")) {
			o.rec.GrantID = ""
			// The policy alone decides: a grant that includes
			// RetireGrant lets its grantee retire that grant, above,
			// not the key's others (found by review: grantFor let it).
			if err := o.authorizeByPolicy(&k); err != nil {
				return err
			}
		}
		return tx.DeleteGrant(ref)
	})
	return storeErrOrNil(err)
}

// RevokeGrant deletes a grant; the caller needs kms:RevokeGrant on the key,
// which no grant gives (grantOps lacks it, as AWS KMS's grant operations do).
func (s *Service) RevokeGrant(ctx context.Context, in RevokeGrantInput) (err error) {
	o := s.begin(ctx, "kms:RevokeGrant")
	defer func() { err = o.end(err) }()
	if in.DryRun {
		return dryRunRefused()
	}
	if in.GrantId == "" {
		return newErr(CodeValidation, "1 validation error detected: Value null at 'grantId' failed to satisfy constraint: Member must not be null")
	}
	if err := requestGrantID(in.GrantId); err != nil {
		return err
	}
	ref, err := s.parseKeyRef("keyId", in.KeyId)
	if err != nil {
		return err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		k, err := s.resolve(tx, ref)
		if err != nil {
			return err
		}
		err = o.authorizeIn(tx, o.rec.Action, &k, ref.alias)
		if err != nil {
			return err
		}
		err = tx.DeleteGrant(k.ID + "/" + in.GrantId)
		if errors.Is(err, store.ErrNotFound) {
			return newErr(CodeNotFound, "Grant ID %s not found", in.GrantId)
		}
		return err
	})
	return storeErrOrNil(err)
}
