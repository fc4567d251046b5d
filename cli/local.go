package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/softhsm"
	"github.com/urfave/cli/v2"
)

// softhsmCommand makes private SoftHSM2 tokens for development and CI.
func softhsmCommand() *cli.Command {
	return &cli.Command{
		Name:  "softhsm",
		Usage: "make private SoftHSM2 tokens for development and CI",
		Subcommands: []*cli.Command{{
			Name:  "init",
			Usage: "initialise a SoftHSM2 token in its own directory and print the exports to use it",
			Description: "The user PIN comes from --pin-file or HSMKMS_PIN; the SO PIN from HSMKMS_SO_PIN,\n" +
				"or a random one is written to DIR/so-pin (mode 0600). An existing token with the\n" +
				"label is kept, never re-initialised.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "dir", Required: true, EnvVars: []string{"HSMKMS_SOFTHSM_DIR"}, Usage: "directory for softhsm2.conf and the token store"},
				&cli.StringFlag{Name: "label", Required: true, EnvVars: []string{"HSMKMS_TOKEN_LABEL"}, Usage: "token label"},
				&cli.StringFlag{Name: "pkcs11-module", EnvVars: []string{"HSMKMS_PKCS11_MODULE"}, Usage: "SoftHSM2 module (default: found on the usual paths)"},
				&cli.StringFlag{Name: "pin-file", EnvVars: []string{"HSMKMS_PIN_FILE"}, Usage: "file holding the user PIN (or set HSMKMS_PIN)"},
				allowInsecurePINFileFlag(),
			},
			Action: softhsmInit,
		}},
	}
}

func softhsmInit(c *cli.Context) error {
	module := c.String("pkcs11-module")
	if module != "" {
		if err := requireSoftHSM(module); err != nil {
			return err
		}
		os.Setenv("SOFTHSM2_MODULE", module)
	}
	pin, err := loadPIN(c)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(c.String("dir"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	soPIN, err := soPIN(dir, c.Bool(allowInsecurePINFile))
	if err != nil {
		return err
	}
	tok, err := softhsm.New(c.Context, softhsm.Config{Dir: dir, Label: c.String("label"), PIN: pinValue(pin), SOPIN: soPIN})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "export SOFTHSM2_CONF=%s\nexport HSMKMS_PKCS11_MODULE=%s\nexport HSMKMS_TOKEN_LABEL=%s\n",
		tok.ConfPath, tok.ModulePath, tok.Label)
	return nil
}

// requireSoftHSM refuses a module that is not SoftHSM2: initialising a
// token wipes it, and hsmkms only ever does that to throw-away tokens.
func requireSoftHSM(path string) error {
	// SoftHSM2 reads its configuration when initialised: point it at an
	// empty one, so that the check never reads the system's (readable by
	// root and the softhsm group only) nor touches its tokens.
	tmp, err := os.MkdirTemp("", "hsmkms-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	conf := filepath.Join(tmp, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tmp+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		return err
	}
	prev, had := os.LookupEnv(softhsm.ConfEnv)
	os.Setenv(softhsm.ConfEnv, conf)
	defer func() {
		if had {
			os.Setenv(softhsm.ConfEnv, prev)
		} else {
			os.Unsetenv(softhsm.ConfEnv)
		}
	}()
	info, err := moduleInfo(hsm.ModuleConfig{Path: path})
	if err != nil {
		return err
	}
	if !strings.Contains(info.LibraryDescription+" "+info.Manufacturer, "SoftHSM") {
		return cli.Exit(fmt.Sprintf("hsmkms: %s is %q by %q, not SoftHSM2: softhsm init only makes SoftHSM2 tokens", path, info.LibraryDescription, info.Manufacturer), ExitUsage)
	}
	return nil
}

// soPIN reads HSMKMS_SO_PIN, or the SO PIN kept in dir/so-pin, or makes a
// random one and keeps it there. A kept file that group or others can
// access is refused like a --pin-file, unless allowInsecure: it was
// written 0600, so someone has widened it since.
func soPIN(dir string, allowInsecure bool) (string, error) {
	if v := os.Getenv("HSMKMS_SO_PIN"); v != "" {
		return v, nil
	}
	file := filepath.Join(dir, "so-pin")
	if !allowInsecure {
		if err := checkPrivateFile(file, "SO PIN", allowInsecurePINFile); err != nil {
			return "", err
		}
	}
	if b, err := os.ReadFile(file); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	v := hex.EncodeToString(b)
	return v, os.WriteFile(file, []byte(v+"\n"), 0o600)
}

// pinValue hands the PIN to softhsm2-util, which only takes it as an
// argument; it never reaches a log or an error.
func pinValue(p hsm.PIN) string { return p.Reveal() }

// doctorCommand checks the module, the login, the mechanisms, and whether
// the store and the token agree.
func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check the module, login, mechanisms, and store ↔ token consistency",
		Flags: append(append(tokenFlags(),
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/hsmkms", EnvVars: []string{"HSMKMS_DATA_DIR"}, Usage: "the server's data directory (stop the server first: the embedded store is locked while it runs)"},
			&cli.StringFlag{Name: "dev-dir", Usage: "the --dev-dir of serve --dev (make run's .hsmkms): its token, PIN and store, in place of the token flags and --data-dir"},
		), storeFlags()...),
		Action: doctor,
	}
}

// doctorReport is what doctor finds.
type doctorReport struct {
	Module          hsm.ModuleInfo          `json:"module"`
	Token           hsm.TokenInfo           `json:"token"`
	Capabilities    hsm.Capabilities        `json:"capabilities"`
	Inconsistencies []service.Inconsistency `json:"inconsistencies"`
	OK              bool                    `json:"ok"`
}

func doctor(c *cli.Context) error {
	if err := useDevDir(c); err != nil {
		return err
	}
	tok, err := openToken(c)
	if err != nil {
		return err
	}
	defer tok.Close()
	r := doctorReport{Capabilities: tok.Capabilities()}
	if r.Module, err = tok.Module().Info(); err != nil {
		return err
	}
	if r.Token, err = tok.Info(c.Context); err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	svc, err := service.New(service.Config{Store: st.Store, HSM: tok, SharedStore: st.Shared})
	if err != nil {
		return err
	}
	defer svc.Close()
	if r.Inconsistencies, err = svc.CheckConsistency(c.Context); err != nil {
		return err
	}
	r.OK = len(r.Inconsistencies) == 0
	if err := printOut(c, r, func(w io.Writer) { doctorTable(w, r) }); err != nil {
		return err
	}
	if !r.OK {
		return cli.Exit("", ExitError)
	}
	return nil
}

func doctorTable(w io.Writer, r doctorReport) {
	row(w, "module", fmt.Sprintf("ok: %s %s (Cryptoki %s)", r.Module.LibraryDescription, r.Module.LibraryVersion, r.Module.CryptokiVersion))
	row(w, "login", fmt.Sprintf("ok: token %q, serial %s", r.Token.Label, r.Token.Serial))
	featureRows(w, r.Capabilities.Features())
	if r.OK {
		row(w, "store ↔ token", "ok: every version has its object and every hsmkms object its record")
		return
	}
	for _, i := range r.Inconsistencies {
		switch i.Kind {
		case "missing-object":
			if i.Part != "" {
				row(w, "MISSING", fmt.Sprintf("key %s version %d: no %s key with CKA_ID %s on the token", i.KeyID, i.Number, strings.ToUpper(i.Part), i.Object))
				break
			}
			row(w, "MISSING", fmt.Sprintf("key %s version %d: no object with CKA_ID %s on the token", i.KeyID, i.Number, i.Object))
		case "missing-internal-key":
			row(w, "MISSING", fmt.Sprintf("the internal key (CKA_ID %s) is not on the token: the store may belong to another token", i.Object))
		default:
			row(w, "UNRECORDED", fmt.Sprintf("object %q (CKA_ID %s) has no record in the store", i.Label, i.Object))
		}
	}
}

// useDevDir points a local command at the dev token and store of
// --dev-dir: SoftHSM2's configuration, the module, the label, the PIN file
// and the data directory serve --dev keeps there.
func useDevDir(c *cli.Context) error {
	dir := c.String("dev-dir")
	if dir == "" {
		return nil
	}
	conf := filepath.Join(dir, "softhsm", "softhsm2.conf")
	if _, err := os.Stat(conf); err != nil {
		return cli.Exit(fmt.Sprintf("hsmkms: no dev token in %s (%s: %v): give the --dev-dir serve --dev used", dir, conf, unwrapPath(err)), ExitNotFound)
	}
	module, err := softhsm.FindModule()
	if err != nil {
		return cli.Exit(fmt.Sprintf("hsmkms: %v", err), ExitUnavailable)
	}
	if err := os.Setenv(softhsm.ConfEnv, conf); err != nil {
		return err
	}
	for name, v := range map[string]string{"pkcs11-module": module, "token-label": devLabel,
		"pin-file": filepath.Join(dir, "pin"), "data-dir": filepath.Join(dir, "data")} {
		if err := c.Set(name, v); err != nil {
			return err
		}
	}
	return nil
}
