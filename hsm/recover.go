package hsm

import (
	"context"
	"time"
)

// lost marks the token unavailable and starts the recovery loop, once.
// Operations fail fast with ErrUnavailable until recovery succeeds.
func (t *Token) lost(cause error) {
	if !t.recovering.CompareAndSwap(false, true) {
		return
	}
	prev := t.health.Load()
	t.health.Store(&Health{Ready: false, Since: time.Now(), Reason: cause.Error(), Recoveries: prev.Recoveries})
	t.log.Error("token unavailable; recovering in the background", "label", t.cfg.TokenLabel, "error", cause)
	t.wg.Add(1)
	go t.recoverLoop()
}

// recoverLoop re-initialises the module at most once per RecoverInterval
// until the token is back or the Token is closed.
func (t *Token) recoverLoop() {
	defer t.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-t.closing:
			return
		case <-timer.C:
		}
		err := t.reconnect()
		if err == nil {
			// Cleared before Ready is published, so that a device error
			// seen right after recovery starts a new loop.
			t.recovering.Store(false)
			prev := t.health.Load()
			t.health.Store(&Health{Ready: true, Since: time.Now(), Recoveries: prev.Recoveries + 1})
			t.log.Info("token recovered", "label", t.info.Label, "serial", t.info.Serial, "slot", t.slot, "attempts", attempt)
			return
		}
		prev := t.health.Load()
		t.health.Store(&Health{Ready: false, Since: prev.Since, Reason: err.Error(), Recoveries: prev.Recoveries})
		if attempt == 1 || attempt%30 == 0 {
			t.log.Warn("token still unavailable", "label", t.cfg.TokenLabel, "attempts", attempt, "error", err)
		}
		timer.Reset(t.cfg.RecoverInterval)
	}
}

// reconnect finalises and initialises the module, then finds the token and
// logs in again. It waits for in-flight operations to finish first. Cached
// handles and sessions die with the module. It does nothing once Close has
// begun: a loop started by a call in flight during Close may get the lock
// after Close unloaded the module.
func (t *Token) reconnect() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reconnectLocked()
}

// reconnectLocked is reconnect with t.mu held for writing.
func (t *Token) reconnectLocked() error {
	select {
	case <-t.closing:
		return newError("re-initialise module", ErrClosed, nil)
	default:
	}
	t.pool = nil
	t.keys.reset()
	if err := t.m.reinitialize(); err != nil {
		return newError("re-initialise module", ErrUnavailable, err)
	}
	return t.connect()
}

// Reindex makes the module read the token afresh, by re-initialising it
// as recovery does, at most once per ReindexInterval; a call within the
// interval does nothing. Call it when a key another process made exists
// for certain (the store says so) but the token reports it missing:
// SoftHSM2 processes sharing a token directory index each other's new
// object files, and one that indexes a file while its maker is still
// writing it keeps it unreadable until the module is re-initialised
// (measured: one replica in three missed a key version the other two
// used, for seconds, in 1 of 12 runs of TestReplicas' concurrent
// rotations). In-flight operations finish first; new ones wait.
func (t *Token) Reindex(ctx context.Context) error {
	now := time.Now().UnixNano()
	last := t.reindexed.Load()
	if now-last < int64(t.cfg.ReindexInterval) || !t.reindexed.CompareAndSwap(last, now) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.lockWithin(ctx); err != nil {
		t.reindexed.CompareAndSwap(now, last) // nothing was re-read
		return newError("re-read the token", ErrUnavailable, err)
	}
	defer t.mu.Unlock()
	t.log.Info("re-reading the token: a key known to exist was not found", "label", t.cfg.TokenLabel)
	if err := t.reconnectLocked(); err != nil {
		t.lost(err)
		return err
	}
	return nil
}

// lockWithin takes t.mu for writing, or gives up when ctx ends. A re-read
// waits for the calls in flight; behind one that never returns (a stalled
// network HSM), a writer waiting in sync.RWMutex's Lock would hold every
// later call at its RLock whatever its deadline (found by review). Trying
// instead lets calls go on meanwhile.
func (t *Token) lockWithin(ctx context.Context) error {
	for wait := time.Millisecond; !t.mu.TryLock(); wait = min(2*wait, 50*time.Millisecond) {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
	return nil
}
