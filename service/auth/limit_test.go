package auth

import (
	"fmt"
	"testing"
	"time"
)

// TestSourceKey proves which addresses share a failure budget: an IPv6
// address shares its /64 (zone dropped), an IPv4 address and its
// IPv4-mapped form are each their own, and text that is no address is
// kept as it is.
func TestSourceKey(t *testing.T) {
	for _, tc := range []struct{ source, want string }{
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "::ffff:192.0.2.7"},
		{"@", "@"},
	} {
		if got := sourceKey(tc.source); got != tc.want {
			t.Errorf("sourceKey(%q) = %q, want %q", tc.source, got, tc.want)
		}
	}
}

// TestFailureBudgetPerIPv6Prefix proves that one host cannot take a fresh
// budget from each address of its /64: 100 failures from 100 addresses of
// one /64 are audited a burst at once, while another /64 has its own.
func TestFailureBudgetPerIPv6Prefix(t *testing.T) {
	now := time.Now()
	l := NewFailureBudget(1, 20, func() time.Time { return now })
	audited := 0
	for i := range 100 {
		if l.fail(fmt.Sprintf("2001:db8:0:1::%x", i+1), "").audit {
			audited++
		}
	}
	if audited != 20 {
		t.Fatalf("%d of 100 failures from one /64 audited, want the burst of 20", audited)
	}
	if !l.fail("2001:db8:0:2::1", "").audit {
		t.Fatal("the first failure from another /64 was not audited")
	}
}

// TestFailureTableFullKeepsCounts proves that sources failing once by the
// thousand neither fill the table nor wipe another source's count of
// unaudited failures: past the budget of all sources they store nothing,
// and the victim's next audited failure still carries its own 500.
func TestFailureTableFullKeepsCounts(t *testing.T) {
	now := time.Now()
	l := NewFailureBudget(1, 20, func() time.Time { return now })
	const victim = "203.0.113.9"
	for range 20 + 500 {
		l.fail(victim, "")
	}
	// Ten times the table, spread over 20 s: 200 + 20×20 of them can be
	// audited, the rest only counted.
	const oneOffs = 10 * maxFailureKeys
	for i := range oneOffs {
		if i%(oneOffs/20) == 0 {
			now = now.Add(time.Second)
		}
		l.fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "")
	}
	if n := len(l.m); n > 1+200+20*20 {
		t.Fatalf("the table holds %d keys after %d one-off sources, want at most the %d audited and the victim", n, oneOffs, 200+20*20)
	}
	now = now.Add(time.Second)
	v := l.fail(victim, "")
	if !v.audit || v.suppressed != 500 {
		t.Fatalf("the source's next failure: audited %v with %d counted, want audited with the 500", v.audit, v.suppressed)
	}
}

// TestFailureBudgetOfAllSources proves that a flood from many sources,
// each within its own budget, is audited at most ten bursts at once in
// all, that the first failure past that budget is the one the log is told
// of, and that the next audited failure carries the flood's count apart
// from its source's own.
func TestFailureBudgetOfAllSources(t *testing.T) {
	now := time.Now()
	l := NewFailureBudget(1, 20, func() time.Time { return now })
	audited, started := 0, 0
	for i := range 1000 {
		v := l.fail(fmt.Sprintf("192.0.2.%d", i%250), "")
		if v.audit {
			audited++
		}
		if v.started {
			started++
			if !v.all || audited != 200 {
				t.Fatalf("started after %d audited, all %v; want once, as the 200 of all sources are spent", audited, v.all)
			}
		}
	}
	if audited != 200 || started != 1 {
		t.Fatalf("%d of 1000 failures from 250 sources audited, the log told %d times; want 200 and once", audited, started)
	}
	now = now.Add(time.Second)
	v := l.fail("192.0.2.249", "")
	if !v.audit || v.suppressed != 0 || v.suppressedAll != 800 {
		t.Fatalf("a source's next failure: audited %v, its own count %d, all sources' %d; want audited, 0, 800",
			v.audit, v.suppressed, v.suppressedAll)
	}
}

// TestFloodOfAllSourcesLoggedOnce proves that a sustained flood from many
// sources, faster than the budget of all sources refills, tells the log
// once, not each time a token trickles back and one more failure is
// audited; that a flood after the budget is full again is told anew; and
// that every failure is audited or counted in exactly one record.
func TestFloodOfAllSourcesLoggedOnce(t *testing.T) {
	now := time.Now()
	l := NewFailureBudget(1, 20, func() time.Time { return now })
	sent, audited, counted, started := 0, 0, 0, 0
	flood := func(seconds int) {
		// 100 a second, five times what all sources may have audited.
		for i := range seconds * 100 {
			now = now.Add(10 * time.Millisecond)
			v := l.fail(fmt.Sprintf("198.18.%d.%d", i/250%250, i%250), "")
			sent++
			if v.audit {
				audited++
				counted += v.suppressed + v.suppressedID + v.suppressedAll
			}
			if v.started {
				started++
			}
		}
	}
	flood(60)
	if started != 1 {
		t.Fatalf("a 60 s flood told the log %d times, want once", started)
	}
	if max := 200 + 20*60; audited > max {
		t.Fatalf("%d failures of a 60 s flood audited, want at most %d", audited, max)
	}
	now = now.Add(10 * time.Second) // the budget of all sources is full again
	flood(5)
	if started != 2 {
		t.Fatalf("a second flood, after the budget refilled, told the log %d times in all, want twice", started)
	}
	now = now.Add(10 * time.Second)
	if v := l.fail("203.0.113.1", ""); v.audit {
		counted += v.suppressed + v.suppressedAll
		audited++
		sent++
	}
	if audited+counted != sent {
		t.Fatalf("%d audited + %d counted != %d failures", audited, counted, sent)
	}
}

// TestFailureBudgetShared proves that Verifiers given one FailureBudget
// draw on it together: failures through one spend the budget of all
// sources that the other sees.
func TestFailureBudgetShared(t *testing.T) {
	now := time.Now()
	budget := NewFailureBudget(1, 20, func() time.Time { return now })
	kms, xks := New(Config{Failures: budget, Now: func() time.Time { return now }}),
		New(Config{Service: "kms-xks-proxy", Failures: budget, Now: func() time.Time { return now }})
	for i := range 200 {
		if audit, _, _ := kms.RefusedUnverified(fmt.Sprintf("192.0.2.%d", i)); !audit {
			t.Fatalf("failure %d through the first verifier not audited", i)
		}
	}
	if audit, _, _ := xks.RefusedUnverified("198.51.100.1"); audit {
		t.Fatal("a failure through the second verifier was audited after the first spent the budget of all sources")
	}
	now = now.Add(time.Second)
	if audit, _, all := xks.RefusedUnverified("198.51.100.1"); !audit || all != 1 {
		t.Fatalf("the second verifier's failure a second later: audited %v with %d of all sources counted, want audited with 1", audit, all)
	}
}

// TestFailureCountsKeptApart proves that a record never charges a source
// with others' failures: after many addresses flood an access key ID, each
// within its own budget, the next address to fail on that ID gets a record
// whose own count is zero and whose ID count holds the flood.
func TestFailureCountsKeptApart(t *testing.T) {
	now := time.Now()
	l := NewFailureBudget(1, 20, func() time.Time { return now })
	const id = "AKIAEXAMPLEEXAMPLE01"
	for i := range 20 + 300 {
		l.fail(fmt.Sprintf("198.51.%d.%d", 100+i/250, i%250), id)
	}
	now = now.Add(time.Second)
	v := l.fail("203.0.113.1", id)
	if !v.audit || v.suppressed != 0 || v.suppressedID != 300 {
		t.Fatalf("another source's failure on the ID: audited %v, source count %d, ID count %d; want audited, 0, 300",
			v.audit, v.suppressed, v.suppressedID)
	}
}

// TestFailureTableResetKeepsCounts proves that when every key of a full
// table holds a count and the table starts over, the counts are not lost:
// the next audited failure carries them all as failures of all sources.
func TestFailureTableResetKeepsCounts(t *testing.T) {
	now := time.Now()
	l := NewFailureBudget(1, 1, func() time.Time { return now })
	// Fill the table with sources that each hold one count: one audited
	// failure (enters the table), one counted; spread in time so that the
	// budget of all sources lets each first failure be audited.
	for i := range maxFailureKeys {
		now = now.Add(time.Second)
		src := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		if !l.fail(src, "").audit {
			t.Fatalf("source %d's first failure was not audited", i)
		}
		l.fail(src, "")
	}
	if n := len(l.m); n != maxFailureKeys {
		t.Fatalf("the table holds %d keys, want it full at %d", n, maxFailureKeys)
	}
	now = now.Add(time.Second)
	v := l.fail("203.0.113.7", "")
	if !v.audit || v.suppressedAll != maxFailureKeys {
		t.Fatalf("the failure that reset the table: audited %v with %d of all sources counted, want the %d counts of the table",
			v.audit, v.suppressedAll, maxFailureKeys)
	}
}
