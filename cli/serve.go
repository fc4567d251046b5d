package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hsmkms/hsmkms/service/server"
	"github.com/urfave/cli/v2"
)

// shutdownGrace bounds how long in-flight requests may take to finish.
const shutdownGrace = 30 * time.Second

// defaultMetricsListen is where /metrics is served unless told otherwise:
// loopback, because the metrics name key IDs and count their use, and the
// port Prometheus' exporters conventionally take for new software.
const defaultMetricsListen = "127.0.0.1:9464"

func serveFlags() []cli.Flag {
	env := func(name string) []string { return []string{"HSMKMS_" + name} }
	flags := append(optional(tokenFlags()), devFlags()...)
	return append(append(flags,
		&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", EnvVars: env("LISTEN"), Usage: "address to listen on"},
		&cli.StringFlag{Name: "data-dir", Value: "/var/lib/hsmkms", EnvVars: env("DATA_DIR"), Usage: "directory of the embedded store and the first root credentials"},
		&cli.StringFlag{Name: "region", Value: "us-east-1", EnvVars: env("REGION"), Usage: "region in key ARNs"},
		&cli.StringFlag{Name: "account-id", Value: "000000000000", EnvVars: env("ACCOUNT_ID"), Usage: "12-digit account in key ARNs"},
		&cli.StringSliceFlag{Name: "accepted-host", EnvVars: env("ACCEPTED_HOST"),
			Usage: "host name (or host:port) clients reach this server by, on both APIs (repeatable): a request signed for another host is refused even with a good signature, so that it cannot be replayed here from another deployment that knows the same secret; default any"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: env("TLS_CERT"), Usage: "PEM certificate (required off loopback unless --insecure-http)"},
		&cli.StringFlag{Name: "tls-key", EnvVars: env("TLS_KEY"), Usage: "PEM private key of --tls-cert"},
		&cli.BoolFlag{Name: "insecure-http", EnvVars: env("INSECURE_HTTP"), Usage: "allow plain HTTP on a non-loopback address"},
		&cli.BoolFlag{Name: "insecure-token", EnvVars: env("INSECURE_TOKEN"),
			Usage: "serve from a token that fails the start-up self-test of unextractable keys (NSS's softoken): for development only, its master keys can be wrapped out"},
		&cli.StringFlag{Name: "audit-log", Value: "-", EnvVars: env("AUDIT_LOG"), Usage: "audit trail file (JSON lines), or - for standard output"},
		&cli.StringFlag{Name: "metrics-listen", Value: defaultMetricsListen, EnvVars: env("METRICS_LISTEN"),
			Usage: "address of the plain-HTTP listener serving GET /metrics and the status page GET /status, or off; both name keys, so keep it on loopback or a private network"},
		&cli.StringFlag{Name: "xks-listen", EnvVars: env("XKS_LISTEN"),
			Usage: "address of the XKS proxy API listener, for AWS KMS external key stores (off unless given)"},
		&cli.StringFlag{Name: "xks-tls-cert", EnvVars: env("XKS_TLS_CERT"), Usage: "PEM certificate of the XKS listener (required off loopback)"},
		&cli.StringFlag{Name: "xks-tls-key", EnvVars: env("XKS_TLS_KEY"), Usage: "PEM private key of --xks-tls-cert"},
		&cli.StringFlag{Name: "xks-client-ca", EnvVars: env("XKS_CLIENT_CA"),
			Usage: "PEM CA certificates a client certificate must chain to on the XKS listener (mutual TLS; AWS KMS's chain to Amazon Trust Services)"},
		&cli.StringFlag{Name: "xks-client-subject", EnvVars: env("XKS_CLIENT_SUBJECT"),
			Usage: "subject common name the XKS client certificate must have, e.g. cks.kms.eu-west-1.amazonaws.com"},
		&cli.StringSliceFlag{Name: "xks-region", EnvVars: env("XKS_REGION"),
			Usage: "AWS region an XKS request's signature may be scoped to (repeatable; default any)"},
	), storeFlags()...)
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the hsmkms server (AWS KMS API)",
		Description: "Serves the AWS KMS JSON API, signed with SigV4, backed by a PKCS#11 token.\n" +
			"The root principal comes from HSMKMS_ROOT_ACCESS_KEY_ID and HSMKMS_ROOT_SECRET_ACCESS_KEY\n" +
			"at every start: a changed secret replaces the stored one (the old one stops working),\n" +
			"a changed access key ID replaces the root principal. Without them, a first start\n" +
			"generates root's credentials and writes them to <data-dir>/root-credentials.\n" +
			"Prometheus metrics are served on --metrics-listen only, never on the API listener.\n" +
			"--config FILE (TOML or YAML) gives any of these flags, by name; flags and variables win over it.\n" +
			"SIGHUP re-reads it and applies the log level and the TLS key pairs (also loaded anew from\n" +
			"their files), and reopens the audit log; other changes wait for a restart.",
		Flags:  append([]cli.Flag{configFlag()}, serveFlags()...),
		Action: serve,
	}
}

func serve(c *cli.Context) error {
	setServerGC()
	settings, err := loadSettings(c)
	if err != nil {
		return err
	}
	// SIGHUP is caught from here on, its default being to end the
	// process; one that comes while the token opens is handled once the
	// server is up.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, trail, dev, err := serverConfig(c)
	if err != nil {
		return err
	}
	defer trail.close()
	if dev != nil {
		defer dev.remove()
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "hsmkms: serving the KMS API at %s\n", srv.Endpoint())
	if x := srv.XKSEndpoint(); x != "" {
		fmt.Fprintf(c.App.ErrWriter, "hsmkms: serving the XKS proxy API at %s\n", x)
	}
	if dev != nil {
		printDevEnv(c.App.Writer, c.App.ErrWriter, srv.Endpoint(), c.String("region"), cfg, dev)
	}
	if srv.RootCredentials != "" {
		fmt.Fprintf(c.App.ErrWriter, "hsmkms: created the root principal; its credentials are in %s (shown nowhere else)\n", srv.RootCredentials)
	}
	// The token is open and the listeners accept: tell systemd
	// (Type=notify); without NOTIFY_SOCKET this does nothing. Reloads
	// start after it, so that a SIGHUP during start-up cannot send
	// RELOADING=1 and READY=1 before the start's own READY=1.
	notify(c, daemon.SdNotifyReady)
	reloads := &reloader{log: cfg.Logger, settings: settings, trail: trail, srv: srv,
		notify: func(state string) { notify(c, state) }}
	stopReloads := reloads.run(hup)
	defer stopReloads()
	<-ctx.Done()
	stopReloads()
	notify(c, daemon.SdNotifyStopping)
	fmt.Fprintln(c.App.ErrWriter, "hsmkms: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// serverGCPercent is the garbage collector's target for hsmkms serve when
// the environment sets no GOGC. The server's live heap is small (a few MB)
// and every request allocates about 10 KB, so with Go's default of 100 it
// collects some twenty times a second under load; 400 trades ≈ 10 MB of
// peak RSS (≈ 40 → 50 MiB) for ≈ 6 % of its CPU per request (measured in
// one run at 16 clients on SoftHSM2: 182 → 172 µs for GenerateDataKey,
// 171 → 160 µs for Decrypt; README "Sizing").
const serverGCPercent = 400

// setServerGC applies serverGCPercent unless GOGC is set.
func setServerGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serverGCPercent)
	}
}

// adaptProcs says whether serve may lower GOMAXPROCS while it has at most
// one request in flight (server.Config.AdaptProcs): yes, unless the
// environment sets GOMAXPROCS, which then holds.
func adaptProcs() bool {
	_, set := os.LookupEnv("GOMAXPROCS")
	return !set
}

// serverConfig reads the flags; the returned func closes the audit file.
// With --dev it sets up the dev token and data dir first.
func serverConfig(c *cli.Context) (server.Config, *auditTrail, *devState, error) {
	cfg := server.Config{
		Listen:          c.String("listen"),
		DataDir:         c.String("data-dir"),
		ModulePath:      c.String("pkcs11-module"),
		InitParams:      c.String("pkcs11-init-params"),
		TokenLabel:      c.String("token-label"),
		TokenSerial:     c.String("token-serial"),
		PoolSize:        c.Int("pool-size"),
		Region:          c.String("region"),
		Account:         c.String("account-id"),
		TLSCert:         c.String("tls-cert"),
		TLSKey:          c.String("tls-key"),
		InsecureHTTP:    c.Bool("insecure-http"),
		InsecureToken:   c.Bool("insecure-token"),
		Logger:          logger(c),
		MetricsListen:   metricsListen(c),
		AdaptProcs:      adaptProcs(),
		MetricsOptional: !c.IsSet("metrics-listen"),
		XKS: server.XKSConfig{Listen: c.String("xks-listen"), TLSCert: c.String("xks-tls-cert"), TLSKey: c.String("xks-tls-key"),
			ClientCA: c.String("xks-client-ca"), ClientSubject: c.String("xks-client-subject"), Regions: c.StringSlice("xks-region"),
			Model: "hsmkms " + Version},
		RootAccessKeyID: os.Getenv("HSMKMS_ROOT_ACCESS_KEY_ID"),
		RootSecret:      os.Getenv("HSMKMS_ROOT_SECRET_ACCESS_KEY"),
	}
	var err error
	if cfg.AcceptedHosts, err = acceptedHosts(c); err != nil {
		return cfg, nil, nil, err
	}
	sc, err := storeConfig(c)
	if err != nil {
		return cfg, nil, nil, err
	}
	cfg.Store, cfg.StorePassword = sc.URL, sc.Password
	auditPath := c.String("audit-log")
	var dev *devState
	if c.Bool("dev") {
		var err error
		if dev, err = setUpDev(c, &cfg); err != nil {
			return cfg, nil, nil, err
		}
		if !c.IsSet("audit-log") {
			auditPath = dev.auditPath()
		}
	} else {
		for _, f := range []string{"pkcs11-module", "token-label"} {
			if c.String(f) == "" {
				return cfg, nil, nil, cli.Exit("hsmkms: serve needs --"+f+" (or --dev for a private SoftHSM2 token)", ExitUsage)
			}
		}
		pin, err := loadPIN(c)
		if err != nil {
			return cfg, nil, nil, err
		}
		cfg.PIN = pin
	}
	audit, closeAudit, reopen, err := openAudit(auditPath, c.App.Writer)
	if err != nil {
		if dev != nil {
			dev.remove()
		}
		return cfg, nil, nil, err
	}
	cfg.Audit = audit
	return cfg, &auditTrail{path: auditPath, close: closeAudit, reopen: reopen}, dev, nil
}

// acceptedHosts is --accepted-host, each a host name or address with an
// optional port, as a Host header carries it: a URL or a path is refused,
// since it would never match and every request would fail.
func acceptedHosts(c *cli.Context) ([]string, error) {
	hosts := c.StringSlice("accepted-host")
	for _, h := range hosts {
		name, port := h, ""
		if n, p, err := net.SplitHostPort(h); err == nil {
			name, port = n, p
		}
		name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
		bad := name == "" || strings.ContainsAny(name, "/@?#[] \t") || strings.Contains(name, "://")
		if n, err := strconv.Atoi(port); port != "" && (err != nil || n < 1 || n > 65535) {
			bad = true
		}
		if bad {
			return nil, cli.Exit(fmt.Sprintf("hsmkms: --accepted-host %q is not a host name or host:port as a client's Host header carries it (kms.example.com, kms.example.com:8443)", h), ExitUsage)
		}
	}
	return hosts, nil
}

// metricsListen is --metrics-listen, "" when it is off.
func metricsListen(c *cli.Context) string {
	if a := c.String("metrics-listen"); a != "off" {
		return a
	}
	return ""
}

// optional returns flags with Required cleared.
func optional(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok {
			sf.Required = false
		}
	}
	return flags
}

// auditTrail is serve's audit output: how to close it and reopen it.
type auditTrail struct {
	path   string
	close  func()
	reopen func() error
}

// openAudit opens the audit trail: standard output for "-", or the file,
// which reopen opens anew by its path (SIGHUP, for log rotation).
func openAudit(path string, stdout io.Writer) (w io.Writer, closeFn func(), reopen func() error, err error) {
	if path == "-" || path == "" {
		return stdout, func() {}, func() error { return nil }, nil
	}
	f, err := openAuditFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	return f, f.close, f.reopen, nil
}

// notify sends state to the service manager when it asked for it
// (NOTIFY_SOCKET); a failure is logged, never fatal.
func notify(c *cli.Context, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		logger(c).Warn("telling the service manager failed", "state", state, "error", err)
	}
}
