package auth

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// failureLimiter bounds what failed authentications cost, per source
// address, per claimed access key ID and for all sources together: each
// source or ID may fail burst times at once, then rate times a second, one
// audit record each, and all sources ten times that burst, then twenty
// times that rate. Past that budget a
// failure is still answered with its own error, but is only counted; the
// next audited failure of that source or ID carries the count.
//
// It never refuses a request: behind a NAT or a load balancer every client
// shares one source address, and a correctly signed request must not fail
// because others from that address did. Refusing the good traffic bought
// nothing anyway, since verifying a bad signature is already cheap (no
// token call: secrets are cached, unknown IDs cost one store read) and
// guessing a secret through HMAC-SHA256 is hopeless at any rate.
type failureLimiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time
	mu    sync.Mutex
	m     map[string]*failures
	// all bounds the audited failures of every source together: sources
	// are cheap (a botnet, IPv4 addresses by the thousand), and a flood of
	// audit records would fill the disk, after which every request fails
	// (an unwritten record fails its request). allOver is whether it has
	// refused a failure since the last audited one.
	all     *rate.Limiter
	allOver bool
}

// Every source together may have allBurstFactor times a source's burst of
// failures audited at once, then allRateFactor times its rate.
const (
	allBurstFactor = 10
	allRateFactor  = 20
)

// failures is the budget of one source or ID, and the failures it left
// unaudited since its last audited one.
type failures struct {
	lim        *rate.Limiter
	suppressed int
}

// maxFailureKeys bounds the table; when full, keys back at a full budget
// with nothing unreported are forgotten, then, if that frees nothing, keys
// with nothing unreported whatever their budget (a forgotten budget starts
// full: more is audited, never less), and only if all hold counts does the
// table start over (the counts are lost, never the budget of a future
// failure).
const maxFailureKeys = 10000

func newFailureLimiter(perSecond float64, burst int, now func() time.Time) *failureLimiter {
	return &failureLimiter{rate: rate.Limit(perSecond), burst: burst, now: now, m: map[string]*failures{},
		all: rate.NewLimiter(rate.Limit(perSecond*allRateFactor), burst*allBurstFactor)}
}

// verdict is what the limiter says of one failure.
type verdict struct {
	// audit is true when the failure gets its own audit record.
	audit bool
	// suppressed is, for an audited failure, how many failures of the same
	// source went unaudited since its last record, and suppressedID how
	// many claiming the same access key ID did, from any source. They are
	// kept apart so that a record never charges one source with another's
	// failures: a flood on an ID from one address must not read as the
	// work of the next address that mistypes it. Each failure is counted in
	// exactly one record.
	suppressed, suppressedID int
	// started is true for the first unaudited failure of a key after an
	// audited one: the moment to say so in the log.
	started bool
	// all is true when it is the budget of all sources together that is
	// spent (started then says so once for all of them).
	all bool
}

// fail records one failed authentication from source claiming id ("" when
// the request named no well-formed access key ID).
func (l *failureLimiter) fail(source, id string) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	src := l.entry("source:"+sourceKey(source), now)
	var key *failures
	if id != "" {
		key = l.entry("id:"+id, now)
	}
	srcOK, keyOK := src.lim.TokensAt(now) >= 1, key == nil || key.lim.TokensAt(now) >= 1
	if srcOK && keyOK && l.all.TokensAt(now) >= 1 {
		l.all.AllowN(now, 1)
		l.allOver = false
		src.lim.AllowN(now, 1)
		v := verdict{audit: true, suppressed: src.suppressed}
		src.suppressed = 0
		if key != nil {
			key.lim.AllowN(now, 1)
			v.suppressedID = key.suppressed
			key.suppressed = 0
		}
		return v
	}
	// Count the failure once, against the key that is out of budget; when
	// only the budget of all sources is, against the source, and the log
	// is told once for all of them.
	if srcOK && keyOK {
		src.suppressed++
		started := !l.allOver
		l.allOver = true
		return verdict{started: started, all: true}
	}
	over := src
	if srcOK {
		over = key
	}
	over.suppressed++
	return verdict{started: over.suppressed == 1}
}

// sourceKey is the budget a source address draws on: its IPv6 /64, since
// one host is commonly given a whole /64 and could otherwise take a fresh
// budget from each of its addresses; an IPv4 address (also written as
// IPv6) or anything not an address is its own.
func sourceKey(source string) string {
	a, err := netip.ParseAddr(source)
	if err != nil || !a.Is6() || a.Is4In6() {
		return source
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return source
	}
	return p.String()
}

func (l *failureLimiter) entry(k string, now time.Time) *failures {
	f, ok := l.m[k]
	if !ok {
		if len(l.m) >= maxFailureKeys {
			l.prune(now)
		}
		f = &failures{lim: rate.NewLimiter(l.rate, l.burst)}
		l.m[k] = f
	}
	return f
}

func (l *failureLimiter) prune(now time.Time) {
	for k, f := range l.m {
		if f.suppressed == 0 && f.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
	if len(l.m) < maxFailureKeys {
		return
	}
	for k, f := range l.m {
		if f.suppressed == 0 {
			delete(l.m, k)
		}
	}
	if len(l.m) >= maxFailureKeys {
		clear(l.m)
	}
}
