package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// TestConcurrentMixedOperations proves that the Token is safe for
// concurrent use (run it with -race): 32 goroutines share a pool of 4
// sessions for a mix of every kind of operation the token has, with every
// data-key mechanism and signing algorithm it has, including rejected
// ciphertexts (which probe the token), with no error, every result checked,
// the pool never above its bound, the token ready throughout, and no
// session left borrowed at the end. The operations of a feature the token
// lacks are refused with ErrMechanismUnsupported, and left out of the mix.
func TestConcurrentMixedOperations(t *testing.T) {
	const (
		poolSize   = 4
		goroutines = 32
		perWorker  = 12 // 384 operations in all
	)
	ctx := t.Context()
	tok := openToken(t, func(c *Config) { c.PoolSize = poolSize })
	master := newVersionKey(t, tok)
	// A key pair of each type the token makes.
	var ecPair, rsaPair ObjectID
	var ecPub *ecdsa.PublicKey
	var rsaPub *rsa.PublicKey
	if has(tok, "ecdsa") {
		ecPair, ecPub = concurrentPair[*ecdsa.PublicKey](t, tok, ECP256)
	}
	if has(tok, "rsa") {
		rsaPair, rsaPub = concurrentPair[*rsa.PublicKey](t, tok, RSA2048)
	}
	absent, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}

	// Each operation checks its own result and returns an error if it is
	// wrong. It runs only on a token with every feature it needs.
	type mixedOp struct {
		name  string
		needs []string
		run   func(w, i int) error
	}
	var ops []mixedOp
	for _, m := range sealMechs {
		ops = append(ops,
			mixedOp{"seal/unseal " + m.feature, []string{m.feature}, func(w, i int) error {
				pt := []byte(fmt.Sprintf("plaintext %d/%d", w, i))
				aad := []byte(fmt.Sprintf("aad %d/%d", w, i))
				iv, err := m.newIV()
				if err != nil {
					return err
				}
				sealed, err := m.seal(ctx, tok, master, iv, aad, pt)
				if err != nil {
					return err
				}
				if want := len(pt) + m.overhead(len(pt)); len(sealed) != want {
					return fmt.Errorf("sealed %d bytes into %d, want %d", len(pt), len(sealed), want)
				}
				return unsealsTo(ctx, tok, m, master, iv, aad, sealed, pt)
			}},
			mixedOp{"unseal tampered " + m.feature, []string{m.feature}, func(w, i int) error {
				iv, err := m.newIV()
				if err != nil {
					return err
				}
				sealed, err := m.seal(ctx, tok, master, iv, recAAD, []byte("tamper with me"))
				if err != nil {
					return err
				}
				sealed[w%len(sealed)] ^= 0x01
				if _, err := m.unseal(ctx, tok, master, iv, recAAD, sealed); !errors.Is(err, ErrInvalidCiphertext) {
					return fmt.Errorf("unsealing a tampered value: err = %v, want ErrInvalidCiphertext", err)
				}
				return nil
			}},
			mixedOp{"seal data key " + m.feature, []string{m.feature}, func(w, i int) error {
				iv, err := m.newIV()
				if err != nil {
					return err
				}
				dk, sealed, err := m.sealDataKey(ctx, tok, master, 32, iv, recAAD)
				if err != nil {
					return err
				}
				if len(dk) != 32 {
					return fmt.Errorf("data key of %d bytes, want 32", len(dk))
				}
				return unsealsTo(ctx, tok, m, master, iv, recAAD, sealed, dk)
			}},
		)
	}
	// sign signs a digest of message w/i with alg under pair, checks it
	// with Go's verify and with tok.Verify.
	sign := func(pair ObjectID, alg SigningAlgorithm, goVerify func(digest, sig []byte) error) func(w, i int) error {
		return func(w, i int) error {
			digest := sha256.Sum256([]byte(fmt.Sprintf("message %d/%d", w, i)))
			sig, err := tok.Sign(ctx, pair, alg, digest[:])
			if err != nil {
				return err
			}
			if err := goVerify(digest[:], sig); err != nil {
				return fmt.Errorf("the signature does not verify with Go's crypto: %w", err)
			}
			return tok.Verify(ctx, pair, alg, digest[:], sig)
		}
	}
	ops = append(ops,
		mixedOp{"wrap/unwrap data key", []string{"aes-kw"}, func(w, i int) error {
			dk, wrapped, err := tok.WrapDataKey(ctx, master, 32)
			if err != nil {
				return err
			}
			if len(dk) != 32 || len(wrapped) != 32+wrapOverhead {
				return fmt.Errorf("data key %d bytes wrapped into %d, want 32 and 40", len(dk), len(wrapped))
			}
			got, err := tok.UnwrapDataKey(ctx, master, wrapped)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, dk) {
				return fmt.Errorf("unwrapped %x, want %x", got, dk)
			}
			return nil
		}},
		mixedOp{"sign ECDSA", []string{"ecdsa"}, sign(ecPair, ECDSASHA256, func(digest, sig []byte) error {
			if !ecdsa.VerifyASN1(ecPub, digest, sig) {
				return errors.New("crypto/ecdsa refuses it")
			}
			return nil
		})},
		mixedOp{"sign RSA PKCS #1 v1.5", []string{"rsa"}, sign(rsaPair, RSAPKCS1SHA256, func(digest, sig []byte) error {
			return rsa.VerifyPKCS1v15(rsaPub, crypto.SHA256, digest, sig)
		})},
		mixedOp{"sign RSA-PSS", []string{"rsa", "rsa-pss"}, sign(rsaPair, RSAPSSSHA256, func(digest, sig []byte) error {
			return rsa.VerifyPSS(rsaPub, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256})
		})},
		mixedOp{"generate random", nil, func(w, i int) error {
			b, err := tok.GenerateRandom(ctx, 32)
			if err != nil {
				return err
			}
			if len(b) != 32 || bytes.Equal(b, make([]byte, 32)) {
				return fmt.Errorf("GenerateRandom(32) = %x", b)
			}
			return nil
		}},
		mixedOp{"has key", nil, func(w, i int) error {
			if found, err := tok.HasKey(ctx, master); err != nil || !found {
				return fmt.Errorf("HasKey(master) = %v, %v; want true", found, err)
			}
			if found, err := tok.HasKey(ctx, absent); err != nil || found {
				return fmt.Errorf("HasKey(absent) = %v, %v; want false", found, err)
			}
			return nil
		}},
	)
	// What the token lacks is refused up front, and stays out of the mix.
	var mix []mixedOp
	for _, op := range ops {
		if slices.ContainsFunc(op.needs, func(feature string) bool { return !has(tok, feature) }) {
			t.Run("unsupported/"+op.name, func(t *testing.T) { wantKind(t, op.run(0, 0), ErrMechanismUnsupported) })
			continue
		}
		mix = append(mix, op)
	}
	ops = mix

	// Sample the pool while the workers run.
	var samples, overBound atomic.Int64
	var maxOpen atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st := tok.PoolStats()
			samples.Add(1)
			if st.Open > poolSize || st.InUse > st.Open || st.InUse < 0 || st.Size != poolSize {
				overBound.Add(1)
			}
			if int64(st.Open) > maxOpen.Load() {
				maxOpen.Store(int64(st.Open))
			}
			time.Sleep(100 * time.Microsecond)
		}
	})

	var mu sync.Mutex
	var failures []string
	var done atomic.Int64
	var workers sync.WaitGroup
	for w := range goroutines {
		workers.Go(func() {
			for i := range perWorker {
				op := ops[(w+i)%len(ops)]
				if err := op.run(w, i); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("worker %d op %d (%s): %v", w, i, op.name, err))
					mu.Unlock()
				}
				done.Add(1)
			}
		})
	}
	workers.Wait()
	close(stop)
	sampler.Wait()

	for _, f := range failures {
		t.Error(f)
	}
	if n := done.Load(); n != goroutines*perWorker {
		t.Errorf("%d operations ran, want %d", n, goroutines*perWorker)
	}
	if samples.Load() == 0 || overBound.Load() != 0 {
		t.Errorf("%d of %d pool samples broke the bound of %d sessions", overBound.Load(), samples.Load(), poolSize)
	}
	if m := maxOpen.Load(); m < 1 || m > poolSize {
		t.Errorf("at most %d sessions were seen open, want 1 to %d", m, poolSize)
	}
	if st := tok.PoolStats(); st.InUse != 0 || st.Open > poolSize {
		t.Errorf("PoolStats at the end = %+v, want 0 in use and at most %d open", st, poolSize)
	}
	if h := tok.Health(); !h.Ready || h.Recoveries != 0 {
		t.Errorf("Health at the end = %+v, want ready with no recovery", h)
	}
	t.Logf("%d operations of %d kinds, %d pool samples, at most %d sessions open", done.Load(), len(ops), samples.Load(), maxOpen.Load())
}

// concurrentPair makes a key pair of spec and returns its CKA_ID and its
// public key, of type K.
func concurrentPair[K crypto.PublicKey](t *testing.T, tok *Token, spec KeySpec) (ObjectID, K) {
	t.Helper()
	id, err := NewObjectID()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tok.CreateKeyPair(t.Context(), id, "hsmkms/test/concurrent-"+string(spec), spec)
	if err != nil {
		t.Fatalf("CreateKeyPair(%s): %v", spec, err)
	}
	k, ok := pub.(K)
	if !ok {
		t.Fatalf("CreateKeyPair(%s) returned a %T", spec, pub)
	}
	return id, k
}

// holdOnlySession opens a faulty Token with one session and waitTimeout,
// and holds that session busy in a GenerateRandom call parked at a gate. It
// returns the Token, the wrapper, a function that lets the held call finish
// and a channel that receives its result.
func holdOnlySession(t *testing.T, waitTimeout time.Duration) (*Token, *faulty, ObjectID, func(), <-chan error) {
	t.Helper()
	tok, f := openFaulty(t, func(c *Config) {
		c.PoolSize = 1
		c.WaitTimeout = waitTimeout
	})
	id := newVersionKey(t, tok)
	gate := f.setGate("GenerateRandom")
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	held := make(chan error, 1)
	go func() {
		b, err := tok.GenerateRandom(context.Background(), 32)
		if err == nil && len(b) != 32 {
			err = fmt.Errorf("GenerateRandom(32) returned %d bytes", len(b))
		}
		held <- err
	}()
	waitFor(t, "the held call to reach the module", func() bool { return f.count("GenerateRandom") == 1 })
	if st := tok.PoolStats(); st.Open != 1 || st.InUse != 1 {
		t.Fatalf("PoolStats while the session is held = %+v, want 1 open and in use", st)
	}
	return tok, f, id, release, held
}

// TestPoolExhaustion proves that with the only session busy, every other
// call fails with ErrPoolExhausted after the wait timeout without reaching
// the module or marking the token unavailable, and that once the busy call
// finishes (successfully) the pool serves calls again. The calls of a
// data-key mechanism the token lacks do not wait: they are refused with
// ErrMechanismUnsupported at once.
func TestPoolExhaustion(t *testing.T) {
	ctx := t.Context()
	tok, f, id, release, held := holdOnlySession(t, 50*time.Millisecond)
	type call struct {
		name string
		want error
		call func() error
	}
	var calls []call
	for _, m := range sealMechs {
		iv, want := m.iv(t), kindOn(tok, m.feature, ErrPoolExhausted)
		calls = append(calls,
			call{"seal " + m.feature, want, func() error { _, err := m.seal(ctx, tok, id, iv, recAAD, []byte("x")); return err }},
			call{"seal data key " + m.feature, want, func() error { _, _, err := m.sealDataKey(ctx, tok, id, 32, iv, recAAD); return err }},
			call{"unseal " + m.feature, want, func() error {
				_, err := m.unseal(ctx, tok, id, iv, recAAD, make([]byte, 2*cbcBlock+MACSize))
				return err
			}},
		)
	}
	calls = append(calls,
		call{"generate random", ErrPoolExhausted, func() error { _, err := tok.GenerateRandom(ctx, 16); return err }},
		call{"has key", ErrPoolExhausted, func() error { _, err := tok.HasKey(ctx, id); return err }},
	)
	module := []string{"EncryptInit", "DecryptInit", "SignInit", "VerifyInit", "GenerateRandom", "FindObjectsInit", "OpenSession"}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			before := counts(f, module)
			var err error
			returnsWithin(t, hangLimit, c.name, func() { err = c.call() })
			wantErrKind(t, c.name, err, c.want)
			if after := counts(f, module); !mapsEqual(before, after) {
				t.Fatalf("a call that got no session reached the module: %v, then %v", before, after)
			}
			if h := tok.Health(); !h.Ready {
				t.Fatalf("Health = %+v after pool exhaustion, want ready", h)
			}
		})
	}

	release()
	var err error
	returnsWithin(t, hangLimit, "the held call", func() { err = <-held })
	if err != nil {
		t.Fatalf("the held call: %v", err)
	}
	sealRoundTrip(t, tok, id)
	if _, err := tok.GenerateRandom(ctx, 16); err != nil {
		t.Fatalf("GenerateRandom after release: %v", err)
	}
	if st := tok.PoolStats(); st.Open != 1 || st.InUse != 0 {
		t.Fatalf("PoolStats at the end = %+v, want 1 open, 0 in use", st)
	}
}

// TestPoolWaitCancelled proves that a call waiting for a session honours
// its context: cancelled before, cancelled while waiting, or past its
// deadline, it returns long before the (one minute) wait timeout with an
// *Error that matches the context's error (the code reports it as
// ErrUnavailable), without marking the token unavailable. The call is a
// seal with the token's data-key mechanism.
func TestPoolWaitCancelled(t *testing.T) {
	tok, f, id, release, held := holdOnlySession(t, time.Minute)
	cases := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled before the call", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"cancelled while waiting", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline while waiting", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			encrypts := f.count("EncryptInit")
			var err error
			returnsWithin(t, hangLimit, "Seal with a cancelled context", func() {
				_, _, err = sealAny(ctx, tok, id, recAAD, []byte("x"))
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want it to match %v", err, tc.want)
			}
			wantErrKind(t, "Seal", err, ErrUnavailable)
			if f.count("EncryptInit") != encrypts {
				t.Fatal("a call that got no session reached the module")
			}
			if h := tok.Health(); !h.Ready || h.Recoveries != 0 {
				t.Fatalf("Health = %+v after a cancelled wait, want ready", h)
			}
		})
	}
	release()
	var err error
	returnsWithin(t, hangLimit, "the held call", func() { err = <-held })
	if err != nil {
		t.Fatalf("the held call: %v", err)
	}
	sealRoundTrip(t, tok, id)
}

// TestPoolSessionOpenFailure proves that a session the module refuses to
// open gives back its pool slot: with a pool of one, the next call gets a
// session instead of ErrPoolExhausted. A device-class refusal
// (CKR_SESSION_COUNT) also sends the token into recovery, another
// (CKR_HOST_MEMORY) does not. The calls seal with the token's data-key
// mechanism, whose first cryptographic call is C_EncryptInit.
func TestPoolSessionOpenFailure(t *testing.T) {
	cases := []struct {
		name     string
		code     uint
		recovers bool
	}{
		{"session count", pkcs11.CKR_SESSION_COUNT, true},
		{"host memory", pkcs11.CKR_HOST_MEMORY, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			tok, f := openFaulty(t, func(c *Config) {
				c.PoolSize = 1
				c.WaitTimeout = 50 * time.Millisecond
				c.RecoverInterval = recoverInterval
			})
			id := newVersionKey(t, tok)
			// Evict the only session, so that the retry must open one.
			f.inject("EncryptInit", pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID))
			f.inject("OpenSession", pkcs11.Error(tc.code))
			_, _, err := sealAny(ctx, tok, id, recAAD, []byte("x"))
			wantErrKind(t, "Seal", err, ErrUnavailable)
			var code pkcs11.Error
			if !errors.As(err, &code) || uint(code) != tc.code {
				t.Fatalf("err = %v, want code %v", err, pkcs11.Error(tc.code))
			}
			if f.pending("OpenSession") != 0 || f.pending("EncryptInit") != 0 {
				t.Fatal("the injected faults were not all met")
			}
			if tc.recovers {
				if h := waitReady(t, tok); h.Recoveries != 1 {
					t.Fatalf("Health = %+v, want ready after 1 recovery", h)
				}
			} else {
				if h := tok.Health(); !h.Ready || h.Recoveries != 0 {
					t.Fatalf("Health = %+v, want ready with no recovery", h)
				}
				if st := tok.PoolStats(); st.Open != 0 || st.InUse != 0 {
					t.Fatalf("PoolStats after the refused open = %+v, want nothing open", st)
				}
			}
			sealRoundTrip(t, tok, id)
			if st := tok.PoolStats(); st.Open != 1 || st.InUse != 0 {
				t.Fatalf("PoolStats = %+v, want 1 open, 0 in use", st)
			}
		})
	}
}

// TestConcurrentTokenObjects proves that master keys, portable versions and
// key pairs (of the type the token makes) made and destroyed from several
// goroutines at once all succeed and all exist afterwards. SoftHSM2 2.6.1
// answers CKR_GENERAL_ERROR now and then when sessions create token objects
// at the same instant; the Token serialises them (before it did, this
// failed on every run).
func TestConcurrentTokenObjects(t *testing.T) {
	tok := openToken(t)
	spec, pairs := testPairSpec(t, tok)
	portable := has(tok, "aes-cbc-hmac")
	const workers, each = 4, 12
	made := make(chan ObjectID, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id, err := NewObjectID()
				if err != nil {
					t.Error(err)
					return
				}
				label := "hsmkms/concurrent/" + id.String()
				switch {
				case w == 0 && i%4 == 0 && pairs:
					_, err = tok.CreateKeyPair(t.Context(), id, label, spec)
				case w == 1 && portable:
					err = tok.CreatePortableKey(t.Context(), id, label)
				default:
					err = tok.CreateMasterKey(t.Context(), id, label)
				}
				if err != nil {
					t.Errorf("worker %d, object %d: %v", w, i, err)
					continue
				}
				if i%3 == 2 {
					if err := tok.DestroyKey(t.Context(), id); err != nil {
						t.Errorf("worker %d, destroying object %d: %v", w, i, err)
					}
					continue
				}
				made <- id
			}
		})
	}
	wg.Wait()
	close(made)
	for id := range made {
		if has, err := tok.HasKey(t.Context(), id); err != nil || !has {
			t.Errorf("object %s: HasKey = %v, %v", id, has, err)
		}
	}
}

// unsealsTo unseals sealed with m and fails unless it gives want.
func unsealsTo(ctx context.Context, tok *Token, m sealMech, id ObjectID, iv, aad, sealed, want []byte) error {
	got, err := m.unseal(ctx, tok, id, iv, aad, sealed)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("unsealed %x, want %x", got, want)
	}
	return nil
}
