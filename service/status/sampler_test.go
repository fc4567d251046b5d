package status

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/api"
)

// counters stands in for the API's request counters: totals since start
// that only the test moves.
type counters struct {
	mu     sync.Mutex
	totals map[string]api.OperationTotals
}

func newCounters() *counters { return &counters{totals: map[string]api.OperationTotals{}} }

// add counts requests of op, errors of them failed.
func (c *counters) add(op string, requests, errors uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.totals[op]
	t.Requests += requests
	t.Errors += errors
	c.totals[op] = t
}

func (c *counters) set(op string, t api.OperationTotals) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.totals[op] = t
}

func (c *counters) read() map[string]api.OperationTotals {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.totals)
}

// rateOf returns op's rate, failing the test when op has none.
func rateOf(t *testing.T, rates []OperationRate, op string) OperationRate {
	t.Helper()
	for _, r := range rates {
		if r.Operation == op {
			return r
		}
	}
	t.Fatalf("no rate for %s in %+v", op, rates)
	return OperationRate{}
}

// TestSamplerCountsPerBucket: each sample holds what the counters gained
// since the one before, in the newest bucket; what was counted before the
// sampler started is not in the window.
func TestSamplerCountsPerBucket(t *testing.T) {
	c := newCounters()
	c.add("Encrypt", 50, 5) // before the sampler: not in any bucket
	s := NewSampler(c.read, 30*time.Second, 4)
	if rates, covered := s.Rates(); len(rates) != 0 || covered != 0 {
		t.Fatalf("before any sample: rates %+v, covered %v; want none and 0", rates, covered)
	}
	c.add("Encrypt", 3, 1)
	c.add("Decrypt", 2, 0)
	s.Sample()
	c.add("Encrypt", 7, 0)
	s.Sample()
	rates, covered := s.Rates()
	if covered != time.Minute {
		t.Errorf("covered %v after two samples of 30 s, want 1m", covered)
	}
	if ops := []string{rates[0].Operation, rates[1].Operation}; len(rates) != 2 || !slices.Equal(ops, []string{"Encrypt", "Decrypt"}) {
		t.Fatalf("operations %+v, want Encrypt then Decrypt (busiest first)", rates)
	}
	enc := rateOf(t, rates, "Encrypt")
	if !slices.Equal(enc.Requests, []uint64{0, 0, 3, 7}) || !slices.Equal(enc.Errors, []uint64{0, 0, 1, 0}) {
		t.Errorf("Encrypt buckets requests %v errors %v, want [0 0 3 7] and [0 0 1 0]", enc.Requests, enc.Errors)
	}
	if enc.TotalRequests != 10 || enc.TotalErrors != 1 {
		t.Errorf("Encrypt totals %d requests %d errors, want 10 and 1", enc.TotalRequests, enc.TotalErrors)
	}
	if dec := rateOf(t, rates, "Decrypt"); !slices.Equal(dec.Requests, []uint64{0, 0, 2, 0}) || dec.TotalRequests != 2 {
		t.Errorf("Decrypt %+v, want requests [0 0 2 0]", dec)
	}
}

// TestSamplerWindowSlides: once the ring is full the oldest bucket goes,
// and an operation without requests in the window is no longer listed.
func TestSamplerWindowSlides(t *testing.T) {
	c := newCounters()
	s := NewSampler(c.read, time.Second, 3)
	c.add("Sign", 4, 0)
	s.Sample()
	c.add("Verify", 1, 1)
	s.Sample()
	s.Sample()
	if r := rateOf(t, mustRates(s), "Sign"); !slices.Equal(r.Requests, []uint64{4, 0, 0}) {
		t.Fatalf("Sign buckets %v, want [4 0 0]", r.Requests)
	}
	s.Sample() // Sign's bucket leaves the window
	rates, covered := s.Rates()
	if covered != 3*time.Second {
		t.Errorf("covered %v with a full ring of three 1 s buckets, want 3s", covered)
	}
	if len(rates) != 1 || rates[0].Operation != "Verify" || !slices.Equal(rates[0].Requests, []uint64{1, 0, 0}) {
		t.Fatalf("rates %+v, want only Verify with [1 0 0]", rates)
	}
}

// TestSamplerCounterReset: a counter that fell was reset (a new registry);
// what it holds now is all new, never a negative or huge difference.
func TestSamplerCounterReset(t *testing.T) {
	c := newCounters()
	c.add("Encrypt", 100, 10)
	s := NewSampler(c.read, time.Second, 2)
	c.set("Encrypt", api.OperationTotals{Requests: 6, Errors: 2})
	s.Sample()
	if r := rateOf(t, mustRates(s), "Encrypt"); r.TotalRequests != 6 || r.TotalErrors != 2 {
		t.Fatalf("after a reset to 6 requests and 2 errors: %+v", r)
	}
}

func mustRates(s *Sampler) []OperationRate {
	rates, _ := s.Rates()
	return rates
}

// TestSamplerRunStopsWithContext: Run returns once its context ends.
func TestSamplerRunStopsWithContext(t *testing.T) {
	s := NewSampler(newCounters().read, time.Hour, 2)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of its context ending")
	}
}
