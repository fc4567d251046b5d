package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
)

// TLSFiles names a listener's PEM certificate (chain) and private key.
type TLSFiles struct{ Cert, Key string }

// certificate is a listener's key pair. Each new TLS handshake takes the
// one in effect (tls.Config.GetCertificate) from an atomic pointer, so
// that a reload swaps it without a lock and without touching established
// connections, which keep the pair they were made with.
type certificate struct {
	pair atomic.Pointer[tls.Certificate]
}

// newCertificate loads the key pair of files.
func newCertificate(files TLSFiles) (*certificate, error) {
	pair, err := loadPair(files)
	if err != nil {
		return nil, err
	}
	c := &certificate{}
	c.pair.Store(pair)
	return c, nil
}

// get is the listener's tls.Config.GetCertificate.
func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.pair.Load(), nil }

// loadPair loads a key pair, with its leaf parsed.
func loadPair(files TLSFiles) (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return nil, err
	}
	if pair.Leaf == nil {
		// Go leaves it nil with GODEBUG=x509keypairleaf=0.
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &pair, nil
}

// reload loads the pair of files and puts it in effect; a pair that does
// not load leaves the one in effect. It reports whether the certificate
// chain changed.
func (c *certificate) reload(files TLSFiles) (leaf *x509.Certificate, changed bool, err error) {
	pair, err := loadPair(files)
	if err != nil {
		return nil, false, err
	}
	old := c.pair.Swap(pair)
	return pair.Leaf, !slices.EqualFunc(old.Certificate, pair.Certificate, bytes.Equal), nil
}

// ReloadTLS loads the KMS API listener's key pair anew from files and
// serves it to new TLS handshakes; established connections keep theirs.
// A pair that does not load (a missing file, a key that does not match)
// leaves the one in effect. A listener serving plain HTTP is refused:
// TLS is turned on only at a start.
func (s *Server) ReloadTLS(files TLSFiles) error {
	return s.reloadCert(s.kmsCert, "kms", files)
}

// ReloadXKSTLS is ReloadTLS for the XKS proxy API listener.
func (s *Server) ReloadXKSTLS(files TLSFiles) error {
	return s.reloadCert(s.xksCert, "xks", files)
}

func (s *Server) reloadCert(c *certificate, listener string, files TLSFiles) error {
	if c == nil {
		return fmt.Errorf("server: the %s listener serves no TLS; a certificate takes effect at a restart", listener)
	}
	if files.Cert == "" || files.Key == "" {
		return errors.New("server: give both a TLS certificate and its key")
	}
	leaf, changed, err := c.reload(files)
	if err != nil {
		return fmt.Errorf("server: reloading the %s listener's TLS key pair: %w", listener, err)
	}
	if !changed {
		s.log.Debug("TLS certificate unchanged", "listener", listener, "cert", files.Cert)
		return nil
	}
	s.log.Info("TLS certificate reloaded: new handshakes use it", "listener", listener, "cert", files.Cert,
		"subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
	return nil
}
