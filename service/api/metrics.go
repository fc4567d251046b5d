package api

import (
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Metrics is the server's Prometheus registry: requests by operation and
// outcome, request latency, HSM call latency, session pool use and seals
// per key version. It has its own registry, so that two servers in one
// process (tests) never share counters.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	hsmCalls *prometheus.HistogramVec
	seals    *prometheus.CounterVec
}

// PoolStats reports the session pool for the pool gauges.
type PoolStats func() (size, open, inUse int)

// NewMetrics makes the registry; pool feeds the session pool gauges.
func NewMetrics(pool PoolStats) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmkms_requests_total", Help: "API requests by operation and outcome (ok or the AWS error type).",
		}, []string{"operation", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hsmkms_request_duration_seconds", Help: "API request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"operation"}),
		hsmCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hsmkms_hsm_call_duration_seconds", Help: "Latency of operations on the HSM, by operation and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"operation", "outcome"}),
		seals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmkms_seals_total", Help: "AES-GCM seals made by this process, by key and version.",
		}, []string{"key_id", "version"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.hsmCalls, m.seals,
		// GOMAXPROCS is shown because hsmkms serve changes it with the load
		// (server.Config.AdaptProcs).
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/gomaxprocs:threads$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if pool != nil {
		gauge := func(name, help string, f func() int) prometheus.GaugeFunc {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
		}
		m.reg.MustRegister(
			gauge("hsmkms_hsm_sessions_max", "The session pool's size.", func() int { s, _, _ := pool(); return s }),
			gauge("hsmkms_hsm_sessions_open", "PKCS#11 sessions open now.", func() int { _, o, _ := pool(); return o }),
			gauge("hsmkms_hsm_sessions_in_use", "PKCS#11 sessions borrowed now.", func() int { _, _, u := pool(); return u }),
		)
	}
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *Metrics) observe(op, code string, d time.Duration) {
	if code == "" {
		code = "ok"
	}
	if op == "" {
		op = "unknown"
	}
	m.requests.WithLabelValues(op, code).Inc()
	m.latency.WithLabelValues(op).Observe(d.Seconds())
}

// ObserveHSM records one HSM operation; pass it as hsm.Config.Observe.
func (m *Metrics) ObserveHSM(op string, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.hsmCalls.WithLabelValues(op, outcome).Observe(d.Seconds())
}

// ObserveSeal counts one seal of a key version; pass it as
// service.Config.OnSeal.
func (m *Metrics) ObserveSeal(keyID string, version uint32) {
	m.seals.WithLabelValues(keyID, uitoa(version)).Inc()
}

func uitoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// OperationTotals are one operation's requests since the process started,
// and how many of them did not succeed (any outcome but ok).
type OperationTotals struct {
	Requests, Errors uint64
}

// RequestTotals reads the request counter, by operation. It only reads
// what requests already count (the status page samples it), so the request
// path pays nothing for it.
func (m *Metrics) RequestTotals() map[string]OperationTotals {
	out := map[string]OperationTotals{}
	readCounters(m.requests, func(labels map[string]string, n uint64) {
		t := out[labels["operation"]]
		t.Requests += n
		if labels["outcome"] != "ok" {
			t.Errors += n
		}
		out[labels["operation"]] = t
	})
	return out
}

// SealRef names a key version in SealTotals.
type SealRef struct {
	KeyID   string
	Version uint32
}

// SealTotals reads the seal counter: the seals this process made, by key
// version.
func (m *Metrics) SealTotals() map[SealRef]uint64 {
	out := map[SealRef]uint64{}
	readCounters(m.seals, func(labels map[string]string, n uint64) {
		v, err := strconv.ParseUint(labels["version"], 10, 32)
		if err != nil {
			return // never: ObserveSeal writes the label from a uint32
		}
		out[SealRef{KeyID: labels["key_id"], Version: uint32(v)}] += n
	})
	return out
}

// readCounters calls fn with the labels and value of every counter in c.
func readCounters(c *prometheus.CounterVec, fn func(labels map[string]string, n uint64)) {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	for metric := range ch {
		var d dto.Metric
		if err := metric.Write(&d); err != nil || d.GetCounter() == nil {
			continue
		}
		labels := make(map[string]string, len(d.GetLabel()))
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		fn(labels, uint64(d.GetCounter().GetValue()))
	}
}
