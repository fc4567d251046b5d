package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/urfave/cli/v2"
)

// buildVersion is what the binary knows of its build: the version set with
// -ldflags (else the module version), the VCS revision, its time and
// whether the tree was modified, and the Go version.
type buildVersion struct {
	Version  string          `json:"version"`
	Revision string          `json:"revision,omitempty"`
	Time     string          `json:"time,omitempty"`
	Modified bool            `json:"modified,omitempty"`
	Go       string          `json:"go"`
	Module   *hsm.ModuleInfo `json:"pkcs11_module,omitempty"`
}

func readBuildVersion() buildVersion {
	v := buildVersion{Version: Version, Go: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one line of hsmkms --version.
func (v buildVersion) String() string {
	s := v.Version
	if v.Revision != "" {
		s += " (" + v.Revision
		if v.Modified {
			s += ", modified"
		}
		if v.Time != "" {
			s += ", " + v.Time
		}
		s += ")"
	}
	return s + ", " + v.Go
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the build: version, VCS revision and time, Go version; with --pkcs11-module, the module's",
		Description: "Example:\n" +
			"  hsmkms version --pkcs11-module /usr/lib/softhsm/libsofthsm2.so",
		Flags: []cli.Flag{&cli.StringFlag{Name: "pkcs11-module", EnvVars: []string{"HSMKMS_PKCS11_MODULE"}, Usage: "also describe this PKCS#11 library"},
			initParamsFlag()},
		Action: func(c *cli.Context) error {
			v := readBuildVersion()
			if path := c.String("pkcs11-module"); path != "" {
				info, err := moduleInfo(hsm.ModuleConfig{Path: path, InitParams: c.String("pkcs11-init-params"), Logger: logger(c)})
				if err != nil {
					return err
				}
				v.Module = &info
			}
			return printOut(c, v, func(w io.Writer) {
				row(w, "version", v.Version)
				row(w, "revision", v.Revision)
				row(w, "time", v.Time)
				if v.Modified {
					row(w, "modified", "true")
				}
				row(w, "go", v.Go)
				if v.Module != nil {
					row(w, "pkcs11 module", v.Module.Path)
					row(w, "cryptoki", v.Module.CryptokiVersion)
					row(w, "library", fmt.Sprintf("%s %s (%s)", v.Module.LibraryDescription, v.Module.LibraryVersion, v.Module.Manufacturer))
				}
			})
		},
	}
}
