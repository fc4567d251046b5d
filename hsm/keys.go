package hsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// ObjectID is the CKA_ID of a key on the token: 16 random bytes that the
// key service keeps in its store. Handles are per process and go stale;
// the CKA_ID is what names a key across processes and restarts.
type ObjectID [16]byte

// NewObjectID returns a fresh random ObjectID.
func NewObjectID() (ObjectID, error) {
	var id ObjectID
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("hsm: reading random bytes: %w", err)
	}
	return id, nil
}

// String returns the ID in hex, as pkcs11-tool shows it.
func (id ObjectID) String() string { return hex.EncodeToString(id[:]) }

// keyRef names one object: a CKA_ID and a class (a key pair shares one
// CKA_ID between its public and private halves).
type keyRef struct {
	id      ObjectID
	class   uint
	keyType uint // anyKeyType, or the CKA_KEY_TYPE to match
	// suffixed marks a portable version's HMAC key, whose CKA_ID is id
	// followed by MACIDSuffix.
	suffixed bool
}

// anyKeyType matches every CKA_KEY_TYPE (CKK_RSA is 0, so 0 cannot).
const anyKeyType = ^uint(0)

// secretKey is a version's AES key. A version of the portable mechanism
// also has an HMAC key (macKey), whose CKA_ID is the version's followed by
// MACIDSuffix: NSS's softoken keeps one secret key per CKA_ID and replaces
// the first with the second, so the two cannot share one as a key pair's
// halves do.
func secretKey(id ObjectID) *keyRef {
	return &keyRef{id: id, class: pkcs11.CKO_SECRET_KEY, keyType: pkcs11.CKK_AES}
}
func macKey(id ObjectID) *keyRef {
	return &keyRef{id: id, class: pkcs11.CKO_SECRET_KEY, keyType: pkcs11.CKK_GENERIC_SECRET, suffixed: true}
}

// hmacKey is an HMAC key version's generic secret, under the version's
// own CKA_ID.
func hmacKey(id ObjectID) *keyRef {
	return &keyRef{id: id, class: pkcs11.CKO_SECRET_KEY, keyType: pkcs11.CKK_GENERIC_SECRET}
}
func privateKey(id ObjectID) *keyRef {
	return &keyRef{id: id, class: pkcs11.CKO_PRIVATE_KEY, keyType: anyKeyType}
}
func publicKey(id ObjectID) *keyRef {
	return &keyRef{id: id, class: pkcs11.CKO_PUBLIC_KEY, keyType: anyKeyType}
}

// MACIDSuffix ends the CKA_ID of a portable version's HMAC key.
const MACIDSuffix = "/hmac"

// ckaID is the object's CKA_ID.
func (k keyRef) ckaID() []byte {
	if k.suffixed {
		return macID(k.id)
	}
	return k.id[:]
}

// macID is the CKA_ID of version id's HMAC key.
func macID(id ObjectID) []byte { return append(id[:len(id):len(id)], MACIDSuffix...) }

// handleCache maps CKA_IDs to object handles, so that the hot path never
// searches the token. Entries are dropped when the token says a handle is
// stale, and all of them when the module is re-initialised.
type handleCache struct {
	mu sync.RWMutex
	m  map[keyRef]pkcs11.ObjectHandle
}

func (c *handleCache) handle(p PKCS11, s pkcs11.SessionHandle, k keyRef) (pkcs11.ObjectHandle, error) {
	c.mu.RLock()
	h, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return h, nil
	}
	h, err := findOne(p, s, k)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.m[k] = h
	c.mu.Unlock()
	return h, nil
}

func (c *handleCache) forget(k keyRef) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

func (c *handleCache) reset() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// findOne finds the single object of class k.class with CKA_ID k.id. Labels
// are not unique on a token; CKA_IDs must be, and two matches are refused.
// template is the search template of k.
func (k keyRef) template() []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, k.class),
		pkcs11.NewAttribute(pkcs11.CKA_ID, k.ckaID()),
	}
	if k.keyType != anyKeyType {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, k.keyType))
	}
	return t
}

func findOne(p PKCS11, s pkcs11.SessionHandle, k keyRef) (pkcs11.ObjectHandle, error) {
	hs, err := findObjects(p, s, k.template(), 2)
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		return 0, newError("find key", ErrKeyNotFound, fmt.Errorf("CKA_ID %s", k.id))
	case 1:
		return hs[0], nil
	}
	return 0, newError("find key", ErrDuplicateKey, fmt.Errorf("CKA_ID %s", k.id))
}

// findObjects returns up to max handles matching template (all when max
// is 0), always ending the search so the session is left clean.
func findObjects(p PKCS11, s pkcs11.SessionHandle, template []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := p.FindObjectsInit(s, template); err != nil {
		return nil, err
	}
	var out []pkcs11.ObjectHandle
	for {
		batch := 64
		if max > 0 {
			batch = max - len(out)
		}
		hs, _, err := p.FindObjects(s, batch)
		if err != nil {
			_ = p.FindObjectsFinal(s)
			return nil, err
		}
		out = append(out, hs...)
		if len(hs) == 0 || (max > 0 && len(out) >= max) {
			break
		}
	}
	if err := p.FindObjectsFinal(s); err != nil {
		return nil, err
	}
	return out, nil
}

// masterKeyTemplate is the template of a master key version: an AES-256
// token object that can encrypt, decrypt, wrap and unwrap, and that nothing
// can read, wrap or copy out. CKA_COPYABLE is PKCS#11 v2.40 and some tokens
// reject it; createWithoutCopyable retries without it.
func masterKeyTemplate(id ObjectID, label string) []*pkcs11.Attribute {
	return secretKeyTemplate(id[:], label, pkcs11.CKK_AES, true, false)
}

// secretKeyTemplate is the template of a 256-bit secret token object of
// keyType that nothing can read, wrap or copy out: one that encrypts,
// decrypts, wraps and unwraps (crypt) or one that signs and verifies (mac).
func secretKeyTemplate(ckaID []byte, label string, keyType uint, crypt, mac bool) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, crypt),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, crypt),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, crypt),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, crypt),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, mac),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, mac),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
	}
}

// generateKey runs C_GenerateKey with tmpl, or without its CKA_COPYABLE
// on a token that refuses the attribute.
func (t *Token) generateKey(s pkcs11.SessionHandle, mech []*pkcs11.Mechanism, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	var h pkcs11.ObjectHandle
	err := t.withCopyable(tmpl, func(tmpl []*pkcs11.Attribute) (err error) {
		h, err = t.p.GenerateKey(s, mech, tmpl)
		return err
	})
	return h, err
}

// withCopyable runs create with tmpl and, when the token refuses the
// template's CKA_COPYABLE (PKCS#11 v2.40; older tokens predate it), with
// tmpl without it, remembering the refusal. Tokens refuse it with
// CKR_ATTRIBUTE_TYPE_INVALID or CKR_TEMPLATE_INCONSISTENT, or, NSS's
// softoken for token objects, CKR_GENERAL_ERROR: that code is also
// SoftHSM2's for a passing cross-process race, so it counts as a refusal
// only when a second try fails the same way.
func (t *Token) withCopyable(tmpl []*pkcs11.Attribute, create func([]*pkcs11.Attribute) error) error {
	if t.noCopyable.Load() {
		return create(withoutCopyable(tmpl))
	}
	err := create(tmpl)
	if isCode(err, pkcs11.CKR_GENERAL_ERROR) {
		err = create(tmpl)
	}
	if !isCode(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID) && !isCode(err, pkcs11.CKR_TEMPLATE_INCONSISTENT) && !isCode(err, pkcs11.CKR_GENERAL_ERROR) {
		return err
	}
	if err2 := create(withoutCopyable(tmpl)); err2 != nil {
		return err
	}
	if !t.noCopyable.Swap(true) {
		t.log.Warn("the token refuses CKA_COPYABLE: keys are made without it", "error", err)
	}
	return nil
}

// withoutCopyable drops CKA_COPYABLE from a template, for tokens that predate it.
func withoutCopyable(t []*pkcs11.Attribute) []*pkcs11.Attribute {
	out := make([]*pkcs11.Attribute, 0, len(t))
	for _, a := range t {
		if a.Type != pkcs11.CKA_COPYABLE {
			out = append(out, a)
		}
	}
	return out
}

// MaxLabel bounds a CKA_LABEL; "hsmkms/<uuid>/v<n>" needs far less.
const MaxLabel = 128

// CreateMasterKey generates an AES-256 master key version inside the token
// with CKA_ID id. It refuses an id that the token already has, so that a
// retried creation never makes two objects with one CKA_ID.
func (t *Token) CreateMasterKey(ctx context.Context, id ObjectID, label string) error {
	const op = "create master key"
	if len(label) == 0 || len(label) > MaxLabel {
		return invalidInput(op, "label must be 1 to %d bytes", MaxLabel)
	}
	return t.do(ctx, op, nil, nil, func(s pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		if err := t.lockObjects(ctx); err != nil {
			return err
		}
		defer t.objectMu.Unlock()
		if err := t.refuseExisting(s, id); err != nil {
			return err
		}
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
		tmpl := masterKeyTemplate(id, label)
		return retryRace(func() error {
			_, err := t.generateKey(s, mech, tmpl)
			return err
		})
	})
}

func (t *Token) refuseExisting(s pkcs11.SessionHandle, id ObjectID) error {
	hs, err := findObjects(t.p, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id[:])}, 1)
	if err != nil {
		return err
	}
	if len(hs) > 0 {
		return invalidInput("create key", "an object with CKA_ID %s exists already", id)
	}
	return nil
}

// HasKey reports whether the token holds a key (secret or private) with
// CKA_ID id. A lost token is an error, never a false.
func (t *Token) HasKey(ctx context.Context, id ObjectID) (bool, error) {
	var found bool
	err := t.do(ctx, "find key", nil, nil, func(s pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		hs, err := findObjects(t.p, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id[:])}, 1)
		found = len(hs) > 0
		return err
	})
	if err == nil && !found {
		// An empty search is also what a vanished SoftHSM2 token answers.
		if perr := t.checkToken(); perr != nil {
			return false, newError("find key", ErrUnavailable, perr)
		}
	}
	return found, err
}

// checkToken probes the token under the read lock, starting recovery when
// it is gone.
func (t *Token) checkToken() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.pool == nil {
		return errors.New("recovering")
	}
	err := t.probe()
	if err != nil {
		t.lost(err)
	}
	return err
}

// DestroyKey destroys every object of version id: a master key version
// (and a portable version's HMAC key) or both halves of a key pair. It is the only way key material leaves the token.
func (t *Token) DestroyKey(ctx context.Context, id ObjectID) error {
	const op = "destroy key"
	err := t.do(ctx, op, nil, nil, func(s pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		// Unlike a creation, a destroy that waited goes on: its caller
		// has already written down that the object is gone (found by
		// review: refused, it left deleted material on the token).
		t.objectMu.Lock()
		defer t.objectMu.Unlock()
		var hs []pkcs11.ObjectHandle
		for _, ckaID := range [][]byte{id[:], macID(id)} {
			found, err := findObjects(t.p, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID)}, 0)
			if err != nil {
				return err
			}
			hs = append(hs, found...)
		}
		if len(hs) == 0 {
			return newError(op, ErrKeyNotFound, fmt.Errorf("CKA_ID %s", id))
		}
		for _, h := range hs {
			if err := t.p.DestroyObject(s, h); err != nil {
				return err
			}
		}
		return nil
	})
	for _, k := range []*keyRef{secretKey(id), macKey(id), hmacKey(id), privateKey(id), publicKey(id)} {
		t.keys.forget(*k)
	}
	return err
}

// Object describes a key object on the token, as `doctor` and tests see it.
type Object struct {
	// ID is the CKA_ID of the version the object belongs to: a portable
	// version's HMAC key has that followed by MACIDSuffix, and MAC set.
	ID               []byte `json:"id"`
	MAC              bool   `json:"mac,omitempty"`
	Label            string `json:"label"`
	Class            string `json:"class"` // "secret", "private" or "public"
	Sensitive        bool   `json:"sensitive"`
	Extractable      bool   `json:"extractable"`
	AlwaysSensitive  bool   `json:"always_sensitive"`
	NeverExtractable bool   `json:"never_extractable"`
}

var classNames = map[uint]string{
	pkcs11.CKO_SECRET_KEY:  "secret",
	pkcs11.CKO_PRIVATE_KEY: "private",
	pkcs11.CKO_PUBLIC_KEY:  "public",
}

// Objects lists the key objects stored on the token.
func (t *Token) Objects(ctx context.Context) ([]Object, error) {
	var out []Object
	err := t.do(ctx, "list objects", nil, nil, func(s pkcs11.SessionHandle, _ pkcs11.ObjectHandle) error {
		out = out[:0]
		hs, err := findObjects(t.p, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}, 0)
		if err != nil {
			return err
		}
		for _, h := range hs {
			o, ok, err := t.describe(s, h)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, o)
			}
		}
		return nil
	})
	return out, err
}

// describe reads the public attributes of a key object; ok is false for
// objects that are not keys (certificates, data).
func (t *Token) describe(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (o Object, ok bool, err error) {
	attrs, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
	})
	if err != nil {
		return o, false, err
	}
	class := attrUint(attrs[0].Value)
	o.Class, ok = classNames[class]
	if !ok {
		return o, false, nil
	}
	o.ID, o.Label = attrs[1].Value, string(attrs[2].Value)
	if id, found := bytes.CutSuffix(o.ID, []byte(MACIDSuffix)); found && len(id) == len(ObjectID{}) {
		o.ID, o.MAC = id, true
	}
	if class == pkcs11.CKO_PUBLIC_KEY {
		return o, true, nil
	}
	// Asked apart: GetAttributeValue fails whole if any attribute is sensitive.
	flags, err := t.p.GetAttributeValue(s, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
	})
	if err != nil {
		return o, false, err
	}
	o.Sensitive, o.Extractable = attrBool(flags[0].Value), attrBool(flags[1].Value)
	o.AlwaysSensitive, o.NeverExtractable = attrBool(flags[2].Value), attrBool(flags[3].Value)
	return o, true, nil
}

func attrBool(v []byte) bool { return len(v) > 0 && v[0] != 0 }

// attrUint decodes a CK_ULONG attribute, which the module returns in the
// machine's byte order and width.
func attrUint(v []byte) uint {
	switch len(v) {
	case 8:
		return uint(binary.NativeEndian.Uint64(v))
	case 4:
		return uint(binary.NativeEndian.Uint32(v))
	}
	return ^uint(0)
}

// objectRaceAttempts bounds retryRace.
const objectRaceAttempts = 4

// retryRace runs create again when it fails with CKR_GENERAL_ERROR, the
// answer SoftHSM2 2.6.1 gives when another process writes the same token
// directory at the same instant (objectMu only orders this process's
// writers; replicas sharing a token directory race in its file store). A
// failed C_GenerateKey made no object, so running it again is safe; a
// lasting error is still reported after the last attempt.
func retryRace(create func() error) error {
	var err error
	for i := range objectRaceAttempts {
		if err = create(); !isCode(err, pkcs11.CKR_GENERAL_ERROR) {
			return err
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
	}
	return err
}
