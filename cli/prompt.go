package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// isTerminal reports whether r, the application's standard input, is a
// terminal a person can answer a question on: an *os.File on a terminal, or
// any reader that says so with an IsTerminal method (as tests do).
func isTerminal(r io.Reader) bool {
	if t, ok := r.(interface{ IsTerminal() bool }); ok {
		return t.IsTerminal()
	}
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// yesFlag is the --yes flag of the destructive commands.
func yesFlag() cli.Flag {
	// No environment variable: a confirmation is given per command, never
	// by a variable left in the environment.
	return &cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (required when standard input is not a terminal)"}
}

// confirm asks question on standard error and reads the answer from
// standard input, unless --yes was given. Without --yes it refuses when
// standard input is not a terminal, so that a script never destroys
// anything by accident: the user must say --yes. Anything but y or yes
// declines.
func confirm(c *cli.Context, question string) error {
	if c.Bool("yes") {
		return nil
	}
	in := c.App.Reader
	if in == nil {
		in = os.Stdin
	}
	if !isTerminal(in) {
		return usagef("%s refuses to go on without confirmation when standard input is not a terminal: pass --yes", commandName(c))
	}
	fmt.Fprintf(c.App.ErrWriter, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return cli.Exit("hsmkms: not confirmed; nothing was changed", ExitError)
}
