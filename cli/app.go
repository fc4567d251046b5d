// Package cli is the hsmkms command-line application: local commands that
// talk PKCS#11 to the token directly, and (later) the server and the
// commands that talk to it.
package cli

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

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
	ExitNotFound    = 4 // key, alias, principal or store not found, or a file a command or serve reads (input, TLS, PIN) missing; an unknown token label is unavailable: 5
	ExitUnavailable = 5 // the HSM or the server cannot be reached
)

// New returns the hsmkms application writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "hsmkms",
		Usage:                "a key management service whose master keys live in a PKCS#11 HSM",
		Version:              readBuildVersion().String(),
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "warn", EnvVars: []string{"HSMKMS_LOG_LEVEL"}, Usage: "trace, debug, info, warn or error"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", EnvVars: []string{"HSMKMS_OUTPUT"}, Usage: "table, text (tab-separated, no header: for shell loops) or json"},
		}, connectionFlagCopies()...),
		Commands: append([]*cli.Command{versionCommand(), completionCommand(), manCommand(), serveCommand(), benchCommand(), benchTargetCommand(), slotCommand(), tokenCommand(),
			softhsmCommand(), doctorCommand(), storeCommand(), restoreCommand()}, append(clientCommands(), backupCommand())...),
		OnUsageError: usageError,
		// Errors, ExitCoders included, go back to the caller of Run: the
		// default handler calls os.Exit inside Run, past Main's exitCode.
		ExitErrHandler: func(*cli.Context, error) {},
		Action:         unknownCommand,
	}
	setUsageError(app.Commands, "")
	return app
}

// unknownCommand answers a command or subcommand hsmkms does not have with
// one line and exit 2, and bare group commands with their help.
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	path := c.Command.HelpName
	if path == "" || c.Command.Name == "" {
		path = c.App.Name
	}
	return cli.Exit(fmt.Sprintf("hsmkms: %s has no command %q; run %s --help", path, c.Args().First(), path), ExitUsage)
}

func usageError(_ *cli.Context, err error, _ bool) error {
	return cli.Exit(fmt.Sprintf("hsmkms: %v", err), ExitUsage)
}

// setUsageError makes bad flags of every (sub)command exit with ExitUsage;
// urfave/cli uses the app's OnUsageError for the root command only.
func setUsageError(cmds []*cli.Command, parent string) {
	for _, c := range cmds {
		path := parent
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = unknownCommand
		}
		withExample(&c.Description, strings.TrimSpace(path+" "+c.Name))
		requireFlags(c)
		inheritFlags(c)
		scopeEnv(c, path)
		c.Flags = append(c.Flags, globalFlagCopies()...)
		setUsageError(c.Subcommands, strings.TrimSpace(path+" "+c.Name))
	}
}

// connectionFlagCopies let the client commands' connection flags come
// before the command as well as after it (hsmkms --endpoint E key list).
// They have no default and no variable; inheritFlags passes them down.
func connectionFlagCopies() []cli.Flag {
	var out []cli.Flag
	for _, name := range []string{"endpoint", "region", "profile", "credentials-file", "ca-bundle"} {
		out = append(out, &cli.StringFlag{Name: name, Hidden: true})
	}
	return out
}

// inheritFlags gives a command's flags the values given before the command
// (to the application or a parent command) where the command's own were
// not given: urfave/cli reads the nearest definition, default included.
func inheritFlags(c *cli.Command) {
	before := c.Before
	c.Before = func(ctx *cli.Context) error {
		for _, f := range ctx.Command.Flags {
			name := f.Names()[0]
			if ctx.IsSet(name) {
				continue
			}
			for _, anc := range ctx.Lineage()[1:] {
				if anc.IsSet(name) {
					if err := ctx.Set(name, fmt.Sprint(anc.Value(name))); err != nil {
						return err
					}
					break
				}
			}
		}
		// --output is checked before the command does anything (found
		// by review: a misspelt format was refused only when the result
		// was printed, after a secret was rotated or a deletion
		// scheduled, and the new secret was never shown).
		if err := checkOutputFormat(ctx); err != nil {
			return err
		}
		if before != nil {
			return before(ctx)
		}
		return nil
	}
}

// checkOutputFormat refuses an --output other than table, text or json.
func checkOutputFormat(c *cli.Context) error {
	switch f := outputFormat(c); f {
	case "table", "text", "json":
		return nil
	default:
		return cli.Exit(fmt.Sprintf("hsmkms: --output must be table, text or json, not %q", f), ExitUsage)
	}
}

// globalFlagCopies let --output (-o) and --log-level follow a command as
// well as precede it, as the aws CLI takes them. They have no default and
// no variable: globalString reads the one given, nearest first.
func globalFlagCopies() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Hidden: true},
		&cli.StringFlag{Name: "log-level", Hidden: true},
	}
}

// globalString is a global flag's value: given after the command (at any
// depth) or before it, else its variable, else def.
func globalString(c *cli.Context, name, def string) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet(name) {
			return ctx.String(name)
		}
	}
	return def
}

// outputFormat is --output: table (the default) or json.
func outputFormat(c *cli.Context) string { return globalString(c, "output", "table") }

// scopeEnv names the environment variables of the command's own flags
// (those made with envVars) after the command: HSMKMS_<COMMAND PATH>_<FLAG>.
func scopeEnv(c *cli.Command, parent string) {
	path := strings.TrimSpace(parent + " " + c.Name)
	for _, f := range c.Flags {
		v := reflect.ValueOf(f)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			continue
		}
		ev := v.Elem().FieldByName("EnvVars")
		if !ev.IsValid() || ev.Kind() != reflect.Slice {
			continue
		}
		vars := ev.Interface().([]string)
		for i, e := range vars {
			if name, ok := strings.CutPrefix(e, scopedEnv); ok {
				vars[i] = envName(path, name)
			}
		}
	}
}

// requireFlags checks a command's required flags itself: urfave/cli prints
// the whole help and exits 1 when one is missing; hsmkms says which, in
// one line, and exits 2.
func requireFlags(c *cli.Command) {
	var names []string
	for _, f := range c.Flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Required {
			sf.Required = false
			sf.Usage += " (required)"
			names = append(names, sf.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	before := c.Before
	c.Before = func(ctx *cli.Context) error {
		if ctx.IsSet("dev-dir") {
			// --dev-dir names the token and the store (doctor).
			return nil
		}
		var missing []string
		for _, n := range names {
			if !ctx.IsSet(n) {
				missing = append(missing, "--"+n)
			}
		}
		if len(missing) > 0 {
			return cli.Exit(fmt.Sprintf("hsmkms: %s: missing %s; run %s --help", ctx.Command.HelpName,
				strings.Join(missing, ", "), ctx.Command.HelpName), ExitUsage)
		}
		if before != nil {
			return before(ctx)
		}
		return nil
	}
}

// Main runs the application with os.Args and returns the exit code.
func Main() int {
	if code, child := verifyChild(); child {
		return code
	}
	app := New(os.Stdout, os.Stderr)
	if err := app.Run(os.Args); err != nil {
		return exitCode(err, os.Stderr)
	}
	return ExitOK
}

func logger(c *cli.Context) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "hsmkms",
		Level:  hclog.LevelFromString(globalString(c, "log-level", "warn")),
		Output: c.App.ErrWriter,
	})
}
