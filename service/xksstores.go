package service

import (
	"context"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// External key stores. AWS KMS keeps a KMS key's material in "your" HSM by
// calling an XKS proxy; hsmkms is that proxy. A logical external key store
// is one URI path prefix of the XKS proxy API with its own SigV4
// credentials and an allow-list of the keys AWS KMS may use through it.
// This file is its administration; xkscrypto.go is what AWS KMS calls.

const (
	// XKSPathTail ends every XKS proxy API base path.
	XKSPathTail = "/kms/xks/v1"
	// maxXKSURIPath bounds "/" + prefix + XKSPathTail, as AWS KMS bounds
	// XksProxyUriPath.
	maxXKSURIPath = 128
	// MaxXKSCredentials bounds a store's credentials: room for the two of a
	// rotation, and a few to spare.
	MaxXKSCredentials = 8
	// maxXKSKeys bounds a store's allow-list: it is one record.
	maxXKSKeys = 1000
	// xksUsageEncrypt and xksUsageDecrypt are the XKS key usages.
	xksUsageEncrypt = "ENCRYPT"
	xksUsageDecrypt = "DECRYPT"
)

var (
	xksPrefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$`)
	// xksExternalIDRE is the XKS spec's external key ID: up to 128 of
	// letters, digits, '-', '.', '_'.
	xksExternalIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// XKSStoreEntry describes an external key store, without secrets.
type XKSStoreEntry struct {
	Prefix string `json:"Prefix"`
	// URIPath is what AWS KMS's XksProxyUriPath must be.
	URIPath     string               `json:"XksProxyUriPath"`
	CreatedAt   time.Time            `json:"CreatedAt"`
	Credentials []XKSCredentialEntry `json:"Credentials"`
	Keys        []XKSKeyEntry        `json:"Keys"`
	// Statements is the store's secondary authorisation (SetXKSPolicy).
	Statements []policy.Statement `json:"Statements"`
}

// XKSCredentialEntry names a credential of an external key store.
type XKSCredentialEntry struct {
	AccessKeyID string    `json:"AccessKeyId"`
	CreatedAt   time.Time `json:"CreatedAt"`
}

// XKSKeyEntry is an allowed key of an external key store.
type XKSKeyEntry struct {
	ExternalKeyID string   `json:"ExternalKeyId"`
	Usage         []string `json:"Usage"`
}

// XKSProxyCredential is the file the AWS KMS console imports to configure
// an external key store: the path and one credential, with its secret.
// It is shown once, when the credential is made.
type XKSProxyCredential struct {
	URIPath    string                 `json:"XksProxyUriPath"`
	Credential XKSAuthenticationValue `json:"XksProxyAuthenticationCredential"`
}

// XKSAuthenticationValue is a SigV4 credential as AWS KMS takes it.
type XKSAuthenticationValue struct {
	AccessKeyID string `json:"AccessKeyId"`
	// RawSecretAccessKey is 43 Base64 characters of 32 random bytes.
	RawSecretAccessKey string `json:"RawSecretAccessKey"`
}

// XKSStoreInput names an external key store by its path prefix.
type XKSStoreInput struct {
	Prefix string `json:"Prefix"`
}

// ListXKSStoresInput is ListXKSStores' (empty) request.
type ListXKSStoresInput struct{}

// ListXKSStoresOutput is ListXKSStores' response.
type ListXKSStoresOutput struct {
	Stores []XKSStoreEntry `json:"Stores"`
}

// AllowXKSKeyInput is AllowXKSKey's request.
type AllowXKSKeyInput struct {
	Prefix        string   `json:"Prefix"`
	ExternalKeyID string   `json:"ExternalKeyId"`
	Usage         []string `json:"Usage"`
}

// XKSKeyInput names a key of an external key store.
type XKSKeyInput struct {
	Prefix        string `json:"Prefix"`
	ExternalKeyID string `json:"ExternalKeyId"`
}

// XKSCredentialInput names a credential of an external key store.
type XKSCredentialInput struct {
	Prefix      string `json:"Prefix"`
	AccessKeyID string `json:"AccessKeyId"`
}

// XKSPolicyInput is SetXKSPolicy's request.
type XKSPolicyInput struct {
	Prefix     string             `json:"Prefix"`
	Statements []policy.Statement `json:"Statements"`
}

// NormalizeXKSPrefix returns prefix without slashes at either end or the
// "/kms/xks/v1" tail, checked: 1 or more segments of A-Z a-z 0-9 _ -, and
// short enough that the URI path AWS KMS is given fits its 128 characters.
func NormalizeXKSPrefix(prefix string) (string, error) {
	p := strings.Trim(prefix, "/")
	p = strings.TrimSuffix(p, strings.TrimPrefix(XKSPathTail, "/"))
	p = strings.Trim(p, "/")
	if !xksPrefixRE.MatchString(p) {
		return "", newErr(CodeValidation, "the path prefix %q must be segments of A-Z a-z 0-9 _ - separated by /", prefix)
	}
	if n := len(XKSURIPath(p)); n > maxXKSURIPath {
		return "", newErr(CodeValidation, "the URI path %s is %d characters; AWS KMS takes at most %d", XKSURIPath(p), n, maxXKSURIPath)
	}
	return p, nil
}

// beginXKSAdmin starts an administrative operation on the external key
// store of prefix: it authorises the caller for action and checks the
// prefix, which it returns normalised and records as the subject.
func (s *Service) beginXKSAdmin(ctx context.Context, action, prefix string) (*op, string, error) {
	o := s.begin(ctx, action)
	if err := o.authorize(nil, ""); err != nil {
		return o, "", err
	}
	p, err := NormalizeXKSPrefix(prefix)
	if err != nil {
		return o, "", err
	}
	o.rec.Subject = p
	return o, p, nil
}

// XKSURIPath is the XksProxyUriPath of the store with the given prefix.
func XKSURIPath(prefix string) string { return "/" + prefix + XKSPathTail }

// CreateXKSStore makes an external key store with no credential and no key.
func (s *Service) CreateXKSStore(ctx context.Context, in XKSStoreInput) (out XKSStoreEntry, err error) {
	o, p, err := s.beginXKSAdmin(ctx, policy.ActionCreateXksStore, in.Prefix)
	defer endWith(o, &out, &err)
	if err != nil {
		return out, err
	}
	rec := store.XKSStore{Prefix: p, CreatedAt: s.now().UTC()}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		_, err := tx.PutXKSStore(rec)
		return err
	})
	if errors.Is(err, store.ErrExists) {
		return out, newErr(CodeAlreadyExists, "an external key store with the path prefix %s exists already", p)
	}
	if err != nil {
		return out, storeErr(err)
	}
	return xksEntry(rec), nil
}

// ListXKSStores lists every external key store by prefix.
func (s *Service) ListXKSStores(ctx context.Context, _ ListXKSStoresInput) (out ListXKSStoresOutput, err error) {
	o := s.begin(ctx, policy.ActionListXksStores)
	defer endWith(o, &out, &err)
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	var recs []store.XKSStore
	err = s.store.View(ctx, func(tx store.Tx) (err error) {
		recs, err = tx.XKSStores("", 0)
		return err
	})
	if err != nil {
		return out, storeErr(err)
	}
	out.Stores = make([]XKSStoreEntry, 0, len(recs))
	for _, r := range recs {
		out.Stores = append(out.Stores, xksEntry(r))
	}
	return out, nil
}

// DeleteXKSStore deletes an external key store: AWS KMS's requests to its
// path fail at once. The keys themselves are untouched.
func (s *Service) DeleteXKSStore(ctx context.Context, in XKSStoreInput) (err error) {
	o, p, err := s.beginXKSAdmin(ctx, policy.ActionDeleteXksStore, in.Prefix)
	defer func() { err = o.end(err) }()
	if err != nil {
		return err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error { return tx.DeleteXKSStore(p) })
	return xksStoreErr(err, p)
}

// AllowXKSKey lets AWS KMS use a key through an external key store, for
// the given usages (ENCRYPT, DECRYPT, both or none), or changes the usages
// of a key it may use already. externalID is the key's UUID, or an alias
// name without "alias/": the alias is resolved at each request, so
// re-pointing it re-points AWS KMS. The key must be a symmetric AES-GCM
// key when it is allowed.
func (s *Service) AllowXKSKey(ctx context.Context, in AllowXKSKeyInput) (err error) {
	o, p, err := s.beginXKSAdmin(ctx, policy.ActionUpdateXksStore, in.Prefix)
	defer func() { err = o.end(err) }()
	if err != nil {
		return err
	}
	externalID := in.ExternalKeyID
	usage, err := xksUsages(in.Usage)
	if err != nil {
		return err
	}
	if !xksExternalIDRE.MatchString(externalID) {
		return newErr(CodeValidation, "the external key ID %q must be 1 to 128 of A-Z a-z 0-9 . _ -", externalID)
	}
	return s.updateXKSStore(ctx, p, func(tx store.Tx, rec *store.XKSStore) error {
		k, err := s.resolve(tx, xksKeyRef(externalID))
		if err != nil {
			return err
		}
		o.rec.KeyID = k.ID
		if k.Spec != SpecSymmetric || k.Mechanism != "aes-gcm" {
			return newErr(CodeValidation, "%s is a %s key with mechanism %s; AWS KMS uses only %s keys with AES-GCM (aes-gcm) through an external key store",
				s.keyARN(k.ID), k.Spec, k.Mechanism, SpecSymmetric)
		}
		// The caller hands the key's use to whoever holds the store's
		// credentials: its policy must allow that use itself, so that a
		// Deny on the key is not escaped through a store (found by
		// review). An alias allowed here is held to this whenever it is
		// pointed at a key (checkXKSAlias).
		if err := xksUseAllowed(o, usage, &k); err != nil {
			return err
		}
		i, found := slices.BinarySearchFunc(rec.Keys, externalID, func(e store.XKSKey, id string) int { return strings.Compare(e.ExternalID, id) })
		if found {
			rec.Keys[i].Usage = usage
			return nil
		}
		if len(rec.Keys) >= maxXKSKeys {
			return newErr(CodeLimitExceeded, "the external key store %s allows %d keys already, the most it can", p, maxXKSKeys)
		}
		rec.Keys = slices.Insert(rec.Keys, i, store.XKSKey{ExternalID: externalID, Usage: usage})
		return nil
	})
}

// DenyXKSKey removes a key from an external key store's allow-list.
func (s *Service) DenyXKSKey(ctx context.Context, in XKSKeyInput) (err error) {
	o, p, err := s.beginXKSAdmin(ctx, policy.ActionUpdateXksStore, in.Prefix)
	defer func() { err = o.end(err) }()
	if err != nil {
		return err
	}
	externalID := in.ExternalKeyID
	return s.updateXKSStore(ctx, p, func(_ store.Tx, rec *store.XKSStore) error {
		i := slices.IndexFunc(rec.Keys, func(k store.XKSKey) bool { return k.ExternalID == externalID })
		if i < 0 {
			return newErr(CodeNotFound, "the external key store %s does not allow %s", p, externalID)
		}
		rec.Keys = slices.Delete(rec.Keys, i, i+1)
		return nil
	})
}

// AddXKSCredential makes a new SigV4 credential for an external key store
// and returns it with its secret, the only time the secret is shown. The
// access key ID is 26 base32 characters and the secret 32 random bytes in
// Base64 (43 characters), both from the token's generator.
func (s *Service) AddXKSCredential(ctx context.Context, in XKSStoreInput) (out XKSProxyCredential, err error) {
	o, p, err := s.beginXKSAdmin(ctx, policy.ActionUpdateXksStore, in.Prefix)
	defer endWith(o, &out, &err)
	if err != nil {
		return out, err
	}
	// Refuse what the change would refuse (no store, no room) before the
	// started record, so that one stands only for a credential that is
	// going to be committed (bar a concurrent change the update catches).
	err = s.store.View(ctx, func(tx store.Tx) error {
		rec, err := tx.XKSStore(p)
		if err != nil {
			return err
		}
		return roomForXKSCredential(rec)
	})
	if err != nil {
		return out, xksStoreErr(err, p)
	}
	id, secret, err := s.newXKSCredential(ctx)
	if err != nil {
		return out, err
	}
	sealed, err := s.sealInternal(ctx, xksCredentialAAD(p, id), secret)
	if err != nil {
		return out, err
	}
	o.rec.Credential = id
	if err := o.intend(); err != nil {
		return out, err
	}
	err = s.updateXKSStore(ctx, p, func(_ store.Tx, rec *store.XKSStore) error {
		if err := roomForXKSCredential(*rec); err != nil {
			return err
		}
		rec.Credentials = append(rec.Credentials, store.XKSCredential{AccessKeyID: id, SealedSecret: sealed, CreatedAt: s.now().UTC()})
		return nil
	})
	if err != nil {
		return out, err
	}
	return XKSProxyCredential{URIPath: XKSURIPath(p), Credential: XKSAuthenticationValue{AccessKeyID: id, RawSecretAccessKey: secret}}, nil
}

// RemoveXKSCredential removes a credential: requests signed with it fail
// from then on, on every replica.
func (s *Service) RemoveXKSCredential(ctx context.Context, in XKSCredentialInput) (err error) {
	o, p, err := s.beginXKSAdmin(ctx, policy.ActionUpdateXksStore, in.Prefix)
	defer func() { err = o.end(err) }()
	if err != nil {
		return err
	}
	accessKeyID := in.AccessKeyID
	o.rec.Credential = accessKeyID
	return s.updateXKSStore(ctx, p, func(_ store.Tx, rec *store.XKSStore) error {
		i := slices.IndexFunc(rec.Credentials, func(c store.XKSCredential) bool { return c.AccessKeyID == accessKeyID })
		if i < 0 {
			return newErr(CodeNotFound, "the external key store %s has no credential %s", p, accessKeyID)
		}
		rec.Credentials = slices.Delete(rec.Credentials, i, i+1)
		return nil
	})
}

// SetXKSPolicy sets an external key store's secondary authorisation:
// statements in the policy language of principals, applied to what AWS KMS
// says of each call in its requestMetadata. The action is "kms:" and the
// kmsOperation (kms:Decrypt, kms:GenerateDataKey, kms:DescribeKey, …); the
// resources a statement's patterns are matched against are the
// awsPrincipalArn and, when AWS KMS acts for another service,
// "via:" and the kmsViaService (via:ebs). With statements, a call is
// allowed only if one allows it and none denies it; with none (the
// default, and what an empty list sets) the allow-list alone decides.
// GetHealthStatus is never subject to it, as the spec requires.
func (s *Service) SetXKSPolicy(ctx context.Context, in XKSPolicyInput) (err error) {
	o, p, err := s.beginXKSAdmin(ctx, policy.ActionUpdateXksStore, in.Prefix)
	defer func() { err = o.end(err) }()
	if err != nil {
		return err
	}
	if err := policy.Validate(in.Statements); err != nil {
		return newErr(CodeValidation, "%v", err)
	}
	for i, st := range in.Statements {
		for _, a := range st.Actions {
			if !strings.HasPrefix(strings.ToLower(a), policy.KMSPrefix) {
				return newErr(CodeValidation, "statement %d: action %q: an external key store's policy names kms: actions (the kmsOperation of AWS KMS's calls)", i, a)
			}
		}
	}
	return s.updateXKSStore(ctx, p, func(_ store.Tx, rec *store.XKSStore) error {
		rec.Statements = slices.Clone(in.Statements)
		return nil
	})
}

// updateXKSStore reads the store of prefix p, lets change alter it and
// writes it back in the same transaction.
func (s *Service) updateXKSStore(ctx context.Context, p string, change func(store.Tx, *store.XKSStore) error) error {
	err := s.store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.XKSStore(p)
		if err != nil {
			return err
		}
		if err := change(tx, &rec); err != nil {
			return err
		}
		_, err = tx.PutXKSStore(rec)
		return err
	})
	return xksStoreErr(err, p)
}

// roomForXKSCredential refuses a credential more than a store may have.
func roomForXKSCredential(rec store.XKSStore) error {
	if len(rec.Credentials) >= MaxXKSCredentials {
		return newErr(CodeLimitExceeded, "the external key store %s has %d credentials, the most it can; remove one first", rec.Prefix, MaxXKSCredentials)
	}
	return nil
}

// xksStoreErr maps a store error about the external key store p.
func xksStoreErr(err error, p string) error {
	var se *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return err
	case errors.Is(err, store.ErrNotFound):
		return newErr(CodeNotFound, "no external key store has the path prefix %s", p)
	default:
		return storeErr(err)
	}
}

// newXKSCredential draws an access key ID (26 characters of A-Z 2-7, from
// 16 bytes) and a secret (32 bytes in unpadded standard Base64, 43
// characters) from the token's generator: AWS KMS takes 20-30 and 43-64
// characters.
func (s *Service) newXKSCredential(ctx context.Context) (id, secret string, err error) {
	b, err := s.hsm.GenerateRandom(ctx, 16+32)
	if err != nil {
		return "", "", s.hsmErr(err, "", 0)
	}
	defer clear(b)
	id = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:16])
	return id, base64.RawStdEncoding.EncodeToString(b[16:]), nil
}

// xksCredentialAAD binds a sealed credential secret to its store and ID.
func xksCredentialAAD(prefix, id string) []byte {
	return []byte("hsmkms-xks-credential-v1|" + prefix + "|" + id)
}

// xksUsages checks and orders key usages: ENCRYPT and DECRYPT, each once.
// xksUsageAction is the KMS action an XKS usage performs with the key.
func xksUsageAction(usage string) string {
	if usage == xksUsageEncrypt {
		return policy.ActionEncrypt
	}
	return policy.ActionDecrypt
}

// xksUseAllowed decides, by the caller's policy alone, the actions of the
// XKS usages on k.
func xksUseAllowed(o *op, usages []string, k *store.Key) error {
	for _, u := range usages {
		if err := o.policyAllows(xksUsageAction(u), k); err != nil {
			return err
		}
	}
	return nil
}

// checkXKSAlias refuses pointing the alias name at k (CreateAlias,
// UpdateAlias) unless the caller's policy allows k's use for every usage
// an external key store allows the alias for: such an alias hands the key
// it names to whoever holds the store's credentials, and re-pointed at a
// key the caller is denied it handed that key over (found by review).
// Re-pointing stays the way to change the key AWS KMS uses without a
// change in AWS, for a caller with the new key's use.
func checkXKSAlias(tx store.Tx, o *op, name string, k *store.Key) error {
	ext, ok := strings.CutPrefix(name, "alias/")
	if !ok {
		return nil
	}
	stores, err := tx.XKSStores("", 0) // a store per AWS KMS key store: a few
	if err != nil {
		return err
	}
	var usages []string
	for _, st := range stores {
		for _, xk := range st.Keys {
			if xk.ExternalID != ext {
				continue
			}
			for _, u := range xk.Usage {
				if !slices.Contains(usages, u) {
					usages = append(usages, u)
				}
			}
		}
	}
	return xksUseAllowed(o, usages, k)
}

func xksUsages(in []string) ([]string, error) {
	out := []string{}
	for _, u := range in {
		u = strings.ToUpper(strings.TrimSpace(u))
		if u != xksUsageEncrypt && u != xksUsageDecrypt {
			return nil, newErr(CodeValidation, "key usage %q is not ENCRYPT or DECRYPT", u)
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	slices.Sort(out) // DECRYPT before ENCRYPT, whatever the order given
	return out, nil
}

// xksKeyRef is the key an external key ID names: a key ID when it is a
// UUID, otherwise the alias of that name.
func xksKeyRef(externalID string) keyRef {
	if isKeyID(externalID) {
		return keyRef{id: strings.ToLower(externalID)}
	}
	return keyRef{alias: "alias/" + externalID}
}

func xksEntry(r store.XKSStore) XKSStoreEntry {
	e := XKSStoreEntry{Prefix: r.Prefix, URIPath: XKSURIPath(r.Prefix), CreatedAt: r.CreatedAt,
		Credentials: []XKSCredentialEntry{}, Keys: []XKSKeyEntry{}, Statements: slices.Clone(r.Statements)}
	if e.Statements == nil {
		e.Statements = []policy.Statement{}
	}
	for _, c := range r.Credentials {
		e.Credentials = append(e.Credentials, XKSCredentialEntry{AccessKeyID: c.AccessKeyID, CreatedAt: c.CreatedAt})
	}
	for _, k := range r.Keys {
		e.Keys = append(e.Keys, XKSKeyEntry{ExternalKeyID: k.ExternalID, Usage: slices.Clone(k.Usage)})
	}
	return e
}
