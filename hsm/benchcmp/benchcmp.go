// Package benchcmp measures two implementations of one operation side by
// side: it runs them interleaved in rounds within one benchmark, so that a
// shared, noisy machine slows both alike, and reports each rate and their
// ratio. The hsm and service benchmarks use it to compare a layer with the
// layer below it.
package benchcmp

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Round is how many operations each side runs before the other takes its
// turn.
const Round = 256

// Op makes the operation one worker runs; it is called once per worker,
// outside the timed part, so that it can open sessions or build inputs.
type Op func(b *testing.B, worker int) func() error

// Side is one of the two implementations.
type Side struct {
	Name string // a short metric prefix, e.g. "raw" or "hsm"
	Op   Op
}

// Compare runs base and cand at each number of goroutines in a sub-benchmark
// and reports <base>-op/s, <cand>-op/s and <cand>/<base>, the fraction of
// the base rate the candidate keeps.
//
// The rates are totals over the run. The ratio is the median over rounds
// of the ratio within a round's pair of turns, which ran back to back: a
// burst of load from the machine's other tenants slows a turn or two of
// one side, which would move a ratio of totals by several percent and
// does not move the median.
func Compare(b *testing.B, base, cand Side, goroutines ...int) {
	for _, g := range goroutines {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			baseFns, candFns := make([]func() error, g), make([]func() error, g)
			for w := range g {
				baseFns[w], candFns[w] = base.Op(b, w), cand.Op(b, w)
			}
			var baseTime, candTime time.Duration
			var ratios []float64
			b.ResetTimer()
			for done, turn := 0, 0; done < b.N; turn++ {
				n := min(Round, b.N-done)
				var bt, ct time.Duration
				// Alternate who goes first, so that drift favours neither.
				if turn%2 == 0 {
					bt = run(b, baseFns, n)
					ct = run(b, candFns, n)
				} else {
					ct = run(b, candFns, n)
					bt = run(b, baseFns, n)
				}
				baseTime, candTime = baseTime+bt, candTime+ct
				ratios = append(ratios, bt.Seconds()/ct.Seconds())
				done += n
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/baseTime.Seconds(), base.Name+"-op/s")
			b.ReportMetric(float64(b.N)/candTime.Seconds(), cand.Name+"-op/s")
			b.ReportMetric(median(ratios), cand.Name+"/"+base.Name)
			b.ReportMetric(0, "ns/op") // both sides together: meaningless
		})
	}
}

// Measure runs side alone at each number of goroutines in a sub-benchmark
// and reports <name>-op/s: a rate to compare with one measured elsewhere
// (the server benchmark's bound takes the raw token's rate from here).
func Measure(b *testing.B, side Side, goroutines ...int) {
	for _, g := range goroutines {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			fns := make([]func() error, g)
			for w := range g {
				fns[w] = side.Op(b, w)
			}
			b.ResetTimer()
			d := run(b, fns, b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/d.Seconds(), side.Name+"-op/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// run runs n operations spread over len(fns) goroutines and returns the
// wall time they took.
func run(b *testing.B, fns []func() error, n int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, fn := range fns {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := fn(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// median returns the middle value of xs (the mean of the two middle ones
// for an even count); xs is sorted in place.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
