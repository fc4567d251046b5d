package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/urfave/cli/v2"
)

// endpointURL is --endpoint as a URL. A bare host:port is taken as
// http:// on a loopback address (where serve allows plain HTTP) and
// https:// elsewhere; anything else that is not an http(s) URL with a host
// is a usage error saying so.
func endpointURL(raw string) (string, error) {
	if raw == "" {
		return "", cli.Exit("hsmkms: give --endpoint or set HSMKMS_ENDPOINT", ExitUsage)
	}
	if !strings.Contains(raw, "://") {
		host, _, err := net.SplitHostPort(raw)
		if err != nil {
			host = raw
		}
		scheme := "https://"
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			scheme = "http://"
		}
		raw = scheme + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", cli.Exit(fmt.Sprintf("hsmkms: --endpoint %q is not a server URL: give one such as https://kms.example:8443 or http://127.0.0.1:8080", raw), ExitUsage)
	}
	return raw, nil
}

func caBundleFlag() cli.Flag {
	return &cli.StringFlag{Name: "ca-bundle", EnvVars: []string{"HSMKMS_CA_BUNDLE"},
		Usage: "PEM file of the CA that signed the server's certificate, for a private CA (AWS_CA_BUNDLE is honoured too)"}
}

// caBundle reads --ca-bundle: nil when it is not given.
func caBundle(c *cli.Context) ([]byte, error) {
	p := c.String("ca-bundle")
	if p == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(p)
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("hsmkms: --ca-bundle: %v", err), ExitUsage)
	}
	return pem, nil
}

// adminHTTP is the admin client's HTTP client: --ca-bundle's CAs, if any.
func adminHTTP(c *cli.Context) (*http.Client, error) {
	client := &http.Client{Timeout: time.Minute}
	pem, err := caBundle(c)
	if err != nil || pem == nil {
		return client, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, cli.Exit(fmt.Sprintf("hsmkms: --ca-bundle %s holds no PEM certificate", c.String("ca-bundle")), ExitUsage)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	client.Transport = tr
	return client, nil
}

// certificateError reports whether err is the server's certificate
// failing verification: retrying cannot help, and the user needs
// --ca-bundle (or the right host name).
func certificateError(err error) bool {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// certificateCause is the certificate check's own message, without the
// SDK's and net/http's wrapping.
func certificateCause(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknown):
		return unknown.Error()
	case errors.As(err, &hostname):
		return hostname.Error()
	case errors.As(err, &invalid):
		return invalid.Error()
	}
	return err.Error()
}

// noCertificateRetries is the SDK's standard retryer, except that a
// certificate that does not verify is not retried.
func noCertificateRetries() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if certificateError(err) {
				return aws.FalseTernary
			}
			return aws.UnknownTernary
		})}, o.Retryables...)
	})
}
