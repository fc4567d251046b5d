package hsm

import (
	"context"
	"time"

	"github.com/miekg/pkcs11"
)

// pool is a bounded set of sessions on one slot. A PKCS#11 session serves
// one goroutine at a time, so each operation borrows one.
//
// The pool has no lock of its own: get, put and evict run while the Token's
// read lock is held, and reset and closeAll while its write lock is held, so
// the channels are never swapped under a borrower.
type pool struct {
	p    PKCS11
	slot uint
	wait time.Duration
	// idle holds open sessions that no one is using.
	idle chan pkcs11.SessionHandle
	// open holds one token per open session, idle or borrowed.
	open chan struct{}
}

const sessionFlags = pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION

func newPool(p PKCS11, slot uint, size int, wait time.Duration) *pool {
	return &pool{
		p:    p,
		slot: slot,
		wait: wait,
		idle: make(chan pkcs11.SessionHandle, size),
		open: make(chan struct{}, size),
	}
}

// get borrows an idle session, opens a new one while the pool is below its
// size, or waits for one up to the wait timeout.
func (p *pool) get(ctx context.Context) (pkcs11.SessionHandle, error) {
	select {
	case s := <-p.idle:
		return s, nil
	default:
	}
	select {
	case s := <-p.idle:
		return s, nil
	case p.open <- struct{}{}:
		return p.openSession()
	default:
	}
	timer := time.NewTimer(p.wait)
	defer timer.Stop()
	select {
	case s := <-p.idle:
		return s, nil
	case p.open <- struct{}{}:
		return p.openSession()
	case <-timer.C:
		return 0, ErrPoolExhausted
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *pool) openSession() (pkcs11.SessionHandle, error) {
	s, err := p.p.OpenSession(p.slot, sessionFlags)
	if err != nil {
		<-p.open
		return 0, err
	}
	return s, nil
}

// put returns a healthy session with no operation active.
func (p *pool) put(s pkcs11.SessionHandle) { p.idle <- s }

// evict closes a session that failed with a session or device error; closing
// also ends any operation left active on it.
func (p *pool) evict(s pkcs11.SessionHandle) {
	_ = p.p.CloseSession(s)
	<-p.open
}

// size is the number of sessions open now, idle or borrowed.
func (p *pool) size() int { return len(p.open) }

// inUse is the number of sessions borrowed now.
func (p *pool) inUse() int { return len(p.open) - len(p.idle) }

// closeAll closes the idle sessions. Borrowed ones are closed by the module's
// finalisation.
func (p *pool) closeAll() {
	for {
		select {
		case s := <-p.idle:
			_ = p.p.CloseSession(s)
			<-p.open
		default:
			return
		}
	}
}
