// Package cli is the hsmkms command-line application: local commands that
// talk PKCS#11 to the token directly, and (later) the server and the
// commands that talk to it.
package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
)

// Version is set at build time with -ldflags "-X github.com/hsmkms/hsmkms/cli.Version=…".
var Version = "dev"

// Exit codes that tell failures apart for scripts.
const (
	ExitOK          = 0
	ExitError       = 1 // anything else
	ExitUsage       = 2 // bad flags or arguments
	ExitAuth        = 3 // PIN or credentials refused
	ExitNotFound    = 4 // key, alias or principal not found (an unknown token label is unavailable: 5)
	ExitUnavailable = 5 // the HSM or the server cannot be reached
)

// New returns the hsmkms application writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "hsmkms",
		Usage:                "a key management service whose master keys live in a PKCS#11 HSM",
		Version:              Version,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "warn", EnvVars: []string{"HSMKMS_LOG_LEVEL"}, Usage: "trace, debug, info, warn or error"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", EnvVars: []string{"HSMKMS_OUTPUT"}, Usage: "table or json"},
		},
		Commands: append([]*cli.Command{serveCommand(), benchCommand(), benchTargetCommand(), slotCommand(), tokenCommand(),
			softhsmCommand(), doctorCommand(), storeCommand(), restoreCommand()}, append(clientCommands(), backupCommand())...),
		OnUsageError: usageError,
		// Errors, ExitCoders included, go back to the caller of Run: the
		// default handler calls os.Exit inside Run, past Main's exitCode.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	setUsageError(app.Commands)
	return app
}

func usageError(_ *cli.Context, err error, _ bool) error {
	return cli.Exit(fmt.Sprintf("hsmkms: %v", err), ExitUsage)
}

// setUsageError makes bad flags of every (sub)command exit with ExitUsage;
// urfave/cli uses the app's OnUsageError for the root command only.
func setUsageError(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		setUsageError(c.Subcommands)
	}
}

// Main runs the application with os.Args and returns the exit code.
func Main() int {
	app := New(os.Stdout, os.Stderr)
	if err := app.Run(os.Args); err != nil {
		return exitCode(err, os.Stderr)
	}
	return ExitOK
}

func logger(c *cli.Context) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "hsmkms",
		Level:  hclog.LevelFromString(c.String("log-level")),
		Output: c.App.ErrWriter,
	})
}
