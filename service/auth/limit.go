package auth

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// FailureBudget bounds what failed authentications cost, per source
// address, per claimed access key ID and for all sources together: each
// source or ID may fail burst times at once, then rate times a second, one
// audit record each, and all sources ten times that burst, then twenty
// times that rate. Past that budget a failure is still answered with its
// own error, but is only counted; the next audited failure carries the
// count: of its source, of its ID, or of all sources, each in its own
// field, so that no record charges one party with another's failures.
//
// It never refuses a request: behind a NAT or a load balancer every client
// shares one source address, and a correctly signed request must not fail
// because others from that address did. Refusing the good traffic bought
// nothing anyway, since verifying a bad signature is already cheap (no
// token call: secrets are cached, unknown IDs cost one store read) and
// guessing a secret through HMAC-SHA256 is hopeless at any rate.
//
// Verifiers given the same FailureBudget (Config.Failures) draw on it
// together: a server's KMS and XKS listeners share one, so that the bound
// for all sources holds for the process, not for each listener.
type FailureBudget struct {
	rate  rate.Limit
	burst int
	now   func() time.Time
	mu    sync.Mutex
	// m holds the sources and IDs that were audited recently or are past
	// their own budget. A failure that only the budget of all sources
	// refuses stores nothing here: sources are cheap (a botnet, IPv4
	// addresses by the thousand), and a table they could fill at will
	// would be pruned of the counts it keeps for others.
	m map[string]*failures
	// all bounds the audited failures of every source together: a flood
	// of audit records would fill the disk, after which every request
	// fails (an unwritten record fails its request). allSuppressed counts
	// the failures it alone refused since the last audited one. allOver is
	// whether a flood of all sources is on: set by the first failure it
	// refuses, cleared only once the budget is full again, so that the log
	// is told once a flood, not each time a token trickles back.
	all           *rate.Limiter
	allSuppressed int
	allOver       bool
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
// table start over (their budgets are forgotten, and their counts move to
// the count of all sources, so that none is lost). Since a key enters the
// table only through an audited failure, which the budget of all sources
// meters, filling it with counts takes hours of a flood at that budget's
// full rate.
const maxFailureKeys = 10000

// NewFailureBudget returns a budget of burst audited failures at once per
// source and per ID, then perSecond a second (defaults 20 and 1); now is
// its clock (default time.Now).
func NewFailureBudget(perSecond float64, burst int, now func() time.Time) *FailureBudget {
	if perSecond <= 0 {
		perSecond = 1
	}
	if burst <= 0 {
		burst = 20
	}
	if now == nil {
		now = time.Now
	}
	return &FailureBudget{rate: rate.Limit(perSecond), burst: burst, now: now, m: map[string]*failures{},
		all: rate.NewLimiter(rate.Limit(perSecond*allRateFactor), burst*allBurstFactor)}
}

// verdict is what the budget says of one failure.
type verdict struct {
	// audit is true when the failure gets its own audit record.
	audit bool
	// suppressed is, for an audited failure, how many failures of the same
	// source went unaudited since its last record; suppressedID how many
	// claiming the same access key ID did, from any source; suppressedAll
	// how many, from any source, only the budget of all sources left
	// unaudited since the last audited failure of any. They are kept apart
	// so that a record never charges one source with another's failures:
	// a flood on an ID from one address must not read as the work of the
	// next address that mistypes it. Each failure is counted in exactly
	// one record.
	suppressed, suppressedID, suppressedAll int
	// started is true for the first unaudited failure of a key after an
	// audited one, or of a flood of all sources: the moment to say so in
	// the log.
	started bool
	// all is true when it is the budget of all sources together that is
	// spent.
	all bool
}

// fail records one failed authentication from source claiming id ("" when
// the request named no well-formed access key ID).
func (l *FailureBudget) fail(source, id string) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.allOver && l.all.TokensAt(now) >= float64(l.all.Burst()) {
		l.allOver = false
	}
	srcKey, idKey := "source:"+sourceKey(source), ""
	if id != "" {
		idKey = "id:" + id
	}
	src, key := l.m[srcKey], l.m[idKey]
	srcOK := src == nil || src.lim.TokensAt(now) >= 1
	keyOK := key == nil || key.lim.TokensAt(now) >= 1
	switch {
	case srcOK && keyOK && l.all.TokensAt(now) >= 1:
		return l.audited(now, srcKey, idKey)
	case srcOK && keyOK:
		l.allSuppressed++
		started := !l.allOver
		l.allOver = true
		return verdict{started: started, all: true}
	}
	// Count the failure once, against the key that is out of budget (it
	// is in the table: only an audited failure spends a budget).
	over := src
	if srcOK {
		over = key
	}
	over.suppressed++
	return verdict{started: over.suppressed == 1}
}

// audited spends one failure of the budgets of all sources, of srcKey and
// of idKey (when not ""), and hands their counts to the failure's record.
func (l *FailureBudget) audited(now time.Time, srcKey, idKey string) verdict {
	l.all.AllowN(now, 1)
	// Prune first: counts a reset drops go to allSuppressed, which this
	// record then carries, its own source's and ID's among them.
	if len(l.m)+2 > maxFailureKeys {
		l.prune(now)
	}
	v := verdict{audit: true, suppressedAll: l.allSuppressed}
	l.allSuppressed = 0
	src := l.entry(srcKey)
	src.lim.AllowN(now, 1)
	v.suppressed, src.suppressed = src.suppressed, 0
	if idKey != "" {
		key := l.entry(idKey)
		key.lim.AllowN(now, 1)
		v.suppressedID, key.suppressed = key.suppressed, 0
	}
	return v
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

// entry is the table's budget of k, made full if it has none.
func (l *FailureBudget) entry(k string) *failures {
	f, ok := l.m[k]
	if !ok {
		f = &failures{lim: rate.NewLimiter(l.rate, l.burst)}
		l.m[k] = f
	}
	return f
}

func (l *FailureBudget) prune(now time.Time) {
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
		// Every key holds a count: start over, and keep the counts as
		// failures of all sources, so that none goes unreported.
		for _, f := range l.m {
			l.allSuppressed += f.suppressed
		}
		clear(l.m)
	}
}
