package server

import (
	"net/http"
	"runtime"
	"sync/atomic"
	"time"
)

// procs lowers GOMAXPROCS to one while the server has at most one request
// in flight, and gives the runtime its default back as soon as a second
// request arrives.
//
// Why: while a P is idle, the scheduler wakes a thread for every goroutine
// made runnable (net/http's background read of each request body, its
// abort when the response is written, the netpoller's wake-ups), and that
// thread spins, finds little and sleeps again: a futex wake, two context
// switches and a spin for each. With one client there is nothing for a
// second P to do but that. Measured on 2 cores at one client (make bench's
// GenerateDataKey): server CPU 230 → 170 µs per request and p50 0.26 →
// 0.21 ms with one P. With more requests in flight the second P does real
// work and the default wins (at 16 clients one P is about 12% slower), so
// the server switches back at once.
type procs struct {
	inflight atomic.Int64
	// busy is set when a request found another in flight since the last
	// tick.
	busy atomic.Bool
	// low is true while GOMAXPROCS is 1.
	low atomic.Bool
	// wake tells run that a second request arrived while low.
	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	// setOne and restore change the runtime (runtime.GOMAXPROCS(1) and
	// runtime.SetDefaultGOMAXPROCS); tests count calls instead.
	setOne, restore func()
	// tick is how often run looks at the load; quiet is the number of ticks
	// in a row with at most one request in flight before it lowers.
	tick  time.Duration
	quiet int
}

// newProcs returns the controller for this process, or nil when there is
// nothing to adapt (one CPU) .
func newProcs() *procs {
	if runtime.GOMAXPROCS(0) < 2 {
		return nil
	}
	return &procs{
		setOne:  func() { runtime.GOMAXPROCS(1) },
		restore: runtime.SetDefaultGOMAXPROCS,
		tick:    20 * time.Millisecond,
		quiet:   5,
	}
}

// wrap counts h's requests in flight.
func (p *procs) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.inflight.Add(1)
		defer p.inflight.Add(-1)
		if n > 1 {
			if !p.busy.Load() {
				p.busy.Store(true)
			}
			if p.low.Load() {
				select {
				case p.wake <- struct{}{}:
				default: // a wake-up is pending already
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// start runs the controller until close.
func (p *procs) start() {
	p.wake = make(chan struct{}, 1)
	p.stop = make(chan struct{})
	p.done = make(chan struct{})
	go p.run()
}

func (p *procs) run() {
	defer close(p.done)
	t := time.NewTicker(p.tick)
	defer t.Stop()
	calm := 0
	for {
		select {
		case <-p.stop:
			p.raise()
			return
		case <-p.wake:
			p.raise()
			calm = 0
		case <-t.C:
			if p.busy.Swap(p.inflight.Load() > 1) {
				p.raise()
				calm = 0
				continue
			}
			if calm++; calm >= p.quiet && !p.low.Load() {
				// Marked first: a request arriving meanwhile must find it
				// low and wake run, which then raises it again.
				p.low.Store(true)
				p.setOne()
			}
		}
	}
}

// raise gives the runtime its default GOMAXPROCS back, if lowered.
func (p *procs) raise() {
	if p.low.Load() {
		p.restore()
		p.low.Store(false)
	}
}

// close stops the controller and leaves GOMAXPROCS at its default.
func (p *procs) close() {
	close(p.stop)
	<-p.done
}
