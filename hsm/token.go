package hsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/pkcs11"
)

// Config selects a token and sizes its session pool.
type Config struct {
	// ModulePath is the PKCS#11 library to load.
	ModulePath string
	// InitParams are the module's initialisation parameters (see
	// ModuleConfig.InitParams); most modules take none.
	InitParams string
	// TokenLabel selects the token; TokenSerial, when set, must match too.
	TokenLabel  string
	TokenSerial string
	// PIN is the user PIN. Load it with PINFromFile or PINFromEnv.
	PIN PIN
	// PoolSize bounds the sessions open at once (default 4). SoftHSM2 gains
	// nothing past 2–4; network HSMs often want more.
	PoolSize int
	// WaitTimeout bounds how long an operation waits for a free session
	// (default 5s).
	WaitTimeout time.Duration
	// RecoverInterval is the least time between two attempts to re-initialise
	// a lost module (default 1s).
	RecoverInterval time.Duration
	// ReindexInterval is the least time between two re-readings of the
	// token asked for with Reindex (default 10s).
	ReindexInterval time.Duration
	// Logger receives events; nil means none. PINs are never logged.
	Logger hclog.Logger
	// Wrap wraps the loaded library; tests use it to inject faults.
	Wrap func(PKCS11) PKCS11
	// Observe, when set, is told of every operation: its name, how long it
	// took (session wait included) and its error. Metrics hook in here.
	Observe func(op string, d time.Duration, err error)
}

func (c *Config) setDefaults() {
	if c.PoolSize <= 0 {
		c.PoolSize = 4
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = 5 * time.Second
	}
	if c.RecoverInterval <= 0 {
		c.RecoverInterval = time.Second
	}
	if c.ReindexInterval <= 0 {
		c.ReindexInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// Token is a logged-in connection to one token: the anchor session that
// holds the login, a pool of working sessions, a cache of object handles,
// and the token's health. It is safe for concurrent use.
type Token struct {
	cfg  Config
	m    *Module
	p    PKCS11
	log  hclog.Logger
	caps Capabilities
	// noCopyable is set once the token refused CKA_COPYABLE.
	noCopyable atomic.Bool
	// oaepSHA1Only is set once the token refused CKM_RSA_PKCS_OAEP with a
	// hash other than SHA-1.
	oaepSHA1Only atomic.Bool

	// mu is held for reading by every operation on the module and for
	// writing while recovery finalises and re-initialises it: no PKCS#11
	// call may be in flight across C_Finalize.
	mu     sync.RWMutex
	slot   uint
	info   TokenInfo
	anchor pkcs11.SessionHandle
	pool   *pool
	keys   handleCache
	// loginMu keeps concurrent re-logins from racing on the anchor session.
	loginMu sync.Mutex
	// objectMu serialises creating and destroying token objects: SoftHSM2
	// 2.6.1 answers CKR_GENERAL_ERROR now and then to C_GenerateKey of
	// token objects made at once from several sessions (its file store
	// races). They take tens of milliseconds and are never on a hot path.
	objectMu sync.Mutex

	health     atomic.Pointer[Health]
	recovering atomic.Bool
	// reindexed is when Reindex last re-initialised the module (Unix ns).
	reindexed atomic.Int64
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	// random is the pool of bytes drawn from the token's generator ahead
	// of use (random.go).
	random randomPool
	// onClearKey, set only by tests, sees each data key pair's private key
	// just before it is cleared (datakeypair.go).
	onClearKey func(key any)
}

// Health is the token's state as callers (readiness probes) see it.
type Health struct {
	// Ready is true while the token is usable.
	Ready bool `json:"ready"`
	// Since is when the state last changed.
	Since time.Time `json:"since"`
	// Reason says why the token is not ready; empty when it is.
	Reason string `json:"reason,omitempty"`
	// Recoveries counts the successful re-initialisations so far.
	Recoveries uint64 `json:"recoveries"`
}

// Open loads the module, finds the token by label, logs in, and probes
// the mechanisms hsmkms needs. The Token owns the module: Close finalises it.
func Open(ctx context.Context, cfg Config) (*Token, error) {
	cfg.setDefaults()
	if cfg.TokenLabel == "" {
		return nil, invalidInput("open token", "no token label given")
	}
	if cfg.PIN.IsZero() {
		return nil, newError("open token", ErrInvalidInput, errNoPIN)
	}
	m, err := OpenModule(ModuleConfig{Path: cfg.ModulePath, InitParams: cfg.InitParams, Logger: cfg.Logger, Wrap: cfg.Wrap})
	if err != nil {
		return nil, err
	}
	t := &Token{
		cfg:     cfg,
		m:       m,
		p:       m.p,
		log:     cfg.Logger.Named("hsm"),
		keys:    handleCache{m: map[keyRef]pkcs11.ObjectHandle{}},
		closing: make(chan struct{}),
	}
	if err := t.connectAtStart(); err != nil {
		m.Close()
		return nil, err
	}
	if t.caps, err = probeCapabilities(m, t.slot); err != nil {
		t.Close()
		return nil, err
	}
	if err := t.selfTest(); err != nil {
		t.Close()
		return nil, err
	}
	t.health.Store(&Health{Ready: true, Since: time.Now()})
	t.log.Info("token opened", "module", cfg.ModulePath, "label", t.info.Label,
		"serial", t.info.Serial, "slot", t.slot, "pool_size", cfg.PoolSize)
	return t, nil
}

// startAttempts bounds connectAtStart.
const startAttempts = 3

// connectAtStart connects, trying again after re-initialising the module
// when the token is not found: SoftHSM2 reads its token directory when the
// module is initialised, and a process starting while another writes the
// shared directory (replicas starting together) can read it half written
// and see no token. A token that is really absent is still reported, after
// a second and a third look.
func (t *Token) connectAtStart() error {
	var err error
	for i := range startAttempts {
		if err = t.connect(); err == nil || !errors.Is(err, ErrUnavailable) || i == startAttempts-1 {
			return err
		}
		t.log.Info("token not found; looking again", "label", t.cfg.TokenLabel, "error", err)
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
		if rerr := t.m.reinitialize(); rerr != nil {
			return newError("open token", ErrUnavailable, rerr)
		}
	}
	return err
}

// connect finds the token, opens the anchor session and logs in. Callers
// hold mu for writing or own t exclusively.
func (t *Token) connect() error {
	slot, info, err := t.m.findToken(t.cfg.TokenLabel, t.cfg.TokenSerial)
	if err != nil {
		return newError("open token", ErrUnavailable, err)
	}
	anchor, err := t.p.OpenSession(slot, sessionFlags)
	if err != nil {
		return newError("open token", ErrUnavailable, fmt.Errorf("C_OpenSession: %w", err))
	}
	if err := t.p.Login(anchor, pkcs11.CKU_USER, t.cfg.PIN.Reveal()); err != nil &&
		!isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = t.p.CloseSession(anchor)
		kind := ErrUnavailable
		if classify(err) == classPIN {
			kind = ErrLogin
		}
		return newError("log in", kind, fmt.Errorf("token %q: %w", info.Label, err))
	}
	t.slot, t.info, t.anchor = slot, info, anchor
	t.pool = newPool(t.p, slot, t.cfg.PoolSize, t.cfg.WaitTimeout)
	return nil
}

// Close stops recovery, closes every session and finalises the module.
func (t *Token) Close() error {
	t.closeOnce.Do(func() { close(t.closing) })
	if h := t.health.Load(); h != nil {
		t.health.Store(&Health{Ready: false, Since: time.Now(), Reason: "closed", Recoveries: h.Recoveries})
	}
	t.wg.Wait()
	t.random.clear()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pool != nil {
		t.pool.closeAll()
		_ = t.p.Logout(t.anchor)
		_ = t.p.CloseSession(t.anchor)
		t.pool = nil
	}
	return t.m.Close()
}

// Module is the module the token lives on.
func (t *Token) Module() *Module { return t.m }

// Capabilities is what the token was found able to do when it was opened.
func (t *Token) Capabilities() Capabilities {
	c := t.caps
	c.CopyableRefused = t.noCopyable.Load()
	c.OAEPSHA1Only = t.oaepSHA1Only.Load()
	return c
}

// Health returns the token's current state.
func (t *Token) Health() Health { return *t.health.Load() }

// Info returns the token's description as of now.
func (t *Token) Info(ctx context.Context) (TokenInfo, error) {
	var info TokenInfo
	err := t.do(ctx, "token info", nil, nil, func(pkcs11.SessionHandle, pkcs11.ObjectHandle) error {
		var err error
		info, err = t.m.tokenInfo(t.slot)
		return err
	})
	return info, err
}

// Mechanisms lists the token's mechanisms.
func (t *Token) Mechanisms(ctx context.Context) ([]Mechanism, error) {
	var out []Mechanism
	err := t.do(ctx, "list mechanisms", nil, nil, func(pkcs11.SessionHandle, pkcs11.ObjectHandle) error {
		var err error
		out, err = t.m.Mechanisms(t.slot)
		return err
	})
	return out, err
}

// PoolStats reports the session pool's use now.
type PoolStats struct {
	Size  int `json:"size"`   // the configured bound
	Open  int `json:"open"`   // sessions open, idle or borrowed
	InUse int `json:"in_use"` // sessions borrowed
}

// PoolStats returns the session pool's use now.
func (t *Token) PoolStats() PoolStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	st := PoolStats{Size: t.cfg.PoolSize}
	if t.pool != nil {
		st.Open, st.InUse = t.pool.size(), t.pool.inUse()
	}
	return st
}

// do runs fn on a borrowed session, with the handle of key when key is not
// nil, and turns the token's ways of failing into this package's errors:
//   - a stale handle is re-found by CKA_ID and fn retried once;
//   - a broken session is evicted and fn retried once on another;
//   - a lost login is restored and fn retried once;
//   - a device error marks the token unavailable and starts recovery;
//   - an ambiguous error (CKR_GENERAL_ERROR) is settled by probing the token:
//     a healthy token means the input was bad, reported as badInput.
//
// badInput is the kind for errors the token attributes to the data
// (ErrInvalidCiphertext for decryption, nil where that cannot happen).
func (t *Token) do(ctx context.Context, op string, key *keyRef, badInput error,
	fn func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error) (err error) {
	if t.cfg.Observe != nil {
		defer func(start time.Time) { t.cfg.Observe(op, time.Since(start), err) }(time.Now())
	}
	select {
	case <-t.closing:
		return newError(op, ErrClosed, nil)
	default:
	}
	if h := t.health.Load(); !h.Ready {
		return newError(op, ErrUnavailable, errors.New(h.Reason))
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.pool == nil {
		select {
		case <-t.closing:
			return newError(op, ErrClosed, nil)
		default:
			return newError(op, ErrUnavailable, errors.New("recovering"))
		}
	}
	for attempt := 0; ; attempt++ {
		s, err := t.pool.get(ctx)
		if err != nil {
			return t.sessionError(op, err)
		}
		var h pkcs11.ObjectHandle
		if key != nil {
			h, err = t.keys.handle(t.p, s, *key)
		}
		if err == nil {
			err = fn(s, h)
		}
		if err == nil {
			t.pool.put(s)
			return nil
		}
		retry, out := t.settle(op, s, key, badInput, err)
		if retry && attempt == 0 {
			continue
		}
		return out
	}
}

// errTainted marks the failure of an operation whose session holds an
// object it could not destroy: settle closes that session, which destroys
// its session objects, rather than return it to the pool.
var errTainted = errors.New("a session object could not be destroyed; the session is closed")

// settle decides what a failed attempt means, returning the session to the
// pool or evicting it. It returns whether a retry may help, and the error to
// report otherwise.
func (t *Token) settle(op string, s pkcs11.SessionHandle, key *keyRef, badInput, err error) (bool, error) {
	if errors.Is(err, errTainted) {
		t.pool.evict(s)
		return false, newError(op, ErrToken, err)
	}
	var e *Error
	if errors.As(err, &e) && !errors.Is(e.Kind, ErrKeyNotFound) {
		t.pool.put(s) // found before any call, or already classified
		return false, err
	}
	switch classify(err) {
	case classStale:
		if key != nil { // keyless operations (DestroyKey, Objects) find their objects anew
			t.keys.forget(*key)
			if key.keyType == pkcs11.CKK_AES {
				// A portable version's HMAC key is used under its AES key's
				// operation: its handle may be the stale one.
				t.keys.forget(*macKey(key.id))
			}
		}
		t.pool.put(s)
		return true, newError(op, ErrToken, err)
	case classSession:
		t.pool.evict(s)
		return true, newError(op, ErrToken, err)
	case classLogin:
		t.pool.put(s)
		if lerr := t.relogin(); lerr != nil {
			return false, lerr
		}
		return true, newError(op, ErrToken, err)
	case classDevice:
		t.pool.evict(s)
		t.lost(err)
		return false, newError(op, ErrUnavailable, err)
	case classPIN:
		t.pool.put(s)
		return false, newError(op, ErrLogin, err)
	case classMechanism:
		t.pool.put(s)
		return false, newError(op, ErrMechanismUnsupported, err)
	}
	// Not found, CKR_GENERAL_ERROR and kin: only the token can tell a bad
	// input from a lost token.
	if perr := t.probe(); perr != nil {
		t.pool.evict(s)
		t.lost(perr)
		return false, newError(op, ErrUnavailable, perr)
	}
	t.pool.put(s)
	if errors.Is(err, ErrKeyNotFound) {
		return false, err
	}
	if kind := inputKind(err, badInput); kind != nil {
		return false, newError(op, kind, err)
	}
	return false, newError(op, ErrToken, err)
}

// inputKind returns the kind of an error the token attributes to the data.
func inputKind(err, badInput error) error {
	var code pkcs11.Error
	if !errors.As(err, &code) {
		return nil
	}
	switch code {
	case pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED,
		pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		pkcs11.CKR_WRAPPED_KEY_INVALID, pkcs11.CKR_WRAPPED_KEY_LEN_RANGE:
		return badInput
	case pkcs11.CKR_SIGNATURE_INVALID, pkcs11.CKR_SIGNATURE_LEN_RANGE:
		return ErrInvalidSignature
	case pkcs11.CKR_DATA_LEN_RANGE, pkcs11.CKR_DATA_INVALID,
		pkcs11.CKR_KEY_TYPE_INCONSISTENT, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED:
		return ErrInvalidInput
	}
	return nil
}

// sessionError classifies a failure to borrow a session.
func (t *Token) sessionError(op string, err error) error {
	switch {
	case errors.Is(err, ErrPoolExhausted):
		return newError(op, ErrPoolExhausted, nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return newError(op, ErrUnavailable, err)
	}
	if c := classify(err); c == classDevice || c == classAmbiguous {
		t.lost(err)
	}
	return newError(op, ErrUnavailable, fmt.Errorf("C_OpenSession: %w", err))
}

// probe asks the token to describe itself: the one cheap call that fails
// when SoftHSM2's token vanished (CKR_GENERAL_ERROR) and that a real HSM
// fails when removed. A token with another label or serial in the same slot
// counts as lost too.
func (t *Token) probe() error {
	ti, err := getTokenInfo(t.p, t.slot)
	if err != nil {
		return fmt.Errorf("C_GetTokenInfo: %w", err)
	}
	if unpad(ti.Label) != t.info.Label || unpad(ti.SerialNumber) != t.info.Serial {
		return fmt.Errorf("the token in slot %d changed (now %q, serial %q)", t.slot, unpad(ti.Label), unpad(ti.SerialNumber))
	}
	return nil
}

// relogin restores the login after CKR_USER_NOT_LOGGED_IN (some HSMs drop
// it when the last session of another application closes, or on a timeout).
func (t *Token) relogin() error {
	t.loginMu.Lock()
	defer t.loginMu.Unlock()
	err := t.p.Login(t.anchor, pkcs11.CKU_USER, t.cfg.PIN.Reveal())
	switch classify(err) {
	case classOK:
		return nil
	case classPIN:
		return newError("log in", ErrLogin, err)
	}
	if isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return nil
	}
	return newError("log in", ErrToken, err)
}

// lockObjects takes objectMu for a creation, then gives it back and
// returns the context's error if ctx ended while it waited: a creation
// queued behind others must
// not start after its caller's deadline, which bounds it to half of its
// version's claim (found by review: a creation that waited past the claim
// went on after another replica, or this one's Reconcile, had settled the
// version, and made an object nobody accounted for).
func (t *Token) lockObjects(ctx context.Context) error {
	t.objectMu.Lock()
	if err := ctx.Err(); err != nil {
		t.objectMu.Unlock()
		return err
	}
	return nil
}
