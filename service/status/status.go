// Package status owns the server's status page, GET /status: a Snapshot
// of the running server (the token and its session pool, keys by state,
// the next rotations and deletions, request and error rates per operation
// over the last minutes, seal counts against each version's budget) and
// its rendering as one self-contained HTML page with inline SVG charts:
// no script, no external asset, no build step.
//
// The page is read-only and names keys and their use, the same facts as
// the Prometheus metrics, so the server serves it beside them on the
// metrics listener (loopback by default) and never on the API listener.
// Request rates cost the request path nothing: a Sampler reads the
// counters the API keeps anyway, once per bucket.
package status

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api"
	"github.com/hsmkms/hsmkms/service/store"
)

// Config wires a Page.
type Config struct {
	// Token is the token the server uses (*hsm.Token), and Label the label
	// it was chosen by, shown when the token does not answer.
	Token service.TokenInspector
	Label string
	// Store holds the key records.
	Store store.Store
	// Requests reads the request counters (api.Metrics.RequestTotals) and
	// Seals the seal counters (api.Metrics.SealTotals).
	Requests func() map[string]api.OperationTotals
	Seals    func() map[api.SealRef]uint64
	// SealRotateAt and SealLimit are every version's seal budget
	// (service.Service.SealThresholds).
	SealRotateAt, SealLimit uint64
	// Bucket is how often the request counters are sampled (default 30 s)
	// and Buckets how many samples are kept (default 30: 15 minutes).
	Bucket  time.Duration
	Buckets int
	// CacheFor is how long a snapshot is served again (default 2 s), so
	// that a storm of refreshes reads the store and the token once.
	CacheFor time.Duration
	// Timeout bounds the gathering of one snapshot (default 10 s).
	Timeout time.Duration
	// Listed is how many keys each list shows (default 10; seal use shows
	// twice as many versions).
	Listed int
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger hclog.Logger
}

func (c *Config) setDefaults() error {
	if c.Token == nil || c.Store == nil {
		return errors.New("status: a token and a store are required")
	}
	if c.Bucket <= 0 {
		c.Bucket = 30 * time.Second
	}
	if c.Buckets <= 0 {
		c.Buckets = 30
	}
	if c.CacheFor <= 0 {
		c.CacheFor = 2 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Listed <= 0 {
		c.Listed = 10
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return nil
}

// Page is the status page: an http.Handler answering GET (and HEAD) with
// the page, and every other method with 405.
type Page struct {
	cfg     Config
	log     hclog.Logger
	sampler *Sampler
	tmpl    *template.Template
	// gate lets one request gather at a time: the others wait for it and
	// are served its snapshot. cached is the last snapshot, guarded by
	// gate.
	gate   chan struct{}
	cached *Snapshot
}

// New returns the page. Run starts its sampler.
func New(cfg Config) (*Page, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	tmpl, err := parseTemplate()
	if err != nil {
		return nil, err
	}
	return &Page{cfg: cfg, log: cfg.Logger.Named("status"), gate: make(chan struct{}, 1), tmpl: tmpl,
		sampler: NewSampler(cfg.Requests, cfg.Bucket, cfg.Buckets)}, nil
}

// Run samples the request counters every Config.Bucket until ctx ends.
func (p *Page) Run(ctx context.Context) { p.sampler.Run(ctx) }

// Sample closes a bucket of request counts now, as Run does every
// Config.Bucket: tests step time with it.
func (p *Page) Sample() { p.sampler.Sample() }

// Snapshot returns what the page shows now: the cached snapshot if it is
// younger than Config.CacheFor, else a new one. It fails only when ctx
// ends first; what cannot be read is named in Snapshot.Problems.
func (p *Page) Snapshot(ctx context.Context) (Snapshot, error) {
	select {
	case p.gate <- struct{}{}:
	case <-ctx.Done():
		return Snapshot{}, fmt.Errorf("status: waiting for another request's snapshot: %w", ctx.Err())
	}
	defer func() { <-p.gate }()
	now := p.cfg.Now()
	if p.cached != nil && now.Sub(p.cached.Taken) < p.cfg.CacheFor && !now.Before(p.cached.Taken) {
		return *p.cached, nil
	}
	// The snapshot is shared by every request that waited for it: one
	// whose client went away must not leave the others a failed one.
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timeout)
	defer cancel()
	snap := p.gather(gctx, now)
	p.cached = &snap
	return snap, nil
}

// ServeHTTP answers GET and HEAD with the page.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the status page is read-only: GET it", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.Timeout)
	defer cancel()
	snap, err := p.Snapshot(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	if err := p.tmpl.Execute(&buf, newView(snap)); err != nil {
		p.log.Error("rendering the status page", "error", err)
		http.Error(w, "the status page could not be rendered; see the server's log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The page has no script and loads nothing: say so, so that a browser
	// refuses whatever might ever be injected into it.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(buf.Bytes())
}
