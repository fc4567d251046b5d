package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/server"
	"github.com/hsmkms/hsmkms/softhsm"
	"github.com/urfave/cli/v2"
)

// The dev token: a private SoftHSM2 token whose PINs protect nothing but a
// developer's or a CI job's throw-away keys.
const (
	devLabel = "hsmkms-dev"
	devPIN   = "1234"
	devSOPIN = "87654321"
)

// devFlags turn serve into a self-contained development server.
func devFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "dev", EnvVars: []string{"HSMKMS_DEV"},
			Usage: "development mode: a private SoftHSM2 token and data dir, 127.0.0.1, credentials printed for eval"},
		&cli.StringFlag{Name: "dev-dir", EnvVars: []string{"HSMKMS_DEV_DIR"},
			Usage: "keep the dev token and data here across runs (default: a temporary dir removed on exit)"},
	}
}

// devState is what --dev set up.
type devState struct {
	dir       string
	ephemeral bool
	credsFile string
	// pinFile holds the dev token's PIN, and conf its softhsm2.conf, for
	// local commands (hsmkms doctor --dev-dir).
	pinFile, conf string
}

// remove deletes an ephemeral dev dir.
func (d *devState) remove() {
	if d.ephemeral {
		os.RemoveAll(d.dir)
	}
}

// setUpDev makes (or reopens) the dev token and data dir, points this
// process's SoftHSM2 at it, and fills in cfg: module, token, PIN, data dir,
// loopback listener, audit file and root credentials.
func setUpDev(c *cli.Context, cfg *server.Config) (*devState, error) {
	d := &devState{dir: c.String("dev-dir")}
	if d.dir == "" {
		dir, err := os.MkdirTemp("", "hsmkms-dev-")
		if err != nil {
			return nil, err
		}
		d.dir, d.ephemeral = dir, true
	}
	dir, err := filepath.Abs(d.dir)
	if err != nil {
		return nil, err
	}
	d.dir = dir
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	tok, err := softhsm.New(c.Context, softhsm.Config{Dir: filepath.Join(d.dir, "softhsm"), Label: devLabel, PIN: devPIN, SOPIN: devSOPIN})
	if err != nil {
		d.remove()
		return nil, err
	}
	if err := tok.Activate(); err != nil {
		d.remove()
		return nil, err
	}
	cfg.ModulePath, cfg.TokenLabel, cfg.TokenSerial, cfg.PIN = tok.ModulePath, devLabel, "", hsm.NewPIN(devPIN)
	d.conf, d.pinFile = tok.ConfPath, filepath.Join(d.dir, "pin")
	if err := os.WriteFile(d.pinFile, []byte(devPIN+"\n"), 0o600); err != nil {
		d.remove()
		return nil, err
	}
	cfg.DataDir = filepath.Join(d.dir, "data")
	if !c.IsSet("listen") {
		cfg.Listen = "127.0.0.1:8080"
	}
	cfg.InsecureHTTP = false // dev mode never serves plain HTTP off loopback
	d.credsFile = filepath.Join(d.dir, "credentials")
	if cfg.RootAccessKeyID == "" {
		if cfg.RootAccessKeyID, cfg.RootSecret, err = devCredentials(d.credsFile); err != nil {
			d.remove()
			return nil, err
		}
	}
	return d, nil
}

// auditPath is where dev mode writes the audit trail by default.
func (d *devState) auditPath() string { return filepath.Join(d.dir, "audit.log") }

// devCredentials reads the dev root credentials from file, or generates
// them and writes the file (0600), so that a persistent dev dir keeps them.
func devCredentials(file string) (id, secret string, err error) {
	if f, err := os.Open(file); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), "=")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "aws_access_key_id":
				id = strings.TrimSpace(v)
			case "aws_secret_access_key":
				secret = strings.TrimSpace(v)
			}
		}
		if id != "" && secret != "" {
			return id, secret, nil
		}
		return "", "", fmt.Errorf("%s lacks aws_access_key_id or aws_secret_access_key", file)
	}
	if id, secret, err = service.NewAccessKey(); err != nil {
		return "", "", err
	}
	body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, secret)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		return "", "", err
	}
	return id, secret, nil
}

// printDevEnv writes the endpoint and credentials as shell lines a script
// can eval, then how to use them.
func printDevEnv(w, notes io.Writer, endpoint, region string, cfg server.Config, d *devState) {
	fmt.Fprintf(w, "export AWS_ENDPOINT_URL_KMS=%s\n", endpoint)
	fmt.Fprintf(w, "export HSMKMS_ENDPOINT=%s\n", endpoint)
	fmt.Fprintf(w, "export AWS_ACCESS_KEY_ID=%s\n", cfg.RootAccessKeyID)
	fmt.Fprintf(w, "export AWS_SECRET_ACCESS_KEY=%s\n", cfg.RootSecret)
	fmt.Fprintf(w, "export AWS_REGION=%s AWS_DEFAULT_REGION=%s\n", region, region)
	fmt.Fprintf(notes, "hsmkms: dev server at %s; root credentials in %s; audit trail in %s\n", endpoint, d.credsFile, d.auditPath())
	fmt.Fprintf(notes, "hsmkms: in another shell:\n"+
		"  export HSMKMS_ENDPOINT=%s HSMKMS_CREDENTIALS_FILE=%s\n"+
		"  hsmkms key create --description demo\n"+
		"  aws kms list-keys --endpoint-url %s   # with AWS_SHARED_CREDENTIALS_FILE=%s\n",
		endpoint, d.credsFile, endpoint, d.credsFile)
	fmt.Fprintf(notes, "hsmkms: dev token %q: module %s, PIN file %s, SOFTHSM2_CONF=%s; with the server stopped, check it with\n"+
		"  hsmkms doctor --dev-dir %s\n", devLabel, cfg.ModulePath, d.pinFile, d.conf, d.dir)
	if d.ephemeral {
		fmt.Fprintf(notes, "hsmkms: the dev token and data in %s are removed on exit (keep them with --dev-dir)\n", d.dir)
	}
}
