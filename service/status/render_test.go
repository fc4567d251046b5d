package status

import (
	"testing"
	"time"
)

// TestFormats: numbers get thousands separators and durations a readable
// unit, rounded, so that a date 7 days ahead set a moment ago says 7 days.
func TestFormats(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 65536: "65,536", 1 << 31: "2,147,483,648"} {
		if got := number(n); got != want {
			t.Errorf("number(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		0:                               "0 s",
		30 * time.Second:                "30 s",
		15 * time.Minute:                "15 min",
		3 * time.Hour:                   "3 h",
		7*24*time.Hour - 3*time.Second:  "7 days",
		365*24*time.Hour - time.Minute:  "365 days",
		90 * time.Second:                "90 s",
		2*24*time.Hour - 10*time.Minute: "2 days",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := until(-2 * time.Hour); got != "due 2 h ago" {
		t.Errorf("until(-2h) = %q", got)
	}
}
