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
	l := newFailureLimiter(1, 20, func() time.Time { return now })
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

// TestFailureTableFullKeepsCounts proves that filling the table with
// sources that failed once does not wipe another source's count of
// unaudited failures: its next audited failure still carries them.
func TestFailureTableFullKeepsCounts(t *testing.T) {
	now := time.Now()
	l := newFailureLimiter(1, 20, func() time.Time { return now })
	const victim = "203.0.113.9"
	for range 20 + 500 {
		l.fail(victim, "")
	}
	for i := range maxFailureKeys + 10 {
		l.fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "")
	}
	now = now.Add(time.Second)
	v := l.fail(victim, "")
	if !v.audit || v.suppressed != 500 {
		t.Fatalf("the source's next failure: audited %v with %d counted, want audited with the 500", v.audit, v.suppressed)
	}
	if n := len(l.m); n > maxFailureKeys {
		t.Fatalf("the table holds %d keys, more than %d", n, maxFailureKeys)
	}
}

// TestFailureBudgetOfAllSources proves that a flood from many sources,
// each within its own budget, is audited at most ten bursts at once in
// all, that the first failure past that budget is the one the log is told
// of, and that each source's next audited failure carries its own count.
func TestFailureBudgetOfAllSources(t *testing.T) {
	now := time.Now()
	l := newFailureLimiter(1, 20, func() time.Time { return now })
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
	if !v.audit || v.suppressed != 4 {
		t.Fatalf("a source's next failure: audited %v with %d counted, want audited with its own 4", v.audit, v.suppressed)
	}
}

// TestFailureCountsKeptApart proves that a record never charges a source
// with others' failures: after many addresses flood an access key ID, each
// within its own budget, the next address to fail on that ID gets a record
// whose own count is zero and whose ID count holds the flood.
func TestFailureCountsKeptApart(t *testing.T) {
	now := time.Now()
	l := newFailureLimiter(1, 20, func() time.Time { return now })
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
