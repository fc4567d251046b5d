package server

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeProcs is a procs, not started, whose runtime changes are reported on
// channels.
func fakeProcs(t *testing.T) (*procs, <-chan struct{}, <-chan struct{}) {
	t.Helper()
	lowered, restored := make(chan struct{}, 16), make(chan struct{}, 16)
	p := &procs{
		setOne:  func() { lowered <- struct{}{} },
		restore: func() { restored <- struct{}{} },
		tick:    time.Millisecond,
		quiet:   3,
	}
	t.Cleanup(func() {
		if p.done == nil {
			return
		}
		select {
		case <-p.done:
		default:
			p.close()
		}
	})
	return p, lowered, restored
}

func await(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never happened", what)
	}
}

func TestProcsLowersWhileOneRequestAtATime(t *testing.T) {
	p, lowered, restored := fakeProcs(t)
	p.start()
	h := p.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	await(t, lowered, "lowering GOMAXPROCS with one request at a time")
	if !p.low.Load() {
		t.Fatal("lowered but not marked low")
	}

	// A second request in flight restores the default.
	release := make(chan struct{})
	var wg sync.WaitGroup
	entered := make(chan struct{}, 2)
	slow := p.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	for range 2 {
		wg.Go(func() { slow.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil)) })
	}
	await(t, entered, "the first request")
	await(t, entered, "the second request")
	await(t, restored, "restoring GOMAXPROCS with two requests in flight")
	close(release)
	wg.Wait()
	if got := p.inflight.Load(); got != 0 {
		t.Fatalf("%d requests in flight after all returned", got)
	}

	// Quiet again: lowered again; close then restores the default.
	await(t, lowered, "lowering again once quiet")
	p.close()
	await(t, restored, "restoring GOMAXPROCS at close")
}

func TestProcsStaysUpUnderConcurrentLoad(t *testing.T) {
	p, lowered, _ := fakeProcs(t)
	// Two requests always in flight: the controller never lowers, over
	// many more ticks than it needs to lower when quiet.
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	slow := p.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { slow.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil)) })
	}
	await(t, entered, "the first request")
	await(t, entered, "the second request")
	p.start()
	ticks := make(chan struct{})
	go func() {
		// 20 × quiet ticks of the controller's clock.
		tk := time.NewTicker(p.tick)
		defer tk.Stop()
		for range 20 * p.quiet {
			<-tk.C
		}
		close(ticks)
	}()
	<-ticks
	select {
	case <-lowered:
		t.Fatal("lowered GOMAXPROCS with two requests in flight")
	default:
	}
	close(release)
	wg.Wait()
}

func TestProcsPanickingHandlerLeavesNoneInFlight(t *testing.T) {
	p, _, _ := fakeProcs(t)
	h := p.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	func() {
		defer func() { _ = recover() }()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	}()
	if got := p.inflight.Load(); got != 0 {
		t.Fatalf("%d requests in flight after a handler panicked", got)
	}
}
