package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/urfave/cli/v2"
)

// moduleFlag, tokenFlags and pinFlags are shared by every command that
// talks PKCS#11 directly. PINs come from a file or the environment, never
// from a flag's value, which other users can read in the process list.
func moduleFlag() cli.Flag {
	return &cli.StringFlag{Name: "pkcs11-module", EnvVars: []string{"HSMKMS_PKCS11_MODULE"}, Required: true, Usage: "path of the PKCS#11 library"}
}

// initParamsFlag passes module-specific parameters to C_Initialize: most
// modules take none; NSS's softoken takes its database there.
func initParamsFlag() cli.Flag {
	return &cli.StringFlag{Name: "pkcs11-init-params", EnvVars: []string{"HSMKMS_PKCS11_INIT_PARAMS"},
		Usage: "parameters for the module's C_Initialize (pReserved), for modules that read their configuration there, e.g. NSS's libsoftokn3.so: \"configdir='sql:/etc/pki/nssdb' certPrefix='' keyPrefix='' secmod=''\""}
}

func tokenFlags() []cli.Flag {
	return []cli.Flag{
		moduleFlag(),
		initParamsFlag(),
		&cli.StringFlag{Name: "token-label", EnvVars: []string{"HSMKMS_TOKEN_LABEL"}, Required: true, Usage: "label of the token"},
		&cli.StringFlag{Name: "token-serial", EnvVars: []string{"HSMKMS_TOKEN_SERIAL"}, Usage: "serial of the token, when labels are not unique"},
		&cli.StringFlag{Name: "pin-file", EnvVars: []string{"HSMKMS_PIN_FILE"}, Usage: "file holding the user PIN (or set HSMKMS_PIN)"},
		allowInsecurePINFileFlag(),
		&cli.IntFlag{Name: "pool-size", Value: 4, EnvVars: []string{"HSMKMS_POOL_SIZE"}, Usage: "PKCS#11 sessions open at most"},
	}
}

// loadPIN reads the PIN from --pin-file, refusing a file that group or
// others can access before reading it, or else from HSMKMS_PIN.
func loadPIN(c *cli.Context) (hsm.PIN, error) {
	if f := c.String("pin-file"); f != "" {
		if !c.Bool(allowInsecurePINFile) {
			if err := checkPrivateFile(f, "PIN", allowInsecurePINFile); err != nil {
				return hsm.PIN{}, err
			}
		}
		return hsm.PINFromFile(f)
	}
	pin, err := hsm.PINFromEnv("HSMKMS_PIN")
	if err != nil {
		return pin, cli.Exit("hsmkms: no PIN: give --pin-file or set HSMKMS_PIN", ExitUsage)
	}
	return pin, nil
}

func openToken(c *cli.Context) (*hsm.Token, error) {
	pin, err := loadPIN(c)
	if err != nil {
		return nil, err
	}
	return hsm.Open(c.Context, hsm.Config{
		ModulePath:  c.String("pkcs11-module"),
		InitParams:  c.String("pkcs11-init-params"),
		TokenLabel:  c.String("token-label"),
		TokenSerial: c.String("token-serial"),
		PIN:         pin,
		PoolSize:    c.Int("pool-size"),
		Logger:      logger(c),
	})
}

func slotCommand() *cli.Command {
	return &cli.Command{
		Name:  "slot",
		Usage: "inspect the PKCS#11 module's slots",
		Subcommands: []*cli.Command{{
			Name:   "list",
			Usage:  "list slots and their tokens",
			Flags:  []cli.Flag{moduleFlag(), initParamsFlag()},
			Action: slotList,
		}},
	}
}

// moduleInfo loads a PKCS#11 library just to describe it.
func moduleInfo(cfg hsm.ModuleConfig) (hsm.ModuleInfo, error) {
	m, err := hsm.OpenModule(cfg)
	if err != nil {
		return hsm.ModuleInfo{}, err
	}
	defer m.Close()
	return m.Info()
}

func slotList(c *cli.Context) error {
	m, err := hsm.OpenModule(hsm.ModuleConfig{Path: c.String("pkcs11-module"), InitParams: c.String("pkcs11-init-params"), Logger: logger(c)})
	if err != nil {
		return err
	}
	defer m.Close()
	slots, err := m.Slots()
	if err != nil {
		return err
	}
	return printOut(c, slots, func(w io.Writer) {
		header(w, "SLOT", "TOKEN", "SERIAL", "MANUFACTURER", "MODEL", "FLAGS")
		for _, s := range slots {
			if s.Token == nil {
				row(w, s.ID, "-", "-", s.Manufacturer, "-", strings.Join(s.Flags, ","))
				continue
			}
			label := s.Token.Label
			if !s.Token.Initialized {
				label = "(uninitialised)"
			}
			row(w, s.ID, label, s.Token.Serial, s.Token.Manufacturer, s.Token.Model, strings.Join(s.Token.Flags, ","))
		}
	})
}

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "inspect the token hsmkms uses",
		Subcommands: []*cli.Command{
			{Name: "info", Usage: "describe the token and what hsmkms can do with it", Flags: tokenFlags(), Action: tokenInfo},
			{Name: "mechanisms", Usage: "list the token's mechanisms", Flags: tokenFlags(), Action: tokenMechanisms},
		},
	}
}

type tokenReport struct {
	Module       hsm.ModuleInfo   `json:"module"`
	Token        hsm.TokenInfo    `json:"token"`
	Capabilities hsm.Capabilities `json:"capabilities"`
	Features     []hsm.Feature    `json:"features"`
	// Serviceable is why hsmkms serve would refuse the token ("" if not).
	Serviceable string `json:"serviceable_error,omitempty"`
}

// featureRows prints what hsmkms can do with the token, and what it lacks.
func featureRows(w io.Writer, fs []hsm.Feature) {
	for _, f := range fs {
		switch {
		case f.Supported:
			row(w, f.Name, "yes")
		case f.Required:
			row(w, f.Name, "NO (required): lacks "+f.Lacks)
		default:
			row(w, f.Name, "no: lacks "+f.Lacks)
		}
	}
}

func tokenInfo(c *cli.Context) error {
	tok, err := openToken(c)
	if err != nil {
		return err
	}
	defer tok.Close()
	var r tokenReport
	if r.Module, err = tok.Module().Info(); err != nil {
		return err
	}
	if r.Token, err = tok.Info(c.Context); err != nil {
		return err
	}
	r.Capabilities = tok.Capabilities()
	r.Features = r.Capabilities.Features()
	if err := r.Capabilities.Serviceable(); err != nil {
		r.Serviceable = err.Error()
	}
	return printOut(c, r, func(w io.Writer) {
		row(w, "module", r.Module.Path)
		row(w, "library", fmt.Sprintf("%s %s (%s), Cryptoki %s", r.Module.LibraryDescription, r.Module.LibraryVersion, r.Module.Manufacturer, r.Module.CryptokiVersion))
		row(w, "slot", r.Token.SlotID)
		row(w, "label", r.Token.Label)
		row(w, "serial", r.Token.Serial)
		row(w, "manufacturer", r.Token.Manufacturer)
		row(w, "model", r.Token.Model)
		row(w, "flags", strings.Join(r.Token.Flags, ","))
		row(w, "sessions", fmt.Sprintf("%s open, %s read-write", count(r.Token.SessionCount), count(r.Token.RwSessionCount)))
		featureRows(w, r.Features)
		if r.Serviceable != "" {
			row(w, "serve", "refused: "+r.Serviceable)
		} else {
			row(w, "serve", "ok")
		}
	})
}

func tokenMechanisms(c *cli.Context) error {
	tok, err := openToken(c)
	if err != nil {
		return err
	}
	defer tok.Close()
	mechs, err := tok.Mechanisms(c.Context)
	if err != nil {
		return err
	}
	return printOut(c, mechs, func(w io.Writer) {
		header(w, "MECHANISM", "TYPE", "KEY SIZES", "FLAGS")
		for _, m := range mechs {
			row(w, m.Name, fmt.Sprintf("0x%08X", m.Type), fmt.Sprintf("%d-%d", m.MinKeySize, m.MaxKeySize), strings.Join(m.Flags, ","))
		}
	})
}

// count prints a token counter, which is CK_UNAVAILABLE_INFORMATION (all
// ones) on tokens that do not keep it.
func count(n uint) string {
	if n == ^uint(0) {
		return "n/a"
	}
	return fmt.Sprint(n)
}
