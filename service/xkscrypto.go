package service

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// What AWS KMS calls through the XKS proxy API: key metadata, AES-GCM
// encrypt and decrypt on the token, and the health check. The HTTP layer
// (package service/xks) authenticates each request with a credential of
// the store its path names and puts a Caller in the context; the store's
// allow-list and key usages are the authorisation.

// Audit actions of the XKS proxy API: AWS KMS's calls are apart from the
// KMS API's actions, so no principal policy grants or refuses them.
const (
	XKSActionGetKeyMetadata  = "xks:GetKeyMetadata"
	XKSActionEncrypt         = "xks:Encrypt"
	XKSActionDecrypt         = "xks:Decrypt"
	XKSActionGetHealthStatus = "xks:GetHealthStatus"
)

// Limits of the XKS operations. The spec asks for at least 4300 bytes of
// plaintext and 8192 of AAD; more is refused as unsupported, as it says.
const (
	XKSMaxPlaintext = hsm.MaxPlaintext
	XKSMaxAAD       = 16 << 10
	// xksMetadataV1 starts the ciphertextMetadata hsmkms returns: a
	// format byte, then the key version (uint32, big-endian).
	xksMetadataV1  = 0x01
	xksMetadataLen = 5
	// xksHealthTTL is how long a health check's result is reused: AWS KMS
	// asks every few seconds, and the spec allows up to a minute.
	xksHealthTTL = 10 * time.Second
)

// ErrNoXKSStore reports a path prefix that no external key store has.
var ErrNoXKSStore = errors.New("service: no external key store has this path prefix")

// XKSRequest names the key of an XKS call and carries AWS KMS's
// requestMetadata for the audit record.
type XKSRequest struct {
	Prefix        string
	ExternalKeyID string
	Metadata      map[string]string
}

// XKSKeyMetadata is GetKeyMetadata's answer.
type XKSKeyMetadata struct {
	KeySpec   string
	KeyUsage  []string
	KeyStatus string // ENABLED or DISABLED
}

// XKSEncryptInput is Encrypt's request, decoded.
type XKSEncryptInput struct {
	Plaintext, AAD []byte
	// CDIV asks for the ciphertext data integrity value (SHA-256).
	CDIV bool
}

// XKSEncryptOutput is Encrypt's answer.
type XKSEncryptOutput struct {
	Ciphertext, Metadata, IV, Tag []byte
	CDIV                          []byte // when asked for
}

// XKSDecryptInput is Decrypt's request, decoded.
type XKSDecryptInput struct {
	Ciphertext, Metadata, IV, Tag, AAD []byte
}

// XKSHealth is GetHealthStatus's answer about the token.
type XKSHealth struct {
	ID, Model, Vendor string
	// Status is ACTIVE, DEGRADED or UNAVAILABLE.
	Status string
}

// XKSCredentials returns the secret of the credential accessKeyID of the
// store with the given prefix: ErrNoXKSStore when there is no such store,
// ErrUnknownPrincipal when it has no such credential. The Credentials
// carry no statements: the store's allow-list governs.
func (s *Service) XKSCredentials(ctx context.Context, prefix, accessKeyID string) (Credentials, error) {
	var c store.XKSCredential
	found := false
	err := s.store.View(ctx, func(tx store.Tx) error {
		found = false
		rec, err := tx.XKSStore(prefix)
		if err != nil {
			return err
		}
		for _, rc := range rec.Credentials {
			if rc.AccessKeyID == accessKeyID {
				c, found = rc, true
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Credentials{}, ErrNoXKSStore
	case err != nil:
		return Credentials{}, storeErr(err)
	case !found:
		return Credentials{}, ErrUnknownPrincipal
	}
	return s.xksCredentials(ctx, prefix, c)
}

// XKSCredentialsAnywhere returns the credential accessKeyID of whichever
// external key store has it (IDs are 130 random bits: one store at most),
// or ErrUnknownPrincipal. It serves a request to a prefix no store has:
// the XKS listener verifies its signature before it tells the caller the
// path is wrong, so that the prefixes in use are told only to a holder of
// a credential.
func (s *Service) XKSCredentialsAnywhere(ctx context.Context, accessKeyID string) (Credentials, error) {
	var c store.XKSCredential
	prefix := ""
	err := s.store.View(ctx, func(tx store.Tx) error {
		prefix = ""
		recs, err := tx.XKSStores("", 0) // all: a store per AWS KMS key store, a few
		if err != nil {
			return err
		}
		for _, rec := range recs {
			for _, rc := range rec.Credentials {
				if rc.AccessKeyID == accessKeyID {
					c, prefix = rc, rec.Prefix
					return nil
				}
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return Credentials{}, storeErr(err)
	case prefix == "":
		return Credentials{}, ErrUnknownPrincipal
	}
	return s.xksCredentials(ctx, prefix, c)
}

// xksCredentials unseals the secret of c, a credential of the store with
// the given prefix.
func (s *Service) xksCredentials(ctx context.Context, prefix string, c store.XKSCredential) (Credentials, error) {
	secret, err := s.unsealInternal(ctx, c.AccessKeyID, xksCredentialAAD(prefix, c.AccessKeyID), c.SealedSecret)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{AccessKeyID: c.AccessKeyID, Name: "xks/" + prefix, Secret: secret}, nil
}

// XKSGetKeyMetadata describes an allowed key as the XKS spec does: AES_256,
// the usages the store allows it, ENABLED or DISABLED.
func (s *Service) XKSGetKeyMetadata(ctx context.Context, req XKSRequest) (out XKSKeyMetadata, err error) {
	o := s.beginXKS(ctx, XKSActionGetKeyMetadata, req)
	defer endWith(o, &out, &err)
	var k store.Key
	var usage []string
	err = s.store.View(ctx, func(tx store.Tx) (err error) {
		k, usage, err = s.xksKey(tx, o, req)
		return err
	})
	if err != nil {
		return out, storeErrOrNil(err)
	}
	status := "DISABLED"
	if k.State == store.KeyEnabled {
		status = "ENABLED"
	}
	return XKSKeyMetadata{KeySpec: "AES_256", KeyUsage: usage, KeyStatus: status}, nil
}

// XKSEncrypt seals the plaintext under the key's current version with
// AES-GCM on the token, with a 12-byte IV from the token's generator and,
// as the spec lays it out, the AAD: the caller's AAD's length (uint16) ‖
// AAD ‖ the ciphertextMetadata's length (uint8) ‖ ciphertextMetadata. The
// metadata names the key version, so that the key may rotate. With CDIV,
// the hash of the result is taken first and the ciphertext is then opened
// once on the token before it is returned, as the spec recommends.
func (s *Service) XKSEncrypt(ctx context.Context, req XKSRequest, in XKSEncryptInput) (out XKSEncryptOutput, err error) {
	o := s.beginXKS(ctx, XKSActionEncrypt, req)
	defer endWith(o, &out, &err)
	if err := checkXKSSizes(in.Plaintext, in.AAD); err != nil {
		return out, err
	}
	var kv keyVersion
	err = s.store.View(ctx, func(tx store.Tx) error {
		k, err := s.xksUsable(tx, o, req, xksUsageEncrypt)
		if err != nil {
			return err
		}
		kv.k = k
		kv.v, err = tx.Version(k.ID, k.CurrentVersion)
		return err
	})
	o.rec.KeyVersion = kv.v.Number
	if err != nil {
		return out, storeErrOrNil(err)
	}
	if err := s.seals.take(ctx, kv.k, kv.v); err != nil {
		return out, err
	}
	md := binary.BigEndian.AppendUint32([]byte{xksMetadataV1}, kv.v.Number)
	aad := xksTokenAAD(in.AAD, md)
	iv, sealed, err := s.hsm.SealWithTokenIV(ctx, kv.v.ObjectID, aad, in.Plaintext)
	if err != nil {
		return out, s.hsmErr(err, kv.k.ID, kv.v.Number)
	}
	if s.cfg.OnSeal != nil {
		s.cfg.OnSeal(kv.k.ID, kv.v.Number)
	}
	n := len(sealed) - hsm.TagSize
	out = XKSEncryptOutput{Ciphertext: sealed[:n], Tag: sealed[n:], IV: iv, Metadata: md}
	if !in.CDIV {
		return out, nil
	}
	h := sha256.New()
	for _, b := range [][]byte{in.AAD, md, iv, out.Ciphertext, out.Tag} {
		h.Write(b)
	}
	out.CDIV = h.Sum(nil)
	plain, err := s.hsm.Unseal(ctx, kv.v.ObjectID, iv, aad, sealed)
	if err != nil {
		return XKSEncryptOutput{}, wrapErr(CodeInternal, err, "the ciphertext just made does not decrypt on the token")
	}
	defer clear(plain)
	if subtle.ConstantTimeCompare(plain, in.Plaintext) != 1 {
		return XKSEncryptOutput{}, newErr(CodeInternal, "the ciphertext just made decrypts to other bytes on the token")
	}
	return out, nil
}

// XKSDecrypt opens what XKSEncrypt made, with the key version its
// ciphertextMetadata names.
func (s *Service) XKSDecrypt(ctx context.Context, req XKSRequest, in XKSDecryptInput) (plain []byte, err error) {
	o := s.beginXKS(ctx, XKSActionDecrypt, req)
	defer endWith(o, &plain, &err)
	if err := checkXKSSizes(in.Ciphertext, in.AAD); err != nil {
		return nil, err
	}
	invalid := func(why string) error {
		return newErr(CodeInvalidCipher, "The request was rejected because the ciphertext, IV, AAD, tag or ciphertextMetadata is invalid: %s", why)
	}
	switch {
	case len(in.Metadata) != xksMetadataLen || in.Metadata[0] != xksMetadataV1:
		return nil, invalid("the ciphertextMetadata is not one hsmkms made")
	case len(in.IV) != hsm.IVSize:
		return nil, invalid("hsmkms makes 12-byte IVs")
	case len(in.Tag) != hsm.TagSize:
		return nil, invalid("the authentication tag must be 16 bytes")
	}
	number := binary.BigEndian.Uint32(in.Metadata[1:])
	var kv keyVersion
	err = s.store.View(ctx, func(tx store.Tx) error {
		k, err := s.xksUsable(tx, o, req, xksUsageDecrypt)
		if err != nil {
			return err
		}
		kv.k = k
		kv.v, err = tx.Version(k.ID, number)
		if errors.Is(err, store.ErrNotFound) || err == nil && kv.v.State != store.VersionActive {
			return invalid("the key has no such version")
		}
		return err
	})
	o.rec.KeyVersion = kv.v.Number
	if err != nil {
		return nil, storeErrOrNil(err)
	}
	sealed := append(slices.Clip(in.Ciphertext), in.Tag...)
	plain, err = s.hsm.Unseal(ctx, kv.v.ObjectID, in.IV, xksTokenAAD(in.AAD, in.Metadata), sealed)
	if err != nil {
		return nil, s.hsmErr(err, kv.k.ID, kv.v.Number)
	}
	return plain, nil
}

// XKSHealth checks the token with a round trip under the internal key (no
// key AWS KMS uses, so the check leaves no trace on those keys), reusing a
// result for up to 10 seconds.
func (s *Service) XKSHealth(ctx context.Context, req XKSRequest) (out XKSHealth, err error) {
	o := s.beginXKS(ctx, XKSActionGetHealthStatus, req)
	defer endWith(o, &out, &err)
	return s.xksHealth.get(ctx, s)
}

// xksHealthCache holds the last health check's result.
type xksHealthCache struct {
	mu  sync.Mutex
	at  time.Time
	out XKSHealth
	err error
}

func (c *xksHealthCache) get(ctx context.Context, s *Service) (XKSHealth, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := s.now(); c.at.IsZero() || now.Sub(c.at) >= xksHealthTTL || now.Before(c.at) {
		c.out, c.err = s.checkHealth(ctx)
		c.at = now
		if errors.Is(c.err, ErrCancelled) || ctx.Err() != nil {
			c.at = time.Time{} // the caller gave up: nothing learnt
		}
	}
	return c.out, c.err
}

// checkHealth seals and opens a fixed value with the internal key.
func (s *Service) checkHealth(ctx context.Context) (XKSHealth, error) {
	h := XKSHealth{ID: "token", Model: "PKCS#11 token", Vendor: "unknown", Status: "ACTIVE"}
	if ti, ok := s.cfg.HSM.(TokenInspector); ok {
		if info, err := ti.Info(ctx); err == nil {
			h.ID = strings.TrimSpace(info.Label) + "/" + strings.TrimSpace(info.Serial)
			h.Model = strings.TrimSpace(info.Model) + " firmware " + info.FirmwareVersion
			h.Vendor = strings.TrimSpace(info.Manufacturer)
		}
	}
	if err := s.probeToken(ctx); err != nil {
		return XKSHealth{}, err
	}
	return h, nil
}

// probeToken seals a fixed value under the internal key on the token and
// opens it again.
func (s *Service) probeToken(ctx context.Context) error {
	key, err := s.internalKey(ctx)
	if err != nil {
		return err
	}
	probe, aad := []byte("hsmkms xks health check"), []byte("hsmkms-xks-health-v1")
	var iv, sealed, plain []byte
	if key.Portable {
		if iv, err = hsm.NewCBCIV(); err == nil {
			if sealed, err = s.hsm.SealPortable(ctx, key.ID, iv, aad, nil, probe); err == nil {
				plain, err = s.hsm.UnsealPortable(ctx, key.ID, iv, aad, nil, sealed)
			}
		}
	} else if iv, err = hsm.NewIV(); err == nil {
		if sealed, err = s.hsm.Seal(ctx, key.ID, iv, aad, probe); err == nil {
			plain, err = s.hsm.Unseal(ctx, key.ID, iv, aad, sealed)
		}
	}
	if err == nil && string(plain) != string(probe) {
		err = errors.New("the round trip returned other bytes")
	}
	if err != nil {
		return wrapErr(CodeInternal, err, "the HSM failed its health check")
	}
	return nil
}

// beginXKS starts the audit record of an XKS call.
func (s *Service) beginXKS(ctx context.Context, action string, req XKSRequest) *op {
	o := s.begin(ctx, action)
	if len(req.Metadata) > 0 {
		o.rec.RequestMetadata = req.Metadata
	}
	return o
}

// xksKey finds the key an XKS request names, if its store allows it, and
// the usages allowed. A key the store does not allow is not found: the
// answer does not tell whether it exists.
func (s *Service) xksKey(tx store.Tx, o *op, req XKSRequest) (store.Key, []string, error) {
	if !o.known {
		return store.Key{}, nil, newErr(CodeAccessDenied, "the request carries no authenticated credential")
	}
	rec, err := tx.XKSStore(req.Prefix)
	if errors.Is(err, store.ErrNotFound) {
		return store.Key{}, nil, newErr(CodeNotFound, "no external key store has the path prefix %s", req.Prefix)
	}
	if err != nil {
		return store.Key{}, nil, err
	}
	if err := xksAuthorize(rec, req); err != nil {
		return store.Key{}, nil, err
	}
	i := slices.IndexFunc(rec.Keys, func(k store.XKSKey) bool { return k.ExternalID == req.ExternalKeyID })
	if i < 0 {
		return store.Key{}, nil, newErr(CodeNotFound, "the external key store %s has no key %s", req.Prefix, req.ExternalKeyID)
	}
	ref := xksKeyRef(req.ExternalKeyID)
	o.rec.Alias = ref.alias
	k, err := s.resolve(tx, ref)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return k, nil, newErr(CodeNotFound, "the external key store %s has no key %s", req.Prefix, req.ExternalKeyID)
		}
		return k, nil, err
	}
	o.rec.KeyID = k.ID
	return k, slices.Clone(rec.Keys[i].Usage), nil
}

// xksAuthorize applies a store's secondary authorisation (SetXKSPolicy)
// to a key operation's requestMetadata.
func xksAuthorize(rec store.XKSStore, req XKSRequest) error {
	if len(rec.Statements) == 0 {
		return nil
	}
	op, principal := req.Metadata["kmsOperation"], req.Metadata["awsPrincipalArn"]
	resources := []string{principal}
	if via := req.Metadata["kmsViaService"]; via != "" {
		resources = append(resources, "via:"+via)
	}
	d := policy.Decide(rec.Statements, policy.Request{Action: policy.KMSPrefix + op, Resources: resources})
	if d.Allowed {
		return nil
	}
	return newErr(CodeAccessDenied, "the external key store %s does not allow %s by %s: %s", req.Prefix, op, principal, d.Reason)
}

// xksUsable is xksKey for an operation: the store must allow usage and
// the key must be enabled.
func (s *Service) xksUsable(tx store.Tx, o *op, req XKSRequest, usage string) (store.Key, error) {
	k, usages, err := s.xksKey(tx, o, req)
	if err != nil {
		return k, err
	}
	if !slices.Contains(usages, usage) {
		return k, newErr(CodeInvalidKeyUsage, "the external key store %s does not allow %s with key %s", req.Prefix, usage, req.ExternalKeyID)
	}
	if k.State != store.KeyEnabled {
		return k, newErr(CodeInvalidState, "key %s is %s", req.ExternalKeyID, k.State)
	}
	return k, nil
}

// checkXKSSizes bounds the plaintext or ciphertext and the AAD.
func checkXKSSizes(data, aad []byte) error {
	switch {
	case len(data) == 0:
		return newErr(CodeValidation, "the plaintext or ciphertext is empty")
	case len(data) > XKSMaxPlaintext:
		return newErr(CodeUnsupported, "%d bytes of plaintext or ciphertext; hsmkms takes up to %d", len(data), XKSMaxPlaintext)
	case len(aad) > XKSMaxAAD:
		return newErr(CodeUnsupported, "%d bytes of additionalAuthenticatedData; hsmkms takes up to %d", len(aad), XKSMaxAAD)
	}
	return nil
}

// xksTokenAAD is the AAD given to the token: uint16 length ‖ aad ‖ uint8
// length ‖ metadata, so that no AAD can pass for metadata or the reverse.
func xksTokenAAD(aad, md []byte) []byte {
	b := make([]byte, 0, 2+len(aad)+1+len(md))
	b = binary.BigEndian.AppendUint16(b, uint16(len(aad)))
	b = append(b, aad...)
	b = append(b, byte(len(md)))
	return append(b, md...)
}
