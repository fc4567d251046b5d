package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/service/auth"
	"github.com/hsmkms/hsmkms/service/xks"
)

// XKSConfig configures the XKS proxy API listener (package service/xks):
// its own address and TLS, so that it can sit behind other network rules
// than the KMS API's.
type XKSConfig struct {
	// Listen is its address; "" serves no XKS proxy API.
	Listen string
	// TLSCert and TLSKey are PEM files; without them it speaks plain HTTP,
	// only on a loopback address unless Config.InsecureHTTP.
	TLSCert, TLSKey string
	// ClientCA, when set, is a PEM file of the CAs a client certificate
	// must chain to (mutual TLS): a handshake without one that does fails.
	// ClientSubject, when set too, is the subject common name it must
	// have (AWS KMS's is cks.kms.<region>.amazonaws.com).
	ClientCA, ClientSubject string
	// Regions, when set, are the only regions a request's credential scope
	// may name; otherwise any region.
	Regions []string
	// Model is reported as xksProxyModel.
	Model string
}

func checkXKS(cfg Config) error {
	x := cfg.XKS
	if x.Listen == "" {
		if x.TLSCert != "" || x.TLSKey != "" || x.ClientCA != "" || x.ClientSubject != "" {
			return errors.New("server: the XKS TLS settings need --xks-listen")
		}
		return nil
	}
	if (x.TLSCert == "") != (x.TLSKey == "") {
		return errors.New("server: give both --xks-tls-cert and --xks-tls-key, or neither")
	}
	if x.ClientSubject != "" && x.ClientCA == "" {
		return errors.New("server: --xks-client-subject needs --xks-client-ca")
	}
	if x.ClientCA != "" && x.TLSCert == "" {
		return errors.New("server: mutual TLS (--xks-client-ca) needs --xks-tls-cert and --xks-tls-key")
	}
	if x.TLSCert != "" || cfg.InsecureHTTP {
		return nil
	}
	host, _, err := net.SplitHostPort(x.Listen)
	if err != nil {
		return fmt.Errorf("server: XKS listen address %q: %w", x.Listen, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("server: refusing plain HTTP for the XKS proxy API on %s, which is not a loopback address: give --xks-tls-cert and --xks-tls-key", x.Listen)
}

// xksTLS makes the XKS listener's TLS configuration: TLS 1.2 or later,
// and with a client CA, a client certificate chained to it (and with the
// configured subject) or no handshake. Its key pair comes from the
// certificate returned, which ReloadXKSTLS swaps.
func xksTLS(x XKSConfig) (*tls.Config, *certificate, error) {
	cert, err := newCertificate(TLSFiles{Cert: x.TLSCert, Key: x.TLSKey})
	if err != nil {
		return nil, nil, fmt.Errorf("server: loading the XKS TLS key pair: %w", err)
	}
	c := &tls.Config{GetCertificate: cert.get, MinVersion: tls.VersionTLS12}
	if x.ClientCA == "" {
		return c, cert, nil
	}
	pem, err := os.ReadFile(x.ClientCA)
	if err != nil {
		return nil, nil, fmt.Errorf("server: reading the XKS client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("server: %s holds no PEM certificate", x.ClientCA)
	}
	c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	if x.ClientSubject != "" {
		want := x.ClientSubject
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].Subject.CommonName != want {
				return fmt.Errorf("the client certificate's subject is not CN=%s", want)
			}
			return nil
		}
	}
	return c, cert, nil
}

// listenXKS starts the XKS proxy API listener, if one is configured.
func (s *Server) listenXKS() error {
	x := s.cfg.XKS
	if x.Listen == "" {
		return nil
	}
	v := auth.New(auth.Config{Service: "kms-xks-proxy", Regions: x.Regions, Hosts: s.cfg.AcceptedHosts, SignedHeadersOnly: true,
		Failures: s.failures, Logger: s.cfg.Logger.Named("xks-auth")})
	var h http.Handler = xks.New(xks.Config{Service: s.svc, Verifier: v, Logger: s.cfg.Logger.Named("xks"), Model: x.Model})
	if s.procs != nil {
		h = s.procs.wrap(h)
	}
	var tc *tls.Config
	if x.TLSCert != "" {
		var err error
		if tc, s.xksCert, err = xksTLS(x); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp", x.Listen)
	if err != nil {
		return fmt.Errorf("server: XKS listener: %w", err)
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	s.xksListener, s.xksDone = l, make(chan error, 1)
	s.xks = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10, TLSConfig: tc,
		ErrorLog: s.log.Named("xks-http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	go func() { s.xksDone <- s.xks.Serve(l) }()
	s.log.Info("serving the XKS proxy API", "address", l.Addr().String(), "tls", tc != nil, "mtls", x.ClientCA != "")
	return nil
}

// XKSEndpoint is the XKS proxy API's URL, or "" when it is not served.
func (s *Server) XKSEndpoint() string {
	if s.xksListener == nil {
		return ""
	}
	scheme := "http"
	if s.cfg.XKS.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + s.xksListener.Addr().String()
}

func (s *Server) shutdownXKS(ctx context.Context) error {
	if s.xks == nil {
		return nil
	}
	err := s.xks.Shutdown(ctx)
	if serr := <-s.xksDone; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}
