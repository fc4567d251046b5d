// Package server owns a running hsmkms server: it opens the token and the
// store, reconciles them, makes sure a root principal exists, and serves
// the API over HTTP(S) until it is shut down, finishing in-flight requests
// and finalising the PKCS#11 module.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/auth"
	"github.com/hsmkms/hsmkms/service/status"
)

// Config is a server's configuration.
type Config struct {
	// Listen is the address to listen on, e.g. 127.0.0.1:8080 (port 0 picks
	// a free one).
	Listen string
	// DataDir holds the embedded store's file and, on first start,
	// root-credentials.
	DataDir string
	// Store names the store (see StoreConfig): "" for the embedded file
	// under DataDir, or a postgres:// URL for a database that several
	// replicas share. StorePassword replaces the URL's password.
	Store, StorePassword string
	// The token: module and its C_Initialize parameters, label (and
	// serial), PIN, pool size.
	ModulePath, InitParams  string
	TokenLabel, TokenSerial string
	PIN                     hsm.PIN
	PoolSize                int
	// Region and Account make ARNs.
	Region, Account string
	// AcceptedHosts, when set, are the names clients reach this server by
	// (host or host:port), on both APIs: a request signed for another
	// host is refused even with a good signature (auth.Config.Hosts).
	AcceptedHosts []string
	// TLSCert and TLSKey are PEM files; without them the server speaks plain
	// HTTP, which it allows only on a loopback address unless InsecureHTTP.
	TLSCert, TLSKey string
	InsecureHTTP    bool
	// InsecureToken serves from a token whose self-test found that it lets
	// unextractable keys out (hsm.Capabilities.ExtractFault), which Start
	// otherwise refuses: for development tokens only.
	InsecureToken bool
	// Audit receives the audit trail (JSON lines).
	Audit io.Writer
	// Logger receives the server's logs.
	Logger hclog.Logger
	// MetricsListen, when set, is the address of a second listener that
	// serves GET /metrics (Prometheus) and the status page, GET /status
	// (package status), and nothing else, in plain HTTP. Both name key IDs
	// and count seals per key version: that is for the operator's eyes, so
	// the API listener never serves them and the CLI's default is a
	// loopback address. With MetricsOptional a failure to
	// listen there is logged, not fatal (the CLI's default port may be
	// taken by another server on the host).
	MetricsListen   string
	MetricsOptional bool
	// AdaptProcs lowers GOMAXPROCS to one while at most one request is in
	// flight and restores the runtime's default when more arrive (see
	// procs). It changes the whole process: hsmkms serve sets it unless
	// GOMAXPROCS is set; servers inside another program leave it off.
	AdaptProcs bool
	// XKS configures the XKS proxy API's listener (none by default).
	XKS XKSConfig
	// wrapHSM, set only by tests, wraps the token the service uses, to
	// inject faults into the real token's calls.
	wrapHSM func(service.HSM) service.HSM
	// failureClock, set only by tests, is the clock of the failure budget
	// the listeners share, so that a test can spend it and refill it
	// without waiting.
	failureClock func() time.Time
	// RootAccessKeyID and RootSecret, when set, are the root principal's
	// credentials; otherwise a first start generates them and writes them to
	// DataDir/root-credentials.
	RootAccessKeyID, RootSecret string
}

// RootCredentialsFile is the file a first start writes generated root
// credentials to, in AWS shared-credentials form.
const RootCredentialsFile = "root-credentials"

// Server is a running hsmkms server.
type Server struct {
	cfg      Config
	log      hclog.Logger
	tok      *hsm.Token
	store    OpenedStore
	audit    *audit.Logger
	svc      *service.Service
	http     *http.Server
	listener net.Listener
	done     chan error
	// metrics serves /metrics on its own listener, when there is one.
	metrics         *http.Server
	metricsListener net.Listener
	metricsDone     chan error
	// status is the status page on the metrics listener, and stopStatus
	// stops its sampler (status.go).
	status     *status.Page
	stopStatus func()
	// xks serves the XKS proxy API on its own listener, when there is one.
	xks         *http.Server
	xksListener net.Listener
	xksDone     chan error
	// kmsCert and xksCert are the listeners' key pairs, which ReloadTLS
	// and ReloadXKSTLS swap; nil for a listener without TLS.
	kmsCert, xksCert *certificate
	// procs adapts GOMAXPROCS to the load, with Config.AdaptProcs.
	procs *procs
	// failures is the audit budget of failed authentications that the KMS
	// and XKS listeners share, so that its bound for all sources together
	// is the process's, as documented, not each listener's.
	failures *auth.FailureBudget
	// RootCredentials is the path of the root credentials file this start
	// wrote, or "" when none was written.
	RootCredentials string
}

// Start opens everything and starts serving in the background.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Audit == nil {
		cfg.Audit = io.Discard
	}
	if cfg.DataDir == "" {
		return nil, errors.New("server: a data directory is required")
	}
	if err := checkTLS(cfg); err != nil {
		return nil, err
	}
	if err := checkXKS(cfg); err != nil {
		return nil, err
	}
	// One audit logger for the API and the service: one writer of lines.
	s := &Server{cfg: cfg, log: cfg.Logger, done: make(chan error, 1), audit: audit.New(cfg.Audit),
		failures: auth.NewFailureBudget(0, 0, cfg.failureClock)}
	defer func() {
		if err != nil {
			s.closeBackends()
		}
	}()
	metrics := api.NewMetrics(func() (int, int, int) {
		if s.tok == nil {
			return 0, 0, 0
		}
		st := s.tok.PoolStats()
		return st.Size, st.Open, st.InUse
	})
	if err := s.openBackends(ctx, metrics); err != nil {
		return nil, err
	}
	if err := s.ensureRoot(ctx); err != nil {
		return nil, err
	}
	handler := api.New(api.Config{
		Service: s.svc,
		Verifier: auth.New(auth.Config{Credentials: s.svc, Region: cfg.Region, Hosts: cfg.AcceptedHosts, Failures: s.failures,
			Logger: cfg.Logger.Named("auth")}),
		Logger: cfg.Logger.Named("api"),
		// /readyz is unauthenticated: it says which part is down, not
		// why (found by review: the token's reason named PKCS#11 calls,
		// return codes and the token label). The log and the status page
		// on the metrics listener say why.
		Ready: func() (bool, string) {
			if h := s.tok.Health(); !h.Ready {
				return false, ReasonTokenUnavailable
			}
			if ok, _ := s.store.Health(); !ok {
				return false, ReasonStoreUnavailable
			}
			return true, ""
		},
		Metrics: metrics,
	})
	if err := s.listenMetrics(metrics); err != nil {
		return nil, err
	}
	if cfg.AdaptProcs {
		// One controller for both listeners: it counts the requests in
		// flight on either.
		s.procs = newProcs()
	}
	if err := s.listenXKS(); err != nil {
		s.shutdownMetrics(ctx)
		return nil, err
	}
	if err := s.listen(handler); err != nil {
		s.shutdownMetrics(ctx)
		s.shutdownXKS(ctx)
		return nil, err
	}
	return s, nil
}

func checkTLS(cfg Config) error {
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("server: give both --tls-cert and --tls-key, or neither")
	}
	if cfg.TLSCert != "" || cfg.InsecureHTTP {
		return nil
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen address %q: %w", cfg.Listen, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("server: refusing plain HTTP on %s, which is not a loopback address: give --tls-cert and --tls-key, or --insecure-http", cfg.Listen)
}

// openBackends opens the token, the store and the service, and reconciles
// the store with the token.
func (s *Server) openBackends(ctx context.Context, metrics *api.Metrics) error {
	cfg := s.cfg
	var err error
	s.tok, err = hsm.Open(ctx, hsm.Config{ModulePath: cfg.ModulePath, InitParams: cfg.InitParams, TokenLabel: cfg.TokenLabel,
		TokenSerial: cfg.TokenSerial, PIN: cfg.PIN, PoolSize: cfg.PoolSize, Logger: cfg.Logger,
		Observe: metrics.ObserveHSM})
	if err != nil {
		return err
	}
	if err := s.checkFeatures(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if s.store, err = OpenStore(ctx, StoreConfig{URL: cfg.Store, Password: cfg.StorePassword,
		DataDir: cfg.DataDir, Logger: cfg.Logger.Named("store")}); err != nil {
		return err
	}
	var h service.HSM = s.tok
	if cfg.wrapHSM != nil {
		h = cfg.wrapHSM(h)
	}
	s.svc, err = service.New(service.Config{Store: s.store.Store, HSM: h, Region: cfg.Region, Account: cfg.Account,
		Logger: cfg.Logger, Audit: s.audit, OnSeal: metrics.ObserveSeal, SharedStore: s.store.Shared})
	if err != nil {
		return err
	}
	// Before Reconcile, which would settle the store's keys against a
	// token they may not belong to.
	if err := s.svc.CheckInternalKey(ctx); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if _, err := s.svc.Reconcile(ctx); err != nil {
		return fmt.Errorf("server: reconciling the store with the token: %w", err)
	}
	s.svc.Start()
	s.log.Info("key service started", "replica", s.svc.ReplicaID(), "shared_store", s.store.Shared)
	return nil
}

func (s *Server) listen(h http.Handler) error {
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.listener = l
	if s.procs != nil {
		h = s.procs.wrap(h)
	}
	s.http = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	if s.cfg.TLSCert != "" {
		cert, err := newCertificate(TLSFiles{Cert: s.cfg.TLSCert, Key: s.cfg.TLSKey})
		if err != nil {
			l.Close()
			return fmt.Errorf("server: loading the TLS key pair: %w", err)
		}
		s.kmsCert = cert
		s.http.TLSConfig = &tls.Config{GetCertificate: cert.get, MinVersion: tls.VersionTLS12}
		l = tls.NewListener(l, s.http.TLSConfig)
	}
	if s.procs != nil {
		s.procs.start()
	}
	go func() { s.done <- s.http.Serve(l) }()
	s.log.Info("serving", "address", l.Addr().String(), "tls", s.cfg.TLSCert != "")
	return nil
}

// listenMetrics starts the metrics listener, if one is configured.
func (s *Server) listenMetrics(m *api.Metrics) error {
	if s.cfg.MetricsListen == "" {
		return nil
	}
	l, err := net.Listen("tcp", s.cfg.MetricsListen)
	if err != nil && s.cfg.MetricsOptional {
		s.log.Warn("not serving /metrics: cannot listen on the default address; give --metrics-listen", "address", s.cfg.MetricsListen, "error", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	page, err := s.startStatus(m)
	if err != nil {
		l.Close()
		return err
	}
	// The page answers other methods itself, with 405: it is read-only.
	mux.Handle("/status", page)
	s.metricsListener, s.metricsDone = l, make(chan error, 1)
	s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: s.log.Named("metrics").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	go func() { s.metricsDone <- s.metrics.Serve(l) }()
	s.log.Info("serving /metrics", "address", l.Addr().String(), "status_page", "http://"+l.Addr().String()+"/status")
	return nil
}

// MetricsAddr is the address /metrics is served at, or "" when it is not.
func (s *Server) MetricsAddr() string {
	if s.metricsListener == nil {
		return ""
	}
	return s.metricsListener.Addr().String()
}

func (s *Server) shutdownMetrics(ctx context.Context) error {
	if s.metrics == nil {
		return nil
	}
	err := s.metrics.Shutdown(ctx)
	if serr := <-s.metricsDone; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		err = errors.Join(err, serr)
	}
	s.stopStatus()
	return err
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Endpoint is the URL clients use.
func (s *Server) Endpoint() string {
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + s.Addr()
}

// Token is the server's token (for tests and diagnostics).
func (s *Server) Token() *hsm.Token { return s.tok }

// Shutdown stops accepting requests, lets in-flight ones finish (until ctx
// ends), then closes the service, the store and the token, finalising the
// module.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		err = errors.Join(err, serr)
	}
	if s.procs != nil {
		s.procs.close()
	}
	return errors.Join(err, s.shutdownXKS(ctx), s.shutdownMetrics(ctx), s.closeBackends())
}

func (s *Server) closeBackends() error {
	var errs []error
	if s.svc != nil {
		s.svc.Close()
	}
	if s.store.Store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.tok != nil {
		errs = append(errs, s.tok.Close())
	}
	return errors.Join(errs...)
}

// checkFeatures refuses a token hsmkms cannot serve from, naming what it
// lacks, and logs each optional feature the token does not allow.
func (s *Server) checkFeatures() error {
	caps := s.tok.Capabilities()
	if caps.ExtractFault != "" && s.cfg.InsecureToken {
		s.log.Warn("serving from a token that lets unextractable keys out, as asked (--insecure-token): its master keys are not protected", "fault", caps.ExtractFault)
		caps.ExtractFault = ""
	}
	if err := caps.Serviceable(); err != nil {
		return err
	}
	for _, f := range caps.Features() {
		switch {
		case f.Supported:
		case f.Name == "aes-gcm":
			s.log.Warn("the token lacks AES-GCM: new symmetric keys use aes-cbc-hmac (AES-CBC and HMAC-SHA-256 on the token)", "lacks", f.Lacks)
		default:
			s.log.Warn("the token does not allow a feature; requests that need it are refused", "feature", f.Name, "lacks", f.Lacks)
		}
	}
	return nil
}

// The reasons /readyz gives when the server is not ready.
const (
	ReasonTokenUnavailable = "the HSM token is unavailable (the server log and status page say why)"
	ReasonStoreUnavailable = "the key store is unavailable (the server log and status page say why)"
)
