package api

import (
	"testing"
	"time"
)

// TestRequestTotals: the accessor the status page samples reads the
// request counter as counted, per operation, an error being any outcome
// but ok.
func TestRequestTotals(t *testing.T) {
	m := NewMetrics(nil)
	for range 3 {
		m.observe("Encrypt", "", time.Millisecond)
	}
	m.observe("Encrypt", "NotFoundException", time.Millisecond)
	m.observe("Decrypt", "KMSInternalException", time.Millisecond)
	m.observe("Decrypt", "DependencyTimeoutException", time.Millisecond)
	got := m.RequestTotals()
	want := map[string]OperationTotals{"Encrypt": {Requests: 4, Errors: 1}, "Decrypt": {Requests: 2, Errors: 2}}
	if len(got) != len(want) || got["Encrypt"] != want["Encrypt"] || got["Decrypt"] != want["Decrypt"] {
		t.Fatalf("RequestTotals() = %+v, want %+v", got, want)
	}
}

// TestSealTotals: the seal counter read back by key version.
func TestSealTotals(t *testing.T) {
	m := NewMetrics(nil)
	const key = "1234abcd-12ab-34cd-56ef-1234567890ab"
	m.ObserveSeal(key, 1)
	m.ObserveSeal(key, 2)
	m.ObserveSeal(key, 2)
	got := m.SealTotals()
	if len(got) != 2 || got[SealRef{key, 1}] != 1 || got[SealRef{key, 2}] != 2 {
		t.Fatalf("SealTotals() = %+v, want v1 1 and v2 2", got)
	}
}
