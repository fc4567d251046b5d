package status

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hsmkms/hsmkms/service/api"
)

// Sampler turns the request counters the API already keeps into counts
// per fixed time bucket, so that the page can show recent rates without
// the request path doing any work for it: every bucket it reads the
// counters once and keeps the difference from the last reading in a ring.
type Sampler struct {
	read   func() map[string]api.OperationTotals
	bucket time.Duration

	// mu guards what follows: Sample and Rates may run at once.
	mu   sync.Mutex
	last map[string]api.OperationTotals
	// ring holds the samples; next is the slot the next one goes in and
	// filled how many slots hold one.
	ring   []sample
	next   int
	filled int
}

// sample is one bucket: the requests and errors counted in it, by
// operation (operations without any are left out).
type sample map[string]api.OperationTotals

// NewSampler returns a sampler of read keeping buckets samples, taken
// every bucket by Run. It reads the counters once now, so that the first
// sample counts only what came after.
func NewSampler(read func() map[string]api.OperationTotals, bucket time.Duration, buckets int) *Sampler {
	if read == nil {
		read = func() map[string]api.OperationTotals { return nil }
	}
	return &Sampler{read: read, bucket: bucket, last: read(), ring: make([]sample, max(buckets, 1))}
}

// Sample closes a bucket: it records what the counters gained since the
// last sample, dropping the oldest bucket once the ring is full. Run calls
// it every bucket; tests call it to step time without waiting.
func (s *Sampler) Sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Reading under the lock keeps two samples from interleaving their
	// readings, which would count some requests twice.
	now := s.read()
	delta := sample{}
	for op, total := range now {
		before := s.last[op]
		d := api.OperationTotals{Requests: gained(total.Requests, before.Requests), Errors: gained(total.Errors, before.Errors)}
		if d.Requests > 0 || d.Errors > 0 {
			delta[op] = d
		}
	}
	s.last = now
	s.ring[s.next] = delta
	s.next = (s.next + 1) % len(s.ring)
	s.filled = min(s.filled+1, len(s.ring))
}

// gained is how much a counter rose. Counters only rise within a process;
// one that fell was reset, and all it holds is new.
func gained(now, before uint64) uint64 {
	if now < before {
		return now
	}
	return now - before
}

// Run samples every bucket until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.bucket)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample()
		}
	}
}

// OperationRate is one operation's requests over the sampled window.
type OperationRate struct {
	Operation string
	// Requests and Errors count each bucket of the window, oldest first;
	// buckets from before the first sample count zero.
	Requests, Errors []uint64
	// TotalRequests and TotalErrors add up the window.
	TotalRequests, TotalErrors uint64
}

// Rates returns every operation with requests in the window, busiest
// first, and how much time the samples taken so far cover (less than the
// window until the ring is full).
func (s *Sampler) Rates() ([]OperationRate, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.ring)
	byOp := map[string]*OperationRate{}
	for i := range n {
		// The oldest sample is at next once the ring is full; before that
		// the first n-filled positions are empty.
		for op, d := range s.ring[(s.next+i)%n] {
			r := byOp[op]
			if r == nil {
				r = &OperationRate{Operation: op, Requests: make([]uint64, n), Errors: make([]uint64, n)}
				byOp[op] = r
			}
			r.Requests[i], r.Errors[i] = d.Requests, d.Errors
			r.TotalRequests += d.Requests
			r.TotalErrors += d.Errors
		}
	}
	out := make([]OperationRate, 0, len(byOp))
	for _, r := range byOp {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b OperationRate) int {
		return cmp.Or(cmp.Compare(b.TotalRequests, a.TotalRequests), cmp.Compare(a.Operation, b.Operation))
	})
	return out, time.Duration(s.filled) * s.bucket
}
