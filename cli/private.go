package cli

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// The flags that let a command read a secret from a file that group or
// others may access.
const (
	allowInsecurePINFile         = "allow-insecure-pin-file"
	allowInsecureCredentialsFile = "allow-insecure-credentials-file"
)

// allowInsecurePINFileFlag is shared by every command with a --pin-file.
func allowInsecurePINFileFlag() cli.Flag {
	return &cli.BoolFlag{Name: allowInsecurePINFile, EnvVars: []string{"HSMKMS_ALLOW_INSECURE_PIN_FILE"},
		Usage: "read a PIN file that group or others can access (refused by default)"}
}

// checkPrivateFile refuses a file holding a secret (what names it: "PIN",
// "credentials") when any group or other permission bit is set, as ssh
// refuses such a private key: the secret is as good as disclosed to every
// local user, and saying so beats working silently. flag is the flag that
// overrides the refusal, named in the message. os.Stat follows symlinks:
// the target's mode is what guards the secret. A file that cannot be
// stat'ed (missing, say) is left for the code that reads it to report.
func checkPrivateFile(path, what, flag string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return cli.Exit(fmt.Sprintf("hsmkms: the %s file %s is readable by group or others (mode %04o); run chmod 600 %s, or pass --%s",
			what, path, perm, path, flag), ExitUsage)
	}
	return nil
}
