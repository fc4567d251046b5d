package service

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"sync"

	"github.com/hsmkms/hsmkms/hsm"
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
}

// PrincipalEntry describes a principal, without its secret.
type PrincipalEntry struct {
	AccessKeyId  string             `json:"AccessKeyId"`
	Name         string             `json:"Name"`
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

// CreatePrincipal makes a principal with a new access key pair.
func (s *Service) CreatePrincipal(ctx context.Context, in CreatePrincipalInput) (out CreatePrincipalOutput, err error) {
	o := s.begin(ctx, policy.ActionCreatePrincipal)
	defer func() { err = o.end(err) }()
	if err := o.authorize(nil, ""); err != nil {
		return out, err
	}
	if !principalNameRE.MatchString(in.Name) {
		return out, newErr(CodeValidation, "Name must be 1 to 128 of A-Z a-z 0-9 + = , . @ _ -")
	}
	if err := policy.Validate(in.Statements); err != nil {
		return out, newErr(CodeValidation, "%v", err)
	}
	id, secret, err := NewAccessKey()
	if err != nil {
		return out, err
	}
	if err := s.putPrincipal(ctx, id, secret, in.Name, in.Statements); err != nil {
		return out, err
	}
	return CreatePrincipalOutput{AccessKeyId: id, SecretAccessKey: secret, Name: in.Name}, nil
}

// EnsurePrincipal creates a principal with the given access key pair unless
// one with that access key ID exists; it reports whether it created one.
// The server uses it for the root principal at first start.
func (s *Service) EnsurePrincipal(ctx context.Context, accessKeyID, secret, name string, stmts []policy.Statement) (bool, error) {
	if !accessKeyIDRE.MatchString(accessKeyID) || len(secret) < 16 || len(secret) > 128 {
		return false, newErr(CodeValidation, "an access key ID is 16 to 128 of A-Z 0-9 and a secret 16 to 128 characters")
	}
	err := s.store.View(ctx, func(tx store.Tx) error {
		_, err := tx.Principal(accessKeyID)
		return err
	})
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return false, storeErr(err)
	}
	return true, s.putPrincipal(systemContext(ctx), accessKeyID, secret, name, stmts)
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
func (s *Service) putPrincipal(ctx context.Context, id, secret, name string, stmts []policy.Statement) error {
	key, err := s.internalKey(ctx)
	if err != nil {
		return err
	}
	iv, err := hsm.NewIV()
	if err != nil {
		return wrapErr(CodeInternal, err, "no randomness for an IV")
	}
	sealed, err := s.hsm.Seal(ctx, key, iv, principalAAD(id), []byte(secret))
	if err != nil {
		return s.hsmErr(err, "", 0)
	}
	p := store.Principal{AccessKeyID: id, Name: name, SealedSecret: append(iv, sealed...),
		Statements: stmts, CreatedAt: s.now().UTC()}
	err = s.store.Update(ctx, func(tx store.Tx) error { return tx.CreatePrincipal(p) })
	if errors.Is(err, store.ErrExists) {
		return newErr(CodeAlreadyExists, "a principal with access key ID %s exists already", id)
	}
	return storeErrOrNil(err)
}

// internalKey returns the CKA_ID of the internal key that seals principals'
// secrets, making it on first use. The setting is written before the token
// object, so that a crash in between is finished by the next call rather
// than leaving an unrecorded object on the token. Once the object is known
// to exist, the ID is kept: the setting never changes once written.
func (s *Service) internalKey(ctx context.Context) (hsm.ObjectID, error) {
	if id := s.internal.Load(); id != nil {
		return *id, nil
	}
	id, err := s.internalKeyID(ctx)
	if errors.Is(err, store.ErrNotFound) {
		id, err = s.recordInternalKey(ctx)
	}
	if err != nil {
		return id, storeErr(err)
	}
	has, err := s.hsm.HasKey(ctx, id)
	if err != nil {
		return id, s.hsmErr(err, "", 0)
	}
	if !has {
		if err := s.hsm.CreateMasterKey(ctx, id, "hsmkms/internal/v1"); err != nil {
			return id, s.hsmErr(err, "", 0)
		}
	}
	s.internal.Store(&id)
	return id, nil
}

// recordInternalKey writes a fresh CKA_ID for the internal key unless
// another request wrote one first, and returns the one in the store.
func (s *Service) recordInternalKey(ctx context.Context) (hsm.ObjectID, error) {
	var id hsm.ObjectID
	err := s.store.Update(ctx, func(tx store.Tx) error {
		v, err := tx.Setting(internalKeySetting)
		if err == nil {
			return json.Unmarshal(v, &id)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if id, err = hsm.NewObjectID(); err != nil {
			return err
		}
		v, _ = json.Marshal(id)
		return tx.PutSetting(internalKeySetting, v)
	})
	return id, err
}

// ListPrincipals lists principals by access key ID, without secrets.
func (s *Service) ListPrincipals(ctx context.Context, in ListInput) (out ListPrincipalsOutput, err error) {
	o := s.begin(ctx, policy.ActionListPrincipals)
	defer func() { err = o.end(err) }()
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
			out.Principals = append(out.Principals, PrincipalEntry{AccessKeyId: p.AccessKeyID, Name: p.Name,
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
func (s *Service) DeletePrincipal(ctx context.Context, in DeletePrincipalInput) (err error) {
	o := s.begin(ctx, policy.ActionDeletePrincipal)
	defer func() { err = o.end(err) }()
	if err := o.authorize(nil, ""); err != nil {
		return err
	}
	if o.caller.AccessKeyID == in.AccessKeyId {
		return newErr(CodeValidation, "a principal cannot delete itself")
	}
	err = s.store.Update(ctx, func(tx store.Tx) error { return tx.DeletePrincipal(in.AccessKeyId) })
	if errors.Is(err, store.ErrNotFound) {
		return newErr(CodeNotFound, "no principal has access key ID %s", in.AccessKeyId)
	}
	return storeErrOrNil(err)
}

// Credentials are what the API layer needs to authenticate a principal.
type Credentials struct {
	AccessKeyID string
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
	return Credentials{AccessKeyID: id, Secret: secret, Statements: p.Statements}, nil
}

func (s *Service) unsealSecret(ctx context.Context, p store.Principal) (string, error) {
	s.secrets.mu.RLock()
	c, ok := s.secrets.m[p.AccessKeyID]
	s.secrets.mu.RUnlock()
	if ok && c.sealed == string(p.SealedSecret) {
		return c.secret, nil
	}
	if len(p.SealedSecret) <= hsm.IVSize+hsm.TagSize {
		return "", newErr(CodeInternal, "the stored secret of %s is damaged", p.AccessKeyID)
	}
	key, err := s.internalKey(ctx)
	if err != nil {
		return "", err
	}
	iv, sealed := p.SealedSecret[:hsm.IVSize], p.SealedSecret[hsm.IVSize:]
	plain, err := s.hsm.Unseal(ctx, key, iv, principalAAD(p.AccessKeyID), sealed)
	if err != nil {
		return "", s.hsmErr(err, "", 0)
	}
	s.secrets.mu.Lock()
	if s.secrets.m == nil {
		s.secrets.m = map[string]cachedSecret{}
	}
	s.secrets.m[p.AccessKeyID] = cachedSecret{sealed: string(p.SealedSecret), secret: string(plain)}
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
