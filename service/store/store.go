// Package store owns what the key service persists: keys, key versions,
// aliases, principals, external key stores and settings, behind a
// transactional Store interface.
//
// The interface is shaped for a shared SQL store with several replicas as
// much as for the embedded bbolt file: every change runs in a transaction,
// records carry a revision and PutKey and PutXKSStore are a compare-and-set
// on it, and nothing the service needs to be correct lives only in one
// process's memory. Package storetest holds the conformance suite every
// implementation runs.
package store

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/hsmkms/hsmkms/service/policy"
)

// Errors every implementation returns, wrapped with %w where it adds detail.
var (
	// ErrNotFound: no record with that identity.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a record with that identity exists already.
	ErrExists = errors.New("store: already exists")
	// ErrConflict: the record changed since it was read (revision mismatch).
	ErrConflict = errors.New("store: revision conflict")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable: the store cannot be reached now (a database that is
	// down or unreachable); the same call may succeed later. Nothing was
	// changed by the call that returned it, unless a commit's outcome was
	// lost with the connection, which the wrapping error then says.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrOutcomeUnknown: a commit was sent but its answer was lost (the
	// caller's context ended, or the connection broke, while the database
	// was committing), so the change may or may not have been made. The
	// error also wraps the cause (the context's error, ErrUnavailable).
	// Running the same call again is safe only if it is idempotent: read
	// the records back first.
	ErrOutcomeUnknown = errors.New("store: the commit's outcome is unknown")
)

// Store is a transactional key-value store of the service's records.
// View and Update return ctx.Err() without running fn when ctx is done, and
// fn's error when it fails; a ctx done while fn runs rolls Update back.
// After Close every method returns ErrClosed.
type Store interface {
	// View runs fn in a read-only transaction. Implementations may run fn
	// more than once, as Update may (the bolt store does when a write
	// commits between a cached read and an uncached one): fn must start
	// afresh each time, resetting whatever it fills.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed when fn returns
	// nil and rolled back otherwise. Implementations may run fn more than
	// once on a serialisation failure: fn must have no side effects outside
	// the transaction. A commit whose answer is lost (ctx ended or the
	// connection broke while a database committed) returns an error
	// wrapping ErrOutcomeUnknown: only then may an Update that failed
	// have committed.
	Update(ctx context.Context, fn func(Tx) error) error
	// Close releases the store.
	Close() error
}

// Snapshotter is a Store that can write a consistent copy of itself while
// it is in use, in a form its own Open reads (the bolt store writes its
// file). The PostgreSQL store is backed up with PostgreSQL's tools.
type Snapshotter interface {
	Snapshot(ctx context.Context, w io.Writer) (int64, error)
}

// Tx is one transaction, valid only until fn returns. Lists are ordered by
// identity and paginated: they return at most limit records whose identity
// sorts after `after` ("" for the start); limit <= 0 means no limit. A list
// that matches nothing is empty, not nil. Reading, replacing or deleting a
// record that does not exist returns ErrNotFound. Records returned are the
// caller's own copies.
type Tx interface {
	Key(id string) (Key, error)
	Keys(after string, limit int) ([]Key, error)
	// PutKey creates k when k.Revision is 0 (ErrExists if the ID is taken,
	// by a live key or a tombstone), and otherwise replaces the stored key
	// only if its revision equals k.Revision (else ErrConflict; ErrNotFound
	// if there is none). It returns the new revision, old+1 (1 on create).
	PutKey(k Key) (uint64, error)

	Version(keyID string, number uint32) (Version, error)
	// Versions lists the versions of a key by number.
	Versions(keyID string) ([]Version, error)
	// VersionsOf lists the versions of several keys in one read: those of
	// each key in the order keyIDs names it (once, however often named),
	// each key's by number; a key without versions, or no such key, adds
	// none. Scans over many keys use it, one read per page of keys rather
	// than per key (a round trip each on a shared store).
	VersionsOf(keyIDs []string) ([]Version, error)
	// PutVersion creates or replaces a version.
	PutVersion(v Version) error
	// DeleteVersion removes a version (only a pending one that never reached
	// the token is ever removed).
	DeleteVersion(keyID string, number uint32) error

	Alias(name string) (Alias, error)
	Aliases(after string, limit int) ([]Alias, error)
	// CreateAlias adds a (ErrExists if the name is taken).
	CreateAlias(a Alias) error
	// PutAlias replaces an existing alias (ErrNotFound if there is none).
	PutAlias(a Alias) error
	DeleteAlias(name string) error

	Principal(accessKeyID string) (Principal, error)
	Principals(after string, limit int) ([]Principal, error)
	// CreatePrincipal adds p (ErrExists if the access key ID is taken).
	CreatePrincipal(p Principal) error
	// PutPrincipal replaces an existing principal (ErrNotFound if none).
	PutPrincipal(p Principal) error
	DeletePrincipal(accessKeyID string) error

	// XKSStore reads the logical external key store of a URI path prefix.
	XKSStore(prefix string) (XKSStore, error)
	// XKSStores lists external key stores by prefix.
	XKSStores(after string, limit int) ([]XKSStore, error)
	// PutXKSStore creates s when s.Revision is 0 (ErrExists if the prefix is
	// taken), and otherwise replaces the stored one only if its revision
	// equals s.Revision (else ErrConflict; ErrNotFound if there is none). It
	// returns the new revision, old+1 (1 on create).
	PutXKSStore(s XKSStore) (uint64, error)
	DeleteXKSStore(prefix string) error

	// Grant reads the grant whose Ref is ref.
	Grant(ref string) (Grant, error)
	// Grants lists grants by Ref, so that a key's grants list together.
	Grants(after string, limit int) ([]Grant, error)
	// CreateGrant adds g (ErrExists if its Ref is taken).
	CreateGrant(g Grant) error
	// PutGrant replaces an existing grant (ErrNotFound if there is none).
	PutGrant(g Grant) error
	DeleteGrant(ref string) error

	// Setting and PutSetting hold small service-wide values (the internal
	// key's version, a schema version).
	Setting(name string) ([]byte, error)
	PutSetting(name string, value []byte) error
	// Settings returns every setting by name (they are few), for copying
	// one store into another.
	Settings() (map[string][]byte, error)
}

// KeyState is a key's lifecycle state.
type KeyState string

// Key states. Creating keys are invisible to clients: a crash between the
// store and the token leaves one behind for reconciliation to settle.
// Deleted keys are tombstones: their IDs are never used again.
const (
	KeyCreating        KeyState = "Creating"
	KeyEnabled         KeyState = "Enabled"
	KeyDisabled        KeyState = "Disabled"
	KeyPendingDeletion KeyState = "PendingDeletion"
	KeyDeleted         KeyState = "Deleted"
	// KeyPendingImport is a key of Origin EXTERNAL without key material:
	// not imported yet, deleted, or expired.
	KeyPendingImport KeyState = "PendingImport"
)

// Key is a logical KMS key.
type Key struct {
	ID          string            `json:"id"` // a UUID
	Revision    uint64            `json:"revision"`
	Spec        string            `json:"spec"`      // SYMMETRIC_DEFAULT, ECC_NIST_P256, RSA_2048, …
	Usage       string            `json:"usage"`     // ENCRYPT_DECRYPT or SIGN_VERIFY
	Mechanism   string            `json:"mechanism"` // aes-gcm or aes-kw (symmetric keys)
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	// Aliases lists the aliases pointing at the key, kept in the same
	// transaction as the alias records, so that a policy on alias/<name>
	// is decided without scanning every alias.
	Aliases   []string  `json:"aliases,omitempty"`
	State     KeyState  `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	// CurrentVersion encrypts; every active version decrypts.
	CurrentVersion uint32 `json:"current_version"`
	// LatestVersion is the highest version number ever given out, active or
	// pending: the next rotation takes LatestVersion+1.
	LatestVersion uint32 `json:"latest_version"`
	// DeletionDate is set while PendingDeletion, and DeletionWindowDays
	// to the waiting period (7 to 30 days) it was scheduled with.
	DeletionDate       time.Time `json:"deletion_date,omitzero"`
	DeletionWindowDays int       `json:"deletion_window_days,omitempty"`
	// DeletedAt is set on tombstones.
	DeletedAt time.Time `json:"deleted_at,omitzero"`
	// Rotation: enabled, the period, and when the next one is due.
	RotationEnabled    bool      `json:"rotation_enabled,omitempty"`
	RotationPeriodDays int       `json:"rotation_period_days,omitempty"`
	NextRotation       time.Time `json:"next_rotation,omitzero"`
	// Origin is "" (AWS_KMS: the token made the material) or EXTERNAL.
	Origin string `json:"origin,omitempty"`
	// ExpirationModel and ValidTo are those of imported material
	// (KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE).
	ExpirationModel string    `json:"expiration_model,omitempty"`
	ValidTo         time.Time `json:"valid_to,omitzero"`
	// KeyCheck identifies the material first imported (a value computed
	// from it on the token): only the same material is imported again.
	KeyCheck []byte `json:"key_check,omitempty"`
	// Import is the outstanding import: its wrapping key pair and token.
	Import *ImportParams `json:"import,omitempty"`
}

// ImportParams are what GetParametersForImport gave out for a key.
type ImportParams struct {
	// WrappingKey is the CKA_ID of the RSA key pair the material is
	// wrapped under, of WrappingSpec.
	WrappingKey  [16]byte `json:"wrapping_key"`
	WrappingSpec string   `json:"wrapping_spec"`
	Algorithm    string   `json:"algorithm"`
	// TokenHash is the SHA-256 of the import token; the token itself is
	// the caller's.
	TokenHash []byte    `json:"token_hash"`
	ValidTo   time.Time `json:"valid_to"`
}

// VersionState is a key version's state.
type VersionState string

// Version states: pending until the token object exists, then active until
// the key is deleted.
const (
	VersionPending   VersionState = "Pending"
	VersionActive    VersionState = "Active"
	VersionDestroyed VersionState = "Destroyed"
)

// Version is one piece of key material on the token.
type Version struct {
	KeyID     string       `json:"key_id"`
	Number    uint32       `json:"number"`
	ObjectID  [16]byte     `json:"object_id"` // the token object's CKA_ID
	State     VersionState `json:"state"`
	CreatedAt time.Time    `json:"created_at"`
	// RotationType is AUTOMATIC or ON_DEMAND for versions after the first.
	RotationType string `json:"rotation_type,omitempty"`
	// SealsReserved counts the AES-GCM seals reserved for this version, in
	// blocks taken before they are used: a crash loses at most the unused
	// part of a block, so the count only ever over-states.
	SealsReserved uint64 `json:"seals_reserved,omitempty"`
	// Owner and LeaseUntil claim a pending version for the process making
	// its token object (a replica ID): no other process settles it before
	// LeaseUntil. Active versions have neither.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
}

// Alias is a friendly name for a key: "alias/<name>".
type Alias struct {
	Name      string    `json:"name"`
	KeyID     string    `json:"key_id"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Principal is an identity that signs requests (SigV4) and its policy.
type Principal struct {
	AccessKeyID string `json:"access_key_id"`
	Name        string `json:"name"`
	// SealedSecret is the secret access key sealed under the service's
	// internal key on the token; the clear secret is never stored.
	SealedSecret []byte             `json:"sealed_secret"`
	Statements   []policy.Statement `json:"statements"`
	CreatedAt    time.Time          `json:"created_at"`
}

// Grant lets a principal use one key for some operations, as an AWS KMS
// grant does. A grant only adds rights: a Deny in the principal's policy
// still wins.
type Grant struct {
	KeyID string `json:"key_id"`
	// ID is 64 hex digits, unique per key.
	ID string `json:"id"`
	// Name is the client's idempotence name ("" for none).
	Name string `json:"name,omitempty"`
	// Grantee and Retiring are principal ARNs; Issuer is the access key ID
	// of the principal that created the grant.
	Grantee  string `json:"grantee"`
	Retiring string `json:"retiring,omitempty"`
	Issuer   string `json:"issuer"`
	// Operations are AWS KMS operation names (Encrypt, Decrypt, …).
	Operations []string `json:"operations"`
	// ContextEquals and ContextSubset constrain the encryption context of
	// the cryptographic operations the grant allows. A nil ContextEquals
	// is no constraint, an empty one requires an empty context: omitzero
	// keeps {} in the record, where omitempty dropped it and the grant read
	// back unconstrained (found by review). Records without the field, as
	// all written before, read as nil, which is what they meant.
	ContextEquals map[string]string `json:"context_equals,omitzero"`
	ContextSubset map[string]string `json:"context_subset,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
}

// Ref is a grant's identity in the store: its key's ID, "/", its ID.
func (g Grant) Ref() string { return g.KeyID + "/" + g.ID }

// XKSStore is a logical external key store: one URI path prefix of the XKS
// proxy API that an AWS KMS external key store points at, the credentials
// AWS KMS signs its requests with, and the keys it may use. It is one
// record, changed by compare-and-set on Revision, so that credentials
// and the allow-list change together on every replica.
type XKSStore struct {
	// Prefix is the URI path prefix without slashes at either end and
	// without the "/kms/xks/v1" tail, e.g. "example/uri/path/prefix".
	Prefix    string    `json:"prefix"`
	Revision  uint64    `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	// Credentials are the SigV4 credentials the store accepts (AWS KMS
	// rotates them by adding one, switching to it, removing the old one).
	Credentials []XKSCredential `json:"credentials,omitempty"`
	// Keys is the allow-list, ordered by ExternalID.
	Keys []XKSKey `json:"keys,omitempty"`
	// Statements, when not empty, is the secondary authorisation: a
	// request is allowed only if they allow its kmsOperation for its
	// awsPrincipalArn and kmsViaService (see the service's XKS operations).
	Statements []policy.Statement `json:"statements,omitempty"`
}

// XKSCredential is one SigV4 credential of an external key store.
type XKSCredential struct {
	AccessKeyID string `json:"access_key_id"`
	// SealedSecret is the raw secret access key sealed under the service's
	// internal key on the token, as a principal's.
	SealedSecret []byte    `json:"sealed_secret"`
	CreatedAt    time.Time `json:"created_at"`
}

// XKSKey is one entry of an external key store's allow-list.
type XKSKey struct {
	// ExternalID is what AWS KMS names the key by: an hsmkms key's UUID or
	// an alias name without "alias/".
	ExternalID string `json:"external_id"`
	// Usage lists what AWS KMS may do with it: ENCRYPT, DECRYPT, both or
	// neither.
	Usage []string `json:"usage"`
}
