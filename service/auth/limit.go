package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// failureLimiter rate-limits failed authentications per source address: a
// source may fail burst times at once and then rate times a second; past
// that, its requests are refused before any signature is computed, which
// makes guessing secrets slow and keeps a flood of bad requests cheap.
type failureLimiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

// maxSources bounds the table; when full, sources that are back at a full
// budget are forgotten.
const maxSources = 10000

func newFailureLimiter(perSecond float64, burst int) *failureLimiter {
	return &failureLimiter{rate: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// blocked reports whether source has no failure budget left.
func (l *failureLimiter) blocked(source string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[source]
	return ok && lim.Tokens() < 1
}

// fail spends one failure of source's budget.
func (l *failureLimiter) fail(source string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[source]
	if !ok {
		if len(l.m) >= maxSources {
			l.prune()
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.m[source] = lim
	}
	lim.Allow()
}

func (l *failureLimiter) prune() {
	now := time.Now()
	for s, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, s)
		}
	}
}
