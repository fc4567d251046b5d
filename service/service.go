package service

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/store"
)

// HSM is what the key service needs of the token; *hsm.Token is the one
// implementation.
type HSM interface {
	CreateMasterKey(ctx context.Context, id hsm.ObjectID, label string) error
	CreateKeyPair(ctx context.Context, id hsm.ObjectID, label string, spec hsm.KeySpec) (crypto.PublicKey, error)
	CreateEncryptionKeyPair(ctx context.Context, id hsm.ObjectID, label string, spec hsm.KeySpec) (crypto.PublicKey, error)
	CreateHMACKey(ctx context.Context, id hsm.ObjectID, label string, alg hsm.MACAlgorithm) error
	HasKey(ctx context.Context, id hsm.ObjectID) (bool, error)
	DestroyKey(ctx context.Context, id hsm.ObjectID) error
	Seal(ctx context.Context, id hsm.ObjectID, iv, aad, plaintext []byte) ([]byte, error)
	SealWithTokenIV(ctx context.Context, id hsm.ObjectID, aad, plaintext []byte) (iv, sealed []byte, err error)
	SealDataKey(ctx context.Context, id hsm.ObjectID, n int, iv, aad []byte) (dataKey, sealed []byte, err error)
	Unseal(ctx context.Context, id hsm.ObjectID, iv, aad, sealed []byte) ([]byte, error)
	WrapDataKey(ctx context.Context, id hsm.ObjectID, n int) (dataKey, wrapped []byte, err error)
	UnwrapDataKey(ctx context.Context, id hsm.ObjectID, wrapped []byte) ([]byte, error)
	CreatePortableKey(ctx context.Context, id hsm.ObjectID, label string) error
	SealPortable(ctx context.Context, id hsm.ObjectID, iv, header, context, plaintext []byte) ([]byte, error)
	SealDataKeyPortable(ctx context.Context, id hsm.ObjectID, n int, iv, header, context []byte) (dataKey, sealed []byte, err error)
	UnsealPortable(ctx context.Context, id hsm.ObjectID, iv, header, context, sealed []byte) ([]byte, error)
	GenerateRandom(ctx context.Context, n int) ([]byte, error)
	GenerateDataKeyPair(ctx context.Context, spec hsm.KeySpec) (privateKey, publicKey []byte, err error)
	Sign(ctx context.Context, id hsm.ObjectID, alg hsm.SigningAlgorithm, digest []byte) ([]byte, error)
	Verify(ctx context.Context, id hsm.ObjectID, alg hsm.SigningAlgorithm, digest, sig []byte) error
	PublicKey(ctx context.Context, id hsm.ObjectID) (crypto.PublicKey, error)
	EncryptOAEP(ctx context.Context, id hsm.ObjectID, alg hsm.EncryptionAlgorithm, plaintext []byte) ([]byte, error)
	DecryptOAEP(ctx context.Context, id hsm.ObjectID, alg hsm.EncryptionAlgorithm, ciphertext []byte) ([]byte, error)
	GenerateMAC(ctx context.Context, id hsm.ObjectID, alg hsm.MACAlgorithm, msg []byte) ([]byte, error)
	VerifyMAC(ctx context.Context, id hsm.ObjectID, alg hsm.MACAlgorithm, msg, mac []byte) error
	CreateWrappingKeyPair(ctx context.Context, id hsm.ObjectID, label string, spec hsm.KeySpec) (crypto.PublicKey, error)
	CheckUnwrap(ctx context.Context, id hsm.ObjectID, alg hsm.WrappingAlgorithm) error
	ImportKey(ctx context.Context, wrapping hsm.ObjectID, alg hsm.WrappingAlgorithm, wrapped []byte, id hsm.ObjectID, label string, target hsm.ImportTarget) error
	KeyCheckValue(ctx context.Context, id hsm.ObjectID, target hsm.ImportTarget) ([]byte, error)
	Health() hsm.Health
}

var _ HSM = (*hsm.Token)(nil)

// Config wires a Service.
type Config struct {
	Store store.Store
	HSM   HSM
	// Region and Account make key and alias ARNs (defaults us-east-1 and
	// 000000000000).
	Region, Account string
	Logger          hclog.Logger
	Audit           *audit.Logger
	// Now is the clock; tests move it to reach deletion and rotation dates.
	Now func() time.Time
	// SealBlock is how many seals a process reserves for a version in one
	// store write (default 65536).
	SealBlock uint64
	// RotateAfterSeals rotates a key whose current version has this many
	// seals reserved (default 2^30, far below the 2^32 bound for random
	// 96-bit IVs); SealLimit refuses to seal past it (default 2^31).
	RotateAfterSeals, SealLimit uint64
	// OnSeal, when set, is told of every AES-GCM seal (metrics).
	OnSeal func(keyID string, version uint32)
	// MaintenanceInterval is how often due rotations and deletions run
	// (default 1 minute).
	MaintenanceInterval time.Duration
	// ReplicaID names this process among the replicas sharing a store: it
	// owns the pending versions it makes and the maintenance lease while
	// it holds it. Default: host name, process ID and a random suffix.
	ReplicaID string
	// SharedStore says other processes use the store at the same time:
	// then a pending version another process claims is settled only after
	// its claim ran out. Without it every pending version not claimed by
	// this process was left by an earlier one.
	SharedStore bool
	// ClaimTTL is how long a pending version is its maker's (default 2
	// minutes); making its token object must take less than half of it.
	ClaimTTL time.Duration
	// LeaseTTL is how long the maintenance lease lasts without renewal
	// (default 6 s); the holder renews it every LeaseTTL/3, so another
	// replica takes over within LeaseTTL + LeaseTTL/3 of the holder's death.
	LeaseTTL time.Duration
}

func (c *Config) setDefaults() error {
	if c.Store == nil || c.HSM == nil {
		return errors.New("service: a store and an HSM are required")
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Account == "" {
		c.Account = "000000000000"
	}
	if !accountRE.MatchString(c.Account) {
		return fmt.Errorf("service: account ID %q is not 12 digits", c.Account)
	}
	if !regionRE.MatchString(c.Region) {
		return fmt.Errorf("service: region %q is not a region name", c.Region)
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Audit == nil {
		c.Audit = audit.Discard()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SealBlock == 0 {
		c.SealBlock = 1 << 16
	}
	if c.RotateAfterSeals == 0 {
		c.RotateAfterSeals = DefaultRotateAfterSeals
	}
	if c.SealLimit == 0 {
		c.SealLimit = 1 << 31
	}
	if c.MaintenanceInterval <= 0 {
		c.MaintenanceInterval = time.Minute
	}
	if c.ReplicaID == "" {
		c.ReplicaID = newReplicaID()
	}
	if c.ClaimTTL <= 0 {
		c.ClaimTTL = 2 * time.Minute
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 6 * time.Second
	}
	return nil
}

// DefaultRotateAfterSeals is Config.RotateAfterSeals' default.
const DefaultRotateAfterSeals = 1 << 30

// Service is the key service: every KMS operation, authorised, audited and
// carried out with the store and the token.
type Service struct {
	cfg   Config
	store store.Store
	// hsm is cfg.HSM behind withReindex; what it is besides an HSM
	// (TokenInspector, ObjectLister) is asked of cfg.HSM.
	hsm   HSM
	log   hclog.Logger
	audit *audit.Logger
	now   func() time.Time
	// arn is "arn:aws:kms:<region>:<account>:", made once: every response
	// names its key by ARN.
	arn   string
	seals *sealBudget
	// secrets caches principals' unsealed secrets, internal the CKA_ID of
	// the key that seals them once it is known to exist (principals.go).
	secrets  secretCache
	internal atomic.Pointer[internalKeyRecord]
	// auditFailing is whether the last audit write failed, auditLost how
	// many records were lost since the failures began (caller.go). The
	// success path only loads auditFailing; auditMu orders the changes, so
	// that the log's "failed" and "written again" alternate and each lost
	// record is counted in exactly one "written again".
	auditFailing atomic.Bool
	auditMu      sync.Mutex
	auditLost    int64
	// auditLostSuppressed counts the failed authentications that lost
	// refusal records stood for besides themselves (RecordRefusal).
	auditLostSuppressed int64
	// xksHealth is the last XKS health check (xkscrypto.go).
	xksHealth xksHealthCache
	// leaseHeld is whether this replica held the maintenance lease at its
	// last attempt (lease.go).
	leaseHeld atomic.Bool

	stop chan struct{}
	// mu guards closed, so that no background work starts after Close
	// began waiting for it.
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// New returns a Service. Call Reconcile before serving, and Start to run
// the rotation and deletion schedulers.
func New(cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:   cfg,
		arn:   "arn:aws:kms:" + cfg.Region + ":" + cfg.Account + ":",
		store: cfg.Store,
		hsm:   withReindex(cfg.HSM),
		log:   cfg.Logger.Named("service"),
		audit: cfg.Audit,
		now:   cfg.Now,
		stop:  make(chan struct{}),
	}
	s.seals = newSealBudget(s)
	return s, nil
}

// Start runs the maintenance loop until Close: it takes or renews the
// maintenance lease every LeaseTTL/3 (or MaintenanceInterval, if shorter)
// and, while it holds it, carries out due rotations and deletions and
// settles what dead replicas left pending, every MaintenanceInterval.
//
// A pass runs in a goroutine of its own, so that the lease is renewed
// while it works: a pass may take up to MaintenanceInterval, far past
// LeaseTTL, and a lease left unrenewed that long would let a second
// replica take it and work beside this one (found by review). A pass is
// cancelled when the lease is lost, and at Close before the lease is
// released.
func (s *Service) Start() {
	s.background(func() {
		t := time.NewTicker(min(s.cfg.LeaseTTL/3, s.cfg.MaintenanceInterval))
		defer t.Stop()
		var last time.Time
		var pass *maintenancePass // the running pass, if any
		stopPass := func() {
			if pass != nil {
				pass.cancel()
				<-pass.done
				pass = nil
			}
		}
		for {
			select {
			case <-s.stop:
				stopPass()
				s.releaseLease()
				return
			case <-t.C:
				if !s.renewLease() {
					stopPass()
					continue
				}
				if pass != nil {
					select {
					case <-pass.done:
						pass = nil
					default:
						continue // still running
					}
				}
				if time.Since(last) < s.cfg.MaintenanceInterval {
					continue
				}
				last = time.Now()
				pass = s.startPass()
			}
		}
	})
}

// maintenancePass is one run of the maintenance work in its goroutine.
type maintenancePass struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startPass runs RunMaintenance and Reconcile in a goroutine, for at most
// MaintenanceInterval.
func (s *Service) startPass() *maintenancePass {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.MaintenanceInterval)
	p := &maintenancePass{cancel: cancel, done: make(chan struct{})}
	started := s.background(func() {
		defer close(p.done)
		defer cancel()
		if err := s.RunMaintenance(ctx); err != nil {
			s.log.Warn("maintenance", "error", err)
		}
		if _, err := s.Reconcile(ctx); err != nil {
			s.log.Warn("settling pending versions", "error", err)
		}
	})
	if !started { // Close has begun
		cancel()
		close(p.done)
	}
	return p
}

// background runs fn in a goroutine that Close waits for, unless Close has
// begun; it reports whether fn was started.
func (s *Service) background(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// Close stops the schedulers and waits for them. The store and the HSM
// belong to the caller.
func (s *Service) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// RunMaintenance carries out what is due now: key deletions whose waiting
// period ended, automatic rotations, and the deletion of imported key
// material whose ValidTo passed.
func (s *Service) RunMaintenance(ctx context.Context) error {
	return errors.Join(s.deleteDueKeys(ctx), s.rotateDueKeys(ctx), s.expireImportedKeys(ctx))
}
